//! Kills what a job left behind. Killing a job's process group at its end takes every descendant that stayed in
//! the group, but one that called `setsid` (a daemonizing grandchild) is in a group of its own. Such a process
//! still carries the job's environment, [`RUN_VAR`] included, which names the run exactly (worker, job, lease
//! epoch): once a second the sweeper scans `/proc` and SIGKILLs every process whose run ended here. A job's
//! escapees therefore outlive it by about a second at most; the scan costs one pass over `/proc` per second, not
//! per job; and another run of the same job (on another worker of the same host, or a later attempt) is never
//! touched. The scan reads `/proc` first and only then looks each run it found up among the ended ones, so the
//! list of ended runs (a minute of them, at most [`MAX_REMEMBERED`]) is never copied.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// The environment variable that names a run: `<worker id>/<job id>/<epoch>`.
pub const RUN_VAR: &str = "BURST_RUN";

/// The value of [`RUN_VAR`] for one run.
pub fn run_token(worker: &str, job: &str, epoch: u64) -> String {
    format!("{worker}/{job}/{epoch}")
}

/// How often `/proc` is scanned.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How long a finished job's escapees are hunted: a process that re-reads its environment late is rare, and the
/// list must stay short.
const REMEMBER: Duration = Duration::from_secs(60);
/// Most ended runs remembered, whatever the job rate: the oldest go first past it.
pub const MAX_REMEMBERED: usize = 100_000;

#[derive(Default)]
pub struct Sweeper {
    /// Guards a push, an expiry or a lookup, never the `/proc` scan.
    ended: Mutex<Ended>,
}

/// Runs that ended recently: in order (to forget the oldest) and as a set (to look a run up).
#[derive(Default)]
struct Ended {
    order: VecDeque<(Instant, Arc<str>)>,
    set: HashSet<Arc<str>>,
}

impl Sweeper {
    /// Notes that a run (a [`run_token`]) ended: its leftovers are fair game.
    pub fn run_ended(&self, token: String) {
        let token: Arc<str> = token.into();
        let mut ended = self.lock();
        if ended.set.contains(&token) {
            return;
        }
        if ended.order.len() >= MAX_REMEMBERED
            && let Some((_, oldest)) = ended.order.pop_front()
        {
            ended.set.remove(&oldest);
        }
        ended.set.insert(token.clone());
        ended.order.push_back((Instant::now(), token));
    }

    /// Ended runs remembered now.
    pub fn remembered(&self) -> usize {
        self.lock().set.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ended> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets runs that ended more than [`REMEMBER`] before `now`.
    fn expire(&self, now: Instant) -> bool {
        let mut ended = self.lock();
        while ended.order.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > REMEMBER) {
            if let Some((_, token)) = ended.order.pop_front() {
                ended.set.remove(&token);
            }
        }
        !ended.set.is_empty()
    }

    /// One pass: forgets jobs ended long ago, then kills the leftovers of the others. Returns how many it killed.
    pub fn sweep(&self) -> usize {
        if !self.expire(Instant::now()) {
            return 0;
        }
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
        let mut killed = 0;
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if pid as u32 == me {
                continue;
            }
            let Some(run) = run_of(pid) else { continue };
            if self.lock().set.contains(run.as_str()) {
                // SAFETY: kill(2) on a pid we just read; it touches no memory of ours. At worst the pid was reused
                // in between by a process that also carries this job's id, i.e. another leftover.
                let r = unsafe { libc::kill(pid, libc::SIGKILL) };
                if r == 0 {
                    killed += 1;
                    warn!(run = %run, pid, "killed a process that outlived its job");
                }
            }
        }
        killed
    }
}

/// The run named in a process's environment, if it has one and we may read it.
/// Processes alive now that belong to the run `token`.
pub fn processes_of(token: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| run_of(*pid).as_deref() == Some(token))
        .count()
}

fn run_of(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{RUN_VAR}=");
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
}

pub async fn sweep_loop(sweeper: std::sync::Arc<Sweeper>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = sweeper.clone();
        let killed = tokio::task::spawn_blocking(move || s.sweep()).await.unwrap_or(0);
        if killed > 0 {
            debug!(killed, "sweep done");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_runs_are_remembered_for_a_minute_and_a_bounded_number() {
        let s = Sweeper::default();
        for i in 0..(MAX_REMEMBERED + 10) {
            s.run_ended(run_token("w", &i.to_string(), 1));
        }
        assert_eq!(s.remembered(), MAX_REMEMBERED, "the oldest go first");
        s.run_ended(run_token("w", "5000", 1));
        assert_eq!(s.remembered(), MAX_REMEMBERED, "a run noted twice is one");
        assert!(!s.expire(Instant::now() + REMEMBER + Duration::from_secs(1)), "all forgotten after a minute");
        assert_eq!(s.remembered(), 0);
    }

    #[test]
    fn a_process_of_an_ended_run_is_killed_and_other_runs_of_the_same_job_are_not() {
        let spawn =
            |token: String| std::process::Command::new("/bin/sleep").arg("30").env(RUN_VAR, token).spawn().unwrap();
        let mut ended = spawn(run_token("w1", "sweep-test", 1));
        let same_job_elsewhere = spawn(run_token("w2", "sweep-test", 2));
        let same_job_later = spawn(run_token("w1", "sweep-test", 3));
        let s = Sweeper::default();
        s.run_ended(run_token("w1", "sweep-test", 1));
        assert_eq!(s.sweep(), 1);
        assert!(ended.wait().unwrap().code().is_none(), "killed by a signal");
        for mut other in [same_job_elsewhere, same_job_later] {
            assert!(other.try_wait().unwrap().is_none(), "another run of the job is left alone");
            let _ = other.kill();
            let _ = other.wait();
        }
    }
}
