//! `burst logs` with the built binaries: live output line by line while the job runs, `--tail`, `--stderr`, a
//! queued job, and a finished job's output after its worker was killed and restarted on the same output dir.

mod procs;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use procs::{BURST, Proc, burst, json, serve, stderr, stdout};

const LONG: Duration = Duration::from_secs(60);

fn controller() -> (Proc, String) {
    serve(&["controller", "--listen", "127.0.0.1:0", "--ephemeral", "--lease-timeout-ms", "3000"])
}

fn worker(addr: &str, id: &str, out: &Path) -> Proc {
    let out = out.to_str().unwrap();
    let args = ["worker", "--controller", addr, "--listen", "127.0.0.1:0", "--output-dir", out, "--worker-id", id];
    serve(&args).0
}

fn until<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    procs::until(LONG, what, check)
}

/// `burst logs -f JOB`, its stdout and stderr piped to the test.
fn follow(addr: &str, id: &str) -> Proc {
    let child = Command::new(BURST)
        .args(["logs", "-f", id])
        .env("BURST_CONTROLLER", addr)
        .env("BURST_INSECURE", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Proc(child)
}

fn submit(url: &str, script: &str) -> String {
    let o = burst(url, &["submit", "process", "/bin/sh", "-c", script]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

fn state(url: &str, id: &str) -> String {
    let state = json(&burst(url, &["status", id, "-o", "json"]))[0]["state"].as_str().unwrap().to_string();
    state.trim_start_matches("JOB_STATE_").to_lowercase()
}

fn wait_ended(url: &str, id: &str) {
    let o = burst(url, &["wait", "--timeout", "60s", id]);
    assert!(o.status.success(), "{} {}", stdout(&o), stderr(&o));
}

#[test]
fn a_running_jobs_output_arrives_line_by_line_and_tail_and_stderr_select() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, addr) = controller();
    let _w = worker(&addr, "w1", &dir.path().join("out"));
    let gate = dir.path().join("gate");
    // A line every 50 ms on each stream until the test opens the gate.
    let script = format!(
        "i=0; while [ ! -e {} ]; do i=$((i+1)); echo line-$i; echo err-$i >&2; sleep 0.05; done; echo done",
        gate.display()
    );
    let id = submit(&addr, &script);

    let mut follow = follow(&addr, &id);
    let mut lines = BufReader::new(follow.0.stdout.take().unwrap()).lines();
    for n in 1..=3 {
        let line = lines.next().expect("a line").unwrap();
        assert_eq!(line, format!("line-{n}"));
        // Each line arrives while the job is still running: it cannot end before the gate opens.
        assert_eq!(state(&addr, &id), "running", "line {n} arrived before the job ended");
    }
    std::fs::write(&gate, "").unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(rest.last().map(String::as_str), Some("done"), "the stream ends with the job's last line: {rest:?}");
    assert!(follow.0.wait().unwrap().success());
    wait_ended(&addr, &id);
    let printed = rest.len() + 3 - 1;

    // The whole output again, the last lines, and stderr.
    let all = stdout(&burst(&addr, &["logs", &id]));
    let expected: String = (1..=printed).map(|n| format!("line-{n}\n")).collect::<String>() + "done\n";
    assert_eq!(all, expected);
    let tail = burst(&addr, &["logs", "--tail", "2", &id]);
    assert_eq!(stdout(&tail), format!("line-{printed}\ndone\n"));
    let err = stdout(&burst(&addr, &["logs", "--stderr", "--tail", "1", &id]));
    assert_eq!(err, format!("err-{printed}\n"));
}

#[test]
fn a_finished_jobs_output_is_read_again_after_its_worker_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (_c, addr) = controller();
    let w = worker(&addr, "w1", &out);
    let id = submit(&addr, "echo kept");
    wait_ended(&addr, &id);
    assert_eq!(stdout(&burst(&addr, &["logs", &id])), "kept\n");

    // Killed: its output cannot be reached, and the reader is told so at once (no hang).
    w.signal(libc::SIGKILL);
    drop(w);
    let gone = until("a clear error while the worker is down", || {
        let o = burst(&addr, &["logs", &id]);
        (!o.status.success()).then_some(o)
    });
    let message = stderr(&gone);
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
    assert!(message.contains("w1"), "{message}");

    // The same worker back on the same output dir: the output is there again.
    let _w = worker(&addr, "w1", &out);
    let again = until("the output after the restart", || {
        let o = burst(&addr, &["logs", &id]);
        o.status.success().then(|| stdout(&o))
    });
    assert_eq!(again, "kept\n");
}

#[test]
fn a_queued_job_has_no_output_yet_and_following_it_waits_for_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, addr) = controller();
    // No worker yet: the job stays queued.
    let id = submit(&addr, "echo late");
    let o = burst(&addr, &["logs", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("queued"), "{}", stderr(&o));

    let mut follow = follow(&addr, &id);
    let _w = worker(&addr, "w1", &dir.path().join("out"));
    let mut printed = String::new();
    std::io::Read::read_to_string(follow.0.stdout.as_mut().unwrap(), &mut printed).unwrap();
    assert!(follow.0.wait().unwrap().success());
    assert_eq!(printed, "late\n");

    let unknown = burst(&addr, &["logs", "0190d0f0-0000-7000-8000-000000000000"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no job with id"), "{}", stderr(&unknown));
}

#[test]
fn a_retried_jobs_output_is_its_last_attempts_own() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, addr) = controller();
    let _w = worker(&addr, "w1", &dir.path().join("out"));
    // The first attempt prints and fails; the second (on the same, only worker) prints nothing.
    let script = "[ \"$BURST_ATTEMPT\" -ge 2 ] && exit 0; echo first; exit 1";
    let o = burst(
        &addr,
        &["submit", "--max-attempts", "2", "--retry-backoff", "10ms", "--wait", "process", "/bin/sh", "-c", script],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(json(&burst(&addr, &["status", &id, "-o", "json"]))[0]["attempt"], 2);
    let logs = burst(&addr, &["logs", &id]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    assert_eq!(stdout(&logs), "", "attempt 1's output is not attempt 2's");
}

#[test]
fn following_a_job_whose_worker_freezes_ends_with_an_error_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, addr) = controller();
    let w = worker(&addr, "w1", &dir.path().join("out"));
    let id = submit(&addr, "echo started; sleep 60");
    let mut follow = follow(&addr, &id);
    let mut lines = BufReader::new(follow.0.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "started");
    // Frozen: it neither writes nor closes the stream. The controller declares it dead after the lease timeout
    // and queues the job again; the follower is told, within the grace period, rather than left waiting.
    w.signal(libc::SIGSTOP);
    let status = until("the follower to end", || follow.0.try_wait().unwrap());
    w.signal(libc::SIGCONT);
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(follow.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("output may be incomplete"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
