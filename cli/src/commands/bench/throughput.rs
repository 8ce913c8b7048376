//! W1 and W2: the same processes through burst and through plain local spawners at the same concurrency, in
//! the same run. The ratio is against N OS threads looping `Command::status()` ([`spawner::run_threads`]), the
//! machine's real limit; tokio's spawner is a second line. W2's jobs sleep, so it is also compared with the
//! ideal makespan, jobs x 0.05 s / slots.
//!
//! burst runs as users run it by default: the durable store and mutual TLS (with `--processes`, a controller
//! and workers in processes of their own, the batch submitted by `burst submit --wait`). The in-memory store
//! and plaintext are extra lines, so what each costs shows in the same run.

use anyhow::Context;
use serde_json::{Value, json};

use super::processes::Shape;
use super::{AnyCluster, Measured, Scratch, cpu_per_job, cpu_seconds};
use crate::args::BenchArgs;
use crate::commands::dev::run_specs;
use crate::{render, spawner};

/// What one workload runs, on how many workers and slots.
struct Plan {
    name: &'static str,
    argv: Vec<String>,
    jobs: usize,
    workers: u32,
    slots: u32,
    queue_capacity: Option<u32>,
    /// Seconds each job takes by itself, for the ideal makespan.
    job_seconds: Option<f64>,
}

impl Plan {
    fn concurrency(&self) -> u32 {
        self.workers * self.slots
    }
}

/// W1: 5,000 x /bin/true, one worker of 2 slots (`--slots 4`: 4 at a time).
pub async fn w1(args: &BenchArgs) -> anyhow::Result<Measured> {
    measure(args, true_plan(args, "w1", vec!["/bin/true".into()])).await
}

/// W1 with output: 5,000 x `/bin/echo hello`, so every job's stdout file is written.
pub async fn w1_output(args: &BenchArgs) -> anyhow::Result<Measured> {
    measure(args, true_plan(args, "w1-output", vec!["/bin/echo".into(), "hello".into()])).await
}

fn true_plan(args: &BenchArgs, name: &'static str, argv: Vec<String>) -> Plan {
    let slots = args.slots.unwrap_or(2);
    Plan {
        name,
        argv,
        jobs: args.jobs.unwrap_or(5_000),
        workers: args.workers.unwrap_or(1),
        slots,
        queue_capacity: args.queue_capacity,
        job_seconds: None,
    }
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
        queue_capacity: args.queue_capacity,
        job_seconds: Some(0.05),
    };
    measure(args, plan).await
}

/// How burst is set up for one line.
#[derive(Clone, Copy)]
pub struct Setup {
    pub label: &'static str,
    pub durable: bool,
    pub tls: bool,
}

/// As users run it; then each of its two costs taken away.
pub const SETUPS: [Setup; 3] = [
    Setup { label: "burst (durable, mutual TLS)", durable: true, tls: true },
    Setup { label: "burst, in-memory store", durable: false, tls: true },
    Setup { label: "burst, plaintext", durable: true, tls: false },
];

/// One line of the table.
struct Line {
    label: String,
    /// How burst was set up; `None` for a spawner.
    setup: Option<Setup>,
    jobs: usize,
    elapsed: f64,
    failed: u64,
    /// CPU per job in µs: the line's own (burst's processes, or the spawner), and the jobs'.
    own_cpu: f64,
    jobs_cpu: f64,
    /// With `--processes`: the controller's, the workers' and the submitting CLI's share of `own_cpu`.
    split: Option<[f64; 3]>,
    /// With `--processes`: per job, how often a thread of the controller, and of the workers, slept and woke.
    sleeps: Option<[f64; 2]>,
}

impl Line {
    fn rate(&self) -> f64 {
        self.jobs as f64 / self.elapsed.max(1e-9)
    }

    /// The line as `-o json` prints it in `lines`, its ratio against `base_rate`.
    fn json(&self, base_rate: f64) -> Value {
        let mut json = json!({
            "line": self.label,
            "elapsed_s": self.elapsed,
            "jobs_per_sec": self.rate(),
            "ratio": self.rate() / base_rate,
            "failed": self.failed,
            "cpu_us_per_job": self.own_cpu,
            "job_cpu_us_per_job": self.jobs_cpu,
        });
        if let Some(setup) = self.setup {
            json["store"] = json!(if setup.durable { "durable" } else { "memory" });
            json["tls"] = json!(setup.tls);
        }
        self.put_split(&mut json);
        json
    }

    /// The per-process CPU and sleeps, where there are, into `json`.
    fn put_split(&self, json: &mut Value) {
        if let Some([controller, workers, cli]) = self.split {
            json["controller_cpu_us_per_job"] = json!(controller);
            json["workers_cpu_us_per_job"] = json!(workers);
            json["cli_cpu_us_per_job"] = json!(cli);
        }
        if let Some([controller, workers]) = self.sleeps {
            json["controller_sleeps_per_job"] = json!(controller);
            json["workers_sleeps_per_job"] = json!(workers);
        }
    }
}

async fn burst_line(args: &BenchArgs, plan: &Plan, setup: Setup) -> anyhow::Result<Line> {
    let scratch = Scratch::new(plan.name);
    let per_job = |secs: f64| secs * 1e6 / plan.jobs.max(1) as f64;
    eprintln!("{}: {} x {} through {} ...", plan.name, plan.jobs, plan.argv.join(" "), setup.label);
    let shape = Shape {
        workers: plan.workers,
        slots: plan.slots,
        queue_capacity: plan.queue_capacity,
        durable: setup.durable,
        tls: setup.tls,
        dir: &scratch.0,
    };
    let (elapsed, failed, own_cpu, jobs_cpu, split, sleeps) = match AnyCluster::start(args.processes, &shape).await? {
        AnyCluster::Processes(cluster) => {
            let ran = cluster.run(&plan.argv, plan.jobs).await;
            cluster.shutdown();
            let ran = ran?;
            let split = [per_job(ran.controller_cpu), per_job(ran.workers_cpu), per_job(ran.cli_cpu)];
            let each = |n: u64| n as f64 / plan.jobs.max(1) as f64;
            let sleeps = [each(ran.controller_sleeps), each(ran.workers_sleeps)];
            (
                ran.elapsed.as_secs_f64(),
                ran.failed,
                split.iter().sum(),
                per_job(ran.jobs_cpu),
                Some(split),
                Some(sleeps),
            )
        }
        AnyCluster::Local(cluster) => {
            let before = cpu_seconds();
            let report = run_specs(&cluster, &vec![plan.argv.clone(); plan.jobs]).await?;
            let (own, jobs) = cpu_per_job(before, cpu_seconds(), plan.jobs);
            cluster.shutdown().await?;
            (report.elapsed.as_secs_f64(), report.failed().len() as u64, own, jobs, None, None)
        }
    };
    Ok(Line {
        label: setup.label.into(),
        setup: Some(setup),
        jobs: plan.jobs,
        elapsed,
        failed,
        own_cpu,
        jobs_cpu,
        split,
        sleeps,
    })
}

/// The spawners burst is compared with (see [`spawner`]).
enum Spawner {
    Threads(spawner::Isolation),
    Tokio,
}

async fn spawner_line(plan: &Plan, which: Spawner) -> anyhow::Result<Line> {
    let concurrency = plan.concurrency() as usize;
    let label = match which {
        Spawner::Threads(spawner::Isolation::Plain) => {
            format!("plain spawner: {concurrency} threads x Command::status()")
        }
        Spawner::Threads(spawner::Isolation::Grouped(_)) => {
            format!("isolated spawner: {concurrency} threads, group + pipes + pidfd per job")
        }
        Spawner::Tokio => format!("tokio spawner ({concurrency} at once)"),
    };
    eprintln!("{}: the same through the {label} ...", plan.name);
    let before = cpu_seconds();
    let (time, failed) = match which {
        Spawner::Threads(isolation) => {
            let argv = plan.argv.clone();
            let jobs = plan.jobs as u64;
            tokio::task::spawn_blocking(move || spawner::run_threads(&argv, jobs, concurrency, isolation)).await??
        }
        Spawner::Tokio => spawner::run(&plan.argv, plan.jobs as u64, concurrency).await?,
    };
    let (own_cpu, jobs_cpu) = cpu_per_job(before, cpu_seconds(), plan.jobs);
    let elapsed = time.as_secs_f64();
    Ok(Line { label, setup: None, jobs: plan.jobs, elapsed, failed, own_cpu, jobs_cpu, split: None, sleeps: None })
}

async fn measure(args: &BenchArgs, plan: Plan) -> anyhow::Result<Measured> {
    if plan.jobs == 0 || plan.workers == 0 || plan.slots == 0 {
        return Err(crate::client::Usage(format!("{} needs at least 1 job, 1 worker and 1 slot", plan.name)).into());
    }
    let setups = if args.main_only { &SETUPS[..1] } else { &SETUPS[..] };
    let mut burst = Vec::new();
    for setup in setups {
        burst.push(burst_line(args, &plan, *setup).await?);
    }
    let threads = spawner_line(&plan, Spawner::Threads(spawner::Isolation::Plain)).await?;
    // Its outputs where a worker's would be, and kept as long (see `Scratch`).
    let scratch = Scratch::new(&format!("{}-isolated", plan.name));
    let out = scratch.0.join("out");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let isolated = spawner_line(&plan, Spawner::Threads(spawner::Isolation::Grouped(Some(out)))).await?;
    let tokio = spawner_line(&plan, Spawner::Tokio).await?;
    let rate = Line::rate;
    let base_rate = rate(&threads);
    let main = &burst[0];
    let ideal = plan.job_seconds.map(|s| plan.jobs as f64 * s / f64::from(plan.concurrency()));
    let failed = burst.iter().map(|l| l.failed).sum::<u64>() as usize;
    let mut json = json!({
        "workload": plan.name,
        "jobs": plan.jobs,
        "command": plan.argv,
        "mode": if args.processes { "processes" } else { "in-process" },
        "workers": plan.workers,
        "slots_per_worker": plan.slots,
        "concurrency": plan.concurrency(),
        "store": "durable",
        "tls": true,
        "elapsed_s": main.elapsed,
        "jobs_per_sec": rate(main),
        "baseline": "threads",
        "baseline_jobs_per_sec": base_rate,
        "baseline_elapsed_s": threads.elapsed,
        "ratio": rate(main) / base_rate,
        "ideal_s": ideal,
        "ideal_ratio": ideal.map(|i| i / main.elapsed),
        "failed": failed,
        "baseline_failed": threads.failed + isolated.failed + tokio.failed,
        "cpu_us_per_job": main.own_cpu,
        "baseline_cpu_us_per_job": threads.own_cpu,
        "job_cpu_us_per_job": main.jobs_cpu,
        "baseline_job_cpu_us_per_job": threads.jobs_cpu,
        "isolated_jobs_per_sec": rate(&isolated),
        "isolated_ratio": rate(&isolated) / base_rate,
        "tokio_jobs_per_sec": rate(&tokio),
        "tokio_ratio": rate(&tokio) / base_rate,
    });
    json["lines"] = burst.iter().chain([&threads, &isolated, &tokio]).map(|l| l.json(base_rate)).collect();
    for (key, line) in [("memory", burst.get(1)), ("plaintext", burst.get(2))] {
        if let Some(line) = line {
            json[format!("{key}_jobs_per_sec")] = json!(rate(line));
            json[format!("{key}_ratio")] = json!(rate(line) / base_rate);
        }
    }
    main.put_split(&mut json);
    let mut text = format!(
        "{}: {} x {}, {} worker(s) x {} slots ({} at a time), {}\n",
        plan.name,
        plan.jobs,
        plan.argv.join(" "),
        plan.workers,
        plan.slots,
        plan.concurrency(),
        if args.processes { "controller and workers as processes, burst submit --wait" } else { "in-process cluster" },
    );
    let mut rows = vec![vec![
        "".to_string(),
        "ELAPSED".into(),
        "JOBS/S".into(),
        "VS THREADS".into(),
        "FAILED".into(),
        "OWN CPU/JOB".into(),
        "JOBS' CPU/JOB".into(),
    ]];
    for line in burst.iter().chain([&threads, &isolated, &tokio]) {
        let mut own = match line.split {
            Some([c, w, cli]) => format!("{:.0} µs (controller {c:.0}, workers {w:.0}, cli {cli:.0})", line.own_cpu),
            None => format!("{:.0} µs", line.own_cpu),
        };
        if let Some([c, w]) = line.sleeps {
            own += &format!("; sleeps controller {c:.1}, workers {w:.1}");
        }
        rows.push(vec![
            line.label.clone(),
            format!("{:.2} s", line.elapsed),
            format!("{:.0}", rate(line)),
            format!("{:.2}", rate(line) / base_rate),
            line.failed.to_string(),
            own,
            format!("{:.0} µs", line.jobs_cpu),
        ]);
    }
    if let Some(ideal) = ideal {
        rows.push(vec!["ideal (work / slots)".into(), format!("{ideal:.2} s"), "".into(), "".into()]);
    }
    text += &render::table(&rows);
    text += &format!("burst / plain spawner: {:.2}", rate(main) / base_rate);
    if let Some(ideal) = ideal {
        text += &format!("; ideal / burst: {:.2}", ideal / main.elapsed);
    }
    text += "\n";
    Ok(Measured { json, text, failed })
}
