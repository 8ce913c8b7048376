use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = burst_cli::args::Cli::parse();
    let serving = matches!(cli.command, burst_cli::args::Command::Controller(_) | burst_cli::args::Command::Worker(_));
    burst_proto::telemetry::init_with(if serving { "info" } else { "warn" });
    match burst_cli::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("burst: {}", burst_cli::client::error_line(&e));
            ExitCode::from(burst_cli::client::exit_code(&e))
        }
    }
}
