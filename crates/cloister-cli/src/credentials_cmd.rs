//! `cloister login`, `logout` and `servers`: recording which token and identity to use for
//! which server (see `credentials`).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use cloister_client::{Client, ClientError};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::LoginArgs;
use crate::credentials::{self, ServerCredentials, normalize_url};
use crate::output;

/// The token to record: the flag, else a hidden prompt on a terminal, else standard input.
fn read_token(url: &str, flag: Option<String>) -> anyhow::Result<Zeroizing<String>> {
    let t = match flag {
        Some(t) => Zeroizing::new(t),
        None if std::io::stdin().is_terminal() => Zeroizing::new(
            rpassword::prompt_password(format!("Token for {url}: "))
                .context("cannot read the token from the terminal")?,
        ),
        None => {
            let mut s = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the token from standard input")?;
            s
        }
    };
    let trimmed = t.trim();
    if trimmed.is_empty() {
        bail!("no token given: pass --token, pipe it on standard input, or type it when asked");
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the token holds spaces or control characters: pass exactly one token");
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// What `login` and `logout` report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Recorded {
    url: String,
    profile: Option<String>,
    identity: Option<PathBuf>,
    file: PathBuf,
    checked: bool,
}

/// `cloister login URL`.
pub async fn login(
    args: LoginArgs,
    token: Option<String>,
    identity: Option<PathBuf>,
    profile: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let url = normalize_url(&args.url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("{url:?} is not an http:// or https:// URL");
    }
    if let Some(p) = &profile
        && (p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        bail!("a profile name is letters, digits, `-` and `_`");
    }
    let identity = match identity {
        Some(p) => Some(
            std::fs::canonicalize(&p)
                .with_context(|| format!("the identity file {} cannot be read", p.display()))?,
        ),
        None => None,
    };
    let token = read_token(&url, token)?;
    if !args.no_check {
        let mut c = Client::new(&url, Some(token.to_string()))?;
        match c.list().await {
            Ok(_) => {}
            // A valid token without the role to list functions is still this server's.
            Err(ClientError::Api { status: 403, .. }) => {}
            Err(ClientError::Api { status: 401, error }) => bail!(
                "{url} refused this token ({}): nothing recorded",
                error.message
            ),
            Err(e) => bail!(
                "cannot check the token against {url}: {e}; nothing recorded (pass --no-check \
                 to record it anyway)"
            ),
        }
    }
    let file = credentials::update(|c| {
        let previous = c.servers.remove(&url).unwrap_or_default();
        c.servers.insert(
            url.clone(),
            ServerCredentials {
                token: Some(token.to_string()),
                token_file: None,
                identity: identity.clone().or(previous.identity),
            },
        );
        if let Some(p) = &profile {
            c.profiles.insert(p.clone(), url.clone());
        }
    })?;
    let r = Recorded {
        url: url.clone(),
        profile: profile.clone(),
        identity,
        file,
        checked: !args.no_check,
    };
    if json {
        output::json(&r);
    } else {
        println!(
            "logged in to {url}{}: token recorded in {} (mode 0600){}",
            if r.checked { " (token checked)" } else { "" },
            r.file.display(),
            profile
                .map(|p| format!("; use it with --profile {p}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `cloister logout [URL]`.
pub fn logout(url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let url = normalize_url(url);
    let mut removed = false;
    let mut profiles = Vec::new();
    let file = credentials::update(|c| {
        removed = c.servers.remove(&url).is_some();
        c.profiles.retain(|name, u| {
            let keep = normalize_url(u) != url;
            if !keep {
                profiles.push(name.clone());
            }
            keep
        });
    })?;
    if json {
        output::json(&serde_json::json!({
            "url": url, "removed": removed, "profilesRemoved": profiles, "file": file,
        }));
    } else if removed || !profiles.is_empty() {
        println!(
            "forgot the credentials for {url}{} (in {})",
            if profiles.is_empty() {
                String::new()
            } else {
                format!(" and the profiles {}", profiles.join(", "))
            },
            file.display()
        );
    } else {
        println!("no credentials were recorded for {url}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of `cloister servers`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerRow {
    url: String,
    /// `token` (recorded by login), `file:<path>` (serve --dev) or `none`.
    token: String,
    identity: Option<PathBuf>,
    profiles: Vec<String>,
}

/// `cloister servers`.
pub fn list(json: bool) -> anyhow::Result<ExitCode> {
    let path = credentials::path()?;
    let c = credentials::load(&path)?;
    let rows: Vec<ServerRow> = c
        .servers
        .iter()
        .map(|(url, s)| ServerRow {
            url: url.clone(),
            token: match (&s.token, &s.token_file) {
                (Some(_), _) => "recorded".into(),
                (None, Some(f)) => format!("file {}", f.display()),
                (None, None) => "none".into(),
            },
            identity: s.identity.clone(),
            profiles: c
                .profiles
                .iter()
                .filter(|(_, u)| normalize_url(u) == *url)
                .map(|(n, _)| n.clone())
                .collect(),
        })
        .collect();
    if json {
        output::json(&serde_json::json!({ "file": path, "servers": rows }));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no credentials recorded in {} (`cloister login URL`, or `cloister serve --dev`)",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let w = rows.iter().map(|r| r.url.len()).max().unwrap_or(3).max(3);
    println!("{:<w$}  {:<10}  TOKEN / IDENTITY", "URL", "PROFILES");
    for r in &rows {
        let profiles = if r.profiles.is_empty() {
            "-".to_owned()
        } else {
            r.profiles.join(",")
        };
        println!(
            "{:<w$}  {:<10}  token {}; identity {}",
            r.url,
            profiles,
            r.token,
            r.identity
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "default".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}
