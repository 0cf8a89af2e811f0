//! Validated names: functions, entrypoints, environments and declared secrets.
//!
//! A value of these types is known to be well-formed; parse once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {rule}")]
pub struct NameError {
    /// What kind of name it was.
    pub what: &'static str,
    /// The rejected input (names are never secret).
    pub value: String,
    /// The rule it broke.
    pub rule: &'static str,
}

fn check(
    what: &'static str,
    value: &str,
    max: usize,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
    rule: &'static str,
) -> Result<(), NameError> {
    let mut chars = value.chars();
    let ok = value.len() <= max && chars.next().is_some_and(first) && chars.all(rest);
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what,
            value: value.chars().take(80).collect(),
            rule,
        })
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

name_type!(
    /// A function name: 1–63 chars of `[a-z0-9-_]`, starting with a letter or digit.
    FunctionName
);

impl FunctionName {
    /// Validates a function name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check(
            "function name",
            s,
            63,
            lower_alnum,
            |c| lower_alnum(c) || c == '-' || c == '_',
            "use 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
        )?;
        Ok(Self(s.to_owned()))
    }
}

name_type!(
    /// A JavaScript entrypoint: an ASCII identifier naming a top-level function.
    Entrypoint
);

/// Words no entrypoint may be: JavaScript's reserved words (strict mode included), and
/// `arguments` and `eval`, which strict code cannot declare.
pub const RESERVED_ENTRYPOINTS: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "let",
    "static",
    "implements",
    "interface",
    "package",
    "private",
    "protected",
    "public",
    "await",
    "arguments",
    "eval",
];

impl Entrypoint {
    /// Validates an entrypoint identifier.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let rule = "must be an ASCII JavaScript identifier of at most 64 characters that is not \
                    a reserved word";
        check(
            "entrypoint",
            s,
            64,
            |c| c.is_ascii_alphabetic() || c == '_' || c == '$',
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '$',
            rule,
        )?;
        if RESERVED_ENTRYPOINTS.contains(&s) {
            return Err(NameError {
                what: "entrypoint",
                value: s.to_owned(),
                rule,
            });
        }
        Ok(Self(s.to_owned()))
    }
}

impl Default for Entrypoint {
    fn default() -> Self {
        Self("handler".to_owned())
    }
}

name_type!(
    /// The file name a function was deployed from (`add.js`), shown in its stack traces.
    SourceName
);

impl SourceName {
    /// Validates a source file name: a base name, no directories.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check(
            "source file name",
            s,
            128,
            |c| c.is_ascii_alphanumeric() || c == '_',
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.',
            "use 1-128 characters of A-Z, a-z, 0-9, '_', '-' and '.', starting with a letter, digit or '_'",
        )?;
        Ok(Self(s.to_owned()))
    }
}

name_type!(
    /// The name of a key keyvault keeps in a function's namespace (`signer`, `webhook-hmac`).
    KeyName
);

/// Most keys one manifest may declare.
pub const MAX_DECLARED_KEYS: usize = 16;

impl KeyName {
    /// Validates a key name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check(
            "key name",
            s,
            64,
            |c| c.is_ascii_alphanumeric(),
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
            "use 1-64 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or digit",
        )?;
        Ok(Self(s.to_owned()))
    }

    /// Validates the keys a manifest declares (`NAME`, or `FUNCTION/NAME` for a key another
    /// function granted): at most [`MAX_DECLARED_KEYS`], each once.
    pub fn parse_declared<S: AsRef<str>>(names: &[S]) -> Result<Vec<KeyRef>, NameError> {
        let too_many = || NameError {
            what: "declared keys",
            value: names.len().to_string(),
            rule: "declare at most 16 keys, each once",
        };
        if names.len() > MAX_DECLARED_KEYS {
            return Err(too_many());
        }
        let parsed = names
            .iter()
            .map(|n| KeyRef::parse(n.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let unique: std::collections::BTreeSet<&KeyRef> = parsed.iter().collect();
        if unique.len() != parsed.len() {
            return Err(too_many());
        }
        Ok(parsed)
    }
}

/// A key a manifest declares: one of the function's own (`NAME`), or one another function
/// granted it (`FUNCTION/NAME`, by that function's name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyRef {
    /// A key in the function's own namespace.
    Own(KeyName),
    /// A key in another function's namespace, usable only while that function's owner grants
    /// it to this function.
    Granted {
        /// The function whose namespace holds the key.
        function: FunctionName,
        /// The key.
        name: KeyName,
    },
}

impl KeyRef {
    /// Parses `NAME` or `FUNCTION/NAME`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        match s.split_once('/') {
            None => Ok(Self::Own(KeyName::parse(s)?)),
            Some((function, name)) => Ok(Self::Granted {
                function: FunctionName::parse(function)?,
                name: KeyName::parse(name)?,
            }),
        }
    }

    /// The key's own name.
    pub fn name(&self) -> &KeyName {
        match self {
            Self::Own(n) | Self::Granted { name: n, .. } => n,
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Own(n) => f.write_str(n.as_str()),
            Self::Granted { function, name } => write!(f, "{function}/{name}"),
        }
    }
}

name_type!(
    /// A deployment environment such as `production` or `staging`.
    Environment
);

impl Environment {
    /// Validates an environment name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check(
            "environment",
            s,
            32,
            lower_alnum,
            |c| lower_alnum(c) || c == '-',
            "use 1-32 characters of a-z, 0-9 and '-', starting with a letter or digit",
        )?;
        Ok(Self(s.to_owned()))
    }
}

impl Default for Environment {
    fn default() -> Self {
        Self("production".to_owned())
    }
}

fn secret_segment_ok(seg: &str) -> bool {
    check(
        "secret name",
        seg,
        64,
        |c| c.is_ascii_alphanumeric() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.',
        "",
    )
    .is_ok()
}

/// A declared secret: `<category>/<name>` or a bare `<name>` (category `default`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretRef {
    category: String,
    name: String,
}

impl SecretRef {
    /// Validates a declared secret reference.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let err = || NameError {
            what: "secret name",
            value: s.chars().take(80).collect(),
            rule: "use NAME or CATEGORY/NAME, each 1-64 characters of A-Z, a-z, 0-9, '_', '-', '.', starting with a letter, digit or '_'",
        };
        let (category, name) = match s.split_once('/') {
            Some((c, n)) => (c, n),
            None => ("default", s),
        };
        if !secret_segment_ok(category) || !secret_segment_ok(name) {
            return Err(err());
        }
        Ok(Self {
            category: category.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The category (`default` for a bare name).
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The name under which the function sees the secret (`secrets[name]`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Most secrets one function version may declare.
pub const MAX_DECLARED_SECRETS: usize = 64;

/// Why a list of declared secrets was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclaredSecretsError {
    /// More entries than allowed ([`MAX_DECLARED_SECRETS`] for a new version).
    #[error("{count} secrets declared; at most {MAX_DECLARED_SECRETS} are allowed")]
    TooMany {
        /// How many were declared.
        count: usize,
    },
    /// An entry is not a valid reference.
    #[error(transparent)]
    Invalid(#[from] NameError),
    /// Two entries share the name the function sees (`secrets[name]`), across categories.
    #[error("two declared secrets are named {0:?}")]
    Duplicate(String),
}

impl SecretRef {
    /// Validates a function's whole list of declared secrets in linear time: at most
    /// [`MAX_DECLARED_SECRETS`] (checked before any entry is parsed), each valid, names
    /// unique across categories.
    pub fn parse_declared<S: AsRef<str>>(
        list: &[S],
    ) -> Result<Vec<SecretRef>, DeclaredSecretsError> {
        Self::parse_declared_within(list, MAX_DECLARED_SECRETS)
    }

    /// [`SecretRef::parse_declared`] with another cap (`usize::MAX` for manifests stored
    /// before the cap existed, which must stay readable).
    pub fn parse_declared_within<S: AsRef<str>>(
        list: &[S],
        max: usize,
    ) -> Result<Vec<SecretRef>, DeclaredSecretsError> {
        if list.len() > max {
            return Err(DeclaredSecretsError::TooMany { count: list.len() });
        }
        let mut seen = std::collections::HashSet::with_capacity(list.len());
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            let r = SecretRef::parse(s.as_ref())?;
            if !seen.insert(r.name.clone()) {
                return Err(DeclaredSecretsError::Duplicate(r.name));
            }
            out.push(r);
        }
        Ok(out)
    }
}

impl TryFrom<String> for SecretRef {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.category == "default" {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.category, self.name)
        }
    }
}

/// A full secret path: `function-<functionId>/<environment>/<category>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretPath {
    function_id: String,
    environment: Environment,
    secret: SecretRef,
}

/// Prefix of every secret namespace.
pub const NAMESPACE_PREFIX: &str = "function-";

/// Checks a function id (1-64 characters of a-z, 0-9 and '-').
pub fn validate_function_id(id: &str) -> Result<(), NameError> {
    if function_id_ok(id) {
        Ok(())
    } else {
        Err(NameError {
            what: "function id",
            value: id.chars().take(80).collect(),
            rule: "use 1-64 characters of a-z, 0-9 and '-'",
        })
    }
}

fn function_id_ok(id: &str) -> bool {
    check(
        "function id",
        id,
        64,
        lower_alnum,
        |c| lower_alnum(c) || c == '-',
        "",
    )
    .is_ok()
}

impl SecretPath {
    /// Validates a full secret path.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let err = || NameError {
            what: "secret path",
            value: s.chars().take(120).collect(),
            rule: "use function-<functionId>/<environment>/<category>/<name>",
        };
        let mut parts = s.split('/');
        let (Some(ns), Some(env), Some(cat), Some(name), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(err());
        };
        let id = ns.strip_prefix(NAMESPACE_PREFIX).ok_or_else(err)?;
        if !function_id_ok(id) {
            return Err(err());
        }
        let environment = Environment::parse(env).map_err(|_| err())?;
        if !secret_segment_ok(cat) || !secret_segment_ok(name) {
            return Err(err());
        }
        let secret = SecretRef {
            category: cat.to_owned(),
            name: name.to_owned(),
        };
        Ok(Self {
            function_id: id.to_owned(),
            environment,
            secret,
        })
    }

    /// The path where function `function_id` finds `secret` in `environment`.
    pub fn for_function(
        function_id: &str,
        environment: &Environment,
        secret: &SecretRef,
    ) -> Result<Self, NameError> {
        validate_function_id(function_id)?;
        Ok(Self {
            function_id: function_id.to_owned(),
            environment: environment.clone(),
            secret: secret.clone(),
        })
    }

    /// The function id the path belongs to.
    pub fn function_id(&self) -> &str {
        &self.function_id
    }

    /// The environment segment.
    pub fn environment(&self) -> &Environment {
        &self.environment
    }

    /// The declared-secret part (`category/name`).
    pub fn secret(&self) -> &SecretRef {
        &self.secret
    }

    /// The key namespace (`function-<id>`): one DEK per namespace.
    pub fn namespace(&self) -> String {
        namespace_of(&self.function_id)
    }
}

/// The key namespace of a function (`function-<id>`).
pub fn namespace_of(function_id: &str) -> String {
    format!("{NAMESPACE_PREFIX}{function_id}")
}

impl TryFrom<String> for SecretPath {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

impl From<SecretPath> for String {
    fn from(p: SecretPath) -> String {
        p.to_string()
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{NAMESPACE_PREFIX}{}/{}/{}/{}",
            self.function_id, self.environment, self.secret.category, self.secret.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        for ok in ["hello", "a", "add-2", "my_fn", "0x"] {
            assert!(FunctionName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Hello", "-x", "a b", "a/b", "é", &"x".repeat(64)] {
            assert!(FunctionName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entrypoints_are_identifiers_only() {
        assert!(Entrypoint::parse("handler").is_ok());
        assert!(Entrypoint::parse("$main_2").is_ok());
        for bad in [
            "", "2x", "a.b", "a;b", "x()", "a-b", "if", "new", "eval", "await",
        ] {
            assert!(Entrypoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_openapi_document_lists_the_same_reserved_entrypoints() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../cloister-gateway/openapi.json")).unwrap();
        let listed: Vec<&str> = doc["components"]["schemas"]["DeployRequest"]["properties"]
            ["entrypoint"]["not"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(listed, RESERVED_ENTRYPOINTS);
    }

    #[test]
    fn secret_refs() {
        let bare = SecretRef::parse("API_KEY").unwrap();
        assert_eq!((bare.category(), bare.name()), ("default", "API_KEY"));
        assert_eq!(bare.to_string(), "API_KEY");
        let cat = SecretRef::parse("database/credentials").unwrap();
        assert_eq!((cat.category(), cat.name()), ("database", "credentials"));
        assert_eq!(cat.to_string(), "database/credentials");
        for bad in ["", "a/b/c", "/x", "x/", "../x", "a b", ".hidden"] {
            assert!(SecretRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_paths() {
        let p = SecretPath::parse("function-ab12-cd/production/database/password").unwrap();
        assert_eq!(p.function_id(), "ab12-cd");
        assert_eq!(p.environment().as_str(), "production");
        assert_eq!(p.secret().to_string(), "database/password");
        assert_eq!(p.namespace(), "function-ab12-cd");
        assert_eq!(
            p.to_string(),
            "function-ab12-cd/production/database/password"
        );
        let bare = SecretRef::parse("API_KEY").unwrap();
        let q = SecretPath::for_function("x1", &Environment::default(), &bare).unwrap();
        assert_eq!(q.to_string(), "function-x1/production/default/API_KEY");
        for bad in [
            "",
            "function-x/production/API_KEY",
            "function-x/production/a/b/c",
            "fn-x/production/a/b",
            "function-/production/a/b",
            "function-X/production/a/b",
            "function-x/Prod/a/b",
            "function-x/production/../b",
            "function-x/production/a/",
        ] {
            assert!(SecretPath::parse(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod declared_tests {
    use super::*;

    #[test]
    fn declared_lists_are_capped_unique_and_valid() {
        let ok = SecretRef::parse_declared(&["A", "db/B", "C"]).unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(
            SecretRef::parse_declared(&["db/A", "api/A"]),
            Err(DeclaredSecretsError::Duplicate("A".into()))
        );
        assert!(matches!(
            SecretRef::parse_declared(&["ok", "bad name"]),
            Err(DeclaredSecretsError::Invalid(_))
        ));
        let many: Vec<String> = (0..=MAX_DECLARED_SECRETS)
            .map(|i| format!("S{i}"))
            .collect();
        assert_eq!(
            SecretRef::parse_declared(&many),
            Err(DeclaredSecretsError::TooMany {
                count: MAX_DECLARED_SECRETS + 1
            })
        );
        assert!(SecretRef::parse_declared(&many[..MAX_DECLARED_SECRETS]).is_ok());
    }
}
