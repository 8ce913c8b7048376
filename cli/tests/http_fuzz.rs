//! The HTTP API against its own OpenAPI document, by a property-based fuzzer (schemathesis, from PyPI; installed
//! by `.ci/install-schemathesis` into `target/tools/schemathesis/`): thousands of generated requests, valid and
//! not, to every operation but the endless event stream. Checks: no 5xx; every answer's status, content type,
//! headers and body as the document says; bad input answered with a 4xx; a wrong method with 405 and the right
//! `Allow`; a credential-less call refused. Not checked: that every schema-valid spec is accepted — the schema
//! says what JSON parses, the controller's validation (the gRPC API's) refuses more (an empty command, a bad
//! name) with a 400.
//!
//! The fuzzer follows the document's links (and the ones it infers) from submitted jobs to reading, cancelling
//! and following them; the one worker completes jobs without running them (a no-op executor), so nothing the
//! fuzzer submits runs and every followed job ends. The seed is fixed (deterministic CI);
//! `BURST_FUZZ_SEED` picks another, and a failure prints the seed and schemathesis's minimal failing request.

mod common;

use std::path::PathBuf;
use std::process::Command;

use burst_controller::ControllerConfig;
use burst_proto::testing::missing_tool;
use burst_worker::WorkerConfig;

const ADMIN: &str = "admin-token-0123456789";
const WORKER: &str = "worker-token-0123456789";
const DEFAULT_SEED: &str = "20261205";

fn schemathesis() -> Option<PathBuf> {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/schemathesis/bin/schemathesis");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(local).chain(std::env::split_paths(&path).map(|d| d.join("schemathesis"))).find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_holds_to_its_openapi_document_under_a_fuzzer() {
    let Some(st) = schemathesis() else {
        missing_tool("HTTP API fuzz test", "schemathesis not found; run .ci/install-schemathesis (pip, PyPI)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = common::tokens_file(dir.path(), &[("root", "admin", ADMIN), ("w", "worker", WORKER)]);
    let config = ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        tokens_file: Some(tokens),
        ephemeral: true,
        ..ControllerConfig::default()
    };
    let controller = burst_controller::start(config).await.unwrap();
    let addr = controller.http.unwrap();
    let mut cfg = WorkerConfig::local(&format!("http://{}", controller.addr), "w-0", 4, 8, dir.path().join("out"));
    cfg.exec.noop = true;
    cfg.bearer = burst_proto::auth::Bearer::new(Some(WORKER)).unwrap();
    let worker = burst_worker::start(cfg).await.unwrap();
    let registered = tokio::time::timeout(std::time::Duration::from_secs(30), worker.agent.registered()).await;
    registered.expect("the worker registers");
    let seed = std::env::var("BURST_FUZZ_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    println!("schemathesis seed {seed} (set BURST_FUZZ_SEED to change it)");
    let report = dir.path().join("report");
    // A followed log of a job that never starts (it asks for more than the worker has) waits for it, as a user's
    // `curl ...?follow=true` should; the fuzzer reads logs without following (the HTTP API test follows them).
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        "[[operations]]\ninclude-operation-id = \"getJobLogs\"\nparameters = { \"query.follow\" = false }\n",
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(dir.path())
            .arg("--config-file")
            .arg(&config)
            .args(["run", &format!("http://{addr}/v1/openapi.json")])
            .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
            // Events stream until the client goes: there is no end for the fuzzer to check.
            .args(["--exclude-path", "/v1/jobs:watch"])
            .args(["--header", &format!("Authorization: Bearer {ADMIN}")])
            .args(["--max-examples", "40", "--seed", &seed, "--workers", "2", "--request-timeout", "20"])
            .args(["--generation-database", "none", "--no-color", "--report-dir"])
            .arg(&report)
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    // What went wrong comes first in schemathesis's report (FAILURES, ERRORS), the summary last.
    let from = ["= FAILURES =", "= ERRORS ="].iter().filter_map(|h| printed.find(h)).min().unwrap_or(0);
    let tail: String = printed[from..].chars().take(12_000).collect();
    assert!(
        output.status.success(),
        "schemathesis (seed {}) found failures:\n{tail}\n{}",
        std::env::var("BURST_FUZZ_SEED").unwrap_or_else(|_| DEFAULT_SEED.into()),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("generated"), "schemathesis ran no test cases:\n{tail}");
    worker.shutdown().await;
    controller.shutdown().await.unwrap();
}
