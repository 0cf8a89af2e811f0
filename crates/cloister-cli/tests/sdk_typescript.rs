//! The TypeScript SDK's own tests (Node's test runner), including its interoperability test
//! against this build's `cloister serve --dev`: bundle and manifest verification, sealing,
//! opening, receipts that the Rust CLI verifies too.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} (Node.js 20+ and npm are needed): {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_typescript_sdk_passes_its_tests_against_this_build() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/typescript");
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&sdk),
        "npm ci in sdk/typescript",
    );
    run(
        Command::new("npm")
            .arg("test")
            .env("CLOISTER_BIN", env!("CARGO_BIN_EXE_cloister"))
            .current_dir(&sdk),
        "npm test in sdk/typescript",
    );
}
