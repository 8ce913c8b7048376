//! The scheduler: jobs, the queue, the workers, and the decisions that join them. Everything here is
//! synchronous and runs under one lock (held by [`crate::Controller`]); nothing here awaits or does I/O. Every
//! change is passed to the [`JobStore`] in order before the lock is released.
//!
//! Flow of a job:
//! 1. `submit` puts it on the queue and calls `dispatch`.
//! 2. `dispatch` asks the router for a worker with room that fits it, leases it there (a new epoch) and puts
//!    the lease in that worker's outbox, waking its `PollJob`.
//! 3. `take_leases` hands the outbox over; the worker reports `started` and `finished`, each fenced by the
//!    lease's epoch and the worker's session.
//! 4. `finished` frees the worker's room and dispatches again. A worker that goes silent (`expire`) or
//!    registers again loses its leases: its jobs are released back to the queue.
//!
//! # One place for every consequence
//! Every change of a job's state goes through [`Scheduler::transition`] (in `apply.rs`), which carries out
//! all it implies: the state counts, what the old and the new holder hold (jobs, running count, reserved
//! resources, and with them the registry's room index), the queue, the job's timer, the per-owner counts,
//! retention, the store write, and the watchers' status (sent once durable, see [`publish`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use burst_proto::v1::{
    GetStatsResponse, JobResult, JobSpec, JobState, JobStatus, Lease, LeaseRef, PoolStats, Resources,
    SubmitJobResponse, WorkerStatus,
};
use tokio::sync::{Notify, broadcast};
use tracing::{debug, info};

use crate::lifecycle::{Effect, Holder, Job, JobId, Outcome, Refused, State, WorkerId};
use crate::metrics::Timings;
use crate::policy::{JobView, Placement, Policy, PoolConfig};
pub use crate::registry::Wants;
use crate::registry::{PoolId, Registry, WorkerEntry, covers};
use crate::retention::{Limits, Retention};
use crate::router::{Router, RouterKind};
use crate::store::{Durable, JobStore, Write};

mod apply;
mod arrays;
mod dependencies;
mod line;
mod owners;
mod publish;
mod queries;
mod table;
mod timers;
mod workers;

use arrays::Arrays;
use dependencies::Dependencies;
use line::Line;
use owners::Owners;
use publish::Publisher;
pub use queries::describe;
use table::JobTable;
use timers::{Timer, Timers};

/// How many jobs with resource requests one dispatch pass may look past while searching for one that fits.
/// Bounds the cost of a dispatch when many large jobs wait for room.
const MAX_SKIPPED_PER_DISPATCH: usize = 256;
/// Of those, how many one submitter's jobs may take before the pass leaves that submitter out (fair share would
/// otherwise pick its jobs again and again: a skip takes no slot).
const MAX_SKIPPED_PER_OWNER: usize = 32;

/// Peers named in one heartbeat answer: enough victims to choose from, few enough that a large cluster's
/// heartbeats stay small.
const MAX_PEERS: usize = 16;

/// Largest page `list` returns, whatever the caller asks: keeps one response well under gRPC's message limit.
pub const MAX_PAGE: usize = 5_000;
/// Most finished jobs one `list` decodes (to read their labels) before it returns what it found: about 10 ms of
/// the scheduler lock on a slow machine.
pub const MAX_DECODED: usize = 10_000;
const DEFAULT_PAGE: usize = 1_000;

/// Most pools a controller knows: a worker naming another is refused. Dispatch keeps one bit per pool.
pub const MAX_POOLS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("worker {0} is not registered (or registered again since); register before polling or reporting")]
    UnknownWorker(String),
    /// Another registration with the same worker id replaced this one: two processes share an id.
    #[error(
        "worker {0}'s registration was taken over by another process that registered with the same id; give each \
         worker its own --id (this one stops)"
    )]
    Replaced(String),
    #[error("no job with id {0}")]
    UnknownJob(String),
    #[error("idempotency key {key:?} already names job {job} with a different spec")]
    KeyConflict { key: String, job: JobId },
    #[error("{0}")]
    Invalid(String),
    /// The caller may not touch another submitter's job.
    #[error("job {0} belongs to another submitter")]
    NotYours(JobId),
    /// A submission that would take the unfinished jobs over a quota.
    #[error("{0}")]
    Quota(String),
    /// A job names a pool (or a selector of pools) the controller does not know.
    #[error("{0}")]
    UnknownPool(String),
}

/// Most unfinished (queued, leased, running) jobs the controller holds, in all and per submitter. Memory is the
/// reason: about 1.2 KB per queued job, so the default global quota is a few GiB at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub max_active: u64,
    pub max_active_per_owner: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota { max_active: 2_000_000, max_active_per_owner: 2_000_000 }
    }
}

/// Counts since the controller started.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    submitted: u64,
    /// Reports refused because they came from a lease that is no longer current.
    stale_reports: u64,
    /// Steals that moved at least one lease, and the leases they moved.
    steals: u64,
    jobs_stolen: u64,
}

/// What `take_leases` found: leases to hand over and leases to stop now, or the handle to wait on.
pub enum Poll {
    Ready { leases: Vec<Lease>, stop: Vec<LeaseRef> },
    Wait(Arc<Notify>),
}

#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub states: Vec<JobState>,
    pub labels: HashMap<String, String>,
    pub limit: usize,
    pub after: Option<JobId>,
    /// Only this submitter's jobs (a caller who may not see others').
    pub owner: Option<String>,
    /// Newest first, `after` then meaning "submitted before".
    pub newest_first: bool,
}

pub struct Scheduler {
    jobs: JobTable,
    keys: HashMap<String, JobId>,
    /// Queued jobs by priority, then fair share, then age (see [`line`]).
    queue: Line,
    /// Queued jobs that no registered worker could ever fit; looked at again when a worker registers.
    parked: Vec<JobId>,
    /// Queued jobs waiting for the jobs they depend on to end (see [`dependencies`]).
    deps: Dependencies,
    /// Job arrays whose indices may be made into jobs (see [`arrays`]).
    arrays: Arrays,
    /// Queued jobs whose waiting budget ran out (the `wait` policy), served before the other lines: each is in
    /// `spilling_ids` too, and its entry in another line, if any, is passed over.
    spilling: VecDeque<JobId>,
    spilling_ids: std::collections::HashSet<JobId>,
    /// When each waiting job's budget runs out.
    spill_timers: Timers,
    /// Jobs without resource requests held back for full pools, a line per set of pools (a bit each) they wait
    /// for: served, in the queue's order, when one of those pools has room. (With several pools only.)
    held: std::collections::BTreeMap<u64, Line>,
    policy: Policy,
    registry: Registry,
    router: Box<dyn Router>,
    router_kind: RouterKind,
    counts: [u64; 7],
    /// Running totals for the stats and the metrics page.
    totals: Totals,
    /// Sends watchers the statuses of this operation once its writes are durable.
    publisher: Arc<Publisher>,
    store: Arc<dyn JobStore>,
    writes: Vec<Write>,
    /// The statuses this operation's writes record, for the watchers.
    statuses: Vec<JobStatus>,
    /// Retry backoffs and queue deadlines, soonest first.
    timers: Timers,
    /// Wakes the controller's timer task when a timer is added (it may be sooner than the one it sleeps for).
    timer_added: Arc<Notify>,
    retention: Retention,
    /// After a restart: jobs leased before it that no worker has claimed yet, and until when they may be.
    unclaimed: std::collections::HashSet<JobId>,
    claim_deadline: Option<Instant>,
    /// Unfinished jobs per submitter, and the quotas.
    owners: Owners,
    /// Latencies and counts for the metrics page.
    timings: Timings,
}

impl Scheduler {
    pub fn new(router_kind: RouterKind, store: Arc<dyn JobStore>, events: broadcast::Sender<JobStatus>) -> Self {
        Self::with_retention(router_kind, store, events, Limits::default())
    }

    pub fn with_retention(
        router_kind: RouterKind,
        store: Arc<dyn JobStore>,
        events: broadcast::Sender<JobStatus>,
        retention: Limits,
    ) -> Self {
        Scheduler {
            jobs: JobTable::default(),
            keys: HashMap::new(),
            queue: Line::default(),
            parked: Vec::new(),
            deps: Dependencies::default(),
            arrays: Arrays::default(),
            spilling: VecDeque::new(),
            spilling_ids: std::collections::HashSet::new(),
            spill_timers: Timers::default(),
            held: std::collections::BTreeMap::new(),
            policy: Policy::default(),
            registry: Registry::default(),
            router: router_kind.build(rand::random()),
            router_kind,
            counts: [0; 7],
            totals: Totals::default(),
            timings: Timings::default(),
            publisher: Publisher::new(events),
            store,
            writes: Vec::new(),
            statuses: Vec::new(),
            timers: Timers::default(),
            timer_added: Arc::new(Notify::new()),
            retention: Retention::new(retention),
            unclaimed: std::collections::HashSet::new(),
            claim_deadline: None,
            owners: Owners::default(),
        }
    }

    pub fn set_quota(&mut self, quota: Quota) {
        self.owners.set_quota(quota);
    }

    /// The submitters' fair-share weights from now on (one not named weighs 1); the next dispatch follows them.
    pub fn set_weights(&mut self, weights: HashMap<String, u32>) {
        self.owners.set_weights(weights);
    }

    /// Sets the configured pools and the placement policy; before any worker registers.
    pub fn set_pools(&mut self, pools: Vec<PoolConfig>, policy: Policy) {
        debug_assert!(self.registry.is_empty(), "pools are configured before workers register");
        self.registry = Registry::with_pools(pools);
        self.policy = policy;
    }

    fn active(&self) -> u64 {
        [JobState::Queued, JobState::Leased, JobState::Running].iter().map(|s| self.counts[*s as usize]).sum()
    }

    /// Takes in the jobs a store kept. No worker holds a lease yet, so jobs that were leased or running go back
    /// to the queue (a running one spends a lost run).
    ///
    /// Jobs that were leased or running keep their holder until `claim_deadline`: a worker that comes back and
    /// registers claims them (see [`Scheduler::register`]); whatever is still unclaimed then is released, like
    /// a dead worker's jobs. So a job running on a worker that stayed up is not run twice because the controller
    /// restarted.
    pub fn restore(&mut self, jobs: Vec<Job>, now_ms: u64, claim_deadline: Instant) -> Durable {
        let mut jobs = jobs;
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        // Queued jobs with dependencies: placed once every job is in (see `dependencies`); arrays to open.
        let (mut dependent, mut arrays) = (Vec::new(), Vec::new());
        for mut job in jobs {
            self.counts[job.state().proto() as usize] += 1;
            if job.is_terminal() {
                self.retention.finished(job.id.clone(), Instant::now());
            } else {
                self.owners.add(&job.spec.owner);
            }
            if job.state().holder().is_some() {
                self.owners.held(&job.spec.owner, true);
                self.unclaimed.insert(job.id.clone());
            }
            if *job.state() == State::Queued && job.retry_at_ms() > now_ms {
                let wait = std::time::Duration::from_millis(job.retry_at_ms() - now_ms);
                self.set_timer(Instant::now() + wait, &job.id, Timer::Retry);
            } else if *job.state() == State::Queued && has_dependencies(&job.spec) {
                job.retry_due();
                dependent.push(job.id.clone());
            } else if *job.state() == State::Queued && job.array.is_some() {
                arrays.push(job.id.clone());
            } else if *job.state() == State::Queued {
                job.retry_due();
                self.queue.push_back(job.id.clone(), job.spec.priority, &job.spec.owner);
            }
            // A job that never ran keeps its queue deadline across the restart: the time it has left. (One that
            // ran, even without a start report, has none; its timer, if any, is its retry backoff.)
            if let Some(left) = queue_deadline_left(&job, now_ms) {
                self.set_timer(Instant::now() + left, &job.id, Timer::QueueDeadline);
            }
            if !job.spec.idempotency_key.is_empty() {
                self.keys.insert(job.spec.idempotency_key.clone(), job.id.clone());
            }
            if !job.is_terminal() {
                // An array's unfinished indices are counted from their jobs; an index's array, sorted before it,
                // is in already.
                if let Some(a) = job.array.as_mut() {
                    (a.counts.queued, a.counts.leased, a.counts.running) = (0, 0, 0);
                }
                self.restore_index(&job.id, job.state().proto());
            }
            self.jobs.insert(job);
        }
        for id in arrays {
            self.open_array(id);
        }
        for id in dependent {
            // A dependency forgotten since it ended was met: had it failed this job, this job would have ended.
            self.queue_or_block(id, true, now_ms);
        }
        if !self.unclaimed.is_empty() {
            info!(jobs = self.unclaimed.len(), "leased jobs wait for their workers to claim them");
            self.claim_deadline = Some(claim_deadline);
        }
        self.flush()
    }

    /// Adds valid specs as queued jobs, all or none. A spec whose idempotency key names an existing job with the
    /// same spec returns that job instead.
    pub fn submit(
        &mut self,
        specs: Vec<JobSpec>,
        now_ms: u64,
    ) -> Result<(Vec<SubmitJobResponse>, Durable), SchedError> {
        // 1. Check the pools and resolve keys first, so a bad spec or a conflict anywhere submits nothing.
        specs.iter().try_for_each(|spec| self.check_pools(spec))?;
        for (i, spec) in specs.iter().enumerate() {
            self.check_dependencies(i, spec)?;
        }
        let mut batch_keys: HashMap<&str, usize> = HashMap::new();
        let mut existing: Vec<Option<JobId>> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let key = spec.idempotency_key.as_str();
            if key.is_empty() {
                existing.push(None);
                continue;
            }
            if let Some(id) = self.keys.get(key) {
                if self.jobs.get(id).is_some_and(|j| *j.spec != *spec) {
                    return Err(SchedError::KeyConflict { key: key.to_string(), job: id.clone() });
                }
                existing.push(Some(id.clone()));
            } else if let Some(&first) = batch_keys.get(key) {
                if specs[first] != *spec {
                    return Err(SchedError::KeyConflict {
                        key: key.to_string(),
                        job: format!("#{first} of this batch"),
                    });
                }
                existing.push(None);
            } else {
                batch_keys.insert(key, i);
                existing.push(None);
            }
        }
        // 2. Check the quotas for what is new, so an over-quota batch submits nothing.
        let new = existing.iter().filter(|e| e.is_none()).count() as u64 - repeats_in(&specs, &existing);
        // An array holds as many unfinished jobs as it has indices.
        let indices: u64 = specs
            .iter()
            .zip(&existing)
            .filter_map(|(s, e)| s.array.as_ref().filter(|_| e.is_none()))
            .map(|a| u64::from(a.last).saturating_sub(u64::from(a.first)))
            .sum();
        let new = new + indices;
        if new > 0 {
            self.owners.admit(&specs[0].owner, self.active(), new)?;
        }
        // 3. Create the new jobs; ids are fixed before anything else can see them.
        let mut out = Vec::with_capacity(specs.len());
        for (spec, found) in specs.into_iter().zip(existing) {
            if let Some(id) = found.or_else(|| self.keys.get(&spec.idempotency_key).cloned()) {
                out.push(SubmitJobResponse { job_id: id, existing: true });
                continue;
            }
            let id = uuid::Uuid::now_v7().to_string();
            if !spec.idempotency_key.is_empty() {
                self.keys.insert(spec.idempotency_key.clone(), id.clone());
            }
            // (An array's indices each have the queue deadline; the array itself waits for them.)
            if spec.queue_timeout_ms > 0 && spec.array.is_none() {
                let due = Instant::now() + std::time::Duration::from_millis(spec.queue_timeout_ms);
                self.set_timer(due, &id, Timer::QueueDeadline);
            }
            self.owners.add(&spec.owner);
            let waits = has_dependencies(&spec);
            let array = spec.array.is_some();
            if !waits && !array {
                self.queue.push_back(id.clone(), spec.priority, &spec.owner);
            }
            let job = Job::new(id.clone(), Arc::new(spec), now_ms);
            self.counts[JobState::Queued as usize] += 1;
            self.totals.submitted += 1;
            self.jobs.insert(job);
            self.record(&id);
            if waits {
                self.queue_or_block(id.clone(), false, now_ms);
            } else if array {
                self.open_array(id.clone());
            }
            out.push(SubmitJobResponse { job_id: id, existing: false });
        }
        self.dispatch(now_ms);
        Ok((out, self.flush()))
    }

    /// Leases queued jobs to workers with room while any has room, in three lines: the jobs whose waiting budget
    /// ran out, then the jobs held back for pools that have room now, then the queue in its order (priority,
    /// then fair share, then age: see [`line`]). `now_ms` is the clock the waiting budgets are read by.
    ///
    /// A job without resource requests that none of the pools open to it can take now is held back in a line of
    /// its own for those pools (see `held`), so jobs waiting for a full pool never stand in front of jobs for
    /// another. Any other job that fits no worker with room is skipped (a bounded number per pass) so it does
    /// not block the jobs behind it.
    fn dispatch(&mut self, now_ms: u64) {
        let mut skipped = Vec::new();
        // Pools (a bit each) where a job with no resource request was refused: every such job would be.
        let mut full = 0u64;
        // 1. Jobs whose budget ran out go first.
        let mut skipped_spilling = Vec::new();
        while self.registry.has_room() && skipped_spilling.len() < MAX_SKIPPED_PER_DISPATCH {
            let Some(id) = self.spilling.pop_front() else { break };
            match self.place(&id, true, now_ms, &mut full) {
                Placed::Skipped { .. } => skipped_spilling.push(id),
                _ => {
                    self.spilling_ids.remove(&id);
                }
            }
        }
        for id in skipped_spilling.into_iter().rev() {
            self.spilling.push_front(id);
        }
        // 2. Jobs held back for pools that have room now, oldest first in each line.
        if !self.held.is_empty() && self.registry.has_room() {
            let open = self.registry.pools_with_room();
            let lines: Vec<u64> = self.held.keys().copied().filter(|m| m & open != 0).collect();
            for mask in lines {
                while self.registry.has_room() {
                    // Not before a job of higher priority in the queue: that one goes first (in step 3).
                    let queue_top = self.queue.top_priority().unwrap_or(i32::MIN);
                    let Some(line) = self.held.get_mut(&mask).filter(|l| l.top_priority() >= Some(queue_top)) else {
                        break;
                    };
                    let owners = &self.owners;
                    let Some(id) = line.pop(|o| owners.share(o), |_| false) else { break };
                    if let Placed::Skipped { hold } = self.place(&id, false, now_ms, &mut full) {
                        // Its pools are full after all (or its budget ran out meanwhile): back in line.
                        self.hold_back(hold.unwrap_or(mask), id, true);
                        break;
                    }
                }
            }
            self.held.retain(|_, line| !line.is_empty());
        }
        // 3. The queue, with as many array indices made into jobs as there are places for.
        self.make_indices(now_ms);
        // A submitter whose jobs keep not fitting is passed over for the rest of the pass, or its jobs (always
        // first by share, since a skip takes no slot) would use up every skip while another's would fit.
        let mut skips_by_owner: HashMap<String, usize> = HashMap::new();
        while self.registry.has_room() && skipped.len() < MAX_SKIPPED_PER_DISPATCH {
            let (owners, skips) = (&self.owners, &skips_by_owner);
            let passed = |o: &str| skips.get(o).is_some_and(|&n| n >= MAX_SKIPPED_PER_OWNER);
            let Some(id) = self.queue.pop(|o| owners.share(o), passed) else { break };
            match self.place(&id, false, now_ms, &mut full) {
                Placed::Skipped { hold: Some(mask) } => self.hold_back(mask, id, false),
                Placed::Skipped { hold: None } => {
                    if let Some(job) = self.jobs.get(&id) {
                        *skips_by_owner.entry(job.spec.owner.clone()).or_default() += 1;
                    }
                    skipped.push(id);
                }
                Placed::Leased | Placed::Parked | Placed::Gone => {}
            }
        }
        for id in skipped.into_iter().rev() {
            self.requeue(id);
        }
    }

    /// Puts queued job `id` back in line at the front of its submitter's jobs of its priority (a job queued again,
    /// passed over, or no longer parked).
    fn requeue(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get(&id) {
            let (priority, owner) = (job.spec.priority, job.spec.owner.clone());
            drop(job);
            self.queue.push_front(id, priority, &owner);
        }
    }

    /// Puts queued job `id` in the line of jobs held back for the pools in `mask`: at the front of its submitter's
    /// jobs of its priority when it was taken from there, else at the back.
    fn hold_back(&mut self, mask: u64, id: JobId, front: bool) {
        let Some(job) = self.jobs.get(&id) else { return };
        let (priority, owner) = (job.spec.priority, job.spec.owner.clone());
        drop(job);
        let line = self.held.entry(mask).or_default();
        if front { line.push_front(id, priority, &owner) } else { line.push_back(id, priority, &owner) }
    }

    /// Tries to place job `id`, taken from one of the lines (`spilling`: from the line of jobs whose budget ran
    /// out). An entry for a job that no longer waits there is [`Placed::Gone`]: it ended or was leased, it is
    /// waiting out a retry backoff (its timer queues it again), or it waits in `spilling`.
    fn place(&mut self, id: &JobId, spilling: bool, now_ms: u64, full: &mut u64) -> Placed {
        let Some(job) = self.jobs.get(id) else { return Placed::Gone };
        if *job.state() != State::Queued || job.retry_at_ms() > 0 {
            return Placed::Gone;
        }
        if !spilling && !self.spilling_ids.is_empty() && self.spilling_ids.contains(id) {
            return Placed::Gone;
        }
        let (spec, submitted_at_ms) = (job.spec.clone(), job.submitted_at_ms());
        drop(job);
        match self.choose(&spec, submitted_at_ms, now_ms, full) {
            Choice::Lease { worker, spilled } => {
                self.lease_to(id, worker, spilled, now_ms);
                Placed::Leased
            }
            Choice::Park => {
                debug!(job = %id, "no worker could ever fit this job; parked until a worker registers");
                self.spill_timers.cancel(id);
                self.parked.push(id.clone());
                Placed::Parked
            }
            Choice::Skip { spill_at_ms, hold } => {
                if let Some(at) = spill_at_ms
                    && !self.spill_timers.contains(id)
                {
                    let due = Instant::now() + std::time::Duration::from_millis(at.saturating_sub(now_ms));
                    self.spill_timers.set(id, due, Timer::Spill);
                    self.timer_added.notify_one();
                }
                Placed::Skipped { hold }
            }
        }
    }

    /// Where queued `job` goes now: a worker (by position) the router picked in a pool its policy allows, or
    /// nowhere yet. `full` carries the pools known to have no room for a job without resource requests.
    fn choose(&mut self, spec: &JobSpec, submitted_at_ms: u64, now_ms: u64, full: &mut u64) -> Choice {
        let need = spec.resources.unwrap_or_default();
        let plain = need == Resources::default();
        if self.registry.pools().len() <= 1 && spec.pool.is_empty() && spec.pool_selector.is_empty() {
            // One pool, and a job that goes anywhere: no policy to apply.
            if plain && *full != 0 {
                return Choice::Skip { spill_at_ms: None, hold: None };
            }
            return match self.router.pick(&self.registry.eligible_for(&need)) {
                Some(worker) => Choice::Lease { worker, spilled: false },
                None if !plain && !self.registry.iter().any(|w| covers(&w.total(), &need)) => Choice::Park,
                None => {
                    *full |= u64::from(plain);
                    Choice::Skip { spill_at_ms: None, hold: None }
                }
            };
        }
        let placement = self.policy.place(&view(spec, submitted_at_ms), now_ms);
        let open = self.pools_open_to(spec, submitted_at_ms, now_ms);
        let Some(&cheapest) = open.first() else { return Choice::Skip { spill_at_ms: None, hold: None } };
        let cheapest_cost = self.registry.pools()[cheapest].config.cost;
        let mut mask = 0u64;
        for &p in &open {
            mask |= 1 << p;
            if plain && *full & (1 << p) != 0 {
                continue;
            }
            if let Some(worker) = self.router.pick(&self.registry.eligible_in(p, &need)) {
                let spilled = self.registry.pools()[p].config.cost > cheapest_cost;
                return Choice::Lease { worker, spilled };
            }
            if plain {
                *full |= 1 << p;
            }
        }
        // Parked when no worker of the pools it may ever use could fit it: those open to it now, or all it
        // allows once a waiting budget runs out.
        let ever = match placement {
            Placement::First { until_ms: Some(_) } => self.allowed_pools(spec),
            _ => open,
        };
        let could_ever_fit = |w: &WorkerEntry| ever.contains(&w.pool) && covers(&w.total(), &need);
        if !plain && !self.registry.iter().any(could_ever_fit) {
            return Choice::Park;
        }
        let spill_at_ms = match placement {
            Placement::First { until_ms } => until_ms,
            Placement::Any => None,
        };
        Choice::Skip { spill_at_ms, hold: plain.then_some(mask) }
    }

    /// The pools a job may run on by its spec, cheapest first.
    fn allowed_pools(&self, spec: &JobSpec) -> Vec<PoolId> {
        let pools = self.registry.pools();
        self.registry
            .pools_by_cost()
            .iter()
            .copied()
            .filter(|&p| spec.pool.is_empty() || pools[p].name() == spec.pool)
            .filter(|&p| pools[p].config.matches(&spec.pool_selector))
            .collect()
    }

    /// Refuses a spec that names a pool, or a selector of pools, that no known pool answers to.
    pub fn check_pools(&self, spec: &JobSpec) -> Result<(), SchedError> {
        if (spec.pool.is_empty() && spec.pool_selector.is_empty()) || !self.allowed_pools(spec).is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = self.registry.pools().iter().map(|p| p.name()).collect();
        let asked = match (spec.pool.as_str(), spec.pool_selector.is_empty()) {
            (pool, true) => format!("pool {pool:?}"),
            ("", false) => format!("pool selector {}", selector_text(&spec.pool_selector)),
            (pool, false) => format!("pool {pool:?} with selector {}", selector_text(&spec.pool_selector)),
        };
        let known = if known.is_empty() { "none yet".to_string() } else { known.join(", ") };
        Err(SchedError::UnknownPool(format!(
            "no pool matches the job's {asked}; known pools: {known} (configure pools on the controller with --pool, \
             or start a worker with --pool)"
        )))
    }

    /// Refuses a worker that would bring a pool past [`MAX_POOLS`].
    pub fn admits_pool(&self, name: &str) -> Result<(), SchedError> {
        let name = if name.is_empty() { crate::policy::DEFAULT_POOL } else { name };
        if self.registry.pool_id(name).is_some() || self.registry.pools().len() < MAX_POOLS {
            return Ok(());
        }
        Err(SchedError::Invalid(format!(
            "the controller knows {MAX_POOLS} pools already; pool {name:?} is one too many"
        )))
    }

    /// Leases job `id` to the `index`-th worker (in id order) and puts the lease in its outbox.
    ///
    /// A worker holding fewer jobs than its slots and the leases it takes ahead of them (START_AHEAD) has a place
    /// for this job (a job keeps its place there until its result reaches the controller), so the job is
    /// recorded as running with the lease, in the same write, and the worker runs it as a slot frees, without a
    /// start report: on an idle cluster a job then spawns after one durable write and one message instead of two
    /// and three, and under load each job costs one record, one status and one start fewer. Past that, a lease
    /// waits for its start to be confirmed.
    fn lease_to(&mut self, id: &str, index: usize, spilled: bool, now_ms: u64) {
        let Some(w) = self.registry.at(index) else { return };
        let (worker, session, pool) = (w.info.worker_id.clone(), w.session, w.pool);
        let started = w.starts_with_lease();
        let Some(pool_name) = self.registry.pools().get(pool).map(|p| p.name_arc.clone()) else { return };
        let mut lease = None;
        let leased = self.transition(id, |job| {
            let h = job.lease(&worker, session)?;
            if started {
                let _ = job.start(&h, now_ms)?;
            }
            job.placed(pool_name, spilled);
            let spec = Some((*job.spec).clone());
            lease = Some(Lease { job_id: job.id.clone(), epoch: h.epoch, attempt: job.attempt(), spec, started });
            Ok(Effect::Moved)
        });
        if leased.is_ok()
            && let Some(p) = self.registry.pool_mut(pool)
        {
            p.placed += 1;
            p.spilled += u64::from(spilled);
        }
        // No worker joined or left since the pick: `index` is still this worker.
        if let (Ok(_), Some(lease), Some(w)) = (leased, lease, self.registry.at_mut(index)) {
            w.outbox.push(lease);
            w.wake.notify_one();
        }
    }

    /// Applies the retention limits; the controller calls it periodically.
    pub fn prune(&mut self, now: Instant) -> Durable {
        self.forget_expired(now);
        self.flush()
    }

    fn set_timer(&mut self, due: Instant, id: &str, timer: Timer) {
        self.timers.set(id, due, timer);
        self.timer_added.notify_one();
    }

    /// When the next timer is due, and the handle that is woken when one is added.
    pub fn next_timer(&self) -> (Option<Instant>, Arc<Notify>) {
        let next = match (self.timers.next(), self.spill_timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (next, self.timer_added.clone())
    }

    /// Does what every timer due by `now` asks: queue jobs whose retry backoff is over, fail jobs that missed
    /// their queue deadline (stopping them on their worker if they were leased).
    pub fn fire_timers(&mut self, now: Instant, now_ms: u64) -> Durable {
        while let Some((id, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Retry => {
                    if self.jobs.state(&id) == Some(JobState::Queued)
                        && let Some(job) = self.jobs.get_mut(&id)
                    {
                        job.retry_due();
                        let (priority, owner) = (job.spec.priority, job.spec.owner.clone());
                        self.queue.push_back(id, priority, &owner);
                    }
                }
                Timer::QueueDeadline => self.end_job(&id, |job| job.miss_queue_deadline(now_ms)),
                Timer::Spill => {}
            }
        }
        // Jobs whose waiting budget ran out may now go to any pool they allow: they go first.
        // (Not one waiting out a retry backoff: it is on no queue until its own timer puts it back.)
        while let Some((id, _)) = self.spill_timers.pop_due(now) {
            let in_queue = self.jobs.get(&id).is_some_and(|j| *j.state() == State::Queued && j.retry_at_ms() == 0);
            if in_queue && self.spilling_ids.insert(id.clone()) {
                self.spilling.push_back(id);
            }
        }
        self.dispatch(now_ms);
        self.flush()
    }

    /// Cancels the named jobs, or every unfinished job whose labels all match. Leased and running ones are
    /// stopped on their worker. Returns the cancelled ids and the named ids that had already ended.
    pub fn cancel(
        &mut self,
        ids: &[String],
        labels: &HashMap<String, String>,
        now_ms: u64,
    ) -> Result<(Vec<JobId>, Vec<JobId>, Durable), SchedError> {
        self.cancel_as(ids, labels, None, now_ms)
    }

    /// [`Scheduler::cancel`] for a caller who may cancel only `owner`'s jobs (`None`: any job): a named job of
    /// another owner refuses the whole call; a label selector only reaches `owner`'s jobs.
    pub fn cancel_as(
        &mut self,
        ids: &[String],
        labels: &HashMap<String, String>,
        owner: Option<&str>,
        now_ms: u64,
    ) -> Result<(Vec<JobId>, Vec<JobId>, Durable), SchedError> {
        if ids.is_empty() && labels.is_empty() {
            return Err(SchedError::Invalid("name the jobs to cancel or give a label selector".into()));
        }
        if let Some(missing) = ids.iter().find(|id| !self.jobs.contains_key(id)) {
            return Err(SchedError::UnknownJob(missing.clone()));
        }
        let mine = |j: &Job| owner.is_none_or(|o| o == j.spec.owner);
        if let Some(other) = ids.iter().find(|id| !self.jobs.get(id).is_some_and(|j| mine(&j))) {
            return Err(SchedError::NotYours(other.clone()));
        }
        let mut targets: Vec<JobId> = ids.to_vec();
        if !labels.is_empty() {
            targets.extend(
                self.jobs
                    .live()
                    .filter(|j| mine(j))
                    .filter(|j| labels.iter().all(|(k, v)| j.spec.labels.get(k) == Some(v)))
                    .map(|j| j.id.clone()),
            );
        }
        let (mut cancelled, mut ended) = (Vec::new(), Vec::new());
        for id in targets {
            if self.jobs.get(&id).is_some_and(|j| j.is_terminal()) {
                if !ended.contains(&id) && !cancelled.contains(&id) {
                    ended.push(id);
                }
                continue;
            }
            if self.jobs.get(&id).is_some_and(|j| j.array.is_some()) {
                // An array: none of its indices is made from now on, and those made are cancelled first.
                self.close_array(&id);
                for index in self.unfinished_indices(&id) {
                    self.end_job(&index, |job| job.cancel(now_ms));
                }
            }
            self.end_job(&id, |job| job.cancel(now_ms));
            cancelled.push(id);
        }
        self.dispatch(now_ms);
        Ok((cancelled, ended, self.flush()))
    }

    /// Ends a job through `f` (cancel, queue deadline); if a worker held it, tells the worker to stop it.
    fn end_job(&mut self, id: &str, f: impl FnOnce(&mut Job) -> Result<Effect, Refused>) {
        let Some(holder) = self.jobs.get(id).map(|j| j.state().holder().cloned()) else { return };
        if self.transition(id, f).is_err() {
            return;
        }
        if let Some(h) = holder
            && let Some(w) = self.registry.session_mut(&h.worker, h.session)
        {
            w.stops.push(LeaseRef { job_id: id.to_string(), epoch: h.epoch });
            w.wake.notify_one();
        }
    }
}

fn has_dependencies(spec: &JobSpec) -> bool {
    !spec.after.is_empty() || !spec.after_any.is_empty()
}

/// Specs of a batch that repeat an earlier spec's idempotency key (they name that spec's job, not a new one).
fn repeats_in(specs: &[JobSpec], existing: &[Option<JobId>]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut repeats = 0;
    for (s, e) in specs.iter().zip(existing) {
        if e.is_none() && !s.idempotency_key.is_empty() && !seen.insert(s.idempotency_key.as_str()) {
            repeats += 1;
        }
    }
    repeats
}

/// Where a queued job goes now (see [`Scheduler::choose`]).
enum Choice {
    /// To the worker at this position; `spilled`: a cheaper pool could have taken it.
    Lease { worker: usize, spilled: bool },
    /// Nowhere: no worker it may use could ever fit it. It waits until a worker registers.
    Park,
    /// Not now; `spill_at_ms`: when its waiting budget runs out and more pools open to it; `hold`: the pools
    /// (a bit each) a job without resource requests waits for, all of them full.
    Skip { spill_at_ms: Option<u64>, hold: Option<u64> },
}

/// What became of a job taken from a line (see [`Scheduler::place`]).
enum Placed {
    Leased,
    Parked,
    /// Not placed; `hold`: the pools it waits for, when it should wait in their own line.
    Skipped {
        hold: Option<u64>,
    },
    /// The entry no longer stands for a waiting job.
    Gone,
}

/// A job as a placement policy sees it.
fn view(spec: &JobSpec, submitted_at_ms: u64) -> JobView {
    JobView {
        submitted_at_ms,
        expected_runtime_ms: spec.expected_runtime_ms,
        size: JobView::size_of(spec.resources.as_ref()),
    }
}

/// `a=b,c=d`, sorted.
fn selector_text(selector: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

/// How long `job` may still wait for its first run, if it has a queue deadline and has not run (an array's
/// indices have theirs from their array).
fn queue_deadline_left(job: &Job, now_ms: u64) -> Option<std::time::Duration> {
    if !job.awaits_first_run() || job.spec.queue_timeout_ms == 0 || job.array.is_some() {
        return None;
    }
    let due_ms = job.submitted_at_ms().saturating_add(job.spec.queue_timeout_ms);
    Some(std::time::Duration::from_millis(due_ms.saturating_sub(now_ms)))
}

fn holder(worker: &str, session: u64, epoch: u64) -> Holder {
    Holder { worker: worker.to_string(), session, epoch }
}

fn outcome_of(r: JobResult) -> Outcome {
    Outcome {
        reason: r.reason(),
        message: r.message,
        exit_code: r.exit_code,
        signal: r.signal,
        stdout_path: r.stdout_path,
        stderr_path: r.stderr_path,
        stdout_truncated: r.stdout_truncated,
        stderr_truncated: r.stderr_truncated,
        started_at_ms: r.started_at_ms,
        finished_at_ms: r.finished_at_ms,
        output_tail: r.output_tail,
    }
}

#[cfg(test)]
mod invariants;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
