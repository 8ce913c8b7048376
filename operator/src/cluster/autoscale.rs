//! Elastic pools: how many worker pods a pool should have, from what its controller reports. A pure function;
//! the reconciler carries it out, and lowers a pool's pods only once the pods to go hold no job (it cordons them
//! first, so they get none).
//!
//! - Needed: enough workers for the pool's busy slots plus the jobs waiting for it (those whose waiting budget,
//!   if any, is spent), between the pool's minimum and maximum.
//! - Up at once when more are needed.
//! - Down only after the pool has had more than it needs for `scale_down_delay_seconds`, so a short lull does not
//!   let a pool go and come back.

/// Default seconds of surplus before an elastic pool is scaled down.
pub const DEFAULT_SCALE_DOWN_DELAY: i64 = 60;

/// What the controller says of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Demand {
    /// Queued jobs that may go to the pool now.
    pub waiting: u64,
    /// Slots of the pool running a job.
    pub busy: u32,
    /// Slots per worker of the pool.
    pub slots_per_worker: u32,
}

/// The pool's bounds and how long a surplus must last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: i32,
    pub max: i32,
    pub delay_s: i64,
}

/// What to do with a pool now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The worker pods it should have.
    pub replicas: i32,
    /// Since when it has had more than it needs (kept while that lasts).
    pub surplus_since: Option<i64>,
    /// Why it changed, for the Event; `None`: unchanged.
    pub why: Option<String>,
}

/// The pool's next step from `current` pods at `now` (Unix seconds). Without a demand (the controller could not be
/// read) nothing changes but the bounds.
pub fn decide(bounds: Bounds, current: i32, surplus_since: Option<i64>, demand: Option<Demand>, now: i64) -> Step {
    let clamp = |n: i32| n.clamp(bounds.min, bounds.max.max(bounds.min));
    let Some(d) = demand else {
        return Step { replicas: clamp(current), surplus_since, why: None };
    };
    let slots = u64::from(d.slots_per_worker.max(1));
    let needed = (u64::from(d.busy) + d.waiting).div_ceil(slots);
    let need = clamp(i32::try_from(needed).unwrap_or(i32::MAX));
    let load = format!("{} jobs waiting, {} slots busy", d.waiting, d.busy);
    if need > current {
        let why = format!("{load}: {current} -> {need} workers");
        return Step { replicas: need, surplus_since: None, why: Some(why) };
    }
    if need == current {
        return Step { replicas: current, surplus_since: None, why: None };
    }
    let since = surplus_since.unwrap_or(now);
    if now.saturating_sub(since) < bounds.delay_s {
        return Step { replicas: current, surplus_since: Some(since), why: None };
    }
    let why = format!("{load}, more workers than needed for {} s: {current} -> {need} workers", now - since);
    Step { replicas: need, surplus_since: Some(since), why: Some(why) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds { min: 0, max: 4, delay_s: 60 };

    fn demand(waiting: u64, busy: u32) -> Option<Demand> {
        Some(Demand { waiting, busy, slots_per_worker: 2 })
    }

    #[test]
    fn pools_scale_up_at_once_and_down_after_the_delay_within_their_bounds() {
        // (current, surplus since, demand, now) -> (replicas, surplus since, changed)
        let cases = [
            (0, None, demand(3, 0), 100, (2, None, true)),
            (2, None, demand(100, 4), 100, (4, None, true)),
            (4, Some(50), demand(4, 4), 100, (4, None, false)),
            (4, None, demand(0, 1), 100, (4, Some(100), false)),
            (4, Some(100), demand(0, 1), 159, (4, Some(100), false)),
            (4, Some(100), demand(0, 1), 160, (1, Some(100), true)),
            (1, Some(100), demand(0, 0), 300, (0, Some(100), true)),
            (3, None, None, 100, (3, None, false)),
            (9, None, None, 100, (4, None, false)),
        ];
        for (current, since, d, now, (replicas, surplus, changed)) in cases {
            let step = decide(B, current, since, d, now);
            assert_eq!(
                (step.replicas, step.surplus_since, step.why.is_some()),
                (replicas, surplus, changed),
                "{current} {d:?} at {now}"
            );
        }
        let min = Bounds { min: 1, ..B };
        assert_eq!(decide(min, 2, Some(0), demand(0, 0), 1_000).replicas, 1, "never under the minimum");
        let why = decide(B, 0, None, demand(3, 0), 0).why.unwrap();
        assert_eq!(why, "3 jobs waiting, 0 slots busy: 0 -> 2 workers");
    }
}
