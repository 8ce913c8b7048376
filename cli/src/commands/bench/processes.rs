//! A cluster as users run it: `burst controller` and each `burst worker` in a process of its own (this same
//! binary, which runs every role), and the batch submitted and waited for by `burst submit --count N --wait`,
//! a third process. In-process clusters share one runtime and one allocator, which users' clusters do not.
//!
//! CPU is read per process: the controller's and the workers' own from `/proc/<pid>/stat` (utime + stime), the
//! jobs' from the workers' reaped children (cutime + cstime), the CLI's from this process's reaped children. So are
//! the controller's and the workers' sleeps: how often their threads blocked and were woken again (each thread's
//! `voluntary_ctxt_switches`, of the threads alive before and after), which is what most of their CPU per job now
//! goes to on a 2-core VM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use burst_proto::v1::{GetStatsRequest, ListWorkersRequest};

use crate::client::{self, ClientTls};
use crate::{certs, local};

/// How long the controller may take to print its address, and the workers to register.
const START_LIMIT: Duration = Duration::from_secs(30);

/// What a process cluster is made of.
pub struct Shape<'a> {
    pub workers: u32,
    pub slots: u32,
    /// `None`: the worker's default.
    pub queue_capacity: Option<u32>,
    pub durable: bool,
    pub tls: bool,
    /// A fresh directory for the certificates, the store and the output.
    pub dir: &'a Path,
}

/// One batch's figures.
pub struct Ran {
    pub elapsed: Duration,
    pub failed: u64,
    /// CPU seconds: the controller's, the workers' own, the jobs', the submitting CLI's.
    pub controller_cpu: f64,
    pub workers_cpu: f64,
    pub jobs_cpu: f64,
    pub cli_cpu: f64,
    /// Times a thread of the controller, or of the workers, blocked and was woken again.
    pub controller_sleeps: u64,
    pub workers_sleeps: u64,
}

/// A child killed when dropped, so a failed bench leaves no server behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct ProcessCluster {
    exe: PathBuf,
    controller: Server,
    workers: Vec<Server>,
    url: String,
    tls: Option<ClientTls>,
}

impl ProcessCluster {
    /// Starts the controller, then the workers, and waits until every worker is registered.
    pub async fn start(shape: &Shape<'_>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this burst binary")?;
        let certs_dir = shape.dir.join("certs");
        let ids: Vec<String> = (0..shape.workers).map(local::worker_id).collect();
        if shape.tls {
            local::make_certs(&certs_dir, &ids)?;
        }
        let tls_args = |name: &str| -> Vec<String> {
            match shape.tls {
                true => {
                    let f = certs::files(&certs_dir, name);
                    [("--tls-cert", f.cert), ("--tls-key", f.key), ("--tls-ca", f.ca)]
                        .into_iter()
                        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
                        .collect()
                }
                false => vec!["--insecure".into()],
            }
        };
        let mut cmd = Command::new(&exe);
        cmd.args(["controller", "--listen", "127.0.0.1:0"]).args(tls_args("controller"));
        match shape.durable {
            true => cmd.arg("--data-dir").arg(shape.dir.join("data")),
            false => cmd.arg("--ephemeral"),
        };
        let mut child = quiet(&mut cmd).stdout(Stdio::piped()).spawn().context("starting burst controller")?;
        let stdout = child.stdout.take().context("the controller's stdout")?;
        let controller = Server(child);
        let addr = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
        });
        let addr = tokio::time::timeout(START_LIMIT, addr)
            .await
            .context("the controller did not print its address")???
            .trim()
            .to_string();
        if addr.is_empty() {
            bail!("the controller exited before it printed its address");
        }
        let out = shape.dir.join("out");
        let mut workers = Vec::new();
        for id in &ids {
            let mut cmd = Command::new(&exe);
            cmd.args(["worker", "--controller", &addr, "--listen", "127.0.0.1:0", "--worker-id", id])
                .args(["--slots", &shape.slots.to_string()])
                .args(shape.queue_capacity.iter().flat_map(|q| ["--queue-capacity".to_string(), q.to_string()]))
                .arg("--output-dir")
                .arg(&out)
                .args(tls_args(&format!("worker-{id}")));
            workers.push(Server(quiet(&mut cmd).spawn().context("starting burst worker")?));
        }
        let tls = shape.tls.then(|| local::admin_tls(&certs_dir));
        let url = burst_proto::tls::url(&addr, shape.tls);
        let cluster = ProcessCluster { exe, controller, workers, url, tls };
        cluster.until_registered(ids.len()).await?;
        Ok(cluster)
    }

    pub async fn client(&self) -> anyhow::Result<client::Client> {
        client::connect_tls(&self.url, Default::default(), self.tls.as_ref()).await
    }

    async fn until_registered(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_LIMIT;
        let mut client = self.client().await?;
        loop {
            let listed = client.list_workers(ListWorkersRequest::default()).await?.into_inner().workers.len();
            if listed >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{listed} of {count} workers registered within {START_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `jobs` copies of `argv` with `burst submit --count jobs --wait`, timed from its start to its exit.
    pub async fn run(&self, argv: &[String], jobs: usize) -> anyhow::Result<Ran> {
        let mut cmd = Command::new(&self.exe);
        cmd.env("BURST_CONTROLLER", &self.url)
            .args(["submit", "--count", &jobs.to_string(), "--wait", "process"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for var in ["BURST_TLS_CA", "BURST_TLS_CERT", "BURST_TLS_KEY", "BURST_TOKEN"] {
            cmd.env_remove(var);
        }
        if let Some(ClientTls::Files { ca, identity }) = &self.tls {
            cmd.env("BURST_TLS_CA", ca);
            if let Some((cert, key)) = identity {
                cmd.env("BURST_TLS_CERT", cert).env("BURST_TLS_KEY", key);
            }
        }
        let before = self.cpu()?;
        let cli_before = super::cpu_seconds().1;
        let started = Instant::now();
        let status = tokio::task::spawn_blocking(move || cmd.status()).await?.context("running burst submit")?;
        let elapsed = started.elapsed();
        let cli_cpu = super::cpu_seconds().1 - cli_before;
        let after = self.cpu()?;
        let stats = self.client().await?.get_stats(GetStatsRequest {}).await?.into_inner();
        let failed = stats.failed + stats.cancelled;
        if !status.success() && failed == 0 {
            bail!("burst submit --wait exited with {status}");
        }
        Ok(Ran {
            elapsed,
            failed,
            controller_cpu: after.controller - before.controller,
            workers_cpu: after.workers - before.workers,
            jobs_cpu: after.jobs - before.jobs,
            cli_cpu,
            controller_sleeps: after.controller_sleeps.saturating_sub(before.controller_sleeps),
            workers_sleeps: after.workers_sleeps.saturating_sub(before.workers_sleeps),
        })
    }

    fn cpu(&self) -> anyhow::Result<ProcessCpu> {
        let (controller, _) = process_cpu(self.controller.0.id())?;
        let controller_sleeps = process_sleeps(self.controller.0.id());
        let (mut workers, mut jobs, mut workers_sleeps) = (0.0, 0.0, 0);
        for w in &self.workers {
            let (own, children) = process_cpu(w.0.id())?;
            workers += own;
            jobs += children;
            workers_sleeps += process_sleeps(w.0.id());
        }
        Ok(ProcessCpu { controller, workers, jobs, controller_sleeps, workers_sleeps })
    }

    /// Stops the workers, then the controller, with SIGTERM, waiting for each to exit.
    pub fn shutdown(mut self) {
        for mut server in self.workers.drain(..).chain(std::iter::once(self.controller)) {
            // SAFETY: kill(2) on our own child's pid; it touches no memory of ours.
            unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) };
            let _ = server.0.wait();
        }
    }
}

struct ProcessCpu {
    controller: f64,
    workers: f64,
    jobs: f64,
    controller_sleeps: u64,
    workers_sleeps: u64,
}

fn quiet(cmd: &mut Command) -> &mut Command {
    // A server prints its bound address on stdout; only the controller's is read (piped after this).
    cmd.env("BURST_LOG", "error")
        .env_remove("BURST_CONTROLLER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// CPU seconds of process `pid` itself, and of its children it has reaped, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("an unreadable /proc stat line")?;
    let fields: Vec<f64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 after the name.
    let ticks = |i: usize| fields.get(i).copied().unwrap_or(0.0);
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(((ticks(11) + ticks(12)) / hz, (ticks(13) + ticks(14)) / hz))
}

/// How often the threads of process `pid` blocked and were woken again so far: the sum of their
/// `voluntary_ctxt_switches` (`/proc/<pid>/task/*/status`). A thread that ended is no longer counted.
fn process_sleeps(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    let sleeps = |status: String| {
        let line = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?;
        line.trim().parse::<u64>().ok()
    };
    tasks.flatten().filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok()).filter_map(sleeps).sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_cpu_reads_this_process() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {}
        let (own, children) = super::process_cpu(std::process::id()).unwrap();
        assert!(own > 0.0 && children >= 0.0, "{own} {children}");
    }

    #[test]
    fn process_sleeps_counts_the_sleeps_of_every_thread() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};
        let before = super::process_sleeps(std::process::id());
        // Another thread blocks on a channel for each of 20 messages; this one never blocks (it spins), so only
        // that thread's sleeps can make the count grow.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let taken = std::sync::Arc::new(AtomicUsize::new(0));
        let sleeper = std::thread::spawn({
            let taken = taken.clone();
            move || {
                while rx.recv().is_ok() {
                    taken.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let spin = |d: Duration| {
            let from = Instant::now();
            while from.elapsed() < d {
                std::hint::spin_loop();
            }
        };
        for sent in 1..=20 {
            tx.send(()).unwrap();
            while taken.load(Ordering::SeqCst) < sent {
                std::hint::spin_loop();
            }
            // Time for it to block again before the next message.
            spin(Duration::from_micros(500));
        }
        let during = super::process_sleeps(std::process::id());
        drop(tx);
        sleeper.join().unwrap();
        assert!(during >= before + 10, "{before} -> {during}: another thread's sleeps are counted");
    }
}
