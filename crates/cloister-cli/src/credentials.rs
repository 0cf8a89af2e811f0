//! Credentials that follow the server: which token and identity the CLI uses for which URL.
//!
//! They live in `credentials.json` next to the CLI config (`~/.config/cloister/`, or the
//! directory of `CLOISTER_CONFIG`), mode 0600, keyed by server URL. `serve --dev` records its
//! admin token file and identity there for its own URL; `cloister login URL` records a token.
//! Profiles (`--profile`, `CLOISTER_PROFILE`) name a URL. A token is never sent to a server
//! other than the one it was recorded for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// File name of the credentials file, next to the CLI config.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// The credentials file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    /// Per server URL (normalised: no trailing slash).
    #[serde(default)]
    pub servers: BTreeMap<String, ServerCredentials>,
    /// Profile name → server URL.
    #[serde(default)]
    pub profiles: BTreeMap<String, String>,
}

/// How to authenticate to one server.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerCredentials {
    /// A token (written by `cloister login`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A file holding the token (written by `serve --dev`: its `admin.token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The identity file that signs deploys and secret writes for this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
}

impl std::fmt::Debug for ServerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCredentials")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("identity", &self.identity)
            .finish()
    }
}

/// The key a URL is recorded under: trimmed, without trailing slashes, scheme and host in
/// lower case.
pub fn normalize_url(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    match u.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            )
        }
        None => u.to_owned(),
    }
}

/// Where the credentials live: next to the CLI config file.
pub fn path() -> anyhow::Result<PathBuf> {
    let config = crate::secret_cmd::config_path()?;
    Ok(config
        .parent()
        .map(|d| d.join(CREDENTIALS_FILE))
        .unwrap_or_else(|| PathBuf::from(CREDENTIALS_FILE)))
}

/// Reads the credentials file (empty when absent).
pub fn load(path: &Path) -> anyhow::Result<Credentials> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| {
            format!(
                "{} is not a credentials file (fix or delete it)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the credentials file atomically, mode 0600 (its directory 0700 when created).
pub fn store(path: &Path, c: &Credentials) -> anyhow::Result<()> {
    let text = Zeroizing::new(serde_json::to_string_pretty(c)?);
    crate::private_file::write_atomic(path, text.as_bytes())
}

/// Changes the credentials file with `f`; returns its path. Writers take turns (an exclusive
/// lock on `credentials.json.lock`), so concurrent updates are not lost.
pub fn update(f: impl FnOnce(&mut Credentials)) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = path()?;
    crate::private_file::ensure_dir(&p)?;
    let lock_path = p.with_extension("json.lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let mut c = load(&p)?;
    f(&mut c);
    store(&p, &c)?;
    drop(lock);
    Ok(p)
}

/// What the token lookup tried, for the hint shown when the server wants a token.
static TRIED: OnceLock<String> = OnceLock::new();

/// The hint recorded by the last lookup that found no token.
pub fn missing_token_hint() -> Option<&'static str> {
    TRIED.get().map(String::as_str)
}

/// The URL to use, normalised (every per-server record — credentials, pins, trust — is keyed
/// by it): `--url`/`CLOISTER_URL`, else the profile's, else the default. Both a URL and a
/// profile is an error rather than a silent choice.
pub fn resolve_url(explicit: Option<&str>, profile: Option<&str>) -> anyhow::Result<String> {
    match (explicit, profile) {
        (Some(u), Some(p)) => anyhow::bail!(
            "both a URL ({u}) and a profile ({p}) are given (flags or CLOISTER_URL / \
             CLOISTER_PROFILE): pass one"
        ),
        (Some(u), None) => return Ok(normalize_url(u)),
        (None, None) => return Ok(normalize_url(crate::cli::DEFAULT_URL)),
        (None, Some(_)) => {}
    }
    let Some(name) = profile else {
        return Ok(normalize_url(crate::cli::DEFAULT_URL));
    };
    let p = path()?;
    let c = load(&p)?;
    match c.profiles.get(name) {
        Some(u) => Ok(normalize_url(u)),
        None => {
            let known: Vec<&str> = c.profiles.keys().map(String::as_str).collect();
            anyhow::bail!(
                "no profile `{name}` in {} (known: {}); create it with `cloister login URL --profile {name}`",
                p.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}

/// The server's recorded credentials, if any.
pub fn for_url(url: &str) -> anyhow::Result<Option<ServerCredentials>> {
    let c = load(&path()?)?;
    Ok(c.servers.get(&normalize_url(url)).cloned())
}

/// The token for `url`: `--token`/`CLOISTER_TOKEN`, else the one recorded for that URL.
/// When there is none, what was tried is kept for the error hint.
pub fn resolve_token(explicit: Option<String>, url: &str) -> anyhow::Result<Option<String>> {
    if let Some(t) = explicit {
        return Ok(Some(t));
    }
    let p = path()?;
    let key = normalize_url(url);
    let entry = load(&p)?.servers.get(&key).cloned();
    if let Some(e) = entry {
        if let Some(t) = e.token {
            return Ok(Some(t));
        }
        if let Some(f) = &e.token_file {
            match std::fs::read_to_string(f) {
                Ok(t) => return Ok(Some(t.trim().to_owned())),
                Err(err) => {
                    let _ = TRIED.set(format!(
                        "the token file recorded for {key} in {} ({}) cannot be read: {err}; \
                         start `cloister serve --dev` again or run `cloister login {key}`",
                        p.display(),
                        f.display()
                    ));
                    return Ok(None);
                }
            }
        }
    }
    let _ = TRIED.set(format!(
        "no token for {key}: tried --token / CLOISTER_TOKEN (unset) and {} (no entry for this \
         URL). Run `cloister login {key}`, or `cloister serve --dev` (which records its admin \
         token), or pass --token",
        p.display()
    ));
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_keyed_without_trailing_slashes_and_case_in_scheme_and_host() {
        assert_eq!(
            normalize_url(" HTTP://LocalHost:8787/ "),
            "http://localhost:8787"
        );
        assert_eq!(
            normalize_url("https://Example.com/Base/"),
            "https://example.com/Base"
        );
        assert_eq!(normalize_url("http://a:1"), "http://a:1");
    }

    #[test]
    fn the_file_is_private_and_tokens_never_appear_in_debug_output() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join(CREDENTIALS_FILE);
        let mut c = Credentials::default();
        c.servers.insert(
            "http://a:1".into(),
            ServerCredentials {
                token: Some("tok-secret-value".into()),
                ..Default::default()
            },
        );
        store(&p, &c).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let back = load(&p).unwrap();
        assert_eq!(
            back.servers["http://a:1"].token.as_deref(),
            Some("tok-secret-value")
        );
        assert!(!format!("{back:?}").contains("tok-secret-value"));
        // A damaged file is an error naming it, not an empty set of credentials.
        std::fs::write(&p, "{").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains(CREDENTIALS_FILE));
    }
}
