//! The baselines burst is measured against: plain local spawners that run the same processes at the same
//! concurrency with nothing in between (no RPC, no queue, output discarded).
//!
//! - [`run_threads`] is the machine's real limit: N OS threads, each looping `std::process::Command::status()`.
//! - [`Isolation::Grouped`] makes the same threads do for each job what burst's worker does around it, without
//!   its RPC, queue, store or threads between: the job in a process group of its own with the variables burst
//!   gives it, its output piped and read until closed (into files, created once there is something to write,
//!   where the worker would write them), its end seen on a pidfd in the same `poll(2)` as the pipes and a stop
//!   eventfd, its group killed once it ended. Not its cgroup: a pids cgroup per thread measured the same here.
//!   What a scheduler that isolates jobs this way could reach at best.
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
    /// In a process group of its own, its output piped and read (see the module docs); what it prints goes to
    /// `<n>.out` and `<n>.err` in the directory, which must exist (discarded without one).
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
                        Isolation::Grouped(dir) => grouped(&mut cmd, n, dir.as_deref()),
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

/// As the worker does: how long a job's pipes are read after it ended before they are given up (a process that
/// left its group holds them), and how often its end is looked for without a pidfd.
const PIPE_DRAIN_LIMIT: Duration = Duration::from_secs(2);
const EXIT_CHECK_WITHOUT_PIDFD: Duration = Duration::from_millis(10);

/// Runs `cmd`, job `n`, as [`Isolation::Grouped`] says.
fn grouped(cmd: &mut std::process::Command, n: u64, dir: Option<&Path>) -> std::io::Result<std::process::ExitStatus> {
    use std::fs::File;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;

    // SAFETY: eventfd(2) takes a count and flags and returns a new descriptor or -1.
    let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    // SAFETY: a descriptor just returned to us and owned by nothing else.
    let _stop = (stop >= 0).then(|| unsafe { OwnedFd::from_raw_fd(stop) });
    let id = format!("spawner-{n}");
    let mut child = cmd
        .env("BURST_JOB_ID", &id)
        .env("BURST_ATTEMPT", "1")
        .env("BURST_WORKER_ID", "spawner")
        .env(burst_worker::sweep::RUN_VAR, format!("spawner/{id}/1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pid = child.id() as i32;
    // SAFETY: pidfd_open(2) of our own unreaped child.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    // SAFETY: a descriptor just returned to us and owned by nothing else.
    let mut pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) });
    let mut pipes = [
        child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
        child.stderr.take().map(|p| File::from(OwnedFd::from(p))),
    ];
    let names = dir.map(|d| [d.join(format!("{n}.out")), d.join(format!("{n}.err"))]);
    let mut files: [Option<File>; 2] = [None, None];
    let mut buf = [0u8; 512];
    // Set once the job ended: until then, its end is waited for; after, its pipes, up to the drain limit.
    let mut drain_until: Option<Instant> = None;
    while drain_until.is_none_or(|until| Instant::now() < until && pipes.iter().any(Option::is_some)) {
        let mut fds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; 4];
        for (slot, pipe) in fds.iter_mut().zip(&pipes) {
            slot.fd = pipe.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        }
        if drain_until.is_none() {
            fds[2].fd = pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            fds[3].fd = stop;
        }
        let wait = match drain_until {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None if pidfd.is_none() => EXIT_CHECK_WITHOUT_PIDFD,
            None => Duration::MAX,
        };
        // Rounded up: a wait of 0 ms before a deadline would spin.
        let wait_ms = match wait {
            Duration::MAX => -1,
            wait => wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: poll(2) on an array of pollfds we own, whose length we pass; descriptors of -1 are ignored.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        for i in 0..2 {
            if fds[i].revents == 0 {
                continue;
            }
            let Some(pipe) = pipes[i].as_mut() else { continue };
            match std::io::Read::read(pipe, &mut buf) {
                Ok(0) => pipes[i] = None,
                Ok(got) => {
                    if files[i].is_none()
                        && let Some(names) = &names
                    {
                        files[i] = File::create(&names[i]).ok();
                    }
                    if let Some(file) = files[i].as_mut() {
                        let _ = std::io::Write::write_all(file, &buf[..got]);
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) => {}
                Err(_) => pipes[i] = None,
            }
        }
        if drain_until.is_some() || (fds[2].revents == 0 && pidfd.is_some()) {
            continue;
        }
        // SAFETY: a zeroed siginfo_t is valid; waitid(2) fills it. WNOWAIT leaves the child to be reaped below.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOWAIT | libc::WNOHANG;
        // SAFETY: waitid(2) into the struct above.
        let found = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        // SAFETY: si_pid of a siginfo that waitid filled (0 while the child runs).
        let ended = found == 0 && unsafe { info.si_pid() } == pid;
        if ended {
            // As burst's worker does: what the job left in its group goes with it, while the group's leader, not
            // yet reaped, keeps its id from being anyone else's.
            // SAFETY: kill(2) of our child's process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        if ended || found != 0 {
            drain_until = Some(Instant::now() + PIPE_DRAIN_LIMIT);
        } else {
            // The pidfd says it ended but waitid does not show it yet (a tracer holds it): look every few ms.
            pidfd = None;
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
        assert!(took >= PIPE_DRAIN_LIMIT && took < Duration::from_secs(5), "took {took:?}");
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
        assert_eq!(names, ["0.out", "1.out", "2.out"]);
        for name in names {
            assert_eq!(std::fs::read_to_string(dir.path().join(name)).unwrap(), "hello\n");
        }
    }
}
