//! Client commands: `fn ...` and `token ...`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use cloister_client::Client;
use cloister_types::wire::{DeployRequest, TokenCreateRequest};
use cloister_types::{Role, limits::RequestedLimits};
use serde_json::value::RawValue;

use crate::cli::{Conn, DeployArgs, FnCommand, InvokeArgs, TokenCommand};
use crate::output;

/// The token to use: the connection's (given, or recorded for its URL).
pub fn resolve_token(token: Option<String>) -> anyhow::Result<Option<String>> {
    Ok(token)
}

/// A client with the resolved token.
pub fn client(conn: &Conn) -> anyhow::Result<Client> {
    Ok(Client::new(&conn.url, resolve_token(conn.token.clone())?)?)
}

/// A client that signs with the identity in use (when there is one).
pub fn signing_client(conn: &Conn) -> anyhow::Result<Client> {
    let c = client(conn)?;
    Ok(match crate::identity_cmd::load(conn.identity.as_deref())? {
        Some(id) => c.with_identity(id, None),
        None => c,
    })
}

/// Whether `fn activate` or `fn deactivate` was asked.
enum Toggle {
    On,
    Off,
}

/// Runs `fn ...`.
pub async fn function(conn: Conn, cmd: FnCommand, json: bool) -> anyhow::Result<ExitCode> {
    let mut c = signing_client(&conn)?;
    // What these sign is bound to the keyvault whose attestation verifies here.
    let binds = match &cmd {
        FnCommand::Deploy(args) => Some(args.trust.clone()),
        FnCommand::Delete { trust, .. } | FnCommand::Rollback { trust, .. } => Some(trust.clone()),
        FnCommand::Activate { .. } | FnCommand::Deactivate { .. } | FnCommand::Owners { .. } => {
            Some(crate::cli::TrustArgs::default())
        }
        _ => None,
    };
    if let Some(trust) = binds {
        crate::secret_cmd::bind_verified_platform(&mut c, &conn.url, &trust).await?;
    }
    let cmd_kind = match &cmd {
        FnCommand::Deactivate { .. } => Toggle::Off,
        _ => Toggle::On,
    };
    match cmd {
        FnCommand::Deploy(args) => {
            let confidential = args.confidential;
            let trust = args.trust.clone();
            let (mut req, cleared) = deploy_request(args)?;
            keep_key_limits(&mut c, &conn.url, &trust, &mut req, &cleared).await?;
            let info = if confidential {
                let (kv, _) = crate::secret_cmd::verified_bundle(&mut c, &conn.url, &trust).await?;
                let now =
                    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
                let key = cloister_client::sealed::pick_key(&kv.fleet_keys, now)
                    .ok_or(cloister_client::sealed::SealedError::NoFleetKey)?;
                let info = c.deploy_confidential(&req, key).await?;
                // Calls from this machine stay sealed, even if the gateway later hides the
                // manifest that says so.
                let signer = crate::identity_cmd::load(conn.identity.as_deref())?
                    .map(|i| i.id().to_string())
                    .unwrap_or_default();
                pin_confidential(&conn.url, &info, &signer)?;
                info
            } else {
                c.deploy(&req).await?
            };
            if json {
                output::json(&info);
            } else if info.unchanged {
                println!(
                    "unchanged: {} v{} already runs this code and configuration ({}); \
                     nothing deployed",
                    output::printable(&info.name),
                    info.version,
                    output::printable(&info.code_hash)
                );
            } else {
                println!(
                    "deployed {} v{} ({}{})",
                    output::printable(&info.name),
                    info.version,
                    output::printable(&info.code_hash),
                    if confidential {
                        "; confidential: the code is stored sealed, only attested executors read it"
                    } else {
                        ""
                    }
                );
            }
        }
        FnCommand::List => {
            let list = c.list().await?;
            if json {
                output::json(&list)
            } else {
                output::function_table(&list.functions)
            }
        }
        FnCommand::Show { name, version } => {
            let info = c.show(&name, version).await?;
            if json {
                output::json(&info)
            } else {
                output::function(&info)
            }
        }
        FnCommand::Delete {
            name,
            delete_secrets,
            keep_secrets,
            trust,
        } => {
            let how = SecretsChoice {
                delete: delete_secrets,
                keep: keep_secrets,
                trust,
            };
            delete(&mut c, &conn.url, &name, how, json).await?
        }
        FnCommand::Invoke(args) => invoke(&mut c, &conn.url, args, json).await?,
        FnCommand::Versions { name } => {
            let v = c.versions(&name).await?;
            if json {
                output::json(&v);
            } else {
                output::versions_table(&v);
            }
        }
        FnCommand::Rollback {
            name,
            to,
            keep_newer,
            trust,
        } => rollback(&mut c, &conn.url, &name, to, keep_newer, &trust, json).await?,
        FnCommand::History { name, limit } => {
            let h = c.invocations(&name, 0, limit as usize).await?;
            if json {
                output::json(&h);
            } else {
                output::history_table(&h.invocations);
            }
        }
        FnCommand::Logs {
            name,
            follow,
            limit,
        } => logs(&mut c, &name, follow, limit as usize, json).await?,
        FnCommand::Run(_) | FnCommand::New { .. } => {
            bail!("`fn run` and `fn new` need no server (handled before connecting)")
        }
        FnCommand::Activate { name, version } | FnCommand::Deactivate { name, version } => {
            let active = matches!(cmd_kind, Toggle::On);
            let info = c.show(&name, None).await?;
            let r = c
                .activate(&name, &info.function_id, version, active)
                .await?;
            if json {
                output::json(&r);
            } else {
                let verb = if active { "activated" } else { "deactivated" };
                let list: Vec<String> = r.active.iter().map(|v| format!("v{v}")).collect();
                println!(
                    "{verb} {name} v{version}; active versions: {}",
                    if list.is_empty() {
                        "none".to_owned()
                    } else {
                        list.join(", ")
                    }
                );
            }
        }
        FnCommand::Owners { name, add, remove } => {
            let info = c.show(&name, None).await?;
            let r = c
                .change_registry(&cloister_authority::ops::RegistryChange::Owners {
                    function_id: info.function_id.clone(),
                    name: name.clone(),
                    add,
                    remove,
                })
                .await?;
            if json {
                output::json(&r);
            } else {
                for o in &r.owners {
                    println!("owners of {name}: {}", o.owners.join(", "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn deploy_request(
    args: DeployArgs,
) -> anyhow::Result<(DeployRequest, std::collections::BTreeSet<String>)> {
    let code = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let name = match args.name {
        Some(n) => n,
        None => {
            let stem = args
                .file
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_owned)
                .context("cannot derive a function name from the file name; pass --name")?;
            if let Err(e) = cloister_types::FunctionName::parse(&stem) {
                bail!(
                    "the file name {} gives the function name {stem:?}, which is not valid ({e}); \
                     pass --name NAME",
                    args.file.display()
                );
            }
            stem
        }
    };
    let limits =
        (args.timeout_ms.is_some() || args.memory_mb.is_some()).then_some(RequestedLimits {
            timeout_ms: args.timeout_ms,
            memory_mb: args.memory_mb,
        });
    let mut key_limits = std::collections::BTreeMap::<String, cloister_types::KeyLimits>::new();
    let mut cleared = std::collections::BTreeSet::new();
    for (key, setting) in &args.key_limits {
        if !args.keys.contains(key) {
            anyhow::bail!("--key-limit {key}:{setting}: declare the key with --key {key} first");
        }
        if setting == "none" {
            cleared.insert(key.clone());
            continue;
        }
        key_limits
            .entry(key.clone())
            .or_default()
            .set(setting)
            .with_context(|| format!("--key-limit {key}:{setting}"))?;
    }
    if let Some(k) = cleared.iter().find(|k| key_limits.contains_key(*k)) {
        anyhow::bail!("--key-limit {k}:none clears {k}'s limits; give it no other --key-limit");
    }
    cloister_types::key_limits::check_key_limits(&args.keys, &key_limits)?;
    let mut required_secrets = args.secrets;
    let egress = egress_policy(
        &args.egress,
        &args.egress_ca,
        &args.egress_secrets,
        &mut required_secrets,
    )?;
    let req = DeployRequest {
        name,
        runtime: args.runtime,
        code,
        entrypoint: args.entrypoint,
        environment: args.environment,
        required_secrets,
        limits,
        manifest: None,
        sealed_code: None,
        env: args.env.into_iter().collect(),
        source_name: source_name_of(&args.file),
        required_keys: args.keys,
        key_limits,
        egress,
    };
    Ok((req, cleared))
}

/// The egress policy of `fn deploy --egress/--egress-ca/--egress-secret` (none without any),
/// checked here for a clear error before anything is signed; egress-only secrets are added
/// to the declared ones.
fn egress_policy(
    origins: &[String],
    ca_files: &[std::path::PathBuf],
    secret_flags: &[String],
    declared: &mut Vec<String>,
) -> anyhow::Result<Option<cloister_types::egress::Egress>> {
    if origins.is_empty() && ca_files.is_empty() && secret_flags.is_empty() {
        return Ok(None);
    }
    if origins.is_empty() {
        bail!("--egress-ca and --egress-secret need at least one --egress ORIGIN");
    }
    let mut ca = Vec::new();
    for f in ca_files {
        // ORIGIN=FILE scopes the root to one listed origin; FILE alone, to every one.
        let text = f.to_string_lossy();
        let (origins, file) = match text.split_once('=') {
            Some((o, file)) if o.starts_with("https://") || o.starts_with("http://") => {
                (vec![o.to_owned()], std::path::PathBuf::from(file))
            }
            _ if origins.len() == 1 => (origins.to_vec(), f.clone()),
            _ => bail!(
                "--egress-ca {}: with several --egress origins, say which one the root vouches \
                 for: --egress-ca ORIGIN={} (a root can vouch for any server at its origins)",
                f.display(),
                f.display()
            ),
        };
        let pem = std::fs::read_to_string(&file)
            .with_context(|| format!("--egress-ca {}: cannot read it", file.display()))?;
        ca.push(cloister_types::egress::ExtraRoot { pem, origins });
    }
    let mut secrets = std::collections::BTreeMap::<String, Vec<_>>::new();
    for flag in secret_flags {
        let (name, binding) = cloister_types::egress::parse_secret_flag(flag)
            .map_err(|e| anyhow::anyhow!("--egress-secret {e}"))?;
        let known = declared
            .iter()
            .any(|d| cloister_types::SecretRef::parse(d).is_ok_and(|r| r.name() == name));
        if !known {
            declared.push(name.clone());
        }
        let entry = secrets.entry(name).or_default();
        entry.extend(binding);
    }
    let policy = cloister_types::egress::Egress {
        allow: origins.to_vec(),
        ca,
        secrets,
    };
    let refs = cloister_types::SecretRef::parse_declared(declared)?;
    let names: Vec<&str> = refs.iter().map(|r| r.name()).collect();
    policy.check(&names)?;
    Ok(Some(policy))
}

/// Keeps the limits the deployed version sets on a key this deploy declares again without
/// any `--key-limit`: the newest version's limits bind every version, so a redeploy that
/// forgot them would loosen them for all. `--key-limit NAME:none` clears them on purpose.
/// The deployed manifest is checked against the registry the attested keyvault binds, and a
/// function the gateway shows without one is an error, not "no limits".
async fn keep_key_limits(
    c: &mut cloister_client::Client,
    url: &str,
    trust: &crate::cli::TrustArgs,
    req: &mut DeployRequest,
    cleared: &std::collections::BTreeSet<String>,
) -> anyhow::Result<()> {
    if req.required_keys.is_empty() {
        return Ok(());
    }
    match c.show(&req.name, None).await {
        Ok(_) => {}
        Err(cloister_client::ClientError::Api {
            status: 404 | 400, ..
        }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let kv = crate::secret_cmd::trusted_keyvault(c, url, trust).await?;
    let deployed = c
        .verified_target(&kv, &req.name, None)
        .await
        .context("cannot check the deployed version's key limits")?;
    for (key, limits) in deployed.manifest.key_limits {
        if req.required_keys.contains(&key)
            && !req.key_limits.contains_key(&key)
            && !cleared.contains(&key)
        {
            eprintln!(
                "keeping the limits the deployed version sets on key {key} ({}); --key-limit {key}:none clears them",
                serde_json::to_string(&limits)?
            );
            req.key_limits.insert(key, limits);
        }
    }
    Ok(())
}

/// The base name of `file` as stack traces show it, when it is a valid source name.
pub(crate) fn source_name_of(file: &std::path::Path) -> Option<String> {
    let base = file.file_name()?.to_str()?;
    cloister_types::SourceName::parse(base)
        .ok()
        .map(|n| n.to_string())
}

/// The parameters' JSON text: `--params`, else `--params-file` (`-`: stdin), else `{}`.
pub fn read_params(params: Option<String>, file: Option<PathBuf>) -> anyhow::Result<String> {
    let params = match (params, file) {
        (Some(p), _) => p,
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read params from stdin")?;
            s
        }
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?
        }
        // No parameters: an empty object, which handlers that read fields can take.
        (None, None) => "{}".to_owned(),
    };
    if let Err(e) = serde_json::from_str::<&RawValue>(&params) {
        bail!("the params are not valid JSON: {e}");
    }
    Ok(params)
}

async fn invoke(c: &mut Client, url: &str, args: InvokeArgs, json: bool) -> anyhow::Result<()> {
    let params = read_params(args.params.clone(), args.params_file.clone())?;
    if args.sealed || is_confidential(c, url, &args).await {
        return invoke_sealed(c, url, &args, params.trim(), json).await;
    }
    let resp = match &args.receipt {
        None => c.invoke(&args.name, params.trim(), args.version).await?,
        Some(file) => {
            let (kv, bundle) = crate::secret_cmd::verified_bundle(c, url, &args.trust).await?;
            let (resp, v) = c
                .invoke_with_receipt(&args.name, params.trim(), args.version, &receipt_trust(&kv))
                .await?;
            if let Some(r) = &resp.receipt {
                save_receipt(file, url, r, bundle)?;
            }
            eprintln!(
                "receipt checked (signed by executor {}) and saved to {}",
                v.executor_measurement
                    .get(..16)
                    .unwrap_or(&v.executor_measurement),
                file.display()
            );
            resp
        }
    };
    if json {
        output::json(&resp);
        return Ok(());
    }
    print_result(&resp.result, &resp.logs);
    eprintln!(
        "(v{}, {:.2} ms, execution {}; plain call: non-sensitive, the gateway saw params and \
         result; --sealed encrypts both)",
        resp.version, resp.duration_ms, resp.execution_id
    );
    Ok(())
}

/// Prints a function's result (pretty JSON) on stdout and its log lines on stderr.
pub fn print_result(result: &RawValue, logs: &[String]) {
    let pretty = serde_json::from_str::<serde_json::Value>(result.get())
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| result.get().to_owned());
    println!("{pretty}");
    for l in logs {
        eprintln!("log: {l}");
    }
}

/// Pins a function deployed confidential from this machine as such.
fn pin_confidential(
    url: &str,
    info: &cloister_types::wire::FunctionInfo,
    signer: &str,
) -> anyhow::Result<()> {
    let path = crate::secret_cmd::config_path()?;
    let mut cfg = crate::secret_cmd::read_config(&path)?;
    if !cfg.is_object() {
        cfg = serde_json::json!({});
    }
    let entry = &mut cfg["sealedFunctions"][url][&info.name];
    if entry.is_null() {
        *entry = serde_json::json!({ "functionId": info.function_id, "version": info.version,
            "signer": signer, "confidential": true });
    } else {
        entry["confidential"] = serde_json::json!(true);
    }
    crate::secret_cmd::write_config(&path, &cfg)
}

/// Whether calls to this function go sealed without `--sealed`: it was pinned as confidential
/// when this machine sealed to it before (a gateway cannot talk the CLI into a plain call by
/// hiding the manifest), or the version's manifest says `confidential` (read unverified: it
/// only chooses the stricter path, which verifies everything).
async fn is_confidential(c: &mut Client, url: &str, args: &InvokeArgs) -> bool {
    use base64::Engine as _;
    let pinned = crate::secret_cmd::config_path()
        .and_then(|p| crate::secret_cmd::read_config(&p))
        .ok()
        .is_some_and(|cfg| cfg["sealedFunctions"][url][&args.name]["confidential"] == true);
    if pinned {
        return true;
    }
    // A manifest that cannot be had means the sealed path, which says why; never plain.
    let signed = match c.signed_manifest(&args.name, args.version).await {
        Ok(s) => s,
        Err(cloister_client::ClientError::Api { status: 404, .. }) => return false,
        Err(_) => return true,
    };
    base64::engine::general_purpose::STANDARD
        .decode(&signed.manifest)
        .ok()
        .and_then(|b| cloister_authority::request::inspect::<cloister_authority::Manifest>(&b).ok())
        .is_some_and(|i| i.body.confidential)
}

fn receipt_trust(
    kv: &cloister_client::attestation::TrustedKeyvault,
) -> cloister_client::receipt::ReceiptTrust {
    cloister_client::receipt::ReceiptTrust::new(
        kv.root_fingerprint.clone(),
        kv.executor_measurements.clone(),
    )
}

/// Writes a checked receipt with the bundle it was checked against.
fn save_receipt(
    file: &Path,
    url: &str,
    receipt: &cloister_types::receipt::Receipt,
    bundle: cloister_client::attestation::Bundle,
) -> anyhow::Result<()> {
    let saved = cloister_client::receipt::ReceiptFile {
        url: url.to_owned(),
        receipt: receipt.clone(),
        bundle,
    };
    std::fs::write(file, serde_json::to_vec_pretty(&saved)?)
        .with_context(|| format!("cannot write {}", file.display()))
}

/// What a client pinned about a function it sealed to, per server URL and name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PinnedFunction {
    function_id: String,
    signer: String,
    /// Highest version sealed to.
    version: u32,
    /// Its manifest said `confidential`: calls stay sealed without `--sealed`.
    #[serde(default)]
    confidential: bool,
}

/// Pins, on first use, which function `name` is for `url` (its id), who signs its manifests
/// and the highest version sealed to; afterwards a different function id or signer, or an
/// older version than sealed to before (without `--version`), is refused unless
/// `accept_change`: a gateway or database that swaps in another function under the name, or
/// rolls callers back to a superseded version, is stopped here.
fn pin_function(
    url: &str,
    name: &str,
    explicit_version: bool,
    accept_change: bool,
    m: &cloister_client::manifest::VerifiedManifest,
) -> anyhow::Result<()> {
    let path = crate::secret_cmd::config_path()?;
    let mut cfg = crate::secret_cmd::read_config(&path)?;
    if !cfg.is_object() {
        cfg = serde_json::json!({});
    }
    let pinned: Option<PinnedFunction> = cfg
        .get("sealedFunctions")
        .and_then(|f| f.get(url))
        .and_then(|f| f.get(name))
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let now = PinnedFunction {
        function_id: m.target.function_id.clone(),
        signer: m.signer.clone(),
        version: m.target.version,
        confidential: m.manifest.confidential,
    };
    let changed = |what: String| -> anyhow::Error {
        output::Coded {
            code: "function_changed",
            message: format!(
                "{what}; nothing was sent. If this is expected, run again with \
                 --accept-function-change (it is pinned in {})",
                path.display()
            ),
        }
        .into()
    };
    let next = match pinned {
        None => {
            eprintln!(
                "note: {name} is function {} v{}, manifest signed by {} (registry label {:?}, \
                 not authenticated); pinned for {url} on first use.",
                now.function_id, now.version, now.signer, m.signer_label
            );
            now
        }
        Some(p) => {
            if p.function_id != now.function_id && !accept_change {
                return Err(changed(format!(
                    "{name} is now function {}, not {} as when you first sealed to it",
                    now.function_id, p.function_id
                )));
            }
            if p.signer != now.signer && !accept_change {
                return Err(changed(format!(
                    "{name} v{} is signed by {}, not by {}, who signed the versions you sealed \
                     to before",
                    now.version, now.signer, p.signer
                )));
            }
            if now.version < p.version && !explicit_version && !accept_change {
                return Err(changed(format!(
                    "the server offers {name} v{} as the latest, but you sealed to v{} before \
                     (pass --version {} to call the older version on purpose)",
                    now.version, p.version, now.version
                )));
            }
            if p == now {
                return Ok(());
            }
            if accept_change {
                eprintln!("note: {name} pinned anew for {url} (--accept-function-change).");
                now
            } else {
                PinnedFunction {
                    // Once confidential, always sealed from this machine.
                    confidential: p.confidential || now.confidential,
                    version: now.version.max(if p.function_id == now.function_id {
                        p.version
                    } else {
                        0
                    }),
                    ..now
                }
            }
        }
    };
    cfg["sealedFunctions"][url][name] = serde_json::to_value(next)?;
    crate::secret_cmd::write_config(&path, &cfg)
}

/// `fn invoke --sealed`: verify keyvault's bundle, seal to its fleet key for the code
/// expected, open the answer. A key the executors no longer hold means the bundle is fetched
/// again, once.
async fn invoke_sealed(
    c: &mut Client,
    url: &str,
    args: &InvokeArgs,
    params: &str,
    json: bool,
) -> anyhow::Result<()> {
    use cloister_client::sealed::{pick_key, seal_call};
    let (first_kv, _) = crate::secret_cmd::verified_bundle(c, url, &args.trust).await?;
    let kv = &first_kv;
    // What to seal for: the version's owner-signed manifest, its signer checked against the
    // registry keyvault's evidence binds. The executor runs the request only by it.
    let m = c
        .verified_target(kv, &args.name, args.version)
        .await
        .map_err(|e| crate::secret_cmd::attestation_failed(e.to_string()))?;
    if let Some(h) = &args.expect_code_hash
        && !h.trim().eq_ignore_ascii_case(&m.target.code_hash)
    {
        return Err(output::Coded {
            code: "code_hash_mismatch",
            message: format!(
                "{} v{} runs code {} (manifest signed by {}), not the expected {}; nothing was sent",
                args.name,
                m.target.version,
                m.target.code_hash,
                m.signer,
                h.trim()
            ),
        }
        .into());
    }
    pin_function(
        url,
        &args.name,
        args.version.is_some(),
        args.accept_function_change,
        &m,
    )?;
    let target = m.target;
    let mut refetched = false;
    loop {
        let (kv, bundle) = crate::secret_cmd::verified_bundle(c, url, &args.trust).await?;
        if kv.audit_key != first_kv.audit_key {
            return Err(crate::secret_cmd::attestation_failed(
                "another keyvault instance answered while sealing; nothing was sent".into(),
            ));
        }
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        let key = pick_key(&kv.fleet_keys, now)
            .ok_or(cloister_client::sealed::SealedError::NoFleetKey)?;
        let mut call = seal_call(key, &target, params, now)?;
        if args.receipt.is_some() {
            call = call.ask_receipt(receipt_trust(&kv))?;
        }
        match c.invoke_sealed(&args.name, &call).await {
            Err(e @ cloister_client::ClientError::FunctionFailed { .. }) => {
                // Saved before the failure is reported: it proves what failed.
                if let (
                    cloister_client::ClientError::FunctionFailed {
                        receipt: Some(r), ..
                    },
                    Some(file),
                ) = (&e, &args.receipt)
                {
                    save_receipt(file, url, &r.0, bundle)?;
                }
                return Err(e.into());
            }
            Err(e)
                if !refetched && e.code() == Some(cloister_types::ErrorCode::FleetKeyUnknown) =>
            {
                eprintln!(
                    "the executors hold other fleet keys now; fetching keyvault's bundle again"
                );
                refetched = true;
            }
            Err(e) => return Err(e.into()),
            Ok(r) => {
                if let (Some((receipt, v)), Some(file)) = (&r.receipt, &args.receipt) {
                    save_receipt(file, url, receipt, bundle)?;
                    eprintln!(
                        "receipt checked (signed by executor {}) and saved to {}",
                        v.executor_measurement
                            .get(..16)
                            .unwrap_or(&v.executor_measurement),
                        file.display()
                    );
                }
                if json {
                    output::json(&serde_json::json!({
                        "result": r.result,
                        "logs": r.logs,
                        "executionId": r.execution_id,
                        "version": r.version,
                        "codeHash": target.code_hash,
                        "durationMs": r.duration_ms,
                        "sealed": true,
                        "fleetKeyId": call.input.key_id,
                        "tee": kv.tee_label,
                    }));
                    return Ok(());
                }
                print_result(&r.result, &r.logs);
                eprintln!(
                    "(v{}, {:.2} ms, execution {}; sealed end to end to fleet key {} of keyvault \
                     in {}; code {})",
                    r.version,
                    r.duration_ms,
                    r.execution_id,
                    call.input.key_id,
                    kv.tee_label,
                    target.code_hash
                );
                return Ok(());
            }
        }
    }
}

/// Runs `token ...`.
pub async fn token(conn: Conn, cmd: TokenCommand, json: bool) -> anyhow::Result<ExitCode> {
    let mut c = client(&conn)?;
    match cmd {
        TokenCommand::Create {
            role,
            label,
            for_identity: identity,
            functions,
        } => {
            let role =
                Role::parse(&role).context("role must be admin, developer, invoker or metrics")?;
            let created = c
                .create_token(&TokenCreateRequest {
                    role,
                    label,
                    identity,
                    functions,
                })
                .await?;
            if json {
                output::json(&created);
            } else {
                println!("{}", created.token);
                eprintln!(
                    "created {} token {} — store it now, it is not shown again",
                    role.as_str(),
                    created.info.id
                );
            }
        }
        TokenCommand::List => {
            let list = c.list_tokens().await?;
            if json {
                output::json(&list)
            } else {
                output::token_table(&list.tokens)
            }
        }
        TokenCommand::Revoke { id } => {
            c.revoke_token(&id).await?;
            if json {
                output::json(&serde_json::json!({ "revoked": id }));
            } else {
                println!("revoked {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `fn delete` was told to do with the function's secrets.
struct SecretsChoice {
    delete: bool,
    keep: bool,
    trust: crate::cli::TrustArgs,
}

/// `fn delete NAME`: refuses while the function has secrets unless told what to do with them.
/// Secrets are deleted only inside the namespace of the function id its owner-signed manifest
/// names (checked against keyvault's evidence): a gateway cannot steer the owner's signed
/// deletes to another function's secrets.
async fn delete(
    c: &mut Client,
    url: &str,
    name: &str,
    how: SecretsChoice,
    json: bool,
) -> anyhow::Result<()> {
    let (delete_secrets, keep_secrets) = (how.delete, how.keep);
    let info = c.show(name, None).await?;
    let prefix = format!(
        "{}/",
        cloister_types::names::namespace_of(&info.function_id)
    );
    let secrets = c.list_secrets(&prefix).await?.secrets;
    if delete_secrets && !secrets.is_empty() {
        let (kv, _) = crate::secret_cmd::verified_bundle(c, url, &how.trust).await?;
        let signed = c.verified_target(&kv, name, None).await?.target;
        if signed.function_id != info.function_id {
            bail!(
                "the gateway names function id {} for {name}, but its owner-signed manifest \
                 names {}: nothing deleted",
                info.function_id,
                signed.function_id
            );
        }
        if let Some(s) = secrets.iter().find(|s| !s.path.starts_with(&prefix)) {
            bail!(
                "the gateway listed {} as a secret of {name}, outside its namespace {prefix}: \
                 nothing deleted",
                s.path
            );
        }
    }
    if !secrets.is_empty() && !delete_secrets && !keep_secrets {
        return Err(crate::output::Coded {
            code: "secrets_exist",
            message: format!(
                "{name} has {} secret(s) under {prefix} ({}): pass --delete-secrets to delete \
                 them with it, or --keep-secrets to keep them (a new deploy of {name} gets a new \
                 id and does not see them)",
                secrets.len(),
                secrets
                    .iter()
                    .map(|s| s.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        .into());
    }
    let mut deleted = Vec::new();
    if delete_secrets {
        for s in &secrets {
            let path = cloister_types::SecretPath::parse(&s.path)
                .with_context(|| format!("keyvault listed a malformed path {}", s.path))?;
            c.delete_secret(&path)
                .await
                .with_context(|| format!("deleting secret {} (the function is kept)", s.path))?;
            deleted.push(s.path.clone());
        }
    }
    c.delete(name).await?;
    let kept: Vec<String> = if delete_secrets {
        Vec::new()
    } else {
        secrets.iter().map(|s| s.path.clone()).collect()
    };
    if json {
        output::json(&serde_json::json!({
            "deleted": name, "functionId": info.function_id,
            "secretsDeleted": deleted, "secretsKept": kept,
        }));
    } else {
        println!("deleted {name} (id {})", info.function_id);
        if !deleted.is_empty() {
            println!("deleted its {} secret(s)", deleted.len());
        }
        if !kept.is_empty() {
            println!(
                "kept its {} secret(s) under {prefix}: `cloister secret list` shows them, \
                 `cloister secret delete PATH` removes one",
                kept.len()
            );
        }
    }
    Ok(())
}

/// `fn logs NAME [--follow]`.
async fn logs(
    c: &mut Client,
    name: &str,
    follow: bool,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let mut after = 0;
    let mut first = true;
    loop {
        let h = c
            .invocations(name, after, if first { limit } else { 200 })
            .await?;
        for r in &h.invocations {
            after = after.max(r.seq);
            if json {
                // One object per line, so that --follow can be piped.
                println!("{}", serde_json::to_string(r)?);
                continue;
            }
            // What the gateway relays, and what callers put in, is shown with its control
            // characters escaped: it cannot drive the terminal or fake a line.
            let p = output::printable;
            let head = format!("{} {} v{}", p(&r.at), p(&r.execution_id), r.version);
            if r.sealed {
                println!(
                    "{head} [sealed: {}; its logs are sealed for the caller]",
                    p(&r.outcome)
                );
                continue;
            }
            for l in &r.logs {
                println!("{head} {}", p(l));
            }
            if let Some(e) = &r.error {
                println!("{head} error[{}]: {}", p(&r.outcome), p(e));
            }
        }
        if first && h.invocations.is_empty() && !json {
            eprintln!(
                "no invocations of {name} in the last {} s (kept in the gateway's memory)",
                h.retention_secs
            );
        }
        first = false;
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// `fn rollback NAME --to V`.
async fn rollback(
    c: &mut Client,
    url: &str,
    name: &str,
    to: u32,
    keep_newer: bool,
    trust: &crate::cli::TrustArgs,
    json: bool,
) -> anyhow::Result<()> {
    let list = c.versions(name).await?;
    let latest = list.versions.last().map_or(0, |v| v.version);
    if !list.versions.iter().any(|v| v.version == to) {
        bail!("{name} has no version {to} (versions 1 to {latest}: `cloister fn versions {name}`)");
    }
    // The id the owner signs for comes from the version's owner-signed manifest, checked
    // against keyvault's evidence, not from the gateway's word.
    let (kv, _) = crate::secret_cmd::verified_bundle(c, url, trust).await?;
    let function_id = c
        .verified_target(&kv, name, Some(to))
        .await?
        .target
        .function_id;
    let mut active = c.activate(name, &function_id, to, true).await?.active;
    let mut deactivated = Vec::new();
    if !keep_newer {
        // One signed deactivation of everything above `to` as keyvault knows it: a gateway
        // that hides a version from the list cannot keep it active.
        active = c.deactivate_from(name, &function_id, to + 1).await?.active;
        deactivated = list
            .versions
            .iter()
            .map(|v| v.version)
            .filter(|v| *v > to)
            .collect();
    }
    let now = c
        .set_current(name, if to == latest { None } else { Some(to) })
        .await?;
    if json {
        output::json(&serde_json::json!({
            "name": name, "current": now.current, "pinned": now.pinned,
            "deactivated": deactivated, "active": active,
        }));
    } else {
        println!("{name} now runs v{} by default", now.current);
        if !deactivated.is_empty() {
            let list: Vec<String> = deactivated.iter().map(|v| format!("v{v}")).collect();
            println!(
                "deactivated {} (owner-signed: keyvault gives them no secrets; \
                 `cloister fn activate {name} --version N` brings one back)",
                list.join(", ")
            );
        }
        if now.pinned {
            println!("the next deploy of {name} becomes current again");
            println!(
                "machines that sealed calls to a newer version refuse this one as a possible \
                 downgrade: there, name it (`fn invoke {name} --sealed --version {}`)",
                now.current
            );
        }
    }
    Ok(())
}
