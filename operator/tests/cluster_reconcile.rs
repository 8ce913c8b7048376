//! The BurstCluster reconciler against a scripted API server (and, for its counts, a real burst controller on
//! loopback): what it applies, in which order, with which owner, and the status it writes. Scaling, readiness,
//! refused changes, idle behaviour and garbage collection run against a real API server in
//! cli/tests/kube_cluster.rs.

mod mock;

use std::sync::Arc;
use std::time::Duration;

use burst_operator::context::Context;
use burst_operator::crd::{BurstCluster, OutputVolumeSpec};
use burst_operator::link::Links;
use burst_operator::metrics::Metrics;
use http::StatusCode;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use mock::{ApiServer, finish};
use serde_json::{Value, json};

fn example() -> BurstCluster {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/burstcluster.yaml"));
    let mut bc: BurstCluster = serde_yaml::from_str(&text.unwrap()).unwrap();
    bc.metadata.namespace = Some("jobs".into());
    bc.metadata.uid = Some("uid-c".into());
    bc.metadata.generation = Some(1);
    bc
}

fn context(client: kube::Client, controller: &str) -> Arc<Context> {
    let endpoint = controller.to_string();
    let links = Links::new(Arc::new(move |_, _| endpoint.clone()), Arc::new(|_| {}));
    Context::new(client, links, Arc::new(Metrics::default()), Some("test".into()))
}

/// The cluster's TLS Secrets as the API holds them (empty: none yet).
type Stored = Vec<Secret>;

/// The TLS step: the three Secrets are read; those missing (all, the first time) are applied, owned by the
/// cluster, and remembered in `stored`. Returns the Secrets applied.
async fn expect_secrets(api: &mut ApiServer, stored: &mut Stored) -> Vec<Secret> {
    let names = ["demo-tls-ca", "demo-controller-tls", "demo-worker-tls"];
    for name in names {
        let call = api.expect("GET", &format!("/api/v1/namespaces/jobs/secrets/{name}")).await;
        match stored.iter().find(|s| s.metadata.name.as_deref() == Some(name)) {
            Some(secret) => call.reply(StatusCode::OK, serde_json::to_value(secret).unwrap()),
            None => call.not_found(),
        }
    }
    if !stored.is_empty() {
        return Vec::new();
    }
    let mut applied = Vec::new();
    // The pods' Secrets first, then the CA's.
    for name in [names[1], names[2], names[0]] {
        let call = api.expect("PATCH", &format!("/api/v1/namespaces/jobs/secrets/{name}?")).await;
        assert_owned_and_applied(&call);
        applied.push(serde_json::from_value::<Secret>(call.body.clone()).unwrap());
        call.echo_with_status(Value::Null);
    }
    applied.rotate_right(1);
    stored.clone_from(&applied);
    applied
}

/// The applies of a cluster, each checked for server-side apply and ownership, the workers' StatefulSet read
/// first (there is none yet); `ready` sets the ready replicas the API answers with (controller, workers).
/// Returns the workers' applied body.
async fn expect_applies(api: &mut ApiServer, ready: (i32, i32)) -> Value {
    expect_applies_of(api, ready, true).await
}

/// [`expect_applies`] for a cluster with TLS on or off.
async fn expect_applies_of(api: &mut ApiServer, ready: (i32, i32), tls: bool) -> Value {
    expect_controller(api, ready.0).await;
    api.expect("GET", WORKERS).await.not_found();
    let body = expect_workers_apply(api, ready.1).await;
    expect_policies(api, tls).await;
    body
}

const WORKERS: &str = "/apis/apps/v1/namespaces/jobs/statefulsets/demo-worker";

/// The config, the controller's Service and its StatefulSet (answered with `ready` ready replicas).
async fn expect_controller(api: &mut ApiServer, ready: i32) {
    let cm = api.expect("PATCH", "/api/v1/namespaces/jobs/configmaps/demo-config?").await;
    assert_owned_and_applied(&cm);
    assert!(cm.body["data"]["burst.toml"].as_str().unwrap().contains("router = \"power2\""));
    cm.echo_with_status(Value::Null);
    let svc = api.expect("PATCH", "/api/v1/namespaces/jobs/services/demo-controller?").await;
    assert_owned_and_applied(&svc);
    let ports = svc.body["spec"]["ports"].as_array().unwrap().iter().map(|p| (p["name"].clone(), p["port"].clone()));
    assert_eq!(ports.collect::<Vec<_>>(), [(json!("grpc"), json!(50051)), (json!("http"), json!(9090))]);
    svc.echo_with_status(Value::Null);
    let controller = api.expect("PATCH", "/apis/apps/v1/namespaces/jobs/statefulsets/demo-controller?").await;
    assert_owned_and_applied(&controller);
    assert_eq!(controller.body["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data");
    controller.echo_with_status(json!({ "replicas": 1, "readyReplicas": ready }));
    // persistence is on: a Deployment left from before is removed (here there is none).
    api.expect("DELETE", "/apis/apps/v1/namespaces/jobs/deployments/demo-controller").await.not_found();
}

/// The workers' StatefulSet applied (answered with `ready` ready replicas); returns the body applied.
async fn expect_workers_apply(api: &mut ApiServer, ready: i32) -> Value {
    let workers = api.expect("PATCH", &format!("{WORKERS}?")).await;
    assert_owned_and_applied(&workers);
    let body = workers.body.clone();
    workers.echo_with_status(json!({ "replicas": body["spec"]["replicas"], "readyReplicas": ready }));
    body
}

/// The NetworkPolicies. gRPC: the controller's port from workers, the operator and labelled clients; a
/// worker's from workers and the controller. HTTP (metrics, probes) from any peer, but for a plaintext
/// cluster's controller (`tls`: false) the peers of its gRPC port.
async fn expect_policies(api: &mut ApiServer, tls: bool) {
    let to_controller =
        api.expect("PATCH", "/apis/networking.k8s.io/v1/namespaces/jobs/networkpolicies/demo-controller?").await;
    assert_owned_and_applied(&to_controller);
    let rule = &to_controller.body["spec"]["ingress"][0];
    assert_eq!(rule["ports"][0]["port"], 50051);
    let from = rule["from"].as_array().unwrap();
    assert_eq!(from[0]["podSelector"]["matchLabels"]["burst.dev/role"], "worker");
    assert_eq!(from[1]["podSelector"]["matchLabels"]["burst.dev/role"], "operator");
    assert_eq!(from[2]["podSelector"]["matchLabels"]["burst.dev/client"], "true");
    let http = &to_controller.body["spec"]["ingress"][1];
    match tls {
        true => assert_http_open(&to_controller.body),
        false => assert_eq!((&http["ports"][0]["port"], &http["from"]), (&json!(9090), &rule["from"])),
    }
    to_controller.echo_with_status(Value::Null);
    let to_workers =
        api.expect("PATCH", "/apis/networking.k8s.io/v1/namespaces/jobs/networkpolicies/demo-worker?").await;
    let rule = &to_workers.body["spec"]["ingress"][0];
    assert_eq!(rule["ports"][0]["port"], 7000);
    let roles: Vec<_> = rule["from"].as_array().unwrap().iter().map(|p| &p["podSelector"]["matchLabels"]).collect();
    assert_eq!(
        roles.iter().map(|l| &l["burst.dev/role"]).collect::<Vec<_>>(),
        [&json!("worker"), &json!("controller")]
    );
    assert!(roles.iter().all(|l| l["burst.dev/cluster"] == "demo"));
    assert_http_open(&to_workers.body);
    to_workers.echo_with_status(Value::Null);
}

/// A policy's second rule: the HTTP port, from any peer (no `from`).
fn assert_http_open(policy: &Value) {
    let http = &policy["spec"]["ingress"][1];
    assert_eq!((&http["ports"][0]["port"], &http["from"]), (&json!(9090), &Value::Null), "{policy:#}");
}

fn assert_owned_and_applied(call: &mock::Call) {
    assert_eq!(call.query("fieldManager").as_deref(), Some("burst-operator"), "{}", call.uri);
    assert_eq!(call.query("force").as_deref(), Some("true"));
    let owner = &call.body["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["uid"].as_str()), (Some("BurstCluster"), Some("uid-c")));
    // Garbage collection deletes what a deleted BurstCluster owned: it must be the controlling owner.
    assert_eq!(owner["controller"], true);
}

/// Expects the status patch; returns the status written.
async fn expect_status(api: &mut ApiServer, bc: &BurstCluster) -> Value {
    let call = api.expect("PATCH", "/apis/burst.dev/v1alpha1/namespaces/jobs/burstclusters/demo/status?").await;
    assert_eq!(call.query("fieldManager").as_deref(), Some("burst-operator"));
    let status = call.body["status"].clone();
    let mut stored = serde_json::to_value(bc).unwrap();
    stored["status"] = status.clone();
    call.reply(StatusCode::OK, stored);
    status
}

fn condition<'a>(status: &'a Value, type_: &str) -> (&'a str, &'a str) {
    let c = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap();
    (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())
}

#[tokio::test]
async fn a_new_cluster_applies_its_owned_objects_and_reports_it_is_starting() {
    let (client, mut api) = mock::client();
    let bc = example();
    let task = tokio::spawn(burst_operator::cluster::reconcile::reconcile(
        Arc::new(bc.clone()),
        context(client, "http://127.0.0.1:1"),
    ));
    let secrets = expect_secrets(&mut api, &mut Stored::new()).await;
    let workers_tls = burst_operator::cluster::tls::data_of(&secrets[2]);
    assert!(workers_tls.contains_key("demo-worker-2.pem") && !workers_tls.contains_key("ca-key.pem"));
    let workers = expect_applies(&mut api, (0, 0)).await;
    assert_eq!(workers.body_replicas(), 3);
    let status = expect_status(&mut api, &bc).await;
    assert_eq!(status["ready"], "0/3");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["endpoint"], "https://demo-controller.jobs.svc:50051");
    assert_eq!(condition(&status, "ControllerReady"), ("False", "Starting"));
    assert_eq!(condition(&status, "WorkersReady"), ("False", "Scaling"));
    // Each condition appeared: one Event each.
    for _ in 0..2 {
        let (type_, ..) = api.expect_event("jobs").await;
        assert_eq!(type_, "Normal");
    }
    assert_eq!(finish(task).await.unwrap(), Action::requeue(Duration::from_secs(15)));
}

trait Replicas {
    fn body_replicas(&self) -> i64;
}

impl Replicas for Value {
    fn body_replicas(&self) -> i64 {
        self["spec"]["replicas"].as_i64().unwrap()
    }
}

/// End to end over the operator's own certificates: the Secrets it writes are mounted (here: written to files)
/// into a real controller and worker, which then speak only mutual TLS; the operator reads the controller's
/// counts with its own client certificate.
#[tokio::test]
async fn a_ready_cluster_reports_its_controllers_counts_over_the_operators_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (client, mut api) = mock::client();
    let mut bc = example();
    bc.spec.workers.replicas = Some(1);
    let url = format!("http://{addr}");
    let task = tokio::spawn(burst_operator::cluster::reconcile::reconcile(Arc::new(bc.clone()), context(client, &url)));
    let secrets = expect_secrets(&mut api, &mut Stored::new()).await;
    // "Mount" the Secrets and start the cluster's pods before the reconcile goes on.
    let (controller_dir, worker_dir) = (dir.path().join("controller"), dir.path().join("worker"));
    mock::mount_secret(&controller_dir, &secrets[1]);
    mock::mount_secret(&worker_dir, &secrets[2]);
    let controller = burst_controller::start(burst_controller::ControllerConfig {
        listen: addr,
        tls: Some(mock::tls_files(&controller_dir, "controller")),
        ..burst_controller::ControllerConfig::default()
    })
    .await
    .unwrap();
    let mut cfg = burst_worker::WorkerConfig::local(&url, "demo-worker-0", 2, 4, dir.path().join("out"));
    cfg.tls = Some(mock::tls_files(&worker_dir, "demo-worker-0"));
    let worker = burst_worker::start(cfg).await.unwrap();
    tokio::time::timeout(mock::DEADLINE, worker.agent.registered()).await.unwrap();

    expect_applies(&mut api, (1, 1)).await;
    let status = expect_status(&mut api, &bc).await;
    assert_eq!(condition(&status, "ControllerReady"), ("True", "Serving"));
    assert_eq!(condition(&status, "WorkersReady"), ("True", "AllReady"));
    assert_eq!((status["slots"].as_str(), status["slotsTotal"].as_i64()), (Some("0/2"), Some(2)));
    assert_eq!((status["queued"].as_i64(), status["running"].as_i64()), (Some(0), Some(0)));
    for _ in 0..2 {
        api.expect_event("jobs").await;
    }
    finish(task).await.unwrap();
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_plaintext_cluster_has_no_secrets_and_a_users_missing_secret_is_retried() {
    let (client, mut api) = mock::client();
    let mut bc = example();
    bc.spec.tls.enabled = Some(false);
    let ctx = context(client, "http://127.0.0.1:1");
    let task = tokio::spawn(burst_operator::cluster::reconcile::reconcile(Arc::new(bc.clone()), ctx.clone()));
    expect_applies_of(&mut api, (0, 0), false).await;
    let status = expect_status(&mut api, &bc).await;
    assert_eq!(status["endpoint"], "http://demo-controller.jobs.svc:50051");
    for _ in 0..2 {
        api.expect_event("jobs").await;
    }
    finish(task).await.unwrap();
    // The user's own Secrets: read, never written; one missing fails the reconcile (retried with backoff).
    let mut bc = example();
    bc.spec.tls.controller_secret = Some("mine-controller".into());
    bc.spec.tls.worker_secret = Some("mine-workers".into());
    bc.spec.tls.operator_secret = Some("mine-operator".into());
    let task = tokio::spawn(burst_operator::cluster::reconcile::reconcile(Arc::new(bc), ctx));
    api.expect("GET", "/api/v1/namespaces/jobs/secrets/mine-controller").await.not_found();
    let error = finish(task).await.unwrap_err();
    assert_eq!(error.reason(), "TlsSecretNotReady");
    assert!(error.to_string().contains("mine-controller"), "{error}");
}

#[tokio::test]
async fn an_invalid_cluster_applies_nothing_and_says_why_with_conditions_and_a_warning() {
    let (client, mut api) = mock::client();
    let mut bc = example();
    bc.spec.workers.replicas = Some(-1);
    let task = tokio::spawn(burst_operator::cluster::reconcile::reconcile(
        Arc::new(bc.clone()),
        context(client, "http://127.0.0.1:1"),
    ));
    let status = expect_status(&mut api, &bc).await;
    assert_eq!(condition(&status, "WorkersReady"), ("False", "InvalidSpec"));
    let message = status["conditions"][0]["message"].as_str().unwrap();
    assert!(message.contains("spec.workers.replicas is -1"), "{message}");
    // One cause, one Event (though both conditions flipped).
    let (type_, reason, note) = api.expect_event("jobs").await;
    assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "InvalidSpec"));
    assert!(note.contains("WorkersReady is False") && note.contains("ControllerReady is False"), "{note}");
    // No hot loop: it waits for the spec to change.
    assert_eq!(finish(task).await.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_secret_of_the_same_name_made_by_someone_else_is_never_taken_over() {
    let (client, mut api) = mock::client();
    let bc = example();
    let task = tokio::spawn(burst_operator::cluster::reconcile::reconcile(
        Arc::new(bc),
        context(client, "http://127.0.0.1:1"),
    ));
    let theirs = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "demo-tls-ca", "namespace": "jobs" },
        "data": { "ca.pem": "c29tZW9uZSBlbHNl" }
    });
    api.expect("GET", "/api/v1/namespaces/jobs/secrets/demo-tls-ca").await.reply(StatusCode::OK, theirs);
    let error = finish(task).await.unwrap_err();
    assert_eq!(error.reason(), "TlsSecretNotReady");
    assert!(error.to_string().contains("demo-tls-ca exists and is not this BurstCluster's"), "{error}");
}

/// Setting `workers.outputVolume` on a running cluster. A StatefulSet cannot take new claim templates in place,
/// so the workers' one is deleted with its pods orphaned (they keep running), and applied again once it is gone
/// (the new one adopts the pods and rolls them). A size the API server wrote back in other units is no change.
#[tokio::test]
async fn an_output_volume_replaces_the_workers_statefulset_while_its_pods_keep_running() {
    let (client, mut api) = mock::client();
    let mut bc = example();
    bc.spec.tls.enabled = Some(false);
    // What runs now: the workers without an output volume, all ready.
    let mut stored = serde_json::to_value(&burst_operator::cluster::desired(&bc).unwrap().workers[0]).unwrap();
    stored["status"] = json!({ "replicas": 3, "readyReplicas": 3 });
    bc.spec.workers.output_volume = Some(OutputVolumeSpec { size: "10Gi".into(), storage_class_name: None });
    // Each step as a fresh operator would take it (one that applied the objects itself reads instead of applying
    // again what has not changed: tests/kube_cluster.rs checks that on a real API server).
    let reconcile = |bc: &BurstCluster| {
        let ctx = context(client.clone(), "http://127.0.0.1:1");
        tokio::spawn(burst_operator::cluster::reconcile::reconcile(Arc::new(bc.clone()), ctx))
    };
    let soon = Action::requeue(Duration::from_secs(2));

    // 1. The claims differ: deleted, orphaning its pods; looked at again soon.
    let task = reconcile(&bc);
    expect_controller(&mut api, 0).await;
    api.expect("GET", WORKERS).await.reply(StatusCode::OK, stored.clone());
    let delete = api.expect("DELETE", WORKERS).await;
    assert_eq!(delete.body["propagationPolicy"], "Orphan", "the pods must keep running");
    let mut going = stored.clone();
    going["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    going["metadata"]["finalizers"] = json!(["orphan"]);
    delete.reply(StatusCode::OK, going.clone());
    expect_policies(&mut api, false).await;
    let status = expect_status(&mut api, &bc).await;
    assert_eq!(condition(&status, "WorkersReady"), ("True", "AllReady"), "the workers still run");
    for _ in 0..2 {
        api.expect_event("jobs").await;
    }
    assert_eq!(finish(task).await.unwrap(), soon);
    bc.status = Some(serde_json::from_value(status).unwrap());

    // 2. Still going (the garbage collector frees its pods first): nothing is applied to it.
    let task = reconcile(&bc);
    expect_controller(&mut api, 0).await;
    api.expect("GET", WORKERS).await.reply(StatusCode::OK, going);
    expect_policies(&mut api, false).await;
    assert_eq!(finish(task).await.unwrap(), soon);

    // 3. Gone: the new StatefulSet, with a claim per pod for /out.
    let task = reconcile(&bc);
    expect_controller(&mut api, 0).await;
    api.expect("GET", WORKERS).await.not_found();
    let applied = expect_workers_apply(&mut api, 3).await;
    let claim = &applied["spec"]["volumeClaimTemplates"][0];
    assert_eq!(
        (&claim["metadata"]["name"], &claim["spec"]["resources"]["requests"]["storage"]),
        (&json!("out"), &json!("10Gi"))
    );
    expect_policies(&mut api, false).await;
    assert_eq!(finish(task).await.unwrap(), Action::requeue(Duration::from_secs(15)));

    // 4. Stored with the size in other units: the same claims, so an ordinary apply.
    let mut stored = applied;
    stored["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = json!("10240Mi");
    let task = reconcile(&bc);
    expect_controller(&mut api, 0).await;
    api.expect("GET", WORKERS).await.reply(StatusCode::OK, stored);
    expect_workers_apply(&mut api, 3).await;
    expect_policies(&mut api, false).await;
    assert_eq!(finish(task).await.unwrap(), Action::requeue(Duration::from_secs(15)));
}
