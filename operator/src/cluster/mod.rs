//! What a BurstCluster should look like in the cluster: a pure function from the resource to the objects it
//! owns (ConfigMap, the controller's StatefulSet or Deployment and its Service, the workers' StatefulSet). The
//! reconciler applies them with server-side apply; nothing here talks to the API server.
//!
//! - The config file every pod reads comes from the ConfigMap (`/etc/burst/burst.toml`).
//! - The controller keeps its store on a PersistentVolumeClaim when `persistence.enabled` (a StatefulSet with a
//!   volume claim template), else on an emptyDir (a Deployment).
//! - Workers are a StatefulSet so their ids are stable pod names; each pod's worker id and advertised address
//!   come from the downward API. SIGTERM drains a worker, so the grace period covers its drain. Their output
//!   (`/out`) is on an emptyDir, or on a claim per pod when `workers.outputVolume` is set.
//! - Controller and workers serve HTTP on [`names::HTTP_PORT`] (`/metrics`, `/healthz`, `/readyz`): the pods'
//!   probes use it, and so can a Prometheus PodMonitor (the chart's).
//! - Every pod runs as non-root with a read-only root filesystem, no privilege escalation, all capabilities
//!   dropped and the RuntimeDefault seccomp profile; workers mount no service account token.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{BurstCluster, PoolSpec};
use crate::names;

pub mod autoscale;
pub mod network;
pub mod reconcile;

/// A workload the cluster owns (the controller's StatefulSet or Deployment, the workers' StatefulSet), as far as
/// its readiness goes.
pub trait Workload: Resource {
    /// Its ready pods, as its controller last counted them (`None`: not counted yet).
    fn ready_replicas(&self) -> Option<i32>;
}

impl Workload for StatefulSet {
    fn ready_replicas(&self) -> Option<i32> {
        self.status.as_ref().and_then(|s| s.ready_replicas)
    }
}

impl Workload for Deployment {
    fn ready_replicas(&self) -> Option<i32> {
        self.status.as_ref().and_then(|s| s.ready_replicas)
    }
}
pub mod status;
pub mod storage;
pub mod tls;

/// Routers the controller knows (see burst-controller's `--router`).
const ROUTERS: [&str; 3] = ["roundrobin", "power2", "biased"];
/// Placement policies and waiting budgets the controller knows (`--policy`, `--wait-by`).
const POLICIES: [&str; 3] = ["cheapest", "first-pool-only", "wait"];
const WAIT_BY: [&str; 4] = ["constant", "runtime", "resources", "compute"];
/// The pool of `workers`' pods.
const DEFAULT_POOL: &str = "default";
/// Longest StatefulSet name: its pods' `controller-revision-hash` label (name + hash) must stay within 63.
const MAX_STATEFULSET_NAME: usize = 52;
/// A pod's termination grace period unless the spec sets the workers' own.
const TERMINATION_GRACE_SECONDS: i64 = 30;
/// What a worker's drain leaves of its grace period: time to report its last results and exit before SIGKILL.
const DRAIN_MARGIN_SECONDS: i64 = 5;
/// The uid every burst pod runs as: nobody.
const RUN_AS: i64 = 65534;
/// Where the controller finds the tokens Secret, and the key that holds the tokens file.
const TOKENS_MOUNT: &str = "/tokens";
pub const TOKENS_KEY: &str = "tokens.toml";
/// Secret files are readable by the pod's group (fsGroup) only.
const SECRET_MODE: i32 = 0o440;
/// The probes, all on the HTTP port. Readiness (`/readyz`) is followed closely: the controller Service's
/// endpoints and the status's ready counts follow it (a worker is ready once registered). Liveness (`/healthz`)
/// restarts a container only after a minute without an answer, each answer given 5 s, so a pod busy with many
/// jobs is not killed for a slow answer or two. The startup probe gives a controller replaying a large store up
/// to five minutes before liveness starts counting.
const READY_PERIOD_SECONDS: i32 = 5;
const READY_FAILURES: i32 = 3;
const LIVE_PERIOD_SECONDS: i32 = 10;
const LIVE_FAILURES: i32 = 6;
const STARTUP_PERIOD_SECONDS: i32 = 5;
const STARTUP_FAILURES: i32 = 60;
const PROBE_TIMEOUT_SECONDS: i32 = 5;

/// A spec that cannot be reconciled; the message is for the resource's condition and Event.
#[derive(Debug, PartialEq, Eq)]
pub struct SpecError(pub String);

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The controller runs as a StatefulSet when it has a volume to keep, else as a Deployment.
#[derive(Clone, Debug, PartialEq)]
pub enum ControllerWorkload {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub controller: ControllerWorkload,
    pub controller_service: Service,
    /// The workers' StatefulSets: `workers` (the pool `default`) first, then one per entry of `pools`.
    pub workers: Vec<StatefulSet>,
    /// Empty when `networkPolicy.enabled` is false (then any left from before are deleted).
    pub network_policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>,
}

pub fn validate(bc: &BurstCluster) -> Result<(), SpecError> {
    let s = &bc.spec;
    let bad = |m: String| Err(SpecError(m));
    if s.image.trim().is_empty() {
        return bad("spec.image is empty".into());
    }
    if let Some(r) = s.workers.replicas.filter(|r| *r < 0) {
        return bad(format!("spec.workers.replicas is {r}; it must be 0 or more"));
    }
    if let Some(n) = s.workers.slots.filter(|n| *n < 1) {
        return bad(format!("spec.workers.slots is {n}; it must be at least 1"));
    }
    if let Some(n) = s.workers.queue_capacity.filter(|n| *n < 0) {
        return bad(format!("spec.workers.queueCapacity is {n}; it must be 0 or more"));
    }
    if let Some(r) = s.controller.router.as_deref().filter(|r| !ROUTERS.contains(r)) {
        return bad(format!("spec.controller.router {r:?} is not one of {}", ROUTERS.join(", ")));
    }
    if let Some(g) = s.workers.termination_grace_period_seconds.filter(|g| *g <= DRAIN_MARGIN_SECONDS) {
        return bad(format!(
            "spec.workers.terminationGracePeriodSeconds is {g}; it must be over {DRAIN_MARGIN_SECONDS} (the drain needs time)"
        ));
    }
    if s.controller.lease_timeout_seconds == Some(0) {
        return bad("spec.controller.leaseTimeoutSeconds must be at least 1".into());
    }
    validate_labels(bc)?;
    validate_pools(bc)?;
    storage::validate(bc)?;
    tls::validate(bc)
}

/// Labels put on pods may not be the cluster's own, which select them (a StatefulSet whose template's labels no
/// longer match its selector is refused by the API server, far from the mistake).
fn validate_labels(bc: &BurstCluster) -> Result<(), SpecError> {
    let s = &bc.spec;
    let sets = [("spec.controller.labels", &s.controller.labels), ("spec.workers.labels", &s.workers.labels)];
    let pools = s.pools.iter().map(|p| (format!("spec.pools[{}].labels", p.name), &p.labels));
    for (field, labels) in sets.into_iter().map(|(f, l)| (f.to_string(), l)).chain(pools) {
        if let Some(key) = labels.keys().find(|k| k.starts_with("burst.dev/") || k.starts_with("app.kubernetes.io/")) {
            return Err(SpecError(format!(
                "{field} sets {key:?}: the burst.dev/ and app.kubernetes.io/ labels are the cluster's own (they select its pods)"
            )));
        }
    }
    Ok(())
}

/// The pools, the placement policy and its budget.
fn validate_pools(bc: &BurstCluster) -> Result<(), SpecError> {
    let s = &bc.spec;
    let bad = |m: String| Err(SpecError(m));
    let cost_ok = |c: Option<f64>| c.is_none_or(|c| c.is_finite() && c >= 0.0);
    if let Some(p) = s.controller.policy.as_deref().filter(|p| !POLICIES.contains(p)) {
        return bad(format!("spec.controller.policy {p:?} is not one of {}", POLICIES.join(", ")));
    }
    if let Some(w) = s.controller.wait_by.as_deref().filter(|w| !WAIT_BY.contains(w)) {
        return bad(format!("spec.controller.waitBy {w:?} is not one of {}", WAIT_BY.join(", ")));
    }
    if !cost_ok(s.controller.wait_factor) {
        return bad("spec.controller.waitFactor must be a number of 0 or more".into());
    }
    if !cost_ok(s.workers.cost) {
        return bad("spec.workers.cost must be a number of 0 or more".into());
    }
    let cluster = bc.name_any();
    for (i, p) in s.pools.iter().enumerate() {
        let at = format!("spec.pools[{i}]");
        burst_proto::check_pool(&p.name).or_else(|e| bad(format!("{at}.name: {e}")))?;
        if p.name == DEFAULT_POOL {
            return bad(format!("{at}.name: \"default\" is the pool of spec.workers; name this one otherwise"));
        }
        if s.pools[..i].iter().any(|q| q.name == p.name) {
            return bad(format!("{at}.name: pool {:?} is listed twice", p.name));
        }
        let sts = names::pool_workers(&cluster, &p.name);
        if sts.len() > MAX_STATEFULSET_NAME {
            return bad(format!(
                "{at}.name: the StatefulSet name {sts:?} is longer than {MAX_STATEFULSET_NAME}; use a shorter pool or \
                 cluster name"
            ));
        }
        if !cost_ok(p.cost) {
            return bad(format!("{at}.cost must be a number of 0 or more"));
        }
        if let Some(r) = p.replicas.filter(|r| *r < 0) {
            return bad(format!("{at}.replicas is {r}; it must be 0 or more"));
        }
        if let Some(n) = p.slots.filter(|n| *n < 1) {
            return bad(format!("{at}.slots is {n}; it must be at least 1"));
        }
        if let Some(n) = p.queue_capacity.filter(|n| *n < 0) {
            return bad(format!("{at}.queueCapacity is {n}; it must be 0 or more"));
        }
        let (min, max) = (p.min_replicas.unwrap_or(0), p.max_replicas);
        if p.min_replicas.is_some() && max.is_none() {
            return bad(format!("{at}: minReplicas needs maxReplicas (an elastic pool has both bounds)"));
        }
        if let Some(max) = max
            && (min < 0 || max < min || max < 1)
        {
            return bad(format!(
                "{at}: minReplicas {min} and maxReplicas {max} must satisfy 0 <= min <= max, max >= 1"
            ));
        }
        if p.scale_down_delay_seconds.is_some_and(|d| d < 0) {
            return bad(format!("{at}.scaleDownDelaySeconds must be 0 or more"));
        }
    }
    Ok(())
}

/// Worker pods pool `p` should have now: its replicas, or for an elastic pool what the operator last set
/// (kept in the status), within its bounds.
pub fn pool_replicas(bc: &BurstCluster, p: &PoolSpec) -> i32 {
    match p.max_replicas {
        None => p.replicas.unwrap_or(1).max(0),
        Some(max) => {
            let min = p.min_replicas.unwrap_or(0).max(0);
            let set = bc.status.as_ref().and_then(|s| s.elastic.get(&p.name)).map(|e| e.replicas);
            set.unwrap_or(min).clamp(min, max.max(min))
        }
    }
}

/// Worker pods `workers` wants: 1 by default, 0 by default once pools are listed.
pub fn default_pool_replicas(bc: &BurstCluster) -> i32 {
    let fallback = if bc.spec.pools.is_empty() { 1 } else { 0 };
    bc.spec.workers.replicas.unwrap_or(fallback).max(0)
}

/// Every worker pod the spec asks for now, by name (its worker id and its certificate's name): `workers`' then
/// each pool's.
pub fn worker_pods(bc: &BurstCluster, cluster: &str) -> Vec<String> {
    worker_pods_up_to(bc, cluster, |p| pool_replicas(bc, p))
}

/// Every worker pod there may be: an elastic pool's up to its maximum (each has its certificate before it starts).
pub fn possible_worker_pods(bc: &BurstCluster, cluster: &str) -> Vec<String> {
    worker_pods_up_to(bc, cluster, |p| p.max_replicas.map_or_else(|| pool_replicas(bc, p), |m| m.max(0)))
}

fn worker_pods_up_to(bc: &BurstCluster, cluster: &str, count: impl Fn(&PoolSpec) -> i32) -> Vec<String> {
    let mut pods: Vec<String> = (0..default_pool_replicas(bc)).map(|i| names::worker_pod(cluster, i)).collect();
    for p in &bc.spec.pools {
        pods.extend((0..count(p)).map(|i| names::pool_worker_pod(cluster, &p.name, i)));
    }
    pods
}

/// The objects `bc` should own.
pub fn desired(bc: &BurstCluster) -> Result<Desired, SpecError> {
    validate(bc)?;
    let name = bc.name_any();
    let ns = bc.namespace().unwrap_or_else(|| "default".into());
    let owner = bc.controller_owner_ref(&());
    Ok(Desired {
        config_map: config_map(bc, &name, &ns, owner.clone()),
        controller: controller(bc, &name, &ns, owner.clone()),
        controller_service: controller_service(bc, &name, &ns, owner.clone()),
        network_policies: network::policies(bc, &name, &ns, owner.clone()),
        workers: std::iter::once(None)
            .chain(bc.spec.pools.iter().map(Some))
            .map(|pool| workers(bc, &name, &ns, owner.clone(), pool))
            .collect(),
    })
}

pub(crate) fn meta(
    name: String,
    ns: &str,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(ns.to_string()),
        labels: Some(labels),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The shared config file: every setting a BurstCluster spec sets, in burst's own format.
pub fn config_file(bc: &BurstCluster, cluster: &str, ns: &str) -> String {
    let s = &bc.spec;
    let tls = s.tls.enabled();
    let endpoint = names::controller_endpoint(cluster, ns, tls);
    // With TLS off the NetworkPolicies are all that keeps everyone but the cluster's own pods, the operator and
    // allowed clients off these ports. Workers get their certificate's path from the environment (it names
    // their pod).
    let transport = match tls {
        true => format!(
            "tls_cert = \"{m}/controller.pem\"\ntls_key = \"{m}/controller-key.pem\"\ntls_ca = \"{m}/{ca}\"\n",
            m = tls::MOUNT,
            ca = tls::CA_BUNDLE
        ),
        false => "insecure = true\n".into(),
    };
    let http_listen = format!("http_listen = \"0.0.0.0:{}\"\n", names::HTTP_PORT);
    let mut out = format!("[controller]\nlisten = \"0.0.0.0:50051\"\n{http_listen}data_dir = \"/data\"\n{transport}");
    if s.tokens_secret.is_some() {
        out += &format!("tokens_file = \"{TOKENS_MOUNT}/{TOKENS_KEY}\"\n");
    }
    out += &format!("router = \"{}\"\n", s.controller.router.as_deref().unwrap_or("roundrobin"));
    out += &format!("lease_timeout_ms = {}\n", u64::from(s.controller.lease_timeout_seconds.unwrap_or(10)) * 1000);
    if let Some(policy) = &s.controller.policy {
        out += &format!("policy = \"{policy}\"\n");
    }
    if let Some(by) = &s.controller.wait_by {
        out += &format!("wait_by = \"{by}\"\n");
    }
    if let Some(f) = s.controller.wait_factor {
        out += &format!("wait_factor = {f:?}\n");
    }
    if !s.pools.is_empty() || s.workers.cost.is_some() {
        out += &pool_entry(DEFAULT_POOL, s.workers.cost, false, &BTreeMap::new());
        for p in &s.pools {
            out += &pool_entry(&p.name, p.cost, p.elastic(), &p.labels);
        }
    }
    out += &format!(
        "\n[worker]\ncontroller = \"{endpoint}\"\nlisten = \"0.0.0.0:{}\"\n{http_listen}output_dir = \"/out\"\n",
        names::WORKER_PORT
    );
    if !tls {
        out += "insecure = true\n";
    }
    if let Some(slots) = s.workers.slots {
        out += &format!("slots = {slots}\n");
    }
    if let Some(q) = s.workers.queue_capacity {
        out += &format!("queue_capacity = {q}\n");
    }
    out += &format!("steal = {}\n", s.workers.stealing.unwrap_or(true));
    out += &format!("drain_grace_ms = {}\n", (worker_grace(bc) - DRAIN_MARGIN_SECONDS) * 1000);
    out += &format!("\n[cli]\ncontroller = \"{endpoint}\"\n");
    out
}

/// One `[[controller.pools]]` entry. Strings are quoted as JSON does, which TOML reads the same.
fn pool_entry(name: &str, cost: Option<f64>, elastic: bool, labels: &BTreeMap<String, String>) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{} = {}", quote(k), quote(v))).collect();
    format!(
        "[[controller.pools]]\nname = {}\ncost = {:?}\nelastic = {elastic}\nlabels = {{ {} }}\n",
        quote(name),
        cost.unwrap_or(1.0),
        labels.join(", ")
    )
}

/// The workers' termination grace period: the spec's, else the default.
fn worker_grace(bc: &BurstCluster) -> i64 {
    bc.spec.workers.termination_grace_period_seconds.unwrap_or(TERMINATION_GRACE_SECONDS)
}

fn config_map(bc: &BurstCluster, name: &str, ns: &str, owner: Option<OwnerReference>) -> ConfigMap {
    ConfigMap {
        metadata: meta(names::config_map(name), ns, names::labels(name, "config"), owner),
        data: Some(BTreeMap::from([("burst.toml".to_string(), config_file(bc, name, ns))])),
        ..ConfigMap::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..ObjectFieldSelector::default() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn restricted() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() }),
        ..SecurityContext::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..VolumeMount::default() }
}

fn empty_dir(name: &str) -> Volume {
    Volume { name: name.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

/// A Secret as a volume named `name` (mounted at `/<name>`), readable by the pod's group only.
fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(SECRET_MODE),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The controller's Secrets: its TLS files (at /tls) and the tokens file (at /tokens), where the spec has them.
fn controller_secrets(bc: &BurstCluster, cluster: &str) -> Vec<Volume> {
    let tls = tls::secrets(bc, cluster).map(|s| secret_volume("tls", &s.controller));
    let tokens = bc.spec.tokens_secret.as_deref().map(|t| secret_volume("tokens", t));
    tls.into_iter().chain(tokens).collect()
}

/// A probe of `path` on the HTTP port.
/// A probe of `path` on the HTTP port; `https` when the port speaks TLS (the controller's, in a cluster with TLS:
/// the kubelet does not verify the certificate).
fn http_probe(path: &str, period: i32, failures: i32, https: bool) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(names::HTTP_PORT_NAME.into()),
            scheme: https.then(|| "HTTPS".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(PROBE_TIMEOUT_SECONDS),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        container_port: number,
        name: Some(name.into()),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn config_volume(cluster: &str) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::config_map(cluster),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Where and with what a pod runs: the controller's from `spec.controller`, a worker's from its pool, else from
/// `workers`.
#[derive(Clone, Debug, Default)]
struct Placement {
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    affinity: Option<k8s_openapi::api::core::v1::Affinity>,
    labels: BTreeMap<String, String>,
    priority_class_name: Option<String>,
}

impl Placement {
    /// The controller's pod: where it may run, its labels and priority.
    fn controller(bc: &BurstCluster) -> Self {
        let c = &bc.spec.controller;
        Placement {
            resources: c.resources.clone(),
            node_selector: c.node_selector.clone(),
            tolerations: c.tolerations.clone(),
            affinity: c.affinity.clone(),
            labels: c.labels.clone(),
            priority_class_name: c.priority_class_name.clone(),
        }
    }

    fn of(bc: &BurstCluster, pool: Option<&PoolSpec>) -> Self {
        let w = &bc.spec.workers;
        let Some(p) = pool else {
            return Placement {
                resources: w.resources.clone(),
                node_selector: w.node_selector.clone(),
                tolerations: w.tolerations.clone(),
                affinity: w.affinity.clone(),
                labels: w.labels.clone(),
                priority_class_name: w.priority_class_name.clone(),
            };
        };
        let or = |mine: &BTreeMap<String, String>, theirs: &BTreeMap<String, String>| match mine.is_empty() {
            true => theirs.clone(),
            false => mine.clone(),
        };
        let mut labels = w.labels.clone();
        labels.extend(p.labels.clone());
        labels.insert(names::POOL_LABEL.into(), p.name.clone());
        Placement {
            resources: p.resources.clone().or_else(|| w.resources.clone()),
            node_selector: or(&p.node_selector, &w.node_selector),
            tolerations: if p.tolerations.is_empty() { w.tolerations.clone() } else { p.tolerations.clone() },
            affinity: p.affinity.clone().or_else(|| w.affinity.clone()),
            labels,
            priority_class_name: w.priority_class_name.clone(),
        }
    }
}

/// A pod of `role` running `burst <role>`, with the cluster's env and annotations, placed as `placement` says.
fn pod(
    bc: &BurstCluster,
    cluster: &str,
    role: &str,
    mut extra_env: Vec<EnvVar>,
    volumes: Vec<Volume>,
    placement: Placement,
) -> PodTemplateSpec {
    let s = &bc.spec;
    let mut env_vars = vec![env("BURST_CONFIG", "/etc/burst/burst.toml")];
    env_vars.append(&mut extra_env);
    env_vars.extend(s.env.iter().map(|(k, v)| env(k, v)));
    let mut mounts = vec![mount("config", "/etc/burst")];
    mounts.extend(volumes.iter().filter(|v| v.name != "config").map(|v| match v.name.as_str() {
        "data" => mount("data", "/data"),
        other => mount(other, &format!("/{other}")),
    }));
    let grpc_port = if role == "controller" { names::CONTROLLER_PORT } else { names::WORKER_PORT };
    let resources = placement.resources.clone();
    // The controller's HTTP port takes submissions: with TLS on, it speaks HTTPS with the controller's certificate.
    let https = role == "controller" && s.tls.enabled();
    let container = Container {
        name: role.into(),
        image: Some(s.image.clone()),
        image_pull_policy: s.image_pull_policy.clone(),
        args: Some(vec![role.into()]),
        env: Some(env_vars),
        ports: Some(vec![port("grpc", grpc_port), port(names::HTTP_PORT_NAME, names::HTTP_PORT)]),
        resources,
        volume_mounts: Some(mounts),
        security_context: Some(restricted()),
        startup_probe: Some(http_probe("/healthz", STARTUP_PERIOD_SECONDS, STARTUP_FAILURES, https)),
        readiness_probe: Some(http_probe("/readyz", READY_PERIOD_SECONDS, READY_FAILURES, https)),
        liveness_probe: Some(http_probe("/healthz", LIVE_PERIOD_SECONDS, LIVE_FAILURES, https)),
        ..Container::default()
    };
    // The cluster's own labels win: the controller's, a pool's or the workers' labels never change what selects
    // the pods (validate refuses them anyway).
    let own = names::labels(cluster, role);
    let mut labels = placement.labels.clone();
    labels.extend(own);
    if https {
        labels.insert(names::HTTP_SCHEME_LABEL.into(), "https".into());
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: (!s.annotations.is_empty()).then(|| s.annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            termination_grace_period_seconds: Some(match role {
                "worker" => worker_grace(bc),
                _ => TERMINATION_GRACE_SECONDS,
            }),
            automount_service_account_token: Some(false),
            security_context: Some(s.pod_security_context.clone().unwrap_or_else(|| PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() }),
                ..PodSecurityContext::default()
            })),
            image_pull_secrets: (!s.image_pull_secrets.is_empty()).then(|| s.image_pull_secrets.clone()),
            priority_class_name: placement.priority_class_name.clone(),
            node_selector: (!placement.node_selector.is_empty()).then(|| placement.node_selector.clone()),
            tolerations: (!placement.tolerations.is_empty()).then(|| placement.tolerations.clone()),
            affinity: placement.affinity.clone(),
            ..PodSpec::default()
        }),
    }
}

/// Mounts a volume the pod does not list itself: one from a StatefulSet's claim template.
fn mount_claim(template: &mut PodTemplateSpec, name: &str, path: &str) {
    if let Some(c) = template.spec.as_mut().and_then(|p| p.containers.first_mut()) {
        c.volume_mounts.get_or_insert_with(Vec::new).push(mount(name, path));
    }
}

fn controller(bc: &BurstCluster, name: &str, ns: &str, owner: Option<OwnerReference>) -> ControllerWorkload {
    let selector =
        LabelSelector { match_labels: Some(names::selector(name, "controller")), ..LabelSelector::default() };
    let metadata = meta(names::controller(name), ns, names::labels(name, "controller"), owner);
    let persistence = &bc.spec.controller.persistence;
    if persistence.enabled {
        let size = persistence.size.as_deref().unwrap_or("1Gi");
        let claim = storage::claim(names::data_claim(), size, persistence.storage_class_name.clone());
        let volumes = [vec![config_volume(name), empty_dir("tmp")], controller_secrets(bc, name)].concat();
        let mut template = pod(bc, name, "controller", vec![], volumes, Placement::controller(bc));
        mount_claim(&mut template, names::data_claim(), "/data");
        return ControllerWorkload::StatefulSet(Box::new(StatefulSet {
            metadata,
            spec: StatefulSetSpec {
                replicas: Some(1),
                service_name: Some(names::controller(name)),
                selector,
                template,
                volume_claim_templates: Some(vec![claim]),
                ..StatefulSetSpec::default()
            },
            ..StatefulSet::default()
        }));
    }
    let volumes =
        [vec![config_volume(name), empty_dir("data"), empty_dir("tmp")], controller_secrets(bc, name)].concat();
    let template = pod(bc, name, "controller", vec![], volumes, Placement::controller(bc));
    ControllerWorkload::Deployment(Box::new(Deployment {
        metadata,
        spec: DeploymentSpec { replicas: Some(1), selector, template, ..DeploymentSpec::default() },
        ..Deployment::default()
    }))
}

/// The controller's Service: gRPC, and HTTP while the Service stays inside the cluster. A NodePort or
/// LoadBalancer Service publishes every port it lists, and the HTTP port has no TLS and serves metrics to
/// anyone, so then it is left off (Prometheus scrapes the pods, not the Service).
fn controller_service(bc: &BurstCluster, name: &str, ns: &str, owner: Option<OwnerReference>) -> Service {
    let service_port = |port_name: &str, port: i32| ServicePort {
        name: Some(port_name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    let mut ports = vec![service_port("grpc", names::CONTROLLER_PORT)];
    if bc.spec.service_type.as_deref().is_none_or(|t| t == "ClusterIP") {
        ports.push(service_port(names::HTTP_PORT_NAME, names::HTTP_PORT));
    }
    Service {
        metadata: meta(names::controller(name), ns, names::labels(name, "controller"), owner),
        spec: Some(ServiceSpec {
            type_: bc.spec.service_type.clone(),
            selector: Some(names::selector(name, "controller")),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The StatefulSet of `workers` (`pool` none: the pool `default`) or of one pool.
fn workers(
    bc: &BurstCluster,
    name: &str,
    ns: &str,
    owner: Option<OwnerReference>,
    pool: Option<&PoolSpec>,
) -> StatefulSet {
    let mut downward = vec![
        field_env("BURST_WORKER_ID", "metadata.name"),
        field_env("POD_IP", "status.podIP"),
        env("BURST_WORKER_ADVERTISE", &format!("$(POD_IP):{}", names::WORKER_PORT)),
    ];
    if let Some(p) = pool {
        downward.push(env("BURST_POOL", &p.name));
        // Settings of the pool's own override the config file's (those of `workers`).
        if let Some(slots) = p.slots {
            downward.push(env("BURST_SLOTS", &slots.to_string()));
        }
        if let Some(q) = p.queue_capacity {
            downward.push(env("BURST_QUEUE_CAPACITY", &q.to_string()));
        }
    }
    let output = bc.spec.workers.output_volume.as_ref();
    let claims = output.map(|v| vec![storage::claim(names::output_claim(), &v.size, v.storage_class_name.clone())]);
    let mut volumes = vec![config_volume(name), empty_dir("tmp")];
    if claims.is_none() {
        volumes.insert(1, empty_dir(names::output_claim()));
    }
    if let Some(secrets) = tls::secrets(bc, name) {
        // Each worker's certificate is named after its pod, which is its worker id.
        downward.push(env("BURST_TLS_CERT", &format!("{}/$(BURST_WORKER_ID).pem", tls::MOUNT)));
        downward.push(env("BURST_TLS_KEY", &format!("{}/$(BURST_WORKER_ID)-key.pem", tls::MOUNT)));
        downward.push(env("BURST_TLS_CA", &format!("{}/{}", tls::MOUNT, tls::CA_BUNDLE)));
        volumes.push(secret_volume("tls", &secrets.workers));
    }
    let mut template = pod(bc, name, "worker", downward, volumes, Placement::of(bc, pool));
    if claims.is_some() {
        mount_claim(&mut template, names::output_claim(), "/out");
    }
    let (sts_name, replicas, mut labels, mut selector) = match pool {
        None => (
            names::workers(name),
            default_pool_replicas(bc),
            names::labels(name, "worker"),
            names::selector(name, "worker"),
        ),
        Some(p) => (
            names::pool_workers(name, &p.name),
            pool_replicas(bc, p),
            names::labels(name, "worker"),
            names::selector(name, "worker"),
        ),
    };
    if let Some(p) = pool {
        labels.insert(names::POOL_LABEL.into(), p.name.clone());
        selector.insert(names::POOL_LABEL.into(), p.name.clone());
    }
    StatefulSet {
        metadata: meta(sts_name.clone(), ns, labels, owner),
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(sts_name),
            // Workers are independent: start and stop them all at once rather than one by one.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(selector), ..LabelSelector::default() },
            template,
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests;
