//! Timestamps as stored: RFC 3339, UTC, fixed width, so they also sort as text.

/// Current time in RFC 3339, UTC, always with exactly three fractional digits.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Fixed-width RFC 3339 rendering (`2026-11-23T18:00:00.000Z`).
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(&fmt)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_sort_as_text() {
        let whole = time::macros::datetime!(2026-11-23 18:00:00 UTC);
        let later = time::macros::datetime!(2026-11-23 18:00:00.5 UTC);
        assert_eq!(format_rfc3339(whole), "2026-11-23T18:00:00.000Z");
        assert_eq!(format_rfc3339(later), "2026-11-23T18:00:00.500Z");
        assert!(format_rfc3339(whole) < format_rfc3339(later));
    }
}
