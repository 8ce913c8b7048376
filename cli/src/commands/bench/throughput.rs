//! W1 and W2: the same processes through burst and through a plain local spawner at the same concurrency, in
//! the same run. W2's jobs sleep, so it is also compared with the ideal makespan, jobs x 0.05 s / slots.

use serde_json::json;

use super::{Measured, Scratch, cpu_per_job, cpu_seconds};
use crate::args::BenchArgs;
use crate::commands::dev::run_specs;
use crate::local::{ClusterOptions, LocalCluster};
use crate::{render, spawner};

/// What one workload runs, on how many workers and slots.
struct Plan {
    name: &'static str,
    argv: Vec<String>,
    jobs: usize,
    workers: u32,
    slots: u32,
    queue_capacity: u32,
    durable: bool,
    /// Seconds each job takes by itself, for the ideal makespan.
    job_seconds: Option<f64>,
}

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as u32
}

/// W1: 10,000 x /bin/true, 2 workers of one slot per core.
pub async fn w1(args: &BenchArgs) -> anyhow::Result<Measured> {
    let slots = args.slots.unwrap_or(cores());
    let plan = Plan {
        name: "w1",
        argv: vec!["/bin/true".into()],
        jobs: args.jobs.unwrap_or(10_000),
        workers: args.workers.unwrap_or(2),
        slots,
        queue_capacity: args.queue_capacity.unwrap_or(slots * 2),
        durable: args.durable,
        job_seconds: None,
    };
    measure(plan).await
}

/// W2: 2,000 x sleep 0.05 on 16 slots in all (2 workers x 8).
pub async fn w2(args: &BenchArgs) -> anyhow::Result<Measured> {
    let slots = args.slots.unwrap_or(8);
    let plan = Plan {
        name: "w2",
        argv: vec!["/bin/sleep".into(), "0.05".into()],
        jobs: args.jobs.unwrap_or(2_000),
        workers: args.workers.unwrap_or(2),
        slots,
        queue_capacity: args.queue_capacity.unwrap_or(slots * 2),
        durable: args.durable,
        job_seconds: Some(0.05),
    };
    measure(plan).await
}

async fn measure(plan: Plan) -> anyhow::Result<Measured> {
    let scratch = Scratch::new(plan.name);
    let opts = ClusterOptions {
        queue_capacity: plan.queue_capacity,
        data_dir: plan.durable.then(|| scratch.0.join("data")),
        ..ClusterOptions::new(plan.workers, plan.slots, scratch.0.join("out"))
    };
    let cluster = LocalCluster::start(opts).await?;
    eprintln!("{}: {} x {} through burst ...", plan.name, plan.jobs, plan.argv.join(" "));
    let before = cpu_seconds();
    let report = run_specs(&cluster, &vec![plan.argv.clone(); plan.jobs]).await?;
    let (burst_cpu, burst_jobs_cpu) = cpu_per_job(before, cpu_seconds(), plan.jobs);
    cluster.shutdown().await?;
    let concurrency = plan.workers * plan.slots;
    eprintln!("{}: the same through a plain local spawner at concurrency {concurrency} ...", plan.name);
    let before = cpu_seconds();
    let (base_time, base_failed) = spawner::run(&plan.argv, plan.jobs as u64, concurrency as usize).await?;
    let (base_cpu, base_jobs_cpu) = cpu_per_job(before, cpu_seconds(), plan.jobs);
    let elapsed = report.elapsed.as_secs_f64();
    let rate = report.jobs_per_sec();
    let base_rate = plan.jobs as f64 / base_time.as_secs_f64().max(1e-9);
    let ideal = plan.job_seconds.map(|s| plan.jobs as f64 * s / f64::from(concurrency));
    let failed = report.failed().len();
    let json = json!({
        "workload": plan.name,
        "jobs": plan.jobs,
        "command": plan.argv,
        "workers": plan.workers,
        "slots_per_worker": plan.slots,
        "concurrency": concurrency,
        "store": if plan.durable { "durable" } else { "memory" },
        "elapsed_s": elapsed,
        "jobs_per_sec": rate,
        "baseline_jobs_per_sec": base_rate,
        "baseline_elapsed_s": base_time.as_secs_f64(),
        "ratio": rate / base_rate,
        "ideal_s": ideal,
        "ideal_ratio": ideal.map(|i| i / elapsed),
        "failed": failed,
        "baseline_failed": base_failed,
        "cpu_us_per_job": burst_cpu,
        "baseline_cpu_us_per_job": base_cpu,
        "job_cpu_us_per_job": burst_jobs_cpu,
        "baseline_job_cpu_us_per_job": base_jobs_cpu,
    });
    let mut text = format!(
        "{}: {} x {}, {} workers x {} slots, {} store\n",
        plan.name,
        plan.jobs,
        plan.argv.join(" "),
        plan.workers,
        plan.slots,
        if plan.durable { "durable" } else { "in-memory" }
    );
    let mut rows = vec![
        vec![
            "".to_string(),
            "ELAPSED".into(),
            "JOBS/S".into(),
            "FAILED".into(),
            "OWN CPU/JOB".into(),
            "JOBS' CPU/JOB".into(),
        ],
        vec![
            "burst".into(),
            format!("{elapsed:.2} s"),
            format!("{rate:.0}"),
            failed.to_string(),
            format!("{burst_cpu:.0} µs"),
            format!("{burst_jobs_cpu:.0} µs"),
        ],
        vec![
            format!("local spawner ({concurrency} at once)"),
            format!("{:.2} s", base_time.as_secs_f64()),
            format!("{base_rate:.0}"),
            base_failed.to_string(),
            format!("{base_cpu:.0} µs"),
            format!("{base_jobs_cpu:.0} µs"),
        ],
    ];
    if let Some(ideal) = ideal {
        rows.push(vec![
            "ideal (work / slots)".into(),
            format!("{ideal:.2} s"),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
        ]);
    }
    text += &render::table(&rows);
    text += &format!("burst / spawner: {:.2}", rate / base_rate);
    if let Some(ideal) = ideal {
        text += &format!("; ideal / burst: {:.2}", ideal / elapsed);
    }
    text += "\n";
    Ok(Measured { json, text, failed })
}
