//! Outbound `fetch` policy in an owner-signed manifest (docs/EGRESS.md): which origins a
//! function may reach, extra roots it trusts for them, and egress-only secrets with where
//! each may be injected. Parsed and checked the same way by the CLI (early), keyvault (at
//! registration, which decides) and the executor (which enforces).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Most origin patterns one manifest may list.
pub const MAX_ALLOWED_ORIGINS: usize = 64;
/// Most extra root certificates one manifest may carry.
pub const MAX_EXTRA_ROOTS: usize = 8;
/// Longest PEM text of one extra root.
pub const MAX_ROOT_PEM_BYTES: usize = 16 * 1024;
/// Most egress-only secrets.
pub const MAX_EGRESS_SECRETS: usize = 32;
/// Most places one egress-only secret may be injected.
pub const MAX_BINDINGS_PER_SECRET: usize = 8;

/// The egress part of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    /// Origins the function may reach: `https://host[:port]`, `https://*.domain` for every
    /// subdomain, `https://203.0.113.7` by address; `http://` only where listed so.
    pub allow: Vec<String>,
    /// Extra roots, each trusted beside the built-in web roots for the origins it names
    /// only, and for this function only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca: Vec<ExtraRoot>,
    /// Egress-only secrets (never in `secrets`), by the name the function sees, with where
    /// each may be injected (none: declared egress-only, injectable nowhere).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Vec<SecretBinding>>,
}

/// A root certificate the owner trusts for some of the allowed origins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraRoot {
    /// One PEM certificate.
    pub pem: String,
    /// The `allow` entries it may vouch for (as written there).
    pub origins: Vec<String>,
}

/// Where an egress-only secret may be injected: one header, on requests to one origin (and
/// path prefix), over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretBinding {
    /// `https://host[:port]`: exactly one origin (no wildcard).
    pub origin: String,
    /// Only requests whose path is within this prefix, segment-wise (absent: any path);
    /// `path` on the wire.
    #[serde(rename = "path", default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The header name the value may be placed in (case-insensitive).
    pub header: String,
}

/// What `fetch(url, init)` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The URL, as the function wrote it.
    pub url: String,
    /// The method, upper case.
    pub method: String,
    /// Header names and values in order (secret references still in place).
    pub headers: Vec<(String, String)>,
    /// The body, base64 (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// What to do with a redirect.
    pub redirect: Redirect,
}

/// `init.redirect` of `fetch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Redirect {
    /// Follow redirects to allowed origins (the default).
    #[default]
    Follow,
    /// Return the redirect response itself.
    Manual,
    /// Fail on a redirect.
    Error,
}

impl Redirect {
    /// Parses `follow`, `manual` or `error`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "follow" => Some(Self::Follow),
            "manual" => Some(Self::Manual),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// What `fetch` resolves with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchResponse {
    /// HTTP status.
    pub status: u16,
    /// Reason phrase (empty when the server sent none).
    pub status_text: String,
    /// The URL of the response (after redirects).
    pub url: String,
    /// Whether a redirect was followed.
    pub redirected: bool,
    /// Header names (lower case) and values, in order; echoes of egress-only secrets
    /// redacted.
    pub headers: Vec<(String, String)>,
    /// The body, base64; echoes of egress-only secrets redacted.
    pub body: String,
}

/// Why an egress policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressPolicyError {
    /// An origin pattern is malformed.
    #[error("egress origin {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Too many patterns, roots, secrets or bindings.
    #[error("too many {what}: {count} (at most {max})")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An extra root is not one PEM certificate of reasonable size.
    #[error("extra root {index}: {reason}")]
    Root {
        /// Its position in the list.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An egress-only secret is not among the manifest's declared secrets.
    #[error("egress-only secret {0:?} is not a declared secret")]
    SecretNotDeclared(String),
    /// A binding is malformed or not covered by the allowlist.
    #[error("egress-only secret {secret:?}: {reason}")]
    Binding {
        /// The secret's name.
        secret: String,
        /// What is wrong with the binding.
        reason: String,
    },
}

/// URL scheme an origin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// TLS, verified.
    Https,
    /// Plain text: only where a manifest lists `http://` for that origin.
    Http,
}

impl Scheme {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "https" => Some(Self::Https),
            "http" => Some(Self::Http),
            _ => None,
        }
    }

    /// `https` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }

    /// The port a URL without one uses.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Https => 443,
            Self::Http => 80,
        }
    }
}

/// The host part of an origin pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostPattern {
    /// Exactly this DNS name (lower case, IDNA-encoded).
    Name(String),
    /// Any name ending in `.` + this (not the name itself).
    Subdomains(String),
    /// This address (which may then be private or loopback).
    Address(IpAddr),
}

/// The host of a concrete URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// A DNS name (lower case, IDNA-encoded).
    Name(String),
    /// An address literal.
    Address(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Address(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Self::Address(a) => write!(f, "{a}"),
        }
    }
}

/// A concrete origin: scheme, host and port (the default port filled in).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Scheme.
    pub scheme: Scheme,
    /// Host.
    pub host: Host,
    /// Port.
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl Origin {
    /// The origin of a parsed URL, if it is an `http(s)` URL with a host.
    pub fn of(url: &url::Url) -> Option<Self> {
        let scheme = Scheme::parse(url.scheme())?;
        let host = match url.host()? {
            url::Host::Domain(d) => Host::Name(d.trim_end_matches('.').to_ascii_lowercase()),
            url::Host::Ipv4(a) => Host::Address(IpAddr::V4(a)),
            url::Host::Ipv6(a) => Host::Address(canonical(IpAddr::V6(a))),
        };
        let port = url.port().unwrap_or(scheme.default_port());
        Some(Self { scheme, host, port })
    }
}

/// One allowlist entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginPattern {
    /// Scheme.
    pub scheme: Scheme,
    /// Host.
    pub host: HostPattern,
    /// Port (the scheme's default when the pattern names none).
    pub port: u16,
}

impl OriginPattern {
    /// Parses `scheme://host[:port]` (optionally `scheme://*.domain[:port]`), refusing paths,
    /// queries, credentials and bare top-level wildcards.
    pub fn parse(pattern: &str) -> Result<Self, EgressPolicyError> {
        let bad = |reason| EgressPolicyError::Pattern {
            pattern: pattern.chars().take(200).collect(),
            reason,
        };
        let (wildcard, text) = match pattern.split_once("://*.") {
            Some((scheme, rest)) => (true, format!("{scheme}://{rest}")),
            None => (false, pattern.to_owned()),
        };
        if text.contains('*') {
            return Err(bad(
                "a wildcard may only be the first label: https://*.example.com",
            ));
        }
        let url = url::Url::parse(&text).map_err(|_| bad("not a URL"))?;
        let scheme =
            Scheme::parse(url.scheme()).ok_or_else(|| bad("the scheme must be https or http"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials do not belong in an origin"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("an origin has no path, query or fragment"));
        }
        // `Url` drops a trailing `/` it added itself; reject one the pattern had only after
        // something else (already refused above) — `https://a.example/` is accepted.
        let origin = Origin::of(&url).ok_or_else(|| bad("no host"))?;
        let host = match (origin.host, wildcard) {
            (Host::Address(a), false) => HostPattern::Address(a),
            (Host::Address(_), true) => {
                return Err(bad("a wildcard applies to names, not addresses"));
            }
            (Host::Name(n), false) => HostPattern::Name(n),
            (Host::Name(n), true) => {
                if n.split('.').filter(|l| !l.is_empty()).count() < 2 {
                    return Err(bad(
                        "a wildcard needs a domain of at least two labels (*.example.com, not *.com)",
                    ));
                }
                HostPattern::Subdomains(n)
            }
        };
        Ok(Self {
            scheme,
            host,
            port: origin.port,
        })
    }

    /// Whether `o` is covered by this pattern (scheme, host and port all match).
    pub fn matches(&self, o: &Origin) -> bool {
        if self.scheme != o.scheme || self.port != o.port {
            return false;
        }
        match (&self.host, &o.host) {
            (HostPattern::Name(p), Host::Name(n)) => p == n,
            (HostPattern::Subdomains(p), Host::Name(n)) => n
                .strip_suffix(p.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (HostPattern::Address(p), Host::Address(a)) => p == a,
            _ => false,
        }
    }
}

/// An egress policy checked and parsed: what the executor enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEgress {
    /// The allowlist.
    pub allow: Vec<OriginPattern>,
    /// Extra roots (PEM) with the allowlist entries each vouches for.
    pub ca: Vec<(String, Vec<OriginPattern>)>,
    /// Egress-only secrets and their bindings.
    pub secrets: BTreeMap<String, Vec<CheckedBinding>>,
}

/// A binding checked: a concrete HTTPS origin on the allowlist, a valid header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBinding {
    /// The one origin.
    pub origin: Origin,
    /// Path prefix (starting with `/`), if any.
    pub path_prefix: Option<String>,
    /// Header name, lower case.
    pub header: String,
}

/// Headers that frame or route a request: the HTTP client sets them itself, never a
/// function's code or a secret.
pub const FRAMING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

/// Headers the executor sets (or drops) itself on a request that carries a secret.
const SET_WITH_A_SECRET: &[&str] = &["accept-encoding", "range", "if-range"];

fn header_name_ok(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Egress {
    /// Checks the policy against the manifest's declared secret names (the names functions
    /// see): limits, patterns, roots, and that every binding is an HTTPS origin the allowlist
    /// covers.
    pub fn check(&self, declared: &[&str]) -> Result<CheckedEgress, EgressPolicyError> {
        let too_many = |what, count, max| EgressPolicyError::TooMany { what, count, max };
        if self.allow.len() > MAX_ALLOWED_ORIGINS {
            return Err(too_many(
                "egress origins",
                self.allow.len(),
                MAX_ALLOWED_ORIGINS,
            ));
        }
        if self.ca.len() > MAX_EXTRA_ROOTS {
            return Err(too_many("extra roots", self.ca.len(), MAX_EXTRA_ROOTS));
        }
        if self.secrets.len() > MAX_EGRESS_SECRETS {
            return Err(too_many(
                "egress-only secrets",
                self.secrets.len(),
                MAX_EGRESS_SECRETS,
            ));
        }
        let allow = self
            .allow
            .iter()
            .map(|p| OriginPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ca = Vec::with_capacity(self.ca.len());
        for (index, r) in self.ca.iter().enumerate() {
            let root = |reason| EgressPolicyError::Root { index, reason };
            if r.pem.len() > MAX_ROOT_PEM_BYTES {
                return Err(root("over 16 KiB"));
            }
            let begins = r.pem.matches("-----BEGIN CERTIFICATE-----").count();
            if begins != 1 || !r.pem.contains("-----END CERTIFICATE-----") {
                return Err(root("must be exactly one PEM certificate"));
            }
            if r.origins.is_empty() || r.origins.len() > MAX_ALLOWED_ORIGINS {
                return Err(root(
                    "must name 1 to 64 of the allowed origins it vouches for",
                ));
            }
            let mut scope = Vec::with_capacity(r.origins.len());
            for o in &r.origins {
                let p = OriginPattern::parse(o)?;
                if !allow.contains(&p) {
                    return Err(root("names an origin that is not on the allowlist"));
                }
                scope.push(p);
            }
            ca.push((r.pem.clone(), scope));
        }
        let mut secrets = BTreeMap::new();
        for (name, bindings) in &self.secrets {
            if !declared.contains(&name.as_str()) {
                return Err(EgressPolicyError::SecretNotDeclared(name.clone()));
            }
            if bindings.len() > MAX_BINDINGS_PER_SECRET {
                return Err(too_many(
                    "bindings of one secret",
                    bindings.len(),
                    MAX_BINDINGS_PER_SECRET,
                ));
            }
            let binding_err = |reason: String| EgressPolicyError::Binding {
                secret: name.clone(),
                reason,
            };
            let mut checked = Vec::with_capacity(bindings.len());
            for b in bindings {
                let p = OriginPattern::parse(&b.origin).map_err(|e| binding_err(e.to_string()))?;
                let host = match p.host {
                    HostPattern::Name(n) => Host::Name(n),
                    HostPattern::Address(a) => Host::Address(a),
                    HostPattern::Subdomains(_) => {
                        return Err(binding_err(format!(
                            "{} names no single origin (no wildcard where a secret goes)",
                            b.origin
                        )));
                    }
                };
                let origin = Origin {
                    scheme: p.scheme,
                    host,
                    port: p.port,
                };
                if origin.scheme != Scheme::Https {
                    return Err(binding_err(format!(
                        "{origin}: a secret is injected over HTTPS only"
                    )));
                }
                if !allow.iter().any(|a| a.matches(&origin)) {
                    return Err(binding_err(format!(
                        "{origin} is not on the egress allowlist"
                    )));
                }
                let header = b.header.to_ascii_lowercase();
                if !header_name_ok(&header)
                    || FRAMING_HEADERS.contains(&header.as_str())
                    || SET_WITH_A_SECRET.contains(&header.as_str())
                    || header.starts_with("proxy-")
                {
                    return Err(binding_err(format!(
                        "{:?} is not a header a secret can be placed in",
                        b.header
                    )));
                }
                if let Some(prefix) = &b.path_prefix
                    && (!prefix.starts_with('/')
                        || prefix.len() > 256
                        || prefix.contains(['?', '#', '%', ';', '\\']))
                {
                    return Err(binding_err(format!(
                        "path prefix {prefix:?} must start with '/' and hold no query, '%', ';' \
                         or '\\'"
                    )));
                }
                checked.push(CheckedBinding {
                    origin,
                    path_prefix: b.path_prefix.clone(),
                    header,
                });
            }
            secrets.insert(name.clone(), checked);
        }
        Ok(CheckedEgress { allow, ca, secrets })
    }
}

impl CheckedEgress {
    /// Whether the allowlist covers `o`.
    pub fn allows(&self, o: &Origin) -> bool {
        self.allow.iter().any(|p| p.matches(o))
    }

    /// The first allowlist entry that covers `o` (what receipts and metrics name: it is in
    /// the signed manifest, where a host name may hold whatever the function put in it).
    pub fn matching(&self, o: &Origin) -> Option<&OriginPattern> {
        self.allow.iter().find(|p| p.matches(o))
    }

    /// Whether a connection for `scheme` to `ip`:`port` may be made: to a public address, or
    /// to one an allowlist entry names with that scheme and port.
    pub fn address_allowed(&self, ip: IpAddr, scheme: Scheme, port: u16) -> bool {
        let ip = canonical(ip);
        is_public(ip)
            || self.allow.iter().any(|p| {
                p.scheme == scheme
                    && p.port == port
                    && matches!(p.host, HostPattern::Address(a) if a == ip)
            })
    }

    /// The extra roots (PEM) that may vouch for `o`.
    pub fn roots_for(&self, o: &Origin) -> Vec<&str> {
        self.ca
            .iter()
            .filter(|(_, scope)| scope.iter().any(|p| p.matches(o)))
            .map(|(pem, _)| pem.as_str())
            .collect()
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether `ip` is a globally routable unicast address: not loopback, private, link-local,
/// shared (CGNAT), documentation, benchmarking, multicast, reserved or unspecified; IPv6
/// forms that embed an IPv4 address (mapped, 6to4, NAT64) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => v4_public(a),
        IpAddr::V6(a) => v6_public(a),
    }
}

fn v4_public(a: Ipv4Addr) -> bool {
    let [o1, o2, o3, _] = a.octets();
    !(o1 == 0
        || o1 == 10
        || o1 == 127
        || (o1 == 100 && (64..128).contains(&o2))
        || (o1 == 169 && o2 == 254)
        || (o1 == 172 && (16..32).contains(&o2))
        || (o1 == 192 && o2 == 0 && o3 == 0)
        || (o1 == 192 && o2 == 0 && o3 == 2)
        || (o1 == 192 && o2 == 88 && o3 == 99)
        || (o1 == 192 && o2 == 168)
        || (o1 == 198 && (o2 == 18 || o2 == 19))
        || (o1 == 198 && o2 == 51 && o3 == 100)
        || (o1 == 203 && o2 == 0 && o3 == 113)
        || o1 >= 224)
}

fn v6_public(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let embedded_v4 =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if a.is_unspecified() || a.is_loopback() {
        return false;
    }
    match s[0] {
        // NAT64 (64:ff9b::/96) carries an IPv4 address; 64:ff9b:1::/48 is local use.
        0x0064 if s[1] == 0xff9b => s[2] == 0 && v4_public(embedded_v4(s[6], s[7])),
        // 6to4 carries one in its second and third segments.
        0x2002 => v4_public(embedded_v4(s[1], s[2])),
        // 2001::/23 (IETF protocol assignments, Teredo among them) and 2001:db8::/32.
        0x2001 => s[1] >= 0x0200 && s[1] != 0x0db8,
        // Discard-only 100::/64.
        0x0100 if s[1] == 0 && s[2] == 0 && s[3] == 0 => false,
        // ::/8 holds the unspecified, loopback, IPv4-compatible and mapped ranges.
        0x0000 => false,
        x if x & 0xfe00 == 0xfc00 => false, // unique local fc00::/7
        x if x & 0xffc0 == 0xfe80 => false, // link-local fe80::/10
        x if x & 0xffc0 == 0xfec0 => false, // site-local fec0::/10 (deprecated)
        x if x & 0xff00 == 0xff00 => false, // multicast
        // Global unicast is 2000::/3.
        x => x & 0xe000 == 0x2000,
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostPattern::Name(n) => n.clone(),
            HostPattern::Subdomains(n) => format!("*.{n}"),
            HostPattern::Address(IpAddr::V6(a)) => format!("[{a}]"),
            HostPattern::Address(a) => a.to_string(),
        };
        write!(f, "{}://{host}", self.scheme.as_str())?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// Parses the CLI's `--egress-secret` value: `NAME` (egress-only, injectable nowhere) or
/// `NAME=https://host[:port][/path-prefix]:HEADER`.
pub fn parse_secret_flag(s: &str) -> Result<(String, Option<SecretBinding>), String> {
    let Some((name, rest)) = s.split_once('=') else {
        return Ok((s.to_owned(), None));
    };
    let (target, header) = rest
        .rsplit_once(':')
        .filter(|(t, h)| {
            t.contains("://")
                && !h.is_empty()
                && !h.contains('/')
                && !h.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or_else(|| format!("{s:?}: expected NAME=https://host[:port][/prefix]:HEADER"))?;
    let url = url::Url::parse(target)
        .map_err(|_| format!("{target:?} is not an https://host[:port][/prefix] URL"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{target:?}: a path prefix holds no query or fragment"
        ));
    }
    let origin = Origin::of(&url).ok_or_else(|| format!("{target:?} is not an http(s) URL"))?;
    let path_prefix = Some(url.path().to_owned()).filter(|p| p != "/");
    Ok((
        name.to_owned(),
        Some(SecretBinding {
            origin: origin.to_string(),
            path_prefix,
            header: header.to_owned(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(u: &str) -> Origin {
        Origin::of(&url::Url::parse(u).unwrap()).unwrap()
    }

    #[test]
    fn patterns_match_scheme_host_and_port_exactly() {
        let p = OriginPattern::parse("https://api.example.com").unwrap();
        assert!(p.matches(&origin("https://api.example.com/v1?x=1")));
        assert!(p.matches(&origin("https://API.Example.com:443/")));
        assert!(!p.matches(&origin("http://api.example.com")));
        assert!(!p.matches(&origin("https://api.example.com:8443")));
        assert!(!p.matches(&origin("https://api.example.com.evil.net")));
        assert!(!p.matches(&origin("https://xapi.example.com")));
        let w = OriginPattern::parse("https://*.example.com:8443").unwrap();
        assert!(w.matches(&origin("https://a.example.com:8443")));
        assert!(w.matches(&origin("https://a.b.example.com:8443")));
        assert!(
            !w.matches(&origin("https://example.com:8443")),
            "not the apex"
        );
        assert!(!w.matches(&origin("https://aexample.com:8443")));
        assert!(!w.matches(&origin("https://a.example.com")));
        let a = OriginPattern::parse("https://127.0.0.1:9443").unwrap();
        assert!(a.matches(&origin("https://127.0.0.1:9443/x")));
        // WHATWG parsing normalises other spellings of the same address.
        assert!(a.matches(&origin("https://0x7f000001:9443/")));
        assert!(a.matches(&origin("https://127.1:9443/")));
        assert!(!a.matches(&origin("https://localhost:9443")));
        let v6 = OriginPattern::parse("https://[::1]:9443").unwrap();
        assert!(v6.matches(&origin("https://[0:0::1]:9443")));
        assert_eq!(w.to_string(), "https://*.example.com:8443");
        assert_eq!(v6.to_string(), "https://[::1]:9443");
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        for bad in [
            "api.example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://example.com?q",
            "https://user:pw@example.com",
            "https://*.com",
            "https://a.*.example.com",
            "https://*.127.0.0.1",
            "https://",
        ] {
            assert!(
                matches!(
                    OriginPattern::parse(bad),
                    Err(EgressPolicyError::Pattern { .. })
                ),
                "{bad}"
            );
        }
        assert!(OriginPattern::parse("https://example.com/").is_ok());
    }

    #[test]
    fn only_public_addresses_pass_unless_listed() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002:7f00:1::",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!is_public(ip), "{private}");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(is_public(ip), "{public}");
        }
        let e = Egress {
            allow: vec![
                "https://127.0.0.1:9443".into(),
                "https://localhost:9443".into(),
            ],
            ..Default::default()
        }
        .check(&[])
        .unwrap();
        let https = Scheme::Https;
        assert!(e.address_allowed("127.0.0.1".parse().unwrap(), https, 9443));
        assert!(e.address_allowed("::ffff:127.0.0.1".parse().unwrap(), https, 9443));
        assert!(!e.address_allowed("127.0.0.2".parse().unwrap(), https, 9443));
        assert!(!e.address_allowed("::1".parse().unwrap(), https, 9443));
        // Listed for one port and scheme only.
        assert!(!e.address_allowed("127.0.0.1".parse().unwrap(), https, 443));
        assert!(!e.address_allowed("127.0.0.1".parse().unwrap(), Scheme::Http, 9443));
        assert!(e.address_allowed("8.8.8.8".parse().unwrap(), https, 443));
    }

    #[test]
    fn bindings_must_be_https_origins_on_the_allowlist() {
        let policy = |origin: &str, header: &str| Egress {
            allow: vec![
                "https://api.example.com".into(),
                "http://plain.example.com".into(),
            ],
            ca: vec![],
            secrets: BTreeMap::from([(
                "API_KEY".to_owned(),
                vec![SecretBinding {
                    origin: origin.into(),
                    path_prefix: None,
                    header: header.into(),
                }],
            )]),
        };
        let ok = policy("https://api.example.com", "Authorization")
            .check(&["API_KEY"])
            .unwrap();
        assert_eq!(ok.secrets["API_KEY"][0].header, "authorization");
        assert!(matches!(
            policy("https://api.example.com", "Authorization").check(&["OTHER"]),
            Err(EgressPolicyError::SecretNotDeclared(_))
        ));
        for (origin, header) in [
            ("https://other.example.com", "Authorization"),
            ("http://plain.example.com", "Authorization"),
            ("https://*.example.com", "Authorization"),
            ("https://api.example.com", "Host"),
            ("https://api.example.com", "Accept-Encoding"),
            ("https://api.example.com", "Proxy-Authorization"),
            ("https://api.example.com", "Bad Header"),
        ] {
            assert!(
                matches!(
                    policy(origin, header).check(&["API_KEY"]),
                    Err(EgressPolicyError::Binding { .. })
                ),
                "{origin} {header}"
            );
        }
    }

    #[test]
    fn the_secret_flag_reads_name_origin_prefix_and_header() {
        let (n, b) =
            parse_secret_flag("API_KEY=https://api.example.com:8443/v1:Authorization").unwrap();
        let b = b.unwrap();
        assert_eq!(n, "API_KEY");
        assert_eq!(b.origin, "https://api.example.com:8443");
        assert_eq!(b.path_prefix.as_deref(), Some("/v1"));
        assert_eq!(b.header, "Authorization");
        let (_, b) = parse_secret_flag("K=https://api.example.com:X-Api-Key").unwrap();
        let b = b.unwrap();
        assert_eq!(
            (b.origin.as_str(), b.path_prefix),
            ("https://api.example.com", None)
        );
        assert_eq!(parse_secret_flag("K").unwrap(), ("K".to_owned(), None));
        assert!(parse_secret_flag("K=nonsense").is_err());
        assert!(
            parse_secret_flag("K=https://h.example:8443").is_err(),
            "header forgotten"
        );
        assert!(parse_secret_flag("K=https://h.example/v1").is_err());
    }
}
