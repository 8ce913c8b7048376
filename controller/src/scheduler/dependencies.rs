//! Jobs that wait for others (`JobSpec.after`: until they succeed; `after_any`: until they end). A job whose
//! dependencies have not all ended is queued but in no line: it is *blocked*, and listed under each unfinished
//! job it waits for. When one of those ends, its blocked dependents are looked at again: all satisfied, a
//! dependent joins the queue; a job of its `after` ended otherwise, it fails with `dependency-failed` (and so on
//! down a chain, one job at a time, without recursion).
//!
//! Dependencies name jobs that exist at submit, so no cycle can form. Nothing here is stored: it follows from
//! the jobs' specs and states, and is rebuilt when the controller restarts.

use std::collections::HashMap;

use burst_proto::state_name;

use super::*;

#[derive(Default)]
pub struct Dependencies {
    /// Queued jobs that wait for at least one dependency to end, and for how many.
    blocked: HashMap<JobId, usize>,
    /// An unfinished job -> the blocked jobs that wait for it (an entry may name a job no longer blocked).
    dependents: HashMap<JobId, Vec<JobId>>,
    /// Jobs with dependents that ended in this operation, to be settled.
    ended: Vec<JobId>,
    /// Settling now (a dependent failing ends a job too: it is added to `ended`, not settled inside).
    settling: bool,
    /// A dependent joined the queue: the operation dispatches before it ends.
    released: bool,
}

/// Where a job's dependencies stand.
enum Deps {
    /// All ended as asked (or none).
    Met,
    /// These have not ended yet.
    Waiting(Vec<JobId>),
    /// One of `after` ended otherwise: why, in words.
    Failed(String),
}

impl Dependencies {
    pub fn blocked(&self) -> usize {
        self.blocked.len()
    }

    pub fn is_blocked(&self, id: &str) -> bool {
        !self.blocked.is_empty() && self.blocked.contains_key(id)
    }
}

impl Scheduler {
    /// Refuses a spec that depends on a job the controller does not know (`i`: its place in the batch).
    pub(super) fn check_dependencies(&self, i: usize, spec: &JobSpec) -> Result<(), SchedError> {
        match spec.after.iter().chain(&spec.after_any).find(|id| !self.jobs.contains_key(id)) {
            Some(id) => Err(SchedError::Invalid(format!(
                "spec #{i}: it depends on job {id}, which the controller does not know (a job may depend only on \
                 jobs already submitted and still retained)"
            ))),
            None => Ok(()),
        }
    }

    /// Where `spec`'s dependencies stand. A dependency no longer known (forgotten after it ended) counts as met
    /// when `forgotten_met`: after a restart, since a dependent of a job that ended otherwise would have ended
    /// with it.
    fn dependencies_of(&self, spec: &JobSpec, forgotten_met: bool) -> Deps {
        let mut waiting = Vec::new();
        let all = spec.after.iter().map(|id| (id, false)).chain(spec.after_any.iter().map(|id| (id, true)));
        for (id, any_end) in all {
            match self.jobs.state(id) {
                None if forgotten_met => {}
                None => return Deps::Failed(format!("job {id} it depends on is not known")),
                Some(JobState::Succeeded) => {}
                Some(s @ (JobState::Failed | JobState::Cancelled)) if !any_end => {
                    return Deps::Failed(format!("job {id} it depends on ended {}", state_name(s)));
                }
                Some(JobState::Failed | JobState::Cancelled) => {}
                Some(_) => waiting.push(id.clone()),
            }
        }
        if waiting.is_empty() { Deps::Met } else { Deps::Waiting(waiting) }
    }

    /// Puts new (or restored) queued job `id` where its dependencies say: in the queue, blocked under the jobs it
    /// waits for, or ended with `dependency-failed`.
    pub(super) fn queue_or_block(&mut self, id: JobId, forgotten_met: bool, now_ms: u64) {
        let Some(job) = self.jobs.get(&id) else { return };
        let spec = job.spec.clone();
        drop(job);
        match self.dependencies_of(&spec, forgotten_met) {
            Deps::Met if spec.array.is_some() => self.open_array(id),
            Deps::Met => self.queue.push_back(id, spec.priority, &spec.owner),
            Deps::Waiting(on) => {
                self.deps.blocked.insert(id.clone(), on.len());
                for dep in on {
                    self.deps.dependents.entry(dep).or_default().push(id.clone());
                }
            }
            Deps::Failed(why) => self.end_job(&id, |job| job.dependency_failed(why, now_ms)),
        }
    }

    /// Called for each job that ends: settles its blocked dependents (and theirs, if they fail in turn).
    pub(super) fn dependency_ended(&mut self, id: &str) {
        if !self.deps.blocked.is_empty() {
            self.deps.blocked.remove(id);
        }
        if self.deps.dependents.is_empty() || !self.deps.dependents.contains_key(id) {
            return;
        }
        self.deps.ended.push(id.to_string());
        if self.deps.settling {
            return;
        }
        self.deps.settling = true;
        let now_ms = burst_proto::now_ms();
        while let Some(ended) = self.deps.ended.pop() {
            let succeeded = self.jobs.state(&ended) == Some(JobState::Succeeded);
            for dependent in self.deps.dependents.remove(&ended).unwrap_or_default() {
                let Some(left) = self.deps.blocked.get_mut(&dependent) else { continue };
                *left = left.saturating_sub(1);
                // Looked at once its last dependency ended, or at once if one ended otherwise than it succeeded
                // (that fails it if it was an `after`).
                if *left > 0 && succeeded {
                    continue;
                }
                let Some(job) = self.jobs.get(&dependent) else { continue };
                let spec = job.spec.clone();
                drop(job);
                match self.dependencies_of(&spec, false) {
                    Deps::Waiting(_) => {}
                    Deps::Met => {
                        self.deps.blocked.remove(&dependent);
                        if spec.array.is_some() {
                            self.open_array(dependent);
                        } else {
                            self.queue.push_back(dependent, spec.priority, &spec.owner);
                        }
                        self.deps.released = true;
                    }
                    Deps::Failed(why) => {
                        self.deps.blocked.remove(&dependent);
                        self.end_job(&dependent, |job| job.dependency_failed(why, now_ms));
                    }
                }
            }
        }
        self.deps.settling = false;
    }

    /// Whether a dependent joined the queue in this operation (and so it should dispatch); clears it.
    pub(super) fn take_released(&mut self) -> bool {
        std::mem::take(&mut self.deps.released)
    }

    /// Why blocked job `job` waits, in words.
    pub(super) fn why_blocked(&self, job: &Job) -> String {
        /// Dependencies named in a waiting reason; the rest are counted.
        const NAMED: usize = 5;
        let spec = &job.spec;
        let all = spec.after.iter().map(|id| (id, "succeed")).chain(spec.after_any.iter().map(|id| (id, "end")));
        let unended = |s: &JobState| !matches!(s, JobState::Succeeded | JobState::Failed | JobState::Cancelled);
        let mut waiting = all.filter_map(|(id, until)| Some((id, until, self.jobs.state(id).filter(unended)?)));
        let named: Vec<String> = waiting
            .by_ref()
            .take(NAMED)
            .map(|(id, until, state)| format!("{id} to {until} (now {})", state_name(state)))
            .collect();
        let more = waiting.count();
        let mut text = format!("waits for the jobs it depends on: {}", named.join(", "));
        if more > 0 {
            text.push_str(&format!(", and {more} more"));
        }
        text
    }
}
