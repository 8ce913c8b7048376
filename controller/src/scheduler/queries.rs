//! What the scheduler answers without changing anything: a job, a page of jobs, the workers, the counts, and
//! why a queued job waits.

use std::ops::Bound;

use super::*;

impl Scheduler {
    /// Who submitted job `id` (cheap: nothing is unpacked or described).
    pub fn owner_of(&self, id: &str) -> Option<&str> {
        self.jobs.owner(id)
    }

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
            pools: self.pool_stats(),
            submitters: self.owners.stats(),
            blocked: self.deps.blocked() as u64,
            ..GetStatsResponse::default()
        }
    }

    /// Each pool's capacity, use and cost, cheapest first.
    fn pool_stats(&self) -> Vec<PoolStats> {
        let now = Instant::now();
        let waiting = self.waiting_by_pool(burst_proto::now_ms());
        let pools = self.registry.pools();
        self.registry
            .pools_by_cost()
            .iter()
            .map(|&p| {
                let pool = &pools[p];
                let slot_seconds = pool.slot_ms_at(now) / 1000.0;
                let workers = || self.registry.iter().filter(move |w| w.pool == p);
                PoolStats {
                    name: pool.name().to_string(),
                    cost_per_slot_second: pool.config.cost,
                    elastic: pool.config.elastic,
                    labels: pool.config.labels.clone(),
                    workers: pool.workers,
                    slots_total: pool.slots,
                    slots_busy: workers().map(|w| w.running().min(w.info.slots)).sum(),
                    slot_seconds,
                    busy_slot_seconds: pool.busy_ms as f64 / 1000.0,
                    cost: slot_seconds * pool.config.cost,
                    jobs_placed: pool.placed,
                    jobs_spilled: pool.spilled,
                    jobs_waiting: waiting.get(p).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// Per pool (by id): queued jobs that may go there now, among the first [`MAX_WAITING_SCANNED`] waiting.
    fn waiting_by_pool(&self, now_ms: u64) -> Vec<u64> {
        let mut waiting = vec![0u64; self.registry.pools().len()];
        if waiting.len() == 1 && self.held.is_empty() {
            // One pool: every job in line waits for it (pinned ones too: they could name no other).
            waiting[0] = (self.queue.len() + self.spilling.len()) as u64;
            return waiting;
        }
        // A job in `spilling` may have a stale entry in another line: counted once.
        let elsewhere = self.held.values().flat_map(Line::iter).chain(self.queue.iter());
        let elsewhere = elsewhere.filter(|id| self.spilling_ids.is_empty() || !self.spilling_ids.contains(*id));
        for id in self.spilling.iter().chain(elsewhere).take(MAX_WAITING_SCANNED) {
            let Some(job) = self.jobs.get(id) else { continue };
            if *job.state() != State::Queued || job.retry_at_ms() > 0 {
                continue;
            }
            for p in self.pools_open_to(&job.spec, job.submitted_at_ms(), now_ms) {
                waiting[p] += 1;
            }
        }
        waiting
    }

    /// The pools a queued job may go to at `now_ms`: those its spec allows, narrowed by the placement policy to
    /// the cheapest while it must wait for them.
    pub(super) fn pools_open_to(&self, spec: &JobSpec, submitted_at_ms: u64, now_ms: u64) -> Vec<PoolId> {
        let mut allowed = self.allowed_pools(spec);
        if let (Placement::First { .. }, Some(&first)) =
            (self.policy.place(&view(spec, submitted_at_ms), now_ms), allowed.first())
        {
            let cheapest = self.registry.pools()[first].config.cost;
            allowed.retain(|&p| self.registry.pools()[p].config.cost <= cheapest);
        }
        allowed
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
        if self.deps.is_blocked(&job.id) {
            return self.why_blocked(job);
        }
        if let Some(a) = &job.array {
            let c = &a.counts;
            return format!(
                "an array of {} indices: {} not yet made into jobs (as workers have room{}), {} queued, {} on workers, \
                 {} ended",
                c.size,
                a.unmade(),
                job.spec
                    .array
                    .as_ref()
                    .filter(|s| s.parallelism > 0)
                    .map_or(String::new(), |s| format!(", at most {} unfinished at once", s.parallelism)),
                c.queued,
                c.leased + c.running,
                c.succeeded + c.failed + c.cancelled
            );
        }
        let spec = &job.spec;
        if self.registry.pools().len() > 1 || !spec.pool.is_empty() || !spec.pool_selector.is_empty() {
            return self.why_waiting_in_pools(job);
        }
        let need = spec.resources.unwrap_or_default();
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
        if self.registry.iter().all(|w| w.draining() || w.cordoned() || w.quarantined()) {
            return "every worker is draining, cordoned or quarantined (died too often lately)".into();
        }
        if !self.registry.has_room() {
            let held: usize = self.registry.iter().map(|w| w.held().len()).sum();
            let capacity: u32 = self.registry.iter().map(WorkerEntry::capacity).sum();
            return format!(
                "every worker is full ({held} of {capacity} jobs held, slots + the queue each wants); {}",
                self.turn(job)
            );
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

impl Scheduler {
    /// Who gets the next free slot before queued `job`, in words: jobs of higher priority, then submitters that
    /// hold less per unit of weight (fair share).
    fn turn(&self, job: &Job) -> String {
        let spec = &job.spec;
        let ahead = self.queue.ahead_of(spec.priority);
        let share = self.owners.share(&spec.owner);
        let first =
            if ahead > 0 { format!("{ahead} queued jobs of higher priority go first, then ") } else { String::new() };
        format!(
            "{first}at priority {} the submitter holding the fewest slots per unit of weight goes first ({} holds {}, \
             weight {})",
            spec.priority, spec.owner, share.held, share.weight
        )
    }

    /// [`Scheduler::why_waiting`] when there are pools to choose from: which the job waits for, until when, and
    /// why none of them takes it.
    fn why_waiting_in_pools(&self, job: &Job) -> String {
        let spec = &job.spec;
        let now_ms = burst_proto::now_ms();
        let allowed = self.allowed_pools(spec);
        if allowed.is_empty() {
            return match self.check_pools(spec) {
                Err(e) => e.to_string(),
                Ok(()) => "no pool matches its pool or pool selector".into(),
            };
        }
        let open = self.pools_open_to(spec, job.submitted_at_ms(), now_ms);
        let names =
            |ids: &[PoolId]| ids.iter().map(|&p| self.registry.pools()[p].name()).collect::<Vec<_>>().join(", ");
        let prefix = match self.policy.place(&view(spec, job.submitted_at_ms()), now_ms) {
            Placement::First { until_ms: None } if open.len() < allowed.len() => {
                format!("waits for pool {} only (policy {}); ", names(&open), self.policy.kind.name())
            }
            // (A budget matters only when there is a pool to go to once it is spent.)
            Placement::First { until_ms: Some(until) } if open.len() < allowed.len() => {
                let later: Vec<PoolId> = allowed.iter().copied().filter(|p| !open.contains(p)).collect();
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(until);
                format!(
                    "waits for pool {} until {} (in {:.1} s; policy {}), then may go to {}; ",
                    names(&open),
                    humantime::format_rfc3339_millis(at),
                    until.saturating_sub(now_ms) as f64 / 1000.0,
                    self.policy,
                    names(&later)
                )
            }
            _ => String::new(),
        };
        let workers: Vec<&WorkerEntry> = self.registry.iter().filter(|w| open.contains(&w.pool)).collect();
        let need = spec.resources.unwrap_or_default();
        let pools = names(&open);
        let why = if workers.is_empty() {
            format!("no worker of pool {pools} is registered")
        } else if !workers.iter().any(|w| covers(&w.total(), &need)) {
            format!("no worker of pool {pools} fits its resources ({})", describe(&need))
        } else if workers.iter().all(|w| w.draining() || w.cordoned() || w.quarantined()) {
            format!("every worker of pool {pools} is draining, cordoned or quarantined")
        } else if !workers.iter().any(|w| w.room() > 0) {
            let held: usize = workers.iter().map(|w| w.held().len()).sum();
            let capacity: u32 = workers.iter().map(|w| w.capacity()).sum();
            format!(
                "every worker of pool {pools} is full ({held} of {capacity} jobs held, slots + the queue each wants); {}",
                self.turn(job)
            )
        } else if !workers.iter().any(|w| w.fits(&need)) {
            format!("no worker of pool {pools} with room has {} free", describe(&need))
        } else {
            "waiting for dispatch behind earlier jobs".into()
        };
        prefix + &why
    }
}

/// Queued jobs [`Scheduler::waiting_by_pool`] looks at: about a millisecond of the lock.
const MAX_WAITING_SCANNED: usize = 10_000;

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
