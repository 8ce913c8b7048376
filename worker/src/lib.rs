//! burst-worker: registers with the controller, takes leases into a local queue, runs up to `slots` jobs at
//! once, writes their output, and reports their results.
//!
//! - [`agent`]: the conversation with the controller (poll, run, report, heartbeat).
//! - [`queue`]: the local FIFO; [`executor`]: running one job; [`output`]: capped output capture.
//! - [`service`]: the RPCs peers and the controller call; [`steal`]: taking queued jobs from busy peers;
//!   [`logs`]: reading output for the controller; [`resources`]: what this machine offers.

pub mod agent;
pub mod config;
pub mod error;
pub mod executor;
pub mod gpus;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod output;
pub mod queue;
pub mod resources;
pub mod runner;
pub mod runs;
pub mod service;
pub mod steal;
pub mod sweep;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use burst_proto::tls::LiveTls;
use burst_proto::v1::worker_peer_rpc_server::WorkerPeerRpcServer;
use burst_proto::v1::worker_rpc_server::WorkerRpcServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tracing::info;

pub use agent::Agent;
pub use config::{Args, ExecConfig, WorkerConfig};

/// A worker running until [`RunningWorker::shutdown`] or drop.
pub struct RunningWorker {
    pub addr: SocketAddr,
    /// Where the HTTP side (metrics, health) is served, when configured.
    pub http: Option<SocketAddr>,
    pub agent: Arc<Agent>,
    stop: Option<oneshot::Sender<()>>,
    http_server: Option<burst_proto::http::Http>,
    loops: agent::Loops,
    server: JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    pub fn worker_id(&self) -> &str {
        self.agent.worker_id()
    }

    /// Stops at once, as a crash would, but tidily: no more jobs or peers; jobs still running are killed with
    /// their process groups. The controller finds out when the lease timeout passes.
    pub async fn shutdown(mut self) {
        self.loops.stop().await;
        self.agent.kill_jobs().await;
        self.stop_server().await;
    }

    /// Leaves the cluster gracefully: takes no new jobs, hands queued ones back at once, lets running ones finish
    /// until `grace` has passed (then stops them), reports, deregisters. Returns (handed back, finished,
    /// stopped).
    pub async fn drain(mut self, grace: std::time::Duration) -> (u32, usize, usize) {
        let deadline = tokio::time::Instant::now() + grace;
        self.loops.stop_intake().await;
        let summary = self.agent.drain(deadline).await;
        self.loops.stop().await;
        self.stop_server().await;
        summary
    }

    async fn stop_server(&mut self) {
        if let Some(http) = self.http_server.take() {
            http.stop().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.loops.abort();
        self.server.abort();
    }
}

/// Starts a worker: binds the peer port, then registers and starts work in the background.
pub async fn start(cfg: WorkerConfig) -> anyhow::Result<RunningWorker> {
    if cfg.slots == 0 {
        bail!("slots must be at least 1");
    }
    let mut cfg = cfg;
    cfg.exec.cgroups = limits::Cgroups::detect(&cfg.worker_id);
    cfg.exec.gpus = gpus::Gpus::new(cfg.resources.gpus, std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref());
    if cfg.exec.gpus.count() < cfg.resources.gpus {
        let (offered, asked) = (cfg.exec.gpus.count(), cfg.resources.gpus);
        tracing::warn!(worker = %cfg.worker_id, offered, asked, "CUDA_VISIBLE_DEVICES names fewer GPUs than --gpus; offering those");
        cfg.resources.gpus = offered;
    }
    limits::apply_to_worker(cfg.exec.limits, cfg.exec.cgroups.is_some());
    std::fs::create_dir_all(&cfg.exec.output_dir)
        .with_context(|| format!("cannot create output dir {}", cfg.exec.output_dir.display()))?;
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let advertise = cfg.advertise.clone().unwrap_or_else(|| addr.to_string());
    let tls = cfg.tls.as_ref().map(LiveTls::from_files).transpose().map_err(anyhow::Error::msg)?;
    if tls.is_none() {
        tracing::warn!(worker = %cfg.worker_id, "plaintext gRPC (no TLS) to the controller and between workers");
    }
    // Pinged: the report stream and the long poll stay open for long, and must fail if the controller vanishes.
    let endpoint = burst_proto::tls::endpoint(&cfg.controller).map_err(|e| anyhow::anyhow!("controller: {e}"))?;
    let endpoint = burst_proto::tls::keep_alive(endpoint);
    let channel = burst_proto::tls::lazy(&endpoint, tls.as_ref(), burst_proto::tls::CONTROLLER_NAME);
    let files = cfg.tls.clone();
    let (agent, reports) = Agent::new(cfg, advertise, channel, tls.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        .add_service(WorkerPeerRpcServer::new(service::PeerService::new(agent.clone())))
        .add_service(WorkerRpcServer::new(service::WorkerService::new(agent.clone())));
    let stopped = async {
        let _ = stopped.await;
    };
    // Peers must present a certificate of the cluster's CA.
    let serving = burst_proto::tls::serve(router, listener, tls.as_ref(), true, stopped).map_err(anyhow::Error::msg)?;
    let server = tokio::spawn(async move { serving.await.context("peer gRPC server") });
    let mut loops = agent.spawn_loops(reports);
    if let (Some(live), Some(files)) = (&tls, files) {
        loops.upkeep.push(live.follow(files));
    }
    let registering = agent.clone();
    loops.upkeep.push(tokio::spawn(async move {
        if let Err(error) = registering.register().await {
            tracing::error!(worker = %registering.worker_id(), %error, "not registered");
        }
    }));
    let mut http = None;
    if let Some(listen) = agent.config().http_listen {
        let probe = Arc::new(Probe { metrics: metrics::Metrics::new(agent.clone()), agent: agent.clone() });
        let server =
            burst_proto::http::serve(listen, probe, axum::Router::new(), None).await.map_err(anyhow::Error::msg)?;
        info!(worker = %agent.worker_id(), addr = %server.addr, "serving /metrics, /healthz, /readyz");
        http = Some(server);
    }
    info!(worker = %agent.worker_id(), %addr, "worker started");
    let (http, http_server) = (http.as_ref().map(|h| h.addr), http);
    Ok(RunningWorker { addr, http, agent, stop: Some(stop), http_server, loops, server })
}

/// Runs a worker until SIGINT or SIGTERM, then drains it (see [`RunningWorker::drain`]); or until another
/// process registers with its worker id, then stops with an error. Prints the bound peer address as the first
/// line of stdout.
pub async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let grace = cfg.drain_grace;
    let worker = start(cfg).await?;
    println!("{}", worker.addr);
    let agent = worker.agent.clone();
    tokio::select! {
        signal = burst_proto::shutdown_signal() => signal?,
        () = agent.replaced() => {
            // The controller gave this worker's jobs up when the other registered: stop them, hand nothing back.
            let id = worker.worker_id().to_string();
            worker.shutdown().await;
            bail!("another process registered as worker {id} and took its place; give each worker its own --worker-id");
        }
    }
    info!(worker = %worker.worker_id(), grace_ms = grace.as_millis() as u64, "draining");
    worker.drain(grace).await;
    Ok(())
}

/// What a worker tells its HTTP side.
struct Probe {
    metrics: metrics::Metrics,
    agent: Arc<Agent>,
}

impl burst_proto::http::Probe for Probe {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn ready(&self) -> Result<(), String> {
        match self.agent.session() {
            0 => Err("not registered with the controller".into()),
            _ => Ok(()),
        }
    }
}
