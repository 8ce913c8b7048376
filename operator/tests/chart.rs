//! The Helm chart (charts/burst): its CRDs are the generated ones, `helm lint` passes, and what `helm template`
//! renders keeps RBAC least-privilege (exact verbs, no wildcards) and the operator's pod within the `restricted`
//! Pod Security Standard, and an optional BurstCluster is a valid resource.
//!
//! helm comes from `.ci/install-helm` (target/tools/bin/helm) or PATH; without it the helm tests print why they
//! skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The helm binary, or None after saying why `test` skips.
fn helm(test: &str) -> Option<PathBuf> {
    let local = root().join("target/tools/bin/helm");
    if local.is_file() {
        return Some(local);
    }
    if Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from("helm"));
    }
    println!("SKIPPED {test}: helm not found (run .ci/install-helm)");
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

/// `helm template` with the chart's defaults, or with a values file: every non-empty document.
fn render(helm: &Path, values: Option<&Path>) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "burst", chart.to_str().unwrap(), "--namespace", NAMESPACE];
    if let Some(values) = values {
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
        ("core/secrets", "get create patch"),
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
        out.extend(container_violations(container));
    }
    out
}

fn container_violations(container: &Value) -> Vec<String> {
    let name = container["name"].as_str().unwrap_or("?");
    let sc = &container["securityContext"];
    let mut out = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            out.push(format!("container {name}: {what}"));
        }
    };
    want(sc["runAsNonRoot"].as_bool() == Some(true), "runAsNonRoot is not true");
    want(sc["runAsUser"].as_i64() == Some(65534), "runAsUser is not 65534");
    want(sc["readOnlyRootFilesystem"].as_bool() == Some(true), "readOnlyRootFilesystem is not true");
    want(sc["allowPrivilegeEscalation"].as_bool() == Some(false), "allowPrivilegeEscalation is not false");
    want(sc["privileged"].as_bool() != Some(true), "privileged");
    want(strings(&sc["capabilities"]["drop"]) == ["ALL"], "capabilities do not drop ALL");
    want(sc["capabilities"]["add"].is_null(), "capabilities added");
    want(sc["seccompProfile"]["type"].as_str() == Some("RuntimeDefault"), "seccompProfile is not RuntimeDefault");
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
    let (chart, values) = (chart(), other_values());
    run_helm(&helm, &["lint", "--strict", chart.to_str().unwrap()]);
    run_helm(&helm, &["lint", "--strict", chart.to_str().unwrap(), "--values", values.to_str().unwrap()]);
}

#[test]
fn helm_template_renders_least_privilege_rbac_and_restricted_pods() {
    let Some(helm) = helm("helm_template_renders_least_privilege_rbac_and_restricted_pods") else { return };

    // Defaults: every namespace through one ClusterRole, leader election, no BurstCluster.
    let docs = render(&helm, None);
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
    let docs = render(&helm, Some(other_values().as_path()));
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
    assert_eq!(bc.spec.image, "burst:local");
    assert!(bc.spec.controller.persistence.enabled);
    assert_eq!(bc.spec.controller.persistence.size.as_deref(), Some("2Gi"));
    assert_eq!((bc.spec.workers.replicas, bc.spec.workers.slots), (Some(3), Some(4)));
}

/// deploy/kind.sh e2e runs these: each a BurstJob of exactly one kind, for the example BurstCluster, whose image
/// is the one kind.sh loads into the cluster.
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
