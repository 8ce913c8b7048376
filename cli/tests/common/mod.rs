//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use burst_cli::local::{ClusterOptions, LocalCluster};
use burst_proto::v1::{JobSpec, ProcessSpec, SubmitJobsRequest, job_spec::Kind};

pub fn process(command: &str, args: &[&str]) -> JobSpec {
    JobSpec {
        kind: Some(Kind::Process(ProcessSpec {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        })),
        ..JobSpec::default()
    }
}

pub fn sh(script: &str) -> JobSpec {
    process("/bin/sh", &["-c", script])
}

/// Submits `specs` in one batch; returns their ids in order.
pub async fn submit(client: &mut burst_cli::client::Client, specs: Vec<JobSpec>) -> Vec<String> {
    let resp = client.submit_jobs(SubmitJobsRequest { specs }).await.expect("batch accepted").into_inner();
    resp.jobs.into_iter().map(|j| j.job_id).collect()
}

pub async fn cluster(opts: ClusterOptions) -> LocalCluster {
    LocalCluster::start(opts).await.expect("local cluster starts")
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
