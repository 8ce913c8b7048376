//! The controller's settings: command-line flags and `BURST_CONTROLLER_*` variables over the config file's
//! `[controller]` section over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use burst_proto::tls::TlsFiles;

use crate::admission::RateLimit;
use crate::policy::{Policy, PolicyKind, PoolConfig, WaitBy};
use crate::retention::{DEFAULT_MAX_AGE, DEFAULT_MAX_JOBS, Limits};
use crate::router::RouterKind;
use crate::scheduler::Quota;

/// Loopback by default: a controller is reachable from elsewhere only when its operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// A worker silent this long is dead. Ten seconds rides out a GC pause or a brief network blip without
/// leaving a dead worker's jobs stranded for long.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Workers heartbeat this often: several heartbeats fit in one lease timeout, so one lost packet is harmless.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Config file (TOML, or JSON with a .json name); its [controller] section is read.
    #[arg(long, env = "BURST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on; port 0 picks a free port. The bound address is the first line of stdout.
    #[arg(long, env = "BURST_CONTROLLER_LISTEN")]
    pub listen: Option<String>,
    /// Address to serve HTTP on: the HTTP API at /v1, the dashboard at /ui, /metrics (Prometheus), /healthz and
    /// /readyz; over TLS with the gRPC port's certificates when it has TLS [default: none, no HTTP].
    #[arg(long, env = "BURST_CONTROLLER_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Serve the HTTP port in plaintext although the gRPC port has TLS: only behind something that encrypts it
    /// (a TLS-terminating proxy or a service mesh), since the port accepts submissions and carries tokens.
    #[arg(long, env = "BURST_HTTP_PLAINTEXT")]
    pub http_plaintext: bool,
    /// Host names the dashboard answers to when the controller asks no credentials, besides IP addresses and
    /// localhost (a guard against DNS rebinding); comma-separated.
    #[arg(long, env = "BURST_HTTP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub http_allowed_hosts: Vec<String>,
    /// How jobs are spread over workers.
    #[arg(long, env = "BURST_ROUTER", value_enum)]
    pub router: Option<RouterKind>,
    /// Milliseconds of silence after which a worker is dead and its jobs are requeued [default: 10000].
    #[arg(long, env = "BURST_LEASE_TIMEOUT_MS")]
    pub lease_timeout_ms: Option<u64>,
    /// Milliseconds between worker heartbeats, told to workers at registration [default: 1000].
    #[arg(long, env = "BURST_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Finished jobs kept (status and spec), oldest forgotten first [default: 1000000].
    #[arg(long, env = "BURST_RETAIN_FINISHED_JOBS")]
    pub retain_finished_jobs: Option<usize>,
    /// Milliseconds a finished job is kept [default: 86400000, a day].
    #[arg(long, env = "BURST_RETAIN_FINISHED_MS")]
    pub retain_finished_ms: Option<u64>,
    /// Directory of the durable job store (one file, burst.redb) [default: ./burst-data].
    #[arg(long, env = "BURST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep state in memory only: nothing survives a restart (tests, demos).
    #[arg(long, env = "BURST_EPHEMERAL")]
    pub ephemeral: bool,
    /// Require a bearer token from every caller, from this TOML file of [[token]] name/role/token entries
    /// [default: no authentication].
    #[arg(long, env = "BURST_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Most unfinished jobs the controller holds; submissions past it get RESOURCE_EXHAUSTED [default: 2000000].
    #[arg(long, env = "BURST_MAX_ACTIVE_JOBS")]
    pub max_active_jobs: Option<u64>,
    /// Most unfinished jobs one submitter may have [default: the global maximum].
    #[arg(long, env = "BURST_MAX_ACTIVE_JOBS_PER_SUBMITTER")]
    pub max_active_jobs_per_submitter: Option<u64>,
    /// Jobs per second one submitter may submit, sustained; 0 turns the limit off [default: 200000].
    #[arg(long, env = "BURST_SUBMIT_RATE")]
    pub submit_rate: Option<f64>,
    /// Jobs one submitter may submit at once after a pause [default: 200000].
    #[arg(long, env = "BURST_SUBMIT_BURST")]
    pub submit_burst: Option<f64>,
    /// A pool of workers and its relative cost per slot-second, `NAME=COST` or `NAME=COST:elastic` (scaled with
    /// demand); repeat for each pool. Workers join one with `burst worker --pool NAME`; a pool named only by a
    /// worker costs 1 [default: the pool "default", cost 1].
    #[arg(long = "pool", env = "BURST_POOLS", value_delimiter = ',', value_name = "NAME=COST[:elastic]")]
    pub pools: Vec<String>,
    /// Which pools a queued job may go to: cheapest (the cheapest with room, no waiting), first-pool-only (the
    /// cheapest only, never the others) or wait (the cheapest until the job's waiting budget is spent, then any)
    /// [default: cheapest].
    #[arg(long, env = "BURST_POLICY", value_enum)]
    pub policy: Option<PolicyKind>,
    /// Under --policy wait, what the budget is proportional to: constant (the factor in seconds), runtime (the
    /// job's expected runtime × the factor), resources (its cores + gpus × the factor in seconds) or compute
    /// (runtime × size × the factor) [default: constant].
    #[arg(long, env = "BURST_WAIT_BY", value_enum)]
    pub wait_by: Option<WaitBy>,
    /// The waiting budget's factor (see --wait-by) [default: 10].
    #[arg(long, env = "BURST_WAIT_FACTOR")]
    pub wait_factor: Option<f64>,
    #[command(flatten)]
    pub tls: burst_proto::tls::TlsArgs,
}

/// The `[controller]` section of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub http_allowed_hosts: Option<Vec<String>>,
    pub http_plaintext: Option<bool>,
    pub router: Option<RouterKind>,
    pub lease_timeout_ms: Option<u64>,
    pub heartbeat_interval_ms: Option<u64>,
    pub retain_finished_jobs: Option<usize>,
    pub retain_finished_ms: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub ephemeral: Option<bool>,
    pub tokens_file: Option<PathBuf>,
    pub max_active_jobs: Option<u64>,
    pub max_active_jobs_per_submitter: Option<u64>,
    pub submit_rate: Option<f64>,
    pub submit_burst: Option<f64>,
    pub pools: Option<Vec<PoolConfig>>,
    pub policy: Option<PolicyKind>,
    pub wait_by: Option<WaitBy>,
    pub wait_factor: Option<f64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub insecure: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub listen: SocketAddr,
    /// Where to serve metrics, health and the dashboard; `None`: no HTTP side.
    pub http_listen: Option<SocketAddr>,
    /// Host names the dashboard of an unauthenticated controller answers to (besides IPs and localhost).
    pub http_allowed_hosts: Vec<String>,
    /// The HTTP side in plaintext even with `tls` (behind a proxy or mesh that encrypts it).
    pub http_plaintext: bool,
    pub router: RouterKind,
    pub lease_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub retention: Limits,
    /// Where the durable store lives, unless `ephemeral`.
    pub data_dir: PathBuf,
    pub ephemeral: bool,
    /// Bearer tokens callers must present; `None`: no authentication.
    pub tokens_file: Option<PathBuf>,
    pub quota: Quota,
    pub submit_rate: RateLimit,
    /// Mutual TLS; `None`: plaintext (the binaries require `--insecure` for that).
    pub tls: Option<TlsFiles>,
    /// The pools known from the start (workers may name more), and how jobs are placed among them.
    pub pools: Vec<PoolConfig>,
    pub policy: Policy,
}

/// A submitter's default sustained rate and burst: far above what one client needs, low enough that a runaway
/// loop cannot fill the controller's memory faster than the quota can refuse it.
pub const DEFAULT_SUBMIT_RATE: RateLimit = RateLimit { per_second: 200_000.0, burst: 200_000.0 };

/// The durable store's directory when none is configured.
pub const DEFAULT_DATA_DIR: &str = "burst-data";

/// The default is for embedding (tests, `burst dev`): loopback and in memory. The binaries default to the
/// durable store (see [`Args::into_config`]).
impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            listen: DEFAULT_LISTEN.parse().expect("default listen address parses"),
            http_listen: None,
            http_allowed_hosts: Vec::new(),
            http_plaintext: false,
            router: RouterKind::default(),
            lease_timeout: DEFAULT_LEASE_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            retention: Limits::default(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            ephemeral: true,
            tokens_file: None,
            quota: Quota::default(),
            submit_rate: DEFAULT_SUBMIT_RATE,
            tls: None,
            pools: Vec::new(),
            policy: Policy::default(),
        }
    }
}

impl Args {
    pub fn into_config(self) -> anyhow::Result<ControllerConfig> {
        let Args {
            config,
            listen,
            http_listen,
            http_allowed_hosts,
            http_plaintext,
            router,
            lease_timeout_ms,
            heartbeat_interval_ms,
            retain_finished_jobs,
            retain_finished_ms,
            data_dir,
            ephemeral,
            tokens_file,
            max_active_jobs,
            max_active_jobs_per_submitter,
            submit_rate,
            submit_burst,
            pools,
            policy,
            wait_by,
            wait_factor,
            tls,
        } = self;
        let file: Section = match &config {
            Some(path) => burst_proto::config::load_section(path, "controller")?,
            None => Section::default(),
        };
        let tls = tls
            .resolve([file.tls_cert.clone(), file.tls_key.clone(), file.tls_ca.clone()], file.insecure)
            .map_err(anyhow::Error::msg)?;
        let listen = listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr =
            listen.parse().with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:50051"))?;
        let http_listen =
            burst_proto::http::parse_listen(http_listen.or(file.http_listen)).map_err(anyhow::Error::msg)?;
        let lease_timeout =
            lease_timeout_ms.or(file.lease_timeout_ms).map_or(DEFAULT_LEASE_TIMEOUT, Duration::from_millis);
        let heartbeat_interval = heartbeat_interval_ms
            .or(file.heartbeat_interval_ms)
            .map_or(DEFAULT_HEARTBEAT_INTERVAL, Duration::from_millis);
        if heartbeat_interval.is_zero() || heartbeat_interval * 2 > lease_timeout {
            bail!(
                "the heartbeat interval ({} ms) must be above 0 and at most half the lease timeout ({} ms)",
                heartbeat_interval.as_millis(),
                lease_timeout.as_millis()
            );
        }
        let pools = match pools.is_empty() {
            true => file.pools.unwrap_or_default(),
            false => {
                pools.iter().map(|f| PoolConfig::parse_flag(f)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?
            }
        };
        check_pools(&pools)?;
        let policy = Policy {
            kind: policy.or(file.policy).unwrap_or_default(),
            wait_by: wait_by.or(file.wait_by).unwrap_or_default(),
            factor: wait_factor.or(file.wait_factor).unwrap_or(crate::policy::DEFAULT_WAIT_FACTOR),
        };
        policy.validate().map_err(anyhow::Error::msg)?;
        let http_allowed_hosts = match http_allowed_hosts.is_empty() {
            true => file.http_allowed_hosts.unwrap_or_default(),
            false => http_allowed_hosts,
        };
        Ok(ControllerConfig {
            listen,
            http_listen,
            http_allowed_hosts,
            http_plaintext: http_plaintext || file.http_plaintext.unwrap_or(false),
            router: router.or(file.router).unwrap_or_default(),
            lease_timeout,
            heartbeat_interval,
            retention: Limits {
                max_jobs: retain_finished_jobs.or(file.retain_finished_jobs).unwrap_or(DEFAULT_MAX_JOBS),
                max_age: retain_finished_ms.or(file.retain_finished_ms).map_or(DEFAULT_MAX_AGE, Duration::from_millis),
            },
            data_dir: data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            ephemeral: ephemeral || file.ephemeral.unwrap_or(false),
            tokens_file: tokens_file.or(file.tokens_file),
            quota: {
                let max_active = max_active_jobs.or(file.max_active_jobs).unwrap_or(Quota::default().max_active);
                let per_owner = max_active_jobs_per_submitter.or(file.max_active_jobs_per_submitter);
                Quota { max_active, max_active_per_owner: per_owner.unwrap_or(max_active) }
            },
            submit_rate: RateLimit {
                per_second: submit_rate.or(file.submit_rate).unwrap_or(DEFAULT_SUBMIT_RATE.per_second),
                burst: submit_burst.or(file.submit_burst).unwrap_or(DEFAULT_SUBMIT_RATE.burst),
            },
            tls,
            pools,
            policy,
        })
    }
}

/// Each pool valid, no name twice, at most [`crate::scheduler::MAX_POOLS`].
pub fn check_pools(pools: &[PoolConfig]) -> anyhow::Result<()> {
    for (i, p) in pools.iter().enumerate() {
        p.validate().map_err(anyhow::Error::msg)?;
        if pools[..i].iter().any(|q| q.name == p.name) {
            bail!("pool {:?} is configured twice", p.name);
        }
    }
    if pools.len() > crate::scheduler::MAX_POOLS {
        bail!("{} pools configured; at most {}", pools.len(), crate::scheduler::MAX_POOLS);
    }
    Ok(())
}
