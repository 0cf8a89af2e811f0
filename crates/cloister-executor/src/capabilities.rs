//! The capabilities a function may use, composed per function from its manifest (nothing
//! ambient): each host request a worker makes is answered by the capability that serves it,
//! if the manifest grants that capability, and refused with `capability_not_granted`
//! otherwise. `context.log` needs no grant; the supervisor keeps those lines itself
//! (`crate::worker`).

use std::sync::Arc;

use base64::Engine as _;
use cloister_sandbox::host::{HostRefusal, HostRequest, HostValue, SignHash};
use cloister_types::ErrorCode;
use cloister_types::receipt::ReceiptKeyUse;

use crate::secrets::{KeyAnswer, KeyRequest, RunManifest, SecretError, SecretSource};
use crate::worker::Capabilities;

/// The capabilities one invocation of a function was granted.
pub struct Granted {
    keys: Option<Keys>,
    /// `fetch`: present when the manifest has an egress policy.
    fetch: Option<cloister_egress::Session>,
}

impl Granted {
    /// What the manifest `m` grants to the invocation `execution_id`; keyvault is reached
    /// through `source`.
    pub fn for_manifest(
        m: &RunManifest,
        execution_id: &str,
        source: &Arc<dyn SecretSource>,
        fetch: Option<cloister_egress::Session>,
    ) -> Self {
        let keys = (!m.keys.is_empty()).then(|| Keys {
            uses: std::sync::Mutex::new(Vec::new()),
            declared: m.keys.clone(),
            function_id: m.function_id.clone(),
            version: m.version,
            code_hash: m.code_hash.clone(),
            execution_id: execution_id.to_owned(),
            source: source.clone(),
        });
        Self { keys, fetch }
    }

    /// `text` with every known form of the function's egress-only values redacted (a
    /// backstop: the session already redacts what comes back).
    pub fn redact(&self, text: String) -> String {
        match &self.fetch {
            Some(s) => s.redact(text),
            None => text,
        }
    }

    /// What the invocation's outbound requests did, in order (taken once).
    pub fn take_egress_records(&self) -> Vec<cloister_egress::Record> {
        self.fetch
            .as_ref()
            .map(cloister_egress::Session::take_records)
            .unwrap_or_default()
    }

    /// The signatures keyvault made for this invocation, in order (taken once).
    pub fn take_key_uses(&self) -> Vec<ReceiptKeyUse> {
        self.keys
            .as_ref()
            .map(|k| {
                std::mem::take(
                    &mut *k
                        .uses
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                )
            })
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Capabilities for Granted {
    async fn answer(&self, request: HostRequest) -> Result<HostValue, HostRefusal> {
        let not_granted = |r: &HostRequest| {
            HostRefusal::new(
                ErrorCode::CapabilityNotGranted,
                format!(
                    "this function's manifest grants no `{}` capability",
                    r.capability()
                ),
            )
        };
        match (request, &self.keys, &self.fetch) {
            (r @ (HostRequest::Sign { .. } | HostRequest::PublicKey { .. }), Some(keys), _) => {
                keys.answer(r).await
            }
            (HostRequest::Fetch(r), _, Some(session)) => session
                .fetch(r)
                .await
                .map(HostValue::Response)
                .map_err(|e| HostRefusal::new(e.code(), session.redact(e.to_string()))),
            (r @ HostRequest::Fetch(_), _, None) => Err(HostRefusal::new(
                ErrorCode::CapabilityNotGranted,
                format!(
                    "this function's manifest allows no outbound requests (`{}`: fn deploy \
                     --egress https://HOST)",
                    r.capability()
                ),
            )),
            (r, _, _) => Err(not_granted(&r)),
        }
    }
}

/// `context.sign` and `context.publicKey`: signatures by keyvault with the keys the manifest
/// declares. The declaration is checked here to refuse early, and again by keyvault, which
/// alone decides (it authorises the run from the manifest it registered).
struct Keys {
    /// Signatures made so far (listed by the receipt).
    uses: std::sync::Mutex<Vec<ReceiptKeyUse>>,
    declared: Vec<String>,
    function_id: String,
    version: u32,
    code_hash: String,
    execution_id: String,
    source: Arc<dyn SecretSource>,
}

impl Keys {
    async fn answer(&self, request: HostRequest) -> Result<HostValue, HostRefusal> {
        let (key, message, hash, public_key_only) = match request {
            HostRequest::Sign { key, message, hash } => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(message)
                    .map_err(|_| {
                        HostRefusal::new(ErrorCode::InvalidRequest, "the message is not base64")
                    })?;
                (key, bytes, hash, false)
            }
            HostRequest::PublicKey { key } => (key, Vec::new(), SignHash::default(), true),
            other => {
                return Err(HostRefusal::new(
                    ErrorCode::CapabilityNotGranted,
                    format!("no `{}` capability here", other.capability()),
                ));
            }
        };
        if !self.declared.contains(&key) {
            return Err(HostRefusal::new(
                ErrorCode::KeyNotDeclared,
                format!(
                    "this function's manifest does not declare the key `{key}` (fn deploy --key)"
                ),
            ));
        }
        let use_of = (!public_key_only).then(|| ReceiptKeyUse {
            key: key.clone(),
            version: 0,
            algorithm: String::new(),
            hash: hash.as_str().to_owned(),
            message_sha256: cloister_types::receipt::sha256_hex(&message),
        });
        let answer = self
            .source
            .key(KeyRequest {
                function_id: self.function_id.clone(),
                version: self.version,
                code_hash: self.code_hash.clone(),
                execution_id: self.execution_id.clone(),
                key,
                message,
                hash: hash.as_str().to_owned(),
                public_key_only,
            })
            .await
            .map_err(|e| match e {
                SecretError::Refused { code, message } => HostRefusal::new(code, message),
                SecretError::Missing(name) => {
                    HostRefusal::new(ErrorCode::KeyNotFound, format!("no key `{name}`"))
                }
                SecretError::Unavailable(m) => HostRefusal::new(ErrorCode::Unavailable, m),
            })?;
        if let Some(mut u) = use_of {
            u.version = answer.key_version;
            u.algorithm = answer.algorithm.clone();
            self.uses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(u);
        }
        Ok(value(answer, public_key_only))
    }
}

fn value(a: KeyAnswer, public_key_only: bool) -> HostValue {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let key_version = u32::try_from(a.key_version).unwrap_or(u32::MAX);
    if public_key_only {
        HostValue::PublicKey {
            public_key: b64(&a.public_key),
            algorithm: a.algorithm,
            key_version,
        }
    } else {
        HostValue::Signature {
            signature: b64(&a.signature),
            algorithm: a.algorithm,
            key_version,
            recovery_id: a.recovery_id,
        }
    }
}

/// One log line per outbound request: origin, method, path, status (or the refusal's code),
/// bytes and time; never a query, a header value or a body.
pub fn egress_log_lines(records: &[cloister_egress::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let outcome = match (r.status, r.error) {
                (Some(s), _) => s.to_string(),
                (None, Some(code)) => code.as_str().to_owned(),
                (None, None) => "-".to_owned(),
            };
            format!(
                "[fetch] {} {}{} -> {outcome} ({} B sent, {} B received, {:.1} ms)",
                r.method, r.origin, r.path, r.sent, r.received, r.millis
            )
        })
        .collect()
}
