//! The `burst` binary end to end: a controller and a worker started as `burst controller` and `burst worker`
//! processes, and every CLI command run against them as a user would.

mod procs;

use std::process::{Command, Output};

use procs::{BURST, burst, json, serve, stderr, stdout};

/// An error is one line on stderr, prefixed with `burst:`, and the exit code the caller expects.
fn assert_error(o: &Output, code: i32, mentions: &str) {
    assert_eq!(o.status.code(), Some(code), "stdout {} stderr {}", stdout(o), stderr(o));
    let err = stderr(o);
    assert!(err.contains(mentions), "{err:?} should mention {mentions:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line, not {err:?}");
}

#[test]
fn the_cli_drives_a_real_controller_and_worker() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    let (_controller, addr) = serve(&["controller", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    assert!(data.join("burst.redb").exists(), "the durable store is the default");
    assert!(addr.starts_with("127.0.0.1:"), "first line is the bound address: {addr:?}");
    let url = format!("http://{addr}");
    let (_worker, peer) = serve(&[
        "worker",
        "--controller",
        &addr,
        "--listen",
        "127.0.0.1:0",
        "--slots",
        "2",
        "--queue-capacity",
        "2",
        "--output-dir",
        out.to_str().unwrap(),
        "--worker-id",
        "cli-worker",
    ]);
    assert!(peer.starts_with("127.0.0.1:"), "{peer:?}");

    // --wait exits with the job's own exit code.
    let o = burst(&url, &["submit", "--wait", "process", "/bin/sh", "-c", "echo hi; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(std::fs::read_to_string(out.join(format!("{id}.stdout"))).unwrap(), "hi\n");

    // submit, then wait, then status as JSON.
    let o = burst(&url, &["submit", "--label", "team=a", "process", "/bin/echo", "hello", "--not-a-flag"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = burst(&url, &["wait", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = json(&burst(&url, &["status", &id, "-o", "json"]))[0].clone();
    assert_eq!(s["state"], "JOB_STATE_SUCCEEDED");
    assert_eq!(s["worker_id"], "cli-worker");
    assert_eq!(s["labels"]["team"], "a");
    let printed = std::fs::read_to_string(s["stdout_path"].as_str().unwrap()).unwrap();
    assert_eq!(printed, "hello --not-a-flag\n", "arguments after the command belong to it");
    let o = burst(&url, &["status", &id]);
    assert!(stdout(&o).contains("state:") && stdout(&o).contains("succeeded"), "{}", stdout(&o));

    // A python job, and --count.
    let o = burst(&url, &["submit", "--wait", "python", "-c", "print(6*7)"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = burst(&url, &["submit", "--count", "25", "--wait", "process", "/bin/true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 25);
    // Not on a terminal, progress is plain lines on stderr (here the closing one).
    assert!(stderr(&o).contains("waiting: 25/25 ("), "{}", stderr(&o));

    // A jobs file.
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(
        &jobs,
        "{\"process\": {\"command\": \"/bin/true\"}, \"labels\": {\"from\": \"file\"}}\n\n{\"python\": {\"code\": \"pass\"}, \"labels\": {\"from\": \"file\"}}\n",
    )
    .unwrap();
    let o = burst(&url, &["submit", "-f", jobs.to_str().unwrap(), "--wait"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2);

    // Reads: list with filters, workers, watch.
    let listed = json(&burst(&url, &["list", "--label", "from=file", "-o", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // kubectl's selector form: -l, comma-separated, all must match; BURST_OUTPUT as -o.
    let o = procs::burst_env(&url, &["list", "-l", "from=file"], &[("BURST_OUTPUT", "json")]);
    assert_eq!(json(&o).as_array().unwrap().len(), 2, "{}", stdout(&o));
    assert!(json(&burst(&url, &["list", "-l", "from=file,nothing=here", "-o", "json"])).as_array().unwrap().is_empty());
    assert_error(&burst(&url, &["list", "-l", "from"]), 2, "is not KEY=VALUE");
    let failed = json(&burst(&url, &["list", "--state", "failed", "-o", "json"]));
    assert_eq!(failed.as_array().unwrap().len(), 1, "only the exit-3 job failed");
    let o = burst(&url, &["list", "--limit", "3"]);
    assert_eq!(stdout(&o).lines().count(), 4, "a header and 3 jobs: {}", stdout(&o));
    assert!(stderr(&o).contains("more jobs match than the 3 shown"), "{}", stderr(&o));
    let names = stdout(&burst(&url, &["list", "--all", "-o", "name"]));
    let all = json(&burst(&url, &["list", "--limit", "100000", "-o", "json"]));
    assert_eq!(names.lines().count(), all.as_array().unwrap().len(), "--all pages through every job");
    assert!(names.lines().all(|l| all.as_array().unwrap().iter().any(|j| j["job_id"] == l)), "-o name: ids only");
    let wide = stdout(&burst(&url, &["list", "--limit", "1", "-o", "wide"]));
    assert!(wide.starts_with("JOB") && wide.contains("POOL") && wide.contains("SUBMITTED"), "{wide}");
    assert_eq!(stdout(&burst(&url, &["workers", "-o", "name"])), "cli-worker\n");
    let workers = json(&burst(&url, &["workers", "-o", "json"]));
    assert_eq!(workers[0]["info"]["worker_id"], "cli-worker");
    assert_eq!(workers[0]["info"]["slots"], 2);
    let o = burst(&url, &["watch", "--once"]);
    assert!(stdout(&o).contains("succeeded 29  failed 1"), "{}", stdout(&o));
    let newest = json(&burst(&url, &["list", "--newest", "--limit", "2", "-o", "json"]));
    let oldest = json(&burst(&url, &["list", "--limit", "100", "-o", "json"]));
    let all = oldest.as_array().unwrap();
    assert_eq!(newest[0]["job_id"], all[all.len() - 1]["job_id"], "--newest starts at the last job");
    assert_eq!(newest[1]["job_id"], all[all.len() - 2]["job_id"]);

    // Cancel a running job by id, and jobs by label.
    let o = burst(&url, &["submit", "process", "/bin/sleep", "30"]);
    let sleeper = stdout(&o).trim().to_string();
    let o = burst(&url, &["cancel", &sleeper]);
    assert_eq!(stdout(&o).trim(), format!("{sleeper} cancelled"), "{}", stderr(&o));
    let s = json(&burst(&url, &["status", &sleeper, "-o", "json"]))[0].clone();
    assert_eq!((s["state"].as_str(), s["reason"].as_str()), (Some("JOB_STATE_CANCELLED"), Some("REASON_CANCELLED")));
    let o = burst(&url, &["cancel", &sleeper, "-o", "json"]);
    assert_eq!(json(&o)["already_ended"][0], sleeper.as_str());
    assert_error(&burst(&url, &["cancel"]), 2, "name the jobs to cancel");

    // The same idempotency key names the same job.
    let a = burst(&url, &["submit", "--idempotency-key", "k1", "process", "/bin/true"]);
    let b = burst(&url, &["submit", "--idempotency-key", "k1", "process", "/bin/true"]);
    assert_eq!(stdout(&a), stdout(&b));

    // Dependencies: a job after another waits for it, saying so; one after a failed job fails without running;
    // one after any end runs all the same; an unknown id is refused.
    let gate = dir.path().join("dependency-gate");
    let waits = format!("while [ ! -e {} ]; do sleep 0.01; done", gate.display());
    let first = stdout(&burst(&url, &["submit", "process", "/bin/sh", "-c", &waits])).trim().to_string();
    let second = stdout(&burst(&url, &["submit", "--after", &first, "process", "/bin/true"])).trim().to_string();
    let s = json(&burst(&url, &["status", &second, "-o", "json"]))[0].clone();
    assert_eq!(s["state"], "JOB_STATE_QUEUED");
    let reason = s["waiting_reason"].as_str().unwrap();
    assert!(reason.contains(&format!("{first} to succeed")), "{reason}");
    std::fs::write(&gate, "").unwrap();
    assert!(burst(&url, &["wait", &second]).status.success());
    let failed = stdout(&burst(&url, &["submit", "--wait", "process", "/bin/false"])).trim().to_string();
    let o = burst(&url, &["submit", "--wait", "--after", &format!("{first},{failed}"), "process", "/bin/true"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let s = json(&burst(&url, &["status", &id, "-o", "json"]))[0].clone();
    assert_eq!((s["reason"].as_str(), s["started_at_ms"].as_str()), (Some("REASON_DEPENDENCY_FAILED"), Some("0")));
    assert!(stdout(&burst(&url, &["status", &id])).contains("dependency-failed"));
    let o = burst(&url, &["submit", "--wait", "--after-any", &failed, "process", "/bin/true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_error(&burst(&url, &["submit", "--after", "no-such-job", "process", "/bin/true"]), 2, "does not know");

    // A job array: one id, each index a job of its own with BURST_ARRAY_INDEX; --wait exits 1 unless all succeed;
    // the status counts the indices and names the failed ones; an index's output is `logs ARRAY:INDEX`.
    let script = "echo index=$BURST_ARRAY_INDEX; [ $BURST_ARRAY_INDEX != 7 ]";
    let o = burst(&url, &["submit", "--array", "0-9%3", "--wait", "process", "/bin/sh", "-c", script]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let array = stdout(&o).trim().to_string();
    let text = stdout(&burst(&url, &["status", &array]));
    assert!(text.contains("10 in all: 0 queued, 0 leased, 0 running, 9 succeeded, 1 failed, 0 cancelled"), "{text}");
    assert!(text.contains("failed indices:  7") || text.contains("failed indices: 7"), "{text}");
    assert!(text.contains("index 7: exited 1"), "{text}");
    let o = burst(&url, &["logs", &format!("{array}:3")]);
    assert_eq!(stdout(&o), "index=3\n", "{}", stderr(&o));
    let o = burst(&url, &["submit", "--array", "1-5", "--wait", "process", "/bin/true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_error(&burst(&url, &["submit", "--array", "5-1", "process", "/bin/true"]), 2, "ends before it starts");

    // A job may keep the end of its output in its status.
    let script = "seq 1 1000; echo oops >&2";
    let o = burst(&url, &["submit", "--output-tail", "64", "--wait", "process", "/bin/sh", "-c", script]);
    let id = stdout(&o).trim().to_string();
    let tail = json(&burst(&url, &["status", &id, "-o", "json"]))[0]["output_tail"].as_str().unwrap().to_string();
    assert!(tail.len() <= 64 && tail.ends_with("999\n1000\n[stderr]\noops\n"), "{tail:?}");
    assert!(stdout(&burst(&url, &["status", &id])).contains("output tail:\n"));
    assert_error(&burst(&url, &["submit", "--output-tail", "5000", "process", "/bin/true"]), 2, "output_tail_bytes");

    // A job sees its own BURST_ variables, never the worker's settings (it runs with BURST_INSECURE and
    // BURST_LOG; a token or certificate paths would be there too).
    let script = "env | grep ^BURST_ | cut -d= -f1 | sort | tr '\\n' ' '";
    let o = burst(&url, &["submit", "--output-tail", "200", "--wait", "process", "/bin/sh", "-c", script]);
    let id = stdout(&o).trim().to_string();
    let tail = json(&burst(&url, &["status", &id, "-o", "json"]))[0]["output_tail"].as_str().unwrap().to_string();
    assert_eq!(tail.trim(), "BURST_ATTEMPT BURST_JOB_ID BURST_RUN BURST_WORKER_ID", "{tail:?}");

    // Bad input: one line on stderr, exit 2.
    assert_error(&burst(&url, &["status", "no-such-job"]), 2, "no job with id no-such-job");
    assert_error(&burst(&url, &["submit", "process", ""]), 2, "process.command is empty");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"process\": {\"command\": \"/bin/true\"}}\n{\"process\": {}}\n").unwrap();
    assert_error(&burst(&url, &["submit", "-f", bad.to_str().unwrap()]), 2, "line 2");
    // A spec over the controller's limit is refused before anything is sent, naming the limit and the line.
    let big = format!("{{\"process\": {{\"command\": \"/bin/echo\", \"args\": [\"{}\"]}}}}\n", "x".repeat(300 * 1024));
    std::fs::write(&bad, format!("{{\"process\": {{\"command\": \"/bin/true\"}}}}\n{big}")).unwrap();
    let o = burst(&url, &["submit", "-f", bad.to_str().unwrap()]);
    assert_error(&o, 2, "line 2: the spec is");
    assert!(stderr(&o).contains("at most 262144"), "{}", stderr(&o));
    assert_error(&burst(&url, &["watch", "--once", "--interval", "10ms"]), 2, "at least 50ms");
    assert!(burst(&url, &["watch", "--once", "--interval", "2s"]).status.success());
    assert_error(&burst(&url, &["submit"]), 2, "say what to run");
    assert_error(&burst(&url, &["wait", "a/b"]), 2, "is not a job id");
    let o = burst(&url, &["controller", "-o", "json", "--listen", "127.0.0.1:0"]);
    assert_error(&o, 2, "--output means nothing to `burst controller`");
    // Through Kubernetes the cluster gives the address and credentials: flags naming others are refused.
    let o = burst(&url, &["--cluster", "demo", "--controller", "http://127.0.0.1:1", "workers"]);
    assert_error(&o, 2, "--controller cannot be used with a BurstCluster");
    let o = burst(&url, &["workers", "--cluster", "demo", "--tls-ca", "ca.pem"]);
    assert_error(&o, 2, "--tls-ca cannot be used with a BurstCluster");
    let o = burst(&url, &["controller", "--router", "fastest"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects an unknown router: {}", stderr(&o));
    assert!(stderr(&o).contains("roundrobin"), "the error lists the routers: {}", stderr(&o));
    let o = burst(&url, &["worker", "--slots", "0", "--output-dir", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("slots"), "{}", stderr(&o));

    // An unreachable controller is exit 1 with one line.
    assert_error(&burst("http://127.0.0.1:1", &["workers"]), 1, "cannot reach the controller");
}

#[test]
fn a_config_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burst.toml");
    std::fs::write(
        &config,
        "[controller]\nlisten = \"127.0.0.1:0\"\nrouter = \"power2\"\nephemeral = true\n[cli]\noutput = \"json\"\n",
    )
    .unwrap();
    let (_controller, addr) = serve(&["controller", "--config", config.to_str().unwrap()]);
    let o = Command::new(BURST)
        .args(["workers", "--config", config.to_str().unwrap(), "--controller", &addr])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o), serde_json::json!([]), "[cli] output = json applies");
    std::fs::write(&config, "[controller]\nlisten = \"127.0.0.1:0\"\nrouter = \"fastest\"\n").unwrap();
    let o = Command::new(BURST).args(["controller", "--config", config.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("[controller]"), "{}", stderr(&o));
}

#[test]
fn bench_steal_prints_the_makespans_as_json() {
    let o = Command::new(BURST)
        .args(["bench", "--workload", "steal", "--jobs", "40", "--workers", "2", "--slots", "2", "-o", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    for key in ["makespan_off_s", "makespan_on_s", "makespan_ideal_s"] {
        assert!(v[key].as_f64().is_some_and(|s| s > 0.0), "{key} in {v}");
    }
    assert_eq!(v["workload"], "steal");
    assert_eq!(v["jobs"], 40);
    assert_eq!(v["failed"], 0);
    let o = Command::new(BURST).args(["bench", "--workload", "steal", "--workers", "1"]).output().unwrap();
    assert_error(&o, 2, "at least 2 workers");
    let o =
        Command::new(BURST).args(["bench", "--workload", "submit", "--jobs", "640", "-o", "json"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    for key in ["memory_batch_jobs_per_sec", "durable_batch_jobs_per_sec", "durable_single_jobs_per_sec", "ratio"] {
        assert!(v[key].as_f64().is_some_and(|r| r > 0.0), "{key} in {v}");
    }
}

#[test]
fn bench_refuses_what_it_cannot_run_with_one_line() {
    for (args, says) in [
        (&["--workload", "w4", "--processes"][..], "--processes and --main-only apply to"),
        (&["--workload", "w3", "--workers", "0"][..], "at least 1 worker"),
        (&["--workload", "w1", "--slots", "0"][..], "at least 1 job, 1 worker and 1 slot"),
    ] {
        let o = Command::new(BURST).arg("bench").args(args).output().unwrap();
        assert_error(&o, 2, says);
    }
}

/// Each of W1-W4, small: it runs, nothing fails, and its JSON carries the figures the README quotes.
#[test]
fn bench_workloads_print_their_figures_as_json() {
    let throughput = &[
        "jobs_per_sec",
        "baseline_jobs_per_sec",
        "ratio",
        "memory_ratio",
        "plaintext_ratio",
        "tokio_ratio",
        "isolated_ratio",
    ];
    for (workload, jobs, extra, keys) in [
        ("w1", "60", &[][..], &throughput[..]),
        ("w1-output", "20", &["--main-only"][..], &["jobs_per_sec", "ratio", "cpu_us_per_job"][..]),
        // As users run it: a controller and a worker process, the CLI submitting and waiting.
        (
            "w1",
            "40",
            &["--processes"][..],
            &[
                &throughput[..],
                &["controller_cpu_us_per_job", "workers_cpu_us_per_job"],
                &["controller_sleeps_per_job", "workers_sleeps_per_job"],
            ]
            .concat()[..],
        ),
        (
            "w2",
            "32",
            &["--main-only"][..],
            &["jobs_per_sec", "baseline_jobs_per_sec", "ratio", "ideal_s", "ideal_ratio"][..],
        ),
        ("w3", "10", &[][..], &["p50_ms", "p99_ms", "terminal_p50_ms", "terminal_p99_ms"][..]),
        ("w4", "2000", &[][..], &["jobs_per_sec", "baseline_jobs_per_sec", "bytes_per_queued_job"][..]),
    ] {
        let o = Command::new(BURST)
            .args(["bench", "--workload", workload, "--jobs", jobs, "-o", "json"])
            .args(extra)
            .env("BURST_LOG", "error")
            .output()
            .unwrap();
        assert!(o.status.success(), "{workload}: {}", stderr(&o));
        let v = json(&o);
        assert_eq!((v["workload"].as_str(), v["failed"].as_u64()), (Some(workload), Some(0)), "{v}");
        assert_eq!(v["jobs"].as_u64(), jobs.parse().ok(), "{v}");
        if workload != "w4" {
            assert_eq!((v["store"].as_str(), v["tls"].as_bool()), (Some("durable"), Some(true)), "{v}");
        }
        // A spawner whose jobs failed would look fast.
        if workload.starts_with("w1") || workload == "w2" {
            assert_eq!(v["baseline_failed"].as_u64(), Some(0), "{v}");
        }
        for key in keys {
            assert!(v[*key].as_f64().is_some_and(|x| x > 0.0), "{workload}: {key} in {v}");
        }
    }
}

#[test]
fn sigterm_drains_a_worker_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (_controller, addr) = serve(&["controller", "--listen", "127.0.0.1:0", "--ephemeral"]);
    let url = format!("http://{addr}");
    let (mut worker, _) = serve(&[
        "worker",
        "--controller",
        &addr,
        "--listen",
        "127.0.0.1:0",
        "--slots",
        "1",
        "--output-dir",
        out.to_str().unwrap(),
        "--worker-id",
        "leaving",
    ]);
    let gate = dir.path().join("gate");
    let o = burst(
        &url,
        &["submit", "process", "/bin/sh", "-c", &format!("while [ ! -e {} ]; do sleep 0.01; done", gate.display())],
    );
    let id = stdout(&o).trim().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while json(&burst(&url, &["status", &id, "-o", "json"]))[0]["state"] != "JOB_STATE_RUNNING" {
        assert!(std::time::Instant::now() < deadline, "the job never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    worker.signal(libc::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !json(&burst(&url, &["workers", "-o", "json"]))[0]["draining"].as_bool().unwrap_or(false) {
        assert!(std::time::Instant::now() < deadline, "the worker never showed as draining");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(&gate, b"open").unwrap();
    let status = worker.0.wait().unwrap();
    assert!(status.success(), "the worker exits cleanly after draining: {status:?}");
    let s = json(&burst(&url, &["status", &id, "-o", "json"]))[0].clone();
    assert_eq!(s["state"], "JOB_STATE_SUCCEEDED", "the running job was allowed to finish: {s}");
    assert_eq!(json(&burst(&url, &["workers", "-o", "json"])), serde_json::json!([]), "it deregistered");
}

#[test]
fn servers_refuse_plaintext_unless_asked_for_it() {
    for role in ["controller", "worker"] {
        let o =
            Command::new(BURST).args([role, "--listen", "127.0.0.1:0"]).env_remove("BURST_INSECURE").output().unwrap();
        assert_error(&o, 1, "--insecure");
    }
}

#[test]
fn waiting_on_a_job_that_cannot_start_says_why_every_few_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_controller, addr) = serve(&["controller", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    let url = format!("http://{addr}");
    let id = stdout(&burst(&url, &["submit", "process", "/bin/true"])).trim().to_string();
    // No worker is registered: the wait gives up after its timeout, having said why the job has not started.
    let o = burst(&url, &["wait", "--timeout", "6s", &id]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err.lines().find(|l| l.contains("still waiting")).unwrap_or_else(|| panic!("no waiting line: {err}"));
    assert!(line.contains(&format!("{id} is queued: no worker")), "{line}");
}

#[test]
fn status_and_list_watch_print_each_change_as_it_happens() {
    use std::io::BufRead;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_controller, addr) = serve(&["controller", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    let url = format!("http://{addr}");
    let out = dir.path().join("out");
    let (_worker, _) =
        serve(&["worker", "--controller", &addr, "--listen", "127.0.0.1:0", "--output-dir", out.to_str().unwrap()]);
    let gate = dir.path().join("gate");
    let script = format!("while [ ! -e {} ]; do sleep 0.02; done", gate.display());
    let id =
        stdout(&burst(&url, &["submit", "--label", "w=1", "process", "/bin/sh", "-c", &script])).trim().to_string();
    // A watcher's lines arrive on a channel, so a missing line fails the test after a deadline instead of hanging.
    let watcher = |args: &[&str]| {
        let mut child = Command::new(procs::BURST)
            .args(args)
            .env("BURST_CONTROLLER", &url)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (procs::Proc(child), rx)
    };
    let next =
        |rx: &std::sync::mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(30)).expect("a line in time");
    let (_list, list_lines) = watcher(&["list", "--watch", "-l", "w=1", "-o", "name"]);
    // list opens its watch before it reads the list: once the job is printed, no later change can be missed.
    assert_eq!(next(&list_lines), id);
    let (mut status, status_lines) = watcher(&["status", "--watch", "-o", "json", &id]);
    // Each line is one status: first the current one, then each change, until the job has ended.
    let mut states = Vec::new();
    loop {
        let s: serde_json::Value = serde_json::from_str(&next(&status_lines)).unwrap();
        states.push(s["state"].as_str().unwrap().to_string());
        if s["state"] == "JOB_STATE_RUNNING" {
            std::fs::write(&gate, "").unwrap();
        }
        if s["state"] == "JOB_STATE_SUCCEEDED" {
            break;
        }
    }
    assert!(states.contains(&"JOB_STATE_RUNNING".to_string()), "{states:?}");
    assert!(status.0.wait().unwrap().success(), "the watch ends with the job");
    // list --watch prints the job's changes after the list: at least its end, which came after the gate.
    assert_eq!(next(&list_lines), id, "a change printed after the list");
}
