//! Property-based testing of the public API from its own OpenAPI document with Schemathesis
//! (installed from PyPI into a cache directory on first use): every phase (examples,
//! coverage, fuzzing, stateful through the document's links) and every check, against a
//! `serve --dev` platform, must find nothing — no 5xx, no response outside the document, no
//! schema-valid request refused, no schema-violating one accepted. Signed requests are
//! signed by `tests/schemathesis/hooks.py` with the CLI.
//!
//! Bounded: `CLOISTER_FUZZ_EXAMPLES` examples per operation (default 40); the run's seed is
//! printed, and `CLOISTER_FUZZ_SEED` replays one; `CLOISTER_FUZZ_VERBOSE` prints the whole
//! report of a passing run (a failing one always does).

mod common;

use std::path::Path;
use std::process::Command;

use common::Platform;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_meets_its_openapi_document_under_schemathesis() {
    let st = common::python_tools().join("bin/st");
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    // Failed authentications are Schemathesis' bread and butter: their own budget (429 after
    // 60 a minute, tested in api_errors) is turned off here so that every answer is checked.
    let p = Platform::start_with(&["--auth-failures-per-minute", "0"]).await;
    let work = p.data().join("../fuzz");
    std::fs::create_dir_all(&work).unwrap();
    let code = work.join("fuzz.js");
    std::fs::write(
        &code,
        "function handler(params, secrets, context) { return { params, n: secrets.KEY.length }; }",
    )
    .unwrap();
    let o = p.cli(&["fn", "deploy", code.to_str().unwrap(), "--secret", "KEY"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = p.cli_stdin(
        &[
            "secret",
            "put",
            "KEY",
            "--function",
            "fuzz",
            "--from-stdin",
            "--sim-root",
            &p.sim_root(),
        ],
        b"fuzz-value",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let examples = std::env::var("CLOISTER_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".into());
    let mut cmd = Command::new(&st);
    cmd.arg("--config-file")
        .arg(hooks.join("schemathesis.toml"))
        .args(["run", &format!("{}/v1/openapi.json", p.url)])
        .args(["--checks", "all", "--max-examples", &examples])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["-H", &format!("Authorization: Bearer {}", p.token)])
        .args(["--no-color", "--suppress-health-check", "all"])
        .args(["--generation-database", "none"]);
    if let Ok(seed) = std::env::var("CLOISTER_FUZZ_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let o = cmd
        .current_dir(&work)
        .env("PYTHONPATH", &hooks)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("CLOISTER_BIN", env!("CARGO_BIN_EXE_cloister"))
        .env("CLOISTER_URL", &p.url)
        .env("CLOISTER_TOKEN", &p.token)
        .env("CLOISTER_IDENTITY", p.admin_identity_path())
        .env("CLOISTER_CONFIG", p.data().join("../cli-config.json"))
        .env("CLOISTER_SIM_ROOT", p.sim_root())
        .env("CLOISTER_FUZZ_FUNCTION", "fuzz")
        .env("CLOISTER_FUZZ_DIR", &work)
        .output()
        .expect("cannot run schemathesis");
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "Schemathesis found problems:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The run reached the API's logic: the stateful phase followed the document's links.
    let links = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("API Links:"))
        .and_then(|l| l.trim().split(' ').next()?.parse::<u32>().ok());
    assert!(
        links.is_some_and(|n| n >= 5),
        "too few links followed:\n{out}"
    );
    // The summary, or everything with CLOISTER_FUZZ_VERBOSE set.
    let keep = if std::env::var_os("CLOISTER_FUZZ_VERBOSE").is_some() {
        usize::MAX
    } else {
        12
    };
    let summary: Vec<&str> = out.lines().rev().take(keep).collect();
    eprintln!(
        "{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
