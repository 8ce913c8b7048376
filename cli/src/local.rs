//! A whole burst cluster inside this process, on loopback: one controller and N workers. `burst dev` runs its
//! demo on one, and the end-to-end tests use it too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use burst_controller::router::RouterKind;
use burst_controller::{ControllerConfig, RunningController};
use burst_worker::{RunningWorker, WorkerConfig};

use crate::certs;
use crate::client::{self, Client};

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub workers: u32,
    pub slots: u32,
    /// `None`: the worker's default (adaptive; see `burst worker --help`).
    pub queue_capacity: Option<u32>,
    pub router: RouterKind,
    pub listen: String,
    pub output_dir: PathBuf,
    pub lease_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Whether idle workers steal from busy ones.
    pub steal: bool,
    /// The durable store's directory; `None` keeps jobs in memory.
    pub data_dir: Option<PathBuf>,
    /// Mutual TLS everywhere, with certificates made into this directory (`burst certs init`); `None`: plaintext.
    pub tls_dir: Option<PathBuf>,
    /// Workers complete jobs without running them (benchmarks of the controller only).
    pub noop_executor: bool,
    /// Serve the controller's HTTP side (metrics, health, dashboard) here; workers then serve theirs on a free
    /// loopback port each. `None`: no HTTP.
    pub http_listen: Option<std::net::SocketAddr>,
}

impl ClusterOptions {
    /// `workers` workers of `slots` slots (queue capacity 2 × slots), round robin, defaults for the rest.
    pub fn new(workers: u32, slots: u32, output_dir: PathBuf) -> Self {
        let defaults = ControllerConfig::default();
        ClusterOptions {
            workers,
            slots,
            queue_capacity: Some(slots * 2),
            router: RouterKind::default(),
            listen: "127.0.0.1:0".into(),
            output_dir,
            lease_timeout: defaults.lease_timeout,
            heartbeat_interval: defaults.heartbeat_interval,
            steal: true,
            data_dir: None,
            tls_dir: None,
            noop_executor: false,
            http_listen: None,
        }
    }
}

pub struct LocalCluster {
    pub controller: RunningController,
    pub workers: Vec<RunningWorker>,
    pub output_dir: PathBuf,
    /// How a client of this cluster connects (TLS with the admin certificate, or plaintext).
    pub client_tls: Option<client::ClientTls>,
}

/// The id of the `i`th worker: zero-padded, so ids sort in start order, which is the order routers see them in.
pub fn worker_id(i: u32) -> String {
    format!("worker-{i:02}")
}

/// Makes a local cluster's certificates in `dir` (`burst certs init`): a CA, the controller, `workers` and an
/// admin client.
pub fn make_certs(dir: &Path, workers: &[String]) -> anyhow::Result<()> {
    let plan = certs::Plan {
        dir: dir.to_path_buf(),
        workers: workers.to_vec(),
        clients: vec![("admin".into(), "admin".into())],
        hosts: Vec::new(),
        days: 30,
    };
    certs::init(&plan).context("making the cluster's certificates")?;
    Ok(())
}

/// How the admin made by [`make_certs`] connects.
pub fn admin_tls(dir: &Path) -> client::ClientTls {
    client::ClientTls::Files {
        ca: dir.join("ca.pem"),
        identity: Some((dir.join("admin.pem"), dir.join("admin-key.pem"))),
    }
}

impl LocalCluster {
    /// Starts the controller and workers and waits until every worker is registered.
    pub async fn start(opts: ClusterOptions) -> anyhow::Result<Self> {
        let config = ControllerConfig {
            listen: opts.listen.parse().with_context(|| format!("{:?} is not an address", opts.listen))?,
            router: opts.router,
            lease_timeout: opts.lease_timeout,
            heartbeat_interval: opts.heartbeat_interval,
            ephemeral: opts.data_dir.is_none(),
            data_dir: opts.data_dir.clone().unwrap_or_else(|| ControllerConfig::default().data_dir),
            http_listen: opts.http_listen,
            ..ControllerConfig::default()
        };
        let ids: Vec<String> = (0..opts.workers).map(worker_id).collect();
        if let Some(dir) = &opts.tls_dir {
            make_certs(dir, &ids)?;
        }
        let tls = |name: &str| opts.tls_dir.as_ref().map(|dir| certs::files(dir, name));
        let config = ControllerConfig { tls: tls("controller"), ..config };
        let controller = burst_controller::start(config).await?;
        let client_tls = opts.tls_dir.as_deref().map(admin_tls);
        let mut cluster =
            LocalCluster { controller, workers: Vec::new(), output_dir: opts.output_dir.clone(), client_tls };
        cluster.add_workers(&opts).await?;
        Ok(cluster)
    }

    /// Starts `opts.workers` more workers (ids after those running) and waits until they are registered.
    pub async fn add_workers(&mut self, opts: &ClusterOptions) -> anyhow::Result<()> {
        let url = format!("http://{}", self.controller.addr);
        let first = self.workers.len() as u32;
        for i in first..first + opts.workers {
            let id = worker_id(i);
            let mut cfg = WorkerConfig::local(&url, &id, opts.slots, 0, opts.output_dir.clone());
            cfg.set_queue_capacity(opts.queue_capacity);
            cfg.steal = opts.steal;
            cfg.exec.noop = opts.noop_executor;
            if opts.http_listen.is_some() {
                cfg.http_listen = Some(([127, 0, 0, 1], 0).into());
            }
            if let Some(dir) = &opts.tls_dir
                && !certs::files(dir, &format!("worker-{id}")).cert.exists()
            {
                // A worker added after the cluster's certificates were made.
                certs::issue_worker(dir, &id, 30).with_context(|| format!("issuing worker {id}'s certificate"))?;
            }
            cfg.tls = opts.tls_dir.as_ref().map(|dir| certs::files(dir, &format!("worker-{id}")));
            let worker = burst_worker::start(cfg).await?;
            tokio::time::timeout(Duration::from_secs(30), worker.agent.registered())
                .await
                .with_context(|| format!("worker {id} did not register within 30 s"))?;
            self.workers.push(worker);
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        burst_proto::tls::url(&self.controller.addr.to_string(), self.client_tls.is_some())
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        client::connect_tls(&self.url(), Default::default(), self.client_tls.as_ref()).await
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        for w in self.workers {
            w.shutdown().await;
        }
        self.controller.shutdown().await
    }
}
