//! The HTTP side of every burst server (`--http-listen`): `/metrics` in the Prometheus text format, `/healthz`
//! (the process answers) and `/readyz` (it does its job now), plus routes of the server's own (the controller's
//! dashboard).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;
use tracing::warn;

/// The content type of what [`Probe::metrics`] returns (prometheus-client's text encoding).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a server tells its HTTP side.
pub trait Probe: Send + Sync + 'static {
    /// The metrics page.
    fn metrics(&self) -> String;
    /// `Ok` while the server does its job; else why not (the `/readyz` body).
    fn ready(&self) -> Result<(), String>;
}

/// Parses an `--http-listen` value (none: no HTTP side).
pub fn parse_listen(value: Option<String>) -> Result<Option<SocketAddr>, String> {
    value.map(|v| v.parse().map_err(|_| format!("--http-listen {v:?} is not an address like 0.0.0.0:9090"))).transpose()
}

/// Binds `addr` and serves `/metrics`, `/healthz`, `/readyz` and `extra` in the background; returns the bound
/// address and the server's task (abort it to stop).
pub async fn serve(
    addr: SocketAddr,
    probe: Arc<dyn Probe>,
    extra: Router,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("reading the bound address: {e}"))?;
    let metrics = probe.clone();
    let app = Router::new()
        .route("/metrics", get(move || async move { ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.metrics()) }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                match probe.ready() {
                    Ok(()) => (StatusCode::OK, "ready".to_string()).into_response(),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
                }
            }),
        )
        .merge(extra);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "HTTP server stopped");
        }
    });
    Ok((local, task))
}
