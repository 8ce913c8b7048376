//! The BurstJob reconciler against a scripted API server and a real burst controller and worker on loopback:
//! finalizer, submit once, status mirrored to each terminal phase through the cluster's watch stream, and the
//! errors a user can cause (missing cluster, unreachable controller, invalid spec). Cancel on delete and the
//! TTL run end to end against a real API server in cli/tests/kube_jobs.rs.

mod mock;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burst_operator::context::Context;
use burst_operator::crd::{BurstJob, BurstJobStatus};
use burst_operator::job::reconcile::{error_policy, reconcile};
use burst_operator::link::Links;
use burst_operator::metrics::Metrics;
use burst_proto::v1::controller_rpc_client::ControllerRpcClient;
use burst_proto::v1::{GetStatsRequest, JobState};
use http::StatusCode;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use mock::{ApiServer, finish};
use serde_json::json;

struct Cluster {
    controller: burst_controller::RunningController,
    worker: burst_worker::RunningWorker,
    url: String,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let config = burst_controller::ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..burst_controller::ControllerConfig::default()
    };
    let controller = burst_controller::start(config).await.unwrap();
    let url = format!("http://{}", controller.addr);
    let cfg = burst_worker::WorkerConfig::local(&url, "w-0", 4, 8, dir.path().join("out"));
    let worker = burst_worker::start(cfg).await.unwrap();
    tokio::time::timeout(mock::DEADLINE, worker.agent.registered()).await.unwrap();
    Cluster { controller, worker, url, _dir: dir }
}

impl Cluster {
    async fn stop(self) {
        self.worker.shutdown().await;
        self.controller.shutdown().await.unwrap();
    }

    async fn submitted(&self) -> u64 {
        let mut c = ControllerRpcClient::connect(self.url.clone()).await.unwrap();
        c.get_stats(GetStatsRequest {}).await.unwrap().into_inner().submitted_total
    }
}

/// The BurstJobs the watch stream asked to reconcile.
type Seen = Arc<Mutex<Vec<ObjectRef<BurstJob>>>>;

/// The context, and what its watch streams asked to reconcile.
fn context(client: kube::Client, controller: &str) -> (Arc<Context>, Seen) {
    let endpoint = controller.to_string();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let links = Links::new(Arc::new(move |_, _| endpoint.clone()), Arc::new(move |r| record.lock().unwrap().push(r)));
    (Context::new(client, links, Arc::new(Metrics::default()), Some("test".into())), seen)
}

/// A BurstJob `hello` in namespace `jobs` for cluster `demo`, running `sh -c script`, finalizer in place.
fn burstjob(script: &str) -> BurstJob {
    let mut bj: BurstJob = serde_json::from_value(json!({
        "apiVersion": "burst.dev/v1alpha1", "kind": "BurstJob",
        "metadata": { "name": "hello", "namespace": "jobs", "uid": "uid-j", "generation": 1,
                      "finalizers": ["burst.dev/cancel-job"] },
        "spec": { "clusterRef": "demo", "process": { "command": "/bin/sh", "args": ["-c", script] } }
    }))
    .unwrap();
    bj.spec.ttl_seconds_after_finished = Some(3600);
    bj
}

fn gated(dir: &Path, exit: i32) -> String {
    format!(
        "while [ ! -e {}/gate ]; do sleep 0.01; done; echo finished; echo exit {exit} >&2; exit {exit}",
        dir.display()
    )
}

async fn expect_cluster(api: &mut ApiServer, exists: bool) {
    let call = api.expect("GET", "/apis/burst.dev/v1alpha1/namespaces/jobs/burstclusters/demo").await;
    if !exists {
        return call.not_found();
    }
    let bc = json!({
        "apiVersion": "burst.dev/v1alpha1", "kind": "BurstCluster",
        "metadata": { "name": "demo", "namespace": "jobs", "uid": "uid-c" },
        "spec": { "image": "burst:local", "tls": { "enabled": false } }
    });
    call.reply(StatusCode::OK, bc);
}

/// Expects the status apply; returns the status written.
async fn expect_status(api: &mut ApiServer, bj: &BurstJob) -> BurstJobStatus {
    let call = api.expect("PATCH", "/apis/burst.dev/v1alpha1/namespaces/jobs/burstjobs/hello/status?").await;
    assert_eq!(call.query("fieldManager").as_deref(), Some("burst-operator"));
    let status: BurstJobStatus = serde_json::from_value(call.body["status"].clone()).unwrap();
    let mut stored = serde_json::to_value(bj).unwrap();
    stored["status"] = call.body["status"].clone();
    call.reply(StatusCode::OK, stored);
    status
}

fn with_status(bj: &BurstJob, status: &BurstJobStatus) -> BurstJob {
    BurstJob { status: Some(status.clone()), ..bj.clone() }
}

/// First reconcile of a gated job: cluster read, submit (Event), status (phase Queued or Running), phase Event.
async fn submit(api: &mut ApiServer, ctx: &Arc<Context>, bj: &BurstJob) -> BurstJobStatus {
    let task = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx.clone()));
    expect_cluster(api, true).await;
    let (type_, reason, note) = api.expect_event("jobs").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Normal", "Submitted"), "{note}");
    let status = expect_status(api, bj).await;
    let (_, reason, _) = api.expect_event("jobs").await;
    assert_eq!(Some(reason), status.phase);
    assert!(matches!(status.phase.as_deref(), Some("Queued" | "Running")), "{status:?}");
    assert!(status.job_id.is_some());
    assert_eq!(finish(task).await.unwrap(), Action::requeue(Duration::from_secs(300)));
    status
}

/// Waits until the watch stream has delivered job `id`'s end (the link's cache holds a terminal status).
async fn until_the_watch_delivers_the_end(ctx: &Context, id: &str) {
    let link = ctx.links.existing("jobs", "demo").unwrap();
    let deadline = tokio::time::Instant::now() + mock::DEADLINE;
    loop {
        let s = link.status(id).await.unwrap();
        if matches!(s.state(), JobState::Succeeded | JobState::Failed | JobState::Cancelled) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the watch never delivered the end of {id}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_new_burstjob_gets_its_finalizer_before_anything_else() {
    let (client, mut api) = mock::client();
    let (ctx, _) = context(client, "http://127.0.0.1:1");
    let mut bj = burstjob("true");
    bj.metadata.finalizers = None;
    let task = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx));
    let call = api.expect("PATCH", "/apis/burst.dev/v1alpha1/namespaces/jobs/burstjobs/hello?").await;
    assert_eq!(call.body[1], json!({ "op": "add", "path": "/metadata/finalizers", "value": ["burst.dev/cancel-job"] }));
    let mut stored = serde_json::to_value(&bj).unwrap();
    stored["metadata"]["finalizers"] = json!(["burst.dev/cancel-job"]);
    call.reply(StatusCode::OK, stored);
    assert_eq!(finish(task).await.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_burstjob_is_submitted_once_and_mirrors_each_terminal_phase() {
    let c = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, mut api) = mock::client();
    let (ctx, seen) = context(client, &c.url);
    for (exit, phase, code) in [(0, "Succeeded", 0), (3, "Failed", 3)] {
        std::fs::remove_file(dir.path().join("gate")).ok();
        let mut bj = burstjob(&gated(dir.path(), exit));
        bj.metadata.uid = Some(format!("uid-{exit}"));
        let first = submit(&mut api, &ctx, &bj).await;
        let id = first.job_id.clone().unwrap();

        // A crash before the status write: the same object is reconciled again and names the same job.
        let again = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx.clone()));
        expect_cluster(&mut api, true).await;
        api.expect_event("jobs").await; // "Submitted" again: the controller answered with the existing job
        let status = expect_status(&mut api, &bj).await;
        assert_eq!(status.job_id.as_deref(), Some(id.as_str()), "one idempotency key, one job");
        api.expect_event("jobs").await;
        finish(again).await.unwrap();

        std::fs::write(dir.path().join("gate"), b"open").unwrap();
        until_the_watch_delivers_the_end(&ctx, &id).await;
        assert!(seen.lock().unwrap().iter().any(|r| r.name == "hello"), "the watch routed the change to its BurstJob");

        let bj = with_status(&bj, &first);
        let task = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx.clone()));
        expect_cluster(&mut api, true).await;
        let end = expect_status(&mut api, &bj).await;
        assert_eq!((end.phase.as_deref(), end.exit_code), (Some(phase), Some(code)), "{end:?}");
        assert_eq!(
            (end.worker.as_deref(), end.attempts, end.reason.as_deref()),
            (Some("w-0"), Some(1), Some("Exited"))
        );
        assert!(end.start_time.is_some() && end.completion_time.is_some());
        let tail = format!("finished\n[stderr]\nexit {exit}\n");
        assert_eq!(end.output_tail.as_deref(), Some(tail.as_str()), "the output's end, kept by the controller");
        let finished = end.conditions.iter().find(|c| c.type_ == "Finished").unwrap();
        assert_eq!((finished.status.as_str(), finished.reason.as_str()), ("True", phase));
        let (type_, reason, _) = api.expect_event("jobs").await;
        assert_eq!((type_.as_str(), reason.as_str()), (if code == 0 { "Normal" } else { "Warning" }, phase));
        // Finished with a TTL of an hour: looked at again in about an hour, nothing else.
        assert_ne!(finish(task).await.unwrap(), Action::await_change());
    }
    assert_eq!(c.submitted().await, 2, "each BurstJob submitted exactly once");
    c.stop().await;
}

#[tokio::test]
async fn a_missing_cluster_shows_a_condition_and_a_warning_and_is_retried_with_backoff() {
    let (client, mut api) = mock::client();
    let (ctx, _) = context(client, "http://127.0.0.1:1");
    let bj = burstjob("true");
    let task = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx.clone()));
    expect_cluster(&mut api, false).await;
    let status = expect_status(&mut api, &bj).await;
    assert_eq!((status.phase.as_deref(), status.reason.as_deref()), (Some("Pending"), Some("ClusterNotFound")));
    assert!(status.message.as_deref().unwrap().contains("BurstCluster \"demo\" not found"));
    let submitted = status.conditions.iter().find(|c| c.type_ == "Submitted").unwrap();
    assert_eq!((submitted.status.as_str(), submitted.reason.as_str()), ("False", "ClusterNotFound"));
    let (type_, reason, _) = api.expect_event("jobs").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "ClusterNotFound"));
    let err = finish(task).await.unwrap_err();
    assert_eq!(err.reason(), "ClusterNotFound");
    let bj = Arc::new(bj);
    assert_eq!(error_policy(bj.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(1)));
    assert_eq!(error_policy(bj.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(2)));

    // Still missing, and the status already says so: no second patch, no second Event.
    let bj = Arc::new(with_status(&bj, &status));
    let task = tokio::spawn(reconcile(bj, ctx));
    expect_cluster(&mut api, false).await;
    assert_eq!(finish(task).await.unwrap_err().reason(), "ClusterNotFound");
}

#[tokio::test]
async fn an_unreachable_controller_shows_a_condition_and_a_warning() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (client, mut api) = mock::client();
    let (ctx, _) = context(client, &format!("http://127.0.0.1:{port}"));
    let bj = burstjob("true");
    let task = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx));
    expect_cluster(&mut api, true).await;
    let status = expect_status(&mut api, &bj).await;
    assert_eq!((status.phase.as_deref(), status.reason.as_deref()), (Some("Pending"), Some("ControllerUnreachable")));
    let (type_, reason, _) = api.expect_event("jobs").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "ControllerUnreachable"));
    assert_eq!(finish(task).await.unwrap_err().reason(), "ControllerUnreachable");
}

#[tokio::test]
async fn an_invalid_burstjob_fails_with_a_condition_and_a_warning_and_is_not_retried() {
    let (client, mut api) = mock::client();
    let (ctx, _) = context(client, "http://127.0.0.1:1");
    let bj = burstjob("true");
    let bj = BurstJob {
        spec: burst_operator::crd::BurstJobSpec {
            process: Some(burst_operator::crd::ProcessJob { command: "".into(), args: vec![] }),
            ..bj.spec.clone()
        },
        ..bj
    };
    let task = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx));
    expect_cluster(&mut api, true).await;
    let status = expect_status(&mut api, &bj).await;
    assert_eq!((status.phase.as_deref(), status.reason.as_deref()), (Some("Failed"), Some("InvalidSpec")));
    assert!(status.message.as_deref().unwrap().contains("spec.process.command is empty"));
    let (type_, reason, _) = api.expect_event("jobs").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "InvalidSpec"));
    assert_eq!(finish(task).await.unwrap(), Action::await_change());
}

/// The cluster's Secrets as the operator makes them, "mounted" as files into a real controller and worker that
/// speak only mutual TLS; the BurstJob reconciler reads the operator's certificate from the CA Secret the
/// first time and reaches the controller with it.
#[tokio::test]
async fn a_burstjob_on_a_tls_cluster_is_submitted_and_followed_over_the_operators_certificate() {
    use burst_operator::cluster::tls;
    let dir = tempfile::tempdir().unwrap();
    let bc: burst_operator::crd::BurstCluster = serde_json::from_value(json!({
        "apiVersion": "burst.dev/v1alpha1", "kind": "BurstCluster",
        "metadata": { "name": "demo", "namespace": "jobs", "uid": "uid-c" },
        "spec": { "image": "burst:local", "workers": { "replicas": 1 } }
    }))
    .unwrap();
    let owner = kube::Resource::controller_owner_ref(&bc, &());
    let now = burst_proto::tls::issue::now();
    let [ca, controller_tls, worker_tls] = tls::desired(&bc, "demo", "jobs", owner, [None, None, None], now).unwrap();
    let files = |secret, sub: &str, name: &str| {
        mock::mount_secret(&dir.path().join(sub), secret);
        mock::tls_files(&dir.path().join(sub), name)
    };
    let config = burst_controller::ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(files(&controller_tls, "controller", "controller")),
        ..burst_controller::ControllerConfig::default()
    };
    let controller = burst_controller::start(config).await.unwrap();
    let url = format!("http://{}", controller.addr);
    let mut cfg = burst_worker::WorkerConfig::local(&url, "demo-worker-0", 2, 4, dir.path().join("out"));
    cfg.tls = Some(files(&worker_tls, "worker", "demo-worker-0"));
    let worker = burst_worker::start(cfg).await.unwrap();
    tokio::time::timeout(mock::DEADLINE, worker.agent.registered()).await.unwrap();

    let (client, mut api) = mock::client();
    let (ctx, _) = context(client, &url);
    let bj = burstjob(&gated(dir.path(), 0));
    let task = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx.clone()));
    let call = api.expect("GET", "/apis/burst.dev/v1alpha1/namespaces/jobs/burstclusters/demo").await;
    call.reply(StatusCode::OK, serde_json::to_value(&bc).unwrap());
    let call = api.expect("GET", "/api/v1/namespaces/jobs/secrets/demo-tls-ca").await;
    call.reply(StatusCode::OK, serde_json::to_value(&ca).unwrap());
    let (_, reason, note) = api.expect_event("jobs").await;
    assert_eq!(reason, "Submitted", "{note}");
    let first = expect_status(&mut api, &bj).await;
    api.expect_event("jobs").await;
    finish(task).await.unwrap();
    let id = first.job_id.clone().unwrap();
    assert!(ctx.links.existing("jobs", "demo").unwrap().endpoint.starts_with("https://"));

    std::fs::write(dir.path().join("gate"), b"open").unwrap();
    until_the_watch_delivers_the_end(&ctx, &id).await;
    let bj = with_status(&bj, &first);
    let task = tokio::spawn(reconcile(Arc::new(bj.clone()), ctx.clone()));
    // The link is made: no second read of the Secret.
    let call = api.expect("GET", "/apis/burst.dev/v1alpha1/namespaces/jobs/burstclusters/demo").await;
    call.reply(StatusCode::OK, serde_json::to_value(&bc).unwrap());
    let end = expect_status(&mut api, &bj).await;
    assert_eq!((end.phase.as_deref(), end.worker.as_deref()), (Some("Succeeded"), Some("demo-worker-0")));
    api.expect_event("jobs").await;
    finish(task).await.unwrap();
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}
