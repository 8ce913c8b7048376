//! Placement policies: which pools a queued job may go to now. A policy is a pure function of the job, the pools
//! it may run on (cheapest first) and the time; whether a pool has room is the dispatcher's business, and the
//! router still picks the worker inside the pool. `burst simulate` drives these same functions.
//!
//! The policies are Starburst's (Luo et al., USENIX ATC '24): keep jobs on the cheap, already-paid-for pool and
//! burst to a pay-per-use pool only when worth it.
//! - `cheapest`: the cheapest pool with room, else the next: never waits while any allowed pool has room.
//! - `first-pool-only`: only the cheapest allowed pool (Starburst's `fifo_onprem_only`): never bursts.
//! - `wait`: the cheapest allowed pool until the job's waiting budget, counted from its submission, is spent;
//!   then any allowed pool, cheapest first. The budget is [`WaitBy`] × the factor.

use std::collections::HashMap;
use std::fmt;

/// Jobs without a `--pool` run in this one; so does a worker started without `--pool`.
pub const DEFAULT_POOL: &str = "default";

/// The placement policies a controller can be configured with (`--policy`, `controller.policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// The cheapest pool with room, then the next: no waiting.
    #[default]
    Cheapest,
    /// Only the cheapest pool a job may use (Starburst's fifo_onprem_only).
    FirstPoolOnly,
    /// Wait for the cheapest pool until the job's waiting budget is spent, then any pool.
    Wait,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Cheapest => "cheapest",
            PolicyKind::FirstPoolOnly => "first-pool-only",
            PolicyKind::Wait => "wait",
        }
    }
}

/// What a `wait` job's budget is proportional to (Starburst's waiting policies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitBy {
    /// `factor` seconds, whatever the job.
    #[default]
    Constant,
    /// `factor` × the job's expected runtime (0 when the spec gives none).
    Runtime,
    /// `factor` seconds per unit of the job's size ([`JobView::size`]): Starburst's Star-Wait.
    Resources,
    /// `factor` × expected runtime × size.
    Compute,
}

impl WaitBy {
    pub fn name(self) -> &'static str {
        match self {
            WaitBy::Constant => "constant",
            WaitBy::Runtime => "runtime",
            WaitBy::Resources => "resources",
            WaitBy::Compute => "compute",
        }
    }
}

/// A placement policy and, for `wait`, how the budget is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub wait_by: WaitBy,
    /// Seconds (constant, resources) or a plain multiplier (runtime, compute); finite and not negative.
    pub factor: f64,
}

/// The default waiting budget: ten seconds, long for a job of milliseconds, short next to a cloud node's start.
pub const DEFAULT_WAIT_FACTOR: f64 = 10.0;

impl Default for Policy {
    fn default() -> Self {
        Policy { kind: PolicyKind::default(), wait_by: WaitBy::default(), factor: DEFAULT_WAIT_FACTOR }
    }
}

/// A job as a policy sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JobView {
    pub submitted_at_ms: u64,
    /// 0: unknown.
    pub expected_runtime_ms: u64,
    /// The job's size: the cores it requests (at least 1) plus its gpus.
    pub size: f64,
}

impl JobView {
    pub fn size_of(resources: Option<&burst_proto::v1::Resources>) -> f64 {
        let r = resources.copied().unwrap_or_default();
        (f64::from(r.cpu_millis) / 1000.0).max(1.0) + f64::from(r.gpus)
    }
}

/// Where a job may go now, among the pools it may run on (cheapest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Any of them, cheapest first.
    Any,
    /// Only the cheapest; `until_ms`: the moment the budget is spent and [`Placement::Any`] begins (none: never).
    First { until_ms: Option<u64> },
}

impl Policy {
    /// Checks the settings; the error names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !self.factor.is_finite() || self.factor < 0.0 {
            return Err(format!("the wait factor must be a number of 0 or more, not {}", self.factor));
        }
        Ok(())
    }

    /// The job's waiting budget in milliseconds.
    pub fn budget_ms(&self, job: &JobView) -> u64 {
        let runtime_s = job.expected_runtime_ms as f64 / 1000.0;
        let seconds = match self.wait_by {
            WaitBy::Constant => self.factor,
            WaitBy::Runtime => self.factor * runtime_s,
            WaitBy::Resources => self.factor * job.size,
            WaitBy::Compute => self.factor * runtime_s * job.size,
        };
        // Saturates: a huge factor is a budget that never runs out, not an overflow.
        (seconds * 1000.0).round().clamp(0.0, u64::MAX as f64) as u64
    }

    /// Where `job` may go at `now_ms`.
    pub fn place(&self, job: &JobView, now_ms: u64) -> Placement {
        match self.kind {
            PolicyKind::Cheapest => Placement::Any,
            PolicyKind::FirstPoolOnly => Placement::First { until_ms: None },
            PolicyKind::Wait => {
                let until = job.submitted_at_ms.saturating_add(self.budget_ms(job));
                if now_ms < until { Placement::First { until_ms: Some(until) } } else { Placement::Any }
            }
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PolicyKind::Wait => write!(f, "wait ({} × {})", self.wait_by.name(), self.factor),
            kind => f.write_str(kind.name()),
        }
    }
}

/// A pool as configured on the controller (`--pool`, `[[controller.pools]]`, a BurstCluster's `spec.pools`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    /// Relative cost of one slot for one second [default: 1].
    #[serde(default = "one")]
    pub cost: f64,
    /// Scaled with demand by the operator, rather than of a fixed size.
    #[serde(default)]
    pub elastic: bool,
    /// What a job's `pool_selector` matches.
    #[serde(default)]
    pub labels: HashMap<String, String>,
}

fn one() -> f64 {
    1.0
}

impl PoolConfig {
    /// A pool named by a worker but not configured: cost 1, fixed, no labels.
    pub fn unconfigured(name: &str) -> Self {
        PoolConfig { name: name.to_string(), cost: 1.0, elastic: false, labels: HashMap::new() }
    }

    /// Checks one pool's settings; the error names the pool and what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        burst_proto::check_pool(&self.name)?;
        if !self.cost.is_finite() || self.cost < 0.0 {
            return Err(format!("pool {:?}: the cost must be a number of 0 or more, not {}", self.name, self.cost));
        }
        Ok(())
    }

    /// Parses `--pool NAME=COST[:elastic]`, for example `onprem=0` or `cloud=3:elastic`.
    pub fn parse_flag(flag: &str) -> Result<Self, String> {
        let usage = || format!("--pool {flag:?}: expected NAME=COST or NAME=COST:elastic, for example cloud=3:elastic");
        let (name, rest) = flag.split_once('=').ok_or_else(usage)?;
        let (cost, elastic) = match rest.split_once(':') {
            Some((cost, "elastic")) => (cost, true),
            Some(_) => return Err(usage()),
            None => (rest, false),
        };
        let cost = cost.trim().parse::<f64>().map_err(|_| usage())?;
        let pool = PoolConfig { name: name.trim().to_string(), cost, elastic, labels: HashMap::new() };
        pool.validate()?;
        Ok(pool)
    }

    /// Whether a job's selector picks this pool.
    pub fn matches(&self, selector: &HashMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(submitted_at_ms: u64, expected_runtime_ms: u64, size: f64) -> JobView {
        JobView { submitted_at_ms, expected_runtime_ms, size }
    }

    fn wait(by: WaitBy, factor: f64) -> Policy {
        Policy { kind: PolicyKind::Wait, wait_by: by, factor }
    }

    #[test]
    fn budgets_follow_starburst_waiting_policies() {
        // (policy, job, budget in ms)
        let cases = [
            (wait(WaitBy::Constant, 10.0), job(0, 0, 1.0), 10_000),
            (wait(WaitBy::Constant, 10.0), job(0, 60_000, 4.0), 10_000),
            (wait(WaitBy::Constant, 0.0), job(0, 60_000, 4.0), 0),
            (wait(WaitBy::Runtime, 0.25), job(0, 60_000, 4.0), 15_000),
            (wait(WaitBy::Runtime, 0.25), job(0, 0, 4.0), 0),
            (wait(WaitBy::Resources, 2.0), job(0, 60_000, 4.0), 8_000),
            (wait(WaitBy::Resources, 2.0), job(0, 0, 1.0), 2_000),
            (wait(WaitBy::Compute, 0.5), job(0, 10_000, 3.0), 15_000),
            (wait(WaitBy::Compute, 0.5), job(0, 0, 3.0), 0),
            (wait(WaitBy::Constant, f64::MAX), job(0, 0, 1.0), u64::MAX),
        ];
        for (policy, job, want) in cases {
            assert_eq!(policy.budget_ms(&job), want, "{policy} for {job:?}");
        }
    }

    #[test]
    fn placements_by_policy_and_time() {
        let cheapest = Policy { kind: PolicyKind::Cheapest, ..Policy::default() };
        let first = Policy { kind: PolicyKind::FirstPoolOnly, ..Policy::default() };
        let waits = wait(WaitBy::Constant, 5.0);
        let j = job(1_000, 0, 1.0);
        // (policy, now, placement)
        let cases = [
            (cheapest, 1_000, Placement::Any),
            (cheapest, 999_999, Placement::Any),
            (first, 1_000, Placement::First { until_ms: None }),
            (first, 999_999, Placement::First { until_ms: None }),
            (waits, 1_000, Placement::First { until_ms: Some(6_000) }),
            (waits, 5_999, Placement::First { until_ms: Some(6_000) }),
            (waits, 6_000, Placement::Any),
            // A clock behind the submission (another controller's clock after a failover) still waits.
            (waits, 0, Placement::First { until_ms: Some(6_000) }),
            (wait(WaitBy::Constant, 0.0), 1_000, Placement::Any),
        ];
        for (policy, now, want) in cases {
            assert_eq!(policy.place(&j, now), want, "{policy} at {now}");
        }
    }

    #[test]
    fn sizes_count_cores_and_gpus() {
        use burst_proto::v1::Resources;
        let r = |cpu_millis, gpus| Some(Resources { cpu_millis, gpus, memory_bytes: 0 });
        assert_eq!(JobView::size_of(None), 1.0);
        assert_eq!(JobView::size_of(r(250, 0).as_ref()), 1.0, "a fraction of a core counts as one");
        assert_eq!(JobView::size_of(r(4000, 0).as_ref()), 4.0);
        assert_eq!(JobView::size_of(r(2000, 2).as_ref()), 4.0);
    }

    #[test]
    fn pool_flags_parse_or_say_what_is_wrong() {
        let p = PoolConfig::parse_flag("cloud=3:elastic").unwrap();
        assert_eq!((p.name.as_str(), p.cost, p.elastic), ("cloud", 3.0, true));
        let p = PoolConfig::parse_flag("onprem=0").unwrap();
        assert_eq!((p.name.as_str(), p.cost, p.elastic), ("onprem", 0.0, false));
        for bad in ["cloud", "cloud=", "cloud=x", "cloud=-1", "cloud=3:spot", "=3", "Bad Name=1", "cloud=NaN"] {
            let err = PoolConfig::parse_flag(bad).unwrap_err();
            assert!(err.contains(bad.split('=').next().unwrap()) || err.contains("cost"), "{bad}: {err}");
        }
        assert!(Policy { factor: -1.0, ..Policy::default() }.validate().is_err());
        assert!(Policy { factor: f64::INFINITY, ..Policy::default() }.validate().is_err());
    }
}
