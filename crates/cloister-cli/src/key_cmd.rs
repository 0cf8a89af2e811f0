//! `cloister key ...`: keys keyvault keeps for a function (docs/CAPABILITIES.md).

use std::process::ExitCode;

use anyhow::{Context, bail};
use cloister_authority::ops::{KeyOp, KeyWrite};
use cloister_types::wire::KeyInfo;

use crate::cli::{Conn, KeyCommand, TrustArgs};
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
