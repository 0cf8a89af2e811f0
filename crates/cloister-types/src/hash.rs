//! The code hash: how a function version's source is identified everywhere.

use sha2::{Digest, Sha256};

/// `sha256:<lowercase hex>` of a source text (the `codeHash` of the API).
pub fn code_hash(code: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(code.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_fips_180_2_vector() {
        assert_eq!(
            code_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

/// How a message is turned into the digest an ECDSA key signs (`context.sign(…, {hash})`, the
/// worker's host call, keyvault's SignRequest): one definition for every hop. Ed25519 and HMAC
/// take the message itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SignHash {
    /// SHA-256 of the message (the default).
    #[default]
    Sha256,
    /// Keccak-256 of the message (Ethereum's, not SHA3-256).
    Keccak256,
    /// The message is the 32-byte digest itself.
    Prehashed,
}

impl SignHash {
    /// Every hash.
    pub const ALL: [SignHash; 3] = [Self::Sha256, Self::Keccak256, Self::Prehashed];

    /// The stable name (`sha256`, `keccak256`, `prehashed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Keccak256 => "keccak256",
            Self::Prehashed => "prehashed",
        }
    }

    /// The hash named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }
}
