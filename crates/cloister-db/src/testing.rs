//! Tests against PostgreSQL: each gets a private schema on the shared server, dropped when
//! the handle is (even after a panic), so runs never collide.
//!
//! The server is `CLOISTER_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`,
//! which `.ci/run` starts when absent). Set it to `off` to skip PostgreSQL tests on a machine
//! without a server; they then print that they were skipped instead of passing silently.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Location, PgLocation};

/// Default server for tests.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A private schema on the test server.
pub struct TestSchema {
    base: String,
    /// The schema's name.
    pub schema: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestSchema {
    /// A new, empty schema name (created by the store that opens it), or `None` when
    /// `CLOISTER_TEST_POSTGRES=off`.
    pub fn new(label: &str) -> Option<TestSchema> {
        let base = std::env::var("CLOISTER_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.into());
        if base == "off" {
            eprintln!("SKIPPED: CLOISTER_TEST_POSTGRES=off (no PostgreSQL test for {label})");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!(
            "t_{label}_{}_{}_{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
        .to_ascii_lowercase();
        Some(TestSchema { base, schema })
    }

    /// The URL of this schema (`schema=` appended), e.g. to give a spawned process.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.base, self.schema)
    }

    /// The location of this schema.
    pub fn location(&self) -> Location {
        match self.url().parse() {
            Ok(l) => l,
            Err(e) => panic!("CLOISTER_TEST_POSTGRES is not a usable URL: {e}"),
        }
    }

    /// The PostgreSQL location of this schema.
    pub fn pg(&self) -> PgLocation {
        match self.location() {
            Location::Postgres(pg) => *pg,
            other => panic!("CLOISTER_TEST_POSTGRES is not a PostgreSQL URL: {other}"),
        }
    }

    /// The PostgreSQL location of this schema reached through `127.0.0.1:port` (a
    /// [`CuttableProxy`] in front of the server).
    pub fn pg_via(&self, port: u16) -> PgLocation {
        let mut u = match url::Url::parse(&self.url()) {
            Ok(u) => u,
            Err(e) => panic!("CLOISTER_TEST_POSTGRES is not a usable URL: {e}"),
        };
        let _ = u.set_host(Some("127.0.0.1"));
        let _ = u.set_port(Some(port));
        match u.as_str().parse() {
            Ok(Location::Postgres(pg)) => *pg,
            other => panic!("not a PostgreSQL location: {other:?}"),
        }
    }

    /// Where the test server listens (host, port), for a proxy in front of it.
    pub fn server(&self) -> (String, u16) {
        let u = match url::Url::parse(&self.base) {
            Ok(u) => u,
            Err(e) => panic!("CLOISTER_TEST_POSTGRES is not a usable URL: {e}"),
        };
        (
            u.host_str().unwrap_or("127.0.0.1").to_owned(),
            u.port().unwrap_or(5432),
        )
    }

    /// Runs SQL on the test server (outside any store), e.g. to play the database's owner.
    pub async fn execute(&self, sql: &str) -> Result<u64, tokio_postgres::Error> {
        let pg = self.pg();
        let (client, conn) = pg.config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.execute(sql, &[]).await
    }

    fn drop_schemas(&self, schemas: Vec<String>) {
        let base = self.base.clone();
        // Drop runs outside any runtime we may block: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(config) = base.parse::<tokio_postgres::Config>() else {
                    return;
                };
                let Ok((client, conn)) = config.connect(tokio_postgres::NoTls).await else {
                    return;
                };
                tokio::spawn(conn);
                for s in schemas {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // The schema and the per-role schemas `serve` derives from it.
        self.drop_schemas(vec![
            self.schema.clone(),
            format!("{}_gateway", self.schema),
            format!("{}_keyvault", self.schema),
        ]);
    }
}

/// A TCP proxy in front of the test server that a test can cut (every open connection
/// dropped, new ones refused) and restore: a database outage without touching the server
/// other tests share.
pub struct CuttableProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Starts forwarding 127.0.0.1:<port> to `target`.
    pub async fn start(target: (String, u16)) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (u, o) = (up.clone(), open.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                if let Ok(mut v) = o.lock() {
                    v.retain(|t| !t.is_finished());
                    v.push(task);
                }
            }
        });
        Ok(Self {
            port,
            up,
            open,
            accept,
        })
    }

    /// Drops every open connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut v) = self.open.lock() {
            for t in v.drain(..) {
                t.abort();
            }
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
