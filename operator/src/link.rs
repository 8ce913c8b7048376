//! The operator's connections to burst controllers: one gRPC channel and one `WatchJobs` stream per
//! BurstCluster, however many BurstJobs it runs.
//!
//! 1. A link is made the first time a reconcile needs a cluster's controller; its watch task starts at once.
//! 2. The watch asks only for jobs the operator submitted (the `burst.dev/source=burstjob` label). Each status
//!    change is cached by job id and the BurstJob it names (from the job's labels) is queued for reconcile.
//! 3. Whenever the stream (re)connects, the cache is cleared and every BurstJob seen on this link is queued
//!    again, so a change made while the stream was down is read fresh with `GetJobStatus`.
//!
//! # Guarantees
//! A reconcile that finds no cached status asks the controller, so a BurstJob never shows a status older than
//! the last one the stream delivered or the controller answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burst_proto::auth::{Bearer, ControlClient, control_client};
use burst_proto::tls::{LiveTls, Pem};
use burst_proto::v1::{
    CancelJobRequest, CordonWorkersRequest, GetJobStatusRequest, GetStatsRequest, GetStatsResponse, JobSpec, JobStatus,
    ListWorkersRequest, SubmitJobRequest, WatchJobsRequest, WorkerStatus,
};
use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info, warn};

use crate::crd::BurstJob;
use crate::error::{Error, Result};
use crate::{job, names};

/// How long a unary call to a controller may take; a controller that does not answer in this time is treated as
/// unreachable and the reconcile backs off.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting is quick on a cluster network; a controller not up yet should not hold a reconcile for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Backoff between watch reconnects, doubling from the first to the last.
const WATCH_BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));

/// Where a cluster's controller is, given (namespace, cluster name): its Service in a real cluster, a loopback
/// address in tests.
pub type Resolver = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

/// Each cluster's controller at its Service (what the operator uses in a deployment).
pub fn services() -> Resolver {
    Arc::new(|ns, cluster| names::controller_endpoint(cluster, ns, false))
}

/// Routes a BurstJob to the reconcile queue of the controller that watches its namespace.
pub type Trigger = Arc<dyn Fn(ObjectRef<BurstJob>) + Send + Sync>;

/// A trigger that feeds one `Controller::reconcile_on` stream.
pub fn channel_trigger(tx: UnboundedSender<ObjectRef<BurstJob>>) -> Trigger {
    Arc::new(move |r| {
        let _ = tx.unbounded_send(r);
    })
}

/// All links, by (namespace, cluster).
#[derive(Clone)]
pub struct Links {
    links: Arc<Mutex<HashMap<(String, String), Link>>>,
    resolve: Resolver,
    trigger: Trigger,
}

impl Links {
    pub fn new(resolve: Resolver, trigger: Trigger) -> Self {
        Links { links: Arc::default(), resolve, trigger }
    }

    /// The link to `cluster`'s controller if one is made.
    pub fn existing(&self, ns: &str, cluster: &str) -> Option<Link> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).get(&(ns.to_string(), cluster.to_string())).cloned()
    }

    /// The link to `cluster`'s controller, over TLS with the operator's certificate `tls` (or plaintext), made
    /// (and its watch started) on first use. A renewed certificate is used from the next connection on; a link
    /// whose transport no longer matches is replaced.
    pub fn get(&self, ns: &str, cluster: &str, tls: Option<Pem>) -> Result<Link> {
        let key = (ns.to_string(), cluster.to_string());
        // Held only to look up or insert; no await under it.
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = links.get(&key) {
            match (&link.tls, tls.clone()) {
                (None, None) => return Ok(link.clone()),
                (Some(live), Some(pem)) => {
                    if live.replace(pem).map_err(Error::TlsSecret)? {
                        info!(cluster, namespace = ns, "operator's client certificate renewed");
                    }
                    return Ok(link.clone());
                }
                _ => {
                    if let Some(handle) = links.remove(&key).and_then(|l| l.stop_watch()) {
                        handle.abort();
                    }
                }
            }
        }
        let link = Link::connect((self.resolve)(ns, cluster), tls)?;
        let watch = tokio::spawn(watch(link.clone(), self.trigger.clone()));
        *link.watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(watch.abort_handle());
        links.insert(key, link.clone());
        Ok(link)
    }

    /// Stops mirroring job `id` of `cluster`, if a link to it exists.
    pub fn forget(&self, ns: &str, cluster: &str, id: &str) {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = links.get(&(ns.to_string(), cluster.to_string())) {
            link.forget(id);
        }
    }

    /// Forgets `cluster`'s link (the cluster is gone); its watch stops.
    pub fn remove(&self, ns: &str, cluster: &str) {
        let removed =
            self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(&(ns.to_string(), cluster.to_string()));
        if let Some(handle) = removed.and_then(|l| l.stop_watch()) {
            handle.abort();
        }
    }
}

/// One controller: a lazily connected channel, the statuses its watch delivered, and the BurstJobs seen on it.
#[derive(Clone)]
pub struct Link {
    pub endpoint: String,
    client: ControlClient,
    /// The operator's client TLS for this cluster, `None` in plaintext.
    tls: Option<LiveTls>,
    /// Latest status per job id, written by the watch task, read by reconciles.
    statuses: Arc<Mutex<HashMap<String, JobStatus>>>,
    /// BurstJobs with a job on this controller, queued again when the watch reconnects.
    tracked: Arc<Mutex<HashMap<String, ObjectRef<BurstJob>>>>,
    watch: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(CALL_TIMEOUT);
    req
}

impl Link {
    fn connect(addr: String, tls: Option<Pem>) -> Result<Self> {
        let tls = tls.map(LiveTls::new).transpose().map_err(Error::TlsSecret)?;
        let endpoint = burst_proto::tls::url(&addr, tls.is_some());
        let channel = burst_proto::tls::endpoint(&addr)
            .map(|e| e.connect_timeout(CONNECT_TIMEOUT))
            .map(|e| burst_proto::tls::lazy(&e, tls.as_ref(), burst_proto::tls::CONTROLLER_NAME))
            .map_err(|message| Error::ControllerUnreachable { endpoint: endpoint.clone(), message })?;
        Ok(Link {
            endpoint,
            // Over TLS the operator's certificate (role admin) is its credential; without TLS a cluster has no
            // tokens file (see `tokensSecret`), so no token is needed.
            client: control_client(channel, Bearer::default()),
            tls,
            statuses: Arc::default(),
            tracked: Arc::default(),
            watch: Arc::default(),
        })
    }

    /// Whether this link speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn stop_watch(&self) -> Option<tokio::task::AbortHandle> {
        self.watch.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn fail(&self, what: &'static str) -> impl FnOnce(tonic::Status) -> Error + '_ {
        move |status| Error::from_status(&self.endpoint, what, status)
    }

    /// Submits `spec` (idempotent by its key) and remembers which BurstJob it belongs to.
    pub async fn submit(&self, spec: JobSpec, object: ObjectRef<BurstJob>) -> Result<String> {
        let resp = self.client.clone().submit_job(request(SubmitJobRequest { spec: Some(spec) })).await;
        let id = resp.map_err(self.fail("the job"))?.into_inner().job_id;
        self.track(&id, object);
        Ok(id)
    }

    /// Remembers that `object` mirrors job `id`.
    pub fn track(&self, id: &str, object: ObjectRef<BurstJob>) {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), object);
    }

    /// The job's status: the watch's latest, else asked of the controller.
    pub async fn status(&self, id: &str) -> Result<JobStatus> {
        if let Some(s) = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(s.clone());
        }
        let req = request(GetJobStatusRequest { job_id: id.to_string() });
        let status = self.client.clone().get_job_status(req).await.map_err(self.fail("a status read"))?.into_inner();
        self.remember(status.clone());
        Ok(status)
    }

    fn remember(&self, status: JobStatus) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        // A status from a read never replaces a newer one from the watch.
        match statuses.get(&status.job_id) {
            Some(have) if newer(have, &status) => {}
            _ => {
                statuses.insert(status.job_id.clone(), status);
            }
        }
    }

    /// Cancels job `id`; a job that already ended is left as it was.
    pub async fn cancel(&self, id: &str) -> Result<()> {
        let req = request(CancelJobRequest { job_ids: vec![id.to_string()], ..CancelJobRequest::default() });
        self.client.clone().cancel_job(req).await.map_err(self.fail("the cancel"))?;
        Ok(())
    }

    /// Stops mirroring job `id` (its BurstJob is gone).
    pub fn forget(&self, id: &str) {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.tracked.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The controller's workers.
    pub async fn workers(&self) -> Result<Vec<WorkerStatus>> {
        let resp = self.client.clone().list_workers(request(ListWorkersRequest {})).await;
        Ok(resp.map_err(self.fail("a workers read"))?.into_inner().workers)
    }

    /// Cordons (or uncordons) registered workers; returns them as they are now.
    pub async fn cordon(&self, worker_ids: Vec<String>, cordon: bool) -> Result<Vec<WorkerStatus>> {
        let req = request(CordonWorkersRequest { worker_ids, uncordon: !cordon });
        let resp = self.client.clone().cordon_workers(req).await;
        Ok(resp.map_err(self.fail("a cordon"))?.into_inner().workers)
    }

    pub async fn stats(&self) -> Result<GetStatsResponse> {
        let resp = self.client.clone().get_stats(request(GetStatsRequest {})).await;
        Ok(resp.map_err(self.fail("a stats read"))?.into_inner())
    }
}

/// Whether `a` is a later state of the same job than `b` (terminal beats running beats leased beats queued; a
/// later attempt beats an earlier one).
fn newer(a: &JobStatus, b: &JobStatus) -> bool {
    (a.attempt, a.epoch, a.state) > (b.attempt, b.epoch, b.state)
}

/// The watch task of one link (see the module's steps 2 and 3).
async fn watch(link: Link, trigger: Trigger) {
    let mut backoff = WATCH_BACKOFF.0;
    loop {
        let req = WatchJobsRequest {
            labels: HashMap::from([(names::SOURCE_LABEL.to_string(), names::SOURCE_BURSTJOB.to_string())]),
            ..WatchJobsRequest::default()
        };
        match link.client.clone().watch_jobs(req).await {
            Ok(resp) => {
                info!(endpoint = %link.endpoint, "watching jobs");
                backoff = WATCH_BACKOFF.0;
                link.statuses.lock().unwrap_or_else(|p| p.into_inner()).clear();
                let tracked: Vec<_> =
                    link.tracked.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
                tracked.into_iter().for_each(|r| trigger(r));
                let mut stream = resp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(status)) => deliver(&link, &trigger, status),
                        Ok(None) => break,
                        Err(e) => {
                            warn!(endpoint = %link.endpoint, error = %e, "job watch ended");
                            break;
                        }
                    }
                }
            }
            Err(e) => debug!(endpoint = %link.endpoint, error = %e, "job watch not connected"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(WATCH_BACKOFF.1);
    }
}

fn deliver(link: &Link, trigger: &Trigger, status: JobStatus) {
    let Some((ns, name)) = job::object_of(&status) else { return };
    let object = ObjectRef::new(&name).within(&ns);
    link.track(&status.job_id, object.clone());
    link.statuses.lock().unwrap_or_else(|p| p.into_inner()).insert(status.job_id.clone(), status);
    trigger(object);
}
