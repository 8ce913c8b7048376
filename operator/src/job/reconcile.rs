//! The BurstJob reconciler: observe (the object, its cluster, the job's status), decide with the pure functions
//! of [`crate::job`], then write (submit once, patch the status when it changed, record an Event when the phase
//! changed, delete after the TTL).
//!
//! 1. A finalizer is added first, so a deleted BurstJob whose job is unfinished gets that job cancelled.
//! 2. A finished BurstJob only waits for its TTL; nothing is asked of the controller.
//! 3. The cluster must exist and the spec must be valid; otherwise the status says why (condition + Event).
//!    A missing cluster or an unreachable controller is retried with backoff; an invalid spec waits for an edit.
//! 4. The job is submitted once: the idempotency key is the object's uid, so a crash between the submit and the
//!    status patch resubmits to the same job.
//! 5. The status follows the cluster's watch stream (see [`crate::link`]); each change re-queues this object.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use super::{FAILED, PENDING, expires_at, is_terminal, job_spec, mirror, not_submitted, refused_then_edited};
use crate::cluster::reconcile::link_to;
use crate::context::{Context, key};
use crate::crd::{BurstCluster, BurstJob, BurstJobStatus};
use crate::error::{Error, Result};
use crate::names;

/// A BurstJob whose job is still going is read again this often even if no watch event arrives: a safety net,
/// not the way updates normally come.
const RESYNC: Duration = Duration::from_secs(300);

const KIND: &str = "BurstJob";

#[instrument(skip_all, fields(job = %bj.name_any(), namespace = bj.namespace().unwrap_or_default()))]
pub async fn reconcile(bj: Arc<BurstJob>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let ns = bj.namespace().unwrap_or_default();
    let failures = key(KIND, &ns, &bj.name_any());
    let api: Api<BurstJob> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, names::JOB_FINALIZER, bj, |event| async {
        match event {
            Finalizer::Apply(bj) => apply(&bj, &ctx, &api).await,
            Finalizer::Cleanup(bj) => cleanup(&bj, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    match &result {
        Ok(_) => ctx.succeeded(&failures),
        Err(e) => ctx.metrics.failure(KIND, e.reason()),
    }
    result
}

/// Retries with backoff per object (see [`Context::retry`]).
pub fn error_policy(bj: Arc<BurstJob>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry(key(KIND, &bj.namespace().unwrap_or_default(), &bj.name_any()), error)
}

async fn apply(bj: &BurstJob, ctx: &Context, api: &Api<BurstJob>) -> Result<Action> {
    let mut prev = bj.status.clone().unwrap_or_default();
    if refused_then_edited(&prev, bj.meta().generation) {
        // A refused spec waits for an edit; this is it: the object is looked at afresh.
        info!("spec edited after it was refused; trying again");
        prev = BurstJobStatus { conditions: prev.conditions, ..BurstJobStatus::default() };
    } else if is_terminal(prev.phase.as_deref()) {
        return ttl(bj, &prev, api).await;
    }
    let ns = bj.namespace().unwrap_or_default();
    let cluster = &bj.spec.cluster_ref;
    let Some(bc) = Api::<BurstCluster>::namespaced(ctx.client.clone(), &ns).get_opt(cluster).await? else {
        ctx.links.remove(&ns, cluster);
        let phase = prev.phase.clone().unwrap_or_else(|| PENDING.into());
        return Err(refuse(bj, ctx, api, &phase, Error::ClusterNotFound(cluster.clone())).await?);
    };
    let mut spec = match job_spec(bj) {
        Ok(spec) => spec,
        Err(e) => {
            refuse(bj, ctx, api, FAILED, e).await?;
            return Ok(Action::await_change());
        }
    };
    if prev.job_id.is_none() {
        match dependencies(bj, api).await? {
            Ok((after, after_any)) => (spec.after, spec.after_any) = (after, after_any),
            Err(e @ Error::DependencyPending(_)) => {
                refuse(bj, ctx, api, PENDING, e).await?;
                return Ok(Action::requeue(DEPENDENCY_RECHECK));
            }
            Err(e) => {
                refuse(bj, ctx, api, FAILED, e).await?;
                return Ok(Action::await_change());
            }
        }
    }
    let link = match link_to(ctx, &bc).await {
        Ok(link) => link,
        Err(e) => {
            let phase = prev.phase.clone().unwrap_or_else(|| PENDING.into());
            return Err(refuse(bj, ctx, api, &phase, e).await?);
        }
    };
    let object = ObjectRef::from_obj(bj);
    let id = match &prev.job_id {
        Some(id) => {
            link.track(id, object.clone());
            id.clone()
        }
        None => match submit(bj, ctx, api, &link, spec.clone(), &object).await? {
            Some(id) => id,
            None => return Ok(Action::await_change()),
        },
    };
    let job = match link.status(&id).await {
        Err(Error::Controller { status, .. }) if status.code() == tonic::Code::NotFound => {
            // The controller no longer knows the job (it restarted without persistence): the object still asks
            // for it, so it is submitted again rather than lost.
            info!(job_id = %id, "job unknown to the controller; submitting again");
            link.forget(&id);
            match submit(bj, ctx, api, &link, spec, &object).await? {
                Some(id) => link.status(&id).await,
                None => return Ok(Action::await_change()),
            }
        }
        other => other,
    };
    let job = match job {
        Ok(job) => job,
        Err(e) => {
            let phase = prev.phase.clone().unwrap_or_else(|| PENDING.into());
            return Err(refuse(bj, ctx, api, &phase, e).await?);
        }
    };
    let next = mirror(&prev, &job, bj.meta().generation, Timestamp::now());
    write_status(bj, api, &prev, &next).await?;
    if next.phase != prev.phase {
        let phase = next.phase.clone().unwrap_or_default();
        let note = format!("job {}: {}", id, next.message.clone().unwrap_or_default());
        ctx.event(&bj.object_ref(&()), phase == FAILED, &phase, note).await;
    }
    if is_terminal(next.phase.as_deref()) {
        return ttl(bj, &next, api).await;
    }
    Ok(Action::requeue(RESYNC))
}

/// How soon a BurstJob waiting for the BurstJobs it depends on to be submitted looks again.
const DEPENDENCY_RECHECK: Duration = Duration::from_secs(2);

/// The job ids of the BurstJobs `bj` depends on (spec.after, spec.afterAny), or why not yet: one not created or
/// not submitted yet ([`Error::DependencyPending`]), or one on another cluster ([`Error::InvalidSpec`]).
async fn dependencies(bj: &BurstJob, api: &Api<BurstJob>) -> Result<Result<(Vec<String>, Vec<String>), Error>> {
    let mut ids = (Vec::new(), Vec::new());
    let named = bj.spec.after.iter().map(|n| (n, false)).chain(bj.spec.after_any.iter().map(|n| (n, true)));
    for (name, any_end) in named {
        let Some(dep) = api.get_opt(name).await? else { return Ok(Err(Error::DependencyPending(name.clone()))) };
        if dep.spec.cluster_ref != bj.spec.cluster_ref {
            return Ok(Err(Error::InvalidSpec(format!(
                "BurstJob {name} it depends on runs on BurstCluster {}, not {}",
                dep.spec.cluster_ref, bj.spec.cluster_ref
            ))));
        }
        let Some(id) = dep.status.and_then(|s| s.job_id) else {
            return Ok(Err(Error::DependencyPending(name.clone())));
        };
        if any_end { ids.1.push(id) } else { ids.0.push(id) }
    }
    Ok(Ok(ids))
}

/// Submits the job; `None` when the controller refused the spec (the status says why).
async fn submit(
    bj: &BurstJob,
    ctx: &Context,
    api: &Api<BurstJob>,
    link: &crate::link::Link,
    spec: burst_proto::v1::JobSpec,
    object: &ObjectRef<BurstJob>,
) -> Result<Option<String>> {
    match link.submit(spec, object.clone()).await {
        Ok(id) => {
            ctx.metrics.submitted.inc();
            info!(job_id = %id, "submitted");
            ctx.event(&bj.object_ref(&()), false, "Submitted", format!("job {id} on {}", link.endpoint)).await;
            Ok(Some(id))
        }
        Err(Error::Controller { status, .. }) if status.code() == tonic::Code::InvalidArgument => {
            refuse(bj, ctx, api, FAILED, Error::InvalidSpec(status.message().to_string())).await?;
            Ok(None)
        }
        Err(e) => {
            let phase = bj.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| PENDING.into());
            Err(refuse(bj, ctx, api, &phase, e).await?)
        }
    }
}

/// Shows `error` on the object (status + a Warning Event, both only when they say something new) and hands it
/// back for the caller to return or drop.
async fn refuse(bj: &BurstJob, ctx: &Context, api: &Api<BurstJob>, phase: &str, error: Error) -> Result<Error> {
    let prev = bj.status.clone().unwrap_or_default();
    let next = not_submitted(&prev, phase, &error, bj.meta().generation, Timestamp::now());
    if write_status(bj, api, &prev, &next).await? {
        ctx.event(&bj.object_ref(&()), true, error.reason(), error.to_string()).await;
    }
    Ok(error)
}

/// Applies `next` as the status when it differs from `prev`; says whether it wrote.
async fn write_status(
    bj: &BurstJob,
    api: &Api<BurstJob>,
    prev: &BurstJobStatus,
    next: &BurstJobStatus,
) -> Result<bool> {
    if prev == next && bj.status.is_some() {
        return Ok(false);
    }
    let patch = json!({ "apiVersion": "burst.dev/v1alpha1", "kind": KIND, "status": next });
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch_status(&bj.name_any(), &params, &Patch::Apply(&patch)).await?;
    Ok(true)
}

/// A finished BurstJob: deleted once its TTL has passed, else looked at again when it will have.
async fn ttl(bj: &BurstJob, status: &BurstJobStatus, api: &Api<BurstJob>) -> Result<Action> {
    let Some(at) = expires_at(bj.spec.ttl_seconds_after_finished, status) else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    if at > now {
        let wait = now.duration_until(at).unsigned_abs();
        return Ok(Action::requeue(wait));
    }
    info!("TTL after finishing passed; deleting");
    match api.delete(&bj.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// The object is being deleted: an unfinished job is cancelled first (a finished one, or one whose cluster is
/// gone, has nothing to cancel).
async fn cleanup(bj: &BurstJob, ctx: &Context) -> Result<Action> {
    let status = bj.status.clone().unwrap_or_default();
    let Some(id) = status.job_id.as_deref() else { return Ok(Action::await_change()) };
    let ns = bj.namespace().unwrap_or_default();
    let cluster = &bj.spec.cluster_ref;
    if is_terminal(status.phase.as_deref()) {
        ctx.links.forget(&ns, cluster, id);
        return Ok(Action::await_change());
    }
    let Some(bc) = Api::<BurstCluster>::namespaced(ctx.client.clone(), &ns).get_opt(cluster).await? else {
        ctx.links.remove(&ns, cluster);
        return Ok(Action::await_change());
    };
    let link = link_to(ctx, &bc).await?;
    match link.cancel(id).await {
        Ok(()) => {
            info!(job_id = %id, "cancelled: its BurstJob was deleted");
            let note = format!("job {id} cancelled: its BurstJob was deleted");
            ctx.event(&bj.object_ref(&()), false, "Cancelled", note).await;
        }
        // The controller lost the job (its store is gone): nothing runs that could be cancelled, and asking again
        // would only keep the object from going.
        Err(Error::Controller { status, .. }) if status.code() == tonic::Code::NotFound => {
            info!(job_id = %id, "job unknown to the controller; nothing to cancel");
        }
        Err(e) => return Err(e),
    }
    link.forget(id);
    Ok(Action::await_change())
}
