//! Per-function resource limits and the server-wide maxima they are checked against.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

/// Resource limits of one function version, resolved and validated at deploy time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Wall-clock deadline of one invocation, in milliseconds.
    pub timeout_ms: u64,
    /// Memory available to the function's JavaScript heap, in MiB.
    pub memory_mb: u32,
}

/// Limits as requested by a client: every field optional, defaults applied by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestedLimits {
    /// Requested deadline in milliseconds.
    #[serde(default, deserialize_with = "crate::json_int::opt_u64")]
    pub timeout_ms: Option<u64>,
    /// Requested memory in MiB.
    #[serde(default, deserialize_with = "crate::json_int::opt_u32")]
    pub memory_mb: Option<u32>,
}

/// Server-wide defaults and maxima, configured once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerLimits {
    /// Deadline used when a deploy names none.
    pub default_timeout_ms: u64,
    /// Largest deadline a deploy may request.
    pub max_timeout_ms: u64,
    /// Memory used when a deploy names none.
    pub default_memory_mb: u32,
    /// Largest memory a deploy may request.
    pub max_memory_mb: u32,
    /// Largest accepted source code, in bytes.
    pub max_code_bytes: usize,
    /// Largest accepted invocation parameters, in bytes of JSON.
    pub max_input_bytes: usize,
    /// Largest accepted function result, in bytes of JSON.
    pub max_output_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            default_timeout_ms: 5_000,
            max_timeout_ms: 60_000,
            default_memory_mb: 64,
            max_memory_mb: 512,
            max_code_bytes: 1 << 20,
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
        }
    }
}

/// Smallest deadline a function may ask for.
pub const MIN_TIMEOUT_MS: u64 = 10;
/// Smallest memory limit a function may ask for.
pub const MIN_MEMORY_MB: u32 = 4;

impl ServerLimits {
    /// Applies defaults and checks a deploy's requested limits against the server maxima.
    pub fn resolve(&self, req: Option<RequestedLimits>) -> Result<Limits, ApiError> {
        let req = req.unwrap_or_default();
        let timeout_ms = req.timeout_ms.unwrap_or(self.default_timeout_ms);
        let memory_mb = req.memory_mb.unwrap_or(self.default_memory_mb);
        if !(MIN_TIMEOUT_MS..=self.max_timeout_ms).contains(&timeout_ms) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "limits.timeoutMs must be between {MIN_TIMEOUT_MS} and {} (got {timeout_ms})",
                    self.max_timeout_ms
                ),
            ));
        }
        if !(MIN_MEMORY_MB..=self.max_memory_mb).contains(&memory_mb) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "limits.memoryMb must be between {MIN_MEMORY_MB} and {} (got {memory_mb})",
                    self.max_memory_mb
                ),
            ));
        }
        Ok(Limits {
            timeout_ms,
            memory_mb,
        })
    }
}

/// Largest secret value, in bytes (any bytes: text reaches code as a string, anything else as
/// a `Uint8Array`). keyvault refuses larger ones with `payload_too_large`.
pub const MAX_SECRET_VALUE_BYTES: usize = 64 * 1024;

/// Most bytes (names and values) the declared secrets of one function may hold together:
/// keyvault refuses to release more (`payload_too_large`), so that they fit one message to
/// the executor and one frame to its worker.
pub const MAX_RELEASED_SECRET_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_maxima_are_enforced() {
        let s = ServerLimits::default();
        assert_eq!(
            s.resolve(None).unwrap(),
            Limits {
                timeout_ms: 5000,
                memory_mb: 64
            }
        );
        let r = RequestedLimits {
            timeout_ms: Some(250),
            memory_mb: None,
        };
        assert_eq!(s.resolve(Some(r)).unwrap().timeout_ms, 250);
        let too_long = RequestedLimits {
            timeout_ms: Some(60_001),
            memory_mb: None,
        };
        assert_eq!(
            s.resolve(Some(too_long)).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let too_small = RequestedLimits {
            timeout_ms: None,
            memory_mb: Some(1),
        };
        assert_eq!(
            s.resolve(Some(too_small)).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }
}
