//! `cloister receipt verify`: checks a saved receipt offline.

use std::process::ExitCode;

use anyhow::Context;
use cloister_client::receipt::ReceiptFile;

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
            let url = crate::credentials::normalize_url(&saved.url);
            let (settings, _) = crate::secret_cmd::effective_trust(&url, &trust, None)?;
            let (kv, v) = saved
                .verify(&settings)
                .map_err(|e| invalid(e.to_string()))?;
            let b = &v.body;
            if json {
                output::json(&serde_json::json!({
                    "valid": true,
                    "url": saved.url,
                    "rootFingerprint": kv.root_fingerprint,
                    "keyvaultInstanceKey": kv.audit_key.to_string(),
                    "body": b,
                    "executorMeasurement": v.executor_measurement,
                    "tee": v.tee_label,
                    "keyvaultMeasurement": kv.measurement,
                }));
            } else {
                println!("valid receipt from {}", saved.url);
                println!(
                    "  platform     root {}, keyvault instance {}",
                    kv.root_fingerprint, kv.audit_key
                );
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
