//! What a job may use, so that no job can hurt its worker or the jobs beside it.
//!
//! - rlimits on the worker process, inherited by every job: open files, the size of any file it writes, no core
//!   dumps (see [`apply_to_worker`] for why not per child).
//! - A pids cgroup per run where the host lets the worker make one (cgroup v1 `pids` hierarchy, writable — root
//!   in a container, or a delegated subtree): `pids.max` bounds the job's whole process tree, so a fork bomb
//!   stalls inside its own cgroup while the worker and other jobs keep forking. At the run's end every process
//!   left in the cgroup is killed (escapees from the process group included) and the cgroup removed.
//! - Without such a cgroup, `RLIMIT_NPROC` is the fallback: it counts every process of the worker's user, so it
//!   is set high (it bounds a bomb, but a bomb can then starve other jobs' forks until it is killed).
//!
//! # Guarantees
//! A job is spawned from inside its cgroup (see [`RunCgroup::spawn_in`]), so it and everything it forks are
//! counted there from the start.

use std::path::{Path, PathBuf};

use tracing::{debug, info};

/// Per-job limits; see [`crate::config::Args`] for the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Processes (and threads) in a job's tree at once.
    pub max_processes: u64,
    /// Open file descriptors per process.
    pub max_open_files: u64,
    /// Largest file a job may write, in bytes.
    pub max_file_bytes: u64,
}

impl Default for JobLimits {
    fn default() -> Self {
        // Generous for real work (a build with parallel compilers, a Python pool), far below what takes a host
        // down.
        JobLimits { max_processes: 1024, max_open_files: 65_536, max_file_bytes: 64 << 30 }
    }
}

/// Where this worker makes its runs' pids cgroups, if it can.
#[derive(Clone, Debug)]
pub struct Cgroups {
    /// The worker's own cgroup, where a spawning thread returns to.
    home: PathBuf,
    base: PathBuf,
    /// Empty cgroups from finished runs, reused: creating and removing a cgroup per job costs more than the job
    /// (`burst dev`: 0.39-0.50x the local spawner with a cgroup made and removed per run). Held only to push or
    /// pop.
    free: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
    made: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Cgroups {
    /// Finds the worker's own place in a writable cgroup v1 `pids` hierarchy and makes
    /// `burst-<pid>-<n>-<worker>` under it: unique to this worker in this process (tests run several workers of
    /// the same id in one process). What workers of dead processes left behind is cleared first.
    pub fn detect(worker_id: &str) -> Option<Self> {
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == "pids").then(|| path.trim_start_matches('/').to_string())
        })?;
        let home = Path::new("/sys/fs/cgroup/pids").join(path);
        clear_dead(&home);
        // Relaxed: only makes names unique.
        let n = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = home.join(format!("burst-{}-{n}-{worker_id}", std::process::id()));
        match std::fs::create_dir_all(&base) {
            Ok(()) if base.join("pids.max").exists() => {
                info!(cgroup = %base.display(), "jobs run in their own pids cgroups");
                Some(Cgroups { home, base, free: Default::default(), made: Default::default() })
            }
            _ => {
                debug!("no writable pids cgroup; RLIMIT_NPROC bounds jobs instead");
                None
            }
        }
    }

    /// A cgroup for one run, holding at most `max_pids` processes.
    pub fn run(&self, max_pids: u64) -> Option<RunCgroup> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let dir = match reused {
            Some(dir) => dir,
            None => {
                // Relaxed: a counter that only names directories.
                let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = self.base.join(format!("run-{n}"));
                std::fs::create_dir_all(&dir).ok()?;
                dir
            }
        };
        std::fs::write(dir.join("pids.max"), max_pids.to_string()).ok()?;
        Some(RunCgroup { dir: Some(dir), home: self.home.clone(), free: self.free.clone() })
    }
}

/// Removes the cgroups of workers whose process is gone (a crash): kills what is left in them, then the
/// directories. Those of live processes (another worker on this host) are left alone.
fn clear_dead(home: &Path) {
    let Ok(entries) = std::fs::read_dir(home) else { return };
    for base in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let name = base.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let Some(pid) = name.strip_prefix("burst-").and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let runs = std::fs::read_dir(&base).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect());
        for dir in runs.unwrap_or_else(|_| Vec::new()).into_iter().filter(|p| p.is_dir()) {
            let stale = RunCgroup { dir: Some(dir.clone()), home: PathBuf::new(), free: Default::default() };
            for _ in 0..100 {
                if stale.kill_all() == 0 && std::fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        let _ = std::fs::remove_dir(&base);
    }
}

/// One run's cgroup, from the worker's pool; what is left in it is killed when it finishes or is dropped.
pub struct RunCgroup {
    /// `None` once handed back to the pool.
    dir: Option<PathBuf>,
    home: PathBuf,
    free: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl RunCgroup {
    /// Spawns `cmd` from inside the cgroup: the calling thread (only it: cgroup v1 moves single threads through
    /// `tasks`) steps in, spawns, and steps back out, so the child starts life in the cgroup and nothing it
    /// forks is ever outside. No await happens in between, so no other task runs on this thread meanwhile.
    pub fn spawn_in(&self, cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
        let Some(dir) = &self.dir else { return cmd.spawn() };
        // SAFETY: gettid(2) has no preconditions.
        let tid = unsafe { libc::gettid() }.to_string();
        if let Err(e) = std::fs::write(dir.join("tasks"), &tid) {
            debug!(cgroup = %dir.display(), error = %e, "could not spawn inside the run's cgroup");
            return cmd.spawn();
        }
        let child = cmd.spawn();
        if let Err(e) = std::fs::write(self.home.join("tasks"), &tid) {
            tracing::warn!(error = %e, "a worker thread could not leave a run's cgroup");
        }
        child
    }

    /// SIGKILLs every process still in the cgroup.
    /// Kills every process still in the cgroup; says how many there were.
    pub fn kill_all(&self) -> usize {
        let Some(dir) = &self.dir else { return 0 };
        let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else { return 0 };
        let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).filter(|p| *p > 1).collect();
        for &pid in &pids {
            // SAFETY: kill(2) on a pid read from this run's own cgroup; it touches no memory of ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        pids.len()
    }
}

impl RunCgroup {
    /// Kills what is left and removes the cgroup once its processes are gone (off the async threads: killed
    /// processes take a moment to leave).
    /// Kills what is left and hands the cgroup back for the next run once it is empty. Usually it already is
    /// (the job's process group was killed); otherwise waiting for the killed processes to leave happens off the
    /// async threads.
    pub async fn finish(mut self) {
        if self.kill_all() == 0 {
            return self.recycle();
        }
        let _ = tokio::task::spawn_blocking(move || {
            for _ in 0..100 {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if self.kill_all() == 0 {
                    return self.recycle();
                }
            }
            debug!("a run's cgroup is still busy; not reused");
        })
        .await;
    }

    fn recycle(&mut self) {
        if let Some(dir) = self.dir.take() {
            self.free.lock().unwrap_or_else(|p| p.into_inner()).push(dir);
        }
    }
}

impl Drop for RunCgroup {
    // A run dropped without `finish` (its task was aborted) still leaves no process behind; its cgroup is not
    // reused (something may still be leaving it).
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Sets the per-job rlimits on the worker process itself, once at start: every job it spawns inherits them.
///
/// Setting them in each child between fork and exec would need a `pre_exec` hook, and a hook makes the standard
/// library fork the whole worker instead of using posix_spawn: `burst dev` ran at 0.14-0.18x the local spawner
/// with the hook against 0.53-0.55x without it (2 runs each, same machine). The limits suit the worker too:
/// open files and file size far above what it needs, no core dumps.
pub fn apply_to_worker(limits: JobLimits, cgroups: bool) {
    for (resource, value, what) in [
        (libc::RLIMIT_NOFILE, limits.max_open_files, "open files"),
        (libc::RLIMIT_FSIZE, limits.max_file_bytes, "file size"),
        (libc::RLIMIT_CORE, 0, "core size"),
    ] {
        if let Err(e) = set(resource, value) {
            debug!(limit = what, error = %e, "rlimit not set");
        }
    }
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !cgroups && !root {
        // It counts the worker's own threads too, hence the floor.
        if let Err(e) = set(libc::RLIMIT_NPROC, limits.max_processes.max(4096)) {
            debug!(error = %e, "RLIMIT_NPROC not set");
        }
    }
}

/// Sets a soft limit (and the hard one when it may be lowered); a limit already below `value` is kept.
fn set(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let mut have = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut have) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let value = value.min(have.rlim_max);
    let limit = libc::rlimit { rlim_cur: value, rlim_max: have.rlim_max };
    // SAFETY: setrlimit(2) reads the struct we pass.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
