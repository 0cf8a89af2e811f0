//! The executor proves itself to the gateway (one-way attestation, ARCHITECTURE §5). The
//! gateway sends a nonce and an ephemeral X25519 key; the executor answers with evidence that
//! binds them and its own ephemeral key. The gateway checks the evidence against the pinned sim
//! platform root and the executor measurements keyvault enforces (from keyvault's bundle), then
//! derives the link key and requires every invocation response to carry its MAC.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_attest::sim::{SimEvidence, SimVerifier};
use cloister_attest::{Collateral, Verifier};
use cloister_crypto::MacKey;
use cloister_crypto::dh::EphemeralDh;
use cloister_rpc::executor::{AttestRequest, AttestResponse};
use cloister_types::ErrorCode;
use cloister_types::binding::{executor_link_info, executor_link_report_data};
use sha2::Digest;

use crate::error::HttpError;
use crate::keyvault::Keyvault;

/// A link is re-attested after this long.
pub const LINK_MAX_AGE: Duration = Duration::from_secs(600);
/// Maximum age of the executor's evidence when it is checked.
const MAX_EVIDENCE_AGE_SECS: i64 = 120;

/// What the gateway trusts an executor by.
#[derive(Clone)]
pub struct LinkTrust {
    /// SHA-256 fingerprint (hex) of the sim platform root the executor's evidence must chain to.
    pub sim_root: String,
    /// keyvault, whose bundle lists the executor measurements it enforces.
    pub keyvault: Keyvault,
}

/// An attested link.
pub struct Link {
    /// Its id, sent with each invocation.
    pub id: Vec<u8>,
    /// The key responses are MACed with.
    pub key: Arc<MacKey>,
    /// The executor's verified measurement (hex).
    pub measurement: String,
    made: Instant,
}

impl Link {
    /// Whether it should be re-attested.
    pub fn expired(&self) -> bool {
        self.made.elapsed() > LINK_MAX_AGE
    }
}

fn refused(msg: String) -> HttpError {
    tracing::error!(reason = %msg, "ALARM: the executor failed its attestation to the gateway");
    HttpError::new(
        ErrorCode::AttestationFailed,
        format!("the executor could not prove itself: {msg}"),
    )
}

/// Checks an executor's answer to `Attest`: simulated-TEE evidence chaining to the pinned
/// root, made for the `executor` role, with a measurement keyvault enforces, fresh, and
/// binding this nonce and both keys. Returns the measurement (hex).
pub fn verify(
    resp: &AttestResponse,
    nonce: &[u8],
    gateway_public: &[u8],
    sim_root: &str,
    allowed: &[String],
    now: i64,
) -> Result<String, String> {
    if resp.tee != "sim" {
        return Err(format!(
            "this gateway verifies simulated-TEE executors only; the executor runs `{}`",
            resp.tee
        ));
    }
    let ev = SimEvidence::parse(&resp.evidence).map_err(|e| e.to_string())?;
    let root = hex::encode(sha2::Sha256::digest(&ev.platform_cert));
    if !root.eq_ignore_ascii_case(sim_root.trim()) {
        return Err(format!(
            "evidence chains to platform root {root}, not the pinned {sim_root}"
        ));
    }
    let verified = SimVerifier::pinning(&ev.platform_cert)
        .and_then(|v| v.verify(&resp.evidence, &Collateral::default(), now))
        .map_err(|e| e.to_string())?;
    if ev.role != "executor" {
        return Err(format!("evidence is for role `{}`", ev.role));
    }
    let claims = verified.claims();
    let measurement = hex::encode(&claims.measurement.0);
    if !allowed.iter().any(|m| m.eq_ignore_ascii_case(&measurement)) {
        return Err(format!(
            "measurement {measurement} is not on keyvault's executor policy"
        ));
    }
    let age = claims.timestamp.map(|t| now - t).unwrap_or(i64::MAX);
    if age > MAX_EVIDENCE_AGE_SECS {
        return Err(format!("evidence is {age} s old"));
    }
    let expected = executor_link_report_data(nonce, gateway_public, &resp.executor_public);
    if !claims
        .report_data
        .as_ref()
        .is_some_and(|rd| cloister_crypto::ct_eq(&rd.0, &expected))
    {
        return Err(
            "evidence is not bound to this nonce and these keys (replayed or relayed)".into(),
        );
    }
    Ok(measurement)
}

/// Attests the executor behind `client` and derives a link.
pub async fn attest(
    trust: &LinkTrust,
    executor: &crate::executor::Executor,
) -> Result<Link, HttpError> {
    let allowed = trust
        .keyvault
        .client()
        .attestation(
            trust
                .keyvault
                .request(cloister_rpc::keyvault::AttestationRequest {}),
        )
        .await
        .map_err(crate::keyvault::kv_error)?
        .into_inner()
        .executor_measurements;
    let nonce: [u8; 32] = cloister_crypto::random_bytes()
        .map_err(|e| HttpError::new(ErrorCode::Internal, e.to_string()))?;
    let dh =
        EphemeralDh::generate().map_err(|e| HttpError::new(ErrorCode::Internal, e.to_string()))?;
    let mine = dh.public();
    let resp = executor
        .attest(AttestRequest {
            nonce: nonce.to_vec(),
            gateway_public: mine.to_vec(),
        })
        .await?;
    let now = cloister_attest::time_fmt::now();
    let measurement =
        verify(&resp, &nonce, &mine, &trust.sim_root, &allowed, now).map_err(refused)?;
    let key = dh
        .agree(
            &resp.executor_public,
            &nonce,
            &executor_link_info(&mine, &resp.executor_public),
        )
        .map_err(|e| refused(e.to_string()))?;
    tracing::info!(measurement = %measurement, "executor attested to the gateway");
    Ok(Link {
        id: resp.link_id,
        key: Arc::new(MacKey::new(&key)),
        measurement,
        made: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_attest::attester::Attester;
    use cloister_attest::sim::{SimAttester, SimPlatform};

    fn answer(
        platform: &Arc<SimPlatform>,
        role: &str,
        measurement: [u8; 48],
        nonce: &[u8],
        gateway_public: &[u8],
    ) -> AttestResponse {
        let executor_public = [9u8; 32];
        let rd = executor_link_report_data(nonce, gateway_public, &executor_public);
        let p = SimAttester::new(platform.clone(), role, measurement)
            .attest(&rd)
            .unwrap();
        AttestResponse {
            tee: "sim".into(),
            evidence: p.evidence,
            executor_public: executor_public.to_vec(),
            link_id: vec![1; 16],
        }
    }

    #[test]
    fn only_a_fresh_allowed_executor_on_the_pinned_platform_is_linked() {
        let platform = Arc::new(SimPlatform::generate().unwrap());
        let root = platform.fingerprint_hex();
        let (m, other_m) = ([7u8; 48], [8u8; 48]);
        let allowed = vec![hex::encode(m)];
        let (nonce, gw) = ([1u8; 32], [2u8; 32]);
        let now = cloister_attest::time_fmt::now();
        let good = answer(&platform, "executor", m, &nonce, &gw);
        assert_eq!(
            verify(&good, &nonce, &gw, &root, &allowed, now).unwrap(),
            hex::encode(m)
        );
        // Replayed for another nonce, or relayed for another gateway key.
        let e = verify(&good, &[3u8; 32], &gw, &root, &allowed, now).unwrap_err();
        assert!(e.contains("not bound"), "{e}");
        let e = verify(&good, &nonce, &[4u8; 32], &root, &allowed, now).unwrap_err();
        assert!(e.contains("not bound"), "{e}");
        // Its own key swapped by whoever relays it.
        let mut swapped = good.clone();
        swapped.executor_public = vec![5u8; 32];
        assert!(verify(&swapped, &nonce, &gw, &root, &allowed, now).is_err());
        // A build keyvault does not release to.
        let stranger = answer(&platform, "executor", other_m, &nonce, &gw);
        let e = verify(&stranger, &nonce, &gw, &root, &allowed, now).unwrap_err();
        assert!(e.contains("not on keyvault's executor policy"), "{e}");
        // Another role's evidence (keyvault's), or another platform (a host's own sim root).
        let kv = answer(&platform, "keyvault", m, &nonce, &gw);
        assert!(verify(&kv, &nonce, &gw, &root, &allowed, now).is_err());
        let rogue = Arc::new(SimPlatform::generate().unwrap());
        let forged = answer(&rogue, "executor", m, &nonce, &gw);
        let e = verify(&forged, &nonce, &gw, &root, &allowed, now).unwrap_err();
        assert!(e.contains("not the pinned"), "{e}");
        // Stale evidence.
        let e = verify(&good, &nonce, &gw, &root, &allowed, now + 600).unwrap_err();
        assert!(
            e.contains("old") || e.contains("expired") || e.contains("valid"),
            "{e}"
        );
    }
}
