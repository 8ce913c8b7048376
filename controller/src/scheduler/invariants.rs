//! Randomized invariant tests of the scheduler: seeded sequences of what workers, submitters, timers and crashes
//! do, each step followed by a check of everything that must always hold. A failure prints its seed and the
//! shortest sequence found that still breaks (each step removed in turn while it still fails).
//!
//! `BURST_SEED=<n>` replays one seed; `BURST_SEQUENCES=<n>` runs more (or fewer) sequences.
//!
//! The simulated workers behave as real ones do, with what the wire lets them know: they act on an answer only
//! once its store barrier resolved, have a lease's start confirmed only with a slot free or, as a worker of short
//! jobs does, up to eight leases ahead of each busy slot (so at most nine times its slots), start it only after the
//! controller accepted the start, and forget a lease once its result was answered. The store commits on demand; a crash drops
//! whatever it had not committed, and the controller restarts from the rest.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use burst_proto::v1::{JobResult, ProcessSpec, Reason, WorkerInfo, job_spec::Kind};
use futures::FutureExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::policy::{PolicyKind, WaitBy};
use crate::store::{MemoryStore, StoreError};

/// Most jobs a simulated worker has counted as running per slot: the slot's own and the starts a worker of short
/// jobs confirms ahead of it (the worker's `MAX_AHEAD_PER_SLOT`, 8).
const RUNNING_PER_SLOT: u32 = 9;

/// A store that makes writes durable only when told, and can lose what it has not.
#[derive(Default)]
pub(super) struct CrashStore {
    durable: MemoryStore,
    /// Writes handed over but not yet durable, with the barrier each resolves.
    pending: Mutex<Vec<(Vec<Write>, tokio::sync::oneshot::Sender<()>)>>,
    /// Every (job, state, epoch, attempt) that became durable: all a watcher may ever be told.
    seen: Mutex<HashSet<(JobId, i32, u64, u32)>>,
}

impl CrashStore {
    pub(super) fn commit(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        for (writes, done) in pending {
            for w in &writes {
                if let Write::Put(job) = w {
                    let s = job.status();
                    self.seen.lock().unwrap().insert((s.job_id, s.state, s.epoch, s.attempt));
                }
            }
            let _ = self.durable.write(writes).now_or_never();
            let _ = done.send(());
        }
    }

    fn crash(&self) {
        self.pending.lock().unwrap().clear();
    }
}

impl JobStore for CrashStore {
    fn load(&self) -> Result<Vec<Job>, StoreError> {
        self.durable.load()
    }

    fn write(&self, writes: Vec<Write>) -> Durable {
        let (done, durable) = tokio::sync::oneshot::channel();
        self.pending.lock().unwrap().push((writes, done));
        Box::pin(async move { durable.await.map_err(|_| StoreError::Unavailable("crashed".into())) })
    }
}

/// One step. Indices are taken modulo what exists when the step runs, so any subsequence is still valid.
#[derive(Clone, Debug)]
enum Op {
    Submit {
        n: u8,
        deadline: bool,
        attempts: u8,
        cpu: bool,
        /// Names a pool: none (most), onprem or cloud.
        pool: u8,
    },
    /// A worker (re)registers; with `claim`, claiming what it holds (a restart of the controller or a lost
    /// session); without, as a fresh process that has nothing.
    Register {
        w: u8,
        claim: bool,
    },
    Poll {
        w: u8,
    },
    Start {
        w: u8,
        k: u8,
    },
    Finish {
        w: u8,
        k: u8,
        ok: bool,
    },
    /// A report under an epoch the worker does not hold.
    StaleFinish {
        w: u8,
        k: u8,
    },
    /// A heartbeat that leaves out the `forget`-th job (none past the end), with no grace or a long one.
    Heartbeat {
        w: u8,
        forget: u8,
        no_grace: bool,
    },
    /// The worker fenced itself (cut off for a lease timeout): it stopped everything and registers again with
    /// nothing to claim, so the controller releases what the old session held.
    Fence {
        w: u8,
    },
    /// A steal; with `lost`, the answer never reaches the thief.
    Steal {
        victim: u8,
        thief: u8,
        n: u8,
        lost: bool,
    },
    Expire {
        w: u8,
    },
    /// The worker asks for `target` queued jobs beyond those running (its jobs became shorter or longer).
    QueueTarget {
        w: u8,
        target: u8,
    },
    Drain {
        w: u8,
    },
    Deregister {
        w: u8,
    },
    Cancel {
        k: u8,
    },
    Timers,
    /// The claim deadline after a restart passes.
    ClaimsDue,
    /// `op` is handed to the store, then the controller crashes before it is durable, and restarts.
    Crash {
        op: Box<Op>,
    },
}

const WORKERS: usize = 3;

/// The pools the simulated controller knows, cheapest first; workers join one at random.
const POOLS: [&str; 2] = ["onprem", "cloud"];

struct SimWorker {
    id: String,
    pool: &'static str,
    slots: u32,
    queue: u32,
    session: Option<u64>,
    /// Leases it has, and whether each was started (its start accepted).
    leases: Vec<(Lease, bool)>,
}

struct Sim {
    store: Arc<CrashStore>,
    policy: Policy,
    sched: Scheduler,
    events: broadcast::Sender<JobStatus>,
    watcher: broadcast::Receiver<JobStatus>,
    workers: Vec<SimWorker>,
    /// Submissions acknowledged (durable): none may ever be lost.
    acked: Vec<JobId>,
    terminal: HashMap<JobId, JobState>,
    /// Epochs at which each job's start was accepted.
    starts: HashMap<JobId, BTreeSet<u64>>,
    /// What a crash found broken (checked with the rest after the step).
    broken: Option<String>,
}

/// Fails the check with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn new_sched(store: Arc<CrashStore>, events: broadcast::Sender<JobStatus>, policy: Policy) -> Scheduler {
    let mut s = Scheduler::new(RouterKind::Roundrobin, store, events);
    let pools = [("onprem", 0.0), ("cloud", 2.0)]
        .map(|(name, cost)| PoolConfig { cost, ..PoolConfig::unconfigured(name) })
        .to_vec();
    s.set_pools(pools, policy);
    s
}

impl Sim {
    fn new(rng: &mut SmallRng) -> Sim {
        let store = Arc::new(CrashStore::default());
        let (events, watcher) = broadcast::channel(1 << 10);
        let workers = (0..WORKERS)
            .map(|i| SimWorker {
                id: format!("w{i}"),
                pool: POOLS[rng.random_range(0..POOLS.len())],
                slots: rng.random_range(1..3),
                queue: rng.random_range(0..3),
                session: None,
                leases: Vec::new(),
            })
            .collect();
        // Waits of 5 s: the timers step (at a later clock) spends every budget, the other steps spend none.
        let kind = [PolicyKind::Cheapest, PolicyKind::FirstPoolOnly, PolicyKind::Wait][rng.random_range(0..3)];
        let policy = Policy { kind, wait_by: WaitBy::Constant, factor: 5.0 };
        Sim {
            sched: new_sched(store.clone(), events.clone(), policy),
            policy,
            store,
            events,
            watcher,
            workers,
            acked: Vec::new(),
            terminal: HashMap::new(),
            starts: HashMap::new(),
            broken: None,
        }
    }

    fn info(&self, w: usize) -> WorkerInfo {
        let sw = &self.workers[w];
        WorkerInfo {
            worker_id: sw.id.clone(),
            advertise_addr: format!("{}:1", sw.id),
            slots: sw.slots,
            queue_capacity: sw.queue,
            resources: Some(Resources { cpu_millis: 1000, memory_bytes: 1 << 30, gpus: 0 }),
            labels: Default::default(),
            pool: sw.pool.into(),
        }
    }

    /// Commits and resolves `d`: whether the answer it guards may be acted on.
    fn durable(&self, d: Durable, crash: bool) -> bool {
        if crash {
            drop(d);
            return false;
        }
        self.store.commit();
        matches!(d.now_or_never(), Some(Ok(())))
    }

    fn step(&mut self, op: &Op, crash: bool) {
        let now_ms = 1_000;
        match op {
            Op::Submit { n, deadline, attempts, cpu, pool } => {
                let spec = JobSpec {
                    kind: Some(Kind::Process(ProcessSpec { command: "/bin/true".into(), args: vec![] })),
                    queue_timeout_ms: if *deadline { 1 } else { 0 },
                    max_attempts: u32::from(*attempts % 3) + 1,
                    retry_backoff_ms: 1,
                    resources: cpu.then_some(Resources { cpu_millis: 600, ..Resources::default() }),
                    pool: ["", "", "", "onprem", "cloud"][usize::from(*pool) % 5].into(),
                    // Submitters and priorities from the same draw: fair share and priority orders in play.
                    owner: ["ann", "bob"][usize::from(*attempts / 12) % 2].into(),
                    priority: [0, 0, 1, -1][usize::from(*attempts / 3) % 4],
                    ..JobSpec::default()
                };
                // Some depend on an earlier job (until it succeeds, or until it ends), from the same draw.
                let mut spec = spec;
                if !self.acked.is_empty() && *attempts % 4 != 0 {
                    let dep = self.acked[usize::from(*attempts) * 7 % self.acked.len()].clone();
                    if *attempts % 4 == 1 {
                        spec.after.push(dep)
                    } else if *attempts % 4 == 2 {
                        spec.after_any.push(dep)
                    }
                }
                // Some are arrays of a few indices, some with a parallelism.
                if *attempts % 5 == 4 {
                    let last = u32::from(*n % 7);
                    spec.array = Some(burst_proto::v1::ArraySpec { first: 0, last, parallelism: u32::from(*pool % 3) });
                }
                let n = usize::from(*n % 4) + 1;
                if let Ok((jobs, d)) = self.sched.submit(vec![spec; n], now_ms)
                    && self.durable(d, crash)
                {
                    self.acked.extend(jobs.into_iter().map(|j| j.job_id));
                }
            }
            Op::Register { w, claim } => {
                let w = usize::from(*w) % WORKERS;
                if !claim {
                    self.workers[w].leases.clear();
                }
                let claims: Vec<LeaseRef> = self.workers[w].leases.iter().map(|(l, _)| l.to_ref()).collect();
                let (session, rejected, d) = self.sched.register(self.info(w), &claims, Wants::default(), now_ms);
                if self.durable(d, crash) {
                    let sw = &mut self.workers[w];
                    sw.session = Some(session);
                    sw.leases.retain(|(l, _)| !rejected.contains(&l.job_id));
                }
            }
            Op::Poll { w } => {
                let w = usize::from(*w) % WORKERS;
                let Some(session) = self.workers[w].session else { return };
                let Ok((poll, d)) = self.sched.take_leases(&self.workers[w].id, session) else { return };
                if let Poll::Ready { leases, stop } = poll
                    && self.durable(d, crash)
                {
                    // A lease started with its lease runs as it arrives (unless stopped in the same answer).
                    for l in leases.iter().filter(|l| l.started && !stop.contains(&l.to_ref())) {
                        self.starts.entry(l.job_id.clone()).or_default().insert(l.epoch);
                    }
                    let sw = &mut self.workers[w];
                    sw.leases.extend(leases.into_iter().map(|l| {
                        let started = l.started;
                        (l, started)
                    }));
                    sw.leases.retain(|(l, _)| !stop.contains(&l.to_ref()));
                }
            }
            Op::Start { w, k } => {
                let w = usize::from(*w) % WORKERS;
                let sw = &self.workers[w];
                let Some(session) = sw.session else { return };
                let running = sw.leases.iter().filter(|(_, started)| *started).count() as u32;
                let unstarted: Vec<usize> = (0..sw.leases.len()).filter(|&i| !sw.leases[i].1).collect();
                if running >= RUNNING_PER_SLOT * sw.slots || unstarted.is_empty() {
                    return;
                }
                let i = unstarted[usize::from(*k) % unstarted.len()];
                let r = sw.leases[i].0.to_ref();
                let Ok((refused, d)) = self.sched.started(&sw.id, session, std::slice::from_ref(&r), now_ms) else {
                    return;
                };
                if self.durable(d, crash) {
                    let sw = &mut self.workers[w];
                    match refused.contains(&r) {
                        true => sw.leases.retain(|(l, _)| l.to_ref() != r),
                        false => {
                            sw.leases[i].1 = true;
                            self.starts.entry(r.job_id).or_default().insert(r.epoch);
                        }
                    }
                }
            }
            Op::Finish { w, k, ok } => {
                let w = usize::from(*w) % WORKERS;
                let sw = &self.workers[w];
                let Some(session) = sw.session else { return };
                if sw.leases.is_empty() {
                    return;
                }
                let i = usize::from(*k) % sw.leases.len();
                let r = sw.leases[i].0.to_ref();
                let result = JobResult {
                    lease: Some(r.clone()),
                    reason: Reason::Exited as i32,
                    exit_code: Some(if *ok { 0 } else { 1 }),
                    ..JobResult::default()
                };
                let Ok((_, _, d)) = self.sched.finished(&sw.id, session, vec![result], now_ms) else { return };
                if self.durable(d, crash) {
                    self.workers[w].leases.retain(|(l, _)| l.to_ref() != r);
                }
            }
            Op::StaleFinish { w, k } => {
                let w = usize::from(*w) % WORKERS;
                let sw = &self.workers[w];
                let (Some(session), false) = (sw.session, self.acked.is_empty()) else { return };
                let job_id = self.acked[usize::from(*k) % self.acked.len()].clone();
                // An epoch past the job's: no lease ever had it.
                let Ok((_, status)) = self.sched.job(&job_id) else { return };
                let epoch = status.epoch + 1;
                let result = JobResult {
                    lease: Some(LeaseRef { job_id, epoch }),
                    reason: Reason::Exited as i32,
                    exit_code: Some(0),
                    ..JobResult::default()
                };
                if let Ok((_, _, d)) = self.sched.finished(&sw.id, session, vec![result], now_ms) {
                    self.durable(d, crash);
                }
            }
            Op::Heartbeat { w, forget, no_grace } => {
                let w = usize::from(*w) % WORKERS;
                let sw = &self.workers[w];
                let Some(session) = sw.session else { return };
                let known: Vec<String> = (0..sw.leases.len())
                    .filter(|&i| i != usize::from(*forget))
                    .map(|i| sw.leases[i].0.job_id.clone())
                    .collect();
                let grace = if *no_grace { Duration::ZERO } else { Duration::from_secs(3600) };
                if let Ok((_, d)) = self.sched.heartbeat(&sw.id, session, &known, 0, grace, now_ms) {
                    self.durable(d, crash);
                }
                // A job left out of a heartbeat is one the worker no longer has.
                let sw = &mut self.workers[w];
                if usize::from(*forget) < sw.leases.len() && *no_grace {
                    sw.leases.remove(usize::from(*forget));
                }
            }
            Op::Fence { w } => self.step(&Op::Register { w: *w, claim: false }, crash),
            Op::Steal { victim, thief, n, lost } => {
                let (v, t) = (usize::from(*victim) % WORKERS, usize::from(*thief) % WORKERS);
                let Some(session) = self.workers[v].session else { return };
                if v == t {
                    return;
                }
                let refs: Vec<LeaseRef> = self.workers[v]
                    .leases
                    .iter()
                    .filter(|(_, started)| !started)
                    .take(usize::from(*n % 3) + 1)
                    .map(|(l, _)| l.to_ref())
                    .collect();
                let thief_id = self.workers[t].id.clone();
                let Ok((moved, _, d)) = self.sched.transfer(&self.workers[v].id, session, &thief_id, &refs) else {
                    return;
                };
                if self.durable(d, crash) {
                    let taken: Vec<(Lease, bool)> = self.workers[v]
                        .leases
                        .iter()
                        .filter(|(l, _)| moved.iter().any(|m| m.job_id == l.job_id))
                        .cloned()
                        .collect();
                    self.workers[v].leases.retain(|(l, _)| !moved.iter().any(|m| m.job_id == l.job_id));
                    if !lost && self.workers[t].session.is_some() {
                        for (mut l, _) in taken {
                            l.epoch = moved.iter().find(|m| m.job_id == l.job_id).map_or(l.epoch, |m| m.epoch);
                            self.workers[t].leases.push((l, false));
                        }
                    }
                }
            }
            Op::Expire { w } => {
                let w = usize::from(*w) % WORKERS;
                let id = self.workers[w].id.clone();
                let long_ago = Instant::now() - Duration::from_secs(7200);
                let Some(entry) = self.sched.registry.get_mut(&id) else { return };
                entry.last_seen = long_ago;
                let (_, d) = self.sched.expire(long_ago + Duration::from_secs(1), now_ms);
                self.durable(d, crash);
                // The worker does not know it was declared dead: it keeps what it has until it hears.
            }
            Op::QueueTarget { w, target } => {
                let sw = &self.workers[usize::from(*w) % WORKERS];
                let Some(session) = sw.session else { return };
                // And leases ahead of its slots, 0-9 per slot (9: past the most, taken as the most).
                let wants = Wants {
                    queue_target: Some(u32::from(*target) % (sw.queue + 2)),
                    start_ahead: Some(u32::from(*target) % 10),
                };
                if let Ok(Some(d)) = self.sched.set_wants(&sw.id, session, wants, now_ms) {
                    self.durable(d, crash);
                }
            }
            Op::Drain { w } => {
                let w = usize::from(*w) % WORKERS;
                let sw = &self.workers[w];
                let Some(session) = sw.session else { return };
                let returned: Vec<LeaseRef> =
                    sw.leases.iter().filter(|(_, started)| !started).map(|(l, _)| l.to_ref()).collect();
                if let Ok((_, d)) = self.sched.drain(&sw.id, session, &returned, now_ms)
                    && self.durable(d, crash)
                {
                    self.workers[w].leases.retain(|(_, started)| *started);
                }
            }
            Op::Deregister { w } => {
                let w = usize::from(*w) % WORKERS;
                let Some(session) = self.workers[w].session else { return };
                if let Ok((_, d)) = self.sched.deregister(&self.workers[w].id, session, now_ms)
                    && self.durable(d, crash)
                {
                    let sw = &mut self.workers[w];
                    sw.session = None;
                    sw.leases.clear();
                }
            }
            Op::Cancel { k } => {
                if self.acked.is_empty() {
                    return;
                }
                let id = self.acked[usize::from(*k) % self.acked.len()].clone();
                if let Ok((_, _, d)) = self.sched.cancel(&[id], &HashMap::new(), now_ms) {
                    self.durable(d, crash);
                }
            }
            Op::Timers => {
                let d = self.sched.fire_timers(Instant::now() + Duration::from_secs(7200), 10_000_000);
                self.durable(d, crash);
            }
            Op::ClaimsDue => {
                if self.sched.claim_deadline.is_some() {
                    self.sched.claim_deadline = Some(Instant::now());
                    let (_, d) = self.sched.expire(Instant::now() - Duration::from_secs(7200), now_ms);
                    self.durable(d, crash);
                }
            }
            Op::Crash { op } => {
                self.step(op, true);
                self.store.crash();
                let (events, watcher) = broadcast::channel(1 << 10);
                // Everything the old controller told watchers must still be known: they heard only of the durable.
                if let Err(broken) = self.check_events() {
                    self.broken.get_or_insert(broken);
                }
                self.events = events;
                self.watcher = watcher;
                self.sched = new_sched(self.store.clone(), self.events.clone(), self.policy);
                let claims_until = Instant::now() + Duration::from_secs(3600);
                let d = self.sched.restore(self.store.load().unwrap(), 1_000, claims_until);
                self.durable(d, false);
                // No worker's session survives a controller restart.
                for w in &mut self.workers {
                    w.session = None;
                }
            }
        }
    }

    fn check_events(&mut self) -> Result<(), String> {
        let seen = self.store.seen.lock().unwrap();
        while let Ok(s) = self.watcher.try_recv() {
            let key = (s.job_id.clone(), s.state, s.epoch, s.attempt);
            ensure!(seen.contains(&key), "a watcher was told of a state that is not durable: {key:?}");
        }
        Ok(())
    }

    /// Everything that must hold after every step.
    fn check(&mut self) -> Result<(), String> {
        if let Some(broken) = self.broken.take() {
            return Err(broken);
        }
        self.check_events()?;
        let s = &self.sched;
        // No acknowledged job is lost, and a terminal job stays as it ended.
        for id in &self.acked {
            let Ok((_, status)) = s.job(id) else { return Err(format!("acknowledged job {id} is lost")) };
            if let Some(ended) = self.terminal.get(id) {
                ensure!(status.state() == *ended, "job {id} left its terminal state {ended:?}: {status:?}");
            } else if matches!(status.state(), JobState::Succeeded | JobState::Failed | JobState::Cancelled) {
                self.terminal.insert(id.clone(), status.state());
            }
            // A run is started at most once per attempt: never twice for a job that had not run.
            let starts = self.starts.get(id).map_or(0, BTreeSet::len) as u32;
            ensure!(starts <= status.attempt, "job {id} started {starts} times in {} attempts", status.attempt);
        }
        // Holders: each worker holds exactly the live jobs whose holder it is, with their running slots and
        // resources; never more running than its slots and eight confirmed ahead of each, never more held than
        // capacity.
        let mut held: HashMap<(String, u64), Vec<&Job>> = HashMap::new();
        let mut by_state = [0u64; 7];
        for job in s.jobs.live() {
            by_state[job.state().proto() as usize] += 1;
            if let Some(h) = job.state().holder() {
                held.entry((h.worker.clone(), h.session)).or_default().push(job);
            }
            if *job.state() == State::Queued {
                let in_line = (s.queue.contains(&job.id) || s.held.values().any(|l| l.contains(&job.id)))
                    && !s.spilling_ids.contains(&job.id);
                let waits = in_line
                    || s.spilling.contains(&job.id)
                    || s.parked.contains(&job.id)
                    || s.timers.has(&job.id)
                    || s.deps.is_blocked(&job.id)
                    || s.arrays.is_live(&job.id);
                ensure!(waits, "queued job {} is on no queue and has no timer: it would wait for ever", job.id);
            }
            // A job leased or running has its dependencies met: those in `after` succeeded, those in `after_any`
            // ended; a blocked job is in no line.
            if job.state().holder().is_some() {
                for dep in &job.spec.after {
                    let state = s.jobs.state(dep);
                    ensure!(state == Some(JobState::Succeeded), "job {} runs though {dep} is {state:?}", job.id);
                }
                for dep in &job.spec.after_any {
                    let ended = s.jobs.get(dep).is_some_and(|d| d.is_terminal());
                    ensure!(ended, "job {} runs though {dep} has not ended", job.id);
                }
            }
            if s.deps.is_blocked(&job.id) {
                ensure!(!s.queue.contains(&job.id), "blocked job {} is in the queue", job.id);
            }
            // A job leased or running was not waiting out a retry backoff.
            if job.state().holder().is_some() {
                ensure!(job.backoff_until_ms() == 0, "job {} was leased during its retry backoff", job.id);
            }
            // A job runs only in a pool it may use: the one it names, and under first-pool-only the cheapest.
            if let Some(h) = job.state().holder()
                && let Some(w) = s.registry.get(&h.worker).filter(|w| w.session == h.session)
            {
                let pool = s.registry.pools()[w.pool].name();
                ensure!(
                    job.spec.pool.is_empty() || job.spec.pool == pool,
                    "job {} naming {:?} is on {pool}",
                    job.id,
                    job.spec.pool
                );
                ensure!(
                    job.pool() == Some(pool),
                    "job {} says it is in pool {:?}, its worker is in {pool}",
                    job.id,
                    job.pool()
                );
                let spilled = job.spec.pool.is_empty() && pool != POOLS[0];
                ensure!(
                    !(spilled && self.policy.kind == PolicyKind::FirstPoolOnly),
                    "job {} went to {pool} under first-pool-only",
                    job.id
                );
            }
        }
        // Each unfinished array counts exactly its unfinished index jobs, by state.
        let mut by_array: HashMap<&str, [u64; 3]> = HashMap::new();
        for job in s.jobs.live() {
            if let Some((array, _)) = super::arrays::index_of(&job.id) {
                let slot = match job.state() {
                    State::Queued => 0,
                    State::Leased(_) => 1,
                    _ => 2,
                };
                by_array.entry(array).or_default()[slot] += 1;
            }
        }
        for job in s.jobs.live() {
            if let Some(a) = &job.array {
                let counted = [a.counts.queued, a.counts.leased, a.counts.running];
                let truth = by_array.get(job.id.as_str()).copied().unwrap_or_default();
                ensure!(counted == truth, "array {} counts {counted:?} unfinished indices, has {truth:?}", job.id);
                ensure!(a.unmade() + a.unfinished() > 0, "array {} has no index left to end, yet has not", job.id);
            }
        }
        // Each submitter's share counts exactly its jobs that a worker holds.
        let mut held_by_owner: HashMap<&str, u64> = HashMap::new();
        for job in s.jobs.live().filter(|j| j.state().holder().is_some()) {
            *held_by_owner.entry(job.spec.owner.as_str()).or_default() += 1;
        }
        for owner in ["ann", "bob"] {
            let counted = s.owners.share(owner).held;
            let truth = held_by_owner.get(owner).copied().unwrap_or(0);
            ensure!(counted == truth, "{owner} is counted holding {counted} places, holds {truth}");
        }
        for w in s.registry.iter() {
            let jobs = held.remove(&(w.id().to_string(), w.session)).unwrap_or_default();
            let ids: BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
            let registry: BTreeSet<&str> = w.held().keys().map(String::as_str).collect();
            ensure!(registry == ids, "worker {} holds what its jobs say", w.id());
            let running = jobs.iter().filter(|j| matches!(j.state(), State::Running(_))).count() as u32;
            ensure!(w.running() == running, "worker {}'s running count", w.id());
            let most = RUNNING_PER_SLOT * w.info.slots;
            ensure!(w.running() <= most, "worker {} counts more than {RUNNING_PER_SLOT} running per slot", w.id());
            ensure!(w.held().len() as u32 <= w.max_capacity(), "worker {} holds more than its capacity", w.id());
            let cpu: u32 = jobs.iter().map(|j| j.spec.resources.unwrap_or_default().cpu_millis).sum();
            ensure!(
                w.free().cpu_millis == w.total().cpu_millis.saturating_sub(cpu),
                "worker {}'s reserved cpu",
                w.id()
            );
        }
        // Jobs held by a registration that is gone are only those a restart left to be claimed.
        for ((worker, _), jobs) in held {
            for job in jobs {
                ensure!(s.unclaimed.contains(&job.id), "job {} is held by {worker}'s dead registration", job.id);
            }
        }
        for state in [JobState::Queued, JobState::Leased, JobState::Running] {
            ensure!(s.counts[state as usize] == by_state[state as usize], "count of {state:?}");
        }
        // Busy slots are slots: starts confirmed ahead of a worker's slots do not add to them.
        let stats = s.stats();
        ensure!(stats.slots_busy <= stats.slots_total, "{} of {} slots busy", stats.slots_busy, stats.slots_total);
        // A job taken off the queue to be served first is on the list that serves it.
        for id in &s.spilling_ids {
            ensure!(s.spilling.contains(id), "job {id} is marked as spilling but is not on the spilling list");
        }
        // Timers only for jobs that still wait.
        for id in s.timers.ids() {
            let state = s.jobs.get(id).map(|j| j.state().clone());
            ensure!(matches!(state, Some(State::Queued | State::Leased(_))), "job {id} has a timer in {state:?}");
        }
        Ok(())
    }
}

fn random_op(rng: &mut SmallRng, depth: u8) -> Op {
    let w = rng.random_range(0..WORKERS as u8);
    let k = rng.random();
    match rng.random_range(0..100) {
        0..12 => Op::Submit {
            n: rng.random(),
            deadline: rng.random_bool(0.2),
            attempts: rng.random(),
            cpu: rng.random_bool(0.3),
            pool: rng.random(),
        },
        12..20 => Op::Register { w, claim: rng.random_bool(0.7) },
        20..34 => Op::Poll { w },
        34..48 => Op::Start { w, k },
        48..60 => Op::Finish { w, k, ok: rng.random_bool(0.7) },
        60..63 => Op::StaleFinish { w, k },
        63..70 => Op::Heartbeat { w, forget: rng.random_range(0..4), no_grace: rng.random_bool(0.5) },
        70..72 => Op::Fence { w },
        72..78 => Op::Steal { victim: w, thief: rng.random(), n: k, lost: rng.random_bool(0.2) },
        78..80 => Op::Expire { w },
        80..81 => Op::QueueTarget { w, target: k },
        81..83 => Op::Drain { w },
        83..85 => Op::Deregister { w },
        85..89 => Op::Cancel { k },
        89..93 => Op::Timers,
        93..95 => Op::ClaimsDue,
        _ if depth == 0 => Op::Crash { op: Box::new(random_op(rng, 1)) },
        _ => Op::Timers,
    }
}

/// Runs `ops` from a fresh cluster; `Err` carries the step and what broke.
fn run(seed: u64, ops: &[Op]) -> Result<(), String> {
    let ops = ops.to_vec();
    std::panic::catch_unwind(move || {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut sim = Sim::new(&mut rng);
        for (i, op) in ops.iter().enumerate() {
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sim.step(op, false);
                sim.check()
            }));
            match step {
                Ok(Ok(())) => {}
                Ok(Err(broken)) => return Err(format!("step {i} ({op:?}): {broken}")),
                Err(panic) => return Err(format!("step {i} ({op:?}) panicked: {}", panic_message(&*panic))),
            }
        }
        Ok(())
    })
    .unwrap_or_else(|panic| Err(panic_message(&*panic)))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The shortest sequence found that still fails: removes one step at a time while the failure stays.
fn shrink(seed: u64, mut ops: Vec<Op>) -> Vec<Op> {
    let mut i = 0;
    while i < ops.len() {
        let mut shorter = ops.clone();
        shorter.remove(i);
        if run(seed, &shorter).is_err() {
            ops = shorter;
        } else {
            i += 1;
        }
    }
    ops
}

#[test]
fn no_sequence_of_reports_timers_deaths_and_crashes_breaks_an_invariant() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let (first, count) = match env("BURST_SEED") {
        Some(seed) => (seed, 1),
        None => (0x5eed_0000, env("BURST_SEQUENCES").unwrap_or(2_000)),
    };
    println!("scheduler invariants: seeds {first}..{} (BURST_SEED=<n> replays one)", first + count);
    for seed in first..first + count {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x9e37_79b9);
        let ops: Vec<Op> = (0..rng.random_range(10..80)).map(|_| random_op(&mut rng, 0)).collect();
        if let Err(first_failure) = run(seed, &ops) {
            let minimal = shrink(seed, ops);
            let steps: Vec<String> = minimal.iter().enumerate().map(|(i, op)| format!("  {i}: {op:?}")).collect();
            let why = run(seed, &minimal).err().unwrap_or_default();
            panic!(
                "seed {seed} breaks an invariant: {first_failure}\nshortest sequence ({} steps), failing with: {why}\n{}",
                minimal.len(),
                steps.join("\n")
            );
        }
    }
}
