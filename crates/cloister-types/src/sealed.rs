//! Sealed invocations (docs/SEALED.md): the wire format, defined once for the client SDKs,
//! the gateway (which routes it without being able to read it) and the executor (which opens
//! it inside the TEE).
//!
//! The client seals the parameters' JSON text with HPKE (RFC 9180, base mode, the fleet
//! key's suite) to a fleet key from keyvault's verified bundle. The HPKE `info` is
//! [`SealedInput::info`]: every visible field of the request, so none can be changed in
//! transit. The executor answers under a key both ends export from the same HPKE context
//! ([`RESPONSE_EXPORT_CONTEXT`]), with AES-256-GCM bound by [`response_aad`], so an answer
//! cannot be read by the gateway, moved to another request or relabelled.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Domain that starts every sealed invocation's HPKE `info`.
pub const INFO_DOMAIN: &str = "cloister/sealed-invoke/v1";
/// The HPKE exporter context of the response key.
pub const RESPONSE_EXPORT_CONTEXT: &[u8] = b"cloister/sealed-invoke/response-key/v1";
/// Label that starts a sealed response's associated data.
pub const RESPONSE_AAD_LABEL: &str = "cloister/sealed-invoke/response/v1";
/// Suite id on the wire: HPKE KEM 0x0020, KDF 0x0001, AEAD 0x0002 (RFC 9180 §7).
pub const SUITE_ID: &str = "hpke-0020-0001-0002";
/// How far a sealed request's timestamp may be from the executor's clock, either way. A
/// request id is remembered while its timestamp is inside the window, so a replay is refused
/// inside it by its id and outside it by its timestamp.
pub const WINDOW_SECS: u64 = 120;
/// Bytes of a request id.
pub const REQUEST_ID_LEN: usize = 16;
/// Bytes of a fleet key id.
pub const KEY_ID_LEN: usize = 8;
/// Outcome label of a call that returned a result.
pub const OUTCOME_OK: &str = "ok";

/// A sealed request: visible fields, all bound by the HPKE `info`, and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedInput {
    /// [`SUITE_ID`].
    pub suite: String,
    /// Fleet key id (16 lowercase hex digits) the request is sealed to.
    pub key_id: String,
    /// Function id the caller expects to run.
    pub function_id: String,
    /// Version the caller expects to run.
    pub version: u32,
    /// `sha256:<hex>` of the code the caller expects to run.
    pub code_hash: String,
    /// Digest (64 lowercase hex digits: SHA-256 of the signed bytes) of the owner-signed
    /// manifest the caller checked: the executor runs the request only by that manifest.
    pub manifest_digest: String,
    /// Random request id (32 lowercase hex digits), refused if seen again.
    pub request_id: String,
    /// When the request was sealed (Unix seconds).
    pub timestamp: u64,
    /// Standard base64 of the HPKE encapsulated key (32 bytes) followed by the ciphertext.
    pub ciphertext: String,
}

/// Why a sealed header is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The suite is not [`SUITE_ID`].
    #[error("suite {0:?} is not supported (only {SUITE_ID})")]
    Suite(String),
    /// A hex field has the wrong length or characters.
    #[error("{field} must be {len} lowercase hex digits")]
    Hex {
        /// Field name.
        field: &'static str,
        /// Expected number of digits.
        len: usize,
    },
    /// The code hash is not `sha256:<64 hex>`.
    #[error("codeHash must be sha256:<64 lowercase hex digits>")]
    CodeHash,
    /// Version 0.
    #[error("version numbers start at 1")]
    Version,
    /// Empty function id.
    #[error("functionId is empty")]
    FunctionId,
}

fn lower_hex(s: &str, bytes: usize) -> bool {
    s.len() == bytes * 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Appends `bytes` with a 4-byte big-endian length (the layout of `cloister_crypto::Aad`).
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl SealedInput {
    /// Checks the shape of every field (not what they claim: only the executor can).
    pub fn check(&self) -> Result<(), HeaderError> {
        if self.suite != SUITE_ID {
            return Err(HeaderError::Suite(self.suite.clone()));
        }
        if !lower_hex(&self.key_id, KEY_ID_LEN) {
            return Err(HeaderError::Hex {
                field: "keyId",
                len: KEY_ID_LEN * 2,
            });
        }
        if !lower_hex(&self.request_id, REQUEST_ID_LEN) {
            return Err(HeaderError::Hex {
                field: "requestId",
                len: REQUEST_ID_LEN * 2,
            });
        }
        if !self
            .code_hash
            .strip_prefix("sha256:")
            .is_some_and(|h| lower_hex(h, 32))
        {
            return Err(HeaderError::CodeHash);
        }
        if !lower_hex(&self.manifest_digest, 32) {
            return Err(HeaderError::Hex {
                field: "manifestDigest",
                len: 64,
            });
        }
        if self.version == 0 {
            return Err(HeaderError::Version);
        }
        if self.function_id.is_empty() {
            return Err(HeaderError::FunctionId);
        }
        Ok(())
    }

    /// The HPKE `info`: [`INFO_DOMAIN`], suite, key id, function id, version (8 bytes
    /// big-endian), code hash, manifest digest, request id and timestamp (8 bytes
    /// big-endian), each as a 4-byte big-endian length followed by its bytes (strings as
    /// UTF-8).
    pub fn info(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(256);
        field(&mut v, INFO_DOMAIN.as_bytes());
        field(&mut v, self.suite.as_bytes());
        field(&mut v, self.key_id.as_bytes());
        field(&mut v, self.function_id.as_bytes());
        field(&mut v, &u64::from(self.version).to_be_bytes());
        field(&mut v, self.code_hash.as_bytes());
        field(&mut v, self.manifest_digest.as_bytes());
        field(&mut v, self.request_id.as_bytes());
        field(&mut v, &self.timestamp.to_be_bytes());
        v
    }
}

/// Domain that starts the HPKE `info` of confidential code sealed by its deployer.
pub const CODE_INFO_DOMAIN: &str = "cloister/confidential-code/v1";
/// Label of the associated data of confidential code keyvault stores under a function's code
/// key.
pub const STORED_CODE_LABEL: &str = "cloister/confidential-code/stored/v1";
/// Prefix of the stored form of confidential code (then standard base64 of the ciphertext):
/// what the database holds in place of the source.
pub const STORED_CODE_PREFIX: &str = "cloister-confidential-code:v1:";

/// Code sealed by its deployer to a fleet key (`fn deploy --confidential`): only keyvault
/// and attested executors open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedCode {
    /// [`SUITE_ID`].
    pub suite: String,
    /// Fleet key id (hex) it is sealed to.
    pub key_id: String,
    /// Standard base64 of `enc || ciphertext`.
    pub ciphertext: String,
}

/// The HPKE `info` of confidential code: [`CODE_INFO_DOMAIN`], suite, key id and the digest
/// (hex SHA-256 of the signed bytes) of the owner-signed manifest it is deployed with,
/// length-prefixed like [`SealedInput::info`]. The code opens only for that manifest (which
/// names the function, its code hash, entrypoint and signer), so a gateway cannot register it
/// under anyone else's manifest.
pub fn code_info(suite: &str, key_id: &str, manifest_digest: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(160);
    field(&mut v, CODE_INFO_DOMAIN.as_bytes());
    field(&mut v, suite.as_bytes());
    field(&mut v, key_id.as_bytes());
    field(&mut v, manifest_digest.as_bytes());
    v
}

/// The associated data of stored confidential code: [`STORED_CODE_LABEL`], function id,
/// version (8 bytes big-endian) and code hash.
pub fn stored_code_aad(function_id: &str, version: u32, code_hash: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    field(&mut v, STORED_CODE_LABEL.as_bytes());
    field(&mut v, function_id.as_bytes());
    field(&mut v, &u64::from(version).to_be_bytes());
    field(&mut v, code_hash.as_bytes());
    v
}

/// The associated data of a sealed response: [`RESPONSE_AAD_LABEL`], the request id, the
/// execution id and the visible outcome ([`OUTCOME_OK`] or the error code), each
/// length-prefixed like [`SealedInput::info`]. A response moved to another request, or
/// shown under another status, does not open.
pub fn response_aad(request_id: &str, execution_id: &str, outcome: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    field(&mut v, RESPONSE_AAD_LABEL.as_bytes());
    field(&mut v, request_id.as_bytes());
    field(&mut v, execution_id.as_bytes());
    field(&mut v, outcome.as_bytes());
    v
}

/// What a sealed response holds once opened (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedOutcome {
    /// [`OUTCOME_OK`] or the error code: must equal the visible one.
    pub outcome: String,
    /// The function's result, when it returned one (`null` included).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub result: Option<Box<RawValue>>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SealedFailure>,
    /// Log lines the function wrote.
    #[serde(default)]
    pub logs: Vec<String>,
}

/// A field that is present is `Some`, even when it is JSON `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Whether a failure with `code` is the function's own (its details may quote the input, so
/// they travel sealed) rather than a refusal before it ran (visible, never input-derived).
pub fn is_function_failure(code: crate::ErrorCode) -> bool {
    use crate::ErrorCode::*;
    matches!(
        code,
        FunctionError | FunctionTimeout | FunctionMemoryLimit | FunctionInvalidOutput
    )
}

/// A failure of the function itself, readable only by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedFailure {
    /// Message (may quote the input: sealed for that reason).
    pub message: String,
    /// JavaScript stack, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// The stable code the function's uncaught error carried (a refused host call's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `POST /v1/functions/{name}/invoke` answer to a sealed request that ran to a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedInvokeResponse {
    /// The request id it answers.
    pub request_id: String,
    /// Unique id of this execution.
    pub execution_id: String,
    /// Version that ran.
    pub version: u32,
    /// `sha256:<hex>` of the code that ran (as the gateway routed it).
    pub code_hash: String,
    /// Wall time in the executor, milliseconds.
    pub duration_ms: f64,
    /// [`OUTCOME_OK`].
    pub outcome: String,
    /// Standard base64 of the sealed [`SealedOutcome`] (`cloister_crypto::aead` layout).
    pub sealed: String,
    /// The executor's signed receipt, when the request asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::receipt::Receipt>,
}

/// `details` of the error body when a sealed request's function failed (HTTP 422).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedFailureDetails {
    /// The request id it answers.
    pub request_id: String,
    /// Unique id of this execution.
    pub execution_id: String,
    /// Version that ran.
    pub version: u32,
    /// Standard base64 of the sealed [`SealedOutcome`] (message, stack, logs).
    pub sealed: String,
    /// The executor's signed receipt, when the request asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<crate::receipt::Receipt>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SealedInput {
        SealedInput {
            suite: SUITE_ID.into(),
            key_id: "00112233aabbccdd".into(),
            function_id: "f-1".into(),
            version: 3,
            code_hash: format!("sha256:{}", "ab".repeat(32)),
            manifest_digest: "cd".repeat(32),
            request_id: "0f".repeat(16),
            timestamp: 1_800_000_000,
            ciphertext: "AAAA".into(),
        }
    }

    #[test]
    fn every_visible_field_changes_the_info() {
        let base = header();
        assert!(base.check().is_ok());
        let changed = [
            SealedInput {
                key_id: "00112233aabbccde".into(),
                ..base.clone()
            },
            SealedInput {
                function_id: "f-2".into(),
                ..base.clone()
            },
            SealedInput {
                version: 4,
                ..base.clone()
            },
            SealedInput {
                code_hash: format!("sha256:{}", "ac".repeat(32)),
                ..base.clone()
            },
            SealedInput {
                request_id: "0e".repeat(16),
                ..base.clone()
            },
            SealedInput {
                manifest_digest: "ce".repeat(32),
                ..base.clone()
            },
            SealedInput {
                timestamp: base.timestamp + 1,
                ..base.clone()
            },
            SealedInput {
                suite: "x".into(),
                ..base.clone()
            },
        ];
        for c in changed {
            assert_ne!(c.info(), base.info(), "{c:?}");
        }
        assert_ne!(
            response_aad("r", "e", OUTCOME_OK),
            response_aad("r", "e", "function_error")
        );
        assert_ne!(response_aad("r", "e1", "ok"), response_aad("r", "e", "1ok"));
    }

    #[test]
    fn malformed_headers_are_named() {
        let bad = [
            (
                SealedInput {
                    suite: "hpke-0020-0001-0001".into(),
                    ..header()
                },
                "suite",
            ),
            (
                SealedInput {
                    key_id: "00112233AABBCCDD".into(),
                    ..header()
                },
                "keyId",
            ),
            (
                SealedInput {
                    request_id: "0f".into(),
                    ..header()
                },
                "requestId",
            ),
            (
                SealedInput {
                    code_hash: "sha256:ab".into(),
                    ..header()
                },
                "codeHash",
            ),
            (
                SealedInput {
                    version: 0,
                    ..header()
                },
                "version",
            ),
        ];
        for (h, what) in bad {
            let e = h.check().expect_err(what).to_string();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn a_null_result_is_a_result() {
        let o: SealedOutcome =
            serde_json::from_str(r#"{"outcome":"ok","result":null,"logs":[]}"#).unwrap();
        assert_eq!(o.result.map(|r| r.get().to_owned()), Some("null".into()));
        let o: SealedOutcome =
            serde_json::from_str(r#"{"outcome":"function_error","error":{"message":"m"}}"#)
                .unwrap();
        assert!(o.result.is_none());
    }

    #[test]
    fn the_wire_form_is_flat_camel_case() {
        let input = header();
        let v = serde_json::to_value(&input).unwrap();
        for k in [
            "suite",
            "keyId",
            "functionId",
            "version",
            "codeHash",
            "manifestDigest",
            "requestId",
            "timestamp",
            "ciphertext",
        ] {
            assert!(v.get(k).is_some(), "{k} in {v}");
        }
        let back: SealedInput = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, input);
        let mut extra = v;
        extra["params"] = serde_json::json!({"a": 1});
        assert!(serde_json::from_value::<SealedInput>(extra).is_err());
    }
}
