//! `cloister identity ...`: the signing identity that authorises deploys and secret writes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use std::io::IsTerminal;

use cloister_authority::ops::IdentityRole;
use cloister_authority::{Identity, IdentityId};
use cloister_crypto::VerifyingKey;
use cloister_types::wire::RegistryView;
use zeroize::Zeroizing;

use crate::cli::{Conn, IdentityCommand};
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

/// The identity file in use: the connection's (`--identity`/`CLOISTER_IDENTITY`, or the one
/// recorded for the server's URL), else the user's default file if present.
pub fn resolve_path(explicit: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        return Ok(Some(p.to_owned()));
    }
    let user = default_path()?;
    Ok(user.exists().then_some(user))
}

/// Environment variable holding an identity file's passphrase (for pipelines; prefer the
/// `_FILE` form or the terminal prompt elsewhere).
pub const PASSPHRASE_ENV: &str = "CLOISTER_IDENTITY_PASSPHRASE";
/// Environment variable naming a file that holds the passphrase.
pub const PASSPHRASE_FILE_ENV: &str = "CLOISTER_IDENTITY_PASSPHRASE_FILE";

/// The passphrase from the environment, if set there.
fn passphrase_from_env() -> Result<Option<Zeroizing<String>>, String> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Some(Zeroizing::new(p)));
    }
    if let Some(f) = std::env::var_os(PASSPHRASE_FILE_ENV) {
        let text = Zeroizing::new(
            std::fs::read_to_string(&f)
                .map_err(|e| format!("cannot read {PASSPHRASE_FILE_ENV}: {e}"))?,
        );
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        return Ok(Some(Zeroizing::new(trimmed.to_owned())));
    }
    Ok(None)
}

/// Asks for the passphrase of an existing identity file.
fn ask_passphrase(path: &Path) -> Result<Zeroizing<String>, String> {
    if let Some(p) = passphrase_from_env()? {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV}, or run on a terminal"
        ));
    }
    rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
        .map(Zeroizing::new)
        .map_err(|e| e.to_string())
}

/// A new passphrase: from the environment, or asked twice on the terminal.
fn new_passphrase() -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = passphrase_from_env().map_err(anyhow::Error::msg)? {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("--passphrase needs {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV}, or a terminal");
    }
    let a = Zeroizing::new(rpassword::prompt_password("New passphrase: ")?);
    let b = Zeroizing::new(rpassword::prompt_password("Repeat it: ")?);
    if a != b {
        bail!("the passphrases differ");
    }
    Ok(a)
}

/// Reads an identity file, asking for its passphrase when it has one.
pub fn load_file(path: &Path) -> anyhow::Result<Identity> {
    Ok(Identity::load_with(path, &mut || ask_passphrase(path))?)
}

/// Loads the identity in use, if there is one.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<Option<Arc<Identity>>> {
    match resolve_path(explicit)? {
        Some(p) => Ok(Some(Arc::new(load_file(&p)?))),
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

/// Parses `90d`, `12h`, `30m` or `600s` into seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 90d, 12h, 30m or 600s"))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        other => bail!("unknown duration unit {other:?}: d, h, m or s"),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .context("the duration must be positive and reasonable")
}

/// Saves `id` at `path`, sealed under a passphrase when asked.
fn save(id: &Identity, path: &Path, passphrase: bool) -> anyhow::Result<()> {
    if passphrase {
        let p = new_passphrase()?;
        id.save_with_passphrase(path, &p)?;
    } else {
        id.save(path)?;
    }
    Ok(())
}

/// The file's description of an identity (`--json` output of create/show).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFileInfo {
    id: String,
    public_key: String,
    label: String,
    file: String,
    protected: bool,
}

impl IdentityFileInfo {
    fn of(id: &Identity, path: &Path) -> Self {
        Self {
            id: id.id().to_string(),
            public_key: id.public_key().to_string(),
            label: id.label().to_owned(),
            file: path.display().to_string(),
            protected: Identity::is_protected(path),
        }
    }
}

/// Fetches the registry and checks it against keyvault's verified bundle.
pub async fn checked_registry(
    conn: &Conn,
    trust: &crate::cli::TrustArgs,
) -> anyhow::Result<RegistryView> {
    let mut c = crate::client_cmds::client(conn)?;
    for attempt in 0..2 {
        let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, trust).await?;
        let list = c.registry().await?;
        match cloister_client::registry::check(&list, &kv) {
            Ok(()) => return Ok(list),
            // The registry may have changed between the two calls: look once more.
            Err(_) if attempt == 0 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns on its second pass")
}

/// Warns when the registry has a single admin (losing that key loses the platform's
/// authority; `serve --dev` starts that way).
fn warn_single_admin(list: &RegistryView) {
    let admins = cloister_client::registry::live_admins(&list.identities);
    if admins.len() == 1 {
        eprintln!(
            "WARNING: {} ({}) is the only admin. If its key is lost, nobody can change the \
             registry; grant a second admin: cloister identity grant --role admin --public-key ...",
            admins[0].id, admins[0].label
        );
    }
}

/// Creates the dev admin identity in `data_dir` if missing; returns its public key.
pub fn ensure_dev_admin(data_dir: &Path) -> anyhow::Result<(PathBuf, VerifyingKey, bool)> {
    let path = data_dir.join(ADMIN_IDENTITY_FILE);
    if path.exists() {
        let id = load_file(&path)?;
        return Ok((path, id.public_key(), false));
    }
    let id = Identity::generate("dev admin")?;
    id.save(&path)?;
    Ok((path, id.public_key(), true))
}

/// Runs `identity ...`.
pub async fn run(conn: Conn, cmd: IdentityCommand, json_mode: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        IdentityCommand::Create {
            file,
            label,
            passphrase,
        } => {
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
            save(&id, &path, passphrase)?;
            if json_mode {
                output::json(&IdentityFileInfo::of(&id, &path));
            } else {
                println!("created identity {} ({})", id.id(), id.label());
                let how = if passphrase {
                    "mode 0600, sealed under your passphrase"
                } else {
                    "mode 0600; keep it private"
                };
                println!("  file: {} ({how})", path.display());
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
            let id = load_file(&path)?;
            if json_mode {
                output::json(&IdentityFileInfo::of(&id, &path));
            } else {
                println!("identity {} ({})", id.id(), id.label());
                println!("  file: {}", path.display());
                println!("  public key: {}", id.public_key());
            }
        }
        IdentityCommand::List { trust } => {
            let list = checked_registry(&conn, &trust).await?;
            if json_mode {
                output::json(&list);
            } else {
                output::identity_table(&list.identities);
            }
            warn_single_admin(&list);
        }
        IdentityCommand::Grant {
            public_key,
            role,
            label,
            expires_in,
        } => {
            let role = IdentityRole::parse(&role)
                .with_context(|| format!("unknown role {role:?}: developer, machine or admin"))?;
            let key = hex::decode(public_key.trim())
                .ok()
                .and_then(|b| VerifyingKey::from_slice(&b).ok())
                .context("--public-key must be a 64-hex-digit Ed25519 public key")?;
            let expires = match expires_in {
                Some(d) => Some(
                    cloister_authority::request::unix_now()
                        .checked_add(parse_duration(&d)?)
                        .context("--expires-in is too far in the future")?,
                ),
                None => None,
            };
            if role == IdentityRole::Machine && expires.is_none() {
                eprintln!(
                    "note: this machine identity never expires; pass --expires-in to limit it"
                );
            }
            let me = require(conn.identity.as_deref())?;
            let mut c = crate::secret_cmd::verified_signer(&conn, me, &Default::default()).await?;
            let r = c.grant_identity(&key, role, &label, expires).await?;
            if json_mode {
                output::json(&r);
            } else {
                println!("granted {} the role {}", r.identity_id, role.as_str());
            }
        }
        IdentityCommand::Rotate { passphrase } => {
            let path = resolve_path(conn.identity.as_deref())?
                .context("no identity in use (`cloister identity create`, or --identity FILE)")?;
            // A protected identity stays protected.
            let passphrase = passphrase || Identity::is_protected(&path);
            let old = Arc::new(load_file(&path)?);
            let new = Identity::generate(old.label())?;
            let staged = path.with_extension("new");
            if staged.exists() {
                bail!(
                    "{} exists (an interrupted rotation?); move it away first",
                    staged.display()
                );
            }
            save(&new, &staged, passphrase)?;
            let mut c =
                crate::secret_cmd::verified_signer(&conn, old.clone(), &Default::default()).await?;
            let r = match c.rotate_identity(&new).await {
                Ok(r) => r,
                // keyvault refused: nothing changed, the new key is useless.
                Err(cloister_client::ClientError::Api { status, error })
                    if (400..500).contains(&status) =>
                {
                    let _ = std::fs::remove_file(&staged);
                    return Err(cloister_client::ClientError::Api { status, error }.into());
                }
                // Anything else (timeout, gateway failure): keyvault may have rotated already,
                // so the new key is kept; deleting it could lose the identity for good.
                Err(e) => {
                    bail!(
                        "{e}\nThe rotation may or may not have happened. The new key is kept in {} \
                         (identity {}): check `cloister identity list`; if it shows {} rotated to \
                         it, move {} to {}.",
                        staged.display(),
                        new.id(),
                        old.id(),
                        staged.display(),
                        path.display()
                    );
                }
            };
            let retired = path.with_extension("retired");
            std::fs::rename(&path, &retired)
                .and_then(|()| std::fs::rename(&staged, &path))
                .with_context(|| {
                    format!(
                        "keyvault rotated to {}, but the files could not be swapped: the new key is {}",
                        new.id(),
                        staged.display()
                    )
                })?;
            if json_mode {
                output::json(&r);
            } else {
                println!("rotated identity {} -> {}", old.id(), new.id());
                println!(
                    "  new key in {} (the old one, now revoked, in {})",
                    path.display(),
                    retired.display()
                );
                println!("  functions whose owners changed: {}", r.owners.len());
                println!("  tokens bound to the old identity now act for the new one");
            }
        }
        IdentityCommand::Sign { domain, trust } => {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::io::stdin(), 1 << 20),
                &mut text,
            )
            .context("cannot read the body from stdin")?;
            let me = require(conn.identity.as_deref())?;
            // Signed for the platform whose keyvault's evidence verifies here, never for one
            // the gateway merely names.
            let mut c = crate::client_cmds::client(&conn)?;
            let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, &trust).await?;
            eprintln!(
                "signing for the platform of keyvault {}… (tee: {})",
                &kv.measurement[..16],
                kv.tee_label
            );
            let mut c = c.with_identity(me, Some(kv.audit_key.to_string()));
            let signed = sign_json(&mut c, &domain, &text).await?;
            if json_mode {
                output::json(&cloister_types::wire::SignedBody { signed });
            } else {
                println!("{signed}");
            }
        }
        IdentityCommand::Revoke {
            identity_id,
            compromised,
        } => {
            let id = IdentityId::parse(identity_id.trim())?;
            let me = require(conn.identity.as_deref())?;
            let mut c = crate::secret_cmd::verified_signer(&conn, me, &Default::default()).await?;
            let r = c
                .change_registry(&cloister_authority::ops::RegistryChange::Revoke {
                    identity_id: id.to_string(),
                    compromised,
                })
                .await?;
            if json_mode {
                output::json(&r);
            } else {
                println!("revoked identity {id}; its tokens were revoked too");
                if compromised {
                    println!(
                        "  as compromised: {} active version(s) it signed no longer receive secrets; \
                         redeploy them signed by another owner",
                        r.distrusted_versions
                    );
                } else {
                    println!(
                        "  manifests it signed keep working (use --compromised if the key leaked)"
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Signs the JSON `text` as the body of `domain` (parsed into that body's type first, so only
/// well-formed bodies are signed).
async fn sign_json(
    c: &mut cloister_client::Client,
    domain: &str,
    text: &str,
) -> anyhow::Result<String> {
    use cloister_authority::Body;
    use cloister_authority::ops::{
        Activation, IdentityGrant, KeyExport, KeyUse, KeyWrite, RegistryChange, SecretWrite,
    };
    fn parse<B: serde::de::DeserializeOwned>(text: &str, domain: &str) -> anyhow::Result<B> {
        serde_json::from_str(text).with_context(|| format!("the body is not a {domain} body"))
    }
    let who = "signing needs an identity (--identity or `cloister identity create`)";
    let signed = match domain {
        d if d == cloister_authority::Manifest::DOMAIN => {
            let b: cloister_authority::Manifest = parse(text, d)?;
            c.sign_body(&b, who).await?
        }
        d if d == SecretWrite::DOMAIN => c.sign_body(&parse::<SecretWrite>(text, d)?, who).await?,
        d if d == Activation::DOMAIN => c.sign_body(&parse::<Activation>(text, d)?, who).await?,
        d if d == IdentityGrant::DOMAIN => {
            c.sign_body(&parse::<IdentityGrant>(text, d)?, who).await?
        }
        d if d == RegistryChange::DOMAIN => {
            c.sign_body(&parse::<RegistryChange>(text, d)?, who).await?
        }
        d if d == KeyWrite::DOMAIN => c.sign_body(&parse::<KeyWrite>(text, d)?, who).await?,
        d if d == KeyUse::DOMAIN => c.sign_body(&parse::<KeyUse>(text, d)?, who).await?,
        d if d == KeyExport::DOMAIN => c.sign_body(&parse::<KeyExport>(text, d)?, who).await?,
        other => anyhow::bail!(
            "cannot sign for domain {other:?}: use cloister/deploy/v1, cloister/secret-write/v1, \
             cloister/activate/v1, cloister/identity-grant/v1, cloister/registry-change/v1, \
             cloister/key-write/v1, cloister/key-use/v1 or cloister/key-export/v1"
        ),
    };
    Ok(signed)
}
