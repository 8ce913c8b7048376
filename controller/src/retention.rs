//! How long finished jobs are kept: at most `max_jobs` of them, none older than `max_age` (since it finished).
//! Past either limit the oldest go first, from memory and from the store, so neither grows without bound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::lifecycle::JobId;

/// Finished jobs kept by default: ~1.6 GB of controller memory at the measured ~1.6 KB each (see README).
pub const DEFAULT_MAX_JOBS: usize = 1_000_000;
/// A day: long enough to look at yesterday's failures, short enough to forget last week's batches.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_jobs: usize,
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_jobs: DEFAULT_MAX_JOBS, max_age: DEFAULT_MAX_AGE }
    }
}

/// Finished jobs in the order they finished.
#[derive(Debug, Default)]
pub struct Retention {
    limits: Limits,
    finished: VecDeque<(Instant, JobId)>,
}

impl Retention {
    pub fn new(limits: Limits) -> Self {
        Retention { limits, finished: VecDeque::new() }
    }

    pub fn finished(&mut self, id: JobId, at: Instant) {
        self.finished.push_back((at, id));
    }

    /// Whether the count limit is passed (the caller may prune at once rather than wait for the next tick).
    pub fn over_count(&self) -> bool {
        self.finished.len() > self.limits.max_jobs
    }

    /// Takes the jobs to forget now: the oldest beyond the count limit, and all finished before `now - max_age`.
    pub fn expired(&mut self, now: Instant) -> Vec<JobId> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.finished.front() {
            let too_many = self.finished.len() > self.limits.max_jobs;
            let too_old = now.saturating_duration_since(*at) > self.limits.max_age;
            if !(too_many || too_old) {
                break;
            }
            if let Some((_, id)) = self.finished.pop_front() {
                out.push(id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_past_the_count() {
        let mut r = Retention::new(Limits { max_jobs: 2, max_age: Duration::from_secs(3600) });
        let t = Instant::now();
        for id in ["a", "b", "c"] {
            r.finished(id.into(), t);
        }
        assert!(r.over_count());
        assert_eq!(r.expired(t), ["a"]);
        assert!(!r.over_count());
        assert!(r.expired(t).is_empty());
    }

    #[test]
    fn jobs_older_than_the_age_go() {
        let mut r = Retention::new(Limits { max_jobs: 100, max_age: Duration::from_secs(10) });
        let t = Instant::now();
        r.finished("old".into(), t);
        r.finished("new".into(), t + Duration::from_secs(8));
        assert!(r.expired(t + Duration::from_secs(5)).is_empty());
        assert_eq!(r.expired(t + Duration::from_secs(11)), ["old"]);
        assert_eq!(r.expired(t + Duration::from_secs(19)), ["new"]);
    }
}
