//! The audit log against a tampering database, and keyvault killed with SIGKILL in the middle
//! of 1,000 secret puts.

mod common;

use std::time::{Duration, Instant};

use cloister_client::attestation::{TrustedKeyvault, seal_secret, verify_bundle};
use cloister_types::SecretPath;
use cloister_types::wire::DeployRequest;
use common::Platform;
use serde_json::Value;

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn trusted(p: &Platform) -> TrustedKeyvault {
    let m = json_out(&p.cli(&["--json", "attest", "measure", "--role", "keyvault"]));
    let mut expected = [0u8; 48];
    hex::decode_to_slice(m["measurement"].as_str().unwrap(), &mut expected).unwrap();
    let bundle = p.admin().attestation().await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    verify_bundle(&bundle, &p.sim_root(), &expected, 300, now).unwrap()
}

async fn deploy(p: &Platform, name: &str, secrets: Vec<String>) -> String {
    let req = DeployRequest {
        required_secrets: secrets,
        limits: Some(serde_json::from_value(serde_json::json!({"timeoutMs": 10000})).unwrap()),
        ..DeployRequest::javascript(name, "function handler(p, secrets) { return secrets; }")
    };
    p.admin().deploy(&req).await.unwrap().function_id
}

fn verify(p: &Platform) -> Value {
    let root = p.sim_root();
    json_out(&p.cli(&["--json", "audit", "verify", "--sim-root", &root]))
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn rows(db: &rusqlite::Connection) -> Vec<Row> {
    let mut st = db
        .prepare("SELECT seq, at, actor, action, subject, details, prev_hash, hash, mac FROM audit_log ORDER BY seq")
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn restore(db: &rusqlite::Connection, original: &[Row]) {
    db.execute("DELETE FROM audit_log", []).unwrap();
    for r in original {
        db.execute(
            "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash, mac) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            rusqlite::params![r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8],
        )
        .unwrap();
    }
}

fn assert_tampered(p: &Platform, first_bad: i64, what: &str) {
    let v = verify(p);
    assert_eq!(v["ok"], false, "{what}: {v}");
    assert_eq!(v["local"]["first_bad_seq"], first_bad, "{what} (CLI): {v}");
    assert_eq!(
        v["keyvault"]["first_bad_seq"], first_bad,
        "{what} (keyvault): {v}"
    );
}

#[tokio::test]
async fn edits_deletions_reordering_and_truncation_are_reported_with_the_first_bad_seq() {
    let p = Platform::start().await;
    for i in 0..6 {
        deploy(&p, &format!("f{i}"), vec![]).await;
    }
    let v = verify(&p);
    assert_eq!(v["ok"], true, "{v}");
    let db = rusqlite::Connection::open(p.data().join("keyvault.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let original = rows(&db);
    let head = original.last().unwrap().0;
    assert!(head >= 7, "init + 6 deploys");

    db.execute(
        "UPDATE audit_log SET subject = 'someone-else' WHERE seq = 4",
        [],
    )
    .unwrap();
    assert_tampered(&p, 4, "edit");
    restore(&db, &original);

    db.execute("DELETE FROM audit_log WHERE seq = 5", [])
        .unwrap();
    assert_tampered(&p, 5, "delete");
    restore(&db, &original);

    // Swap the contents of rows 2 and 3, keeping their sequence numbers.
    let (a, b) = (original[1].clone(), original[2].clone());
    for (seq, r) in [(2, &b), (3, &a)] {
        db.execute(
            "UPDATE audit_log SET at=?1, actor=?2, action=?3, subject=?4, details=?5, prev_hash=?6, hash=?7, mac=?8 WHERE seq=?9",
            rusqlite::params![r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, seq],
        )
        .unwrap();
    }
    assert_tampered(&p, 2, "reorder");
    restore(&db, &original);

    db.execute("DELETE FROM audit_log WHERE seq >= ?1", [head - 1])
        .unwrap();
    assert_tampered(&p, head - 1, "truncate");
    // Deleting keyvault's checkpoints as well does not hide it: keyvault remembers its last one.
    db.execute("DELETE FROM audit_checkpoints", []).unwrap();
    let v = verify(&p);
    assert_eq!(v["keyvault"]["first_bad_seq"], head - 1, "{v}");
    assert_eq!(v["ok"], false);
    restore(&db, &original);
    assert_eq!(verify(&p)["ok"], true);
}

/// A one-line function named `name`, to deploy.
fn tiny(name: &str) -> DeployRequest {
    DeployRequest::javascript(name, "function handler() { return 1; }")
}

fn max_checkpoint(db: &rusqlite::Connection) -> i64 {
    db.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_cut_chain_is_refused_by_the_running_keyvault_and_by_a_restarted_one() {
    let p = Platform::start().await;
    for i in 0..4 {
        deploy(&p, &format!("a{i}"), vec![]).await;
    }
    // The CLI verifies once and remembers keyvault's newest checkpoint.
    assert_eq!(verify(&p)["ok"], true);
    let db = rusqlite::Connection::open(p.data().join("keyvault.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let head = rows(&db).last().unwrap().0;
    let signed_before = max_checkpoint(&db);
    assert!(signed_before >= head - 1, "keyvault checkpointed the head");

    // The database owner cuts the tail; new events arrive and the chain grows past the old
    // head again, consistently hashed.
    db.execute("DELETE FROM audit_log WHERE seq >= ?1", [head - 2])
        .unwrap();
    // The running keyvault refuses to write over the cut: audited operations fail closed.
    let refused = p.admin().deploy(&tiny("during-cut")).await;
    assert!(
        refused.is_err(),
        "deploy over a cut audit chain: {refused:?}"
    );
    assert!(
        p.log().contains("ALARM: the audit chain's head"),
        "{}",
        p.log()
    );
    // A restarted keyvault (crash, or the operator) does not start on the cut chain: its
    // rollback guard (outside the database) holds a checkpoint the chain no longer contains.
    // (A chain regrown behind a running keyvault's back gets no checkpoint either:
    // `audit::a_truncated_chain_that_grows_past_the_old_head_is_not_checkpointed`.)
    let serve_pid = p.child.as_ref().unwrap().id();
    let kv = common::child_pid(serve_pid, "keyvault").expect("keyvault child");
    // SAFETY: signal to a process this test started (indirectly).
    unsafe { libc::kill(kv as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.log().contains("refusing to start") {
        assert!(
            Instant::now() < deadline,
            "keyvault neither came back nor refused: {}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = p.log();
    assert!(log.contains("rollback detected"), "{log}");
    assert!(log.contains("does not contain entry"), "{log}");
    // Nothing audited can happen meanwhile: writes fail closed.
    assert!(p.admin().deploy(&tiny("while-refused")).await.is_err());
    assert_eq!(
        max_checkpoint(&db),
        signed_before,
        "no checkpoint was signed since"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_put_survives_keyvault_being_killed_midway() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const N: usize = 1000;
    const WRITERS: usize = 4;
    let p = Platform::start().await;
    // Spread over functions of 50 (a function declares at most 64 secrets).
    const PER_FN: usize = 50;
    let names: Vec<String> = (0..N).map(|i| format!("S{i:04}")).collect();
    let mut fids = Vec::new();
    for (k, chunk) in names.chunks(PER_FN).enumerate() {
        fids.push(deploy(&p, &format!("many{k}"), chunk.to_vec()).await);
    }
    let fids = Arc::new(fids);
    let kv = Arc::new(trusted(&p).await);
    let serve_pid = p.child.as_ref().unwrap().id();
    let acked_count = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));

    // The killer strikes while puts are in flight (four concurrent writers).
    let killer = {
        let acked_count = acked_count.clone();
        tokio::spawn(async move {
            while acked_count.load(Ordering::SeqCst) < N / 3 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let pid = common::child_pid(serve_pid, "keyvault").expect("keyvault child");
            // SAFETY: signal to a process this test started (indirectly).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mine: Vec<(usize, String)> = names
            .iter()
            .cloned()
            .enumerate()
            .skip(w)
            .step_by(WRITERS)
            .collect();
        let (kv, fids, url, token) = (kv.clone(), fids.clone(), p.url.clone(), p.token.clone());
        let (me, platform) = (p.admin_identity(), kv.audit_key.to_string());
        let (acked_count, failures) = (acked_count.clone(), failures.clone());
        writers.push(tokio::spawn(async move {
            let mut c = cloister_client::Client::new(&url, Some(token))
                .unwrap()
                .with_identity(me, Some(platform));
            let mut acked = Vec::new();
            for (i, name) in mine {
                let fid = &fids[i / PER_FN];
                let path = SecretPath::parse(&format!("function-{fid}/production/default/{name}"))
                    .unwrap();
                let value = format!(
                    "value-{name}-{}",
                    hex::encode(cloister_crypto::random_bytes::<6>().unwrap())
                );
                let sealed = seal_secret(&kv, &path, value.as_bytes()).unwrap();
                let deadline = Instant::now() + Duration::from_secs(60);
                // Retry until acknowledged; a put that failed was not acknowledged.
                loop {
                    match c.put_secret(&path, &sealed, false).await {
                        Ok(_) => break,
                        Err(e) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            assert!(Instant::now() < deadline, "keyvault did not come back: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                acked_count.fetch_add(1, Ordering::SeqCst);
                acked.push((i, name, value));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    killer.await.unwrap();
    assert_eq!(acked.len(), N);
    assert!(p.log().contains("keyvault process exited"), "{}", p.log());
    eprintln!(
        "{} put attempts failed while keyvault restarted (puts queued on its listening socket succeed late)",
        failures.load(Ordering::SeqCst)
    );

    let mut values = Vec::new();
    for k in 0..fids.len() {
        let r = p
            .admin()
            .invoke(&format!("many{k}"), "{}", None)
            .await
            .unwrap();
        values.push(serde_json::from_str::<Value>(r.result.get()).unwrap());
    }
    for (i, name, value) in &acked {
        assert_eq!(values[i / PER_FN][name], value.as_str(), "{name}");
    }
    let v = verify(&p);
    assert_eq!(v["ok"], true, "{v}");
}
