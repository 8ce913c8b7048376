//! Runs one leased job to its end and describes how it ended.
//!
//! Each executor only turns a spec into an [`Invocation`] (an argv, never a shell line); running it is shared:
//! 1. spawn the program in a process group of its own, stdin closed, stdout and stderr piped through a byte cap
//!    into `<output_dir>/<job id>.stdout` and `.stderr` (each created only if the job writes to it);
//! 2. wait for it, or for the timeout: then SIGTERM the group, and SIGKILL it after the grace period;
//! 3. SIGKILL the group once the program has exited, so no grandchild outlives its job (or holds the pipes);
//! 4. report exit code or signal, output paths and truncation.

mod docker;
mod process;
mod python;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use burst_proto::v1::job_spec::Kind;
use burst_proto::v1::{JobResult, JobSpec, Lease, Reason};
use tokio::process::Command;
use tokio::sync::oneshot;
use tracing::debug;

use crate::config::ExecConfig;
use crate::output::{self, Captured};

/// After the program exits, how long its output pipes may stay open (held by an escaped grandchild) before the
/// capture stops reading.
const PIPE_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// A program to run for a job, and how to stop it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    /// A command to run, besides signalling the process group, when the job must be stopped (a container).
    pub stop: Option<Vec<String>>,
    /// Exit codes by which the program says it could not launch the job at all (`docker run`'s 125, 126, 127:
    /// no such image, not executable, not found). Such a job ends as a spawn error and is never retried.
    pub launch_failures: &'static [i32],
}

/// The argv for a spec. Errors are input errors: the job is reported as rejected.
pub fn invocation(job_id: &str, spec: &JobSpec, cfg: &ExecConfig) -> Result<Invocation, String> {
    match &spec.kind {
        Some(Kind::Process(p)) => process::invocation(p),
        Some(Kind::Python(p)) => python::invocation(p, &cfg.python),
        Some(Kind::Docker(d)) => docker::invocation(job_id, spec, d, &cfg.docker),
        None => Err("spec has no kind".into()),
    }
}

/// The names of the worker's own `BURST_*` environment variables, read once.
fn worker_settings() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).filter(|k| k.starts_with("BURST_")).collect()
    })
}

/// Runs `lease`'s job and returns its result. Never panics on the job's behaviour.
/// When `stop` fires (the job was cancelled), the job is stopped like a timed-out one and reported `Cancelled`;
/// a dropped `stop` sender means nobody will ever ask. What the job writes bumps `feed` (see [`output::Feeds`]).
pub async fn run(
    lease: &Lease,
    cfg: &ExecConfig,
    stop: oneshot::Receiver<()>,
    feed: Option<output::Feed>,
) -> JobResult {
    let started_at_ms = burst_proto::now_ms();
    let mut result = JobResult { lease: Some(lease.to_ref()), started_at_ms, ..JobResult::default() };
    if cfg.noop {
        result.reason = Reason::Exited as i32;
        result.exit_code = Some(0);
        result.finished_at_ms = burst_proto::now_ms();
        return result;
    }
    let spec = lease.spec.clone().unwrap_or_default();
    let paths = output_paths(&cfg.output_dir, &lease.job_id);
    let outcome = match &paths {
        Ok((out, err)) => execute(lease, &spec, cfg, (out, err), stop, feed).await,
        Err(message) => Ended::Rejected(message.clone()),
    };
    // A path is reported only for a file that exists: one the job wrote to (or burst's own spawn error).
    let (stdout_path, stderr_path) = match &paths {
        Ok((out, err)) => (out.display().to_string(), err.display().to_string()),
        Err(_) => Default::default(),
    };
    match outcome {
        Ended::Exited { status, stdout, stderr, how, launch_failures, out_of_memory } => {
            result.stdout_truncated = stdout.truncated;
            result.stderr_truncated = stderr.truncated;
            if stdout.created {
                result.stdout_path = stdout_path;
            }
            if stderr.created {
                result.stderr_path = stderr_path;
            }
            describe_exit(&mut result, status, how, spec.timeout_ms);
            if let Some(limit) = out_of_memory.filter(|_| result.reason() == Reason::Signaled) {
                result.message = format!("{}: out of memory (its limit is {limit} bytes)", result.message);
            }
            if how == Ending::Exited && result.exit_code.is_some_and(|c| launch_failures.contains(&c)) {
                result.reason = Reason::SpawnError as i32;
                let code = result.exit_code.unwrap_or_default();
                result.message = format!("the container could not be started (docker run exited {code}); see stderr");
            }
        }
        Ended::SpawnFailed(message) => {
            result.stderr_path = stderr_path;
            result.reason = Reason::SpawnError as i32;
            result.message = message;
        }
        Ended::Rejected(message) => {
            result.reason = Reason::RejectedInput as i32;
            result.message = message;
        }
    }
    if let (Ok((out, err)), n @ 1..) = (&paths, spec.output_tail_bytes) {
        result.output_tail = crate::output::tail(out, err, n as usize);
    }
    result.finished_at_ms = burst_proto::now_ms();
    result
}

/// The result of a lease whose job was cancelled after its start was confirmed but before it was spawned (it
/// waited for a slot): it never ran.
pub fn stopped_before_start(lease: &Lease) -> JobResult {
    let now = burst_proto::now_ms();
    JobResult {
        lease: Some(lease.to_ref()),
        started_at_ms: now,
        finished_at_ms: now,
        reason: Reason::Cancelled as i32,
        message: "the job was cancelled before it started".into(),
        ..JobResult::default()
    }
}

enum Ended {
    Exited {
        status: ExitStatus,
        stdout: Captured,
        stderr: Captured,
        how: Ending,
        launch_failures: &'static [i32],
        /// The run's memory limit, when the kernel killed something of it for going past it.
        out_of_memory: Option<u64>,
    },
    SpawnFailed(String),
    Rejected(String),
}

/// Why a started job's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// On its own.
    Exited,
    /// Stopped at its run timeout.
    TimedOut,
    /// Stopped because the job was cancelled.
    Stopped,
}

async fn execute(
    lease: &Lease,
    spec: &JobSpec,
    cfg: &ExecConfig,
    (out, err): (&Path, &Path),
    stop_signal: oneshot::Receiver<()>,
    feed: Option<output::Feed>,
) -> Ended {
    let inv = match invocation(&lease.job_id, spec, cfg) {
        Ok(inv) => inv,
        Err(message) => return Ended::Rejected(message),
    };
    let token = crate::sweep::run_token(&cfg.worker_id, &lease.job_id, lease.epoch);
    let mut cmd = Command::new(&inv.program);
    // The worker's own settings (its token, certificate paths) are not the job's business.
    for name in worker_settings() {
        cmd.env_remove(name);
    }
    cmd.args(&inv.args)
        .envs(&spec.env)
        .env("BURST_JOB_ID", &lease.job_id)
        .env("BURST_ATTEMPT", lease.attempt.to_string())
        .env("BURST_WORKER_ID", &cfg.worker_id)
        .env(crate::sweep::RUN_VAR, &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if !spec.working_dir.is_empty() {
        cmd.current_dir(&spec.working_dir);
    }
    // A container's memory is limited by docker itself (`--memory`); a limit on the `docker run` client would
    // kill the client and leave the container running.
    let memory = match &spec.kind {
        Some(Kind::Docker(_)) => 0,
        _ => spec.resources.as_ref().map_or(0, |r| r.memory_bytes),
    };
    let mut cgroup = cfg.exec_cgroup(memory);
    let spawned = match &mut cgroup {
        Some(cgroup) => cgroup.spawn(cmd).await,
        None => cmd.spawn(),
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let message = spawn_error(&inv.program, &spec.working_dir, &e);
            let _ = std::fs::write(err, format!("burst: {message}\n"));
            return Ended::SpawnFailed(message);
        }
    };
    let group = child.id().map(|pid| pid as i32);
    let mut kill_group_if_dropped = GroupGuard(group);
    // Both pipes are read within this run's task, beside the wait for the program (no task of their own), until
    // they close; one that an escaped process holds open is given up alone, PIPE_DRAIN_LIMIT after the program
    // ended.
    let cap = cfg.output_cap;
    let (ended, ended_rx) = tokio::sync::watch::channel(false);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let out_feed = feed.clone();
    let captures = async {
        tokio::join!(capture(stdout, out, cap, out_feed, ended_rx.clone()), capture(stderr, err, cap, feed, ended_rx))
    };

    let timeout = (spec.timeout_ms > 0).then(|| Duration::from_millis(spec.timeout_ms));
    let deadline = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let cancelled = async {
        if stop_signal.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let waited = async {
        // The leader is waited for without being reaped: while it is a zombie its pid, the group's id, cannot be
        // given to another process, so the group kill below can only hit this job's own processes.
        let how = tokio::select! {
            exited = leader_exited(&mut child, group) => Ok(exited),
            _ = deadline => Err(Ending::TimedOut),
            _ = cancelled => Err(Ending::Stopped),
        };
        let how = match how {
            Ok(exited) => exited.map(|()| Ending::Exited),
            Err(how) => {
                debug!(job = %lease.job_id, ?how, "stopping the job");
                stop(&mut child, group, &inv, cfg.kill_grace).await.map(|()| how)
            }
        };
        // The program is gone; nothing it started may outlive it or keep its pipes open.
        signal_group(group, libc::SIGKILL);
        let status = match how {
            Ok(how) => child.wait().await.map(|status| (status, how)),
            Err(e) => Err(e),
        };
        // Reaped: from now on its pid may be anyone's, and the group is not signalled again.
        kill_group_if_dropped.0 = None;
        let out_of_memory = cgroup.as_ref().and_then(|c| c.out_of_memory());
        if let Some(cgroup) = cgroup {
            cgroup.finish().await;
        }
        ended.send_replace(true);
        (status, out_of_memory)
    };
    let ((status, out_of_memory), (stdout, stderr)) = tokio::join!(waited, captures);
    let (status, how) = match status {
        Ok(ended) => ended,
        Err(e) => return Ended::SpawnFailed(format!("waiting for {}: {e}", inv.program)),
    };
    Ended::Exited { status, stdout, stderr, how, launch_failures: inv.launch_failures, out_of_memory }
}

/// Copies one of the job's pipes into its file (see [`output::capture`]), nothing for a pipe it does not have;
/// gives up [`PIPE_DRAIN_LIMIT`] after `ended` turns true (the program ended) if the pipe is still open then.
async fn capture(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    path: &Path,
    cap: u64,
    feed: Option<output::Feed>,
    mut ended: tokio::sync::watch::Receiver<bool>,
) -> Captured {
    let Some(pipe) = pipe else { return Captured::default() };
    let given_up = async move {
        let _ = ended.wait_for(|ended| *ended).await;
        tokio::time::sleep(PIPE_DRAIN_LIMIT).await;
    };
    tokio::select! {
        captured = output::capture(pipe, path, cap, feed) => captured,
        () = given_up => Captured::default(),
    }
}

/// SIGTERM the job's group (and its stop command), then SIGKILL after `grace`; returns once the leader has
/// exited, not reaped (see [`leader_exited`]).
async fn stop(
    child: &mut tokio::process::Child,
    group: Option<i32>,
    inv: &Invocation,
    grace: Duration,
) -> std::io::Result<()> {
    if let Some(stop) = &inv.stop
        && let Some((program, args)) = stop.split_first()
    {
        let _ = Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().await;
    }
    signal_group(group, libc::SIGTERM);
    match tokio::time::timeout(grace, leader_exited(child, group)).await {
        Ok(exited) => exited,
        Err(_) => {
            signal_group(group, libc::SIGKILL);
            leader_exited(child, group).await
        }
    }
}

/// Waits until the job's leader (`pid`) has exited, leaving it unreaped: a zombie keeps its pid, so the job's
/// process-group id cannot be reused by another process until [`tokio::process::Child::wait`] reaps it. Uses a
/// pidfd (Linux 5.3+); where there is none, falls back to reaping, which leaves a short window for reuse.
async fn leader_exited(child: &mut tokio::process::Child, pid: Option<i32>) -> std::io::Result<()> {
    if let Some(pid) = pid
        && let Ok(fd) = pidfd(pid)
    {
        // SAFETY: `fd` is an OwnedFd moved into the AsyncFd, so it stays open and the same until it is dropped.
        let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let _ready = fd.readable().await?;
        return Ok(());
    }
    child.wait().await.map(|_| ())
}

fn pidfd(pid: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; it reads no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel just created for us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Kills the job's process group when dropped, so a job whose worker task is stopped (worker shutdown) does not
/// leave processes behind. On the normal path the group is already gone and the signal finds nobody.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, libc::SIGKILL);
    }
}

fn signal_group(group: Option<i32>, signal: i32) {
    if let Some(pgid) = group.filter(|&p| p > 0) {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory of ours. The group
        // is the job's own (process_group(0) made the child its leader), so nothing else is hit.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

fn describe_exit(result: &mut JobResult, status: ExitStatus, how: Ending, timeout_ms: u64) {
    use std::os::unix::process::ExitStatusExt;
    result.exit_code = status.code();
    result.signal = status.signal();
    if how == Ending::TimedOut {
        result.reason = Reason::Timeout as i32;
        result.message = format!("killed after its {timeout_ms} ms timeout");
    } else if how == Ending::Stopped {
        result.reason = Reason::Cancelled as i32;
        result.message = "stopped: the job was cancelled".into();
    } else if let Some(sig) = status.signal() {
        result.reason = Reason::Signaled as i32;
        result.message = format!("killed by signal {sig}");
    } else {
        result.reason = Reason::Exited as i32;
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

/// `<dir>/<job id>.stdout` and `.stderr`, after checking the id cannot point anywhere else (an array index's id,
/// `<array id>:<index>`, has a colon).
pub fn output_paths(dir: &Path, job_id: &str) -> Result<(PathBuf, PathBuf), String> {
    let safe = !job_id.is_empty()
        && job_id.len() <= 128
        && !job_id.starts_with('.')
        && job_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !safe {
        return Err(format!("job id {job_id:?} cannot name an output file"));
    }
    Ok((dir.join(format!("{job_id}.stdout")), dir.join(format!("{job_id}.stderr"))))
}

#[cfg(test)]
mod tests;
