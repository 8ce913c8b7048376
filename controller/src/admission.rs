//! Admission: the per-submitter submit rate (a token bucket per owner). The queued-job quotas are checked by the
//! scheduler under its lock, where the counts live (`scheduler::Scheduler::submit`).
//!
//! A refused submission stores nothing; its RESOURCE_EXHAUSTED status says when to retry and carries the same
//! in the `retry-after-ms` header for programs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::Status;

/// The header that tells a refused client how long to wait.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Jobs per second each submitter may sustain; 0 turns the limit off.
    pub per_second: f64,
    /// Jobs a submitter may submit at once after being idle.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Admission {
    limit: RateLimit,
    /// One bucket per submitter; held only to update one bucket (no await under it).
    buckets: Mutex<HashMap<String, Bucket>>,
    pub rate_limited: AtomicU64,
    pub quota_refused: AtomicU64,
}

impl Admission {
    pub fn new(limit: RateLimit) -> Self {
        Admission {
            limit,
            buckets: Mutex::default(),
            rate_limited: AtomicU64::new(0),
            quota_refused: AtomicU64::new(0),
        }
    }

    /// Takes `jobs` from `owner`'s bucket, or says how long until they would fit.
    pub fn take(&self, owner: &str, jobs: usize, now: Instant) -> Result<(), Status> {
        let RateLimit { per_second, burst } = self.limit;
        if per_second <= 0.0 {
            return Ok(());
        }
        let want = jobs as f64;
        if want > burst {
            return Err(exhausted(
                format!("{jobs} jobs in one call is over the submit burst of {burst}; split the batch"),
                Duration::ZERO,
            ));
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(owner.to_string()).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second).min(burst);
        b.at = now;
        if b.tokens >= want {
            b.tokens -= want;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((want - b.tokens) / per_second);
        // Relaxed: counters read only for stats.
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        Err(exhausted(format!("{owner} is over its submit rate of {per_second} jobs/s"), wait))
    }

    pub fn quota_refused(&self, message: String) -> Status {
        self.quota_refused.fetch_add(1, Ordering::Relaxed);
        // Queued jobs drain as they run: a second is a sensible first wait.
        exhausted(message, Duration::from_secs(1))
    }
}

/// RESOURCE_EXHAUSTED with the wait in the message and in the `retry-after-ms` header.
fn exhausted(message: String, wait: Duration) -> Status {
    let ms = wait.as_millis().max(1) as u64;
    let mut status = Status::resource_exhausted(format!("{message}; retry in {ms} ms"));
    if let Ok(v) = ms.to_string().parse() {
        status.metadata_mut().insert(RETRY_AFTER_MS, v);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submitter_over_its_rate_waits_for_what_it_asked_and_others_are_unaffected() {
        let a = Admission::new(RateLimit { per_second: 100.0, burst: 10.0 });
        let t0 = Instant::now();
        assert!(a.take("alice", 10, t0).is_ok(), "the burst is available at once");
        let refused = a.take("alice", 5, t0).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(refused.metadata().get(RETRY_AFTER_MS).unwrap(), "50", "5 jobs at 100/s");
        assert!(refused.message().contains("retry in 50 ms"), "{}", refused.message());
        assert!(a.take("bob", 10, t0).is_ok(), "buckets are per submitter");
        assert!(a.take("alice", 5, t0 + Duration::from_millis(50)).is_ok(), "refilled after the wait");
        assert!(a.take("alice", 11, t0 + Duration::from_secs(60)).unwrap_err().message().contains("split the batch"));
        assert_eq!(a.rate_limited.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let a = Admission::new(RateLimit { per_second: 0.0, burst: 0.0 });
        assert!(a.take("x", 1_000_000, Instant::now()).is_ok());
    }
}
