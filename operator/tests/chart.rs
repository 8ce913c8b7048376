//! The Helm chart (charts/burst): its CRDs are the generated ones, `helm lint` passes, and what `helm template`
//! renders keeps RBAC least-privilege (exact verbs, no wildcards) and the operator's pod within the `restricted`
//! Pod Security Standard, and an optional BurstCluster is a valid resource. Its Grafana dashboard queries only
//! metrics burst exports, and it and the Prometheus Operator monitors render only when enabled, pointing at the
//! ports and labels the operator gives the pods.
//!
//! helm comes from `.ci/install-helm` (target/tools/bin/helm) or PATH; without it the helm tests print why they
//! skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use burst_proto::testing::missing_tool;
use serde::Deserialize;
use serde_yaml::Value;

const NAMESPACE: &str = "burst-system";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    root().join("charts/burst")
}

/// Watched namespaces team-a and team-b, no leader election, a BurstCluster with persistence.
fn other_values() -> PathBuf {
    chart().join("ci/namespaced-values.yaml")
}

/// The ServiceMonitor, PodMonitor and Grafana dashboard on, with extra labels and namespaces of their own.
fn monitoring_values() -> PathBuf {
    chart().join("ci/monitoring-values.yaml")
}

/// The helm binary, or None after [`missing_tool`] said why `test` cannot run (under CI it fails instead).
fn helm(test: &str) -> Option<PathBuf> {
    let local = root().join("target/tools/bin/helm");
    if local.is_file() {
        return Some(local);
    }
    if Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from("helm"));
    }
    missing_tool(test, "helm not found (run .ci/install-helm)");
    None
}

/// Runs helm with its config, cache and data in a scratch directory, so nothing outside the test is read.
fn run_helm(helm: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(helm)
        .args(args)
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `helm template` with the chart's defaults and these values files: every non-empty document.
fn render(helm: &Path, values: &[&Path]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "burst", chart.to_str().unwrap(), "--namespace", NAMESPACE];
    for values in values {
        args.extend(["--values", values.to_str().unwrap()]);
    }
    let output = run_helm(helm, &args);
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind_of(d) == kind).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().into_iter().flatten().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// A role's rules as "group/resource" -> verbs ("core" for the core group).
fn permissions(role: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_sequence().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            let group = if group.is_empty() { "core".to_string() } else { group };
            for resource in strings(&rule["resources"]) {
                out.entry(format!("{group}/{resource}")).or_default().extend(strings(&rule["verbs"]));
            }
        }
    }
    out
}

/// "group/resource" -> space-separated verbs, as `permissions` returns them.
fn grants(entries: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    entries.iter().map(|(r, verbs)| (r.to_string(), verbs.split(' ').map(str::to_string).collect())).collect()
}

/// What the operator may do wherever it watches, exactly.
fn operator_grants() -> BTreeMap<String, BTreeSet<String>> {
    grants(&[
        ("burst.dev/burstclusters", "get list watch patch"),
        ("burst.dev/burstjobs", "get list watch patch delete"),
        ("burst.dev/burstclusters/status", "get patch"),
        ("burst.dev/burstjobs/status", "get patch"),
        ("core/configmaps", "get list watch create patch"),
        ("core/services", "get list watch create patch"),
        ("apps/deployments", "get list watch create patch delete"),
        ("apps/statefulsets", "get list watch create patch delete"),
        ("networking.k8s.io/networkpolicies", "get create patch delete"),
        ("core/secrets", "get create patch delete"),
        ("events.k8s.io/events", "create patch"),
    ])
}

fn leader_election_grants() -> BTreeMap<String, BTreeSet<String>> {
    grants(&[("coordination.k8s.io/leases", "get create update")])
}

/// Every `*` in a Role's or ClusterRole's rules, as "kind name: field".
fn wildcards(docs: &[Value]) -> Vec<String> {
    let roles = docs.iter().filter(|d| matches!(kind_of(d), "Role" | "ClusterRole"));
    let mut found = Vec::new();
    for role in roles {
        for rule in role["rules"].as_sequence().unwrap() {
            for field in ["apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"] {
                if strings(&rule[field]).iter().any(|s| s.contains('*')) {
                    found.push(format!("{} {}: {field}", kind_of(role), role["metadata"]["name"].as_str().unwrap()));
                }
            }
        }
    }
    found
}

fn operator_deployment(docs: &[Value]) -> &Value {
    let deployments = of_kind(docs, "Deployment");
    assert_eq!(deployments.len(), 1, "one Deployment, the operator's");
    deployments[0]
}

/// Why a pod spec would not pass the `restricted` Pod Security Standard (the parts a chart controls).
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host].as_bool() == Some(true) {
            out.push(format!("{host} is true"));
        }
    }
    if pod["securityContext"]["runAsNonRoot"].as_bool() != Some(true) {
        out.push("pod runAsNonRoot is not true".into());
    }
    if pod["securityContext"]["seccompProfile"]["type"].as_str() != Some("RuntimeDefault") {
        out.push("pod seccompProfile is not RuntimeDefault".into());
    }
    let allowed = ["configMap", "emptyDir", "projected", "secret", "downwardAPI", "persistentVolumeClaim"];
    for volume in pod["volumes"].as_sequence().into_iter().flatten() {
        let kinds = volume.as_mapping().unwrap().keys().filter_map(Value::as_str).filter(|k| *k != "name");
        out.extend(kinds.filter(|k| !allowed.contains(k)).map(|k| format!("volume of type {k}")));
    }
    for container in pod["containers"].as_sequence().unwrap() {
        out.extend(container_violations(container, &pod["securityContext"]));
    }
    out
}

/// The restricted Pod Security Standard for one container; `runAsNonRoot`, `runAsUser` and `seccompProfile` may
/// come from the pod's security context (`pod_sc`), as the standard allows.
fn container_violations(container: &Value, pod_sc: &Value) -> Vec<String> {
    let name = container["name"].as_str().unwrap_or("?");
    let sc = &container["securityContext"];
    let either = |key: &str| if sc[key].is_null() { pod_sc[key].clone() } else { sc[key].clone() };
    let mut out = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            out.push(format!("container {name}: {what}"));
        }
    };
    want(either("runAsNonRoot").as_bool() == Some(true), "runAsNonRoot is not true");
    // A user, if set, is not root; unset, the image's (65534) or the platform's (OpenShift) applies.
    want(either("runAsUser").as_i64() != Some(0), "runAsUser is 0");
    want(sc["readOnlyRootFilesystem"].as_bool() == Some(true), "readOnlyRootFilesystem is not true");
    want(sc["allowPrivilegeEscalation"].as_bool() == Some(false), "allowPrivilegeEscalation is not false");
    want(sc["privileged"].as_bool() != Some(true), "privileged");
    want(strings(&sc["capabilities"]["drop"]) == ["ALL"], "capabilities do not drop ALL");
    want(sc["capabilities"]["add"].is_null(), "capabilities added");
    want(either("seccompProfile")["type"].as_str() == Some("RuntimeDefault"), "seccompProfile is not RuntimeDefault");
    let host_port = container["ports"].as_sequence().into_iter().flatten().any(|p| !p["hostPort"].is_null());
    want(!host_port, "hostPort");
    out
}

/// The value of an environment variable taken from the downward API.
fn field_ref<'a>(container: &'a Value, env: &str) -> Option<&'a str> {
    let var = container["env"].as_sequence()?.iter().find(|e| e["name"].as_str() == Some(env))?;
    var["valueFrom"]["fieldRef"]["fieldPath"].as_str()
}

/// The Lease's name, as the operator is told it.
fn lease_name(docs: &[Value]) -> String {
    let env = &operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]["env"];
    let var = env.as_sequence().unwrap().iter().find(|e| e["name"].as_str() == Some("BURST_OPERATOR_LEASE_NAME"));
    var.and_then(|v| v["value"].as_str()).expect("BURST_OPERATOR_LEASE_NAME with leader election").to_string()
}

/// Reading and renewing a Lease is limited to the operator's own (a create cannot be limited by name).
fn check_lease_names(role: &Value, lease: &str) {
    for rule in role["rules"].as_sequence().unwrap() {
        if strings(&rule["verbs"]).iter().any(|v| v != "create") {
            assert_eq!(strings(&rule["resourceNames"]), [lease], "{rule:?}");
        }
    }
}

/// The operator's pod is restricted, keeps its API token, and runs `burst operator` with its HTTP port probed.
fn check_operator_pod(docs: &[Value]) -> Vec<String> {
    let pod = &operator_deployment(docs)["spec"]["template"]["spec"];
    assert_eq!(restricted_violations(pod), Vec::<String>::new(), "the operator's pod is not restricted");
    assert_ne!(pod["automountServiceAccountToken"].as_bool(), Some(false), "the operator needs its API token");
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(field_ref(container, "POD_NAME"), Some("metadata.name"));
    assert_eq!(field_ref(container, "POD_NAMESPACE"), Some("metadata.namespace"));
    let args = strings(&container["args"]);
    assert_eq!(args[..3], ["operator", "--http-listen", "0.0.0.0:8080"], "operator args: {args:?}");
    args
}

/// Every binding names a role of the release and the operator's ServiceAccount in the release's namespace.
fn check_bindings(docs: &[Value]) {
    let account = operator_deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap();
    assert_eq!(of_kind(docs, "ServiceAccount")[0]["metadata"]["name"].as_str(), Some(account));
    for binding in docs.iter().filter(|d| matches!(kind_of(d), "RoleBinding" | "ClusterRoleBinding")) {
        let role_kind = if kind_of(binding) == "RoleBinding" { "Role" } else { "ClusterRole" };
        let role = &binding["roleRef"];
        assert_eq!(role["kind"].as_str(), Some(role_kind), "{binding:?}");
        let same_role = |r: &&Value| {
            r["metadata"]["name"] == role["name"] && r["metadata"]["namespace"] == binding["metadata"]["namespace"]
        };
        assert!(of_kind(docs, role_kind).iter().any(same_role), "binding to a role the chart lacks: {binding:?}");
        let subjects = binding["subjects"].as_sequence().unwrap();
        assert_eq!(subjects.len(), 1, "{binding:?}");
        assert_eq!(subjects[0]["kind"].as_str(), Some("ServiceAccount"));
        assert_eq!(subjects[0]["name"].as_str(), Some(account));
        assert_eq!(subjects[0]["namespace"].as_str(), Some(NAMESPACE));
    }
}

/// Copies each CRD file from `crds/` into the chart when it differs, and fails, so a local `cargo test` fixes
/// drift (as `crds_are_fresh` does for `crds/`) and CI catches it.
#[test]
fn chart_crds_equal_the_generated_crds() {
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    let (generated, in_chart) = (root().join("crds"), chart().join("crds"));
    let mut stale = Vec::new();
    for name in names(&generated) {
        let want = std::fs::read(generated.join(&name)).unwrap();
        if std::fs::read(in_chart.join(&name)).ok().as_ref() != Some(&want) {
            std::fs::write(in_chart.join(&name), &want).unwrap();
            stale.push(name);
        }
    }
    assert!(stale.is_empty(), "charts/burst/crds/ was stale and has been rewritten ({stale:?}): commit the new files");
    assert_eq!(names(&in_chart), names(&generated), "charts/burst/crds/ holds files that crds/ does not");
}

#[test]
fn helm_lint_passes_with_default_and_other_values() {
    let Some(helm) = helm("helm_lint_passes_with_default_and_other_values") else { return };
    let chart = chart();
    run_helm(&helm, &["lint", "--strict", chart.to_str().unwrap()]);
    for values in [other_values(), monitoring_values()] {
        run_helm(&helm, &["lint", "--strict", chart.to_str().unwrap(), "--values", values.to_str().unwrap()]);
    }
}

#[test]
fn helm_template_renders_least_privilege_rbac_and_restricted_pods() {
    let Some(helm) = helm("helm_template_renders_least_privilege_rbac_and_restricted_pods") else { return };

    // Defaults: every namespace through one ClusterRole, leader election, no BurstCluster.
    let docs = render(&helm, &[]);
    assert_eq!(wildcards(&docs), Vec::<String>::new(), "wildcards in RBAC rules");
    let cluster_roles = of_kind(&docs, "ClusterRole");
    assert_eq!(cluster_roles.len(), 1, "one ClusterRole when watchNamespaces is empty");
    assert_eq!(permissions(cluster_roles[0]), operator_grants());
    let roles = of_kind(&docs, "Role");
    assert_eq!(roles.len(), 1, "only the leader-election Role with the defaults");
    assert_eq!(roles[0]["metadata"]["namespace"].as_str(), Some(NAMESPACE));
    assert_eq!(permissions(roles[0]), leader_election_grants());
    check_lease_names(roles[0], &lease_name(&docs));
    check_bindings(&docs);
    assert!(of_kind(&docs, "BurstCluster").is_empty(), "no BurstCluster unless cluster.create");
    let args = check_operator_pod(&docs);
    assert!(!args.iter().any(|a| a.starts_with("--namespaces") || a.starts_with("--leader-elect")), "{args:?}");

    // Two watched namespaces, no leader election, a BurstCluster.
    let docs = render(&helm, &[&other_values()]);
    assert_eq!(wildcards(&docs), Vec::<String>::new(), "wildcards in RBAC rules");
    assert!(of_kind(&docs, "ClusterRole").is_empty() && of_kind(&docs, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&docs, "Role");
    let mut namespaces: Vec<_> = roles.iter().map(|r| r["metadata"]["namespace"].as_str().unwrap()).collect();
    namespaces.sort();
    assert_eq!(namespaces, ["team-a", "team-b"], "one Role per watched namespace, none for leader election");
    for role in roles {
        assert_eq!(permissions(role), operator_grants());
    }
    assert_eq!(of_kind(&docs, "RoleBinding").len(), 2);
    check_bindings(&docs);
    let args = check_operator_pod(&docs);
    assert_eq!(args[3..], ["--namespaces", "team-a,team-b", "--leader-elect=false"]);

    let clusters = of_kind(&docs, "BurstCluster");
    assert_eq!(clusters.len(), 1, "cluster.create renders one BurstCluster");
    let bc: burst_operator::crd::BurstCluster = serde_yaml::from_value(clusters[0].clone()).unwrap();
    assert_eq!(burst_operator::cluster::validate(&bc), Ok(()));
    // Nothing the template writes is lost on the way in: no misspelt field, no value of the wrong form.
    assert_eq!(serde_yaml::to_value(&bc.spec).unwrap(), clusters[0]["spec"], "the BurstCluster type drops fields");
    assert_eq!(bc.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(bc.spec.image, "burst:0.1.0", "image.tag empty: the chart's appVersion");
    assert!(bc.spec.controller.persistence.enabled);
    assert_eq!(bc.spec.controller.persistence.size.as_deref(), Some("2Gi"));
    assert_eq!((bc.spec.workers.replicas, bc.spec.workers.slots), (Some(3), Some(4)));
    let output = bc.spec.workers.output_volume.as_ref().expect("the workers' output volume is passed on");
    assert_eq!((output.size.as_str(), output.storage_class_name.as_deref()), ("5Gi", Some("standard")));
    let c = &bc.spec.controller;
    assert_eq!((c.policy.as_deref(), c.wait_by.as_deref(), c.wait_factor), (Some("wait"), Some("runtime"), Some(0.5)));
    let pool = &bc.spec.pools[0];
    assert_eq!((pool.name.as_str(), pool.cost, pool.max_replicas), ("cloud", Some(2.5), Some(4)));
    assert_eq!(
        (c.node_selector.get("disk").map(String::as_str), c.priority_class_name.as_deref()),
        (Some("ssd"), Some("burst-high"))
    );
    let w = &bc.spec.workers;
    assert!(w.affinity.as_ref().is_some_and(|a| a.pod_anti_affinity.is_some()), "the workers' affinity is passed on");
    assert_eq!(w.priority_class_name.as_deref(), Some("burst-batch"));
    assert_eq!(bc.spec.image_pull_secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["regcred"]);
    assert_eq!(bc.spec.pod_security_context, Some(Default::default()), "{{}}: the platform picks the ids");
    assert_eq!(bc.spec.tls.clients[0].name, "alice");
}

/// deploy/kind.sh e2e runs these: each a BurstJob of exactly one kind, for the example BurstCluster, whose image
/// is the one kind.sh loads into the cluster.
/// The operator pod's plumbing from values: pull secrets, priority, labels, security contexts, extra env and args,
/// update strategy; RBAC off leaves no role or binding; the old top-level serviceMonitor key is refused by name.
#[test]
fn helm_template_passes_the_operator_pods_values_through() {
    let Some(helm) = helm("helm_template_passes_the_operator_pods_values_through") else { return };
    let values = chart().join("ci/operator-pod-values.yaml");
    run_helm(&helm, &["lint", "--strict", chart().to_str().unwrap(), "--values", values.to_str().unwrap()]);
    let docs = render(&helm, &[&values]);
    let deployment = operator_deployment(&docs);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(restricted_violations(pod), Vec::<String>::new(), "still restricted");
    assert_eq!(deployment["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
    assert_eq!(deployment["spec"]["template"]["metadata"]["labels"]["team"].as_str(), Some("platform"));
    // With any nameOverride, the operator's pods carry the label BurstClusters' NetworkPolicies let in.
    let renamed = Command::new(&helm)
        .args(["template", "burst", chart().to_str().unwrap(), "--set", "nameOverride=jobs"])
        .output()
        .unwrap();
    let renamed: Vec<Value> = serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&renamed.stdout))
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect();
    let labels = label_map(&operator_deployment(&renamed)["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(labels.get("app.kubernetes.io/name").map(String::as_str), Some("jobs"));
    assert_eq!(
        labels.get(burst_operator::names::ROLE_LABEL).map(String::as_str),
        Some(burst_operator::names::OPERATOR_ROLE)
    );
    assert_eq!(pod["imagePullSecrets"][0]["name"].as_str(), Some("regcred"));
    assert_eq!(pod["priorityClassName"].as_str(), Some("system-cluster-critical"));
    assert_eq!(pod["securityContext"]["runAsUser"].as_i64(), Some(1000));
    let container = &pod["containers"][0];
    assert_eq!(container["image"].as_str(), Some("burst:local"));
    assert_eq!(strings(&container["args"]).last().map(String::as_str), Some("burst-operator-x"));
    let env = container["env"].as_sequence().unwrap();
    assert!(env.iter().any(|e| e["name"].as_str() == Some("RUST_BACKTRACE")), "{env:?}");
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(of_kind(&docs, kind).is_empty(), "rbac.create false renders no {kind}");
    }
    // The defaults let the platform pick the user (OpenShift's restricted SCC).
    let docs = render(&helm, &[]);
    let pod = &operator_deployment(&docs)["spec"]["template"]["spec"];
    assert!(
        pod["securityContext"]["runAsUser"].is_null() && pod["containers"][0]["securityContext"]["runAsUser"].is_null()
    );
    assert_eq!(pod["containers"][0]["image"].as_str(), Some("burst:0.1.0"), "image.tag empty: the appVersion");
    let moved = Command::new(&helm)
        .args(["template", "burst", chart().to_str().unwrap(), "--set", "serviceMonitor.enabled=true"])
        .output()
        .unwrap();
    assert!(!moved.status.success());
    assert!(String::from_utf8_lossy(&moved.stderr).contains("serviceMonitor moved to metrics.serviceMonitor"));
}

/// values.schema.json: a misspelt key, a value of the wrong type or outside its set fails at once, saying where.
#[test]
fn helm_refuses_misspelt_and_mistyped_values() {
    let Some(helm) = helm("helm_refuses_misspelt_and_mistyped_values") else { return };
    let refused = |set: &str| {
        let o =
            Command::new(&helm).args(["template", "burst", chart().to_str().unwrap(), "--set", set]).output().unwrap();
        assert!(!o.status.success(), "{set} was accepted");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(refused("operator.replicas=abc").contains("/operator/replicas"));
    assert!(refused("imagePullSecret[0].name=x").contains("imagePullSecret"));
    assert!(refused("cluster.workers.slot=3").contains("slot"));
    assert!(refused("cluster.controller.router=fastest").contains("roundrobin"));
    assert!(refused("image.pullPolicy=Sometimes").contains("/image/pullPolicy"));
}

#[test]
fn the_kind_example_jobs_are_burstjobs_for_the_example_cluster() {
    let examples = root().join("deploy/examples");
    let read = |file: &str| std::fs::read_to_string(examples.join(file)).unwrap();
    let cluster: burst_operator::crd::BurstCluster = serde_yaml::from_str(&read("burstcluster.yaml")).unwrap();
    assert_eq!(cluster.spec.image, "burst:local");
    assert!(matches!(cluster.spec.image_pull_policy.as_deref(), Some("Never" | "IfNotPresent")));
    let text = read("burstjobs.yaml");
    let jobs: Vec<burst_operator::crd::BurstJob> =
        serde_yaml::Deserializer::from_str(&text).map(|doc| Deserialize::deserialize(doc).unwrap()).collect();
    let names: Vec<_> = jobs.iter().map(|j| j.metadata.name.as_deref().unwrap()).collect();
    assert_eq!(names, ["echo", "python", "exit-3"], "the names deploy/kind.sh waits for");
    for job in &jobs {
        assert_eq!(Some(job.spec.cluster_ref.as_str()), cluster.metadata.name.as_deref());
        let kinds = [job.spec.process.is_some(), job.spec.python.is_some(), job.spec.docker.is_some()];
        assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{names:?}: one of process, python, docker");
    }
}

#[test]
fn the_kind_config_has_a_control_plane_and_two_workers() {
    let config: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("kind-config.yaml")).unwrap()).unwrap();
    assert_eq!(config["apiVersion"].as_str(), Some("kind.x-k8s.io/v1alpha4"));
    assert_eq!(config["name"].as_str(), Some("burst"));
    let roles: Vec<_> = config["nodes"].as_sequence().unwrap().iter().map(|n| n["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["control-plane", "worker", "worker"]);
}

// ---- Monitoring: the Grafana dashboard, the ServiceMonitor and the PodMonitor.

fn dashboard_file() -> PathBuf {
    chart().join("dashboards/burst.json")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// Every metric burst exports, as PromQL names it: counters with `_total`, histograms by their base name (their
/// series are `_bucket`, `_sum` and `_count`).
const METRICS: &[(&str, Kind)] = &[
    ("burst_controller_jobs", Kind::Gauge),
    ("burst_controller_jobs_submitted_total", Kind::Counter),
    ("burst_controller_jobs_leased_total", Kind::Counter),
    ("burst_controller_jobs_finished_total", Kind::Counter),
    ("burst_controller_dispatch_latency_seconds", Kind::Histogram),
    ("burst_controller_queue_wait_seconds", Kind::Histogram),
    ("burst_controller_run_seconds", Kind::Histogram),
    ("burst_controller_store_commit_seconds", Kind::Histogram),
    ("burst_controller_workers", Kind::Gauge),
    ("burst_controller_slots", Kind::Gauge),
    ("burst_controller_slots_busy", Kind::Gauge),
    ("burst_controller_worker_queue_depth", Kind::Gauge),
    ("burst_controller_worker_slots_busy", Kind::Gauge),
    ("burst_controller_steals_total", Kind::Counter),
    ("burst_controller_jobs_stolen_total", Kind::Counter),
    ("burst_controller_refusals_total", Kind::Counter),
    ("burst_worker_run_seconds", Kind::Histogram),
    ("burst_worker_runs_total", Kind::Counter),
    ("burst_worker_jobs_stolen_total", Kind::Counter),
    ("burst_worker_jobs_given_total", Kind::Counter),
    ("burst_worker_starts_refused_total", Kind::Counter),
    ("burst_worker_slots", Kind::Gauge),
    ("burst_worker_slots_busy", Kind::Gauge),
    ("burst_worker_queue_depth", Kind::Gauge),
    ("burst_worker_registered", Kind::Gauge),
    ("burst_worker_steal_attempts_total", Kind::Counter),
    ("burst_operator_reconciles_total", Kind::Counter),
    ("burst_operator_reconcile_failures_total", Kind::Counter),
    ("burst_operator_reconcile_duration_seconds", Kind::Histogram),
    ("burst_operator_burstjobs_submitted_total", Kind::Counter),
    ("burst_operator_leader", Kind::Gauge),
];

/// The metrics `expr` names (histograms by their base name), and what is wrong with how it names them: an
/// unknown name, a histogram by a name it has no series under, a counter outside rate() or increase().
fn metrics_in(expr: &str) -> (BTreeSet<&'static str>, Vec<String>) {
    let (mut names, mut problems) = (BTreeSet::new(), Vec::new());
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let counted = expr.contains("rate(") || expr.contains("increase(");
    for word in expr.split(|c: char| !is_word(c)).filter(|w| w.starts_with("burst_")) {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| word.strip_suffix(s));
        let known = |name: &str| METRICS.iter().find(|(n, _)| *n == name).copied();
        let (name, counter) = match (known(word), base.and_then(known)) {
            (Some((name, Kind::Histogram)), _) => {
                problems.push(format!("histogram {name} has no series of that name (only _bucket, _sum, _count)"));
                (name, false)
            }
            (Some((name, kind)), _) => (name, kind == Kind::Counter),
            (None, Some((name, Kind::Histogram))) => (name, true),
            _ => {
                problems.push(format!("unknown metric {word}"));
                continue;
            }
        };
        if counter && !counted {
            problems.push(format!("{word} is a counter outside rate() or increase()"));
        }
        names.insert(name);
    }
    (names, problems)
}

/// Every panel, rows' panels included.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    let mut todo: Vec<&serde_json::Value> = dashboard["panels"].as_array().into_iter().flatten().collect();
    while let Some(panel) = todo.pop() {
        todo.extend(panel["panels"].as_array().into_iter().flatten());
        out.push(panel);
    }
    out
}

/// Every PromQL expression of the dashboard: its panels' targets and its query variables.
fn expressions(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in panels(dashboard).into_iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title:?}: the data source variable");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {title:?} has a target without a query");
            out.push(expr.to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] == "query" {
            let query = &variable["query"];
            out.push(query["query"].as_str().or(query.as_str()).expect("a variable's query").to_string());
        }
    }
    out
}

#[test]
fn the_dashboard_is_grafana_json_whose_queries_name_only_metrics_burst_exports() {
    let text = std::fs::read_to_string(dashboard_file()).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!((dashboard["uid"].as_str(), dashboard["title"].as_str()), (Some("burst"), Some("burst")));
    let ids: Vec<_> = panels(&dashboard).iter().map(|p| p["id"].as_i64().expect("a panel id")).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "panel ids repeat: {ids:?}");
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for expr in expressions(&dashboard) {
        let (names, wrong) = metrics_in(&expr);
        problems.extend(wrong.into_iter().map(|p| format!("{p} in {expr}")));
        used.extend(names);
    }
    assert_eq!(problems, Vec::<String>::new());
    assert!(used.len() >= 10, "the dashboard names only {} metrics: {used:?}", used.len());
    // The panels it must have: jobs by state, submit/lease/finish rates, queue wait, run time and dispatch
    // latency, slots, queue depth per worker, steals, refusals, store commits, the operator's reconciles.
    let wanted = [
        "burst_controller_jobs",
        "burst_controller_jobs_submitted_total",
        "burst_controller_jobs_leased_total",
        "burst_controller_jobs_finished_total",
        "burst_controller_queue_wait_seconds",
        "burst_controller_run_seconds",
        "burst_controller_dispatch_latency_seconds",
        "burst_controller_slots_busy",
        "burst_controller_slots",
        "burst_controller_worker_queue_depth",
        "burst_controller_steals_total",
        "burst_controller_refusals_total",
        "burst_controller_store_commit_seconds",
        "burst_operator_reconciles_total",
        "burst_operator_reconcile_failures_total",
    ];
    let missing: Vec<_> = wanted.iter().filter(|m| !used.contains(*m)).collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

#[test]
fn the_metric_check_catches_unknown_and_misused_names() {
    let problems = |expr: &str| metrics_in(expr).1;
    assert_eq!(
        problems("sum(rate(burst_controller_jobs_submited_total[5m]))"),
        ["unknown metric burst_controller_jobs_submited_total"]
    );
    assert_eq!(
        problems("histogram_quantile(0.99, rate(burst_worker_run_seconds[5m]))"),
        ["histogram burst_worker_run_seconds has no series of that name (only _bucket, _sum, _count)"]
    );
    assert_eq!(
        problems("sum(burst_controller_steals_total)"),
        ["burst_controller_steals_total is a counter outside rate() or increase()"]
    );
    // A label must not look like a metric: the PodMonitor's is `burstcluster`, not `burst_cluster`.
    assert_eq!(problems(r#"sum(burst_controller_workers{burst_cluster="a"})"#), ["unknown metric burst_cluster"]);
    let good = r#"histogram_quantile(0.5, sum by (le) (rate(burst_controller_run_seconds_bucket{burstcluster=~"$burstcluster"}[5m])))"#;
    let (names, problems) = metrics_in(good);
    assert_eq!((names.into_iter().collect::<Vec<_>>(), problems), (vec!["burst_controller_run_seconds"], vec![]));
}

/// The names a metrics page declares (`# TYPE` lines), as PromQL names them: counters with `_total`.
fn declared(page: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in page.lines() {
        let mut words = line.strip_prefix("# TYPE ").into_iter().flat_map(str::split_whitespace);
        if let (Some(name), Some(kind)) = (words.next(), words.next()) {
            let counter = kind == "counter" && !name.ends_with("_total");
            out.insert(if counter { format!("{name}_total") } else { name.to_string() });
        }
    }
    out
}

/// GET `path` from `addr` over plain HTTP/1.1: the response, head and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Runs one job to its end, so that the series labelled by how jobs end exist (a labelled family declares
/// nothing before its first series).
async fn run_one_job(url: &str) {
    use burst_proto::v1::controller_rpc_client::ControllerRpcClient;
    use burst_proto::v1::{GetJobStatusRequest, JobSpec, JobState, ProcessSpec, SubmitJobRequest, job_spec};
    let mut client = ControllerRpcClient::connect(url.to_string()).await.unwrap();
    let process = ProcessSpec { command: "/bin/sh".into(), args: vec!["-c".into(), "exit 0".into()] };
    let spec = JobSpec { kind: Some(job_spec::Kind::Process(process)), ..JobSpec::default() };
    let id = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await.unwrap().into_inner().job_id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = client.get_job_status(GetJobStatusRequest { job_id: id.clone() }).await.unwrap().into_inner();
        if status.state() == JobState::Succeeded {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {id} did not succeed in time: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The list above is what the servers really export: a real controller (with its durable store) and worker on
/// loopback that ran a job, scraped on their HTTP side, and the operator's own registry after a reconcile that
/// failed.
#[tokio::test]
async fn the_metrics_the_dashboard_may_name_are_the_ones_burst_exports() {
    let dir = tempfile::tempdir().unwrap();
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let controller = burst_controller::start(burst_controller::ControllerConfig {
        listen: loopback,
        http_listen: Some(loopback),
        data_dir: dir.path().join("data"),
        ephemeral: false,
        ..burst_controller::ControllerConfig::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}", controller.addr);
    let mut cfg = burst_worker::WorkerConfig::local(&url, "w-0", 1, 2, dir.path().join("out"));
    cfg.http_listen = Some(loopback);
    let worker = burst_worker::start(cfg).await.unwrap();
    run_one_job(&url).await;
    let operator = burst_operator::metrics::Metrics::default();
    drop(operator.reconcile("BurstJob"));
    operator.failure("BurstJob", "ClusterNotFound");
    let mut exported = declared(&operator.render());
    for http in [controller.http, worker.http] {
        let response = tokio::time::timeout(Duration::from_secs(20), http_get(http.expect("an HTTP side"), "/metrics"))
            .await
            .expect("/metrics answers");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        exported.extend(declared(&response));
    }
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
    let missing: Vec<_> = METRICS.iter().map(|(name, _)| *name).filter(|name| !exported.contains(*name)).collect();
    assert!(missing.is_empty(), "listed but not exported: {missing:?}\nexported: {exported:?}");
}

/// The operator's pods of a BurstCluster, as the operator builds them.
fn operator_built_pods() -> Vec<k8s_openapi::api::core::v1::PodTemplateSpec> {
    let text = std::fs::read_to_string(root().join("deploy/examples/burstcluster.yaml")).unwrap();
    let bc: burst_operator::crd::BurstCluster = serde_yaml::from_str(&text).unwrap();
    let d = burst_operator::cluster::desired(&bc).unwrap();
    let controller = match d.controller {
        burst_operator::cluster::ControllerWorkload::StatefulSet(s) => s.spec.template,
        burst_operator::cluster::ControllerWorkload::Deployment(d) => d.spec.template,
    };
    vec![controller, d.workers[0].spec.template.clone()]
}

fn label_map(v: &Value) -> BTreeMap<String, String> {
    serde_yaml::from_value(v.clone()).unwrap_or_default()
}

/// The PodMonitor selects the pods the operator builds (and not the operator's own), on the port they name
/// "http", and turns their cluster label into the dashboard's `burstcluster`.
fn check_pod_monitor(monitor: &Value, operator_pod: &Value) {
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    let port = endpoint["port"].as_str().unwrap();
    let selector = &monitor["spec"]["selector"];
    let matches = |labels: &BTreeMap<String, String>| {
        let by_labels = label_map(&selector["matchLabels"]).iter().all(|(k, v)| labels.get(k) == Some(v));
        let by_expressions = selector["matchExpressions"].as_sequence().into_iter().flatten().all(|e| {
            assert_eq!(e["operator"].as_str(), Some("In"));
            let key = e["key"].as_str().unwrap();
            labels.get(key).is_some_and(|v| strings(&e["values"]).contains(v))
        });
        by_labels && by_expressions
    };
    for template in operator_built_pods() {
        let labels = template.metadata.unwrap().labels.unwrap();
        assert!(matches(&labels), "the PodMonitor does not select pods labelled {labels:?}");
        let ports = template.spec.unwrap().containers[0].ports.clone().unwrap();
        let named = ports.iter().find(|p| p.name.as_deref() == Some(port)).expect("the monitored port is named");
        assert_eq!(named.container_port, burst_operator::names::HTTP_PORT);
    }
    assert!(!matches(&label_map(&operator_pod["metadata"]["labels"])), "the operator's pod is not a BurstCluster's");
    let cluster_label = burst_operator::names::CLUSTER_LABEL.replace(['.', '/', '-'], "_");
    let relabel = endpoint["relabelings"].as_sequence().unwrap().iter().find(|r| r["targetLabel"] == "burstcluster");
    let relabel = relabel.expect("a relabeling to burstcluster, the dashboard's variable");
    assert_eq!(strings(&relabel["sourceLabels"]), [format!("__meta_kubernetes_pod_label_{cluster_label}")]);
    // A pod whose HTTP port speaks HTTPS is scraped over HTTPS.
    let scheme_label = burst_operator::names::HTTP_SCHEME_LABEL.replace(['.', '/', '-'], "_");
    let relabel = endpoint["relabelings"].as_sequence().unwrap().iter().find(|r| r["targetLabel"] == "__scheme__");
    let relabel = relabel.expect("a relabeling to __scheme__");
    assert_eq!(strings(&relabel["sourceLabels"]), [format!("__meta_kubernetes_pod_label_{scheme_label}")]);
    assert_eq!(relabel["regex"].as_str(), Some("(https)"));
    let https_pods = operator_built_pods().into_iter().filter(|t| {
        t.metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .is_some_and(|l| l.get(burst_operator::names::HTTP_SCHEME_LABEL).map(String::as_str) == Some("https"))
    });
    assert_eq!(https_pods.count(), 1, "the example's controller (TLS on) is labelled https, its workers are not");
}

#[test]
fn helm_template_renders_the_monitors_and_the_dashboard_only_when_enabled() {
    let Some(helm) = helm("helm_template_renders_the_monitors_and_the_dashboard_only_when_enabled") else { return };
    let dashboards = |docs: &[Value]| -> Vec<Value> {
        of_kind(docs, "ConfigMap")
            .into_iter()
            .filter(|c| !c["metadata"]["labels"]["grafana_dashboard"].is_null())
            .cloned()
            .collect()
    };
    let docs = render(&helm, &[]);
    assert!(dashboards(&docs).is_empty(), "no dashboard unless grafana.dashboard.enabled");
    assert!(of_kind(&docs, "ServiceMonitor").is_empty() && of_kind(&docs, "PodMonitor").is_empty());

    let docs = render(&helm, &[&monitoring_values()]);
    let dashboards = dashboards(&docs);
    assert_eq!(dashboards.len(), 1, "one dashboard ConfigMap");
    let map = &dashboards[0];
    assert_eq!(map["metadata"]["namespace"].as_str(), Some("grafana"));
    let labels = label_map(&map["metadata"]["labels"]);
    assert_eq!((labels["grafana_dashboard"].as_str(), labels["team"].as_str()), ("1", "platform"));
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"].as_str(), Some("burst"));
    let file = std::fs::read_to_string(dashboard_file()).unwrap();
    assert_eq!(map["data"]["burst.json"].as_str().map(str::trim), Some(file.trim()), "the file, as is");

    let services = of_kind(&docs, "Service");
    let service = services.iter().find(|s| s["metadata"]["name"] == operator_deployment(&docs)["metadata"]["name"]);
    let service = service.expect("the operator's metrics Service");
    let monitors = of_kind(&docs, "ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    let monitor = monitors[0];
    assert_eq!(monitor["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    assert_eq!(monitor["metadata"]["namespace"].as_str(), Some("monitoring"));
    assert_eq!(monitor["metadata"]["labels"]["release"].as_str(), Some("prometheus"));
    assert_eq!(strings(&monitor["spec"]["namespaceSelector"]["matchNames"]), [NAMESPACE]);
    let service_labels = label_map(&service["metadata"]["labels"]);
    let selected = label_map(&monitor["spec"]["selector"]["matchLabels"]);
    assert!(!selected.is_empty() && selected.iter().all(|(k, v)| service_labels.get(k) == Some(v)), "{selected:?}");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"], "the Service's metrics port, by name");
    assert_eq!(service["spec"]["ports"][0]["targetPort"].as_str(), Some("http"), "the operator's HTTP port");
    assert_eq!((endpoint["path"].as_str(), endpoint["interval"].as_str()), (Some("/metrics"), Some("15s")));

    let operator_pod = &operator_deployment(&docs)["spec"]["template"];
    let pod_monitors = of_kind(&docs, "PodMonitor");
    assert_eq!(pod_monitors.len(), 1);
    check_pod_monitor(pod_monitors[0], operator_pod);
    assert_eq!(pod_monitors[0]["metadata"]["namespace"].as_str(), Some("monitoring"));
    assert_eq!(pod_monitors[0]["spec"]["namespaceSelector"]["any"].as_bool(), Some(true), "every namespace");
    assert_eq!(pod_monitors[0]["spec"]["podMetricsEndpoints"][0]["interval"].as_str(), Some("15s"));

    // Watching some namespaces: the PodMonitor looks only there.
    let docs = render(&helm, &[&other_values(), &monitoring_values()]);
    let pod_monitors = of_kind(&docs, "PodMonitor");
    check_pod_monitor(pod_monitors[0], &operator_deployment(&docs)["spec"]["template"]);
    assert_eq!(strings(&pod_monitors[0]["spec"]["namespaceSelector"]["matchNames"]), ["team-a", "team-b"]);
}
