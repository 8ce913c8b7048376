//! JSON renderings of burst's messages, shared by the CLI's `-o json` and the controller's dashboard API: one
//! shape for a job, a worker and the counts wherever they are shown.

use serde_json::{Value, json};

use crate::v1::job_spec::Kind;
use crate::v1::python_spec::Entry;
use crate::v1::{Attempt, GetStatsResponse, JobSpec, JobStatus, PoolStats, WorkerStatus};
use crate::{reason_name, state_name};

pub fn job_json(s: &JobStatus) -> Value {
    json!({
        "job_id": s.job_id,
        "state": state_name(s.state()),
        "reason": reason_name(s.reason()),
        "message": s.message,
        "exit_code": s.exit_code,
        "signal": s.signal,
        "worker_id": s.worker_id,
        "pool": s.pool,
        "spilled": s.spilled,
        "attempt": s.attempt,
        "epoch": s.epoch,
        "submitted_at_ms": s.submitted_at_ms,
        "started_at_ms": s.started_at_ms,
        "finished_at_ms": s.finished_at_ms,
        "stdout_path": s.stdout_path,
        "stderr_path": s.stderr_path,
        "stdout_truncated": s.stdout_truncated,
        "stderr_truncated": s.stderr_truncated,
        "waiting_reason": s.waiting_reason,
        "stolen_from": s.stolen_from,
        "labels": s.labels,
        "retry_at_ms": s.retry_at_ms,
        "output_tail": s.output_tail,
        "attempts": s.attempts.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

fn attempt_json(a: &Attempt) -> Value {
    json!({
        "attempt": a.attempt,
        "worker_id": a.worker_id,
        "pool": a.pool,
        "started_at_ms": a.started_at_ms,
        "finished_at_ms": a.finished_at_ms,
        "reason": reason_name(a.reason()),
        "exit_code": a.exit_code,
        "signal": a.signal,
        "message": a.message,
    })
}

pub fn worker_json(w: &WorkerStatus) -> Value {
    let info = w.info.clone().unwrap_or_default();
    let total = info.resources.unwrap_or_default();
    let free = w.free.unwrap_or_default();
    json!({
        "worker_id": info.worker_id,
        "address": info.advertise_addr,
        "pool": if info.pool.is_empty() { "default" } else { info.pool.as_str() },
        "slots": info.slots,
        "queue_capacity": info.queue_capacity,
        "held": w.held,
        "running": w.running,
        "resources": {"cpu_millis": total.cpu_millis, "memory_bytes": total.memory_bytes, "gpus": total.gpus},
        "free": {"cpu_millis": free.cpu_millis, "memory_bytes": free.memory_bytes, "gpus": free.gpus},
        "labels": info.labels,
        "last_heartbeat_ms_ago": w.last_heartbeat_ms_ago,
        "jobs_finished": w.jobs_finished,
        "draining": w.draining,
        "cordoned": w.cordoned,
        "quarantined_ms_left": w.quarantined_ms_left,
    })
}

pub fn stats_json(s: &GetStatsResponse) -> Value {
    json!({
        "queued": s.queued, "leased": s.leased, "running": s.running,
        "succeeded": s.succeeded, "failed": s.failed, "cancelled": s.cancelled,
        "workers": s.workers, "slots_busy": s.slots_busy, "slots_total": s.slots_total,
        "submitted_total": s.submitted_total, "stale_reports_total": s.stale_reports_total,
        "steal_attempts_total": s.steal_attempts_total, "steals_total": s.steals_total,
        "jobs_stolen_total": s.jobs_stolen_total,
        "pools": s.pools.iter().map(pool_json).collect::<Vec<_>>(),
    })
}

pub fn pool_json(p: &PoolStats) -> Value {
    json!({
        "name": p.name, "cost_per_slot_second": p.cost_per_slot_second, "elastic": p.elastic, "labels": p.labels,
        "workers": p.workers, "slots_total": p.slots_total, "slots_busy": p.slots_busy,
        "slot_seconds": p.slot_seconds, "busy_slot_seconds": p.busy_slot_seconds, "cost": p.cost,
        "jobs_placed": p.jobs_placed, "jobs_spilled": p.jobs_spilled, "jobs_waiting": p.jobs_waiting,
    })
}

/// A job's spec: what runs and with what limits.
pub fn spec_json(s: &JobSpec) -> Value {
    let kind = match &s.kind {
        Some(Kind::Process(p)) => json!({"process": {"command": p.command, "args": p.args}}),
        Some(Kind::Python(p)) => {
            let entry = match &p.entry {
                Some(Entry::Script(s)) => json!({"script": s}),
                Some(Entry::Module(m)) => json!({"module": m}),
                Some(Entry::Code(c)) => json!({"code": c}),
                None => Value::Null,
            };
            json!({"python": {"entry": entry, "args": p.args, "interpreter": p.interpreter}})
        }
        Some(Kind::Docker(d)) => json!({"docker": {"image": d.image, "command": d.command, "args": d.args}}),
        None => Value::Null,
    };
    let r = s.resources.unwrap_or_default();
    json!({
        "kind": kind,
        "env": s.env,
        "working_dir": s.working_dir,
        "timeout_ms": s.timeout_ms,
        "max_attempts": s.max_attempts,
        "labels": s.labels,
        "owner": s.owner,
        "resources": {"cpu_millis": r.cpu_millis, "memory_bytes": r.memory_bytes, "gpus": r.gpus},
        "pool": s.pool,
        "pool_selector": s.pool_selector,
        "expected_runtime_ms": s.expected_runtime_ms,
    })
}
