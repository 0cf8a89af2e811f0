//! Function registry cache: resolved metadata of function versions, so that the invocation
//! path does not hit the store on every call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cloister_store::{Store, VersionRecord};
use cloister_types::ErrorCode;

use crate::error::{HttpError, HttpResult};

/// How long a "latest version" lookup is trusted (other gateways may deploy meanwhile).
const LATEST_TTL: Duration = Duration::from_secs(1);

/// Cache key: function name and requested version (`None` = latest).
type Key = (String, Option<u32>);

/// Cached lookups of function versions by name.
pub struct FunctionCache {
    store: Arc<dyn Store>,
    entries: RwLock<HashMap<Key, (Arc<VersionRecord>, Instant)>>,
}

impl FunctionCache {
    /// A cache in front of `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Drops everything cached for `name` (after a deploy or delete).
    pub fn invalidate(&self, name: &str) {
        if let Ok(mut e) = self.entries.write() {
            e.retain(|(n, _), _| n != name);
        }
    }

    /// The version to run, or `function_not_found`.
    pub async fn resolve(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> HttpResult<Arc<VersionRecord>> {
        let key = (name.to_owned(), version);
        if let Ok(e) = self.entries.read()
            && let Some((rec, at)) = e.get(&key)
            && at.elapsed() < LATEST_TTL
        {
            return Ok(rec.clone());
        }
        // Without a version: the current one (the latest, unless rolled back).
        let rec = match version {
            Some(_) => self.store.get_version(name, version).await?,
            None => self.store.get_current(name).await?,
        }
        .ok_or_else(|| not_found(name, version))?;
        let rec = Arc::new(rec);
        if let Ok(mut e) = self.entries.write() {
            if e.len() > 10_000 {
                e.clear();
            }
            e.insert(key, (rec.clone(), Instant::now()));
        }
        Ok(rec)
    }
}

/// The `function_not_found` error for a name (and version).
pub fn not_found(name: &str, version: Option<u32>) -> HttpError {
    match version {
        Some(v) => HttpError::new(
            ErrorCode::FunctionNotFound,
            format!("function {name:?} has no version {v}"),
        ),
        None => HttpError::new(
            ErrorCode::FunctionNotFound,
            format!("no function named {name:?}"),
        ),
    }
}
