//! Attestation policy: which verified claims are acceptable for a peer.
//!
//! A policy is YAML, validated once when loaded (unknown keys, bad hex, wrong measurement
//! lengths and unknown TCB statuses are errors with their location). Evaluation returns
//! every violated rule, not just the first.

use crate::claims::{TeeDetail, Verified};
use crate::tee::TeeType;
use crate::time_fmt::rfc3339;
use crate::x509::UnixSecs;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// TCB status names DCAP collateral can yield.
pub const TCB_STATUSES: [&str; 9] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
    "Revoked",
];

/// A policy file could not be loaded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The YAML does not parse or has unknown or mistyped keys (message includes line/column).
    #[error("policy: {0}")]
    Syntax(String),
    /// A value is well-typed but invalid; `at` is the key path.
    #[error("policy: {at}: {message}")]
    Invalid {
        /// Key path, e.g. `allowed_measurements.sev-snp[1]`.
        at: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The policy document as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    #[serde(default)]
    allow_debug: bool,
    #[serde(default)]
    allow_simulated: bool,
    #[serde(default)]
    allowed_tee_types: Option<Vec<TeeType>>,
    #[serde(default)]
    allowed_tcb_statuses: Option<Vec<String>>,
    #[serde(default)]
    allowed_measurements: Option<BTreeMap<TeeType, Vec<String>>>,
    #[serde(default)]
    max_age_seconds: Option<u64>,
    #[serde(default)]
    min_svns: BTreeMap<String, u64>,
    #[serde(default)]
    report_data_prefix: Option<String>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    allow_debug: bool,
    allow_simulated: bool,
    tee_types: BTreeSet<TeeType>,
    tcb_statuses: BTreeSet<String>,
    measurements: Option<BTreeMap<TeeType, BTreeSet<Vec<u8>>>>,
    max_age_seconds: Option<u64>,
    min_svns: BTreeMap<String, u64>,
    report_data_prefix: Option<Vec<u8>>,
    digest: [u8; 32],
}

/// One rule a verified result broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Policy key that was violated (e.g. `allow_debug`).
    pub rule: &'static str,
    /// Human explanation with the offending value.
    pub message: String,
}

/// Measurement length in bytes for each TEE type.
fn measurement_len(tee: TeeType) -> usize {
    match tee {
        TeeType::Sgx => 32,
        TeeType::Sim | TeeType::Nitro | TeeType::SevSnp | TeeType::Tdx => 48,
    }
}

fn invalid(at: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        at: at.into(),
        message: message.into(),
    }
}

impl Policy {
    /// Parses and validates a YAML policy.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        let doc: PolicyDoc = if text.trim().is_empty() {
            PolicyDoc::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?
        };
        Self::from_doc(doc)
    }

    fn from_doc(doc: PolicyDoc) -> Result<Self, PolicyError> {
        let tee_types: BTreeSet<TeeType> = match &doc.allowed_tee_types {
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "allowed_tee_types",
                    "is empty: nothing could ever be accepted",
                ));
            }
            Some(list) => list.iter().copied().collect(),
            None => [TeeType::Nitro, TeeType::SevSnp, TeeType::Sgx, TeeType::Tdx]
                .into_iter()
                .chain(doc.allow_simulated.then_some(TeeType::Sim))
                .collect(),
        };
        if tee_types.contains(&TeeType::Sim) && !doc.allow_simulated {
            return Err(invalid(
                "allowed_tee_types",
                "lists `sim` but `allow_simulated` is not true; the simulated TEE has no hardware protection and must be allowed explicitly",
            ));
        }
        let tcb_statuses: BTreeSet<String> = match &doc.allowed_tcb_statuses {
            None => BTreeSet::from(["UpToDate".to_owned()]),
            Some(list) => {
                for (i, s) in list.iter().enumerate() {
                    if !TCB_STATUSES.contains(&s.as_str()) {
                        return Err(invalid(
                            format!("allowed_tcb_statuses[{i}]"),
                            format!(
                                "unknown TCB status `{s}` (known: {})",
                                TCB_STATUSES.join(", ")
                            ),
                        ));
                    }
                }
                list.iter().cloned().collect()
            }
        };
        let measurements = match &doc.allowed_measurements {
            None => None,
            Some(map) => {
                let mut out = BTreeMap::new();
                for (tee, values) in map {
                    let mut set = BTreeSet::new();
                    for (i, value) in values.iter().enumerate() {
                        let at = format!("allowed_measurements.{tee}[{i}]");
                        let bytes = hex::decode(value.trim_start_matches("0x"))
                            .map_err(|e| invalid(&at, format!("not hex: {e}")))?;
                        if bytes.len() != measurement_len(*tee) {
                            return Err(invalid(
                                &at,
                                format!(
                                    "{tee} measurements are {} bytes, this is {}",
                                    measurement_len(*tee),
                                    bytes.len()
                                ),
                            ));
                        }
                        set.insert(bytes);
                    }
                    out.insert(*tee, set);
                }
                Some(out)
            }
        };
        if doc.max_age_seconds == Some(0) {
            return Err(invalid("max_age_seconds", "must be positive"));
        }
        let report_data_prefix = match &doc.report_data_prefix {
            None => None,
            Some(h) => {
                let bytes = hex::decode(h.trim_start_matches("0x"))
                    .map_err(|e| invalid("report_data_prefix", format!("not hex: {e}")))?;
                if bytes.is_empty() || bytes.len() > 64 {
                    return Err(invalid("report_data_prefix", "must be 1 to 64 bytes"));
                }
                Some(bytes)
            }
        };
        let canonical = serde_json::to_vec(&doc).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        Ok(Self {
            allow_debug: doc.allow_debug,
            allow_simulated: doc.allow_simulated,
            tee_types,
            tcb_statuses,
            measurements,
            max_age_seconds: doc.max_age_seconds,
            min_svns: doc.min_svns,
            report_data_prefix,
            digest: Sha256::digest(&canonical).into(),
        })
    }

    /// The measurement allowlist as hex, sorted (`None`: any measurement is accepted).
    pub fn allowed_measurements_hex(&self) -> Option<Vec<String>> {
        self.measurements.as_ref().map(|by_tee| {
            let mut all: Vec<String> = by_tee.values().flatten().map(hex::encode).collect();
            all.sort();
            all.dedup();
            all
        })
    }

    /// Whether `measurement` (hex) is on the allowlist (true when there is none).
    pub fn allows_measurement_hex(&self, measurement: &str) -> bool {
        self.allowed_measurements_hex()
            .is_none_or(|all| all.iter().any(|m| m.eq_ignore_ascii_case(measurement)))
    }

    /// SHA-256 of the canonical form; changes whenever the policy's meaning may change.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Requires `report_data` to start with `prefix` (channel binding), replacing any prefix set.
    pub fn with_report_data_prefix(mut self, prefix: &[u8]) -> Self {
        self.report_data_prefix = Some(prefix.to_vec());
        let mut h = Sha256::new();
        h.update(self.digest);
        h.update(b"report_data_prefix");
        h.update(prefix);
        self.digest = h.finalize().into();
        self
    }

    /// Checks authenticated claims at time `now`; returns every violated rule (empty = accepted).
    pub fn evaluate(&self, verified: &Verified, now: UnixSecs) -> Vec<Violation> {
        let c = verified.claims();
        let mut v = Vec::new();
        let mut add = |rule: &'static str, message: String| v.push(Violation { rule, message });
        if !self.tee_types.contains(&c.tee) {
            add(
                "allowed_tee_types",
                format!("TEE type {} is not allowed", c.tee.label()),
            );
        }
        if c.tee == TeeType::Sim && !self.allow_simulated {
            add(
                "allow_simulated",
                "simulated TEE (no hardware protection) is not allowed".into(),
            );
        }
        if c.debug && !self.allow_debug {
            add(
                "allow_debug",
                format!("{} evidence is from a debug-mode environment", c.tee),
            );
        }
        if let Some(status) = &c.tcb_status
            && !self.tcb_statuses.contains(status)
        {
            let advisories = if c.advisory_ids.is_empty() {
                String::new()
            } else {
                format!(" (advisories: {})", c.advisory_ids.join(", "))
            };
            add(
                "allowed_tcb_statuses",
                format!("TCB status {status} is not accepted{advisories}"),
            );
        }
        if let Some(allow) = &self.measurements {
            match allow.get(&c.tee) {
                None => add(
                    "allowed_measurements",
                    format!(
                        "no measurements are allowed for {}; {} is not listed",
                        c.tee,
                        c.measurement.to_hex()
                    ),
                ),
                Some(set) if !set.contains(&c.measurement.0) => add(
                    "allowed_measurements",
                    format!(
                        "{} measurement {} is not on the allowlist",
                        c.tee,
                        c.measurement.to_hex()
                    ),
                ),
                Some(_) => {}
            }
        }
        if let (Some(max), Some(ts)) = (self.max_age_seconds, c.timestamp) {
            let age = now.saturating_sub(ts);
            if age > i64::try_from(max).unwrap_or(i64::MAX) {
                add(
                    "max_age_seconds",
                    format!("evidence from {} is {age} s old (max {max} s)", rfc3339(ts)),
                );
            } else if ts > now.saturating_add(60) {
                add(
                    "max_age_seconds",
                    format!("evidence timestamp {} is in the future", rfc3339(ts)),
                );
            }
        }
        for (name, min) in &self.min_svns {
            match c.svns.get(name) {
                Some(have) if have >= min => {}
                Some(have) => add("min_svns", format!("{name} is {have}, minimum is {min}")),
                None => add("min_svns", format!("{} evidence has no {name}", c.tee)),
            }
        }
        if let Some(prefix) = &self.report_data_prefix {
            let bound = match (&c.report_data, &c.detail) {
                (Some(rd), _) => Some(&rd.0),
                (None, TeeDetail::Nitro(n)) => n.user_data.as_ref().map(|u| &u.0),
                _ => None,
            };
            match bound {
                Some(data) if data.starts_with(prefix) => {}
                Some(data) => add(
                    "report_data_prefix",
                    format!(
                        "report data {} does not start with the required {}",
                        hex::encode(&data[..data.len().min(prefix.len())]),
                        hex::encode(prefix)
                    ),
                ),
                None => add(
                    "report_data_prefix",
                    "evidence carries no report data to bind".into(),
                ),
            }
        }
        v
    }
}
