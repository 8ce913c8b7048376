//! The operator's HTTP side: `/metrics`, `/healthz` and `/readyz` (this replica is up, leading or standing by;
//! the `burst_operator_leader` gauge says which), through [`burst_proto::http`].

use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::Metrics;

struct Operator {
    metrics: Arc<Metrics>,
}

impl burst_proto::http::Probe for Operator {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    /// Ready whenever it serves, leading or standing by: a rolling update starts the new pod before it stops the
    /// old one (the leader) and waits for the new pod to be Ready; one that is Ready only once it leads never is.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Binds `addr` and serves in the background until the returned server is stopped or dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<burst_proto::http::Http> {
    let probe = Arc::new(Operator { metrics });
    burst_proto::http::serve(addr, probe, axum::Router::new(), None).await.map_err(anyhow::Error::msg)
}
