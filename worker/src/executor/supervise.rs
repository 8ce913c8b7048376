//! A job's run on its runner thread ([`crate::runner`]): spawn the program, then one `poll(2)` over its pidfd,
//! its two pipes and the stop request until it has ended and its pipes are read; stop it at its timeout or when
//! asked; reap it; empty its cgroup.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Ended, Ending, Invocation, PIPE_DRAIN_LIMIT};
use crate::limits::RunCgroup;
use crate::output::{Capture, Feed};

/// Without a pidfd (Linux before 5.3) the program's end is looked for this often.
const EXIT_CHECK_WITHOUT_PIDFD: Duration = Duration::from_millis(10);
/// How long a job's stop command (`docker kill`) may take before the run goes on to SIGTERM.
const STOP_COMMAND_LIMIT: Duration = Duration::from_secs(10);

/// Everything a run needs, handed to its thread.
pub(super) struct Plan {
    pub job_id: String,
    pub cmd: Command,
    pub inv: Invocation,
    pub working_dir: String,
    pub cgroup: Option<RunCgroup>,
    pub control: Arc<Control>,
    pub out: PathBuf,
    pub err: PathBuf,
    pub cap: u64,
    pub feed: Option<Feed>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    /// The worker's runtime, whose threads start the stop command outside the job's cgroup; `None` for a run
    /// without a stop command ([`super::run_supervised`]).
    pub runtime: Option<tokio::runtime::Handle>,
    /// The GPUs the run was given, held until it is over.
    pub gpus: Option<crate::gpus::Devices>,
}

/// What a run's task and its thread share: the stop request, and the job's process group for the task to kill
/// if it is dropped (the worker shutting down).
pub(super) struct Control {
    /// An eventfd: the task writes to it to stop the run.
    stop: OwnedFd,
    /// Set with the write: read before the spawn without a system call.
    stop_asked: std::sync::atomic::AtomicBool,
    group: Mutex<Group>,
    /// The run's pids cgroup, emptied too when the task is gone; set when the run starts.
    cgroup: std::sync::OnceLock<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    NotYet,
    Running(i32),
    /// About to be reaped or reaped: its pid may be anyone's soon, so it is not signalled from outside.
    Reaped,
    /// The task is gone: the job is killed as soon as it exists, and not started if it does not yet.
    Abandoned,
}

impl Control {
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd(2) takes a count and flags and returns a new descriptor or -1; it reads no memory of ours.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just created for us; nothing else owns it.
        let stop = unsafe { OwnedFd::from_raw_fd(fd) };
        let stop_asked = std::sync::atomic::AtomicBool::new(false);
        Ok(Control { stop, stop_asked, group: Mutex::new(Group::NotYet), cgroup: std::sync::OnceLock::new() })
    }

    /// The run's pids cgroup, once it has one.
    pub fn set_cgroup(&self, cgroup: Option<PathBuf>) {
        if let Some(cgroup) = cgroup {
            let _ = self.cgroup.set(cgroup);
        }
    }

    /// Whether a stop was asked for.
    fn stop_asked(&self) -> bool {
        self.stop_asked.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Asks the run to stop its job as at a timeout: its stop command, SIGTERM, SIGKILL after the grace.
    pub fn stop(&self) {
        self.stop_asked.store(true, std::sync::atomic::Ordering::Release);
        let one = 1u64.to_ne_bytes();
        // SAFETY: write(2) of 8 bytes we own to the eventfd we own.
        unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// The run's task is gone (the worker is stopping): kill the job's group and whatever else is in its cgroup
    /// now (its thread still reaps it), or never start it.
    pub fn abandon(&self) {
        let mut group = self.lock();
        match *group {
            Group::Running(pid) => {
                signal_group(pid, libc::SIGKILL);
                if let Some(cgroup) = self.cgroup.get() {
                    crate::limits::kill_listed(cgroup);
                }
                *group = Group::Abandoned;
            }
            Group::NotYet => *group = Group::Abandoned,
            Group::Reaped | Group::Abandoned => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One of the job's pipes and the file it goes to.
struct Pipe<'a> {
    /// `None` once it reached its end (or was never there).
    fd: Option<File>,
    capture: Capture<'a>,
}

/// Runs the plan's job to its end on this thread and says how it ended.
pub(super) fn run(plan: Plan) -> Ended {
    let Plan {
        job_id,
        mut cmd,
        inv,
        working_dir,
        mut cgroup,
        control,
        out,
        err,
        cap,
        feed,
        timeout,
        kill_grace,
        runtime,
        gpus: _gpus,
    } = plan;
    if *control.lock() == Group::Abandoned {
        if let Some(cgroup) = cgroup {
            cgroup.finish();
        }
        return Ended::SpawnFailed("the run was given up before its job started".into());
    }
    // Cancelled while it waited for its slot: it never starts.
    if control.stop_asked() {
        if let Some(cgroup) = cgroup {
            cgroup.recycle();
        }
        return Ended::NotStarted;
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let spawned = match &mut cgroup {
        Some(cgroup) => cgroup.spawn(&mut cmd),
        None => cmd.spawn(),
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let message = spawn_error(&inv.program, &working_dir, &e);
            let _ = std::fs::write(&err, format!("burst: {message}\n"));
            if let Some(cgroup) = cgroup {
                cgroup.finish();
            }
            return Ended::SpawnFailed(message);
        }
    };
    // The leader's pid is the group's id, and stays the job's until it is reaped below.
    let pid = child.id() as i32;
    {
        let mut group = control.lock();
        if *group == Group::Abandoned {
            signal_group(pid, libc::SIGKILL);
        } else {
            *group = Group::Running(pid);
        }
    }
    let mut pidfd = pidfd(pid).ok();
    let mut pipes = [
        Pipe {
            fd: child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
            capture: Capture::new(&out, cap, feed.clone()),
        },
        Pipe { fd: child.stderr.take().map(|p| File::from(OwnedFd::from(p))), capture: Capture::new(&err, cap, feed) },
    ];
    drop(cmd);
    // Most short jobs print nothing: the large buffer is made only for one that prints more than the small one.
    let (mut small, mut large) = ([0u8; 512], Vec::new());
    let mut how = Ending::Exited;
    // Running: until the timeout; stopping: until the SIGKILL; ended: until the pipes are given up.
    let mut deadline = timeout.map(|t| Instant::now() + t);
    let mut stopping = false;
    let mut ended: Option<(std::io::Result<ExitStatus>, Option<u64>)> = None;
    // Processes of the job's cgroup found (and killed) when the program ended; none: the cgroup is empty for good.
    let mut left_in_cgroup = 0;
    loop {
        if ended.is_some() && pipes.iter().all(|p| p.fd.is_none()) {
            break;
        }
        let mut fds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; 4];
        for (slot, pipe) in fds.iter_mut().zip(&pipes) {
            slot.fd = pipe.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        }
        if ended.is_none() {
            fds[2].fd = pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        }
        if !stopping && ended.is_none() {
            fds[3].fd = control.stop.as_raw_fd();
        }
        let mut wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if pidfd.is_none() && ended.is_none() {
            wait = Some(wait.map_or(EXIT_CHECK_WITHOUT_PIDFD, |w| w.min(EXIT_CHECK_WITHOUT_PIDFD)));
        }
        // Rounded up: a wait of 0 ms before a deadline would spin.
        let wait_ms = wait.map_or(-1, |w| w.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32);
        // SAFETY: poll(2) on an array of pollfds we own, whose length we pass; descriptors of -1 are ignored.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        let failed = (ready < 0).then(std::io::Error::last_os_error);
        if let Some(e) = failed.filter(|e| e.kind() != std::io::ErrorKind::Interrupted) {
            debug!(job = %job_id, error = %e, "poll failed");
            std::thread::sleep(Duration::from_millis(1));
        }
        for (slot, pipe) in fds.iter().zip(&mut pipes) {
            if slot.revents != 0 {
                read_once(pipe, &mut small, &mut large);
            }
        }
        if fds[3].revents != 0 {
            let mut count = [0u8; 8];
            // SAFETY: read(2) of at most 8 bytes into a buffer we own, from the eventfd we own.
            unsafe { libc::read(control.stop.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
            how = Ending::Stopped;
        }
        let now = Instant::now();
        if ended.is_none() && !stopping && (how == Ending::Stopped || deadline.is_some_and(|d| now >= d)) {
            if how == Ending::Exited {
                how = Ending::TimedOut;
            }
            debug!(job = %job_id, ?how, "stopping the job");
            begin_stop(pid, &inv, runtime.as_ref());
            stopping = true;
            deadline = Some(Instant::now() + kill_grace);
        } else if stopping && ended.is_none() && deadline.is_some_and(|d| now >= d) {
            signal_group(pid, libc::SIGKILL);
            deadline = None;
        } else if ended.is_some() && deadline.is_some_and(|d| now >= d) {
            // Still open PIPE_DRAIN_LIMIT after the program ended: held by an escaped process; given up, and
            // what it gave is marked incomplete.
            for pipe in pipes.iter_mut().filter(|p| p.fd.is_some()) {
                pipe.capture.give_up();
            }
            break;
        }
        let exit_seen = fds[2].revents != 0 || (pidfd.is_none() && ended.is_none());
        let exit = match ended.is_none() && exit_seen {
            true => exit_state(pid),
            false => Exit::Running,
        };
        if exit == Exit::Running && fds[2].revents != 0 {
            // The pidfd says it ended but waitid does not show it yet (a tracer holds it): look every few ms
            // rather than spin on a descriptor that stays ready.
            pidfd = None;
        }
        if exit != Exit::Running {
            // The program is gone; nothing it started may outlive it or keep its pipes open. The leader is still
            // a zombie, so the group's id cannot be anyone else's yet (unless it was reaped elsewhere: then the
            // group is not signalled).
            if exit == Exit::Exited {
                signal_group(pid, libc::SIGKILL);
            }
            *control.lock() = Group::Reaped;
            let status = child.wait();
            let out_of_memory = cgroup.as_ref().and_then(RunCgroup::out_of_memory);
            // What escaped the group but not the cgroup is killed now, so its pipes close; the cgroup goes back
            // to the pool once they are read.
            left_in_cgroup = cgroup.as_ref().map_or(0, RunCgroup::kill_all);
            ended = Some((status, out_of_memory));
            deadline = Some(Instant::now() + PIPE_DRAIN_LIMIT);
        }
    }
    match cgroup {
        // Nothing was left when the program ended, and nothing outside can start a process inside.
        Some(cgroup) if left_in_cgroup == 0 => cgroup.recycle(),
        Some(cgroup) => cgroup.finish(),
        None => {}
    }
    let [stdout, stderr] = pipes.map(|p| p.capture.captured());
    // The loop ends only once the program has.
    let (status, out_of_memory) =
        ended.unwrap_or_else(|| (Err(std::io::Error::other("the run ended without its program's status")), None));
    match status {
        Ok(status) => {
            Ended::Exited { status, stdout, stderr, how, launch_failures: inv.launch_failures, out_of_memory }
        }
        Err(e) => Ended::SpawnFailed(format!("waiting for {}: {e}", inv.program)),
    }
}

/// Reads what is there from a pipe that `poll` reported (data, its end, or an error) into its capture: one read,
/// which does not block.
fn read_once(pipe: &mut Pipe<'_>, small: &mut [u8; 512], large: &mut Vec<u8>) {
    let Some(mut fd) = pipe.fd.as_ref() else { return };
    let buf: &mut [u8] = if large.is_empty() { small } else { large };
    match fd.read(buf) {
        Ok(0) => pipe.fd = None,
        Ok(n) => {
            pipe.capture.write(&buf[..n]);
            if large.is_empty() {
                *large = vec![0u8; 64 * 1024];
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted || e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => pipe.fd = None,
    }
}

/// The job's stop command (a container's), then SIGTERM to its group. The command is started by the runtime's
/// threads, outside the job's cgroup (it must not count against the job's process limit), and waited for
/// [`STOP_COMMAND_LIMIT`] at most.
fn begin_stop(pid: i32, inv: &Invocation, runtime: Option<&tokio::runtime::Handle>) {
    if let Some(stop) = &inv.stop
        && let Some((program, args)) = stop.split_first()
        && let Some(runtime) = runtime
    {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
        let (done, stopped) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let _ = done.send(tokio::time::timeout(STOP_COMMAND_LIMIT, cmd.status()).await);
        });
        let _ = stopped.blocking_recv();
    }
    signal_group(pid, libc::SIGTERM);
}

/// Where a job's leader stands, seen without reaping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Exit {
    Running,
    /// Exited and unreaped: while it is a zombie its pid, the group's id, cannot be given to another process, so
    /// a group kill can only hit this job's own processes.
    Exited,
    /// Not this process's child any more (reaped elsewhere): its pid may be anyone's.
    Lost,
}

pub(super) fn exit_state(pid: i32) -> Exit {
    // SAFETY: waitid(2) writes into the siginfo we own; WNOWAIT leaves the child waitable (unreaped).
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        match (r, info.si_pid()) {
            (0, 0) => Exit::Running,
            (0, _) => Exit::Exited,
            _ => Exit::Lost,
        }
    }
}

fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; it reads no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel just created for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory of ours. The group
        // is the job's own (process_group(0) made the child its leader), so nothing else is hit.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

fn spawn_error(program: &str, dir: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound if !dir.is_empty() && !Path::new(dir).is_dir() => {
            format!("working directory {dir:?} does not exist")
        }
        std::io::ErrorKind::NotFound => {
            format!("cannot start {program:?}: no such file or command")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot start {program:?}: permission denied")
        }
        _ => format!("cannot start {program:?}: {e}"),
    }
}
