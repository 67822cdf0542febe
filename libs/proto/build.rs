//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and writes the
//! file descriptor set next to the generated code for server reflection.

use std::{env, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "manifold/tenancy/v1/tenancy.proto",
        "manifold/sites/v1/sites.proto",
        "manifold/vk8s/v1/vk8s.proto",
        "manifold/replication/v1/replication.proto",
        "manifold/audit/v1/audit.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(out.join("manifold_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // `SiteSync.Connect` would clash with the generated `connect` constructor;
        // callers build clients from a configured `Channel` anyway.
        .build_transport(false)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
