//! Where a store lives: `sqlite:PATH` (embedded, the default) or `postgres://…` (shared by
//! several gateways or keyvault replicas). Parsing never echoes a password back.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Schema used in PostgreSQL when the URL names none.
pub const DEFAULT_SCHEMA: &str = "cloister";

/// Connections a pool opens at most unless the URL says `pool_size=N`.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// A parsed database location.
#[derive(Clone)]
#[non_exhaustive]
pub enum Location {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (one schema of it).
    Postgres(Box<PgLocation>),
}

/// How to reach PostgreSQL: connection settings, schema, TLS and pool size.
#[derive(Clone)]
pub struct PgLocation {
    /// Connection settings for the driver (may hold a password: never printed).
    pub config: tokio_postgres::Config,
    /// Schema every table lives in (created when missing).
    pub schema: String,
    /// Whether and how connections use TLS.
    pub tls: PgTls,
    /// Most connections the pool opens.
    pub pool_size: usize,
    redacted: String,
}

/// TLS for PostgreSQL connections.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgTls {
    /// Plain TCP (`sslmode=disable`, or no `sslmode`): the database is untrusted anyway and
    /// sees only ciphertext and MACed rows; TLS hides metadata from the network.
    Disabled,
    /// TLS with the server certificate verified against the Mozilla roots, or only against
    /// the PEM roots in `sslrootcert` when given (`sslmode=require`, `verify-ca`,
    /// `verify-full`; `prefer` also verifies, and falls back to plain TCP only when the
    /// server offers no TLS at all).
    Verified {
        /// Extra PEM file of trusted roots (replaces the Mozilla roots).
        roots: Option<PathBuf>,
        /// Plain TCP is acceptable when the server does not offer TLS (`sslmode=prefer`).
        optional: bool,
    },
}

/// Why a database location was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocationError {
    /// Neither `sqlite:` nor `postgres://`/`postgresql://`.
    #[error("unsupported database scheme {0:?}: use sqlite:PATH or postgres://USER@HOST:PORT/DB")]
    UnknownScheme(String),
    /// `sqlite:` with no path.
    #[error("sqlite: needs a file path (sqlite:/var/lib/cloister/gateway.db)")]
    EmptyPath,
    /// The PostgreSQL URL does not parse.
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidPostgres(String),
    /// `schema=` is not a plain lower-case identifier.
    #[error(
        "invalid schema {0:?}: use 1 to 63 lower-case letters, digits and underscores, not starting with a digit"
    )]
    InvalidSchema(String),
    /// An `sslmode` this build does not know.
    #[error("unsupported sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    InvalidSslMode(String),
    /// `pool_size` is not a number from 1 to 1024.
    #[error("invalid pool_size {0:?}: use a number from 1 to 1024")]
    InvalidPoolSize(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Location {
    /// The location without any password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Location::Postgres(pg) => f.write_str(&pg.redacted),
        }
    }
}

impl std::fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// Whether `s` is a schema name this crate accepts (and so may splice into SQL).
pub fn valid_schema(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl Location {
    /// An SQLite file.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Location::Sqlite(path.into())
    }

    /// The same database with the schema suffixed `_<role>`, so one PostgreSQL database holds
    /// the gateway's and keyvault's tables apart; an SQLite location is returned unchanged
    /// (each role names its own file).
    pub fn for_role(&self, role: &str) -> Result<Location, LocationError> {
        match self {
            Location::Sqlite(_) => Ok(self.clone()),
            Location::Postgres(pg) => {
                let schema = format!("{}_{role}", pg.schema);
                if !valid_schema(&schema) {
                    return Err(LocationError::InvalidSchema(schema));
                }
                let mut pg = pg.clone();
                pg.redacted = pg.redacted.replace(
                    &format!("schema {}", pg.schema),
                    &format!("schema {schema}"),
                );
                pg.schema = schema;
                Ok(Location::Postgres(pg))
            }
        }
    }
}

/// A database URL as given (it may hold a password): checked when parsed, printed (`Debug`,
/// `Display`) without the password, handed out only by [`expose`](Self::expose).
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    shown: String,
}

impl DatabaseUrl {
    /// The URL itself, password included: for the driver or a private channel only.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl FromStr for DatabaseUrl {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let loc: Location = s.parse()?;
        Ok(Self {
            raw: s.to_owned(),
            shown: loc.to_string(),
        })
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `url` with its `schema=` parameter suffixed `_<role>` (added as `cloister_<role>` when it
/// has none): what `serve` hands each role when they share one PostgreSQL database. The URL
/// keeps its password: pass the result only through a private channel.
pub fn role_url(url: &str, role: &str) -> Result<String, LocationError> {
    let loc: Location = url.parse()?;
    let Location::Postgres(pg) = loc else {
        return Err(LocationError::UnknownScheme("sqlite".into()));
    };
    let schema = format!("{}_{role}", pg.schema);
    if !valid_schema(&schema) {
        return Err(LocationError::InvalidSchema(schema));
    }
    let mut u = url::Url::parse(url).map_err(|e| LocationError::InvalidPostgres(e.to_string()))?;
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "schema")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.set_query(None);
    {
        let mut q = u.query_pairs_mut();
        q.extend_pairs(&pairs);
        q.append_pair("schema", &schema);
    }
    Ok(u.to_string())
}

impl FromStr for Location {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(LocationError::EmptyPath);
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return parse_postgres(s).map(|p| Location::Postgres(Box::new(p)));
        }
        // Only the scheme: the rest may hold a password.
        let scheme: String = s
            .split(':')
            .next()
            .unwrap_or_default()
            .chars()
            .take(16)
            .collect();
        Err(LocationError::UnknownScheme(scheme))
    }
}

fn parse_postgres(s: &str) -> Result<PgLocation, LocationError> {
    let url = url::Url::parse(s).map_err(|e| LocationError::InvalidPostgres(e.to_string()))?;
    let mut schema = DEFAULT_SCHEMA.to_owned();
    let mut roots = None;
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut sslmode: Option<String> = None;
    let mut passed = Vec::new();
    for (k, v) in url.query_pairs() {
        match &*k {
            "schema" => schema = v.into_owned(),
            "sslrootcert" => roots = Some(PathBuf::from(&*v)),
            "sslmode" => sslmode = Some(v.into_owned()),
            "pool_size" => {
                pool_size = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| LocationError::InvalidPoolSize(v.to_string()))?
            }
            _ => passed.push((k.into_owned(), v.into_owned())),
        }
    }
    if !valid_schema(&schema) {
        return Err(LocationError::InvalidSchema(schema));
    }
    let tls = match sslmode.as_deref() {
        None | Some("disable") => PgTls::Disabled,
        Some("prefer") => PgTls::Verified {
            roots,
            optional: true,
        },
        Some("require" | "verify-ca" | "verify-full") => PgTls::Verified {
            roots,
            optional: false,
        },
        Some(other) => return Err(LocationError::InvalidSslMode(other.to_owned())),
    };
    let mut bare = url.clone();
    bare.set_query(None);
    if !passed.is_empty() {
        bare.query_pairs_mut().extend_pairs(&passed);
    }
    let mut config = tokio_postgres::Config::from_str(bare.as_str())
        .map_err(|e| LocationError::InvalidPostgres(e.to_string()))?;
    config.ssl_mode(match &tls {
        PgTls::Disabled => tokio_postgres::config::SslMode::Disable,
        PgTls::Verified { optional: true, .. } => tokio_postgres::config::SslMode::Prefer,
        PgTls::Verified { .. } => tokio_postgres::config::SslMode::Require,
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // Every statement in the store's schema; none may hang a writer (and the locks it holds)
    // forever, and a silently dead peer is noticed.
    config.options(format!(
        "-c search_path={schema} -c statement_timeout=60000 -c lock_timeout=30000"
    ));
    config.keepalives_idle(Duration::from_secs(30));
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    shown.set_query(None);
    let redacted = format!(
        "{shown} (schema {schema}, {})",
        match &tls {
            PgTls::Disabled => "no TLS",
            PgTls::Verified { optional: true, .. } => "TLS when offered",
            PgTls::Verified { .. } => "TLS",
        }
    );
    Ok(PgLocation {
        config,
        schema,
        tls,
        pool_size,
        redacted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_forms() {
        for s in ["sqlite:/tmp/a.db", "sqlite:///tmp/a.db"] {
            match s.parse::<Location>().unwrap() {
                Location::Sqlite(p) => assert_eq!(p, PathBuf::from("/tmp/a.db")),
                other => panic!("{other}"),
            }
        }
        assert_eq!(
            "sqlite:".parse::<Location>().unwrap_err(),
            LocationError::EmptyPath
        );
    }

    #[test]
    fn postgres_url_keeps_our_parameters_and_hides_the_password() {
        let loc: Location = "postgres://app:s3cret@db.example:6432/prod?schema=team_a&sslmode=require&pool_size=4&application_name=x"
            .parse()
            .unwrap();
        let Location::Postgres(pg) = &loc else {
            panic!("{loc}")
        };
        assert_eq!(pg.schema, "team_a");
        assert_eq!(pg.pool_size, 4);
        assert_eq!(
            pg.tls,
            PgTls::Verified {
                roots: None,
                optional: false
            }
        );
        assert_eq!(pg.config.get_dbname(), Some("prod"));
        assert_eq!(pg.config.get_application_name(), Some("x"));
        assert_eq!(pg.config.get_password(), Some(&b"s3cret"[..]));
        for shown in [loc.to_string(), format!("{loc:?}"), format!("{pg:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("schema team_a"), "{shown}");
        }
        let role = loc.for_role("keyvault").unwrap();
        let Location::Postgres(r) = &role else {
            panic!()
        };
        assert_eq!(r.schema, "team_a_keyvault");
        assert!(role.to_string().contains("schema team_a_keyvault"));
    }

    #[test]
    fn bad_urls_are_refused_with_their_reason() {
        let cases = [
            ("mysql://x/y", "unsupported database scheme"),
            ("postgres://h/d?schema=Robert'); DROP", "invalid schema"),
            ("postgres://h/d?schema=9lives", "invalid schema"),
            ("postgres://h/d?sslmode=allow", "unsupported sslmode"),
            ("postgres://h/d?pool_size=0", "invalid pool_size"),
            ("postgres://h/d?nonsense_option=1", "invalid PostgreSQL URL"),
        ];
        for (url, want) in cases {
            let e = url.parse::<Location>().unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
        }
        let e = "mysql://root:hunter2@x/y"
            .parse::<Location>()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn role_urls_keep_everything_but_the_schema() {
        let u = role_url("postgres://u:p@h:5/d?sslmode=require&schema=x", "gateway").unwrap();
        let Location::Postgres(pg) = u.parse().unwrap() else {
            panic!()
        };
        assert_eq!(pg.schema, "x_gateway");
        assert_eq!(pg.config.get_password(), Some(&b"p"[..]));
        assert!(matches!(
            pg.tls,
            PgTls::Verified {
                optional: false,
                ..
            }
        ));
        let u = role_url("postgres://h/d", "keyvault").unwrap();
        assert!(u.ends_with("schema=cloister_keyvault"), "{u}");
        assert!(role_url("sqlite:/x", "gateway").is_err());
    }

    #[test]
    fn a_database_url_never_prints_its_password() {
        let u: DatabaseUrl = "postgres://app:s3cret@h/d?schema=x".parse().unwrap();
        assert!(u.expose().contains("s3cret"));
        for shown in [format!("{u}"), format!("{u:?}"), format!("{:?}", Some(&u))] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn default_schema_and_plain_tcp() {
        let Location::Postgres(pg) = "postgresql://postgres@127.0.0.1/test".parse().unwrap() else {
            panic!()
        };
        assert_eq!(pg.schema, DEFAULT_SCHEMA);
        assert_eq!(pg.tls, PgTls::Disabled);
        assert_eq!(pg.pool_size, DEFAULT_POOL_SIZE);
    }
}
