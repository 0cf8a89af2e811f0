//! `cloister key ...`: keys keyvault keeps for a function (docs/CAPABILITIES.md).

use std::process::ExitCode;

use anyhow::{Context, bail};
use cloister_authority::ops::{KeyExport, KeyOp, KeyUse, KeyUseOp, KeyWrite};
use cloister_types::wire::{KeyInfo, KeyUseResult};

use crate::cli::{Conn, KeyCommand, MessageArgs, TrustArgs};
use crate::client_cmds::{client, signing_client};
use crate::output;

/// Runs one `key` command.
pub async fn run(conn: Conn, cmd: KeyCommand, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Create {
            name,
            function,
            algorithm,
            exportable,
            trust,
        } => {
            check_algorithm(&algorithm)?;
            let op = KeyOp::Create {
                algorithm,
                exportable,
            };
            let k = write(&conn, &function, &name, op, &trust).await?;
            show(&k, json, "created");
        }
        KeyCommand::Import {
            name,
            function,
            algorithm,
            secret_file,
            exportable,
            trust,
        } => {
            check_algorithm(&algorithm)?;
            let k = import(
                &conn,
                &function,
                &name,
                &algorithm,
                &secret_file,
                exportable,
                &trust,
            )
            .await?;
            show(&k, json, "imported");
        }
        KeyCommand::Export {
            name,
            function,
            recipient,
            version,
            admin_signed,
            trust,
        } => {
            export(
                &conn,
                &function,
                &name,
                &recipient,
                version,
                admin_signed,
                &trust,
                json,
            )
            .await?
        }
        KeyCommand::Rotate {
            name,
            function,
            trust,
        } => {
            let k = write(&conn, &function, &name, KeyOp::Rotate, &trust).await?;
            show(&k, json, "rotated");
        }
        KeyCommand::List { function, trust } => {
            let list = verified_keys(&conn, &function, &trust).await?;
            if json {
                output::json(&list);
            } else if list.keys.is_empty() {
                println!("{function} has no keys (cloister key create NAME --function {function})");
            } else {
                for k in &list.keys {
                    println!(
                        "{:<24} {:<16} v{:<4} {}",
                        k.name,
                        k.algorithm,
                        k.version,
                        k.public_key
                            .as_deref()
                            .unwrap_or("(symmetric: no public key)")
                    );
                    let mut notes = Vec::new();
                    if k.exportable {
                        notes.push("exportable".to_owned());
                    }
                    if k.imported {
                        notes.push("imported".to_owned());
                    }
                    if !k.granted_to.is_empty() {
                        notes.push(format!("granted to {}", k.granted_to.join(", ")));
                    }
                    if !notes.is_empty() {
                        println!("{:<24} {}", "", notes.join("; "));
                    }
                }
            }
        }
        KeyCommand::Grant {
            name,
            function,
            to,
            limits,
            trust,
        } => {
            let mut l = cloister_types::KeyLimits::default();
            for setting in &limits {
                l.set(setting)
                    .with_context(|| format!("--limit {setting}"))?;
            }
            l.validate()?;
            grant(&conn, &function, &name, &to, Some(l), &trust, json).await?
        }
        KeyCommand::Revoke {
            name,
            function,
            to,
            trust,
        } => grant(&conn, &function, &name, &to, None, &trust, json).await?,
        KeyCommand::Sign {
            name,
            function,
            message,
            hash,
            version,
            trust,
        } => {
            let msg = read_message(&message)?;
            let r = use_key(
                &conn,
                &function,
                &name,
                version,
                &hash,
                &msg,
                KeyUseOp::Sign,
                &trust,
            )
            .await?;
            if json {
                output::json(&r);
            } else {
                println!("{}", r.signature.as_deref().unwrap_or_default());
                let rid = r
                    .recovery_id
                    .map(|id| format!(", recovery id {id}"))
                    .unwrap_or_default();
                eprintln!(
                    "signed with {name} version {} ({}{rid})",
                    r.key_version, r.algorithm
                );
            }
        }
        KeyCommand::Verify {
            name,
            function,
            signature,
            message,
            hash,
            version,
            trust,
        } => {
            let msg = read_message(&message)?;
            hex::decode(&signature).context("--signature must be hex")?;
            let op = KeyUseOp::Verify { signature };
            let r = use_key(&conn, &function, &name, version, &hash, &msg, op, &trust).await?;
            let valid = r.valid == Some(true);
            if json {
                output::json(&r);
            } else if valid {
                println!("valid: signed by {name} version {}", r.key_version);
            } else {
                println!("INVALID: not a signature of {name} over this message");
            }
            if !valid {
                return Ok(ExitCode::FAILURE);
            }
        }
        KeyCommand::Public {
            name,
            function,
            version: Some(version),
            trust,
        } => {
            let versions = verified_versions(&conn, &function, &name, &trust).await?;
            let v = versions
                .versions
                .into_iter()
                .find(|v| v.version == version)
                .with_context(|| format!("{name} of {function} has no version {version}"))?;
            if json {
                output::json(&v);
            } else {
                match &v.public_key {
                    Some(pk) => println!("{pk}"),
                    None => bail!("{name} is an {} key: it has no public half", v.algorithm),
                }
            }
        }
        KeyCommand::Versions {
            name,
            function,
            trust,
        } => {
            let versions = verified_versions(&conn, &function, &name, &trust).await?;
            if json {
                output::json(&versions);
            } else {
                for v in &versions.versions {
                    println!(
                        "version {:<4} {:<16} {}{}",
                        v.version,
                        v.algorithm,
                        v.public_key
                            .as_deref()
                            .unwrap_or("(symmetric: no public key)"),
                        if v.imported { "  (imported)" } else { "" }
                    );
                }
            }
        }
        KeyCommand::Public {
            name,
            function,
            version: None,
            trust,
        } => {
            let list = verified_keys(&conn, &function, &trust).await?;
            let k = list
                .keys
                .into_iter()
                .find(|k| k.name == name)
                .with_context(|| format!("{function} has no key {name:?}"))?;
            if json {
                output::json(&k);
            } else {
                match &k.public_key {
                    Some(pk) => println!("{pk}"),
                    None => bail!("{name} is an {} key: it has no public half", k.algorithm),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every version of key `name` of `function`, each checked against keyvault's signature
/// (the bundle verified with `trust`).
async fn verified_versions(
    conn: &Conn,
    function: &str,
    name: &str,
    trust: &TrustArgs,
) -> anyhow::Result<cloister_types::wire::KeyVersions> {
    let mut c = client(conn)?;
    let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, trust).await?;
    // The key's verified view says which version is the newest: the list must end there.
    let list = c.keys(function).await?;
    let k = list
        .keys
        .iter()
        .find(|k| k.name == name)
        .with_context(|| format!("{function} has no key {name:?}"))?;
    cloister_client::keys::verify(k, &kv.audit_key, function)?;
    let versions = c.key_versions(function, name).await?;
    cloister_client::keys::verify_versions(&versions, &kv.audit_key, function, name, k.version)?;
    Ok(versions)
}

/// Function `function`'s keys, each checked against keyvault's signature (the bundle
/// verified with `trust`).
async fn verified_keys(
    conn: &Conn,
    function: &str,
    trust: &TrustArgs,
) -> anyhow::Result<cloister_types::wire::KeyList> {
    let mut c = client(conn)?;
    let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, trust).await?;
    let list = c.keys(function).await?;
    for k in &list.keys {
        cloister_client::keys::verify(k, &kv.audit_key, function)?;
    }
    Ok(list)
}

async fn write(
    conn: &Conn,
    function: &str,
    name: &str,
    op: KeyOp,
    trust: &TrustArgs,
) -> anyhow::Result<KeyInfo> {
    cloister_types::KeyName::parse(name)?;
    let (mut c, kv, function_id) =
        owner_session(conn, function, trust, "creating or rotating a key").await?;
    // keyvault's answer is checked as the answer to this very request: a gateway cannot
    // show an old view for a rotation, grant or revocation it dropped.
    let k = c
        .write_key_checked(
            &KeyWrite {
                function_id,
                function: function.to_owned(),
                name: name.to_owned(),
                op,
            },
            None,
            &kv.audit_key,
        )
        .await?;
    Ok(k)
}

fn check_algorithm(algorithm: &str) -> anyhow::Result<()> {
    if cloister_crypto::keys::KeyAlgorithm::parse(algorithm).is_none() {
        bail!(
            "unknown algorithm {algorithm:?}: use ed25519, ecdsa-p256, ecdsa-secp256k1 or hmac-sha256"
        );
    }
    Ok(())
}

/// Imports a key from `secret_file` (hex, `-`: stdin), sealed to the attested keyvault.
async fn import(
    conn: &Conn,
    function: &str,
    name: &str,
    algorithm: &str,
    secret_file: &std::path::Path,
    exportable: bool,
    trust: &TrustArgs,
) -> anyhow::Result<KeyInfo> {
    use sha2::Digest as _;
    cloister_types::KeyName::parse(name)?;
    let text = zeroize::Zeroizing::new(if secret_file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).context("reading stdin")?;
        t
    } else {
        std::fs::read_to_string(secret_file)
            .with_context(|| format!("reading {}", secret_file.display()))?
    });
    let secret = zeroize::Zeroizing::new(
        hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("the secret must be hex"))?,
    );
    if secret.len() != 32 {
        bail!(
            "the secret must be 32 bytes (64 hex digits); it has {}",
            secret.len()
        );
    }
    let (mut c, kv, function_id) = owner_session(conn, function, trust, "importing a key").await?;
    let sealed = kv.hpke.seal(
        &cloister_types::binding::key_import_info(&function_id, name),
        b"",
        &secret,
    )?;
    let k = c
        .write_key_checked(
            &KeyWrite {
                function_id,
                function: function.to_owned(),
                name: name.to_owned(),
                op: KeyOp::Import {
                    algorithm: algorithm.to_owned(),
                    exportable,
                    sealed_sha256: hex::encode(sha2::Sha256::digest(&sealed)),
                },
            },
            Some(&sealed),
            &kv.audit_key,
        )
        .await?;
    // keyvault holds the key that was sent, as it was sent.
    let alg = cloister_crypto::keys::KeyAlgorithm::parse(algorithm)
        .with_context(|| format!("unknown algorithm {algorithm:?}"))?;
    let expected = cloister_crypto::keys::KeyMaterial::from_secret(alg, &secret)?
        .public_key()?
        .map(hex::encode);
    if k.public_key != expected || k.exportable != exportable || !k.imported || k.version != 1 {
        bail!("keyvault's view of the imported key does not match the key sent");
    }
    Ok(k)
}

/// Exports a key sealed to `recipient`, signed by this identity and, with `admin_signed`, by
/// an admin; without it, prints the body for the admin to sign.
#[allow(clippy::too_many_arguments)]
async fn export(
    conn: &Conn,
    function: &str,
    name: &str,
    recipient: &str,
    version: Option<u64>,
    admin_signed: Option<String>,
    trust: &TrustArgs,
    json: bool,
) -> anyhow::Result<()> {
    cloister_types::KeyName::parse(name)?;
    let r = hex::decode(recipient).context("--recipient must be hex")?;
    cloister_crypto::HpkePublicKey::from_slice(&r)
        .context("--recipient must be an X25519 public key (32 bytes)")?;
    let mut c = signing_client(conn)?;
    let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, trust).await?;
    c.bind_platform(kv.audit_key.to_string());
    let body = KeyExport {
        function_id: c.show(function, None).await?.function_id,
        function: function.to_owned(),
        name: name.to_owned(),
        version,
        recipient: recipient.to_owned(),
    };
    let Some(admin_signed) = admin_signed else {
        // The body the admin signs, exactly as the owner's signature will cover it.
        println!("{}", serde_json::to_string(&body)?);
        eprintln!(
            "an admin signs this body: cloister identity sign cloister/key-export/v1 < body.json; \
             then run this command again with --admin-signed"
        );
        return Ok(());
    };
    if !c.signs() {
        bail!("an export is signed by an owner of the function: pass --identity");
    }
    let admin_signed = match admin_signed.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("reading {file}"))?
            .trim()
            .to_owned(),
        None => admin_signed,
    };
    let owner_signed = c
        .sign_body(&body, "an owner's identity is needed to export keys")
        .await?;
    let (out, request_sha256) = c.export_key(owner_signed, admin_signed).await?;
    // Only the recipient can open it; anyone can check keyvault made it for this request.
    let recipient_key = cloister_crypto::HpkePublicKey::from_slice(&r)?;
    cloister_client::keys::verify_export(
        &out,
        &recipient_key,
        &body.function_id,
        name,
        &request_sha256,
        &kv.audit_key,
    )?;
    if version.is_some_and(|v| v != out.key_version) {
        bail!(
            "asked for version {version:?}, keyvault's signed export is of version {}",
            out.key_version
        );
    }
    if json {
        output::json(&out);
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
        eprintln!(
            "exported {name} version {} ({}) sealed to {recipient}",
            out.key_version, out.algorithm
        );
    }
    Ok(())
}

/// Grants (`limits` given) or withdraws `function`'s key `name` to function `to`.
async fn grant(
    conn: &Conn,
    function: &str,
    name: &str,
    to: &str,
    limits: Option<cloister_types::KeyLimits>,
    trust: &TrustArgs,
    json: bool,
) -> anyhow::Result<()> {
    // The grantee's id is the gateway's word; keyvault refuses the grant unless it binds
    // `to` to that id.
    let to_function_id = client(conn)?.show(to, None).await?.function_id;
    let to_function = to.to_owned();
    let granting = limits.is_some();
    let op = match limits {
        Some(limits) => KeyOp::Grant {
            to_function_id,
            to_function,
            limits,
        },
        None => KeyOp::Revoke {
            to_function_id,
            to_function,
        },
    };
    let k = write(conn, function, name, op, trust).await?;
    // keyvault's signed view (checked as the answer to this request) lists the grantees.
    if granting != k.granted_to.iter().any(|g| g == to) {
        bail!(
            "keyvault's answer does not show the change: {to} is {}in the key's grants",
            if granting { "not " } else { "still " }
        );
    }
    if json {
        output::json(&k);
    } else if granting {
        println!(
            "granted {function}'s key {name} to {to}: its manifest declares it as {function}/{name}"
        );
    } else {
        println!("{to} may no longer use {function}'s key {name}");
    }
    Ok(())
}

/// A client that signs as an owner, bound to the platform of the attested keyvault (checked
/// with `trust`); that keyvault; and the id the gateway gives `function` (its word only:
/// keyvault refuses a request unless it binds `function` to that id). `what` names the
/// operation for the error when no identity is in use.
async fn owner_session(
    conn: &Conn,
    function: &str,
    trust: &TrustArgs,
    what: &str,
) -> anyhow::Result<(
    cloister_client::Client,
    cloister_client::attestation::TrustedKeyvault,
    String,
)> {
    let mut c = signing_client(conn)?;
    if !c.signs() {
        bail!(
            "{what} is signed by an owner of the function: make an identity with `cloister identity create` (or pass --identity)"
        );
    }
    let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, trust).await?;
    c.bind_platform(kv.audit_key.to_string());
    let function_id = c.show(function, None).await?.function_id;
    Ok((c, kv, function_id))
}

/// The message `m` names: text, hex, or a file's bytes (`-`: stdin).
fn read_message(m: &MessageArgs) -> anyhow::Result<Vec<u8>> {
    let bytes = if let Some(t) = &m.message {
        t.as_bytes().to_vec()
    } else if let Some(h) = &m.message_hex {
        let h = h.trim();
        hex::decode(h.strip_prefix("0x").unwrap_or(h)).context("--message-hex must be hex")?
    } else if let Some(f) = &m.message_file {
        if f.as_os_str() == "-" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("reading stdin")?;
            b
        } else {
            std::fs::read(f).with_context(|| format!("reading {}", f.display()))?
        }
    } else {
        bail!("give the message with --message, --message-hex or --message-file");
    };
    let max = cloister_types::key_limits::MAX_SIGN_MESSAGE_BYTES as usize;
    if bytes.len() > max {
        bail!(
            "the message has {} bytes; keyvault signs at most {max}",
            bytes.len()
        );
    }
    Ok(bytes)
}

/// An owner's key use through keyvault; keyvault's signature over the result (bound to this
/// request) is checked against the attested bundle before it is shown.
#[allow(clippy::too_many_arguments)]
async fn use_key(
    conn: &Conn,
    function: &str,
    name: &str,
    version: Option<u64>,
    hash: &str,
    message: &[u8],
    op: KeyUseOp,
    trust: &TrustArgs,
) -> anyhow::Result<KeyUseResult> {
    use sha2::Digest as _;
    cloister_types::KeyName::parse(name)?;
    if cloister_types::SignHash::parse(hash).is_none() {
        bail!("unknown hash {hash:?}: use sha256, keccak256 or prehashed");
    }
    let (mut c, kv, function_id) =
        owner_session(conn, function, trust, "using a key through the API").await?;
    // The gateway relays the message sealed to the attested keyvault, for this key only.
    let sealed = kv.hpke.seal(
        &cloister_types::binding::key_use_info(&function_id, name),
        b"",
        message,
    )?;
    let (r, request_sha256) = c
        .use_key(
            &KeyUse {
                function_id,
                function: function.to_owned(),
                name: name.to_owned(),
                version,
                hash: hash.to_owned(),
                message_sha256: hex::encode(sha2::Sha256::digest(message)),
                op,
            },
            cloister_client::KeyUseMessage::Sealed(&sealed),
        )
        .await?;
    cloister_client::keys::verify_use(&r, &kv.audit_key, &request_sha256)?;
    Ok(r)
}

fn show(k: &KeyInfo, json: bool, what: &str) {
    if json {
        output::json(k);
    } else {
        println!(
            "{what} key {} ({}, version {})",
            k.name, k.algorithm, k.version
        );
        if let Some(pk) = &k.public_key {
            println!("public key: {pk}");
        }
    }
}
