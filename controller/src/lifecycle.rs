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

use burst_proto::v1::{Attempt, JobResult, JobSpec, JobState, JobStatus, Reason};

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
}

impl Job {
    pub fn new(id: JobId, spec: Arc<JobSpec>, submitted_at_ms: u64) -> Self {
        Job {
            id,
            spec,
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
        }
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
        });
    }

    /// The retry backoff this job waits out, if it is queued for a retry.
    pub fn retry_at_ms(&self) -> u64 {
        if self.state == State::Queued { self.retry_at_ms } else { 0 }
    }

    /// A queued job's retry wait is over.
    pub fn retry_due(&mut self) {
        self.retry_at_ms = 0;
    }

    /// The holder lost its lease (its worker died or registered again). A job that never started is queued again
    /// as it was; one that was running spends a lost run and is queued again, or fails with `WorkerLost` when
    /// it has lost [`MAX_LOSSES`] runs.
    pub fn release(&mut self, now_ms: u64) -> Result<Effect, Refused> {
        let (from, was_running) = match &self.state {
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
        Some(Job {
            id: r.id,
            spec: Arc::new(r.spec?),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::new("j1".into(), Arc::new(JobSpec::default()), 1)
    }

    fn exited(code: i32) -> Outcome {
        Outcome { reason: Reason::Exited, exit_code: Some(code), ..Outcome::default() }
    }

    #[test]
    fn legal_path_queued_leased_running_succeeded() {
        let mut j = job();
        let h = j.lease("w1", 7).unwrap();
        assert_eq!(h.epoch, 1);
        assert_eq!(j.start(&h, 1).unwrap(), Effect::Moved);
        assert_eq!(j.state().proto(), JobState::Running);
        assert_eq!(j.finish(&h, exited(0), 1).unwrap(), Effect::Ended { from: Some("w1".into()) });
        assert_eq!(j.state(), &State::Succeeded);
    }

    #[test]
    fn nonzero_exit_and_spawn_errors_fail_the_job() {
        let mut j = job();
        let h = j.lease("w1", 1).unwrap();
        let _ = j.finish(&h, exited(3), 1).unwrap();
        assert_eq!(j.state(), &State::Failed);
        assert_eq!(j.status().exit_code, Some(3));

        let mut j = job();
        let h = j.lease("w1", 1).unwrap();
        let spawn = Outcome { reason: Reason::SpawnError, message: "no such file".into(), ..Outcome::default() };
        let _ = j.finish(&h, spawn, 1).unwrap();
        assert_eq!(j.state(), &State::Failed);
    }

    #[test]
    fn illegal_transitions_are_refused_and_change_nothing() {
        // (setup, action, expected refusal kind)
        let mut j = job();
        let stranger = Holder { worker: "w9".into(), session: 1, epoch: 1 };
        assert!(matches!(j.start(&stranger, 1), Err(Refused::NotLeased(JobState::Queued))));
        assert!(matches!(j.finish(&stranger, exited(0), 1), Err(Refused::NotLeased(_))));
        assert!(matches!(j.release(0), Err(Refused::NotLeased(_))));

        let h = j.lease("w1", 1).unwrap();
        assert!(matches!(j.lease("w2", 1), Err(Refused::NotQueued(JobState::Leased))));
        assert!(matches!(j.start(&stranger, 1), Err(Refused::NotHolder { .. })));
        let _ = j.finish(&h, exited(0), 1).unwrap();
        let before = j.status();
        assert!(matches!(j.finish(&h, exited(1), 1), Err(Refused::Terminal(JobState::Succeeded))));
        assert!(matches!(j.start(&h, 1), Err(Refused::Terminal(_))));
        assert!(matches!(j.release(0), Err(Refused::NotLeased(_))));
        assert_eq!(j.status(), before);
    }

    #[test]
    fn stale_epoch_report_is_refused() {
        let mut j = job();
        let old = j.lease("w1", 1).unwrap();
        let _ = j.release(0).unwrap();
        let new = j.lease("w1", 1).unwrap();
        assert_eq!(new.epoch, old.epoch + 1);
        assert!(matches!(j.finish(&old, exited(0), 1), Err(Refused::NotHolder { .. })));
        assert!(j.finish(&new, exited(0), 1).is_ok());
    }

    #[test]
    fn a_transfer_moves_a_leased_job_to_the_thief_under_a_new_epoch() {
        let mut j = job();
        let victim = j.lease("w1", 1).unwrap();
        let thief = j.transfer(&victim, "w2", 5).unwrap();
        assert_eq!(thief, Holder { worker: "w2".into(), session: 5, epoch: victim.epoch + 1 });
        let status = j.status();
        assert_eq!((status.worker_id.as_str(), status.stolen_from.as_str()), ("w2", "w1"));
        // The victim's late reports are refused; the thief's are obeyed.
        assert!(matches!(j.start(&victim, 1), Err(Refused::NotHolder { .. })));
        assert!(matches!(j.finish(&victim, exited(0), 1), Err(Refused::NotHolder { .. })));
        assert_eq!(j.start(&thief, 1).unwrap(), Effect::Moved);
        assert_eq!(j.finish(&thief, exited(0), 1).unwrap(), Effect::Ended { from: Some("w2".into()) });
    }

    #[test]
    fn a_transfer_with_a_stale_epoch_or_of_a_running_job_is_refused() {
        let mut j = job();
        let old = j.lease("w1", 1).unwrap();
        let _ = j.release(0).unwrap();
        let current = j.lease("w1", 1).unwrap();
        assert!(matches!(j.transfer(&old, "w2", 1), Err(Refused::NotHolder { .. })));
        let _ = j.start(&current, 1).unwrap();
        assert!(j.transfer(&current, "w2", 1).is_err(), "a started job never moves");
        assert_eq!(j.state(), &State::Running(current));
    }

    #[test]
    fn a_report_from_an_old_session_is_refused() {
        let mut j = job();
        let h = j.lease("w1", 1).unwrap();
        let other_session = Holder { session: 2, ..h };
        assert!(j.start(&other_session, 1).is_err());
    }

    #[test]
    fn release_before_start_requeues_without_spending_an_attempt() {
        let mut j = job();
        let _ = j.lease("w1", 1).unwrap();
        assert_eq!(j.release(0).unwrap(), Effect::Requeue { from: "w1".into() });
        assert_eq!(j.attempt(), 1);
        assert_eq!(j.state(), &State::Queued);
    }

    #[test]
    fn release_while_running_spends_an_attempt_until_the_loss_budget_is_gone() {
        let mut j = job();
        for n in 1..MAX_LOSSES {
            let h = j.lease("w1", 1).unwrap();
            let _ = j.start(&h, 1).unwrap();
            assert_eq!(j.release(0).unwrap(), Effect::Requeue { from: "w1".into() });
            assert_eq!(j.attempt(), n + 1);
        }
        let h = j.lease("w1", 1).unwrap();
        let _ = j.start(&h, 1).unwrap();
        assert_eq!(j.release(5).unwrap(), Effect::Ended { from: Some("w1".into()) });
        let status = j.status();
        assert_eq!(status.state(), JobState::Failed);
        assert_eq!(status.reason(), Reason::WorkerLost);
    }

    fn retrying(max_attempts: u32, codes: Vec<i32>) -> Job {
        let spec = JobSpec { max_attempts, retry_exit_codes: codes, retry_backoff_ms: 100, ..JobSpec::default() };
        Job::new("j".into(), Arc::new(spec), 1)
    }

    #[test]
    fn a_failure_with_attempts_left_is_retried_after_a_doubling_backoff() {
        let mut j = retrying(3, vec![]);
        let h = j.lease("w1", 1).unwrap();
        assert_eq!(
            j.finish(&h, exited(2), 1_000).unwrap(),
            Effect::Retry { from: "w1".into(), after: Duration::from_millis(100) }
        );
        assert_eq!((j.state(), j.attempt(), j.retry_at_ms()), (&State::Queued, 2, 1_100));
        let h = j.lease("w2", 1).unwrap();
        assert_eq!(
            j.finish(&h, exited(2), 2_000).unwrap(),
            Effect::Retry { from: "w2".into(), after: Duration::from_millis(200) }
        );
        let h = j.lease("w1", 1).unwrap();
        assert_eq!(j.finish(&h, exited(2), 3_000).unwrap(), Effect::Ended { from: Some("w1".into()) });
        let status = j.status();
        assert_eq!(status.state(), JobState::Failed);
        assert_eq!(status.attempt, 3);
        let workers: Vec<_> = status.attempts.iter().map(|a| (a.attempt, a.worker_id.as_str())).collect();
        assert_eq!(workers, [(1, "w1"), (2, "w2"), (3, "w1")]);
    }

    #[test]
    fn only_listed_exit_codes_are_retried_and_spawn_errors_never() {
        let mut j = retrying(5, vec![75]);
        let h = j.lease("w1", 1).unwrap();
        assert!(matches!(j.finish(&h, exited(75), 1).unwrap(), Effect::Retry { .. }));
        let h = j.lease("w1", 1).unwrap();
        assert!(matches!(j.finish(&h, exited(1), 1).unwrap(), Effect::Ended { .. }), "1 is not listed");

        let mut j = retrying(5, vec![]);
        let h = j.lease("w1", 1).unwrap();
        let spawn = Outcome { reason: Reason::SpawnError, ..Outcome::default() };
        assert!(matches!(j.finish(&h, spawn, 1).unwrap(), Effect::Ended { .. }));
        assert_eq!(j.attempt(), 1);
    }

    #[test]
    fn backoff_is_capped() {
        let mut j = retrying(40, vec![]);
        let mut last = Duration::ZERO;
        for _ in 0..30 {
            let h = j.lease("w", 1).unwrap();
            if let Effect::Retry { after, .. } = j.finish(&h, exited(1), 1).unwrap() {
                last = after;
            }
        }
        assert_eq!(last, MAX_RETRY_BACKOFF);
    }

    #[test]
    fn cancel_ends_any_unfinished_job_and_says_who_held_it() {
        let mut queued = job();
        assert_eq!(queued.cancel(5).unwrap(), Effect::Ended { from: None });
        assert_eq!(queued.state(), &State::Cancelled);
        assert!(matches!(queued.cancel(6), Err(Refused::Terminal(JobState::Cancelled))));

        let mut running = job();
        let h = running.lease("w1", 1).unwrap();
        let _ = running.start(&h, 2).unwrap();
        assert_eq!(running.cancel(5).unwrap(), Effect::Ended { from: Some("w1".into()) });
        let status = running.status();
        assert_eq!((status.state(), status.reason()), (JobState::Cancelled, Reason::Cancelled));
        assert_eq!(status.attempts.len(), 1, "the cancelled run is recorded");
        assert!(matches!(running.finish(&h, exited(0), 9), Err(Refused::Terminal(JobState::Cancelled))));
    }

    #[test]
    fn the_queue_deadline_ends_only_jobs_that_never_started() {
        let mut j = job();
        let _ = j.lease("w1", 1).unwrap();
        assert_eq!(j.miss_queue_deadline(10).unwrap(), Effect::Ended { from: Some("w1".into()) });
        assert_eq!(j.status().reason(), Reason::QueueDeadlineExceeded);

        let mut j = job();
        let h = j.lease("w1", 1).unwrap();
        let _ = j.start(&h, 2).unwrap();
        assert!(j.miss_queue_deadline(10).is_err());
    }

    #[test]
    fn a_job_survives_its_record_in_every_state() {
        let mut running = retrying(3, vec![]);
        let h = running.lease("w1", 4).unwrap();
        let _ = running.finish(&h, exited(2), 10).unwrap();
        let h = running.lease("w2", 5).unwrap();
        let _ = running.start(&h, 11).unwrap();
        let mut done = job();
        let h = done.lease("w1", 1).unwrap();
        let _ = done.finish(&h, exited(0), 3).unwrap();
        for j in [job(), running, done] {
            let back = Job::from_record(j.to_record()).expect("record reads back");
            assert_eq!(back.status(), j.status());
            assert_eq!(back.state(), j.state());
            assert_eq!(back.to_record(), j.to_record());
        }
        let mut broken = job().to_record();
        broken.state = JobState::Running as i32; // running, but nobody holds it
        assert!(Job::from_record(broken).is_none());
    }
}
