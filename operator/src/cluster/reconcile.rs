//! The BurstCluster reconciler, in three steps; only the last writes.
//!
//! 1. **Desired**: [`super::desired`] turns the spec into the objects the cluster owns (or a readable error).
//! 2. **Apply**: each object is server-side applied with one field manager and an owner reference, so deleting
//!    the BurstCluster garbage-collects them; the controller's other workload kind (Deployment vs StatefulSet,
//!    after `persistence.enabled` flipped) is deleted. Scaling is a changed `replicas` in the workers'
//!    StatefulSet; a worker pod that goes gets SIGTERM and drains within its grace period. The workers'
//!    StatefulSet is read first: when its claim templates must change (`workers.outputVolume`), which the API
//!    refuses in place, it is replaced instead (see [`apply_workers`]). An object the operator applied before
//!    and nobody changed since is only read (see [`apply`]). An object the API server refuses (an immutable
//!    field) does not stop the others: the refusal is shown as `Reconciled=False` (see [`unless_refused`]).
//! 3. **Status**: readiness comes back in the apply responses (or the reads), the counts from the controller's
//!    `GetStats`; the status is patched only when it changed, and a condition that flips records an Event.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use burst_proto::tls::Pem;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, instrument, warn};

use super::status::{self, Observed};
use super::{ControllerWorkload, Workload, desired, tls};
use crate::conditions;
use crate::context::{Applied, Context, key};
use crate::crd::{BurstCluster, BurstClusterStatus, ElasticPoolStatus};
use crate::error::{Error, Result};
use crate::link::Link;
use crate::names;

/// The controller's counts (queued, running, slots) are read again this often for the status.
pub const REFRESH: Duration = Duration::from_secs(15);
/// With elastic pools, this often: their demand is read and acted on at each reconcile.
pub const ELASTIC_REFRESH: Duration = Duration::from_secs(3);
/// How soon to look again while the workers' StatefulSet is being replaced: the garbage collector removes an
/// orphaning StatefulSet within moments, and the workers' new one should follow it quickly.
const REPLACING: Duration = Duration::from_secs(2);

const KIND: &str = "BurstCluster";

#[instrument(skip_all, fields(cluster = %bc.name_any(), namespace = bc.namespace().unwrap_or_default()))]
pub async fn reconcile(bc: Arc<BurstCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let result = run(&bc, &ctx).await;
    match &result {
        Ok(_) => ctx.succeeded(&key(KIND, &bc.namespace().unwrap_or_default(), &bc.name_any())),
        Err(e) => ctx.metrics.failure(KIND, e.reason()),
    }
    result
}

pub fn error_policy(bc: Arc<BurstCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry(key(KIND, &bc.namespace().unwrap_or_default(), &bc.name_any()), error)
}

async fn run(bc: &BurstCluster, ctx: &Context) -> Result<Action> {
    let ns = bc.namespace().unwrap_or_default();
    let name = bc.name_any();
    let prev = bc.status.clone().unwrap_or_default();
    let want = match desired(bc) {
        Ok(want) => want,
        Err(e) => {
            let next = status::invalid(bc, &prev, &e.0, Timestamp::now());
            write_status(bc, ctx, &prev, &next).await?;
            return Ok(Action::await_change());
        }
    };
    let (tls, ca) = certificates(bc, ctx, &ns, &name).await?;
    let client_secrets = client_certificates(bc, ctx, &ns, &name, ca.as_ref(), &prev.client_secrets).await?;
    let mut refused = Vec::new();
    let (controller_ready, ready_workers, replacing) = apply_children(ctx, &ns, &name, &want, &mut refused).await?;
    let pool_sets = pool_workers(&want);
    delete_dropped_pools(ctx, &ns, &prev.pool_workers, &pool_sets).await?;
    let link = match controller_ready {
        false => None,
        true => Some(ctx.links.get(&ns, &name, tls)?),
    };
    let stats = match &link {
        None => None,
        Some(link) => Some(link.stats().await.map_err(|e| e.to_string())),
    };
    // Elastic pools: scaled from what the controller reports; a changed pool is applied at once.
    let elastic = scale_pools(bc, ctx, link.as_ref(), stats.as_ref().and_then(|s| s.as_ref().ok())).await;
    let mut scaled = bc.clone();
    scaled.status = Some(BurstClusterStatus { elastic: elastic.clone(), ..prev.clone() });
    if elastic != prev.elastic
        && let Ok(after) = desired(&scaled)
    {
        for (sts, before) in after.workers.iter().zip(&want.workers).skip(1) {
            if sts.spec.replicas != before.spec.replicas {
                apply_workers(ctx, &ns, sts, &mut refused).await?;
            }
        }
    }
    let refused = (!refused.is_empty()).then(|| refused.join("; "));
    let observed = Observed { controller_ready, ready_workers, stats, refused };
    let next = BurstClusterStatus {
        pool_workers: pool_sets,
        client_secrets,
        elastic,
        ..status::status(&scaled, &prev, &observed, Timestamp::now())
    };
    write_status(bc, ctx, &prev, &next).await?;
    let refresh = match bc.spec.pools.iter().any(|p| p.elastic()) {
        true => ELASTIC_REFRESH,
        false => REFRESH,
    };
    Ok(Action::requeue(if replacing { REPLACING } else { refresh }))
}

/// `result`, or `None` with the API server's message added to `refused` when it refused the change itself (an
/// immutable field, a value it does not take): retrying as is cannot help, so the status and a Warning say what
/// and why until the spec changes, and the cluster's other objects are still applied.
fn unless_refused<T>(result: Result<T>, refused: &mut Vec<String>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 422 || e.code == 400 => {
            refused.push(e.message);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Applies every child of `want` (those the API server refuses are named in `refused`); returns whether the
/// controller is ready, the workers ready, and whether the workers' StatefulSet is being replaced.
async fn apply_children(
    ctx: &Context,
    ns: &str,
    name: &str,
    want: &super::Desired,
    refused: &mut Vec<String>,
) -> Result<(bool, i32, bool)> {
    unless_refused(apply(ctx, ns, &want.config_map).await, refused)?;
    unless_refused(apply(ctx, ns, &want.controller_service).await, refused)?;
    let controller_ready = match &want.controller {
        ControllerWorkload::StatefulSet(sts) => {
            apply_controller::<_, Deployment>(ctx, ns, sts.as_ref(), refused).await?
        }
        ControllerWorkload::Deployment(dep) => {
            apply_controller::<_, StatefulSet>(ctx, ns, dep.as_ref(), refused).await?
        }
    };
    let (mut ready_workers, mut replacing) = (0, false);
    for workers in &want.workers {
        let (ready, replaced) = apply_workers(ctx, ns, workers, refused).await?;
        ready_workers += ready;
        replacing |= replaced;
    }
    if want.network_policies.is_empty() {
        for policy in [names::controller(name), names::workers(name)] {
            delete_if_present::<NetworkPolicy>(ctx, ns, &policy, &DeleteParams::background()).await?;
        }
    }
    for policy in &want.network_policies {
        unless_refused(apply(ctx, ns, policy).await, refused)?;
    }
    Ok((controller_ready, ready_workers, replacing))
}

/// Applies the controller's workload `obj` (read instead when the API server refuses it) and deletes the other
/// kind `Other` of the same name, left from before `persistence.enabled` flipped; returns whether it is ready.
async fn apply_controller<K, Other>(ctx: &Context, ns: &str, obj: &K, refused: &mut Vec<String>) -> Result<bool>
where
    K: Workload
        + Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
    Other: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let stored = match unless_refused(apply(ctx, ns, obj).await, refused)? {
        Some(applied) => Some(applied),
        None => Api::<K>::namespaced(ctx.client.clone(), ns).get_opt(&name).await?,
    };
    delete_if_present::<Other>(ctx, ns, &name, &DeleteParams::background()).await?;
    Ok(stored.and_then(|s| s.ready_replicas()).unwrap_or(0) >= 1)
}

/// Applies the workers' StatefulSet, unless its claim templates must change, which a StatefulSet cannot take in
/// place:
///
/// 1. the stored one is deleted with its pods orphaned: they keep running and keep their worker ids;
/// 2. while it is going (the garbage collector first frees its pods), nothing is applied;
/// 3. once it is gone, the new one is applied. It adopts the running pods and, their template being another,
///    replaces them one at a time, each draining on SIGTERM as in any rollout.
///
/// Returns the workers ready now and whether a replacement is under way.
async fn apply_workers(ctx: &Context, ns: &str, want: &StatefulSet, refused: &mut Vec<String>) -> Result<(i32, bool)> {
    let ready = |s: &StatefulSet| s.ready_replicas().unwrap_or(0);
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let name = want.metadata.name.clone().unwrap_or_default();
    let stored = api.get_opt(&name).await?;
    match &stored {
        Some(stored) if stored.metadata.deletion_timestamp.is_some() => Ok((ready(stored), true)),
        Some(stored) if super::storage::claims_changed(stored, want) => {
            delete_if_present::<StatefulSet>(ctx, ns, &name, &DeleteParams::orphan()).await?;
            info!(statefulset = %name, "claim templates changed: replacing the StatefulSet, its pods kept");
            Ok((ready(stored), true))
        }
        _ => match unless_refused(apply_over(ctx, ns, want, stored.as_ref()).await, refused)? {
            Some(applied) => Ok((ready(&applied), false)),
            None => Ok((stored.as_ref().map_or(0, ready), false)),
        },
    }
}

/// Each elastic pool's next step (see [`super::autoscale`]), carried out: Events for what changed, and the pods
/// that are to go cordoned first; a pool is lowered only once those hold no job (or never registered). Pods
/// that stay but were cordoned (a scale-down called off) take jobs again. Without the controller's word a pool
/// keeps its pods.
async fn scale_pools(
    bc: &BurstCluster,
    ctx: &Context,
    link: Option<&Link>,
    stats: Option<&burst_proto::v1::GetStatsResponse>,
) -> std::collections::BTreeMap<String, ElasticPoolStatus> {
    use super::autoscale::{Bounds, DEFAULT_SCALE_DOWN_DELAY, Demand, decide};
    let prev = bc.status.clone().unwrap_or_default();
    let (cluster, now) = (bc.name_any(), Timestamp::now().as_second());
    let mut out = std::collections::BTreeMap::new();
    let elastic: Vec<_> = bc.spec.pools.iter().filter(|p| p.elastic()).collect();
    let workers = match link {
        Some(link) if !elastic.is_empty() => link.workers().await.ok(),
        _ => None,
    };
    let registered = |id: &str| {
        workers.as_ref().and_then(|ws| ws.iter().find(|w| w.info.as_ref().is_some_and(|i| i.worker_id == id))).cloned()
    };
    for p in elastic {
        let current = super::pool_replicas(bc, p);
        let since = prev.elastic.get(&p.name).and_then(|e| e.surplus_since);
        let demand = stats.and_then(|s| s.pools.iter().find(|q| q.name == p.name)).map(|q| Demand {
            waiting: q.jobs_waiting,
            busy: q.slots_busy,
            slots_per_worker: p
                .slots
                .or(bc.spec.workers.slots)
                .map_or_else(|| q.slots_total.checked_div(q.workers).unwrap_or(1), |n| n.max(1) as u32),
        });
        let bounds = Bounds {
            min: p.min_replicas.unwrap_or(0).max(0),
            max: p.max_replicas.unwrap_or(0),
            delay_s: p.scale_down_delay_seconds.unwrap_or(DEFAULT_SCALE_DOWN_DELAY),
        };
        let mut step = decide(bounds, current, since, demand, now);
        let pod = |i: i32| names::pool_worker_pod(&cluster, &p.name, i);
        if step.replicas < current {
            let going: Vec<String> = (step.replicas..current).map(pod).collect();
            let holding = match (link, &workers) {
                (Some(link), Some(_)) => {
                    let to_cordon: Vec<String> =
                        going.iter().filter(|id| registered(id).is_some_and(|w| !w.cordoned)).cloned().collect();
                    if !to_cordon.is_empty()
                        && let Err(e) = link.cordon(to_cordon, true).await
                    {
                        warn!(pool = %p.name, error = %e, "could not cordon the workers to scale away");
                    }
                    going.iter().filter(|id| registered(id).is_some_and(|w| w.held > 0)).count()
                }
                _ => going.len(),
            };
            if holding > 0 {
                info!(pool = %p.name, workers = holding, "scale-down waits for cordoned workers to finish their jobs");
                step = super::autoscale::Step { replicas: current, why: None, ..step };
            }
        }
        let recalled: Vec<String> =
            (0..step.replicas).map(pod).filter(|id| registered(id).is_some_and(|w| w.cordoned)).collect();
        if !recalled.is_empty()
            && let Some(link) = link
            && let Err(e) = link.cordon(recalled, false).await
        {
            warn!(pool = %p.name, error = %e, "could not uncordon the workers that stay");
        }
        if let Some(why) = step.why.as_ref().filter(|_| step.replicas != current) {
            let reason = if step.replicas > current { "ScaledUp" } else { "ScaledDown" };
            ctx.event(&bc.object_ref(&()), false, reason, format!("pool {}: {why}", p.name)).await;
        }
        out.insert(p.name.clone(), ElasticPoolStatus { replicas: step.replicas, surplus_since: step.surplus_since });
    }
    out
}

/// The names of the pools' worker StatefulSets in `want`.
fn pool_workers(want: &super::Desired) -> Vec<String> {
    want.workers.iter().skip(1).filter_map(|s| s.metadata.name.clone()).collect()
}

/// Deletes the StatefulSets of pools that were applied before (the status lists them) and are no longer in the
/// spec. Their pods get SIGTERM and drain, as on a scale-down.
async fn delete_dropped_pools(ctx: &Context, ns: &str, before: &[String], now: &[String]) -> Result<()> {
    for gone in before.iter().filter(|s| !now.contains(s)) {
        info!(statefulset = %gone, "pool no longer in the spec: deleting its workers");
        delete_if_present::<StatefulSet>(ctx, ns, gone, &DeleteParams::background()).await?;
    }
    Ok(())
}

/// The cluster's certificates (see [`tls`]): operator-made Secrets are written when something in them is
/// missing or due for renewal; a user's are only read. Returns the operator's client TLS (`None` without TLS)
/// and, when the operator made the CA, its Secret's data.
async fn certificates(
    bc: &BurstCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<(Option<Pem>, Option<tls::Data>)> {
    let Some(secrets) = tls::secrets(bc, name) else { return Ok((None, None)) };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if !secrets.operator_made {
        for secret in [&secrets.controller, &secrets.workers] {
            if api.get_opt(secret).await?.is_none() {
                return Err(Error::TlsSecret(format!("Secret {secret} (spec.tls) not found")));
            }
        }
        return Ok((Some(operator_tls(ctx, bc, ns, name).await?), None));
    }
    let mut have = Vec::new();
    for secret in [names::tls_ca(name), names::controller_tls(name), names::worker_tls(name)] {
        have.push(api.get_opt(&secret).await?.map(|s| owned(bc, s)).transpose()?.map(|s| tls::data_of(&s)));
    }
    let now = Timestamp::now().as_second();
    let have = [&have[0], &have[1], &have[2]].map(Option::as_ref);
    let want =
        tls::desired(bc, name, ns, bc.controller_owner_ref(&()), have, now).map_err(|e| Error::TlsSecret(e.0))?;
    // The pods' Secrets first, the CA's last: a CA Secret is never ahead of the certificates it describes.
    for i in [1, 2, 0] {
        if have[i] != Some(&tls::data_of(&want[i])) {
            apply(ctx, ns, &want[i]).await?;
            info!(secret = want[i].metadata.name.as_deref().unwrap_or_default(), "TLS secret written");
        }
    }
    let ca = tls::data_of(&want[0]);
    let pem = tls::operator_pem(&secrets.operator, &ca).map_err(Error::TlsSecret)?;
    Ok((Some(pem), Some(ca)))
}

/// The clients' Secrets (`spec.tls.clients`), signed by the CA in `ca` (`None`: no operator-made CA, so no
/// clients): written when missing, due for renewal or signed by another CA; those applied before (`before`,
/// from the status) and no longer listed are deleted. Returns the names applied, for the status: the operator
/// finds its client Secrets by name, so it needs no right to list Secrets.
async fn client_certificates(
    bc: &BurstCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    ca: Option<&tls::Data>,
    before: &[String],
) -> Result<Vec<String>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut have = BTreeMap::new();
    for client in ca.map_or(&[][..], |_| &bc.spec.tls.clients[..]) {
        let secret_name = names::client_tls(name, &client.name);
        if let Some(secret) = api.get_opt(&secret_name).await? {
            have.insert(secret_name, tls::data_of(&owned(bc, secret)?));
        }
    }
    let want = match ca {
        Some(ca) => {
            let now = Timestamp::now().as_second();
            tls::clients(bc, name, ns, bc.controller_owner_ref(&()), ca, &have, now)
                .map_err(|e| Error::TlsSecret(e.0))?
        }
        None => Vec::new(),
    };
    let applied: Vec<String> = want.iter().map(|s| s.name_any()).collect();
    for (secret, secret_name) in want.iter().zip(&applied) {
        if have.get(secret_name) != Some(&tls::data_of(secret)) {
            apply(ctx, ns, secret).await?;
            info!(secret = %secret_name, "client certificate written");
        }
    }
    // Only a client Secret of this cluster's is deleted, whatever the status says.
    for gone in before.iter().filter(|b| !applied.contains(b)) {
        let Some(secret) = api.get_opt(gone).await? else { continue };
        let client = secret.labels().get(names::ROLE_LABEL).map(String::as_str) == Some(tls::CLIENT_ROLE);
        if !client || owned(bc, secret).is_err() {
            warn!(secret = %gone, "listed as a client Secret in the status but not this cluster's: left alone");
            continue;
        }
        info!(secret = %gone, "client no longer in spec.tls.clients: deleting its Secret");
        delete_if_present::<Secret>(ctx, ns, gone, &DeleteParams::background()).await?;
    }
    Ok(applied)
}

/// `secret`, if this BurstCluster owns it: a Secret of the same name made by someone else is never taken over
/// (or garbage-collected with the cluster).
fn owned(bc: &BurstCluster, secret: Secret) -> Result<Secret> {
    let uid = bc.metadata.uid.as_deref();
    let ours = secret.metadata.owner_references.iter().flatten().any(|o| Some(o.uid.as_str()) == uid);
    if ours {
        return Ok(secret);
    }
    let name = secret.metadata.name.unwrap_or_default();
    Err(Error::TlsSecret(format!("Secret {name} exists and is not this BurstCluster's: rename or delete it")))
}

/// The operator's client TLS for `bc`, read from its Secret.
async fn operator_tls(ctx: &Context, bc: &BurstCluster, ns: &str, name: &str) -> Result<Pem> {
    let Some(secrets) = tls::secrets(bc, name) else { return Err(Error::TlsSecret("TLS is off".into())) };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = api.get_opt(&secrets.operator).await? else {
        return Err(Error::TlsSecret(format!("Secret {} not found (yet)", secrets.operator)));
    };
    let secret = if secrets.operator_made { owned(bc, secret)? } else { secret };
    tls::operator_pem(&secrets.operator, &tls::data_of(&secret)).map_err(Error::TlsSecret)
}

/// The link to `bc`'s controller for a BurstJob: the one made already when its transport matches the spec,
/// else a new one (reading the operator's certificate from the cluster's Secret when it runs TLS).
pub async fn link_to(ctx: &Context, bc: &BurstCluster) -> Result<Link> {
    let (ns, name) = (bc.namespace().unwrap_or_default(), bc.name_any());
    if let Some(link) = ctx.links.existing(&ns, &name).filter(|l| l.is_tls() == bc.spec.tls.enabled()) {
        return Ok(link);
    }
    let tls = match bc.spec.tls.enabled() {
        true => Some(operator_tls(ctx, bc, &ns, &name).await?),
        false => None,
    };
    ctx.links.get(&ns, &name, tls)
}

/// Server-side applies `obj` (force: the operator owns these fields) and returns the object as stored — unless
/// the operator applied this very object before and the stored one has not changed since (same generation, or
/// resourceVersion for kinds without one): then it is only read. A no-op apply is not free on a real API server:
/// for a StatefulSet with claim templates (an atomic list the server fills in with defaults) Kubernetes 1.20
/// writes a new resourceVersion on every apply, which wakes every watcher of it.
async fn apply<K>(ctx: &Context, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let applied_before = ctx.applied.lock().unwrap_or_else(|p| p.into_inner()).get(&memo_key::<K>(ns, &name)).cloned();
    let stored = match applied_before.filter(|a| a.sent == fingerprint(obj)) {
        Some(_) => Api::<K>::namespaced(ctx.client.clone(), ns).get_opt(&name).await?,
        None => None,
    };
    apply_over(ctx, ns, obj, stored.as_ref()).await
}

/// [`apply`], given the object as stored now (`None`: not there, or not read).
async fn apply_over<K>(ctx: &Context, ns: &str, obj: &K, stored: Option<&K>) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let memo = memo_key::<K>(ns, &name);
    let sent = fingerprint(obj);
    let seen = ctx.applied.lock().unwrap_or_else(|p| p.into_inner()).get(&memo).cloned();
    if let (Some(seen), Some(stored)) = (seen, stored)
        && seen == (Applied { sent, version: version(stored) })
    {
        return Ok(stored.clone());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let stored = api.patch(&name, &PatchParams::apply(names::FIELD_MANAGER).force(), &Patch::Apply(obj)).await?;
    let applied = Applied { sent, version: version(&stored) };
    ctx.applied.lock().unwrap_or_else(|p| p.into_inner()).insert(memo, applied);
    Ok(stored)
}

fn memo_key<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> String {
    key(&K::kind(&()), ns, name)
}

fn fingerprint<K: Serialize>(obj: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(obj).unwrap_or_default().hash(&mut h);
    h.finish()
}

fn version<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    match meta.generation {
        Some(g) => format!("g{g}"),
        None => format!("v{}", meta.resource_version.as_deref().unwrap_or_default()),
    }
}

async fn delete_if_present<K>(ctx: &Context, ns: &str, name: &str, params: &DeleteParams) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    match Api::<K>::namespaced(ctx.client.clone(), ns).delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Patches the status when it changed, and records an Event for each condition that flipped.
async fn write_status(
    bc: &BurstCluster,
    ctx: &Context,
    prev: &BurstClusterStatus,
    next: &BurstClusterStatus,
) -> Result<()> {
    if prev == next && bc.status.is_some() {
        return Ok(());
    }
    let api: Api<BurstCluster> = Api::namespaced(ctx.client.clone(), &bc.namespace().unwrap_or_default());
    let patch = json!({ "apiVersion": "burst.dev/v1alpha1", "kind": KIND, "status": next });
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch_status(&bc.name_any(), &params, &Patch::Apply(&patch)).await?;
    // One Event per reason among the conditions that flipped (an invalid spec flips both for one cause).
    let mut flipped: Vec<(&str, String)> = Vec::new();
    for c in &next.conditions {
        let before = conditions::get(&prev.conditions, &c.type_);
        if before.is_none_or(|b| b.status != c.status || b.reason != c.reason) {
            let note = format!("{} is {}: {}", c.type_, c.status, c.message);
            match flipped.iter_mut().find(|(reason, _)| *reason == c.reason) {
                Some((_, notes)) => *notes = format!("{notes}; {note}"),
                None => flipped.push((&c.reason, note)),
            }
        }
    }
    for (reason, note) in flipped {
        let warning = matches!(reason, "InvalidSpec" | "ControllerUnreachable" | status::APPLY_REFUSED);
        ctx.event(&bc.object_ref(&()), warning, reason, note).await;
    }
    Ok(())
}
