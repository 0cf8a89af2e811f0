//! Egress-only secrets: the references a function holds instead of their values, and their
//! replacement by the values on the wire — only in a header the manifest binds the secret
//! to, only on a request to that origin (and path prefix), only over HTTPS.

use std::collections::{BTreeMap, HashMap};

use cloister_types::egress::{CheckedEgress, Origin};
use zeroize::Zeroizing;

use crate::FetchError;

/// How every reference starts.
pub const REF_PREFIX: &str = "{{cloister-secret:";
const REF_SUFFIX: &str = "}}";
/// Hex digits of a reference's random part.
const REF_HEX: usize = 32;

/// One invocation's references: random per invocation, so that neither a caller's input nor
/// an earlier invocation's output can name a secret.
pub struct SecretRefs {
    by_token: HashMap<String, String>,
    by_name: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRefs")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretRefs {
    /// Fresh references for `names`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, FetchError> {
        let mut by_token = HashMap::new();
        let mut by_name = BTreeMap::new();
        for name in names {
            let random = cloister_crypto::random_bytes::<{ REF_HEX / 2 }>()
                .map_err(|_| FetchError::Failed("no randomness for secret references".into()))?;
            let token = format!("{REF_PREFIX}{}{REF_SUFFIX}", hex::encode(random));
            by_token.insert(token.clone(), name.to_owned());
            by_name.insert(name.to_owned(), token);
        }
        Ok(Self { by_token, by_name })
    }

    /// Name → reference, what `secrets.ref(name)` returns in the function.
    pub fn by_name(&self) -> &BTreeMap<String, String> {
        &self.by_name
    }
}

/// Whether `text` holds anything that looks like a reference.
pub fn holds_ref(text: &[u8]) -> bool {
    memchr::memmem::find(text, REF_PREFIX.as_bytes()).is_some()
}

/// Whether a path is within a prefix, segment-wise (`/v1` covers `/v1` and `/v1/x`, not
/// `/v10`).
fn within(path: &str, prefix: &str) -> bool {
    // Encoded dots and separators, `;` parameters and backslashes mean different paths to
    // different servers: such a path is within no prefix.
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%25", "%3b", ";", "\\"]
        .iter()
        .any(|t| lower.contains(t))
    {
        return false;
    }
    path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path[prefix.len()..].starts_with('/')))
}

/// `value` of header `header` (lower case) with every reference replaced by its secret's
/// value, if the policy lets each of them go there.
pub fn substitute(
    value: &str,
    header: &str,
    origin: &Origin,
    path: &str,
    refs: &SecretRefs,
    values: &BTreeMap<String, Zeroizing<Vec<u8>>>,
    policy: &CheckedEgress,
) -> Result<Zeroizing<Vec<u8>>, FetchError> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len()));
    let mut rest = value;
    while let Some(i) = rest.find(REF_PREFIX) {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let after = &rest[i..];
        let end = after
            .find(REF_SUFFIX)
            .map(|e| e + REF_SUFFIX.len())
            .filter(|e| *e <= REF_PREFIX.len() + REF_HEX + REF_SUFFIX.len())
            .ok_or_else(|| {
                FetchError::SecretRefused("a malformed secret reference in a header".into())
            })?;
        let name = refs.by_token.get(&after[..end]).ok_or_else(|| {
            FetchError::SecretRefused(
                "a secret reference that is not this invocation's (use secrets.ref(name) in \
                 the same call)"
                    .into(),
            )
        })?;
        let bound = policy.secrets.get(name).is_some_and(|bindings| {
            bindings.iter().any(|b| {
                b.origin == *origin
                    && b.header == header
                    && b.path_prefix.as_deref().is_none_or(|p| within(path, p))
            })
        });
        if !bound {
            return Err(FetchError::SecretRefused(format!(
                "the manifest does not let secret {name} go in header {header} to {origin}{path} \
                 (fn deploy --egress-secret {name}=ORIGIN[/PREFIX]:HEADER)"
            )));
        }
        let v = values.get(name).ok_or_else(|| {
            FetchError::SecretRefused(format!("secret {name} was not released for this call"))
        })?;
        out.extend_from_slice(v);
        rest = &after[end..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_types::egress::{Egress, SecretBinding};

    fn setup() -> (
        SecretRefs,
        BTreeMap<String, Zeroizing<Vec<u8>>>,
        CheckedEgress,
    ) {
        let policy = Egress {
            allow: vec![
                "https://api.example.com".into(),
                "https://other.example.com".into(),
            ],
            ca: vec![],
            secrets: BTreeMap::from([(
                "KEY".to_owned(),
                vec![SecretBinding {
                    origin: "https://api.example.com".into(),
                    path_prefix: Some("/v1".into()),
                    header: "Authorization".into(),
                }],
            )]),
        }
        .check(&["KEY"])
        .unwrap();
        let refs = SecretRefs::new(["KEY"]).unwrap();
        let values = BTreeMap::from([("KEY".to_owned(), Zeroizing::new(b"s3cr3t".to_vec()))]);
        (refs, values, policy)
    }

    fn origin(s: &str) -> Origin {
        Origin::of(&url::Url::parse(s).unwrap()).unwrap()
    }

    #[test]
    fn a_reference_becomes_the_value_only_where_bound() {
        let (refs, values, policy) = setup();
        let r = refs.by_name()["KEY"].clone();
        let api = origin("https://api.example.com");
        let v = format!("Bearer {r}");
        let out = substitute(
            &v,
            "authorization",
            &api,
            "/v1/items",
            &refs,
            &values,
            &policy,
        );
        assert_eq!(out.unwrap().as_slice(), b"Bearer s3cr3t");
        for (header, o, path) in [
            ("x-api-key", "https://api.example.com", "/v1/items"),
            ("authorization", "https://other.example.com", "/v1/items"),
            ("authorization", "https://api.example.com", "/v10"),
            ("authorization", "https://api.example.com", "/admin"),
            ("authorization", "https://api.example.com", "/v1/..%2Fadmin"),
            ("authorization", "https://api.example.com", "/v1/..;/admin"),
            (
                "authorization",
                "https://api.example.com",
                "/v1/%2e%2e/admin",
            ),
        ] {
            let e = substitute(&v, header, &origin(o), path, &refs, &values, &policy);
            assert!(
                matches!(e, Err(FetchError::SecretRefused(_))),
                "{header} {o}{path}"
            );
        }
        // Another invocation's reference (or a guessed one) names nothing.
        let other = SecretRefs::new(["KEY"]).unwrap();
        let forged = format!("Bearer {}", other.by_name()["KEY"]);
        let e = substitute(
            &forged,
            "authorization",
            &api,
            "/v1",
            &refs,
            &values,
            &policy,
        );
        assert!(
            matches!(e, Err(FetchError::SecretRefused(m)) if m.contains("not this invocation"))
        );
        assert!(holds_ref(v.as_bytes()));
        assert!(!holds_ref(b"Bearer abc"));
    }
}
