//! The one place a job's state change takes effect: [`Scheduler::transition`] runs a transition of the state
//! machine and carries out everything it implies. What the old and the new holder hold follows from the change
//! of holder alone (before and after), so no transition can forget a count: a lease, a steal, a rebind after a
//! re-registration, a start, an end and a release are the same code.

use std::time::Instant;

use burst_proto::v1::JobState;

use super::*;

impl Scheduler {
    /// Applies `f` to job `id`; if it is obeyed, keeps everything else in step with it:
    /// - the counts by state;
    /// - the holders: the old one lets go of the job (and of its running slot and resources), the new one holds
    ///   it; a start under the same holder takes a running slot;
    /// - the queue (a job queued again goes to the front) and the places each submitter holds (fair share);
    ///   the job's timer (a retry backoff; none once it has
    ///   started or ended);
    /// - per-owner counts, the worker's finished count, the jobs that depend on it, and retention, when it ends;
    /// - the store write and the watchers' status.
    pub(super) fn transition(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut Job) -> Result<Effect, Refused>,
    ) -> Result<Effect, Refused> {
        let job = self.jobs.get_mut(id).ok_or(Refused::NotLeased(JobState::Unspecified))?;
        let before = job.state().clone();
        let run_started_ms = job.started_at_ms();
        let effect = match f(job) {
            Ok(effect) => effect,
            Err(refused) => {
                self.jobs.settle(id);
                return Err(refused);
            }
        };
        let after = job.state();
        let after_state = after.proto();
        let need = job.spec.resources.unwrap_or_default();
        // A lease handed back unrun was no run: nothing to time, no busy slot to account for.
        let ran = !matches!(effect, Effect::HandedBack { .. });
        if ran {
            self.timings.transition(job, &before, after.proto(), run_started_ms);
        }
        self.counts[before.proto() as usize] -= 1;
        self.counts[after.proto() as usize] += 1;
        let (now_running, now_terminal) = (matches!(after, State::Running(_)), after.is_terminal());

        let was_running = matches!(before, State::Running(_));
        if was_running && !now_running && ran {
            // The run ended (or was lost): its pool's slot was busy for it.
            let ran_ms = job.last_run_ms();
            if let Some(p) = job.pool().and_then(|name| self.registry.pool_id(name))
                && let Some(pool) = self.registry.pool_mut(p)
            {
                pool.busy_ms += ran_ms;
            }
        }
        if before.holder().is_some() != after.holder().is_some() {
            self.owners.held(&job.spec.owner, after.holder().is_some());
        }
        match (before.holder(), after.holder()) {
            (Some(old), Some(new)) if old == new => {
                if !was_running && now_running {
                    self.registry.start(new);
                }
            }
            (old, new) => {
                if let Some(old) = old {
                    self.registry.unhold(old, id, &need, was_running);
                }
                if let Some(new) = new {
                    self.registry.hold(new, id, &need, now_running);
                }
            }
        }
        match &effect {
            Effect::Requeue { .. } => self.requeue(id.to_string()),
            Effect::HandedBack { .. } => {
                self.requeue(id.to_string());
                let left = self.jobs.get(id).and_then(|job| queue_deadline_left(&job, burst_proto::now_ms()));
                if let Some(left) = left {
                    self.set_timer(Instant::now() + left, id, Timer::QueueDeadline);
                }
            }
            Effect::Retry { after, .. } => self.set_timer(Instant::now() + *after, id, Timer::Retry),
            Effect::Moved | Effect::Ended { .. } => {}
        }
        if now_running || now_terminal {
            self.timers.cancel(id);
        }
        if now_terminal {
            if let Some(from) = before.holder()
                && let Some(w) = self.registry.get_mut(&from.worker)
            {
                w.jobs_finished += 1;
            }
            if let Some(job) = self.jobs.get(id) {
                self.owners.ended(&job.spec.owner);
            }
        }
        self.record(id);
        if arrays::index_of(id).is_some() {
            self.index_changed(id, before.proto(), after_state);
        }
        if now_terminal {
            self.dependency_ended(id);
            // (Past the count limit the oldest are forgotten when the operation ends, in `flush`: not while a
            // chain of dependents or an array may still read the job that just ended.)
            self.retention.finished(id.to_string(), Instant::now());
        }
        Ok(effect)
    }

    /// Queues job `id`'s new record for the store, and its status for the watchers.
    pub(super) fn record(&mut self, id: &str) {
        let Some(job) = self.jobs.get(id) else { return };
        if self.publisher.watched() {
            self.statuses.push(job.status());
        }
        self.writes.push(Write::Put(Box::new(job.into_owned())));
        self.jobs.settle(id);
    }

    /// Hands the writes of this operation to the store, in order; watchers hear of them once they are durable.
    /// Jobs whose dependencies were met in this operation are dispatched first.
    pub(super) fn flush(&mut self) -> Durable {
        if self.take_released() {
            self.dispatch(burst_proto::now_ms());
        }
        if self.retention.over_count() {
            self.forget_expired(Instant::now());
        }
        let durable = self.store.write(std::mem::take(&mut self.writes));
        self.publisher.after(durable, std::mem::take(&mut self.statuses))
    }

    /// Forgets finished jobs past the retention limits, in memory and in the store.
    pub(super) fn forget_expired(&mut self, now: Instant) {
        for id in self.retention.expired(now) {
            let Some(job) = self.jobs.remove(&id) else { continue };
            self.counts[job.state as usize] -= 1;
            let key = &job.idempotency_key;
            if !key.is_empty() && self.keys.get(key) == Some(&id) {
                self.keys.remove(key);
            }
            self.writes.push(Write::Delete(id));
        }
    }

    /// A report about a job that was cancelled under it is expected, not stale; anything else refused is.
    pub(super) fn count_refusal(&mut self, why: &Refused) {
        if *why != Refused::Terminal(JobState::Cancelled) {
            self.totals.stale_reports += 1;
        }
    }
}
