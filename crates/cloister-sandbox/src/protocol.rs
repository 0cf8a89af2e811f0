//! Messages exchanged between the executor supervisor and one worker process.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// First message to a fresh worker: the function it will serve for its whole life.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Load {
    /// JavaScript source.
    pub code: String,
    /// Name of the top-level handler function (already validated as an identifier).
    pub entrypoint: String,
    /// The file name stack traces give the code (the deployed file's).
    #[serde(default = "default_source_name")]
    pub source_name: String,
    /// Non-secret configuration, frozen as `context.env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Keys the manifest declares: `context.sign` and `context.publicKey` exist only when
    /// there are some (the supervisor checks every request again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Whether the manifest has an egress policy: the global `fetch` exists only then (the
    /// supervisor checks every request again; nothing is ambient).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub egress: bool,
    /// JavaScript heap limit in bytes.
    pub memory_bytes: usize,
    /// Native stack budget for the engine in bytes.
    pub stack_bytes: usize,
    /// Deadline for evaluating the top-level code while loading, in milliseconds.
    pub load_timeout_ms: u64,
    /// Largest JSON result accepted, in bytes.
    pub max_output_bytes: usize,
}

/// The file name stack traces give code that names none.
pub const DEFAULT_SOURCE_NAME: &str = "function.js";

fn default_source_name() -> String {
    DEFAULT_SOURCE_NAME.to_owned()
}

/// Facts about the invocation exposed to the handler as `context`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationContext {
    /// Function name.
    pub function_name: String,
    /// Function id.
    pub function_id: String,
    /// Version being run.
    pub version: u32,
    /// Unique execution id.
    pub execution_id: String,
    /// Time budget of this call in milliseconds.
    pub timeout_ms: u64,
}

/// A request to run the handler once.
#[derive(Debug, Serialize, Deserialize)]
pub struct Invoke {
    /// JSON parameters.
    pub params: Box<RawValue>,
    /// Declared secrets whose values are UTF-8, by the name the function sees (strings).
    pub secrets: BTreeMap<String, String>,
    /// Declared secrets whose values are other bytes, base64 (a `Uint8Array` each in code):
    /// a JSON array of numbers would take four bytes a byte.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_secrets: BTreeMap<String, String>,
    /// Context facts.
    pub context: InvocationContext,
    /// Egress-only secrets by name, each with the reference `secrets.ref(name)` returns for
    /// this invocation (the supervisor substitutes the value on the wire; the worker never
    /// holds it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_refs: BTreeMap<String, String>,
}

/// Supervisor → worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Load the function (first message only).
    Load(Load),
    /// Run the handler.
    Invoke(Invoke),
    /// The answer to the running function's request.
    Answer(crate::host::HostAnswer),
}

/// Why a load failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadError {
    /// Human message (e.g. the SyntaxError text).
    pub message: String,
    /// 1-based line of the error in the source, when known.
    pub line: Option<u32>,
    /// 1-based column of the error in the source, when known.
    pub column: Option<u32>,
}

/// The classification of a failed invocation is the public [`ErrorCode`] itself
/// (`function_timeout`, `function_memory_limit`, `function_error`, `function_invalid_output`):
/// it crosses the worker, executor and gateway unchanged, as its wire string.
pub use cloister_types::ErrorCode;

/// A failed invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The public error code.
    pub code: ErrorCode,
    /// Human message.
    pub message: String,
    /// JavaScript stack, when there is one.
    pub stack: Option<String>,
    /// The stable code the thrown error carried as its `code` (a refused host call's, such
    /// as `key_not_declared`), when it is one: the API shows it as `details.code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<ErrorCode>,
}

/// Result of one invocation.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// JSON result text, or the failure.
    pub result: Result<Box<RawValue>, Failure>,
    /// `context.log` lines the worker dropped at its limits (the lines it kept went to the
    /// supervisor as [`crate::host::HostRequest::Log`] notices while the call ran).
    pub logs_dropped: usize,
    /// True when the worker hit a limit and exits after this reply.
    pub retire: bool,
}

/// What a worker reports once its function is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Whether Landlock denies this worker every filesystem access.
    pub filesystem_isolated: bool,
    /// Which identity the worker runs as after dropping its privileges.
    pub privileges: Privileges,
}

/// Which identity a hardened worker ended with; every capability set is empty in all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Privileges {
    /// Started as root, the worker switched to its own unprivileged uid and gid.
    DedicatedUid,
    /// Started unprivileged, the worker entered a user namespace with no mapping to root.
    UserNamespace,
    /// Started unprivileged where user namespaces are refused: the executor's uid remains.
    ExecutorUid,
}

/// Worker → supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// Load result.
    Loaded(Result<Ready, LoadError>),
    /// Invocation result.
    Done(Outcome),
    /// A request or notice of the running function.
    Call(crate::host::HostCall),
}
