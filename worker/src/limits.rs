//! What a job may use, so that no job can hurt its worker or the jobs beside it.
//!
//! - rlimits set in the child before `exec`: open files, the size of any file it writes, no core dumps.
//! - A pids cgroup per run where the host lets the worker make one (cgroup v1 `pids` hierarchy, writable — root
//!   in a container, or a delegated subtree): `pids.max` bounds the job's whole process tree, so a fork bomb
//!   stalls inside its own cgroup while the worker and other jobs keep forking. At the run's end every process
//!   left in the cgroup is killed (escapees from the process group included) and the cgroup removed.
//! - Without such a cgroup, `RLIMIT_NPROC` is the fallback: it counts every process of the worker's user, so it
//!   is set high (it bounds a bomb, but a bomb can then starve other jobs' forks until it is killed).
//!
//! # Guarantees
//! The child writes its own pid into the cgroup before `exec`, so nothing it starts runs outside it.

use std::ffi::CString;
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
    base: PathBuf,
}

impl Cgroups {
    /// Finds the worker's own place in a writable cgroup v1 `pids` hierarchy and makes `burst-<worker>` under it.
    pub fn detect(worker_id: &str) -> Option<Self> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == "pids").then(|| path.trim_start_matches('/').to_string())
        })?;
        let base = Path::new("/sys/fs/cgroup/pids").join(path).join(format!("burst-{worker_id}"));
        match std::fs::create_dir_all(&base) {
            Ok(()) if base.join("pids.max").exists() => {
                info!(cgroup = %base.display(), "jobs run in their own pids cgroups");
                Some(Cgroups { base })
            }
            _ => {
                debug!("no writable pids cgroup; RLIMIT_NPROC bounds jobs instead");
                None
            }
        }
    }

    /// A cgroup for one run, holding at most `max_pids` processes.
    pub fn run(&self, token: &str, max_pids: u64) -> Option<RunCgroup> {
        let dir = self.base.join(token.replace('/', "_"));
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(dir.join("pids.max"), max_pids.to_string()).ok()?;
        let procs = CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).ok()?;
        Some(RunCgroup { dir, procs })
    }
}

/// One run's cgroup; killed and removed when dropped.
pub struct RunCgroup {
    dir: PathBuf,
    procs: CString,
}

impl RunCgroup {
    /// SIGKILLs every process still in the cgroup.
    pub fn kill_all(&self) {
        let Ok(text) = std::fs::read_to_string(self.dir.join("cgroup.procs")) else { return };
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|p| *p > 1) {
            // SAFETY: kill(2) on a pid read from this run's own cgroup; it touches no memory of ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl RunCgroup {
    /// Kills what is left and removes the cgroup once its processes are gone (off the async threads: killed
    /// processes take a moment to leave).
    pub async fn finish(self) {
        let _ = tokio::task::spawn_blocking(move || {
            for _ in 0..100 {
                self.kill_all();
                if std::fs::remove_dir(&self.dir).is_ok() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            debug!(cgroup = %self.dir.display(), "cgroup still busy; left behind");
        })
        .await;
    }
}

impl Drop for RunCgroup {
    // A run dropped without `finish` (its task was aborted) still leaves no process behind.
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Installs the limits in `cmd`'s child, between fork and exec.
pub fn apply(cmd: &mut tokio::process::Command, limits: JobLimits, cgroup: Option<&RunCgroup>) {
    let procs = cgroup.map(|c| c.procs.clone());
    let nproc = if procs.is_some() { None } else { Some(limits.max_processes.max(4096)) };
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe calls
    // (getpid, open, write, close, setrlimit) on memory prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(path) = &procs {
                join_cgroup(path)?;
            }
            set(libc::RLIMIT_NOFILE, limits.max_open_files)?;
            set(libc::RLIMIT_FSIZE, limits.max_file_bytes)?;
            set(libc::RLIMIT_CORE, 0)?;
            if let Some(n) = nproc {
                set(libc::RLIMIT_NPROC, n)?;
            }
            Ok(())
        });
    }
}

fn set(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: setrlimit(2) reads the struct we pass; async-signal-safe.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        return Ok(());
    }
    // Lowering a limit never fails; raising above the hard limit does: keep the lower one we inherited.
    let mut have = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut have) } == 0 && have.rlim_max < value {
        return Ok(());
    }
    Err(std::io::Error::last_os_error())
}

/// Writes this process's pid into `procs` (the cgroup's `cgroup.procs`), without allocating.
fn join_cgroup(procs: &CString) -> std::io::Result<()> {
    // SAFETY: getpid/open/write/close are async-signal-safe; the path and buffer are ours.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = [0u8; 20];
        let digits = decimal(libc::getpid() as u64, &mut buf);
        let n = libc::write(fd, digits.as_ptr().cast(), digits.len());
        libc::close(fd);
        if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }
}

/// `n` in decimal, in the tail of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_written_in_decimal_without_allocating() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4_194_304, &mut buf), b"4194304");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
