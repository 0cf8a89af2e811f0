//! Invocation receipts (docs/SEALED.md): what an executor signs about one invocation, with
//! the evidence that certifies its signing key, so anyone can check offline, years later,
//! which code ran on which input and produced which output.
//!
//! The executor generates an Ed25519 key at start, inside the TEE, and has its TEE produce
//! evidence whose report data is [`key_report_data`] of that key. Each receipt carries that
//! evidence; a verifier checks it chains to the pinned root *at the receipt's time*, names an
//! executor measurement keyvault allowed, binds the key, and that the key signed
//! [`ReceiptBody::signed_message`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Domain of the signed message.
pub const RECEIPT_DOMAIN: &str = "cloister/receipt/v1";
/// Domain of the report data that certifies a receipt key.
pub const KEY_DOMAIN: &str = "cloister/executor-receipt-key/v1";
/// Longest client nonce, in bytes.
pub const MAX_NONCE_LEN: usize = 64;

/// What a receipt states about one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptBody {
    /// Function id that ran.
    pub function_id: String,
    /// Version that ran.
    pub version: u32,
    /// `sha256:<hex>` of the code that ran.
    pub code_hash: String,
    /// Digest (hex SHA-256) of the owner-signed manifest it ran by.
    pub manifest_digest: String,
    /// Hex SHA-256 of the input: the sealed request's ciphertext bytes, or the plain params'
    /// JSON text exactly as sent.
    pub input_sha256: String,
    /// Hex SHA-256 of the output: the sealed answer's bytes; for a plain call the result's
    /// JSON text, or the failure message.
    pub output_sha256: String,
    /// `ok` or the public error code of the function's failure.
    pub outcome: String,
    /// Execution id.
    pub execution_id: String,
    /// When the executor signed (Unix seconds).
    pub time: u64,
    /// The client's nonce (hex).
    pub nonce: String,
    /// Fleet key id a sealed request was opened with (hex; empty for a plain call).
    pub fleet_key_id: String,
    /// Request id of a sealed request (hex; empty for a plain call).
    pub request_id: String,
    /// The signatures keyvault made for this invocation (`context.sign`), in order; absent
    /// when none (receipts without key uses keep their signed bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_uses: Vec<ReceiptKeyUse>,
    /// The invocation's `fetch` requests by the manifest's allowlist entry they matched
    /// (`refused` for those refused before any did), in order of first contact; absent when
    /// none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<ReceiptEgress>,
}

/// Outbound requests of an invocation under one allowlist entry, as its receipt lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptEgress {
    /// The allowlist entry as the signed manifest writes it (`refused`: none matched).
    pub origin: String,
    /// Requests made or refused.
    pub requests: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
}

/// One signature keyvault made for an invocation, as its receipt lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptKeyUse {
    /// The key as the manifest declares it (`NAME` or `FUNCTION/NAME`).
    pub key: String,
    /// The key version that signed.
    pub version: u64,
    /// Its algorithm.
    pub algorithm: String,
    /// The hash the message was signed with (`sha256`, `keccak256`, `prehashed`).
    pub hash: String,
    /// Hex SHA-256 of the message (as keyvault's `key.sign` audit entry names it).
    pub message_sha256: String,
}

/// The executor key that signed, and the evidence that certifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptSigner {
    /// TEE type of the evidence (`sim`, ...).
    pub tee: String,
    /// Ed25519 public key (hex).
    pub public_key: String,
    /// The executor's evidence (standard base64) binding [`key_report_data`] of the key.
    /// Empty (and absent on the wire) when the request's `receiptSigner` named this key: the
    /// caller already holds it, and fills it back in before keeping the receipt.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evidence: String,
}

/// A signed receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    /// What it states.
    pub body: ReceiptBody,
    /// Ed25519 signature (hex) over [`ReceiptBody::signed_message`].
    pub signature: String,
    /// Who signed.
    pub signer: ReceiptSigner,
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl ReceiptBody {
    /// The bytes signed: [`RECEIPT_DOMAIN`] then every field in declaration order, each as a
    /// 4-byte big-endian length and its bytes (strings UTF-8, numbers 8-byte big-endian).
    pub fn signed_message(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(512);
        field(&mut v, RECEIPT_DOMAIN.as_bytes());
        field(&mut v, self.function_id.as_bytes());
        field(&mut v, &u64::from(self.version).to_be_bytes());
        field(&mut v, self.code_hash.as_bytes());
        field(&mut v, self.manifest_digest.as_bytes());
        field(&mut v, self.input_sha256.as_bytes());
        field(&mut v, self.output_sha256.as_bytes());
        field(&mut v, self.outcome.as_bytes());
        field(&mut v, self.execution_id.as_bytes());
        field(&mut v, &self.time.to_be_bytes());
        field(&mut v, self.nonce.as_bytes());
        field(&mut v, self.fleet_key_id.as_bytes());
        field(&mut v, self.request_id.as_bytes());
        // Key uses follow only when there are any: a count, then each use's fields.
        if !self.key_uses.is_empty() {
            field(&mut v, &(self.key_uses.len() as u64).to_be_bytes());
            for u in &self.key_uses {
                field(&mut v, u.key.as_bytes());
                field(&mut v, &u.version.to_be_bytes());
                field(&mut v, u.algorithm.as_bytes());
                field(&mut v, u.hash.as_bytes());
                field(&mut v, u.message_sha256.as_bytes());
            }
        }
        // Outbound requests follow only when there are any: a tag, a count, each origin.
        if !self.egress.is_empty() {
            field(&mut v, b"egress");
            field(&mut v, &(self.egress.len() as u64).to_be_bytes());
            for e in &self.egress {
                field(&mut v, e.origin.as_bytes());
                field(&mut v, &e.requests.to_be_bytes());
                field(&mut v, &e.bytes_sent.to_be_bytes());
                field(&mut v, &e.bytes_received.to_be_bytes());
            }
        }
        v
    }
}

/// Hex SHA-256 of `bytes` (the receipt's digest form).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The report data of the evidence certifying receipt key `public_key`: SHA-512 over
/// [`KEY_DOMAIN`] and the key, each length-prefixed as in [`ReceiptBody::signed_message`].
pub fn key_report_data(public_key: &[u8]) -> [u8; 64] {
    let mut v = Vec::with_capacity(96);
    field(&mut v, KEY_DOMAIN.as_bytes());
    field(&mut v, public_key);
    Sha512::digest(&v).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> ReceiptBody {
        ReceiptBody {
            function_id: "f".into(),
            version: 1,
            code_hash: "sha256:00".into(),
            manifest_digest: "m".into(),
            input_sha256: "i".into(),
            output_sha256: "o".into(),
            outcome: "ok".into(),
            execution_id: "e".into(),
            time: 5,
            nonce: "n".into(),
            fleet_key_id: "k".into(),
            request_id: "r".into(),
            key_uses: Vec::new(),
            egress: Vec::new(),
        }
    }

    /// The TypeScript SDK checks the same vector (sdk/typescript/test/receipt.test.ts): a
    /// change of the signed bytes in one language fails here or there.
    #[test]
    fn the_signed_bytes_match_the_shared_vector() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../sdk/typescript/test/vectors/receipt.json"
        );
        let mut b = body();
        b.key_uses = vec![ReceiptKeyUse {
            key: "k".into(),
            version: 2,
            algorithm: "ed25519".into(),
            hash: "sha256".into(),
            message_sha256: "ab".repeat(32),
        }];
        b.egress = vec![ReceiptEgress {
            origin: "https://api.example.com".into(),
            requests: 3,
            bytes_sent: 420,
            bytes_received: 69_000,
        }];
        let hex = hex::encode(b.signed_message());
        if std::env::var_os("CLOISTER_WRITE_VECTORS").is_some() {
            let v = serde_json::json!({ "body": b, "messageHex": hex });
            std::fs::write(path, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(
            serde_json::from_value::<ReceiptBody>(v["body"].clone()).unwrap(),
            b
        );
        assert_eq!(v["messageHex"], hex);
    }

    #[test]
    fn every_field_is_signed() {
        let b = body();
        let m = b.signed_message();
        let mut changed = Vec::new();
        macro_rules! vary {
            ($f:ident, $v:expr) => {{
                let mut c = b.clone();
                c.$f = $v;
                changed.push(c);
            }};
        }
        vary!(function_id, "g".into());
        vary!(version, 2);
        vary!(code_hash, "sha256:01".into());
        vary!(manifest_digest, "n".into());
        vary!(input_sha256, "j".into());
        vary!(output_sha256, "p".into());
        vary!(outcome, "function_error".into());
        vary!(execution_id, "x".into());
        vary!(time, 6);
        vary!(nonce, "m".into());
        vary!(fleet_key_id, "".into());
        vary!(request_id, "".into());
        let k = ReceiptKeyUse {
            key: "k".into(),
            version: 1,
            algorithm: "ed25519".into(),
            hash: "sha256".into(),
            message_sha256: "aa".into(),
        };
        vary!(key_uses, vec![k.clone()]);
        let with_use = {
            let mut c = b.clone();
            c.key_uses = vec![k.clone()];
            c
        };
        let m1 = with_use.signed_message();
        macro_rules! vary_use {
            ($f:ident, $v:expr) => {{
                let mut c = with_use.clone();
                c.key_uses[0].$f = $v;
                assert_ne!(c.signed_message(), m1, "{c:?}");
            }};
        }
        vary_use!(key, "other/k".into());
        vary_use!(version, 2);
        vary_use!(algorithm, "ecdsa-p256".into());
        vary_use!(hash, "keccak256".into());
        vary_use!(message_sha256, "bb".into());
        let mut two = with_use.clone();
        two.key_uses.push(k);
        assert_ne!(two.signed_message(), m1);
        let e = ReceiptEgress {
            origin: "https://api.example.com".into(),
            requests: 2,
            bytes_sent: 100,
            bytes_received: 2000,
        };
        let with_egress = {
            let mut c = b.clone();
            c.egress = vec![e.clone()];
            c
        };
        let m2 = with_egress.signed_message();
        assert_ne!(m2, m);
        for c in [
            ReceiptEgress {
                origin: "https://api.example.net".into(),
                ..e.clone()
            },
            ReceiptEgress {
                requests: 3,
                ..e.clone()
            },
            ReceiptEgress {
                bytes_sent: 101,
                ..e.clone()
            },
            ReceiptEgress {
                bytes_received: 2001,
                ..e.clone()
            },
        ] {
            let mut d = with_egress.clone();
            d.egress = vec![c];
            assert_ne!(d.signed_message(), m2);
        }
        for c in changed {
            assert_ne!(c.signed_message(), m, "{c:?}");
        }
        assert_ne!(key_report_data(b"a"), key_report_data(b"b"));
    }
}
