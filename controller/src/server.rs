//! Starting and stopping a controller: bind, serve gRPC, expire silent workers, stop on a signal.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::{Live, Metrics};
use crate::output::OutputRelay;
use anyhow::Context;
use burst_proto::tls::LiveTls;
use burst_proto::v1::controller_rpc_server::ControllerRpcServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::admission::Admission;
use crate::auth::Auth;
use crate::service::ControllerService;
use crate::store::{JobStore, MemoryStore, RedbStore};
use crate::{Controller, ControllerConfig};

pub use burst_proto::MAX_MESSAGE_BYTES;

/// Calls in flight on one connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// A controller serving on `addr` until [`RunningController::shutdown`] or drop.
pub struct RunningController {
    pub addr: SocketAddr,
    /// Where the HTTP side (metrics, health, dashboard) is served, when configured.
    pub http: Option<SocketAddr>,
    pub controller: Arc<Controller>,
    /// The TLS in use (certificates are read again as they change; tests swap them with `reload`).
    pub tls: Option<LiveTls>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    /// The reaper, the timer task, the TLS files' follower and the dashboard's sampler.
    background: Vec<JoinHandle<()>>,
    http_server: Option<burst_proto::http::Http>,
}

impl RunningController {
    /// Stops serving and waits for the server to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.controller.stop();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(http) = self.http_server.take() {
            http.stop().await;
        }
        self.background.iter().for_each(JoinHandle::abort);
        (&mut self.task).await.context("controller server task")?
    }

    /// Waits until the server stops on its own (it only does on an error).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("controller server task")?
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.background.iter().for_each(JoinHandle::abort);
        self.task.abort();
    }
}

/// Starts a controller on the store its config names: in memory when `ephemeral`, else the redb file in
/// `data_dir`.
pub async fn start(config: ControllerConfig) -> anyhow::Result<RunningController> {
    let store: Arc<dyn JobStore> =
        if config.ephemeral { Arc::new(MemoryStore::default()) } else { Arc::new(RedbStore::open(&config.data_dir)?) };
    start_with_store(config, store).await
}

pub async fn start_with_store(config: ControllerConfig, store: Arc<dyn JobStore>) -> anyhow::Result<RunningController> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let auth = Arc::new(
        match &config.tokens_file {
            Some(path) => Auth::load(path)?,
            None => Auth::off(),
        }
        .with_tls(config.tls.is_some()),
    );
    if config.tls.is_none() {
        warn!("plaintext gRPC (no TLS): anyone who can reach this port can read and inject traffic");
    }
    if !auth.enabled() {
        info!("no tokens file and no TLS: every caller is trusted (anonymous, admin)");
    }
    let tls = config.tls.as_ref().map(LiveTls::from_files).transpose().map_err(anyhow::Error::msg)?;
    let admission = Arc::new(Admission::new(config.submit_rate));
    let commits = store.commits().map(|c| c.histogram());
    let controller = Controller::new(config.clone(), store).await.context("loading the job store")?;
    controller.lock().set_weights(auth.weights());
    let service = Arc::new(ControllerService::new(
        controller.clone(),
        auth.clone(),
        admission.clone(),
        OutputRelay::new(tls.clone()),
    ));
    let grpc = ControllerRpcServer::from_arc(service.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        // Per connection: a worker's poll, reports and heartbeats, or a client's calls, with room to spare;
        // one connection cannot tie up the whole server.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        .add_service(grpc);
    let stopped = async {
        let _ = stopped.await;
    };
    // Clients may come with a token instead of a certificate; workers and admins without a token need one.
    let serving =
        burst_proto::tls::serve(router, listener, tls.as_ref(), false, stopped).map_err(anyhow::Error::msg)?;
    let task = tokio::spawn(async move { serving.await.context("gRPC server") });
    let mut background = vec![tokio::spawn(reap(controller.clone())), tokio::spawn(run_timers(controller.clone()))];
    if let (Some(live), Some(files)) = (&tls, &config.tls) {
        background.push(live.follow(files.clone()));
    }
    if let Some(path) = config.tokens_file.clone() {
        let what = path.display().to_string();
        let read = move || crate::auth::read_tokens(&path).map_err(|e| format!("{e:#}"));
        let (auth, controller) = (auth.clone(), controller.clone());
        background.push(burst_proto::follow::follow(what, burst_proto::follow::EVERY, read, move |tokens| {
            controller.lock().set_weights(crate::auth::weights(&tokens));
            Ok(auth.replace_tokens(tokens))
        }));
    }
    let mut http = None;
    if let Some(listen) = config.http_listen {
        let live = Live { controller: controller.clone(), auth: auth.clone(), admission };
        let timings = controller.lock().timings().clone();
        let probe = Arc::new(Probe { metrics: Metrics::new(&timings, commits, live), controller: controller.clone() });
        let (api, sampler) = crate::api::routes(service, timings, config.http_allowed_hosts.clone());
        background.push(sampler);
        let http_tls = if config.http_plaintext { None } else { tls.clone() };
        if tls.is_some() && http_tls.is_none() {
            warn!(
                "--http-plaintext: the HTTP port (submissions, tokens) is not encrypted; keep it behind a proxy that is"
            );
        }
        let scheme = if http_tls.is_some() { "https" } else { "http" };
        let server = burst_proto::http::serve(listen, probe, api, http_tls).await.map_err(anyhow::Error::msg)?;
        info!(addr = %server.addr, scheme, "serving the HTTP API at /v1, the dashboard at /ui, /metrics, /healthz and /readyz");
        http = Some(server);
    }
    let pools: Vec<String> = config
        .pools
        .iter()
        .map(|p| format!("{}={}{}", p.name, p.cost, if p.elastic { ":elastic" } else { "" }))
        .collect();
    info!(%addr, router = config.router.name(), policy = %config.policy, pools = %pools.join(","), "controller listening");
    let (http, http_server) = (http.as_ref().map(|h| h.addr), http);
    Ok(RunningController { addr, http, controller, tls, stop: Some(stop), task, background, http_server })
}

/// Fires retry backoffs and queue deadlines when they fall due; sleeps until the next one, or until one is added.
async fn run_timers(controller: Arc<Controller>) {
    loop {
        let (next, added) = controller.lock().next_timer();
        let added = added.notified();
        match next {
            Some(due) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = added => {}
                }
            }
            None => added.await,
        }
        let durable = controller.lock().fire_timers(std::time::Instant::now(), burst_proto::now_ms());
        if let Err(error) = durable.await {
            warn!(%error, "could not record what timers did");
        }
    }
}

/// Every quarter lease timeout, declares workers silent for a whole lease timeout dead and forgets finished
/// jobs past the retention limits.
async fn reap(controller: Arc<Controller>) {
    let timeout = controller.config().lease_timeout;
    // As often as workers heartbeat (and at least 4 times per lease timeout): a dead worker is noticed within a
    // lease timeout plus one heartbeat.
    let mut tick = tokio::time::interval((timeout / 4).min(controller.config().heartbeat_interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(deadline) = std::time::Instant::now().checked_sub(timeout) else {
            continue;
        };
        let (dead, durable) = controller.lock().expire(deadline, burst_proto::now_ms());
        if let Err(error) = durable.await {
            warn!(%error, "could not record expired workers' jobs");
        }
        let durable = controller.lock().prune(std::time::Instant::now());
        if let Err(error) = durable.await {
            warn!(%error, "could not forget expired finished jobs");
        }
        for worker in dead {
            info!(worker = %worker, "worker expired");
        }
    }
}

/// Runs a controller until SIGINT or SIGTERM. Prints the bound address as the first line of stdout.
pub async fn run(config: ControllerConfig) -> anyhow::Result<()> {
    if config.ephemeral {
        warn!("--ephemeral: jobs are kept in memory only and are lost when the controller stops");
    } else {
        info!(data_dir = %config.data_dir.display(), "durable job store");
    }
    let mut running = start(config).await?;
    println!("{}", running.addr);
    tokio::select! {
        r = burst_proto::shutdown_signal() => r?,
        r = &mut running.task => {
            r.context("controller server task")??;
            anyhow::bail!("controller server stopped unexpectedly");
        }
    }
    info!("shutting down");
    running.shutdown().await
}

/// What the controller tells its HTTP side.
struct Probe {
    metrics: Metrics,
    controller: Arc<Controller>,
}

impl burst_proto::http::Probe for Probe {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn ready(&self) -> Result<(), String> {
        match *self.controller.stopping().borrow() {
            false => Ok(()),
            true => Err("shutting down".into()),
        }
    }
}
