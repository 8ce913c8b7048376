//! A line of queued jobs in the order they are served: the highest priority first; among jobs of equal priority,
//! the submitter with the least share of the slots ([`Share`]: jobs it holds on workers, per unit of weight)
//! first; within one submitter, in the order queued (oldest first, a job queued again at the front).
//!
//! So one submitter's million queued jobs do not starve another's single job: each free slot goes to whoever
//! holds less, whatever was submitted first. With one submitter and one priority this is a plain FIFO.
//!
//! A line holds ids only, and may hold ids of jobs that no longer wait (cancelled, ended); whoever pops one
//! checks (see `Scheduler::place`).

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::lifecycle::JobId;

/// A submitter's share of the slots: what it holds (jobs leased or running) against its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub held: u64,
    pub weight: u32,
}

impl Share {
    /// `held / weight` against the other's, exactly (no floating point: equal shares are equal).
    fn cmp_share(&self, other: &Share) -> Ordering {
        let mine = u128::from(self.held) * u128::from(other.weight.max(1));
        let theirs = u128::from(other.held) * u128::from(self.weight.max(1));
        mine.cmp(&theirs)
    }
}

#[derive(Default)]
pub struct Line {
    /// Highest priority first.
    levels: BTreeMap<Reverse<i32>, Level>,
    len: usize,
}

/// The jobs of one priority, a queue per submitter.
#[derive(Default)]
struct Level {
    by_owner: HashMap<Arc<str>, VecDeque<JobId>>,
    len: usize,
}

impl Line {
    pub fn push_back(&mut self, id: JobId, priority: i32, owner: &str) {
        self.queue_of(priority, owner).push_back(id);
    }

    /// Puts `id` before its submitter's other jobs of its priority (a job queued again, a job passed over).
    pub fn push_front(&mut self, id: JobId, priority: i32, owner: &str) {
        self.queue_of(priority, owner).push_front(id);
    }

    /// The queue `owner`'s job of `priority` goes in; counted in as it will be.
    fn queue_of(&mut self, priority: i32, owner: &str) -> &mut VecDeque<JobId> {
        self.len += 1;
        let level = self.levels.entry(Reverse(priority)).or_default();
        level.len += 1;
        // No allocation for a submitter already in line: this runs per queued job.
        if !level.by_owner.contains_key(owner) {
            level.by_owner.insert(Arc::from(owner), VecDeque::new());
        }
        level.by_owner.get_mut(owner).expect("inserted above")
    }

    /// The next job to serve: of the highest priority, the submitter whose share `share` says is least (ties: the
    /// one whose next job is oldest, ids growing with submission time). Submitters `passed` says are passed over
    /// are left out (see `Scheduler::dispatch`).
    pub fn pop(&mut self, share: impl Fn(&str) -> Share, passed: impl Fn(&str) -> bool) -> Option<JobId> {
        for (&priority, level) in self.levels.iter_mut() {
            // The owner's key (a reference count, not a copy of the name): this runs per job served.
            let owner = level
                .by_owner
                .iter()
                .filter(|(owner, _)| !passed(owner))
                .filter_map(|(owner, q)| q.front().map(|head| (owner, head)))
                // (With one submitter, as is common, never called.)
                .min_by(|a, b| share(a.0).cmp_share(&share(b.0)).then_with(|| a.1.cmp(b.1)))
                .map(|(owner, _)| owner.clone());
            let Some(owner) = owner else { continue };
            let queue = level.by_owner.get_mut(&owner)?;
            let id = queue.pop_front();
            if queue.is_empty() {
                level.by_owner.remove(&owner);
            }
            if id.is_some() {
                self.len -= 1;
                level.len -= 1;
            }
            if level.by_owner.is_empty() {
                self.levels.remove(&priority);
            }
            return id;
        }
        None
    }

    /// The highest priority in line.
    pub fn top_priority(&self) -> Option<i32> {
        self.levels.keys().next().map(|p| p.0)
    }

    /// Entries in line at priorities above `priority` (stale ones included: an estimate for a waiting reason).
    pub fn ahead_of(&self, priority: i32) -> usize {
        self.levels.range(..Reverse(priority)).map(|(_, l)| l.len).sum()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every id in line, highest priority first (within a priority, submitters in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = &JobId> {
        self.levels.values().flat_map(|l| l.by_owner.values().flatten())
    }

    #[cfg(test)]
    pub fn contains(&self, id: &str) -> bool {
        self.iter().any(|j| j == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(line: &mut Line, held: &mut HashMap<&'static str, u64>, weights: &HashMap<&str, u32>) -> Vec<JobId> {
        let mut out = Vec::new();
        loop {
            let share = |o: &str| Share {
                held: held.get(o).copied().unwrap_or(0),
                weight: weights.get(o).copied().unwrap_or(1),
            };
            let Some(id) = line.pop(share, |_| false) else { break };
            // Each job served holds a slot from now on.
            let owner = if id.starts_with('a') { "ann" } else { "bob" };
            *held.entry(owner).or_default() += 1;
            out.push(id);
        }
        out
    }

    #[test]
    fn one_submitter_and_one_priority_is_a_fifo() {
        let mut line = Line::default();
        for i in 0..5 {
            line.push_back(format!("a{i}"), 0, "ann");
        }
        line.push_front("a-again".into(), 0, "ann");
        assert_eq!(line.len(), 6);
        let order = drain(&mut line, &mut HashMap::new(), &HashMap::new());
        assert_eq!(order, ["a-again", "a0", "a1", "a2", "a3", "a4"]);
        assert!(line.is_empty() && line.levels.is_empty());
    }

    #[test]
    fn equal_priorities_alternate_between_submitters_by_share() {
        let mut line = Line::default();
        // Ann floods first; Bob's two jobs come later.
        for i in 0..6 {
            line.push_back(format!("a{i}"), 0, "ann");
        }
        line.push_back("b0".into(), 0, "bob");
        line.push_back("b1".into(), 0, "bob");
        // Ann already holds 3 slots: Bob's jobs go first, then the two alternate (ties: the oldest id).
        let mut held = HashMap::from([("ann", 3)]);
        let order = drain(&mut line, &mut held, &HashMap::new());
        assert_eq!(order, ["b0", "b1", "a0", "a1", "a2", "a3", "a4", "a5"]);
    }

    #[test]
    fn weights_scale_the_share() {
        let mut line = Line::default();
        for i in 0..6 {
            line.push_back(format!("a{i}"), 0, "ann");
            line.push_back(format!("b{i}"), 0, "bob");
        }
        // Ann weighs 2: she gets two slots for each of Bob's.
        let weights = HashMap::from([("ann", 2)]);
        let order = drain(&mut line, &mut HashMap::new(), &weights);
        let first_six: String = order[..6].iter().map(|id| &id[..1]).collect();
        assert_eq!(first_six, "abaaba", "{order:?}");
    }

    #[test]
    fn a_higher_priority_goes_first_whatever_the_share() {
        let mut line = Line::default();
        line.push_back("b-low".into(), -5, "bob");
        line.push_back("a0".into(), 0, "ann");
        line.push_back("a-urgent".into(), 10, "ann");
        line.push_back("b0".into(), 0, "bob");
        let mut held = HashMap::from([("ann", 100)]);
        assert_eq!((line.ahead_of(0), line.ahead_of(-5), line.ahead_of(10)), (1, 3, 0));
        let order = drain(&mut line, &mut held, &HashMap::new());
        assert_eq!(order, ["a-urgent", "b0", "a0", "b-low"]);
        assert_eq!(line.len(), 0);
    }
}
