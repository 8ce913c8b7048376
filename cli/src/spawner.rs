//! The baselines burst is measured against: plain local spawners that run the same processes at the same
//! concurrency with nothing in between (no RPC, no queue, output discarded).
//!
//! - [`run_threads`] is the machine's real limit: N OS threads, each looping `std::process::Command::status()`.
//! - [`Isolation::Grouped`] makes the same threads do for each job what burst's worker does around it, without
//!   its RPC, queue or store: the job in a process group of its own, its output piped and read until closed, its
//!   end seen on a pidfd in the same `poll(2)`, its group killed once it ended. Not its cgroup: a pids cgroup per
//!   thread measured the same here. What a scheduler that isolates jobs this way could reach at best.
//! - [`run`] does the same on tokio (`tokio::process`, a semaphore): what an async program gets, kept as a second
//!   line and for `burst dev`.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

/// How [`run_threads`] runs each job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// `Command::status()`, output discarded.
    Plain,
    /// In a process group of its own, its output piped and read (see the module docs).
    Grouped,
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
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let mut cmd = std::process::Command::new(program);
                    cmd.args(args).stdin(Stdio::null());
                    let status = match isolation {
                        Isolation::Plain => cmd.stdout(Stdio::null()).stderr(Stdio::null()).status(),
                        Isolation::Grouped => grouped(&mut cmd),
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

/// Runs `cmd` as [`Isolation::Grouped`] says.
fn grouped(cmd: &mut std::process::Command) -> std::io::Result<std::process::ExitStatus> {
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;

    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).spawn()?;
    let pid = child.id() as i32;
    // SAFETY: pidfd_open(2) of our own unreaped child.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    // SAFETY: a descriptor just returned to us and owned by nothing else.
    let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) });
    let mut pipes = [
        child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
        child.stderr.take().map(|p| File::from(OwnedFd::from(p))),
    ];
    let mut buf = [0u8; 512];
    let mut ended = false;
    while !ended || pipes.iter().any(Option::is_some) {
        let mut fds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; 3];
        for (slot, pipe) in fds.iter_mut().zip(&pipes) {
            slot.fd = pipe.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        }
        if !ended {
            fds[2].fd = pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        }
        // Without a pidfd the end is looked for every millisecond.
        let wait = if !ended && pidfd.is_none() { 1 } else { -1 };
        // SAFETY: poll(2) on an array of pollfds we own, whose length we pass; descriptors of -1 are ignored.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
        for (slot, pipe) in fds.iter().zip(&mut pipes) {
            if slot.revents != 0 && pipe.as_mut().is_some_and(|p| p.read(&mut buf).map_or(true, |n| n == 0)) {
                *pipe = None;
            }
        }
        if !ended && (fds[2].revents != 0 || pidfd.is_none()) {
            // SAFETY: waitid(2) into a struct we own; WNOWAIT leaves the child to be reaped below.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let flags = libc::WEXITED | libc::WNOWAIT | libc::WNOHANG;
            // SAFETY: as above.
            let ok = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) } == 0;
            // SAFETY: si_pid of a siginfo that waitid filled (0 while the child runs).
            if ok && unsafe { info.si_pid() } == pid {
                // As burst's worker does: what the job left in its group goes with it, while the group's
                // leader, not yet reaped, keeps its id from being anyone else's.
                // SAFETY: kill(2) of our child's process group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                ended = true;
            }
        }
    }
    child.wait()
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
        for isolation in [Isolation::Plain, Isolation::Grouped] {
            let (_, failed) = run_threads(&["/bin/true".into()], 7, 3, isolation).unwrap();
            assert_eq!(failed, 0, "{isolation:?}");
            let (_, failed) = run_threads(&["/bin/false".into()], 5, 2, isolation).unwrap();
            assert_eq!(failed, 5, "{isolation:?}");
            assert!(run_threads(&[], 1, 1, isolation).is_err());
        }
    }

    #[test]
    fn an_isolated_job_is_read_to_its_end_and_its_group_goes_with_it() {
        let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".into(), script.into()];
        // More output than a pipe holds: read while it runs, or it would never end.
        let (_, failed) =
            run_threads(&sh("head -c 1000000 /dev/zero; head -c 200000 /dev/zero >&2"), 2, 2, Isolation::Grouped)
                .unwrap();
        assert_eq!(failed, 0);
        // A process left behind holding the pipes is killed with the job's group, so the job ends with its shell.
        let (took, failed) = run_threads(&sh("sleep 30 & exit 3"), 1, 1, Isolation::Grouped).unwrap();
        assert_eq!(failed, 1);
        assert!(took < Duration::from_secs(20), "took {took:?}: the group was not killed");
    }
}
