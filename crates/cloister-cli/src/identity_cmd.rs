//! `cloister identity ...`: the signing identity that authorises deploys and secret writes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use cloister_authority::Identity;
use cloister_authority::ops::IdentityRole;
use cloister_crypto::VerifyingKey;
use serde_json::json;

use crate::cli::{Conn, DEFAULT_DATA_DIR, IdentityCommand};
use crate::output;

/// File name of the dev admin identity `serve --dev` creates next to `admin.token`.
pub const ADMIN_IDENTITY_FILE: &str = "admin.identity";

/// `~/.config/cloister/identity.json` (or under `$XDG_CONFIG_HOME`).
fn default_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("cloister").join("identity.json"))
}

/// The identity file in use: `--identity`/`CLOISTER_IDENTITY`, else the dev admin identity
/// in `./.cloister` if present, else the user's default file if present.
pub fn resolve_path(explicit: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        return Ok(Some(p.to_owned()));
    }
    let dev = Path::new(DEFAULT_DATA_DIR).join(ADMIN_IDENTITY_FILE);
    if dev.exists() {
        return Ok(Some(dev));
    }
    let user = default_path()?;
    Ok(user.exists().then_some(user))
}

/// Loads the identity in use, if there is one.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<Option<Arc<Identity>>> {
    match resolve_path(explicit)? {
        Some(p) => Ok(Some(Arc::new(Identity::load(&p)?))),
        None => Ok(None),
    }
}

/// Loads the identity in use or explains how to make one.
pub fn require(explicit: Option<&Path>) -> anyhow::Result<Arc<Identity>> {
    load(explicit)?.context(
        "no identity: create one with `cloister identity create` and have an admin grant it \
         (`cloister identity grant --public-key ...`), or pass --identity FILE",
    )
}

/// Creates the dev admin identity in `data_dir` if missing; returns its public key.
pub fn ensure_dev_admin(data_dir: &Path) -> anyhow::Result<(PathBuf, VerifyingKey, bool)> {
    let path = data_dir.join(ADMIN_IDENTITY_FILE);
    if path.exists() {
        let id = Identity::load(&path)?;
        return Ok((path, id.public_key(), false));
    }
    let id = Identity::generate("dev admin")?;
    id.save(&path)?;
    Ok((path, id.public_key(), true))
}

/// Runs `identity ...`.
pub async fn run(conn: Conn, cmd: IdentityCommand, json_mode: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        IdentityCommand::Create { file, label } => {
            let path = match file {
                Some(f) => f,
                None => default_path()?,
            };
            if path.exists() {
                bail!(
                    "{} exists; an identity is never overwritten (pass --file for another)",
                    path.display()
                );
            }
            let label = label.unwrap_or_else(|| {
                let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("{user}@{}", host.trim())
            });
            let id = Identity::generate(&label)?;
            id.save(&path)?;
            if json_mode {
                output::json(
                    &json!({"id": id.id().as_str(), "publicKey": id.public_key().to_string(),
                                     "label": id.label(), "file": path.display().to_string()}),
                );
            } else {
                println!("created identity {} ({})", id.id(), id.label());
                println!("  file: {} (mode 0600; keep it private)", path.display());
                println!("  public key: {}", id.public_key());
                println!(
                    "  an admin grants it: cloister identity grant --public-key {} --role developer",
                    id.public_key()
                );
            }
        }
        IdentityCommand::Show => {
            let path = resolve_path(conn.identity.as_deref())?
                .context("no identity in use (`cloister identity create`, or --identity FILE)")?;
            let id = Identity::load(&path)?;
            if json_mode {
                output::json(
                    &json!({"id": id.id().as_str(), "publicKey": id.public_key().to_string(),
                                     "label": id.label(), "file": path.display().to_string()}),
                );
            } else {
                println!("identity {} ({})", id.id(), id.label());
                println!("  file: {}", path.display());
                println!("  public key: {}", id.public_key());
            }
        }
        IdentityCommand::Grant {
            public_key,
            role,
            label,
        } => {
            let role = match role.as_str() {
                "developer" => IdentityRole::Developer,
                "admin" => IdentityRole::Admin,
                other => bail!("unknown role {other:?}: developer or admin"),
            };
            let key = hex::decode(public_key.trim())
                .ok()
                .and_then(|b| VerifyingKey::from_slice(&b).ok())
                .context("--public-key must be a 64-hex-digit Ed25519 public key")?;
            let me = require(conn.identity.as_deref())?;
            let mut c = crate::client_cmds::client(&conn)?.with_identity(me, None);
            let r = c.grant_identity(&key, role, &label).await?;
            if json_mode {
                output::json(&r);
            } else {
                println!("granted {} the role {}", r.identity_id, role.as_str());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
