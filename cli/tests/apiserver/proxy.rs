//! A loopback TCP proxy in front of one address that a test can black-hole, to cut a process off from the API
//! server without it noticing: after [`Proxy::black_hole`] every connection, open or new, stays open and
//! forwards nothing in either direction (a half-open link: requests hang, they do not fail). It forwards bytes,
//! not HTTP, so TLS runs end to end through it (the API server's certificate names 127.0.0.1).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    /// Where clients connect instead of the upstream address.
    pub addr: SocketAddr,
    /// `true` once black-holed; every connection task watches it.
    cut: watch::Sender<bool>,
    /// The accept loop; aborting it drops its JoinSet, which aborts (and closes) every connection.
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding 127.0.0.1:<a free port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watching) = watch::channel(false);
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                connections.spawn(forward(client, upstream, watching.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        Proxy { addr, cut, accept }
    }

    /// From now on nothing passes, on open connections and new ones alike; none is closed.
    pub fn black_hole(&self) {
        self.cut.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways until either side closes, or until the cut; then holds both sockets open, silent, until the
/// proxy is dropped.
async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    if *cut.borrow() {
        return hold(client).await;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    // The sockets are borrowed, not moved, by the copy: dropping it at the cut leaves them open.
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        // Never returns, so `client` and `server` stay open.
        // (The `Ref` it gives is not `Send`; only the wait matters.)
        _ = async { drop(cut.wait_for(|cut| *cut).await) } => std::future::pending().await,
    }
}

async fn hold(socket: TcpStream) {
    let _open = socket;
    std::future::pending::<()>().await
}
