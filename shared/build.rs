//! Compiles `proto/asdsweep/v1/*.proto` with protox (pure Rust), so building
//! needs no system `protoc`.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("CARGO_FEATURE_PROTO").is_none() {
        return Ok(());
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = [
        "asdsweep/v1/worker.proto",
        "asdsweep/v1/sweep.proto",
        "asdsweep/v1/artifact.proto",
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
