//! Sealed invocations on the caller's side (docs/SEALED.md): seal the parameters to a fleet
//! key from a verified bundle, bound to the function, version and code the caller expects,
//! then open the answer, which only this call's HPKE context can.

use base64::Engine as _;
use cloister_crypto::{Aad, CryptoError, SecretKey32};
use cloister_types::sealed::{
    OUTCOME_OK, RESPONSE_EXPORT_CONTEXT, SUITE_ID, SealedFailure, SealedInput, SealedOutcome,
    response_aad,
};
use serde_json::value::RawValue;

use crate::attestation::TrustedFleetKey;

/// What the caller expects to run; the executor refuses anything else (`code_hash_mismatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Function id.
    pub function_id: String,
    /// Version.
    pub version: u32,
    /// `sha256:<hex>` of the code.
    pub code_hash: String,
    /// Digest (hex) of the owner-signed manifest checked for this version
    /// ([`crate::manifest::verify_manifest`]).
    pub manifest_digest: String,
}

/// Why a sealed call could not be made or its answer not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealedError {
    /// No fleet key valid now was in the verified bundle.
    #[error(
        "the verified bundle holds no fleet key valid now (check this machine's clock, or \
         fetch the bundle again)"
    )]
    NoFleetKey,
    /// Sealing failed.
    #[error("cannot seal the request: {0}")]
    Seal(CryptoError),
    /// The answer is not for this request, was altered, or is shown under another outcome.
    #[error(
        "the sealed answer does not open for this request (altered, swapped with another \
         call's, or relabelled)"
    )]
    Tampered,
    /// The answer opened but is not in the documented shape.
    #[error("the sealed answer is malformed: {0}")]
    Malformed(String),
    /// The outcome inside differs from the visible one.
    #[error("the answer shows outcome {visible} but the sealed one is {sealed}")]
    OutcomeMismatch {
        /// Visible outcome.
        visible: String,
        /// Sealed outcome.
        sealed: String,
    },
}

/// One sealed call in flight: the request to send and what opens its answer.
pub struct SealedCall {
    /// The request body's `sealed` field.
    pub input: SealedInput,
    response_key: SecretKey32,
    /// The receipt nonce (hex) and what the receipt is checked against, when one is asked.
    pub receipt: Option<(String, crate::receipt::ReceiptTrust)>,
}

impl SealedCall {
    /// Asks for a receipt (with a fresh random nonce), checked against `trust` on arrival.
    pub fn ask_receipt(mut self, trust: crate::receipt::ReceiptTrust) -> Result<Self, SealedError> {
        let nonce = cloister_crypto::random_bytes::<32>().map_err(SealedError::Seal)?;
        self.receipt = Some((hex::encode(nonce), trust));
        Ok(self)
    }

    /// The target the call was sealed for.
    pub fn target(&self) -> Target {
        Target {
            function_id: self.input.function_id.clone(),
            version: self.input.version,
            code_hash: self.input.code_hash.clone(),
            manifest_digest: self.input.manifest_digest.clone(),
        }
    }

    /// Verifies `receipt` (signer, signature) and that it names this call: its input, the
    /// answer `sealed` (base64) under `outcome`, `execution_id`.
    pub fn check_receipt(
        &self,
        receipt: Option<&cloister_types::receipt::Receipt>,
        execution_id: &str,
        outcome: &str,
        sealed: &str,
    ) -> Result<Option<crate::receipt::VerifiedReceipt>, crate::receipt::ReceiptError> {
        use crate::receipt::{CallFacts, ReceiptError, verify_receipt};
        use cloister_types::receipt::sha256_hex;
        let Some((nonce, trust)) = &self.receipt else {
            return Ok(None);
        };
        let r = receipt.ok_or(ReceiptError::Missing)?;
        let v = verify_receipt(r, trust)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let input = b64
            .decode(&self.input.ciphertext)
            .map_err(|_| ReceiptError::Malformed("ciphertext is not base64".into()))?;
        let output = b64
            .decode(sealed)
            .map_err(|_| ReceiptError::Malformed("sealed answer is not base64".into()))?;
        let target = self.target();
        v.check_call(&CallFacts {
            nonce,
            input_sha256: sha256_hex(&input),
            output_sha256: sha256_hex(&output),
            outcome,
            execution_id,
            sealed: Some((&target, &self.input.key_id, &self.input.request_id)),
        })?;
        Ok(Some(v))
    }
}

impl std::fmt::Debug for SealedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedCall")
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

/// An opened answer: the function's result or its failure, and its logs.
#[derive(Debug)]
pub struct Opened {
    /// `Ok(result)` or the function's failure (code, message, stack).
    pub result: Result<Box<RawValue>, (cloister_types::ErrorCode, SealedFailure)>,
    /// Log lines the function wrote.
    pub logs: Vec<String>,
}

/// The newest key in `keys` valid at `now` (Unix seconds).
pub fn pick_key(keys: &[TrustedFleetKey], now: u64) -> Option<&TrustedFleetKey> {
    keys.iter()
        .filter(|k| k.not_before <= now && now < k.not_after)
        .max_by_key(|k| k.epoch)
}

/// Seals `params_json` for `target` to `key` at `now` (Unix seconds), with a fresh random
/// request id.
pub fn seal_call(
    key: &TrustedFleetKey,
    target: &Target,
    params_json: &str,
    now: u64,
) -> Result<SealedCall, SealedError> {
    let request_id = cloister_crypto::random_bytes::<{ cloister_types::sealed::REQUEST_ID_LEN }>()
        .map_err(SealedError::Seal)?;
    let mut input = SealedInput {
        suite: SUITE_ID.to_owned(),
        key_id: hex::encode(key.key_id),
        function_id: target.function_id.clone(),
        version: target.version,
        code_hash: target.code_hash.clone(),
        manifest_digest: target.manifest_digest.clone(),
        request_id: hex::encode(request_id),
        timestamp: now,
        ciphertext: String::new(),
    };
    let (ct, response_key) = key
        .public
        .seal_exporting(
            &input.info(),
            b"",
            params_json.as_bytes(),
            RESPONSE_EXPORT_CONTEXT,
        )
        .map_err(SealedError::Seal)?;
    input.ciphertext = base64::engine::general_purpose::STANDARD.encode(ct);
    Ok(SealedCall {
        input,
        response_key,
        receipt: None,
    })
}

impl SealedCall {
    /// Opens the answer the gateway relayed for `execution_id` under the visible `outcome`
    /// (`ok` or an error code), `sealed` being its base64.
    pub fn open(
        &self,
        execution_id: &str,
        outcome: &str,
        sealed: &str,
    ) -> Result<Opened, SealedError> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| SealedError::Malformed("not base64".into()))?;
        let aad = Aad::from_encoded(response_aad(&self.input.request_id, execution_id, outcome));
        let plain = cloister_crypto::aead::open(&self.response_key, &aad, &blob)
            .map_err(|_| SealedError::Tampered)?;
        let body: SealedOutcome = serde_json::from_slice(plain.expose())
            .map_err(|e| SealedError::Malformed(e.to_string()))?;
        if body.outcome != outcome {
            return Err(SealedError::OutcomeMismatch {
                visible: outcome.to_owned(),
                sealed: body.outcome,
            });
        }
        let result = if outcome == OUTCOME_OK {
            Ok(body
                .result
                .ok_or_else(|| SealedError::Malformed("no result".into()))?)
        } else {
            let code = cloister_types::ErrorCode::parse(outcome)
                .ok_or_else(|| SealedError::Malformed(format!("unknown outcome {outcome:?}")))?;
            Err((
                code,
                body.error
                    .ok_or_else(|| SealedError::Malformed("no error".into()))?,
            ))
        };
        Ok(Opened {
            result,
            logs: body.logs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_crypto::HpkeKeyPair;

    fn key(seed: u8, epoch: u64, not_before: u64, not_after: u64) -> TrustedFleetKey {
        let pair = HpkeKeyPair::derive(&[seed; 32]).unwrap();
        TrustedFleetKey {
            key_id: [seed; 8],
            epoch,
            public: pair.public(),
            not_before,
            not_after,
        }
    }

    #[test]
    fn the_newest_key_valid_now_is_picked() {
        let keys = [key(1, 5, 0, 100), key(2, 6, 90, 200)];
        assert_eq!(pick_key(&keys, 50).map(|k| k.epoch), Some(5));
        assert_eq!(pick_key(&keys, 95).map(|k| k.epoch), Some(6));
        assert!(pick_key(&keys, 200).is_none());
    }

    #[test]
    fn the_request_binds_what_the_caller_expects() {
        let k = key(1, 5, 0, u64::MAX);
        let t = Target {
            function_id: "f".into(),
            version: 2,
            code_hash: format!("sha256:{}", "ab".repeat(32)),
            manifest_digest: "cd".repeat(32),
        };
        let a = seal_call(&k, &t, "{}", 1000).unwrap();
        let b = seal_call(&k, &t, "{}", 1000).unwrap();
        assert!(a.input.check().is_ok());
        assert_ne!(a.input.request_id, b.input.request_id, "fresh ids");
        assert_eq!(a.input.key_id, hex::encode([1u8; 8]));
        assert_eq!(
            (
                a.input.function_id.as_str(),
                a.input.version,
                a.input.timestamp
            ),
            ("f", 2, 1000)
        );
        // The receiver opens it with the info the visible fields give.
        let pair = HpkeKeyPair::derive(&[1; 32]).unwrap();
        let ct = base64::engine::general_purpose::STANDARD
            .decode(&a.input.ciphertext)
            .unwrap();
        let (pt, exported) = pair
            .open_exporting(&a.input.info(), b"", &ct, RESPONSE_EXPORT_CONTEXT)
            .unwrap();
        assert_eq!(pt.expose(), b"{}");
        // An answer sealed by the receiver opens only under this call's id and outcome.
        let body = br#"{"outcome":"ok","result":7,"logs":["l"]}"#;
        let aad = |rid: &str, eid: &str, o: &str| Aad::from_encoded(response_aad(rid, eid, o));
        let blob =
            cloister_crypto::aead::seal(&exported, &aad(&a.input.request_id, "e", "ok"), body)
                .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
        let opened = a.open("e", "ok", &b64).unwrap();
        assert_eq!(opened.result.unwrap().get(), "7");
        assert!(matches!(
            b.open("e", "ok", &b64),
            Err(SealedError::Tampered)
        ));
        assert!(matches!(
            a.open("e2", "ok", &b64),
            Err(SealedError::Tampered)
        ));
        assert!(matches!(
            a.open("e", "function_error", &b64),
            Err(SealedError::Tampered)
        ));
        let mut flipped = blob.clone();
        flipped[20] ^= 1;
        let flipped = base64::engine::general_purpose::STANDARD.encode(&flipped);
        assert!(matches!(
            a.open("e", "ok", &flipped),
            Err(SealedError::Tampered)
        ));
        let truncated = base64::engine::general_purpose::STANDARD.encode(&blob[..blob.len() - 1]);
        assert!(a.open("e", "ok", &truncated).is_err());
    }
}
