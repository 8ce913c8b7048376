//! Generates the burst.v1 messages and services with a vendored `protoc`, so a build needs nothing but Rust.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let protos = ["burst/v1/job.proto", "burst/v1/worker.proto", "burst/v1/control.proto", "burst/v1/peer.proto"];
    tonic_prost_build::configure().build_client(true).build_server(true).compile_with_config(
        config,
        &protos,
        &["."],
    )?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
