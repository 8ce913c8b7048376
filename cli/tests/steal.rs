//! Work stealing on an in-process cluster: real workers stealing real processes from each other.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use burst_cli::commands::wait::wait_all;
use burst_cli::local::{ClusterOptions, LocalCluster};
use burst_controller::router::RouterKind;
use burst_proto::v1::{
    CordonWorkersRequest, GetJobStatusRequest, GetStatsRequest, GetStatsResponse, JobSpec, JobState,
};
use common::{cluster, eventually, sh};

const LONG: Duration = Duration::from_secs(120);

/// Biased routing (every job to the first half of the workers), quick heartbeats so thieves learn of victims fast.
fn skewed(workers: u32, slots: u32, queue_capacity: u32, dir: &Path) -> ClusterOptions {
    ClusterOptions {
        router: RouterKind::Biased,
        queue_capacity: Some(queue_capacity),
        heartbeat_interval: Duration::from_millis(100),
        lease_timeout: Duration::from_millis(1_000),
        ..ClusterOptions::new(workers, slots, dir.to_path_buf())
    }
}

async fn submit(c: &LocalCluster, specs: Vec<JobSpec>) -> Vec<String> {
    common::submit(&mut c.client().await.unwrap(), specs).await
}

async fn stats(c: &LocalCluster) -> GetStatsResponse {
    c.client().await.unwrap().get_stats(GetStatsRequest {}).await.unwrap().into_inner()
}

/// A job that waits for `gate` to exist, then appends a line to `<markers>/<its job id>`.
fn gated(gate: &Path, markers: &Path) -> JobSpec {
    sh(&format!(
        "while [ ! -e {gate} ]; do sleep 0.01; done; echo ran >> {markers}/$BURST_JOB_ID",
        gate = gate.display(),
        markers = markers.display()
    ))
}

/// How many times each job ran, from the marker lines its runs appended.
fn runs(markers: &Path) -> HashMap<String, usize> {
    std::fs::read_dir(markers)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let lines = std::fs::read_to_string(e.path()).unwrap().lines().count();
            (e.file_name().to_string_lossy().into_owned(), lines)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prototype_experiment_a_short_job_escapes_the_busy_worker_and_the_long_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(skewed(2, 1, 8, dir.path())).await;
    let gate = dir.path().join("gate");
    let long = submit(&c, vec![sh(&format!("while [ ! -e {} ]; do sleep 0.01; done", gate.display()))]).await;
    let mut client = c.client().await.unwrap();
    eventually(LONG, "the long job running", || {
        let mut client = client.clone();
        async move { (client.get_stats(GetStatsRequest {}).await.ok()?.into_inner().running == 1).then_some(()) }
    })
    .await;
    let short = submit(&c, vec![sh("hostname; echo $BURST_WORKER_ID"); 6]).await;
    let done = wait_all(&mut client, &short, Some(LONG), false).await.unwrap();
    std::fs::write(&gate, b"open").unwrap();
    let long = wait_all(&mut client, &long, Some(LONG), false).await.unwrap().remove(0);
    assert_eq!(long.worker_id, "worker-00", "the biased router put the long job on the first worker");
    assert_eq!(long.stolen_from, "", "a running job never moves");
    let elsewhere: Vec<_> = done.iter().filter(|s| s.worker_id == "worker-01").collect();
    assert!(!elsewhere.is_empty(), "no short job escaped: {done:?}");
    for s in &elsewhere {
        assert_eq!(s.stolen_from, "worker-00");
        let printed = std::fs::read_to_string(&s.stdout_path).unwrap();
        assert!(printed.ends_with("worker-01\n"), "the job itself ran on the thief: {printed:?}");
    }
    assert!(done.iter().all(|s| s.state() == JobState::Succeeded));
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_aggressive_stealing_a_thousand_jobs_each_run_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let c = cluster(skewed(4, 2, 64, dir.path())).await;
    let spec = sh(&format!("echo ran >> {}/$BURST_JOB_ID; sleep 0.01", markers.display()));
    let ids = submit(&c, vec![spec; 1000]).await;
    let mut client = c.client().await.unwrap();
    let statuses = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert_eq!(statuses.len(), 1000);
    assert!(statuses.iter().all(|s| s.state() == JobState::Succeeded));
    let runs = runs(&markers);
    assert_eq!(runs.len(), 1000, "every job ran");
    assert!(
        runs.values().all(|&n| n == 1),
        "some job ran twice: {:?}",
        runs.iter().filter(|(_, n)| **n != 1).collect::<Vec<_>>()
    );
    // Attempts reach the controller with heartbeats, so they may lag the transfers for a moment.
    let s = eventually(LONG, "attempt counts to catch up with steals", || {
        let c = &c;
        async move {
            let s = stats(c).await;
            (s.steal_attempts_total >= s.steals_total).then_some(s)
        }
    })
    .await;
    let thieves = statuses.iter().filter(|s| !s.stolen_from.is_empty()).count() as u64;
    assert!(s.jobs_stolen_total > 0, "nothing was stolen: {s:?}");
    assert!(thieves > 0 && thieves <= s.jobs_stolen_total, "{thieves} stolen jobs, {} moves", s.jobs_stolen_total);
    let on_second_half = statuses.iter().filter(|s| s.worker_id == "worker-02" || s.worker_id == "worker-03").count();
    assert!(on_second_half > 0, "the idle half took part");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thief_that_dies_after_a_steal_loses_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let gate = dir.path().join("gate");
    let mut c = cluster(skewed(2, 1, 8, dir.path())).await;
    let ids = submit(&c, vec![gated(&gate, &markers); 8]).await;
    // The thief (worker-01) takes some of worker-00's queue; the gate keeps every job from finishing.
    eventually(LONG, "a steal", || {
        let c = &c;
        async move { (stats(c).await.jobs_stolen_total > 0).then_some(()) }
    })
    .await;
    let thief = c.workers.remove(1);
    assert_eq!(thief.worker_id(), "worker-01");
    thief.shutdown().await;
    std::fs::write(&gate, b"open").unwrap();
    let mut client = c.client().await.unwrap();
    let statuses = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert!(statuses.iter().all(|s| s.state() == JobState::Succeeded), "{statuses:?}");
    assert!(statuses.iter().all(|s| s.worker_id == "worker-00"), "the thief's jobs came back to the victim");
    let runs = runs(&markers);
    assert_eq!(runs.len(), 8);
    let twice: Vec<_> = statuses
        .iter()
        .filter(|s| runs.get(&s.job_id) != Some(&1))
        .map(|s| (s.job_id.clone(), s.attempt, s.stolen_from.clone(), s.attempts.clone()))
        .collect();
    assert!(runs.values().all(|&n| n == 1), "{runs:?} {twice:?}");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stealing_off_nothing_is_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(ClusterOptions { steal: false, ..skewed(4, 1, 16, dir.path()) }).await;
    let ids = submit(&c, vec![sh("sleep 0.02"); 40]).await;
    let mut client = c.client().await.unwrap();
    // Long enough for several heartbeats: a thief, if any, would have tried.
    let statuses = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    let s = stats(&c).await;
    assert_eq!((s.steal_attempts_total, s.steals_total, s.jobs_stolen_total), (0, 0, 0));
    assert!(statuses.iter().all(|s| s.worker_id == "worker-00" || s.worker_id == "worker-01"));
    assert!(statuses.iter().all(|s| s.stolen_from.is_empty()));
    c.shutdown().await.unwrap();
}

/// The case stealing cannot reach: a worker of short jobs takes leases ahead of its slots, started with them (no
/// start report), so no thief can take them. If long runs then hold every slot, those leases would wait behind
/// them (shown running) while another worker idles. Once every slot has been held longer than a short job takes,
/// the worker gives them back unrun, and the idle worker runs them: each job once, no attempt spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_started_ahead_of_slots_that_long_runs_hold_go_back_to_the_controller_and_an_idle_worker_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let gate = dir.path().join("gate");
    // No stealing: the jobs can reach the second worker only through the controller.
    let opts = ClusterOptions {
        router: RouterKind::Roundrobin,
        queue_capacity: None,
        steal: false,
        heartbeat_interval: Duration::from_millis(100),
        lease_timeout: Duration::from_millis(1_000),
        http_listen: Some(([127, 0, 0, 1], 0).into()),
        ..ClusterOptions::new(2, 1, dir.path().to_path_buf())
    };
    let c = cluster(opts).await;
    let mut client = c.client().await.unwrap();
    let cordon = |uncordon| CordonWorkersRequest { worker_ids: vec!["worker-01".into()], uncordon };
    client.cordon_workers(cordon(false)).await.unwrap();
    // Short runs on worker-00 first: it learns to take leases ahead of its slot.
    let warm = submit(&c, vec![common::process("/bin/true", &[]); 100]).await;
    wait_all(&mut client, &warm, Some(LONG), false).await.unwrap();
    // The gated jobs all go to worker-00 (worker-01 is cordoned): one holds its slot, the others wait behind it,
    // those it took ahead of the slot started with their leases.
    let ids = submit(&c, vec![gated(&gate, &markers); 5]).await;
    client.cordon_workers(cordon(true)).await.unwrap();
    eventually(Duration::from_secs(30), "a gated job on worker-01", || {
        let (mut client, ids) = (client.clone(), ids.clone());
        async move {
            for job_id in ids {
                let s = client.get_job_status(GetJobStatusRequest { job_id }).await.ok()?.into_inner();
                if s.worker_id == "worker-01" {
                    return Some(());
                }
            }
            None
        }
    })
    .await;
    std::fs::write(&gate, b"open").unwrap();
    let statuses = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    for s in &statuses {
        let seen = (s.state(), s.attempt, s.attempts.len());
        assert_eq!(seen, (JobState::Succeeded, 1, 1), "{}: one run, no attempt lost: {s:?}", s.job_id);
    }
    let runs = runs(&markers);
    assert!(runs.len() == 5 && runs.values().all(|&n| n == 1), "each job ran once: {runs:?}");
    assert!(statuses.iter().any(|s| s.worker_id == "worker-01"));
    // They reached worker-01 because worker-00 gave them back (not because they were never its).
    let (code, metrics) = common::http(c.workers[0].http.unwrap(), "GET", "/metrics", &[], "");
    let returned = metrics.lines().find_map(|l| l.strip_prefix("burst_worker_leases_returned_total "));
    let returned: u32 = returned.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{code}: {metrics}"));
    assert!(returned >= 1, "{metrics}");
    c.shutdown().await.unwrap();
}
