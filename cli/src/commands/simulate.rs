//! `burst simulate`: a discrete-event simulation of placing a workload on a fixed pool of given capacity and an
//! elastic pool, under each placement policy. Every placement decision is the controller's own
//! ([`burst_controller::policy::Policy::place`]); what the simulator adds is time, capacity and the queue.
//!
//! The model is Starburst's (Luo et al., USENIX ATC '24): the fixed pool ("on-prem") is already paid for; the
//! elastic pool ("cloud") has room for every job it is sent (or `--elastic-slots`) and costs its price per
//! slot-second for the time jobs run there. A job needs its size in slots ([`JobView::size_of`], rounded up).
//! Each event (an arrival, a job ending, a waiting budget running out) is followed by one pass over the queue,
//! oldest first, as the controller's dispatch does: a job goes where its placement allows and there is room,
//! cheapest first; a job that cannot go anywhere yet is passed over, so smaller jobs behind it may go.
//!
//! Every time is in integer milliseconds and the generator is seeded: a seed gives the same result every run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use burst_controller::policy::{JobView, Placement, Policy, PolicyKind, WaitBy};
use burst_proto::v1::Resources;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::Usage;

/// One job of a workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimJob {
    pub arrival_ms: u64,
    pub runtime_ms: u64,
    /// What the wait policy is told (a trace may give an estimate; the generator tells the truth).
    pub expected_runtime_ms: u64,
    pub resources: Resources,
}

impl SimJob {
    fn slots(&self) -> u32 {
        JobView::size_of(Some(&self.resources)).ceil() as u32
    }
}

/// The synthetic workload: Poisson arrivals, Pareto (heavy-tailed) runtimes, sizes of 1, 2, 4 or 8 slots.
#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    pub jobs: usize,
    pub seed: u64,
    /// Mean runtime in seconds.
    pub runtime_mean_s: f64,
    /// The Pareto shape: lower is heavier-tailed (above 1 for a finite mean).
    pub runtime_shape: f64,
    /// Offered load on the fixed pool: 1.0 keeps it exactly busy on average.
    pub load: f64,
}

/// Job sizes (slots) and how often each comes, shaped like Starburst's Philly-derived synthetic jobs: mostly
/// single-slot, a tail of wide ones.
const SIZES: [(u32, f64); 4] = [(1, 0.70), (2, 0.15), (4, 0.10), (8, 0.05)];

impl Synthetic {
    pub fn generate(&self, fixed_slots: u32) -> Vec<SimJob> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mean_size: f64 = SIZES.iter().map(|(s, p)| f64::from(*s) * p).sum();
        // Arrivals per second that offer `load` × the fixed pool's slots.
        let rate = self.load * f64::from(fixed_slots) / (self.runtime_mean_s * mean_size);
        // Pareto with mean m and shape a: scale = m (a - 1) / a; capped at 100 means so one job cannot dominate.
        let scale = self.runtime_mean_s * (self.runtime_shape - 1.0) / self.runtime_shape;
        let mut t = 0.0f64;
        (0..self.jobs)
            .map(|_| {
                t += -(1.0 - rng.random::<f64>()).ln() / rate;
                let u = 1.0 - rng.random::<f64>();
                let runtime = (scale / u.powf(1.0 / self.runtime_shape)).min(100.0 * self.runtime_mean_s);
                let pick: f64 = rng.random();
                let mut acc = 0.0;
                let size = SIZES
                    .iter()
                    .find(|(_, p)| {
                        acc += p;
                        pick < acc
                    })
                    .map_or(1, |(s, _)| *s);
                let runtime_ms = (runtime * 1000.0).round().max(1.0) as u64;
                SimJob {
                    arrival_ms: (t * 1000.0).round() as u64,
                    runtime_ms,
                    expected_runtime_ms: runtime_ms,
                    resources: Resources { cpu_millis: size * 1000, ..Resources::default() },
                }
            })
            .collect()
    }
}

/// A trace line: `{"arrival_s": 0.5, "runtime_s": 30, "cpu_millis": 2000, "gpus": 0, "expected_runtime_s": 25}`;
/// only `arrival_s` and `runtime_s` are required.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceLine {
    arrival_s: f64,
    runtime_s: f64,
    #[serde(default)]
    cpu_millis: u32,
    #[serde(default)]
    gpus: u32,
    expected_runtime_s: Option<f64>,
}

/// Parses a JSON Lines trace; errors name the line. Jobs are sorted by arrival.
pub fn parse_trace(source: &str, text: &str) -> Result<Vec<SimJob>, String> {
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("{source} line {}: {e}", i + 1);
        let l: TraceLine = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let secs = |what: &str, s: f64| match (0.0..1e9).contains(&s) {
            true => Ok((s * 1000.0).round() as u64),
            false => Err(at(format!("{what} must be a number of seconds from 0 to 1e9, not {s}"))),
        };
        let runtime_ms = secs("runtime_s", l.runtime_s)?.max(1);
        jobs.push(SimJob {
            arrival_ms: secs("arrival_s", l.arrival_s)?,
            runtime_ms,
            expected_runtime_ms: l
                .expected_runtime_s
                .map(|s| secs("expected_runtime_s", s))
                .transpose()?
                .unwrap_or(runtime_ms),
            resources: Resources { cpu_millis: l.cpu_millis, memory_bytes: 0, gpus: l.gpus },
        });
    }
    if jobs.is_empty() {
        return Err(format!("{source} has no jobs"));
    }
    jobs.sort_by_key(|j| j.arrival_ms);
    Ok(jobs)
}

/// The two pools: capacity in slots and price per slot-second.
#[derive(Clone, Copy, Debug)]
pub struct Pools {
    pub fixed_slots: u32,
    pub fixed_cost: f64,
    /// 0: as many as asked for.
    pub elastic_slots: u32,
    pub elastic_cost: f64,
}

/// What one policy did with the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub policy: Policy,
    pub jobs: usize,
    /// Slot-seconds run on each pool.
    pub fixed_slot_s: f64,
    pub elastic_slot_s: f64,
    /// What running on the pools cost: slot-seconds × price (the fixed pool's is zero at price zero).
    pub cost: f64,
    pub mean_jct_s: f64,
    pub p99_jct_s: f64,
    pub mean_wait_s: f64,
    /// Share of the jobs that ran on the elastic pool.
    pub spilled: f64,
    /// When the last job ended.
    pub makespan_s: f64,
    /// Jobs that could never run: wider than every pool the policy let them use. The other figures leave them
    /// out.
    pub never_ran: usize,
}

/// Where a placed job runs.
#[derive(Clone, Copy, PartialEq)]
enum Pool {
    Fixed,
    Elastic,
}

/// Runs `jobs` (sorted by arrival) through `policy` on `pools`.
pub fn simulate(jobs: &[SimJob], pools: Pools, policy: Policy) -> Outcome {
    let mut free = [pools.fixed_slots, if pools.elastic_slots == 0 { u32::MAX } else { pools.elastic_slots }];
    // Ending runs and budgets running out, soonest first: (time, kind, job). Kind 0 (an end) before 1.
    let mut events: BinaryHeap<Reverse<(u64, u8, usize)>> = BinaryHeap::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut started = vec![None::<(u64, Pool)>; jobs.len()];
    let mut budget_timer = vec![false; jobs.len()];
    let mut next = 0;
    let mut now = 0u64;
    let mut ended = vec![0u64; jobs.len()];
    let mut done = 0;
    // Cheapest first, as the controller orders pools; the cheapest (both, at equal prices) while a job waits.
    let (any, first): (&[Pool], &[Pool]) = match pools.fixed_cost.total_cmp(&pools.elastic_cost) {
        std::cmp::Ordering::Less => (&[Pool::Fixed, Pool::Elastic], &[Pool::Fixed]),
        std::cmp::Ordering::Equal => (&[Pool::Fixed, Pool::Elastic], &[Pool::Fixed, Pool::Elastic]),
        std::cmp::Ordering::Greater => (&[Pool::Elastic, Pool::Fixed], &[Pool::Elastic]),
    };
    while done < jobs.len() {
        // The next event: an arrival or the soonest ending/budget, whichever comes first.
        let arrival = jobs.get(next).map(|j| j.arrival_ms);
        let timed = events.peek().map(|Reverse((t, _, _))| *t);
        // At equal times a run's end comes first: its slots are free for the arrival.
        let arrives = match (arrival, timed) {
            (Some(a), Some(t)) => a < t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break, // nothing left that can run: a job wider than every pool it may use
        };
        if arrives {
            now = jobs[next].arrival_ms;
            queue.push_back(next);
            next += 1;
        } else if let Some(Reverse((t, kind, j))) = events.pop() {
            now = t;
            if kind == 0 {
                let pool = started[j].map_or(Pool::Elastic, |(_, p)| p);
                free[pool as usize] += jobs[j].slots();
                ended[j] = now;
                done += 1;
            }
        }
        // One dispatch pass, oldest first; what cannot go yet keeps its place.
        let mut waiting = VecDeque::with_capacity(queue.len());
        while let Some(j) = queue.pop_front() {
            if free.iter().all(|&f| f == 0) {
                waiting.push_back(j);
                waiting.extend(queue.drain(..));
                break;
            }
            let job = &jobs[j];
            let view = JobView {
                submitted_at_ms: job.arrival_ms,
                expected_runtime_ms: job.expected_runtime_ms,
                size: JobView::size_of(Some(&job.resources)),
            };
            let placement = policy.place(&view, now);
            let need = job.slots();
            let order = match placement {
                Placement::Any => any,
                Placement::First { .. } => first,
            };
            let pick = order.iter().copied().find(|p| free[*p as usize] >= need);
            match pick {
                Some(p) => {
                    free[p as usize] -= need;
                    started[j] = Some((now, p));
                    events.push(Reverse((now + job.runtime_ms, 0, j)));
                }
                None => {
                    if let Placement::First { until_ms: Some(until) } = placement
                        && !budget_timer[j]
                    {
                        budget_timer[j] = true;
                        events.push(Reverse((until, 1, j)));
                    }
                    waiting.push_back(j);
                }
            }
        }
        queue = waiting;
    }
    summarize(jobs, pools, policy, &started, &ended)
}

fn summarize(jobs: &[SimJob], pools: Pools, policy: Policy, started: &[Option<(u64, Pool)>], ended: &[u64]) -> Outcome {
    let (mut fixed_ms, mut elastic_ms, mut spilled) = (0f64, 0f64, 0usize);
    let mut jct: Vec<u64> = Vec::with_capacity(jobs.len());
    let mut waits = 0f64;
    for (j, job) in jobs.iter().enumerate() {
        let Some((start, pool)) = started[j] else { continue };
        let slot_ms = job.runtime_ms as f64 * f64::from(job.slots());
        match pool {
            Pool::Fixed => fixed_ms += slot_ms,
            Pool::Elastic => {
                elastic_ms += slot_ms;
                spilled += 1;
            }
        }
        jct.push(ended[j] - job.arrival_ms);
        waits += (start - job.arrival_ms) as f64;
    }
    jct.sort_unstable();
    let n = jct.len().max(1) as f64;
    let p99 = jct.get(((jct.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0);
    Outcome {
        policy,
        jobs: jct.len(),
        fixed_slot_s: fixed_ms / 1000.0,
        elastic_slot_s: elastic_ms / 1000.0,
        cost: (fixed_ms * pools.fixed_cost + elastic_ms * pools.elastic_cost) / 1000.0,
        mean_jct_s: jct.iter().sum::<u64>() as f64 / n / 1000.0,
        p99_jct_s: p99 as f64 / 1000.0,
        mean_wait_s: waits / n / 1000.0,
        spilled: spilled as f64 / n,
        makespan_s: ended.iter().copied().max().unwrap_or(0) as f64 / 1000.0,
        never_ran: jobs.len() - jct.len(),
    }
}

/// The policies a run compares: `cheapest`, `first-pool-only` and `wait` at each factor.
pub fn policies(kinds: &[PolicyKind], wait_by: WaitBy, factors: &[f64]) -> Vec<Policy> {
    let mut out = Vec::new();
    for &kind in kinds {
        match kind {
            PolicyKind::Wait => out.extend(factors.iter().map(|&factor| Policy { kind, wait_by, factor })),
            kind => out.push(Policy { kind, wait_by, factor: 0.0 }),
        }
    }
    out
}

pub fn run(args: crate::args::SimulateArgs, json_out: bool) -> anyhow::Result<u8> {
    let pools = Pools {
        fixed_slots: args.fixed_slots,
        fixed_cost: args.fixed_cost,
        elastic_slots: args.elastic_slots,
        elastic_cost: args.elastic_cost,
    };
    if pools.fixed_slots == 0 {
        return Err(Usage("--fixed-slots must be at least 1".into()).into());
    }
    for (what, v) in [("--fixed-cost", args.fixed_cost), ("--elastic-cost", args.elastic_cost)] {
        if !v.is_finite() || v < 0.0 {
            return Err(Usage(format!("{what} must be a number of 0 or more, not {v}")).into());
        }
    }
    let (jobs, workload) = match &args.trace {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| Usage(format!("cannot read {}: {e}", path.display())))?;
            let jobs = parse_trace(&path.display().to_string(), &text).map_err(Usage)?;
            (jobs, json!({"trace": path.display().to_string()}))
        }
        None => {
            let s = Synthetic {
                jobs: args.jobs,
                seed: args.seed,
                runtime_mean_s: args.runtime_mean,
                runtime_shape: args.runtime_shape,
                load: args.load,
            };
            let ok = s.jobs > 0 && s.runtime_mean_s > 0.0 && s.runtime_shape > 1.0 && s.load > 0.0;
            if !ok || !s.runtime_mean_s.is_finite() || !s.load.is_finite() || !s.runtime_shape.is_finite() {
                return Err(Usage(
                    "--jobs, --runtime-mean and --load must be above 0 and --runtime-shape above 1".into(),
                )
                .into());
            }
            let workload = json!({
                "synthetic": {"jobs": s.jobs, "seed": s.seed, "runtime_mean_s": s.runtime_mean_s,
                    "runtime_shape": s.runtime_shape, "load": s.load}
            });
            (s.generate(pools.fixed_slots), workload)
        }
    };
    let widest = jobs.iter().map(SimJob::slots).max().unwrap_or(0);
    if widest > pools.fixed_slots && pools.elastic_slots != 0 && widest > pools.elastic_slots {
        return Err(Usage(format!("a job needs {widest} slots; neither pool has that many")).into());
    }
    let kinds = if args.policy.is_empty() {
        vec![PolicyKind::Cheapest, PolicyKind::FirstPoolOnly, PolicyKind::Wait]
    } else {
        args.policy.clone()
    };
    for f in &args.wait_factor {
        Policy { factor: *f, ..Policy::default() }.validate().map_err(Usage)?;
    }
    let outcomes: Vec<Outcome> =
        policies(&kinds, args.wait_by, &args.wait_factor).into_iter().map(|p| simulate(&jobs, pools, p)).collect();
    let cheapest = simulate(&jobs, pools, Policy { kind: PolicyKind::Cheapest, ..Policy::default() });
    if json_out {
        let results: Vec<Value> = outcomes.iter().map(|o| outcome_json(o, &cheapest)).collect();
        let pools = json!({"fixed_slots": pools.fixed_slots, "fixed_cost": pools.fixed_cost,
            "elastic_slots": pools.elastic_slots, "elastic_cost": pools.elastic_cost});
        println!("{}", json!({"workload": workload, "jobs": jobs.len(), "pools": pools, "results": results}));
    } else {
        print!("{}", table(&outcomes, &cheapest));
    }
    for o in outcomes.iter().filter(|o| o.never_ran > 0) {
        eprintln!("burst: under {}, {} jobs never ran: wider than every pool it let them use", o.policy, o.never_ran);
    }
    Ok(0)
}

fn outcome_json(o: &Outcome, base: &Outcome) -> Value {
    json!({
        "policy": o.policy.kind.name(),
        "wait_by": (o.policy.kind == PolicyKind::Wait).then(|| o.policy.wait_by.name()),
        "wait_factor": (o.policy.kind == PolicyKind::Wait).then_some(o.policy.factor),
        "jobs": o.jobs,
        "cost": o.cost,
        "cost_vs_cheapest": ratio(o.cost, base.cost),
        "fixed_slot_seconds": o.fixed_slot_s,
        "elastic_slot_seconds": o.elastic_slot_s,
        "mean_jct_s": o.mean_jct_s,
        "mean_jct_vs_cheapest": ratio(o.mean_jct_s, base.mean_jct_s),
        "p99_jct_s": o.p99_jct_s,
        "mean_wait_s": o.mean_wait_s,
        "spilled_share": o.spilled,
        "makespan_s": o.makespan_s,
        "never_ran": o.never_ran,
    })
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn table(outcomes: &[Outcome], base: &Outcome) -> String {
    let head = ["POLICY", "COST", "VS CHEAPEST", "MEAN JCT", "VS CHEAPEST", "P99 JCT", "MEAN WAIT", "SPILLED"];
    let mut rows = vec![head.map(String::from).to_vec()];
    let vs = |a: f64, b: f64| ratio(a, b).map_or("-".into(), |r| format!("{r:.3}"));
    for o in outcomes {
        rows.push(vec![
            o.policy.to_string(),
            format!("{:.0}", o.cost),
            vs(o.cost, base.cost),
            format!("{:.1} s", o.mean_jct_s),
            vs(o.mean_jct_s, base.mean_jct_s),
            format!("{:.1} s", o.p99_jct_s),
            format!("{:.1} s", o.mean_wait_s),
            format!("{:.1}%", 100.0 * o.spilled),
        ]);
    }
    crate::render::table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Pools {
        Pools { fixed_slots: 16, fixed_cost: 0.0, elastic_slots: 0, elastic_cost: 1.0 }
    }

    fn workload(seed: u64) -> Vec<SimJob> {
        Synthetic { jobs: 2_000, seed, runtime_mean_s: 60.0, runtime_shape: 1.5, load: 1.2 }.generate(16)
    }

    fn policy(kind: PolicyKind, factor: f64) -> Policy {
        Policy { kind, wait_by: WaitBy::Constant, factor }
    }

    #[test]
    fn a_seed_gives_the_same_result_every_time_and_another_seed_another() {
        let a = simulate(&workload(7), pools(), policy(PolicyKind::Wait, 30.0));
        let b = simulate(&workload(7), pools(), policy(PolicyKind::Wait, 30.0));
        assert_eq!(a, b);
        let c = simulate(&workload(8), pools(), policy(PolicyKind::Wait, 30.0));
        assert_ne!(a, c);
        println!("seed 7: {a:?}");
    }

    #[test]
    fn the_policies_trade_cost_for_completion_time() {
        let jobs = workload(1);
        let cheapest = simulate(&jobs, pools(), policy(PolicyKind::Cheapest, 0.0));
        let only = simulate(&jobs, pools(), policy(PolicyKind::FirstPoolOnly, 0.0));
        let no_wait = simulate(&jobs, pools(), policy(PolicyKind::Wait, 0.0));
        assert_eq!(cheapest.jobs, jobs.len(), "every job ran");
        assert_eq!((only.cost, only.spilled), (0.0, 0.0), "first-pool-only never bursts");
        assert!(only.mean_jct_s > cheapest.mean_jct_s, "and waits for it: {only:?} vs {cheapest:?}");
        assert_eq!(no_wait.cost, cheapest.cost, "a budget of zero is no waiting");
        let mut last = cheapest.clone();
        for factor in [10.0, 60.0, 300.0, 3_600.0] {
            let w = simulate(&jobs, pools(), policy(PolicyKind::Wait, factor));
            assert!(w.cost <= last.cost, "a longer budget bursts no more: {factor} s: {w:?} vs {last:?}");
            assert!(w.spilled <= last.spilled);
            assert!(w.cost >= only.cost);
            last = w;
        }
        assert!(last.cost < cheapest.cost * 0.5, "an hour's budget saves most of the cost: {last:?}");
    }

    #[test]
    fn each_job_runs_once_and_no_pool_is_overfilled() {
        // A tiny elastic pool: jobs wait for either pool; all must still end, each after its runtime.
        let jobs = workload(3);
        let tight = Pools { elastic_slots: 8, ..pools() };
        for p in [policy(PolicyKind::Cheapest, 0.0), policy(PolicyKind::Wait, 60.0)] {
            let o = simulate(&jobs, tight, p);
            assert_eq!(o.jobs, jobs.len(), "{p}");
            let work: f64 = jobs.iter().map(|j| j.runtime_ms as f64 * f64::from(j.slots()) / 1000.0).sum();
            assert!((o.fixed_slot_s + o.elastic_slot_s - work).abs() < 1e-6, "{p}: the work is all done once");
            assert!(o.fixed_slot_s <= 16.0 * o.makespan_s + 1e-6, "{p}: never more than 16 slots busy");
        }
    }

    #[test]
    fn jobs_wider_than_the_pools_a_policy_allows_are_counted_not_hidden() {
        let jobs = workload(5);
        let small = Pools { fixed_slots: 4, ..pools() };
        let wide = jobs.iter().filter(|j| j.slots() > 4).count();
        assert!(wide > 0);
        let only = simulate(&jobs, small, policy(PolicyKind::FirstPoolOnly, 0.0));
        assert_eq!((only.never_ran, only.jobs), (wide, jobs.len() - wide));
        assert_eq!(
            simulate(&jobs, small, policy(PolicyKind::Cheapest, 0.0)).never_ran,
            0,
            "the elastic pool fits them"
        );
    }

    #[test]
    fn traces_parse_or_name_the_bad_line() {
        let text = "# arrival, runtime, resources\n{\"arrival_s\": 2, \"runtime_s\": 1.5}\n\n{\"arrival_s\": 0, \"runtime_s\": 10, \"cpu_millis\": 4000, \"expected_runtime_s\": 8}\n";
        let jobs = parse_trace("t.jsonl", text).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (jobs[0].arrival_ms, jobs[0].runtime_ms, jobs[0].expected_runtime_ms, jobs[0].slots()),
            (0, 10_000, 8_000, 4)
        );
        assert_eq!((jobs[1].arrival_ms, jobs[1].expected_runtime_ms), (2_000, 1_500));
        for (bad, want) in [
            ("{\"arrival_s\": 1}", "t line 1: missing field `runtime_s`"),
            ("{\"arrival_s\": -1, \"runtime_s\": 1}", "t line 1: arrival_s must be"),
            ("{\"arrival_s\": 1, \"runtime_s\": 1, \"gpu\": 1}", "unknown field `gpu`"),
            ("# nothing\n", "t has no jobs"),
        ] {
            let err = parse_trace("t", bad).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
