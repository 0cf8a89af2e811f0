//! `cloister key ...`: keys keyvault keeps for a function (docs/CAPABILITIES.md).

use std::process::ExitCode;

use anyhow::{Context, bail};
use cloister_authority::ops::{KeyOp, KeyUse, KeyUseOp, KeyWrite};
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
            trust,
        } => {
            if cloister_crypto::keys::KeyAlgorithm::parse(&algorithm).is_none() {
                bail!(
                    "unknown algorithm {algorithm:?}: use ed25519, ecdsa-p256, ecdsa-secp256k1 or \
                     hmac-sha256"
                );
            }
            let k = write(&conn, &function, &name, KeyOp::Create { algorithm }, &trust).await?;
            show(&k, json, "created");
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
                }
            }
        }
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
    let mut c = signing_client(conn)?;
    if !c.signs() {
        bail!(
            "creating or rotating a key is signed by an owner of the function: make an identity with `cloister identity create` (or pass --identity)"
        );
    }
    let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, trust).await?;
    c.bind_platform(kv.audit_key.to_string());
    // The id is the gateway's word; keyvault refuses the request unless it binds `function`
    // to it, and signs what it made for that function.
    let function_id = c.show(function, None).await?.function_id;
    let k = c
        .write_key(&KeyWrite {
            function_id,
            function: function.to_owned(),
            name: name.to_owned(),
            op,
        })
        .await?;
    cloister_client::keys::verify(&k, &kv.audit_key, function)?;
    Ok(k)
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

/// An owner's key use through keyvault; keyvault's signature over the result is checked
/// (and, for a new signature of an asymmetric key, the signature against the key's
/// keyvault-signed public key) before it is shown.
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
    let mut c = signing_client(conn)?;
    if !c.signs() {
        bail!(
            "using a key through the API is signed by an owner of the function: make an identity with `cloister identity create` (or pass --identity)"
        );
    }
    let kv = crate::secret_cmd::trusted_keyvault(&mut c, &conn.url, trust).await?;
    c.bind_platform(kv.audit_key.to_string());
    let function_id = c.show(function, None).await?.function_id;
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
            message,
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
