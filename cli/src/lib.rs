//! The `burst` command: submit and observe jobs, run a local cluster (`burst dev`), and run the controller, a
//! worker or the Kubernetes operator (`burst controller`, `burst worker`, `burst operator`): one binary, every role.

pub mod args;
pub mod certs;
pub mod client;
pub mod commands;
pub mod jobfile;
pub mod kubectl;
pub mod local;
pub mod progress;
pub mod render;
pub mod spawner;
pub mod units;

use args::{Cli, Command};
use client::Ctx;

/// Runs one command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let Cli { controller, config, output, token, tls_ca, tls_cert, tls_key, cluster, namespace, identity, command } =
        cli;
    match command {
        Command::Controller(args) => {
            burst_controller::run(args.into_config()?).await?;
            return Ok(0);
        }
        Command::Worker(args) => {
            burst_worker::run(args.into_config()?).await?;
            return Ok(0);
        }
        Command::Operator(args) => {
            burst_operator::run(args).await?;
            return Ok(0);
        }
        Command::Certs(args::CertsCommand::Init { dir, workers, clients, hosts, days }) => {
            let clients = if clients.is_empty() { vec![("admin".into(), "admin".into())] } else { clients };
            let plan = certs::Plan { dir, workers, clients, hosts, days };
            for path in certs::init(&plan).map_err(|e| client::Usage(format!("{e:#}")))? {
                println!("{}", path.display());
            }
            return Ok(0);
        }
        Command::Certs(args::CertsCommand::Client { dir, name, role, days }) => {
            let written = certs::issue_client(&dir, &name, &role, days).map_err(|e| client::Usage(format!("{e:#}")))?;
            written.iter().for_each(|path| println!("{}", path.display()));
            return Ok(0);
        }
        Command::Simulate(args) => return commands::simulate::run(args, output == Some(args::Format::Json)),
        _ => {}
    }
    let tls = tls_ca.map(|ca| client::ClientTls::Files { ca, identity: tls_cert.zip(tls_key) });
    // Through the Kubernetes API, for the commands that talk to a controller (dev and bench run their own): held
    // while the command runs (the port-forward). The client certificate is the credential there, so a token
    // from the environment (another cluster's, perhaps) is not sent.
    let local = matches!(command, Command::Dev(_) | Command::Bench(_));
    let reached = match (cluster.is_some() || args::plugin()) && !local {
        true => Some(kubectl::reach(&kubectl::Target { cluster, namespace, client: identity }).await?),
        false => None,
    };
    let (controller, tls, token) = match &reached {
        Some(r) => (Some(r.controller.clone()), r.tls.clone(), None),
        None => (controller, tls, token),
    };
    let ctx = Ctx::new(controller, config.as_deref(), output, token.as_deref(), tls)?;
    match command {
        Command::Submit(args) => commands::submit::run(&ctx, args).await,
        Command::Status { jobs, watch } => commands::read::status(&ctx, jobs, watch).await,
        Command::Wait { jobs, timeout } => commands::read::wait_jobs(&ctx, jobs, timeout).await,
        Command::List { states, labels, owner, limit, all, watch, newest } => {
            let limit = if all { usize::MAX } else { limit };
            let query = commands::read::ListQuery { states, labels, owner: owner.unwrap_or_default(), limit, newest };
            commands::read::list(&ctx, query, watch).await
        }
        Command::Logs { job, follow, stderr, tail } => commands::logs::run(&ctx, job, follow, stderr, tail).await,
        Command::Workers => commands::read::workers(&ctx).await,
        Command::Pools => commands::read::pools(&ctx).await,
        Command::Shares => commands::read::shares(&ctx).await,
        Command::Cordon { workers } => commands::read::cordon(&ctx, workers, true).await,
        Command::Uncordon { workers } => commands::read::cordon(&ctx, workers, false).await,
        Command::Cancel { jobs, labels } => commands::read::cancel(&ctx, jobs, labels).await,
        Command::Watch { once, interval } => commands::read::watch(&ctx, once, interval).await,
        Command::Dev(args) => commands::dev::run(&ctx, args).await,
        Command::Bench(args) => commands::bench::run(&ctx, args).await,
        Command::Controller(_)
        | Command::Worker(_)
        | Command::Operator(_)
        | Command::Certs(_)
        | Command::Simulate(_) => {
            unreachable!("handled above")
        }
    }
}
