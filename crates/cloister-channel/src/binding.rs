//! The value evidence must carry to be valid on one connection, for one sender role.

use sha2::{Digest, Sha512};

/// TLS exporter label (RFC 8446 §7.5) for the channel binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-cloister-attested-channel-v1";

/// Length of the exporter value.
pub const EXPORTER_LEN: usize = 32;

const DOMAIN: &[u8] = b"cloister-channel-binding-v1";

/// `report_data` for evidence sent by `role` on the connection whose exporter value is
/// `exporter`: SHA-512 over a domain label, the role (length-prefixed) and the exporter.
/// Including the role stops a peer's evidence being reflected back as the sender's own.
pub fn report_data(exporter: &[u8; EXPORTER_LEN], role: &str) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(DOMAIN);
    h.update((role.len() as u64).to_be_bytes());
    h.update(role.as_bytes());
    h.update(exporter);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::report_data;

    #[test]
    fn binding_depends_on_role_and_exporter() {
        let a = report_data(&[1; 32], "executor");
        assert_ne!(a, report_data(&[2; 32], "executor"));
        assert_ne!(a, report_data(&[1; 32], "keyvault"));
    }
}
