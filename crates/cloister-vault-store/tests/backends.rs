//! keyvault's store backends against the shared suite: SQLite (file and memory), PostgreSQL
//! in a private schema, two handles on one database writing at once, and the take-over of a
//! database of the single-database layout.

use std::sync::Arc;

use cloister_db::testing::TestSchema;
use cloister_vault_store::conformance::{concurrent_writers, run_all};
use cloister_vault_store::{PgVault, SqliteVault, StoreError, VaultStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_passes_the_vault_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteVault::open(&dir.path().join("keyvault.db")).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 2);
    run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_passes_the_vault_suite() {
    run_all(Arc::new(SqliteVault::open_in_memory().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sqlite_handles_on_one_file_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyvault.db");
    let a = SqliteVault::open(&path).unwrap();
    let b = SqliteVault::open(&path).unwrap();
    concurrent_writers(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_vault_suite() {
    let Some(db) = TestSchema::new("kv_suite") else {
        return;
    };
    run_all(Arc::new(PgVault::connect(&db.pg()).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_replicas_writing_at_once_lose_nothing() {
    let Some(db) = TestSchema::new("kv_two") else {
        return;
    };
    let (pa, pb) = (db.pg(), db.pg());
    let (a, b) = tokio::join!(PgVault::connect(&pa), PgVault::connect(&pb));
    concurrent_writers(Arc::new(a.unwrap()), Arc::new(b.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_postgres_schema_is_refused() {
    let Some(db) = TestSchema::new("kv_newer") else {
        return;
    };
    drop(PgVault::connect(&db.pg()).await.unwrap());
    db.execute(&format!(
        "INSERT INTO {}.store_migrations VALUES ('vault', 99, 'future', 'now')",
        db.schema
    ))
    .await
    .unwrap();
    match PgVault::connect(&db.pg()).await {
        Err(StoreError::SchemaTooNew { found: 99, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

/// A file of the single-database layout (every role's tables, `schema_migrations` at 8), as
/// earlier builds left it: copied once per role, each store takes over its own tables and
/// drops the other's.
#[tokio::test]
async fn a_single_database_file_is_split_between_the_stores() {
    use cloister_store::Store as _;
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("cloister.db");
    {
        // Build the legacy layout: both stores' first schema, under the old table.
        drop(cloister_store::SqliteStore::open(&legacy).unwrap());
        let v = SqliteVault::open(&legacy).unwrap();
        v.vault_add_dek(cloister_vault_store::DekRecord {
            namespace: "function-x".into(),
            version: 1,
            id: "d1".into(),
            mek_id: "m".into(),
            wrapped: vec![1],
            created_at: String::new(),
        })
        .await
        .unwrap();
        drop(v);
        let c = rusqlite::Connection::open(&legacy).unwrap();
        c.execute_batch(
            "DROP INDEX kv_epochs_changed; ALTER TABLE kv_epochs DROP COLUMN changed;
             DROP TABLE store_migrations;
             CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);
             INSERT INTO schema_migrations VALUES (1,'a','t'),(2,'b','t'),(3,'c','t'),(4,'d','t'),
               (5,'e','t'),(6,'f','t'),(7,'g','t'),(8,'h','t');
             INSERT INTO functions (id, name, created_at) VALUES ('f1', 'kept', 't');",
        )
        .unwrap();
    }
    let (gw, kv) = (
        dir.path().join("gateway.db"),
        dir.path().join("keyvault.db"),
    );
    std::fs::copy(&legacy, &gw).unwrap();
    std::fs::copy(&legacy, &kv).unwrap();
    let g = cloister_store::SqliteStore::open(&gw).unwrap();
    assert_eq!(g.schema_version().await.unwrap(), 1);
    assert_eq!(g.function_owners("f1").await.unwrap(), Some(vec![]));
    let v = SqliteVault::open(&kv).unwrap();
    assert_eq!(
        v.schema_version().await.unwrap(),
        2,
        "taken over, then migrated on"
    );
    assert_eq!(
        v.vault_deks(None).await.unwrap().len(),
        1,
        "keyvault's rows are kept"
    );
    let tables = |p: &std::path::Path| -> Vec<String> {
        let c = rusqlite::Connection::open(p).unwrap();
        let mut st = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        tables(&gw),
        [
            "function_versions",
            "functions",
            "store_migrations",
            "tokens"
        ]
    );
    assert!(
        !tables(&kv)
            .iter()
            .any(|t| t.starts_with("function") || t == "tokens"),
        "{:?}",
        tables(&kv)
    );
    // A legacy file at another version is refused, not guessed at.
    let odd = dir.path().join("odd.db");
    std::fs::copy(&legacy, &odd).unwrap();
    rusqlite::Connection::open(&odd)
        .unwrap()
        .execute("DELETE FROM schema_migrations WHERE version = 8", [])
        .unwrap();
    match SqliteVault::open(&odd) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("version 7"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// keyvault's store loses its database mid-run: writes and reads fail as `Unavailable`, no
/// acknowledged write is lost, a refused one is not half-written, and the store heals by
/// itself (the audit chain continues without a gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_unavailable_then_heals() {
    use cloister_audit::{Action, AuditDraft};
    use cloister_db::testing::CuttableProxy;
    use cloister_vault_store::AuditLog as _;
    let Some(db) = TestSchema::new("kv_outage") else {
        return;
    };
    let proxy = CuttableProxy::start(db.server()).await.unwrap();
    let store = PgVault::connect(&db.pg_via(proxy.port)).await.unwrap();
    let draft = |s: &str| AuditDraft::new("test", Action::SecretPut, s);
    store.audit_append(draft("before")).await.unwrap();
    proxy.cut();
    match store.audit_append(draft("during")).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    match store.vault_root().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    proxy.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match store.audit_append(draft("after")).await {
            Ok(e) => {
                assert_eq!(e.seq, 2, "the refused append left no entry");
                break;
            }
            Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => panic!("the store did not heal: {other:?}"),
        }
    }
    let entries = store.audit_list(0, 10).await.unwrap();
    cloister_vault_store::conformance::assert_chain(&entries);
    assert_eq!(
        entries
            .iter()
            .map(|e| e.subject.as_str())
            .collect::<Vec<_>>(),
        ["before", "after"]
    );
}
