//! The PostgreSQL backend against the shared store suite, in a private schema per test; and
//! several gateways (separate pools) on one schema at once.

use std::sync::Arc;

use cloister_db::testing::TestSchema;
use cloister_store::conformance::{run_all, sample_version};
use cloister_store::{PgStore, Store, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_store_suite() {
    let Some(db) = TestSchema::new("gw_suite") else {
        return;
    };
    let store = PgStore::connect(&db.pg()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
    run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_starting_together_migrate_once_and_deploy_without_losing_versions() {
    let Some(db) = TestSchema::new("gw_many") else {
        return;
    };
    // Four gateways start at once against an empty schema.
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let pg = db.pg();
            tokio::spawn(async move { PgStore::connect(&pg).await })
        })
        .collect();
    let mut gateways = Vec::new();
    for s in starts {
        gateways.push(Arc::new(s.await.unwrap().unwrap()));
    }
    // Each deploys 10 versions of one function, concurrently.
    let mut tasks = Vec::new();
    for (g, store) in gateways.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..10 {
                let v = store
                    .create_version(sample_version("shared", &format!("g{g}-{i}")))
                    .await
                    .unwrap();
                got.push(v.version);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=40).collect::<Vec<u32>>(),
        "40 deploys, 40 distinct versions"
    );
    let listed = gateways[3].list_versions("shared").await.unwrap();
    assert_eq!(listed.len(), 40, "every acknowledged deploy is stored");
    let ids: std::collections::BTreeSet<_> = listed.iter().map(|v| &v.function_id).collect();
    assert_eq!(ids.len(), 1, "one function, whichever gateway created it");
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_unavailable_not_a_crash() {
    // Nothing listens on port 1.
    let loc: cloister_db::Location = "postgres://postgres@127.0.0.1:1/test".parse().unwrap();
    let cloister_db::Location::Postgres(pg) = loc else {
        unreachable!()
    };
    match PgStore::connect(&pg).await {
        Err(StoreError::Unavailable(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// The database goes away under a running gateway store: calls fail as `Unavailable` (HTTP
/// 503), quickly, and work again when it is back, with no reopen; nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_reads_as_unavailable_and_heals_without_a_restart() {
    use cloister_db::testing::CuttableProxy;
    let Some(db) = TestSchema::new("gw_outage") else {
        return;
    };
    let proxy = CuttableProxy::start(db.server()).await.unwrap();
    let store = PgStore::connect(&db.pg_via(proxy.port)).await.unwrap();
    store
        .create_version(sample_version("kept", "before"))
        .await
        .unwrap();
    proxy.cut();
    let started = std::time::Instant::now();
    match store.get_version("kept", None).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable during the outage, got {other:?}"),
    }
    match store.create_version(sample_version("kept", "during")).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("a write during the outage must fail as Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(12),
        "failing took {:?}",
        started.elapsed()
    );
    proxy.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let v = loop {
        match store.get_version("kept", None).await {
            Ok(v) => break v,
            Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => panic!("the store did not heal: {other:?}"),
        }
    };
    assert_eq!(
        v.map(|v| v.version),
        Some(1),
        "the acknowledged deploy is there, the refused one is not"
    );
    store
        .create_version(sample_version("kept", "after"))
        .await
        .unwrap();
}
