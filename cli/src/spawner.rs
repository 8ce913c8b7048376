//! The baselines burst is measured against: plain local spawners that run the same processes at the same
//! concurrency with nothing in between (no RPC, no queue, output discarded).
//!
//! - [`run_threads`] is the machine's real limit: N OS threads, each looping `std::process::Command::status()`.
//! - [`run`] does the same on tokio (`tokio::process`, a semaphore): what an async program gets, kept as a second
//!   line and for `burst dev`.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

/// Runs `argv` `count` times on `concurrency` OS threads, each spawning and waiting for one process at a time;
/// returns the wall time and the failures. Blocks the calling thread.
pub fn run_threads(argv: &[String], count: u64, concurrency: usize) -> anyhow::Result<(Duration, u64)> {
    let (program, args) = argv.split_first().context("the spawner needs a command")?;
    // Relaxed: each counter only hands out or counts jobs; the joins below order the final reads.
    let next = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.max(1) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let status = std::process::Command::new(program)
                        .args(args)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    if !matches!(status, Ok(s) if s.success()) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Ok((started.elapsed(), failed.into_inner()))
}

/// Runs `argv` `count` times with at most `concurrency` at once on tokio; returns the wall time and the failures.
pub async fn run(argv: &[String], count: u64, concurrency: usize) -> anyhow::Result<(Duration, u64)> {
    let (program, args) = argv.split_first().context("the spawner needs a command")?;
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = slots.clone().acquire_owned().await.context("spawner semaphore closed")?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_spawner_runs_every_job_and_counts_failures() {
        let (_, failed) = run_threads(&["/bin/true".into()], 7, 3).unwrap();
        assert_eq!(failed, 0);
        let (_, failed) = run_threads(&["/bin/false".into()], 5, 2).unwrap();
        assert_eq!(failed, 5);
        assert!(run_threads(&[], 1, 1).is_err());
    }
}
