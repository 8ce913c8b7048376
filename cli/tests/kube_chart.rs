//! The Helm chart on a real API server (see `apiserver/`): `helm install` succeeds, the CRDs are established,
//! kubectl prints the BurstCluster and BurstJob printer columns, refuses a value outside a field's set, and
//! scales a BurstCluster's workers through its scale subresource.

mod apiserver;

use apiserver::{ControlPlane, install_chart};

#[tokio::test]
async fn helm_install_puts_the_crds_and_the_operator_in_a_real_cluster() {
    let test = "helm install on a real API server";
    let Some(plane) = ControlPlane::start(test).await else { return };
    if apiserver::user_tool("helm").is_none() {
        return burst_proto::testing::missing_tool(test, "helm not found (run .ci/install-helm)");
    }
    install_chart(&plane, &[]).await;
    let deployment = plane.kubectl(&["get", "deployment", "-n", "burst-system", "burst-operator", "-o", "json"]);
    let deployment: serde_json::Value = serde_json::from_str(&deployment).unwrap();
    assert_eq!(deployment["spec"]["template"]["spec"]["serviceAccountName"], "burst-operator");

    plane.namespace("jobs").await;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples");
    for file in ["burstcluster.yaml", "burstjob.yaml", "burstjobs.yaml"] {
        plane.kubectl(&["apply", "-n", "jobs", "-f", &format!("{examples}/{file}")]);
    }
    let clusters = plane.kubectl(&["get", "bc", "-n", "jobs"]);
    let header: Vec<&str> = clusters.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "SLOTS", "QUEUED", "RUNNING", "ROUTER", "AGE"], "{clusters}");
    assert!(clusters.contains("demo") && clusters.contains("power2"), "{clusters}");
    let jobs = plane.kubectl(&["get", "bj", "-n", "jobs"]);
    let header: Vec<&str> = jobs.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "WORKER", "ATTEMPTS", "EXIT", "AGE"], "{jobs}");
    assert_eq!(jobs.lines().count(), 5, "hello, echo, python, exit-3: {jobs}");

    // A typo in an example is refused by the API server's schema, not stored.
    let bad = "apiVersion: burst.dev/v1alpha1\nkind: BurstJob\nmetadata: {name: bad}\nspec: {process: {command: /bin/true}}\n";
    let path = plane.dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let out = plane.kubectl_as(&plane.admin_kubeconfig, &["apply", "-n", "jobs", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success(), "a BurstJob without clusterRef is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("clusterRef"), "{}", String::from_utf8_lossy(&out.stderr));

    // A router that does not exist is refused by the schema's enum, naming the values it takes.
    let bad = "apiVersion: burst.dev/v1alpha1\nkind: BurstCluster\nmetadata: {name: typo}\nspec: {image: burst:local, controller: {router: fastest}}\n";
    std::fs::write(&path, bad).unwrap();
    let out = plane.kubectl_as(&plane.admin_kubeconfig, &["apply", "-n", "jobs", "-f", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("roundrobin"), "an unknown router is refused: {err}");

    // `kubectl scale` sets the workers' replicas through the scale subresource.
    let out = plane.kubectl_as(&plane.admin_kubeconfig, &["scale", "-n", "jobs", "bc/demo", "--replicas=5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replicas = plane.kubectl(&["get", "bc", "demo", "-n", "jobs", "-o", "jsonpath={.spec.workers.replicas}"]);
    assert_eq!(replicas.trim(), "5");
}
