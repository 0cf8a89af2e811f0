//! Time helpers: RFC 3339 rendering and parsing of verification times.

use crate::x509::UnixSecs;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Renders Unix seconds as RFC 3339 UTC; out-of-range values render as the raw number.
pub fn rfc3339(secs: UnixSecs) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// Parses an RFC 3339 timestamp into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<UnixSecs, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339).map(|t| t.unix_timestamp())
}

/// The current time in Unix seconds.
pub fn now() -> UnixSecs {
    OffsetDateTime::now_utc().unix_timestamp()
}
