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
