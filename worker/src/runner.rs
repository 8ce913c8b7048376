//! Threads that run jobs' processes, one job at a time each, from the spawn to the reaping (see
//! [`crate::executor`]): a run costs its task one hand-over and one answer, and the waiting for the program, its
//! pipes, its timeout and its stop happen in one `poll(2)` on this thread.
//!
//! Each pooled run cgroup has its own runner, living inside it (see [`crate::limits`]: a job is spawned from
//! inside its cgroup, and a thread that stays there never pays a cgroup move). A worker without cgroups takes
//! its runners from [`pooled`].
//!
//! Why not the async runtime: a run there registered two pipes, a pidfd and tokio's own pidfd with the reactor,
//! and was woken for each; with jobs of a millisecond that was ~40% of the worker's CPU per job beyond the spawn.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;

use tokio::sync::oneshot;
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
                while let Ok(work) = rx.recv() {
                    work();
                }
            })
            .ok()?;
        ready.recv().ok()?.then_some(Runner(tx))
    }

    /// Runs `work` on this runner's thread, after what it was handed before; the answer comes on the receiver
    /// (closed without one if the thread is gone).
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let _ = self.0.send(Box::new(move || {
            let _ = tx.send(work());
        }));
        rx
    }
}

/// Idle runners outside any cgroup.
static IDLE: Mutex<Vec<Runner>> = Mutex::new(Vec::new());

/// Runs `work` on an idle runner outside any cgroup (a new one when none is idle), which is idle again once
/// `work` returns. `None` only if no thread could be started.
pub fn pooled<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<oneshot::Receiver<T>> {
    let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let runner = match idle {
        Some(runner) => runner,
        None => Runner::start(None)?,
    };
    let back = runner.clone();
    Some(runner.run(move || {
        let done = work();
        IDLE.lock().unwrap_or_else(|p| p.into_inner()).push(back);
        done
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pooled_runners_run_work_off_the_runtime_one_at_a_time() {
        let here = std::thread::current().id();
        let first = pooled(move || std::thread::current().id()).unwrap().await.unwrap();
        assert_ne!(first, here, "the work ran on a thread of its own");
        // Two at once get two threads: a busy runner is not handed more work.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = pooled(move || {
            let _ = hold.recv();
            std::thread::current().id()
        })
        .unwrap();
        let beside = pooled(move || std::thread::current().id()).unwrap().await.unwrap();
        release.send(()).unwrap();
        let busy = busy.await.unwrap();
        assert_ne!(busy, beside, "a busy runner is not handed more work");
        assert!(busy != here && beside != here);
    }
}
