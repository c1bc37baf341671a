//! Compiles the `chatpay.v1` protobuf files with a vendored `protoc`, so the
//! build needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/chatpay/v1/ledger.proto",
        "proto/chatpay/v1/client.proto",
        "proto/chatpay/v1/validator.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("chatpay_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &["proto"])?;
    Ok(())
}
