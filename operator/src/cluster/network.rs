//! The NetworkPolicies of a BurstCluster (pure): the controller's gRPC port is open only to the cluster's own
//! workers, the burst operator and the allowed clients; a worker's steal port only to the cluster's other
//! workers. Everything else that reaches these pods is dropped (where the cluster's network plugin enforces
//! NetworkPolicy).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::BurstCluster;
use crate::names;

/// The label that lets a pod of the cluster's namespace submit jobs when no allowed clients are listed.
pub const CLIENT_LABEL: &str = "burst.dev/client";

fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels), ..LabelSelector::default() }
}

fn pods(labels: BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer { pod_selector: Some(selector(labels)), ..NetworkPolicyPeer::default() }
}

/// The burst operator's pods, in whatever namespace the chart put them.
fn operator() -> NetworkPolicyPeer {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "burst".to_string()),
        ("app.kubernetes.io/component".to_string(), "operator".to_string()),
    ]);
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(selector(labels)),
        ..NetworkPolicyPeer::default()
    }
}

fn policy(
    name: String,
    ns: &str,
    role: &str,
    cluster: &str,
    port: i32,
    from: Vec<NetworkPolicyPeer>,
    owner: Option<OwnerReference>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: super::meta(name, ns, names::labels(cluster, role), owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(names::selector(cluster, role))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(port)),
                    protocol: Some("TCP".into()),
                    ..NetworkPolicyPort::default()
                }]),
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// The cluster's policies; none when `networkPolicy.enabled` is false.
pub fn policies(bc: &BurstCluster, cluster: &str, ns: &str, owner: Option<OwnerReference>) -> Vec<NetworkPolicy> {
    let spec = &bc.spec.network_policy;
    if spec.enabled == Some(false) {
        return Vec::new();
    }
    let workers = pods(names::selector(cluster, "worker"));
    let mut clients = spec.allowed_clients.clone();
    if clients.is_empty() {
        clients.push(pods(BTreeMap::from([(CLIENT_LABEL.to_string(), "true".to_string())])));
    }
    let mut to_controller = vec![workers.clone(), operator()];
    to_controller.extend(clients);
    vec![
        policy(
            names::controller(cluster),
            ns,
            "controller",
            cluster,
            names::CONTROLLER_PORT,
            to_controller,
            owner.clone(),
        ),
        policy(names::workers(cluster), ns, "worker", cluster, names::WORKER_PORT, vec![workers], owner),
    ]
}
