//! `burst dev`: a controller and workers in this process on loopback, a demo batch run through them, and the
//! same batch run by a plain local spawner for comparison. With `--keep` the cluster stays up for other shells.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burst_proto::v1::{JobSpec, JobState, JobStatus, ProcessSpec, SubmitJobsRequest, job_spec::Kind};
use serde_json::json;

use crate::args::DevArgs;
use crate::client::{Ctx, Usage};
use crate::commands::wait;
use crate::local::{ClusterOptions, LocalCluster};
use crate::{render, spawner};

/// What a batch run through the cluster measured.
pub struct BatchReport {
    pub elapsed: Duration,
    pub statuses: Vec<JobStatus>,
}

impl BatchReport {
    pub fn jobs_per_sec(&self) -> f64 {
        self.statuses.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn failed(&self) -> Vec<&JobStatus> {
        self.statuses.iter().filter(|s| s.state() != JobState::Succeeded).collect()
    }

    pub fn per_worker(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for s in &self.statuses {
            *counts.entry(s.worker_id.clone()).or_insert(0) += 1;
        }
        counts
    }
}

pub async fn run(ctx: &Ctx, args: DevArgs) -> anyhow::Result<u8> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let workers = args.workers.unwrap_or(cores.max(2));
    let slots = args.slots.unwrap_or(cores);
    if workers == 0 || slots == 0 {
        return Err(Usage("--workers and --slots must be at least 1".into()).into());
    }
    let own_dir = args.output_dir.is_none();
    let output_dir = args
        .output_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("burst-dev-{}", std::process::id())));
    let tls_dir = output_dir.join("certs");
    let opts = ClusterOptions {
        queue_capacity: args.queue_capacity,
        router: args.router,
        listen: args.listen.clone(),
        tls_dir: (!args.insecure).then(|| tls_dir.clone()),
        http_listen: args.http_listen,
        ..ClusterOptions::new(workers, slots, output_dir.clone())
    };
    let cluster = LocalCluster::start(opts).await?;
    let security = if args.insecure { "plaintext (--insecure)".to_string() } else { "mutual TLS".to_string() };
    eprintln!(
        "burst dev: controller at {}, {workers} workers x {slots} slots, router {}, {security}, output in {}",
        cluster.url(),
        args.router.name(),
        output_dir.display()
    );
    if let Some(http) = cluster.controller.http {
        let scheme = if args.insecure { "http" } else { "https" };
        eprintln!("burst dev: HTTP API at {scheme}://{http}/v1, dashboard at {scheme}://{http}/ui");
    }
    let argv = if args.command.is_empty() { vec!["/bin/true".to_string()] } else { args.command.clone() };
    let mut code = 0;
    if args.jobs > 0 {
        let report = run_specs(&cluster, &vec![argv.clone(); args.jobs as usize]).await?;
        let baseline = if args.no_baseline {
            None
        } else {
            let (argv, jobs, threads) = (argv.clone(), args.jobs, (workers * slots) as usize);
            Some(
                tokio::task::spawn_blocking(move || {
                    spawner::run_threads(&argv, jobs, threads, spawner::Isolation::Plain)
                })
                .await??,
            )
        };
        print_summary(ctx, &argv, &report, baseline, workers * slots);
        if !report.failed().is_empty() {
            code = 1;
        }
    }
    if args.keep {
        eprintln!("burst dev: up (Ctrl-C here to stop); in another shell:");
        eprintln!("{}", export_line(&cluster.url(), (!args.insecure).then_some(tls_dir.as_path())));
        burst_proto::shutdown_signal().await?;
    }
    cluster.shutdown().await?;
    // A temporary output directory goes with the cluster, unless --keep said to keep it.
    match (own_dir, args.keep) {
        (true, false) => {
            let _ = std::fs::remove_dir_all(&output_dir);
        }
        (true, true) => eprintln!("burst dev: jobs' output kept in {}", output_dir.display()),
        _ => {}
    }
    Ok(code)
}

/// A line to paste into a shell: the controller's address, and with TLS the admin's certificate files, each
/// quoted.
fn export_line(url: &str, tls_dir: Option<&std::path::Path>) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut line = format!("export BURST_CONTROLLER={}", quote(url));
    if let Some(d) = tls_dir {
        for (var, file) in
            [("BURST_TLS_CA", "ca.pem"), ("BURST_TLS_CERT", "admin.pem"), ("BURST_TLS_KEY", "admin-key.pem")]
        {
            line += &format!(" {var}={}", quote(&d.join(file).display().to_string()));
        }
    }
    line
}

/// Runs one process job per argv on `cluster` and waits for all of them, with a progress bar on a terminal;
/// the clock runs from the first submit to the last terminal status.
pub async fn run_specs(cluster: &LocalCluster, argvs: &[Vec<String>]) -> anyhow::Result<BatchReport> {
    let mut specs = Vec::with_capacity(argvs.len());
    for argv in argvs {
        let (command, args) = argv.split_first().ok_or_else(|| Usage("a job needs a command".into()))?;
        specs.push(JobSpec {
            kind: Some(Kind::Process(ProcessSpec { command: command.clone(), args: args.to_vec() })),
            ..JobSpec::default()
        });
    }
    let mut client = cluster.client().await?;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(specs.len());
    for chunk in specs.chunks(1_000) {
        let req = SubmitJobsRequest { specs: chunk.to_vec() };
        let resp = client.submit_jobs(req).await.map_err(anyhow::Error::from)?;
        ids.extend(resp.into_inner().jobs.into_iter().map(|j| j.job_id));
    }
    let statuses = wait::wait_all(&mut client, &ids, None, true).await?;
    Ok(BatchReport { elapsed: started.elapsed(), statuses })
}

fn print_summary(ctx: &Ctx, argv: &[String], report: &BatchReport, baseline: Option<(Duration, u64)>, slots: u32) {
    let per_worker = report.per_worker();
    let failed = report.failed();
    let base_rate = baseline.map(|(t, _)| report.statuses.len() as f64 / t.as_secs_f64().max(1e-9));
    if ctx.json() {
        let v = json!({
            "jobs": report.statuses.len(),
            "command": argv,
            "elapsed_s": report.elapsed.as_secs_f64(),
            "jobs_per_sec": report.jobs_per_sec(),
            "failed": failed.len(),
            "per_worker": per_worker,
            "concurrency": slots,
            "baseline_jobs_per_sec": base_rate,
            "ratio": base_rate.map(|b| report.jobs_per_sec() / b),
        });
        println!("{v}");
        return;
    }
    let n = report.statuses.len();
    println!("ran {n} x {}", argv.join(" "));
    println!(
        "  burst:   {n} jobs in {:.2} s = {:.0} jobs/s, {} failed",
        report.elapsed.as_secs_f64(),
        report.jobs_per_sec(),
        failed.len()
    );
    if let (Some((t, spawn_failed)), Some(rate)) = (baseline, base_rate) {
        println!(
            "  spawner: {n} jobs in {:.2} s = {rate:.0} jobs/s on {slots} threads, {spawn_failed} failed (plain local processes)",
            t.as_secs_f64()
        );
        println!("  ratio:   burst runs at {:.2}x the local spawner's rate", report.jobs_per_sec() / rate);
    }
    let workers: Vec<String> = per_worker.iter().map(|(w, c)| format!("{w} {c}")).collect();
    println!("  per worker: {}", workers.join(", "));
    for s in failed.iter().take(5) {
        println!("  failed: {} on {}: {}", s.job_id, s.worker_id, render::outcome(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_line_is_one_shell_command() {
        let line = export_line("https://127.0.0.1:5", Some(std::path::Path::new("/tmp/it's")));
        assert_eq!(
            line,
            "export BURST_CONTROLLER='https://127.0.0.1:5' BURST_TLS_CA='/tmp/it'\\''s/ca.pem' \
             BURST_TLS_CERT='/tmp/it'\\''s/admin.pem' BURST_TLS_KEY='/tmp/it'\\''s/admin-key.pem'"
        );
        let out =
            std::process::Command::new("sh").arg("-c").arg(format!("{line}; echo \"$BURST_TLS_CA\"")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/tmp/it's/ca.pem\n", "the shell reads it back");
        assert_eq!(export_line("http://x:1", None), "export BURST_CONTROLLER='http://x:1'");
    }
}
