//! The custom resources, group `burst.dev`, version `v1alpha1`, both namespaced with a status subresource.
//!
//! Schemas are derived with schemars and must stay structural (what a real API server accepts): every node
//! typed, no `$ref`, no untyped `anyOf`/`oneOf`. The tests check that, and that `crds/` matches what this code
//! generates.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, PodSecurityContext, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A burst cluster: one controller and `workers.replicas` workers.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "burst.dev",
    version = "v1alpha1",
    kind = "BurstCluster",
    namespaced,
    status = "BurstClusterStatus",
    shortname = "bc",
    // `kubectl scale bc/NAME --replicas N` (and an HPA) sets the workers' replicas (the pool `default`).
    scale(
        spec_replicas_path = ".spec.workers.replicas",
        status_replicas_path = ".status.readyWorkers",
        label_selector_path = ".status.workerSelector"
    ),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Slots","type":"string","jsonPath":".status.slots"}"#,
    printcolumn = r#"{"name":"Queued","type":"integer","jsonPath":".status.queued"}"#,
    printcolumn = r#"{"name":"Running","type":"integer","jsonPath":".status.running"}"#,
    printcolumn = r#"{"name":"Router","type":"string","jsonPath":".spec.controller.router"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BurstClusterSpec {
    /// The burst image (every role runs from it).
    pub image: String,
    /// Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,
    /// Secrets for pulling the image from a private registry, for every pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default)]
    pub controller: ControllerSpec,
    #[serde(default)]
    pub workers: WorkersSpec,
    /// More pools of workers beside `workers` (which is the pool `default`): each its own StatefulSet
    /// `<name>-worker-<pool>`, its pods in that pool. What a pool leaves unset it takes from `workers`; with
    /// pools listed, `workers.replicas` defaults to 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSpec>,
    /// Extra environment for every pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Extra annotations for every pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Every pod's security context, instead of the default (runAsNonRoot, runAsUser and fsGroup 65534, the
    /// image's user, and the RuntimeDefault seccomp profile). `{}` lets the platform choose the user and group,
    /// as OpenShift's restricted SCC requires (it refuses ids outside the namespace's range). The containers
    /// stay restricted either way: read-only root filesystem, no privilege escalation, no capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,
    /// The controller Service's type: ClusterIP (default), NodePort or LoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["ClusterIP", "NodePort", "LoadBalancer"]))]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "NetworkPolicySpec::is_default")]
    pub network_policy: NetworkPolicySpec,
    #[serde(default, skip_serializing_if = "TlsSpec::is_default")]
    pub tls: TlsSpec,
    /// A Secret in this namespace whose key `tokens.toml` is the controller's tokens file (see burst's Security
    /// docs): clients then need a token or a client certificate. Needs TLS. Edits are picked up without a
    /// restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_secret: Option<String>,
}

/// Mutual TLS between the cluster's pods, its clients and the operator. On by default, with a CA and
/// certificates the operator makes and renews (Secrets `<name>-tls-ca`, `<name>-controller-tls`,
/// `<name>-worker-tls`); or with Secrets you name, all three, laid out the same way.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Set false for plaintext inside the cluster (default: TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Days each operator-made certificate is valid; it is renewed when a third of that is left (default 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32", "maximum" = i32::MAX))]
    pub certificate_days: Option<u32>,
    /// Your own Secret for the controller: `ca.pem`, `controller.pem`, `controller-key.pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_secret: Option<String>,
    /// Your own Secret for the workers: `ca.pem`, and `<pod name>.pem` and `<pod name>-key.pem` for each worker
    /// pod (`<name>-worker-0`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_secret: Option<String>,
    /// Your own Secret for the operator's client certificate (role admin): `ca.pem`, `operator.pem`,
    /// `operator-key.pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_secret: Option<String>,
    /// Client certificates the operator issues (with its own CA only), each in a Secret
    /// `<name>-client-<client>` holding `ca.pem`, `client.pem` and `client-key.pem`: what a person or program
    /// needs to use the cluster (`burst --tls-ca ca.pem --tls-cert client.pem --tls-key client-key.pem`), never
    /// the CA's key. Renewed like the others. A client taken out of the list loses its Secret; its certificate
    /// stays valid until it expires, so use a tokens file for access that must end at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<TlsClient>,
}

/// A client the operator issues a certificate for.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct TlsClient {
    /// The client's name: its certificate's common name (the owner of the jobs it submits) and its Secret's
    /// suffix. 1 to 30 lowercase letters, digits and '-', starting with a letter.
    pub name: String,
    /// admin (every job, workers, cordons) or submit (its own jobs).
    #[schemars(extend("enum" = ["admin", "submit"]))]
    pub role: String,
}

impl TlsSpec {
    fn is_default(&self) -> bool {
        *self == TlsSpec::default()
    }

    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

/// Who may reach the cluster's pods. On by default: the controller's gRPC port is open to the cluster's workers,
/// the burst operator and the allowed clients; a worker's gRPC port to the cluster's other workers and its
/// controller. The HTTP port (9090: metrics, health, the controller's dashboard) is open to any peer, so
/// Prometheus can scrape it; but in a plaintext cluster (`tls.enabled: false`) the controller's only to the peers
/// of its gRPC port, since its dashboard then asks no credentials: list Prometheus in `allowedClients` there.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Set false to create no NetworkPolicy (default: created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Pods that may submit jobs, as NetworkPolicy peers [default: pods in this namespace labelled
    /// `burst.dev/client: "true"`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_clients: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

impl NetworkPolicySpec {
    fn is_default(&self) -> bool {
        *self == NetworkPolicySpec::default()
    }
}

/// A pool of workers: workers of one kind and price (an on-prem rack, a cloud node group).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// 1 to 30 lowercase letters, digits and '-', starting with a letter; not "default" (that is `workers`).
    pub name: String,
    /// Relative cost of one slot for one second (default 1): the placement policy prefers cheaper pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Worker pods (default 1), unless the pool is elastic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Elastic: the operator sets the pool's worker pods between minReplicas (default 0) and maxReplicas from
    /// the jobs waiting for it and its busy slots; a pod goes only once it holds no job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Seconds an elastic pool must have had more workers than it needs before it is scaled down (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i64>,
    /// Jobs each worker runs at once (default: `workers.slots`, else its cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<i32>,
    /// Jobs each worker may hold beyond those running (default: `workers.queueCapacity`, else the worker's
    /// adaptive one: 8 x slots while jobs are short, 2 x slots otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// The pool's labels, which a job's pool selector matches; also put on its pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSpec {
    /// roundrobin (default), power2 or biased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["roundrobin", "power2", "biased"]))]
    pub router: Option<String>,
    /// How jobs are placed among pools: cheapest (default), first-pool-only or wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["cheapest", "first-pool-only", "wait"]))]
    pub policy: Option<String>,
    /// Under policy wait, what a job's waiting budget is proportional to: constant (default), runtime,
    /// resources or compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["constant", "runtime", "resources", "compute"]))]
    pub wait_by: Option<String>,
    /// The waiting budget's factor (default 10): seconds for constant and resources, a multiplier otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_factor: Option<f64>,
    /// Seconds of silence after which a worker is dead (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // int32, not the derived uint32: API servers warn on formats they do not know.
    #[schemars(extend("format" = "int32", "maximum" = i32::MAX))]
    pub lease_timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub persistence: PersistenceSpec,
    /// Where the controller's pod may run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// More labels on the controller's pod (the cluster's own `burst.dev/*` and `app.kubernetes.io/*` labels may
    /// not be set here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The controller pod's PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Where the controller's durable store lives: a PersistentVolumeClaim when enabled, else the pod's own
/// (ephemeral) disk.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Volume size, e.g. 1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkersSpec {
    /// Worker pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Jobs each worker runs at once (default: its cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<i32>,
    /// Jobs each worker may hold beyond those running (default: adaptive, 8 x slots while jobs are short, under
    /// 100 ms on average, 2 x slots otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Labels of the workers, for routing and display; also on their pods (the cluster's own `burst.dev/*` and
    /// `app.kubernetes.io/*` labels may not be set here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The worker pods' PriorityClass (every pool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Relative cost of one of these workers' slots for one second, as the pool `default` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Whether idle workers steal from busy ones (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stealing: Option<bool>,
    /// Seconds a worker pod has to go once told to stop (scale-down, rollout, node drain): it hands back what it
    /// has not started at once and gives running jobs all but the last 5 seconds to finish (default 30; raise it
    /// above your longest job so none is stopped and run again elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Where each worker keeps its jobs' output (`/out`). Unset: an emptyDir, which outlives a restart of the
    /// worker's container but not the pod. Set: a PersistentVolumeClaim per worker pod (`out-<pod name>`), which
    /// outlives the pod and is kept when the cluster is scaled down or deleted. Setting, changing or removing it
    /// replaces the workers one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_volume: Option<OutputVolumeSpec>,
}

/// A PersistentVolumeClaim per worker pod for its output.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutputVolumeSpec {
    /// Volume size per worker, e.g. 10Gi.
    pub size: String,
    /// The StorageClass of the claims (default: the cluster's default StorageClass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BurstClusterStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// "ready/desired" workers, for the READY column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    #[serde(default)]
    pub ready_workers: i32,
    #[serde(default)]
    pub desired_workers: i32,
    /// The label selector of the cluster's worker pods, for the scale subresource (an HPA reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_selector: Option<String>,
    /// "busy/total" slots, for the SLOTS column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<String>,
    #[serde(default)]
    pub slots_busy: i64,
    #[serde(default)]
    pub slots_total: i64,
    #[serde(default)]
    pub queued: i64,
    #[serde(default)]
    pub running: i64,
    /// The controller's gRPC endpoint inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The pools' worker StatefulSets last applied: one whose pool leaves the spec is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool_workers: Vec<String>,
    /// The clients' certificate Secrets last applied (`spec.tls.clients`): one whose client leaves the spec is
    /// deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_secrets: Vec<String>,
    /// Each elastic pool's worker pods as the operator set them, and since when (Unix seconds) it has had more
    /// than it needs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub elastic: BTreeMap<String, ElasticPoolStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ElasticPoolStatus {
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surplus_since: Option<i64>,
}

impl PoolSpec {
    /// Whether the operator scales this pool.
    pub fn elastic(&self) -> bool {
        self.max_replicas.is_some()
    }
}

/// One burst job, declared: submitted once to the cluster it names, its status mirroring the job to its end.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "burst.dev",
    version = "v1alpha1",
    kind = "BurstJob",
    namespaced,
    status = "BurstJobStatus",
    shortname = "bj",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Worker","type":"string","jsonPath":".status.worker"}"#,
    printcolumn = r#"{"name":"Attempts","type":"integer","jsonPath":".status.attempts"}"#,
    printcolumn = r#"{"name":"Exit","type":"integer","jsonPath":".status.exitCode"}"#,
    printcolumn = r#"{"name":"Indices","type":"integer","jsonPath":".status.indices.total","priority":1}"#,
    printcolumn = r#"{"name":"Succeeded","type":"integer","jsonPath":".status.indices.succeeded","priority":1}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.indices.failed","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BurstJobSpec {
    /// The BurstCluster (same namespace) that runs the job.
    pub cluster_ref: String,
    /// Exactly one of process, python, docker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessJob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonJob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerJob>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// What the job reserves on its worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<JobResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    /// -1000 to 1000 (0 by default): when the cluster is full the highest priority runs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// BurstJobs (names, same namespace and cluster) whose jobs must succeed before this one runs; if one fails
    /// or is cancelled, this one fails with DependencyFailed. Submitted once they all are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// BurstJobs whose jobs must end, however, before this one runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_any: Vec<String>,
    /// A job array: indices first..=last, each run as a job of its own with BURST_ARRAY_INDEX set, at most
    /// `parallelism` unfinished at once (0: no limit). The status counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<JobArray>,
    /// Delete the BurstJob this long after it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobArray {
    pub first: i64,
    pub last: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
}

/// A job array's indices by state.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobArrayCounts {
    pub total: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// The first failed indices (up to 100), in the order they ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_indices: Vec<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProcessJob {
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// One of script, module, code.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PythonJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DockerJob {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobResources {
    /// Millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BurstJobStatus {
    /// Pending, Queued, Running, Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Detail, including why a queued job still waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stolen_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// The last 4 KiB of the job's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
    /// For a job array: its indices by state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<JobArrayCounts>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Every CRD burst defines, with the file name it is kept under in `crds/`.
pub fn all()
-> Vec<(&'static str, k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition)> {
    use kube::CustomResourceExt;
    vec![("burstclusters.yaml", BurstCluster::crd()), ("burstjobs.yaml", BurstJob::crd())]
}

/// A CRD as the YAML kept in `crds/`.
pub fn to_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> anyhow::Result<String> {
    Ok(serde_yaml::to_string(crd)?)
}
