//! A BurstJob, as pure functions: the [`JobSpec`] it submits and the status it shows for a burst job's
//! [`JobStatus`]. The reconciler ([`reconcile`]) does the talking.
//!
//! The operator keeps its own phase (Pending until the controller has accepted the job) apart from the job state
//! it mirrors: Queued covers queued and leased (waiting on a worker), then Running, then the terminal three.

pub mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use burst_proto::v1::{
    DockerSpec, JobSpec, JobState, JobStatus, ProcessSpec, PythonSpec, Resources, job_spec, python_spec,
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::conditions::{self, Want};
use crate::crd::{BurstJob, BurstJobStatus, JobArrayCounts};
use crate::error::Error;
use crate::names;

pub const PENDING: &str = "Pending";
pub const QUEUED: &str = "Queued";
pub const RUNNING: &str = "Running";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";
pub const CANCELLED: &str = "Cancelled";

/// The output a BurstJob's status keeps: the controller's limit, a screenful of log lines.
pub const OUTPUT_TAIL_BYTES: u32 = 4096;

/// Condition types on a BurstJob: accepted by the controller, and ended (whatever the outcome).
pub const SUBMITTED: &str = "Submitted";
pub const FINISHED: &str = "Finished";

/// Whether a BurstJob phase is final.
pub fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some(SUCCEEDED | FAILED | CANCELLED))
}

/// The job a BurstJob submits: its spec, labelled with the object's name, keyed by the object's uid so that a
/// repeated submit (after a crash, a conflict, a retry) names the same job.
pub fn job_spec(bj: &BurstJob) -> Result<JobSpec, Error> {
    let s = &bj.spec;
    let bad = |m: String| Err(Error::InvalidSpec(m));
    if s.cluster_ref.trim().is_empty() {
        return bad("spec.clusterRef is empty".into());
    }
    let kind = match (&s.process, &s.python, &s.docker) {
        (Some(p), None, None) => {
            if p.command.trim().is_empty() {
                return bad("spec.process.command is empty".into());
            }
            job_spec::Kind::Process(ProcessSpec { command: p.command.clone(), args: p.args.clone() })
        }
        (None, Some(p), None) => {
            let entry = match (&p.script, &p.module, &p.code) {
                (Some(s), None, None) if !s.trim().is_empty() => python_spec::Entry::Script(s.clone()),
                (None, Some(m), None) if !m.trim().is_empty() => python_spec::Entry::Module(m.clone()),
                (None, None, Some(c)) if !c.trim().is_empty() => python_spec::Entry::Code(c.clone()),
                _ => return bad("spec.python needs exactly one non-empty script, module or code".into()),
            };
            let interpreter = p.interpreter.clone().unwrap_or_default();
            job_spec::Kind::Python(PythonSpec { entry: Some(entry), args: p.args.clone(), interpreter })
        }
        (None, None, Some(d)) => {
            if d.image.trim().is_empty() {
                return bad("spec.docker.image is empty".into());
            }
            let command = d.command.clone().unwrap_or_default();
            job_spec::Kind::Docker(DockerSpec { image: d.image.clone(), command, args: d.args.clone() })
        }
        _ => return bad("exactly one of spec.process, spec.python and spec.docker must be set".into()),
    };
    let timeout_ms = non_negative("spec.timeoutSeconds", s.timeout_seconds.unwrap_or(0))? as u64 * 1000;
    let max_attempts = non_negative("spec.maxAttempts", i64::from(s.max_attempts.unwrap_or(1)))? as u32;
    non_negative("spec.ttlSecondsAfterFinished", s.ttl_seconds_after_finished.unwrap_or(0))?;
    let array = match &s.array {
        None => None,
        Some(a) => {
            let index = |field: &str, v: i64| {
                u32::try_from(non_negative(field, v)?)
                    .map_err(|_| Error::InvalidSpec(format!("{field} is {v}; at most {}", u32::MAX)))
            };
            let (first, last) = (index("spec.array.first", a.first)?, index("spec.array.last", a.last)?);
            if last < first {
                return bad(format!("spec.array is {first}-{last}: it ends before it starts"));
            }
            let parallelism = index("spec.array.parallelism", a.parallelism.unwrap_or(0))?;
            Some(burst_proto::v1::ArraySpec { first, last, parallelism })
        }
    };
    let priority = s.priority.unwrap_or(0);
    let most = burst_proto::MAX_PRIORITY;
    if !(-most..=most).contains(&priority) {
        return bad(format!("spec.priority is {priority}; it must be within -{most}..={most}"));
    }
    let resources = match &s.resources {
        None => None,
        Some(r) => Some(Resources {
            cpu_millis: u32::try_from(non_negative("spec.resources.cpuMillis", r.cpu_millis.unwrap_or(0))?)
                .map_err(|_| Error::InvalidSpec("spec.resources.cpuMillis is too large".into()))?,
            memory_bytes: non_negative("spec.resources.memoryBytes", r.memory_bytes.unwrap_or(0))? as u64,
            gpus: non_negative("spec.resources.gpus", i64::from(r.gpus.unwrap_or(0)))? as u32,
        }),
    };
    let uid = bj.uid().ok_or_else(|| Error::InvalidSpec("the object has no uid yet".into()))?;
    Ok(JobSpec {
        kind: Some(kind),
        env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        working_dir: s.working_dir.clone().unwrap_or_default(),
        timeout_ms,
        resources,
        labels: job_labels(bj),
        idempotency_key: format!("burstjob/{uid}"),
        max_attempts,
        priority,
        array,
        output_tail_bytes: OUTPUT_TAIL_BYTES,
        ..JobSpec::default()
    })
}

fn non_negative(field: &str, v: i64) -> Result<i64, Error> {
    if v < 0 { Err(Error::InvalidSpec(format!("{field} is {v}; it must be 0 or more"))) } else { Ok(v) }
}

/// The labels that tie a job to its BurstJob (see [`object_of`]).
pub fn job_labels(bj: &BurstJob) -> HashMap<String, String> {
    HashMap::from([
        (names::SOURCE_LABEL.to_string(), names::SOURCE_BURSTJOB.to_string()),
        (names::BURSTJOB_LABEL.to_string(), bj.name_any()),
        (names::NAMESPACE_LABEL.to_string(), bj.namespace().unwrap_or_default()),
    ])
}

/// The BurstJob (namespace, name) a job was submitted for, from its labels.
pub fn object_of(status: &JobStatus) -> Option<(String, String)> {
    let l = &status.labels;
    if l.get(names::SOURCE_LABEL).map(String::as_str) != Some(names::SOURCE_BURSTJOB) {
        return None;
    }
    Some((l.get(names::NAMESPACE_LABEL)?.clone(), l.get(names::BURSTJOB_LABEL)?.clone()))
}

/// The operator's phase for a job state.
pub fn phase(state: JobState) -> &'static str {
    match state {
        JobState::Unspecified => PENDING,
        JobState::Queued | JobState::Leased => QUEUED,
        JobState::Running => RUNNING,
        JobState::Succeeded => SUCCEEDED,
        JobState::Failed => FAILED,
        JobState::Cancelled => CANCELLED,
    }
}

/// "worker-lost" -> "WorkerLost": reasons as Kubernetes spells them.
pub fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn rfc3339(ms: u64) -> Option<String> {
    (ms > 0).then(|| Timestamp::from_millisecond(ms as i64).ok()).flatten().map(|t| t.to_string())
}

/// The BurstJob status for `job`, keeping what only the operator knows (output tail, conditions' history).
pub fn mirror(prev: &BurstJobStatus, job: &JobStatus, generation: Option<i64>, now: Timestamp) -> BurstJobStatus {
    let state = job.state();
    let phase = phase(state);
    let reason = match job.reason() {
        burst_proto::v1::Reason::Unspecified => camel(burst_proto::state_name(state)),
        r => camel(burst_proto::reason_name(r)),
    };
    let message = if !job.waiting_reason.is_empty() {
        job.waiting_reason.clone()
    } else if !job.message.is_empty() {
        job.message.clone()
    } else {
        summary(job)
    };
    let mut status = BurstJobStatus {
        phase: Some(phase.to_string()),
        reason: Some(reason.clone()),
        message: Some(message.clone()),
        job_id: Some(job.job_id.clone()),
        worker: (!job.worker_id.is_empty()).then(|| job.worker_id.clone()),
        stolen_from: (!job.stolen_from.is_empty()).then(|| job.stolen_from.clone()),
        attempts: Some(job.attempt as i32),
        exit_code: job.exit_code,
        queued_at: rfc3339(job.submitted_at_ms),
        start_time: rfc3339(job.started_at_ms),
        completion_time: rfc3339(job.finished_at_ms),
        output_tail: if job.output_tail.is_empty() { prev.output_tail.clone() } else { Some(job.output_tail.clone()) },
        indices: job.array.as_ref().map(|a| JobArrayCounts {
            total: a.size as i64,
            queued: (a.queued + a.leased) as i64,
            running: a.running as i64,
            succeeded: a.succeeded as i64,
            failed: a.failed as i64,
            cancelled: a.cancelled as i64,
            failed_indices: a.failed_indices.iter().map(|&i| i64::from(i)).collect(),
        }),
        conditions: prev.conditions.clone(),
    };
    conditions::set(&mut status.conditions, Want::yes(SUBMITTED, "Accepted", job.job_id.clone()), generation, now);
    let finished =
        if is_terminal(Some(phase)) { Want::yes(FINISHED, phase, message) } else { Want::no(FINISHED, phase, message) };
    conditions::set(&mut status.conditions, finished, generation, now);
    status
}

/// One line for a job with no message of its own.
fn summary(job: &JobStatus) -> String {
    let on = if job.worker_id.is_empty() { String::new() } else { format!(" on {}", job.worker_id) };
    match (job.state(), job.exit_code, job.signal) {
        (JobState::Queued, ..) => "queued".into(),
        (JobState::Leased, ..) => format!("waiting in a worker's queue{on}"),
        (JobState::Running, ..) => format!("running{on}, attempt {}", job.attempt),
        (_, Some(code), _) => format!("exited with code {code}{on}"),
        (_, _, Some(sig)) => format!("killed by signal {sig}{on}"),
        (state, ..) => burst_proto::state_name(state).to_string(),
    }
}

/// The status of a BurstJob that cannot (yet) be submitted: `phase` with `err` as reason and message.
pub fn not_submitted(
    prev: &BurstJobStatus,
    phase: &str,
    err: &Error,
    generation: Option<i64>,
    now: Timestamp,
) -> BurstJobStatus {
    let mut status = BurstJobStatus {
        phase: Some(phase.to_string()),
        reason: Some(err.reason().to_string()),
        message: Some(err.to_string()),
        ..prev.clone()
    };
    conditions::set(&mut status.conditions, Want::no(SUBMITTED, err.reason(), err.to_string()), generation, now);
    if phase == FAILED {
        status.completion_time.get_or_insert_with(|| now.to_string());
        conditions::set(&mut status.conditions, Want::yes(FINISHED, err.reason(), err.to_string()), generation, now);
    }
    status
}

/// Whether a BurstJob whose spec was refused (Failed without a job) has been edited since: its `generation` is
/// past the one its Finished condition was written for. Such an object is tried again.
pub fn refused_then_edited(status: &BurstJobStatus, generation: Option<i64>) -> bool {
    let refused = status.job_id.is_none() && status.phase.as_deref() == Some(FAILED);
    let written_for = conditions::get(&status.conditions, FINISHED).and_then(|c| c.observed_generation);
    refused && matches!((written_for, generation), (Some(seen), Some(now)) if now > seen)
}

/// When a finished BurstJob with a TTL of `ttl` seconds should be deleted.
pub fn expires_at(ttl: Option<i64>, status: &BurstJobStatus) -> Option<Timestamp> {
    let ttl = ttl?;
    if !is_terminal(status.phase.as_deref()) {
        return None;
    }
    let done: Timestamp = status.completion_time.as_deref()?.parse().ok()?;
    done.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(ttl)).ok()
}
