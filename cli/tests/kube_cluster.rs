//! The BurstCluster reconciler on a real API server (see `apiserver/`), run as `burst operator` with exactly the
//! chart's RBAC (its ServiceAccount's token, never the administrator's), in all-namespaces and in
//! `watchNamespaces` mode: children with owner references, status following the pods' readiness, scaling, a
//! refused change shown as a condition and a Warning Event, no writes and few reconciles while nothing changes,
//! and garbage collection once the BurstCluster is deleted. Any call the API server refuses for RBAC fails the
//! test.

mod apiserver;

use std::collections::BTreeMap;
use std::time::Duration;

use apiserver::{ControlPlane, DEADLINE, Operator, eventually, install_chart};
use burst_operator::crd::BurstCluster;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/burstcluster.yaml");

/// Every object the example BurstCluster `demo` owns, as (kind, name) → resourceVersion; absent ones left out.
async fn children(client: &Client, ns: &str) -> BTreeMap<(&'static str, String), (String, Vec<String>)> {
    let mut found = BTreeMap::new();
    macro_rules! look {
        ($kind:ty, $label:expr, $names:expr) => {
            for name in $names {
                if let Some(obj) = Api::<$kind>::namespaced(client.clone(), ns).get_opt(name).await.unwrap() {
                    let owners = obj.owner_references().iter().map(|o| format!("{}/{}", o.kind, o.name)).collect();
                    found.insert(($label, name.to_string()), (obj.resource_version().unwrap_or_default(), owners));
                }
            }
        };
    }
    look!(ConfigMap, "ConfigMap", ["demo-config"]);
    look!(Service, "Service", ["demo-controller"]);
    look!(StatefulSet, "StatefulSet", ["demo-controller", "demo-worker"]);
    look!(Secret, "Secret", ["demo-tls-ca", "demo-controller-tls", "demo-worker-tls"]);
    look!(NetworkPolicy, "NetworkPolicy", ["demo-controller", "demo-worker"]);
    found
}

/// Marks every pod of `demo` Ready (as a kubelet would: there is none) and returns how many there are.
async fn make_pods_ready(plane: &ControlPlane, client: &Client, ns: &str) -> usize {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default().labels("burst.dev/cluster=demo")).await.unwrap();
    for pod in &list.items {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            plane.pod_ready(ns, &pod.name_any()).await;
        }
    }
    list.items.len()
}

/// `kubectl patch bc demo --type merge -p <patch>`, as a user edits the cluster.
fn edit(plane: &ControlPlane, ns: &str, patch: &str) {
    plane.kubectl(&["patch", "bc", "demo", "-n", ns, "--type", "merge", "-p", patch]);
}

fn condition(bc: &BurstCluster, type_: &str) -> Option<(String, String, String)> {
    let c = bc.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn reconciles(op: &Operator) -> f64 {
    op.metric("burst_operator_reconciles_total", "kind=\"BurstCluster\"").await.unwrap_or(0.0)
}

/// The whole life of the example BurstCluster in `ns`, reconciled by `op`.
async fn a_cluster_lives_and_goes(plane: &ControlPlane, op: &Operator, ns: &str) {
    let admin = plane.admin().await;
    let clusters: Api<BurstCluster> = Api::namespaced(admin.clone(), ns);
    plane.kubectl(&["apply", "-n", ns, "-f", EXAMPLE]);
    let bc = clusters.get("demo").await.unwrap();
    let owner = format!("BurstCluster/{}", bc.name_any());

    // 1. Every child, owned by the BurstCluster (so the garbage collector can remove it).
    let all = eventually(DEADLINE, "the cluster's children", || async {
        let c = children(&admin, ns).await;
        (c.len() == 9).then_some(c)
    })
    .await;
    for ((kind, name), (_, owners)) in &all {
        assert_eq!(owners, std::slice::from_ref(&owner), "{kind} {name} is owned by the BurstCluster");
    }

    // 2. The status follows the pods as they become Ready (the StatefulSet controller makes them).
    let bc = eventually(DEADLINE, "3/3 workers ready", || async {
        make_pods_ready(plane, &admin, ns).await;
        let bc = clusters.get("demo").await.unwrap();
        (condition(&bc, "WorkersReady").is_some_and(|c| c.0 == "True")).then_some(bc)
    })
    .await;
    let status = bc.status.clone().unwrap();
    assert_eq!((status.ready.as_deref(), status.ready_workers, status.desired_workers), (Some("3/3"), 3, 3));
    // The controller's pod is Ready, but nothing serves at its Service's address on this machine.
    let (_, reason, _) = eventually(DEADLINE, "the controller's condition", || async {
        condition(&clusters.get("demo").await.unwrap(), "ControllerReady").filter(|c| c.1 != "Starting")
    })
    .await;
    assert_eq!(reason, "ControllerUnreachable");

    // 3. Scaling changes the workers' StatefulSet and the status.
    edit(plane, ns, r#"{"spec":{"workers":{"replicas":1}}}"#);
    let sts: Api<StatefulSet> = Api::namespaced(admin.clone(), ns);
    eventually(DEADLINE, "the workers scaled to 1", || async {
        let replicas = sts.get("demo-worker").await.unwrap().spec.replicas;
        let desired = clusters.get("demo").await.unwrap().status.map(|s| s.desired_workers);
        (replicas == Some(1) && desired == Some(1)).then_some(())
    })
    .await;

    // 3b. A pool is a StatefulSet of its own, its pods in the pool and in the workers' TLS Secret; a pool taken out
    // of the spec takes its StatefulSet along.
    edit(plane, ns, r#"{"spec":{"pools":[{"name":"spot","cost":0.5,"replicas":2,"slots":3}]}}"#);
    let spot = eventually(DEADLINE, "the pool's StatefulSet", || async {
        let desired = clusters.get("demo").await.unwrap().status.map(|s| s.desired_workers);
        let spot = sts.get_opt("demo-worker-spot").await.unwrap();
        spot.filter(|_| desired == Some(3))
    })
    .await;
    assert_eq!(spot.spec.replicas, Some(2));
    assert_eq!(spot.owner_references().iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["demo"]);
    let template = spot.spec.template.spec.clone().unwrap();
    let env = template.containers[0].env.clone().unwrap();
    let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
    assert_eq!((value("BURST_POOL").as_deref(), value("BURST_SLOTS").as_deref()), (Some("spot"), Some("3")));
    let config = Api::<ConfigMap>::namespaced(admin.clone(), ns).get("demo-config").await.unwrap();
    let file = &config.data.unwrap()["burst.toml"];
    assert!(file.contains("[[controller.pools]]\nname = \"spot\"\ncost = 0.5"), "{file}");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    eventually(DEADLINE, "certificates for the pool's pods", || async {
        let data = secrets.get("demo-worker-tls").await.unwrap().data.unwrap_or_default();
        (data.contains_key("demo-worker-spot-1.pem") && data.contains_key("demo-worker-0.pem")).then_some(())
    })
    .await;
    edit(plane, ns, r#"{"spec":{"pools":null}}"#);
    eventually(DEADLINE, "the pool's StatefulSet gone", || async {
        let desired = clusters.get("demo").await.unwrap().status.map(|s| s.desired_workers);
        let gone =
            sts.get_opt("demo-worker-spot").await.unwrap().is_none_or(|s| s.metadata.deletion_timestamp.is_some());
        (gone && desired == Some(1)).then_some(())
    })
    .await;

    // 3c. A client listed in spec.tls.clients gets a Secret with its own certificate (never the CA's key), named
    // in the status; taken out of the list, its Secret goes.
    edit(plane, ns, r#"{"spec":{"tls":{"clients":[{"name":"alice","role":"submit"}]}}}"#);
    let alice = eventually(DEADLINE, "alice's certificate", || async {
        let listed = clusters.get("demo").await.unwrap().status.map(|s| s.client_secrets);
        let secret = secrets.get_opt("demo-client-alice").await.unwrap();
        secret.filter(|_| listed.as_deref() == Some(&["demo-client-alice".to_string()][..]))
    })
    .await;
    assert_eq!(alice.owner_references().iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["demo"]);
    let data = alice.data.unwrap();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ca.pem", "client-key.pem", "client.pem", "issuer.pem"]
    );
    let identity = burst_proto::tls::issue::identity_of_pem(&data["client.pem"].0);
    assert_eq!(identity, Some(("alice".to_string(), "submit".to_string())));
    let ca = secrets.get("demo-tls-ca").await.unwrap().data.unwrap();
    assert_eq!(data["ca.pem"], ca["ca.pem"]);
    // As `kubectl burst` (the binary named kubectl-burst), the user's kubeconfig finds the cluster and alice's
    // Secret; the port-forward is refused here (no kubelet: the pod has no node), and says so in one line.
    let plugin = apiserver::KubectlBurst::new(&plane.admin_kubeconfig);
    let kubectl_burst = |args: &[&str]| {
        let (code, _, err) = plugin.run(args);
        (code, err)
    };
    let (code, err) = kubectl_burst(&["-n", ns, "workers"]);
    println!("kubectl burst workers, no kubelet: {err}");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("burst: port-forward to pod demo-controller-0: ") && !err.contains('\n'), "{err}");
    let (code, err) = kubectl_burst(&["-n", ns, "--identity", "eve", "workers"]);
    assert_eq!(
        (code, err.as_str()),
        (Some(2), "burst: BurstCluster demo has no client eve in spec.tls.clients (it has alice)")
    );
    let (code, err) = kubectl_burst(&["-n", "default", "workers"]);
    assert_eq!(
        (code, err.as_str()),
        (Some(2), "burst: no BurstCluster in namespace default (-n NAMESPACE to look elsewhere)")
    );
    edit(plane, ns, r#"{"spec":{"tls":{"clients":null}}}"#);
    eventually(DEADLINE, "alice's Secret gone", || async {
        let gone = secrets.get_opt("demo-client-alice").await.unwrap().is_none();
        let listed = clusters.get("demo").await.unwrap().status.map(|s| s.client_secrets.is_empty());
        (gone && listed == Some(true)).then_some(())
    })
    .await;

    // 4. Idle: nothing is written, and the cluster is reconciled only by its refresh.
    let settle = eventually(DEADLINE, "the cluster to settle", || async {
        let before = children(&admin, ns).await;
        let bc_version = clusters.get("demo").await.unwrap().resource_version();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let quiet = children(&admin, ns).await == before
            && clusters.get("demo").await.unwrap().resource_version() == bc_version;
        quiet.then_some(before)
    })
    .await;
    let bc_version = clusters.get("demo").await.unwrap().resource_version();
    let (start, counted_from) = (reconciles(op).await, std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (count, window) = (reconciles(op).await - start, counted_from.elapsed());
    let per_minute = count * 60.0 / window.as_secs_f64();
    println!("idle BurstCluster: {count} reconciles in {window:?} = {per_minute:.1} per minute");
    assert_eq!(children(&admin, ns).await, settle, "an unchanged cluster's children are not written");
    assert_eq!(clusters.get("demo").await.unwrap().resource_version(), bc_version, "nor its status");
    assert!(count <= apiserver::refreshes_in(window), "an idle cluster is reconciled only by its refresh: {count}");

    // 5. A change the API server refuses (a StatefulSet's claim templates cannot change) is shown, not swallowed.
    // The workers are scaled in the same edit: what the API server takes is still applied.
    let grow = r#"{"spec":{"controller":{"persistence":{"size":"2Gi"}},"workers":{"replicas":2}}}"#;
    edit(plane, ns, grow);
    let (_, reason, message) = eventually(DEADLINE, "a Reconciled=False condition", || async {
        condition(&clusters.get("demo").await.unwrap(), "Reconciled").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(reason, "ApplyRefused");
    assert!(message.contains("demo-controller") && message.contains("Forbidden"), "{message}");
    assert_eq!(sts.get("demo-worker").await.unwrap().spec.replicas, Some(2), "scaling is not held up by the refusal");
    let events: Api<Event> = Api::namespaced(admin.clone(), ns);
    eventually(DEADLINE, "a Warning Event", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("ApplyRefused"))
    })
    .await;
    // Undone, the cluster is reconciled again.
    edit(plane, ns, r#"{"spec":{"controller":{"persistence":{"size":"1Gi"}}}}"#);
    eventually(DEADLINE, "Reconciled=True again", || async {
        condition(&clusters.get("demo").await.unwrap(), "Reconciled").filter(|c| c.0 == "True")
    })
    .await;

    // 6. Deleting the BurstCluster leaves none of its children, and none of its pods.
    plane.kubectl(&["delete", "bc", "demo", "-n", ns]);
    eventually(DEADLINE, "the children garbage-collected", || async {
        let pods = Api::<Pod>::namespaced(admin.clone(), ns)
            .list(&ListParams::default().labels("burst.dev/cluster=demo"))
            .await
            .unwrap();
        (children(&admin, ns).await.is_empty() && pods.items.is_empty()).then_some(())
    })
    .await;
    op.assert_never_forbidden();
    assert!(bc.meta().uid.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_all_namespaces_a_burstcluster_is_reconciled_with_the_charts_rbac() {
    let Some(plane) = ControlPlane::start("BurstCluster on a real API server, all namespaces").await else { return };
    let sa = install_chart(&plane, &["--set", "leaderElection.enabled=false"]).await;
    plane.namespace("jobs").await;
    let op = Operator::start(&plane, &sa, "op-all", &["--leader-elect=false"]);
    a_cluster_lives_and_goes(&plane, &op, "jobs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_namespaces_a_burstcluster_is_reconciled_with_the_charts_roles() {
    let Some(plane) = ControlPlane::start("BurstCluster on a real API server, watchNamespaces").await else { return };
    for ns in ["team-a", "team-b"] {
        plane.namespace(ns).await;
    }
    let sa = install_chart(&plane, &["--set", "watchNamespaces={team-a}"]).await;
    let op = Operator::start(&plane, &sa, "op-team-a", &["--namespaces", "team-a"]);
    eventually(DEADLINE, "the operator to lead", || async {
        (op.metric("burst_operator_leader", "").await == Some(1.0)).then_some(())
    })
    .await;
    // A BurstCluster outside the watched namespaces is left alone (and the operator may not read it anyway).
    plane.kubectl(&["apply", "-n", "team-b", "-f", EXAMPLE]);
    a_cluster_lives_and_goes(&plane, &op, "team-a").await;
    assert!(children(&plane.admin().await, "team-b").await.is_empty(), "team-b is not watched");
}
