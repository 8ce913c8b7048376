use burst_proto::v1::{JobState, JobStatus, Reason};

use super::*;
use crate::crd::{BurstJobSpec, ProcessJob, PythonJob};

fn example() -> BurstJob {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/burstjob.yaml"));
    let mut bj: BurstJob = serde_yaml::from_str(&text.unwrap()).unwrap();
    bj.metadata.namespace = Some("jobs".into());
    bj.metadata.uid = Some("uid-7".into());
    bj
}

fn with_spec(spec: BurstJobSpec) -> BurstJob {
    let mut bj = example();
    bj.spec = spec;
    bj
}

#[test]
fn a_burstjob_submits_a_job_keyed_by_its_uid_and_labelled_with_its_name() {
    let spec = job_spec(&example()).unwrap();
    assert_eq!(spec.idempotency_key, "burstjob/uid-7");
    assert_eq!((spec.timeout_ms, spec.max_attempts, spec.priority), (60_000, 2, 0));
    let Some(job_spec::Kind::Process(p)) = &spec.kind else { panic!("a process job") };
    assert_eq!(p.command, "/bin/sh");
    let status = JobStatus { labels: spec.labels.clone(), ..JobStatus::default() };
    assert_eq!(object_of(&status), Some(("jobs".to_string(), "hello".to_string())));
    assert_eq!(object_of(&JobStatus::default()), None, "jobs submitted elsewhere are not ours");
}

#[test]
fn bad_specs_are_refused_with_a_readable_message() {
    let process = |command: &str| ProcessJob { command: command.into(), args: vec![] };
    let cases = [
        (
            BurstJobSpec { cluster_ref: "c".into(), process: Some(process(" ")), ..Default::default() },
            "command is empty",
        ),
        (BurstJobSpec { cluster_ref: "c".into(), ..Default::default() }, "exactly one of"),
        (
            BurstJobSpec {
                cluster_ref: "c".into(),
                process: Some(process("true")),
                python: Some(PythonJob { code: Some("1".into()), ..Default::default() }),
                ..Default::default()
            },
            "exactly one of",
        ),
        (
            BurstJobSpec {
                cluster_ref: "c".into(),
                python: Some(PythonJob { script: Some("a.py".into()), code: Some("1".into()), ..Default::default() }),
                ..Default::default()
            },
            "exactly one non-empty script",
        ),
        (
            BurstJobSpec {
                cluster_ref: "c".into(),
                process: Some(process("true")),
                timeout_seconds: Some(-1),
                ..Default::default()
            },
            "spec.timeoutSeconds is -1",
        ),
        (
            BurstJobSpec {
                cluster_ref: "c".into(),
                process: Some(process("true")),
                priority: Some(5000),
                ..Default::default()
            },
            "spec.priority is 5000",
        ),
        (BurstJobSpec { cluster_ref: "".into(), process: Some(process("true")), ..Default::default() }, "clusterRef"),
    ];
    for (spec, want) in cases {
        let err = job_spec(&with_spec(spec)).unwrap_err();
        assert_eq!(err.reason(), "InvalidSpec");
        assert!(err.to_string().contains(want), "{err} should say {want:?}");
    }
}

#[test]
fn the_status_mirrors_each_job_state_with_its_own_phase() {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let cases = [
        (JobState::Queued, Reason::Unspecified, QUEUED, "Queued"),
        (JobState::Leased, Reason::Unspecified, QUEUED, "Leased"),
        (JobState::Running, Reason::Unspecified, RUNNING, "Running"),
        (JobState::Succeeded, Reason::Exited, SUCCEEDED, "Exited"),
        (JobState::Failed, Reason::WorkerLost, FAILED, "WorkerLost"),
        (JobState::Cancelled, Reason::Cancelled, CANCELLED, "Cancelled"),
    ];
    for (state, reason, phase, why) in cases {
        let job = JobStatus {
            job_id: "j1".into(),
            state: state as i32,
            reason: reason as i32,
            worker_id: "w-1".into(),
            stolen_from: "w-0".into(),
            attempt: 2,
            exit_code: (state == JobState::Succeeded).then_some(0),
            submitted_at_ms: 1_700_000_000_000,
            finished_at_ms: if is_terminal(Some(phase)) { 1_700_000_001_500 } else { 0 },
            ..JobStatus::default()
        };
        let s = mirror(&BurstJobStatus::default(), &job, Some(1), now);
        assert_eq!((s.phase.as_deref(), s.reason.as_deref()), (Some(phase), Some(why)), "{state:?}");
        assert_eq!((s.worker.as_deref(), s.stolen_from.as_deref(), s.attempts), (Some("w-1"), Some("w-0"), Some(2)));
        assert_eq!(s.queued_at.as_deref(), Some("2023-11-14T22:13:20Z"));
        let finished = conditions::get(&s.conditions, FINISHED).unwrap();
        assert_eq!(finished.status == "True", is_terminal(Some(phase)), "{state:?}");
        assert_eq!(s.completion_time.is_some(), is_terminal(Some(phase)));
    }
}

#[test]
fn a_queued_job_says_why_it_waits() {
    let job = JobStatus {
        job_id: "j1".into(),
        state: JobState::Queued as i32,
        waiting_reason: "no worker has room".into(),
        ..JobStatus::default()
    };
    let s = mirror(&BurstJobStatus::default(), &job, None, Timestamp::now());
    assert_eq!(s.message.as_deref(), Some("no worker has room"));
}

#[test]
fn mirroring_the_same_job_twice_changes_nothing_so_nothing_is_patched() {
    let job = JobStatus { job_id: "j1".into(), state: JobState::Running as i32, ..JobStatus::default() };
    let first = mirror(&BurstJobStatus::default(), &job, Some(1), Timestamp::from_second(10).unwrap());
    let again = mirror(&first, &job, Some(1), Timestamp::from_second(20).unwrap());
    assert_eq!(first, again);
}

#[test]
fn the_ttl_counts_from_completion_and_only_for_finished_jobs() {
    let done = BurstJobStatus {
        phase: Some(SUCCEEDED.into()),
        completion_time: Some("2026-01-01T00:00:00Z".into()),
        ..BurstJobStatus::default()
    };
    assert_eq!(expires_at(Some(60), &done).unwrap().to_string(), "2026-01-01T00:01:00Z");
    assert_eq!(expires_at(None, &done), None);
    let running = BurstJobStatus { phase: Some(RUNNING.into()), ..done };
    assert_eq!(expires_at(Some(60), &running), None);
}

#[test]
fn reasons_are_camel_case() {
    assert_eq!(camel("queue-deadline-exceeded"), "QueueDeadlineExceeded");
    assert_eq!(camel("exited"), "Exited");
}

#[test]
fn a_refused_spec_is_tried_again_only_after_an_edit() {
    let err = Error::InvalidSpec("spec.process.command is empty".into());
    let refused = not_submitted(&BurstJobStatus::default(), FAILED, &err, Some(1), Timestamp::now());
    assert!(!refused_then_edited(&refused, Some(1)), "the same spec stays refused");
    assert!(refused_then_edited(&refused, Some(2)), "an edit is looked at afresh");
    let ran = BurstJobStatus { job_id: Some("j-1".into()), ..refused.clone() };
    assert!(!refused_then_edited(&ran, Some(2)), "a job that ran and failed is final");
    let pending = not_submitted(&BurstJobStatus::default(), PENDING, &err, Some(1), Timestamp::now());
    assert!(!refused_then_edited(&pending, Some(2)), "only a refused (Failed) spec waits for an edit");
}
