//! The HTTP side of every burst server (`--http-listen`): `/metrics` in the Prometheus text format, `/healthz`
//! (the process answers) and `/readyz` (it does its job now), plus routes of the server's own (the controller's
//! HTTP API and dashboard), in plaintext or over TLS. Each request carries its connection's [`Peer`] (address,
//! client certificate) as an extension.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

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

/// Who is at the other end of a request's connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client certificate chain it presented over TLS (verified against the CA), if any.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// Plaintext connections.
struct Plain(TcpListener);

impl Listener for Plain {
    type Io = TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (TcpStream, Peer) {
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        let _ = tcp.set_nodelay(true);
        (tcp, Peer { addr, certs: None })
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer { addr: self.0.local_addr()?, certs: None })
    }
}

/// Connections through a TLS handshake ([`crate::tls::incoming`]).
struct Tls {
    incoming: ReceiverStream<std::io::Result<TlsStream<TcpStream>>>,
    local: SocketAddr,
}

impl Listener for Tls {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (TlsStream<TcpStream>, Peer) {
        loop {
            match self.incoming.next().await {
                Some(Ok(stream)) => {
                    let (tcp, session) = stream.get_ref();
                    let Ok(addr) = tcp.peer_addr() else { continue };
                    let certs = session
                        .peer_certificates()
                        .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
                    return (stream, Peer { addr, certs });
                }
                Some(Err(_)) => continue,
                // The acceptor stopped (its listener is gone): nothing more will come.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer { addr: self.local, certs: None })
    }
}

impl Connected<IncomingStream<'_, Plain>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Plain>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Connected<IncomingStream<'_, Tls>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Tls>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Binds `addr` and serves `/metrics`, `/healthz`, `/readyz` and `extra` in the background: over TLS with `tls`
/// (its certificates as they are when each connection arrives; a client certificate optional), else plaintext.
pub async fn serve(
    addr: SocketAddr,
    probe: Arc<dyn Probe>,
    extra: Router,
    tls: Option<crate::tls::LiveTls>,
) -> Result<Http, String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
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
    let stopped = async {
        let _ = stopped.await;
    };
    let app = app.into_make_service_with_connect_info::<Peer>();
    let task = match tls {
        Some(tls) => {
            let incoming = crate::tls::incoming(listener, tls, crate::tls::Accept::Http)?;
            let tls = Tls { incoming, local };
            tokio::spawn(async move {
                if let Err(e) = axum::serve(tls, app).with_graceful_shutdown(stopped).await {
                    warn!(error = %e, "HTTPS server stopped");
                }
            })
        }
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(Plain(listener), app).with_graceful_shutdown(stopped).await {
                warn!(error = %e, "HTTP server stopped");
            }
        }),
    };
    Ok(Http { addr: local, stop: Some(stop), task })
}
