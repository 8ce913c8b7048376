//! The worker's side of the conversation with the controller.
//!
//! Four loops share one [`Agent`]:
//! 1. **poll**: a `PollJob` long poll is always outstanding; leases it returns go to the local queue. Under load
//!    most leases come another way: a result report takes the leases waiting for the worker in its answer (the
//!    places its results freed, filled at once), which saved a poll round trip per job (w1, 3 runs each in one
//!    binary: 506 -> 427 µs of burst's CPU per job, 0.58 -> 0.64 of the local spawner).
//! 2. **run**: takes a lease from the queue whenever a slot is free, has its start confirmed by the controller
//!    (a stale lease is refused there, and then never run), runs it and hands the result to the reporter. While
//!    recent jobs are short, the next leases (up to eight per slot, as many as cover ~8 ms of runs) have their
//!    starts confirmed while the slots are still busy, and each runs the moment a slot frees, in queue order
//!    ([`slots`]), started by the run that freed the slot from its own thread (see [`crate::runner`]).
//! 3. **report**: sends starts and results in batches (whatever accumulated while the previous report was in
//!    flight; while confirmed starts wait for the slots, results wait ~2 ms for more: see [`report`]), retrying with
//!    backoff until the controller answers. One loop, in order, results of a batch before its starts (in one
//!    report), on one long-lived `Reports` stream (or `ReportJobResult` calls to a controller without it).
//! 4. **heartbeat**: tells the controller the worker is alive and which jobs it has, and learns which peers
//!    have jobs queued.
//! 5. **steal** ([`crate::steal`]): while a slot is free and the local queue is empty, takes queued jobs from a
//!    busy peer.
//!
//! When the controller answers `NotFound` (it restarted, or declared this worker dead), the worker registers
//! again: it gets a new session, drops the leases of the old one that it has not started (the controller has
//! released them), and carries on. When it answers `FailedPrecondition` for the current session, another process
//! registered with this worker's id and took its place: this one stops (see [`Agent::replaced`]) rather than
//! register again, which would evict the other, which would evict it, for ever.
//!
//! What the worker has lives in two places: the local queue (leases not yet taken) and the runs table
//! ([`crate::runs`]: leases taken, from then until their result is answered).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use burst_proto::auth::{ControlClient, control_client};
use burst_proto::tls::LiveTls;
use burst_proto::v1::*;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use crate::config::WorkerConfig;
use crate::error::WorkerError;
use crate::executor;
use crate::queue::LocalQueue;
use crate::runs::Runs;

mod report;
mod slots;

/// How long each `PollJob` may wait at the controller for a lease before the worker asks again.
const POLL_WAIT: Duration = Duration::from_secs(25);
/// Most starts and results sent in one report.
const MAX_REPORT_BATCH: usize = 1_000;

pub struct Agent {
    cfg: WorkerConfig,
    advertise: String,
    client: ControlClient,
    /// The TLS this worker dials peers with (and serves with), following its certificate files.
    tls: Option<LiveTls>,
    /// The current registration's session; 0 until the first registration succeeds.
    session: watch::Sender<u64>,
    /// Serializes re-registration, so concurrent `NotFound`s register once.
    renewing: tokio::sync::Mutex<()>,
    /// Fences begun and ended: odd while one is stopping every job. A registration made meanwhile may claim what
    /// the fence stops, so it is made again (see [`Agent::register`]).
    fences: watch::Sender<u64>,
    heartbeat_ms: AtomicU64,
    /// The controller's lease timeout, from the last registration.
    lease_timeout_ms: AtomicU64,
    /// When the last request the controller answered (a registration or heartbeat) was sent, in ms since `born`.
    heard_ms: AtomicU64,
    born: std::time::Instant,
    pub(crate) queue: LocalQueue,
    slots: slots::Slots,
    /// Every lease taken out of the queue, until its result is answered.
    pub(crate) runs: Arc<Runs>,
    /// Hunts processes that outlived their job (escaped its process group).
    pub(crate) sweeper: Arc<crate::sweep::Sweeper>,
    /// The running jobs' live output, for `burst logs -f`.
    pub(crate) feeds: Arc<crate::output::Feeds>,
    /// Run times and counts for the metrics page.
    pub(crate) counters: crate::metrics::Counters,
    /// Peers with queued jobs, from the last heartbeat answer.
    peers: std::sync::Mutex<Vec<PeerInfo>>,
    /// Wakes the thief loop: a slot freed up, or the peer list changed.
    pub(crate) steal_wake: Notify,
    pub(crate) steal_attempts: AtomicU64,
    /// The tasks of the jobs being run. Dropping a task kills its job's process group; [`Agent::kill_jobs`]
    /// does that and waits until it is done.
    jobs: std::sync::Mutex<tokio::task::JoinSet<()>>,
    reports: mpsc::UnboundedSender<Report>,
    /// Whether this worker takes new leases; false once it drains.
    intake: std::sync::atomic::AtomicBool,
    /// Turns true when another process registered with this worker's id: this one must stop.
    replaced: watch::Sender<bool>,
    /// Whether the controller takes leases given back unrun (`RegisterWorkerResponse.takes_returns`), as of the
    /// last registration.
    takes_returns: std::sync::atomic::AtomicBool,
}

/// What the run loop tells the reporter.
enum Report {
    /// Ask to start a lease; the answer says whether the controller still holds it for this worker. `waiting`:
    /// the lease holds a free slot already, which stays idle until the answer comes (see [`report`]).
    Start {
        lease: LeaseRef,
        reply: oneshot::Sender<bool>,
        waiting: bool,
    },
    Finished(JobResult),
    /// A lease given back unrun (see [`Agent::return_waiting`]); it stays in hand until the controller answers.
    Return(LeaseRef),
    /// Answered once every report queued before it has been sent.
    Flush(oneshot::Sender<()>),
}

/// A run waiting ready in line starts where a slot frees, or is given back unrun ([`Agent::return_waiting`]).
impl slots::Start for executor::Launch {
    fn start(self: Box<Self>, slot: slots::Slot) -> Option<slots::Slot> {
        (*self).start(slot)
    }

    fn withdrawn(self: Box<Self>) {
        (*self).withdraw();
    }
}

/// The worker's loops: `intake` brings work in (poll, run, steal) and stops first when draining; `upkeep`
/// (report, heartbeat) keeps going until the drain is done.
pub struct Loops {
    pub intake: Vec<tokio::task::JoinHandle<()>>,
    pub upkeep: Vec<tokio::task::JoinHandle<()>>,
}

impl Loops {
    pub async fn stop_intake(&mut self) {
        stop_all(&mut self.intake).await;
    }

    pub async fn stop(&mut self) {
        stop_all(&mut self.intake).await;
        stop_all(&mut self.upkeep).await;
    }

    pub fn abort(&self) {
        self.intake.iter().chain(&self.upkeep).for_each(tokio::task::JoinHandle::abort);
    }
}

async fn stop_all(tasks: &mut Vec<tokio::task::JoinHandle<()>>) {
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    for t in tasks.drain(..) {
        let _ = t.await;
    }
}

/// The receiving end of the report channel, consumed by [`Agent::spawn_loops`].
pub struct Reports(mpsc::UnboundedReceiver<Report>);

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

impl Agent {
    pub fn new(cfg: WorkerConfig, advertise: String, channel: Channel, tls: Option<LiveTls>) -> (Arc<Self>, Reports) {
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let client = control_client(channel, cfg.bearer.clone());
        let agent = Agent {
            slots: slots::Slots::new(cfg.slots),
            cfg,
            advertise,
            client,
            tls,
            session: watch::Sender::new(0),
            renewing: tokio::sync::Mutex::new(()),
            fences: watch::Sender::new(0),
            heartbeat_ms: AtomicU64::new(1_000),
            lease_timeout_ms: AtomicU64::new(10_000),
            heard_ms: AtomicU64::new(0),
            born: std::time::Instant::now(),
            queue: LocalQueue::default(),
            runs: Arc::default(),
            sweeper: Arc::new(crate::sweep::Sweeper::default()),
            feeds: Arc::default(),
            counters: crate::metrics::Counters::default(),
            peers: std::sync::Mutex::new(Vec::new()),
            steal_wake: Notify::new(),
            steal_attempts: AtomicU64::new(0),
            jobs: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            reports,
            intake: std::sync::atomic::AtomicBool::new(true),
            replaced: watch::Sender::new(false),
            takes_returns: std::sync::atomic::AtomicBool::new(false),
        };
        let reports = Reports(reports_rx);
        (Arc::new(agent), reports)
    }

    pub fn worker_id(&self) -> &str {
        &self.cfg.worker_id
    }

    pub fn running(&self) -> u32 {
        self.runs.running()
    }

    /// Resolves once another process has registered with this worker's id, taking its place.
    pub async fn replaced(&self) {
        let mut rx = self.replaced.subscribe();
        let _ = rx.wait_for(|&r| r).await;
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.cfg
    }

    /// The TLS in use: `None` in plaintext.
    pub fn tls(&self) -> Option<&LiveTls> {
        self.tls.as_ref()
    }

    pub(crate) fn session(&self) -> u64 {
        self.current()
    }

    pub(crate) fn client(&self) -> ControlClient {
        self.client.clone()
    }

    /// Every lease this worker has, with its epoch: what it claims when it registers again.
    fn claims(&self) -> Vec<LeaseRef> {
        self.queue.listed(Lease::to_ref, || self.runs.claims())
    }

    /// Every job this worker has: queued, starting, running, reporting, or on its way to a thief.
    fn known(&self) -> Vec<String> {
        self.queue.listed(|l| l.job_id.clone(), || self.runs.known())
    }

    /// Drops the named leases: a queued one is never started, a running one is stopped (its result then says
    /// `Cancelled`), a starting one will not start. Other leases of the same jobs are left alone.
    fn stop_jobs(&self, stop: &[LeaseRef]) {
        for r in stop {
            // Not in the queue: in hand, or (its lease still on its way) kept so that it never starts.
            let dropped = self.queue.remove(&r.job_id, r.epoch);
            let stopped = !dropped && self.runs.stop(r);
            info!(worker = %self.cfg.worker_id, job = %r.job_id, epoch = r.epoch, dropped, stopped, "stop requested");
        }
    }

    pub(crate) fn peers(&self) -> Vec<PeerInfo> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets that `peer` has anything queued (it just said it has nothing to spare), or sets what it has.
    pub(crate) fn set_peer_queued(&self, peer: &str, queued: u32) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.iter_mut().find(|p| p.worker_id == peer) {
            p.queued = queued;
        }
    }

    /// Resolves once the worker is registered (immediately if it already is).
    pub async fn registered(&self) {
        let mut rx = self.session.subscribe();
        let _ = rx.wait_for(|&s| s != 0).await;
    }

    fn current(&self) -> u64 {
        *self.session.borrow()
    }

    /// Registers, retrying transient failures with backoff. Fails only when the controller refuses this
    /// worker's description (a configuration error that retrying cannot fix).
    pub async fn register(&self) -> Result<u64, WorkerError> {
        let info = WorkerInfo {
            worker_id: self.cfg.worker_id.clone(),
            advertise_addr: self.advertise.clone(),
            slots: self.cfg.slots,
            queue_capacity: self.cfg.queue_capacity,
            resources: Some(self.cfg.resources),
            labels: self.cfg.labels.clone(),
            pool: self.cfg.pool.clone(),
        };
        let mut delays = backoff();
        let mut fences = self.fences.subscribe();
        loop {
            // Not while a fence stops every job: the claims would name jobs it is stopping.
            let fence = fences.wait_for(|n| n % 2 == 0).await.map_or(0, |n| *n);
            let sent_at = std::time::Instant::now();
            let claims = self.claims();
            let req = RegisterWorkerRequest {
                info: Some(info.clone()),
                held: claims.clone(),
                queue_target: self.queue_target(),
                start_ahead: Some(self.slots.start_ahead()),
            };
            match self.client.clone().register_worker(req).await {
                Ok(_) if *self.fences.borrow() != fence => {
                    // A fence stopped jobs this registration claimed (the controller now has them running
                    // under it): register again with what is left, which releases them.
                    debug!(worker = %self.cfg.worker_id, "a fence came during the registration; registering again");
                }
                Ok(resp) => {
                    let resp = resp.into_inner();
                    self.heartbeat_ms.store(resp.heartbeat_interval_ms.max(10), Ordering::Relaxed);
                    self.takes_returns.store(resp.takes_returns, Ordering::Relaxed);
                    self.lease_timeout_ms.store(resp.lease_timeout_ms, Ordering::Relaxed);
                    // Claims that are no longer ours, at the epochs claimed (a newer lease of the same job that
                    // came meanwhile is not touched): never start the queued ones, stop the running ones.
                    let rejected: std::collections::HashSet<&str> = resp.rejected.iter().map(String::as_str).collect();
                    let rejected: Vec<LeaseRef> =
                        claims.iter().filter(|c| rejected.contains(c.job_id.as_str())).cloned().collect();
                    self.stop_jobs(&rejected);
                    // In touch only now: one of the rejected leases, started with its lease, taken from the queue
                    // before it was dropped must confirm its start (and be refused), not run.
                    self.heard(sent_at);
                    self.session.send_replace(resp.session);
                    info!(
                        worker = %self.cfg.worker_id,
                        session = resp.session,
                        rejected = resp.rejected.len(),
                        "registered with the controller"
                    );
                    return Ok(resp.session);
                }
                Err(status) if status.code() == Code::InvalidArgument => {
                    return Err(WorkerError::Refused(status.message().to_string()));
                }
                Err(status) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    warn!(worker = %self.cfg.worker_id, error = %status.message(), ?delay, "cannot register; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Registers again after the controller forgot session `stale`. Leases of that session not yet started are
    /// dropped: the controller has already released them to the queue.
    async fn renew(&self, stale: u64) -> Result<(), WorkerError> {
        let _one_at_a_time = self.renewing.lock().await;
        if self.current() != stale {
            return Ok(());
        }
        warn!(worker = %self.cfg.worker_id, "the controller no longer knows this session; registering again");
        self.register().await.map(|_| ())
    }

    /// Starts the poll, run, report and heartbeat loops. Returns their tasks.
    pub fn spawn_loops(self: &Arc<Self>, reports: Reports) -> Loops {
        Loops {
            intake: vec![
                tokio::spawn(self.clone().poll_loop()),
                tokio::spawn(self.clone().run_loop()),
                tokio::spawn(crate::steal::thief_loop(self.clone())),
            ],
            upkeep: vec![
                tokio::spawn(self.clone().report_loop(reports.0)),
                tokio::spawn(self.clone().heartbeat_loop()),
                tokio::spawn(crate::sweep::sweep_loop(self.sweeper.clone())),
            ],
        }
    }

    async fn poll_loop(self: Arc<Self>) {
        self.registered().await;
        let mut delays = backoff();
        loop {
            let session = self.current();
            let req = PollJobRequest {
                worker_id: self.cfg.worker_id.clone(),
                session,
                wait_ms: POLL_WAIT.as_millis() as u64,
                queue_target: self.queue_target(),
                start_ahead: Some(self.slots.start_ahead()),
            };
            match self.client.clone().poll_job(req).await {
                Ok(resp) => {
                    delays = backoff();
                    let PollJobResponse { leases, stop } = resp.into_inner();
                    // The run loop, woken by the leases, goes first: they start before the next poll is sent.
                    if self.take(session, leases, &stop) {
                        tokio::task::yield_now().await;
                    }
                }
                Err(status) => self.on_error("poll", status, session, &mut delays).await,
            }
        }
    }

    /// Queues leases the controller handed over (by poll or with a result report) and stops what it says to,
    /// unless they belong to a session that has ended since the call was made. A draining worker does not queue
    /// them: the controller queues them again (unknown to this worker's heartbeats, or when it deregisters).
    /// Returns whether it queued any.
    fn take(&self, session: u64, leases: Vec<Lease>, stop: &[LeaseRef]) -> bool {
        if self.current() != session {
            return false;
        }
        let intake = self.intake.load(Ordering::Relaxed);
        let queued = intake && !leases.is_empty();
        if intake {
            debug!(worker = %self.cfg.worker_id, count = leases.len(), "leases received");
            self.queue.push(leases);
        } else if !leases.is_empty() && self.takes_returns.load(Ordering::Relaxed) {
            // Draining: they are given back as they were (not held until the worker leaves, which would count a
            // lost run for one started with its lease).
            info!(worker = %self.cfg.worker_id, count = leases.len(), "leases reached a draining worker; giving them back");
            self.give_back(&leases);
        }
        self.stop_jobs(stop);
        queued
    }

    /// Gives `leases` back to the controller unrun: each stays in hand (listed by heartbeats, claimed by a new
    /// registration) until the controller answers.
    fn give_back(&self, leases: &[Lease]) {
        for lease in leases {
            let run = self.runs.take(lease);
            // Stale: a newer lease of its job is in hand, and the controller would ignore it.
            if !run.superseded() && self.reports.send(Report::Return(lease.to_ref())).is_ok() {
                run.reporting();
                self.counters.returned.inc();
            }
        }
    }

    /// While every slot has been held by one run for longer than a short job takes, gives back to the controller
    /// the leases this worker holds started that would wait behind those runs: those waiting ready in line for a
    /// slot (taken ahead of the slots while jobs were short) and those the controller started with their lease
    /// still in the queue. At the controller any worker with room takes them; here they were shown running, no
    /// peer could steal them and their queue deadline did not count. Jobs count as long from then on, so none are
    /// taken ahead again until short runs come back.
    fn return_waiting(&self) {
        if !self.slots.stalled() || !self.takes_returns.load(Ordering::Relaxed) {
            return;
        }
        // Each withdrawn run's task gives its own lease back (see `run_one`).
        let withdrawn = self.slots.withdraw();
        let queued = self.queue.take_started_then(|leases| {
            self.give_back(&leases);
            leases.len()
        });
        if withdrawn + queued > 0 {
            info!(worker = %self.cfg.worker_id, withdrawn, queued, "every slot is held by a long run; giving back the leases waiting behind them");
        }
    }

    /// Runs jobs as slots free up (or, while jobs are short, takes the next ones ahead of them: see [`slots`]),
    /// each in a task of [`Agent::jobs`].
    async fn run_loop(self: Arc<Self>) {
        while let Some(gate) = self.slots.gate().await {
            // In hand before it leaves the queue: a heartbeat or a registration meanwhile names it.
            let (run, lease) = self.queue.pop_then(|lease| (self.runs.take(&lease), lease)).await;
            let ticket = self.slots.line_up(gate);
            let agent = self.clone();
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            while jobs.try_join_next().is_some() {}
            jobs.spawn(async move { agent.run_one(lease, run, ticket).await });
        }
    }

    /// Stops every running job (its whole process group is killed) and returns once they are all gone. Call it
    /// after stopping the loops, or new jobs may start.
    pub async fn kill_jobs(&self) {
        let mut jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|p| p.into_inner()));
        jobs.shutdown().await;
    }

    /// Runs one job in a slot. The lease stays in hand (claimed on re-registration, listed in heartbeats) until
    /// the controller has answered its result, so a controller restart between the two cannot orphan it. The
    /// slot, the running count and the entry are held by the [`crate::runs::Run`] guard, so an abort at any await
    /// gives them back.
    async fn run_one(&self, lease: Lease, mut run: crate::runs::Run, ticket: slots::Ticket) {
        if run.superseded() {
            // Stale: a newer lease of its job came first. Its output files and live feed are that run's.
            debug!(job = %lease.job_id, epoch = lease.epoch, "a newer lease of this job is in hand; not running");
            return;
        }
        let lease_ref = lease.to_ref();
        // A new attempt's output starts empty: an earlier attempt's files on this worker are not this run's
        // (a reader would take them for it). Only a retry can have left any.
        if lease.attempt > 1
            && let Ok((out, err)) = executor::output_paths(&self.cfg.exec.output_dir, &lease.job_id)
        {
            let _ = std::fs::remove_file(out);
            let _ = std::fs::remove_file(err);
        }
        // Open before the start is confirmed: a reader sent here once the controller shows the job running finds
        // it to follow.
        let feed = self.feeds.open(&lease.job_id);
        // A job the controller started with its lease (it had a place here) needs no confirmation, while this
        // worker knows its session is live: a lease that was taken in before a pause (a frozen process) may be
        // stale by now, and confirming its start is what tells.
        let started = lease.started && self.in_touch() && !*self.replaced.borrow();
        if started {
            self.counters.started_with_lease.inc();
        }
        let accepted = started || {
            let (reply, confirmation) = oneshot::channel();
            let waiting = ticket.has_slot();
            self.reports.send(Report::Start { lease: lease_ref, reply, waiting }).is_ok()
                && confirmation.await == Ok(true)
        };
        let stop = match accepted {
            true => run.confirmed(),
            false => None,
        };
        let Some(stop) = stop else {
            debug!(job = %lease.job_id, epoch = lease.epoch, accepted, "start refused or stopped first; not running");
            self.counters.starts_refused.inc();
            drop(run);
            self.steal_wake.notify_one();
            return;
        };
        ticket.confirmed();
        // GPUs a stopped job's processes still hold (their kill grace) are waited for, not shared (see `crate::gpus`).
        let gpus = lease.spec.as_ref().and_then(|s| s.resources).map_or(0, |r| r.gpus);
        if gpus > 0 && !self.cfg.exec.gpus.wait_free(gpus, crate::gpus::WAIT_FOR_DEVICES).await {
            warn!(job = %lease.job_id, gpus, "its GPUs were not freed in time; sharing them");
        }
        // Confirmed ahead of a free slot, it waits in line for one, ready: the job that frees the slot starts it
        // from its own runner thread. Stopped meanwhile, it never runs.
        let (launch, pending) = executor::prepare(&lease, &self.cfg.exec, Some(feed.feed.clone()));
        ticket.start(Box::new(launch));
        let (result, ran) = pending.finish(stop).await;
        match ran {
            // Only what ran: a burst of cancelled leases says nothing of how long jobs take.
            executor::Ran::Took(took) => self.slots.ran(took),
            executor::Ran::NotStarted => {}
            executor::Ran::Withdrawn => {
                // Given back from its place in line (see `return_waiting`): it stays in hand until answered.
                debug!(job = %lease.job_id, epoch = lease.epoch, "withdrawn from the line; giving it back");
                if self.reports.send(Report::Return(lease.to_ref())).is_ok() {
                    run.reporting();
                    self.counters.returned.inc();
                }
                return;
            }
        }
        drop(feed);
        self.sweeper.run_ended(crate::sweep::run_token(&self.cfg.worker_id, &lease.job_id, lease.epoch));
        debug!(job = %lease.job_id, reason = ?result.reason(), exit_code = ?result.exit_code, "job ended");
        let ran_ms = result.finished_at_ms.saturating_sub(result.started_at_ms);
        self.counters.run.observe(ran_ms as f64 / 1000.0);
        self.counters.runs.get_or_create(&[("reason", burst_proto::reason_name(result.reason()))]).inc();
        if self.reports.send(Report::Finished(result)).is_ok() {
            run.reporting();
        }
        self.steal_wake.notify_one();
    }

    /// The controller answered a request sent at `sent_at`: it saw this worker alive then.
    fn heard(&self, sent_at: std::time::Instant) {
        let ms = sent_at.saturating_duration_since(self.born).as_millis() as u64;
        self.heard_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Whether the controller saw this worker within half a lease timeout: its session is live for at least
    /// another half (the controller gives up on a worker silent for a whole one).
    fn in_touch(&self) -> bool {
        let since = (self.born.elapsed().as_millis() as u64).saturating_sub(self.heard_ms.load(Ordering::Relaxed));
        since < self.lease_timeout_ms.load(Ordering::Relaxed) / 2
    }

    /// The jobs it wants queued beyond those running now (see [`WorkerConfig::queue_target`]); `None`: all its
    /// queue capacity.
    pub(crate) fn queue_target(&self) -> Option<u32> {
        self.cfg.queue_target(self.slots.short_jobs())
    }

    /// Leases taken from the queue: in a slot, or (with short jobs) confirmed ahead of one.
    pub(crate) fn busy(&self) -> u32 {
        self.runs.busy()
    }

    /// Slots held by a lease: at most the worker's slots.
    pub(crate) fn slots_in_use(&self) -> u32 {
        self.slots.in_use()
    }

    /// The last steps of a drain, once the caller has stopped the poll, run and steal loops:
    /// 1. hand the queued leases back (the controller also stops leasing to this worker);
    /// 2. let running jobs finish until `deadline`, then stop the rest (killing their process groups);
    /// 3. send every pending report;
    /// 4. deregister: the controller queues again whatever this worker still holds.
    ///
    /// Returns (jobs handed back, jobs that finished during the drain, jobs stopped at the deadline).
    pub async fn drain(&self, deadline: tokio::time::Instant) -> (u32, usize, usize) {
        self.intake.store(false, Ordering::Relaxed);
        let queued = self.queue.take_all();
        let returned = queued.iter().map(Lease::to_ref).collect();
        let req = DrainWorkerRequest { worker_id: self.cfg.worker_id.clone(), session: self.current(), returned };
        let handed_back = match tokio::time::timeout_at(deadline, self.client.clone().drain_worker(req)).await {
            Ok(Ok(resp)) => resp.into_inner().requeued,
            other => {
                warn!(worker = %self.cfg.worker_id, ?other, "could not tell the controller about the drain");
                0
            }
        };
        let mut jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|p| p.into_inner()));
        let mut finished = 0;
        let all_done = tokio::time::timeout_at(deadline, async {
            while jobs.join_next().await.is_some() {
                finished += 1;
            }
        })
        .await
        .is_ok();
        let stopped = if all_done { 0 } else { jobs.len() };
        jobs.shutdown().await;
        // The worker is about to exit: hunt the stopped jobs' escapees now rather than on the next tick.
        for r in self.runs.claims() {
            self.sweeper.run_ended(crate::sweep::run_token(&self.cfg.worker_id, &r.job_id, r.epoch));
        }
        let sweeper = self.sweeper.clone();
        let _ = tokio::task::spawn_blocking(move || sweeper.sweep()).await;
        let (flushed, flush) = oneshot::channel();
        if self.reports.send(Report::Flush(flushed)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), flush).await;
        }
        let req = DeregisterWorkerRequest { worker_id: self.cfg.worker_id.clone(), session: self.current() };
        if let Err(status) = self.client.clone().deregister_worker(req).await {
            warn!(worker = %self.cfg.worker_id, error = %status.message(), "could not deregister; the lease timeout will");
        }
        info!(worker = %self.cfg.worker_id, handed_back, finished, stopped, "drained");
        (handed_back, finished, stopped)
    }

    /// Heartbeats; and if the controller has not answered one for a whole lease timeout, stops every job this
    /// worker has: the controller has declared it dead and given them to others.
    async fn heartbeat_loop(self: Arc<Self>) {
        self.registered().await;
        let mut delays = backoff();
        let mut last_answered = tokio::time::Instant::now();
        let mut fenced = false;
        loop {
            let interval = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
            tokio::time::sleep(interval).await;
            let lease_timeout = Duration::from_millis(self.lease_timeout_ms.load(Ordering::Relaxed));
            if !fenced && last_answered.elapsed() >= lease_timeout {
                fenced = true;
                self.fence().await;
            }
            // Before the request, which tells the controller to take none ahead again.
            self.return_waiting();
            let sent_at = tokio::time::Instant::now();
            let session = self.current();
            let req = HeartbeatRequest {
                worker_id: self.cfg.worker_id.clone(),
                session,
                running: self.running(),
                queued: self.queue.len() as u32,
                known: self.known(),
                steal_attempts: self.steal_attempts.load(Ordering::Relaxed),
                queue_target: self.queue_target(),
                start_ahead: Some(self.slots.start_ahead()),
            };
            // An unreachable controller must not stall the loop: bound each call by the interval (at least 1 s).
            let mut client = self.client.clone();
            let call = tokio::time::timeout(interval.max(Duration::from_secs(1)), client.heartbeat(req));
            let answer = call.await.unwrap_or_else(|_| Err(Status::deadline_exceeded("heartbeat timed out")));
            match answer {
                Ok(resp) => {
                    last_answered = sent_at;
                    self.heard(sent_at.into_std());
                    fenced = false;
                    let peers = resp.into_inner().peers;
                    let any = !peers.is_empty();
                    *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = peers;
                    if any {
                        self.steal_wake.notify_one();
                    }
                }
                Err(status) => self.on_error("heartbeat", status, session, &mut delays).await,
            }
        }
    }

    /// Stops every job this worker has, queued or running, because it has lost its leases (cut off from the
    /// controller for a lease timeout), then registers again with nothing to claim (retrying until the
    /// controller answers). The new registration makes the controller release whatever the old session held at
    /// once: it never counts a stopped job as running beside the new ones this worker takes.
    async fn fence(&self) {
        // A registration made while the jobs are stopped is made again once they are (they would stay running
        // under it at the controller, and end cancelled).
        self.fences.send_modify(|n| *n += 1);
        // Session 0 until registered again: leases or answers for the old session are dropped from now on (one
        // taken while the jobs are stopped would stay queued, and one the controller started with its lease
        // would run).
        let old = self.session.send_replace(0);
        let dropped = self.queue.clear();
        self.kill_jobs().await;
        let in_hand = self.runs.clear();
        for r in &in_hand {
            self.sweeper.run_ended(crate::sweep::run_token(&self.cfg.worker_id, &r.job_id, r.epoch));
        }
        let stopped = in_hand.len();
        self.fences.send_modify(|n| *n += 1);
        warn!(worker = %self.cfg.worker_id, dropped, stopped, session = old, "cut off from the controller for a lease timeout; stopped every job");
        if let Err(error) = self.renew(0).await {
            warn!(worker = %self.cfg.worker_id, %error, "registration refused after a fence");
        }
    }

    /// `NotFound` means the controller forgot this session: register again. `FailedPrecondition` for the current
    /// session means another process took this worker's id: stop. Anything else is transient: wait.
    async fn on_error(&self, what: &str, status: Status, session: u64, delays: &mut impl Iterator<Item = Duration>) {
        if status.code() == Code::FailedPrecondition && session == self.current() && session != 0 {
            if !self.replaced.send_replace(true) {
                tracing::error!(worker = %self.cfg.worker_id, error = %status.message(), "replaced by another process; stopping");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
        if status.code() == Code::NotFound {
            if let Err(error) = self.renew(session).await {
                warn!(worker = %self.cfg.worker_id, %error, "registration refused");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            return;
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        debug!(worker = %self.cfg.worker_id, error = %status.message(), ?delay, "{what} failed; retrying");
        tokio::time::sleep(delay).await;
    }
}
