//! Runs one leased job to its end and describes how it ended.
//!
//! Each executor only turns a spec into an [`Invocation`] (an argv, never a shell line); running it is shared:
//! [`prepare`] makes it ready while its lease waits for a slot, [`Launch::start`] starts it on a runner thread
//! ([`crate::runner`], see [`supervise`]) where the slot frees, and [`Pending::finish`] waits for the answer:
//! 1. spawn the program in a process group of its own, stdin closed, stdout and stderr piped through a byte cap
//!    into `<output_dir>/<job id>.stdout` and `.stderr` (each created only if the job writes to it);
//! 2. wait for it, or for the timeout or a stop: then SIGTERM the group, and SIGKILL it after the grace period;
//! 3. SIGKILL the group once the program has exited, so no grandchild outlives its job (or holds the pipes);
//! 4. report exit code or signal, output paths and truncation.

mod docker;
mod process;
mod python;
mod supervise;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use burst_proto::v1::job_spec::Kind;
use burst_proto::v1::{JobResult, JobSpec, Lease, Reason};
use tokio::sync::oneshot;

use crate::config::ExecConfig;
use crate::limits::RunCgroup;
use crate::output::{self, Captured};

/// After the program exits, how long its output pipes may stay open (held by an escaped grandchild) before the
/// capture stops reading.
pub const PIPE_DRAIN_LIMIT: Duration = Duration::from_secs(2);

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

/// The argv for a spec, given the GPUs the run was given (`gpus`, see [`crate::gpus`]). Errors are input errors:
/// the job is reported as rejected.
pub fn invocation(
    job_id: &str,
    spec: &JobSpec,
    cfg: &ExecConfig,
    gpus: Option<&crate::gpus::Devices>,
) -> Result<Invocation, String> {
    match &spec.kind {
        Some(Kind::Process(p)) => process::invocation(p),
        Some(Kind::Python(p)) => python::invocation(p, &cfg.python),
        Some(Kind::Docker(d)) => docker::invocation(job_id, spec, d, &cfg.docker, gpus.map(crate::gpus::Devices::list)),
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
    let (launch, pending) = prepare(lease, cfg, feed);
    let _ = launch.start(());
    pending.finish(stop).await.0
}

/// Makes `lease`'s job ready to run: the [`Launch`] starts it (where its slot frees), the [`Pending`] waits for it
/// and describes how it ended. Dropping the `Pending` gives the run up: its job is killed, or never started.
pub fn prepare(lease: &Lease, cfg: &ExecConfig, feed: Option<output::Feed>) -> (Launch, Pending) {
    let (answer, answered) = oneshot::channel();
    let no_spec = JobSpec::default();
    let spec = lease.spec.as_ref().unwrap_or(&no_spec);
    let paths = output_paths(&cfg.output_dir, &lease.job_id);
    let (how, control) = match (&paths, cfg.noop) {
        (_, true) => (How::Known(Ended::Noop), None),
        (Ok((out, err)), false) => match plan(lease, spec, cfg, (out, err), feed) {
            Ok((plan, cgroups)) => {
                let control = plan.control.clone();
                (How::Run { plan: Box::new(plan), cgroups }, Some(control))
            }
            Err(ended) => (How::Known(ended), None),
        },
        (Err(message), false) => (How::Known(Ended::Rejected(message.clone())), None),
    };
    let pending = Pending {
        answered,
        abandon: control.map(Abandon),
        lease: lease.to_ref(),
        timeout_ms: spec.timeout_ms,
        output_tail_bytes: spec.output_tail_bytes,
        paths,
    };
    (Launch { how, answer }, pending)
}

/// A job ready to start, or a job whose end is known without running it.
pub struct Launch {
    how: How,
    answer: oneshot::Sender<Answer>,
}

enum How {
    Known(Ended),
    Run { plan: Box<supervise::Plan>, cgroups: Option<crate::limits::CgroupOrder> },
}

/// What a run's thread answers.
struct Answer {
    ended: Ended,
    started_at_ms: u64,
    /// Taken on the run's thread before its slot goes to the next run, so that two runs of a slot never overlap
    /// in what they report.
    finished_at_ms: u64,
    /// How long the program ran; `None` if it never started.
    took: Option<Duration>,
}

impl Answer {
    /// An end known without running anything, answered now.
    fn now(ended: Ended, took: Option<Duration>) -> Self {
        let now = burst_proto::now_ms();
        Answer { ended, started_at_ms: now, finished_at_ms: now, took }
    }
}

impl Launch {
    /// Gives the run up before it started: it never will, and its [`Pending`] says [`Ran::Withdrawn`].
    pub fn withdraw(self) {
        let _ = self.answer.send(Answer::now(Ended::Withdrawn, None));
    }

    /// Starts the run on its runner thread (its cgroup's, or a pooled one); `hold` is dropped on that thread the
    /// moment the job is over (its process reaped, its output read, its cgroup emptied), before the answer is
    /// sent. A slot held this way goes to the next run at once, and that run may start on this very thread.
    /// Returns `hold` if the run did not keep it: its end was known without running anything.
    pub fn start<H: Send + 'static>(self, hold: H) -> Option<H> {
        let Launch { how, answer } = self;
        let (mut plan, cgroups) = match how {
            How::Known(ended) => {
                let _ = answer.send(Answer::now(ended, Some(Duration::ZERO)));
                return Some(hold);
            }
            How::Run { plan, cgroups } => (plan, cgroups),
        };
        // Taken now, where the slot freed. On a runner (whose run just ended) only what exists is used: the
        // cgroup that run gave back (the first one free, whose runner is this thread) or this pooled runner. A
        // thread started here would be born in this runner's cgroup, so when one is needed the runtime's threads
        // start the run.
        let here = crate::runner::on_runner();
        let (cgroup, idle) = match &cgroups {
            Some(order) if here => (order.take_free(), None),
            Some(order) => (order.take(), None),
            None => (None, crate::runner::idle_runner()),
        };
        // (A worker's plan always has its runtime.)
        if here
            && cgroup.is_none()
            && idle.is_none()
            && let Some(runtime) = plan.runtime.clone()
        {
            let launch = Launch { how: How::Run { plan, cgroups }, answer };
            // A runtime shut down drops the launch, and `hold` with it.
            runtime.spawn(async move { launch.start(hold) });
            return None;
        }
        plan.cgroup = cgroup;
        plan.control.set_cgroup(plan.cgroup.as_ref().and_then(RunCgroup::pids_dir));
        let runner = plan.cgroup.as_ref().and_then(RunCgroup::runner);
        let work = move || {
            let started_at_ms = burst_proto::now_ms();
            let began = std::time::Instant::now();
            let ended = supervise::run(*plan);
            let took = (!matches!(ended, Ended::NotStarted)).then(|| began.elapsed());
            let finished_at_ms = burst_proto::now_ms();
            crate::runner::idle_from_now();
            drop(hold);
            let _ = answer.send(Answer { ended, started_at_ms, finished_at_ms, took });
        };
        // On failure `work` is dropped unrun: its answer is never sent, and the `Pending` says so.
        let _ = match (runner, idle) {
            (Some(runner), _) => runner.run(work),
            (None, Some(idle)) => crate::runner::run_pooled(idle, work),
            (None, None) => crate::runner::pooled(work),
        };
        None
    }
}

/// A run on its way: waits for its end and describes it.
pub struct Pending {
    answered: oneshot::Receiver<Answer>,
    /// Dropped before the run ends (the worker is shutting down): the job's group is killed at once.
    abandon: Option<Abandon>,
    lease: burst_proto::v1::LeaseRef,
    /// What of the job's spec describing its end needs.
    timeout_ms: u64,
    output_tail_bytes: u32,
    paths: Result<(PathBuf, PathBuf), String>,
}

impl Pending {
    /// Waits for the run to end (stopping it if `stop` fires first) and returns its result, with how long the
    /// program ran or why it did not.
    pub async fn finish(self, stop: oneshot::Receiver<()>) -> (JobResult, Ran) {
        let Pending { mut answered, abandon, lease, timeout_ms, output_tail_bytes, paths } = self;
        let cancelled = async {
            if stop.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let answer = tokio::select! {
            answer = &mut answered => answer,
            () = cancelled => match &abandon {
                Some(Abandon(control)) => {
                    control.stop();
                    answered.await
                }
                // Nothing to run (its end is known): it ends as cancelled, whenever its slot would have come.
                None => Ok(Answer::now(Ended::NotStarted, None)),
            },
        };
        drop(abandon);
        let Answer { ended, started_at_ms, finished_at_ms, took } =
            answer.unwrap_or_else(|_| Answer::now(Ended::SpawnFailed("no thread could run the job".into()), None));
        let ran = match (&ended, took) {
            (Ended::Withdrawn, _) => Ran::Withdrawn,
            (_, Some(took)) => Ran::Took(took),
            (_, None) => Ran::NotStarted,
        };
        let mut result = JobResult { lease: Some(lease), started_at_ms, finished_at_ms, ..JobResult::default() };
        describe(&mut result, ended, (timeout_ms, output_tail_bytes), &paths);
        (result, ran)
    }
}

/// How long a run's program ran, or why it did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ran {
    Took(Duration),
    /// Stopped before it started, or its end was known without running anything.
    NotStarted,
    /// Given up before its slot came ([`Launch::withdraw`]): the result is not the job's, and its lease goes back.
    Withdrawn,
}

/// Fills in how the run ended.
fn describe(
    result: &mut JobResult,
    ended: Ended,
    (timeout_ms, output_tail_bytes): (u64, u32),
    paths: &Result<(PathBuf, PathBuf), String>,
) {
    // A path is reported only for a file that exists: one the job wrote to (or burst's own spawn error).
    let (stdout_path, stderr_path) = match paths {
        Ok((out, err)) => (out.display().to_string(), err.display().to_string()),
        Err(_) => Default::default(),
    };
    match ended {
        Ended::Noop => {
            result.reason = Reason::Exited as i32;
            result.exit_code = Some(0);
            return;
        }
        Ended::NotStarted | Ended::Withdrawn => {
            result.reason = Reason::Cancelled as i32;
            result.message = CANCELLED_BEFORE_START.into();
            return;
        }
        Ended::Exited { status, stdout, stderr, how, launch_failures, out_of_memory } => {
            result.stdout_truncated = stdout.truncated;
            result.stderr_truncated = stderr.truncated;
            if stdout.created {
                result.stdout_path = stdout_path;
            }
            if stderr.created {
                result.stderr_path = stderr_path;
            }
            describe_exit(result, status, how, timeout_ms);
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
    if let (Ok((out, err)), n @ 1..) = (paths, output_tail_bytes) {
        result.output_tail = crate::output::tail(out, err, n as usize);
    }
}

/// Why a lease whose start was confirmed never ran: cancelled while it waited for a slot.
const CANCELLED_BEFORE_START: &str = "the job was cancelled before it started";

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
    /// Stopped before it was spawned (it waited for a slot).
    NotStarted,
    /// Given up before its slot came ([`Launch::withdraw`]): its lease goes back to the controller.
    Withdrawn,
    /// The no-op executor's (`ExecConfig::noop`): a success, with nothing run.
    Noop,
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

/// The run of `lease`'s job, and where to take its cgroup from (the worker's cgroups, the job's process and
/// memory limits); or how it ended without running.
fn plan(
    lease: &Lease,
    spec: &JobSpec,
    cfg: &ExecConfig,
    (out, err): (&Path, &Path),
    feed: Option<output::Feed>,
) -> Result<(supervise::Plan, Option<crate::limits::CgroupOrder>), Ended> {
    // A worker with GPUs names a run's own (none for a job that asks for none); held until the run is over.
    let gpus = cfg.gpus.any().then(|| cfg.gpus.take(spec.resources.map_or(0, |r| r.gpus)));
    let inv = invocation(&lease.job_id, spec, cfg, gpus.as_ref()).map_err(Ended::Rejected)?;
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
        .env(crate::sweep::RUN_VAR, &token);
    // After the job's own env: a job cannot name devices it was not given.
    if let Some(gpus) = &gpus {
        cmd.env("CUDA_VISIBLE_DEVICES", gpus.list()).env("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    }
    if !spec.working_dir.is_empty() {
        cmd.current_dir(&spec.working_dir);
    }
    // A container's memory is limited by docker itself (`--memory`); a limit on the `docker run` client would
    // kill the client and leave the container running.
    let memory = match &spec.kind {
        Some(Kind::Docker(_)) => 0,
        _ => spec.resources.as_ref().map_or(0, |r| r.memory_bytes),
    };
    let control =
        supervise::Control::new().map_err(|e| Ended::SpawnFailed(format!("cannot start {:?}: {e}", inv.program)))?;
    let plan = supervise::Plan {
        job_id: lease.job_id.clone(),
        cmd,
        inv,
        working_dir: spec.working_dir.clone(),
        cgroup: None,
        control: Arc::new(control),
        out: out.to_path_buf(),
        err: err.to_path_buf(),
        cap: cfg.output_cap,
        feed,
        timeout: (spec.timeout_ms > 0).then(|| Duration::from_millis(spec.timeout_ms)),
        kill_grace: cfg.kill_grace,
        runtime: Some(tokio::runtime::Handle::current()),
        gpus,
    };
    Ok((plan, cfg.run_cgroup(memory)))
}

/// Runs `cmd` to its end on this thread, supervised as a job's run is (in a process group of its own, its output
/// captured into `out` and `err`, each made once there is output and kept up to `cap` bytes, its end seen on a
/// pidfd, its group killed when it ends, its pipes read for [`PIPE_DRAIN_LIMIT`] after), with no cgroup, lease,
/// timeout or report: `burst bench`'s isolated spawner, the best a scheduler that runs jobs this way could do.
pub fn run_supervised(cmd: Command, (out, err): (&Path, &Path), cap: u64) -> std::io::Result<std::process::ExitStatus> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let plan = supervise::Plan {
        job_id: program.clone(),
        cmd,
        inv: Invocation { program, args: Vec::new(), stop: None, launch_failures: &[] },
        working_dir: String::new(),
        cgroup: None,
        control: Arc::new(supervise::Control::new()?),
        out: out.to_path_buf(),
        err: err.to_path_buf(),
        cap,
        feed: None,
        timeout: None,
        kill_grace: Duration::ZERO,
        runtime: None,
        gpus: None,
    };
    match supervise::run(plan) {
        Ended::Exited { status, .. } => Ok(status),
        Ended::SpawnFailed(message) | Ended::Rejected(message) => Err(std::io::Error::other(message)),
        Ended::NotStarted | Ended::Withdrawn | Ended::Noop => Err(std::io::Error::other("the program did not run")),
    }
}

/// Kills the job's process group if the run's task is dropped before the run ends, so that a job whose worker
/// is stopping leaves no process behind; on the normal path the group is reaped by then and nothing happens.
struct Abandon(Arc<supervise::Control>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.abandon();
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
