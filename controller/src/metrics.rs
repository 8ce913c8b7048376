//! The controller's Prometheus metrics (`/metrics` on `--http-listen`).
//!
//! Two kinds: histograms and counters observed as jobs move ([`Timings`], kept by the scheduler), and values
//! read from the controller's state at each scrape ([`Live`]: jobs by state, workers, slots, queue depth per
//! worker, totals the controller already keeps). Names follow Prometheus conventions: prefix `burst_controller_`,
//! units in the name, `_total` on counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use burst_proto::v1::{GetStatsResponse, JobState, PoolStats, SubmitterStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Controller;
use crate::admission::Admission;
use crate::auth::Auth;
use crate::lifecycle::{Job, State};

/// 1 ms .. ~4 min in doublings: dispatch and queue waits are under a millisecond on an idle cluster (the
/// first bucket; job time stamps are in milliseconds) and seconds under a backlog.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

/// 1 ms .. ~9 h in quadruplings: job run times.
fn run_time() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 16))
}

/// What the scheduler observes as jobs move. Cloning shares the same series.
#[derive(Clone, Debug)]
pub struct Timings {
    /// Submit → first lease.
    pub dispatch: Histogram,
    /// Submit → running, first attempt.
    pub queue_wait: Histogram,
    /// Running → ended, each run.
    pub run: Histogram,
    pub leased: Counter,
    /// Jobs that reached a terminal state, by state.
    pub finished: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            dispatch: latency(),
            queue_wait: latency(),
            run: run_time(),
            leased: Counter::default(),
            finished: Family::default(),
        }
    }
}

impl Timings {
    /// Feeds the series from one transition of `job` from `before` to `after` (`started_ms`: when its run
    /// started, if it ran).
    pub fn transition(&self, job: &Job, before: &State, after: JobState, started_ms: u64) {
        let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1000.0;
        // A lease to a worker with a free slot starts the job at once: Queued -> Running is a lease and a start.
        if matches!(before, State::Queued) && matches!(after, JobState::Leased | JobState::Running) {
            self.leased.inc();
            if job.epoch() == 1 {
                self.dispatch.observe(seconds(job.submitted_at_ms(), burst_proto::now_ms()));
            }
        }
        match (before, after) {
            (State::Queued | State::Leased(_), JobState::Running) if job.attempt() == 1 => {
                self.queue_wait.observe(seconds(job.submitted_at_ms(), job.started_at_ms()));
            }
            (State::Running(_), after) if after != JobState::Running => {
                self.run.observe(seconds(started_ms, burst_proto::now_ms()));
            }
            _ => {}
        }
        let ended = match after {
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            _ => return,
        };
        self.finished.get_or_create(&[("state", ended)]).inc();
    }
}

/// The metrics page: the timings, the store's commit latency, and the live values.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(timings: &Timings, commits: Option<Histogram>, live: Live) -> Self {
        let mut registry = Registry::with_prefix("burst_controller");
        registry.register_with_unit(
            "dispatch_latency",
            "Time from a job's submission to its first lease to a worker",
            prometheus_client::registry::Unit::Seconds,
            timings.dispatch.clone(),
        );
        registry.register_with_unit(
            "queue_wait",
            "Time from a job's submission to the start of its first run",
            prometheus_client::registry::Unit::Seconds,
            timings.queue_wait.clone(),
        );
        registry.register_with_unit(
            "run",
            "Time from a run's start to its end",
            prometheus_client::registry::Unit::Seconds,
            timings.run.clone(),
        );
        registry.register("jobs_leased", "Leases handed to workers", timings.leased.clone());
        registry.register("jobs_finished", "Jobs that reached a terminal state, by state", timings.finished.clone());
        if let Some(commits) = commits {
            registry.register_with_unit(
                "store_commit",
                "Time one durable store commit (a group of writes and its fsync) takes",
                prometheus_client::registry::Unit::Seconds,
                commits,
            );
        }
        registry.register_collector(Box::new(live));
        Metrics { registry }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Values read from the controller at each scrape.
#[derive(Clone)]
pub struct Live {
    pub controller: Arc<Controller>,
    pub auth: Arc<Auth>,
    pub admission: Arc<Admission>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

/// The controller's counts, with the refusals counted outside the scheduler: what `GetStats` answers.
pub fn stats(controller: &Controller, auth: &Auth, admission: &Admission) -> GetStatsResponse {
    let mut stats = controller.lock().stats();
    // Relaxed: counters, read for display.
    stats.unauthenticated_total = auth.unauthenticated.load(Ordering::Relaxed);
    stats.permission_denied_total = auth.denied.load(Ordering::Relaxed);
    stats.rate_limited_total = admission.rate_limited.load(Ordering::Relaxed);
    stats.quota_refused_total = admission.quota_refused.load(Ordering::Relaxed);
    stats
}

/// A per-pool series: name, help, type, and how to read it from a pool's stats.
type PoolSeries = (&'static str, &'static str, MetricType, fn(&PoolStats) -> f64);
/// A per-submitter gauge: name, help, and how to read it from a submitter's stats.
type SubmitterSeries = (&'static str, &'static str, fn(&SubmitterStats) -> f64);

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One gauge or counter per label value.
fn family<V: Copy + Into<f64>>(
    e: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &str,
    values: &[(String, V)],
) -> Result<(), std::fmt::Error> {
    let mut metric = e.encode_descriptor(name, help, None, kind)?;
    for (value_of_label, v) in values {
        let labels = [(label.to_string(), value_of_label.clone())];
        let sample = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new((*v).into()).encode(sample)?,
            _ => ConstGauge::new((*v).into()).encode(sample)?,
        }
    }
    Ok(())
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = stats(&self.controller, &self.auth, &self.admission);
        let workers = self.controller.lock().workers();
        let states = [
            ("queued", s.queued),
            ("leased", s.leased),
            ("running", s.running),
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("cancelled", s.cancelled),
        ];
        let by_state: Vec<(String, f64)> = states.iter().map(|(k, v)| (k.to_string(), *v as f64)).collect();
        family(&mut e, ("jobs", "Jobs the controller holds, by state", MetricType::Gauge), "state", &by_state)?;
        counter(&mut e, "jobs_submitted", "Jobs accepted", s.submitted_total)?;
        let blocked = i64::try_from(s.blocked).unwrap_or(i64::MAX);
        gauge(&mut e, "jobs_blocked", "Queued jobs waiting for the jobs they depend on to end", blocked)?;
        gauge(&mut e, "workers", "Workers registered", i64::from(s.workers))?;
        gauge(&mut e, "slots", "Slots of all registered workers", i64::from(s.slots_total))?;
        gauge(&mut e, "slots_busy", "Slots running a job", i64::from(s.slots_busy))?;
        let depth: Vec<(String, f64)> = workers
            .iter()
            .map(|w| {
                let id = w.info.as_ref().map(|i| i.worker_id.clone()).unwrap_or_default();
                (id, f64::from(w.held.saturating_sub(w.running)))
            })
            .collect();
        family(
            &mut e,
            ("worker_queue_depth", "Jobs leased to a worker and waiting in its queue", MetricType::Gauge),
            "worker",
            &depth,
        )?;
        let busy: Vec<(String, f64)> = workers
            .iter()
            .map(|w| (w.info.as_ref().map(|i| i.worker_id.clone()).unwrap_or_default(), f64::from(w.running)))
            .collect();
        family(&mut e, ("worker_slots_busy", "Jobs running on a worker", MetricType::Gauge), "worker", &busy)?;
        let per_pool = |f: fn(&PoolStats) -> f64| -> Vec<(String, f64)> {
            s.pools.iter().map(|p| (p.name.clone(), f(p))).collect()
        };
        let pool_series: [PoolSeries; 9] = [
            ("pool_workers", "Workers registered in a pool", MetricType::Gauge, |p| f64::from(p.workers)),
            ("pool_slots", "Slots of a pool's registered workers", MetricType::Gauge, |p| f64::from(p.slots_total)),
            ("pool_slots_busy", "Slots of a pool running a job", MetricType::Gauge, |p| f64::from(p.slots_busy)),
            ("pool_jobs_waiting", "Queued jobs that may go to a pool now", MetricType::Gauge, |p| {
                p.jobs_waiting as f64
            }),
            ("pool_jobs_placed", "Leases to a pool's workers", MetricType::Counter, |p| p.jobs_placed as f64),
            ("pool_jobs_spilled", "Leases to a pool of jobs a cheaper pool could have run", MetricType::Counter, |p| {
                p.jobs_spilled as f64
            }),
            ("pool_slot_seconds", "Slot-seconds a pool's workers were registered", MetricType::Counter, |p| {
                p.slot_seconds
            }),
            ("pool_busy_slot_seconds", "Slot-seconds a pool spent running jobs", MetricType::Counter, |p| {
                p.busy_slot_seconds
            }),
            (
                "pool_cost",
                "Cost accrued by a pool: slot-seconds x its cost per slot-second",
                MetricType::Counter,
                |p| p.cost,
            ),
        ];
        for (name, help, kind, f) in pool_series {
            family(&mut e, (name, help, kind), "pool", &per_pool(f))?;
        }
        let per_submitter = |f: fn(&SubmitterStats) -> f64| -> Vec<(String, f64)> {
            s.submitters.iter().map(|o| (o.name.clone(), f(o))).collect()
        };
        let submitter_series: [SubmitterSeries; 3] = [
            ("submitter_jobs_queued", "A submitter's jobs waiting for a slot", |o| o.queued as f64),
            ("submitter_jobs_held", "A submitter's jobs leased or running (its share of the slots)", |o| o.held as f64),
            ("submitter_weight", "A submitter's fair-share weight", |o| f64::from(o.weight)),
        ];
        for (name, help, f) in submitter_series {
            family(&mut e, (name, help, MetricType::Gauge), "submitter", &per_submitter(f))?;
        }
        counter(&mut e, "steals", "Steals that moved at least one job", s.steals_total)?;
        counter(&mut e, "jobs_stolen", "Jobs moved from one worker to another by stealing", s.jobs_stolen_total)?;
        let refusals: Vec<(String, f64)> = [
            ("stale_epoch", s.stale_reports_total),
            ("unauthenticated", s.unauthenticated_total),
            ("permission_denied", s.permission_denied_total),
            ("rate_limited", s.rate_limited_total),
            ("quota", s.quota_refused_total),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v as f64))
        .collect();
        family(&mut e, ("refusals", "Calls or reports refused, by reason", MetricType::Counter), "reason", &refusals)
    }
}
