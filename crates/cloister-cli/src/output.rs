//! Human and JSON rendering of results and errors.

use cloister_client::ClientError;
use cloister_types::wire::{FunctionInfo, TokenInfo};

/// Prints a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

/// A CLI-side failure with a stable code (e.g. `attestation_failed` when keyvault's bundle
/// does not verify), rendered like a server error.
#[derive(Debug)]
pub struct Coded {
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// Prints a failed command: `error[<code>]: message` (and the JSON body with `--json`).
pub fn print_error(e: &anyhow::Error, json_mode: bool) {
    if let Some(c) = e.downcast_ref::<Coded>() {
        if json_mode {
            json(&serde_json::json!({ "error": { "code": c.code, "message": c.message } }));
        }
        eprintln!("error[{}]: {}", c.code, c.message);
        return;
    }
    if let Some(ClientError::Api { error, status }) = e.downcast_ref::<ClientError>() {
        if json_mode {
            json(&error.to_body());
        }
        eprintln!("error[{}]: {} (HTTP {status})", error.code, error.message);
        if *status == 401
            && let Some(hint) = crate::credentials::missing_token_hint()
        {
            eprintln!("hint: {hint}");
        }
        let d = &error.details;
        if let Some(stack) = d.get("stack").and_then(|s| s.as_str()) {
            for l in stack.lines() {
                eprintln!("  {l}");
            }
        }
        if let Some(logs) = d.get("logs").and_then(|l| l.as_array()) {
            for l in logs.iter().filter_map(|l| l.as_str()) {
                eprintln!("log: {l}");
            }
        }
        return;
    }
    if let Some(ClientError::FunctionFailed {
        code,
        message,
        stack,
        logs,
        execution_id,
        ..
    }) = e.downcast_ref::<ClientError>()
    {
        if json_mode {
            json(&serde_json::json!({ "error": {
                "code": code, "message": message,
                "details": { "executionId": execution_id, "stack": stack, "logs": logs, "sealed": true },
            } }));
        }
        eprintln!(
            "error[{code}]: {message} (execution {execution_id}; details opened from the sealed answer)"
        );
        for l in stack.iter().flat_map(|s| s.lines()) {
            eprintln!("  {l}");
        }
        for l in logs {
            eprintln!("log: {l}");
        }
        return;
    }
    if let Some(ClientError::Sealed(s)) = e.downcast_ref::<ClientError>() {
        if json_mode {
            json(
                &serde_json::json!({ "error": { "code": "sealed_answer_invalid", "message": s.to_string() } }),
            );
        }
        eprintln!("error[sealed_answer_invalid]: {s}");
        return;
    }
    if json_mode {
        json(
            &serde_json::json!({ "error": { "code": "client_error", "message": format!("{e:#}") } }),
        );
    }
    eprintln!("error: {e:#}");
}

/// Multi-line description of a function version.
pub fn function(f: &FunctionInfo) {
    println!("{} v{}", f.name, f.version);
    println!("  functionId   {}", f.function_id);
    println!("  codeHash     {}", f.code_hash);
    println!("  runtime      {} (entrypoint {})", f.runtime, f.entrypoint);
    println!("  environment  {}", f.environment);
    println!(
        "  limits       timeout {} ms, memory {} MiB",
        f.limits.timeout_ms, f.limits.memory_mb
    );
    if f.required_secrets.is_empty() {
        println!("  secrets      (none)");
    } else {
        println!("  secrets      {}", f.required_secrets.join(", "));
    }
    if let Some(s) = &f.source_name {
        println!("  source       {}", printable(s));
    }
    for (i, (k, v)) in f.env.iter().enumerate() {
        let label = if i == 0 { "env" } else { "" };
        println!("  {label:<12} {}={}", printable(k), printable(v));
    }
    println!("  created      {}", f.created_at);
}

/// A table of functions.
pub fn function_table(fs: &[FunctionInfo]) {
    if fs.is_empty() {
        println!("no functions deployed");
        return;
    }
    let w = fs.iter().map(|f| f.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<w$}  {:>7}  {:<20}  CREATED",
        "NAME", "VERSION", "CODE HASH"
    );
    for f in fs {
        let short = f.code_hash.get(..19).unwrap_or(&f.code_hash);
        println!(
            "{:<w$}  {:>7}  {:<20}  {}",
            f.name, f.version, short, f.created_at
        );
    }
}

/// A table of tokens.
pub fn token_table(ts: &[TokenInfo]) {
    if ts.is_empty() {
        println!("no active tokens");
        return;
    }
    println!("{:<20}  {:<9}  {:<24}  LABEL", "ID", "ROLE", "CREATED");
    for t in ts {
        println!(
            "{:<20}  {:<9}  {:<24}  {}",
            t.id,
            t.role.as_str(),
            t.created_at,
            t.label.as_deref().unwrap_or("")
        );
    }
}

/// A table of keyvault's identity registry.
pub fn identity_table(ids: &[cloister_types::wire::IdentityInfo]) {
    println!("{:<32}  {:<9}  {:<24}  LABEL", "ID", "ROLE", "STATUS");
    for i in ids {
        let status = match (&i.rotated_to, i.compromised, i.revoked, i.expires) {
            (_, true, _, _) => "revoked (compromised)".to_owned(),
            (Some(to), _, _, _) => format!("rotated to {}", to.get(..8).unwrap_or(to)),
            (None, false, true, _) => "revoked".to_owned(),
            (None, false, false, Some(e)) => format!("expires {}", rfc3339(e)),
            (None, false, false, None) => "active".to_owned(),
        };
        println!("{:<32}  {:<9}  {:<24}  {}", i.id, i.role, status, i.label);
    }
}

fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Prints recent invocations as an aligned table.
pub fn history_table(rs: &[cloister_types::wire::InvocationRecord]) {
    if rs.is_empty() {
        println!("no recent invocations");
        return;
    }
    let rows: Vec<Vec<String>> = rs
        .iter()
        .map(|r| {
            vec![
                r.at.clone(),
                r.execution_id.clone(),
                format!("v{}", r.version),
                r.outcome.clone(),
                format!("{:.1} ms", r.duration_ms),
                if r.sealed { "sealed" } else { "plain" }.to_owned(),
            ]
        })
        .collect();
    print_table(
        &["AT", "EXECUTION", "VERSION", "OUTCOME", "DURATION", "KIND"],
        &rows,
        &[4],
    );
}

/// Prints `rows` under `header` with every column but the last padded to its widest cell
/// (columns in `right` aligned right), two spaces apart. Cells are shown through
/// [`printable`]: what a server sent cannot drive the terminal.
pub fn print_table(header: &[&str], rows: &[Vec<String>], right: &[usize]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .filter_map(|r| r.get(i).map(|c| c.chars().count()))
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[&str]| {
        let mut out = String::new();
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == r.len() {
                out.push_str(c);
            } else if right.contains(&i) {
                out.push_str(&format!("{c:>w$}"));
            } else {
                out.push_str(&format!("{c:<w$}"));
            }
        }
        println!("{out}");
    };
    line(header);
    for r in &cells {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// `s` with control characters (escape sequences, newlines) shown as `\u{..}`: text from
/// function logs and callers' inputs cannot drive the terminal or fake lines of output.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Prints a function's versions, marking the current one.
pub fn versions_table(v: &cloister_types::wire::FunctionVersions) {
    println!("{:<3} {:>7}  {:<30}  CODE HASH", "", "VERSION", "DEPLOYED");
    for f in &v.versions {
        let mark = if f.version == v.current { "*" } else { "" };
        println!(
            "{mark:<3} {:>7}  {:<30}  {}",
            format!("v{}", f.version),
            printable(&f.created_at),
            printable(&f.code_hash)
        );
    }
    if v.pinned {
        println!("* current (rolled back: the next deploy is current again)");
    } else {
        println!("* current (the latest)");
    }
}
