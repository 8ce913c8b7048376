//! The operator's settings: flags and `BURST_OPERATOR_*` / downward-API variables over the defaults.

use std::net::SocketAddr;

use clap::ArgAction;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Namespaces to watch, comma-separated [default: every namespace].
    #[arg(long, env = "BURST_OPERATOR_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "BURST_OPERATOR_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// Reconcile only while holding the leader Lease, so that several replicas are safe.
    #[arg(long, env = "BURST_OPERATOR_LEADER_ELECT", default_value_t = true, action = ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (the operator's own; the chart sets it from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "BURST_OPERATOR_LEASE_NAME", default_value = "burst-operator")]
    pub lease_name: String,
    /// This replica's name in the Lease and in Events [default: the pod name, else the host name].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}
