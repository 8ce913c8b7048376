//! The HTTP/JSON API (`/v1`) through a real controller and worker: every route, with and without the right
//! token; an idempotent submit; pages that stay correct while jobs are submitted; logs followed while the job
//! writes; status changes as server-sent events; the error shape with its statuses (400, 401, 403, 404, 405,
//! 409, 413, 429 with Retry-After).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use burst_controller::admission::RateLimit;
use burst_controller::{ControllerConfig, RunningController};
use burst_proto::auth::Bearer;
use burst_worker::{RunningWorker, WorkerConfig};
use common::{http, http_full, http_open, https, read_chunk};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);
const ALICE: &str = "Authorization: Bearer alice-token-0123456789";
const BOB: &str = "Authorization: Bearer bob-token-0123456789ab";
const ADMIN: &str = "Authorization: Bearer admin-token-0123456789";
const WORKER: &str = "worker-token-0123456789";

fn tokens(dir: &Path) -> std::path::PathBuf {
    let entries = [
        ("alice", "submit", "alice-token-0123456789"),
        ("bob", "submit", "bob-token-0123456789ab"),
        ("w", "worker", WORKER),
        ("root", "admin", "admin-token-0123456789"),
    ];
    common::tokens_file(dir, &entries)
}

/// A controller with its HTTP side (tokens required when `secured`), at `rate`, and one worker of 2 slots.
async fn start(dir: &Path, secured: bool, rate: RateLimit) -> (RunningController, RunningWorker, SocketAddr) {
    let config = ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        tokens_file: secured.then(|| tokens(dir)),
        submit_rate: rate,
        ..ControllerConfig::default()
    };
    let controller = burst_controller::start(config).await.unwrap();
    let url = format!("http://{}", controller.addr);
    let mut cfg = WorkerConfig::local(&url, "w-0", 2, 2, dir.join("out"));
    cfg.bearer = Bearer::new(secured.then_some(WORKER)).unwrap();
    let worker = burst_worker::start(cfg).await.unwrap();
    tokio::time::timeout(LONG, worker.agent.registered()).await.expect("the worker registers");
    let http = controller.http.unwrap();
    (controller, worker, http)
}

const NO_RATE: RateLimit = RateLimit { per_second: 0.0, burst: 0.0 };

fn parse(code: u16, body: &str) -> (u16, Value) {
    (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("{code}: not JSON ({e}): {body}")))
}

fn get(addr: SocketAddr, path: &str, who: &[&str]) -> (u16, Value) {
    let (code, body) = http(addr, "GET", path, who, "");
    parse(code, &body)
}

fn post(addr: SocketAddr, path: &str, who: &[&str], body: &str) -> (u16, Value) {
    let (code, body) = http(addr, "POST", path, who, body);
    parse(code, &body)
}

/// A refusal must be the one error shape, with this status.
fn refused(answer: (u16, Value), code: u16, status: &str) -> String {
    let (got, v) = answer;
    assert_eq!(got, code, "{v}");
    assert_eq!((v["error"]["code"].as_u64(), v["error"]["status"].as_str()), (Some(code as u64), Some(status)), "{v}");
    v["error"]["message"].as_str().unwrap().to_string()
}

fn until_state(addr: SocketAddr, id: &str, who: &[&str], state: &str) -> Value {
    let deadline = Instant::now() + LONG;
    loop {
        let (code, v) = get(addr, &format!("/v1/jobs/{id}"), who);
        assert_eq!(code, 200, "{v}");
        if v["status"]["state"] == state {
            return v;
        }
        assert!(Instant::now() < deadline, "{id} never reached {state}: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_for_the_right_caller_and_refuses_the_others_in_one_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, worker, addr) = start(dir.path(), true, NO_RATE).await;
    let gate = dir.path().join("gate");
    tokio::task::spawn_blocking(move || {
        let echo = r#"{"process": {"command": "/bin/echo", "args": ["hi"]}, "labels": {"batch": "a"}}"#;
        // No or a wrong token: 401, and nothing is submitted.
        let (code, headers, body) = http_full(addr, "POST", "/v1/jobs", &[], echo);
        assert!(refused(parse(code, &body), 401, "UNAUTHENTICATED").contains("token"));
        assert!(headers.iter().any(|(k, v)| k == "www-authenticate" && v == "Bearer"), "{headers:?}");
        refused(get(addr, "/v1/jobs", &["Authorization: Bearer wrong"]), 401, "UNAUTHENTICATED");

        // Submit one job: 201, where it is, its id.
        let (code, headers, body) = http_full(addr, "POST", "/v1/jobs", &[ALICE], echo);
        let (code, v) = parse(code, &body);
        assert_eq!(code, 201, "{v}");
        let id = v["job_id"].as_str().unwrap().to_string();
        assert!(headers.contains(&("location".into(), format!("/v1/jobs/{id}"))), "{headers:?}");
        let job = until_state(addr, &id, &[ALICE], "JOB_STATE_SUCCEEDED");
        assert_eq!((job["spec"]["owner"].as_str(), job["status"]["exit_code"].as_i64()), (Some("alice"), Some(0)));
        assert_eq!(job["spec"]["process"]["args"], json!(["hi"]));
        let (code, out) = http(addr, "GET", &format!("/v1/jobs/{id}/logs"), &[ALICE], "");
        assert_eq!((code, out.as_str()), (200, "hi\n"));
        let (code, err) = http(addr, "GET", &format!("/v1/jobs/{id}/logs?stream=stderr"), &[ALICE], "");
        assert_eq!((code, err.as_str()), (200, ""));

        // A batch, all or none: one bad spec refuses all and names its index.
        let batch = r#"[{"process": {"command": "/bin/true"}, "labels": {"batch": "b"}}, {"python": {"code": "pass"}, "labels": {"batch": "b"}}]"#;
        let (code, v) = post(addr, "/v1/jobs", &[ALICE], batch);
        assert_eq!((code, v["jobs"].as_array().map(Vec::len)), (201, Some(2)), "{v}");
        for job in v["jobs"].as_array().unwrap() {
            until_state(addr, job["job_id"].as_str().unwrap(), &[ALICE], "JOB_STATE_SUCCEEDED");
        }
        let bad_batch = r#"[{"process": {"command": "/bin/true"}}, {"process": {"command": "/bin/true"}, "timeout_ms": "x"}]"#;
        assert!(refused(post(addr, "/v1/jobs", &[ALICE], bad_batch), 400, "INVALID_ARGUMENT").contains("spec #1"));

        // Bad input: 400 with a message that says what is wrong.
        assert!(refused(post(addr, "/v1/jobs", &[ALICE], r#"{"proces": {}}"#), 400, "INVALID_ARGUMENT").contains("proces"));
        refused(post(addr, "/v1/jobs", &[ALICE], "not json"), 400, "INVALID_ARGUMENT");
        refused(post(addr, "/v1/jobs", &[ALICE], "42"), 400, "INVALID_ARGUMENT");
        assert!(refused(post(addr, "/v1/jobs", &[ALICE], r#"{"env": {}}"#), 400, "INVALID_ARGUMENT").contains("kind"));
        refused(get(addr, "/v1/jobs?limit=-3", &[ALICE]), 400, "INVALID_ARGUMENT");
        refused(get(addr, "/v1/jobs?state=sleeping", &[ALICE]), 400, "INVALID_ARGUMENT");

        // Owner scoping, as in gRPC: bob neither sees nor cancels alice's job; an admin sees all, by owner.
        refused(get(addr, &format!("/v1/jobs/{id}"), &[BOB]), 403, "PERMISSION_DENIED");
        refused(get(addr, "/v1/jobs/no-such-job", &[ALICE]), 404, "NOT_FOUND");
        let (_, mine) = get(addr, "/v1/jobs?label=batch=a", &[ALICE]);
        assert_eq!(mine["jobs"].as_array().unwrap().len(), 1, "{mine}");
        let (_, none) = get(addr, "/v1/jobs", &[BOB]);
        assert!(none["jobs"].as_array().unwrap().is_empty(), "{none}");
        refused(get(addr, "/v1/jobs?owner=alice", &[BOB]), 403, "PERMISSION_DENIED");
        let (_, by_owner) = get(addr, "/v1/jobs?owner=alice&state=succeeded", &[ADMIN]);
        assert!(by_owner["jobs"].as_array().unwrap().iter().any(|j| j["job_id"] == id.as_str()), "{by_owner}");
        let (_, by_bob) = get(addr, "/v1/jobs?owner=bob", &[ADMIN]);
        assert!(by_bob["jobs"].as_array().unwrap().is_empty(), "{by_bob}");

        // Cancel one by id, and several by label.
        let waiter = format!(r#"{{"process": {{"command": "/bin/sh", "args": ["-c", "while [ ! -e {} ]; do sleep 0.02; done"]}}, "labels": {{"batch": "c"}}}}"#, gate.display());
        let ids: Vec<String> = (0..3)
            .map(|_| post(addr, "/v1/jobs", &[ALICE], &waiter).1["job_id"].as_str().unwrap().to_string())
            .collect();
        refused(post(addr, &format!("/v1/jobs/{}:cancel", ids[0]), &[BOB], ""), 403, "PERMISSION_DENIED");
        let (code, v) = post(addr, &format!("/v1/jobs/{}:cancel", ids[0]), &[ALICE], "");
        assert_eq!((code, v["cancelled"].clone()), (200, json!([ids[0]])), "{v}");
        refused(post(addr, &format!("/v1/jobs/{}", ids[0]), &[ALICE], ""), 405, "METHOD_NOT_ALLOWED");
        refused(post(addr, "/v1/jobs:cancel", &[ALICE], "{}"), 400, "INVALID_ARGUMENT");
        let (code, v) = post(addr, "/v1/jobs:cancel", &[ALICE], r#"{"labels": {"batch": "c"}}"#);
        assert_eq!(code, 200, "{v}");
        let mut cancelled: Vec<String> = serde_json::from_value(v["cancelled"].clone()).unwrap();
        cancelled.sort();
        let mut rest = ids[1..].to_vec();
        rest.sort();
        assert_eq!(cancelled, rest);
        until_state(addr, &ids[2], &[ALICE], "JOB_STATE_CANCELLED");

        // Workers and cordons are for admins; the counts for every caller.
        refused(get(addr, "/v1/workers", &[ALICE]), 403, "PERMISSION_DENIED");
        let (code, v) = get(addr, "/v1/workers", &[ADMIN]);
        assert_eq!((code, v["workers"][0]["info"]["worker_id"].as_str()), (200, Some("w-0")), "{v}");
        let (code, v) = post(addr, "/v1/workers:cordon", &[ADMIN], r#"{"worker_ids": ["w-0"]}"#);
        assert_eq!((code, v["workers"][0]["cordoned"].as_bool()), (200, Some(true)), "{v}");
        let (code, v) = post(addr, "/v1/workers:cordon", &[ADMIN], r#"{"worker_ids": ["w-0"], "uncordon": true}"#);
        assert_eq!((code, v["workers"][0]["cordoned"].as_bool()), (200, Some(false)), "{v}");
        refused(post(addr, "/v1/workers:cordon", &[ADMIN], r#"{"worker_ids": ["nobody"]}"#), 404, "NOT_FOUND");
        let (code, v) = get(addr, "/v1/stats", &[ALICE]);
        assert_eq!((code, v["succeeded"].as_str()), (200, Some("3")), "{v}");
        let (code, v) = get(addr, "/v1/stats/history", &[ALICE]);
        assert_eq!((code, v["sample_every_ms"].as_u64()), (200, Some(5000)), "{v}");
        refused(get(addr, "/v1/stats/history", &[]), 401, "UNAUTHENTICATED");

        // Paths, methods, origins and sizes the API does not take.
        refused(get(addr, "/v1/nothing-here", &[ALICE]), 404, "NOT_FOUND");
        refused(get(addr, "/api/overview", &[ALICE]), 404, "NOT_FOUND");
        let (code, body) = http(addr, "DELETE", "/v1/jobs", &[ALICE], "");
        refused(parse(code, &body), 405, "METHOD_NOT_ALLOWED");
        let cross = post(addr, "/v1/jobs", &[ALICE, "Origin: http://evil.example"], echo);
        assert!(refused(cross, 403, "PERMISSION_DENIED").contains("cross-origin"));
        let big = format!(r#"{{"job_ids": ["{}"]}}"#, "x".repeat(2 << 20));
        refused(post(addr, "/v1/jobs:cancel", &[ALICE], &big), 413, "RESOURCE_EXHAUSTED");

        // The document needs no token, and names every route.
        let (code, doc) = get(addr, "/v1/openapi.json", &[]);
        assert_eq!((code, doc["openapi"].as_str()), (200, Some("3.1.0")));
        for path in ["/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}:cancel", "/v1/jobs/{id}/logs", "/v1/jobs:watch"] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        assert_eq!(http(addr, "GET", "/healthz", &[], "").0, 200);
    })
    .await
    .unwrap();
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_submit_with_the_same_idempotency_key_is_the_same_job() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, worker, addr) = start(dir.path(), false, NO_RATE).await;
    tokio::task::spawn_blocking(move || {
        let spec = r#"{"process": {"command": "/bin/true"}}"#;
        let key = "Idempotency-Key: nightly-2026-12-05";
        let (code, first) = post(addr, "/v1/jobs", &[key], spec);
        assert_eq!((code, first["existing"].as_bool()), (201, Some(false)), "{first}");
        // The client lost the answer and sends the same request again.
        let (code, again) = post(addr, "/v1/jobs", &[key], spec);
        assert_eq!((code, again["existing"].as_bool()), (200, Some(true)), "{again}");
        assert_eq!(again["job_id"], first["job_id"]);
        // The key in the spec is the same key.
        let (code, in_spec) = post(
            addr,
            "/v1/jobs",
            &[],
            r#"{"process": {"command": "/bin/true"}, "idempotency_key": "nightly-2026-12-05"}"#,
        );
        assert_eq!((code, &in_spec["job_id"]), (200, &first["job_id"]), "{in_spec}");
        // The same key for another spec is a conflict, not a second job.
        refused(post(addr, "/v1/jobs", &[key], r#"{"process": {"command": "/bin/false"}}"#), 409, "ALREADY_EXISTS");
        refused(
            post(
                addr,
                "/v1/jobs",
                &["Idempotency-Key: a"],
                r#"{"process": {"command": "/bin/true"}, "idempotency_key": "b"}"#,
            ),
            400,
            "INVALID_ARGUMENT",
        );
        let (_, stats) = get(addr, "/v1/stats", &[]);
        assert_eq!(stats["submitted_total"], "1", "{stats}");
    })
    .await
    .unwrap();
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stay_correct_while_jobs_are_submitted() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, worker, addr) = start(dir.path(), false, NO_RATE).await;
    worker.shutdown().await;
    tokio::task::spawn_blocking(move || {
        let spec = |i: usize| format!(r#"{{"process": {{"command": "/bin/true"}}, "labels": {{"n": "{i}"}}}}"#);
        let batch = format!("[{}]", (0..25).map(spec).collect::<Vec<_>>().join(","));
        let (code, v) = post(addr, "/v1/jobs", &[], &batch);
        assert_eq!(code, 201, "{v}");
        let before: Vec<String> =
            v["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().into()).collect();
        let (mut seen, mut token) = (Vec::<String>::new(), String::new());
        loop {
            let (code, page) = get(addr, &format!("/v1/jobs?limit=10&page_token={token}"), &[]);
            assert_eq!(code, 200, "{page}");
            seen.extend(page["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_string()));
            // New jobs arrive between pages: they are newer than the first page, so no page shifts.
            post(addr, "/v1/jobs", &[], &format!("[{}]", (100..105).map(spec).collect::<Vec<_>>().join(",")));
            token = page["next_page_token"].as_str().unwrap().to_string();
            if token.is_empty() {
                break;
            }
        }
        let mut expected = before.clone();
        expected.reverse();
        assert_eq!(seen, expected, "every job once, newest first");
        let (_, oldest) = get(addr, "/v1/jobs?order=oldest&limit=2", &[]);
        assert_eq!(oldest["jobs"][0]["job_id"].as_str(), Some(before[0].as_str()));
    })
    .await
    .unwrap();
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_followed_while_the_job_writes_and_statuses_arrive_as_server_sent_events() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, worker, addr) = start(dir.path(), false, NO_RATE).await;
    let gate = dir.path().join("gate");
    tokio::task::spawn_blocking(move || {
        let script = format!("echo one; while [ ! -e {} ]; do sleep 0.02; done; echo two", gate.display());
        let spec = json!({"process": {"command": "/bin/sh", "args": ["-c", script]}}).to_string();
        let (_, v) = post(addr, "/v1/jobs", &[], &spec);
        let id = v["job_id"].as_str().unwrap().to_string();
        let (code, _, mut events) =
            http_open(addr, "GET", &format!("/v1/jobs:watch?job_id={id}&initial=true"), &[], "");
        assert_eq!(code, 200);
        let (code, headers, mut logs) = http_open(addr, "GET", &format!("/v1/jobs/{id}/logs?follow=true"), &[], "");
        assert_eq!(code, 200);
        assert!(headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/plain")), "{headers:?}");
        let mut text = String::new();
        while !text.contains("one\n") {
            text += &String::from_utf8_lossy(&read_chunk(&mut logs).expect("output while the job runs"));
        }
        let (_, job) = get(addr, &format!("/v1/jobs/{id}"), &[]);
        assert_eq!(job["status"]["state"], "JOB_STATE_RUNNING", "the first line came before the job ended");
        std::fs::write(&gate, "").unwrap();
        while let Some(chunk) = read_chunk(&mut logs) {
            text += &String::from_utf8_lossy(&chunk);
        }
        assert_eq!(text, "one\ntwo\n", "the stream ends when the run does");

        // The events: the current status first, then each change, to the end.
        let mut states = Vec::new();
        let mut pending = String::new();
        while states.last().map(String::as_str) != Some("JOB_STATE_SUCCEEDED") {
            pending += &String::from_utf8_lossy(&read_chunk(&mut events).expect("events until the job ends"));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    assert!(event.contains("event: status"), "{event}");
                    let status: Value = serde_json::from_str(data).unwrap();
                    assert_eq!(status["job_id"].as_str(), Some(id.as_str()));
                    states.push(status["state"].as_str().unwrap().to_string());
                }
            }
        }
        assert!(states.len() >= 2 && states[0] != "JOB_STATE_SUCCEEDED", "first the current status: {states:?}");
    })
    .await
    .unwrap();
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitter_over_its_rate_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, worker, addr) = start(dir.path(), true, RateLimit { per_second: 0.5, burst: 1.0 }).await;
    tokio::task::spawn_blocking(move || {
        let spec = r#"{"process": {"command": "/bin/true"}}"#;
        assert_eq!(post(addr, "/v1/jobs", &[ALICE], spec).0, 201);
        let (code, headers, body) = http_full(addr, "POST", "/v1/jobs", &[ALICE], spec);
        assert!(refused(parse(code, &body), 429, "RESOURCE_EXHAUSTED").contains("submit rate"));
        let wait = headers.iter().find(|(k, _)| k == "retry-after").map(|(_, v)| v.parse::<u64>().unwrap());
        assert_eq!(wait, Some(2), "1 job at 0.5/s: {headers:?}");
    })
    .await
    .unwrap();
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_http_port_speaks_only_https_knows_client_certificates_and_follows_new_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    burst_cli::local::make_certs(&first, &[]).unwrap();
    burst_cli::local::make_certs(&second, &[]).unwrap();
    let config = ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(burst_cli::certs::files(&first, "controller")),
        ..ControllerConfig::default()
    };
    let controller = burst_controller::start(config).await.unwrap();
    let addr = controller.http.unwrap();
    let live = controller.tls.clone().unwrap();
    let (f, s) = (first.clone(), second.clone());
    tokio::task::spawn_blocking(move || {
        let admin = Some((f.join("admin.pem"), f.join("admin-key.pem")));
        let admin = admin.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        // Plaintext is not answered: what comes back, if anything, is not HTTP.
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Write::write_all(&mut tcp, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tcp, &mut answer);
        assert!(!answer.starts_with(b"HTTP/"), "plaintext got an HTTP answer: {:?}", String::from_utf8_lossy(&answer));

        let ca = f.join("ca.pem");
        assert_eq!(https(addr, &ca, None, "GET", "/healthz", "").unwrap(), (200, "ok".into()));
        // No token and no certificate: refused. The admin's certificate is its credential, as on gRPC.
        let (code, body) = https(addr, &ca, None, "GET", "/v1/stats", "").unwrap();
        assert_eq!(code, 401, "{body}");
        let (code, body) = https(addr, &ca, admin, "GET", "/v1/workers", "").unwrap();
        assert_eq!(code, 200, "{body}");
        let (code, body) =
            https(addr, &ca, admin, "POST", "/v1/jobs", r#"{"process": {"command": "/bin/true"}}"#).unwrap();
        assert_eq!(code, 201, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["job_id"].as_str().unwrap().to_string();
        let (_, job) = https(addr, &ca, admin, "GET", &format!("/v1/jobs/{id}"), "").unwrap();
        assert_eq!(serde_json::from_str::<Value>(&job).unwrap()["spec"]["owner"], "admin");

        // New certificates (of another CA) are used for the next connection, with no restart.
        let bundle = [std::fs::read(f.join("ca.pem")).unwrap(), std::fs::read(s.join("ca.pem")).unwrap()].concat();
        let identity = Some((
            std::fs::read(s.join("controller.pem")).unwrap(),
            std::fs::read(s.join("controller-key.pem")).unwrap(),
        ));
        assert!(live.replace(burst_proto::tls::Pem { ca: bundle, identity }).unwrap());
        assert!(https(addr, &ca, None, "GET", "/healthz", "").is_err(), "the old CA no longer names the server");
        assert_eq!(https(addr, &s.join("ca.pem"), None, "GET", "/healthz", "").unwrap().0, 200);
    })
    .await
    .unwrap();
    controller.shutdown().await.unwrap();

    // --http-plaintext: behind a proxy that encrypts, the port speaks plain HTTP although gRPC has TLS.
    let config = ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(burst_cli::certs::files(&first, "controller")),
        http_plaintext: true,
        ..ControllerConfig::default()
    };
    let controller = burst_controller::start(config).await.unwrap();
    let addr = controller.http.unwrap();
    let (code, body) = tokio::task::spawn_blocking(move || http(addr, "GET", "/v1/stats", &[], "")).await.unwrap();
    assert_eq!(code, 401, "plaintext, and still authenticated: {body}");
    controller.shutdown().await.unwrap();
}
