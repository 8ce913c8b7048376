//! Threads that run jobs' processes, one job at a time each, from the spawn to the reaping (see
//! [`crate::executor`]): a run costs its task one answer, and the waiting for the program, its pipes, its timeout
//! and its stop happen in one `poll(2)` on this thread. Under load a run is not even handed over by its task: the
//! run that frees a slot starts the next one waiting ready for it, from its own thread, and that run goes to this
//! same thread (its cgroup is the first one free again; a pooled runner says [`idle_from_now`]), so between two
//! jobs of a slot no other thread wakes.
//!
//! Each pooled run cgroup has its own runner, living inside it (see [`crate::limits`]: a job is spawned from
//! inside its cgroup, and a thread that stays there never pays a cgroup move). A worker without cgroups takes
//! its runners from [`pooled`].
//!
//! Why not the async runtime: a run there registered two pipes, a pidfd and tokio's own pidfd with the reactor,
//! and was woken for each; with jobs of a millisecond that was ~40% of the worker's CPU per job beyond the spawn.

use std::cell::Cell;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;

use tracing::debug;

type Work = Box<dyn FnOnce() + Send>;

/// A thread that runs the work it is handed, in order; it ends when every handle to it is dropped.
#[derive(Clone, Debug)]
pub struct Runner(mpsc::Sender<Work>);

impl Runner {
    /// Starts the thread; with `cgroup_tasks` (a cgroup v1 `tasks` file), it first moves itself into that cgroup
    /// (its one move) and the start fails if it cannot.
    pub fn start(cgroup_tasks: Option<&Path>) -> Option<Runner> {
        let (tx, rx) = mpsc::channel::<Work>();
        let (ready_tx, ready) = mpsc::channel();
        let tasks = cgroup_tasks.map(Path::to_path_buf);
        std::thread::Builder::new()
            .name("burst-run".into())
            .spawn(move || {
                if let Some(tasks) = &tasks {
                    // SAFETY: gettid(2) has no preconditions.
                    let tid = unsafe { libc::gettid() };
                    if let Err(e) = std::fs::write(tasks, tid.to_string()) {
                        debug!(cgroup = %tasks.display(), error = %e, "a runner could not enter its cgroup");
                        let _ = ready_tx.send(false);
                        return;
                    }
                }
                let _ = ready_tx.send(true);
                ON_RUNNER.set(true);
                while let Ok(work) = rx.recv() {
                    work();
                }
            })
            .ok()?;
        ready.recv().ok()?.then_some(Runner(tx))
    }

    /// Runs `work` on this runner's thread, after what it was handed before. `false` (and `work` dropped, not run)
    /// if the thread is gone.
    pub fn run(&self, work: impl FnOnce() + Send + 'static) -> bool {
        self.0.send(Box::new(work)).is_ok()
    }
}

/// Idle runners outside any cgroup.
static IDLE: Mutex<Vec<Runner>> = Mutex::new(Vec::new());

thread_local! {
    /// Whether this thread is a runner: a thread it started would be born in its cgroup.
    static ON_RUNNER: Cell<bool> = const { Cell::new(false) };
    /// On a pooled runner's thread, while it runs work: its own handle.
    static OWN: Cell<Option<Runner>> = const { Cell::new(None) };
    /// Whether that work said the runner may take the next pooled work handed over from this thread.
    static SPARE: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is a runner. A thread started from one would be born in the runner's cgroup (and counted
/// there, and killed with what is left there), so a runner starts none: see [`idle_runner`].
pub fn on_runner() -> bool {
    ON_RUNNER.get()
}

/// Runs `work` on an idle runner outside any cgroup (a new one when none is idle), which is idle again once
/// `work` returns. `false` (and `work` dropped, not run) only if no thread could be started.
pub fn pooled(work: impl FnOnce() + Send + 'static) -> bool {
    idle_runner().or_else(|| Runner::start(None)).is_some_and(|runner| run_pooled(runner, work))
}

/// An idle runner outside any cgroup, without starting one: called from pooled work that said
/// [`idle_from_now`], that work's own runner (the next work runs right after it, no other thread woken); else
/// one from the pool.
pub fn idle_runner() -> Option<Runner> {
    let own = if SPARE.replace(false) { OWN.take() } else { None };
    own.or_else(|| idle().pop())
}

/// Runs `work` on `runner`, from the pool (see [`idle_runner`]), which is idle again once `work` returns.
pub fn run_pooled(runner: Runner, work: impl FnOnce() + Send + 'static) -> bool {
    let back = runner.clone();
    runner.run(move || {
        OWN.set(Some(back));
        work();
        SPARE.set(false);
        // Unless it was handed the next work already, it is idle.
        if let Some(runner) = OWN.take() {
            idle().push(runner);
        }
    })
}

/// Called from pooled work, on its runner's thread, when what is left of it is short: the next pooled work
/// handed over from this thread goes to this runner (no other thread woken), and runs once this work returns.
/// Elsewhere it does nothing.
pub fn idle_from_now() {
    let own = OWN.take();
    SPARE.set(own.is_some());
    OWN.set(own);
}

fn idle() -> std::sync::MutexGuard<'static, Vec<Runner>> {
    IDLE.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `work` on a pooled runner and waits for what it returns.
    fn on_pooled<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> std::sync::mpsc::Receiver<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(pooled(move || tx.send(work()).unwrap()), "a runner");
        rx
    }

    #[test]
    fn pooled_runners_run_work_off_the_calling_thread_one_at_a_time() {
        let here = std::thread::current().id();
        let first = on_pooled(move || std::thread::current().id()).recv().unwrap();
        assert_ne!(first, here, "the work ran on a thread of its own");
        // Two at once get two threads: a busy runner is not handed more work.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = on_pooled(move || {
            let _ = hold.recv();
            std::thread::current().id()
        });
        let beside = on_pooled(move || std::thread::current().id()).recv().unwrap();
        release.send(()).unwrap();
        let busy = busy.recv().unwrap();
        assert_ne!(busy, beside, "a busy runner is not handed more work");
        assert!(busy != here && beside != here);
    }

    #[test]
    fn pooled_work_handed_over_by_pooled_work_that_is_nearly_done_runs_next_on_its_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(pooled(move || {
            let me = std::thread::current().id();
            let elsewhere = tx.clone();
            // Not said to be nearly done: another thread.
            assert!(pooled(move || elsewhere.send(("elsewhere", std::thread::current().id())).unwrap()));
            idle_from_now();
            let next = tx.clone();
            assert!(pooled(move || next.send(("next", std::thread::current().id())).unwrap()));
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(("first", me)).unwrap();
        }));
        let mut got: Vec<_> = (0..3).map(|_| rx.recv().unwrap()).collect();
        let elsewhere = got.iter().position(|(what, _)| *what == "elsewhere").unwrap();
        let (_, other) = got.remove(elsewhere);
        let [(a, first), (b, next)] = [got[0], got[1]];
        assert_eq!((a, b), ("first", "next"), "the next work waited for the first");
        assert_eq!(first, next, "on the same thread");
        assert_ne!(other, first, "work handed over before the runner was nearly done went elsewhere");
    }
}
