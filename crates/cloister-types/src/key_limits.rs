//! Per-key limits a manifest sets on a function's use of a key (docs/CAPABILITIES.md): which
//! operations, which hashes, how large a message, how often, and the prefix (domain tag)
//! every message must begin with. Defined once: the deploy request carries them, the
//! owner-signed manifest binds them, and keyvault enforces them on every use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::SignHash;

/// Most bytes keyvault signs in one request, whatever the limits say.
pub const MAX_SIGN_MESSAGE_BYTES: u32 = 64 * 1024;
/// Longest prefix (domain tag) a key's limits may require, in bytes.
pub const MAX_PREFIX_BYTES: usize = 256;
/// Shortest prefix, in bytes: with `sha256`, keyvault signs SHA-256(message), so a protocol
/// that signs SHA-256(SHA-256(P)) (Bitcoin) accepts it for any P whose SHA-256 begins with
/// the prefix, found by brute force in about 2^(8·length) tries. 16 bytes put that at 2^128.
pub const MIN_PREFIX_BYTES: usize = 16;
/// Longest rate window, in seconds (one day).
pub const MAX_RATE_WINDOW_SECONDS: u32 = 86_400;
/// Most uses a rate may allow per window.
pub const MAX_RATE_COUNT: u32 = 1_000_000;

/// An operation a function may perform with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum KeyOperation {
    /// `context.sign`.
    Sign,
    /// `context.publicKey`.
    PublicKey,
}

impl KeyOperation {
    /// Every operation.
    pub const ALL: [KeyOperation; 2] = [Self::Sign, Self::PublicKey];

    /// The stable name (`sign`, `publicKey`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sign => "sign",
            Self::PublicKey => "publicKey",
        }
    }

    /// The operation named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// How often a key may sign: `count` signatures per `seconds`, as a token bucket that holds
/// `count` and refills evenly over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRate {
    /// Signatures per window (also the burst).
    pub count: u32,
    /// The window in seconds.
    pub seconds: u32,
}

impl KeyRate {
    /// Parses `N/s`, `N/min`, `N/h`, `N/d` or `N/<seconds>s` (`10/min`, `1/30s`).
    pub fn parse(s: &str) -> Result<Self, KeyLimitsError> {
        let bad =
            || KeyLimitsError::new(format!("rate {s:?}: write N/s, N/min, N/h, N/d or N/30s"));
        let (count, window) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let seconds = match window.trim() {
            "s" | "sec" => 1,
            "min" | "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            w => w
                .strip_suffix('s')
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?,
        };
        let rate = Self { count, seconds };
        rate.check()?;
        Ok(rate)
    }

    fn check(&self) -> Result<(), KeyLimitsError> {
        if self.count == 0 || self.count > MAX_RATE_COUNT {
            return Err(KeyLimitsError::new(format!(
                "rate count {} must be 1-{MAX_RATE_COUNT}",
                self.count
            )));
        }
        if self.seconds == 0 || self.seconds > MAX_RATE_WINDOW_SECONDS {
            return Err(KeyLimitsError::new(format!(
                "rate window {} s must be 1-{MAX_RATE_WINDOW_SECONDS} s",
                self.seconds
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for KeyRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.count, self.seconds)
    }
}

/// The limits on one declared key. Every field is optional; an absent field leaves only
/// keyvault's own rules (both operations, every hash the algorithm takes, 64 KiB, no rate,
/// no prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyLimits {
    /// The operations the function may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<KeyOperation>>,
    /// The hashes `sign` may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Vec<SignHash>>,
    /// Most bytes one message may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u32>,
    /// How often the key may sign for this function (all its executors together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<KeyRate>,
    /// Text (UTF-8) every signed message must begin with: a domain tag, so a signature made
    /// for this function cannot pass for one made for another purpose. Incompatible with the
    /// `prehashed` hash, whose message keyvault cannot read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Why a key use is outside its limits: each reason has its own stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLimitViolation {
    /// The operation (or the hash) is not among those allowed.
    #[error("{0}")]
    OperationNotAllowed(String),
    /// The message is larger than allowed.
    #[error("the message has {bytes} bytes; this key signs at most {max} for this function")]
    MessageTooLarge {
        /// The message's size.
        bytes: usize,
        /// The cap.
        max: u32,
    },
    /// The message does not begin with the required prefix.
    #[error("the message does not begin with this key's required prefix (domain tag) {0:?}")]
    DomainTagMissing(String),
}

impl KeyLimitViolation {
    /// The stable code of this refusal.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            Self::OperationNotAllowed(_) => crate::ErrorCode::KeyOperationNotAllowed,
            Self::MessageTooLarge { .. } => crate::ErrorCode::KeyMessageTooLarge,
            Self::DomainTagMissing(_) => crate::ErrorCode::KeyDomainTagMissing,
        }
    }
}

impl KeyLimits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks that the limits make sense (each list non-empty and without repeats, caps in
    /// range, no prefix with `prehashed`).
    pub fn validate(&self) -> Result<(), KeyLimitsError> {
        if let Some(ops) = &self.operations {
            no_repeats("operations", ops)?;
        }
        if let Some(hashes) = &self.hashes {
            no_repeats("hashes", hashes)?;
            if self.prefix.is_some() && hashes.contains(&SignHash::Prehashed) {
                return Err(KeyLimitsError::new(
                    "a key with a prefix cannot allow the prehashed hash: keyvault must read the message to check its prefix".into(),
                ));
            }
        }
        if let Some(max) = self.max_message_bytes
            && (max == 0 || max > MAX_SIGN_MESSAGE_BYTES)
        {
            return Err(KeyLimitsError::new(format!(
                "maxMessageBytes {max} must be 1-{MAX_SIGN_MESSAGE_BYTES}"
            )));
        }
        if let Some(rate) = &self.rate {
            rate.check()?;
        }
        if let Some(p) = &self.prefix
            && !(MIN_PREFIX_BYTES..=MAX_PREFIX_BYTES).contains(&p.len())
        {
            return Err(KeyLimitsError::new(format!(
                "prefix must have {MIN_PREFIX_BYTES}-{MAX_PREFIX_BYTES} bytes (it has {}): a \
                 shorter one can be met by brute force through a double-hash protocol",
                p.len()
            )));
        }
        Ok(())
    }

    /// Whether `op` is allowed.
    pub fn allows(&self, op: KeyOperation) -> Result<(), KeyLimitViolation> {
        match &self.operations {
            Some(ops) if !ops.contains(&op) => Err(KeyLimitViolation::OperationNotAllowed(
                format!("this function may not use {:?} with this key", op.as_str()),
            )),
            _ => Ok(()),
        }
    }

    /// Whether signing `message` with `hash` is within the limits (rates are counted by the
    /// caller, which keeps their state).
    pub fn check_sign(&self, message: &[u8], hash: SignHash) -> Result<(), KeyLimitViolation> {
        self.allows(KeyOperation::Sign)?;
        if let Some(hashes) = &self.hashes
            && !hashes.contains(&hash)
        {
            return Err(KeyLimitViolation::OperationNotAllowed(format!(
                "this function may not sign with hash {:?} with this key",
                hash.as_str()
            )));
        }
        let max = self.max_message_bytes.unwrap_or(MAX_SIGN_MESSAGE_BYTES);
        if message.len() > max as usize {
            return Err(KeyLimitViolation::MessageTooLarge {
                bytes: message.len(),
                max,
            });
        }
        if let Some(prefix) = &self.prefix {
            if hash == SignHash::Prehashed {
                return Err(KeyLimitViolation::OperationNotAllowed(
                    "a key with a required prefix does not sign prehashed digests".into(),
                ));
            }
            if !message.starts_with(prefix.as_bytes()) {
                return Err(KeyLimitViolation::DomainTagMissing(prefix.clone()));
            }
        }
        Ok(())
    }

    /// Sets one limit from its command-line form (`ops=sign,publicKey`,
    /// `hashes=keccak256`, `max-bytes=1024`, `rate=10/min`, `prefix=TEXT`).
    pub fn set(&mut self, setting: &str) -> Result<(), KeyLimitsError> {
        let (k, v) = setting.split_once('=').ok_or_else(|| {
            KeyLimitsError::new(format!(
                "{setting:?}: write ops=…, hashes=…, max-bytes=N, rate=N/min or prefix=TEXT"
            ))
        })?;
        match k {
            "ops" | "operations" => {
                let ops = v
                    .split(',')
                    .map(|o| {
                        KeyOperation::parse(o.trim()).ok_or_else(|| {
                            KeyLimitsError::new(format!(
                                "unknown operation {o:?}: use sign or publicKey"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.operations = Some(ops);
            }
            "hashes" => {
                let hashes = v
                    .split(',')
                    .map(|h| {
                        SignHash::parse(h.trim()).ok_or_else(|| {
                            KeyLimitsError::new(format!(
                                "unknown hash {h:?}: use sha256, keccak256 or prehashed"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.hashes = Some(hashes);
            }
            "max-bytes" | "maxMessageBytes" => {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| KeyLimitsError::new(format!("max-bytes {v:?} is not a number")))?;
                self.max_message_bytes = Some(n);
            }
            "rate" => self.rate = Some(KeyRate::parse(v)?),
            "prefix" => self.prefix = Some(v.to_owned()),
            other => {
                return Err(KeyLimitsError::new(format!(
                    "unknown key limit {other:?}: use ops, hashes, max-bytes, rate or prefix"
                )));
            }
        }
        Ok(())
    }
}

/// Checks a manifest's key limits: each names a declared key and is valid.
pub fn check_key_limits<S: AsRef<str>>(
    declared: &[S],
    limits: &BTreeMap<String, KeyLimits>,
) -> Result<(), KeyLimitsError> {
    for (name, l) in limits {
        if !declared.iter().any(|d| d.as_ref() == name) {
            return Err(KeyLimitsError::new(format!(
                "limits for key {name:?}, which the function does not declare"
            )));
        }
        l.validate()
            .map_err(|e| KeyLimitsError::new(format!("key {name:?}: {}", e.0)))?;
    }
    Ok(())
}

fn no_repeats<T: PartialEq + std::fmt::Debug>(
    what: &str,
    list: &[T],
) -> Result<(), KeyLimitsError> {
    if list.is_empty() {
        return Err(KeyLimitsError::new(format!(
            "{what} must list at least one (leave it out to allow all)"
        )));
    }
    for (i, x) in list.iter().enumerate() {
        if list[..i].contains(x) {
            return Err(KeyLimitsError::new(format!("{what} lists {x:?} twice")));
        }
    }
    Ok(())
}

/// Key limits that do not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key limits: {0}")]
pub struct KeyLimitsError(String);

impl KeyLimitsError {
    fn new(m: String) -> Self {
        Self(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_each_violation_with_its_own_code() {
        let l = KeyLimits {
            operations: Some(vec![KeyOperation::Sign]),
            hashes: Some(vec![SignHash::Sha256]),
            max_message_bytes: Some(24),
            rate: None,
            prefix: Some("app:v1:payments:".into()),
        };
        l.validate().unwrap();
        assert!(l.check_sign(b"app:v1:payments:5", SignHash::Sha256).is_ok());
        let code = |r: Result<(), KeyLimitViolation>| r.unwrap_err().code().as_str();
        assert_eq!(
            code(l.allows(KeyOperation::PublicKey)),
            "key_operation_not_allowed"
        );
        assert_eq!(
            code(l.check_sign(b"app:x", SignHash::Keccak256)),
            "key_operation_not_allowed"
        );
        assert_eq!(
            code(l.check_sign(b"app:v1:payments:012345678", SignHash::Sha256)),
            "key_message_too_large"
        );
        assert_eq!(
            code(l.check_sign(b"other:pay", SignHash::Sha256)),
            "key_domain_tag_missing"
        );
        // No limits: only keyvault's own cap.
        let none = KeyLimits::default();
        assert!(none.check_sign(&[0; 65536], SignHash::Prehashed).is_ok());
        assert_eq!(
            code(none.check_sign(&[0; 65537], SignHash::Sha256)),
            "key_message_too_large"
        );
    }

    #[test]
    fn a_prefix_never_lets_a_prehashed_digest_through() {
        let l = KeyLimits {
            prefix: Some("app:v1:payments:".into()),
            ..Default::default()
        };
        assert_eq!(
            l.check_sign(b"app:v1:payments:0000000000000000", SignHash::Prehashed)
                .unwrap_err()
                .code()
                .as_str(),
            "key_operation_not_allowed"
        );
        let bad = KeyLimits {
            prefix: Some("app:v1:payments:".into()),
            hashes: Some(vec![SignHash::Prehashed]),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn command_line_settings_parse_and_bad_ones_are_explained() {
        let mut l = KeyLimits::default();
        for s in [
            "ops=sign",
            "hashes=sha256,keccak256",
            "max-bytes=1024",
            "rate=10/min",
            "prefix=tx=v1:",
        ] {
            l.set(s).unwrap();
        }
        assert_eq!(
            l.rate,
            Some(KeyRate {
                count: 10,
                seconds: 60
            })
        );
        assert_eq!(l.prefix.as_deref(), Some("tx=v1:"));
        assert_eq!(KeyRate::parse("1/30s").unwrap().seconds, 30);
        for bad in [
            "ops=verify",
            "rate=0/s",
            "rate=5",
            "max-bytes=x",
            "size=3",
            "hashes=",
        ] {
            assert!(KeyLimits::default().set(bad).is_err(), "{bad}");
        }
        let mut big = KeyLimits::default();
        big.set("max-bytes=65537").unwrap();
        assert!(big.validate().is_err());
        let mut short = KeyLimits::default();
        short.set("prefix=app:").unwrap();
        assert!(
            short.validate().is_err(),
            "a 4-byte prefix can be brute-forced"
        );
        let mut dup = KeyLimits::default();
        dup.set("ops=sign,sign").unwrap();
        assert!(dup.validate().is_err());
        let limits = BTreeMap::from([("other".to_owned(), KeyLimits::default())]);
        assert!(check_key_limits(&["signer"], &limits).is_err());
    }

    #[test]
    fn limits_serialise_in_camel_case_and_refuse_unknown_fields() {
        let l = KeyLimits {
            operations: Some(vec![KeyOperation::PublicKey]),
            max_message_bytes: Some(5),
            rate: Some(KeyRate {
                count: 1,
                seconds: 2,
            }),
            ..Default::default()
        };
        let j = serde_json::to_string(&l).unwrap();
        assert_eq!(
            j,
            r#"{"operations":["publicKey"],"maxMessageBytes":5,"rate":{"count":1,"seconds":2}}"#
        );
        assert!(serde_json::from_str::<KeyLimits>(r#"{"maxBytes":5}"#).is_err());
    }
}
