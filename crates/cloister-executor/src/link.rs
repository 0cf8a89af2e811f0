//! The executor proves itself to the gateway (ARCHITECTURE §5, one-way attestation): on the
//! gateway's `Attest` it answers with evidence binding the gateway's nonce and both sides'
//! ephemeral X25519 keys; both derive a link key, and every invocation response carries an
//! HMAC under it. A process on the host that answers in the executor's place, or rewrites a
//! response on the way, has no link key and is caught by the gateway.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cloister_attest::attester::Attester;
use cloister_crypto::MacKey;
use cloister_crypto::dh::EphemeralDh;
use cloister_rpc::executor::{AttestRequest, AttestResponse};
use cloister_types::binding::{executor_link_info, executor_link_report_data};

/// Links kept (each gateway connection makes one; the oldest are dropped first).
const MAX_LINKS: usize = 64;

/// Why an `Attest` could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// This executor runs without an attester.
    #[error("this executor has no TEE attester; it cannot prove itself")]
    NoAttester,
    /// The request is malformed.
    #[error("invalid attest request: {0}")]
    Invalid(&'static str),
    /// Producing evidence or keys failed.
    #[error("attestation failed: {0}")]
    Failed(String),
}

/// Execution ids remembered to refuse replays (the oldest are forgotten first).
const MAX_SEEN: usize = 1 << 16;

/// The executor's attested links to gateways.
pub struct Links {
    attester: Option<Arc<dyn Attester>>,
    keys: Mutex<VecDeque<([u8; 16], Arc<MacKey>)>>,
    seen: Mutex<(std::collections::HashSet<String>, VecDeque<String>)>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("attested", &self.attester.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Links {
    /// Links proven with `attester` (`None`: the executor cannot attest; gateways that
    /// require it refuse to route to it).
    pub fn new(attester: Option<Arc<dyn Attester>>) -> Self {
        Self {
            attester,
            keys: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Default::default()),
        }
    }

    /// Answers a gateway's `Attest`.
    pub fn attest(&self, req: &AttestRequest) -> Result<AttestResponse, LinkError> {
        let attester = self.attester.as_ref().ok_or(LinkError::NoAttester)?;
        if req.nonce.len() != 32 {
            return Err(LinkError::Invalid("the nonce is 32 bytes"));
        }
        if req.gateway_public.len() != 32 {
            return Err(LinkError::Invalid("the gateway key is 32 bytes"));
        }
        let dh = EphemeralDh::generate().map_err(|e| LinkError::Failed(e.to_string()))?;
        let mine = dh.public();
        let rd = executor_link_report_data(&req.nonce, &req.gateway_public, &mine);
        let produced = attester
            .attest(&rd)
            .map_err(|e| LinkError::Failed(e.to_string()))?;
        let key = dh
            .agree(
                &req.gateway_public,
                &req.nonce,
                &executor_link_info(&req.gateway_public, &mine),
            )
            .map_err(|e| LinkError::Failed(e.to_string()))?;
        let id: [u8; 16] =
            cloister_crypto::random_bytes().map_err(|e| LinkError::Failed(e.to_string()))?;
        let mut keys = lock(&self.keys);
        if keys.len() >= MAX_LINKS {
            keys.pop_front();
        }
        keys.push_back((id, Arc::new(MacKey::new(&key))));
        Ok(AttestResponse {
            tee: produced.tee.as_str().to_owned(),
            evidence: produced.evidence,
            executor_public: mine.to_vec(),
            link_id: id.to_vec(),
        })
    }

    /// Records `execution_id`; `false` if it was seen before (a replayed request).
    pub fn first_run(&self, execution_id: &str) -> bool {
        let mut seen = lock(&self.seen);
        let (set, order) = &mut *seen;
        if !set.insert(execution_id.to_owned()) {
            return false;
        }
        order.push_back(execution_id.to_owned());
        if order.len() > MAX_SEEN
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }

    /// Forgets `execution_id` (it did not run: the code had to be sent first).
    pub fn forget(&self, execution_id: &str) {
        let mut seen = lock(&self.seen);
        let (set, order) = &mut *seen;
        if set.remove(execution_id) {
            order.retain(|e| e != execution_id);
        }
    }

    /// The key of link `id`, if this executor made it.
    pub fn key(&self, id: &[u8]) -> Option<Arc<MacKey>> {
        lock(&self.keys)
            .iter()
            .rev()
            .find(|(k, _)| k.as_slice() == id)
            .map(|(_, key)| key.clone())
    }
}
