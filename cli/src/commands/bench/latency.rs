//! W3: dispatch latency on an idle cluster. Jobs go one at a time: each is submitted only after the one before
//! ended, and a watch stream opened beforehand says when it ran and when it ended; times are taken on this
//! side, from just before the submit call.

use std::time::{Duration, Instant};

use burst_proto::v1::job_spec::Kind;
use burst_proto::v1::{JobSpec, JobState, ProcessSpec, SubmitJobRequest, WatchJobsRequest};
use serde_json::json;

use super::processes::Shape;
use super::throughput::{SETUPS, Setup};
use super::{AnyCluster, Measured, Scratch};
use crate::args::BenchArgs;
use crate::progress::Progress;
use crate::render;

/// Jobs run first and not counted: connections, threads and caches warm up.
const WARM_UP: usize = 20;

/// The `p`th percentile (0-100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One setup's latencies: submit to running and to terminal, sorted, and the jobs that did not succeed.
struct Latencies {
    to_running: Vec<Duration>,
    to_end: Vec<Duration>,
    failed: usize,
}

pub async fn w3(args: &BenchArgs) -> anyhow::Result<Measured> {
    let jobs = args.jobs.unwrap_or(500);
    let (workers, slots) = (args.workers.unwrap_or(2), args.slots.unwrap_or(2));
    if workers == 0 || slots == 0 {
        return Err(crate::client::Usage("w3 needs at least 1 worker and 1 slot".into()).into());
    }
    let setups = if args.main_only { &SETUPS[..1] } else { &SETUPS[..] };
    let mut runs = Vec::new();
    for setup in setups {
        eprintln!("w3: {jobs} x /bin/true, one at a time, {workers} workers x {slots} slots, {} ...", setup.label);
        runs.push(latencies(args, *setup, jobs, workers, slots).await?);
    }
    let p = |v: &[Duration], q| ms(percentile(v, q));
    let main = &runs[0];
    let failed = runs.iter().map(|r| r.failed).sum();
    let mut json = json!({
        "workload": "w3",
        "jobs": jobs,
        "workers": workers,
        "slots_per_worker": slots,
        "mode": if args.processes { "processes" } else { "in-process" },
        "store": "durable",
        "tls": true,
        "jobs_per_sec": jobs as f64 / main.to_end.iter().map(Duration::as_secs_f64).sum::<f64>().max(1e-9),
        "p50_ms": p(&main.to_running, 50.0),
        "p99_ms": p(&main.to_running, 99.0),
        "running_p50_ms": p(&main.to_running, 50.0),
        "running_p99_ms": p(&main.to_running, 99.0),
        "terminal_p50_ms": p(&main.to_end, 50.0),
        "terminal_p99_ms": p(&main.to_end, 99.0),
        "failed": failed,
    });
    let mut lines = Vec::new();
    let mut rows = vec![vec![
        "".to_string(),
        "RUNNING P50".into(),
        "RUNNING P99".into(),
        "TERMINAL P50".into(),
        "TERMINAL P99".into(),
    ]];
    for (setup, run) in setups.iter().zip(&runs) {
        lines.push(json!({
            "line": setup.label,
            "store": if setup.durable { "durable" } else { "memory" },
            "tls": setup.tls,
            "running_p50_ms": p(&run.to_running, 50.0),
            "running_p99_ms": p(&run.to_running, 99.0),
            "terminal_p50_ms": p(&run.to_end, 50.0),
            "terminal_p99_ms": p(&run.to_end, 99.0),
            "failed": run.failed,
        }));
        rows.push(vec![
            setup.label.to_string(),
            format!("{:.2} ms", p(&run.to_running, 50.0)),
            format!("{:.2} ms", p(&run.to_running, 99.0)),
            format!("{:.2} ms", p(&run.to_end, 50.0)),
            format!("{:.2} ms", p(&run.to_end, 99.0)),
        ]);
    }
    json["lines"] = serde_json::Value::Array(lines);
    let mut text = format!(
        "w3: {jobs} x /bin/true one at a time on an idle cluster ({workers} workers x {slots} slots), submit -> running and -> terminal\n"
    );
    text += &render::table(&rows);
    Ok(Measured { json, text, failed })
}

async fn latencies(args: &BenchArgs, setup: Setup, jobs: usize, workers: u32, slots: u32) -> anyhow::Result<Latencies> {
    let scratch = Scratch::new("w3");
    let shape = Shape {
        workers,
        slots,
        queue_capacity: args.queue_capacity,
        durable: setup.durable,
        tls: setup.tls,
        dir: &scratch.0,
    };
    let cluster = AnyCluster::start(args.processes, &shape).await?;
    let mut client = cluster.client().await?;
    let mut watch = client.watch_jobs(WatchJobsRequest::default()).await.map_err(anyhow::Error::from)?.into_inner();
    let spec = JobSpec {
        kind: Some(Kind::Process(ProcessSpec { command: "/bin/true".into(), args: vec![] })),
        ..JobSpec::default()
    };
    let bar = Progress::new(true, (WARM_UP + jobs) as u64, "w3");
    let (mut to_running, mut to_end) = (Vec::with_capacity(jobs), Vec::with_capacity(jobs));
    let mut failed = 0;
    for i in 0..WARM_UP + jobs {
        let start = Instant::now();
        let req = SubmitJobRequest { spec: Some(spec.clone()) };
        let id = client.submit_job(req).await.map_err(anyhow::Error::from)?.into_inner().job_id;
        let mut running = None;
        let ended = loop {
            let status = watch.message().await?.ok_or_else(|| anyhow::anyhow!("the watch stream ended"))?;
            if status.job_id != id {
                continue;
            }
            match status.state() {
                JobState::Running => running = running.or(Some(start.elapsed())),
                JobState::Succeeded | JobState::Failed | JobState::Cancelled => break status,
                _ => {}
            }
        };
        let end = start.elapsed();
        bar.inc(1);
        if i < WARM_UP {
            continue;
        }
        if ended.state() != JobState::Succeeded {
            failed += 1;
        }
        // A start and end that fall into one watch message leave no separate running time: count the end.
        to_running.push(running.unwrap_or(end));
        to_end.push(end);
    }
    bar.finish();
    drop(watch);
    cluster.shutdown().await?;
    to_running.sort();
    to_end.sort();
    Ok(Latencies { to_running, to_end, failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
