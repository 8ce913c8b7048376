//! End-to-end tests on an in-process cluster: a real controller and real workers on loopback, real processes.

mod common;

use std::time::Duration;

use burst_cli::commands::wait::wait_all;
use burst_cli::local::ClusterOptions;
use burst_controller::router::RouterKind;
use burst_proto::testing::missing_tool;
use burst_proto::v1::{
    GetJobStatusRequest, JobSpec, JobState, ListJobsRequest, ListWorkersRequest, Reason, Resources, SubmitJobRequest,
    SubmitJobsRequest,
};
use common::{cluster, eventually, process, sh, submit};
use tonic::Code;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_jobs_run_with_their_exit_codes_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(3, 2, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let specs: Vec<JobSpec> =
        (0..500).map(|n| sh(&format!("echo out-{n}; echo err-{n} >&2; exit {}", n % 4))).collect();
    let ids = submit(&mut client, specs).await;
    assert_eq!(ids.len(), 500);
    let statuses = tokio::time::timeout(LONG, wait_all(&mut client, &ids, None, false)).await.unwrap().unwrap();
    assert_eq!(statuses.len(), 500);
    let mut workers_used = std::collections::HashSet::new();
    for (n, s) in statuses.iter().enumerate() {
        assert_eq!(s.job_id, ids[n]);
        let code = (n % 4) as i32;
        let want = if code == 0 { JobState::Succeeded } else { JobState::Failed };
        assert_eq!(s.state(), want, "job {n}: {s:?}");
        assert_eq!(s.reason(), Reason::Exited, "job {n}");
        assert_eq!(s.exit_code, Some(code), "job {n}");
        assert_eq!(s.attempt, 1);
        assert_eq!(std::fs::read_to_string(&s.stdout_path).unwrap(), format!("out-{n}\n"), "job {n}");
        assert_eq!(std::fs::read_to_string(&s.stderr_path).unwrap(), format!("err-{n}\n"), "job {n}");
        assert!(s.finished_at_ms >= s.started_at_ms && s.started_at_ms > 0);
        workers_used.insert(s.worker_id.clone());
    }
    assert_eq!(workers_used.len(), 3, "round robin spreads over every worker");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_holds_more_than_slots_plus_queue_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions { queue_capacity: Some(3), ..ClusterOptions::new(1, 2, dir.path().to_path_buf()) };
    let c = cluster(opts).await;
    let mut client = c.client().await.unwrap();
    let specs = vec![process("/bin/sleep", &["0.05"]); 40];
    let ids = submit(&mut client, specs).await;
    let (mut max_held, mut max_running, mut max_leased_jobs) = (0, 0, 0);
    loop {
        let w = client.list_workers(ListWorkersRequest {}).await.unwrap().into_inner().workers.remove(0);
        max_held = max_held.max(w.held);
        max_running = max_running.max(w.running);
        let req = ListJobsRequest {
            states: vec![JobState::Leased as i32, JobState::Running as i32],
            ..ListJobsRequest::default()
        };
        let holding = client.list_jobs(req).await.unwrap().into_inner().jobs.len();
        max_leased_jobs = max_leased_jobs.max(holding);
        let stats = client.get_stats(burst_proto::v1::GetStatsRequest {}).await.unwrap().into_inner();
        if stats.succeeded + stats.failed == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(max_held <= 5, "held {max_held} > slots 2 + queue capacity 3");
    assert!(max_leased_jobs <= 5, "{max_leased_jobs} jobs leased or running at once");
    // The controller counts a start confirmed ahead of a busy slot as running (the worker's jobs are short), so
    // its count may pass the slots; never what the worker holds.
    assert!(max_running <= max_held, "{max_running} running of {max_held} held");
    assert_eq!(max_held, 5, "the worker was filled to its capacity at some point");
    let statuses = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert!(statuses.iter().all(|s| s.state() == JobState::Succeeded));
    // The processes themselves, by the times the worker ran them: never more than 2 at once.
    let runs: Vec<(u64, u64)> =
        statuses.iter().map(|s| (s.attempts[0].started_at_ms, s.attempts[0].finished_at_ms)).collect();
    let most = runs.iter().map(|&(start, _)| runs.iter().filter(|&&(s, f)| s <= start && start < f).count()).max();
    assert!(most <= Some(2), "ran {most:?} at once on 2 slots: {runs:?}");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_too_big_for_every_worker_waits_and_says_why_while_one_that_fits_runs() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(2, 2, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let huge = JobSpec {
        resources: Some(Resources {
            memory_bytes: 1 << 50, // a petabyte
            ..Resources::default()
        }),
        ..process("/bin/true", &[])
    };
    let fits = JobSpec {
        resources: Some(Resources { memory_bytes: 1 << 20, cpu_millis: 100, gpus: 0 }),
        ..process("/bin/true", &[])
    };
    let big = client.submit_job(SubmitJobRequest { spec: Some(huge) }).await.unwrap().into_inner().job_id;
    let small = client.submit_job(SubmitJobRequest { spec: Some(fits) }).await.unwrap().into_inner().job_id;
    let done = wait_all(&mut client, std::slice::from_ref(&small), Some(LONG), false).await.unwrap();
    assert_eq!(done[0].state(), JobState::Succeeded);
    let status = client.get_job_status(GetJobStatusRequest { job_id: big }).await.unwrap().into_inner();
    assert_eq!(status.state(), JobState::Queued);
    assert!(status.waiting_reason.contains("no worker fits its resources"), "{}", status.waiting_reason);
    assert!(status.waiting_reason.contains("memory 1048576.0 GiB"), "{}", status.waiting_reason);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_returns_the_same_job() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(1, 1, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let spec = JobSpec { idempotency_key: "nightly-2026-11-22".into(), ..process("/bin/true", &[]) };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = client.submit_job(SubmitJobRequest { spec: Some(spec.clone()) }).await.unwrap().into_inner();
        ids.push((r.job_id, r.existing));
    }
    assert_eq!(ids[0].0, ids[1].0);
    assert_eq!(ids[0].0, ids[2].0);
    assert_eq!(ids.iter().map(|(_, e)| *e).collect::<Vec<_>>(), [false, true, true]);
    let stats = client.get_stats(burst_proto::v1::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.submitted_total, 1);
    // The same key with another spec is a conflict, not a silent second job.
    let other = JobSpec { idempotency_key: "nightly-2026-11-22".into(), ..process("/bin/false", &[]) };
    let err = client.submit_job(SubmitJobRequest { spec: Some(other) }).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_status_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(1, 1, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let cases = [
        (process("", &[]), "process.command is empty"),
        (JobSpec::default(), "no kind"),
        (process("/bin/true", &["a\0b"]), "NUL"),
    ];
    for (spec, want) in cases {
        let err = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(want), "{:?} should mention {want:?}", err.message());
    }
    // One bad spec in a batch rejects the whole batch and names it.
    let specs = vec![process("/bin/true", &[]), process("", &[])];
    let err = client.submit_jobs(SubmitJobsRequest { specs }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("spec #1:"), "{}", err.message());
    let err = client.get_job_status(GetJobStatusRequest { job_id: "no-such-job".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let stats = client.get_stats(burst_proto::v1::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.submitted_total, 0);
    // A worker with zero slots is refused at registration.
    let mut raw = burst_proto::v1::controller_rpc_client::ControllerRpcClient::connect(c.url()).await.unwrap();
    let info = burst_proto::v1::WorkerInfo { worker_id: "zero".into(), slots: 0, ..Default::default() };
    let req = burst_proto::v1::RegisterWorkerRequest {
        info: Some(info),
        held: vec![],
        queue_target: None,
        start_ahead: None,
    };
    let err = raw.register_worker(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("slots"), "{}", err.message());
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_vanishes_loses_its_jobs_to_the_others_and_the_controller_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        lease_timeout: Duration::from_millis(800),
        heartbeat_interval: Duration::from_millis(100),
        ..ClusterOptions::new(2, 2, dir.path().to_path_buf())
    };
    let mut c = cluster(opts).await;
    let mut client = c.client().await.unwrap();
    // Fill both workers with jobs that wait for a file, so they are all running when one worker goes.
    let gate = dir.path().join("gate");
    let ran = dir.path().join("ran");
    std::fs::create_dir(&ran).unwrap();
    let script =
        format!("touch {}/$BURST_JOB_ID; while [ ! -e {} ]; do sleep 0.01; done", ran.display(), gate.display());
    let specs = vec![sh(&script); 4];
    let ids = submit(&mut client, specs).await;
    // Their processes, not only their status: a job started with its lease shows running before its worker has it.
    eventually(LONG, "4 jobs running", || {
        let ran = ran.clone();
        async move { (std::fs::read_dir(&ran).ok()?.count() == 4).then_some(()) }
    })
    .await;
    // The second worker disappears mid-long-poll, taking its running jobs with it.
    let gone = c.workers.remove(1);
    let gone_id = gone.worker_id().to_string();
    gone.shutdown().await;
    std::fs::write(&gate, b"open").unwrap();
    let statuses = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    for s in &statuses {
        assert_eq!(s.state(), JobState::Succeeded, "{s:?}");
        assert_ne!(s.worker_id, gone_id);
    }
    let retried = statuses.iter().filter(|s| s.attempt == 2).count();
    assert_eq!(retried, 2, "the two jobs that were running on the lost worker ran again, once");
    let workers = client.list_workers(ListWorkersRequest {}).await.unwrap().into_inner().workers;
    assert_eq!(workers.len(), 1, "the silent worker was removed");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_jobs_run_for_real() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(1, 2, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let script = dir.path().join("job.py");
    std::fs::write(&script, "import sys\nprint('args', sys.argv[1:])\nsys.exit(int(sys.argv[1]))\n").unwrap();
    let spec = |entry| JobSpec {
        kind: Some(burst_proto::v1::job_spec::Kind::Python(burst_proto::v1::PythonSpec {
            entry: Some(entry),
            args: vec!["4".into()],
            interpreter: String::new(),
        })),
        ..JobSpec::default()
    };
    use burst_proto::v1::python_spec::Entry;
    let specs = vec![
        spec(Entry::Code("import sys; print(sum(range(10)), sys.argv[1:])".into())),
        spec(Entry::Script(script.display().to_string())),
        spec(Entry::Module("json.tool".into())),
    ];
    let ids = submit(&mut client, specs).await;
    let s = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert_eq!(s[0].state(), JobState::Succeeded, "{:?}", s[0]);
    assert_eq!(std::fs::read_to_string(&s[0].stdout_path).unwrap(), "45 ['4']\n");
    assert_eq!(s[1].exit_code, Some(4));
    assert_eq!(std::fs::read_to_string(&s[1].stdout_path).unwrap(), "args ['4']\n");
    // json.tool given a file that does not exist fails with Python's own message on stderr.
    assert_eq!(s[2].state(), JobState::Failed);
    assert!(!std::fs::read_to_string(&s[2].stderr_path).unwrap().is_empty());
    c.shutdown().await.unwrap();
}

/// Builds a tiny local image from Debian's busybox-static (the engine here has no registry). Returns None, after
/// [`missing_tool`] said why, when docker or busybox is missing (under CI that fails the test instead).
fn busybox_image() -> Option<&'static str> {
    const IMAGE: &str = "burst-test/busybox:latest";
    let docker_ok = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !docker_ok {
        missing_tool("docker jobs test", "no working docker engine");
        return None;
    }
    let have = std::process::Command::new("docker").args(["image", "inspect", IMAGE]).output();
    if have.is_ok_and(|o| o.status.success()) {
        return Some(IMAGE);
    }
    let busybox = std::path::Path::new("/bin/busybox");
    if !busybox.exists() {
        missing_tool("docker jobs test", "/bin/busybox missing (apt-get install busybox-static; .ci/run does)");
        return None;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::create_dir_all(root.path().join("tmp")).unwrap();
    std::fs::copy(busybox, root.path().join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "true", "sleep", "hostname"] {
        std::os::unix::fs::symlink("busybox", root.path().join("bin").join(applet)).unwrap();
    }
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("tar -C {} -c . | docker import -c 'ENV PATH=/bin' - {IMAGE}", root.path().display()))
        .status()
        .unwrap();
    assert!(status.success(), "docker import of the busybox image failed");
    Some(IMAGE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_jobs_run_for_real() {
    let Some(image) = busybox_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions::new(1, 2, dir.path().to_path_buf())).await;
    let mut client = c.client().await.unwrap();
    let docker = |args: &[&str]| JobSpec {
        kind: Some(burst_proto::v1::job_spec::Kind::Docker(burst_proto::v1::DockerSpec {
            image: image.into(),
            command: "sh".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        })),
        env: [("GREETING".to_string(), "hello".to_string())].into(),
        resources: Some(Resources { cpu_millis: 500, memory_bytes: 64 << 20, gpus: 0 }),
        ..JobSpec::default()
    };
    let missing_image = JobSpec {
        kind: Some(burst_proto::v1::job_spec::Kind::Docker(burst_proto::v1::DockerSpec {
            image: "burst-test/no-such-image:never".into(),
            command: "true".into(),
            args: vec![],
        })),
        max_attempts: 3,
        ..JobSpec::default()
    };
    // Past its timeout a container is stopped with `docker kill` (started outside the job's cgroup) and removed.
    let too_long = JobSpec { timeout_ms: 1_500, ..docker(&["-c", "sleep 60"]) };
    let specs = vec![
        docker(&["-c", "echo $GREETING from the container; exit 3"]),
        docker(&["-c", "true"]),
        missing_image,
        too_long,
    ];
    let ids = submit(&mut client, specs).await;
    let s = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert_eq!(s[0].exit_code, Some(3), "{:?}", s[0]);
    assert_eq!(std::fs::read_to_string(&s[0].stdout_path).unwrap(), "hello from the container\n");
    assert_eq!(s[1].state(), JobState::Succeeded, "{:?}", s[1]);
    // An image that cannot be had fails at once, as a spawn error, without retries.
    assert_eq!((s[2].state(), s[2].reason(), s[2].attempt), (JobState::Failed, Reason::SpawnError, 1), "{:?}", s[2]);
    assert!(s[2].message.contains("docker run exited 125"), "{}", s[2].message);
    assert_eq!((s[3].state(), s[3].reason()), (JobState::Failed, Reason::Timeout), "{:?}", s[3]);
    let ran_ms = s[3].finished_at_ms - s[3].started_at_ms;
    assert!(ran_ms < 30_000, "stopped at its timeout, not at the end of its sleep: {ran_ms} ms");
    let filter = format!("label=burst.dev/job={}", ids[3]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = std::process::Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output().unwrap();
        if String::from_utf8_lossy(&left.stdout).trim().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the stopped container is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_biased_router_only_feeds_the_first_half() {
    let dir = tempfile::tempdir().unwrap();
    // Stealing off: this is about the router; an idle worker could otherwise (rightly) steal from a slow one.
    let opts = ClusterOptions {
        router: RouterKind::Biased,
        steal: false,
        ..ClusterOptions::new(4, 2, dir.path().to_path_buf())
    };
    let c = cluster(opts).await;
    let mut client = c.client().await.unwrap();
    let specs = vec![process("/bin/true", &[]); 60];
    let ids = submit(&mut client, specs).await;
    let s = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    let used: std::collections::BTreeSet<_> = s.iter().map(|s| s.worker_id.as_str()).collect();
    assert_eq!(used.into_iter().collect::<Vec<_>>(), ["worker-00", "worker-01"]);
    c.shutdown().await.unwrap();
}
