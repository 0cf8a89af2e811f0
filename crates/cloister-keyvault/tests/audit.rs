//! keyvault's audit chain against a database owner: entries recomputed after the last
//! checkpoint lack keyvault's MAC, and a chain cut and regrown gets no new checkpoint.

use std::sync::Arc;

use cloister_audit::{Action, AuditDraft, Problem};
use cloister_crypto::SecretKey32;
use cloister_keyvault::{Sealing, Vault, VaultError};
use cloister_vault_store::{AuditLog, SqliteVault};

async fn vault() -> (tempfile::TempDir, std::path::PathBuf, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    let store = Arc::new(SqliteVault::open(&db).unwrap());
    let sealing = Sealing {
        measurement: [4; 48],
        key: SecretKey32::from_array([4; 32]),
    };
    let (v, _) = Vault::open(store, &sealing, None).await.unwrap();
    (dir, db, v)
}

async fn events(v: &Vault, n: usize, tag: &str) {
    for i in 0..n {
        v.audit(AuditDraft::new(
            "t",
            Action::AuthFailure,
            format!("{tag}{i}"),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn entries_recomputed_after_the_last_checkpoint_are_caught_by_their_mac() {
    let (_d, db, v) = vault().await;
    events(&v, 3, "a").await;
    let cp = v.checkpoint().await.unwrap().unwrap();
    events(&v, 3, "b").await;
    // Rewrite the last two entries with correctly recomputed hashes (no checkpoint covers
    // them yet): the chain alone still verifies.
    let store = SqliteVault::open(&db).unwrap();
    let mut all = store.audit_list(0, 100).await.unwrap();
    let n = all.len();
    let c = rusqlite::Connection::open(&db).unwrap();
    for i in n - 2..n {
        let prev = all[i - 1].hash_bytes().unwrap();
        let mut d = AuditDraft::new("t", Action::AuthFailure, format!("forged{i}"));
        d.details = serde_json::json!({});
        let e = d.chain(all[i].seq, all[i].at.clone(), prev);
        c.execute(
            "UPDATE audit_log SET subject = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![e.subject, e.prev_hash, e.hash, e.seq as i64],
        )
        .unwrap();
        all[i] = e;
    }
    let plain = cloister_audit::verify_chain(&all, std::slice::from_ref(&cp), &v.audit_public());
    assert!(
        plain.ok,
        "hashes and links alone do not catch a recomputed tail"
    );
    let r = v.verify_audit().await.unwrap();
    assert!(!r.ok);
    assert_eq!(r.first_bad_seq, Some(all[n - 2].seq));
    assert!(
        matches!(r.problem, Some(Problem::Unauthenticated { .. })),
        "{r:?}"
    );
    assert!(matches!(
        v.checkpoint().await,
        Err(VaultError::AuditDiverged(_))
    ));
}

#[tokio::test]
async fn a_truncated_chain_that_grows_past_the_old_head_is_not_checkpointed() {
    let (_d, db, v) = vault().await;
    events(&v, 5, "a").await;
    let cp = v.checkpoint().await.unwrap().unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute("DELETE FROM audit_log WHERE seq >= ?1", [cp.seq as i64 - 1])
        .unwrap();
    // While it runs, keyvault refuses to append over the cut (fail closed).
    assert!(
        v.audit(AuditDraft::new("t", Action::AuthFailure, "x"))
            .await
            .is_err()
    );
    // A restarted keyvault appends again, but signs no checkpoint over the regrown chain.
    drop(v);
    let store = Arc::new(SqliteVault::open(&db).unwrap());
    let sealing = Sealing {
        measurement: [4; 48],
        key: SecretKey32::from_array([4; 32]),
    };
    let (v, _) = Vault::open(store, &sealing, None).await.unwrap();
    events(&v, 6, "b").await;
    assert!(matches!(
        v.checkpoint().await,
        Err(VaultError::AuditDiverged(s)) if s == cp.seq
    ));
    let r = v.verify_audit().await.unwrap();
    assert!(!r.ok);
    assert_eq!(r.first_bad_seq, Some(cp.seq));
}

#[tokio::test]
async fn an_intact_chain_is_checkpointed_and_verdicts_are_signed_over_the_nonce() {
    let (_d, _db, v) = vault().await;
    events(&v, 4, "a").await;
    assert!(v.checkpoint().await.unwrap().is_some());
    events(&v, 2, "b").await;
    let cp = v.checkpoint().await.unwrap().unwrap();
    assert!(v.checkpoint().await.unwrap().is_none(), "nothing new");
    let r = v.verify_audit().await.unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.head_seq, cp.seq);
    let json = serde_json::to_string(&r).unwrap();
    let sig = v.sign_verdict(&[1; 32], &json);
    let msg = cloister_types::binding::audit_verdict_message(&[1; 32], &json);
    v.audit_public().verify(&msg, &sig).unwrap();
    assert!(
        v.audit_public()
            .verify(
                &cloister_types::binding::audit_verdict_message(&[2; 32], &json),
                &sig
            )
            .is_err()
    );
}

#[tokio::test]
async fn entries_hidden_behind_keyvault_s_back_stop_the_chain_instead_of_relinking() {
    let (_d, db, v) = vault().await;
    events(&v, 3, "a").await;
    v.checkpoint().await.unwrap().unwrap();
    // The database owner makes every entry about "hide-me" vanish as it is written.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TRIGGER hide AFTER INSERT ON audit_log WHEN NEW.subject = 'hide-me' \
         BEGIN DELETE FROM audit_log WHERE seq = NEW.seq; END;",
    )
    .unwrap();
    v.audit(AuditDraft::new("t", Action::AuthFailure, "hide-me"))
        .await
        .unwrap();
    // The next append would reuse the hidden entry's place: keyvault refuses it loudly.
    let next = v
        .audit(AuditDraft::new("t", Action::AuthFailure, "after"))
        .await;
    assert!(next.is_err(), "appended over a hidden entry");
    assert!(matches!(
        v.checkpoint().await,
        Err(VaultError::AuditDiverged(_))
    ));
    // Deleting an entry after the last checkpoint directly is caught the same way.
    c.execute_batch("DROP TRIGGER hide;").unwrap();
}

#[tokio::test]
async fn a_deleted_tail_after_the_last_checkpoint_gets_no_checkpoint() {
    let (_d, db, v) = vault().await;
    events(&v, 3, "a").await;
    v.checkpoint().await.unwrap().unwrap();
    events(&v, 3, "b").await;
    let c = rusqlite::Connection::open(&db).unwrap();
    let head: i64 = c
        .query_row("SELECT MAX(seq) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    c.execute("DELETE FROM audit_log WHERE seq = ?1", [head])
        .unwrap();
    assert!(matches!(
        v.checkpoint().await,
        Err(VaultError::AuditDiverged(s)) if s == head as u64
    ));
}
