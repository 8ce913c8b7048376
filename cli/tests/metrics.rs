//! The HTTP side of the controller and the workers: `/metrics` parses as the Prometheus text format and its
//! counters move as jobs run; `/healthz` and `/readyz` answer.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use burst_cli::commands::wait::wait_all;
use burst_cli::local::ClusterOptions;
use common::{cluster, http, sh, submit};

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path, &[], "")
}

/// Checks every line of a Prometheus/OpenMetrics text page and returns its samples as (name{labels}, value).
fn parse(page: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    let lines: Vec<&str> = page.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the page ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram", "info", "unknown"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "{name} typed twice");
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad metric name in {line:?}");
        assert!(typed.iter().any(|t| name.starts_with(t.as_str())), "{name} has no TYPE line");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line:?}");
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((series.to_string(), value));
    }
    samples
}

fn value(samples: &[(String, f64)], series: &str) -> f64 {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v).unwrap_or_else(|| panic!("no {series}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_as_jobs_run() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ClusterOptions::new(2, 2, dir.path().to_path_buf())
    };
    let c = cluster(opts).await;
    let http = c.controller.http.unwrap();
    let before = tokio::task::spawn_blocking(move || parse(&get(http, "/metrics").1)).await.unwrap();
    assert_eq!(value(&before, "burst_controller_jobs_submitted_total"), 0.0);
    assert_eq!(value(&before, "burst_controller_workers"), 2.0);
    assert_eq!(value(&before, "burst_controller_slots"), 4.0);

    let mut client = c.client().await.unwrap();
    let specs = (0..20).map(|n| sh(&format!("exit {}", n % 2))).collect();
    let ids = submit(&mut client, specs).await;
    wait_all(&mut client, &ids, Some(Duration::from_secs(60)), false).await.unwrap();

    let workers: Vec<SocketAddr> = c.workers.iter().map(|w| w.http.unwrap()).collect();
    let (after, per_worker, health) = tokio::task::spawn_blocking(move || {
        let after = parse(&get(http, "/metrics").1);
        let per_worker: Vec<Vec<(String, f64)>> = workers.iter().map(|w| parse(&get(*w, "/metrics").1)).collect();
        let health = [get(http, "/healthz"), get(http, "/readyz"), get(workers[0], "/readyz")];
        (after, per_worker, health)
    })
    .await
    .unwrap();
    assert_eq!(value(&after, "burst_controller_jobs_submitted_total"), 20.0);
    assert_eq!(value(&after, "burst_controller_jobs{state=\"succeeded\"}"), 10.0);
    assert_eq!(value(&after, "burst_controller_jobs{state=\"failed\"}"), 10.0);
    assert_eq!(value(&after, "burst_controller_jobs_finished_total{state=\"succeeded\"}"), 10.0);
    assert_eq!(value(&after, "burst_controller_jobs_leased_total"), 20.0);
    assert_eq!(value(&after, "burst_controller_run_seconds_count"), 20.0);
    assert_eq!(value(&after, "burst_controller_queue_wait_seconds_count"), 20.0);
    assert_eq!(value(&after, "burst_controller_dispatch_latency_seconds_count"), 20.0);
    assert_eq!(value(&after, "burst_controller_refusals_total{reason=\"stale_epoch\"}"), 0.0);
    assert_eq!(value(&after, "burst_controller_pool_jobs_placed_total{pool=\"default\"}"), 20.0);
    assert_eq!(value(&after, "burst_controller_pool_jobs_spilled_total{pool=\"default\"}"), 0.0);
    assert_eq!(value(&after, "burst_controller_pool_slots{pool=\"default\"}"), 4.0);
    assert!(value(&after, "burst_controller_pool_busy_slot_seconds_total{pool=\"default\"}") > 0.0);
    let runs: f64 = per_worker.iter().map(|s| value(s, "burst_worker_runs_total{reason=\"exited\"}")).sum();
    assert_eq!(runs, 20.0, "the workers' run counts add up to the jobs");
    // At least each worker's first two found their slots free: started with their leases, no start report.
    let with_lease: f64 = per_worker.iter().map(|s| value(s, "burst_worker_started_with_lease_total")).sum();
    assert!((4.0..=20.0).contains(&with_lease), "{with_lease}");
    for s in &per_worker {
        assert_eq!(value(s, "burst_worker_registered"), 1.0);
        assert_eq!(value(s, "burst_worker_slots"), 2.0);
    }
    for (code, body) in health {
        assert_eq!(code, 200, "{body}");
    }

    // A job waiting on another that runs: one blocked, and the submitter's share (one held, one queued).
    let gate = dir.path().join("gate");
    let running =
        submit(&mut client, vec![sh(&format!("while [ ! -e {} ]; do sleep 0.01; done", gate.display()))]).await;
    let blocked = burst_proto::v1::JobSpec { after: running.clone(), ..sh("true") };
    let blocked = submit(&mut client, vec![blocked]).await;
    common::eventually(Duration::from_secs(30), "the gated job to run", || {
        let mut client = client.clone();
        let id = running[0].clone();
        async move {
            let s = client.get_job_status(burst_proto::v1::GetJobStatusRequest { job_id: id }).await.ok()?;
            (s.into_inner().state() == burst_proto::v1::JobState::Running).then_some(())
        }
    })
    .await;
    let now = tokio::task::spawn_blocking(move || parse(&get(http, "/metrics").1)).await.unwrap();
    assert_eq!(value(&now, "burst_controller_jobs_blocked"), 1.0);
    assert_eq!(value(&now, "burst_controller_submitter_jobs_held{submitter=\"anonymous\"}"), 1.0);
    assert_eq!(value(&now, "burst_controller_submitter_jobs_queued{submitter=\"anonymous\"}"), 1.0);
    assert_eq!(value(&now, "burst_controller_submitter_weight{submitter=\"anonymous\"}"), 1.0);
    std::fs::write(&gate, "").unwrap();
    wait_all(&mut client, &blocked, Some(Duration::from_secs(60)), false).await.unwrap();
    c.shutdown().await.unwrap();
}
