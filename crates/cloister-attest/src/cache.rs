//! A cache of verified results keyed by (evidence + collateral digest, policy digest).
//!
//! A hit skips signature and chain checks; the policy is still evaluated on every call
//! because rules like `max_age_seconds` depend on the time. Entries expire at the earliest
//! of the certificates'/collateral's expiry and the configured TTL; a different policy
//! digest is a different key, so a policy change never reuses an old verdict.

use crate::claims::Verified;
use crate::error::AttestError;
use crate::policy::{Policy, Violation};
use crate::verifier::{Collateral, Verifier};
use crate::x509::UnixSecs;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Key = ([u8; 32], [u8; 32]);

/// Verified results shared across calls.
#[derive(Debug)]
pub struct VerificationCache {
    ttl_secs: i64,
    max_entries: usize,
    entries: Mutex<HashMap<Key, (Arc<Verified>, UnixSecs)>>,
}

/// Whether a result came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Served from the cache.
    Hit,
    /// Verified now (and stored).
    Miss,
}

/// Digest of evidence plus every piece of collateral that verification depended on.
pub fn evidence_digest(evidence: &[u8], collateral: &Collateral) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((evidence.len() as u64).to_le_bytes());
    h.update(evidence);
    for cert in &collateral.certs {
        h.update(b"cert");
        h.update(cert.fingerprint());
    }
    for crl in &collateral.crls {
        h.update(b"crl");
        h.update(crl.fingerprint());
    }
    if let Some(d) = &collateral.dcap {
        let parts: [&[u8]; 10] = [
            d.pck_crl_issuer_chain.as_bytes(),
            &d.root_ca_crl,
            &d.pck_crl,
            d.tcb_info_issuer_chain.as_bytes(),
            d.tcb_info.as_bytes(),
            &d.tcb_info_signature,
            d.qe_identity_issuer_chain.as_bytes(),
            d.qe_identity.as_bytes(),
            &d.qe_identity_signature,
            d.pck_certificate_chain
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        ];
        h.update(b"dcap");
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    h.finalize().into()
}

impl VerificationCache {
    /// A cache whose entries live at most `ttl_secs`, holding at most `max_entries`.
    pub fn new(ttl_secs: i64, max_entries: usize) -> Self {
        Self {
            ttl_secs,
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Number of live and expired entries currently stored.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the verified result and the policy verdict, verifying only on a miss.
    pub fn verify(
        &self,
        verifier: &dyn Verifier,
        evidence: &[u8],
        collateral: &Collateral,
        policy: &Policy,
        now: UnixSecs,
    ) -> Result<(Arc<Verified>, Vec<Violation>, Lookup), AttestError> {
        let key = (evidence_digest(evidence, collateral), policy.digest());
        let hit = self.entries.lock().ok().and_then(|entries| {
            entries
                .get(&key)
                .filter(|(v, expires)| now <= *expires && now >= v.verified_at())
                .map(|(v, _)| Arc::clone(v))
        });
        if let Some(verified) = hit {
            let violations = policy.evaluate(&verified, now);
            return Ok((verified, violations, Lookup::Hit));
        }
        let verified = Arc::new(verifier.verify(evidence, collateral, now)?);
        let expires = verified
            .valid_until()
            .min(now.saturating_add(self.ttl_secs));
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.max_entries {
                entries.retain(|_, (_, exp)| *exp >= now);
                if entries.len() >= self.max_entries {
                    entries.clear();
                }
            }
            entries.insert(key, (Arc::clone(&verified), expires));
        }
        let violations = policy.evaluate(&verified, now);
        Ok((verified, violations, Lookup::Miss))
    }
}
