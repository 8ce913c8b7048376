//! The baselines burst is measured against: plain local spawners that run the same processes at the same
//! concurrency with nothing in between (no RPC, no queue, output discarded).
//!
//! - [`run_threads`] is the machine's real limit: N OS threads, each looping `std::process::Command::status()`.
//! - [`Isolation::Grouped`] makes the same threads run each job with the worker's own supervision
//!   ([`burst_worker::executor::run_supervised`]: its own process group, the variables burst gives it, its output
//!   piped into files made once there is output, its end seen on a pidfd, its group killed when it ends), without
//!   the worker's RPC, queue, store, threads or cgroup (a pids cgroup per thread measured the same here): what a
//!   scheduler that isolates jobs this way could reach at best.
//! - [`run`] does the same on tokio (`tokio::process`, a semaphore): what an async program gets, kept as a second
//!   line and for `burst dev`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

/// How [`run_threads`] runs each job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// `Command::status()`, output discarded.
    Plain,
    /// Supervised as the worker does (see the module docs); what job `n` prints goes to the directory, which must
    /// exist, as the worker names a job's files (`spawner-<n>.stdout`, `.stderr`); discarded without one.
    Grouped(Option<PathBuf>),
}

/// Runs `argv` `count` times on `concurrency` OS threads, each spawning and waiting for one process at a time;
/// returns the wall time and the failures. Blocks the calling thread.
pub fn run_threads(
    argv: &[String],
    count: u64,
    concurrency: usize,
    isolation: Isolation,
) -> anyhow::Result<(Duration, u64)> {
    let (program, args) = argv.split_first().context("the spawner needs a command")?;
    // Relaxed: each counter only hands out or counts jobs; the joins below order the final reads.
    let next = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.max(1) {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let mut cmd = std::process::Command::new(program);
                    cmd.args(args).stdin(Stdio::null());
                    let status = match &isolation {
                        Isolation::Plain => cmd.stdout(Stdio::null()).stderr(Stdio::null()).status(),
                        Isolation::Grouped(dir) => grouped(cmd, n, dir.as_deref()),
                    };
                    if !matches!(status, Ok(s) if s.success()) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Ok((started.elapsed(), failed.into_inner()))
}

/// Runs `cmd`, job `n`, as [`Isolation::Grouped`] says: with the variables burst gives a job, under the worker's
/// own supervision ([`burst_worker::executor::run_supervised`]).
fn grouped(mut cmd: std::process::Command, n: u64, dir: Option<&Path>) -> std::io::Result<std::process::ExitStatus> {
    let id = format!("spawner-{n}");
    cmd.env("BURST_JOB_ID", &id)
        .env("BURST_ATTEMPT", "1")
        .env("BURST_WORKER_ID", "spawner")
        .env(burst_worker::sweep::RUN_VAR, format!("spawner/{id}/1"));
    // Without a directory nothing is kept (no file is made for a cap of 0).
    let (paths, cap) = match dir {
        Some(dir) => (burst_worker::executor::output_paths(dir, &id), burst_worker::config::DEFAULT_OUTPUT_CAP),
        None => (Ok((PathBuf::new(), PathBuf::new())), 0),
    };
    let (out, err) = paths.map_err(std::io::Error::other)?;
    burst_worker::executor::run_supervised(cmd, (&out, &err), cap)
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
        for isolation in [Isolation::Plain, Isolation::Grouped(None)] {
            let (_, failed) = run_threads(&["/bin/true".into()], 7, 3, isolation.clone()).unwrap();
            assert_eq!(failed, 0, "{isolation:?}");
            let (_, failed) = run_threads(&["/bin/false".into()], 5, 2, isolation.clone()).unwrap();
            assert_eq!(failed, 5, "{isolation:?}");
            assert!(run_threads(&[], 1, 1, isolation).is_err());
        }
    }

    #[test]
    fn an_isolated_job_is_read_to_its_end_and_its_group_goes_with_it() {
        let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".into(), script.into()];
        // More output than a pipe holds: read while it runs, or it would never end.
        let (_, failed) =
            run_threads(&sh("head -c 1000000 /dev/zero; head -c 200000 /dev/zero >&2"), 2, 2, Isolation::Grouped(None))
                .unwrap();
        assert_eq!(failed, 0);
        // A process left behind holding the pipes is killed with the job's group, so the job ends with its shell.
        let (took, failed) = run_threads(&sh("sleep 30 & exit 3"), 1, 1, Isolation::Grouped(None)).unwrap();
        assert_eq!(failed, 1);
        assert!(took < Duration::from_secs(20), "took {took:?}: the group was not killed");
        // One that left the group (before the job ended: the job waits for its sign) holds them until the drain
        // limit.
        let dir = tempfile::tempdir().unwrap();
        let sign = dir.path().join("left");
        let script = format!(
            "setsid sh -c 'touch {0}; exec sleep 5' & i=0; while [ ! -e {0} ] && [ $i -lt 1000000 ]; do i=$((i+1)); done",
            sign.display()
        );
        let (took, failed) = run_threads(&sh(&script), 1, 1, Isolation::Grouped(None)).unwrap();
        assert!(sign.exists());
        assert_eq!(failed, 0);
        let limit = burst_worker::executor::PIPE_DRAIN_LIMIT;
        assert!(took >= limit && took < Duration::from_secs(5), "took {took:?}");
    }

    #[test]
    fn an_isolated_jobs_output_goes_to_its_files_made_only_for_what_it_printed() {
        let dir = tempfile::tempdir().unwrap();
        let echo = ["/bin/echo".to_string(), "hello".into()];
        let (_, failed) = run_threads(&echo, 3, 2, Isolation::Grouped(Some(dir.path().into()))).unwrap();
        assert_eq!(failed, 0);
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["spawner-0.stdout", "spawner-1.stdout", "spawner-2.stdout"]);
        for name in names {
            assert_eq!(std::fs::read_to_string(dir.path().join(name)).unwrap(), "hello\n");
        }
    }
}
