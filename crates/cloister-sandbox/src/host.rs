//! Host calls: how a running function asks its supervisor for a capability and waits for
//! the answer (docs/CAPABILITIES.md).
//!
//! The worker has no sockets and no files; the channel to its supervisor is its only way out.
//! While an invocation runs, the worker may send [`HostCall`] frames; the supervisor answers
//! each request (never a notice) with a [`HostAnswer`] carrying the same id before the worker
//! continues. Which requests a function may make is composed by the supervisor from its
//! manifest: a request for a capability the manifest does not grant is refused, never
//! served. The supervisor enforces every limit here itself (the worker is not trusted to).

use serde::{Deserialize, Serialize};

use cloister_types::ErrorCode;
pub use cloister_types::SignHash;
pub use cloister_types::egress::{FetchRequest, FetchResponse, Redirect};

/// Most `context.log` lines kept per invocation.
pub const MAX_LOG_LINES: usize = 100;
/// Longest kept log line, in bytes.
pub const MAX_LOG_LINE_BYTES: usize = 4096;
/// Most log bytes kept per invocation.
pub const MAX_LOG_BYTES: usize = 64 * 1024;
/// Most requests (calls that are answered) one invocation may make.
pub const MAX_REQUESTS_PER_INVOCATION: u32 = 256;
/// Most bytes of requests (their frames) one invocation may send.
pub const MAX_REQUEST_BYTES_PER_INVOCATION: usize = 4 << 20;

/// One frame from a running function to its supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCall {
    /// The worker's number for this call, echoed by the answer (unused for notices).
    pub id: u32,
    /// What is asked.
    pub request: HostRequest,
}

/// What a function can ask of its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostRequest {
    /// A `context.log` line: a notice, not answered.
    Log {
        /// The line, already truncated by the worker (the supervisor checks again).
        line: String,
    },
    /// Sign `message` with the declared key `key` (`context.sign`).
    Sign {
        /// The key's name in the function's manifest.
        key: String,
        /// The message (or, with [`SignHash::Prehashed`], its 32-byte digest), base64.
        message: String,
        /// How the message is hashed before signing.
        hash: SignHash,
    },
    /// The public half of the declared key `key` (`context.publicKey`).
    PublicKey {
        /// The key's name in the function's manifest.
        key: String,
    },
    /// An outbound HTTP request (`fetch`), made by the supervisor under the manifest's
    /// egress policy.
    Fetch(FetchRequest),
}

impl HostRequest {
    /// Whether the worker waits for an answer (every request but a log line).
    pub fn is_answered(&self) -> bool {
        !matches!(self, Self::Log { .. })
    }

    /// The capability the request needs, as the manifest names it.
    pub fn capability(&self) -> &'static str {
        match self {
            Self::Log { .. } => "log",
            Self::Sign { .. } | Self::PublicKey { .. } => "keys",
            Self::Fetch(_) => "egress",
        }
    }
}

/// The supervisor's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAnswer {
    /// The id of the call answered.
    pub id: u32,
    /// The value, or why the request was refused.
    pub result: Result<HostValue, HostRefusal>,
}

/// What an answered request returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostValue {
    /// A signature.
    Signature {
        /// The signature bytes, base64 (encoding per algorithm: docs/CAPABILITIES.md).
        signature: String,
        /// The key's algorithm.
        algorithm: String,
        /// The key version that signed.
        key_version: u32,
        /// ECDSA over secp256k1: the recovery id (0 or 1) of the low-S signature.
        recovery_id: Option<u8>,
    },
    /// An HTTP response.
    Response(FetchResponse),
    /// A public key.
    PublicKey {
        /// The public key bytes, base64 (encoding per algorithm: docs/CAPABILITIES.md).
        public_key: String,
        /// The key's algorithm.
        algorithm: String,
        /// The key version.
        key_version: u32,
    },
}

/// Why a request was refused: thrown in the function as an error with this `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRefusal {
    /// The stable error code (`error.code` in the function).
    pub code: ErrorCode,
    /// What to tell the function.
    pub message: String,
}

impl HostRefusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The worker's end of host calls, given to the engine.
pub trait Host {
    /// Sends a notice (a log line); nothing comes back.
    fn notify(&self, request: HostRequest);
    /// Sends a request and waits for its answer.
    fn call(&self, request: HostRequest) -> Result<HostValue, HostRefusal>;
}

/// A host in the same process, for tests, examples and tools that run the engine directly:
/// it keeps log lines and answers requests with a function given to it (by default, refuses
/// every one with `capability_not_granted`).
pub struct LocalHost {
    lines: std::cell::RefCell<Vec<String>>,
    answer: AnswerFn,
}

type AnswerFn = Box<dyn Fn(&HostRequest) -> Result<HostValue, HostRefusal>>;

impl Default for LocalHost {
    fn default() -> Self {
        Self::answering(|r| {
            Err(HostRefusal::new(
                ErrorCode::CapabilityNotGranted,
                format!("no `{}` capability here", r.capability()),
            ))
        })
    }
}

impl LocalHost {
    /// A host that answers requests with `answer`.
    pub fn answering(
        answer: impl Fn(&HostRequest) -> Result<HostValue, HostRefusal> + 'static,
    ) -> Self {
        Self {
            lines: Default::default(),
            answer: Box::new(answer),
        }
    }

    /// The log lines received so far, taken (the next call starts empty).
    pub fn take_lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.borrow_mut())
    }
}

impl Host for LocalHost {
    fn notify(&self, request: HostRequest) {
        if let HostRequest::Log { line } = request {
            self.lines.borrow_mut().push(line);
        }
    }

    fn call(&self, request: HostRequest) -> Result<HostValue, HostRefusal> {
        (self.answer)(&request)
    }
}

/// Bounded `context.log` lines of one invocation: kept by the supervisor from the worker's
/// notices, and counted by the worker so that it converts and sends nothing beyond the limits.
#[derive(Debug, Default)]
pub struct LogLines {
    lines: Vec<String>,
    bytes: usize,
    dropped: usize,
}

impl LogLines {
    /// Bytes the next line may have, or `None` (counted as dropped) when the limits are
    /// reached.
    pub fn room(&mut self) -> Option<usize> {
        if self.lines_full() {
            self.dropped += 1;
            return None;
        }
        Some(MAX_LOG_LINE_BYTES.min(MAX_LOG_BYTES - self.bytes))
    }

    fn lines_full(&self) -> bool {
        self.lines.len() >= MAX_LOG_LINES || self.bytes >= MAX_LOG_BYTES
    }

    /// Keeps `line`, cut to the room left, or counts it as dropped.
    pub fn push(&mut self, mut line: String) {
        if self.lines_full() {
            self.dropped += 1;
            return;
        }
        truncate_utf8(
            &mut line,
            MAX_LOG_LINE_BYTES.min(MAX_LOG_BYTES - self.bytes),
        );
        self.bytes += line.len();
        self.lines.push(line);
    }

    /// Counts `n` lines the worker dropped before sending them.
    pub fn add_dropped(&mut self, n: usize) {
        self.dropped = self.dropped.saturating_add(n);
    }

    /// How many lines were dropped.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// The kept lines, with a last line saying how many were dropped, if any.
    pub fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.lines.push(format!(
                "[{} log lines dropped: limit reached]",
                self.dropped
            ));
        }
        self.lines
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_bounded_in_count_bytes_and_line_length() {
        let mut l = LogLines::default();
        l.push("x".repeat(MAX_LOG_LINE_BYTES * 2));
        assert_eq!(l.lines[0].len(), MAX_LOG_LINE_BYTES + '…'.len_utf8());
        for _ in 0..MAX_LOG_LINES * 2 {
            l.push("y".into());
        }
        l.add_dropped(5);
        let dropped = l.dropped();
        assert_eq!(dropped, MAX_LOG_LINES + 1 + 5);
        let lines = l.finish();
        assert_eq!(lines.len(), MAX_LOG_LINES + 1);
        assert_eq!(
            lines.last().map(String::as_str),
            Some(format!("[{dropped} log lines dropped: limit reached]").as_str())
        );
    }

    #[test]
    fn only_log_lines_go_unanswered_and_each_request_names_its_capability() {
        let log = HostRequest::Log { line: "a".into() };
        let sign = HostRequest::Sign {
            key: "k".into(),
            message: String::new(),
            hash: SignHash::default(),
        };
        assert!(!log.is_answered());
        assert!(sign.is_answered());
        assert_eq!(sign.capability(), "keys");
        assert_eq!(SignHash::parse("keccak256"), Some(SignHash::Keccak256));
        assert_eq!(SignHash::parse("sha3"), None);
    }
}
