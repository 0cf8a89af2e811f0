//! The behaviour every keyvault store backend must show, as a reusable test suite: the
//! vault's conflict and rotation rules, compare-and-set authority rows, epochs and the audit
//! chain. Each backend's tests call [`run_all`] with a fresh, empty store, and
//! [`concurrent_writers`] with two handles on one database (two keyvault processes). The
//! checks panic with the broken rule, like any test assertion.

use std::sync::Arc;

use cloister_audit::{Action, AuditDraft, AuditEntry, Checkpoint, GENESIS_HASH};

use crate::{
    AuthorityRow, AuthorityWrite, DekRecord, KeyvaultStore, MekRecord, RootRecord, SecretPut,
    SecretRecord, StoreError,
};

fn draft(subject: &str) -> AuditDraft {
    AuditDraft::new("conformance", Action::SecretPut, subject).detail("n", subject.len())
}

fn root() -> RootRecord {
    RootRecord {
        root_id: "r1".into(),
        measurement: "aa".repeat(48),
        sealed: vec![1, 2, 3],
        recovery: vec![4, 5, 6],
        created_at: String::new(),
    }
}

fn mek(id: &str) -> MekRecord {
    MekRecord {
        id: id.into(),
        kek_id: "r1".into(),
        wrapped: vec![7; 40],
        active: true,
        created_at: String::new(),
    }
}

fn dek(ns: &str, version: u32, mek: &str) -> DekRecord {
    DekRecord {
        namespace: ns.into(),
        version,
        id: format!("{ns}-dek-{version}"),
        mek_id: mek.into(),
        wrapped: vec![version as u8; 40],
        created_at: String::new(),
    }
}

/// A secret record of `path` in namespace `ns` (its DEK version 1).
pub fn secret(ns: &str, path: &str, version: u64, dek_version: u32) -> SecretRecord {
    SecretRecord {
        path: path.into(),
        version,
        namespace: ns.into(),
        dek_version,
        ciphertext: format!("ct:{path}:{version}").into_bytes(),
        created_at: String::new(),
    }
}

fn row(kind: &str, key: &str, value: &[u8]) -> AuthorityRow {
    AuthorityRow {
        kind: kind.into(),
        key: key.into(),
        value: value.to_vec(),
        mac: vec![9; 32],
    }
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

/// Every entry links to the one before and carries the hash of its own fields; sequence
/// numbers run from 1 without gaps.
pub fn assert_chain(entries: &[AuditEntry]) {
    let mut prev = hex::encode(GENESIS_HASH);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "sequence numbers have no gaps");
        assert_eq!(e.prev_hash, prev, "entry {} links to the one before", e.seq);
        assert_eq!(
            e.hash,
            hex::encode(e.compute_hash()),
            "entry {} hash covers its fields",
            e.seq
        );
        prev = e.hash.clone();
    }
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: Arc<dyn KeyvaultStore>) {
    the_vault_initialises_once(&*store).await;
    deks_start_at_one_and_rotate_in_order(&*store).await;
    secret_versions_are_compare_and_set(&*store).await;
    a_group_commit_is_in_order_and_all_or_nothing(&*store).await;
    rotations_refuse_a_changed_namespace(&*store).await;
    authority_writes_are_all_or_nothing(&*store).await;
    epochs_count_changes_in_order(&*store).await;
    nonces_expire(&*store).await;
    audit_chain_links_and_checkpoints(&*store).await;
    concurrent_puts_lose_nothing(store.clone(), store.clone()).await;
}

/// Two handles on one database (two processes): concurrent writes through both lose nothing
/// and the audit chain never forks; then a handle holding keyvault's MAC refuses to extend a
/// head the other wrote. The database may be empty or have passed [`run_all`].
pub async fn concurrent_writers(a: Arc<dyn KeyvaultStore>, b: Arc<dyn KeyvaultStore>) {
    concurrent_puts_lose_nothing(a.clone(), b.clone()).await;
    the_keeper_refuses_a_head_it_did_not_write(&*a, &*b).await;
}

async fn the_vault_initialises_once(s: &dyn KeyvaultStore) {
    assert!(
        s.vault_root().await.unwrap().is_none(),
        "a new store has no root"
    );
    s.vault_init(root(), mek("m1"), draft("init"))
        .await
        .unwrap();
    let r = s.vault_root().await.unwrap().expect("root stored");
    assert_eq!(
        (r.root_id.as_str(), r.sealed.as_slice()),
        ("r1", &[1u8, 2, 3][..])
    );
    assert!(!r.created_at.is_empty(), "the store stamps created_at");
    is_conflict(
        s.vault_init(root(), mek("m2"), draft("init again")).await,
        "a second init",
    );
    assert_eq!(
        s.vault_meks().await.unwrap().len(),
        1,
        "the refused init added no MEK"
    );
    s.vault_reseal("bb".repeat(48), vec![8, 8], draft("reseal"))
        .await
        .unwrap();
    let r = s.vault_root().await.unwrap().unwrap();
    assert_eq!((r.measurement, r.sealed), ("bb".repeat(48), vec![8, 8]));
    assert_eq!(
        r.recovery,
        vec![4, 5, 6],
        "resealing keeps the recovery copy"
    );
}

async fn deks_start_at_one_and_rotate_in_order(s: &dyn KeyvaultStore) {
    is_conflict(
        s.vault_add_dek(dek("ns-a", 2, "m1")).await,
        "a first DEK at 2",
    );
    s.vault_add_dek(dek("ns-a", 1, "m1")).await.unwrap();
    is_conflict(
        s.vault_add_dek(dek("ns-a", 1, "m1")).await,
        "a second first DEK",
    );
    s.vault_add_dek(dek("ns-b", 1, "m1")).await.unwrap();
    let all = s.vault_deks(None).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|d| (d.namespace.as_str(), d.version))
            .collect::<Vec<_>>(),
        [("ns-a", 1), ("ns-b", 1)]
    );
    assert_eq!(s.vault_deks(Some("ns-b".into())).await.unwrap().len(), 1);
    // MEK rotation must cover every DEK.
    is_conflict(
        s.vault_rotate_mek(mek("m2"), vec![dek("ns-a", 1, "m2")], draft("mek"))
            .await,
        "a MEK rotation missing a DEK",
    );
    let mut rewrapped = all.clone();
    for d in &mut rewrapped {
        d.wrapped = vec![0xee; 40];
    }
    s.vault_rotate_mek(mek("m2"), rewrapped, draft("mek"))
        .await
        .unwrap();
    let meks = s.vault_meks().await.unwrap();
    assert_eq!(
        meks.iter()
            .filter(|m| m.active)
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        ["m2"],
        "exactly the new MEK is active"
    );
    for d in s.vault_deks(None).await.unwrap() {
        assert_eq!((d.mek_id.as_str(), d.wrapped[0]), ("m2", 0xee));
    }
}

async fn secret_versions_are_compare_and_set(s: &dyn KeyvaultStore) {
    let p = "function-a/production/api/KEY";
    assert_eq!(s.vault_next_version(p.into()).await.unwrap(), 1);
    let at = s
        .vault_put_secret(secret("ns-a", p, 1, 1), draft(p), vec![])
        .await
        .unwrap();
    assert!(!at.is_empty());
    is_conflict(
        s.vault_put_secret(secret("ns-a", p, 1, 1), draft(p), vec![])
            .await,
        "the same version twice",
    );
    is_conflict(
        s.vault_put_secret(secret("ns-a", p, 2, 7), draft(p), vec![])
            .await,
        "a put under a DEK version that is not the latest",
    );
    s.vault_put_secret(secret("ns-a", p, 2, 1), draft(p), vec![])
        .await
        .unwrap();
    assert_eq!(s.vault_next_version(p.into()).await.unwrap(), 3);
    let q = "function-a/production/api/OTHER";
    s.vault_put_secret(secret("ns-a", q, 1, 1), draft(q), vec![])
        .await
        .unwrap();
    let latest = s
        .vault_latest(vec![q.into(), "function-a/none".into(), p.into()])
        .await
        .unwrap();
    assert_eq!(
        latest
            .iter()
            .map(|r| (r.path.as_str(), r.version))
            .collect::<Vec<_>>(),
        [(q, 1), (p, 2)],
        "latest of each path that exists, in the order asked"
    );
    assert_eq!(latest[1].ciphertext, format!("ct:{p}:2").into_bytes());
    let recs = s.vault_records(p.into()).await.unwrap();
    assert_eq!(recs.iter().map(|r| r.version).collect::<Vec<_>>(), [1, 2]);
    let list = s.vault_list("function-a/".into()).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|l| (l.path.as_str(), l.latest_version, l.versions))
            .collect::<Vec<_>>(),
        [(p, 2, 2), (q, 1, 1)]
    );
    assert!(s.vault_list("function-b/".into()).await.unwrap().is_empty());
    assert!(
        s.vault_list("function-a/production/api/K_".into())
            .await
            .unwrap()
            .is_empty(),
        "a prefix is literal (no LIKE wildcards)"
    );
    let versions = s.vault_versions(p.into()).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(s.vault_delete(q.into(), draft(q), vec![]).await.unwrap());
    assert!(!s.vault_delete(q.into(), draft(q), vec![]).await.unwrap());
    assert!(s.vault_latest(vec![q.into()]).await.unwrap().is_empty());
    assert_eq!(
        s.vault_namespace_secrets("ns-a".into())
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn a_group_commit_is_in_order_and_all_or_nothing(s: &dyn KeyvaultStore) {
    s.vault_add_dek(dek("ns-g", 1, "m2")).await.unwrap();
    let (x, y, z) = (
        "function-g/production/x/X",
        "function-g/production/x/Y",
        "function-g/production/x/Z",
    );
    let put = |path: &str, version: u64, expect: Option<&[u8]>, value: &[u8]| SecretPut {
        secret: secret("ns-g", path, version, 1),
        audit: draft(path),
        extra: vec![AuthorityWrite {
            row: row("fresh", "ns-g", value),
            expect: expect.map(<[u8]>::to_vec),
        }],
    };
    let head = s.audit_head().await.unwrap().unwrap().0;
    let epoch = s.vault_epoch("ns-g".into()).await.unwrap();
    // Each put sees the ones before it: X twice, and the mark row chained through all three.
    let times = s
        .vault_put_secrets(vec![
            put(x, 1, None, b"m1"),
            put(x, 2, Some(b"m1"), b"m2"),
            put(y, 1, Some(b"m2"), b"m3"),
        ])
        .await
        .unwrap();
    assert_eq!(times.len(), 3);
    assert_eq!(
        s.vault_records(x.into())
            .await
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(s.vault_next_version(y.into()).await.unwrap(), 2);
    assert_eq!(
        s.authority_get("fresh", "ns-g")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"m3"
    );
    assert_eq!(s.vault_epoch("ns-g".into()).await.unwrap(), epoch + 3);
    let entries = s.audit_list(head, 100).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| e.subject.as_str())
            .collect::<Vec<_>>(),
        [x, x, y],
        "one audit entry per put, in order"
    );
    // The second put conflicts: the first is not stored either, and nothing moved.
    is_conflict(
        s.vault_put_secrets(vec![
            put(z, 1, Some(b"m3"), b"m4"),
            put(x, 2, Some(b"m4"), b"m5"),
        ])
        .await,
        "a group commit with a stale version",
    );
    is_conflict(
        s.vault_put_secrets(vec![
            put(z, 1, Some(b"m3"), b"m4"),
            put(y, 2, Some(b"m3"), b"m5"),
        ])
        .await,
        "a group commit whose second mark expects the value before the first",
    );
    assert!(
        s.vault_records(z.into()).await.unwrap().is_empty(),
        "all or nothing"
    );
    assert_eq!(
        s.authority_get("fresh", "ns-g")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"m3"
    );
    assert_eq!(s.vault_epoch("ns-g".into()).await.unwrap(), epoch + 3);
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head + 3);
    assert!(s.vault_put_secrets(vec![]).await.unwrap().is_empty());
}

async fn rotations_refuse_a_changed_namespace(s: &dyn KeyvaultStore) {
    let p = "function-a/production/api/KEY";
    let mut current = s.vault_namespace_secrets("ns-a".into()).await.unwrap();
    is_conflict(
        s.vault_rotate_dek(dek("ns-a", 3, "m2"), current.clone(), draft("dek"))
            .await,
        "a DEK rotation skipping a version",
    );
    is_conflict(
        s.vault_rotate_dek(dek("ns-a", 2, "m2"), current[..1].to_vec(), draft("dek"))
            .await,
        "a DEK rotation missing a value",
    );
    for r in &mut current {
        r.ciphertext = b"re-encrypted".to_vec();
    }
    let before = s.vault_epoch("ns-a".into()).await.unwrap();
    s.vault_rotate_dek(dek("ns-a", 2, "m2"), current, draft("dek"))
        .await
        .unwrap();
    assert!(
        s.vault_epoch("ns-a".into()).await.unwrap() > before,
        "rotation bumps the epoch"
    );
    for r in s.vault_records(p.into()).await.unwrap() {
        assert_eq!(
            (r.dek_version, r.ciphertext.as_slice()),
            (2, &b"re-encrypted"[..])
        );
    }
    is_conflict(
        s.vault_put_secret(secret("ns-a", p, 3, 1), draft(p), vec![])
            .await,
        "a put under the rotated-away DEK",
    );
    s.vault_put_secret(secret("ns-a", p, 3, 2), draft(p), vec![])
        .await
        .unwrap();
}

async fn authority_writes_are_all_or_nothing(s: &dyn KeyvaultStore) {
    let w = |kind: &str, key: &str, v: &[u8], expect: Option<&[u8]>| AuthorityWrite {
        row: row(kind, key, v),
        expect: expect.map(<[u8]>::to_vec),
    };
    s.authority_write(vec![w("identity", "alice", b"v1", None)], None, None)
        .await
        .unwrap();
    is_conflict(
        s.authority_write(vec![w("identity", "alice", b"v2", None)], None, None)
            .await,
        "creating a row that exists",
    );
    is_conflict(
        s.authority_write(vec![w("identity", "alice", b"v2", Some(b"v0"))], None, None)
            .await,
        "replacing a value that is not the current one",
    );
    // Two writes, the second stale: neither lands.
    is_conflict(
        s.authority_write(
            vec![
                w("identity", "bob", b"b1", None),
                w("identity", "alice", b"v2", Some(b"stale")),
            ],
            Some(draft("both")),
            Some("ns-auth".into()),
        )
        .await,
        "a group with one stale expectation",
    );
    assert!(
        s.authority_get("identity", "bob").await.unwrap().is_none(),
        "nothing of a refused group is written"
    );
    assert_eq!(s.vault_epoch("ns-auth".into()).await.unwrap(), 0);
    s.authority_write(
        vec![
            w("identity", "bob", b"b1", None),
            w("identity", "alice", b"v2", Some(b"v1")),
        ],
        Some(draft("both")),
        Some("ns-auth".into()),
    )
    .await
    .unwrap();
    assert_eq!(s.vault_epoch("ns-auth".into()).await.unwrap(), 1);
    let got = s.authority_get("identity", "alice").await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.mac.len()), (&b"v2"[..], 32));
    let listed = s.authority_list("identity").await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    // The audit entry of a group records the rows it wrote.
    let head = s.audit_head().await.unwrap().unwrap();
    let last = s.audit_list(head.0 - 1, 1).await.unwrap();
    assert!(last[0].details.contains("\"rows\""), "{}", last[0].details);
    // A put with a stale authority row writes neither the secret nor the row.
    let p = "function-a/production/api/GUARDED";
    is_conflict(
        s.vault_put_secret(
            secret("ns-a", p, 1, 2),
            draft(p),
            vec![w("latest", p, b"1", Some(b"9"))],
        )
        .await,
        "a put whose freshness row is stale",
    );
    assert!(s.vault_records(p.into()).await.unwrap().is_empty());
    s.vault_put_secret(
        secret("ns-a", p, 1, 2),
        draft(p),
        vec![w("latest", p, b"1", None)],
    )
    .await
    .unwrap();
    assert!(s.authority_get("latest", p).await.unwrap().is_some());
}

async fn epochs_count_changes_in_order(s: &dyn KeyvaultStore) {
    let before = s.vault_epoch_changes(0, 1000).await.unwrap();
    let mark = before.iter().map(|c| c.changed).max().unwrap_or(0);
    assert!(
        before.windows(2).all(|w| w[0].changed < w[1].changed),
        "changes come in order"
    );
    let p = "function-e/production/x/Y";
    s.vault_add_dek(dek("ns-e", 1, "m2")).await.unwrap();
    let e0 = s.vault_epoch("ns-e".into()).await.unwrap();
    s.vault_put_secret(secret("ns-e", p, 1, 1), draft(p), vec![])
        .await
        .unwrap();
    assert_eq!(s.vault_epoch("ns-e".into()).await.unwrap(), e0 + 1);
    s.vault_delete(p.into(), draft(p), vec![]).await.unwrap();
    assert_eq!(s.vault_epoch("ns-e".into()).await.unwrap(), e0 + 2);
    let after = s.vault_epoch_changes(mark, 1000).await.unwrap();
    assert_eq!(
        after.len(),
        1,
        "one namespace changed since the mark: {after:?}"
    );
    assert_eq!(
        (after[0].namespace.as_str(), after[0].epoch),
        ("ns-e", e0 + 2)
    );
    assert!(after[0].changed > mark);
    assert!(
        s.vault_epoch_changes(after[0].changed, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.vault_epoch_changes(0, 1).await.unwrap().len(),
        1,
        "limit holds"
    );
}

async fn nonces_expire(s: &dyn KeyvaultStore) {
    s.nonces_persist(vec![("n1".into(), 100), ("n2".into(), 200)], 50)
        .await
        .unwrap();
    s.nonces_persist(vec![("n1".into(), 100)], 50)
        .await
        .unwrap();
    let mut live = s.nonces_load(150).await.unwrap();
    live.sort();
    assert_eq!(live, [("n2".to_owned(), 200)]);
    s.nonces_persist(vec![], 250).await.unwrap();
    assert!(
        s.nonces_load(0).await.unwrap().is_empty(),
        "expired nonces are forgotten"
    );
}

async fn audit_chain_links_and_checkpoints(s: &dyn KeyvaultStore) {
    let (head, _) = s.audit_head().await.unwrap().unwrap();
    let one = s.audit_append(draft("one")).await.unwrap();
    assert_eq!(one.seq, head + 1);
    let last = s
        .audit_append_many(vec![draft("two"), draft("three")])
        .await
        .unwrap();
    assert_eq!(last, head + 3);
    assert_eq!(s.audit_append_many(vec![]).await.unwrap(), 0);
    let all = s.audit_list(0, 10_000).await.unwrap();
    assert_chain(&all);
    assert_eq!(all.last().map(|e| e.subject.as_str()), Some("three"));
    let page = s.audit_list(head, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    let cp = Checkpoint {
        seq: last,
        hash: all.last().unwrap().hash.clone(),
        at: "2026-12-08T00:00:00.000Z".into(),
        key: "k".into(),
        signature: "s".into(),
    };
    s.audit_add_checkpoint(cp.clone()).await.unwrap();
    s.audit_add_checkpoint(cp.clone()).await.unwrap();
    assert_eq!(
        s.audit_checkpoints().await.unwrap(),
        [cp],
        "checkpoints are idempotent"
    );
}

async fn concurrent_puts_lose_nothing(a: Arc<dyn KeyvaultStore>, b: Arc<dyn KeyvaultStore>) {
    if a.vault_root().await.unwrap().is_none() {
        a.vault_init(root(), mek("m1"), draft("init"))
            .await
            .unwrap();
    }
    let ns = "ns-c";
    if a.vault_deks(Some(ns.into())).await.unwrap().is_empty() {
        a.vault_add_dek(dek(ns, 1, "m1")).await.unwrap();
    }
    let dek_version = a
        .vault_deks(Some(ns.into()))
        .await
        .unwrap()
        .last()
        .unwrap()
        .version;
    let before = a.audit_head().await.unwrap().map(|h| h.0).unwrap_or(0);
    let epoch = a.vault_epoch(ns.into()).await.unwrap();
    // 16 writers, half through each handle: 8 distinct paths, plus 8 racing for one version.
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let path = if i < 8 {
                format!("function-c/production/x/P{i}")
            } else {
                "function-c/production/x/RACE".to_owned()
            };
            let mut done = 0;
            for _ in 0..4 {
                let v = s.vault_next_version(path.clone()).await.unwrap();
                match s
                    .vault_put_secret(secret(ns, &path, v, dek_version), draft(&path), vec![])
                    .await
                {
                    Ok(_) => done += 1,
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => panic!("{path}: {e}"),
                }
            }
            (path, done)
        }));
    }
    let mut acknowledged = 0u64;
    let mut race = 0u64;
    for t in tasks {
        let (path, done) = t.await.unwrap();
        acknowledged += done;
        if path.ends_with("RACE") {
            race += done;
        } else {
            assert_eq!(done, 4, "{path}: uncontended puts all succeed");
        }
    }
    let race_versions = b
        .vault_records("function-c/production/x/RACE".into())
        .await
        .unwrap();
    assert_eq!(
        race_versions.len() as u64,
        race,
        "every acknowledged racing put is stored, and nothing else"
    );
    assert!(
        race_versions
            .iter()
            .enumerate()
            .all(|(i, r)| r.version == i as u64 + 1),
        "racing puts got distinct consecutive versions"
    );
    assert_eq!(
        b.vault_epoch(ns.into()).await.unwrap(),
        epoch + acknowledged,
        "one epoch bump per acknowledged put"
    );
    let entries = b.audit_list(0, 100_000).await.unwrap();
    assert_chain(&entries);
    assert_eq!(
        entries.last().map(|e| e.seq).unwrap_or(0),
        before + acknowledged,
        "one audit entry per acknowledged put, none for a refused one"
    );
}

async fn the_keeper_refuses_a_head_it_did_not_write(
    keeper: &dyn KeyvaultStore,
    other: &dyn KeyvaultStore,
) {
    keeper.set_audit_mac(Arc::new(|h: &str| format!("mac:{}", &h[..8])));
    let e = keeper.audit_append(draft("maced")).await.unwrap();
    assert_eq!(e.mac, format!("mac:{}", &e.hash[..8]));
    assert_eq!(keeper.audit_written_head(), Some((e.seq, e.hash.clone())));
    // A refused write leaves the head where it was.
    is_conflict(
        keeper.vault_init(root(), mek("m9"), draft("refused")).await,
        "init of an initialised vault",
    );
    assert_eq!(keeper.audit_written_head(), Some((e.seq, e.hash.clone())));
    keeper.audit_append(draft("still fine")).await.unwrap();
    // Another writer (the database's owner) appends a well-formed entry behind its back.
    other.audit_append(draft("intruder")).await.unwrap();
    match keeper.audit_append(draft("after the intrusion")).await {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("an append after a foreign entry must fail, got {other:?}"),
    }
}
