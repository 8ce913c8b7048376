//! The worker's side of the conversation with the controller.
//!
//! Four loops share one [`Agent`]:
//! 1. **poll**: a `PollJob` long poll is always outstanding; leases it returns go to the local queue. Under load
//!    most leases come another way: a result report takes the leases waiting for the worker in its answer (the
//!    places its results freed, filled at once), which saved a poll round trip per job (w1, 3 runs each in one
//!    binary: 506 -> 427 µs of burst's CPU per job, 0.58 -> 0.64 of the local spawner).
//! 2. **run**: takes a lease from the queue whenever a slot is free, has its start confirmed by the controller
//!    (a stale lease is refused there, and then never run), runs it and hands the result to the reporter.
//! 3. **report**: sends starts and results in batches (whatever accumulated while the previous call was in
//!    flight), retrying with backoff until the controller answers. One loop, in order, results of a batch before
//!    its starts (in one call when there are both): a slot's next start is never reported before the result
//!    that freed the slot, so the controller never sees more jobs running than the worker has slots.
//! 4. **heartbeat**: tells the controller the worker is alive and which jobs it has, and learns which peers
//!    have jobs queued.
//! 5. **steal** ([`crate::steal`]): while a slot is free and the local queue is empty, takes queued jobs from a
//!    busy peer.
//!
//! When the controller answers `NotFound` (it restarted, or declared this worker dead), the worker registers
//! again: it gets a new session, drops the leases of the old one that it has not started (the controller has
//! released them), and carries on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use burst_proto::auth::{ControlClient, control_client};
use burst_proto::tls::LiveTls;
use burst_proto::v1::*;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use crate::config::WorkerConfig;
use crate::executor;
use crate::queue::LocalQueue;

/// How long each `PollJob` may wait at the controller for a lease before the worker asks again.
const POLL_WAIT: Duration = Duration::from_secs(25);
/// Most reports sent in one call.
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
    heartbeat_ms: AtomicU64,
    /// The controller's lease timeout, from the last registration.
    lease_timeout_ms: AtomicU64,
    pub(crate) queue: LocalQueue,
    slots: Arc<Semaphore>,
    running: AtomicU32,
    /// Hunts processes that outlived their job (escaped its process group).
    pub(crate) sweeper: Arc<crate::sweep::Sweeper>,
    /// Jobs in a slot (starting or running); see [`Agent::busy`].
    busy: AtomicU32,
    /// Leases out of the queue whose result the controller has not yet answered: starting, running, finished but
    /// unreported, or on their way to a thief; with their epochs.
    /// Guards only a set insert or remove.
    in_hand: std::sync::Mutex<HashMap<String, u64>>,
    /// How to stop each running job: its task waits on the other end. Guards only an insert, remove or take.
    stoppers: std::sync::Mutex<HashMap<String, oneshot::Sender<()>>>,
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
}

/// What the run loop tells the reporter.
enum Report {
    /// Ask to start a lease; the answer says whether the controller still holds it for this worker.
    Start(LeaseRef, oneshot::Sender<bool>),
    Finished(JobResult),
    /// Answered once every report queued before it has been sent.
    Flush(oneshot::Sender<()>),
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
            slots: Arc::new(Semaphore::new(cfg.slots as usize)),
            cfg,
            advertise,
            client,
            tls,
            session: watch::Sender::new(0),
            renewing: tokio::sync::Mutex::new(()),
            heartbeat_ms: AtomicU64::new(1_000),
            lease_timeout_ms: AtomicU64::new(10_000),
            queue: LocalQueue::default(),
            running: AtomicU32::new(0),
            busy: AtomicU32::new(0),
            sweeper: Arc::new(crate::sweep::Sweeper::default()),
            in_hand: std::sync::Mutex::new(HashMap::new()),
            stoppers: std::sync::Mutex::new(HashMap::new()),
            feeds: Arc::default(),
            counters: crate::metrics::Counters::default(),
            peers: std::sync::Mutex::new(Vec::new()),
            steal_wake: Notify::new(),
            steal_attempts: AtomicU64::new(0),
            jobs: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            reports,
            intake: std::sync::atomic::AtomicBool::new(true),
        };
        let reports = Reports(reports_rx);
        (Arc::new(agent), reports)
    }

    pub fn worker_id(&self) -> &str {
        &self.cfg.worker_id
    }

    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
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

    /// Marks jobs as in hand (out of the queue, not yet reported finished) or, with `false`, no longer.
    pub(crate) fn hold<'a>(&self, leases: impl IntoIterator<Item = &'a Lease>, in_hand: bool) {
        let mut held = self.in_hand.lock().unwrap_or_else(|p| p.into_inner());
        for lease in leases {
            if in_hand {
                held.insert(lease.job_id.clone(), lease.epoch);
            } else {
                held.remove(&lease.job_id);
            }
        }
    }

    /// Every lease this worker has, with its epoch: what it claims when it registers again.
    fn claims(&self) -> Vec<LeaseRef> {
        let mut claims = self.queue.refs();
        let held = self.in_hand.lock().unwrap_or_else(|p| p.into_inner());
        claims.extend(held.iter().map(|(id, epoch)| LeaseRef { job_id: id.clone(), epoch: *epoch }));
        claims
    }

    /// Every job this worker has: queued, starting, running, or on its way to a thief.
    fn known(&self) -> Vec<String> {
        let mut ids = self.queue.ids();
        ids.extend(self.in_hand.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned());
        ids
    }

    fn stoppers(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        self.stoppers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the named leases: a queued one is never started, a running one is stopped (its result then says
    /// `Cancelled`). Leases whose epoch has moved on are left alone.
    fn stop_jobs(&self, stop: &[LeaseRef]) {
        for r in stop {
            let dropped = self.queue.remove(&r.job_id, r.epoch);
            let stopped = self.stoppers().remove(&r.job_id).map(|s| s.send(()).is_ok()).unwrap_or(false);
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
    pub async fn register(&self) -> Result<u64, Status> {
        let info = WorkerInfo {
            worker_id: self.cfg.worker_id.clone(),
            advertise_addr: self.advertise.clone(),
            slots: self.cfg.slots,
            queue_capacity: self.cfg.queue_capacity,
            resources: Some(self.cfg.resources),
            labels: self.cfg.labels.clone(),
        };
        let mut delays = backoff();
        loop {
            let req = RegisterWorkerRequest { info: Some(info.clone()), held: self.claims() };
            match self.client.clone().register_worker(req).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    self.heartbeat_ms.store(resp.heartbeat_interval_ms.max(10), Ordering::Relaxed);
                    self.lease_timeout_ms.store(resp.lease_timeout_ms, Ordering::Relaxed);
                    // Leases that are no longer ours: never start the queued ones, stop the running ones.
                    for id in &resp.rejected {
                        self.queue.remove_job(id);
                        if let Some(stop) = self.stoppers().remove(id) {
                            let _ = stop.send(());
                        }
                    }
                    self.session.send_replace(resp.session);
                    info!(
                        worker = %self.cfg.worker_id,
                        session = resp.session,
                        rejected = resp.rejected.len(),
                        "registered with the controller"
                    );
                    return Ok(resp.session);
                }
                Err(status) if status.code() == Code::InvalidArgument => return Err(status),
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
    async fn renew(&self, stale: u64) -> Result<(), Status> {
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
            };
            match self.client.clone().poll_job(req).await {
                Ok(resp) => {
                    delays = backoff();
                    let PollJobResponse { leases, stop } = resp.into_inner();
                    self.take(session, leases, &stop);
                }
                Err(status) => self.on_error("poll", status, session, &mut delays).await,
            }
        }
    }

    /// Queues leases the controller handed over (by poll or with a result report) and stops what it says to,
    /// unless they belong to a session that has ended since the call was made. A draining worker does not queue
    /// them: the controller queues them again (unknown to this worker's heartbeats, or when it deregisters).
    fn take(&self, session: u64, leases: Vec<Lease>, stop: &[LeaseRef]) {
        if self.current() != session {
            return;
        }
        if self.intake.load(Ordering::Relaxed) {
            debug!(worker = %self.cfg.worker_id, count = leases.len(), "leases received");
            self.queue.push(leases);
        }
        self.stop_jobs(stop);
    }

    /// Runs jobs as slots free up, each in a task of [`Agent::jobs`].
    async fn run_loop(self: Arc<Self>) {
        loop {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let lease = self.queue.pop().await;
            let agent = self.clone();
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            while jobs.try_join_next().is_some() {}
            jobs.spawn(async move {
                agent.run_one(lease).await;
                drop(permit);
            });
        }
    }

    /// Stops every running job (its whole process group is killed) and returns once they are all gone. Call it
    /// after stopping the loops, or new jobs may start.
    pub async fn kill_jobs(&self) {
        let mut jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|p| p.into_inner()));
        jobs.shutdown().await;
    }

    /// Runs one job in a slot. The lease stays in hand (claimed on re-registration, listed in heartbeats) until
    /// the controller has answered its result, so a controller restart between the two cannot orphan it.
    async fn run_one(&self, lease: Lease) {
        self.hold([&lease], true);
        self.busy.fetch_add(1, Ordering::Relaxed);
        if !self.run_held(&lease).await {
            self.hold([&lease], false);
        }
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.steal_wake.notify_one();
    }

    /// Returns whether a result was handed to the reporter (which lets go of the lease once it is answered).
    async fn run_held(&self, lease: &Lease) -> bool {
        let lease_ref = LeaseRef { job_id: lease.job_id.clone(), epoch: lease.epoch };
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
        let (confirmed, confirmation) = oneshot::channel();
        if self.reports.send(Report::Start(lease_ref, confirmed)).is_err() || confirmation.await != Ok(true) {
            debug!(job = %lease.job_id, epoch = lease.epoch, "start refused; not running");
            self.counters.starts_refused.inc();
            return false;
        }
        let (stopper, stop) = oneshot::channel();
        self.stoppers().insert(lease.job_id.clone(), stopper);
        self.running.fetch_add(1, Ordering::Relaxed);
        let result = executor::run(lease, &self.cfg.exec, stop, Some(feed.feed.clone())).await;
        drop(feed);
        self.sweeper.run_ended(crate::sweep::run_token(&self.cfg.worker_id, &lease.job_id, lease.epoch));
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.stoppers().remove(&lease.job_id);
        debug!(job = %lease.job_id, reason = ?result.reason(), exit_code = ?result.exit_code, "job ended");
        let ran_ms = result.finished_at_ms.saturating_sub(result.started_at_ms);
        self.counters.run.observe(ran_ms as f64 / 1000.0);
        self.counters.runs.get_or_create(&[("reason", burst_proto::reason_name(result.reason()))]).inc();
        self.reports.send(Report::Finished(result)).is_ok()
    }

    /// Jobs in a slot: starting or running.
    pub(crate) fn busy(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    async fn report_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Report>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, MAX_REPORT_BATCH).await > 0 {
            let (mut starts, mut results, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
            for report in batch.drain(..) {
                match report {
                    Report::Start(lease, reply) => starts.push((lease, reply)),
                    Report::Finished(result) => results.push(result),
                    Report::Flush(reply) => flushes.push(reply),
                }
            }
            let (refs, replies): (Vec<LeaseRef>, Vec<_>) = starts.into_iter().unzip();
            // Results and the starts after them go in one call when there are results (one round trip, one
            // commit), the starts alone otherwise.
            let refused = match (results.is_empty(), refs.is_empty()) {
                (false, _) => self.report_results(results, refs.clone()).await,
                (true, false) => self.report_started(refs.clone()).await,
                (true, true) => Vec::new(),
            };
            for (r, reply) in refs.iter().zip(replies) {
                let _ = reply.send(!refused.contains(&r.job_id));
            }
            for reply in flushes {
                let _ = reply.send(());
            }
        }
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
        let queued = self.queue.take_newest(|len| len);
        let returned = queued.iter().map(|l| LeaseRef { job_id: l.job_id.clone(), epoch: l.epoch }).collect();
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
        for (id, epoch) in self.in_hand.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            self.sweeper.run_ended(crate::sweep::run_token(&self.cfg.worker_id, id, *epoch));
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

    /// Sends start reports until the controller answers; returns the ids it refused (all of them if it no
    /// longer knows this session).
    async fn report_started(&self, started: Vec<LeaseRef>) -> Vec<String> {
        let mut delays = backoff();
        loop {
            let session = self.current();
            let req =
                ReportJobStartedRequest { worker_id: self.cfg.worker_id.clone(), session, started: started.clone() };
            match self.client.clone().report_job_started(req).await {
                Ok(resp) => return resp.into_inner().refused,
                // On NotFound this registers again, claiming these leases; then they are sent again.
                Err(status) => self.on_error("report starts", status, session, &mut delays).await,
            }
        }
    }

    /// Sends results, and the starts that follow them, until the controller answers; returns the starts it
    /// refused. Results of a session it forgot are dropped: it has released those jobs already.
    async fn report_results(&self, results: Vec<JobResult>, started: Vec<LeaseRef>) -> Vec<String> {
        let mut delays = backoff();
        loop {
            let session = self.current();
            let req = ReportJobResultRequest {
                worker_id: self.cfg.worker_id.clone(),
                session,
                results: results.clone(),
                started: started.clone(),
                take_leases: self.intake.load(Ordering::Relaxed),
            };
            match self.client.clone().report_job_result(req).await {
                Ok(resp) => {
                    let ReportJobResultResponse { refused, refused_starts, leases, stop, .. } = resp.into_inner();
                    self.take(session, leases, &stop);
                    // A stopped job's result is refused because the job was cancelled: expected, not stale.
                    let stale = results
                        .iter()
                        .filter(|r| r.reason() != Reason::Cancelled)
                        .filter(|r| r.lease.as_ref().is_some_and(|l| refused.contains(&l.job_id)))
                        .count();
                    if stale > 0 {
                        warn!(worker = %self.cfg.worker_id, refused = stale, "results refused as stale");
                    }
                    let mut held = self.in_hand.lock().unwrap_or_else(|p| p.into_inner());
                    for l in results.iter().filter_map(|r| r.lease.as_ref()) {
                        held.remove(&l.job_id);
                    }
                    return refused_starts;
                }
                // On NotFound this registers again (claiming what it holds), then sends them again: results of
                // jobs it still holds are accepted, the others refused.
                Err(status) => self.on_error("report results", status, session, &mut delays).await,
            }
        }
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
            let sent_at = tokio::time::Instant::now();
            let session = self.current();
            let req = HeartbeatRequest {
                worker_id: self.cfg.worker_id.clone(),
                session,
                running: self.running(),
                queued: self.queue.len() as u32,
                known: self.known(),
                steal_attempts: self.steal_attempts.load(Ordering::Relaxed),
            };
            // An unreachable controller must not stall the loop: bound each call by the interval (at least 1 s).
            let mut client = self.client.clone();
            let call = tokio::time::timeout(interval.max(Duration::from_secs(1)), client.heartbeat(req));
            let answer = call.await.unwrap_or_else(|_| Err(Status::deadline_exceeded("heartbeat timed out")));
            match answer {
                Ok(resp) => {
                    last_answered = sent_at;
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
    /// controller for a lease timeout). It carries on afterwards: when the controller answers again, it registers
    /// again.
    async fn fence(&self) {
        let dropped = self.queue.clear();
        self.kill_jobs().await;
        let stopped = {
            let mut held = self.in_hand.lock().unwrap_or_else(|p| p.into_inner());
            for (id, epoch) in held.iter() {
                self.sweeper.run_ended(crate::sweep::run_token(&self.cfg.worker_id, id, *epoch));
            }
            std::mem::take(&mut *held).len()
        };
        self.stoppers().clear();
        warn!(worker = %self.cfg.worker_id, dropped, stopped, "cut off from the controller for a lease timeout; stopped every job");
    }

    /// `NotFound` means the controller forgot this session: register again. Anything else is transient: wait.
    async fn on_error(&self, what: &str, status: Status, session: u64, delays: &mut impl Iterator<Item = Duration>) {
        if status.code() == Code::NotFound {
            if let Err(e) = self.renew(session).await {
                warn!(worker = %self.cfg.worker_id, error = %e.message(), "registration refused");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            return;
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(5));
        debug!(worker = %self.cfg.worker_id, error = %status.message(), ?delay, "{what} failed; retrying");
        tokio::time::sleep(delay).await;
    }
}
