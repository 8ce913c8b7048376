//! TLS that follows its certificates: the rustls configurations a running program serves and dials with, built
//! from PEM and replaced when new PEM arrives, so certificates are rotated without a restart.
//!
//! 1. A [`LiveTls`] holds the current configurations behind one pointer; [`LiveTls::replace`] builds new ones
//!    from new PEM and swaps the pointer, only when all of it loads (a half-written or mismatched set is refused
//!    and the old one stays).
//! 2. Servers accept connections themselves ([`incoming`]) and hand finished handshakes to tonic; each handshake
//!    uses the configuration current at that moment. Clients dial through [`lazy`] / [`connect`], whose connector
//!    does the same on every (re)connect.
//! 3. Programs whose certificates are files call [`LiveTls::follow`]: the files are read again now and then and
//!    swapped in when they changed (a Kubernetes Secret volume updates in place).
//!
//! # Guarantees
//! - A connection already made keeps its session: a rotation never cuts off a worker or fails a running job.
//! - Every new connection after a successful swap presents the new certificate and trusts the new CA bundle
//!   (a bundle may hold the old and the new CA while a CA is replaced).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use super::TlsFiles;

/// A client that has not finished its handshake by then is dropped, so slow or idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPT_BACKLOG: usize = 64;
/// After a failed accept (out of file descriptors, say), wait this long before the next, instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
const ALPN_H2: &[u8] = b"h2";
/// What the HTTP side speaks (axum serves HTTP/1.1 there).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Who may connect to a TLS server, and what it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// gRPC; a client certificate of the CA if the client has one.
    Grpc,
    /// gRPC; a client certificate of the CA required.
    GrpcClientCert,
    /// HTTP/1.1; a client certificate of the CA if the client has one (a browser or curl with a token has none).
    Http,
}

/// PEM bytes: the CA bundle every peer must chain to, and this side's certificate chain and key (a client that
/// authenticates with a token has none).
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    pub ca: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Pem {
    // Never print a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem").field("ca_bytes", &self.ca.len()).field("identity", &self.identity.is_some()).finish()
    }
}

impl Pem {
    /// The PEM of `files` as they are now.
    pub fn read(files: &TlsFiles) -> Result<Pem, String> {
        Pem::read_paths(&files.ca, Some((&files.cert, &files.key)))
    }

    /// The PEM of a CA file and, when given, a certificate and key file (a client may have none).
    pub fn read_paths(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Pem, String> {
        let identity = match identity {
            Some((cert, key)) => Some((super::read(cert, "certificate")?, super::read(key, "key")?)),
            None => None,
        };
        Ok(Pem { ca: super::read(ca, "CA certificate")?, identity })
    }
}

/// The configurations built from one [`Pem`].
struct Loaded {
    pem: Pem,
    client: Arc<ClientConfig>,
    /// With this side's certificate: (client certificate optional, required).
    /// The server's configurations for each [`Accept`]: gRPC, gRPC with a client certificate, HTTP.
    server: Option<[Arc<ServerConfig>; 3]>,
}

/// The TLS a running program uses now; cheap to clone, every clone sees every replacement.
#[derive(Clone)]
pub struct LiveTls {
    /// Held only to clone or swap the pointer, never across a handshake or an await.
    current: Arc<RwLock<Arc<Loaded>>>,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls").field("pem", &self.now().pem).finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(pem: Pem) -> Result<Loaded, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem.ca) {
        let cert = cert.map_err(|e| format!("the CA bundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("the CA bundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA bundle holds no certificate".into());
    }
    let roots = Arc::new(roots);
    let identity = match &pem.identity {
        None => None,
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("the certificate: {e}"))?;
            if chain.is_empty() {
                return Err("the certificate file holds no certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("the key: {e}"))?;
            Some((chain, key))
        }
    };
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots.clone());
    let mut client = match &identity {
        Some((chain, key)) => client
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("the certificate and key: {e}"))?,
        None => client.with_no_client_auth(),
    };
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    let server = match identity {
        None => None,
        Some((chain, key)) => {
            let server = |require_client: bool, alpn: &[u8]| -> Result<Arc<ServerConfig>, String> {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
                let verifier = if require_client { verifier } else { verifier.allow_unauthenticated() };
                let verifier = verifier.build().map_err(|e| format!("the CA bundle: {e}"))?;
                let mut config = ServerConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| format!("the certificate and key: {e}"))?;
                config.alpn_protocols = vec![alpn.to_vec()];
                Ok(Arc::new(config))
            };
            Some([server(false, ALPN_H2)?, server(true, ALPN_H2)?, server(false, ALPN_HTTP1)?])
        }
    };
    Ok(Loaded { pem, client: Arc::new(client), server })
}

impl LiveTls {
    /// TLS from `pem`; an error says which part does not load.
    pub fn new(pem: Pem) -> Result<LiveTls, String> {
        Ok(LiveTls { current: Arc::new(RwLock::new(Arc::new(load(pem)?))) })
    }

    /// TLS from the files as they are now.
    pub fn from_files(files: &TlsFiles) -> Result<LiveTls, String> {
        LiveTls::new(Pem::read(files)?)
    }

    fn now(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Uses `pem` for every connection from now on. `Ok(false)`: it is what is in use already. On an error the
    /// configuration in use stays.
    pub fn replace(&self, pem: Pem) -> Result<bool, String> {
        let now = self.now();
        if now.pem == pem {
            return Ok(false);
        }
        if now.server.is_some() && pem.identity.is_none() {
            return Err("a server's TLS needs a certificate and key".into());
        }
        let loaded = Arc::new(load(pem)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(true)
    }

    /// Reads `files` and uses them if they changed (see [`LiveTls::replace`]).
    pub fn reload(&self, files: &TlsFiles) -> Result<bool, String> {
        self.replace(Pem::read(files)?)
    }

    /// Reads `files` again every [`crate::follow::EVERY`] and uses them when they changed (see
    /// [`crate::follow::follow`]), for as long as the returned task runs.
    pub fn follow(&self, files: TlsFiles) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        let what = files.cert.display().to_string();
        let read = move || Pem::read(&files);
        crate::follow::follow(what, crate::follow::EVERY, read, move |pem| tls.replace(pem))
    }

    fn server(&self, accept: Accept) -> Option<Arc<ServerConfig>> {
        let loaded = self.now();
        let [grpc, grpc_client_cert, http] = loaded.server.as_ref()?;
        Some(match accept {
            Accept::Grpc => grpc.clone(),
            Accept::GrpcClientCert => grpc_client_cert.clone(),
            Accept::Http => http.clone(),
        })
    }
}

/// Connections on `listener`, each through a TLS handshake with the configuration current when it arrived, as
/// `accept` says. Stops accepting when the server drops the stream. Errors if `tls` has no certificate of its
/// own.
pub fn incoming(
    listener: TcpListener,
    tls: LiveTls,
    accept: Accept,
) -> Result<ReceiverStream<io::Result<TlsStream<TcpStream>>>, String> {
    if tls.server(accept).is_none() {
        return Err("a TLS server needs a certificate and key".into());
    }
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                },
            };
            let Some(config) = tls.server(accept) else { return };
            let tx = tx.clone();
            // Handshakes run side by side: one slow client never holds up the next.
            tokio::spawn(handshake(tcp, peer, config, tx));
        }
    });
    Ok(ReceiverStream::new(rx))
}

async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    tx: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
) {
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp)).await {
        Ok(Ok(stream)) => {
            let _ = tx.send(Ok(stream)).await;
        }
        // A connection closed before it said anything: a TCP readiness probe, a port scan.
        Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => debug!(%peer, %error, "closed before TLS"),
        // A client of another CA, with an expired certificate, or speaking plaintext.
        Ok(Err(error)) => info!(%peer, %error, "TLS handshake refused"),
        Err(_) => debug!(%peer, "TLS handshake timed out"),
    }
}

/// A running server, as [`serve`] returns it: resolves when the server stops.
pub type Serving = std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// A server's future: serves `router` on `listener` until `shutdown`, over TLS with `tls` (client certificates
/// required when `require_client`), else in plaintext. Errors at once if `tls` has no certificate of its own.
pub fn serve(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    tls: Option<&LiveTls>,
    require_client: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Serving, String> {
    Ok(match tls {
        Some(tls) => {
            let accept = if require_client { Accept::GrpcClientCert } else { Accept::Grpc };
            let incoming = incoming(listener, tls.clone(), accept)?;
            Box::pin(async move { router.serve_with_incoming_shutdown(incoming, shutdown).await })
        }
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(async move { router.serve_with_incoming_shutdown(incoming, shutdown).await })
        }
    })
}

/// An endpoint for `addr` (`host:port` or a URL): what [`lazy`] and [`connect`] dial, with the caller's
/// timeouts and settings.
pub fn endpoint(addr: &str) -> Result<Endpoint, String> {
    // The connector below does TLS itself, so tonic is given a plain URL and never layers TLS of its own.
    Endpoint::from_shared(super::url(addr, false))
        .map(|e| e.tcp_nodelay(true))
        .map_err(|_| format!("address {addr:?} is not a URL or host:port"))
}

/// `endpoint` pinging its connection every 10 s, failing it when a ping goes 20 s unanswered (gRPC's default; a
/// busy peer's runtime may take seconds to answer): a long-lived call or stream on a connection whose peer vanished
/// without a reset (a node lost, a cable pulled) fails, and is made again, instead of waiting for ever.
pub fn keep_alive(endpoint: Endpoint) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
}

/// A channel to `endpoint` that connects on first use (and again after a loss): over TLS with `tls`, verifying
/// the server as `server`, else plaintext.
pub fn lazy(endpoint: &Endpoint, tls: Option<&LiveTls>, server: &'static str) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(connector(tls.clone(), server)),
        None => endpoint.connect_lazy(),
    }
}

/// A channel to `endpoint`, connected now (see [`lazy`]).
pub async fn connect(
    endpoint: &Endpoint,
    tls: Option<&LiveTls>,
    server: &'static str,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        Some(tls) => endpoint.connect_with_connector(connector(tls.clone(), server)).await,
        None => endpoint.connect().await,
    }
}

/// Dials TCP and does a TLS handshake with the client configuration current at that moment.
fn connector(
    tls: LiveTls,
    server: &'static str,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: tonic::codegen::http::Uri| {
        let config = tls.now().client.clone();
        async move {
            let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host and port"));
            let host = uri.host().ok_or_else(bad)?.trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().ok_or_else(bad)?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(server).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        }
    })
}
