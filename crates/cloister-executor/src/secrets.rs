//! The `secrets` capability: what a function may read, fetched per invocation.
//!
//! A function receives exactly the secrets it declared. [`SecretSource`] is the plug-in point:
//! [`crate::keyvault_client::KeyvaultSecrets`] fetches from keyvault over the attested channel;
//! [`NoSecretService`] is for executors run without keyvault (every declared secret is missing).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use zeroize::Zeroizing;

/// Secret values by the name the function sees; zeroized when dropped.
pub type SecretValues = BTreeMap<String, Zeroizing<String>>;

/// Future returned by [`SecretSource::fetch`].
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<SecretValues>, SecretError>> + Send + 'a>>;

/// Where an executor gets secret values for a function.
pub trait SecretSource: Send + Sync {
    /// Returns the values of `declared` (category/name refs) for that function and environment,
    /// keyed by the name the function sees. `epoch` is the namespace's change counter as the
    /// gateway last saw it: values cached from an older epoch must not be served.
    /// `execution_id` names the invocation that asked (recorded when values are released).
    fn fetch<'a>(
        &'a self,
        function_id: &'a str,
        environment: &'a str,
        declared: &'a [String],
        epoch: u64,
        execution_id: &'a str,
    ) -> FetchFuture<'a>;
}

/// Why secrets could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A declared secret does not exist.
    #[error("declared secret `{0}` does not exist")]
    Missing(String),
    /// The secrets service could not be reached or refused the request.
    #[error("secrets service unavailable: {0}")]
    Unavailable(String),
}

/// The source of an executor run without keyvault: functions that declare no secrets work,
/// any declared secret is reported missing.
#[derive(Debug, Default)]
pub struct NoSecretService;

impl SecretSource for NoSecretService {
    fn fetch<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        declared: &'a [String],
        _: u64,
        _: &'a str,
    ) -> FetchFuture<'a> {
        Box::pin(async move {
            match declared.first() {
                Some(first) => Err(SecretError::Missing(first.clone())),
                None => Ok(Arc::new(BTreeMap::new())),
            }
        })
    }
}

/// Replaces every occurrence of a secret value in `text` with `[REDACTED]`. Values shorter
/// than [`MIN_REDACTED_LEN`] are left alone (redacting them would mangle ordinary text).
pub fn redact(text: &str, values: &SecretValues) -> String {
    let mut out = text.to_owned();
    for v in values.values() {
        if v.len() >= MIN_REDACTED_LEN && out.contains(v.as_str()) {
            out = out.replace(v.as_str(), "[REDACTED]");
        }
    }
    out
}

/// Shortest secret value that [`redact`] removes from logs.
pub const MIN_REDACTED_LEN: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_of_every_value() {
        let mut v = SecretValues::new();
        v.insert("A".into(), Zeroizing::new("hunter22".into()));
        v.insert("B".into(), Zeroizing::new("xyz".into()));
        assert_eq!(
            redact("pw=hunter22, again hunter22; xyz", &v),
            "pw=[REDACTED], again [REDACTED]; xyz"
        );
    }
}
