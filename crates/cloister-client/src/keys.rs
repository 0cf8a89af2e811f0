//! Checking what the gateway relays about a function's keys: keyvault signs each key's public
//! facts with its audit key, which a verified attestation bundle binds.

use cloister_crypto::VerifyingKey;
use cloister_types::wire::KeyInfo;

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
    let msg = cloister_types::binding::key_view_message(
        &info.function_id,
        &info.function,
        &info.name,
        &info.algorithm,
        info.version,
        public.as_deref().unwrap_or_default(),
        info.exportable,
    );
    audit_key
        .verify(&msg, &sig)
        .map_err(|_| KeyViewError::BadSignature(info.name.clone()))?;
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

/// Opens an export (`Client::export_key`) of key `name` of function `function_id` with the
/// recipient's HPKE key pair, after checking keyvault's signature over it with `audit_key`
/// (HPKE alone does not say who sealed). Returns the key's 32 secret bytes.
pub fn open_export(
    exported: &cloister_types::wire::KeyExported,
    recipient: &cloister_crypto::HpkeKeyPair,
    function_id: &str,
    name: &str,
    audit_key: &VerifyingKey,
) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyViewError> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&exported.sealed)
        .map_err(|_| KeyViewError::Malformed("sealed"))?;
    let sig = hex::decode(&exported.keyvault_signature)
        .map_err(|_| KeyViewError::Malformed("keyvaultSignature"))?;
    let info = cloister_types::binding::key_export_info(
        function_id,
        name,
        &exported.algorithm,
        exported.key_version,
    );
    audit_key
        .verify(
            &cloister_types::binding::key_export_message(&info, &sha2::Sha256::digest(&sealed)),
            &sig,
        )
        .map_err(|_| KeyViewError::BadSignature(name.to_owned()))?;
    let secret = recipient
        .open(&info, b"", &sealed)
        .map_err(|_| KeyViewError::BadSignature(name.to_owned()))?;
    Ok(zeroize::Zeroizing::new(secret.expose().to_vec()))
}
