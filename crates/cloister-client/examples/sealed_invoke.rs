//! Invoke a function sealed end to end, and check its receipt (docs/SEALED.md).
//!
//! ```text
//! CLOISTER_URL=http://127.0.0.1:8080 CLOISTER_TOKEN=... \
//! CLOISTER_SIM_ROOT=<fingerprint printed by serve --dev> \
//! CLOISTER_KEYVAULT_MEASUREMENT=<cloister attest measure --role keyvault> \
//!   cargo run -p cloister-client --example sealed_invoke -- add '{"a":1,"b":2}'
//! ```

use cloister_client::Client;
use cloister_client::attestation::verify_bundle;
use cloister_client::receipt::ReceiptTrust;
use cloister_client::sealed::{pick_key, seal_call};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args
        .next()
        .ok_or("usage: sealed_invoke FUNCTION [PARAMS_JSON]")?;
    let params = args.next().unwrap_or_else(|| "null".into());
    let mut client = Client::new(&env("CLOISTER_URL")?, Some(env("CLOISTER_TOKEN")?))?;
    let mut measurement = [0u8; 48];
    hex::decode_to_slice(env("CLOISTER_KEYVAULT_MEASUREMENT")?, &mut measurement)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();

    // 1. Verify keyvault's bundle before trusting any key in it.
    let bundle = client.attestation().await?;
    let kv = verify_bundle(
        &bundle,
        &env("CLOISTER_SIM_ROOT")?,
        &measurement,
        300,
        i64::try_from(now)?,
    )?;
    // 2. Seal for the version's owner-signed manifest, its signer checked against the
    //    registry keyvault's evidence binds (the executor runs it only by that manifest).
    let verified = client.verified_target(&kv, &name, None).await?;
    eprintln!(
        "{name} v{} runs {} (manifest signed by {} {})",
        verified.target.version, verified.target.code_hash, verified.signer, verified.signer_label
    );
    let target = verified.target;
    let key = pick_key(&kv.fleet_keys, now).ok_or("no fleet key valid now")?;
    let call = seal_call(key, &target, &params, now)?.ask_receipt(ReceiptTrust::new(
        kv.root_fingerprint.clone(),
        kv.executor_measurements.clone(),
    ))?;
    // 3. Invoke: the answer is opened and the receipt verified against this call.
    let answer = client.invoke_sealed(&name, &call).await?;
    println!("{}", answer.result.get());
    if let Some((_, receipt)) = &answer.receipt {
        eprintln!(
            "receipt: {} v{} code {} signed by executor {} ({})",
            receipt.body.function_id,
            receipt.body.version,
            receipt.body.code_hash,
            receipt.executor_measurement,
            receipt.tee_label
        );
    }
    Ok(())
}
