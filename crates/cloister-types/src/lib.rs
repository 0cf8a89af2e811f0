//! Shared vocabulary of Cloister: stable error codes, public wire types, names and limits.
//!
//! Everything that crosses a process or API boundary is defined here once, validated once at
//! the edge, and then passed around as a typed value.

pub mod binding;
pub mod egress;
pub mod error;
pub mod fleet;
pub mod function_env;
pub mod hash;
pub mod json_int;
pub mod key_limits;
pub mod limits;
pub mod names;
pub mod receipt;
pub mod sealed;
pub mod trusted;
pub mod wire;

pub use error::{ApiError, ErrorCode};
pub use hash::{SignHash, code_hash};
pub use key_limits::{KeyLimits, KeyOperation, KeyRate};
pub use limits::{Limits, ServerLimits};
pub use names::{
    DeclaredSecretsError, Entrypoint, Environment, FunctionName, KeyName, KeyRef,
    MAX_DECLARED_KEYS, MAX_DECLARED_SECRETS, NameError, SecretPath, SecretRef, SourceName,
    namespace_of,
};
pub use wire::Role;
