//! Sealed invocations inside the executor (docs/SEALED.md): open the request with the fleet
//! key it names, refuse replays and stale requests, and seal the answer under the key
//! exported from the request's HPKE context. The gateway sees neither parameters nor results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloister_crypto::{Aad, HpkeKeyPair, SecretKey32};
use cloister_rpc::executor as pb;
use cloister_types::ErrorCode;
use cloister_types::sealed::{
    KEY_ID_LEN, OUTCOME_OK, REQUEST_ID_LEN, RESPONSE_EXPORT_CONTEXT, SealedFailure, SealedInput,
    SealedOutcome, WINDOW_SECS, response_aad,
};
use serde_json::value::RawValue;

use crate::fleet::FleetKeyring;
use crate::pool::RunFailure;

/// Most request ids remembered at once; past it, sealed requests are refused (`unavailable`)
/// rather than let a replay through.
const MAX_REMEMBERED: usize = 1 << 20;
/// How long a request under an unknown key id waits for keyvault's current keys: longer
/// than the gap between early refreshes, so every such request gets to ask for one.
const KEY_WAIT: Duration = Duration::from_secs(3);

/// What the caller expects to run, authenticated by the HPKE `info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Function id.
    pub function_id: String,
    /// Version.
    pub version: u32,
    /// `sha256:<hex>` of the code.
    pub code_hash: String,
    /// Digest of the owner-signed manifest the caller checked.
    pub manifest_digest: String,
}

impl Expected {
    /// Why `(function_id, version, code_hash)` is not what the caller sealed for, if it is not
    /// (what the gateway asks for, checked before any code is fetched).
    pub fn mismatch(&self, function_id: &str, version: u32, code_hash: &str) -> Option<RunFailure> {
        if self.function_id == function_id && self.version == version && self.code_hash == code_hash
        {
            return None;
        }
        Some(RunFailure {
            code: ErrorCode::CodeHashMismatch,
            message: format!(
                "the caller sealed this request for function {} version {} with code {}; this \
                 executor loaded function {function_id} version {version} with code {code_hash}",
                self.function_id, self.version, self.code_hash
            ),
            stack: None,
            cause: None,
        })
    }
}

impl Expected {
    /// Why the manifest keyvault granted is not the one the caller sealed for, if it is not
    /// (checked after the grant, before the function runs).
    pub fn manifest_mismatch(&self, m: &crate::secrets::RunManifest) -> Option<RunFailure> {
        if let Some(f) = self.mismatch(&m.function_id, m.version, &m.code_hash) {
            return Some(f);
        }
        if self.manifest_digest.eq_ignore_ascii_case(&m.digest) {
            return None;
        }
        Some(RunFailure {
            code: ErrorCode::CodeHashMismatch,
            message: format!(
                "the caller sealed this request for manifest {}; keyvault granted manifest {} \
                 for this version",
                self.manifest_digest, m.digest
            ),
            stack: None,
            cause: None,
        })
    }
}

/// A sealed request opened inside the executor.
pub struct Opened {
    /// The parameters (JSON).
    pub params: Box<RawValue>,
    /// What the caller expects to run.
    pub expected: Expected,
    /// The request id (hex).
    pub request_id: String,
    response_key: SecretKey32,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("request_id", &self.request_id)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

/// A sealed request refused before anything ran (its code and message are visible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Public error code.
    pub code: ErrorCode,
    /// Message (never derived from the sealed content).
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Opens sealed requests and remembers their ids for the replay window.
pub struct SealedDoor {
    keyring: Arc<FleetKeyring>,
    seen: Mutex<HashMap<[u8; REQUEST_ID_LEN], u64>>,
    started_at: u64,
    /// The latest time seen: the door's clock never goes back, so setting the host clock
    /// back does not reopen the window for ids already forgotten.
    latest: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SealedDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedDoor")
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl SealedDoor {
    /// A door opening requests with `keyring`'s keys. Requests sealed before `started_at`
    /// (Unix seconds: this process's start) are refused: whether they ran before a restart
    /// cannot be known.
    pub fn new(keyring: Arc<FleetKeyring>, started_at: u64) -> Self {
        Self {
            keyring,
            seen: Mutex::new(HashMap::new()),
            started_at,
            latest: std::sync::atomic::AtomicU64::new(started_at),
        }
    }

    /// Opens `s` at `now` (Unix seconds), or says why not. Each request id opens once.
    pub async fn open(
        &self,
        s: &pb::SealedInput,
        now: u64,
        max_input: usize,
    ) -> Result<Opened, Refusal> {
        let now = self
            .latest
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed)
            .max(now);
        let header = SealedInput {
            suite: s.suite.clone(),
            key_id: s.key_id.clone(),
            function_id: s.function_id.clone(),
            version: s.version,
            code_hash: s.code_hash.clone(),
            manifest_digest: s.manifest_digest.clone(),
            request_id: s.request_id.clone(),
            timestamp: s.timestamp,
            ciphertext: String::new(),
        };
        header
            .check()
            .map_err(|e| refuse(ErrorCode::SealedInputInvalid, e.to_string()))?;
        let (Some(key_id), Some(request_id)) = (
            unhex::<KEY_ID_LEN>(&s.key_id),
            unhex::<REQUEST_ID_LEN>(&s.request_id),
        ) else {
            return Err(refuse(ErrorCode::SealedInputInvalid, "malformed ids"));
        };
        let key = self.keyring.get(&key_id, KEY_WAIT).await.ok_or_else(|| {
            refuse(
                ErrorCode::FleetKeyUnknown,
                format!(
                    "fleet key {} is not one keyvault releases now (another platform's, or \
                     replaced): fetch the attestation bundle again",
                    s.key_id
                ),
            )
        })?;
        if now >= key.not_after || now < key.not_before {
            return Err(refuse(
                ErrorCode::FleetKeyExpired,
                format!(
                    "fleet key {} is valid from {} to {} (now {now}): fetch the attestation \
                     bundle again",
                    s.key_id, key.not_before, key.not_after
                ),
            ));
        }
        if s.timestamp.saturating_add(WINDOW_SECS) < now
            || s.timestamp > now.saturating_add(WINDOW_SECS)
        {
            return Err(refuse(
                ErrorCode::ReplayedRequest,
                format!(
                    "the request was sealed at {}, outside the {WINDOW_SECS} s window around \
                     the executor's clock ({now}): seal it again (and check this machine's clock)",
                    s.timestamp
                ),
            ));
        }
        if s.timestamp < self.started_at {
            return Err(refuse(
                ErrorCode::ReplayedRequest,
                "the request was sealed before this executor started, so whether it already \
                 ran cannot be known: seal it again",
            ));
        }
        let (plaintext, response_key) = open_with(&key.pair, &header.info(), &s.ciphertext)?;
        self.remember(request_id, s.timestamp, now)?;
        let params = std::str::from_utf8(plaintext.expose())
            .ok()
            .filter(|p| p.len() <= max_input)
            .and_then(|p| RawValue::from_string(p.to_owned()).ok());
        let Some(params) = params else {
            self.forget(&s.request_id);
            return Err(refuse(
                ErrorCode::InvalidRequest,
                format!("the sealed parameters are not JSON of at most {max_input} bytes"),
            ));
        };
        Ok(Opened {
            params,
            expected: Expected {
                function_id: s.function_id.clone(),
                version: s.version,
                code_hash: s.code_hash.clone(),
                manifest_digest: s.manifest_digest.clone(),
            },
            request_id: s.request_id.clone(),
            response_key,
        })
    }

    /// Opens confidential code its deployer sealed to a fleet key (for the deploy-time check):
    /// the HPKE info binds the manifest's digest, and the code must hash to `code_hash`.
    pub async fn open_code(&self, c: &pb::ConfidentialCode, now: u64) -> Result<String, Refusal> {
        let invalid =
            |m: &str| refuse(ErrorCode::InvalidRequest, format!("confidential code: {m}"));
        if c.suite != cloister_types::sealed::SUITE_ID {
            return Err(invalid("unsupported suite"));
        }
        let key_id = unhex::<KEY_ID_LEN>(&c.key_id).ok_or_else(|| invalid("malformed key id"))?;
        let key = self.keyring.get(&key_id, KEY_WAIT).await.ok_or_else(|| {
            refuse(
                ErrorCode::FleetKeyUnknown,
                "the code is sealed to a fleet key no executor holds: fetch the bundle again",
            )
        })?;
        if now >= key.not_after || now < key.not_before {
            return Err(refuse(
                ErrorCode::FleetKeyExpired,
                "the code is sealed to an expired fleet key",
            ));
        }
        let info = cloister_types::sealed::code_info(&c.suite, &c.key_id, &c.manifest_digest);
        let plain = key
            .pair
            .open(&info, b"", &c.ciphertext)
            .map_err(|_| invalid("does not open (altered, or sealed for another manifest)"))?;
        let text = String::from_utf8(plain.expose().to_vec()).map_err(|_| invalid("not UTF-8"))?;
        if cloister_types::code_hash(&text) != c.code_hash {
            return Err(invalid(
                "the code does not hash to the manifest's code hash",
            ));
        }
        Ok(text)
    }

    fn remember(&self, id: [u8; REQUEST_ID_LEN], timestamp: u64, now: u64) -> Result<(), Refusal> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains_key(&id) {
            return Err(refuse(
                ErrorCode::ReplayedRequest,
                "this request id was already used",
            ));
        }
        if seen.len() >= MAX_REMEMBERED {
            // Ids whose timestamp left the window cannot be replayed any more.
            seen.retain(|_, t| t.saturating_add(WINDOW_SECS) >= now);
            if seen.len() >= MAX_REMEMBERED {
                return Err(refuse(
                    ErrorCode::Unavailable,
                    "too many sealed requests in the replay window; retry shortly",
                ));
            }
        }
        seen.insert(id, timestamp);
        Ok(())
    }

    /// Forgets a request id whose request did not run (the gateway resends it with code).
    pub fn forget(&self, request_id: &str) {
        if let Some(id) = unhex::<REQUEST_ID_LEN>(request_id) {
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }
}

fn open_with(
    pair: &HpkeKeyPair,
    info: &[u8],
    ciphertext: &[u8],
) -> Result<(cloister_crypto::SecretBytes, SecretKey32), Refusal> {
    pair.open_exporting(info, b"", ciphertext, RESPONSE_EXPORT_CONTEXT)
        .map_err(|_| {
            refuse(
                ErrorCode::SealedInputInvalid,
                "the sealed request does not open: altered, or sealed for another function, \
                 version, code, request id or time than it names",
            )
        })
}

impl Opened {
    /// Seals the result (or the function's failure) and logs for the caller.
    pub fn seal(
        &self,
        execution_id: &str,
        result: Result<Box<RawValue>, RunFailure>,
        logs: Vec<String>,
    ) -> Result<pb::SealedOutcome, cloister_crypto::CryptoError> {
        let (outcome, result, error) = match result {
            Ok(r) => (OUTCOME_OK.to_owned(), Some(r), None),
            Err(f) => (
                f.code.as_str().to_owned(),
                None,
                Some(SealedFailure {
                    message: f.message,
                    stack: f.stack,
                    cause: f.cause.map(|c| c.as_str().to_owned()),
                }),
            ),
        };
        let body = SealedOutcome {
            outcome: outcome.clone(),
            result,
            error,
            logs,
        };
        let json = zeroize::Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());
        let aad = Aad::from_encoded(response_aad(&self.request_id, execution_id, &outcome));
        let sealed = cloister_crypto::aead::seal(&self.response_key, &aad, &json)?;
        Ok(pb::SealedOutcome { outcome, sealed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetKeyPair;
    use sha2::Digest;

    const NOW: u64 = 1_800_000_000;

    fn keyring(seed: u8) -> (Arc<FleetKeyring>, HpkeKeyPair, String) {
        let pair = HpkeKeyPair::derive(&[seed; 32]).unwrap();
        let id = sha2::Sha256::digest(pair.public().0)[..8].to_vec();
        let (nb, na) = cloister_types::fleet::validity(NOW / cloister_types::fleet::ROTATION_SECS);
        let wire = cloister_rpc::keyvault::FleetSecret {
            key_id: id.clone(),
            epoch: NOW / cloister_types::fleet::ROTATION_SECS,
            public_key: pair.public().0.to_vec(),
            private_key: pair.private().expose().to_vec(),
            not_before: nb,
            not_after: na,
        };
        let ring = Arc::new(FleetKeyring::default());
        ring.replace(vec![FleetKeyPair::from_wire(&wire).unwrap()]);
        (ring, pair, hex::encode(id))
    }

    fn sealed(pair: &HpkeKeyPair, key_id: &str, params: &str) -> (pb::SealedInput, SecretKey32) {
        let h = SealedInput {
            suite: cloister_types::sealed::SUITE_ID.into(),
            key_id: key_id.into(),
            function_id: "fid".into(),
            version: 1,
            code_hash: format!("sha256:{}", "ab".repeat(32)),
            manifest_digest: "cd".repeat(32),
            request_id: hex::encode(cloister_crypto::random_bytes::<16>().unwrap()),
            timestamp: NOW,
            ciphertext: String::new(),
        };
        let (ct, key) = pair
            .public()
            .seal_exporting(&h.info(), b"", params.as_bytes(), RESPONSE_EXPORT_CONTEXT)
            .unwrap();
        (
            pb::SealedInput {
                suite: h.suite,
                key_id: h.key_id,
                function_id: h.function_id,
                version: h.version,
                code_hash: h.code_hash,
                manifest_digest: h.manifest_digest,
                request_id: h.request_id,
                timestamp: h.timestamp,
                ciphertext: ct,
            },
            key,
        )
    }

    fn code(r: Result<Opened, Refusal>) -> ErrorCode {
        r.expect_err("refused").code
    }

    #[tokio::test]
    async fn a_sealed_request_opens_once_and_only_as_sealed() {
        let (ring, pair, kid) = keyring(1);
        let door = SealedDoor::new(ring, NOW - 10);
        let (req, client_key) = sealed(&pair, &kid, r#"{"a":1}"#);
        let opened = door.open(&req, NOW, 1024).await.unwrap();
        assert_eq!(opened.params.get(), r#"{"a":1}"#);
        assert_eq!(opened.response_key.expose(), client_key.expose());
        // The same request again: a replay.
        assert_eq!(
            code(door.open(&req, NOW + 1, 1024).await),
            ErrorCode::ReplayedRequest
        );
        // Forgotten (it did not run): it opens again.
        door.forget(&req.request_id);
        assert!(door.open(&req, NOW + 1, 1024).await.is_ok());

        // Any visible field changed, or a flipped ciphertext byte: it does not open.
        let fresh = || sealed(&pair, &kid, "1").0;
        let mut tampered = Vec::new();
        let mut r = fresh();
        r.function_id = "other".into();
        tampered.push(r);
        let mut r = fresh();
        r.version = 2;
        tampered.push(r);
        let mut r = fresh();
        r.code_hash = format!("sha256:{}", "cd".repeat(32));
        tampered.push(r);
        let mut r = fresh();
        r.timestamp += 1;
        tampered.push(r);
        let mut r = fresh();
        r.request_id = hex::encode([7u8; 16]);
        tampered.push(r);
        let mut r = fresh();
        r.manifest_digest = "ce".repeat(32);
        tampered.push(r);
        let base = fresh();
        // Same request id as `base`: a refusal must not burn it.
        for i in 0..base.ciphertext.len() {
            let mut r = base.clone();
            r.ciphertext[i] ^= 1;
            tampered.push(r);
        }
        let mut r = base.clone();
        r.timestamp += 1;
        tampered.push(r);
        for r in tampered {
            assert_eq!(
                code(door.open(&r, NOW, 1024).await),
                ErrorCode::SealedInputInvalid
            );
        }
        // A refused (unopened) request id is not burnt.
        assert!(door.open(&base, NOW, 1024).await.is_ok());
    }

    #[tokio::test]
    async fn keys_clocks_and_sizes_are_refused_with_their_own_codes() {
        let (ring, pair, kid) = keyring(1);
        let door = SealedDoor::new(ring, NOW - 10);
        let (other, _, other_kid) = keyring(2);
        drop(other);
        let other_pair = HpkeKeyPair::derive(&[2; 32]).unwrap();
        let (r, _) = sealed(&other_pair, &other_kid, "1");
        assert_eq!(
            code(door.open(&r, NOW, 1024).await),
            ErrorCode::FleetKeyUnknown
        );
        let (r, _) = sealed(&pair, &kid, "1");
        let (_, not_after) =
            cloister_types::fleet::validity(NOW / cloister_types::fleet::ROTATION_SECS);
        // A fresh door for each clock (a door's clock never goes back).
        let fresh = |started| SealedDoor::new(keyring(1).0, started);
        assert_eq!(
            code(fresh(NOW - 10).open(&r, not_after, 1024).await),
            ErrorCode::FleetKeyExpired
        );
        assert_eq!(
            code(fresh(NOW - 10).open(&r, NOW + WINDOW_SECS + 1, 1024).await),
            ErrorCode::ReplayedRequest
        );
        assert_eq!(
            code(
                fresh(NOW - WINDOW_SECS - 10)
                    .open(&r, NOW - WINDOW_SECS - 1, 1024)
                    .await
            ),
            ErrorCode::ReplayedRequest
        );
        // The host clock set back does not reopen the window: the door's clock keeps the
        // latest time it saw.
        let (r2, _) = sealed(&pair, &kid, "1");
        let clock = SealedDoor::new(keyring(1).0, NOW - 10);
        let _ = clock
            .open(&sealed(&pair, &kid, "1").0, NOW + WINDOW_SECS + 5, 1024)
            .await;
        assert_eq!(
            code(clock.open(&r2, NOW, 1024).await),
            ErrorCode::ReplayedRequest
        );
        // Sealed before this executor started.
        let late = SealedDoor::new(keyring(1).0, NOW + 1);
        assert_eq!(
            code(late.open(&r, NOW + 2, 1024).await),
            ErrorCode::ReplayedRequest
        );
        let (big, _) = sealed(&pair, &kid, &format!("\"{}\"", "x".repeat(2000)));
        assert_eq!(
            code(door.open(&big, NOW, 1024).await),
            ErrorCode::InvalidRequest
        );
        let (notjson, _) = sealed(&pair, &kid, "{");
        assert_eq!(
            code(door.open(&notjson, NOW, 1024).await),
            ErrorCode::InvalidRequest
        );
        let mut suite = sealed(&pair, &kid, "1").0;
        suite.suite = "hpke-0020-0001-0003".into();
        assert_eq!(
            code(door.open(&suite, NOW, 1024).await),
            ErrorCode::SealedInputInvalid
        );
    }

    #[tokio::test]
    async fn only_the_caller_opens_the_answer_and_only_for_its_request() {
        let (ring, pair, kid) = keyring(1);
        let door = SealedDoor::new(ring, NOW - 10);
        let (req, client_key) = sealed(&pair, &kid, "2");
        let opened = door.open(&req, NOW, 1024).await.unwrap();
        let answer = opened
            .seal(
                "exec-1",
                Ok(RawValue::from_string("42".into()).unwrap()),
                vec!["log".into()],
            )
            .unwrap();
        assert_eq!(answer.outcome, OUTCOME_OK);
        let aad = |rid: &str, eid: &str, outcome: &str| {
            Aad::from_encoded(response_aad(rid, eid, outcome))
        };
        let plain = cloister_crypto::aead::open(
            &client_key,
            &aad(&req.request_id, "exec-1", "ok"),
            &answer.sealed,
        )
        .unwrap();
        let got: SealedOutcome = serde_json::from_slice(plain.expose()).unwrap();
        assert_eq!(got.result.unwrap().get(), "42");
        assert_eq!(got.logs, vec!["log".to_owned()]);
        // Relabelled, moved to another execution or request, or opened with another key.
        for bad in [
            aad(&req.request_id, "exec-1", "function_error"),
            aad(&req.request_id, "exec-2", "ok"),
            aad(&"00".repeat(16), "exec-1", "ok"),
        ] {
            assert!(cloister_crypto::aead::open(&client_key, &bad, &answer.sealed).is_err());
        }
        let (_, other_key) = sealed(&pair, &kid, "2");
        assert!(
            cloister_crypto::aead::open(
                &other_key,
                &aad(&req.request_id, "exec-1", "ok"),
                &answer.sealed
            )
            .is_err()
        );
        // The shared layout is the crypto crate's AAD layout.
        assert_eq!(
            response_aad("r", "e", "ok"),
            Aad::new(cloister_types::sealed::RESPONSE_AAD_LABEL)
                .str("r")
                .str("e")
                .str("ok")
                .as_bytes()
        );
    }
}
