//! `burst bench`: fixed workloads on a local cluster, measured in the same run as their baseline, printed as a
//! table (or `-o json`: one object per workload).
//!
//! - `w1`, `w1-output`, `w2` ([`throughput`]): the same processes through burst and through plain local
//!   spawners at the same concurrency (the ratio is against OS threads looping `Command::status()`); w2 also
//!   against the ideal makespan.
//! - `w3` ([`latency`]): one job at a time, submit to running and to terminal, as percentiles.
//! - `w4` ([`ceiling`]): the controller alone (workers that run nothing), durable, and its memory per job.
//! - `steal`: jobs of skewed length (`sleep` 0.01 to 0.2 s, seeded) routed with `biased` to half of the workers,
//!   run once with stealing off and once with it on; the makespans are compared with the ideal, total work /
//!   total slots.
//! - `submit`: submit throughput, durable against in memory.
//! - `dispatch` ([`dispatch`]): the scheduler alone per job, at `--workers` workers against 2.
//!
//! w1-w3 run burst as users do: the durable store and mutual TLS, with the in-memory store and plaintext as extra
//! lines; `--processes` runs the controller and workers as processes of their own ([`processes`]).

use std::time::Duration;

use burst_controller::router::RouterKind;
use burst_proto::v1::job_spec::Kind;
use burst_proto::v1::{GetStatsRequest, JobSpec, ProcessSpec, SubmitJobRequest, SubmitJobsRequest};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::args::{BenchArgs, Workload};
use crate::client::{Ctx, Usage};
use crate::commands::dev::run_specs;
use crate::local::{ClusterOptions, LocalCluster};
use crate::render;

mod ceiling;
mod dispatch;
mod latency;
mod processes;
mod throughput;

/// A cluster the bench drives: in this process, or as processes of their own (`--processes`).
pub enum AnyCluster {
    Local(LocalCluster),
    Processes(processes::ProcessCluster),
}

impl AnyCluster {
    pub async fn start(processes: bool, shape: &processes::Shape<'_>) -> anyhow::Result<Self> {
        if processes {
            std::fs::create_dir_all(shape.dir)?;
            return Ok(AnyCluster::Processes(processes::ProcessCluster::start(shape).await?));
        }
        let opts = ClusterOptions {
            queue_capacity: shape.queue_capacity,
            data_dir: shape.durable.then(|| shape.dir.join("data")),
            tls_dir: shape.tls.then(|| shape.dir.join("certs")),
            ..ClusterOptions::new(shape.workers, shape.slots, shape.dir.join("out"))
        };
        Ok(AnyCluster::Local(LocalCluster::start(opts).await?))
    }

    pub async fn client(&self) -> anyhow::Result<crate::client::Client> {
        match self {
            AnyCluster::Local(c) => c.client().await,
            AnyCluster::Processes(c) => c.client().await,
        }
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        match self {
            AnyCluster::Local(c) => c.shutdown().await,
            AnyCluster::Processes(c) => {
                c.shutdown();
                Ok(())
            }
        }
    }
}

/// One workload's result: the JSON object `-o json` prints, the lines a person reads, and how many jobs failed.
pub struct Measured {
    pub json: serde_json::Value,
    pub text: String,
    pub failed: usize,
}

pub async fn run(ctx: &Ctx, args: BenchArgs) -> anyhow::Result<u8> {
    let lined =
        matches!(args.workload, Workload::W1 | Workload::W1Output | Workload::W2 | Workload::W3 | Workload::All);
    if (args.processes || args.main_only) && !lined {
        return Err(Usage("--processes and --main-only apply to w1, w1-output, w2, w3 and all".into()).into());
    }
    let at = |slots: u32| BenchArgs { slots: Some(slots), ..args.clone() };
    let workloads = match args.workload {
        // W4 first: its memory figures need a process that has not yet freed memory the allocator would reuse.
        Workload::All => vec![
            (Workload::W4, args.clone()),
            (Workload::W1, at(2)),
            (Workload::W1, at(4)),
            (Workload::W1Output, at(2)),
            (Workload::W2, args.clone()),
            (Workload::W3, args.clone()),
            (Workload::Steal, args.clone()),
            (Workload::Submit, args.clone()),
        ],
        one => vec![(one, args.clone())],
    };
    let mut code = 0;
    for (workload, args) in workloads {
        let m = match workload {
            Workload::W1 => throughput::w1(&args).await?,
            Workload::W1Output => throughput::w1_output(&args).await?,
            Workload::W2 => throughput::w2(&args).await?,
            Workload::W3 => latency::w3(&args).await?,
            Workload::W4 => ceiling::w4(&args).await?,
            Workload::Steal => steal(&args, args.jobs.unwrap_or(2_000)).await?,
            Workload::Submit => submit(args.jobs.unwrap_or(50_000)).await?,
            Workload::Dispatch => dispatch::dispatch(&args)?,
            Workload::All => unreachable!("expanded above"),
        };
        if ctx.json() {
            println!("{}", m.json);
        } else {
            print!("{}", m.text);
        }
        if m.failed > 0 {
            code = 1;
        }
    }
    Ok(code)
}

/// CPU seconds used so far by this process itself (the cluster or the spawner, and the bench) and by its
/// finished children (the jobs).
pub fn cpu_seconds() -> (f64, f64) {
    let used = |who| {
        // SAFETY: getrusage(2) fills the zeroed struct we own; no other memory is touched.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } != 0 {
            return 0.0;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(u.ru_utime) + secs(u.ru_stime)
    };
    (used(libc::RUSAGE_SELF), used(libc::RUSAGE_CHILDREN))
}

/// Microseconds of CPU per job between two [`cpu_seconds`] readings: (this process, the jobs).
pub fn cpu_per_job(before: (f64, f64), after: (f64, f64), jobs: usize) -> (f64, f64) {
    let per = |a: f64, b: f64| (b - a).max(0.0) * 1e6 / jobs.max(1) as f64;
    (per(before.0, after.0), per(before.1, after.1))
}

/// A fresh directory for one run's store, certificates and job outputs (`out/`). [`Scratch::drop`] removes all
/// but the outputs at once; a bench run removes outputs left for [`KEEP_OUTPUTS`] or more.
pub struct Scratch(pub std::path::PathBuf);

/// How long a run's job outputs stay before a later bench run removes them. On ext4 without a journal (this
/// project's VMs) the kernel does not reuse an inode for a minute after its file is deleted (six while its block
/// is unwritten), and finds a new file's inode by stepping over each such one: 5,000 outputs written just after
/// 5,000 were deleted cost ~1 ms of kernel time each, and W1 with output measured 740 jobs/s where it runs 1,370.
/// Removing them right away made each run slow the next.
const KEEP_OUTPUTS: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl Scratch {
    pub fn new(what: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let root = std::env::temp_dir().join("burst-bench");
        remove_older(&root, KEEP_OUTPUTS);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Scratch(root.join(format!("{what}-{}-{n}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else { return };
        for entry in entries.flatten().filter(|e| e.file_name() != "out") {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
        // No outputs to keep: the directory goes too.
        let out = self.0.join("out");
        if !out.exists() || std::fs::remove_dir(&out).is_ok() {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
}

/// Removes the directories in `root` last changed `age` or longer ago.
fn remove_older(root: &std::path::Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let changed = entry.metadata().and_then(|m| m.modified()).ok();
        if changed.and_then(|t| t.elapsed().ok()).is_some_and(|a| a >= age) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Sleep lengths in seconds, uniform in [0.01, 0.2], rounded to the millisecond, the same for a given seed.
pub fn skewed_durations(count: usize, seed: u64) -> Vec<f64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count).map(|_| (rng.random_range(10..=200) as f64) / 1000.0).collect()
}

struct StealRun {
    makespan: Duration,
    stolen: u64,
    failed: usize,
}

async fn steal(args: &BenchArgs, jobs: usize) -> anyhow::Result<Measured> {
    let (workers, slots, queue_capacity) =
        (args.workers.unwrap_or(4), args.slots.unwrap_or(4), args.queue_capacity.unwrap_or(64));
    if workers < 2 || slots == 0 || jobs == 0 {
        return Err(Usage("the steal workload needs at least 2 workers, 1 slot and 1 job".into()).into());
    }
    let durations = skewed_durations(jobs, args.seed);
    let ideal = durations.iter().sum::<f64>() / f64::from(workers * slots);
    let off = steal_run(&durations, workers, slots, queue_capacity, false).await?;
    let on = steal_run(&durations, workers, slots, queue_capacity, true).await?;
    let (off_s, on_s) = (off.makespan.as_secs_f64(), on.makespan.as_secs_f64());
    let json = json!({
            "workload": "steal",
            "jobs": jobs,
            "workers": workers,
            "slots_per_worker": slots,
            "queue_capacity": queue_capacity,
            "seed": args.seed,
            "makespan_off_s": off_s,
            "makespan_on_s": on_s,
            "makespan_ideal_s": ideal,
            "on_vs_ideal": on_s / ideal,
            "speedup": off_s / on_s,
            "jobs_stolen": on.stolen,
            "failed": off.failed + on.failed,
            "jobs_per_sec": jobs as f64 / on_s,
            "ideal_s": ideal,
    });
    let mut text = format!(
        "steal: {jobs} jobs of sleep 0.01-0.2 s (seed {}), router biased, {workers} workers x {slots} slots, queue capacity {queue_capacity}\n",
        args.seed
    );
    {
        let rows = vec![
            vec!["".to_string(), "MAKESPAN".into(), "VS IDEAL".into(), "JOBS STOLEN".into()],
            vec!["stealing off".into(), format!("{off_s:.2} s"), format!("{:.2}x", off_s / ideal), "0".into()],
            vec!["stealing on".into(), format!("{on_s:.2} s"), format!("{:.2}x", on_s / ideal), on.stolen.to_string()],
            vec!["ideal (work / slots)".into(), format!("{ideal:.2} s"), "1.00x".into(), "".into()],
        ];
        text += &render::table(&rows);
        text += &format!("stealing on is {:.2}x faster than off\n", off_s / on_s);
    }
    Ok(Measured { json, text, failed: off.failed + on.failed })
}

async fn steal_run(
    durations: &[f64],
    workers: u32,
    slots: u32,
    queue_capacity: u32,
    steal: bool,
) -> anyhow::Result<StealRun> {
    let scratch = Scratch::new(if steal { "steal-on" } else { "steal-off" });
    let dir = scratch.0.clone();
    let opts = ClusterOptions {
        router: RouterKind::Biased,
        queue_capacity: Some(queue_capacity),
        steal,
        ..ClusterOptions::new(workers, slots, dir.clone())
    };
    let cluster = LocalCluster::start(opts).await?;
    let argvs: Vec<Vec<String>> = durations.iter().map(|d| vec!["/bin/sleep".to_string(), format!("{d:.3}")]).collect();
    let report = run_specs(&cluster, &argvs).await?;
    let stats = cluster.client().await?.get_stats(GetStatsRequest {}).await.map_err(anyhow::Error::from)?;
    cluster.shutdown().await?;
    Ok(StealRun {
        makespan: report.elapsed,
        stolen: stats.into_inner().jobs_stolen_total,
        failed: report.failed().len(),
    })
}

/// Submissions in flight at once in the one-job-per-call run: enough for group commit to have company.
const CONCURRENT_SUBMITTERS: usize = 32;

/// Submit throughput, in memory and durable, with batches of 1,000 and with one job per call from
/// [`CONCURRENT_SUBMITTERS`] concurrent callers.
async fn submit(jobs: usize) -> anyhow::Result<Measured> {
    if jobs < CONCURRENT_SUBMITTERS {
        return Err(Usage(format!("the submit workload needs at least {CONCURRENT_SUBMITTERS} jobs")).into());
    }
    let scratch = Scratch::new("submit");
    let dir = scratch.0.clone();
    let mut rates = Vec::new();
    for durable in [false, true] {
        let _ = std::fs::remove_dir_all(&dir);
        let opts = ClusterOptions { data_dir: durable.then(|| dir.clone()), ..ClusterOptions::new(0, 1, dir.clone()) };
        let cluster = LocalCluster::start(opts).await?;
        let batch = submit_rate(&cluster, jobs, false).await?;
        let single = submit_rate(&cluster, jobs, true).await?;
        cluster.shutdown().await?;
        rates.push((batch, single));
    }
    let [(mem_batch, mem_single), (dur_batch, dur_single)] = rates[..] else { unreachable!("two runs") };
    let json = json!({
            "workload": "submit",
            "jobs": jobs,
            "jobs_per_sec": dur_batch,
            "baseline_jobs_per_sec": mem_batch,
            "ratio": dur_batch / mem_batch,
            "memory_batch_jobs_per_sec": mem_batch,
            "durable_batch_jobs_per_sec": dur_batch,
            "memory_single_jobs_per_sec": mem_single,
            "durable_single_jobs_per_sec": dur_single,
            "single_ratio": dur_single / mem_single,
    });
    let mut text = format!(
        "submit: {jobs} jobs, no workers; batches of 1,000, and one job per call from {CONCURRENT_SUBMITTERS} callers\n"
    );
    {
        let rows = vec![
            vec!["".to_string(), "IN MEMORY".into(), "DURABLE (redb)".into(), "DURABLE / MEMORY".into()],
            vec![
                "batches".into(),
                format!("{mem_batch:.0} jobs/s"),
                format!("{dur_batch:.0} jobs/s"),
                format!("{:.2}", dur_batch / mem_batch),
            ],
            vec![
                "one per call".into(),
                format!("{mem_single:.0} jobs/s"),
                format!("{dur_single:.0} jobs/s"),
                format!("{:.2}", dur_single / mem_single),
            ],
        ];
        text += &render::table(&rows);
    }
    Ok(Measured { json, text, failed: 0 })
}

/// Jobs per second accepted by `cluster`'s controller for `jobs` submissions (each acknowledged only once
/// stored), in batches or one per call.
async fn submit_rate(cluster: &LocalCluster, jobs: usize, one_per_call: bool) -> anyhow::Result<f64> {
    let spec = JobSpec {
        kind: Some(Kind::Process(ProcessSpec { command: "/bin/true".into(), args: vec![] })),
        ..JobSpec::default()
    };
    let client = cluster.client().await?;
    let started = std::time::Instant::now();
    if one_per_call {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENT_SUBMITTERS {
            let (mut client, spec) = (client.clone(), spec.clone());
            let n = jobs / CONCURRENT_SUBMITTERS;
            tasks.spawn(async move {
                for _ in 0..n {
                    client.submit_job(SubmitJobRequest { spec: Some(spec.clone()) }).await?;
                }
                Ok::<_, tonic::Status>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
    } else {
        let mut client = client;
        for chunk in (0..jobs).collect::<Vec<_>>().chunks(1_000) {
            client.submit_jobs(SubmitJobsRequest { specs: vec![spec.clone(); chunk.len()] }).await?;
        }
    }
    let submitted = if one_per_call { jobs / CONCURRENT_SUBMITTERS * CONCURRENT_SUBMITTERS } else { jobs };
    Ok(submitted as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skewed_workload_is_fixed_by_its_seed() {
        let a = skewed_durations(2000, 42);
        assert_eq!(a, skewed_durations(2000, 42));
        assert_ne!(a, skewed_durations(2000, 43));
        assert!(a.iter().all(|d| (0.01..=0.2).contains(d)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((mean - 0.105).abs() < 0.01, "{mean}");
    }

    #[test]
    fn a_scratch_keeps_only_its_job_outputs_and_old_ones_go() {
        let root = tempfile::tempdir().unwrap();
        let (with_outputs, without) = (Scratch(root.path().join("a")), Scratch(root.path().join("b")));
        for dir in [&with_outputs.0, &without.0] {
            std::fs::create_dir_all(dir.join("data")).unwrap();
            std::fs::write(dir.join("data/burst.wal"), b"x").unwrap();
            std::fs::create_dir_all(dir.join("out")).unwrap();
        }
        std::fs::write(with_outputs.0.join("out/j.stdout"), b"hello").unwrap();
        let (a, b) = (with_outputs.0.clone(), without.0.clone());
        drop((with_outputs, without));
        assert!(a.join("out/j.stdout").exists() && !a.join("data").exists());
        assert!(!b.exists());

        let recent = root.path().join("recent");
        std::fs::create_dir(&recent).unwrap();
        let old = std::time::SystemTime::now() - KEEP_OUTPUTS;
        std::fs::File::open(&a).unwrap().set_modified(old).unwrap();
        remove_older(root.path(), KEEP_OUTPUTS);
        assert!(!a.exists() && recent.exists());
    }
}
