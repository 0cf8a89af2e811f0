//! Internal RPC contracts (generated from `proto/`) shared by the gateway and executors.

#![allow(missing_docs, clippy::all)]

/// Executor service: validate code, invoke functions, report status.
pub mod executor {
    tonic::include_proto!("cloister.executor.v1");
}

/// keyvault service (gateway → keyvault) and the secret release messages (executor →
/// keyvault over the attested channel).
pub mod keyvault {
    tonic::include_proto!("cloister.keyvault.v1");

    impl std::fmt::Debug for FleetSecret {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FleetSecret")
                .field("key_id", &self.key_id)
                .field("epoch", &self.epoch)
                .field("private_key", &"<redacted>")
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for Released {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Released")
                .field("epoch", &self.epoch)
                .field("values", &self.values.keys().collect::<Vec<_>>())
                .field("manifest", &self.manifest)
                .field("code_key", &"<redacted>")
                .finish()
        }
    }
}

/// The MAC on invocation responses over an attested gateway↔executor link: one definition
/// for both sides.
pub mod link {
    use cloister_crypto::MacKey;
    use cloister_types::binding::INVOKE_RESPONSE_MAC_DOMAIN;
    use prost::Message;

    use crate::executor::{InvokeRequest, InvokeResponse};

    /// SHA-256 of the request as encoded on the wire: the response MAC covers it, so a
    /// request altered on the way (other params, function or code) is caught too.
    pub fn request_digest(req: &InvokeRequest) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(req.encode_to_vec()).into()
    }

    fn parts<'a>(request: &'a [u8; 32], resp: &'a [u8]) -> [&'a [u8]; 3] {
        [INVOKE_RESPONSE_MAC_DOMAIN, request, resp]
    }

    /// Sets `resp.link_mac`: HMAC-SHA256 over the domain, the digest of the request it
    /// answers (which carries the execution id) and the response encoded without its MAC.
    pub fn seal_response(key: &MacKey, request: &[u8; 32], resp: &mut InvokeResponse) {
        resp.link_mac.clear();
        resp.link_mac = key.tag(&parts(request, &resp.encode_to_vec())).to_vec();
    }

    /// Checks (and removes) `resp.link_mac`, in constant time.
    pub fn check_response(key: &MacKey, request: &[u8; 32], resp: &mut InvokeResponse) -> bool {
        let mac = std::mem::take(&mut resp.link_mac);
        key.verify(&parts(request, &resp.encode_to_vec()), &mac)
            .is_ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::executor::{Success, invoke_response::Outcome};

        #[test]
        fn a_response_altered_or_moved_fails_its_mac() {
            let key = MacKey::new(&cloister_crypto::SecretKey32::from_array([3; 32]));
            let req = |params: &str, id: &str| {
                request_digest(&InvokeRequest {
                    params_json: params.into(),
                    execution_id: id.into(),
                    ..Default::default()
                })
            };
            let asked = req("{\"a\":1}", "exec-1");
            let mut resp = InvokeResponse {
                outcome: Some(Outcome::Success(Success {
                    result_json: "{\"ok\":true}".into(),
                })),
                logs: vec!["hi".into()],
                duration_ms: 1.5,
                link_mac: Vec::new(),
                receipt_json: String::new(),
                worker_replaced: false,
            };
            seal_response(&key, &asked, &mut resp);
            assert_eq!(resp.link_mac.len(), 32);
            assert!(check_response(&key, &asked, &mut resp.clone()));
            // Another execution's response, or the answer to altered parameters.
            assert!(!check_response(
                &key,
                &req("{\"a\":1}", "exec-2"),
                &mut resp.clone()
            ));
            assert!(!check_response(
                &key,
                &req("{\"a\":2}", "exec-1"),
                &mut resp.clone()
            ));
            // The result rewritten on the way.
            let mut altered = resp.clone();
            altered.outcome = Some(Outcome::Success(Success {
                result_json: "{\"ok\":false}".into(),
            }));
            assert!(!check_response(&key, &asked, &mut altered));
            // The worker's fate is covered too (the invocation log reports it).
            let mut flipped = resp.clone();
            flipped.worker_replaced = true;
            assert!(!check_response(&key, &asked, &mut flipped));
            // No MAC, or another link's key.
            let mut bare = resp.clone();
            bare.link_mac.clear();
            assert!(!check_response(&key, &asked, &mut bare));
            let other = MacKey::new(&cloister_crypto::SecretKey32::from_array([4; 32]));
            assert!(!check_response(&other, &asked, &mut resp));
        }
    }
}

/// Metadata key carrying a stable Cloister error code on a failed internal call.
pub const ERROR_CODE_HEADER: &str = "x-cloister-code";

/// Metadata key carrying the internal bearer token between platform roles.
pub const INTERNAL_AUTH_HEADER: &str = "authorization";

use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Checks the internal bearer token on every request, in constant time.
#[derive(Clone)]
pub struct InternalAuth {
    expected: Arc<Vec<u8>>,
}

impl InternalAuth {
    /// Accepts `Bearer <token>`.
    pub fn new(token: &str) -> Self {
        Self {
            expected: Arc::new(format!("Bearer {token}").into_bytes()),
        }
    }

    /// Interceptor body.
    pub fn check(&self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get(INTERNAL_AUTH_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if bool::from(given.ct_eq(self.expected.as_slice())) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("internal token required"))
        }
    }
}
