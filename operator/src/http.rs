//! The operator's HTTP side: `/metrics`, `/healthz` and `/readyz` (this replica is up, leading or standing by;
//! the `burst_operator_leader` gauge says which), through [`burst_proto::http`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

struct Operator {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl burst_proto::http::Probe for Operator {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn ready(&self) -> Result<(), String> {
        // Relaxed: a flag read for a probe; nothing else is ordered by it.
        match self.ready.load(Ordering::Relaxed) {
            true => Ok(()),
            false => Err("standing by".into()),
        }
    }
}

/// Binds `addr` and serves in the background until the returned server is stopped or dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<burst_proto::http::Http> {
    let probe = Arc::new(Operator { metrics, ready });
    burst_proto::http::serve(addr, probe, axum::Router::new()).await.map_err(anyhow::Error::msg)
}
