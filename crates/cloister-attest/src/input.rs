//! Evidence files: text encodings (raw, base64, hex) and format detection.

use crate::error::AttestError;
use crate::tee::TeeType;
use base64::Engine;

/// An evidence format a file can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// AWS Nitro attestation document (COSE_Sign1).
    Nitro,
    /// AMD SEV-SNP attestation report.
    SevSnp,
    /// Intel DCAP quote v3 (SGX).
    Sgx,
    /// Intel DCAP quote v4/v5 (TDX).
    Tdx,
    /// Cloister simulated TEE evidence (COSE_Sign1 with `tee: "sim"`).
    Sim,
}

impl Format {
    /// The TEE type this format attests.
    pub fn tee(self) -> TeeType {
        match self {
            Self::Nitro => TeeType::Nitro,
            Self::SevSnp => TeeType::SevSnp,
            Self::Sgx => TeeType::Sgx,
            Self::Tdx => TeeType::Tdx,
            Self::Sim => TeeType::Sim,
        }
    }

    /// Parses a `--format` value; `auto` yields `None`.
    pub fn parse_flag(s: &str) -> Result<Option<Self>, AttestError> {
        match s {
            "auto" => Ok(None),
            "nitro" => Ok(Some(Self::Nitro)),
            "sev-snp" | "snp" => Ok(Some(Self::SevSnp)),
            "sgx" => Ok(Some(Self::Sgx)),
            "tdx" => Ok(Some(Self::Tdx)),
            "sim" => Ok(Some(Self::Sim)),
            other => Err(AttestError::Unsupported(format!(
                "format `{other}` (expected auto, nitro, sev-snp, sgx, tdx or sim)"
            ))),
        }
    }
}

/// Decodes file contents that may be raw binary, hex text or base64 text.
///
/// Text is recognised only when every byte is in the encoding's alphabet (whitespace
/// allowed); hex wins over base64 when both fit. Anything else is taken as raw bytes.
pub fn decode_text_or_binary(raw: &[u8]) -> Vec<u8> {
    let compact: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return raw.to_vec();
    }
    let hex_body = compact.strip_prefix(b"0x").unwrap_or(&compact);
    if hex_body.len().is_multiple_of(2)
        && hex_body.iter().all(u8::is_ascii_hexdigit)
        && let Ok(bytes) = hex::decode(hex_body)
    {
        return bytes;
    }
    let b64_alphabet =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=');
    if compact.iter().all(b64_alphabet) {
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(&compact) {
                return bytes;
            }
        }
    }
    raw.to_vec()
}

/// Length of an SEV-SNP attestation report.
pub const SNP_REPORT_LEN: usize = 1184;

/// Guesses the evidence format from its first bytes.
pub fn detect_format(bytes: &[u8]) -> Result<Format, AttestError> {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // DCAP: version 3/4/5, attestation key type 2 (ECDSA-256) or 3, TEE type 0 (SGX) or 0x81 (TDX).
    if let (Some(version), Some(key_type), Some(tee)) = (u16_at(0), u16_at(2), u32_at(4))
        && matches!(version, 3..=5)
        && matches!(key_type, 2 | 3)
    {
        match tee {
            0 => return Ok(Format::Sgx),
            0x81 => return Ok(Format::Tdx),
            _ => {}
        }
    }
    // COSE_Sign1: a 4-element CBOR array, optionally behind tag 18.
    if bytes.first() == Some(&0x84) || bytes.starts_with(&[0xd2, 0x84]) {
        if crate::sim::SimEvidence::parse(bytes).is_ok() {
            return Ok(Format::Sim);
        }
        return Ok(Format::Nitro);
    }
    // SNP: report version 2.. with signature algorithm 1 (ECDSA P-384 with SHA-384).
    if bytes.len() >= SNP_REPORT_LEN && matches!(u32_at(0), Some(2..=7)) && u32_at(0x34) == Some(1)
    {
        return Ok(Format::SevSnp);
    }
    Err(AttestError::Unsupported(
        "cannot recognise the evidence format; pass --format nitro|sev-snp|sgx|tdx|sim".into(),
    ))
}

/// Strips trailing zero bytes after `used` bytes; any other trailing byte is an error.
pub(crate) fn allow_zero_padding(
    format: &'static str,
    bytes: &[u8],
    used: usize,
) -> Result<(), AttestError> {
    let tail = bytes.get(used..).unwrap_or_default();
    match tail.iter().position(|b| *b != 0) {
        None => Ok(()),
        Some(i) => Err(AttestError::malformed(
            format,
            format!(
                "{} trailing byte(s) after the {used}-byte body; non-zero byte at offset {}",
                tail.len(),
                used + i
            ),
        )),
    }
}
