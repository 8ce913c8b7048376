//! The workers the controller knows: what each offers (slots, queue capacity, resources), what it holds, when it
//! was last heard from, and the leases waiting to be handed to it.
//!
//! # Invariants
//! - `held` is exactly the set of jobs leased to this worker's current session (Leased or Running), each with
//!   the moment it became this worker's; the scheduler keeps it so through every transition.
//! - `held.len() <= capacity()`: the scheduler checks [`WorkerEntry::room`] before every lease.
//! - `reserved` is the sum of the resource requests of the jobs in `held`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burst_proto::v1::{Lease, LeaseRef, Resources, WorkerInfo, WorkerStatus};
use tokio::sync::Notify;
use tracing::warn;

use crate::lifecycle::{JobId, WorkerId};

pub struct WorkerEntry {
    pub info: WorkerInfo,
    pub session: u64,
    pub held: HashMap<JobId, Instant>,
    pub running: u32,
    pub reserved: Resources,
    pub last_seen: Instant,
    pub registered_at_ms: u64,
    pub jobs_finished: u64,
    /// Shutting down: gets no new leases (its room is 0) and is no steal victim.
    pub draining: bool,
    /// Until then it gets no new leases: it died [`QUARANTINE_AFTER`] times within [`DEATH_WINDOW`].
    pub quarantined_until: Option<Instant>,
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
    pub fn new(info: WorkerInfo, session: u64, now_ms: u64) -> Self {
        WorkerEntry {
            info,
            session,
            held: HashMap::new(),
            running: 0,
            reserved: Resources::default(),
            last_seen: Instant::now(),
            registered_at_ms: now_ms,
            jobs_finished: 0,
            draining: false,
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

    /// Jobs this worker may hold at once: those it runs plus those waiting in its queue.
    pub fn quarantined(&self) -> bool {
        self.quarantined_until.is_some_and(|t| Instant::now() < t)
    }

    pub fn capacity(&self) -> u32 {
        self.info.slots.saturating_add(self.info.queue_capacity)
    }

    /// Leased jobs it has not started: what a thief could take.
    pub fn queued(&self) -> u32 {
        (self.held.len() as u32).saturating_sub(self.running)
    }

    pub fn room(&self) -> u32 {
        if self.draining || self.quarantined() {
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

    pub fn reserve(&mut self, r: &Resources) {
        self.reserved.cpu_millis += r.cpu_millis;
        self.reserved.memory_bytes += r.memory_bytes;
        self.reserved.gpus += r.gpus;
    }

    pub fn unreserve(&mut self, r: &Resources) {
        self.reserved.cpu_millis = self.reserved.cpu_millis.saturating_sub(r.cpu_millis);
        self.reserved.memory_bytes = self.reserved.memory_bytes.saturating_sub(r.memory_bytes);
        self.reserved.gpus = self.reserved.gpus.saturating_sub(r.gpus);
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

/// Workers by id: sorted, so routers see a stable order.
#[derive(Default)]
pub struct Registry {
    workers: BTreeMap<WorkerId, WorkerEntry>,
    /// When each worker id was last declared dead, within the last [`DEATH_WINDOW`].
    deaths: HashMap<WorkerId, Vec<Instant>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<&WorkerEntry> {
        self.workers.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut WorkerEntry> {
        self.workers.get_mut(id)
    }

    /// The worker `id` if `session` is its current registration.
    pub fn session_mut(&mut self, id: &str, session: u64) -> Option<&mut WorkerEntry> {
        self.workers.get_mut(id).filter(|w| w.session == session)
    }

    /// Adds (or replaces) a worker; returns the entry it replaced, whose held jobs the caller must release.
    /// Sessions are random, so a session from before a controller restart never matches one from after.
    pub fn insert(&mut self, info: WorkerInfo, now_ms: u64) -> (u64, Option<WorkerEntry>) {
        let session = loop {
            let s = rand::random::<u64>();
            if s != 0 && self.workers.values().all(|w| w.session != s) {
                break s;
            }
        };
        let id = info.worker_id.clone();
        let mut entry = WorkerEntry::new(info, session, now_ms);
        let recent = self.deaths.get(&id).map_or(0, Vec::len);
        if recent >= QUARANTINE_AFTER {
            entry.quarantined_until = Some(Instant::now() + QUARANTINE);
            warn!(worker = %id, deaths = recent, "worker died too often lately; quarantined (no new leases)");
        }
        let old = self.workers.insert(id, entry);
        (session, old)
    }

    /// Notes that worker `id` was declared dead, for quarantine decisions.
    pub fn died(&mut self, id: &str) {
        let now = Instant::now();
        let deaths = self.deaths.entry(id.to_string()).or_default();
        deaths.retain(|t| now.saturating_duration_since(*t) < DEATH_WINDOW);
        deaths.push(now);
    }

    pub fn remove(&mut self, id: &str) -> Option<WorkerEntry> {
        self.workers.remove(id)
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &WorkerEntry> {
        self.workers.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut WorkerEntry> {
        self.workers.values_mut()
    }

    pub fn has_room(&self) -> bool {
        self.workers.values().any(|w| w.room() > 0)
    }

    /// Ids of workers not heard from since `deadline`.
    pub fn silent_since(&self, deadline: Instant) -> Vec<WorkerId> {
        self.workers.values().filter(|w| w.last_seen < deadline).map(|w| w.info.worker_id.clone()).collect()
    }
}
