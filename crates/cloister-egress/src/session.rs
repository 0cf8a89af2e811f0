//! One invocation's outbound requests: limits counted across them, secret references and
//! values for this call only, and the record of what was contacted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use cloister_types::ErrorCode;
use cloister_types::egress::{
    FRAMING_HEADERS, FetchRequest, FetchResponse, Origin, Redirect, Scheme,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use zeroize::Zeroizing;

use crate::connect::ConnectError;
use crate::inject::{SecretRefs, holds_ref, substitute};
use crate::redact::Redactor;
use crate::{FetchError, FunctionEgress};

/// Most request headers one request may carry.
const MAX_HEADERS: usize = 64;

/// What one outbound request did (for the execution's logs, metrics and receipt): never a
/// body, a header value or a query string.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `scheme://host[:port]` (as the function's URL named it: for its own logs only).
    pub origin: String,
    /// The allowlist entry that let it through (none: refused before any was matched).
    pub allowed: Option<String>,
    /// The method.
    pub method: String,
    /// The path (no query).
    pub path: String,
    /// The status, when a response came.
    pub status: Option<u16>,
    /// Bytes sent (headers and body).
    pub sent: u64,
    /// Bytes received (headers and body).
    pub received: u64,
    /// Wall time, milliseconds.
    pub millis: f64,
    /// The failure's code, when it failed.
    pub error: Option<ErrorCode>,
}

#[derive(Default)]
struct Counters {
    requests: u32,
    sent: usize,
    received: usize,
    records: Vec<Record>,
}

/// One invocation's use of its function's client.
pub struct Session {
    function: Arc<FunctionEgress>,
    refs: SecretRefs,
    values: BTreeMap<String, Zeroizing<Vec<u8>>>,
    redactor: Redactor,
    deadline: tokio::time::Instant,
    counters: Mutex<Counters>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("refs", &self.refs)
            .finish_non_exhaustive()
    }
}

/// A response read whole, before redaction.
struct Answer {
    status: http::StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl FunctionEgress {
    /// A session for one invocation ending at `deadline`, with the values of the function's
    /// egress-only secrets (by name).
    pub fn session(
        self: &Arc<Self>,
        values: BTreeMap<String, Zeroizing<Vec<u8>>>,
        deadline: tokio::time::Instant,
    ) -> Result<Session, FetchError> {
        let refs = SecretRefs::new(self.policy.secrets.keys().map(String::as_str))?;
        let redactor = Redactor::new(values.values().map(|v| v.as_slice()));
        Ok(Session {
            function: self.clone(),
            refs,
            values,
            redactor,
            deadline,
            counters: Mutex::default(),
        })
    }
}

fn is_redirect(s: http::StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn clipped(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

impl Session {
    /// What `secrets.ref(name)` returns in this invocation, by name.
    pub fn refs(&self) -> BTreeMap<String, String> {
        self.refs.by_name().clone()
    }

    /// `text` with every known form of the egress-only values redacted.
    pub fn redact(&self, text: String) -> String {
        self.redactor.apply_str(text)
    }

    /// What the invocation's requests did, in order (taken).
    pub fn take_records(&self) -> Vec<Record> {
        std::mem::take(&mut self.lock().records)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `req` under the function's policy and this invocation's limits. A request
    /// refused before anything was sent is recorded too (with its code).
    pub async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse, FetchError> {
        let before = self.lock().records.len();
        let (method, target) = (req.method.clone(), req.url.clone());
        let result = self.fetch_unrecorded(req).await;
        if let Err(e) = &result {
            let mut c = self.lock();
            if c.records.len() == before {
                let url = url::Url::parse(&target).ok();
                c.records.push(Record {
                    allowed: None,
                    origin: url
                        .as_ref()
                        .and_then(Origin::of)
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                    method: clipped(&method),
                    path: url
                        .as_ref()
                        .map(|u| self.redactor.apply_str(clipped(u.path())))
                        .unwrap_or_default(),
                    status: None,
                    sent: 0,
                    received: 0,
                    millis: 0.0,
                    error: Some(e.code()),
                });
            }
        }
        result
    }

    async fn fetch_unrecorded(&self, req: FetchRequest) -> Result<FetchResponse, FetchError> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&req.body)
            .map_err(|_| FetchError::Invalid("the body arrived malformed".into()))?;
        if holds_ref(req.url.as_bytes()) {
            return Err(FetchError::SecretRefused(
                "a secret reference in the URL: references go only in request headers the \
                 manifest binds"
                    .into(),
            ));
        }
        if holds_ref(&body) {
            return Err(FetchError::SecretRefused(
                "a secret reference in the body: references go only in request headers the \
                 manifest binds"
                    .into(),
            ));
        }
        let mut url = url::Url::parse(&req.url).map_err(|_| {
            FetchError::Invalid(format!("{:?} is not an absolute URL", clipped(&req.url)))
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Invalid(
                "credentials in a URL are not sent; put them in a header".into(),
            ));
        }
        url.set_fragment(None);
        let mut method = http::Method::from_bytes(req.method.as_bytes())
            .ok()
            .filter(|m| {
                !matches!(
                    m.as_str().to_ascii_uppercase().as_str(),
                    "CONNECT" | "TRACE" | "TRACK"
                )
            })
            .ok_or_else(|| FetchError::Invalid(format!("method {:?}", clipped(&req.method))))?;
        if req.headers.len() > MAX_HEADERS {
            return Err(FetchError::Invalid(format!(
                "at most {MAX_HEADERS} request headers"
            )));
        }
        let mut headers_given = req.headers;
        let mut body = Bytes::from(body);
        let first = Origin::of(&url)
            .ok_or_else(|| FetchError::Invalid("only http and https URLs can be fetched".into()))?;
        let mut redirected = false;
        for hop in 0..=self.function.limits.max_redirects {
            let origin = Origin::of(&url).ok_or_else(|| {
                FetchError::Failed(format!(
                    "a redirect to {:?}, not http(s)",
                    clipped(url.as_str())
                ))
            })?;
            self.check_origin(&origin, hop > 0)?;
            let headers =
                self.headers_for(&headers_given, &origin, url.path(), hop, origin != first)?;
            let a = self
                .send(&method, &url, &origin, headers, body.clone())
                .await?;
            if !is_redirect(a.status) || req.redirect == Redirect::Manual {
                return Ok(self.answer(a, &url, redirected));
            }
            if req.redirect == Redirect::Error {
                return Err(FetchError::Failed(format!(
                    "{origin} redirected and init.redirect is \"error\""
                )));
            }
            let next = a
                .headers
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| {
                    FetchError::Failed(format!("{origin} redirected without a usable Location"))
                })?;
            let s = a.status.as_u16();
            if (s == 303 && method != http::Method::HEAD)
                || ((s == 301 || s == 302) && method == http::Method::POST)
            {
                method = http::Method::GET;
                body = Bytes::new();
                // The body is gone, and so are the headers that described it.
                headers_given.retain(|(k, _)| !k.to_ascii_lowercase().starts_with("content-"));
            }
            url = next;
            url.set_fragment(None);
            redirected = true;
        }
        Err(FetchError::Failed(format!(
            "more than {} redirects",
            self.function.limits.max_redirects
        )))
    }

    fn check_origin(&self, origin: &Origin, redirect: bool) -> Result<(), FetchError> {
        let policy = self.function.policy();
        if policy.allows(origin) {
            return Ok(());
        }
        let what = if redirect {
            format!("a redirect to {origin}")
        } else {
            origin.to_string()
        };
        if origin.scheme == Scheme::Http {
            let secure = Origin {
                scheme: Scheme::Https,
                port: if origin.port == 80 { 443 } else { origin.port },
                host: origin.host.clone(),
            };
            if policy.allows(&secure) {
                return Err(FetchError::Insecure(what));
            }
        }
        Err(FetchError::NotAllowed(what))
    }

    /// The request headers for one hop: references replaced where bound (the first hop
    /// refuses any that is not; a redirect drops it), credentials dropped on a redirect to
    /// another origin.
    fn headers_for(
        &self,
        given: &[(String, String)],
        origin: &Origin,
        path: &str,
        hop: u8,
        cross_origin: bool,
    ) -> Result<(HeaderMap, bool), FetchError> {
        let mut map = HeaderMap::new();
        let mut injected = false;
        for (name, value) in given {
            if holds_ref(name.as_bytes()) {
                return Err(FetchError::SecretRefused(
                    "a secret reference in a header name".into(),
                ));
            }
            let lower = name.to_ascii_lowercase();
            if FRAMING_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
                return Err(FetchError::Invalid(format!(
                    "the {lower} header is set by fetch itself"
                )));
            }
            let hname = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                FetchError::Invalid(format!("{:?} is not a header name", clipped(name)))
            })?;
            let has_ref = holds_ref(value.as_bytes());
            if hop > 0
                && cross_origin
                && (has_ref || hname == header::AUTHORIZATION || hname == header::COOKIE)
            {
                continue;
            }
            let mut hv = if has_ref {
                let policy = self.function.policy();
                match substitute(
                    value,
                    &lower,
                    origin,
                    path,
                    &self.refs,
                    &self.values,
                    policy,
                ) {
                    Ok(bytes) => {
                        injected = true;
                        let mut hv = HeaderValue::from_bytes(&bytes).map_err(|_| {
                            FetchError::Invalid(format!(
                                "a secret's value cannot be sent in header {lower} (it holds \
                                 bytes HTTP headers do not allow)"
                            ))
                        })?;
                        hv.set_sensitive(true);
                        hv
                    }
                    Err(e) if hop == 0 => return Err(e),
                    Err(_) => continue,
                }
            } else {
                HeaderValue::from_str(value).map_err(|_| {
                    FetchError::Invalid(format!("the value of header {lower} is not valid HTTP"))
                })?
            };
            if lower == "authorization" || lower == "cookie" {
                hv.set_sensitive(true);
            }
            map.append(hname, hv);
        }
        if !map.contains_key(header::USER_AGENT) {
            map.insert(
                header::USER_AGENT,
                HeaderValue::from_static("cloister-fetch"),
            );
        }
        if !map.contains_key(header::ACCEPT) {
            map.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        if injected {
            // Only a whole answer is redacted reliably: no ranges of one.
            map.remove(header::RANGE);
            map.remove(header::IF_RANGE);
            // Echoes are redacted in what comes back; a compressed echo would not be found.
            map.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        Ok((map, injected))
    }

    async fn send(
        &self,
        method: &http::Method,
        url: &url::Url,
        origin: &Origin,
        (headers, _injected): (HeaderMap, bool),
        body: Bytes,
    ) -> Result<Answer, FetchError> {
        let limits = &self.function.limits;
        let size = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + body.len()
            + url.as_str().len();
        {
            let mut c = self.lock();
            if c.requests >= limits.max_requests {
                return Err(FetchError::RequestLimit(limits.max_requests));
            }
            if size > limits.max_request_bytes {
                return Err(FetchError::SentLimit(format!(
                    "the request is {size} bytes; at most {} are sent in one request",
                    limits.max_request_bytes
                )));
            }
            if c.sent + size > limits.max_sent {
                return Err(FetchError::SentLimit(format!(
                    "an invocation may send at most {} bytes",
                    limits.max_sent
                )));
            }
            c.requests += 1;
            c.sent += size;
        }
        let started = Instant::now();
        let deadline = self
            .deadline
            .min(tokio::time::Instant::now() + limits.request_timeout);
        let read = std::sync::atomic::AtomicUsize::new(0);
        let result = match request(method, url, headers, body) {
            Ok(r) => self.exchange(origin, r, deadline, &read).await,
            Err(e) => Err(e),
        };
        let mut c = self.lock();
        // Bytes read count even when the response was then refused (too large, too slow).
        let received = read.load(std::sync::atomic::Ordering::Relaxed);
        c.received += received;
        c.records.push(Record {
            allowed: self
                .function
                .policy()
                .matching(origin)
                .map(ToString::to_string),
            origin: origin.to_string(),
            method: method.to_string(),
            path: self.redactor.apply_str(url.path().to_owned()),
            status: result.as_ref().ok().map(|a| a.status.as_u16()),
            sent: size as u64,
            received: received as u64,
            millis: started.elapsed().as_secs_f64() * 1000.0,
            error: result.as_ref().err().map(FetchError::code),
        });
        result
    }

    async fn exchange(
        &self,
        origin: &Origin,
        request: http::Request<Full<Bytes>>,
        deadline: tokio::time::Instant,
        read: &std::sync::atomic::AtomicUsize,
    ) -> Result<Answer, FetchError> {
        let limits = &self.function.limits;
        let timeout = || FetchError::Timeout(origin.to_string());
        let _slot = tokio::time::timeout_at(deadline, self.function.slots.acquire())
            .await
            .map_err(|_| {
                // Out of the invocation's own time is a timeout; the request's own timeout
                // spent waiting for a slot is the function's in-flight limit.
                if deadline >= self.deadline {
                    timeout()
                } else {
                    FetchError::ConnectionLimit(limits.max_in_flight)
                }
            })?
            .map_err(|_| FetchError::Failed("the executor is shutting down".into()))?;
        let room = {
            let c = self.lock();
            limits
                .max_response_bytes
                .min(limits.max_received.saturating_sub(c.received))
        };
        let read = async {
            let response = self
                .function
                .client
                .request(request)
                .await
                .map_err(|e| classify(&e, origin))?;
            let (parts, mut incoming) = response.into_parts();
            let mut total = header_bytes(&parts.headers);
            read.store(total, std::sync::atomic::Ordering::Relaxed);
            let too_large = || {
                FetchError::ReceivedLimit(format!(
                    "the response from {origin} is over {room} bytes (the limit of one response, \
                     or what is left of the invocation's)"
                ))
            };
            if total > room {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| FetchError::Failed(format!("{origin}: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    read.store(total, std::sync::atomic::Ordering::Relaxed);
                    if total > room {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&data);
                }
            }
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| timeout())?
    }

    /// The function's view of a response: echoes of egress-only secrets redacted.
    fn answer(&self, a: Answer, url: &url::Url, redirected: bool) -> FetchResponse {
        let headers = a
            .headers
            .iter()
            .map(|(k, v)| {
                // Raw bytes first: a value that is not UTF-8 must be found before any byte of
                // it is replaced by U+FFFD.
                let v = self.redactor.apply(v.as_bytes().to_vec());
                (
                    self.redactor.apply_str(k.as_str().to_owned()),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let body = self.redactor.apply(a.body);
        FetchResponse {
            status: a.status.as_u16(),
            status_text: a.status.canonical_reason().unwrap_or("").to_owned(),
            // A server may put an echo of the value in a redirect's URL.
            url: self.redactor.apply_str(url.to_string()),
            redirected,
            headers,
            body: base64::engine::general_purpose::STANDARD.encode(&body),
        }
    }
}

/// The HTTP request for one hop.
fn request(
    method: &http::Method,
    url: &url::Url,
    headers: HeaderMap,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, FetchError> {
    let uri: http::Uri = url.as_str().parse().map_err(|_| {
        FetchError::Invalid(format!(
            "{:?} is not a URI HTTP accepts",
            clipped(url.as_str())
        ))
    })?;
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(Full::new(body))
        .map_err(|e| FetchError::Invalid(e.to_string()))?;
    *request.headers_mut() = headers;
    Ok(request)
}

fn header_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

/// A failed exchange, by what failed: our connector's refusals keep their codes.
fn classify(e: &hyper_util::client::legacy::Error, origin: &Origin) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(c) = s.downcast_ref::<ConnectError>() {
            return match c {
                ConnectError::AddressRefused { host, address } => FetchError::AddressRefused {
                    host: host.clone(),
                    address: address.to_string(),
                },
                ConnectError::Tls(reason) => FetchError::Tls {
                    origin: origin.to_string(),
                    reason: reason.clone(),
                },
                other => FetchError::Failed(other.to_string()),
            };
        }
        source = s.source();
    }
    FetchError::Failed(format!("{origin}: {e}"))
}
