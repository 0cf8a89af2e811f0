//! PostgreSQL connection pools: one per store, every connection in the store's schema, TLS as
//! the location asks, errors mapped so that a lost server reads as [`StoreError::Unavailable`]
//! (HTTP 503) and a lost race as [`StoreError::Conflict`].

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

use crate::{PgLocation, PgTls, StoreError};

/// How long a caller waits for a pooled connection (or a new one) before `Unavailable`.
const WAIT: Duration = Duration::from_secs(5);

/// Maps a driver error: races are conflicts, a lost connection is `Unavailable`.
pub fn pg_error(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        // Lost races only: a broken foreign key or check is a bug, not something to retry.
        if *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return StoreError::Conflict(db.message().to_owned());
        }
        if code.code().starts_with("08")
            || code.code().starts_with("57P")
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            return StoreError::Unavailable(db.message().to_owned());
        }
        return StoreError::Backend(format!("{} ({})", db.message(), code.code()));
    }
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return StoreError::Unavailable(e.to_string());
    }
    StoreError::Backend(e.to_string())
}

/// Maps a pool error (timeouts and failed connects are `Unavailable`).
pub fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// A pool of connections to `loc` (lazy: nothing is dialled until first use).
pub fn pool(loc: &PgLocation) -> Result<Pool, StoreError> {
    let mc = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &loc.tls {
        PgTls::Disabled => Manager::from_config(loc.config.clone(), tokio_postgres::NoTls, mc),
        PgTls::Verified { roots, .. } => {
            let connector =
                tokio_postgres_rustls::MakeRustlsConnect::new(client_config(roots.as_deref())?);
            Manager::from_config(loc.config.clone(), connector, mc)
        }
    };
    Pool::builder(manager)
        .max_size(loc.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT))
        .create_timeout(Some(WAIT))
        .recycle_timeout(Some(WAIT))
        .build()
        .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))
}

fn client_config(roots: Option<&std::path::Path>) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| StoreError::Backend(format!("sslrootcert {}: {e}", path.display())))?;
            for c in certs {
                let c = c.map_err(|e| {
                    StoreError::Backend(format!("sslrootcert {}: {e}", path.display()))
                })?;
                store.add(c).map_err(|e| {
                    StoreError::Backend(format!("sslrootcert {}: {e}", path.display()))
                })?;
            }
            if store.is_empty() {
                return Err(StoreError::Backend(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS configuration: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// A pooled connection, or `Unavailable`.
pub async fn connection(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(pool_error)
}
