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

/// How long a stopping server lets requests in flight finish.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A running HTTP side. Stopping (or dropping) it closes its connections too, so nothing it serves — and
/// nothing it holds, like the controller — outlives it.
pub struct Http {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Http {
    /// Stops accepting, lets requests in flight finish (at most [`STOP_GRACE`]) and closes the connections.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(STOP_GRACE, &mut self.task).await;
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Binds `addr` and serves `/metrics`, `/healthz`, `/readyz` and `extra` in the background.
pub async fn serve(addr: SocketAddr, probe: Arc<dyn Probe>, extra: Router) -> Result<Http, String> {
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            warn!(error = %e, "HTTP server stopped");
        }
    });
    Ok(Http { addr: local, stop: Some(stop), task })
}
