//! Job arrays (`JobSpec.array`): one job that stands for many indices. The array itself is queued but never
//! runs and sits in no line; its indices are made into jobs of their own (`<array id>:<index>`, with
//! `BURST_ARRAY_INDEX` and `BURST_ARRAY_ID` set) only when workers have room for them, and from then on are
//! jobs like any other (priority, fair share, retries, stealing). So a million-index array costs one record
//! until its indices run.
//!
//! Each dispatch first makes as many indices into jobs as there are free places on the workers (less the
//! indices already made and still queued), taking turns between arrays, within each array's parallelism. An
//! index's changes of state are counted on its array; when the last index ends, the array ends: succeeded if
//! every index did, else failed, saying how many failed (the first of them by index and reason in its status).
//! The counts of ended indices are stored with the array; those of unfinished ones are counted again from the
//! index jobs when the controller restarts.

use std::collections::BTreeSet;

use burst_proto::v1::JobState;

use super::*;

/// Failed indices an array's status lists, and failures it describes.
const LISTED_FAILED: usize = 100;
const DESCRIBED_FAILURES: usize = 10;

#[derive(Default)]
pub struct Arrays {
    /// Unfinished arrays whose dependencies are met: those that may have indices to make into jobs.
    live: BTreeSet<JobId>,
}

impl Arrays {
    #[cfg(test)]
    pub fn is_live(&self, id: &str) -> bool {
        self.live.contains(id)
    }
}

/// The array and index an index job's id names (`<array id>:<index>`).
pub fn index_of(id: &str) -> Option<(&str, u64)> {
    let (array, index) = id.rsplit_once(':')?;
    Some((array, index.parse().ok()?))
}

impl Scheduler {
    /// Array `id`'s dependencies are met (or it has none): its indices may be made into jobs.
    pub(super) fn open_array(&mut self, id: JobId) {
        self.arrays.live.insert(id);
    }

    /// Makes array indices into queued jobs while the workers have free places for them, one array after
    /// another in turn.
    pub(super) fn make_indices(&mut self, now_ms: u64) {
        if self.arrays.live.is_empty() {
            return;
        }
        let free = self.registry.free_places();
        let queued: u64 =
            self.arrays.live.iter().filter_map(|id| self.jobs.get(id)?.array.as_ref().map(|a| a.counts.queued)).sum();
        let mut room = free.saturating_sub(queued);
        let live: Vec<JobId> = self.arrays.live.iter().cloned().collect();
        let mut open = live;
        while room > 0 && !open.is_empty() {
            open.retain(|id| {
                if room == 0 {
                    return true;
                }
                let made = self.make_index(id, now_ms);
                room = room.saturating_sub(u64::from(made));
                made
            });
        }
    }

    /// Makes array `id`'s next index into a queued job, if it has one and its parallelism allows; says whether
    /// it did.
    fn make_index(&mut self, id: &str, now_ms: u64) -> bool {
        let Some(array) = self.jobs.get_mut(id) else { return false };
        let limit = array.spec.array.as_ref().map_or(0, |a| u64::from(a.parallelism));
        let Some(progress) = array.array.as_mut() else { return false };
        if progress.unmade() == 0 || (limit > 0 && progress.unfinished() >= limit) {
            return false;
        }
        let index = progress.next;
        progress.next += 1;
        progress.counts.queued += 1;
        let mut child = JobSpec { array: None, after: vec![], after_any: vec![], ..(*array.spec).clone() };
        child.idempotency_key.clear();
        child.env.insert("BURST_ARRAY_INDEX".into(), index.to_string());
        child.env.insert("BURST_ARRAY_ID".into(), id.to_string());
        let child_id = format!("{id}:{index}");
        if child.queue_timeout_ms > 0 {
            let due = Instant::now() + std::time::Duration::from_millis(child.queue_timeout_ms);
            self.set_timer(due, &child_id, Timer::QueueDeadline);
        }
        self.owners.add(&child.owner);
        self.queue.push_back(child_id.clone(), child.priority, &child.owner);
        self.counts[JobState::Queued as usize] += 1;
        self.jobs.insert(Job::new(child_id.clone(), Arc::new(child), now_ms));
        self.record(&child_id);
        true
    }

    /// Index job `id` went from `before` to `after`: counted on its array, which ends once its last index has.
    pub(super) fn index_changed(&mut self, id: &str, before: JobState, after: JobState) {
        let Some((array_id, index)) = index_of(id) else { return };
        let failure = match after {
            JobState::Failed | JobState::Cancelled => self.jobs.get(id).map(|j| {
                let s = j.status();
                let how = match (s.exit_code, s.reason()) {
                    (Some(code), _) => format!("exited {code}"),
                    (None, reason) => burst_proto::reason_name(reason).to_string(),
                };
                format!(
                    "index {index}: {how}{}",
                    if s.message.is_empty() { String::new() } else { format!(" ({})", s.message) }
                )
            }),
            _ => None,
        };
        let Some(array) = self.jobs.get_mut(array_id) else { return };
        let Some(progress) = array.array.as_mut() else { return };
        let c = &mut progress.counts;
        for (state, delta) in [(before, -1i64), (after, 1)] {
            let n = match state {
                JobState::Queued => &mut c.queued,
                JobState::Leased => &mut c.leased,
                JobState::Running => &mut c.running,
                JobState::Succeeded => &mut c.succeeded,
                JobState::Failed => &mut c.failed,
                JobState::Cancelled => &mut c.cancelled,
                JobState::Unspecified => continue,
            };
            *n = n.saturating_add_signed(delta);
        }
        if after == JobState::Failed && c.failed_indices.len() < LISTED_FAILED {
            c.failed_indices.push(index as u32);
        }
        if let Some(failure) = failure
            && c.failures.len() < DESCRIBED_FAILURES
        {
            c.failures.push(failure);
        }
        let terminal = matches!(after, JobState::Succeeded | JobState::Failed | JobState::Cancelled);
        let done = progress.unmade() == 0 && progress.unfinished() == 0;
        let array_id = array_id.to_string();
        // (An array being cancelled is closed first: its own cancel ends it.)
        if done && self.arrays.live.remove(&array_id) {
            let _ = self.transition(&array_id, |job| job.array_ended(burst_proto::now_ms()));
        } else if terminal {
            // The ended indices' counts are stored with the array.
            self.record(&array_id);
        }
    }

    /// The jobs made of array `id`'s indices that have not ended, for a cancel.
    pub(super) fn unfinished_indices(&self, id: &str) -> Vec<JobId> {
        let from = format!("{id}:");
        let to = format!("{id};");
        self.jobs
            .range(from..to, false, |s| matches!(s, JobState::Queued | JobState::Leased | JobState::Running), None)
            .map(|j| j.id.clone())
            .collect()
    }

    /// Array `id` is cancelled: the indices not made into jobs yet are counted cancelled, and none will be.
    pub(super) fn close_array(&mut self, id: &str) {
        self.arrays.live.remove(id);
        if let Some(progress) = self.jobs.get_mut(id).and_then(|j| j.array.as_mut()) {
            progress.counts.cancelled += progress.unmade();
            progress.next = progress.last + 1;
        }
    }

    /// After a restart: index job `id` (unfinished) is counted on its array again, and the array knows it was made.
    pub(super) fn restore_index(&mut self, id: &str, state: JobState) {
        let Some((array_id, index)) = index_of(id) else { return };
        let Some(progress) = self.jobs.get_mut(array_id).and_then(|j| j.array.as_mut()) else { return };
        progress.next = progress.next.max(index + 1);
        match state {
            JobState::Queued => progress.counts.queued += 1,
            JobState::Leased => progress.counts.leased += 1,
            JobState::Running => progress.counts.running += 1,
            _ => {}
        }
    }
}
