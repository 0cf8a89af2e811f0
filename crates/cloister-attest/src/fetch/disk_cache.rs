//! On-disk cache of fetched collateral responses, one JSON file per URL.
//!
//! Collateral is public and signed, so the cache needs no secrecy; what it must not do is
//! serve something stale or half-written. Files are written to a temporary name and renamed,
//! an unreadable or mismatched entry counts as a miss, and every entry records when it was
//! fetched so callers decide its freshness.

use super::http::HttpResponse;
use crate::x509::UnixSecs;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How long a cached response may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Content addressed by the URL itself (a VCEK for one chip and TCB): never expires.
    Immutable,
    /// Mutable content (CRLs, TCB info, QE identity): served for at most this many seconds.
    MaxAge(i64),
}

/// A directory of cached responses.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    url: String,
    fetched_at: UnixSecs,
    headers: BTreeMap<String, String>,
    body: String,
}

impl DiskCache {
    /// A cache rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, url: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", hex::encode(Sha256::digest(url))))
    }

    /// The cached response for `url` if present, intact and fresh at `now`.
    pub fn get(&self, url: &str, freshness: Freshness, now: UnixSecs) -> Option<HttpResponse> {
        let bytes = std::fs::read(self.path(url)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        if entry.url != url {
            return None;
        }
        if let Freshness::MaxAge(max) = freshness {
            let age = now.checked_sub(entry.fetched_at)?;
            if !(0..=max).contains(&age) {
                return None;
            }
        }
        let body = B64.decode(entry.body).ok()?;
        Some(HttpResponse {
            status: 200,
            headers: entry.headers,
            body,
        })
    }

    /// Stores a successful response for `url`, fetched at `now`.
    pub fn put(&self, url: &str, resp: &HttpResponse, now: UnixSecs) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let entry = Entry {
            url: url.to_owned(),
            fetched_at: now,
            headers: resp.headers.clone(),
            body: B64.encode(&resp.body),
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
        let path = self.path(url);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, &path)
    }
}
