//! The `secrets` capability: what a function may read, fetched per invocation.
//!
//! A function receives exactly the secrets it declared. Until the keyvault role exists there
//! is no source of secret values, so declared secrets resolve to nothing and the function
//! sees an empty frozen object; this module is where the attested fetch from keyvault plugs in.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// Future returned by [`SecretSource::fetch`].
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BTreeMap<String, String>, SecretError>> + Send + 'a>>;

/// Where an executor gets secret values for a function.
pub trait SecretSource: Send + Sync {
    /// Returns the values of `declared` (category/name refs) for that function and environment,
    /// keyed by the name the function sees.
    fn fetch<'a>(
        &'a self,
        function_id: &'a str,
        environment: &'a str,
        declared: &'a [String],
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

/// The source used before keyvault is configured: no values at all.
#[derive(Debug, Default)]
pub struct NoSecretService;

impl SecretSource for NoSecretService {
    fn fetch<'a>(&'a self, _: &'a str, _: &'a str, _: &'a [String]) -> FetchFuture<'a> {
        Box::pin(async { Ok(BTreeMap::new()) })
    }
}
