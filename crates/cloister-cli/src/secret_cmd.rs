//! `secret ...`, `keyvault migrate|rotate-mek` and `audit ...`: the CLI verifies keyvault's
//! attestation bundle itself and seals values to keyvault before they leave this machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use cloister_client::Client;
use cloister_client::attestation::{TrustedKeyvault, presented_root, seal_secret};
use cloister_types::{Environment, SecretPath, SecretRef};
use hyper::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cli::{
    AuditCommand, Conn, KeyvaultCommand, MigrateArgs, SecretCommand, SecretPutArgs, TrustArgs,
};
use crate::client_cmds::resolve_token;
use crate::output::{self, Coded};

/// Largest secret value accepted (keyvault refuses larger ones too).
const MAX_VALUE_BYTES: usize = cloister_types::limits::MAX_SECRET_VALUE_BYTES;

fn client(conn: &Conn) -> anyhow::Result<Client> {
    Ok(Client::new(&conn.url, resolve_token(conn.token.clone())?)?)
}

pub(crate) fn attestation_failed(message: String) -> anyhow::Error {
    Coded {
        code: "attestation_failed",
        message,
    }
    .into()
}

/// Where the CLI keeps trust-on-first-use pins.
pub(crate) fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CLOISTER_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(
            std::env::var_os("HOME")
                .context("neither CLOISTER_CONFIG, XDG_CONFIG_HOME nor HOME is set")?,
        )
        .join(".config"),
    };
    Ok(base.join("cloister").join("config.json"))
}

/// The config sections keyed by server URL.
pub(crate) const PER_URL_SECTIONS: [&str; 4] =
    ["simRoots", "trust", "keyvaults", "sealedFunctions"];

pub(crate) fn read_config(path: &Path) -> anyhow::Result<Value> {
    let mut cfg = match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{} is not valid JSON", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(json!({})),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    normalize_url_keys(&mut cfg, path)?;
    Ok(cfg)
}

/// Pins written before URLs were normalised (`https://Host/`) are found under the normalised
/// spelling every lookup uses; two spellings of one server holding different pins are an
/// error to resolve by hand, never a silent choice.
fn normalize_url_keys(cfg: &mut Value, path: &Path) -> anyhow::Result<()> {
    use crate::credentials::normalize_url;
    for section in PER_URL_SECTIONS {
        let Some(obj) = cfg.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        if obj.keys().all(|k| normalize_url(k) == *k) {
            continue;
        }
        let mut out = serde_json::Map::new();
        for (k, v) in std::mem::take(obj) {
            let key = normalize_url(&k);
            match out.get(&key) {
                Some(existing) if existing != &v => anyhow::bail!(
                    "{} holds two different `{section}` entries for {key} (spelled differently): \
                     keep the right one, or `cloister trust forget {key}`",
                    path.display()
                ),
                _ => {
                    out.insert(key, v);
                }
            }
        }
        *obj = out;
    }
    Ok(())
}

pub(crate) fn write_config(path: &Path, cfg: &Value) -> anyhow::Result<()> {
    crate::private_file::write_atomic(path, serde_json::to_string_pretty(cfg)?.as_bytes())
}

/// The sim root to trust for `url`: explicit, else pinned earlier, else pinned now (TOFU).
fn trusted_root(url: &str, explicit: Option<&str>, presented: &str) -> anyhow::Result<String> {
    if let Some(fp) = explicit {
        return Ok(fp.trim().to_ascii_lowercase());
    }
    let path = config_path()?;
    let mut cfg = read_config(&path)?;
    let pinned = cfg
        .get("simRoots")
        .and_then(|r| r.get(url))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(p) = pinned {
        if p != presented {
            return Err(attestation_failed(format!(
                "{url} now presents sim root {presented}, but {p} was pinned for it on first use \
                 (in {}). If the platform was re-created on purpose, remove that entry or pass --sim-root.",
                path.display()
            )));
        }
        return Ok(p);
    }
    if !cfg.is_object() {
        cfg = json!({});
    }
    cfg["simRoots"][url] = json!(presented);
    write_config(&path, &cfg)?;
    eprintln!("WARNING: trusting sim platform root {presented} for {url} on FIRST USE.");
    eprintln!(
        "         Pinned in {}; a different root will be refused from now on.",
        path.display()
    );
    eprintln!(
        "         Compare it with the fingerprint `cloister serve --dev` printed, or pass --sim-root."
    );
    Ok(presented.to_owned())
}

/// The sim root pinned for `url` on this machine, if any (never pins one).
pub fn pinned_root(url: &str) -> anyhow::Result<Option<String>> {
    let cfg = read_config(&config_path()?)?;
    Ok(cfg
        .get("simRoots")
        .and_then(|r| r.get(url))
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// The keyvault measurement to expect: given, or that of the keyvault executable next to
/// this CLI (or in --trusted-dir).
pub fn expected_keyvault(trust: &TrustArgs) -> anyhow::Result<[u8; 48]> {
    match &trust.keyvault_measurement {
        Some(h) => {
            let mut m = [0u8; 48];
            hex::decode_to_slice(h.trim(), &mut m)
                .context("--keyvault-measurement must be 96 hex digits")?;
            Ok(m)
        }
        None => cloister_role::trusted::TrustedBinaries::locate(trust.trusted_dir.as_deref())
            .and_then(|b| b.keyvault_measurement())
            .context(
                "no --keyvault-measurement given, and the keyvault executable to expect cannot \
                 be measured",
            ),
    }
}

/// Binds what `c` signs to the platform whose keyvault's attestation verifies here (not to
/// the key an unverified bundle names: a gateway could pick another platform's).
pub async fn bind_verified_platform(
    c: &mut Client,
    url: &str,
    trust: &TrustArgs,
) -> anyhow::Result<()> {
    if c.signs() {
        let kv = trusted_keyvault(c, url, trust).await?;
        c.bind_platform(kv.audit_key.to_string());
    }
    Ok(())
}

/// A client that signs as `me` for the platform whose keyvault verifies here.
pub async fn verified_signer(
    conn: &Conn,
    me: std::sync::Arc<cloister_authority::Identity>,
    trust: &TrustArgs,
) -> anyhow::Result<Client> {
    let mut c = client(conn)?.with_identity(me, None);
    bind_verified_platform(&mut c, &conn.url, trust).await?;
    Ok(c)
}

/// Fetches and verifies keyvault's attestation bundle.
pub async fn trusted_keyvault(
    c: &mut Client,
    url: &str,
    trust: &TrustArgs,
) -> anyhow::Result<TrustedKeyvault> {
    Ok(verified_bundle(c, url, trust).await?.0)
}

/// The trust settings in force for `url`: those stored (`cloister trust`), with
/// `--sim-root` / `--keyvault-measurement` taking precedence. Without a stored root, the root
/// pinned for `url` is used, or `presented` is pinned now (first use; offline checks pass
/// `None` and need a root). Without a keyvault measurement, the build next to this CLI is
/// expected (the flag says so).
pub fn effective_trust(
    url: &str,
    trust: &TrustArgs,
    presented: Option<&str>,
) -> anyhow::Result<(cloister_client::trust::TrustSettings, bool)> {
    let mut settings = crate::trust_cmd::load(url)?;
    // A flag narrows the stored settings; it never widens them.
    let narrow = |list: &mut Vec<String>, flag: &str, what: &str| -> anyhow::Result<()> {
        let v = flag.trim().to_ascii_lowercase();
        if !list.is_empty() && !list.iter().any(|x| x.eq_ignore_ascii_case(&v)) {
            anyhow::bail!(
                "{v} is not among the {what}s trusted for {url} (cloister trust show; \
                 cloister trust add {what} {v})"
            );
        }
        *list = vec![v];
        Ok(())
    };
    if let Some(fp) = &trust.sim_root {
        narrow(&mut settings.roots, fp, "root")?;
    } else if settings.roots.is_empty() {
        let root = match presented {
            Some(p) => trusted_root(url, None, p)?,
            None => pinned_root(url)?.with_context(|| {
                format!("no root is trusted for {url} on this machine: pass --sim-root")
            })?,
        };
        settings.roots = vec![root];
    }
    let defaulted =
        trust.keyvault_measurement.is_none() && settings.keyvault_measurements.is_empty();
    if let Some(m) = &trust.keyvault_measurement {
        narrow(&mut settings.keyvault_measurements, m, "keyvault")?;
    } else if settings.keyvault_measurements.is_empty() {
        settings.keyvault_measurements = vec![hex::encode(expected_keyvault(trust)?)];
    }
    Ok((settings, defaulted))
}

/// Fetches and verifies keyvault's attestation bundle against the trust settings for `url`
/// (`cloister trust`), with `--sim-root` / `--keyvault-measurement` taking precedence; without
/// settings the root is pinned on first use and the keyvault build next to this CLI is
/// expected. Returns the bundle with what checked out.
pub async fn verified_bundle(
    c: &mut Client,
    url: &str,
    trust: &TrustArgs,
) -> anyhow::Result<(TrustedKeyvault, cloister_client::attestation::Bundle)> {
    let bundle = c.attestation().await?;
    let presented = presented_root(&bundle).map_err(|e| attestation_failed(e.to_string()))?;
    let (settings, defaulted) = effective_trust(url, trust, Some(&presented))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let kv = settings.verify(&bundle, now).map_err(|e| {
        let hint = match e {
            cloister_client::trust::TrustError::Bundle(
                cloister_client::attestation::BundleError::WrongMeasurement { .. },
            ) if defaulted => {
                " (the default expectation is the cloister-keyvaultd next to this CLI; pass \
                 --keyvault-measurement or use `cloister trust keyvault add` if the server runs \
                 another build)"
            }
            _ => "",
        };
        attestation_failed(format!("{e}{hint}"))
    })?;
    pin_authority(url, &kv)?;
    Ok((kv, bundle))
}

/// Pins keyvault's instance key and identity registry per URL (both bound by its evidence)
/// and warns loudly when either changes: a fresh keyvault, or new admins, are visible.
fn pin_authority(url: &str, kv: &TrustedKeyvault) -> anyhow::Result<()> {
    let path = config_path()?;
    let mut cfg = read_config(&path)?;
    if !cfg.is_object() {
        cfg = json!({});
    }
    let now = json!({
        "instanceKey": kv.audit_key.to_string(),
        "registryDigest": kv.registry_digest,
        "admins": kv.admins,
    });
    let seen = cfg.get("keyvaults").and_then(|k| k.get(url)).cloned();
    match &seen {
        Some(old) if old == &now => return Ok(()),
        Some(old) => {
            if old["instanceKey"] != now["instanceKey"] {
                eprintln!(
                    "WARNING: keyvault at {url} has a NEW instance key {} (pinned: {}).",
                    kv.audit_key,
                    old["instanceKey"].as_str().unwrap_or("?")
                );
                eprintln!(
                    "         A different keyvault answers: its registry, secrets and audit \
                     chain are not the ones you used before."
                );
            }
            if old["registryDigest"] != now["registryDigest"] {
                eprintln!(
                    "WARNING: keyvault's identity registry at {url} changed; admins now: {}",
                    kv.admins.join(", ")
                );
                if old["admins"] != now["admins"] {
                    eprintln!(
                        "         (admins before: {})",
                        old["admins"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    );
                }
            }
        }
        None => {}
    }
    cfg["keyvaults"][url] = now;
    write_config(&path, &cfg)
}

async fn resolve_path(
    c: &mut Client,
    raw: &str,
    function: Option<&str>,
    environment: Option<&str>,
) -> anyhow::Result<SecretPath> {
    let Some(f) = function else {
        return SecretPath::parse(raw).map_err(|e| {
            anyhow::anyhow!("{e} (or pass --function NAME with a short secret name)")
        });
    };
    let r = SecretRef::parse(raw)?;
    let info = c.show(f, None).await?;
    let env = match environment {
        Some(e) => Environment::parse(e)?,
        None => Environment::parse(&info.environment)?,
    };
    Ok(SecretPath::for_function(&info.function_id, &env, &r)?)
}

fn read_value(args: &SecretPutArgs) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    let limit = MAX_VALUE_BYTES as u64 + 2;
    match &args.value_file {
        Some(p) => {
            std::fs::File::open(p)
                .with_context(|| format!("cannot open {}", p.display()))?
                .take(limit)
                .read_to_end(&mut buf)
                .with_context(|| format!("cannot read {}", p.display()))?;
        }
        None if args.from_stdin => {
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut buf)
                .context("cannot read the value from stdin")?;
        }
        None => {
            use std::io::IsTerminal as _;
            if !std::io::stdin().is_terminal() {
                bail!(
                    "no value given: pass --value-file FILE or --from-stdin (on a terminal, \
                     the value is asked for at a hidden prompt)"
                );
            }
            let first = Zeroizing::new(
                rpassword::prompt_password(format!("Value for {} (hidden): ", args.path))
                    .context("cannot read the value from the terminal")?,
            );
            let again = Zeroizing::new(
                rpassword::prompt_password("Again, to confirm: ")
                    .context("cannot read the value from the terminal")?,
            );
            if !cloister_crypto::ct_eq(first.as_bytes(), again.as_bytes()) {
                bail!("the two entries differ: nothing stored");
            }
            buf.extend_from_slice(first.as_bytes());
        }
    }
    // A text value loses the newline its file or terminal added; binary values stay exact.
    if !args.keep_newline && std::str::from_utf8(&buf).is_ok() {
        let len = buf.len();
        if buf.ends_with(b"\r\n") {
            buf.truncate(len - 2);
        } else if buf.ends_with(b"\n") {
            buf.truncate(len - 1);
        }
    }
    if buf.len() > MAX_VALUE_BYTES {
        bail!(
            "the value is larger than {MAX_VALUE_BYTES} bytes, the limit for one secret \
             (docs/SECRETS.md)"
        );
    }
    if buf.is_empty() {
        bail!("the value is empty");
    }
    Ok(buf)
}

/// A value read as `args` say, sealed to the verified keyvault for its resolved path.
struct Sealed {
    client: Client,
    path: SecretPath,
    kv: TrustedKeyvault,
    sealed: Vec<u8>,
}

async fn seal_value(conn: &Conn, args: &SecretPutArgs) -> anyhow::Result<Sealed> {
    let value = read_value(args)?;
    let mut client = client(conn)?;
    let path = resolve_path(
        &mut client,
        &args.path,
        args.function.as_deref(),
        args.environment.as_deref(),
    )
    .await?;
    let kv = trusted_keyvault(&mut client, &conn.url, &args.trust).await?;
    let sealed = seal_secret(&kv, &path, &value).context("sealing the value")?;
    Ok(Sealed {
        client,
        path,
        kv,
        sealed,
    })
}

async fn put(
    conn: &Conn,
    args: SecretPutArgs,
    rotate: bool,
    json_mode: bool,
) -> anyhow::Result<()> {
    let Sealed {
        client: c,
        path,
        kv,
        sealed,
    } = seal_value(conn, &args).await?;
    // Signed for the keyvault whose evidence was just verified (its instance key).
    let me = crate::identity_cmd::require(conn.identity.as_deref())?;
    let mut c = c.with_identity(me, Some(kv.audit_key.to_string()));
    let r = c.put_secret(&path, &sealed, rotate).await?;
    if json_mode {
        output::json(
            &json!({"path": r["path"], "version": r["version"], "createdAt": r["createdAt"],
                             "tee": kv.tee_label, "keyvaultMeasurement": kv.measurement}),
        );
    } else {
        println!(
            "stored {} v{} (sealed to keyvault {}…, tee: {})",
            r["path"].as_str().unwrap_or_default(),
            r["version"],
            &kv.measurement[..16],
            kv.tee_label
        );
    }
    Ok(())
}

/// `secret seal`: the body `secret put` would send, printed instead.
async fn seal_only(conn: &Conn, args: SecretPutArgs, rotate: bool) -> anyhow::Result<()> {
    use base64::Engine as _;
    let Sealed {
        path, kv, sealed, ..
    } = seal_value(conn, &args).await?;
    let me = crate::identity_cmd::require(conn.identity.as_deref())?;
    let op = if rotate {
        cloister_authority::ops::SecretOp::Rotate
    } else {
        cloister_authority::ops::SecretOp::Put
    };
    let signed = cloister_client::signing::sign_secret_write(
        &me,
        &kv.audit_key.to_string(),
        &path,
        op,
        &sealed,
    )?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    output::json(&cloister_types::wire::SecretPutBody {
        sealed: b64(&sealed),
        signed: Some(b64(&signed)),
    });
    Ok(())
}

/// Runs `secret ...`.
pub async fn secret(conn: Conn, cmd: SecretCommand, json_mode: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        SecretCommand::Put(args) => put(&conn, args, false, json_mode).await?,
        SecretCommand::Rotate(args) => put(&conn, args, true, json_mode).await?,
        SecretCommand::Seal { args, rotate } => seal_only(&conn, args, rotate).await?,
        SecretCommand::List { function } => {
            let mut c = client(&conn)?;
            let prefix = match function {
                Some(f) => format!("function-{}/", c.show(&f, None).await?.function_id),
                None => "function-".to_owned(),
            };
            let r = c.list_secrets(&prefix).await?;
            if json_mode {
                output::json(&r);
            } else {
                if r.secrets.is_empty() {
                    println!("no secrets");
                }
                for s in &r.secrets {
                    println!(
                        "{}  v{}  ({} versions, updated {})",
                        s.path, s.latest_version, s.versions, s.updated_at
                    );
                }
            }
        }
        SecretCommand::Delete {
            path,
            function,
            environment,
        } => {
            let me = crate::identity_cmd::require(conn.identity.as_deref())?;
            let mut c = verified_signer(&conn, me, &TrustArgs::default()).await?;
            let p =
                resolve_path(&mut c, &path, function.as_deref(), environment.as_deref()).await?;
            c.delete_secret(&p).await?;
            if json_mode {
                output::json(&json!({"path": p.to_string(), "deleted": true}));
            } else {
                println!("deleted {p} (all versions)");
            }
        }
        SecretCommand::Versions {
            path,
            function,
            environment,
        } => {
            let mut c = client(&conn)?;
            let p =
                resolve_path(&mut c, &path, function.as_deref(), environment.as_deref()).await?;
            let r = c
                .json(Method::GET, &format!("/v1/secrets/{p}"), None)
                .await?;
            if json_mode {
                output::json(&r);
            } else {
                for v in r["versions"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "v{}  {}  (data key v{})",
                        v["version"],
                        v["createdAt"].as_str().unwrap_or_default(),
                        v["dekVersion"]
                    );
                }
            }
        }
        SecretCommand::RotateDek { function } => {
            let mut c = client(&conn)?;
            let r = c
                .json(
                    Method::POST,
                    "/v1/keyvault/rotate-dek",
                    Some(&json!({"function": function})),
                )
                .await?;
            if json_mode {
                output::json(&r);
            } else {
                println!(
                    "rotated the data key of {} to v{} ({} values re-encrypted)",
                    r["namespace"].as_str().unwrap_or_default(),
                    r["dekVersion"],
                    r["reencrypted"]
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `keyvault migrate|rotate-mek` (`keyvault run` is a server role).
pub async fn keyvault(
    conn: Conn,
    cmd: KeyvaultCommand,
    json_mode: bool,
) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyvaultCommand::RotateMek => {
            let mut c = client(&conn)?;
            let r = c
                .json(Method::POST, "/v1/keyvault/rotate-mek", None)
                .await?;
            if json_mode {
                output::json(&r);
            } else {
                println!(
                    "new master key {} ({} data keys re-wrapped)",
                    r["mekId"].as_str().unwrap_or_default(),
                    r["rewrapped"]
                );
            }
        }
        KeyvaultCommand::Migrate(args) => migrate(args, json_mode).await?,
        KeyvaultCommand::Backup(args) => crate::restore_cmd::backup(&args, json_mode)?,
        KeyvaultCommand::Policy(cmd) => crate::policy_cmd::run(&conn, cmd, json_mode).await?,
        KeyvaultCommand::Restore(args) => {
            crate::restore_cmd::restore(&conn, &args, json_mode).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keyvault migrate` happens inside keyvault's own executable: the re-sealed root is sealed
/// to it, and the recovery key goes to it only (stdin passes through).
async fn migrate(args: MigrateArgs, json_mode: bool) -> anyhow::Result<()> {
    // The platform must be stopped, and stays stopped while the root is re-sealed.
    let _data_lock = crate::data_lock::acquire(&args.data_dir, "keyvault migrate", "migrating")?;
    let bins = cloister_role::trusted::TrustedBinaries::locate(args.trusted_dir.as_deref())?;
    bins.check_versions()?;
    let mut cmd = std::process::Command::new(&bins.keyvault);
    cmd.arg("migrate").arg("--data-dir").arg(&args.data_dir);
    if let Some(f) = &args.recovery_key_file {
        cmd.arg("--recovery-key-file").arg(f);
    }
    if json_mode {
        // keyvault's JSON report passes through; a failure becomes this CLI's own error.
        cmd.arg("--json")
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit());
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", bins.keyvault.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("keyvault did not migrate ({})", out.status));
            bail!("{msg}");
        }
        print!("{text}");
        return Ok(());
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", bins.keyvault.display()))?;
    if !status.success() {
        bail!("keyvault did not migrate ({status}); its message is above");
    }
    Ok(())
}

/// Prints audit entries as a table whose columns line up whatever their widths.
fn print_audit_table(entries: &[cloister_audit::AuditEntry]) {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.at.clone(),
                e.action.clone(),
                e.subject.clone(),
                e.actor.clone(),
                e.details.clone(),
            ]
        })
        .collect();
    output::print_table(
        &["SEQ", "AT", "ACTION", "SUBJECT", "ACTOR", "DETAILS"],
        &rows,
        &[0],
    );
}

/// Runs `audit ...`.
pub async fn audit(conn: Conn, cmd: AuditCommand, json_mode: bool) -> anyhow::Result<ExitCode> {
    let mut c = client(&conn)?;
    match cmd {
        AuditCommand::List { after, limit } => {
            let r = c.audit_page(after, limit).await?;
            if json_mode {
                output::json(&r);
            } else {
                print_audit_table(&r.entries);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { trust } => {
            let kv = trusted_keyvault(&mut c, &conn.url, &trust).await?;
            // keyvault's verdict, signed over our nonce: a relayed or forged "ok" fails here.
            let nonce: [u8; 32] = cloister_crypto::random_bytes()?;
            let resp = c
                .raw(
                    Method::GET,
                    &format!("/v1/audit/verify?nonce={}", hex::encode(nonce)),
                    None,
                )
                .await?;
            if resp.status != 200 {
                return Err(anyhow::anyhow!(cloister_client::ClientError::Api {
                    status: resp.status,
                    error: cloister_types::ApiError::from_body(&resp.body).unwrap_or_else(|| {
                        cloister_types::ApiError::new(
                            cloister_types::ErrorCode::Unavailable,
                            "audit verification failed",
                        )
                    }),
                }));
            }
            let verdict: cloister_types::wire::AuditVerdict =
                serde_json::from_slice(&resp.body).context("malformed audit verdict")?;
            let remote = cloister_client::audit::verify_verdict(&kv.audit_key, &nonce, &verdict)
                .map_err(|e| {
                    anyhow::Error::from(Coded {
                        code: "bad_signature",
                        message: e.to_string(),
                    })
                })?;
            // The chain checked here must be the one keyvault vouched for: it must contain
            // keyvault's head (fetched after the verdict, so it is at least as long).
            let (entries, checkpoints) = fetch_audit(&mut c).await?;
            let mut local = cloister_audit::verify_chain(&entries, &checkpoints, &kv.audit_key);
            let head_seq = remote["head_seq"].as_u64().unwrap_or(0);
            let head_hash = remote["head_hash"].as_str().unwrap_or_default().to_owned();
            // (Only an intact verdict names a head; a failed one fails the command anyway.)
            let vouched = remote["ok"].as_bool() != Some(true)
                || head_seq == 0
                || entries
                    .iter()
                    .any(|e| e.seq == head_seq && e.hash == head_hash);
            let mut chain_problem = None;
            if !vouched {
                chain_problem = Some(format!(
                    "the entries served to this client do not contain entry {head_seq} that keyvault \
                     verified (the gateway served another chain)"
                ));
                local.ok = false;
                local.first_bad_seq =
                    Some(local.first_bad_seq.map_or(head_seq, |f| f.min(head_seq)));
            }
            // The last checkpoint this client verified for this keyvault must still be there.
            let cfg_path = config_path()?;
            let mut cfg = read_config(&cfg_path)?;
            let key_hex = kv.audit_key.to_string();
            let seen: Option<cloister_client::audit::SeenCheckpoint> = cfg
                .get("auditCheckpoints")
                .and_then(|m| m.get(&key_hex))
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            let mut seen_problem = chain_problem;
            let epoch = remote["epoch"].as_u64().unwrap_or(0);
            let mut restored_notice = None;
            // A checkpoint pinned before epochs existed (0) is still checked, not waved through.
            if let Some(seen) = seen.as_ref().filter(|s| s.epoch != 0 && epoch != s.epoch) {
                if epoch < seen.epoch {
                    seen_problem = Some(format!(
                        "keyvault's anti-rollback epoch went back from {} to {epoch}: its state was rolled back",
                        seen.epoch
                    ));
                    local.ok = false;
                } else {
                    restored_notice = Some(format!(
                        "keyvault was restored from a backup by an admin (anti-rollback epoch {} -> {epoch}); \
                         entries after the backup, up to the checkpoint at {} this client saw, are gone",
                        seen.epoch, seen.seq
                    ));
                }
            } else if let Some(seen) = &seen {
                let at = |seq: u64| {
                    entries
                        .iter()
                        .find(|e| e.seq == seq)
                        .map(|e| e.hash.clone())
                };
                if let Err(why) = cloister_client::audit::check_against_seen(seen, at) {
                    seen_problem = Some(why);
                    local.ok = false;
                    local.first_bad_seq =
                        Some(local.first_bad_seq.map_or(seen.seq, |f| f.min(seen.seq)));
                }
            }
            if local.ok {
                let newest = checkpoints
                    .iter()
                    .filter(|c| entries.iter().any(|e| e.seq == c.seq && e.hash == c.hash))
                    .max_by_key(|c| c.seq);
                if let Some(cp) = newest
                    && seen
                        .as_ref()
                        .is_none_or(|s| cp.seq > s.seq || epoch > s.epoch)
                {
                    if !cfg.is_object() {
                        cfg = json!({});
                    }
                    cfg["auditCheckpoints"][&key_hex] =
                        serde_json::to_value(cloister_client::audit::SeenCheckpoint {
                            seq: cp.seq,
                            hash: cp.hash.clone(),
                            epoch,
                        })?;
                    write_config(&cfg_path, &cfg)?;
                }
            }
            let ok = local.ok && remote["ok"].as_bool() == Some(true);
            if let Some(n) = &restored_notice {
                eprintln!("NOTE: {n}");
            }
            if json_mode {
                output::json(&json!({"ok": ok, "local": local, "keyvault": remote,
                                     "seenCheckpoint": seen, "seenProblem": seen_problem,
                                     "epoch": epoch, "restored": restored_notice,
                                     "verdictSigned": true, "tee": kv.tee_label}));
            } else if ok {
                println!(
                    "audit log intact: {} entries, {} signed checkpoints verified (keyvault tee: {})",
                    local.entries, local.checkpoints_verified, kv.tee_label
                );
            } else {
                let first = local
                    .first_bad_seq
                    .or_else(|| remote["first_bad_seq"].as_u64());
                let why = seen_problem
                    .clone()
                    .or_else(|| local.problem.as_ref().map(ToString::to_string))
                    .or_else(|| remote["problem"].as_object().map(|p| format!("{p:?}")))
                    .unwrap_or_default();
                println!(
                    "audit log TAMPERED: first bad sequence number {}: {why}",
                    first.map(|f| f.to_string()).unwrap_or("?".into())
                );
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn fetch_audit(
    c: &mut Client,
) -> anyhow::Result<(
    Vec<cloister_audit::AuditEntry>,
    Vec<cloister_audit::Checkpoint>,
)> {
    let mut entries: Vec<cloister_audit::AuditEntry> = Vec::new();
    let mut checkpoints: Vec<cloister_audit::Checkpoint> = Vec::new();
    loop {
        let after = entries.last().map(|e| e.seq).unwrap_or(0);
        let r = c.audit_page(after, 1000).await?;
        let page = r.entries;
        for cp in r.checkpoints {
            if !checkpoints.contains(&cp) {
                checkpoints.push(cp);
            }
        }
        let done = page.len() < 1000;
        entries.extend(page);
        if done {
            return Ok((entries, checkpoints));
        }
    }
}
