//! Cancel, retries, timeouts and queue deadlines on an in-process cluster with real processes, and the fencing
//! of repeated reports through the real gRPC API.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use burst_cli::commands::wait::wait_all;
use burst_cli::local::{ClusterOptions, LocalCluster};
use burst_proto::testing::missing_tool;
use burst_proto::v1::controller_rpc_client::ControllerRpcClient;
use burst_proto::v1::*;
use common::{cluster, eventually, process, sh, submit};

const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_queued_and_running_jobs_and_frees_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions { queue_capacity: Some(0), ..ClusterOptions::new(1, 1, dir.path().to_path_buf()) })
        .await;
    let mut client = c.client().await.unwrap();
    let pidfile = dir.path().join("pid");
    let ids = submit(
        &mut client,
        vec![sh(&format!("echo $$ > {}; exec sleep 30", pidfile.display())), process("/bin/true", &[])],
    )
    .await;
    // Running, and far enough along to have written its pid.
    let pid: i32 = eventually(LONG, "the first job's pid", || {
        let pidfile = pidfile.clone();
        async move { std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok() }
    })
    .await;
    // The second job waits in the controller's queue (the only slot is busy): cancel both.
    let resp =
        client.cancel_job(CancelJobRequest { job_ids: ids.clone(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(resp.cancelled, ids);
    let statuses = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    for s in &statuses {
        assert_eq!((s.state(), s.reason()), (JobState::Cancelled, Reason::Cancelled), "{s:?}");
    }
    // The running process was stopped on its worker.
    eventually(LONG, "the cancelled process to be gone", || async move {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        (!alive).then_some(())
    })
    .await;
    // The slot is free for the next job.
    let next = submit(&mut client, vec![process("/bin/true", &[])]).await;
    let s = wait_all(&mut client, &next, Some(LONG), false).await.unwrap();
    assert_eq!(s[0].state(), JobState::Succeeded);
    let err =
        client.cancel_job(CancelJobRequest { job_ids: vec!["nope".into()], ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = client.cancel_job(CancelJobRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_short_jobs_the_next_start_is_confirmed_ahead_and_a_cancel_meanwhile_keeps_it_from_running() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(1, 1, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    // Short runs teach the worker that its jobs are short.
    let short = submit(&mut client, (0..40).map(|_| process("/bin/true", &[])).collect()).await;
    let s = wait_all(&mut client, &short, Some(LONG), false).await.unwrap();
    assert!(s.iter().all(|s| s.state() == JobState::Succeeded));
    let (pidfile, marker) = (dir.path().join("pid"), dir.path().join("ran"));
    let ids = submit(
        &mut client,
        vec![
            sh(&format!("echo $$ > {}; exec sleep 30", pidfile.display())),
            sh(&format!("touch {}", marker.display())),
        ],
    )
    .await;
    eventually(LONG, "the first job to run", || {
        let pidfile = pidfile.clone();
        async move { std::fs::read_to_string(&pidfile).ok().filter(|p| !p.trim().is_empty()) }
    })
    .await;
    // The only slot is busy, yet the second job's start is confirmed: it is next.
    eventually(LONG, "the second job's start to be confirmed ahead of the slot", || {
        let (mut client, id) = (client.clone(), ids[1].clone());
        async move {
            let s = client.get_job_status(GetJobStatusRequest { job_id: id }).await.ok()?.into_inner();
            (s.state() == JobState::Running).then_some(())
        }
    })
    .await;
    assert!(!marker.exists(), "it waits for the slot");
    client.cancel_job(CancelJobRequest { job_ids: ids.clone(), ..Default::default() }).await.unwrap();
    let s = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert!(s.iter().all(|s| s.state() == JobState::Cancelled), "{s:?}");
    // A job after them runs once the slot has gone to the cancelled one and back (the slot is handed out in
    // order): by then the cancelled job would have run.
    let next = submit(&mut client, vec![process("/bin/true", &[])]).await;
    let s = wait_all(&mut client, &next, Some(LONG), false).await.unwrap();
    assert_eq!(s[0].state(), JobState::Succeeded);
    assert!(!marker.exists(), "a job cancelled while it waited for its slot never ran");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_retried_with_backoff_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(2, 1, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let flaky = JobSpec { max_attempts: 3, retry_backoff_ms: 200, ..sh("[ \"$BURST_ATTEMPT\" -ge 3 ] || exit 7") };
    let never = JobSpec { max_attempts: 3, retry_exit_codes: vec![75], ..sh("exit 7") };
    let missing = JobSpec { max_attempts: 3, ..process("/no/such/program", &[]) };
    let ids = submit(&mut client, vec![flaky, never, missing]).await;
    let s = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert_eq!((s[0].state(), s[0].attempt), (JobState::Succeeded, 3), "{:?}", s[0]);
    let runs: Vec<_> = s[0].attempts.iter().map(|a| (a.attempt, a.exit_code)).collect();
    assert_eq!(runs, [(1, Some(7)), (2, Some(7)), (3, Some(0))]);
    let gaps: Vec<u64> = s[0].attempts.windows(2).map(|w| w[1].started_at_ms - w[0].finished_at_ms).collect();
    assert!(gaps[0] >= 200 && gaps[1] >= 400, "backoff 200 ms, doubling: {gaps:?}");
    assert_eq!((s[1].state(), s[1].attempt), (JobState::Failed, 1), "7 is not a listed exit code");
    assert_eq!((s[2].state(), s[2].reason(), s[2].attempt), (JobState::Failed, Reason::SpawnError, 1));
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_queue_deadlines_end_jobs_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions { queue_capacity: Some(0), ..ClusterOptions::new(1, 1, dir.path().to_path_buf()) })
        .await;
    let mut client = c.client().await.unwrap();
    let slow = JobSpec { timeout_ms: 300, ..process("/bin/sleep", &["30"]) };
    let waits = JobSpec { queue_timeout_ms: 100, ..process("/bin/true", &[]) };
    let ids = submit(&mut client, vec![slow, waits]).await;
    let s = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert_eq!((s[0].state(), s[0].reason(), s[0].attempt), (JobState::Failed, Reason::Timeout, 1), "{:?}", s[0]);
    assert_eq!((s[1].state(), s[1].reason()), (JobState::Failed, Reason::QueueDeadlineExceeded), "{:?}", s[1]);
    assert!(s[1].attempts.is_empty(), "it never ran");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_reported_three_times_is_applied_once() {
    // No workers of ours: this test speaks the worker protocol itself.
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(0, 1, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let mut watch = client.watch_jobs(WatchJobsRequest::default()).await.unwrap().into_inner();
    let mut raw = ControllerRpcClient::connect(c.url()).await.unwrap();
    let info = WorkerInfo { worker_id: "fake".into(), slots: 1, queue_capacity: 1, ..Default::default() };
    let reg = raw
        .register_worker(RegisterWorkerRequest {
            info: Some(info),
            held: vec![],
            queue_target: None,
            start_ahead: None,
        })
        .await
        .unwrap()
        .into_inner();
    let spec = JobSpec { idempotency_key: "once".into(), ..process("/bin/true", &[]) };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.extend(submit(&mut client, vec![spec.clone()]).await);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one job for one key");
    let poll = PollJobRequest {
        worker_id: "fake".into(),
        session: reg.session,
        wait_ms: 5_000,
        queue_target: None,
        start_ahead: None,
    };
    let lease = raw.poll_job(poll).await.unwrap().into_inner().leases.remove(0);
    let lease_ref = lease.to_ref();
    let result =
        JobResult { lease: Some(lease_ref), reason: Reason::Exited as i32, exit_code: Some(0), ..Default::default() };
    let mut accepted = 0;
    for _ in 0..3 {
        let req = ReportJobResultRequest {
            worker_id: "fake".into(),
            session: reg.session,
            results: vec![result.clone()],
            started: vec![],
            take_leases: false,
            queue_target: None,
            start_ahead: None,
            returned: vec![],
        };
        accepted += raw.report_job_result(req).await.unwrap().into_inner().accepted;
    }
    assert_eq!(accepted, 1);
    let stats = client.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.submitted_total, stats.succeeded, stats.stale_reports_total), (1, 1, 2));
    // One terminal transition on the watch stream: count them up to a marker job cancelled after the reports,
    // whose change the stream carries after every earlier one.
    let marker = submit(&mut client, vec![process("/bin/true", &[])]).await.remove(0);
    client.cancel_job(CancelJobRequest { job_ids: vec![marker.clone()], ..Default::default() }).await.unwrap();
    let mut terminal: HashMap<String, usize> = HashMap::new();
    tokio::time::timeout(LONG, async {
        while let Some(Ok(s)) = tokio_stream::StreamExt::next(&mut watch).await {
            if s.job_id == marker && s.state() == JobState::Cancelled {
                break;
            }
            if s.state() == JobState::Succeeded {
                *terminal.entry(s.job_id).or_insert(0) += 1;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(terminal.get(&ids[0]), Some(&1));
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_hands_back_its_queue_finishes_what_runs_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions { steal: false, ..ClusterOptions::new(1, 1, dir.path().to_path_buf()) };
    let mut c = cluster(opts).await;
    let mut client = c.client().await.unwrap();
    let (gate, ran) = (dir.path().join("gate"), dir.path().join("ran"));
    let running = sh(&format!("touch {}; while [ ! -e {} ]; do sleep 0.01; done", ran.display(), gate.display()));
    let ids = submit(&mut client, vec![running, process("/bin/true", &[]), process("/bin/true", &[])]).await;
    eventually(LONG, "one running, two queued on the worker", || {
        let mut client = client.clone();
        let ran = ran.clone();
        async move {
            let w = client.list_workers(ListWorkersRequest {}).await.ok()?.into_inner().workers;
            // Its process, not only its status (a job started with its lease shows running before it runs).
            (w.first()?.held == 3 && w[0].running == 1 && ran.exists()).then_some(())
        }
    })
    .await;
    let draining = c.workers.remove(0);
    let drain = tokio::spawn(draining.drain(LONG));
    let w = eventually(LONG, "the worker to show as draining", || {
        let mut client = client.clone();
        async move {
            let w = client.list_workers(ListWorkersRequest {}).await.ok()?.into_inner().workers;
            w.into_iter().find(|w| w.draining)
        }
    })
    .await;
    assert_eq!(w.held, 1, "the queued jobs were handed back at once");
    std::fs::write(&gate, b"open").unwrap();
    let (handed_back, finished, stopped) = drain.await.unwrap();
    assert_eq!((handed_back, finished, stopped), (2, 1, 0));
    let s = client.get_job_status(GetJobStatusRequest { job_id: ids[0].clone() }).await.unwrap().into_inner();
    assert_eq!((s.state(), s.attempt), (JobState::Succeeded, 1), "the running job finished where it was");
    assert!(client.list_workers(ListWorkersRequest {}).await.unwrap().into_inner().workers.is_empty());
    let queued = client.get_job_status(GetJobStatusRequest { job_id: ids[1].clone() }).await.unwrap().into_inner();
    assert_eq!(queued.state(), JobState::Queued, "handed back, waiting for another worker");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_still_running_when_the_drain_grace_ends_is_stopped_and_runs_again_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        steal: false,
        router: burst_controller::router::RouterKind::Biased,
        ..ClusterOptions::new(2, 1, dir.path().to_path_buf())
    };
    let mut c = cluster(opts).await;
    let mut client = c.client().await.unwrap();
    let marker = dir.path().join("runs");
    let script = format!("echo run >> {}; [ \"$BURST_ATTEMPT\" -ge 2 ] || sleep 30", marker.display());
    let ids = submit(&mut client, vec![sh(&script)]).await;
    // Its process, not only its status: a job started with its lease shows running before its worker has it.
    let ran = marker.clone();
    eventually(LONG, "the job's process running", || {
        let ran = ran.clone();
        async move { ran.exists().then_some(()) }
    })
    .await;
    let first = c.workers.remove(0);
    let (_, finished, stopped) = first.drain(Duration::from_millis(200)).await;
    assert_eq!((finished, stopped), (0, 1));
    let s = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap().remove(0);
    assert_eq!((s.state(), s.attempt, s.worker_id.as_str()), (JobState::Succeeded, 2, "worker-01"), "{s:?}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_that_escaped_with_setsid_does_not_survive_its_job() {
    if !Path::new("/usr/bin/setsid").exists() && !Path::new("/bin/setsid").exists() {
        missing_tool("setsid test", "no setsid binary (util-linux)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(1, 1, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let pidfile = dir.path().join("escaped.pid");
    // The grandchild leaves the job's process group and session; the job exits as soon as it has.
    let script = format!(
        "setsid sh -c 'echo $$ > {p}; exec sleep 300' < /dev/null > /dev/null 2>&1 & while [ ! -s {p} ]; do sleep 0.01; done",
        p = pidfile.display()
    );
    let ids = submit(&mut client, vec![sh(&script)]).await;
    let s = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert_eq!(s[0].state(), JobState::Succeeded);
    let pid: i32 = eventually(LONG, "the escaped pid", || {
        let pidfile = pidfile.clone();
        async move { std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok() }
    })
    .await;
    // The sweeper runs every second; the grandchild would otherwise live for 300.
    eventually(Duration::from_secs(20), "the escaped grandchild to be killed", || async move {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        (!alive).then_some(())
    })
    .await;
    c.shutdown().await.unwrap();
}

/// A result and the start of the job that takes its slot, in one call: the start is confirmed after the result
/// freed the slot; a start whose lease is stale is refused in the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_and_the_next_start_go_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let Leased { c, mut client, mut raw, session, refs, .. } = two_leased(dir.path(), 2).await;
    // The result of `done` and the start of `next`, in one call.
    let result_then_start = |done: &LeaseRef, next: &LeaseRef| result_then_start(session, done, next, false);
    let resp = raw.report_job_result(result_then_start(&refs[0], &refs[1])).await.unwrap().into_inner();
    assert_eq!((resp.accepted, resp.refused_starts.len()), (1, 0), "{resp:?}");
    let stats = client.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.succeeded, stats.running), (1, 1), "{stats:?}");
    // The first job has ended: a start of it is refused in the same answer as the second job's result.
    let resp = raw.report_job_result(result_then_start(&refs[1], &refs[0])).await.unwrap().into_inner();
    assert_eq!((resp.accepted, resp.refused_starts.clone()), (1, vec![refs[0].job_id.clone()]), "{resp:?}");
    c.shutdown().await.unwrap();
}

/// A result report that asks for them takes the leases its results made room for, in the same answer; a poll
/// outstanding meanwhile is not answered empty for it, and gets the next lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_report_takes_the_leases_its_results_made_room_for() {
    let dir = tempfile::tempdir().unwrap();
    let Leased { c, mut client, mut raw, session, ids, refs } = two_leased(dir.path(), 3).await;
    let waiting = tokio::spawn({
        let mut raw = raw.clone();
        let poll = PollJobRequest {
            worker_id: "fake".into(),
            session,
            wait_ms: 10_000,
            queue_target: None,
            start_ahead: None,
        };
        async move { raw.poll_job(poll).await.map(|r| r.into_inner().leases) }
    });
    let report =
        |done: &LeaseRef, next: &LeaseRef, take_leases: bool| result_then_start(session, done, next, take_leases);
    // The first result frees a place; the third job is leased into it and handed over in the answer.
    let resp = raw.report_job_result(report(&refs[0], &refs[1], true)).await.unwrap().into_inner();
    assert_eq!(resp.accepted, 1, "{resp:?}");
    assert_eq!(resp.leases.iter().map(|l| l.job_id.clone()).collect::<Vec<_>>(), vec![ids[2].clone()], "{resp:?}");
    // A fourth job goes to the outstanding poll once the second result (not taking leases) makes room.
    let fourth = submit(&mut client, vec![process("/bin/true", &[])]).await.remove(0);
    let resp = raw.report_job_result(report(&refs[1], &refs[1], false)).await.unwrap().into_inner();
    assert!(resp.accepted == 1 && resp.leases.is_empty(), "{resp:?}");
    let polled = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(polled.iter().map(|l| l.job_id.clone()).collect::<Vec<_>>(), vec![fourth], "the poll waited on");
    c.shutdown().await.unwrap();
}

/// The report stream answers each report, in order, exactly as a `ReportJobResult` call would (starts alone are
/// confirmed or refused as `ReportJobStarted` would), and an error ends it with the status the call would return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_stream_answers_each_report_as_the_call_would_and_ends_on_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let Leased { c, mut client, mut raw, session, ids, refs } = two_leased(dir.path(), 3).await;
    let (reports, rx) = tokio::sync::mpsc::channel(1);
    let mut answers = raw.reports(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut ask = async |req: ReportJobResultRequest| {
        reports.send(req).await.unwrap();
        tokio::time::timeout(LONG, answers.message()).await.unwrap()
    };
    // The first result frees a place; the third job is leased into it and handed over in the answer.
    let first = ask(result_then_start(session, &refs[0], &refs[1], true)).await.unwrap().unwrap();
    assert_eq!((first.accepted, first.refused_starts.len()), (1, 0), "{first:?}");
    assert_eq!(first.leases.iter().map(|l| l.job_id.clone()).collect::<Vec<_>>(), vec![ids[2].clone()]);
    // Starts alone: the first job has ended, so its start is refused (by id and by lease); nothing is finished.
    let starts = ReportJobResultRequest {
        worker_id: "fake".into(),
        session,
        started: vec![refs[0].clone()],
        ..Default::default()
    };
    let refused = ask(starts).await.unwrap().unwrap();
    assert_eq!(refused.accepted, 0, "{refused:?}");
    assert_eq!(refused.refused_starts, vec![refs[0].job_id.clone()]);
    assert_eq!(refused.refused_start_leases, vec![refs[0].clone()]);
    let stats = client.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.succeeded, stats.running), (1, 1), "{stats:?}");
    // A session the controller does not know is refused NotFound, as by a call, even in a report of nothing; on
    // the stream that ends it.
    let stale = session.wrapping_add(100);
    let report = ReportJobResultRequest { session: stale, ..result_then_start(session, &refs[1], &refs[1], false) };
    let err = raw.report_job_result(report).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let nothing = ReportJobResultRequest { worker_id: "fake".into(), session: stale, ..Default::default() };
    let err = ask(nothing).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // Nothing of the refused report was applied.
    let stats = client.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.succeeded, stats.running), (1, 1), "{stats:?}");
    c.shutdown().await.unwrap();
}

/// Leases a worker gives back unrun (`ReportJobResultRequest.returned`) are queued again as they were, the one
/// whose start was confirmed too, and go out again under new epochs; a return of a lease no longer the worker's
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_given_back_unrun_are_queued_again_with_no_attempt_spent() {
    let dir = tempfile::tempdir().unwrap();
    let Leased { c, mut client, mut raw, session, ids, refs } = two_leased(dir.path(), 2).await;
    let stats = client.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.running, 1, "{stats:?}");
    let give_back = |returned: Vec<LeaseRef>| ReportJobResultRequest {
        worker_id: "fake".into(),
        session,
        returned,
        ..Default::default()
    };
    let stale = ReportJobResultRequest { session: session.wrapping_add(100), ..give_back(refs.clone()) };
    let err = raw.report_job_result(stale).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // Cordoned, so that they stay in the queue to be seen there.
    let cordon = |uncordon| CordonWorkersRequest { worker_ids: vec!["fake".into()], uncordon };
    client.cordon_workers(cordon(false)).await.unwrap();
    raw.report_job_result(give_back(refs.clone())).await.unwrap();
    for id in &ids {
        let s = client.get_job_status(GetJobStatusRequest { job_id: id.clone() }).await.unwrap().into_inner();
        assert_eq!((s.state(), s.attempt, s.attempts.len()), (JobState::Queued, 1, 0), "{id}: {s:?}");
    }
    // Leased again (the fake worker is the only one), under new epochs: the old leases are stale.
    client.cordon_workers(cordon(true)).await.unwrap();
    let again = two_leases_first_started(&mut raw, session).await;
    assert!(again.iter().zip(&refs).all(|(new, old)| new.job_id == old.job_id && new.epoch > old.epoch));
    raw.report_job_result(give_back(refs.clone())).await.unwrap();
    let stats = client.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.running, stats.queued), (1, 0), "a stale return changes nothing: {stats:?}");
    c.shutdown().await.unwrap();
}

/// A cluster whose only worker is the fake one, with `jobs` × `/bin/true` submitted: the fake worker holds two
/// leases, the first one's start confirmed.
struct Leased {
    c: LocalCluster,
    client: burst_cli::client::Client,
    raw: ControllerRpcClient<tonic::transport::Channel>,
    session: u64,
    ids: Vec<String>,
    refs: Vec<LeaseRef>,
}

async fn two_leased(dir: &Path, jobs: usize) -> Leased {
    let c = cluster(ClusterOptions::new(0, 1, dir.to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let (mut raw, session) = fake_worker(&c).await;
    let ids = submit(&mut client, vec![process("/bin/true", &[]); jobs]).await;
    let refs = two_leases_first_started(&mut raw, session).await;
    Leased { c, client, raw, session, ids, refs }
}

/// A worker "fake" registered over raw gRPC with one slot and room for two jobs: its client and session.
async fn fake_worker(c: &LocalCluster) -> (ControllerRpcClient<tonic::transport::Channel>, u64) {
    let mut raw = ControllerRpcClient::connect(c.url()).await.unwrap();
    let info = WorkerInfo { worker_id: "fake".into(), slots: 1, queue_capacity: 1, ..Default::default() };
    let reg = raw
        .register_worker(RegisterWorkerRequest {
            info: Some(info),
            held: vec![],
            queue_target: None,
            start_ahead: None,
        })
        .await
        .unwrap()
        .into_inner();
    (raw, reg.session)
}

/// Polls until the fake worker holds two leases, and has the first one's start confirmed.
async fn two_leases_first_started(
    raw: &mut ControllerRpcClient<tonic::transport::Channel>,
    session: u64,
) -> Vec<LeaseRef> {
    let mut leases = Vec::new();
    while leases.len() < 2 {
        let poll =
            PollJobRequest { worker_id: "fake".into(), session, wait_ms: 5_000, queue_target: None, start_ahead: None };
        leases.extend(raw.poll_job(poll).await.unwrap().into_inner().leases);
    }
    let refs: Vec<LeaseRef> = leases.iter().map(Lease::to_ref).collect();
    let start = ReportJobStartedRequest { worker_id: "fake".into(), session, started: vec![refs[0].clone()] };
    assert!(raw.report_job_started(start).await.unwrap().into_inner().refused.is_empty());
    refs
}

/// The fake worker's report: `done` succeeded, `next` starts.
fn result_then_start(session: u64, done: &LeaseRef, next: &LeaseRef, take_leases: bool) -> ReportJobResultRequest {
    ReportJobResultRequest {
        worker_id: "fake".into(),
        session,
        results: vec![JobResult {
            lease: Some(done.clone()),
            reason: Reason::Exited as i32,
            exit_code: Some(0),
            ..Default::default()
        }],
        started: vec![next.clone()],
        take_leases,
        queue_target: None,
        start_ahead: None,
        returned: vec![],
    }
}
