//! What the scheduler answers without changing anything: a job, a page of jobs, the workers, the counts, and
//! why a queued job waits.

use std::ops::Bound;

use super::*;

impl Scheduler {
    pub fn job(&self, id: &str) -> Result<(Arc<JobSpec>, JobStatus), SchedError> {
        let job = self.jobs.get(id).ok_or_else(|| SchedError::UnknownJob(id.to_string()))?;
        Ok((job.spec.clone(), self.status_of(&job)))
    }

    /// Statuses in submission order (newest first with `filter.newest_first`), after `filter.after`, and the
    /// token of the next page: the last job listed when the page is full, or the last job examined when the
    /// page stopped at [`MAX_DECODED`] finished jobs decoded for a label filter. So one call holds the lock for
    /// a bounded time, whatever is retained; paging on finds the rest.
    pub fn list(&self, filter: &ListFilter) -> (Vec<JobStatus>, Option<JobId>) {
        let limit = match filter.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let after = match &filter.after {
            Some(id) => Bound::Excluded(id.clone()),
            None => Bound::Unbounded,
        };
        // Ids grow with submission time, so id order is submission order.
        let range = match filter.newest_first {
            true => (Bound::Unbounded, after),
            false => (after, Bound::Unbounded),
        };
        let state_wanted = |state| filter.states.is_empty() || filter.states.contains(&state);
        let (mut page, mut decoded) = (Vec::new(), 0);
        for job in self.jobs.range(range, filter.newest_first, state_wanted, filter.owner.as_deref()) {
            decoded += usize::from(matches!(job, std::borrow::Cow::Owned(_)));
            if filter.labels.iter().all(|(k, v)| job.spec.labels.get(k) == Some(v)) {
                page.push(self.status_of(&job));
                if page.len() == limit {
                    return (page, Some(job.id.clone()));
                }
            }
            if decoded >= MAX_DECODED {
                return (page, Some(job.id.clone()));
            }
        }
        (page, None)
    }

    /// The store's commits so far, for a store that commits (`burst bench` reads them).
    pub fn store_commits(&self) -> Option<crate::store::Commits> {
        self.store.commits()
    }

    /// The series the scheduler observes into, for the metrics page.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    pub fn workers(&self) -> Vec<WorkerStatus> {
        self.registry.iter().map(WorkerEntry::status).collect()
    }

    pub fn stats(&self) -> GetStatsResponse {
        let count = |s: JobState| self.counts[s as usize];
        GetStatsResponse {
            queued: count(JobState::Queued),
            leased: count(JobState::Leased),
            running: count(JobState::Running),
            succeeded: count(JobState::Succeeded),
            failed: count(JobState::Failed),
            cancelled: count(JobState::Cancelled),
            workers: self.registry.len() as u32,
            slots_total: self.registry.iter().map(|w| w.info.slots).sum(),
            // A worker of short jobs may count starts confirmed ahead of its slots as running: all its slots
            // are busy then, and no more.
            slots_busy: self.registry.iter().map(|w| w.running().min(w.info.slots)).sum(),
            submitted_total: self.totals.submitted,
            stale_reports_total: self.totals.stale_reports,
            steal_attempts_total: self.registry.iter().map(|w| w.steal_attempts).sum(),
            steals_total: self.totals.steals,
            jobs_stolen_total: self.totals.jobs_stolen,
            ..GetStatsResponse::default()
        }
    }

    /// A job's status; a queued job's says why it waits.
    fn status_of(&self, job: &Job) -> JobStatus {
        let mut status = job.status();
        if *job.state() == State::Queued {
            status.waiting_reason = self.why_waiting(job);
        }
        status
    }

    /// Why a queued job has not been leased, in words for its owner.
    fn why_waiting(&self, job: &Job) -> String {
        let need = job.spec.resources.unwrap_or_default();
        if self.registry.is_empty() {
            return "no worker is registered".into();
        }
        if !self.registry.iter().any(|w| covers(&w.total(), &need)) {
            let most = self.registry.iter().fold(Resources::default(), |m, w| {
                let t = w.total();
                Resources {
                    cpu_millis: m.cpu_millis.max(t.cpu_millis),
                    memory_bytes: m.memory_bytes.max(t.memory_bytes),
                    gpus: m.gpus.max(t.gpus),
                }
            });
            return format!(
                "no worker fits its resources: it requests {}; the most any worker has is {}",
                describe(&need),
                describe(&most)
            );
        }
        if self.registry.iter().all(|w| w.draining() || w.quarantined()) {
            return "every worker is draining or quarantined (died too often lately)".into();
        }
        if !self.registry.has_room() {
            let held: usize = self.registry.iter().map(|w| w.held().len()).sum();
            let capacity: u32 = self.registry.iter().map(WorkerEntry::capacity).sum();
            return format!("every worker is full ({held} of {capacity} jobs held, slots + queue capacity)");
        }
        if !self.registry.iter().any(|w| w.fits(&need)) {
            return format!("waiting for resources: no worker with room has {} free", describe(&need));
        }
        if self.router_kind == RouterKind::Biased {
            return "the biased router's workers (the first half) are full; the others get no new jobs".into();
        }
        "waiting for dispatch behind earlier jobs".into()
    }
}

/// "cpu 2000m, memory 1.0 GiB, gpus 1", leaving out what is zero.
pub fn describe(r: &Resources) -> String {
    let mut parts = Vec::new();
    if r.cpu_millis > 0 {
        parts.push(format!("cpu {}m", r.cpu_millis));
    }
    if r.memory_bytes > 0 {
        parts.push(format!("memory {:.1} GiB", r.memory_bytes as f64 / (1u64 << 30) as f64));
    }
    if r.gpus > 0 {
        parts.push(format!("gpus {}", r.gpus));
    }
    if parts.is_empty() { "nothing".into() } else { parts.join(", ") }
}
