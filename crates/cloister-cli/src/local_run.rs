//! `cloister fn run FILE`: runs a function on this machine, without any server, in the same
//! sandbox the executor uses (a `cloister-worker` process under the same limits and seccomp
//! allow-list), with secrets from the command line or a `.env`-style file. Labelled LOCAL:
//! there is no TEE, no attestation, no keyvault, and nothing here is confidential.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use cloister_executor::ExecutorConfig;
use cloister_executor::pool::{FunctionSpec, Job, JobResult, Supervisor};
use cloister_executor::secrets::{
    Grant, GrantFuture, GrantRequest, RunManifest, SecretError, SecretSource, SecretValues,
};
use cloister_types::limits::{RequestedLimits, ServerLimits};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::cli::RunArgs;

/// Grants the one manifest and the secrets given on the command line.
struct LocalGrant(Grant);

impl SecretSource for LocalGrant {
    fn grant<'a>(&'a self, req: GrantRequest<'a>) -> GrantFuture<'a> {
        let g = self.0.clone();
        Box::pin(async move {
            if req.loaded_code_hash != g.manifest.code_hash {
                return Err(SecretError::Missing("code".into()));
            }
            Ok(g)
        })
    }
}

/// Secrets from `--secret NAME=VALUE` and `--secrets-file F` (the flags win).
fn secrets(args: &RunArgs) -> anyhow::Result<SecretValues> {
    let mut out = SecretValues::new();
    if let Some(f) = &args.secrets_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the secrets file {}", f.display()))?,
        );
        for (k, v) in parse_env(&text).map_err(|line| {
            // The line's text is never shown: it may hold a secret.
            anyhow::anyhow!(
                "{} line {line} is not NAME=VALUE (its text is not shown)",
                f.display()
            )
        })? {
            out.insert(k, Zeroizing::new(v.as_bytes().to_vec()));
        }
    }
    for s in &args.secret {
        let Some((k, v)) = s.split_once('=') else {
            bail!("--secret takes NAME=VALUE (the name only is `{s}`)");
        };
        out.insert(k.to_owned(), Zeroizing::new(v.as_bytes().to_vec()));
    }
    for name in out.keys() {
        cloister_types::names::SecretRef::parse(name)
            .with_context(|| format!("`{name}` is not a secret name a function can declare"))?;
    }
    Ok(out)
}

/// Runs `fn run`.
pub async fn run(args: RunArgs, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let code = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let params = crate::client_cmds::read_params(args.params.clone(), args.params_file.clone())?;
    let params = RawValue::from_string(params.trim().to_owned())
        .map_err(|e| anyhow::anyhow!("the params are not valid JSON: {e}"))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => file_stem(&args.file)?,
    };
    let limits = ServerLimits::default()
        .resolve(Some(RequestedLimits {
            timeout_ms: args.timeout_ms,
            memory_mb: args.memory_mb,
        }))
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let values = secrets(&args)?;
    let code_hash = cloister_types::code_hash(&code);
    let manifest = RunManifest {
        function_id: format!("local-{name}"),
        version: 1,
        name: name.clone(),
        environment: "local".into(),
        runtime: "javascript".into(),
        entrypoint: args.entrypoint.clone(),
        code_hash: code_hash.clone(),
        secrets: values.keys().cloned().collect(),
        limits,
        digest: "local".into(),
        env: args.env.iter().cloned().collect(),
        source_name: crate::client_cmds::source_name_of(&args.file),
        keys: Vec::new(),
        egress: None,
    };
    cloister_types::function_env::check_env(&manifest.env)?;
    let worker =
        cloister_role::trusted::TrustedBinaries::locate(args.trusted_dir.as_deref())?.worker;
    let sup = Supervisor::new(
        ExecutorConfig::new(worker),
        Arc::new(LocalGrant(Grant {
            manifest: Arc::new(manifest),
            secrets: Arc::new(values),
            egress_secrets: Arc::default(),
            code_key: None,
        })),
    );
    eprintln!("LOCAL run of {name} (no server, no TEE: nothing here is confidential)");
    let job = Job {
        spec: FunctionSpec {
            function_id: format!("local-{name}"),
            version: 1,
            code_hash,
            secrets_epoch: 0,
        },
        params,
        code: Some(code),
        execution_id: format!("local-{}", uuid::Uuid::new_v4()),
        expected: None,
    };
    let JobResult::Ran {
        result,
        logs,
        duration,
        ..
    } = sup.run(job).await
    else {
        bail!("the local supervisor did not take the code");
    };
    let ms = duration.as_secs_f64() * 1e3;
    match result {
        Ok(r) => {
            if json {
                crate::output::json(&serde_json::json!({
                    "local": true, "result": r, "logs": logs, "durationMs": ms,
                }));
            } else {
                crate::client_cmds::print_result(&r, &logs);
                eprintln!("(local, {ms:.1} ms)");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(f) => {
            let file = args.file.display().to_string();
            // The sandbox names the source by its base name: show the path given.
            let stack = f.stack.map(|s| {
                s.replace(
                    &format!(
                        "{}:",
                        crate::client_cmds::source_name_of(&args.file).unwrap_or_else(|| {
                            cloister_sandbox::protocol::DEFAULT_SOURCE_NAME.to_owned()
                        })
                    ),
                    &format!("{file}:"),
                )
            });
            if json {
                crate::output::json(&serde_json::json!({ "local": true, "error": {
                    "code": f.code, "message": f.message,
                    "details": { "stack": stack, "logs": logs },
                } }));
            }
            eprintln!("error[{}]: {} (local)", f.code, f.message);
            for l in stack.iter().flat_map(|s| s.lines()) {
                eprintln!("  {l}");
            }
            for l in &logs {
                eprintln!("log: {l}");
            }
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

/// `NAME=VALUE` lines, the subset of `.env` files Cloister reads: blank lines and lines
/// starting with `#` are skipped (a `#` after a value is part of it), an `export ` prefix is allowed, and a value wholly inside one pair of
/// `"` or `'` quotes loses them. Nothing else is interpreted — no escapes, no `$VAR`
/// substitution (a secret with a `$` in it stays as written). Errors name the line number.
fn parse_env(text: &str) -> Result<Vec<(String, Zeroizing<String>)>, usize> {
    let mut out = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').ok_or(i + 1)?;
        let k = k.trim();
        if k.is_empty() || k.chars().any(char::is_whitespace) {
            return Err(i + 1);
        }
        let v = v.trim();
        let v = ['"', '\'']
            .iter()
            .find_map(|q| {
                v.strip_prefix(*q)
                    .and_then(|r| r.strip_suffix(*q))
                    .filter(|_| v.len() >= 2)
            })
            .unwrap_or(v);
        out.push((k.to_owned(), Zeroizing::new(v.to_owned())));
    }
    Ok(out)
}

fn file_stem(p: &Path) -> anyhow::Result<String> {
    let stem = p
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the file has no name")?;
    Ok(stem.to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_env;

    #[test]
    fn env_files_are_read_literally_and_errors_name_only_the_line() {
        let text = "# comment\n\nA=1\nexport B = \"two words\"\nC='$HOME'\nD=p$ss=w#rd\n";
        let got: Vec<(String, String)> = parse_env(text)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "$HOME".into()),
                ("D".into(), "p$ss=w#rd".into()),
            ]
        );
        assert_eq!(
            parse_env("A=1\nsecret-without-equals\n").map(|_| ()),
            Err(2)
        );
        assert_eq!(parse_env("BAD KEY=1").map(|_| ()), Err(1));
    }
}
