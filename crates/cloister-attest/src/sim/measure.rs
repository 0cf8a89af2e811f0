//! The sim measurement: what a real TEE would hash at launch, computed by the process itself.

use crate::error::AttestError;
use sha2::{Digest, Sha384};
use std::io::Read;
use std::path::Path;

/// Length of a sim measurement (SHA-384).
pub const MEASUREMENT_LEN: usize = 48;

const DOMAIN: &[u8] = b"cloister-sim-measurement-v1";

/// SHA-384 over the executable's bytes, the role name and the role's config digest,
/// each length-prefixed so no two inputs collide by shifting bytes between fields.
pub fn measure(
    executable: &mut impl Read,
    role: &str,
    config_digest: &[u8; 32],
) -> std::io::Result<[u8; MEASUREMENT_LEN]> {
    let mut h = Sha384::new();
    h.update((DOMAIN.len() as u64).to_be_bytes());
    h.update(DOMAIN);
    // The executable's length is only known after reading; hash its digest instead.
    let mut exe = Sha384::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = executable.read(&mut buf)?;
        if n == 0 {
            break;
        }
        exe.update(&buf[..n]);
    }
    h.update(exe.finalize());
    h.update((role.len() as u64).to_be_bytes());
    h.update(role.as_bytes());
    h.update(config_digest);
    Ok(h.finalize().into())
}

/// [`measure`] of the executable at `path` (normally `std::env::current_exe()`).
pub fn measure_file(
    path: &Path,
    role: &str,
    config_digest: &[u8; 32],
) -> Result<[u8; MEASUREMENT_LEN], AttestError> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        AttestError::Unsupported(format!("cannot read executable {}: {e}", path.display()))
    })?;
    measure(&mut file, role, config_digest).map_err(|e| {
        AttestError::Unsupported(format!("cannot read executable {}: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::measure;

    #[test]
    fn every_input_changes_the_measurement() {
        let m = |exe: &[u8], role: &str, cfg: u8| {
            measure(&mut &exe[..], role, &[cfg; 32]).expect("measure")
        };
        let base = m(b"binary", "executor", 0);
        assert_eq!(base, m(b"binary", "executor", 0));
        assert_ne!(base, m(b"binarY", "executor", 0));
        assert_ne!(base, m(b"binary", "keyvault", 0));
        assert_ne!(base, m(b"binary", "executor", 1));
    }
}
