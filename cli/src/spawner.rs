//! The baseline burst is measured against: a plain local spawner that runs the same processes at the same
//! concurrency, with nothing in between (no RPC, no queue, output discarded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

/// Runs `argv` `count` times with at most `concurrency` at once; returns the wall time and the failures.
pub async fn run(argv: &[String], count: u64, concurrency: usize) -> anyhow::Result<(Duration, u64)> {
    let (program, args) = argv.split_first().context("the spawner needs a command")?;
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = slots.clone().acquire_owned().await.context("spawner semaphore closed")?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        tasks.spawn(async move {
            let ok = matches!(cmd.status().await, Ok(s) if s.success());
            drop(permit);
            ok
        });
    }
    let mut failed = 0;
    while let Some(ok) = tasks.join_next().await {
        if !ok.unwrap_or(false) {
            failed += 1;
        }
    }
    Ok((started.elapsed(), failed))
}
