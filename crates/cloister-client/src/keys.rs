//! Checking what the gateway relays about a function's keys: keyvault signs each key's public
//! facts with its audit key, which a verified attestation bundle binds.

use cloister_crypto::VerifyingKey;
use cloister_types::wire::{KeyInfo, KeyVersions};

/// Why a key's facts are not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyViewError {
    /// The key belongs to another function than the one asked for.
    #[error("the key belongs to function {found:?}, not {expected:?}")]
    OtherFunction {
        /// The function named in the signed facts.
        found: String,
        /// The function asked for.
        expected: String,
    },
    /// A field is not the hex it must be.
    #[error("{0} is not hex")]
    Malformed(&'static str),
    /// The versions listed are not 1, 2, … up to the newest, in order: one was left out,
    /// moved or added.
    #[error(
        "the versions of key {name:?} are not 1 to {newest} in order (the gateway left one out \
         or moved one)"
    )]
    VersionsIncomplete {
        /// The key.
        name: String,
        /// Its newest version, from its verified view.
        newest: u64,
    },
    /// keyvault's signature does not verify.
    #[error(
        "keyvault's signature over key {0:?} does not verify: the attested keyvault did not make \
         it for this function"
    )]
    BadSignature(String),
}

/// Checks keyvault's signature over `info` with `audit_key` (from a verified bundle) and
/// that the key is function `function`'s; returns the public key's bytes (none for HMAC).
pub fn verify(
    info: &KeyInfo,
    audit_key: &VerifyingKey,
    function: &str,
) -> Result<Option<Vec<u8>>, KeyViewError> {
    if info.function != function {
        return Err(KeyViewError::OtherFunction {
            found: info.function.clone(),
            expected: function.to_owned(),
        });
    }
    let public = match &info.public_key {
        Some(h) => Some(hex::decode(h).map_err(|_| KeyViewError::Malformed("publicKey"))?),
        None => None,
    };
    let sig = hex::decode(&info.keyvault_signature)
        .map_err(|_| KeyViewError::Malformed("keyvaultSignature"))?;
    let msg = view_message(info, public.as_deref().unwrap_or_default());
    audit_key
        .verify(&msg, &sig)
        .map_err(|_| KeyViewError::BadSignature(info.name.clone()))?;
    Ok(public)
}

/// A version's number and its public key (none for HMAC).
pub type VersionKey = (u64, Option<Vec<u8>>);

/// Checks keyvault's signature over every version in `versions` with `audit_key` (from a
/// verified bundle), and that they are key `name` of function `function`, numbered 1, 2, …
/// up to `newest` (the version of the key's view, checked with [`verify`]) with none left
/// out; returns each version's number and public key (none for HMAC).
pub fn verify_versions(
    versions: &KeyVersions,
    audit_key: &VerifyingKey,
    function: &str,
    name: &str,
    newest: u64,
) -> Result<Vec<VersionKey>, KeyViewError> {
    let incomplete = || KeyViewError::VersionsIncomplete {
        name: name.to_owned(),
        newest,
    };
    if versions.versions.len() as u64 != newest {
        return Err(incomplete());
    }
    if versions.function != function {
        return Err(KeyViewError::OtherFunction {
            found: versions.function.clone(),
            expected: function.to_owned(),
        });
    }
    let mut out = Vec::with_capacity(versions.versions.len());
    for (i, v) in versions.versions.iter().enumerate() {
        if v.version != i as u64 + 1 {
            return Err(incomplete());
        }
        let public = match &v.public_key {
            Some(h) => Some(hex::decode(h).map_err(|_| KeyViewError::Malformed("publicKey"))?),
            None => None,
        };
        let sig = hex::decode(&v.keyvault_signature)
            .map_err(|_| KeyViewError::Malformed("keyvaultSignature"))?;
        let msg = cloister_types::binding::key_version_message(
            &versions.function_id,
            &versions.function,
            name,
            &v.algorithm,
            v.version,
            public.as_deref().unwrap_or_default(),
            v.imported,
        );
        audit_key
            .verify(&msg, &sig)
            .map_err(|_| KeyViewError::BadSignature(format!("{name} version {}", v.version)))?;
        out.push((v.version, public));
    }
    Ok(out)
}

fn view_message(info: &KeyInfo, public_key: &[u8]) -> Vec<u8> {
    cloister_types::binding::key_view_message(&cloister_types::binding::KeyViewFacts {
        function_id: &info.function_id,
        function: &info.function,
        name: &info.name,
        algorithm: &info.algorithm,
        version: info.version,
        public_key,
        exportable: info.exportable,
        imported: info.imported,
        granted_to: &info.granted_to,
    })
}

/// Checks what keyvault answered to an owner's key change: its signature over the view
/// ([`verify`]) and over the view as the answer to the request whose SHA-256 is
/// `request_sha256` (so a gateway cannot answer a rotation, grant or revocation with a view
/// from before it).
pub fn verify_write(
    info: &KeyInfo,
    audit_key: &VerifyingKey,
    function: &str,
    request_sha256: &[u8; 32],
) -> Result<Option<Vec<u8>>, KeyViewError> {
    let public = verify(info, audit_key, function)?;
    let sig = info
        .write_signature
        .as_deref()
        .ok_or(KeyViewError::Malformed("writeSignature"))
        .and_then(|h| hex::decode(h).map_err(|_| KeyViewError::Malformed("writeSignature")))?;
    let view = view_message(info, public.as_deref().unwrap_or_default());
    audit_key
        .verify(
            &cloister_types::binding::key_write_message(request_sha256, &view),
            &sig,
        )
        .map_err(|_| {
            KeyViewError::BadSignature(format!("{} (the answer to this change)", info.name))
        })?;
    Ok(public)
}

/// Checks keyvault's signature over the result of a key use (`Client::use_key`) with
/// `audit_key` (from a verified bundle), bound to `request_sha256`, the SHA-256 of the signed
/// request it answers.
pub fn verify_use(
    result: &cloister_types::wire::KeyUseResult,
    audit_key: &VerifyingKey,
    request_sha256: &[u8; 32],
) -> Result<(), KeyViewError> {
    let signature = match &result.signature {
        Some(h) => hex::decode(h).map_err(|_| KeyViewError::Malformed("signature"))?,
        None => Vec::new(),
    };
    let sig = hex::decode(&result.keyvault_signature)
        .map_err(|_| KeyViewError::Malformed("keyvaultSignature"))?;
    let msg = cloister_types::binding::key_use_message(
        request_sha256,
        &result.algorithm,
        result.key_version,
        &signature,
        result.recovery_id,
        result.valid,
    );
    audit_key
        .verify(&msg, &sig)
        .map_err(|_| KeyViewError::BadSignature("the key use result".into()))
}

/// Checks keyvault's signature over an export (`Client::export_key`) of key `name` of
/// function `function_id` to `recipient`, answering the owner's request whose SHA-256 is
/// `request_sha256` (version, public key and sealed bytes included).
pub fn verify_export(
    exported: &cloister_types::wire::KeyExported,
    recipient: &cloister_crypto::HpkePublicKey,
    function_id: &str,
    name: &str,
    request_sha256: &[u8; 32],
    audit_key: &VerifyingKey,
) -> Result<Vec<u8>, KeyViewError> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&exported.sealed)
        .map_err(|_| KeyViewError::Malformed("sealed"))?;
    let sig = hex::decode(&exported.keyvault_signature)
        .map_err(|_| KeyViewError::Malformed("keyvaultSignature"))?;
    let public = match &exported.public_key {
        Some(h) => hex::decode(h).map_err(|_| KeyViewError::Malformed("publicKey"))?,
        None => Vec::new(),
    };
    let info = cloister_types::binding::key_export_info(
        function_id,
        name,
        &exported.algorithm,
        exported.key_version,
    );
    audit_key
        .verify(
            &cloister_types::binding::key_export_message(
                request_sha256,
                &info,
                &recipient.0,
                &public,
                &sha2::Sha256::digest(&sealed),
            ),
            &sig,
        )
        .map_err(|_| KeyViewError::BadSignature(name.to_owned()))?;
    Ok(sealed)
}

/// Opens an export with the recipient's HPKE key pair after [`verify_export`] (HPKE alone
/// does not say who sealed). Returns the key's 32 secret bytes.
pub fn open_export(
    exported: &cloister_types::wire::KeyExported,
    recipient: &cloister_crypto::HpkeKeyPair,
    function_id: &str,
    name: &str,
    request_sha256: &[u8; 32],
    audit_key: &VerifyingKey,
) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyViewError> {
    let sealed = verify_export(
        exported,
        &recipient.public(),
        function_id,
        name,
        request_sha256,
        audit_key,
    )?;
    let info = cloister_types::binding::key_export_info(
        function_id,
        name,
        &exported.algorithm,
        exported.key_version,
    );
    let secret = recipient
        .open(&info, b"", &sealed)
        .map_err(|_| KeyViewError::BadSignature(name.to_owned()))?;
    Ok(zeroize::Zeroizing::new(secret.expose().to_vec()))
}

#[cfg(test)]
mod version_tests {
    use super::*;
    use cloister_crypto::SigningKey;
    use cloister_types::wire::KeyVersionInfo;

    /// Versions 1 and 2 of key `k` of function `f`, signed as keyvault signs them.
    fn signed(audit: &SigningKey) -> KeyVersions {
        let version = |n: u64, pk: [u8; 32]| KeyVersionInfo {
            version: n,
            algorithm: "ed25519".into(),
            public_key: Some(hex::encode(pk)),
            imported: false,
            keyvault_signature: hex::encode(audit.sign(
                &cloister_types::binding::key_version_message(
                    "fid", "f", "k", "ed25519", n, &pk, false,
                ),
            )),
        };
        KeyVersions {
            function_id: "fid".into(),
            function: "f".into(),
            name: "k".into(),
            versions: vec![version(1, [1; 32]), version(2, [2; 32])],
        }
    }

    #[test]
    fn every_version_is_checked_and_none_may_be_swapped_dropped_or_moved() {
        let audit = SigningKey::generate().unwrap();
        let vk = audit.verifying_key();
        let good = signed(&audit);
        let got = verify_versions(&good, &vk, "f", "k", 2).unwrap();
        assert_eq!(got, vec![(1, Some(vec![1; 32])), (2, Some(vec![2; 32]))]);

        // Another public key for version 1, or the versions' keys swapped.
        let mut bad = good.clone();
        bad.versions[0].public_key = Some(hex::encode([9u8; 32]));
        assert!(matches!(
            verify_versions(&bad, &vk, "f", "k", 2),
            Err(KeyViewError::BadSignature(_))
        ));
        let mut bad = good.clone();
        bad.versions.swap(0, 1);
        assert!(verify_versions(&bad, &vk, "f", "k", 2).is_err());
        // Version 1 left out (a verifier would miss the key an old signature needs), or the
        // newest (the list would end at an older one).
        let mut bad = good.clone();
        bad.versions.remove(0);
        assert!(matches!(
            verify_versions(&bad, &vk, "f", "k", 2),
            Err(KeyViewError::VersionsIncomplete { newest: 2, .. })
        ));
        let mut bad = good.clone();
        bad.versions.pop();
        assert!(matches!(
            verify_versions(&bad, &vk, "f", "k", 2),
            Err(KeyViewError::VersionsIncomplete { .. })
        ));
        assert!(verify_versions(&good, &vk, "f", "k", 3).is_err());
        // Another function's or another key's versions, or another keyvault's signatures.
        assert!(verify_versions(&good, &vk, "g", "k", 2).is_err());
        assert!(verify_versions(&good, &vk, "f", "other", 2).is_err());
        let stranger = SigningKey::generate().unwrap().verifying_key();
        assert!(verify_versions(&good, &stranger, "f", "k", 2).is_err());
    }

    #[test]
    fn a_statement_about_a_version_is_never_a_keys_current_view() {
        let audit = SigningKey::generate().unwrap();
        let v = &signed(&audit).versions[0];
        // The same facts presented as the key's (current) view: keyvault signed them under
        // the version domain, so the view check refuses them.
        let view = KeyInfo {
            name: "k".into(),
            algorithm: v.algorithm.clone(),
            version: v.version,
            public_key: v.public_key.clone(),
            function_id: "fid".into(),
            function: "f".into(),
            keyvault_signature: v.keyvault_signature.clone(),
            exportable: false,
            imported: false,
            granted_to: Vec::new(),
            write_signature: None,
        };
        assert!(matches!(
            verify(&view, &audit.verifying_key(), "f"),
            Err(KeyViewError::BadSignature(_))
        ));
    }
}
