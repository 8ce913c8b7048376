//! Unfinished jobs per submitter, and the quotas a submission is held to.

use std::collections::HashMap;

use super::{Quota, SchedError};

#[derive(Default)]
pub struct Owners {
    quota: Quota,
    /// Unfinished jobs per owner; an owner with none is not listed.
    active: HashMap<String, u64>,
}

impl Owners {
    pub fn set_quota(&mut self, quota: Quota) {
        self.quota = quota;
    }

    /// One more unfinished job of `owner` (no allocation once the owner is known: this runs per submitted job).
    pub fn add(&mut self, owner: &str) {
        match self.active.get_mut(owner) {
            Some(n) => *n += 1,
            None => {
                self.active.insert(owner.to_string(), 1);
            }
        }
    }

    /// One of `owner`'s jobs ended.
    pub fn ended(&mut self, owner: &str) {
        if let Some(n) = self.active.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.active.remove(owner);
            }
        }
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
