//! Online collateral: fetch what offline verification needs from the vendors' services.
//!
//! - AMD KDS: the VCEK for a report's chip id and reported TCB, and the product line's CRL.
//! - Intel PCS (or a PCCS): the PCK CRL, TCB info, QE identity and the root CA CRL for a
//!   quote's FMSPC and PCK CA.
//!
//! Fetching only gathers collateral; everything fetched is then verified exactly like
//! collateral supplied on disk, against the pinned roots. Responses are kept in an optional
//! [`DiskCache`]: VCEKs forever (their URL names the chip and TCB), everything else for a
//! bounded time. The transport is a trait ([`HttpGet`]) so tests run against a local server.

pub mod disk_cache;
#[cfg(feature = "test-util")]
pub mod fake;
pub mod http;
mod kds;
mod pcs;

pub use disk_cache::{DiskCache, Freshness};
#[cfg(feature = "online")]
pub use http::UreqClient;
pub use http::{HttpGet, HttpResponse};

use crate::error::AttestError;
use crate::x509::UnixSecs;

/// Base URLs of the vendor services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// AMD Key Distribution Service.
    pub amd_kds: String,
    /// Intel Provisioning Certification Service (or a PCCS with the same v4 API).
    pub intel_pcs: String,
    /// Intel SGX Root CA CRL (the root certificate's CRL distribution point).
    pub intel_root_crl: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            amd_kds: "https://kdsintf.amd.com".into(),
            intel_pcs: "https://api.trustedservices.intel.com".into(),
            intel_root_crl: "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
                .into(),
        }
    }
}

/// Where one collateral item came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// The URL it was (or would have been) fetched from.
    pub url: String,
    /// Whether it was served from the disk cache.
    pub cached: bool,
}

/// Fetched collateral, with where each item came from and anything worth telling the user.
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    /// The collateral.
    pub value: T,
    /// Every item, in fetch order.
    pub sources: Vec<Source>,
    /// Optional items that could not be fetched (e.g. a CRL), in words.
    pub warnings: Vec<String>,
}

/// Default lifetime of cached mutable collateral (CRLs, TCB info, QE identity).
pub const DEFAULT_MAX_AGE_SECS: i64 = 6 * 3600;

/// Fetches collateral through an [`HttpGet`], optionally caching on disk.
pub struct Fetcher {
    http: Box<dyn HttpGet>,
    endpoints: Endpoints,
    cache: Option<DiskCache>,
    max_age: i64,
}

impl Fetcher {
    /// A fetcher with no cache, using `endpoints`.
    pub fn new(http: Box<dyn HttpGet>, endpoints: Endpoints) -> Self {
        Self {
            http,
            endpoints,
            cache: None,
            max_age: DEFAULT_MAX_AGE_SECS,
        }
    }

    /// Caches responses in `cache`; mutable items are reused for at most `max_age_secs`.
    pub fn with_cache(mut self, cache: DiskCache, max_age_secs: i64) -> Self {
        self.cache = Some(cache);
        self.max_age = max_age_secs;
        self
    }

    /// The endpoints in use.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// GETs `url` (from the cache when fresh); only a 2xx response is returned or cached.
    fn get(
        &self,
        url: &str,
        mutable: bool,
        now: UnixSecs,
        sources: &mut Vec<Source>,
        warnings: &mut Vec<String>,
    ) -> Result<HttpResponse, AttestError> {
        let freshness = if mutable {
            Freshness::MaxAge(self.max_age)
        } else {
            Freshness::Immutable
        };
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(url, freshness, now)) {
            sources.push(Source {
                url: url.to_owned(),
                cached: true,
            });
            return Ok(hit);
        }
        let resp = self.http.get(url).map_err(|reason| AttestError::Fetch {
            url: url.to_owned(),
            reason,
        })?;
        if !(200..300).contains(&resp.status) {
            return Err(AttestError::Fetch {
                url: url.to_owned(),
                reason: format!("HTTP {}", resp.status),
            });
        }
        if let Some(cache) = &self.cache
            && let Err(e) = cache.put(url, &resp, now)
        {
            warnings.push(format!(
                "cannot write collateral cache {}: {e}",
                cache.dir().display()
            ));
        }
        sources.push(Source {
            url: url.to_owned(),
            cached: false,
        });
        Ok(resp)
    }
}

/// Whether `err` is an HTTP 404 from the fetcher (the service has no such item).
fn is_not_found(err: &AttestError) -> bool {
    matches!(err, AttestError::Fetch { reason, .. } if reason == "HTTP 404")
}
