//! Names, labels and selectors of everything a BurstCluster owns: one place, so the builders, the reconciler and
//! the tests agree.

use std::collections::BTreeMap;

/// The label every owned object carries, naming its BurstCluster.
pub const CLUSTER_LABEL: &str = "burst.dev/cluster";
/// The label naming an object's role: controller or worker.
pub const ROLE_LABEL: &str = "burst.dev/role";
/// The role label's value on the operator's own pods (the chart sets it): what a BurstCluster's NetworkPolicy
/// lets in to the controller.
pub const OPERATOR_ROLE: &str = "operator";
/// On a pod whose HTTP port speaks HTTPS (the controller of a cluster with TLS): `https`. The chart's PodMonitor
/// scrapes such pods over HTTPS.
pub const HTTP_SCHEME_LABEL: &str = "burst.dev/http-scheme";
/// The controller's gRPC port, in its pod and on its Service.
pub const CONTROLLER_PORT: i32 = 50051;
/// A worker's gRPC port: peers steal through it and the controller relays `burst logs` from it.
pub const WORKER_PORT: i32 = 7000;
/// The HTTP port of the controller and the workers (`/metrics`, `/healthz`, `/readyz`), named [`HTTP_PORT_NAME`]
/// in their pods and on the controller's Service: what probes and a Prometheus PodMonitor point at.
pub const HTTP_PORT: i32 = 9090;
pub const HTTP_PORT_NAME: &str = "http";

pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}

pub fn controller(cluster: &str) -> String {
    format!("{cluster}-controller")
}

pub fn workers(cluster: &str) -> String {
    format!("{cluster}-worker")
}

/// Worker pod `i` of the workers' StatefulSet: also its worker id and its certificate's name.
pub fn worker_pod(cluster: &str, i: i32) -> String {
    format!("{}-{i}", workers(cluster))
}

/// The label naming a worker pod's pool (not on the pods of `workers`, the pool `default`).
pub const POOL_LABEL: &str = "burst.dev/pool";

/// The StatefulSet of pool `pool`'s workers.
pub fn pool_workers(cluster: &str, pool: &str) -> String {
    format!("{}-{pool}", workers(cluster))
}

/// Worker pod `i` of pool `pool`: also its worker id and its certificate's name.
pub fn pool_worker_pod(cluster: &str, pool: &str, i: i32) -> String {
    format!("{}-{i}", pool_workers(cluster, pool))
}

/// The Secret with the cluster's CA and the operator's client certificate (mounted nowhere).
pub fn tls_ca(cluster: &str) -> String {
    format!("{cluster}-tls-ca")
}

/// The Secret mounted in the controller: the CA bundle and the controller's certificate.
pub fn controller_tls(cluster: &str) -> String {
    format!("{cluster}-controller-tls")
}

/// The Secret mounted in every worker: the CA bundle and each worker pod's certificate.
pub fn worker_tls(cluster: &str) -> String {
    format!("{cluster}-worker-tls")
}

/// The Secret with one client's certificate (`spec.tls.clients`).
pub fn client_tls(cluster: &str, client: &str) -> String {
    format!("{cluster}-client-{client}")
}

pub fn data_claim() -> &'static str {
    "data"
}

/// The workers' output volume (mounted at `/out`): an emptyDir, or a claim per pod with `outputVolume`.
pub fn output_claim() -> &'static str {
    "out"
}

/// The in-cluster address of the controller's Service (`https` when the cluster runs TLS).
pub fn controller_endpoint(cluster: &str, namespace: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}.{namespace}.svc:{CONTROLLER_PORT}", controller(cluster))
}

pub fn labels(cluster: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER_LABEL.to_string(), cluster.to_string()),
        (ROLE_LABEL.to_string(), role.to_string()),
        ("app.kubernetes.io/name".to_string(), "burst".to_string()),
        ("app.kubernetes.io/component".to_string(), role.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "burst-operator".to_string()),
    ])
}

/// What a role's pods are selected by (a subset of [`labels`] that never changes).
pub fn selector(cluster: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(CLUSTER_LABEL.to_string(), cluster.to_string()), (ROLE_LABEL.to_string(), role.to_string())])
}

/// Labels on every job the operator submits for a BurstJob: they name the object, so one watch stream per
/// cluster can route each status change to its BurstJob without a lookup table.
pub const SOURCE_LABEL: &str = "burst.dev/source";
pub const SOURCE_BURSTJOB: &str = "burstjob";
pub const BURSTJOB_LABEL: &str = "burst.dev/burstjob";
pub const NAMESPACE_LABEL: &str = "burst.dev/namespace";

/// The finalizer that cancels an unfinished job when its BurstJob is deleted.
pub const JOB_FINALIZER: &str = "burst.dev/cancel-job";
/// The field manager of every server-side apply and status patch.
pub const FIELD_MANAGER: &str = "burst-operator";
