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
    let msg = view_message(info, public.as_deref().unwrap_or_default());
    audit_key
        .verify(&msg, &sig)
        .map_err(|_| KeyViewError::BadSignature(info.name.clone()))?;
    Ok(public)
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
