//! The job state machine: the one place where a job's state changes.
//!
//! ```text
//! Queued ──lease──▶ Leased(holder) ──start──▶ Running(holder) ──finish──▶ Succeeded | Failed | Cancelled
//!   ▲                  │ └─transfer (steal): epoch+1, new holder      │  └─ failed, attempts left:
//!   ├──── release (lease lost: worker dead or re-registered) ──┘     Queued again after a backoff
//!   │     (attempt+1 if it had started)
//! any non-terminal state ──cancel──▶ Cancelled;  Queued | Leased ──queue deadline──▶ Failed
//! ```
//!
//! # Guarantees
//! - Every report (start, finish) names the holder it came from: worker, session and epoch. Only the current
//!   holder at the current epoch is obeyed; anything else is [`Refused`] and changes nothing (fencing).
//! - Terminal states are final: no transition leaves them.
//! - Each lease gets a fresh epoch, so a report from an earlier lease of the same job is stale by construction.
//! - A job that was leased but never started goes back to the queue without spending an attempt: a queued job is
//!   never run twice. A job lost while running spends one of [`MAX_LOSSES`] lost runs.

use std::sync::Arc;

use std::time::Duration;

use burst_proto::v1::{ArrayStatus, Attempt, JobResult, JobSpec, JobState, JobStatus, Reason};

use crate::store::JobRecord;

pub type JobId = String;
pub type WorkerId = String;
pub type Epoch = u64;

/// Runs a job may lose to its worker's death before it fails with `WorkerLost`. Three tolerates a rolling
/// restart plus one crash without letting a job that kills its workers cycle forever.
pub const MAX_LOSSES: u32 = 3;
/// First retry backoff when the spec names none: long enough for a flaky dependency to recover.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Retry backoffs double up to this: a job retried for hours should still come back within minutes.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(300);

/// Who holds a lease: the worker, its registration session, and the lease's epoch (the fencing token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub worker: WorkerId,
    pub session: u64,
    pub epoch: Epoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Queued,
    Leased(Holder),
    Running(Holder),
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub fn proto(&self) -> JobState {
        match self {
            State::Queued => JobState::Queued,
            State::Leased(_) => JobState::Leased,
            State::Running(_) => JobState::Running,
            State::Succeeded => JobState::Succeeded,
            State::Failed => JobState::Failed,
            State::Cancelled => JobState::Cancelled,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }

    pub fn holder(&self) -> Option<&Holder> {
        match self {
            State::Leased(h) | State::Running(h) => Some(h),
            _ => None,
        }
    }
}

/// How a run ended, as its worker reported it (or as the controller decided, for a lost worker).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub reason: Reason,
    pub message: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout_path: String,
    pub stderr_path: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    /// The end of the output, when the spec asked for it.
    pub output_tail: String,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.reason == Reason::Exited && self.exit_code == Some(0)
    }
}

/// Why a report was not obeyed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("job is already {0:?}")]
    Terminal(JobState),
    #[error("job is {0:?}, not leased")]
    NotLeased(JobState),
    #[error("job is held by {current_worker} at epoch {current_epoch}, not by {worker} at epoch {epoch}")]
    NotHolder { worker: WorkerId, epoch: Epoch, current_worker: WorkerId, current_epoch: Epoch },
    #[error("job is {0:?}, not queued")]
    NotQueued(JobState),
}

/// What the caller must do after a transition; ignoring it is a bug.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The job changed state but its holder did not.
    Moved,
    /// The job left its holder and is queued again: put it back on the queue.
    Requeue { from: WorkerId },
    /// The holder gave back a lease it never ran ([`Job::hand_back`]): queued again as if never leased, even
    /// one recorded as running with its lease (no run to account for, its queue deadline still on).
    HandedBack { from: WorkerId },
    /// The job failed, has attempts left, and is queued again: put it back on the queue after `after`.
    Retry { from: WorkerId, after: Duration },
    /// The job reached a terminal state; `from` (if any) no longer holds it.
    Ended { from: Option<WorkerId> },
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: JobId,
    pub spec: Arc<JobSpec>,
    state: State,
    attempt: u32,
    losses: u32,
    epoch: Epoch,
    submitted_at_ms: u64,
    /// When the current (or last) run was confirmed to start, by the controller's clock.
    started_at_ms: u64,
    last_worker: Option<WorkerId>,
    /// The worker the job was last stolen from, if it was.
    stolen_from: Option<WorkerId>,
    outcome: Option<Outcome>,
    /// Runs that ended, oldest first.
    attempts: Vec<Attempt>,
    /// While a failed job waits out its retry backoff: when it may run again.
    retry_at_ms: u64,
    /// The pool of the worker it was last leased to, and whether a cheaper pool could have taken it.
    pool: Option<Arc<str>>,
    spilled: bool,
    /// A job array's progress (see `crate::scheduler::arrays`).
    pub array: Option<Box<ArrayProgress>>,
}

/// Where a job array stands: the next index to make into a job, and its indices by state.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayProgress {
    pub next: u64,
    pub last: u64,
    /// `queued` counts the indices made into jobs and queued; those not yet made are `last + 1 - next`.
    pub counts: ArrayStatus,
}

impl ArrayProgress {
    /// Indices not yet made into jobs.
    pub fn unmade(&self) -> u64 {
        (self.last + 1).saturating_sub(self.next)
    }

    /// Indices made into jobs that have not ended.
    pub fn unfinished(&self) -> u64 {
        self.counts.queued + self.counts.leased + self.counts.running
    }
}

impl Job {
    pub fn new(id: JobId, spec: Arc<JobSpec>, submitted_at_ms: u64) -> Self {
        Job {
            id,
            state: State::Queued,
            attempt: 1,
            losses: 0,
            epoch: 0,
            submitted_at_ms,
            started_at_ms: 0,
            last_worker: None,
            stolen_from: None,
            outcome: None,
            attempts: Vec::new(),
            retry_at_ms: 0,
            pool: None,
            spilled: false,
            array: spec.array.map(|a| {
                let counts = ArrayStatus { size: u64::from(a.last) - u64::from(a.first) + 1, ..ArrayStatus::default() };
                Box::new(ArrayProgress { next: u64::from(a.first), last: u64::from(a.last), counts })
            }),
            spec,
        }
    }

    /// The pool of the worker it was last leased to.
    pub fn pool(&self) -> Option<&str> {
        self.pool.as_deref()
    }

    /// How long its last ended run took, by its worker's clock (or the controller's, for a lost run).
    pub fn last_run_ms(&self) -> u64 {
        self.attempts.last().map_or(0, |a| a.finished_at_ms.saturating_sub(a.started_at_ms))
    }

    /// Notes the pool of the worker it was just leased to (a steal stays in the pool), and whether it spilled
    /// over from a cheaper one.
    pub fn placed(&mut self, pool: Arc<str>, spilled: bool) {
        self.pool = Some(pool);
        self.spilled = spilled;
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn submitted_at_ms(&self) -> u64 {
        self.submitted_at_ms
    }

    /// When its current or last run started; 0 if it never started.
    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }

    /// Queued → Leased: hands the job to `worker` under a fresh epoch.
    pub fn lease(&mut self, worker: &str, session: u64) -> Result<Holder, Refused> {
        if self.state != State::Queued {
            return Err(Refused::NotQueued(self.state.proto()));
        }
        self.epoch += 1;
        let holder = Holder { worker: worker.to_string(), session, epoch: self.epoch };
        self.last_worker = Some(worker.to_string());
        self.state = State::Leased(holder.clone());
        Ok(holder)
    }

    /// Leased(victim) → Leased(thief) under a fresh epoch, on the victim's word: a steal. Only a job that has not
    /// started can move; the victim's later reports about it are stale by construction.
    pub fn transfer(&mut self, by: &Holder, to: &str, to_session: u64) -> Result<Holder, Refused> {
        match &self.state {
            State::Leased(h) if h == by => {
                self.epoch += 1;
                let holder = Holder { worker: to.to_string(), session: to_session, epoch: self.epoch };
                self.stolen_from = Some(by.worker.clone());
                self.last_worker = Some(to.to_string());
                self.state = State::Leased(holder.clone());
                Ok(holder)
            }
            _ => Err(self.refusal(by)),
        }
    }

    /// Keeps the job with its holder, now under a new registration `session` of the same worker (it registered
    /// again and claimed the lease at its current epoch).
    pub fn rebind(&mut self, worker: &str, epoch: Epoch, session: u64) -> Result<(), Refused> {
        match &mut self.state {
            State::Leased(h) | State::Running(h) if h.worker == worker && h.epoch == epoch => {
                h.session = session;
                Ok(())
            }
            State::Leased(h) | State::Running(h) => Err(Refused::NotHolder {
                worker: worker.to_string(),
                epoch,
                current_worker: h.worker.clone(),
                current_epoch: h.epoch,
            }),
            s if s.is_terminal() => Err(Refused::Terminal(s.proto())),
            s => Err(Refused::NotLeased(s.proto())),
        }
    }

    /// Leased → Running, on the holder's word.
    pub fn start(&mut self, by: &Holder, now_ms: u64) -> Result<Effect, Refused> {
        match &self.state {
            State::Leased(h) if h == by => {
                self.started_at_ms = now_ms;
                self.state = State::Running(h.clone());
                Ok(Effect::Moved)
            }
            // A repeated start report from the holder changes nothing.
            State::Running(h) if h == by => Ok(Effect::Moved),
            _ => Err(self.refusal(by)),
        }
    }

    /// Leased | Running → Succeeded | Failed, on the holder's word; or, for a failure of the job's own with
    /// attempts left, Queued again after a backoff. A finish may arrive without a start (the job failed to spawn,
    /// or both reports travelled in one batch).
    pub fn finish(&mut self, by: &Holder, outcome: Outcome, now_ms: u64) -> Result<Effect, Refused> {
        match &self.state {
            State::Leased(h) | State::Running(h) if h == by => {}
            _ => return Err(self.refusal(by)),
        }
        self.record_attempt(&by.worker, &outcome);
        if !outcome.succeeded() && self.retryable(&outcome) {
            // Doubling per failed run so far: 1x after the first, 2x after the second, ...
            let doublings = (self.attempt - 1).min(16);
            let after = self.retry_backoff().saturating_mul(1 << doublings).min(MAX_RETRY_BACKOFF);
            self.attempt += 1;
            self.retry_at_ms = now_ms + after.as_millis() as u64;
            self.outcome = Some(outcome);
            self.state = State::Queued;
            return Ok(Effect::Retry { from: by.worker.clone(), after });
        }
        self.state = if outcome.succeeded() { State::Succeeded } else { State::Failed };
        self.outcome = Some(outcome);
        Ok(Effect::Ended { from: Some(by.worker.clone()) })
    }

    fn retry_backoff(&self) -> Duration {
        match self.spec.retry_backoff_ms {
            0 => DEFAULT_RETRY_BACKOFF,
            ms => Duration::from_millis(ms),
        }
    }

    /// Whether a failed run may be tried again: a failure of the job's own (exit code, signal, timeout) with
    /// attempts left, and, when the spec lists exit codes, one of those. A job that could not start or was
    /// refused would fail the same way again.
    fn retryable(&self, outcome: &Outcome) -> bool {
        let own_failure = matches!(outcome.reason, Reason::Exited | Reason::Signaled | Reason::Timeout);
        let listed = self.spec.retry_exit_codes.is_empty()
            || outcome.exit_code.is_some_and(|c| self.spec.retry_exit_codes.contains(&c));
        own_failure && listed && self.attempt < self.spec.max_attempts.max(1)
    }

    /// Any non-terminal state → Cancelled. Returns who held it, so the caller can stop it there.
    pub fn cancel(&mut self, now_ms: u64) -> Result<Effect, Refused> {
        self.end(Reason::Cancelled, "cancelled".into(), now_ms)
    }

    /// Whether the job still waits for its first run: only such a job has a queue deadline.
    pub fn awaits_first_run(&self) -> bool {
        matches!(self.state, State::Queued | State::Leased(_)) && self.attempts.is_empty()
    }

    /// Queued | Leased (never started) → Failed with `QueueDeadlineExceeded`.
    pub fn miss_queue_deadline(&mut self, now_ms: u64) -> Result<Effect, Refused> {
        if !self.awaits_first_run() {
            return Err(Refused::NotQueued(self.state.proto()));
        }
        let waited = now_ms.saturating_sub(self.submitted_at_ms);
        self.end(Reason::QueueDeadlineExceeded, format!("waited {waited} ms to start, past its queue timeout"), now_ms)
    }

    /// Queued (waiting for its dependencies) → Failed with `DependencyFailed`: `message` says which and how.
    pub fn dependency_failed(&mut self, message: String, now_ms: u64) -> Result<Effect, Refused> {
        if self.state != State::Queued {
            return Err(Refused::NotQueued(self.state.proto()));
        }
        self.end(Reason::DependencyFailed, message, now_ms)
    }

    fn end(&mut self, reason: Reason, message: String, now_ms: u64) -> Result<Effect, Refused> {
        if self.state.is_terminal() {
            return Err(Refused::Terminal(self.state.proto()));
        }
        let from = self.state.holder().map(|h| h.worker.clone());
        let outcome = Outcome { reason, message, finished_at_ms: now_ms, ..Outcome::default() };
        if let (State::Running(_), Some(worker)) = (&self.state, &from) {
            self.record_attempt(worker, &outcome);
        }
        self.state = if reason == Reason::Cancelled { State::Cancelled } else { State::Failed };
        self.outcome = Some(outcome);
        self.retry_at_ms = 0;
        Ok(Effect::Ended { from })
    }

    fn record_attempt(&mut self, worker: &str, o: &Outcome) {
        self.attempts.push(Attempt {
            attempt: self.attempt,
            worker_id: worker.to_string(),
            started_at_ms: if o.started_at_ms > 0 { o.started_at_ms } else { self.started_at_ms },
            finished_at_ms: o.finished_at_ms,
            reason: o.reason as i32,
            exit_code: o.exit_code,
            signal: o.signal,
            message: o.message.clone(),
            pool: self.pool.as_deref().unwrap_or_default().to_string(),
        });
    }

    /// The retry backoff this job waits out, if it is queued for a retry.
    pub fn retry_at_ms(&self) -> u64 {
        if self.state == State::Queued { self.retry_at_ms } else { 0 }
    }

    /// The end of the retry backoff it was last given, whatever its state now (0: none pending).
    #[cfg(test)]
    pub fn backoff_until_ms(&self) -> u64 {
        self.retry_at_ms
    }

    /// A queued job's retry wait is over.
    pub fn retry_due(&mut self) {
        self.retry_at_ms = 0;
    }

    /// The holder gives back a lease it never ran: one it returns from its queue when it drains, or one that never
    /// left the controller. The job is queued again as it was, no run lost, even one recorded as running with
    /// its lease (see `Lease.started`). Fenced by the holder's registration and the lease's epoch.
    pub fn hand_back(&mut self, by: &Holder) -> Result<Effect, Refused> {
        match &self.state {
            State::Leased(h) | State::Running(h) if h == by => {
                self.state = State::Queued;
                self.started_at_ms = 0;
                Ok(Effect::HandedBack { from: by.worker.clone() })
            }
            _ => Err(self.refusal(by)),
        }
    }

    /// The holder lost its lease (its worker died or registered again). A job that never started is queued again
    /// as it was; one that was running spends a lost run and is queued again, or fails with `WorkerLost` when
    /// it has lost [`MAX_LOSSES`] runs.
    ///
    /// Fenced like every report: only a release of the current holder's registration (`worker`, `session`) is
    /// obeyed, so a release decided about one registration can never take the job from the next.
    pub fn release(&mut self, worker: &str, session: u64, now_ms: u64) -> Result<Effect, Refused> {
        let (from, was_running) = match &self.state {
            State::Leased(h) | State::Running(h) if h.worker != worker || h.session != session => {
                return Err(Refused::NotHolder {
                    worker: worker.to_string(),
                    epoch: h.epoch,
                    current_worker: h.worker.clone(),
                    current_epoch: h.epoch,
                });
            }
            State::Leased(h) => (h.worker.clone(), false),
            State::Running(h) => (h.worker.clone(), true),
            other => return Err(Refused::NotLeased(other.proto())),
        };
        if !was_running {
            self.state = State::Queued;
            return Ok(Effect::Requeue { from });
        }
        self.losses += 1;
        let lost = Outcome {
            reason: Reason::WorkerLost,
            message: format!("worker {from} was lost while the job ran"),
            finished_at_ms: now_ms,
            ..Outcome::default()
        };
        self.record_attempt(&from, &lost);
        if self.losses >= MAX_LOSSES {
            self.state = State::Failed;
            self.outcome = Some(Outcome {
                reason: Reason::WorkerLost,
                message: format!("lost {} runs to dead or restarted workers, the last on {from}", self.losses),
                finished_at_ms: now_ms,
                ..Outcome::default()
            });
            return Ok(Effect::Ended { from: Some(from) });
        }
        self.attempt += 1;
        self.state = State::Queued;
        Ok(Effect::Requeue { from })
    }

    fn refusal(&self, by: &Holder) -> Refused {
        match &self.state {
            State::Leased(h) | State::Running(h) => Refused::NotHolder {
                worker: by.worker.clone(),
                epoch: by.epoch,
                current_worker: h.worker.clone(),
                current_epoch: h.epoch,
            },
            s if s.is_terminal() => Refused::Terminal(s.proto()),
            s => Refused::NotLeased(s.proto()),
        }
    }

    /// The job as the store keeps it.
    pub fn to_record(&self) -> JobRecord {
        let holder = self.state.holder().cloned().unwrap_or(Holder { worker: String::new(), session: 0, epoch: 0 });
        JobRecord {
            id: self.id.clone(),
            spec: Some((*self.spec).clone()),
            state: self.state.proto() as i32,
            holder_worker: holder.worker,
            holder_session: holder.session,
            holder_epoch: holder.epoch,
            attempt: self.attempt,
            losses: self.losses,
            epoch: self.epoch,
            submitted_at_ms: self.submitted_at_ms,
            started_at_ms: self.started_at_ms,
            last_worker: self.last_worker.clone().unwrap_or_default(),
            stolen_from: self.stolen_from.clone().unwrap_or_default(),
            outcome: self.outcome.as_ref().map(|o| JobResult {
                lease: None,
                reason: o.reason as i32,
                message: o.message.clone(),
                exit_code: o.exit_code,
                signal: o.signal,
                stdout_path: o.stdout_path.clone(),
                stderr_path: o.stderr_path.clone(),
                stdout_truncated: o.stdout_truncated,
                stderr_truncated: o.stderr_truncated,
                started_at_ms: o.started_at_ms,
                finished_at_ms: o.finished_at_ms,
                output_tail: o.output_tail.clone(),
            }),
            attempts: self.attempts.clone(),
            retry_at_ms: self.retry_at_ms,
            pool: self.pool.as_deref().unwrap_or_default().to_string(),
            spilled: self.spilled,
            // Only what has ended is kept: the indices still running are jobs of their own.
            array: self.array.as_ref().map(|a| ArrayStatus { queued: 0, leased: 0, running: 0, ..a.counts.clone() }),
            array_next: self.array.as_ref().map_or(0, |a| a.next),
        }
    }

    /// A job from its stored record; `None` when the record is not one this version can trust (unknown state, a
    /// leased job without a holder, no spec).
    pub fn from_record(r: JobRecord) -> Option<Job> {
        let holder = Holder { worker: r.holder_worker, session: r.holder_session, epoch: r.holder_epoch };
        let state = match JobState::try_from(r.state).ok()? {
            JobState::Queued => State::Queued,
            JobState::Leased if !holder.worker.is_empty() => State::Leased(holder),
            JobState::Running if !holder.worker.is_empty() => State::Running(holder),
            JobState::Succeeded => State::Succeeded,
            JobState::Failed => State::Failed,
            JobState::Cancelled => State::Cancelled,
            _ => return None,
        };
        let outcome = r.outcome.map(|o| Outcome {
            reason: o.reason(),
            message: o.message,
            exit_code: o.exit_code,
            signal: o.signal,
            stdout_path: o.stdout_path,
            stderr_path: o.stderr_path,
            stdout_truncated: o.stdout_truncated,
            stderr_truncated: o.stderr_truncated,
            started_at_ms: o.started_at_ms,
            finished_at_ms: o.finished_at_ms,
            output_tail: o.output_tail,
        });
        let spec = r.spec?;
        Some(Job {
            id: r.id,
            state,
            attempt: r.attempt.max(1),
            losses: r.losses,
            epoch: r.epoch,
            submitted_at_ms: r.submitted_at_ms,
            started_at_ms: r.started_at_ms,
            last_worker: Some(r.last_worker).filter(|w| !w.is_empty()),
            stolen_from: Some(r.stolen_from).filter(|w| !w.is_empty()),
            outcome,
            attempts: r.attempts,
            retry_at_ms: r.retry_at_ms,
            pool: Some(r.pool).filter(|p| !p.is_empty()).map(Arc::from),
            spilled: r.spilled,
            array: match (&spec.array, r.array) {
                (Some(a), Some(counts)) => {
                    Some(Box::new(ArrayProgress { next: r.array_next, last: u64::from(a.last), counts }))
                }
                _ => None,
            },
            spec: Arc::new(spec),
        })
    }

    /// The job's status as the API shows it. `waiting_reason` is filled in by the caller for queued jobs.
    pub fn status(&self) -> JobStatus {
        let outcome = self.outcome.clone().unwrap_or_default();
        JobStatus {
            job_id: self.id.clone(),
            state: self.state.proto() as i32,
            reason: outcome.reason as i32,
            message: outcome.message,
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            worker_id: self.last_worker.clone().unwrap_or_default(),
            attempt: self.attempt,
            submitted_at_ms: self.submitted_at_ms,
            // The worker's own clock once it has reported; the controller's confirmation time while it runs.
            started_at_ms: if outcome.started_at_ms > 0 { outcome.started_at_ms } else { self.started_at_ms },
            finished_at_ms: outcome.finished_at_ms,
            stdout_path: outcome.stdout_path,
            stderr_path: outcome.stderr_path,
            stdout_truncated: outcome.stdout_truncated,
            stderr_truncated: outcome.stderr_truncated,
            waiting_reason: String::new(),
            stolen_from: self.stolen_from.clone().unwrap_or_default(),
            attempts: self.attempts.clone(),
            retry_at_ms: self.retry_at_ms(),
            labels: self.spec.labels.clone(),
            epoch: self.epoch,
            output_tail: outcome.output_tail,
            owner: self.spec.owner.clone(),
            pool: self.pool.as_deref().unwrap_or_default().to_string(),
            spilled: self.spilled,
            array: self
                .array
                .as_ref()
                .map(|a| ArrayStatus { queued: a.counts.queued + a.unmade(), ..a.counts.clone() }),
        }
    }

    /// A job array whose indices have all ended: Queued → Succeeded if every index succeeded, else Failed.
    pub fn array_ended(&mut self, now_ms: u64) -> Result<Effect, Refused> {
        let Some(a) = &self.array else { return Err(Refused::NotQueued(self.state.proto())) };
        if self.state != State::Queued || a.unmade() > 0 || a.unfinished() > 0 {
            return Err(Refused::NotQueued(self.state.proto()));
        }
        let c = &a.counts;
        if c.failed == 0 && c.cancelled == 0 {
            self.state = State::Succeeded;
            let message = format!("all {} indices succeeded", c.succeeded);
            self.outcome =
                Some(Outcome { reason: Reason::Exited, message, finished_at_ms: now_ms, ..Outcome::default() });
            return Ok(Effect::Ended { from: None });
        }
        let message = format!("{} of {} indices failed, {} cancelled", c.failed, c.size, c.cancelled);
        self.end(Reason::Exited, message, now_ms)
    }
}

#[cfg(test)]
mod tests;
