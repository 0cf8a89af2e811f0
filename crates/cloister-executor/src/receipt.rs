//! Receipts (see `cloister_types::receipt`): this executor's Ed25519 key, generated at start
//! inside the TEE and certified by its own evidence, signs what ran on which input and what
//! came out, for callers that ask (with a nonce).

use base64::Engine as _;
use cloister_attest::attester::Attester;
use cloister_crypto::SigningKey;
use cloister_types::receipt::{Receipt, ReceiptBody, ReceiptSigner, key_report_data};

/// The receipt key and the evidence that certifies it.
pub struct Notary {
    key: SigningKey,
    public_key: [u8; 32],
    signer: ReceiptSigner,
}

impl std::fmt::Debug for Notary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notary")
            .field("public_key", &self.signer.public_key)
            .finish_non_exhaustive()
    }
}

/// Why the receipt key could not be certified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotaryError {
    /// No key.
    #[error("cannot generate the receipt key: {0}")]
    Key(#[from] cloister_crypto::CryptoError),
    /// No evidence.
    #[error("cannot attest the receipt key: {0}")]
    Attest(#[from] cloister_attest::AttestError),
}

impl Notary {
    /// Generates a key and has `attester` certify it.
    pub fn new(attester: &dyn Attester) -> Result<Self, NotaryError> {
        let key = SigningKey::generate()?;
        let public = key.verifying_key();
        let produced = attester.attest(&key_report_data(&public.0))?;
        Ok(Self {
            key,
            public_key: public.0,
            signer: ReceiptSigner {
                tee: produced.tee.as_str().to_owned(),
                public_key: hex::encode(public.0),
                evidence: base64::engine::general_purpose::STANDARD.encode(&produced.evidence),
            },
        })
    }

    /// The receipt key (what a caller names in `receiptSigner`).
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Signs `body`. The signer's evidence is left out when `caller_holds` is this key (the
    /// caller said it already verified it): it is the same bytes on every receipt.
    pub fn sign(&self, body: ReceiptBody, caller_holds: &[u8]) -> Receipt {
        let signature = hex::encode(self.key.sign(&body.signed_message()));
        let signer = if caller_holds == self.public_key.as_slice() {
            ReceiptSigner {
                tee: self.signer.tee.clone(),
                public_key: self.signer.public_key.clone(),
                evidence: String::new(),
            }
        } else {
            self.signer.clone()
        };
        Receipt {
            body,
            signature,
            signer,
        }
    }
}
