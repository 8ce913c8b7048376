use clap::Parser;

/// burst-worker: runs jobs leased by a burst controller.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    args: burst_worker::Args,
}

#[global_allocator]
static ALLOCATOR: burst_proto::alloc::Allocator = burst_proto::alloc::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    burst_proto::telemetry::init();
    let config = Cli::parse().args.into_config()?;
    burst_worker::run(config).await
}
