//! Names, labels and selectors of everything a BurstCluster owns: one place, so the builders, the reconciler and
//! the tests agree.

use std::collections::BTreeMap;

/// The label every owned object carries, naming its BurstCluster.
pub const CLUSTER_LABEL: &str = "burst.dev/cluster";
/// The label naming an object's role: controller or worker.
pub const ROLE_LABEL: &str = "burst.dev/role";
/// The controller's gRPC port, in its pod and on its Service.
pub const CONTROLLER_PORT: i32 = 50051;
/// A worker's peer (steal) port.
pub const WORKER_PORT: i32 = 7000;

pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}

pub fn controller(cluster: &str) -> String {
    format!("{cluster}-controller")
}

pub fn workers(cluster: &str) -> String {
    format!("{cluster}-worker")
}

pub fn data_claim() -> &'static str {
    "data"
}

/// The in-cluster address of the controller's Service.
pub fn controller_endpoint(cluster: &str, namespace: &str) -> String {
    format!("http://{}.{namespace}.svc:{CONTROLLER_PORT}", controller(cluster))
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
