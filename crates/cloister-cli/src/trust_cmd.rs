//! `cloister trust`: what this client accepts from a platform before it seals anything
//! (`cloister_client::trust::TrustSettings`), kept per server URL in the CLI config.

use std::process::ExitCode;

use anyhow::Context;
use cloister_client::trust::{DEFAULT_MAX_BUNDLE_AGE_SECS as DEFAULT_AGE, TrustSettings};
use serde_json::json;

use crate::cli::{TrustCommand, TrustList};
use crate::output;
use crate::secret_cmd::{config_path, read_config, write_config};

/// The trust settings for `url` (defaults when none are stored).
pub fn load(url: &str) -> anyhow::Result<TrustSettings> {
    let path = config_path()?;
    let cfg = read_config(&path)?;
    match cfg.get("trust").and_then(|t| t.get(url)) {
        None => Ok(TrustSettings::default()),
        Some(v) => serde_json::from_value(v.clone()).with_context(|| {
            format!(
                "the trust settings for {url} in {} are malformed",
                path.display()
            )
        }),
    }
}

/// After `serve --dev` created a new platform at `url`: this machine's pins of the previous
/// one (its sim root, the trusted roots) name `root` instead, so the CLI does not refuse the
/// platform the same user just created. Returns whether anything changed.
pub fn repin_new_platform(url: &str, root: &str) -> anyhow::Result<bool> {
    repin_in(&config_path()?, url, root)
}

fn repin_in(path: &std::path::Path, url: &str, root: &str) -> anyhow::Result<bool> {
    use crate::credentials::normalize_url;
    let path = path.to_owned();
    let mut cfg = read_config(&path)?;
    let key = normalize_url(url);
    let mut changed = false;
    if let Some(roots) = cfg.get_mut("simRoots").and_then(|r| r.as_object_mut()) {
        for (u, v) in roots.iter_mut() {
            if normalize_url(u) == key && v.as_str() != Some(root) {
                *v = json!(root);
                changed = true;
            }
        }
    }
    if let Some(trust) = cfg.get_mut("trust").and_then(|t| t.as_object_mut()) {
        for (u, v) in trust.iter_mut() {
            if normalize_url(u) != key {
                continue;
            }
            let mut s: TrustSettings = serde_json::from_value(v.clone()).unwrap_or_default();
            if !s.roots.is_empty() && s.roots != [root] {
                s.roots = vec![root.to_owned()];
                *v = serde_json::to_value(&s)?;
                changed = true;
            }
        }
    }
    if changed {
        write_config(&path, &cfg)?;
    }
    Ok(changed)
}

fn store(url: &str, s: &TrustSettings) -> anyhow::Result<()> {
    let path = config_path()?;
    let mut cfg = read_config(&path)?;
    if !cfg.is_object() {
        cfg = json!({});
    }
    cfg["trust"][url] = serde_json::to_value(s)?;
    write_config(&path, &cfg)
}

fn normalized(hex_value: &str, bytes: usize, what: &str) -> anyhow::Result<String> {
    let v = hex_value.trim().to_ascii_lowercase();
    if v.len() != bytes * 2 || hex::decode(&v).is_err() {
        anyhow::bail!("{what} must be {} hex digits", bytes * 2);
    }
    Ok(v)
}

fn edit(list: &mut Vec<String>, value: String, add: bool) -> bool {
    let present = list.contains(&value);
    if add && !present {
        list.push(value);
        true
    } else if !add && present {
        list.retain(|v| v != &value);
        true
    } else {
        false
    }
}

/// The sections of the CLI config that hold pins per server URL.
const PER_URL: [&str; 4] = crate::secret_cmd::PER_URL_SECTIONS;

/// `trust list`: what is pinned, per server.
fn list_all(json_out: bool) -> anyhow::Result<ExitCode> {
    use crate::credentials::normalize_url;
    let path = config_path()?;
    let cfg = read_config(&path)?;
    let mut servers: std::collections::BTreeMap<
        String,
        serde_json::Map<String, serde_json::Value>,
    > = Default::default();
    for section in PER_URL {
        if let Some(obj) = cfg.get(section).and_then(|v| v.as_object()) {
            for (url, v) in obj {
                servers
                    .entry(normalize_url(url))
                    .or_default()
                    .insert(section.to_owned(), v.clone());
            }
        }
    }
    if json_out {
        output::json(&json!({ "file": path, "servers": servers }));
        return Ok(ExitCode::SUCCESS);
    }
    if servers.is_empty() {
        println!("nothing pinned yet (in {})", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    for (url, pins) in &servers {
        println!("{url}");
        if let Some(r) = pins.get("simRoots").and_then(|v| v.as_str()) {
            println!("  sim root     {r}");
        }
        if let Some(t) = pins.get("trust") {
            let n = |k: &str| t.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
            println!(
                "  trust        {} root(s), {} keyvault build(s), {} executor build(s), max age {} s",
                n("roots"),
                n("keyvaultMeasurements"),
                n("executorMeasurements"),
                t.get("maxBundleAgeSecs")
                    .cloned()
                    .unwrap_or(json!(DEFAULT_AGE))
            );
        }
        if pins.contains_key("keyvaults") {
            println!("  keyvault     instance pinned");
        }
        if let Some(f) = pins.get("sealedFunctions").and_then(|v| v.as_object()) {
            let names: Vec<&str> = f.keys().map(String::as_str).collect();
            println!("  functions    {}", names.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `trust forget`: drops every pin for `url`; returns the sections that held one.
pub fn forget(url: &str) -> anyhow::Result<Vec<&'static str>> {
    use crate::credentials::normalize_url;
    let path = config_path()?;
    let mut cfg = read_config(&path)?;
    let key = normalize_url(url);
    let mut dropped = Vec::new();
    for section in PER_URL {
        if let Some(obj) = cfg.get_mut(section).and_then(|v| v.as_object_mut()) {
            let before = obj.len();
            obj.retain(|u, _| normalize_url(u) != key);
            if obj.len() != before {
                dropped.push(section);
            }
        }
    }
    if !dropped.is_empty() {
        write_config(&path, &cfg)?;
    }
    Ok(dropped)
}

/// Runs `trust ...` for the server at `url`.
pub fn run(url: &str, cmd: TrustCommand, json_out: bool) -> anyhow::Result<ExitCode> {
    let cmd = match cmd {
        TrustCommand::List => return list_all(json_out),
        TrustCommand::Forget { url: which } => {
            let target = which.as_deref().unwrap_or(url);
            let dropped = forget(target)?;
            if json_out {
                output::json(&json!({ "url": target, "forgotten": dropped }));
            } else if dropped.is_empty() {
                println!("nothing was pinned for {target}");
            } else {
                println!(
                    "forgot what this machine pinned for {target} ({}); the next use pins the \
                     platform it finds there, and says so",
                    dropped.join(", ")
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        other => other,
    };
    let mut s = load(url)?;
    let changed = match cmd {
        TrustCommand::List | TrustCommand::Forget { .. } => false,
        TrustCommand::Show => false,
        TrustCommand::Reset => {
            s = TrustSettings::default();
            true
        }
        TrustCommand::MaxAge { seconds } => {
            if seconds == 0 {
                anyhow::bail!("a maximum bundle age of 0 s refuses every bundle");
            }
            s.max_bundle_age_secs = i64::try_from(seconds).context("too large")?;
            true
        }
        TrustCommand::Add(TrustList::Root { value }) => edit(
            &mut s.roots,
            normalized(&value, 32, "a root fingerprint")?,
            true,
        ),
        TrustCommand::Remove(TrustList::Root { value }) => edit(
            &mut s.roots,
            normalized(&value, 32, "a root fingerprint")?,
            false,
        ),
        TrustCommand::Add(TrustList::Keyvault { value }) => edit(
            &mut s.keyvault_measurements,
            normalized(&value, 48, "a measurement")?,
            true,
        ),
        TrustCommand::Remove(TrustList::Keyvault { value }) => edit(
            &mut s.keyvault_measurements,
            normalized(&value, 48, "a measurement")?,
            false,
        ),
        TrustCommand::Add(TrustList::Executor { value }) => edit(
            &mut s.executor_measurements,
            normalized(&value, 48, "a measurement")?,
            true,
        ),
        TrustCommand::Remove(TrustList::Executor { value }) => edit(
            &mut s.executor_measurements,
            normalized(&value, 48, "a measurement")?,
            false,
        ),
    };
    if changed {
        store(url, &s)?;
    }
    if json_out {
        output::json(&json!({ "url": url, "trust": s, "changed": changed }));
        return Ok(ExitCode::SUCCESS);
    }
    let list = |v: &[String], none: &str| {
        if v.is_empty() {
            none.to_owned()
        } else {
            v.join("\n               ")
        }
    };
    println!(
        "trust settings for {url}{}",
        if changed { " (updated)" } else { "" }
    );
    println!(
        "  roots        {}",
        list(
            &s.roots,
            "(none: the first root seen is pinned on first use)"
        )
    );
    println!(
        "  keyvault     {}",
        list(
            &s.keyvault_measurements,
            "(none: the cloister-keyvaultd next to this CLI is expected)"
        )
    );
    println!(
        "  executors    {}",
        list(
            &s.executor_measurements,
            "(any build keyvault's policy allows)"
        )
    );
    println!("  max age      {} s", s.max_bundle_age_secs);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_written_under_another_spelling_of_a_url_are_found_and_conflicts_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let root = "aa".repeat(32);
        write_config(
            &path,
            &json!({"simRoots": {"HTTP://Example.COM:8787/": root}, "other": {"X/": 1}}),
        )
        .unwrap();
        let cfg = read_config(&path).unwrap();
        assert_eq!(cfg["simRoots"]["http://example.com:8787"], json!(root));
        assert_eq!(
            cfg["other"]["X/"],
            json!(1),
            "only per-server sections are rekeyed"
        );
        write_config(
            &path,
            &json!({"simRoots": {"http://a:1/": root, "http://a:1": "bb".repeat(32)}}),
        )
        .unwrap();
        let e = read_config(&path).unwrap_err().to_string();
        assert!(
            e.contains("two different") && e.contains("http://a:1"),
            "{e}"
        );
    }

    #[test]
    fn a_new_dev_platform_replaces_the_pins_of_the_old_one_at_its_url_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let old = "aa".repeat(32);
        let new = "bb".repeat(32);
        let settings = |root: &str| {
            serde_json::to_value(TrustSettings {
                roots: vec![root.to_owned()],
                ..TrustSettings::default()
            })
            .unwrap()
        };
        let cfg = json!({
            "simRoots": {"http://127.0.0.1:8787/": old, "http://other:1": old},
            "trust": {"http://127.0.0.1:8787": settings(&old), "http://other:1": settings(&old)},
        });
        write_config(&path, &cfg).unwrap();
        assert!(repin_in(&path, "http://127.0.0.1:8787", &new).unwrap());
        let after = read_config(&path).unwrap();
        assert_eq!(after["simRoots"]["http://127.0.0.1:8787"], json!(new));
        assert_eq!(
            after["trust"]["http://127.0.0.1:8787"]["roots"],
            json!([new])
        );
        // Another server's pins are untouched.
        assert_eq!(after["simRoots"]["http://other:1"], json!(old));
        assert_eq!(after["trust"]["http://other:1"]["roots"], json!([old]));
        // Nothing left to change the second time.
        assert!(!repin_in(&path, "http://127.0.0.1:8787", &new).unwrap());
    }
}
