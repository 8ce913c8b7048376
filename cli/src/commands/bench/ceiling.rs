//! W4: the controller's own ceiling. Workers complete each job without running anything (a no-op executor that
//! only benchmarks use), so what is measured is submit, lease, start confirmation, result and the durable
//! store: everything burst does per job except the process.
//!
//! 1. Memory, first, while the process is fresh (memory freed by an earlier run would be reused and hide the
//!    growth): a controller with no workers; this process's heap in use (and resident memory) before and after
//!    `jobs` are queued gives bytes per queued job; workers then run them all, and the memory after, bytes per
//!    retained finished job.
//! 2. Throughput: workers up, `jobs` submitted in batches of 1,000 while they run; the clock stops when the
//!    controller counts every job finished. The no-op workers have 256 slots each by default: a worker confirms
//!    each start with the controller before running the job, so with few slots the rate is bounded by those
//!    round trips (a durable commit each), not by the controller; `--slots` shows that bound.

use std::time::{Duration, Instant};

use burst_proto::v1::job_spec::Kind;
use burst_proto::v1::{GetStatsRequest, JobSpec, ProcessSpec, SubmitJobsRequest};
use serde_json::json;

use super::{Measured, Scratch, cpu_per_job, cpu_seconds};
use crate::args::BenchArgs;
use crate::client::Client;
use crate::local::{ClusterOptions, LocalCluster};
use crate::render;

/// How long the controller may take to finish the jobs before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(600);
/// How often the controller's counts are read while waiting.
const POLL: Duration = Duration::from_millis(5);

/// What this process holds: the bytes allocated and not freed (jemalloc's count, see [`burst_proto::alloc`]),
/// and its resident memory (Linux); 0 where either cannot be read.
///
/// The allocated figure is what the controller keeps for its jobs. Resident memory also counts what the
/// allocator has been given back but keeps for reuse: after a million queued jobs have run, some of the memory
/// their queue used stays resident though the retained jobs need less.
#[derive(Clone, Copy)]
struct Memory {
    heap: u64,
    resident: u64,
}

impl Memory {
    fn now() -> Memory {
        Memory { heap: burst_proto::alloc::allocated_bytes(), resident: resident_bytes() }
    }

    /// Bytes per job of growth since `before`: (heap, resident).
    fn per_job_since(self, before: Memory, jobs: usize) -> (f64, f64) {
        let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / jobs.max(1) as f64;
        (per(self.heap, before.heap), per(self.resident, before.resident))
    }
}

/// This process's resident memory, in bytes (Linux), or 0 where it cannot be read.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kb.and_then(|k| k.parse::<u64>().ok()).map_or(0, |k| k * 1024)
}

fn spec() -> JobSpec {
    JobSpec {
        kind: Some(Kind::Process(ProcessSpec { command: "/bin/true".into(), args: vec![] })),
        ..JobSpec::default()
    }
}

async fn submit_all(client: &mut Client, jobs: usize) -> anyhow::Result<()> {
    let spec = spec();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(1_000);
        client.submit_jobs(SubmitJobsRequest { specs: vec![spec.clone(); n] }).await.map_err(anyhow::Error::from)?;
        left -= n;
    }
    Ok(())
}

/// Waits until the controller counts `jobs` finished; returns how many failed.
async fn until_finished(client: &mut Client, jobs: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = client.get_stats(GetStatsRequest {}).await.map_err(anyhow::Error::from)?.into_inner();
        if s.succeeded + s.failed + s.cancelled >= jobs {
            return Ok(s.failed + s.cancelled);
        }
        anyhow::ensure!(Instant::now() < deadline, "w4: {} of {jobs} jobs finished after {LIMIT:?}", s.succeeded);
        tokio::time::sleep(POLL).await;
    }
}

/// What one throughput run measured.
struct Run {
    elapsed: f64,
    failed: u64,
    /// The durable store's commits during the run, and the seconds they took.
    commits: u64,
    commit_seconds: f64,
    /// Microseconds of this process's CPU per job: the controller, the workers and the submitting client.
    cpu_us_per_job: f64,
}

/// Runs `jobs` jobs through submit, lease and complete with `workers` up from the start.
async fn throughput(args: &BenchArgs, jobs: usize, workers: u32, durable: bool) -> anyhow::Result<Run> {
    let store = if durable { "durable store" } else { "in-memory store" };
    eprintln!("w4: {jobs} jobs through submit, lease and complete (no processes), {store} ...");
    let scratch = Scratch::new("w4");
    let opts = ClusterOptions { data_dir: durable.then(|| scratch.0.join("data")), ..options(args, workers, &scratch) };
    let cluster = LocalCluster::start(opts).await?;
    let mut client = cluster.client().await?;
    let store = cluster.controller.controller.lock().store_commits();
    let before = store.as_ref().map_or((0, 0.0), |c| c.totals());
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let waiter = {
        let mut client = client.clone();
        tokio::spawn(async move { until_finished(&mut client, jobs as u64).await })
    };
    submit_all(&mut client, jobs).await?;
    let failed = waiter.await??;
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_us_per_job, _) = cpu_per_job(cpu_before, cpu_seconds(), jobs);
    let after = store.as_ref().map_or((0, 0.0), |c| c.totals());
    cluster.shutdown().await?;
    Ok(Run { elapsed, failed, commits: after.0 - before.0, commit_seconds: after.1 - before.1, cpu_us_per_job })
}

fn options(args: &BenchArgs, workers: u32, scratch: &Scratch) -> ClusterOptions {
    let slots = args.slots.unwrap_or(256);
    ClusterOptions {
        queue_capacity: Some(args.queue_capacity.unwrap_or(256)),
        data_dir: Some(scratch.0.join("data")),
        tls_dir: Some(scratch.0.join("certs")),
        noop_executor: true,
        ..ClusterOptions::new(workers, slots, scratch.0.join("out"))
    }
}

pub async fn w4(args: &BenchArgs) -> anyhow::Result<Measured> {
    let jobs = args.jobs.unwrap_or(200_000);
    let workers = args.workers.unwrap_or(2);

    eprintln!("w4: memory: {jobs} jobs queued with no workers, then run ...");
    let scratch = Scratch::new("w4-memory");
    let mut cluster = LocalCluster::start(options(args, 0, &scratch)).await?;
    let mut client = cluster.client().await?;
    let before = Memory::now();
    submit_all(&mut client, jobs).await?;
    let queued = Memory::now().per_job_since(before, jobs);
    let opts = options(args, workers, &scratch);
    cluster.add_workers(&opts).await?;
    until_finished(&mut client, jobs as u64).await?;
    let retained = Memory::now().per_job_since(before, jobs);
    cluster.shutdown().await?;
    let durable = throughput(args, jobs, workers, true).await?;
    let (elapsed, failed) = (durable.elapsed, durable.failed);
    let memory = throughput(args, jobs, workers, false).await?;
    let memory_elapsed = memory.elapsed;
    let memory_rate = jobs as f64 / memory_elapsed.max(1e-9);
    // Where the durable run's time went: how often the store committed, for how many jobs each time, and what
    // share of the run its writer thread spent committing.
    let commits = durable.commits.max(1) as f64;
    let commit_mean_ms = durable.commit_seconds * 1000.0 / commits;
    let jobs_per_commit = jobs as f64 / commits;
    let store_busy = durable.commit_seconds / elapsed.max(1e-9);

    let rate = jobs as f64 / elapsed.max(1e-9);
    let json = json!({
        "workload": "w4",
        "jobs": jobs,
        "workers": workers,
        "store": "durable",
        "elapsed_s": elapsed,
        "jobs_per_sec": rate,
        "baseline_jobs_per_sec": memory_rate,
        "baseline": "the same with the in-memory store",
        "ratio": rate / memory_rate,
        "bytes_per_queued_job": queued.0,
        "bytes_per_retained_job": retained.0,
        "resident_bytes_per_queued_job": queued.1,
        "resident_bytes_per_retained_job": retained.1,
        "store_commits": durable.commits,
        "store_commit_mean_ms": commit_mean_ms,
        "jobs_per_commit": jobs_per_commit,
        "store_busy": store_busy,
        "cpu_us_per_job": durable.cpu_us_per_job,
        "baseline_cpu_us_per_job": memory.cpu_us_per_job,
        "failed": failed,
    });
    let mut text = format!("w4: {jobs} jobs, {workers} no-op workers, durable store: the controller alone\n");
    let rows = vec![
        vec!["".to_string(), "VALUE".into()],
        vec!["submit -> lease -> complete".into(), format!("{rate:.0} jobs/s ({elapsed:.2} s)")],
        vec!["the same, in-memory store".into(), format!("{memory_rate:.0} jobs/s ({memory_elapsed:.2} s)")],
        vec![
            "CPU per job (durable, in-memory)".into(),
            format!("{:.0} µs, {:.0} µs", durable.cpu_us_per_job, memory.cpu_us_per_job),
        ],
        vec![
            "durable store commits".into(),
            format!(
                "{} ({:.0}/s, {commit_mean_ms:.2} ms each, {jobs_per_commit:.1} jobs per commit, writer busy {:.0}%)",
                durable.commits,
                durable.commits as f64 / elapsed.max(1e-9),
                store_busy * 100.0
            ),
        ],
        vec!["memory per queued job".into(), format!("{:.0} bytes (resident: {:.0})", queued.0, queued.1)],
        vec![
            "memory per retained finished job".into(),
            format!("{:.0} bytes (resident: {:.0})", retained.0, retained.1),
        ],
    ];
    text += &render::table(&rows);
    Ok(Measured { json, text, failed: failed as usize })
}
