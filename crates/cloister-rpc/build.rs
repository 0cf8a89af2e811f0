//! Generates the internal RPC stubs from `proto/` with a pure-Rust protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [root.join("executor.proto"), root.join("keyvault.proto")];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    // Messages carrying private keys get a redacting Debug (in lib.rs), never a derived one.
    tonic_prost_build::configure()
        .skip_debug([
            ".cloister.keyvault.v1.FleetSecret",
            ".cloister.keyvault.v1.Released",
        ])
        .compile_fds(fds)?;
    Ok(())
}
