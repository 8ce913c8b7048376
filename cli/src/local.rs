//! A whole burst cluster inside this process, on loopback: one controller and N workers. `burst dev` runs its
//! demo on one, and the end-to-end tests use it too.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use burst_controller::router::RouterKind;
use burst_controller::{ControllerConfig, RunningController};
use burst_worker::{RunningWorker, WorkerConfig};

use crate::client::{self, Client};

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub workers: u32,
    pub slots: u32,
    pub queue_capacity: u32,
    pub router: RouterKind,
    pub listen: String,
    pub output_dir: PathBuf,
    pub lease_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Whether idle workers steal from busy ones.
    pub steal: bool,
    /// The durable store's directory; `None` keeps jobs in memory.
    pub data_dir: Option<PathBuf>,
}

impl ClusterOptions {
    /// `workers` workers of `slots` slots (queue capacity 2 × slots), round robin, defaults for the rest.
    pub fn new(workers: u32, slots: u32, output_dir: PathBuf) -> Self {
        let defaults = ControllerConfig::default();
        ClusterOptions {
            workers,
            slots,
            queue_capacity: slots * 2,
            router: RouterKind::default(),
            listen: "127.0.0.1:0".into(),
            output_dir,
            lease_timeout: defaults.lease_timeout,
            heartbeat_interval: defaults.heartbeat_interval,
            steal: true,
            data_dir: None,
        }
    }
}

pub struct LocalCluster {
    pub controller: RunningController,
    pub workers: Vec<RunningWorker>,
    pub output_dir: PathBuf,
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
            ..ControllerConfig::default()
        };
        let controller = burst_controller::start(config).await?;
        let url = format!("http://{}", controller.addr);
        let mut workers = Vec::new();
        for i in 0..opts.workers {
            // Zero-padded ids sort in start order, which is the order routers see them in.
            let id = format!("worker-{i:02}");
            let mut cfg = WorkerConfig::local(&url, &id, opts.slots, opts.queue_capacity, opts.output_dir.clone());
            cfg.steal = opts.steal;
            workers.push(burst_worker::start(cfg).await?);
        }
        let cluster = LocalCluster { controller, workers, output_dir: opts.output_dir };
        for w in &cluster.workers {
            tokio::time::timeout(Duration::from_secs(30), w.agent.registered())
                .await
                .with_context(|| format!("worker {} did not register within 30 s", w.worker_id()))?;
        }
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.controller.addr)
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        client::connect(&self.url()).await
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        for w in self.workers {
            w.shutdown().await;
        }
        self.controller.shutdown().await
    }
}
