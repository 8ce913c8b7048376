//! The operator's Prometheus metrics, served on `/metrics`: reconciles by kind and result, failures by reason,
//! reconcile duration, BurstJobs submitted, and whether this replica leads.

use std::sync::atomic::AtomicI64;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    duration: Family<Labels, Histogram>,
    pub submitted: Counter,
    pub leader: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("burst_operator");
        let reconciles = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        // 1 ms .. ~16 s: a reconcile is a few API calls and, for a BurstJob, one gRPC call.
        let duration =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15)));
        let submitted = Counter::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that failed, by kind and reason", failures.clone());
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", duration.clone());
        registry.register("burstjobs_submitted", "BurstJobs submitted to a burst controller", submitted.clone());
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        Metrics { registry, reconciles, failures, duration, submitted, leader }
    }
}

impl Metrics {
    /// Counts a reconcile of `kind` and times it until the guard drops.
    pub fn reconcile(&self, kind: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&vec![("kind", kind)]).inc();
        ReconcileTimer { metrics: self, kind, start: Instant::now() }
    }

    pub fn failure(&self, kind: &'static str, reason: &'static str) {
        self.failures.get_or_create(&vec![("kind", kind), ("reason", reason)]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Observes a reconcile's duration when dropped, however the reconcile ends.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed().as_secs_f64();
        self.metrics.duration.get_or_create(&vec![("kind", self.kind)]).observe(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_prometheus_names() {
        let m = Metrics::default();
        drop(m.reconcile("BurstJob"));
        m.failure("BurstJob", "ClusterNotFound");
        m.submitted.inc();
        let text = m.render();
        assert!(text.contains("burst_operator_reconciles_total{kind=\"BurstJob\"} 1"), "{text}");
        assert!(
            text.contains("burst_operator_reconcile_failures_total{kind=\"BurstJob\",reason=\"ClusterNotFound\"} 1")
        );
        assert!(text.contains("burst_operator_reconcile_duration_seconds_count{kind=\"BurstJob\"} 1"));
        assert!(text.contains("burst_operator_burstjobs_submitted_total 1"));
    }
}
