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
//! - A memory cgroup per run beside it (cgroup v1 `memory`, writable) when a job has a memory limit: the job's
//!   own memory request, else the worker's `--job-max-memory-bytes`. Past it the kernel kills inside the job's
//!   cgroup only; the job ends killed by signal 9 and its message says it ran out of memory.
//!
//! # Guarantees
//! A job is spawned from inside its cgroup (see [`RunCgroup::spawn`]), so it and everything it forks are
//! counted there from the start.
//!
//! # Why a thread per run cgroup
//! Moving a thread between cgroup v1 cgroups takes a global lock whose writer waits for an RCU grace period,
//! tens of milliseconds when moves are sparse (26 ms seen with strace here), and blocks the moving thread. With
//! the spawning thread moving in and out for every job, `burst bench --workload w2` reached 0.80 of its ideal
//! makespan; without any move, 0.95. So each pooled pids cgroup has its own runner thread ([`Runner`]) that
//! moved in once and stays: spawning a job there moves nothing, and the runner sees the job to its end. Only a
//! job with a memory limit costs moves (its runner steps into the run's memory cgroup for the spawn).

use std::path::{Path, PathBuf};

use tracing::{debug, info};

use crate::runner::Runner;

/// Per-job limits; see [`crate::config::Args`] for the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Processes (and threads) in a job's tree at once.
    pub max_processes: u64,
    /// Open file descriptors per process.
    pub max_open_files: u64,
    /// Largest file a job may write, in bytes.
    pub max_file_bytes: u64,
    /// Memory one job's processes may use together, in bytes, unless the job asks for its own; 0: no limit.
    pub max_memory_bytes: u64,
}

impl Default for JobLimits {
    fn default() -> Self {
        // Generous for real work (a build with parallel compilers, a Python pool), far below what takes a host
        // down.
        JobLimits { max_processes: 1024, max_open_files: 65_536, max_file_bytes: 64 << 30, max_memory_bytes: 0 }
    }
}

/// One cgroup v1 hierarchy this worker makes runs' cgroups in.
#[derive(Clone, Debug)]
struct Hierarchy {
    /// The worker's own cgroup, where a spawning thread returns to.
    home: PathBuf,
    /// This worker's directory under it; runs' cgroups are made inside.
    base: PathBuf,
}

impl Hierarchy {
    /// The worker's own place in the writable hierarchy of `controller`, with `burst-<pid>-<n>-<worker>` made
    /// under it (`probe`: a file that shows the controller is really there). What workers of dead processes
    /// left behind is cleared first.
    fn find(controller: &str, probe: &str, name: &str) -> Option<Self> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == controller).then(|| path.trim_start_matches('/').to_string())
        })?;
        let home = Path::new("/sys/fs/cgroup").join(controller).join(path);
        clear_dead(&home);
        let base = home.join(name);
        (std::fs::create_dir_all(&base).is_ok() && base.join(probe).exists()).then_some(Hierarchy { home, base })
    }
}

/// A run's cgroup directories (pids, and memory where the host has it) and the thread that runs jobs inside them.
#[derive(Debug)]
struct RunDirs {
    pids: PathBuf,
    memory: Option<PathBuf>,
    /// `None` for the stale cgroups of dead workers, which only get emptied.
    runner: Option<Runner>,
    /// `pids.current`, kept open: read again from its start, it tells whether anything but the runner thread is
    /// left, without opening and listing `cgroup.procs` (whose list an open file keeps as first read).
    current: Option<std::fs::File>,
    /// The `pids.max` last written (0: none yet), so that a reused cgroup is not written the same value again.
    pids_max: u64,
}

impl RunDirs {
    fn new(pids: PathBuf, memory: Option<PathBuf>, runner: Option<Runner>) -> Self {
        let current = std::fs::File::open(pids.join("pids.current")).ok();
        RunDirs { pids, memory, runner, current, pids_max: 0 }
    }

    /// Tasks in the pids cgroup (threads count, the runner's among them), if it can be read.
    fn tasks(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = [0u8; 24];
        let n = self.current.as_ref()?.read_at(&mut buf, 0).ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
    }
}

/// Where this worker makes its runs' cgroups, if it can.
#[derive(Clone, Debug)]
pub struct Cgroups {
    /// Shared: a run's [`CgroupOrder`] carries a copy of this, once per job.
    pids: std::sync::Arc<Hierarchy>,
    memory: Option<std::sync::Arc<Hierarchy>>,
    /// Empty cgroups from finished runs, reused: creating and removing a cgroup per job costs more than the job
    /// (`burst dev`: 0.39-0.50x the local spawner with a cgroup made and removed per run). Held only to push or
    /// pop.
    free: std::sync::Arc<std::sync::Mutex<Vec<RunDirs>>>,
    made: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Cgroups {
    /// Finds the worker's places in writable cgroup v1 `pids` (required) and `memory` (optional) hierarchies,
    /// under names unique to this worker in this process (tests run several workers of the same id in one
    /// process).
    pub fn detect(worker_id: &str) -> Option<Self> {
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        // Relaxed: only makes names unique.
        let n = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("burst-{}-{n}-{worker_id}", std::process::id());
        let Some(pids) = Hierarchy::find("pids", "pids.max", &name) else {
            debug!("no writable pids cgroup; RLIMIT_NPROC bounds jobs instead");
            return None;
        };
        let memory = Hierarchy::find("memory", "memory.limit_in_bytes", &name);
        info!(cgroup = %pids.base.display(), memory = memory.is_some(), "jobs run in their own cgroups");
        let (pids, memory) = (std::sync::Arc::new(pids), memory.map(std::sync::Arc::new));
        Some(Cgroups { pids, memory, free: Default::default(), made: Default::default() })
    }

    /// Whether runs get a memory cgroup (memory limits are enforced).
    pub fn limits_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// A cgroup for one run, to take when it starts (see [`CgroupOrder::take`]).
    pub fn order(&self, max_pids: u64, memory_bytes: u64) -> CgroupOrder {
        CgroupOrder { cgroups: self.clone(), max_pids, memory_bytes }
    }

    /// A cgroup for one run, holding at most `max_pids` processes and, where the host has a memory cgroup,
    /// `memory_bytes` of memory (0: no limit).
    pub fn run(&self, max_pids: u64, memory_bytes: u64) -> Option<RunCgroup> {
        self.run_in(max_pids, memory_bytes, true)
    }

    /// [`Cgroups::run`]; with `make` false, only a cgroup that is free already (none is made).
    fn run_in(&self, max_pids: u64, memory_bytes: u64, make: bool) -> Option<RunCgroup> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut dirs = match reused {
            Some(dirs) => dirs,
            None if !make => return None,
            None => {
                // Relaxed: a counter that only names directories.
                let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let run = format!("run-{n}");
                let pids = self.pids.base.join(&run);
                std::fs::create_dir_all(&pids).ok()?;
                let memory =
                    self.memory.as_ref().map(|m| m.base.join(&run)).filter(|d| std::fs::create_dir_all(d).is_ok());
                let runner = Some(Runner::start(Some(&pids.join("tasks")))?);
                RunDirs::new(pids, memory, runner)
            }
        };
        // A reused cgroup keeps what the last run set: a file is written only when this run needs another value
        // (three files opened per run cost a fifth of the worker's CPU per job with /bin/true).
        // The runner thread is one of the cgroup's tasks.
        if dirs.pids_max != max_pids + 1 {
            std::fs::write(dirs.pids.join("pids.max"), (max_pids + 1).to_string()).ok()?;
            dirs.pids_max = max_pids + 1;
        }
        // A run without a memory limit is spawned outside its memory cgroup, so that cgroup is not touched. For
        // one with a limit, none while the runner thread is inside for the spawn (see `spawn`); the run's is set
        // after.
        let memory_limit = match &dirs.memory {
            Some(dir) if memory_bytes > 0 => set_memory_limit(dir, 0).then_some(memory_bytes),
            _ => None,
        };
        let ooms_before = match (&dirs.memory, memory_limit) {
            (Some(dir), Some(_)) => oom_kills(dir),
            _ => 0,
        };
        let memory_home = self.memory.as_ref().map(|m| m.home.clone());
        Some(RunCgroup { dirs: Some(dirs), memory_home, free: self.free.clone(), memory_limit, ooms_before })
    }
}

/// A run's cgroup, to take from the worker's pool when the run starts.
#[derive(Clone, Debug)]
pub struct CgroupOrder {
    cgroups: Cgroups,
    max_pids: u64,
    memory_bytes: u64,
}

impl CgroupOrder {
    /// The cgroup, the last one handed back first (on the thread that just ended a run, its own); `None` if none
    /// can be had. Call it off the runners: making a cgroup starts its runner thread.
    pub fn take(&self) -> Option<RunCgroup> {
        self.cgroups.run(self.max_pids, self.memory_bytes)
    }

    /// The cgroup if one is free already; `None` if a new one would have to be made (or none can be had).
    pub fn take_free(&self) -> Option<RunCgroup> {
        self.cgroups.run_in(self.max_pids, self.memory_bytes, false)
    }
}

/// Sets a run's memory limit (0: none). A reused cgroup may still be charged for the last run's page cache; if
/// the kernel cannot lower the limit below that at once, the cgroup is emptied first.
fn set_memory_limit(dir: &Path, bytes: u64) -> bool {
    let value = if bytes == 0 { "-1".to_string() } else { bytes.to_string() };
    let file = dir.join("memory.limit_in_bytes");
    if std::fs::write(&file, &value).is_ok() {
        return true;
    }
    let _ = std::fs::write(dir.join("memory.force_empty"), "0");
    std::fs::write(&file, &value)
        .map_err(|e| debug!(cgroup = %dir.display(), error = %e, "memory limit not set"))
        .is_ok()
}

/// How many processes the kernel has killed in this memory cgroup for running out of memory, ever.
fn oom_kills(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
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
            let stale = RunCgroup {
                dirs: Some(RunDirs::new(dir.clone(), None, None)),
                memory_home: None,
                free: Default::default(),
                memory_limit: None,
                ooms_before: 0,
            };
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
    dirs: Option<RunDirs>,
    /// The worker's own memory cgroup, where a runner returns to.
    memory_home: Option<PathBuf>,
    free: std::sync::Arc<std::sync::Mutex<Vec<RunDirs>>>,
    /// The memory limit set on this run, if any.
    memory_limit: Option<u64>,
    /// Out-of-memory kills in the cgroup before this run (the count lives as long as the cgroup).
    ooms_before: u64,
}

impl RunCgroup {
    /// The thread this run's job must run on: it lives in the run's pids cgroup.
    pub fn runner(&self) -> Option<Runner> {
        self.dirs.as_ref()?.runner.clone()
    }

    /// Spawns `cmd` inside the run's cgroups. Call it on the run's [`RunCgroup::runner`]: a child starts in the
    /// cgroup of the thread that spawns it. For a run with a memory limit the runner steps into the run's memory
    /// cgroup for the spawn and back, and only then is the limit set: a worker thread inside a memory cgroup at
    /// its limit could have the whole worker chosen by the kernel's out-of-memory killer.
    pub fn spawn(&mut self, cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
        let Some(dirs) = &self.dirs else { return cmd.spawn() };
        let (child, run) = match (self.memory_limit, &dirs.memory, &self.memory_home) {
            (Some(_), Some(run), Some(home)) => (spawn_inside(run, home, cmd), Some(run)),
            _ => return cmd.spawn(),
        };
        if let (Some(limit), Some(run)) = (self.memory_limit, run)
            && !set_memory_limit(run, limit)
        {
            self.memory_limit = None;
        }
        child
    }

    /// The memory limit this run had, if the kernel killed something of it for going past it.
    pub fn out_of_memory(&self) -> Option<u64> {
        let memory = self.dirs.as_ref()?.memory.as_deref()?;
        self.memory_limit.filter(|_| oom_kills(memory) > self.ooms_before)
    }

    /// SIGKILLs every process still in the cgroup; says how many there were.
    pub fn kill_all(&self) -> usize {
        let Some(dirs) = &self.dirs else { return 0 };
        // Usually only the runner thread is left (none in a dead worker's cgroup): nothing to list.
        if dirs.tasks().is_some_and(|n| n <= u64::from(dirs.runner.is_some())) {
            return 0;
        }
        kill_listed(&dirs.pids)
    }

    /// The run's pids cgroup directory, for [`kill_listed`] from another thread.
    pub fn pids_dir(&self) -> Option<PathBuf> {
        self.dirs.as_ref().map(|d| d.pids.clone())
    }
}

/// SIGKILLs every process listed in the pids cgroup at `dir` but the worker itself; says how many there were.
pub fn kill_listed(dir: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else { return 0 };
    // The worker itself is listed too: its runner thread lives here.
    let me = std::process::id() as i32;
    let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).filter(|p| *p > 1 && *p != me).collect();
    for &pid in &pids {
        // SAFETY: kill(2) on a pid read from this run's own cgroup; it touches no memory of ours.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    pids.len()
}

impl RunCgroup {
    /// Kills what is left and hands the cgroup back for the next run once it is empty. Usually it already is
    /// (the job's process group was killed); otherwise this waits, on the run's thread, for the killed processes
    /// to leave (half a second at most; a cgroup still busy then is not reused).
    pub fn finish(mut self) {
        for tries in 0.. {
            if self.kill_all() == 0 {
                return self.give_back();
            }
            if tries == 100 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        debug!("a run's cgroup is still busy; not reused");
    }

    /// Hands the cgroup back for the next run; call it only once it is empty (see [`RunCgroup::kill_all`]).
    pub fn recycle(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        if let Some(dirs) = self.dirs.take() {
            self.free.lock().unwrap_or_else(|p| p.into_inner()).push(dirs);
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

/// Spawns `cmd` from this thread inside the memory cgroup `run`, and steps back `home` after.
fn spawn_inside(run: &Path, home: &Path, cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    // SAFETY: gettid(2) has no preconditions.
    let tid = unsafe { libc::gettid() }.to_string();
    if let Err(e) = std::fs::write(run.join("tasks"), &tid) {
        debug!(cgroup = %run.display(), error = %e, "could not spawn inside the run's memory cgroup");
        return cmd.spawn();
    }
    let child = cmd.spawn();
    if let Err(e) = std::fs::write(home.join("tasks"), &tid) {
        tracing::warn!(error = %e, "a runner thread could not leave a run's memory cgroup");
    }
    child
}
