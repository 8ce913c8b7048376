//! burst-controller: accepts jobs, leases them to workers with room, and records what became of each.
//!
//! - [`lifecycle`]: the job state machine, the only place a job's state changes.
//! - [`scheduler`]: jobs, queue, workers and dispatch, under one lock.
//! - [`router`]: which worker gets a job.
//! - [`registry`]: the workers and what they hold.
//! - [`store`]: where job records outlive the process.
//! - [`service`]: the gRPC edge; [`server`]: starting and stopping it.

pub mod admission;
pub mod api;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod lifecycle;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod registry;
pub mod retention;
pub mod router;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;

use std::sync::{Arc, Mutex, MutexGuard};

use burst_proto::v1::JobStatus;
use tokio::sync::broadcast;

pub use config::{Args, ControllerConfig};
pub use server::{RunningController, run, start};

use scheduler::Scheduler;
use store::{JobStore, StoreError};

/// Status changes buffered per `WatchJobs` stream before a slow watcher is cut off (it can watch again).
const WATCH_BUFFER: usize = 65_536;

/// The controller's shared state: the scheduler behind its lock, and the stream of status changes.
pub struct Controller {
    /// One lock for all scheduling state: every operation is short and in memory, and one lock makes each
    /// transition atomic with its bookkeeping (counts, worker room, store order).
    sched: Mutex<Scheduler>,
    events: broadcast::Sender<JobStatus>,
    /// Turns true when the controller shuts down, so that open streams and long polls end and the server can stop.
    stopping: tokio::sync::watch::Sender<bool>,
    config: ControllerConfig,
}

impl Controller {
    /// A controller over `store`, with every job the store kept.
    pub async fn new(config: ControllerConfig, store: Arc<dyn JobStore>) -> Result<Arc<Self>, StoreError> {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let jobs = store.load()?;
        let mut sched = Scheduler::with_retention(config.router, store, events.clone(), config.retention);
        sched.set_quota(config.quota);
        sched.set_pools(config.pools.clone(), config.policy);
        // Workers get one lease timeout to come back and claim what they hold.
        let claim_deadline = std::time::Instant::now() + config.lease_timeout;
        let durable = sched.restore(jobs, burst_proto::now_ms(), claim_deadline);
        durable.await?;
        Ok(Arc::new(Controller {
            sched: Mutex::new(sched),
            events,
            stopping: tokio::sync::watch::Sender::new(false),
            config,
        }))
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The scheduler. A panic while it was held cannot leave a half-applied transition visible to anyone but
    /// the panicking call, so a poisoned lock is taken over rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, Scheduler> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<JobStatus> {
        self.events.subscribe()
    }

    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Ends every open `WatchJobs` stream and `PollJob` wait.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }
}
