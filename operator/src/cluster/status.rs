//! A BurstCluster's status, as a pure function of what the reconciler observed: its pods' readiness (from the
//! applied StatefulSets and Deployment) and its controller's own counts (from `GetStats`).

use burst_proto::v1::GetStatsResponse;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::conditions::{self, Want};
use crate::crd::{BurstCluster, BurstClusterStatus};
use crate::names;

pub const CONTROLLER_READY: &str = "ControllerReady";
pub const WORKERS_READY: &str = "WorkersReady";
/// Present once the API server refused one of the cluster's objects: False (reason [`APPLY_REFUSED`], its
/// message) while it does, True once every object is applied again.
pub const RECONCILED: &str = "Reconciled";
pub const APPLY_REFUSED: &str = "ApplyRefused";

/// What the reconciler saw.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub controller_ready: bool,
    pub ready_workers: i32,
    /// The controller's counts, or why they could not be read; `None` while its pod is not ready.
    pub stats: Option<Result<GetStatsResponse, String>>,
    /// What the API server said when it refused some of the cluster's objects; `None`: all applied.
    pub refused: Option<String>,
}

pub fn desired_workers(bc: &BurstCluster) -> i32 {
    super::worker_pods(bc, &bc.name_any()).len() as i32
}

/// The status for `observed`; counts the controller could not give keep their previous values.
pub fn status(bc: &BurstCluster, prev: &BurstClusterStatus, observed: &Observed, now: Timestamp) -> BurstClusterStatus {
    let generation = bc.metadata.generation;
    let desired = desired_workers(bc);
    let ready = observed.ready_workers;
    let mut next = BurstClusterStatus {
        ready: Some(format!("{ready}/{desired}")),
        ready_workers: ready,
        desired_workers: desired,
        worker_selector: Some(
            names::selector(&bc.name_any(), "worker")
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        endpoint: Some(names::controller_endpoint(
            &bc.name_any(),
            &bc.namespace().unwrap_or_default(),
            bc.spec.tls.enabled(),
        )),
        observed_generation: generation,
        ..prev.clone()
    };
    let controller = match &observed.stats {
        _ if !observed.controller_ready => Want::no(CONTROLLER_READY, "Starting", "the controller pod is not ready"),
        None => Want::no(CONTROLLER_READY, "Starting", "the controller pod is not ready"),
        Some(Err(e)) => Want::no(CONTROLLER_READY, "ControllerUnreachable", e.clone()),
        Some(Ok(s)) => {
            next.slots_busy = i64::from(s.slots_busy);
            next.slots_total = i64::from(s.slots_total);
            next.queued = (s.queued + s.leased) as i64;
            next.running = s.running as i64;
            Want::yes(CONTROLLER_READY, "Serving", format!("{} workers registered", s.workers))
        }
    };
    next.slots = Some(format!("{}/{}", next.slots_busy, next.slots_total));
    conditions::set(&mut next.conditions, controller, generation, now);
    let workers = if ready >= desired {
        Want::yes(WORKERS_READY, "AllReady", format!("{ready}/{desired} workers ready"))
    } else {
        Want::no(WORKERS_READY, "Scaling", format!("{ready}/{desired} workers ready"))
    };
    conditions::set(&mut next.conditions, workers, generation, now);
    match &observed.refused {
        Some(message) => {
            conditions::set(&mut next.conditions, Want::no(RECONCILED, APPLY_REFUSED, message.clone()), generation, now)
        }
        None if conditions::get(&next.conditions, RECONCILED).is_some() => {
            let applied = Want::yes(RECONCILED, "Applied", "every object is as the spec says");
            conditions::set(&mut next.conditions, applied, generation, now);
        }
        None => {}
    }
    next
}

/// The status of a cluster whose spec cannot be reconciled: both conditions false, saying why.
pub fn invalid(bc: &BurstCluster, prev: &BurstClusterStatus, message: &str, now: Timestamp) -> BurstClusterStatus {
    let generation = bc.metadata.generation;
    let mut next = BurstClusterStatus { observed_generation: generation, ..prev.clone() };
    for type_ in [CONTROLLER_READY, WORKERS_READY] {
        conditions::set(&mut next.conditions, Want::no(type_, "InvalidSpec", message), generation, now);
    }
    next
}
