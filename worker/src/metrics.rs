//! The worker's Prometheus metrics (`/metrics` on `--http-listen`): prefix `burst_worker_`, units in names,
//! `_total` on counters. Run times and results are observed as runs end ([`Counters`]); slots, queue depth and
//! registration are read from the agent at each scrape.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::agent::Agent;

/// What the agent counts as it runs jobs. Cloning shares the same series.
#[derive(Clone, Debug)]
pub struct Counters {
    /// Start to end of each run on this worker.
    pub run: Histogram,
    /// Runs ended, by reason (exited, signaled, timeout, ...).
    pub runs: Family<[(&'static str, &'static str); 1], Counter>,
    /// Jobs taken from peers, and given to them.
    pub stolen: Counter,
    pub given: Counter,
    /// Starts the controller refused (the lease had moved on: stale epoch).
    pub starts_refused: Counter,
    /// Jobs the controller started with their lease (a slot was free): run without a start report.
    pub started_with_lease: Counter,
    /// Leases given back to the controller unrun: waiting behind long runs, or reaching a draining worker.
    pub returned: Counter,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            // 1 ms .. ~9 h in quadruplings.
            run: Histogram::new(exponential_buckets(0.001, 4.0, 16)),
            runs: Family::default(),
            stolen: Counter::default(),
            given: Counter::default(),
            starts_refused: Counter::default(),
            started_with_lease: Counter::default(),
            returned: Counter::default(),
        }
    }
}

/// The metrics page of one worker.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(agent: Arc<Agent>) -> Self {
        let mut registry = Registry::with_prefix("burst_worker");
        let c = agent.counters.clone();
        registry.register_with_unit("run", "Time from a run's start to its end", Unit::Seconds, c.run);
        registry.register("runs", "Runs ended on this worker, by reason", c.runs);
        registry.register("jobs_stolen", "Queued jobs this worker took from busy peers", c.stolen);
        registry.register("jobs_given", "Queued jobs this worker handed to idle peers", c.given);
        registry.register("starts_refused", "Starts the controller refused (stale leases)", c.starts_refused);
        let with_lease = "Jobs the controller started with their lease (a slot was free): run without a start report";
        registry.register("started_with_lease", with_lease, c.started_with_lease);
        let returned =
            "Leases given back to the controller unrun: waiting behind long runs, or reaching a draining worker";
        registry.register("leases_returned", returned, c.returned);
        registry.register_collector(Box::new(Live(agent)));
        Metrics { registry }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

struct Live(Arc<Agent>);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let agent = &self.0;
        let gauges = [
            ("slots", "Jobs this worker runs at once", i64::from(agent.config().slots)),
            ("slots_busy", "Slots starting or running a job", i64::from(agent.slots_in_use())),
            ("queue_depth", "Leased jobs waiting in the local queue", agent.queue.len() as i64),
            ("registered", "1 while registered with the controller", i64::from(agent.session() != 0)),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        // Relaxed: a counter read for display.
        let attempts = ConstCounter::new(agent.steal_attempts.load(Ordering::Relaxed));
        let help = "Steal attempts this worker made";
        attempts.encode(e.encode_descriptor("steal_attempts", help, None, attempts.metric_type())?)
    }
}
