//! The scheduler's timers: at most one per job (a queue deadline while it has never started, a retry backoff
//! while it waits to run again), soonest first. A timer goes when its job starts or ends, so the set is bounded
//! by the jobs that wait, not by every job ever submitted.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::lifecycle::JobId;

/// Something the scheduler must do for a job at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A failed job's retry backoff is over: queue it.
    Retry,
    /// A job's queue deadline: if it has not started, fail it.
    QueueDeadline,
    /// A waiting job's budget ran out: it may go to more pools (kept apart from the other two).
    Spill,
}

#[derive(Default)]
pub struct Timers {
    due: BTreeSet<(Instant, JobId)>,
    of: HashMap<JobId, (Instant, Timer)>,
}

impl Timers {
    /// Sets job `id`'s timer, replacing the one it had.
    pub fn set(&mut self, id: &str, at: Instant, timer: Timer) {
        self.cancel(id);
        self.due.insert((at, id.to_string()));
        self.of.insert(id.to_string(), (at, timer));
    }

    /// Removes job `id`'s timer, if it has one.
    pub fn cancel(&mut self, id: &str) {
        // Most jobs never have a timer: skip hashing the id when none has.
        if self.of.is_empty() {
            return;
        }
        if let Some((at, _)) = self.of.remove(id) {
            self.due.remove(&(at, id.to_string()));
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        !self.of.is_empty() && self.of.contains_key(id)
    }

    /// When the soonest timer is due.
    pub fn next(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Takes the soonest timer if it is due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(JobId, Timer)> {
        if self.next()? > now {
            return None;
        }
        let (_, id) = self.due.pop_first()?;
        let (_, timer) = self.of.remove(&id)?;
        Some((id, timer))
    }

    #[cfg(test)]
    pub fn has(&self, id: &str) -> bool {
        self.of.contains_key(id)
    }

    #[cfg(test)]
    pub fn ids(&self) -> impl Iterator<Item = &JobId> {
        self.of.keys()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.of.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_fire_soonest_first_and_a_job_has_one_at_most() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.set("a", now + Duration::from_secs(2), Timer::QueueDeadline);
        t.set("b", now + Duration::from_secs(1), Timer::Retry);
        t.set("a", now + Duration::from_secs(3), Timer::Retry);
        assert_eq!(t.len(), 2);
        assert_eq!(t.pop_due(now), None, "nothing is due yet");
        let later = now + Duration::from_secs(5);
        assert_eq!(t.pop_due(later), Some(("b".into(), Timer::Retry)));
        t.cancel("a");
        assert_eq!((t.pop_due(later), t.is_empty()), (None, true));
    }
}
