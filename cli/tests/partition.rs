//! A worker cut off from the controller, through a loopback proxy the test can cut and heal (a partition
//! without root or network namespaces: while cut, connections are dropped and new ones are held unanswered).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use burst_cli::commands::wait::wait_all;
use burst_cli::local::{ClusterOptions, LocalCluster};
use burst_proto::v1::{GetStatsRequest, JobState, JobStatus};
use burst_worker::WorkerConfig;
use common::{cluster, eventually, sh, submit};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const LONG: Duration = Duration::from_secs(120);
const LEASE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Forwards loopback TCP to `target` until cut; while cut it holds new connections without answering.
struct Proxy {
    url: String,
    cut: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let (cut, conns) = (cut.clone(), conns.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let cut = cut.load(Ordering::SeqCst);
                    conns.lock().unwrap().spawn(async move {
                        if cut {
                            // A partition: the connection goes nowhere and nothing comes back.
                            std::future::pending::<()>().await;
                        }
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        Proxy { url, cut, conns, accept }
    }

    /// Drops every connection; new ones are held unanswered until `heal`.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.conns.lock().unwrap().abort_all();
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.conns.lock().unwrap().abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.conns.lock().unwrap().abort_all();
    }
}

/// A cluster with one worker ("worker-00") connected directly and one ("cut") through a proxy; 2 slots each.
async fn setup(dir: &Path) -> (LocalCluster, Proxy, burst_worker::RunningWorker) {
    let opts = ClusterOptions {
        lease_timeout: LEASE_TIMEOUT,
        heartbeat_interval: Duration::from_millis(100),
        steal: false,
        ..ClusterOptions::new(1, 2, dir.to_path_buf())
    };
    let c = cluster(opts).await;
    let proxy = Proxy::start(c.controller.addr).await;
    let mut cfg = WorkerConfig::local(&proxy.url, "cut", 2, 4, dir.to_path_buf());
    cfg.steal = false;
    let w = burst_worker::start(cfg).await.unwrap();
    tokio::time::timeout(LONG, w.agent.registered()).await.unwrap();
    (c, proxy, w)
}

/// Four jobs that record their pid and wait for the gate; returns their ids once all four run, two per worker.
async fn gated_jobs(c: &LocalCluster, dir: &Path) -> Vec<String> {
    let gate = dir.join("gate");
    let script = format!(
        "echo $$ > {d}/$BURST_JOB_ID.pid; echo run >> {d}/$BURST_JOB_ID.runs; while [ ! -e {g} ]; do sleep 0.01; done",
        d = dir.display(),
        g = gate.display()
    );
    let mut client = c.client().await.unwrap();
    let ids = submit(&mut client, vec![sh(&script); 4]).await;
    eventually(LONG, "4 jobs running", || {
        let mut client = client.clone();
        async move { (client.get_stats(GetStatsRequest {}).await.ok()?.into_inner().running == 4).then_some(()) }
    })
    .await;
    // "Running" means spawned; wait until each shell has also written its pid.
    eventually(LONG, "4 pid files written", || {
        let ids = ids.clone();
        async move { ids.iter().all(|j| read_pid(dir, j).is_some()).then_some(()) }
    })
    .await;
    ids
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn read_pid(dir: &Path, job: &str) -> Option<i32> {
    std::fs::read_to_string(dir.join(format!("{job}.pid"))).ok()?.trim().parse().ok()
}

fn pid_of(dir: &Path, job: &str) -> i32 {
    read_pid(dir, job).unwrap_or_else(|| panic!("no pid written by {job}"))
}

fn runs_of(dir: &Path, job: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{job}.runs"))).map_or(0, |s| s.lines().count())
}

async fn finish(c: &LocalCluster, dir: &Path, ids: &[String]) -> Vec<JobStatus> {
    std::fs::write(dir.join("gate"), b"open").unwrap();
    let mut client = c.client().await.unwrap();
    wait_all(&mut client, ids, Some(LONG), false).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_for_twice_the_lease_timeout_loses_its_jobs_and_stops_them_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (c, proxy, cut_worker) = setup(dir.path()).await;
    let ids = gated_jobs(&c, dir.path()).await;
    let mut client = c.client().await.unwrap();
    let before = wait_statuses(&mut client, &ids).await;
    let on_cut: Vec<String> = before.iter().filter(|s| s.worker_id == "cut").map(|s| s.job_id.clone()).collect();
    assert_eq!(on_cut.len(), 2, "round robin put two jobs on each worker");
    let pids: Vec<i32> = on_cut.iter().map(|j| pid_of(dir.path(), j)).collect();

    proxy.cut();
    // The controller declares the cut worker dead; the worker, hearing nothing for a lease timeout, kills its jobs.
    eventually(LONG, "the cut worker expired", || {
        let mut client = client.clone();
        async move { (client.get_stats(GetStatsRequest {}).await.ok()?.into_inner().workers == 1).then_some(()) }
    })
    .await;
    eventually(LONG, "the cut worker's jobs killed by the worker itself", || {
        let pids = pids.clone();
        async move { pids.iter().all(|&p| !alive(p)).then_some(()) }
    })
    .await;
    tokio::time::sleep(LEASE_TIMEOUT / 2).await; // the cut lasts twice the lease timeout in all
    proxy.heal();
    eventually(LONG, "the cut worker back", || {
        let mut client = client.clone();
        async move { (client.get_stats(GetStatsRequest {}).await.ok()?.into_inner().workers == 2).then_some(()) }
    })
    .await;

    let statuses = finish(&c, dir.path(), &ids).await;
    for s in &statuses {
        assert_eq!(s.state(), JobState::Succeeded, "{s:?}");
        if on_cut.contains(&s.job_id) {
            assert_eq!((s.worker_id.as_str(), s.attempt), ("worker-00", 2), "completed elsewhere: {s:?}");
            assert_eq!(s.attempts[0].worker_id, "cut");
            assert_eq!(burst_proto::reason_name(s.attempts[0].reason()), "worker-lost");
            assert_eq!(runs_of(dir.path(), &s.job_id), 2);
        } else {
            assert_eq!(s.attempt, 1);
        }
    }
    let stats = client.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.succeeded, 4, "each job ended once: no stale result from the cut worker was accepted");
    cut_worker.shutdown().await;
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_of_half_the_lease_timeout_requeues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (c, proxy, cut_worker) = setup(dir.path()).await;
    let ids = gated_jobs(&c, dir.path()).await;
    proxy.cut();
    tokio::time::sleep(LEASE_TIMEOUT / 2).await; // the fault: a cut of half the lease timeout
    proxy.heal();
    let statuses = finish(&c, dir.path(), &ids).await;
    for s in &statuses {
        assert_eq!((s.state(), s.attempt), (JobState::Succeeded, 1), "{s:?}");
        assert!(s.attempts.iter().all(|a| burst_proto::reason_name(a.reason()) != "worker-lost"));
        assert_eq!(runs_of(dir.path(), &s.job_id), 1);
    }
    assert_eq!(statuses.iter().filter(|s| s.worker_id == "cut").count(), 2, "its jobs finished where they ran");
    cut_worker.shutdown().await;
    c.shutdown().await.unwrap();
}

async fn wait_statuses(client: &mut burst_cli::client::Client, ids: &[String]) -> Vec<JobStatus> {
    let mut out = Vec::new();
    for id in ids {
        let req = burst_proto::v1::GetJobStatusRequest { job_id: id.clone() };
        out.push(client.get_job_status(req).await.unwrap().into_inner());
    }
    out
}
