//! Query strings: `application/x-www-form-urlencoded` pairs, percent-decoded (`%31` is `1`,
//! `+` is a space), the one parse every endpoint with query parameters uses.

/// The decoded `(key, value)` pairs of `q`, in order; a pair without `=` has an empty value.
pub fn pairs(q: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pairs;

    #[test]
    fn values_are_percent_decoded() {
        assert_eq!(
            pairs(Some("version=%32&after=1&x")),
            vec![
                ("version".into(), "2".into()),
                ("after".into(), "1".into()),
                ("x".into(), String::new())
            ]
        );
        assert!(pairs(None).is_empty());
        assert!(pairs(Some("")).is_empty());
    }
}
