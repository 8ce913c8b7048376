//! The NetworkPolicies of a BurstCluster (pure). What each port of its pods is open to:
//!
//! ```text
//! controller gRPC (50051)  <- the cluster's workers, the burst operator, the allowed clients
//! controller HTTP (9090)   <- any peer with TLS; without TLS, the peers of its gRPC port
//! worker gRPC     (7000)   <- the cluster's workers (steals), the cluster's controller (`burst logs` relay)
//! worker HTTP     (9090)   <- any peer
//! ```
//!
//! What reads the HTTP port (`/metrics`, `/healthz`, `/readyz`) runs where each installation puts it: Prometheus
//! in any namespace under any labels, and on some network plugins the kubelet's probes, which come from the node.
//! So it is open to every peer rather than to a guess at their labels, as far as what it serves allows. A
//! worker's serves nothing else: counts, its name, no job data, no way to change anything. The controller's also
//! serves its HTTP API (`/v1`: submit, read, cancel) and web dashboard with the caller's credentials: with TLS it
//! answers only a caller with a token or a client certificate, but in a plaintext cluster it answers anyone, so
//! there the port gets the same peers as the gRPC port, and Prometheus scrapes the
//! controller only if `allowedClients` lists it. Everything else that reaches these pods is dropped (where the
//! cluster's network plugin enforces NetworkPolicy).

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

/// The burst operator's pods, in whatever namespace the chart put them, by the role label the chart gives them
/// whatever its nameOverride ([`names::OPERATOR_ROLE`]).
fn operator() -> NetworkPolicyPeer {
    let labels = BTreeMap::from([(names::ROLE_LABEL.to_string(), names::OPERATOR_ROLE.to_string())]);
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(selector(labels)),
        ..NetworkPolicyPeer::default()
    }
}

/// TCP to `port` from `from`; `None`: from any peer.
fn rule(port: i32, from: Option<Vec<NetworkPolicyPeer>>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from,
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        }]),
    }
}

/// The policy of `role`'s pods: its gRPC port open to `from`, its HTTP port to `http_from` (`None`: any peer).
fn policy(
    name: String,
    ns: &str,
    (cluster, role): (&str, &str),
    (grpc_port, from): (i32, Vec<NetworkPolicyPeer>),
    http_from: Option<Vec<NetworkPolicyPeer>>,
    owner: Option<OwnerReference>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: super::meta(name, ns, names::labels(cluster, role), owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(names::selector(cluster, role))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![rule(grpc_port, Some(from)), rule(names::HTTP_PORT, http_from)]),
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
    let controller = pods(names::selector(cluster, "controller"));
    let mut clients = spec.allowed_clients.clone();
    if clients.is_empty() {
        clients.push(pods(BTreeMap::from([(CLIENT_LABEL.to_string(), "true".to_string())])));
    }
    let mut to_controller = vec![workers.clone(), operator()];
    to_controller.extend(clients);
    let controller_http = (!bc.spec.tls.enabled()).then(|| to_controller.clone());
    let to_workers = vec![workers, controller];
    vec![
        policy(
            names::controller(cluster),
            ns,
            (cluster, "controller"),
            (names::CONTROLLER_PORT, to_controller),
            controller_http,
            owner.clone(),
        ),
        policy(names::workers(cluster), ns, (cluster, "worker"), (names::WORKER_PORT, to_workers), None, owner),
    ]
}
