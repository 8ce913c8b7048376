//! `dispatch`: the scheduler alone, in this process, with nothing around it (no RPC, no store I/O, no worker
//! tasks): `jobs` jobs submitted, then leased, started and finished by simulated workers until all are done,
//! once with `--workers` workers and once with 2, the same 1,024 slots in all. What it isolates is what the
//! scheduler does per job under its lock as the cluster grows; `w4` measures the whole controller.

use std::sync::Arc;
use std::time::Instant;

use burst_controller::router::RouterKind;
use burst_controller::scheduler::{Poll, Scheduler, Wants};
use burst_controller::store::MemoryStore;
use burst_proto::v1::job_spec::Kind;
use burst_proto::v1::{JobResult, JobSpec, Lease, LeaseRef, ProcessSpec, Reason, Resources, WorkerInfo};
use futures::FutureExt;
use serde_json::json;

use super::Measured;
use crate::args::BenchArgs;
use crate::client::Usage;

/// Slots in all, whatever the number of workers.
const SLOTS: u32 = 1_024;

/// Microseconds of wall time per job through submit, lease, start and finish with `workers` workers.
fn run(jobs: usize, workers: u32) -> anyhow::Result<f64> {
    let (events, _) = tokio::sync::broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, Arc::new(MemoryStore::default()), events);
    let slots = (SLOTS / workers).max(1);
    let mut sessions = Vec::new();
    for i in 0..workers {
        let info = WorkerInfo {
            worker_id: format!("worker-{i:04}"),
            advertise_addr: format!("127.0.0.1:{}", 10_000 + i),
            slots,
            queue_capacity: 0,
            resources: Some(Resources { cpu_millis: 64_000, memory_bytes: 1 << 36, gpus: 0 }),
            labels: Default::default(),
            pool: String::new(),
        };
        let (session, _, _) = s.register(info.clone(), &[], Wants::default(), 0);
        sessions.push((info.worker_id, session));
    }
    let spec = JobSpec {
        kind: Some(Kind::Process(ProcessSpec { command: "/bin/true".into(), args: vec![] })),
        ..JobSpec::default()
    };
    let started = Instant::now();
    let mut submitted = 0;
    while submitted < jobs {
        let batch = (jobs - submitted).min(1_000);
        let (_, durable) = s.submit(vec![spec.clone(); batch], 1).map_err(anyhow::Error::msg)?;
        let _ = durable.now_or_never();
        submitted += batch;
    }
    let mut done = 0;
    while done < jobs {
        let before = done;
        for (worker, session) in &sessions {
            let Ok((Poll::Ready { leases, .. }, _)) = s.take_leases(worker, *session) else { continue };
            let refs: Vec<LeaseRef> = leases.iter().map(Lease::to_ref).collect();
            let _ = s.started(worker, *session, &refs, 2).map_err(anyhow::Error::msg)?;
            let results = refs
                .into_iter()
                .map(|r| JobResult {
                    lease: Some(r),
                    reason: Reason::Exited as i32,
                    exit_code: Some(0),
                    ..JobResult::default()
                })
                .collect::<Vec<_>>();
            done += results.len();
            let _ = s.finished(worker, *session, results, 3).map_err(anyhow::Error::msg)?;
        }
        anyhow::ensure!(done > before, "dispatch: no progress after {done} of {jobs} jobs");
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / jobs as f64)
}

pub fn dispatch(args: &BenchArgs) -> anyhow::Result<Measured> {
    let jobs = args.jobs.unwrap_or(200_000);
    let workers = args.workers.unwrap_or(200);
    if jobs == 0 || workers == 0 || workers > SLOTS {
        return Err(Usage(format!("the dispatch workload needs at least 1 job and 1 to {SLOTS} workers")).into());
    }
    eprintln!("dispatch: {jobs} jobs through the scheduler alone, {workers} workers and 2, {SLOTS} slots in all ...");
    let many = run(jobs, workers)?;
    let two = run(jobs, 2)?;
    let ratio = many / two;
    let text = format!(
        "dispatch: {jobs} jobs, the scheduler alone, {SLOTS} slots in all\n  {workers} workers: {many:.2} µs per job\n  \
         2 workers: {two:.2} µs per job\n  ratio: {ratio:.2} (1.00: the cost per job does not grow with the workers)\n"
    );
    let json = json!({
        "workload": "dispatch",
        "jobs": jobs,
        "workers": workers,
        "us_per_job": many,
        "baseline": "the same with 2 workers",
        "baseline_us_per_job": two,
        "ratio": ratio,
    });
    Ok(Measured { json, text, failed: 0 })
}
