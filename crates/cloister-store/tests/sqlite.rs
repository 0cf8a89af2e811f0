//! The SQLite backend against the shared store suite, plus durability across reopen.

use std::sync::Arc;

use cloister_store::conformance::{run_all, sample_version};
use cloister_store::{NewToken, SqliteStore, Store};
use cloister_types::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_passes_the_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("gateway.db")).unwrap();
    run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_passes_the_store_suite() {
    run_all(Arc::new(SqliteStore::open_in_memory().unwrap())).await;
}

#[tokio::test]
async fn state_survives_reopen_and_migrations_are_not_reapplied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .create_version(sample_version("keep", "code"))
            .await
            .unwrap();
        store
            .create_token(NewToken {
                id: "tok_k".into(),
                hash: [3; 32],
                role: Role::Admin,
                label: None,
                identity: None,
                functions: vec![],
            })
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
    let v = store
        .get_version("keep", None)
        .await
        .unwrap()
        .expect("function survives reopen");
    assert_eq!(
        store.get_code(&v.function_id, 1).await.unwrap().as_deref(),
        Some("code")
    );
    assert!(store.find_token(&[3; 32]).await.unwrap().is_some());
}
