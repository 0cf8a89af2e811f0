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
        KeyCommand::List { function } => {
            let list = client(&conn)?.keys(&function).await?;
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
        KeyCommand::Public { name, function } => {
            let list = client(&conn)?.keys(&function).await?;
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
    crate::secret_cmd::bind_verified_platform(&mut c, &conn.url, trust).await?;
    let function_id = c.show(function, None).await?.function_id;
    Ok(c.write_key(&KeyWrite {
        function_id,
        name: name.to_owned(),
        op,
    })
    .await?)
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
