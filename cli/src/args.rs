//! The `burst` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "burst", version, about = "Run huge numbers of short jobs on a pool of warm workers")]
pub struct Cli {
    /// Controller URL (http:// plaintext, https:// TLS with --tls-ca) or host:port (TLS when --tls-ca is given)
    /// [default: the config file's cli.controller, else 127.0.0.1:50051].
    #[arg(long, global = true, env = "BURST_CONTROLLER")]
    pub controller: Option<String>,
    /// Config file (TOML, or JSON with a .json name); its [cli] section is read.
    #[arg(long, global = true, env = "BURST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format of read commands.
    #[arg(short = 'o', long, global = true, value_enum, env = "BURST_OUTPUT")]
    pub output: Option<Format>,
    /// Bearer token for a controller that requires one (see its --tokens-file).
    #[arg(long, global = true, env = "BURST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster's CA (PEM): talk TLS to the controller and verify it.
    #[arg(long, global = true, env = "BURST_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM, from burst certs init) to authenticate with instead of a token.
    #[arg(long, global = true, env = "BURST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, global = true, env = "BURST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A BurstCluster to reach through the Kubernetes API (your kubeconfig; a port-forward to its controller,
    /// as the client certificate the operator issued for you): instead of --controller and the TLS flags. As
    /// `kubectl burst` (this binary named kubectl-burst) the namespace's only BurstCluster by default.
    #[arg(long, global = true, env = "BURST_CLUSTER")]
    pub cluster: Option<String>,
    /// The BurstCluster's namespace [default: your kubeconfig's].
    #[arg(short = 'n', long, global = true, env = "BURST_NAMESPACE")]
    pub namespace: Option<String>,
    /// Which of the BurstCluster's spec.tls.clients to act as [default: its only one].
    #[arg(long, global = true, env = "BURST_IDENTITY")]
    pub identity: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the command line (exiting on a mistake, as clap does), refusing the client's global flags (`-o`,
/// `--controller`, `--token`, ...) given on the command line to a server role that has no use for them:
/// `burst controller -o json` would otherwise be silently ignored. (From the environment they are left alone: a
/// shell's `BURST_OUTPUT` must not stop a server.)
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    // As a kubectl plugin, help and errors name the command the user typed.
    let command = match plugin() {
        true => Cli::command().name("kubectl burst").bin_name("kubectl burst"),
        false => Cli::command(),
    };
    let matches = command.clone().try_get_matches().unwrap_or_else(|e| usage_exit(e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| usage_exit(e));
    if let Some((role @ ("controller" | "worker" | "operator"), sub)) = matches.subcommand()
        && let Some(unused) = unused_global(&command, role, sub)
    {
        let why = format!("{unused} means nothing to `burst {role}` (it is for the client commands)");
        usage_exit(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, why));
    }
    // Through Kubernetes the controller's address and credentials come from the cluster: flags naming others
    // would be ignored, so they are refused (from the environment they are simply not used).
    if plugin() || cli.cluster.is_some() {
        let given = |id: &str| {
            let here = |m: &clap::ArgMatches| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
            here(&matches) || matches.subcommand().is_some_and(|(_, sub)| here(sub))
        };
        if let Some(flag) = ["controller", "tls_ca", "tls_cert", "tls_key", "token"].into_iter().find(|id| given(id)) {
            let why = format!(
                "--{} cannot be used with a BurstCluster (kubectl burst, --cluster): its controller and your client \
                 certificate come from the cluster",
                flag.replace('_', "-")
            );
            usage_exit(command.clone().error(clap::error::ErrorKind::ArgumentConflict, why));
        }
    }
    cli
}

/// Whether this binary runs as `kubectl burst` (installed as kubectl-burst): its commands then reach a
/// BurstCluster through the Kubernetes API.
pub fn plugin() -> bool {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    std::path::Path::new(&argv0).file_name().is_some_and(|n| n == crate::kubectl::PLUGIN_NAME)
}

/// Help and the version as clap prints them; a mistake as one line, `burst: ...`, and exit code 2 (as every
/// other usage error of burst).
fn usage_exit(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    eprintln!("burst: {}", one_line(&e.render().to_string()));
    std::process::exit(2);
}

/// Clap's message without its usage and hint lines, on one line.
fn one_line(rendered: &str) -> String {
    let lines = rendered.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"));
    let text = lines.filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    text.strip_prefix("error: ").unwrap_or(&text).to_string()
}

/// A global flag given on the command line that `role` does not define itself.
fn unused_global(command: &clap::Command, role: &str, sub: &clap::ArgMatches) -> Option<String> {
    let own: Vec<&str> = command.find_subcommand(role)?.get_arguments().map(|a| a.get_id().as_str()).collect();
    command.get_arguments().filter(|a| a.is_global_set() && !own.contains(&a.get_id().as_str())).find_map(|a| {
        let given = sub.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine);
        given.then(|| format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Table,
    /// The table with more columns (pool, submission time, labels).
    Wide,
    /// Only names: job or worker ids, one a line.
    Name,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Submit jobs: `burst submit process /bin/echo hi`, `burst submit -f jobs.jsonl`.
    Submit(SubmitArgs),
    /// Show jobs' status.
    Status {
        #[arg(required = true)]
        jobs: Vec<String>,
        /// Then print each change as it happens, until every job has ended.
        #[arg(short, long)]
        watch: bool,
    },
    /// Wait until jobs end; exits with the job's exit code (one job) or 1 if any failed.
    Wait {
        #[arg(required = true)]
        jobs: Vec<String>,
        /// Give up after this long (e.g. 30s, 5m) and exit 1.
        #[arg(long, value_parser = crate::units::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// List jobs, oldest first.
    List {
        /// Only jobs in this state (queued, leased, running, succeeded, failed, cancelled); repeatable.
        #[arg(long = "state", value_parser = parse_state)]
        states: Vec<burst_proto::v1::JobState>,
        /// Only jobs with these labels: KEY=VALUE, comma-separated or repeated (`-l a=b,c=d`, as kubectl).
        #[arg(short = 'l', long = "label", alias = "selector", value_delimiter = ',', value_parser = crate::units::parse_pair)]
        labels: Vec<(String, String)>,
        /// Only jobs submitted by this owner (a token's name); callers who are not admins see only their own.
        #[arg(long)]
        owner: Option<String>,
        /// At most this many jobs (a line on stderr says when more match).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Every matching job, page after page (instead of --limit).
        #[arg(long, conflicts_with = "limit")]
        all: bool,
        /// Then print each change of a matching job as it happens, until Ctrl-C.
        #[arg(short, long)]
        watch: bool,
        /// The newest jobs first (default: oldest first).
        #[arg(long)]
        newest: bool,
    },
    /// Cancel jobs by id, or every unfinished job matching a label selector.
    Cancel {
        jobs: Vec<String>,
        /// Cancel every unfinished job with these labels: KEY=VALUE, comma-separated or repeated (all must match;
        /// `-l a=b,c=d`, as kubectl).
        #[arg(short = 'l', long = "label", alias = "selector", value_delimiter = ',', value_parser = crate::units::parse_pair)]
        labels: Vec<(String, String)>,
    },
    /// Print a job's output: what it wrote so far, or with -f live until it ends (waiting for a queued job).
    Logs {
        job: String,
        /// Follow the output as the job writes it, until the job's run ends.
        #[arg(short, long)]
        follow: bool,
        /// stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Only the last N lines (then, with -f, everything new).
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
    },
    /// List the workers and what they hold.
    Workers,
    /// List the pools: cost, capacity, use, jobs placed and spilled over, and what each has cost so far.
    Pools,
    /// List the submitters with unfinished jobs: fair-share weight, jobs queued, jobs holding a slot (a submitter
    /// sees only itself).
    Shares,
    /// Stop leasing jobs to workers (they finish what they hold), to empty them before they are removed.
    Cordon {
        #[arg(required = true)]
        workers: Vec<String>,
    },
    /// Lease jobs to cordoned workers again.
    Uncordon {
        #[arg(required = true)]
        workers: Vec<String>,
    },
    /// Live job counts by state (Ctrl-C to stop).
    Watch {
        /// Print the counts once and exit.
        #[arg(long)]
        once: bool,
        /// Time between updates (e.g. 500ms, 2s; a bare number is seconds).
        #[arg(long, default_value = "1s", value_parser = crate::units::parse_duration)]
        interval: std::time::Duration,
    },
    /// Start a controller and workers in this process and run a demo batch on them.
    Dev(DevArgs),
    /// Run fixed workloads on a local cluster and compare them with their baselines.
    Bench(BenchArgs),
    /// Simulate placing a workload (a trace, or a seeded synthetic one) on a fixed pool and an elastic pool under
    /// each placement policy: cost, job completion times and the share spilled over to the elastic pool.
    Simulate(SimulateArgs),
    /// Run a controller (the same as the burst-controller binary).
    Controller(burst_controller::Args),
    /// Run a worker (the same as the burst-worker binary).
    Worker(burst_worker::Args),
    /// Make a development CA and certificates for a cluster (mutual TLS).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Run the Kubernetes operator (reconciles BurstClusters and BurstJobs; used by the Helm chart).
    Operator(burst_operator::Args),
}

fn parse_state(s: &str) -> Result<burst_proto::v1::JobState, String> {
    burst_proto::parse_state(s).map_err(|e| e.to_string())
}

#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// Submit one job per line of this JSON Lines file ('-' for stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub kind: Option<Kind>,
    #[command(flatten)]
    pub spec: SpecOpts,
    /// Wait for the jobs to end; exit with the job's exit code (one job) or 1 if any failed.
    #[arg(long, global = true)]
    pub wait: bool,
    /// Submit this many copies.
    #[arg(long, global = true, default_value_t = 1)]
    pub count: u64,
}

#[derive(Subcommand, Debug)]
pub enum Kind {
    /// Run an executable with arguments (no shell).
    Process {
        command: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run Python: a script, a module (-m) or code (-c).
    Python {
        /// Script to run.
        #[arg(long, conflicts_with_all = ["module", "code"], required_unless_present_any = ["module", "code"])]
        script: Option<String>,
        /// Module to run, as with python -m.
        #[arg(short = 'm', long, conflicts_with = "code")]
        module: Option<String>,
        /// Code to run, as with python -c.
        #[arg(short = 'c', long)]
        code: Option<String>,
        /// Interpreter [default: the worker's, python3].
        #[arg(long)]
        interpreter: Option<String>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a container with docker run --rm.
    Docker {
        image: String,
        /// Command and arguments [default: the image's].
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// Spec options for jobs given on the command line.
#[derive(clap::Args, Debug, Default)]
pub struct SpecOpts {
    /// Environment variable KEY=VALUE; repeatable.
    #[arg(long = "env", global = true, value_parser = crate::units::parse_pair)]
    pub env: Vec<(String, String)>,
    /// Working directory on the worker.
    #[arg(long, global = true)]
    pub workdir: Option<String>,
    /// Kill the job after this long (e.g. 500ms, 30s, 2m).
    #[arg(long, global = true, value_parser = crate::units::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// CPU to reserve: cores (0.5, 2) or millicores (500m).
    #[arg(long, global = true, value_parser = crate::units::parse_cpu)]
    pub cpu: Option<u32>,
    /// Memory to reserve: bytes or with a unit (512Mi, 2G).
    #[arg(long, global = true, value_parser = crate::units::parse_bytes)]
    pub memory: Option<u64>,
    /// GPUs to reserve.
    #[arg(long, global = true)]
    pub gpus: Option<u32>,
    /// Label KEY=VALUE; repeatable.
    #[arg(long = "label", global = true, value_parser = crate::units::parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Submitting the same key again returns the first job instead of a new one.
    #[arg(long, global = true)]
    pub idempotency_key: Option<String>,
    /// Attempts allowed for the job's own failures (non-zero exit, signal, timeout).
    #[arg(long, global = true)]
    pub max_attempts: Option<u32>,
    /// Retry only this exit code; repeatable [default: any failure of the job's own].
    #[arg(long = "retry-exit-code", global = true)]
    pub retry_exit_codes: Vec<i32>,
    /// Wait before the first retry, doubling after each (e.g. 500ms, 10s) [default: 1s].
    #[arg(long, global = true, value_parser = crate::units::parse_duration)]
    pub retry_backoff: Option<std::time::Duration>,
    /// Fail the job if it has not started this long after submission (e.g. 5m).
    #[arg(long, global = true, value_parser = crate::units::parse_duration)]
    pub queue_timeout: Option<std::time::Duration>,
    /// Keep the last BYTES of the job's output in its status (at most 4096), kept by the controller.
    #[arg(long, global = true, value_name = "BYTES")]
    pub output_tail: Option<u32>,
    /// Run only on workers of this pool.
    #[arg(long, global = true)]
    pub pool: Option<String>,
    /// Run only on pools whose labels match KEY=VALUE; repeatable.
    #[arg(long = "pool-selector", global = true, value_parser = crate::units::parse_pair)]
    pub pool_selector: Vec<(String, String)>,
    /// How long the job is expected to run (e.g. 30s): the wait policy may scale its waiting budget by it.
    #[arg(long, global = true, value_parser = crate::units::parse_duration)]
    pub expected_runtime: Option<std::time::Duration>,
    /// Priority, -1000 to 1000 [default: 0]: when workers are full the highest goes first, then the submitter
    /// holding the fewest slots (fair share). Above 0 only as far as your token's max_priority allows.
    #[arg(long, global = true, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Run only once these jobs have succeeded (ids, comma-separated or repeated); if one fails or is cancelled
    /// this job fails with dependency-failed without running.
    #[arg(long, global = true, value_delimiter = ',', value_name = "ID")]
    pub after: Vec<String>,
    /// Run only once these jobs have ended, however they ended.
    #[arg(long, global = true, value_delimiter = ',', value_name = "ID")]
    pub after_any: Vec<String>,
    /// A job array: one job of indices FIRST-LAST, each run with BURST_ARRAY_INDEX set, at most P unfinished at
    /// once with %P (e.g. 0-9999%100); `burst wait` exits 0 only if every index succeeded.
    #[arg(long, global = true, value_name = "FIRST-LAST[%P]", value_parser = crate::units::parse_array)]
    pub array: Option<burst_proto::v1::ArraySpec>,
}

impl SpecOpts {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.workdir.is_none()
            && self.timeout.is_none()
            && self.cpu.is_none()
            && self.memory.is_none()
            && self.gpus.is_none()
            && self.labels.is_empty()
            && self.idempotency_key.is_none()
            && self.max_attempts.is_none()
            && self.retry_exit_codes.is_empty()
            && self.retry_backoff.is_none()
            && self.queue_timeout.is_none()
            && self.output_tail.is_none()
            && self.pool.is_none()
            && self.pool_selector.is_empty()
            && self.expected_runtime.is_none()
            && self.priority.is_none()
            && self.after.is_empty()
            && self.after_any.is_empty()
            && self.array.is_none()
    }
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Write a CA, the controller's certificate, one per --worker and one per --client into DIR.
    Init {
        dir: PathBuf,
        /// A worker id to make a certificate for; repeatable.
        #[arg(long = "worker")]
        workers: Vec<String>,
        /// NAME=ROLE (admin or submit): a client certificate; repeatable [default: admin=admin].
        #[arg(long = "client", value_parser = parse_client)]
        clients: Vec<(String, String)>,
        /// Another name or address the controller and workers are reached by; repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Days the certificates are valid (the CA: ten times as long).
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Issue one more client certificate from the CA in DIR (its ca-key.pem, and ca-cert.pem or ca.pem): DIR/NAME.pem
    /// and DIR/NAME-key.pem. Works on a BurstCluster's CA Secret written out to DIR.
    Client {
        dir: PathBuf,
        name: String,
        /// submit (submit, read and cancel its own jobs) or admin (everything).
        #[arg(long, default_value = "submit")]
        role: String,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 90)]
        days: i64,
    },
}

fn parse_client(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(n, r)| (n.to_string(), r.to_string())).ok_or_else(|| format!("{s:?} is not NAME=ROLE"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// 5,000 x /bin/true on one worker of 2 slots (`--slots`), against a plain spawner at the same concurrency.
    W1,
    /// W1 with output: 5,000 x `/bin/echo hello`, every job's stdout file written.
    #[value(name = "w1-output")]
    W1Output,
    /// 2,000 x sleep 0.05 on 16 slots in all, against the ideal (jobs x 0.05 s / slots) and the spawner.
    W2,
    /// Latency: 500 jobs one at a time to an idle cluster; submit->running and submit->terminal p50/p99.
    W3,
    /// The controller's own ceiling: 200,000 jobs, durable store, workers that complete jobs without running
    /// them; and controller memory per queued and per retained job.
    W4,
    /// Skewed job lengths routed to half of the workers: makespan with stealing off, on, and the ideal.
    Steal,
    /// Submit throughput with the durable store against the in-memory store (no workers).
    Submit,
    /// The scheduler alone (no RPC, no store I/O): microseconds per job at --workers workers (default 200)
    /// against 2, the same 1,024 slots in all.
    Dispatch,
    /// W4, W1 at 2 and at 4 at a time, W1 with output, W2, W3, steal and submit, one after the other.
    All,
}

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Which workload to run.
    #[arg(long, value_enum, default_value_t = Workload::Steal)]
    pub workload: Workload,
    /// Jobs in the workload [default: w1 5000, w2 2000, w3 500, w4 200000, steal 2000, submit 50000, dispatch
    /// 200000].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Seed of the job lengths.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Workers in the local cluster [default: steal 4, w1 1, the others 2].
    #[arg(long)]
    pub workers: Option<u32>,
    /// Slots per worker [default: steal 4, w2 8, w4 256, the others 2].
    #[arg(long)]
    pub slots: Option<u32>,
    /// Queue capacity per worker [default: steal 64, w4 256, the others the worker's own (adaptive)].
    #[arg(long)]
    pub queue_capacity: Option<u32>,
    /// Run the controller and each worker as a process of its own, and submit and wait with `burst submit
    /// --wait`, as users do (w1, w2, w3) [default: one process].
    #[arg(long)]
    pub processes: bool,
    /// Only the line as users run it (durable store, mutual TLS): no in-memory or plaintext lines (w1-w3).
    #[arg(long)]
    pub main_only: bool,
}

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// A JSON Lines trace: {"arrival_s": .., "runtime_s": .., "cpu_millis": .., "gpus": .., "expected_runtime_s": ..}
    /// per job [default: a synthetic workload].
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Jobs in the synthetic workload.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Seed of the synthetic workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Mean job runtime of the synthetic workload, in seconds.
    #[arg(long, default_value_t = 300.0)]
    pub runtime_mean: f64,
    /// Shape of the synthetic runtimes' Pareto tail (above 1; lower is heavier).
    #[arg(long, default_value_t = 1.5)]
    pub runtime_shape: f64,
    /// Offered load on the fixed pool (1.0: its slots exactly busy on average); arrivals are Poisson.
    #[arg(long, default_value_t = 1.1)]
    pub load: f64,
    /// Slots of the fixed pool.
    #[arg(long, default_value_t = 64)]
    pub fixed_slots: u32,
    /// Price of a slot-second on the fixed pool (already paid for: 0).
    #[arg(long, default_value_t = 0.0)]
    pub fixed_cost: f64,
    /// Slots of the elastic pool; 0: as many as asked for.
    #[arg(long, default_value_t = 0)]
    pub elastic_slots: u32,
    /// Price of a slot-second on the elastic pool.
    #[arg(long, default_value_t = 1.0)]
    pub elastic_cost: f64,
    /// Policies to compare; repeatable [default: all three].
    #[arg(long, value_enum)]
    pub policy: Vec<burst_controller::policy::PolicyKind>,
    /// What the wait policy's budget is proportional to.
    #[arg(long, value_enum, default_value = "constant")]
    pub wait_by: burst_controller::policy::WaitBy,
    /// Wait factors to sweep (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 30.0, 120.0, 300.0, 600.0, 1800.0, 3600.0])]
    pub wait_factor: Vec<f64>,
}

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Workers to start [default: one per core, at least 2].
    #[arg(long)]
    pub workers: Option<u32>,
    /// Slots per worker [default: number of cores].
    #[arg(long)]
    pub slots: Option<u32>,
    /// Queue capacity per worker [default: the worker's own: 8 × slots while jobs are short, 2 × slots otherwise].
    #[arg(long)]
    pub queue_capacity: Option<u32>,
    /// Jobs in the demo batch (0: none).
    #[arg(long, default_value_t = 1000)]
    pub jobs: u64,
    /// Router for the controller.
    #[arg(long, value_enum, default_value_t = burst_controller::router::RouterKind::Roundrobin)]
    pub router: burst_controller::router::RouterKind,
    /// Controller address [default: 127.0.0.1 with a free port].
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Where job output goes [default: a temporary directory, removed at exit unless --keep].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Skip the plain local spawner run that the batch is compared with.
    #[arg(long)]
    pub no_baseline: bool,
    /// Stay up after the batch so other shells can submit (Ctrl-C to stop).
    #[arg(long)]
    pub keep: bool,
    /// Plaintext gRPC inside the local cluster instead of mutual TLS.
    #[arg(long)]
    pub insecure: bool,
    /// Serve the controller's HTTP side here too (the HTTP API at /v1, the dashboard at /ui, /metrics): HTTPS
    /// with the cluster's certificates unless --insecure. Port 0 picks a free port.
    #[arg(long)]
    pub http_listen: Option<std::net::SocketAddr>,
    /// The demo job's command and arguments [default: /bin/true].
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn clap_errors_become_one_line() {
        let e = super::Cli::command().try_get_matches_from(["burst", "status"]).unwrap_err();
        let line = super::one_line(&e.render().to_string());
        assert!(line.starts_with("the following required arguments were not provided: <JOBS>"), "{line}");
        assert!(!line.contains('\n') && !line.contains("Usage"), "{line}");
    }

    #[test]
    fn a_client_flag_given_to_a_server_role_is_named() {
        let unused = |argv: &[&str]| {
            let command = super::Cli::command();
            let matches = command.clone().try_get_matches_from(argv).unwrap();
            let (role, sub) = matches.subcommand().unwrap();
            super::unused_global(&command, role, sub)
        };
        assert_eq!(unused(&["burst", "controller", "-o", "json"]).as_deref(), Some("--output"));
        assert_eq!(unused(&["burst", "operator", "--token", "t"]).as_deref(), Some("--token"));
        assert_eq!(unused(&["burst", "controller", "--controller", "x:1"]).as_deref(), Some("--controller"));
        assert_eq!(unused(&["burst", "worker", "--controller", "x:1", "--token", "t"]), None, "the worker's own flags");
        assert_eq!(unused(&["burst", "controller", "--listen", "127.0.0.1:0"]), None);
    }
}
