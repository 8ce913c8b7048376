use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: burst_proto::alloc::Allocator = burst_proto::alloc::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = burst_cli::args::parse();
    use burst_cli::args::Command;
    let serving = matches!(cli.command, Command::Controller(_) | Command::Worker(_) | Command::Operator(_));
    if matches!(cli.command, Command::Simulate(_)) {
        // A command without sockets whose reader went away (`burst simulate | head`) ends quietly, as Unix tools
        // do, instead of panicking on the failed print. Every other command keeps ignoring SIGPIPE: a socket
        // closed under a write must be an error it reports, not a silent death.
        // SAFETY: setting a signal's disposition to its default before any thread that could rely on it exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    burst_proto::telemetry::init_with(if serving { "info" } else { "warn" });
    match burst_cli::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("burst: {}", burst_cli::client::error_line(&e));
            ExitCode::from(burst_cli::client::exit_code(&e))
        }
    }
}
