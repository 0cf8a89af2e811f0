//! The crate graph is the trust boundary made visible (ARCHITECTURE §10, §11): the untrusted
//! gateway links none of the trusted roles' code and none of keyvault's storage, and the
//! trusted roles link nothing of the gateway's. Read from `cargo metadata` (the lock file; no
//! network).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Workspace crates and the workspace crates each depends on (normal dependencies only).
fn workspace_graph() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut graph = BTreeMap::new();
    for pkg in meta["packages"].as_array().unwrap() {
        if !members.contains(pkg["id"].as_str().unwrap()) {
            continue;
        }
        let deps = pkg["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null() && d["path"].is_string())
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        graph.insert(pkg["name"].as_str().unwrap().to_owned(), deps);
    }
    graph
}

fn closure(graph: &BTreeMap<String, Vec<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(c) = stack.pop() {
        for d in graph.get(&c).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_gateway_links_no_trusted_code_and_no_keyvault_storage() {
    let graph = workspace_graph();
    let gateway = closure(&graph, "cloister-gateway");
    assert!(gateway.contains("cloister-store"), "{gateway:?}");
    for forbidden in [
        "cloister-keyvault",
        "cloister-vault-store",
        "cloister-executor",
        "cloister-sandbox",
        "cloister-egress",
    ] {
        assert!(
            !gateway.contains(forbidden),
            "cloister-gateway depends on {forbidden}: {gateway:?}"
        );
    }
    for trusted in [
        "cloister-keyvault",
        "cloister-keyvaultd",
        "cloister-executor",
        "cloister-executord",
        "cloister-vault-store",
    ] {
        let deps = closure(&graph, trusted);
        for untrusted in ["cloister-gateway", "cloister-store", "cloister-client"] {
            assert!(
                !deps.contains(untrusted),
                "{trusted} depends on {untrusted}: {deps:?}"
            );
        }
    }
}
