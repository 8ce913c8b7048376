use std::collections::HashMap;

use burst_proto::v1::{DockerSpec, ProcessSpec, PythonSpec, Resources, python_spec::Entry};

use std::os::unix::process::CommandExt as _;

use super::*;

fn cfg(dir: &Path) -> ExecConfig {
    ExecConfig {
        worker_id: "w-test".into(),
        output_dir: dir.to_path_buf(),
        output_cap: 1024,
        python: "python3".into(),
        docker: "docker".into(),
        kill_grace: Duration::from_millis(200),
        limits: crate::limits::JobLimits::default(),
        cgroups: None,
        gpus: Default::default(),
        noop: false,
    }
}

/// A stop signal that never fires.
fn never() -> oneshot::Receiver<()> {
    oneshot::channel().1
}

fn lease(id: &str, spec: JobSpec) -> Lease {
    Lease { job_id: id.into(), epoch: 1, attempt: 1, spec: Some(spec), started: false }
}

fn process(cmd: &str, args: &[&str]) -> JobSpec {
    JobSpec {
        kind: Some(Kind::Process(ProcessSpec {
            command: cmd.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        })),
        ..JobSpec::default()
    }
}

#[tokio::test]
async fn exit_code_and_output_are_captured() {
    let dir = tempfile::tempdir().unwrap();
    let spec = process("/bin/sh", &["-c", "echo out; echo err >&2; exit 3"]);
    let r = run(&lease("j1", spec), &cfg(dir.path()), never(), None).await;
    assert_eq!(r.reason(), Reason::Exited);
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(std::fs::read_to_string(&r.stdout_path).unwrap(), "out\n");
    assert_eq!(std::fs::read_to_string(&r.stderr_path).unwrap(), "err\n");
    assert!(r.stdout_path.ends_with("j1.stdout"));
}

#[tokio::test]
async fn a_missing_binary_is_a_spawn_error_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&lease("j2", process("/no/such/binary", &[])), &cfg(dir.path()), never(), None).await;
    assert_eq!(r.reason(), Reason::SpawnError);
    assert!(r.message.contains("/no/such/binary"), "{}", r.message);
    assert!(std::fs::read_to_string(&r.stderr_path).unwrap().contains("no such file"));
}

#[tokio::test]
async fn shell_metacharacters_in_arguments_are_inert() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let m = marker.display().to_string();
    let evil = [format!("; touch {m}"), format!("$(touch {m})"), format!("`touch {m}`"), format!("\ntouch {m}")];
    let args: Vec<&str> = evil.iter().map(String::as_str).collect();
    let r = run(&lease("j3", process("/bin/echo", &args)), &cfg(dir.path()), never(), None).await;
    assert_eq!(r.exit_code, Some(0));
    assert!(!marker.exists(), "an argument ran a shell");
    assert!(std::fs::read_to_string(&r.stdout_path).unwrap().contains("$(touch"));
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let mut spec = process("/bin/sh", &["-c", &script]);
    spec.timeout_ms = 300;
    let r = run(&lease("j4", spec), &cfg(dir.path()), never(), None).await;
    assert_eq!(r.reason(), Reason::Timeout);
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // The grandchild was in the job's group: it must be gone (or a zombie waiting for init to reap it).
    // Signal delivery is asynchronous, so wait for that with a deadline.
    let alive = || std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!alive(), "grandchild {pid} survived its job");
}

#[tokio::test]
async fn output_is_capped_and_the_cap_reported() {
    let dir = tempfile::tempdir().unwrap();
    let spec = process("/bin/sh", &["-c", "head -c 5000 /dev/zero"]);
    let r = run(&lease("j5", spec), &cfg(dir.path()), never(), None).await;
    assert_eq!(r.exit_code, Some(0));
    assert!(r.stdout_truncated);
    assert_eq!(std::fs::metadata(&r.stdout_path).unwrap().len(), 1024);
}

#[tokio::test]
async fn env_and_working_dir_reach_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = process("/bin/sh", &["-c", "echo $GREETING $BURST_JOB_ID; pwd"]);
    spec.env = HashMap::from([("GREETING".to_string(), "hi".to_string())]);
    spec.working_dir = "/tmp".into();
    let r = run(&lease("j6", spec), &cfg(dir.path()), never(), None).await;
    assert_eq!(std::fs::read_to_string(&r.stdout_path).unwrap(), "hi j6\n/tmp\n");
}

#[tokio::test]
async fn a_bad_job_id_never_names_a_file() {
    let dir = tempfile::tempdir().unwrap();
    for id in ["../x", "/etc/passwd", "a/b", "", ".hidden"] {
        let r = run(&lease(id, process("/bin/true", &[])), &cfg(dir.path()), never(), None).await;
        assert_eq!(r.reason(), Reason::RejectedInput, "{id:?}");
        assert!(r.stdout_path.is_empty());
    }
}

#[test]
fn python_entries_become_argv() {
    let spec = PythonSpec {
        entry: Some(Entry::Module("http.server".into())),
        args: vec!["8000".into()],
        interpreter: String::new(),
    };
    let inv = python::invocation(&spec, "python3").unwrap();
    assert_eq!(inv.program, "python3");
    assert_eq!(inv.args, ["-m", "http.server", "8000"]);
}

#[test]
fn docker_jobs_carry_name_limits_and_env() {
    let spec = JobSpec {
        env: HashMap::from([("A".to_string(), "1".to_string())]),
        resources: Some(Resources { cpu_millis: 500, memory_bytes: 1 << 20, gpus: 0 }),
        ..JobSpec::default()
    };
    let d = DockerSpec { image: "busybox:1".into(), command: "echo".into(), args: vec!["hi".into()] };
    let inv = docker::invocation("abc", &spec, &d, "docker", None).unwrap();
    let line = inv.args.join(" ");
    assert!(line.starts_with("run --rm --name burst-abc"), "{line}");
    assert!(line.contains("--cpus 0.500 --memory 1048576b --env A=1 busybox:1 echo hi"), "{line}");
    assert_eq!(inv.stop.unwrap(), ["docker", "kill", "burst-abc"]);
    let gpus = docker::invocation("abc", &spec, &d, "docker", Some("0,2")).unwrap().args.join(" ");
    assert!(gpus.contains("--gpus \"device=0,2\" --env A=1"), "{gpus}");
    // On a GPU worker a container sees its own devices or none, whatever the job's env says.
    let choosy =
        JobSpec { env: HashMap::from([("NVIDIA_VISIBLE_DEVICES".to_string(), "all".to_string())]), ..spec.clone() };
    let none = docker::invocation("abc", &choosy, &d, "docker", Some("")).unwrap().args.join(" ");
    assert!(none.contains("--env NVIDIA_VISIBLE_DEVICES=void") && !none.contains("=all"), "{none}");
    let own = docker::invocation("abc", &choosy, &d, "docker", None).unwrap().args.join(" ");
    assert!(own.contains("--env NVIDIA_VISIBLE_DEVICES=all") && !own.contains("--gpus"), "no GPUs here: {own}");
    assert!(
        docker::invocation("abc", &spec, &DockerSpec { image: "--privileged".into(), ..d }, "docker", None).is_err()
    );
}

#[tokio::test]
async fn a_job_that_prints_nothing_leaves_no_files_and_reports_no_paths() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&lease("quiet", process("/bin/true", &[])), &cfg(dir.path()), never(), None).await;
    assert_eq!(r.exit_code, Some(0));
    assert_eq!((r.stdout_path.as_str(), r.stderr_path.as_str()), ("", ""));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_stop_signal_kills_the_job_and_reports_it_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = oneshot::channel();
    let job = tokio::spawn({
        let cfg = cfg(dir.path());
        let spec = process("/bin/sh", &["-c", "echo up; exec sleep 30"]);
        async move { run(&lease("j7", spec), &cfg, stopped, None).await }
    });
    // Stopped once it runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(dir.path().join("j7.stdout")).unwrap_or_default() != "up\n" {
        assert!(std::time::Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), job).await.unwrap().unwrap();
    assert_eq!(r.reason(), Reason::Cancelled);
    assert_eq!(r.signal, Some(libc::SIGTERM));
}

#[tokio::test]
async fn a_run_stopped_before_its_slot_came_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let spec = process("/bin/touch", &[marker.to_str().unwrap()]);
    let (launch, pending) = prepare(&lease("j8", spec), &cfg(dir.path()), None);
    let (stop, stopped) = oneshot::channel();
    stop.send(()).unwrap();
    let mut finished = std::pin::pin!(pending.finish(stopped));
    // Polled once, it sees the stop before the run starts, and waits for the answer.
    tokio::select! {
        biased;
        _ = &mut finished => panic!("answered before the run started"),
        () = std::future::ready(()) => {}
    }
    assert!(launch.start(()).is_none(), "the run keeps what it holds");
    let (r, took) = tokio::time::timeout(Duration::from_secs(10), finished).await.unwrap();
    assert_eq!((r.reason(), r.message.as_str()), (Reason::Cancelled, "the job was cancelled before it started"));
    assert_eq!((r.exit_code, r.signal, took), (None, None, Ran::NotStarted));
    assert!(!marker.exists(), "it never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_held_to_its_process_limit_ends_failed_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cfg(dir.path());
    cfg.limits.max_processes = 32;
    cfg.cgroups = crate::limits::Cgroups::detect("w-test-bomb");
    // SAFETY: geteuid(2) has no preconditions.
    if cfg.cgroups.is_none() && unsafe { libc::geteuid() } == 0 {
        // A plain skip even under CI: this is about the host kernel's cgroups, not a tool CI could install.
        println!("SKIPPED fork bomb test: no writable pids cgroup, and RLIMIT_NPROC does not bind root");
        return;
    }
    let bomb = process("/bin/sh", &["-c", "for i in $(seq 1 400); do sleep 30 & done; wait"]);
    let spec = JobSpec { timeout_ms: 1500, ..bomb };
    let lease = lease("bomb", spec);
    let token = crate::sweep::run_token("w-test", "bomb", 1);
    let (cfg2, lease2) = (cfg.clone(), lease.clone());
    let job = tokio::spawn(async move { run(&lease2, &cfg2, never(), None).await });
    let mut most = 0;
    while !job.is_finished() {
        most = most.max(crate::sweep::processes_of(&token));
        // Meanwhile the worker still starts other jobs.
        let other = run(&super::tests::lease("ok", process("/bin/true", &[])), &cfg, never(), None).await;
        assert_eq!(other.exit_code, Some(0), "{other:?}");
    }
    let r = job.await.unwrap();
    let err = std::fs::read_to_string(&r.stderr_path).unwrap_or_default();
    assert!(r.exit_code != Some(0) || r.reason() == Reason::Timeout, "the bomb ends failed: {r:?}");
    assert!(err.to_lowercase().contains("fork"), "its shell could not fork past the limit: {err:?}");
    assert!(most <= 32, "the bomb had {most} processes at once; the limit is 32");
    let after = run(&super::tests::lease("after", process("/bin/true", &[])), &cfg, never(), None).await;
    assert_eq!(after.exit_code, Some(0), "the worker still runs jobs: {after:?}");
    assert_eq!(crate::sweep::processes_of(&token), 0, "nothing of the bomb outlives it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_killed_at_its_limit_ends_failed_and_other_jobs_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cfg(dir.path());
    cfg.limits.max_memory_bytes = 64 << 20;
    cfg.cgroups = crate::limits::Cgroups::detect("w-test-hog");
    if !cfg.cgroups.as_ref().is_some_and(|c| c.limits_memory()) {
        // A plain skip even under CI: this is about the host kernel's cgroups, not a tool CI could install.
        println!("SKIPPED memory hog test: no writable cgroup v1 memory hierarchy on this host");
        return;
    }
    // The shell holds 400 MB of output in a variable: far past 64 MiB.
    let hog = process("/bin/sh", &["-c", "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived"]);
    let (cfg2, lease2) = (cfg.clone(), lease("hog", JobSpec { timeout_ms: 60_000, ..hog }));
    let job = tokio::spawn(async move { run(&lease2, &cfg2, never(), None).await });
    while !job.is_finished() {
        let other = run(&lease("ok", process("/bin/true", &[])), &cfg, never(), None).await;
        assert_eq!(other.exit_code, Some(0), "the worker still runs jobs: {other:?}");
    }
    let r = job.await.unwrap();
    assert_eq!((r.reason(), r.signal), (Reason::Signaled, Some(libc::SIGKILL)), "{r:?}");
    assert!(r.message.contains("out of memory (its limit is 67108864 bytes)"), "{}", r.message);
    // A job's own memory request is its limit: 100 MB fits in 512 MiB.
    let fits = process("/bin/sh", &["-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo fits"]);
    let spec = JobSpec { resources: Some(Resources { memory_bytes: 512 << 20, ..Resources::default() }), ..fits };
    let r = run(&lease("fits", spec), &cfg, never(), None).await;
    assert_eq!((r.reason(), r.exit_code), (Reason::Exited, Some(0)), "{r:?}");
}

#[tokio::test]
async fn a_gibibyte_of_output_is_capped_and_the_job_still_ends_normally() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ExecConfig { output_cap: 1 << 20, ..cfg(dir.path()) };
    let spec = process("/bin/sh", &["-c", "head -c 1073741824 /dev/zero"]);
    let r = run(&lease("big", spec), &cfg, never(), None).await;
    assert_eq!((r.reason(), r.exit_code), (Reason::Exited, Some(0)), "{r:?}");
    assert!(r.stdout_truncated);
    assert_eq!(std::fs::metadata(&r.stdout_path).unwrap().len(), 1 << 20, "capped at the configured limit");
}

#[test]
fn the_leader_is_left_unreaped_until_its_group_is_killed() {
    // While the leader is a zombie its pid (the group's id) cannot go to another process, so the group kill
    // after a job ends can only reach the job's own processes.
    let mut child = Command::new("/bin/sh").args(["-c", "exit 3"]).process_group(0).spawn().unwrap();
    let pid = child.id() as i32;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while supervise::exit_state(pid) == supervise::Exit::Running {
        assert!(std::time::Instant::now() < deadline, "sh -c 'exit 3' never exited");
        std::thread::sleep(Duration::from_millis(1));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("still there: not reaped");
    let state = stat.rsplit(')').next().unwrap().split_whitespace().next().unwrap();
    assert_eq!(state, "Z", "exited, not reaped: {stat}");
    assert_eq!(child.wait().unwrap().code(), Some(3), "reaped afterwards, with its status");
    assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "gone once reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_cgroup_keeps_nothing_of_the_last_run_and_still_catches_an_escapee() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cfg(dir.path());
    cfg.cgroups = crate::limits::Cgroups::detect("w-test-reuse");
    if !cfg.cgroups.as_ref().is_some_and(|c| c.limits_memory()) {
        // A plain skip even under CI: this is about the host kernel's cgroups, not a tool CI could install.
        println!("SKIPPED cgroup reuse test: no writable cgroup v1 memory hierarchy on this host");
        return;
    }
    // Runs one after another reuse one cgroup: the first leaves a 64 MiB limit on it, which neither a run with
    // a larger limit nor one with none inherits (each holds 200 MB).
    let limit = |bytes: u64| Some(Resources { memory_bytes: bytes, ..Resources::default() });
    let small = lease("limited", JobSpec { resources: limit(64 << 20), ..process("/bin/true", &[]) });
    assert_eq!(run(&small, &cfg, never(), None).await.exit_code, Some(0));
    let holds = process("/bin/sh", &["-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo fits"]);
    for (id, resources) in [("unlimited", None), ("larger", limit(512 << 20))] {
        let r = run(&lease(id, JobSpec { resources, ..holds.clone() }), &cfg, never(), None).await;
        assert_eq!((r.reason(), r.exit_code), (Reason::Exited, Some(0)), "no limit left from the last run: {r:?}");
    }
    // A process that left the job's process group is found in the cgroup and killed when the job ends; so in
    // a reused cgroup whose runner thread is its only other task.
    for id in ["escape-1", "escape-2"] {
        let escapee = process("/bin/sh", &["-c", "setsid sleep 30 > /dev/null 2>&1 < /dev/null & sleep 0.2"]);
        let r = run(&lease(id, escapee), &cfg, never(), None).await;
        assert_eq!(r.exit_code, Some(0), "{r:?}");
        let token = crate::sweep::run_token("w-test", id, 1);
        assert_eq!(crate::sweep::processes_of(&token), 0, "the escaped sleep of {id} was killed with its run");
    }
}

#[tokio::test]
async fn a_pipe_held_open_by_an_escapee_is_given_up_at_the_drain_limit_keeping_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path());
    // The escaped sleep holds stdout past the job's end (no cgroup here to kill it); stderr closes with the job.
    let script = "echo to-err >&2; setsid sleep 6 2>/dev/null < /dev/null & sleep 0.2; echo to-out";
    let began = std::time::Instant::now();
    let r = run(&lease("held", process("/bin/sh", &["-c", script])), &cfg, never(), None).await;
    let took = began.elapsed();
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    assert!(took < Duration::from_secs(5), "the run waited for the escapee's pipe ({took:?}): {r:?}");
    assert!(took >= PIPE_DRAIN_LIMIT, "the open pipe was given up before the drain limit ({took:?})");
    assert_eq!(std::fs::read_to_string(&r.stderr_path).unwrap(), "to-err\n", "stderr is reported: {r:?}");
    assert_eq!(std::fs::read_to_string(&r.stdout_path).unwrap(), "to-out\n", "what stdout gave is kept: {r:?}");
    assert!(r.stdout_truncated && !r.stderr_truncated, "the stdout given up is marked incomplete: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dropped_midway_kills_its_group_and_what_escaped_it_in_its_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cfg(dir.path());
    cfg.cgroups = crate::limits::Cgroups::detect("w-test-abandon");
    if cfg.cgroups.is_none() {
        // A plain skip even under CI: this is about the host kernel's cgroups, not a tool CI could install.
        println!("SKIPPED abandoned-run test: no writable cgroup v1 pids hierarchy on this host");
        return;
    }
    // The worker stopping drops the run's task while the job runs: its process group and the process that left
    // the group (but not the cgroup) are killed then, not when the run's thread gets to it.
    let started = dir.path().join("started");
    let script = format!("setsid sleep 30 > /dev/null 2>&1 < /dev/null & touch {}; sleep 30", started.display());
    let job = lease("dropped", process("/bin/sh", &["-c", &script]));
    let task = tokio::spawn({
        let cfg = cfg.clone();
        async move { run(&job, &cfg, never(), None).await }
    });
    let token = crate::sweep::run_token("w-test", "dropped", 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !started.exists() || crate::sweep::processes_of(&token) < 3 {
        assert!(std::time::Instant::now() < deadline, "the job never started its three processes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while crate::sweep::processes_of(&token) > 0 {
        assert!(std::time::Instant::now() < deadline, "a process of the dropped run is still alive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_run_with_nothing_to_run_hands_its_slot_back_and_may_be_cancelled_while_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let noop = ExecConfig { noop: true, ..cfg(dir.path()) };
    let (launch, pending) = prepare(&lease("n1", process("/bin/true", &[])), &noop, None);
    assert_eq!(launch.start("the slot"), Some("the slot"), "nothing ran that could keep it");
    let (r, took) = pending.finish(oneshot::channel().1).await;
    assert_eq!((r.reason(), r.exit_code, took), (Reason::Exited, Some(0), Ran::Took(Duration::ZERO)));
    // Cancelled before its slot came: it ends as cancelled without waiting for the slot.
    let (_launch, pending) = prepare(&lease("n2", process("/bin/true", &[])), &noop, None);
    let (stop, stopped) = oneshot::channel();
    stop.send(()).unwrap();
    let (r, took) = tokio::time::timeout(Duration::from_secs(10), pending.finish(stopped)).await.unwrap();
    assert_eq!((r.reason(), took), (Reason::Cancelled, Ran::NotStarted));
}

#[tokio::test]
async fn a_run_withdrawn_before_its_slot_came_never_starts_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (launch, pending) = prepare(&lease("w1", process("/bin/true", &[])), &cfg(dir.path()), None);
    launch.withdraw();
    let (r, ran) = tokio::time::timeout(Duration::from_secs(10), pending.finish(never())).await.unwrap();
    assert_eq!((ran, r.exit_code), (Ran::Withdrawn, None), "{r:?}");
}

#[tokio::test]
async fn a_job_sees_only_the_gpus_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let with_gpus = ExecConfig { gpus: crate::gpus::Gpus::new(2, None), ..cfg(dir.path()) };
    let print = |gpus| JobSpec {
        resources: Some(Resources { gpus, ..Resources::default() }),
        env: HashMap::from([("CUDA_VISIBLE_DEVICES".to_string(), "0,1".to_string())]),
        ..process("/bin/sh", &["-c", "echo \"[$CUDA_VISIBLE_DEVICES]\""])
    };
    let seen = |r: JobResult| std::fs::read_to_string(&r.stdout_path).unwrap();
    // Another run holds device 0.
    let held = with_gpus.gpus.take(1);
    assert_eq!(seen(run(&lease("one", print(1)), &with_gpus, never(), None).await), "[1]\n");
    assert_eq!(with_gpus.gpus.take(1).list(), "1", "the run gave its device back");
    let none = run(&lease("none", print(0)), &with_gpus, never(), None).await;
    assert_eq!(seen(none), "[]\n", "a job that asks for none sees none, whatever its env says");
    drop(held);
    assert_eq!(seen(run(&lease("two", print(2)), &with_gpus, never(), None).await), "[0,1]\n");
    assert!(with_gpus.gpus.wait_free(2, Duration::ZERO).await, "both given back");
    // A worker without GPUs leaves the variable to the job.
    assert_eq!(seen(run(&lease("own", print(0)), &cfg(dir.path()), never(), None).await), "[0,1]\n");
}
