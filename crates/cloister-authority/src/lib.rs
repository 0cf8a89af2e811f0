//! Who decides (ARCHITECTURE §11): identities that sign, the signed requests they send through
//! the untrusted gateway, and the function manifests keyvault releases secrets by.
//!
//! - [`identity`]: an Ed25519 key pair made by the CLI and kept 0600 on the user's machine;
//!   the platform only ever sees the public half.
//! - [`request`]: every authorising request is a COSE_Sign1 (RFC 9052, `EdDSA`) over
//!   deterministic CBOR (RFC 8949 §4.2) binding a domain tag, keyvault's instance key, an
//!   expiry and a nonce. [`request::verify`] is the only way to get a [`request::Verified`].
//! - [`manifest`]: what a function version is (code hash, entrypoint, declared secrets, ...).
//! - [`ops`]: the other signed operations (secret writes, identity grants, activation).
//!
//! The format is documented in `docs/MANIFESTS.md` so other clients can produce and check it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod canonical;
pub mod error;
pub mod identity;
pub mod manifest;
pub mod ops;
pub mod request;

pub use error::AuthorityError;
pub use identity::{Identity, IdentityId};
pub use manifest::{Manifest, ManifestLimits};
pub use request::{Body, SignOptions, Verified, sign, verify};
