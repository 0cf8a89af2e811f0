//! `cloister receipt verify`: checks a saved receipt offline.

use std::process::ExitCode;

use anyhow::Context;
use cloister_client::attestation::bundle_time;
use cloister_client::receipt::{ReceiptFile, ReceiptTrust, verify_receipt};

use crate::cli::ReceiptCommand;
use crate::output::{self, Coded};

fn invalid(message: String) -> anyhow::Error {
    Coded {
        code: "receipt_invalid",
        message,
    }
    .into()
}

/// Runs `receipt ...`.
pub fn run(cmd: ReceiptCommand, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        ReceiptCommand::Verify { file, trust } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let saved: ReceiptFile = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("{} is not a saved receipt: {e}", file.display())))?;
            let (settings, _) = crate::secret_cmd::effective_trust(&saved.url, &trust, None)?;
            // keyvault's bundle, checked as of when it was produced (it says which executor
            // builds keyvault allowed then); then the receipt as of its own time.
            let at = bundle_time(&saved.bundle).map_err(|e| invalid(e.to_string()))?;
            let kv = settings
                .verify(&saved.bundle, at)
                .map_err(|e| invalid(format!("the saved bundle: {e}")))?;
            let root = kv.root_fingerprint.clone();
            let receipt_trust = ReceiptTrust {
                root_fingerprint: root,
                executor_measurements: kv.executor_measurements.clone(),
            };
            let v = verify_receipt(&saved.receipt, &receipt_trust)
                .map_err(|e| invalid(e.to_string()))?;
            let b = &v.body;
            if !b.fleet_key_id.is_empty()
                && !saved
                    .bundle
                    .keyvault
                    .fleet_keys
                    .iter()
                    .any(|k| k.key_id == b.fleet_key_id)
            {
                return Err(invalid(format!(
                    "the receipt names fleet key {}, which the saved bundle does not publish",
                    b.fleet_key_id
                )));
            }
            if json {
                output::json(&serde_json::json!({
                    "valid": true,
                    "body": b,
                    "executorMeasurement": v.executor_measurement,
                    "tee": v.tee_label,
                    "keyvaultMeasurement": kv.measurement,
                }));
            } else {
                println!("valid receipt");
                println!("  function     {} v{}", b.function_id, b.version);
                println!("  code         {}", b.code_hash);
                println!("  manifest     {}", b.manifest_digest);
                println!("  input        sha256 {}", b.input_sha256);
                println!("  output       sha256 {} ({})", b.output_sha256, b.outcome);
                println!("  execution    {} at {}", b.execution_id, b.time);
                if b.fleet_key_id.is_empty() {
                    println!("  call         plain (non-sensitive)");
                } else {
                    println!(
                        "  call         sealed (fleet key {}, request {})",
                        b.fleet_key_id, b.request_id
                    );
                }
                println!(
                    "  signed by    executor {} ({})",
                    v.executor_measurement, v.tee_label
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
