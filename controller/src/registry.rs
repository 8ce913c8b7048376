//! The workers the controller knows: what each offers (slots, queue capacity, resources), what it holds, when it
//! was last heard from, and the leases waiting to be handed to it.
//!
//! # Invariants
//! - `held` is exactly the set of jobs leased to this worker's current session (Leased or Running), each with
//!   the moment it became this worker's; `running` counts those that are Running, and `reserved` sums their
//!   resource requests. Only [`Registry::hold`], [`Registry::unhold`] and [`Registry::start`] change them, and
//!   the scheduler calls those from one place, for every transition.
//! - `held.len() <= max_capacity()`: the scheduler leases only to a worker with [`WorkerEntry::room`], and
//!   `capacity()` (what the worker wants now, see [`Registry::set_queue_target`]) is never above it. Lowering the
//!   target takes nothing away: the worker only gets less until it holds less.
//! - The room index holds exactly the workers whose room is above zero, so finding one is `O(log n)` in the
//!   workers, not a scan of them; each pool's room index holds exactly its own workers among them.
//! - Every worker belongs to one pool ([`Pool`]); a pool, once known, is never forgotten (its accounting
//!   outlives its workers, and an elastic pool may have none for a while).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burst_proto::v1::{Lease, LeaseRef, Resources, WorkerInfo, WorkerStatus};
use tokio::sync::Notify;
use tracing::warn;

use crate::lifecycle::{Holder, JobId, WorkerId};
use crate::policy::{DEFAULT_POOL, PoolConfig};
use crate::router::Eligible;

/// A pool's index in the registry's pools.
pub type PoolId = usize;

/// Most leases per slot a worker may say it takes ahead of a free slot (`HeartbeatRequest.start_ahead`).
pub const MAX_START_AHEAD: u32 = 8;

/// What a worker asks for with each registration, poll, report and heartbeat; `None`: as before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// `HeartbeatRequest.queue_target`.
    pub queue_target: Option<u32>,
    /// `HeartbeatRequest.start_ahead`.
    pub start_ahead: Option<u32>,
}

pub struct WorkerEntry {
    pub info: WorkerInfo,
    pub session: u64,
    pub pool: PoolId,
    held: HashMap<JobId, Instant>,
    running: u32,
    reserved: Resources,
    pub last_seen: Instant,
    pub registered_at_ms: u64,
    pub jobs_finished: u64,
    /// Shutting down: gets no new leases (its room is 0) and is no steal victim.
    draining: bool,
    /// Cordoned by an admin: gets no new leases (its room is 0), finishes what it holds.
    cordoned: bool,
    /// The queued jobs it wants now beyond those running, at most its `queue_capacity` (see
    /// `HeartbeatRequest.queue_target`).
    queue_target: u32,
    /// The leases per slot it takes in hand ahead of a free slot now, at most [`MAX_START_AHEAD`] (see
    /// `HeartbeatRequest.start_ahead`).
    start_ahead: u32,
    /// Until then it gets no new leases: it died [`QUARANTINE_AFTER`] times within [`DEATH_WINDOW`]. Lifted by
    /// [`Registry::lift_quarantines`], so that reading a worker's room never reads the clock.
    quarantined_until: Option<Instant>,
    /// Steal attempts the worker has made, as its last heartbeat said.
    pub steal_attempts: u64,
    /// Leases decided but not yet handed over by `PollJob`.
    pub outbox: Vec<Lease>,
    /// Leases the worker must stop (cancelled, past their queue deadline), handed over by `PollJob`.
    pub stops: Vec<LeaseRef>,
    /// Wakes this worker's waiting `PollJob` when `outbox` gains a lease.
    pub wake: Arc<Notify>,
}

impl WorkerEntry {
    fn new(info: WorkerInfo, session: u64, pool: PoolId, now_ms: u64) -> Self {
        let queue_target = info.queue_capacity;
        WorkerEntry {
            info,
            session,
            pool,
            held: HashMap::new(),
            running: 0,
            reserved: Resources::default(),
            last_seen: Instant::now(),
            registered_at_ms: now_ms,
            jobs_finished: 0,
            draining: false,
            cordoned: false,
            queue_target,
            start_ahead: 0,
            quarantined_until: None,
            steal_attempts: 0,
            outbox: Vec::new(),
            stops: Vec::new(),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn id(&self) -> &str {
        &self.info.worker_id
    }

    /// The jobs it holds, with the moment each became its.
    pub fn held(&self) -> &HashMap<JobId, Instant> {
        &self.held
    }

    pub fn running(&self) -> u32 {
        self.running
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    pub fn quarantined(&self) -> bool {
        self.quarantined_until.is_some()
    }

    /// Whether a job leased to it now is started with its lease: it holds fewer jobs than it has places for,
    /// its slots and the leases it takes ahead of them.
    pub fn starts_with_lease(&self) -> bool {
        let places = self.info.slots.saturating_mul(1 + self.start_ahead);
        (self.held.len() as u32) < places
    }

    /// Jobs this worker may hold at once: those it runs plus those it wants waiting in its queue.
    pub fn capacity(&self) -> u32 {
        self.info.slots.saturating_add(self.queue_target)
    }

    /// Leased jobs it has not started: what a thief could take.
    pub fn queued(&self) -> u32 {
        (self.held.len() as u32).saturating_sub(self.running)
    }

    pub fn cordoned(&self) -> bool {
        self.cordoned
    }

    /// The most it may ever hold: its slots plus its registered queue capacity.
    pub fn max_capacity(&self) -> u32 {
        self.info.slots.saturating_add(self.info.queue_capacity)
    }

    pub fn room(&self) -> u32 {
        if self.draining || self.cordoned || self.quarantined() {
            return 0;
        }
        self.capacity().saturating_sub(self.held.len() as u32)
    }

    pub fn total(&self) -> Resources {
        self.info.resources.unwrap_or_default()
    }

    pub fn free(&self) -> Resources {
        let total = self.total();
        Resources {
            cpu_millis: total.cpu_millis.saturating_sub(self.reserved.cpu_millis),
            memory_bytes: total.memory_bytes.saturating_sub(self.reserved.memory_bytes),
            gpus: total.gpus.saturating_sub(self.reserved.gpus),
        }
    }

    /// Whether it has room and free resources for a job that needs `need`.
    pub fn fits(&self, need: &Resources) -> bool {
        self.room() > 0 && covers(&self.free(), need)
    }

    pub fn status(&self) -> WorkerStatus {
        WorkerStatus {
            info: Some(self.info.clone()),
            held: self.held.len() as u32,
            running: self.running,
            free: Some(self.free()),
            last_heartbeat_ms_ago: self.last_seen.elapsed().as_millis() as u64,
            registered_at_ms: self.registered_at_ms,
            jobs_finished: self.jobs_finished,
            draining: self.draining,
            cordoned: self.cordoned,
            quarantined_ms_left: self
                .quarantined_until
                .map_or(0, |t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
        }
    }
}

/// Deaths within [`DEATH_WINDOW`] after which a worker that registers again is quarantined.
pub const QUARANTINE_AFTER: usize = 3;
/// The window deaths are counted in: a worker that crashes three times in ten minutes is sick, not unlucky.
pub const DEATH_WINDOW: Duration = Duration::from_secs(600);
/// How long a quarantined worker gets no new leases: long enough for a person to notice, short enough that a
/// transient fault heals by itself.
pub const QUARANTINE: Duration = Duration::from_secs(300);

/// Whether `have` covers `need` on every axis.
pub fn covers(have: &Resources, need: &Resources) -> bool {
    have.cpu_millis >= need.cpu_millis && have.memory_bytes >= need.memory_bytes && have.gpus >= need.gpus
}

/// A pool: its settings, its workers' room, and what it has cost and done since the controller started.
pub struct Pool {
    pub config: PoolConfig,
    /// The name, shared by the jobs placed here.
    pub name_arc: Arc<str>,
    /// Positions of this pool's workers whose room is above zero.
    with_room: BTreeSet<usize>,
    pub workers: u32,
    pub slots: u32,
    /// Slot-milliseconds its workers were registered, up to `since`.
    slot_ms: f64,
    since: Instant,
    /// Milliseconds its slots spent running jobs (ended runs, as their workers timed them).
    pub busy_ms: u64,
    /// Leases to its workers, and those of jobs that could have gone to a cheaper pool.
    pub placed: u64,
    pub spilled: u64,
}

impl Pool {
    fn new(config: PoolConfig) -> Self {
        Pool {
            name_arc: Arc::from(config.name.as_str()),
            config,
            with_room: BTreeSet::new(),
            workers: 0,
            slots: 0,
            slot_ms: 0.0,
            since: Instant::now(),
            busy_ms: 0,
            placed: 0,
            spilled: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Adds `slots` (negative: removes) from now on.
    fn resize(&mut self, workers: i32, slots: i64, now: Instant) {
        self.slot_ms = self.slot_ms_at(now);
        self.since = now;
        self.workers = self.workers.saturating_add_signed(workers);
        self.slots = u32::try_from(i64::from(self.slots) + slots).unwrap_or(0);
    }

    /// Slot-milliseconds its workers were registered, up to `now`.
    pub fn slot_ms_at(&self, now: Instant) -> f64 {
        self.slot_ms + f64::from(self.slots) * now.saturating_duration_since(self.since).as_secs_f64() * 1000.0
    }
}

/// Workers in id order (routers see a stable order), with an index of those with room, and their pools.
#[derive(Default)]
pub struct Registry {
    /// Sorted by id.
    workers: Vec<WorkerEntry>,
    /// Position in `workers` of each id (a B-tree: a few string compares beat hashing the id, at any size).
    position: BTreeMap<WorkerId, usize>,
    /// Positions of the workers whose room is above zero.
    with_room: BTreeSet<usize>,
    /// Every pool known: configured, or named by a worker.
    pools: Vec<Pool>,
    /// The pools cheapest first (equal costs: in the order they became known).
    by_cost: Vec<PoolId>,
    /// When each worker id was last declared dead, within the last [`DEATH_WINDOW`].
    deaths: HashMap<WorkerId, Vec<Instant>>,
    /// The session each worker id had before another registration with the same id replaced it: a call under
    /// it is told so, not treated as unknown (which would make two processes with one id evict each other).
    replaced: HashMap<WorkerId, u64>,
    /// Workers cordoned by an admin, by id: a cordon outlives a re-registration, not the worker's departure (or
    /// a restart of the controller).
    cordons: std::collections::HashSet<WorkerId>,
}

impl Registry {
    /// A registry that knows the configured pools from the start (a job may name one before its workers come).
    pub fn with_pools(pools: Vec<PoolConfig>) -> Self {
        let mut r = Registry::default();
        for p in pools {
            let name = p.name.clone();
            r.pool_named(&name, Some(p));
        }
        r
    }

    /// The pool named `name` (empty: the default pool), added (with `config`, or unconfigured) if it is new.
    fn pool_named(&mut self, name: &str, config: Option<PoolConfig>) -> PoolId {
        let name = if name.is_empty() { DEFAULT_POOL } else { name };
        if let Some(id) = self.pool_id(name) {
            return id;
        }
        self.pools.push(Pool::new(config.unwrap_or_else(|| PoolConfig::unconfigured(name))));
        let pools = &self.pools;
        self.by_cost = (0..pools.len()).collect();
        self.by_cost.sort_by(|&a, &b| pools[a].config.cost.total_cmp(&pools[b].config.cost).then(a.cmp(&b)));
        self.pools.len() - 1
    }

    /// The pool named `name`, if it is known.
    pub fn pool_id(&self, name: &str) -> Option<PoolId> {
        self.pools.iter().position(|p| p.config.name == name)
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    pub fn pool_mut(&mut self, id: PoolId) -> Option<&mut Pool> {
        self.pools.get_mut(id)
    }

    /// The pools, cheapest first.
    pub fn pools_by_cost(&self) -> &[PoolId] {
        &self.by_cost
    }

    pub fn get(&self, id: &str) -> Option<&WorkerEntry> {
        self.position.get(id).map(|&i| &self.workers[i])
    }

    /// The worker `id` for what does not change its room (last seen, outbox, stops); see [`Registry::hold`].
    pub fn get_mut(&mut self, id: &str) -> Option<&mut WorkerEntry> {
        self.position.get(id).map(|&i| &mut self.workers[i])
    }

    /// The worker `id` if `session` is its current registration.
    pub fn session_mut(&mut self, id: &str, session: u64) -> Option<&mut WorkerEntry> {
        self.get_mut(id).filter(|w| w.session == session)
    }

    /// Whether `session` of worker `id` was replaced by a later registration with the same id.
    pub fn was_replaced(&self, id: &str, session: u64) -> bool {
        self.replaced.get(id) == Some(&session)
    }

    /// Adds (or replaces) a worker; returns the entry it replaced, whose held jobs the caller must release.
    /// Sessions are random, so a session from before a controller restart never matches one from after.
    pub fn insert(&mut self, info: WorkerInfo, now_ms: u64) -> (u64, Option<WorkerEntry>) {
        let session = loop {
            let s = rand::random::<u64>();
            if s != 0 && self.workers.iter().all(|w| w.session != s) {
                break s;
            }
        };
        let id = info.worker_id.clone();
        let pool = self.pool_named(&info.pool, None);
        self.pools[pool].resize(1, i64::from(info.slots), Instant::now());
        let mut entry = WorkerEntry::new(info, session, pool, now_ms);
        entry.cordoned = self.cordons.contains(&id);
        let recent = self.deaths.get(&id).map_or(0, Vec::len);
        if recent >= QUARANTINE_AFTER {
            entry.quarantined_until = Some(Instant::now() + QUARANTINE);
            warn!(worker = %id, deaths = recent, "worker died too often lately; quarantined (no new leases)");
        }
        let old = match self.workers.binary_search_by(|w| w.id().cmp(&id)) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.workers[i], entry);
                self.pools[old.pool].resize(-1, -i64::from(old.info.slots), Instant::now());
                Some(old)
            }
            Err(i) => {
                self.workers.insert(i, entry);
                None
            }
        };
        match &old {
            Some(old) => self.replaced.insert(id, old.session),
            None => self.replaced.remove(&id),
        };
        self.reindex();
        (session, old)
    }

    pub fn remove(&mut self, id: &str) -> Option<WorkerEntry> {
        let i = *self.position.get(id)?;
        let entry = self.workers.remove(i);
        self.pools[entry.pool].resize(-1, -i64::from(entry.info.slots), Instant::now());
        self.replaced.remove(id);
        // A worker that left takes its cordon with it: a new one under the same id (a pod scaled up again) is
        // not cordoned, and the set stays as small as the workers.
        self.cordons.remove(id);
        self.reindex();
        Some(entry)
    }

    /// Rebuilds the positions and the room index: after a worker joins or leaves (rare).
    fn reindex(&mut self) {
        self.position = self.workers.iter().enumerate().map(|(i, w)| (w.info.worker_id.clone(), i)).collect();
        self.with_room = (0..self.workers.len()).filter(|&i| self.workers[i].room() > 0).collect();
        for pool in &mut self.pools {
            pool.with_room.clear();
        }
        for &i in &self.with_room {
            self.pools[self.workers[i].pool].with_room.insert(i);
        }
    }

    /// Puts the worker at position `i` in or out of the room indexes, after its room may have changed. (With
    /// one pool, the pool's index is the whole one: only that is kept.)
    fn refresh(&mut self, i: usize) {
        let room = self.workers[i].room() > 0;
        match room {
            true => self.with_room.insert(i),
            false => self.with_room.remove(&i),
        };
        if self.pools.len() > 1 {
            let pool = &mut self.pools[self.workers[i].pool];
            match room {
                true => pool.with_room.insert(i),
                false => pool.with_room.remove(&i),
            };
        }
    }

    /// The positions of pool `p`'s workers with room.
    fn room_in(&self, p: PoolId) -> &BTreeSet<usize> {
        match self.pools.len() {
            0 | 1 => &self.with_room,
            _ => &self.pools[p].with_room,
        }
    }

    /// Whether a worker of pool `p` has room.
    pub fn pool_has_room(&self, p: PoolId) -> bool {
        !self.room_in(p).is_empty()
    }

    /// The pools (a bit each) with a worker with room.
    pub fn pools_with_room(&self) -> u64 {
        (0..self.pools.len()).filter(|&p| self.pool_has_room(p)).fold(0, |m, p| m | 1 << p)
    }

    /// The current registration of `holder`'s worker, by position.
    fn position_of(&self, holder: &Holder) -> Option<usize> {
        self.position.get(&holder.worker).copied().filter(|&i| self.workers[i].session == holder.session)
    }

    /// `holder` now holds job `id` (needing `need`), leased or (`running`) already running. A holder that is not
    /// a current registration holds nothing.
    pub fn hold(&mut self, holder: &Holder, id: &str, need: &Resources, running: bool) {
        let Some(i) = self.position_of(holder) else { return };
        let w = &mut self.workers[i];
        w.held.insert(id.to_string(), Instant::now());
        w.reserved.cpu_millis += need.cpu_millis;
        w.reserved.memory_bytes += need.memory_bytes;
        w.reserved.gpus += need.gpus;
        w.running += u32::from(running);
        self.refresh(i);
    }

    /// `holder` no longer holds job `id`.
    pub fn unhold(&mut self, holder: &Holder, id: &str, need: &Resources, was_running: bool) {
        let Some(i) = self.position_of(holder) else { return };
        let w = &mut self.workers[i];
        if w.held.remove(id).is_none() {
            return;
        }
        w.reserved.cpu_millis = w.reserved.cpu_millis.saturating_sub(need.cpu_millis);
        w.reserved.memory_bytes = w.reserved.memory_bytes.saturating_sub(need.memory_bytes);
        w.reserved.gpus = w.reserved.gpus.saturating_sub(need.gpus);
        if was_running {
            w.running = w.running.saturating_sub(1);
        }
        self.refresh(i);
    }

    /// A job `holder` holds started running.
    pub fn start(&mut self, holder: &Holder) {
        if let Some(i) = self.position_of(holder) {
            self.workers[i].running += 1;
        }
    }

    /// The worker takes no new leases from now on.
    pub fn set_draining(&mut self, id: &str) {
        if let Some(&i) = self.position.get(id) {
            self.workers[i].draining = true;
            self.refresh(i);
        }
    }

    /// Sets how many queued jobs worker `id` wants beyond those running (at most its queue capacity); returns
    /// whether its room grew.
    pub fn set_queue_target(&mut self, id: &str, target: u32) -> bool {
        let Some(&i) = self.position.get(id) else { return false };
        let w = &mut self.workers[i];
        let target = target.min(w.info.queue_capacity);
        if target == w.queue_target {
            return false;
        }
        let grew = target > w.queue_target;
        w.queue_target = target;
        self.refresh(i);
        grew
    }

    /// Sets how many leases per slot worker `id` takes ahead of a free slot (at most [`MAX_START_AHEAD`]).
    pub fn set_start_ahead(&mut self, id: &str, per_slot: u32) {
        if let Some(&i) = self.position.get(id) {
            self.workers[i].start_ahead = per_slot.min(MAX_START_AHEAD);
        }
    }

    /// Cordons (or uncordons) registered worker `id`; returns whether it is registered.
    pub fn set_cordoned(&mut self, id: &str, cordoned: bool) -> bool {
        let Some(&i) = self.position.get(id) else { return false };
        self.workers[i].cordoned = cordoned;
        match cordoned {
            true => self.cordons.insert(id.to_string()),
            false => self.cordons.remove(id),
        };
        self.refresh(i);
        true
    }

    /// Ends the quarantines that are over by `now`; returns whether any was.
    pub fn lift_quarantines(&mut self, now: Instant) -> bool {
        let over: Vec<usize> =
            (0..self.workers.len()).filter(|&i| self.workers[i].quarantined_until.is_some_and(|t| t <= now)).collect();
        for &i in &over {
            self.workers[i].quarantined_until = None;
            self.refresh(i);
        }
        !over.is_empty()
    }

    /// Notes that worker `id` was declared dead at `now`, for quarantine decisions; deaths older than
    /// [`DEATH_WINDOW`] are forgotten, of every worker.
    pub fn died(&mut self, id: &str, now: Instant) {
        self.deaths.retain(|_, deaths| {
            deaths.retain(|t| now.saturating_duration_since(*t) < DEATH_WINDOW);
            !deaths.is_empty()
        });
        self.deaths.entry(id.to_string()).or_default().push(now);
    }

    /// Deaths on record, for tests of their bound.
    pub fn deaths_remembered(&self) -> usize {
        self.deaths.values().map(Vec::len).sum()
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The workers in id order.
    pub fn iter(&self) -> impl Iterator<Item = &WorkerEntry> {
        self.workers.iter()
    }

    /// The worker at position `i` (in id order), as a router picked it.
    pub fn at(&self, i: usize) -> Option<&WorkerEntry> {
        self.workers.get(i)
    }

    /// The worker at position `i`, for what does not change its room (see [`Registry::get_mut`]).
    pub fn at_mut(&mut self, i: usize) -> Option<&mut WorkerEntry> {
        self.workers.get_mut(i)
    }

    pub fn has_room(&self) -> bool {
        !self.with_room.is_empty()
    }

    /// Places free on all workers: jobs they would take now (ignoring resources).
    pub fn free_places(&self) -> u64 {
        self.with_room.iter().map(|&i| u64::from(self.workers[i].room())).sum()
    }

    /// The workers as a router sees them for a job that needs `need`.
    pub fn eligible_for<'a>(&'a self, need: &'a Resources) -> Fitting<'a> {
        Fitting { registry: self, need, plain: *need == Resources::default(), pool: None }
    }

    /// The workers as a router sees them for a job that needs `need` and may only go to `pool`.
    pub fn eligible_in<'a>(&'a self, pool: PoolId, need: &'a Resources) -> Fitting<'a> {
        Fitting { pool: Some(pool), ..self.eligible_for(need) }
    }

    /// Ids of workers not heard from since `deadline`.
    pub fn silent_since(&self, deadline: Instant) -> Vec<WorkerId> {
        self.workers.iter().filter(|w| w.last_seen < deadline).map(|w| w.info.worker_id.clone()).collect()
    }
}

/// The registry seen by a router for one job: a worker is eligible when it has room and free resources for it.
pub struct Fitting<'a> {
    registry: &'a Registry,
    need: &'a Resources,
    /// The job requests no resources: every worker with room fits it.
    plain: bool,
    /// Only this pool's workers are eligible.
    pool: Option<PoolId>,
}

impl Eligible for Fitting<'_> {
    fn count(&self) -> usize {
        self.registry.workers.len()
    }

    fn first_in(&self, from: usize, to: usize) -> Option<usize> {
        if from >= to {
            return None;
        }
        let index = match self.pool {
            Some(p) => self.registry.room_in(p),
            None => &self.registry.with_room,
        };
        let mut with_room = index.range(from..to).copied();
        match self.plain {
            true => with_room.next(),
            false => with_room.find(|&i| covers(&self.registry.workers[i].free(), self.need)),
        }
    }

    fn room(&self, i: usize) -> u32 {
        self.registry.workers.get(i).map_or(0, WorkerEntry::room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, slots: u32) -> WorkerInfo {
        WorkerInfo { worker_id: id.into(), slots, ..WorkerInfo::default() }
    }

    fn holder(r: &Registry, id: &str) -> Holder {
        Holder { worker: id.into(), session: r.get(id).unwrap().session, epoch: 1 }
    }

    #[test]
    fn the_room_index_follows_holds_drains_and_departures() {
        let mut r = Registry::default();
        r.insert(info("b", 1), 0);
        r.insert(info("a", 2), 0);
        let none = Resources::default();
        let fitting =
            |r: &Registry| (0..r.len()).filter(|&i| r.eligible_for(&none).first_in(i, i + 1).is_some()).count();
        assert_eq!(fitting(&r), 2);
        let b = holder(&r, "b");
        r.hold(&b, "j1", &none, false);
        assert_eq!(fitting(&r), 1, "b is full");
        assert_eq!(r.eligible_for(&none).first_in(0, 2), Some(0), "a, first in id order");
        r.unhold(&b, "j1", &none, false);
        r.unhold(&b, "j1", &none, false);
        assert_eq!((fitting(&r), r.get("b").unwrap().held().len()), (2, 0), "a second unhold changes nothing");
        r.set_draining("a");
        assert_eq!(r.eligible_for(&none).first_in(0, 2), Some(1));
        r.remove("b");
        assert!(!r.has_room(), "a drains, b is gone");
        // A stale holder (an old session) holds nothing.
        let stale = Holder { session: 12345, ..holder(&r, "a") };
        r.hold(&stale, "j2", &none, true);
        assert_eq!(r.get("a").unwrap().held().len(), 0);
    }
}
