use clap::Parser;

/// burst-controller: accepts jobs over gRPC and leases them to workers.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    args: burst_controller::Args,
}

#[global_allocator]
static ALLOCATOR: burst_proto::alloc::Allocator = burst_proto::alloc::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    burst_proto::telemetry::init();
    let config = Cli::parse().args.into_config()?;
    burst_controller::run(config).await
}
