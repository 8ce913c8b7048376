//! burst-operator: the Kubernetes side of burst.
//!
//! - [`crd`]: `BurstCluster` (a controller and its workers) and `BurstJob` (one job, declared with kubectl);
//!   `crdgen` writes their CRDs into `crds/`.
//! - [`cluster`]: a BurstCluster's desired objects (pure) and its reconciler.
//! - [`job`]: a BurstJob's submission and status mirror (pure) and its reconciler.
//! - [`link`]: one gRPC channel and one `WatchJobs` stream per cluster, shared by all its BurstJobs.
//! - [`leader`]: the Lease that makes several replicas safe; [`http`]: `/metrics`, `/healthz`, `/readyz`.

pub mod cluster;
pub mod conditions;
pub mod config;
pub mod context;
pub mod crd;
pub mod error;
pub mod http;
pub mod job;
pub mod leader;
pub mod link;
pub mod metrics;
pub mod names;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::{debug, info, warn};

pub use config::Args;
use context::Context;
use crd::{BurstCluster, BurstJob};
use link::Links;
use metrics::Metrics;

/// Runs the operator until SIGTERM, or until it loses the leader Lease (then it fails, and its pod restarts as
/// a standby).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Args { namespaces, http_listen, leader_elect, lease_namespace, lease_name, identity } = args;
    // The top-level message already names both places it looked; the source chain would repeat it.
    let client = Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("no Kubernetes API to talk to (run in a cluster or set KUBECONFIG): {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    // Served until the operator returns.
    let http = http::serve(http_listen, metrics.clone(), ready.clone()).await?;
    info!(addr = %http.addr, "serving /metrics, /healthz, /readyz");
    let identity = identity.unwrap_or_else(default_identity);
    let elector = leader_elect.then(|| leader::Elector::new(client.clone(), &lease_namespace, &lease_name, &identity));
    if let Some(elector) = &elector {
        tokio::select! {
            r = elector.acquire() => r.context("taking the leader Lease")?,
            r = burst_proto::shutdown_signal() => return Ok(r?),
        }
        metrics.leader.set(1);
    }
    // Relaxed: a flag for the readiness probe only.
    ready.store(true, Ordering::Relaxed);
    let hold = async {
        match &elector {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = controllers(client, namespaces, metrics.clone(), identity) => Ok(()),
        _ = hold => {
            metrics.leader.set(0);
            bail!("lost the leader Lease; stopping so that only one replica reconciles")
        }
        r = burst_proto::shutdown_signal() => Ok(r?),
    }
}

fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| format!("burst-operator-{}", std::process::id()))
}

/// Both reconcilers for each watched namespace (or once for all namespaces).
async fn controllers(client: Client, namespaces: Vec<String>, metrics: Arc<Metrics>, identity: String) {
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.into_iter().map(Some).collect() };
    let mut queues = HashMap::new();
    let mut receivers = Vec::new();
    for scope in &scopes {
        let (tx, rx) = mpsc::unbounded::<ObjectRef<BurstJob>>();
        queues.insert(scope.clone(), tx);
        receivers.push(rx);
    }
    // A watch event names its BurstJob's namespace; it goes to the controller watching that namespace.
    let trigger: link::Trigger = Arc::new(move |r: ObjectRef<BurstJob>| {
        let tx = queues.get(&r.namespace).or_else(|| queues.get(&None));
        if let Some(tx) = tx {
            let _ = tx.unbounded_send(r);
        }
    });
    let ctx = Context::new(client.clone(), Links::in_cluster(trigger), metrics, Some(identity));
    let mut all = Vec::new();
    for (scope, rx) in scopes.into_iter().zip(receivers) {
        all.push(tokio::spawn(clusters(client.clone(), scope.clone(), ctx.clone())));
        all.push(tokio::spawn(jobs(client.clone(), scope, ctx.clone(), rx)));
    }
    for task in all {
        if let Err(e) = task.await {
            warn!(error = %e, "a reconciler stopped");
        }
    }
}

fn api<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn clusters(client: Client, scope: Option<String>, ctx: Arc<Context>) {
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=burst-operator");
    Controller::new(api::<BurstCluster>(&client, &scope), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, &scope), owned.clone())
        .owns(api::<Deployment>(&client, &scope), owned)
        .shutdown_on_signal()
        .run(cluster::reconcile::reconcile, cluster::reconcile::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "BurstCluster reconcile");
            }
        })
        .await;
}

async fn jobs(
    client: Client,
    scope: Option<String>,
    ctx: Arc<Context>,
    changes: mpsc::UnboundedReceiver<ObjectRef<BurstJob>>,
) {
    Controller::new(api::<BurstJob>(&client, &scope), watcher::Config::default())
        .reconcile_on(changes)
        .shutdown_on_signal()
        .run(job::reconcile::reconcile, job::reconcile::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "BurstJob reconcile");
            }
        })
        .await;
}
