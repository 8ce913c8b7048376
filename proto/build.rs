//! Generates the burst.v1 messages and services with a vendored `protoc`, so a build needs nothing but Rust, and
//! their canonical protobuf JSON mapping (serde impls, pbjson) from the same descriptors.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("burst_descriptor.bin");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let protos = ["burst/v1/job.proto", "burst/v1/worker.proto", "burst/v1/control.proto", "burst/v1/peer.proto"];
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(&descriptors)
        .compile_with_config(config, &protos, &["."])?;
    // Field names as in the .proto files (an option the mapping allows; jobs files and `-o json` have always used
    // them, and parsers take the lowerCamelCase names too), every field shown even when it holds its default.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".burst.v1"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
