//! The simulated TEE (`sim`): evidence for machines without TEE hardware.
//!
//! Nothing is simulated but the hardware root of trust. A "sim platform" key (P-384, with a
//! self-signed root certificate) stands in for the CPU's attestation key; clients pin the
//! root's SHA-256 fingerprint. Evidence is a COSE_Sign1 (ES384) over a CBOR map:
//!
//! | key | value |
//! |---|---|
//! | `v` | 1 |
//! | `tee` | `"sim"` |
//! | `role` | role that produced it (`keyvault`, `executor`, ...) |
//! | `measurement` | 48 bytes: SHA-384 of the executable, role and config digest ([`measure`]) |
//! | `report_data` | 64 bytes chosen by the caller (e.g. a TLS exporter binding) |
//! | `timestamp_ms` | production time, ms since the Unix epoch |
//! | `platform_cert` | DER of the sim platform root that signed it |
//!
//! Every output that shows such evidence says `sim (no hardware protection)`, and policy
//! accepts it only with `allow_simulated: true`.

mod evidence;
mod measure;
mod platform;

pub use evidence::{SimEvidence, SimVerifier};
pub use measure::{MEASUREMENT_LEN, measure, measure_file};
pub use platform::{PLATFORM_FILE, SimAttester, SimPlatform};
