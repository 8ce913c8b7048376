//! The gRPC edge of the controller: checks input, calls the scheduler, awaits durability, and maps errors to
//! `tonic::Status`. No scheduling decision is made here.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use burst_proto::v1::controller_rpc_server::ControllerRpc;
use burst_proto::v1::*;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info, instrument};

use crate::Controller;
use crate::admission::Admission;
use crate::auth::{Auth, Need, Principal};
use crate::output::OutputRelay;
use crate::scheduler::{ListFilter, Poll, SchedError, Wants};
use crate::store::{Durable, StoreError};
use crate::validate;

/// Longest a `PollJob` is held open, whatever the worker asks: well under any proxy's idle timeout.
const MAX_POLL_WAIT: Duration = Duration::from_secs(30);
/// Most specs one `SubmitJobs` call may carry; bigger batches are split by the client.
pub const MAX_BATCH: usize = 10_000;

#[derive(Clone)]
pub struct ControllerService {
    controller: Arc<Controller>,
    /// Shared with the task that follows the tokens file.
    auth: Arc<Auth>,
    admission: Arc<Admission>,
    output: OutputRelay,
}

impl ControllerService {
    pub fn new(controller: Arc<Controller>, auth: Arc<Auth>, admission: Arc<Admission>, output: OutputRelay) -> Self {
        ControllerService { controller, auth, admission, output }
    }

    /// Whether callers must authenticate (a tokens file or TLS).
    pub fn authenticates(&self) -> bool {
        self.auth.enabled()
    }

    /// Jobs accepted since the controller started.
    pub fn submitted_total(&self) -> u64 {
        self.controller.lock().stats().submitted_total
    }

    /// Validates, rate-limits and quota-checks `specs` for `who`, then stores them, all or none.
    async fn submit(&self, who: &Principal, mut specs: Vec<JobSpec>) -> Result<Vec<SubmitJobResponse>, Status> {
        if specs.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!("{} specs in one batch; at most {MAX_BATCH}", specs.len())));
        }
        for (i, spec) in specs.iter_mut().enumerate() {
            validate::job_spec(spec).map_err(|e| {
                let at = if i > 0 || spec.owner.is_empty() { format!("spec #{i}: ") } else { String::new() };
                Status::invalid_argument(format!("{at}{e}"))
            })?;
            if spec.priority > who.max_priority {
                return Err(Status::permission_denied(format!(
                    "spec #{i}: {} may submit at priority {} at most, not {} (max_priority in the tokens file)",
                    who.name, who.max_priority, spec.priority
                )));
            }
            spec.owner = who.name.clone();
        }
        self.admission.take(&who.name, specs.len(), std::time::Instant::now())?;
        // A submitter's jobs may wait only for its own (a dependency's state is the other job's business).
        if who.scope().is_some() && specs.iter().any(|s| !s.after.is_empty() || !s.after_any.is_empty()) {
            let deps: std::collections::BTreeSet<&String> =
                specs.iter().flat_map(|s| s.after.iter().chain(&s.after_any)).collect();
            let sched = self.controller.lock();
            for dep in deps {
                if let Some(owner) = sched.owner_of(dep) {
                    self.auth.check_owner(who, dep, owner)?;
                }
            }
        }
        let submitted = self.controller.lock().submit(specs, burst_proto::now_ms());
        let (jobs, durable) = submitted.map_err(|e| match e {
            SchedError::Quota(m) => self.admission.quota_refused(m),
            e => sched_status(e),
        })?;
        durable.await.map_err(store_status)?;
        Ok(jobs)
    }

    /// A worker call's request, once its caller may act for the worker it names (see [`Self::may_act_for`]).
    fn worker_call<T>(&self, req: Request<T>, worker_id: fn(&T) -> &String) -> Result<T, Status> {
        self.may_act_for(&req, worker_id(req.get_ref()))?;
        Ok(req.into_inner())
    }

    /// Whether `caller` may act for worker `id`: a worker (or admin) credential (a worker certificate only for
    /// its own id) and a valid id, recorded on the call's span.
    fn may_act_for<T>(&self, caller: &Request<T>, id: &str) -> Result<(), Status> {
        let who = self.auth.check(caller, Need::Worker)?;
        tracing::Span::current().record("worker", id);
        validate::name("worker_id", id).map_err(Status::invalid_argument)?;
        self.auth.check_worker_id(&who, id)
    }

    /// Results, the leases given back unrun, then the starts after them (one lock, one commit), then the leases the
    /// freed places took: what a `ReportJobResult` call or a message of the `Reports` stream answers.
    async fn report(&self, req: ReportJobResultRequest) -> Result<ReportJobResultResponse, Status> {
        let now = burst_proto::now_ms();
        // One lock for both, results first: a start never counts against a slot its result has not freed.
        let (grew, accepted, refused, refused_starts, done, started, taken) = {
            let mut sched = self.controller.lock();
            // Before the results, so that the places they free are filled up to the new target.
            let grew = sched.set_wants(&req.worker_id, req.session, wants(req.queue_target, req.start_ahead), now);
            let grew = grew.map_err(sched_status)?;
            // Starts alone (a stream's confirmation of starts) finish nothing; their session is checked all the
            // same, as `finished` would (a report of nothing is refused for a stale session too).
            let (accepted, refused, done) = match req.results.is_empty() {
                true => {
                    sched.check_session(&req.worker_id, req.session).map_err(sched_status)?;
                    (0, Vec::new(), None)
                }
                false => {
                    let (accepted, refused, d) =
                        sched.finished(&req.worker_id, req.session, req.results, now).map_err(sched_status)?;
                    (accepted, refused, Some(d))
                }
            };
            // Leases given back unrun: queued again before the starts and the leases taken below, which they
            // may fill.
            let returned = match req.returned.is_empty() {
                true => None,
                false => Some(sched.returned(&req.worker_id, req.session, &req.returned, now).map_err(sched_status)?.1),
            };
            let (refused_starts, started) = match req.started.is_empty() {
                true => (Vec::new(), None),
                false => {
                    let (refused, d) =
                        sched.started(&req.worker_id, req.session, &req.started, now).map_err(sched_status)?;
                    (refused, Some(d))
                }
            };
            // The results may have freed places that were filled at once: hand those leases over now.
            let taken = match req.take_leases {
                true => Some(sched.take_leases(&req.worker_id, req.session).map_err(sched_status)?),
                false => None,
            };
            (grew, accepted, refused, refused_starts, done.into_iter().chain(returned), started, taken)
        };
        if let Some(d) = grew {
            durable(d).await?;
        }
        // All were handed to the store together, so they share its next commit.
        for d in done.chain(started) {
            durable(d).await?;
        }
        let (leases, stop) = match taken {
            Some((Poll::Ready { leases, stop }, barrier)) => {
                durable(barrier).await?;
                (leases, stop)
            }
            _ => Default::default(),
        };
        Ok(ReportJobResultResponse {
            accepted,
            refused,
            refused_starts: ids_of(&refused_starts),
            refused_start_leases: refused_starts,
            leases,
            stop,
        })
    }

    /// The job `id` for a caller who must own it (or be an admin).
    fn owned_job(&self, who: &Principal, id: &str) -> Result<(Arc<JobSpec>, JobStatus), Status> {
        let (spec, status) = self.controller.lock().job(id).map_err(sched_status)?;
        self.auth.check_owner(who, id, &spec.owner)?;
        Ok((spec, status))
    }
}

fn sched_status(e: SchedError) -> Status {
    match e {
        SchedError::UnknownWorker(_) | SchedError::UnknownJob(_) => Status::not_found(e.to_string()),
        SchedError::Replaced(_) => Status::failed_precondition(e.to_string()),
        SchedError::KeyConflict { .. } => Status::already_exists(e.to_string()),
        SchedError::Invalid(_) | SchedError::UnknownPool(_) => Status::invalid_argument(e.to_string()),
        SchedError::NotYours(_) => Status::permission_denied(e.to_string()),
        SchedError::Quota(_) => Status::resource_exhausted(e.to_string()),
    }
}

fn store_status(e: StoreError) -> Status {
    Status::unavailable(e.to_string())
}

/// Ids from a request must be names (no path separators at the start, no `..`, no control characters, at
/// most 253 bytes; a job id may end in `:<index>` of an array) before they are looked up or logged.
fn valid_ids(what: &str, ids: &[String]) -> Result<(), Status> {
    let check = if what.starts_with("job") { validate::job_id } else { validate::name };
    ids.iter().try_for_each(|id| check(what, id)).map_err(Status::invalid_argument)
}

/// What a worker's request asks for (see [`Wants`]).
fn wants(queue_target: Option<u32>, start_ahead: Option<u32>) -> Wants {
    Wants { queue_target, start_ahead }
}

fn ids_of(leases: &[LeaseRef]) -> Vec<String> {
    leases.iter().map(|l| l.job_id.clone()).collect()
}

async fn durable(d: Durable) -> Result<(), Status> {
    d.await.map_err(store_status)
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<JobStatus, Status>> + Send>>;
type AnswerStream = Pin<Box<dyn Stream<Item = Result<ReportJobResultResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ControllerRpc for ControllerService {
    #[instrument(skip_all, fields(job))]
    async fn submit_job(&self, req: Request<SubmitJobRequest>) -> Result<Response<SubmitJobResponse>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let spec = req.into_inner().spec.ok_or_else(|| Status::invalid_argument("request has no spec"))?;
        let job = self.submit(&who, vec![spec]).await?.remove(0);
        tracing::Span::current().record("job", job.job_id.as_str());
        Ok(Response::new(job))
    }

    #[instrument(skip_all, fields(count))]
    async fn submit_jobs(&self, req: Request<SubmitJobsRequest>) -> Result<Response<SubmitJobsResponse>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let specs = req.into_inner().specs;
        tracing::Span::current().record("count", specs.len());
        let jobs = self.submit(&who, specs).await?;
        Ok(Response::new(SubmitJobsResponse { jobs }))
    }

    #[instrument(skip_all, fields(job))]
    async fn get_job_status(&self, req: Request<GetJobStatusRequest>) -> Result<Response<JobStatus>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let id = req.into_inner().job_id;
        tracing::Span::current().record("job", id.as_str());
        valid_ids("job_id", std::slice::from_ref(&id))?;
        let (_, status) = self.owned_job(&who, &id)?;
        Ok(Response::new(status))
    }

    #[instrument(skip_all, fields(job))]
    async fn get_job(&self, req: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let id = req.into_inner().job_id;
        tracing::Span::current().record("job", id.as_str());
        valid_ids("job_id", std::slice::from_ref(&id))?;
        let (spec, status) = self.owned_job(&who, &id)?;
        Ok(Response::new(Job { spec: Some((*spec).clone()), status: Some(status) }))
    }

    #[instrument(skip_all)]
    async fn list_jobs(&self, req: Request<ListJobsRequest>) -> Result<Response<ListJobsResponse>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let req = req.into_inner();
        let states = req.states().collect();
        let owner = match (who.scope(), req.owner) {
            (Some(me), asked) if !asked.is_empty() && asked != me => {
                return Err(Status::permission_denied(format!("{me} may list only its own jobs, not {asked}'s")));
            }
            (Some(me), _) => Some(me.to_string()),
            (None, asked) => Some(asked).filter(|o| !o.is_empty()),
        };
        let filter = ListFilter {
            states,
            labels: req.labels,
            limit: req.limit as usize,
            after: Some(req.page_token).filter(|t| !t.is_empty()),
            owner,
            newest_first: req.newest_first,
        };
        let (jobs, next) = self.controller.lock().list(&filter);
        let next_page_token = next.unwrap_or_default();
        Ok(Response::new(ListJobsResponse { jobs, next_page_token }))
    }

    type StreamJobOutputStream = crate::output::Chunks;

    #[instrument(skip_all, fields(job))]
    async fn stream_job_output(
        &self,
        req: Request<JobOutputRequest>,
    ) -> Result<Response<Self::StreamJobOutputStream>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let req = req.into_inner();
        tracing::Span::current().record("job", req.job_id.as_str());
        valid_ids("job_id", std::slice::from_ref(&req.job_id))?;
        let (_, status) = self.owned_job(&who, &req.job_id)?;
        Ok(Response::new(self.output.open(&self.controller, status, req).await?))
    }

    type WatchJobsStream = StatusStream;

    #[instrument(skip_all)]
    async fn watch_jobs(&self, req: Request<WatchJobsRequest>) -> Result<Response<StatusStream>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let req = req.into_inner();
        valid_ids("job_ids", &req.job_ids)?;
        let ids: HashSet<String> = req.job_ids.into_iter().collect();
        let labels = req.labels;
        let terminal_only = req.terminal_only;
        let owner = who.scope().map(str::to_string);
        // Subscribe before reading current statuses, so no change falls between the two.
        let mut rx = self.controller.subscribe();
        let mut stopping = self.controller.stopping();
        let mut initial = Vec::new();
        if req.initial {
            let sched = self.controller.lock();
            for id in &ids {
                let (spec, status) = sched.job(id).map_err(sched_status)?;
                self.auth.check_owner(&who, id, &spec.owner)?;
                initial.push(status);
            }
        }
        let stream = async_stream(initial, move |tx| async move {
            loop {
                let next = tokio::select! {
                    next = rx.recv() => next,
                    _ = stopping.wait_for(|s| *s) => return,
                };
                match next {
                    Ok(status)
                        if (!terminal_only || is_terminal(&status))
                            && watched(&ids, &labels, &status)
                            && owner.as_ref().is_none_or(|o| *o == status.owner) =>
                    {
                        if tx.send(Ok(status)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        let msg = format!("watcher fell {n} changes behind; watch again");
                        let _ = tx.send(Err(Status::aborted(msg))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    #[instrument(skip_all)]
    async fn cancel_job(&self, req: Request<CancelJobRequest>) -> Result<Response<CancelJobResponse>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let req = req.into_inner();
        valid_ids("job_ids", &req.job_ids)?;
        let now = burst_proto::now_ms();
        let result = self.controller.lock().cancel_as(&req.job_ids, &req.labels, who.scope(), now);
        let (cancelled, already_ended, d) = result.map_err(|e| {
            if matches!(e, SchedError::NotYours(_)) {
                self.auth.denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(caller = %who.name, "call refused: cancelling another submitter's job");
            }
            sched_status(e)
        })?;
        durable(d).await?;
        info!(cancelled = cancelled.len(), "jobs cancelled");
        Ok(Response::new(CancelJobResponse { cancelled, already_ended }))
    }

    #[instrument(skip_all)]
    async fn list_workers(&self, req: Request<ListWorkersRequest>) -> Result<Response<ListWorkersResponse>, Status> {
        self.auth.check(&req, Need::Admin)?;
        let workers = self.controller.lock().workers();
        Ok(Response::new(ListWorkersResponse { workers }))
    }

    #[instrument(skip_all)]
    async fn cordon_workers(
        &self,
        req: Request<CordonWorkersRequest>,
    ) -> Result<Response<CordonWorkersResponse>, Status> {
        self.auth.check(&req, Need::Admin)?;
        let req = req.into_inner();
        if req.worker_ids.is_empty() {
            return Err(Status::invalid_argument("name the workers to cordon"));
        }
        valid_ids("worker_ids", &req.worker_ids)?;
        let (workers, d) = self
            .controller
            .lock()
            .cordon(&req.worker_ids, !req.uncordon, burst_proto::now_ms())
            .map_err(sched_status)?;
        durable(d).await?;
        Ok(Response::new(CordonWorkersResponse { workers }))
    }

    #[instrument(skip_all)]
    async fn get_stats(&self, req: Request<GetStatsRequest>) -> Result<Response<GetStatsResponse>, Status> {
        let who = self.auth.check(&req, Need::Client)?;
        let mut stats = crate::metrics::stats(&self.controller, &self.auth, &self.admission);
        // Other submitters' names are theirs: a submitter sees its own share only.
        if let Some(me) = who.scope() {
            stats.submitters.retain(|s| s.name == me);
        }
        Ok(Response::new(stats))
    }

    #[instrument(skip_all, fields(worker))]
    async fn register_worker(
        &self,
        req: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerResponse>, Status> {
        let who = self.auth.check(&req, Need::Worker)?;
        let req = req.into_inner();
        let info = req.info.ok_or_else(|| Status::invalid_argument("request has no worker info"))?;
        validate::worker_info(&info).map_err(Status::invalid_argument)?;
        self.auth.check_worker_id(&who, &info.worker_id)?;
        let worker_id = info.worker_id.clone();
        tracing::Span::current().record("worker", worker_id.as_str());
        let pool = if info.pool.is_empty() { crate::policy::DEFAULT_POOL } else { info.pool.as_str() };
        info!(slots = info.slots, queue_capacity = info.queue_capacity, addr = %info.advertise_addr, pool, "worker registered");
        let (session, rejected, d) = {
            let mut controller = self.controller.lock();
            controller.admits_pool(&info.pool).map_err(sched_status)?;
            controller.register(info, &req.held, wants(req.queue_target, req.start_ahead), burst_proto::now_ms())
        };
        durable(d).await?;
        let config = self.controller.config();
        Ok(Response::new(RegisterWorkerResponse {
            worker_id,
            session,
            heartbeat_interval_ms: config.heartbeat_interval.as_millis() as u64,
            lease_timeout_ms: config.lease_timeout.as_millis() as u64,
            rejected,
            takes_returns: true,
        }))
    }

    #[instrument(skip_all, fields(worker))]
    async fn poll_job(&self, req: Request<PollJobRequest>) -> Result<Response<PollJobResponse>, Status> {
        let req = self.worker_call(req, |r| &r.worker_id)?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms).min(MAX_POLL_WAIT);
        let mut stopping = self.controller.stopping();
        let now = burst_proto::now_ms();
        let grew = self
            .controller
            .lock()
            .set_wants(&req.worker_id, req.session, wants(req.queue_target, req.start_ahead), now)
            .map_err(sched_status)?;
        if let Some(d) = grew {
            durable(d).await?;
        }
        loop {
            let (poll, barrier) =
                self.controller.lock().take_leases(&req.worker_id, req.session).map_err(sched_status)?;
            // A wake whose leases a result report took already (see ReportJobResultRequest.take_leases) waits on.
            let wake = match poll {
                Poll::Wait(wake) if tokio::time::Instant::now() < deadline && !*stopping.borrow() => wake,
                Poll::Wait(_) => return Ok(Response::new(PollJobResponse::default())),
                Poll::Ready { leases, stop } => {
                    durable(barrier).await?;
                    return Ok(Response::new(PollJobResponse { leases, stop }));
                }
            };
            tokio::select! {
                _ = tokio::time::timeout_at(deadline, wake.notified()) => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
        }
    }

    #[instrument(skip_all, fields(worker))]
    async fn report_job_started(
        &self,
        req: Request<ReportJobStartedRequest>,
    ) -> Result<Response<ReportJobStartedResponse>, Status> {
        let req = self.worker_call(req, |r| &r.worker_id)?;
        let (refused, d) = self
            .controller
            .lock()
            .started(&req.worker_id, req.session, &req.started, burst_proto::now_ms())
            .map_err(sched_status)?;
        durable(d).await?;
        Ok(Response::new(ReportJobStartedResponse { refused: ids_of(&refused), refused_leases: refused }))
    }

    #[instrument(skip_all, fields(worker))]
    async fn report_job_result(
        &self,
        req: Request<ReportJobResultRequest>,
    ) -> Result<Response<ReportJobResultResponse>, Status> {
        let req = self.worker_call(req, |r| &r.worker_id)?;
        self.report(req).await.map(Response::new)
    }

    type ReportsStream = AnswerStream;

    /// Answers each report on the stream as `report_job_result` would, in order, one at a time; an error ends
    /// the stream with it. Each report is checked as a call would be, against the credentials the stream was
    /// opened with (a token revoked or expired since is refused). The answers are made as the response is read
    /// (no task or channel between).
    #[instrument(skip_all)]
    async fn reports(
        &self,
        req: Request<tonic::Streaming<ReportJobResultRequest>>,
    ) -> Result<Response<AnswerStream>, Status> {
        let (metadata, extensions, reports) = req.into_parts();
        let caller = Request::from_parts(metadata, extensions, ());
        self.auth.check(&caller, Need::Worker)?;
        let state = Some((self.clone(), caller, reports, self.controller.stopping()));
        let answers = futures::stream::unfold(state, |state| async move {
            let (service, caller, mut reports, mut stopping) = state?;
            let next = tokio::select! {
                next = reports.message() => next,
                _ = stopping.wait_for(|s| *s) => return None,
            };
            let answer = match next {
                Ok(Some(req)) => {
                    // Each report in a span of its own, as each call has (`may_act_for` records the worker).
                    let span = tracing::info_span!("report", worker = tracing::field::Empty);
                    let answer = async {
                        service.may_act_for(&caller, &req.worker_id)?;
                        service.report(req).await
                    };
                    answer.instrument(span).await
                }
                Ok(None) => return None,
                Err(status) => Err(status),
            };
            match answer {
                Ok(answer) => Some((Ok(answer), Some((service, caller, reports, stopping)))),
                Err(status) => Some((Err(status), None)),
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    #[instrument(skip_all, fields(worker))]
    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let req = self.worker_call(req, |r| &r.worker_id)?;
        // Leases older than half a lease timeout have had many heartbeats' time to arrive.
        let grace = self.controller.config().lease_timeout / 2;
        let now = burst_proto::now_ms();
        let (peers, d) = {
            let mut sched = self.controller.lock();
            // Leases a grown target makes are durable with the heartbeat's own writes (flushed after them).
            let wants = wants(req.queue_target, req.start_ahead);
            drop(sched.set_wants(&req.worker_id, req.session, wants, now).map_err(sched_status)?);
            sched
                .heartbeat(&req.worker_id, req.session, &req.known, req.steal_attempts, grace, now)
                .map_err(sched_status)?
        };
        durable(d).await?;
        Ok(Response::new(HeartbeatResponse { peers }))
    }

    #[instrument(skip_all, fields(worker))]
    async fn drain_worker(&self, req: Request<DrainWorkerRequest>) -> Result<Response<DrainWorkerResponse>, Status> {
        let req = self.worker_call(req, |r| &r.worker_id)?;
        let (requeued, d) = self
            .controller
            .lock()
            .drain(&req.worker_id, req.session, &req.returned, burst_proto::now_ms())
            .map_err(sched_status)?;
        durable(d).await?;
        Ok(Response::new(DrainWorkerResponse { requeued }))
    }

    #[instrument(skip_all, fields(worker))]
    async fn deregister_worker(
        &self,
        req: Request<DeregisterWorkerRequest>,
    ) -> Result<Response<DeregisterWorkerResponse>, Status> {
        let req = self.worker_call(req, |r| &r.worker_id)?;
        let (requeued, d) = self
            .controller
            .lock()
            .deregister(&req.worker_id, req.session, burst_proto::now_ms())
            .map_err(sched_status)?;
        durable(d).await?;
        Ok(Response::new(DeregisterWorkerResponse { requeued }))
    }

    #[instrument(skip_all, fields(worker, to))]
    async fn transfer_leases(
        &self,
        req: Request<TransferLeasesRequest>,
    ) -> Result<Response<TransferLeasesResponse>, Status> {
        let req = self.worker_call(req, |r| &r.worker_id)?;
        tracing::Span::current().record("to", req.thief_worker_id.as_str());
        valid_ids("thief_worker_id", std::slice::from_ref(&req.thief_worker_id))?;
        let (transferred, refused, d) = self
            .controller
            .lock()
            .transfer(&req.worker_id, req.session, &req.thief_worker_id, &req.leases)
            .map_err(sched_status)?;
        durable(d).await?;
        Ok(Response::new(TransferLeasesResponse { transferred, refused }))
    }
}

/// A stream that yields `initial` and then whatever `produce` sends, ending when `produce` returns.
fn async_stream<F, Fut>(initial: Vec<JobStatus>, produce: F) -> StatusStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<JobStatus, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let first = futures::stream::iter(initial.into_iter().map(Ok));
    tokio::spawn(produce(tx));
    Box::pin(futures::StreamExt::chain(first, tokio_stream::wrappers::ReceiverStream::new(rx)))
}

fn is_terminal(status: &JobStatus) -> bool {
    matches!(status.state(), JobState::Succeeded | JobState::Failed | JobState::Cancelled)
}

/// Whether a watcher asking for `ids` (empty: all) and `labels` (each must match) wants `status`.
fn watched(ids: &HashSet<String>, labels: &std::collections::HashMap<String, String>, status: &JobStatus) -> bool {
    (ids.is_empty() || ids.contains(&status.job_id))
        && labels.iter().all(|(k, v)| status.labels.get(k).is_some_and(|have| have == v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_filters_by_ids_and_by_every_label() {
        let status = JobStatus {
            job_id: "j1".into(),
            labels: [("team".to_string(), "a".to_string()), ("kind".to_string(), "x".to_string())].into(),
            ..JobStatus::default()
        };
        let none = HashSet::new();
        let label = |k: &str, v: &str| [(k.to_string(), v.to_string())].into();
        assert!(watched(&none, &Default::default(), &status));
        assert!(watched(&none, &label("team", "a"), &status));
        assert!(!watched(&none, &label("team", "b"), &status));
        assert!(!watched(&none, &label("owner", "a"), &status));
        assert!(!watched(&HashSet::from(["j2".to_string()]), &label("team", "a"), &status));
    }
}
