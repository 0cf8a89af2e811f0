//! Signed requests: a COSE_Sign1 (tag 18, `alg` = EdDSA, `kid` = the signer's raw 32-byte
//! public key) whose payload is the deterministic CBOR of an [`Envelope`]:
//! `{"body", "domain", "expires", "nonce", "platform"}`. The domain names the operation,
//! `platform` is keyvault's instance key (hex), `expires` Unix seconds and `nonce` 16 random
//! bytes (hex) that keyvault accepts once.

use cloister_crypto::VerifyingKey;
use coset::{CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::error::AuthorityError;
use crate::identity::{Identity, IdentityId};

/// The body of one kind of signed request; its domain tag is what the signature is for.
pub trait Body: Serialize + DeserializeOwned {
    /// Domain tag, `cloister/<operation>/v1`.
    const DOMAIN: &'static str;
}

/// What is signed around a body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<B> {
    domain: String,
    platform: String,
    expires: u64,
    nonce: String,
    body: B,
}

/// Default lifetime of a signed request.
pub const DEFAULT_TTL_SECS: u64 = 300;

/// Where and until when a request is valid.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// keyvault's instance key (hex), from the verified attestation bundle.
    pub platform: String,
    /// The signer's clock (Unix seconds).
    pub now: u64,
    /// Seconds until it expires.
    pub ttl_secs: u64,
}

impl SignOptions {
    /// Valid on `platform` for [`DEFAULT_TTL_SECS`] from the system clock.
    pub fn for_platform(platform: &str) -> Self {
        Self {
            platform: platform.to_owned(),
            now: unix_now(),
            ttl_secs: DEFAULT_TTL_SECS,
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs `body` as `identity`.
pub fn sign<B: Body>(
    identity: &Identity,
    body: &B,
    opts: &SignOptions,
) -> Result<Vec<u8>, AuthorityError> {
    let nonce: [u8; 16] = cloister_crypto::random_bytes()?;
    let payload = canonical::to_vec(&Envelope {
        domain: B::DOMAIN.to_owned(),
        platform: opts.platform.to_ascii_lowercase(),
        expires: opts.now.saturating_add(opts.ttl_secs),
        nonce: hex::encode(nonce),
        body,
    })?;
    let protected = HeaderBuilder::new()
        .algorithm(coset::iana::Algorithm::EdDSA)
        .key_id(identity.public_key().0.to_vec())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(b"", |data| identity.sign_raw(data).to_vec())
        .build();
    sign1
        .to_tagged_vec()
        .map_err(|e| AuthorityError::Malformed(e.to_string()))
}

/// A request whose signature, domain, platform and expiry checked out. Only [`verify`] makes
/// one; who the signer is allowed to be is the caller's (keyvault's) decision.
#[derive(Debug)]
pub struct Verified<B> {
    signer: VerifyingKey,
    signer_id: IdentityId,
    body: B,
    nonce: String,
    expires: u64,
    digest: [u8; 32],
}

impl<B> Verified<B> {
    /// The signer's public key.
    pub fn signer(&self) -> &VerifyingKey {
        &self.signer
    }
    /// The signer's identity id.
    pub fn signer_id(&self) -> &IdentityId {
        &self.signer_id
    }
    /// The signed body.
    pub fn body(&self) -> &B {
        &self.body
    }
    /// The nonce (hex), to be accepted once.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }
    /// Expiry, Unix seconds.
    pub fn expires(&self) -> u64 {
        self.expires
    }
    /// SHA-256 of the whole signed request: the manifest digest for deploys.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// A signed request decoded without any check, for untrusted parties that only need to read
/// it (the gateway checks that a deploy's fields match its manifest; it decides nothing).
#[derive(Debug)]
pub struct Inspected<B> {
    /// Claimed signer.
    pub signer_id: IdentityId,
    /// Claimed body.
    pub body: B,
    /// SHA-256 of the signed bytes (hex).
    pub digest: String,
}

struct Parsed<B> {
    signer: VerifyingKey,
    envelope: Envelope<B>,
    sign1: CoseSign1,
}

fn parse<B: Body>(bytes: &[u8]) -> Result<Parsed<B>, AuthorityError> {
    let malformed = |m: &str| AuthorityError::Malformed(m.to_owned());
    let sign1 = CoseSign1::from_tagged_slice(bytes)
        .map_err(|e| AuthorityError::Malformed(format!("not a tagged COSE_Sign1: {e}")))?;
    // One signed request has one byte form, so its digest identifies it: nothing unsigned
    // (an unprotected header, another encoding of the same structure) may vary.
    if !sign1.unprotected.is_empty() {
        return Err(malformed("the unprotected header must be empty"));
    }
    if sign1.clone().to_tagged_vec().ok().as_deref() != Some(bytes) {
        return Err(malformed("the COSE_Sign1 is not in its canonical encoding"));
    }
    if sign1.protected.header.alg
        != Some(coset::RegisteredLabelWithPrivate::Assigned(
            coset::iana::Algorithm::EdDSA,
        ))
    {
        return Err(malformed("the protected header must name alg EdDSA"));
    }
    let signer = VerifyingKey::from_slice(&sign1.protected.header.key_id)
        .map_err(|_| malformed("kid must be the signer's 32-byte Ed25519 public key"))?;
    let payload = sign1
        .payload
        .as_deref()
        .ok_or_else(|| malformed("detached payloads are not accepted"))?;
    let envelope: Envelope<B> = canonical::from_slice(payload)?;
    Ok(Parsed {
        signer,
        envelope,
        sign1,
    })
}

/// Verifies a signed request for operation `B` on `platform` at `now`, accepting an expiry at
/// most `max_ttl_secs` ahead.
pub fn verify<B: Body>(
    bytes: &[u8],
    platform: &str,
    now: u64,
    max_ttl_secs: u64,
) -> Result<Verified<B>, AuthorityError> {
    let v = verify_accepted::<B>(bytes, platform)?;
    if now > v.expires {
        return Err(AuthorityError::Expired {
            expires: v.expires,
            now,
        });
    }
    if v.expires - now > max_ttl_secs {
        return Err(AuthorityError::TooLong {
            ahead: v.expires - now,
            max: max_ttl_secs,
        });
    }
    if v.nonce.len() != 32 || hex::decode(&v.nonce).is_err() {
        return Err(AuthorityError::Malformed(
            "nonce must be 16 bytes in hex".into(),
        ));
    }
    Ok(v)
}

/// Verifies the signature, domain and platform of a request keyvault accepted earlier (its
/// expiry and nonce were checked then; a stored manifest outlives both): what a client checks
/// about a manifest keyvault registered.
pub fn verify_accepted<B: Body>(
    bytes: &[u8],
    platform: &str,
) -> Result<Verified<B>, AuthorityError> {
    let p = parse::<B>(bytes)?;
    p.sign1
        .verify_signature(b"", |sig, data| p.signer.verify(data, sig))
        .map_err(|_| AuthorityError::BadSignature)?;
    let e = p.envelope;
    if e.domain != B::DOMAIN {
        return Err(AuthorityError::WrongDomain {
            found: e.domain,
            expected: B::DOMAIN.to_owned(),
        });
    }
    if !e.platform.eq_ignore_ascii_case(platform) {
        return Err(AuthorityError::WrongPlatform {
            found: e.platform,
            expected: platform.to_ascii_lowercase(),
        });
    }
    Ok(Verified {
        signer_id: IdentityId::of(&p.signer),
        signer: p.signer,
        body: e.body,
        nonce: e.nonce,
        expires: e.expires,
        digest: Sha256::digest(bytes).into(),
    })
}

/// Decodes a signed request without verifying it (see [`Inspected`]).
pub fn inspect<B: Body>(bytes: &[u8]) -> Result<Inspected<B>, AuthorityError> {
    let p = parse::<B>(bytes)?;
    Ok(Inspected {
        signer_id: IdentityId::of(&p.signer),
        body: p.envelope.body,
        digest: hex::encode(Sha256::digest(bytes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Ping {
        n: u64,
    }
    impl Body for Ping {
        const DOMAIN: &'static str = "cloister/ping/v1";
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Pong {
        n: u64,
    }
    impl Body for Pong {
        const DOMAIN: &'static str = "cloister/pong/v1";
    }

    const PLATFORM: &str = "aa11";

    fn opts(now: u64) -> SignOptions {
        SignOptions {
            platform: PLATFORM.into(),
            now,
            ttl_secs: 60,
        }
    }

    #[test]
    fn signs_and_verifies() {
        let id = Identity::generate("t").unwrap();
        let bytes = sign(&id, &Ping { n: 7 }, &opts(1000)).unwrap();
        let v = verify::<Ping>(&bytes, PLATFORM, 1010, 300).unwrap();
        assert_eq!(v.body(), &Ping { n: 7 });
        assert_eq!(v.signer_id(), id.id());
        assert_eq!(v.expires(), 1060);
        assert_eq!(inspect::<Ping>(&bytes).unwrap().signer_id, *id.id());
    }

    #[test]
    fn every_binding_is_checked() {
        let id = Identity::generate("t").unwrap();
        let bytes = sign(&id, &Ping { n: 7 }, &opts(1000)).unwrap();
        assert!(matches!(
            verify::<Pong>(&bytes, PLATFORM, 1010, 300),
            Err(AuthorityError::WrongDomain { .. })
        ));
        assert!(matches!(
            verify::<Ping>(&bytes, "bb22", 1010, 300),
            Err(AuthorityError::WrongPlatform { .. })
        ));
        assert!(matches!(
            verify::<Ping>(&bytes, PLATFORM, 1061, 300),
            Err(AuthorityError::Expired { .. })
        ));
        assert!(matches!(
            verify::<Ping>(&bytes, PLATFORM, 1000, 10),
            Err(AuthorityError::TooLong { .. })
        ));
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let id = Identity::generate("t").unwrap();
        let bytes = sign(&id, &Ping { n: 7 }, &opts(1000)).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(
                verify::<Ping>(&b, PLATFORM, 1010, 300).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn only_the_canonical_form_is_accepted_so_the_digest_is_stable() {
        let id = Identity::generate("t").unwrap();
        let bytes = sign(&id, &Ping { n: 7 }, &opts(1000)).unwrap();
        // Something in the unsigned header changes the bytes (and the digest), not the
        // signature: refused.
        let mut s = CoseSign1::from_tagged_slice(&bytes).unwrap();
        s.unprotected = HeaderBuilder::new().key_id(b"x".to_vec()).build();
        let wrapped = s.to_tagged_vec().unwrap();
        assert!(matches!(
            verify::<Ping>(&wrapped, PLATFORM, 1010, 300),
            Err(AuthorityError::Malformed(_))
        ));
        // The same structure without its CBOR tag is another byte form.
        let untagged =
            coset::CborSerializable::to_vec(CoseSign1::from_tagged_slice(&bytes).unwrap()).unwrap();
        assert!(verify::<Ping>(&untagged, PLATFORM, 1010, 300).is_err());
    }

    #[test]
    fn another_key_in_kid_is_refused() {
        let alice = Identity::generate("a").unwrap();
        let mallory = Identity::generate("m").unwrap();
        let bytes = sign(&alice, &Ping { n: 7 }, &opts(1000)).unwrap();
        let mut s = CoseSign1::from_tagged_slice(&bytes).unwrap();
        s.protected = coset::ProtectedHeader {
            original_data: None,
            header: HeaderBuilder::new()
                .algorithm(coset::iana::Algorithm::EdDSA)
                .key_id(mallory.public_key().0.to_vec())
                .build(),
        };
        let forged = s.to_tagged_vec().unwrap();
        assert_eq!(
            verify::<Ping>(&forged, PLATFORM, 1010, 300).unwrap_err(),
            AuthorityError::BadSignature
        );
    }
}
