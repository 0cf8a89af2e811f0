//! AWS Nitro Secure Module (`/dev/nsm`): attestation documents from inside an enclave.
//!
//! The driver takes a CBOR request and returns a CBOR response through one ioctl
//! (`_IOWR(0x0A, 0, struct nsm_message)`, two iovecs). Requests and responses use the
//! NSM API's serde shape: `{"Attestation": {"user_data": ..., "nonce": ..., "public_key": ...}}`
//! answered by `{"Attestation": {"document": <bytes>}}` or `{"Error": "<code>"}`.

use super::{Attester, Produced, show};
use crate::error::AttestError;
use crate::tee::TeeType;
use ciborium::Value;
use std::path::Path;

/// The NSM device node.
pub const NSM_DEVICE: &str = "/dev/nsm";

/// Largest response the driver may return (the NSM API's limit).
const MAX_RESPONSE: usize = 0x3000;

/// A transport to the NSM: the real device or a fake in tests.
pub trait NsmDevice: Send + Sync {
    /// Sends one CBOR request and returns the CBOR response.
    fn call(&self, request: &[u8]) -> std::io::Result<Vec<u8>>;
}

/// The real `/dev/nsm` device.
#[derive(Debug)]
pub struct NsmFile {
    file: std::fs::File,
}

impl NsmFile {
    /// Opens the device node at `path`.
    pub fn open(path: &Path) -> Result<Self, AttestError> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(|file| Self { file })
            .map_err(|e| AttestError::Unsupported(format!("cannot open {}: {e}", show(path))))
    }
}

#[repr(C)]
struct NsmMessage {
    request: libc::iovec,
    response: libc::iovec,
}

/// `_IOWR(0x0A, 0, struct nsm_message)`: direction 3, size 32, type 0x0A, number 0.
const NSM_IOCTL_REQUEST: u64 =
    (3 << 30) | ((std::mem::size_of::<NsmMessage>() as u64) << 16) | (0x0A << 8);

impl NsmDevice for NsmFile {
    fn call(&self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let mut response = vec![0u8; MAX_RESPONSE];
        let mut msg = NsmMessage {
            request: libc::iovec {
                iov_base: request.as_ptr() as *mut libc::c_void,
                iov_len: request.len(),
            },
            response: libc::iovec {
                iov_base: response.as_mut_ptr().cast(),
                iov_len: response.len(),
            },
        };
        // SAFETY: `msg` points at live buffers of the stated lengths for the duration of the
        // call; the driver writes at most `response.len()` bytes and updates `iov_len`.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), NSM_IOCTL_REQUEST as _, &mut msg) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        response.truncate(msg.response.iov_len.min(MAX_RESPONSE));
        Ok(response)
    }
}

/// Produces Nitro attestation documents with the report data in `user_data`.
pub struct NsmAttester<D: NsmDevice> {
    device: D,
}

impl<D: NsmDevice> NsmAttester<D> {
    /// An attester talking to `device`.
    pub fn new(device: D) -> Self {
        Self { device }
    }
}

fn bad(reason: impl Into<String>) -> AttestError {
    AttestError::malformed("nsm-response", reason)
}

/// Encodes an NSM attestation request binding `user_data`.
pub(crate) fn encode_request(user_data: &[u8]) -> Result<Vec<u8>, AttestError> {
    let request = Value::Map(vec![(
        Value::Text("Attestation".into()),
        Value::Map(vec![
            (
                Value::Text("user_data".into()),
                Value::Bytes(user_data.to_vec()),
            ),
            (Value::Text("nonce".into()), Value::Null),
            (Value::Text("public_key".into()), Value::Null),
        ]),
    )]);
    let mut out = Vec::new();
    ciborium::into_writer(&request, &mut out)
        .map_err(|e| AttestError::Unsupported(format!("encode NSM request: {e}")))?;
    Ok(out)
}

/// Extracts the document from an NSM response, or the NSM's error code.
pub(crate) fn decode_response(bytes: &[u8]) -> Result<Vec<u8>, AttestError> {
    let value: Value = ciborium::from_reader(bytes).map_err(|e| bad(format!("not CBOR: {e}")))?;
    let map = value.as_map().ok_or_else(|| bad("response is not a map"))?;
    let (key, body) = map.first().ok_or_else(|| bad("empty response"))?;
    match key.as_text() {
        Some("Attestation") => body
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("document")))
            .and_then(|(_, v)| v.as_bytes().cloned())
            .ok_or_else(|| bad("Attestation response without a document")),
        Some("Error") => Err(AttestError::Unsupported(format!(
            "NSM refused the attestation request: {}",
            body.as_text().unwrap_or("unknown error")
        ))),
        _ => Err(bad("unexpected response variant")),
    }
}

impl<D: NsmDevice> Attester for NsmAttester<D> {
    fn tee(&self) -> TeeType {
        TeeType::Nitro
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Produced, AttestError> {
        let request = encode_request(report_data)?;
        let response = self
            .device
            .call(&request)
            .map_err(|e| AttestError::Unsupported(format!("NSM ioctl failed: {e}")))?;
        Ok(Produced {
            tee: TeeType::Nitro,
            evidence: decode_response(&response)?,
            aux: None,
        })
    }
}
