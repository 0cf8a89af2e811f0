//! Checking keyvault's signed audit verdict and remembering the last checkpoint seen, so that
//! neither a relayed "ok" nor a chain cut below what this client saw can pass.

use cloister_crypto::VerifyingKey;
use cloister_types::binding::audit_verdict_message;
use cloister_types::wire::AuditVerdict;

/// Why a verdict is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerdictError {
    /// Not for the nonce this client sent (replayed).
    #[error("the verdict is for another nonce (replayed)")]
    WrongNonce,
    /// The signature is not keyvault's (forged by whoever relayed it).
    #[error("the verdict is not signed by the attested keyvault (forged or altered in transit)")]
    BadSignature,
    /// The report is not JSON.
    #[error("malformed verdict: {0}")]
    Malformed(String),
}

/// Verifies `v` against keyvault's attested audit key and the nonce this client sent; returns
/// the report.
pub fn verify_verdict(
    key: &VerifyingKey,
    nonce: &[u8],
    v: &AuditVerdict,
) -> Result<serde_json::Value, VerdictError> {
    if !v.nonce.eq_ignore_ascii_case(&hex::encode(nonce)) {
        return Err(VerdictError::WrongNonce);
    }
    let sig = hex::decode(&v.signature).map_err(|_| VerdictError::BadSignature)?;
    key.verify(&audit_verdict_message(nonce, &v.report_json), &sig)
        .map_err(|_| VerdictError::BadSignature)?;
    serde_json::from_str(&v.report_json).map_err(|e| VerdictError::Malformed(e.to_string()))
}

/// A checkpoint this client verified before.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeenCheckpoint {
    /// Sequence number.
    pub seq: u64,
    /// Entry hash (hex).
    pub hash: String,
    /// keyvault's anti-rollback epoch when it was seen (0 before epochs existed).
    #[serde(default)]
    pub epoch: u64,
}

/// Checks the chain (entry hashes by sequence number) still holds a checkpoint this client
/// saw: a chain that is now shorter or differs there was cut or rewritten.
pub fn check_against_seen(
    seen: &SeenCheckpoint,
    entry_hash_at: impl Fn(u64) -> Option<String>,
) -> Result<(), String> {
    match entry_hash_at(seen.seq) {
        None => Err(format!(
            "the chain is shorter than the checkpoint at {} this client verified before (truncated)",
            seen.seq
        )),
        Some(h) if h != seen.hash => Err(format!(
            "entry {} differs from the checkpoint this client verified before (rewritten)",
            seen.seq
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_crypto::SigningKey;

    #[test]
    fn a_forged_or_replayed_ok_is_refused() {
        let kv = SigningKey::generate().unwrap();
        let nonce = [7u8; 32];
        let report = r#"{"ok":false,"first_bad_seq":4}"#;
        let good = AuditVerdict {
            report_json: report.into(),
            signature: hex::encode(kv.sign(&audit_verdict_message(&nonce, report))),
            nonce: hex::encode(nonce),
        };
        assert_eq!(
            verify_verdict(&kv.verifying_key(), &nonce, &good).unwrap()["ok"],
            false
        );
        // A relay rewrites the report to "ok".
        let forged = AuditVerdict {
            report_json: r#"{"ok":true}"#.into(),
            ..good.clone()
        };
        assert_eq!(
            verify_verdict(&kv.verifying_key(), &nonce, &forged),
            Err(VerdictError::BadSignature)
        );
        // An unsigned "ok" as the old gateway relayed it.
        let unsigned = AuditVerdict {
            report_json: r#"{"ok":true}"#.into(),
            signature: String::new(),
            nonce: hex::encode(nonce),
        };
        assert_eq!(
            verify_verdict(&kv.verifying_key(), &nonce, &unsigned),
            Err(VerdictError::BadSignature)
        );
        // A genuine verdict for an older nonce.
        assert_eq!(
            verify_verdict(&kv.verifying_key(), &[8u8; 32], &good),
            Err(VerdictError::WrongNonce)
        );
        // Signed by another key (another keyvault).
        let other = SigningKey::generate().unwrap();
        assert_eq!(
            verify_verdict(&other.verifying_key(), &nonce, &good),
            Err(VerdictError::BadSignature)
        );
    }

    #[test]
    fn a_chain_shorter_or_different_than_seen_is_reported() {
        let seen = SeenCheckpoint {
            seq: 5,
            hash: "aa".into(),
            epoch: 1,
        };
        assert!(check_against_seen(&seen, |s| (s <= 5).then(|| "aa".into())).is_ok());
        assert!(check_against_seen(&seen, |s| (s <= 4).then(|| "aa".into())).is_err());
        assert!(check_against_seen(&seen, |_| Some("bb".into())).is_err());
    }
}
