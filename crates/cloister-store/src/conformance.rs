//! The behaviour every [`Store`] backend must show, as a reusable test suite.
//!
//! Each backend's tests call [`run_all`] with a fresh, empty store. The checks panic with a
//! description of the broken rule, like any test assertion.

use std::sync::Arc;

use cloister_types::{Limits, Role};

use crate::{NewToken, NewVersion, Store, StoreError};

/// A valid [`NewVersion`] for tests.
pub fn sample_version(name: &str, code: &str) -> NewVersion {
    NewVersion {
        name: name.to_owned(),
        new_function_id: format!("fn-{name}-{}", code.len()),
        code: code.to_owned(),
        code_hash: format!("sha256:{:064x}", code.len()),
        runtime: "javascript".into(),
        entrypoint: "handler".into(),
        environment: "production".into(),
        required_secrets: vec!["API_KEY".into(), "database/credentials".into()],
        limits: Limits {
            timeout_ms: 1234,
            memory_mb: 32,
        },
        version: None,
        manifest_digest: String::new(),
        owners: vec!["0123456789abcdef0123456789abcdef".into()],
        env: [("LOG_LEVEL".to_owned(), "debug".to_owned())].into(),
        source_name: Some(format!("{name}.js")),
    }
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: Arc<dyn Store>) {
    versions_are_numbered_and_keep_the_function_id(&*store).await;
    lookups_by_name_and_version(&*store).await;
    listing_shows_latest_versions_by_name(&*store).await;
    delete_removes_every_version(&*store).await;
    concurrent_deploys_get_distinct_versions(store.clone()).await;
    tokens_are_found_by_hash_until_revoked(&*store).await;
    token_ids_and_hashes_are_unique(&*store).await;
    owners_follow_keyvault_and_rotations(&*store).await;
    a_rollback_holds_until_the_next_deploy(&*store).await;
}

async fn a_rollback_holds_until_the_next_deploy(store: &dyn Store) {
    for code in ["r1", "r2", "r3"] {
        store
            .create_version(sample_version("rolled", code))
            .await
            .unwrap();
    }
    let versions: Vec<u32> = store
        .list_versions("rolled")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert!(store.list_versions("missing").await.unwrap().is_empty());
    async fn current(s: &dyn Store) -> u32 {
        s.get_current("rolled").await.unwrap().unwrap().version
    }
    assert_eq!(current(store).await, 3);
    assert!(store.set_current_version("rolled", Some(1)).await.unwrap());
    assert_eq!(current(store).await, 1);
    assert_eq!(
        store
            .get_version("rolled", None)
            .await
            .unwrap()
            .unwrap()
            .version,
        3,
        "the latest is still the latest (deploys chain from it)"
    );
    // A version that does not exist, or a function that does not, changes nothing.
    assert!(!store.set_current_version("rolled", Some(9)).await.unwrap());
    assert!(!store.set_current_version("missing", Some(1)).await.unwrap());
    assert_eq!(current(store).await, 1);
    // Asking for a version still gets it; back to the latest, then a deploy moves on.
    assert_eq!(
        store
            .get_version("rolled", Some(3))
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert!(store.set_current_version("rolled", None).await.unwrap());
    assert_eq!(current(store).await, 3);
    assert!(store.set_current_version("rolled", Some(2)).await.unwrap());
    store
        .create_version(sample_version("rolled", "r4"))
        .await
        .unwrap();
    assert_eq!(current(store).await, 4, "a new deploy is current again");
}

async fn owners_follow_keyvault_and_rotations(store: &dyn Store) {
    let (old, new, other) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
    let mut v = sample_version("owned", "o1");
    v.owners = vec![old.clone(), other.clone()];
    let f = store.create_version(v).await.unwrap();
    let mut v = sample_version("not-owned", "o2");
    v.owners = vec![other.clone()];
    let g = store.create_version(v).await.unwrap();
    for (id, hash, identity) in [("tok_old", [21; 32], &old), ("tok_other", [22; 32], &other)] {
        store
            .create_token(NewToken {
                id: id.into(),
                hash,
                role: Role::Developer,
                label: None,
                identity: Some(identity.clone()),
                functions: vec![],
            })
            .await
            .unwrap();
    }
    assert_eq!(store.rebind_identity(&old, &new).await.unwrap(), 1);
    assert_eq!(
        store
            .function_owners(&f.function_id)
            .await
            .unwrap()
            .unwrap(),
        vec![other.clone(), new.clone()]
    );
    assert_eq!(
        store
            .function_owners(&g.function_id)
            .await
            .unwrap()
            .unwrap(),
        vec![other.clone()],
        "functions the old identity did not own are untouched"
    );
    let t = store.find_token(&[21; 32]).await.unwrap().unwrap();
    assert_eq!(t.identity.as_deref(), Some(new.as_str()));
    assert!(
        store
            .set_function_owners(&g.function_id, std::slice::from_ref(&new))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .function_owners(&g.function_id)
            .await
            .unwrap()
            .unwrap(),
        vec![new.clone()]
    );
    assert!(!store.set_function_owners("missing", &[]).await.unwrap());
    assert_eq!(store.revoke_tokens_of(&other).await.unwrap(), 1);
    assert!(store.find_token(&[22; 32]).await.unwrap().is_none());
    assert!(store.find_token(&[21; 32]).await.unwrap().is_some());
}

async fn versions_are_numbered_and_keep_the_function_id(store: &dyn Store) {
    let v1 = store
        .create_version(sample_version("alpha", "a1"))
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.function_id, "fn-alpha-2");
    assert_eq!(v1.required_secrets, vec!["API_KEY", "database/credentials"]);
    let mut second = sample_version("alpha", "a-two");
    second.new_function_id = "ignored-because-alpha-exists".into();
    let v2 = store.create_version(second).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        v2.function_id, v1.function_id,
        "redeploy must keep the function id"
    );
}

async fn lookups_by_name_and_version(store: &dyn Store) {
    let latest = store
        .get_version("alpha", None)
        .await
        .unwrap()
        .expect("alpha exists");
    assert_eq!(latest.version, 2);
    let first = store
        .get_version("alpha", Some(1))
        .await
        .unwrap()
        .expect("alpha v1 exists");
    assert_eq!(first.version, 1);
    assert_eq!(
        first.env.get("LOG_LEVEL").map(String::as_str),
        Some("debug")
    );
    assert_eq!(first.source_name.as_deref(), Some("alpha.js"));
    assert_eq!(
        first.limits,
        Limits {
            timeout_ms: 1234,
            memory_mb: 32
        }
    );
    assert!(store.get_version("alpha", Some(3)).await.unwrap().is_none());
    assert!(store.get_version("nope", None).await.unwrap().is_none());
    assert_eq!(
        store
            .get_code(&first.function_id, 1)
            .await
            .unwrap()
            .as_deref(),
        Some("a1")
    );
    assert_eq!(
        store
            .get_code(&first.function_id, 2)
            .await
            .unwrap()
            .as_deref(),
        Some("a-two")
    );
    assert!(
        store
            .get_code(&first.function_id, 9)
            .await
            .unwrap()
            .is_none()
    );
    // Unicode and large code survive unchanged.
    let big = format!("// ünïcødé ✓\n{}", "x".repeat(300_000));
    let v = store
        .create_version(sample_version("big", &big))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_code(&v.function_id, v.version)
            .await
            .unwrap()
            .as_deref(),
        Some(big.as_str())
    );
}

async fn listing_shows_latest_versions_by_name(store: &dyn Store) {
    store
        .create_version(sample_version("aardvark", "z"))
        .await
        .unwrap();
    let list = store.list_latest().await.unwrap();
    let names: Vec<_> = list.iter().map(|f| (f.name.as_str(), f.version)).collect();
    assert_eq!(names, vec![("aardvark", 1), ("alpha", 2), ("big", 1)]);
}

async fn delete_removes_every_version(store: &dyn Store) {
    let alpha = store
        .get_version("alpha", None)
        .await
        .unwrap()
        .expect("alpha exists");
    assert!(store.delete_function("alpha").await.unwrap());
    assert!(
        !store.delete_function("alpha").await.unwrap(),
        "second delete finds nothing"
    );
    assert!(store.get_version("alpha", None).await.unwrap().is_none());
    assert!(store.get_version("alpha", Some(1)).await.unwrap().is_none());
    assert!(
        store
            .get_code(&alpha.function_id, 1)
            .await
            .unwrap()
            .is_none()
    );
    // A new function with the old name is a new function: new id, numbering restarts.
    let mut again = sample_version("alpha", "fresh");
    again.new_function_id = "fn-alpha-reborn".into();
    let v = store.create_version(again).await.unwrap();
    assert_eq!((v.version, v.function_id.as_str()), (1, "fn-alpha-reborn"));
}

async fn concurrent_deploys_get_distinct_versions(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_version(sample_version("racer", &format!("code {i}")))
                .await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().unwrap().version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=16).collect::<Vec<u32>>());
}

async fn tokens_are_found_by_hash_until_revoked(store: &dyn Store) {
    let t = store
        .create_token(NewToken {
            id: "tok_a".into(),
            hash: [7; 32],
            role: Role::Developer,
            label: Some("ci".into()),
            identity: None,
            functions: vec![],
        })
        .await
        .unwrap();
    assert_eq!(t.role, Role::Developer);
    let found = store
        .find_token(&[7; 32])
        .await
        .unwrap()
        .expect("token by hash");
    assert_eq!(found, t);
    assert!(store.find_token(&[8; 32]).await.unwrap().is_none());
    store
        .create_token(NewToken {
            id: "tok_b".into(),
            hash: [9; 32],
            role: Role::Invoker,
            label: None,
            identity: None,
            functions: vec![],
        })
        .await
        .unwrap();
    let ids: Vec<_> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, vec!["tok_a", "tok_b"]);
    assert!(store.revoke_token("tok_a").await.unwrap());
    assert!(
        !store.revoke_token("tok_a").await.unwrap(),
        "already revoked"
    );
    assert!(!store.revoke_token("tok_missing").await.unwrap());
    assert!(
        store.find_token(&[7; 32]).await.unwrap().is_none(),
        "revoked token must not authenticate"
    );
    let ids: Vec<_> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, vec!["tok_b"]);
}

async fn token_ids_and_hashes_are_unique(store: &dyn Store) {
    let dup_id = store
        .create_token(NewToken {
            id: "tok_b".into(),
            hash: [1; 32],
            role: Role::Admin,
            label: None,
            identity: None,
            functions: vec![],
        })
        .await;
    assert!(
        matches!(dup_id, Err(StoreError::Conflict(_))),
        "duplicate id: {dup_id:?}"
    );
    let dup_hash = store
        .create_token(NewToken {
            id: "tok_c".into(),
            hash: [9; 32],
            role: Role::Admin,
            label: None,
            identity: None,
            functions: vec![],
        })
        .await;
    assert!(
        matches!(dup_hash, Err(StoreError::Conflict(_))),
        "duplicate hash: {dup_hash:?}"
    );
    assert_eq!(
        store.find_token(&[9; 32]).await.unwrap().map(|t| t.role),
        Some(Role::Invoker)
    );
}
