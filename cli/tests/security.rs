//! Authentication, roles and admission limits, end to end: a controller with a tokens file, quotas and a submit
//! rate, a worker that authenticates as a worker, and clients with and without the right tokens.

mod common;
mod procs;

use std::path::Path;
use std::time::Duration;

use burst_cli::client::connect_with;
use burst_cli::commands::wait::wait_all;
use burst_controller::admission::RateLimit;
use burst_controller::scheduler::Quota;
use burst_controller::{ControllerConfig, RunningController};
use burst_proto::auth::Bearer;
use burst_proto::v1::{
    CancelJobRequest, CordonWorkersRequest, GetJobStatusRequest, GetStatsRequest, HeartbeatRequest, JobSpec, JobState,
    ListJobsRequest, ListWorkersRequest, RegisterWorkerRequest, ReportJobResultRequest, ReportJobResultResponse,
    SubmitJobRequest, SubmitJobsRequest, WorkerInfo,
};
use burst_worker::{RunningWorker, WorkerConfig};
use common::{eventually, sh};
use tonic::Code;

const LONG: Duration = Duration::from_secs(30);
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";
const WORKER: &str = "worker-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// Alice, Bob (fair-share weight 2, may submit up to priority 10), a worker and an admin.
fn tokens(dir: &Path) -> std::path::PathBuf {
    let entries =
        [("alice", "submit", ALICE), ("bob", "submit", BOB), ("w", "worker", WORKER), ("root", "admin", ADMIN)];
    let path = common::tokens_file(dir, &entries);
    let text = std::fs::read_to_string(&path).unwrap();
    let bob = format!("token = \"{BOB}\"\n");
    std::fs::write(&path, text.replace(&bob, &format!("{bob}weight = 2\nmax_priority = 10\n"))).unwrap();
    path
}

/// A controller requiring tokens, with `quota` and `rate`, and one worker (2 slots) authenticated as a worker.
async fn secured(dir: &Path, quota: Quota, rate: RateLimit) -> (RunningController, RunningWorker, String) {
    let config = ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens_file: Some(tokens(dir)),
        quota,
        submit_rate: rate,
        ..ControllerConfig::default()
    };
    let controller = burst_controller::start(config).await.unwrap();
    let url = format!("http://{}", controller.addr);
    let mut cfg = WorkerConfig::local(&url, "w-0", 2, 2, dir.join("out"));
    cfg.bearer = Bearer::new(Some(WORKER)).unwrap();
    let worker = burst_worker::start(cfg).await.unwrap();
    tokio::time::timeout(LONG, worker.agent.registered()).await.expect("the worker registers with its token");
    (controller, worker, url)
}

async fn as_(url: &str, token: Option<&str>) -> burst_cli::client::Client {
    connect_with(url, Bearer::new(token).unwrap()).await.unwrap()
}

fn gate(dir: &Path) -> String {
    format!("while [ ! -e {}/gate ]; do sleep 0.01; done", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_unauthenticated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, worker, url) =
        secured(dir.path(), Quota::default(), RateLimit { per_second: 0.0, burst: 0.0 }).await;
    for token in [None, Some("not-a-known-token-0123")] {
        let err = as_(&url, token).await.list_jobs(ListJobsRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(!err.message().contains("not-a-known"), "the message never echoes a token");
    }
    // A submitter may not act as a worker.
    let req = burst_proto::v1::RegisterWorkerRequest::default();
    let refused = as_(&url, Some(ALICE)).await.register_worker(req).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("alice (role submit) may not make this call: it needs the worker role"),
        "{refused:?}"
    );
    // The CLI: exit 3, one line.
    let o = procs::burst(&url, &["--token", "not-a-known-token-0123", "list"]);
    assert_eq!(o.status.code(), Some(3), "{}", procs::stderr(&o));
    assert!(procs::stderr(&o).contains("unknown token"), "{}", procs::stderr(&o));
    let o = procs::burst(&url, &["--token", ALICE, "submit", "--wait", "process", "/bin/true"]);
    assert!(o.status.success(), "{}", procs::stderr(&o));

    let stats = as_(&url, Some(ADMIN)).await.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.unauthenticated_total, stats.permission_denied_total), (3, 1));
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

/// A report stream is held to the token it was opened with, report by report: the first report after the token
/// expires is refused as a call with it would be, and ends the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_stream_is_refused_once_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::tokens_file(dir.path(), &[("w", "worker", WORKER), ("root", "admin", ADMIN)]);
    // Whole seconds: it expires 4 to 5 s from now.
    let expires = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(5));
    let line = format!("token = \"{WORKER}\"\n");
    let text = std::fs::read_to_string(&path).unwrap().replace(&line, &format!("{line}expires = \"{expires}\"\n"));
    std::fs::write(&path, text).unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let config = ControllerConfig { listen, tokens_file: Some(path), ..ControllerConfig::default() };
    let controller = burst_controller::start(config).await.unwrap();
    let url = format!("http://{}", controller.addr);
    let mut worker = as_(&url, Some(WORKER)).await;
    let info = WorkerInfo { worker_id: "w-1".into(), slots: 1, ..Default::default() };
    let registration = RegisterWorkerRequest { info: Some(info), ..Default::default() };
    let session = worker.register_worker(registration).await.unwrap().into_inner().session;
    let (reports, rx) = tokio::sync::mpsc::channel(1);
    let stream = worker.reports(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    let mut answers = stream.unwrap().into_inner();
    // A report of nothing (nothing finished, started or taken) is answered with nothing.
    let empty = ReportJobResultRequest { worker_id: "w-1".into(), session, ..Default::default() };
    reports.send(empty.clone()).await.unwrap();
    let answer = tokio::time::timeout(LONG, answers.message()).await.unwrap();
    assert_eq!(answer.unwrap(), Some(ReportJobResultResponse::default()));
    eventually(LONG, "a call with the worker token refused as expired", || {
        let mut worker = worker.clone();
        async move {
            let beat = HeartbeatRequest { worker_id: "w-1".into(), session, ..Default::default() };
            let err = worker.heartbeat(beat).await.err()?;
            (err.code() == Code::Unauthenticated).then_some(())
        }
    })
    .await;
    reports.send(empty).await.unwrap();
    let err = tokio::time::timeout(LONG, answers.message()).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("token expired"), "{}", err.message());
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_sees_and_cancels_only_its_own_jobs_and_cannot_list_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, worker, url) =
        secured(dir.path(), Quota::default(), RateLimit { per_second: 0.0, burst: 0.0 }).await;
    let (mut alice, mut bob, mut admin) =
        (as_(&url, Some(ALICE)).await, as_(&url, Some(BOB)).await, as_(&url, Some(ADMIN)).await);
    let id =
        alice.submit_job(SubmitJobRequest { spec: Some(sh(&gate(dir.path()))) }).await.unwrap().into_inner().job_id;
    let theirs = bob.get_job_status(GetJobStatusRequest { job_id: id.clone() }).await.unwrap_err();
    assert_eq!(theirs.code(), Code::PermissionDenied);
    let cancel = CancelJobRequest { job_ids: vec![id.clone()], ..CancelJobRequest::default() };
    assert_eq!(bob.cancel_job(cancel.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    let by_label =
        CancelJobRequest { labels: [("any".to_string(), String::new())].into(), ..CancelJobRequest::default() };
    assert!(bob.cancel_job(by_label).await.unwrap().into_inner().cancelled.is_empty());
    assert!(
        bob.list_jobs(ListJobsRequest::default()).await.unwrap().into_inner().jobs.is_empty(),
        "bob sees none of alice's"
    );
    let refused = bob.list_workers(ListWorkersRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().ends_with("it needs the admin role"), "{refused:?}");
    assert_eq!(admin.list_workers(ListWorkersRequest {}).await.unwrap().into_inner().workers.len(), 1);
    let listed = admin.list_workers(ListWorkersRequest {}).await.unwrap().into_inner().workers[0].info.clone();
    let cordon = CordonWorkersRequest { worker_ids: vec![listed.unwrap_or_default().worker_id], uncordon: false };
    assert_eq!(bob.cordon_workers(cordon.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    let cordoned = admin.cordon_workers(cordon.clone()).await.unwrap().into_inner().workers;
    assert!(cordoned[0].cordoned, "an admin may cordon");
    admin.cordon_workers(CordonWorkersRequest { uncordon: true, ..cordon }).await.unwrap();

    let mine = alice.get_job_status(GetJobStatusRequest { job_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(mine.owner, "alice", "the owner comes from the token, not from the request");
    assert_eq!(alice.cancel_job(cancel).await.unwrap().into_inner().cancelled, vec![id.clone()]);
    let s = admin.get_job_status(GetJobStatusRequest { job_id: id }).await.unwrap().into_inner();
    assert_eq!(s.state(), JobState::Cancelled);
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_refuses_what_is_over_it_stores_none_of_it_and_everything_accepted_completes() {
    let dir = tempfile::tempdir().unwrap();
    let quota = Quota { max_active: 100, max_active_per_owner: 5 };
    let (controller, worker, url) = secured(dir.path(), quota, RateLimit { per_second: 0.0, burst: 0.0 }).await;
    let (mut alice, mut bob) = (as_(&url, Some(ALICE)).await, as_(&url, Some(BOB)).await);
    let specs = |n: usize| SubmitJobsRequest { specs: vec![sh(&gate(dir.path())); n] };
    let accepted: Vec<String> =
        alice.submit_jobs(specs(4)).await.unwrap().into_inner().jobs.into_iter().map(|j| j.job_id).collect();
    let over = alice.submit_jobs(specs(2)).await.unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted);
    assert!(over.message().contains("quota of 5") && over.message().contains("retry in"), "{}", over.message());
    assert!(over.metadata().get("retry-after-ms").is_some());
    let listed = alice.list_jobs(ListJobsRequest::default()).await.unwrap().into_inner().jobs;
    assert_eq!(listed.len(), 4, "the refused batch stored nothing, not even its first spec");
    let bobs = bob.submit_jobs(specs(5)).await.unwrap().into_inner().jobs;
    assert_eq!(bobs.len(), 5, "quotas are per submitter");

    std::fs::write(dir.path().join("gate"), b"open").unwrap();
    let ended = wait_all(&mut alice, &accepted, Some(LONG), false).await.unwrap();
    assert!(ended.iter().all(|s| s.state() == JobState::Succeeded));
    // Finished jobs no longer count: the quota has room again.
    assert!(alice.submit_jobs(specs(5)).await.is_ok());
    let stats = bob.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.quota_refused_total, 1);
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_over_its_rate_is_told_when_to_retry_and_its_retries_complete() {
    let dir = tempfile::tempdir().unwrap();
    let rate = RateLimit { per_second: 20.0, burst: 10.0 };
    let (controller, worker, url) = secured(dir.path(), Quota::default(), rate).await;
    let mut alice = as_(&url, Some(ALICE)).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(alice.submit_job(SubmitJobRequest { spec: Some(sh("true")) }).await.unwrap().into_inner().job_id);
    }
    let refused = alice.submit_job(SubmitJobRequest { spec: Some(sh("true")) }).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let wait_ms: u64 = refused.metadata().get("retry-after-ms").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait_ms), "one job at 20/s: about 50 ms, not {wait_ms}");
    // Retrying after the hint gets in.
    let id = eventually(LONG, "a retry after the hint to be accepted", || {
        let mut alice = alice.clone();
        async move {
            alice.submit_job(SubmitJobRequest { spec: Some(sh("true")) }).await.ok().map(|r| r.into_inner().job_id)
        }
    })
    .await;
    ids.push(id);
    let ended = wait_all(&mut alice, &ids, Some(LONG), false).await.unwrap();
    assert_eq!(ended.iter().filter(|s| s.state() == JobState::Succeeded).count(), 11);
    let stats = alice.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert!(stats.rate_limited_total >= 1);
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_does_not_starve_another_submitter_and_priorities_follow_the_tokens_file() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, worker, url) =
        secured(dir.path(), Quota::default(), RateLimit { per_second: 0.0, burst: 0.0 }).await;
    let (mut alice, mut bob, mut admin) =
        (as_(&url, Some(ALICE)).await, as_(&url, Some(BOB)).await, as_(&url, Some(ADMIN)).await);
    // Alice may not raise her priority; Bob may, up to 10; an admin to any.
    let urgent = |priority| SubmitJobsRequest { specs: vec![JobSpec { priority, ..sh("true") }] };
    let refused = alice.submit_jobs(urgent(1)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("alice may submit at priority 0 at most, not 1"), "{}", refused.message());
    assert_eq!(bob.submit_jobs(urgent(11)).await.unwrap_err().code(), Code::PermissionDenied);
    let out_of_range = admin.submit_jobs(urgent(1001)).await.unwrap_err();
    assert_eq!(out_of_range.code(), Code::InvalidArgument, "{out_of_range:?}");
    let o = procs::burst(&url, &["--token", ALICE, "submit", "--priority", "5", "process", "/bin/true"]);
    assert_eq!(o.status.code(), Some(3), "{}", procs::stderr(&o));
    assert!(procs::stderr(&o).contains("max_priority in the tokens file"), "{}", procs::stderr(&o));
    let o = procs::burst(&url, &["--token", ALICE, "submit", "--wait", "--priority", "-3", "process", "/bin/true"]);
    assert!(o.status.success(), "lowering is allowed: {}", procs::stderr(&o));

    // Alice floods first; Bob's few jobs come after all of hers and still run among her first.
    let job = |n| SubmitJobsRequest { specs: vec![sh("sleep 0.02"); n] };
    let flood = alice.submit_jobs(job(200)).await.unwrap().into_inner().jobs;
    let bobs = bob.submit_jobs(job(3)).await.unwrap().into_inner().jobs;
    let bobs: Vec<String> = bobs.into_iter().map(|j| j.job_id).collect();
    let ended = wait_all(&mut bob, &bobs, Some(LONG), false).await.unwrap();
    let bob_started = ended.iter().map(|s| s.started_at_ms).max().unwrap();
    let mut alice_started = 0;
    for j in &flood {
        let s = admin.get_job_status(GetJobStatusRequest { job_id: j.job_id.clone() }).await.unwrap().into_inner();
        alice_started += usize::from(s.started_at_ms > 0 && s.started_at_ms <= bob_started);
    }
    // The worker's 2 slots and 2 queued places were Alice's when Bob came; then the places alternate.
    assert!(alice_started <= 12, "{alice_started} of Alice's 200 jobs started before Bob's last of 3");
    // Each sees its own share; an admin sees both, with Bob's weight.
    let shares = |s: burst_proto::v1::GetStatsResponse| -> Vec<(String, u32)> {
        s.submitters.into_iter().map(|o| (o.name, o.weight)).collect()
    };
    // (Listed while they have unfinished jobs: one each that waits for the gate.)
    let gated = || SubmitJobsRequest { specs: vec![sh(&gate(dir.path()))] };
    let _ = (alice.submit_jobs(gated()).await.unwrap(), bob.submit_jobs(gated()).await.unwrap());
    let mine = shares(bob.get_stats(GetStatsRequest {}).await.unwrap().into_inner());
    assert_eq!(mine, [("bob".to_string(), 2)]);
    let all = shares(admin.get_stats(GetStatsRequest {}).await.unwrap().into_inner());
    assert_eq!(all, [("alice".to_string(), 1), ("bob".to_string(), 2)]);
    let o = procs::burst(&url, &["--token", ADMIN, "shares"]);
    assert!(o.status.success(), "{}", procs::stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("SUBMITTER") && text.contains("alice") && text.contains("bob"), "{text}");
    std::fs::write(dir.path().join("gate"), b"open").unwrap();
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ids_are_refused_as_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::cluster(burst_cli::local::ClusterOptions::new(1, 1, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let long = "x".repeat(300);
    for bad in ["../x", "/etc/passwd", "a\0b", "a\nb", long.as_str()] {
        let req = GetJobStatusRequest { job_id: bad.to_string() };
        let err = client.get_job_status(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err:?}");
        let cancel = CancelJobRequest { job_ids: vec![bad.to_string()], ..CancelJobRequest::default() };
        assert_eq!(client.cancel_job(cancel).await.unwrap_err().code(), Code::InvalidArgument, "{bad:?}");
        let poll = burst_proto::v1::PollJobRequest { worker_id: bad.to_string(), ..Default::default() };
        assert_eq!(client.poll_job(poll).await.unwrap_err().code(), Code::InvalidArgument, "{bad:?}");
    }
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_metacharacters_in_arguments_are_inert() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::cluster(burst_cli::local::ClusterOptions::new(1, 2, dir.path().join("out"))).await;
    let mut client = c.client().await.unwrap();
    let marker = dir.path().join("marker");
    let m = marker.display().to_string();
    let attempts = [
        format!("; touch {m}"),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("x\ntouch {m}"),
        format!("| touch {m}"),
        format!("&& touch {m}"),
    ];
    let specs: Vec<_> = attempts.iter().map(|a| common::process("/bin/echo", &[a.as_str()])).collect();
    let ids = common::submit(&mut client, specs).await;
    let ended = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    for (s, arg) in ended.iter().zip(&attempts) {
        assert_eq!(s.state(), JobState::Succeeded);
        assert_eq!(std::fs::read_to_string(&s.stdout_path).unwrap(), format!("{arg}\n"), "printed, not run");
    }
    assert!(!marker.exists(), "no shell ever ran");
    c.shutdown().await.unwrap();
}
