//! The operator's leader election on a real API server (see `apiserver/`), each replica a `burst operator`
//! process with the chart's ServiceAccount: a killed leader is replaced once its lease expires; a leader cut off
//! from the API server stops on its own before its lease can expire, so two replicas never lead at once; and a
//! rolling update of the chart's Deployment hands the Lease from the old pod to the new one without waiting for
//! it to expire.
//!
//! The tests run one at a time ([`ONE_AT_A_TIME`]): each bounds a handover by a few seconds, and three control
//! planes at once on a small machine would measure the machine instead.

mod apiserver;

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use apiserver::proxy::Proxy;
use apiserver::{ControlPlane, DEADLINE, Operator, eventually, http_get, install_chart};
use burst_operator::leader::{LEASE_DURATION, RETRY};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/burst");
/// What the chart names the Lease, the Deployment and the ServiceAccount.
const NAME: &str = "burst-operator";
const NS: &str = "burst-system";
/// Slack for the machine on top of the protocol's own delays (a loaded CI runner, a 100 ms poll).
const SLACK: Duration = Duration::from_secs(3);

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn leases(client: &Client) -> Api<Lease> {
    Api::namespaced(client.clone(), NS)
}

/// Who holds the Lease now (`None` if nobody, or if it does not exist yet).
async fn holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt(NAME).await.ok().flatten()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

async fn wait_for_holder(leases: &Api<Lease>, limit: Duration, who: &str) {
    eventually(limit, &format!("{who} to hold the Lease"), || async {
        (holder(leases).await.as_deref() == Some(who)).then_some(())
    })
    .await;
}

/// Waits until `op` serves /readyz and logged that it stands by; fails if it leads.
async fn wait_standing_by(op: &Operator) {
    eventually(DEADLINE, &format!("{} to stand by", op.identity), || async {
        let ready = http_get(op.http, "/readyz").await.is_some_and(|(status, _)| status == 200);
        (ready && op.logs().contains("standing by")).then_some(())
    })
    .await;
    assert_eq!(op.metric("burst_operator_leader", "").await, Some(0.0), "{} does not lead", op.identity);
}

/// Waits (polling, up to `limit`) until `child` exits.
async fn exited(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} still runs after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The timestamp at the start of the first line of `logs` containing `needle` (tracing's RFC 3339 UTC).
fn logged_at(logs: &str, needle: &str) -> Timestamp {
    let line = logs.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in:\n{logs}"));
    let stamp = line.split_whitespace().next().unwrap();
    stamp.parse().unwrap_or_else(|e| panic!("{stamp:?} in {line:?}: {e}"))
}

/// What the elector logs when it takes the Lease (its message, then its first field).
const LEADING: &str = "leading identity=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_hands_over_within_the_lease_duration() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(plane) = ControlPlane::start("leader handover after a kill").await else { return };
    let sa = install_chart(&plane, &[]).await;
    let leases = leases(&plane.admin().await);
    let mut a = Operator::start(&plane, &sa, "operator-a", &[]);
    wait_for_holder(&leases, DEADLINE, "operator-a").await;
    let b = Operator::start(&plane, &sa, "operator-b", &[]);
    wait_standing_by(&b).await;
    assert_eq!(a.metric("burst_operator_leader", "").await, Some(1.0), "a leads");
    assert_eq!(holder(&leases).await.as_deref(), Some("operator-a"), "b left a's lease alone");

    a.child.kill().unwrap();
    let killed = Instant::now();
    a.child.wait().unwrap();
    // The lease runs out LEASE_DURATION after a's last renewal (before the kill); b looks every RETRY.
    let bound = LEASE_DURATION + RETRY + SLACK;
    wait_for_holder(&leases, bound + SLACK, "operator-b").await;
    let handover = killed.elapsed();
    println!("leader killed: operator-b took the Lease {:.1} s later", handover.as_secs_f64());
    assert!(handover <= bound, "handover took {handover:?}, more than {bound:?}");
    eventually(Duration::from_secs(5), "b's leader gauge", || async {
        (b.metric("burst_operator_leader", "").await == Some(1.0)).then_some(())
    })
    .await;
    b.assert_never_forbidden();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_can_expire() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(plane) = ControlPlane::start("a leader cut off from the API server").await else { return };
    let sa = install_chart(&plane, &[]).await;
    let leases = leases(&plane.admin().await);
    // a reaches the API server only through the proxy; b directly.
    let upstream = plane.url.trim_start_matches("https://").parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let through_proxy = plane.dir.path().join("operator-a-proxied.kubeconfig");
    let text = std::fs::read_to_string(&sa).unwrap().replace(&plane.url, &format!("https://{}", proxy.addr));
    std::fs::write(&through_proxy, text).unwrap();
    let mut a = Operator::start(&plane, &through_proxy, "operator-a", &[]);
    wait_for_holder(&leases, DEADLINE, "operator-a").await;
    let b = Operator::start(&plane, &sa, "operator-b", &[]);
    wait_standing_by(&b).await;

    proxy.black_hole();
    let cut = Instant::now();
    // a's renewals hang; it stops at most LEASE_DURATION - MARGIN after the start of its last good one.
    let status = exited(&mut a.child, LEASE_DURATION + SLACK, "the cut-off leader").await;
    println!("cut off: operator-a exited {:.1} s later ({status})", cut.elapsed().as_secs_f64());
    assert!(!status.success(), "losing the Lease is a failure (its pod restarts as a standby): {status}");
    let a_logs = a.logs();
    assert!(a_logs.contains("lost the leader Lease"), "{a_logs}");
    wait_for_holder(&leases, LEASE_DURATION + RETRY + SLACK, "operator-b").await;
    println!("cut off: operator-b took the Lease {:.1} s after the cut", cut.elapsed().as_secs_f64());

    // Never two leaders: a had stopped before b started leading (one machine, one clock).
    let stopped = logged_at(&a_logs, "stopping before");
    println!("operator-a: {}", a_logs.lines().find(|l| l.contains("stopping before")).unwrap());
    let leading = logged_at(&b.logs(), LEADING);
    let gap = stopped.duration_until(leading);
    println!("operator-a stopped at {stopped}, operator-b led at {leading}: {:.3} s apart", gap.as_secs_f64());
    assert!(stopped < leading, "a stopped at {stopped}, after b led at {leading}");
    b.assert_never_forbidden();
}

/// The operator Deployment's pods, by name.
async fn operator_pods(client: &Client, selector: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let list = pods.list(&ListParams::default().labels(selector)).await.unwrap();
    list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(|p| p.name_any()).collect()
}

/// Starts the operator as pod `pod`'s container and, once it serves /readyz, marks the pod Ready, as a kubelet
/// would after its readiness probe.
async fn start_in_pod(plane: &ControlPlane, sa: &std::path::Path, pod: &str) -> Operator {
    let op = Operator::start(plane, sa, pod, &[]);
    eventually(DEADLINE, &format!("{pod} to answer /readyz"), || async {
        http_get(op.http, "/readyz").await.filter(|(status, _)| *status == 200)
    })
    .await;
    plane.pod_ready(NS, pod).await;
    op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_of_the_operator_completes_with_leader_election_on() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(plane) = ControlPlane::start("a rolling update with leader election").await else { return };
    let sa = install_chart(&plane, &[]).await;
    let admin = plane.admin().await;
    let leases = leases(&admin);
    let deployment: Deployment =
        serde_json::from_str(&plane.kubectl(&["get", "deployment", NAME, "-n", NS, "-o", "json"])).unwrap();
    let labels = deployment.spec.selector.match_labels.unwrap();
    let selector = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");

    // 1. The Deployment's one pod, its container standing in as "old", leads.
    let old_pod = eventually(DEADLINE, "the operator's pod", || async {
        let pods = operator_pods(&admin, &selector).await;
        (pods.len() == 1).then(|| pods[0].clone())
    })
    .await;
    let mut old = start_in_pod(&plane, &sa, &old_pod).await;
    wait_for_holder(&leases, DEADLINE, &old_pod).await;

    // 2. A new pod template: the Deployment controller surges a new pod, and waits for it to be Ready.
    let out = plane.helm(&[
        "upgrade",
        "burst",
        CHART,
        "-n",
        NS,
        "--reuse-values",
        // An annotation's value is a string; `--set` would make 2 a number, which the API server refuses.
        "--set-string",
        "podAnnotations.rollout=2",
    ]);
    assert!(out.status.success(), "helm upgrade: {}", String::from_utf8_lossy(&out.stderr));
    let new_pod = eventually(DEADLINE, "the new pod", || async {
        operator_pods(&admin, &selector).await.into_iter().find(|p| *p != old_pod)
    })
    .await;
    let new = start_in_pod(&plane, &sa, &new_pod).await;
    wait_standing_by(&new).await;
    assert_eq!(holder(&leases).await.as_deref(), Some(old_pod.as_str()), "the old pod still leads");

    // 3. The new pod Ready, the old ReplicaSet is scaled down; once its pod is gone, its container gets SIGTERM.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    eventually(DEADLINE, "the old pod deleted", || async {
        pods.get_opt(&old_pod).await.unwrap().is_none().then_some(())
    })
    .await;
    // SAFETY: kill(2) on our own child, which has not been reaped (so its pid is still its).
    assert_eq!(unsafe { libc::kill(old.child.id() as i32, libc::SIGTERM) }, 0);
    let terminated = Instant::now();

    // 4. The old one hands the Lease back and exits cleanly; the new one takes it within RETRY.
    let bound = RETRY + SLACK;
    wait_for_holder(&leases, bound + SLACK, &new_pod).await;
    let handover = terminated.elapsed();
    println!("rolling update: the new pod led {:.1} s after SIGTERM to the old", handover.as_secs_f64());
    assert!(handover <= bound, "handover took {handover:?}, more than {bound:?} (the lease was not handed back?)");
    let status = exited(&mut old.child, Duration::from_secs(10), "the old operator").await;
    assert!(status.success(), "a SIGTERM is a clean stop: {status}\n{}", old.logs());
    assert!(old.logs().contains("lease handed back"), "{}", old.logs());
    let out = plane.kubectl_as(
        &plane.admin_kubeconfig,
        &["rollout", "status", &format!("deployment/{NAME}"), "-n", NS, "--timeout=60s"],
    );
    assert!(
        out.status.success(),
        "rollout status: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(5), "the new pod's leader gauge", || async {
        (new.metric("burst_operator_leader", "").await == Some(1.0)).then_some(())
    })
    .await;
    new.assert_never_forbidden();
}
