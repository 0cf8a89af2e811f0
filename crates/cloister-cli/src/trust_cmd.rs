//! `cloister trust`: what this client accepts from a platform before it seals anything
//! (`cloister_client::trust::TrustSettings`), kept per server URL in the CLI config.

use std::process::ExitCode;

use anyhow::Context;
use cloister_client::trust::TrustSettings;
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

/// Runs `trust ...` for the server at `url`.
pub fn run(url: &str, cmd: TrustCommand, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut s = load(url)?;
    let changed = match cmd {
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
