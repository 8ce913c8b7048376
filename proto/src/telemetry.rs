//! Logging set-up shared by every burst binary: `tracing` to stderr (stdout is for results and the bound
//! address), filtered by `BURST_LOG` or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Starts logging at `default` level (e.g. "info") unless `BURST_LOG`/`RUST_LOG` says otherwise. Calling it
/// twice is harmless.
pub fn init_with(default: &str) {
    let filter =
        std::env::var("BURST_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Logging for servers: `info` by default.
pub fn init() {
    init_with("info");
}
