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

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates, reflector, watcher};
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
    // The top-level message already names both places it looked; the source chain would repeat it.
    let client = Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("no Kubernetes API to talk to (run in a cluster or set KUBECONFIG): {e}"))?;
    run_with(client, args, link::services()).await
}

/// [`run`] on `client`, reaching each cluster's controller where `resolve` says: its Service
/// ([`link::services`]) in a deployment; tests that run burst's controller as a local process give its loopback
/// address instead. Nothing a user configures chooses it.
pub async fn run_with(client: Client, args: Args, resolve: link::Resolver) -> anyhow::Result<()> {
    let Args { namespaces, http_listen, leader_elect, lease_namespace, lease_name, identity } = args;
    let metrics = Arc::new(Metrics::default());
    // Served until the operator returns.
    let http = http::serve(http_listen, metrics.clone()).await?;
    info!(addr = %http.addr, "serving /metrics, /healthz, /readyz");
    let identity = identity.unwrap_or_else(default_identity);
    let elector = leader_elect.then(|| leader::Elector::new(client.clone(), &lease_namespace, &lease_name, &identity));
    let mut valid_until = None;
    if let Some(elector) = &elector {
        tokio::select! {
            at = elector.acquire() => valid_until = Some(at),
            r = burst_proto::shutdown_signal() => return Ok(r?),
        }
        metrics.leader.set(1);
    }
    let hold = async {
        match (&elector, valid_until) {
            (Some(e), Some(at)) => e.hold(at).await,
            _ => std::future::pending().await,
        }
    };
    // Dropping `controllers` (whichever branch ends) aborts every reconcile before the Lease is handed back or
    // the process fails.
    let outcome = tokio::select! {
        _ = controllers(client, namespaces, metrics.clone(), identity, resolve) => Ok(()),
        _ = hold => {
            metrics.leader.set(0);
            Err(anyhow::anyhow!("lost the leader Lease; stopping so that only one replica reconciles"))
        }
        r = burst_proto::shutdown_signal() => r.map_err(anyhow::Error::from),
    };
    if let (Some(elector), true) = (&elector, outcome.is_ok()) {
        elector.release().await;
        metrics.leader.set(0);
    }
    outcome
}

fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| format!("burst-operator-{}", std::process::id()))
}

/// Both reconcilers for each watched namespace (or once for all namespaces).
async fn controllers(
    client: Client,
    namespaces: Vec<String>,
    metrics: Arc<Metrics>,
    identity: String,
    resolve: link::Resolver,
) {
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
    let ctx = Context::new(client.clone(), Links::new(resolve, trigger), metrics, Some(identity));
    // A JoinSet: dropped, it aborts every reconciler (see `run_with`).
    let mut all = tokio::task::JoinSet::new();
    for (scope, rx) in scopes.into_iter().zip(receivers) {
        all.spawn(clusters(client.clone(), scope.clone(), ctx.clone()));
        all.spawn(jobs(client.clone(), scope, ctx.clone(), rx));
    }
    while let Some(done) = all.join_next().await {
        if let Err(e) = done {
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

/// The BurstCluster reconciler. What makes it run:
///
/// - an edit of a BurstCluster's spec (its generation): not a status write, its own included;
/// - a change of an owned StatefulSet's or Deployment's spec or readiness ([`workload_changed`]): not the
///   resourceVersion bumps that no-op applies and status bookkeeping cause;
/// - its own requeue (see [`cluster::reconcile`]).
async fn clusters(client: Client, scope: Option<String>, ctx: Arc<Context>) {
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=burst-operator");
    let (reader, writer) = reflector::store();
    let edits = watcher(api::<BurstCluster>(&client, &scope), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
    let statefulsets = watcher(api::<StatefulSet>(&client, &scope), owned.clone())
        .default_backoff()
        .touched_objects()
        .predicate_filter(workload_changed::<StatefulSet>, PredicateConfig::default());
    let deployments = watcher(api::<Deployment>(&client, &scope), owned)
        .default_backoff()
        .touched_objects()
        .predicate_filter(workload_changed::<Deployment>, PredicateConfig::default());
    Controller::for_stream(edits, reader)
        .owns_stream(statefulsets)
        .owns_stream(deployments)
        .shutdown_on_signal()
        .run(cluster::reconcile::reconcile, cluster::reconcile::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                debug!(error = %e, "BurstCluster reconcile");
            }
        })
        .await;
}

/// What of an owned workload the BurstCluster's status or spec depends on: its generation (a spec edit, by us
/// or anyone) and its ready replicas.
fn workload_changed<K: cluster::Workload>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (obj.meta().generation, obj.ready_replicas(), obj.meta().deletion_timestamp.is_some()).hash(&mut h);
    Some(h.finish())
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
