//! Per submitter: unfinished jobs and the quotas a submission is held to, and the slots held (leased or running
//! jobs) and fair-share weight that order the queue ([`super::line`]).

use std::collections::HashMap;

use burst_proto::v1::SubmitterStats;

use super::line::Share;
use super::{Quota, SchedError};

#[derive(Default)]
pub struct Owners {
    quota: Quota,
    /// Unfinished jobs per owner; an owner with none is not listed.
    active: HashMap<String, u64>,
    /// Jobs per owner that hold a place on a worker (leased or running); an owner with none is not listed.
    held: HashMap<String, u64>,
    /// Fair-share weights from the tokens file; an owner not listed weighs 1.
    weights: HashMap<String, u32>,
}

/// `map[owner] += 1`, without an allocation once the owner is known: this runs per job.
fn increment(map: &mut HashMap<String, u64>, owner: &str) {
    match map.get_mut(owner) {
        Some(n) => *n += 1,
        None => {
            map.insert(owner.to_string(), 1);
        }
    }
}

/// `map[owner] -= 1`, forgetting an owner at 0.
fn decrement(map: &mut HashMap<String, u64>, owner: &str) {
    if let Some(n) = map.get_mut(owner) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(owner);
        }
    }
}

impl Owners {
    pub fn set_quota(&mut self, quota: Quota) {
        self.quota = quota;
    }

    /// The fair-share weights from now on (an owner not named weighs 1).
    pub fn set_weights(&mut self, weights: HashMap<String, u32>) {
        self.weights = weights;
    }

    /// One more unfinished job of `owner`.
    pub fn add(&mut self, owner: &str) {
        increment(&mut self.active, owner);
    }

    /// One of `owner`'s jobs ended.
    pub fn ended(&mut self, owner: &str) {
        decrement(&mut self.active, owner);
    }

    /// One of `owner`'s jobs now holds (`true`) or no longer holds a place on a worker.
    pub fn held(&mut self, owner: &str, holds: bool) {
        if holds { increment(&mut self.held, owner) } else { decrement(&mut self.held, owner) }
    }

    pub fn share(&self, owner: &str) -> Share {
        Share {
            held: self.held.get(owner).copied().unwrap_or(0),
            weight: self.weights.get(owner).copied().unwrap_or(1),
        }
    }

    /// Each owner with unfinished jobs, by name.
    pub fn stats(&self) -> Vec<SubmitterStats> {
        let mut out: Vec<SubmitterStats> = self
            .active
            .iter()
            .map(|(name, &active)| {
                let share = self.share(name);
                SubmitterStats {
                    name: name.clone(),
                    weight: share.weight,
                    queued: active.saturating_sub(share.held),
                    held: share.held,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Whether `new` more unfinished jobs of `owner` fit the quotas, with `total` unfinished in all.
    pub fn admit(&self, owner: &str, total: u64, new: u64) -> Result<(), SchedError> {
        let mine = self.active.get(owner).copied().unwrap_or(0);
        if total + new > self.quota.max_active {
            let max = self.quota.max_active;
            return Err(SchedError::Quota(format!("the controller holds its maximum of {max} unfinished jobs")));
        }
        if mine + new > self.quota.max_active_per_owner {
            let max = self.quota.max_active_per_owner;
            return Err(SchedError::Quota(format!(
                "{owner} has {mine} unfinished jobs; {new} more would pass its quota of {max}"
            )));
        }
        Ok(())
    }
}
