//! The worker's settings: command-line flags and `BURST_*` variables over the config file's `[worker]` section
//! over the defaults (detected resources, one slot per core).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use burst_proto::auth::Bearer;
use burst_proto::tls::TlsFiles;
use burst_proto::v1::Resources;
use serde::Deserialize;

use crate::limits::{Cgroups, JobLimits};
use crate::resources;

pub const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:50051";
/// Each job's stdout and stderr are cut at this many bytes unless configured otherwise: enough for any log a
/// person reads, small enough that a runaway job cannot fill the disk.
pub const DEFAULT_OUTPUT_CAP: u64 = 64 * 1024 * 1024;
/// How long a worker told to stop (SIGTERM) lets running jobs finish before it stops them: under Kubernetes'
/// default 30 s termination grace period, with room to report and deregister.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(25);
/// Time a job gets between SIGTERM and SIGKILL when it is stopped: enough to flush and exit cleanly.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// Jobs per slot a worker with the default queue capacity wants queued while its jobs are short (under 100 ms
/// on average, as for confirming starts ahead): the next ones at hand while a report's answer is on its way. W1 as users run it
/// (2 slots, 3 runs each in one binary): 2 per slot 888 jobs/s, 4 per slot 1,000-1,024, 8 per slot 1,007-1,071,
/// 16 or 32 per slot no better.
pub const SHORT_QUEUE_PER_SLOT: u32 = 8;
/// Jobs per slot a worker with the default queue capacity wants queued once its jobs are long: few, so that
/// jobs wait at the controller, where any worker (a new one, or one of another pool) can take them, rather than
/// behind long ones here.
pub const LONG_QUEUE_PER_SLOT: u32 = 2;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Config file (TOML, or JSON with a .json name); its [worker] section is read.
    #[arg(long, env = "BURST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Controller URL or host:port [default: http://127.0.0.1:50051].
    #[arg(long, env = "BURST_CONTROLLER")]
    pub controller: Option<String>,
    /// Address to serve the peer RPC on; port 0 picks a free port. The bound address is the first line of stdout.
    #[arg(long, env = "BURST_WORKER_LISTEN")]
    pub listen: Option<String>,
    /// Address to serve HTTP on: /metrics (Prometheus), /healthz, /readyz [default: none, no HTTP].
    #[arg(long, env = "BURST_WORKER_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Address peers use to reach this worker [default: the bound listen address].
    #[arg(long, env = "BURST_WORKER_ADVERTISE")]
    pub advertise: Option<String>,
    /// Jobs run at once [default: number of cores].
    #[arg(long, env = "BURST_SLOTS")]
    pub slots: Option<u32>,
    /// The pool this worker belongs to (the controller's placement policy chooses among pools by cost)
    /// [default: default].
    #[arg(long, env = "BURST_POOL")]
    pub pool: Option<String>,
    /// Jobs that may wait in the local queue beyond those running [default: adaptive, 8 × slots while jobs are
    /// short (under 100 ms on average), 2 × slots otherwise].
    #[arg(long, env = "BURST_QUEUE_CAPACITY")]
    pub queue_capacity: Option<u32>,
    /// Directory for each job's <job id>.stdout and .stderr [default: ./burst-output].
    #[arg(long, env = "BURST_OUTPUT_DIR")]
    pub output_dir: Option<PathBuf>,
    /// This worker's id [default: <hostname>-<pid>].
    #[arg(long, env = "BURST_WORKER_ID")]
    pub worker_id: Option<String>,
    /// CPU this worker offers, in millicores [default: detected].
    #[arg(long, env = "BURST_CPU_MILLIS")]
    pub cpu_millis: Option<u32>,
    /// Memory this worker offers, in bytes [default: detected].
    #[arg(long, env = "BURST_MEMORY_BYTES")]
    pub memory_bytes: Option<u64>,
    /// GPUs this worker offers [default: `nvidia-smi -L`, at most those its own CUDA_VISIBLE_DEVICES names, else
    /// 0]. Each job gets the devices it asks for, and no other job has, in `CUDA_VISIBLE_DEVICES`.
    #[arg(long, env = "BURST_GPUS")]
    pub gpus: Option<u32>,
    /// Label for routing and display, KEY=VALUE; repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Cap on each of a job's stdout and stderr files, in bytes [default: 64 MiB].
    #[arg(long, env = "BURST_OUTPUT_CAP_BYTES")]
    pub output_cap_bytes: Option<u64>,
    /// Python interpreter for python jobs that name none [default: python3].
    #[arg(long, env = "BURST_PYTHON")]
    pub python: Option<String>,
    /// Docker command for docker jobs [default: docker].
    #[arg(long, env = "BURST_DOCKER")]
    pub docker: Option<String>,
    /// Whether this worker steals queued jobs from busy peers when it is idle [default: true].
    #[arg(long, env = "BURST_STEAL", value_name = "BOOL")]
    pub steal: Option<bool>,
    /// On SIGTERM, milliseconds running jobs get to finish before they are stopped and requeued [default: 25000].
    #[arg(long, env = "BURST_DRAIN_GRACE_MS")]
    pub drain_grace_ms: Option<u64>,
    /// Bearer token (role worker) for a controller that requires one; from the environment or a flag, never
    /// the config file.
    #[arg(long, env = "BURST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Processes one job may have at once (its own pids cgroup where the host allows) [default: 1024].
    #[arg(long, env = "BURST_JOB_MAX_PROCESSES")]
    pub job_max_processes: Option<u64>,
    /// Open files per job process [default: 65536].
    #[arg(long, env = "BURST_JOB_MAX_OPEN_FILES")]
    pub job_max_open_files: Option<u64>,
    /// Largest file a job may write, in bytes [default: 64 GiB].
    #[arg(long, env = "BURST_JOB_MAX_FILE_BYTES")]
    pub job_max_file_bytes: Option<u64>,
    /// Memory one job may use (its whole process tree, in its own memory cgroup where the host allows) unless
    /// it requests its own; 0: no limit [default: 0].
    #[arg(long, env = "BURST_JOB_MAX_MEMORY_BYTES")]
    pub job_max_memory_bytes: Option<u64>,
    #[command(flatten)]
    pub tls: burst_proto::tls::TlsArgs,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))
}

/// The `[worker]` section of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub controller: Option<String>,
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub advertise: Option<String>,
    pub slots: Option<u32>,
    pub pool: Option<String>,
    pub queue_capacity: Option<u32>,
    pub output_dir: Option<PathBuf>,
    pub worker_id: Option<String>,
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub gpus: Option<u32>,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    pub output_cap_bytes: Option<u64>,
    pub python: Option<String>,
    pub docker: Option<String>,
    pub steal: Option<bool>,
    pub drain_grace_ms: Option<u64>,
    pub job_max_processes: Option<u64>,
    pub job_max_open_files: Option<u64>,
    pub job_max_file_bytes: Option<u64>,
    pub job_max_memory_bytes: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub insecure: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub controller: String,
    /// Credentials sent to the controller.
    pub bearer: Bearer,
    /// Mutual TLS with the controller and peers; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    pub listen: SocketAddr,
    /// Where to serve metrics and health; `None`: no HTTP side.
    pub http_listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub worker_id: String,
    pub slots: u32,
    /// The most jobs the local queue holds beyond those running.
    pub queue_capacity: u32,
    /// The queue capacity is the default one: the worker wants only [`LONG_QUEUE_PER_SLOT`] per slot of it
    /// while jobs are long (see [`WorkerConfig::queue_target`]).
    pub adaptive_queue: bool,
    /// Empty: the default pool.
    pub pool: String,
    pub resources: Resources,
    pub labels: HashMap<String, String>,
    /// Steal from busy peers when idle.
    pub steal: bool,
    /// On SIGTERM: how long running jobs may finish.
    pub drain_grace: Duration,
    pub exec: ExecConfig,
}

/// What executors need to know.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    pub worker_id: String,
    pub output_dir: PathBuf,
    pub output_cap: u64,
    pub python: String,
    pub docker: String,
    pub kill_grace: Duration,
    pub limits: JobLimits,
    /// Where runs get their own pids cgroup; found when the worker starts (see [`crate::limits`]).
    pub cgroups: Option<Cgroups>,
    /// The GPUs runs are given, as many as the worker offers (`resources.gpus`); set when the worker starts.
    pub gpus: crate::gpus::Gpus,
    /// Complete every job at once, successfully, without running anything: for measuring the controller's own
    /// ceiling (`burst bench --workload w4`) only. No flag or config key sets it.
    pub noop: bool,
}

impl ExecConfig {
    /// Where a run takes its cgroup from when it starts, when this worker can make them; its memory limit is what
    /// the job requested, else the worker's per-job maximum (a job reserves its request on this worker, and docker
    /// jobs get the same).
    pub fn run_cgroup(&self, memory_request: u64) -> Option<crate::limits::CgroupOrder> {
        let memory = if memory_request > 0 { memory_request } else { self.limits.max_memory_bytes };
        Some(self.cgroups.as_ref()?.order(self.limits.max_processes, memory))
    }
}

impl WorkerConfig {
    /// A worker for tests and `burst dev`: loopback, a free port, detected resources.
    pub fn local(controller: &str, worker_id: &str, slots: u32, queue_capacity: u32, output_dir: PathBuf) -> Self {
        WorkerConfig {
            controller: burst_proto::endpoint_url(controller),
            listen: "127.0.0.1:0".parse().expect("loopback parses"),
            http_listen: None,
            advertise: None,
            worker_id: worker_id.to_string(),
            slots,
            queue_capacity,
            adaptive_queue: false,
            pool: String::new(),
            resources: resources::detect(),
            labels: HashMap::new(),
            steal: true,
            drain_grace: DEFAULT_DRAIN_GRACE,
            bearer: Bearer::default(),
            tls: None,
            exec: ExecConfig {
                worker_id: worker_id.to_string(),
                output_dir,
                output_cap: DEFAULT_OUTPUT_CAP,
                python: "python3".into(),
                docker: "docker".into(),
                kill_grace: DEFAULT_KILL_GRACE,
                limits: JobLimits::default(),
                cgroups: None,
                gpus: Default::default(),
                noop: false,
            },
        }
    }
}

impl WorkerConfig {
    /// Sets the queue capacity: `Some`, that many always; `None`, the adaptive default: [`SHORT_QUEUE_PER_SLOT`]
    /// per slot, of which only [`LONG_QUEUE_PER_SLOT`] per slot is wanted while jobs are long.
    pub fn set_queue_capacity(&mut self, capacity: Option<u32>) {
        self.queue_capacity = capacity.unwrap_or(self.slots.saturating_mul(SHORT_QUEUE_PER_SLOT));
        self.adaptive_queue = capacity.is_none();
    }

    /// The jobs this worker wants queued beyond those running now, told to the controller with every call
    /// that may bring leases: with the default queue capacity all of it while jobs are short, at most
    /// [`LONG_QUEUE_PER_SLOT`] per slot once they are not; `None` (all of it, always) with a configured one.
    pub fn queue_target(&self, short_jobs: bool) -> Option<u32> {
        match (self.adaptive_queue, short_jobs) {
            (false, _) => None,
            (true, true) => Some(self.queue_capacity),
            (true, false) => Some(self.queue_capacity.min(self.slots.saturating_mul(LONG_QUEUE_PER_SLOT))),
        }
    }
}

impl Args {
    pub fn into_config(self) -> anyhow::Result<WorkerConfig> {
        let Args {
            config,
            controller,
            listen,
            http_listen,
            advertise,
            slots,
            pool,
            queue_capacity,
            output_dir,
            worker_id,
            cpu_millis,
            memory_bytes,
            gpus,
            labels,
            output_cap_bytes,
            python,
            docker,
            steal,
            drain_grace_ms,
            token,
            job_max_processes,
            job_max_open_files,
            job_max_file_bytes,
            job_max_memory_bytes,
            tls,
        } = self;
        let defaults = JobLimits::default();
        let file: Section = match &config {
            Some(path) => burst_proto::config::load_section(path, "worker")?,
            None => Section::default(),
        };
        let tls = tls
            .resolve([file.tls_cert.clone(), file.tls_key.clone(), file.tls_ca.clone()], file.insecure)
            .map_err(anyhow::Error::msg)?;
        let listen = listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:0".into());
        let listen: SocketAddr =
            listen.parse().with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:0"))?;
        let http_listen =
            burst_proto::http::parse_listen(http_listen.or(file.http_listen)).map_err(anyhow::Error::msg)?;
        let detected = resources::detect();
        let slots = slots.or(file.slots).unwrap_or(detected.cpu_millis.div_ceil(1000).max(1));
        if slots == 0 {
            bail!("--slots must be at least 1");
        }
        let worker_id = worker_id.or(file.worker_id).unwrap_or_else(default_worker_id);
        let pool = pool.or(file.pool).unwrap_or_default();
        if !pool.is_empty() {
            burst_proto::check_pool(&pool).map_err(|e| anyhow::anyhow!("--pool: {e}"))?;
        }
        let mut all_labels = file.labels;
        all_labels.extend(labels);
        let output_dir = output_dir.or(file.output_dir).unwrap_or_else(|| PathBuf::from("burst-output"));
        let mut cfg = WorkerConfig {
            controller: burst_proto::endpoint_url(&controller.or(file.controller).unwrap_or(DEFAULT_CONTROLLER.into())),
            listen,
            http_listen,
            advertise: advertise.or(file.advertise),
            slots,
            queue_capacity: 0,
            adaptive_queue: false,
            pool,
            resources: Resources {
                cpu_millis: cpu_millis.or(file.cpu_millis).unwrap_or(detected.cpu_millis),
                memory_bytes: memory_bytes.or(file.memory_bytes).unwrap_or(detected.memory_bytes),
                gpus: gpus.or(file.gpus).unwrap_or(detected.gpus),
            },
            labels: all_labels,
            steal: steal.or(file.steal).unwrap_or(true),
            drain_grace: drain_grace_ms.or(file.drain_grace_ms).map_or(DEFAULT_DRAIN_GRACE, Duration::from_millis),
            bearer: Bearer::new(token.as_deref()).map_err(|e| anyhow::anyhow!("--token: {e}"))?,
            tls,
            exec: ExecConfig {
                worker_id: worker_id.clone(),
                output_dir,
                output_cap: output_cap_bytes.or(file.output_cap_bytes).unwrap_or(DEFAULT_OUTPUT_CAP),
                python: python.or(file.python).unwrap_or_else(|| "python3".into()),
                docker: docker.or(file.docker).unwrap_or_else(|| "docker".into()),
                kill_grace: DEFAULT_KILL_GRACE,
                limits: JobLimits {
                    max_processes: job_max_processes.or(file.job_max_processes).unwrap_or(defaults.max_processes),
                    max_open_files: job_max_open_files.or(file.job_max_open_files).unwrap_or(defaults.max_open_files),
                    max_file_bytes: job_max_file_bytes.or(file.job_max_file_bytes).unwrap_or(defaults.max_file_bytes),
                    max_memory_bytes: job_max_memory_bytes
                        .or(file.job_max_memory_bytes)
                        .unwrap_or(defaults.max_memory_bytes),
                },
                cgroups: None,
                gpus: Default::default(),
                noop: false,
            },
            worker_id,
        };
        cfg.set_queue_capacity(queue_capacity.or(file.queue_capacity));
        Ok(cfg)
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).collect();
    let host = if host.is_empty() { "worker".to_string() } else { host };
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn config(flags: &[&str]) -> WorkerConfig {
        use clap::Parser;
        let argv = ["burst-worker", "--insecure", "--slots", "4"].iter().chain(flags);
        Cli::try_parse_from(argv).unwrap().args.into_config().unwrap()
    }

    #[test]
    fn the_default_queue_is_deep_while_jobs_are_short_and_shallow_otherwise_and_a_configured_one_is_kept() {
        let default = config(&[]);
        assert_eq!(default.queue_capacity, 4 * SHORT_QUEUE_PER_SLOT, "registered: the most it may hold");
        assert_eq!(default.queue_target(true), Some(32));
        assert_eq!(default.queue_target(false), Some(4 * LONG_QUEUE_PER_SLOT));
        let fixed = config(&["--queue-capacity", "3"]);
        assert_eq!(fixed.queue_capacity, 3);
        assert_eq!((fixed.queue_target(true), fixed.queue_target(false)), (None, None));
        // A fixed capacity below the long-jobs target is never exceeded either.
        let mut small = config(&[]);
        small.queue_capacity = 1;
        assert_eq!(small.queue_target(false), Some(1));
    }
}
