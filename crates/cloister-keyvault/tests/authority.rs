//! keyvault's authority, played against as a hostile gateway or database owner would: every
//! request here reaches keyvault directly, and each refusal is the one the API documents.

use std::sync::Arc;

use cloister_authority::manifest::{Manifest, ManifestLimits};
use cloister_authority::ops::{Activation, IdentityGrant, IdentityRole, SecretOp, SecretWrite};
use cloister_authority::request::Body;
use cloister_authority::{Identity, SignOptions, sign};
use cloister_crypto::SecretKey32;
use cloister_keyvault::{Sealing, Vault};
use cloister_types::{Environment, ErrorCode, SecretPath, SecretRef, code_hash};
use cloister_vault_store::SqliteVault;
use sha2::{Digest, Sha256};

fn sealing() -> Sealing {
    Sealing {
        measurement: [1; 48],
        key: SecretKey32::from_array([0x5b; 32]),
    }
}

fn admin() -> Identity {
    Identity::from_seed([1u8; 32], "admin").unwrap()
}
fn alice() -> Identity {
    Identity::from_seed([2u8; 32], "alice").unwrap()
}
fn mallory() -> Identity {
    Identity::from_seed([3u8; 32], "mallory").unwrap()
}

struct Fx {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    v: Vault,
}

async fn open(db: &std::path::Path) -> Vault {
    let store = Arc::new(SqliteVault::open(db).unwrap());
    Vault::open(store, &sealing(), Some(&admin().public_key()))
        .await
        .unwrap()
        .0
}

impl Fx {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kv.db");
        let v = open(&db).await;
        let fx = Self { _dir: dir, db, v };
        // The admin registers alice and mallory as developers.
        for (who, label) in [(alice(), "alice"), (mallory(), "mallory")] {
            let g = IdentityGrant {
                public_key: who.public_key().to_string(),
                role: IdentityRole::Developer,
                label: label.into(),
                expires: None,
            };
            fx.v.authority()
                .grant_identity(&fx.signed(&admin(), &g))
                .await
                .unwrap();
        }
        fx
    }

    fn signed<B: Body>(&self, who: &Identity, body: &B) -> Vec<u8> {
        sign(who, body, &SignOptions::for_platform(self.v.platform())).unwrap()
    }
}

fn manifest(name: &str, code: &str, secrets: &[&str]) -> Manifest {
    Manifest {
        name: name.into(),
        function_id: None,
        previous: None,
        environment: "production".into(),
        runtime: "javascript".into(),
        entrypoint: "handler".into(),
        code_hash: code_hash(code),
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        limits: ManifestLimits {
            timeout_ms: 1000,
            memory_mb: 16,
        },
        activate: true,
        confidential: false,
        env: Default::default(),
        source_name: None,
        keys: Vec::new(),
        key_limits: Default::default(),
        egress: None,
    }
}

/// alice registers `name` with `code` declaring `secrets` on `v`.
async fn alice_deploys(
    v: &Vault,
    name: &str,
    code: &str,
    secrets: &[&str],
) -> cloister_keyvault::authority::Registered {
    let signed = sign(
        &alice(),
        &manifest(name, code, secrets),
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap();
    v.authority().register_manifest(&signed).await.unwrap()
}

/// The path of secret `name` of function `id` in the default environment.
fn secret_path(id: &str, name: &str) -> SecretPath {
    SecretPath::for_function(
        id,
        &Environment::default(),
        &SecretRef::parse(name).unwrap(),
    )
    .unwrap()
}

fn denied<T: std::fmt::Debug>(r: Result<T, cloister_keyvault::authority::Denied>) -> ErrorCode {
    r.expect_err("refused").code()
}

#[tokio::test]
async fn only_registered_owners_deploy_and_the_chain_of_manifests_cannot_be_forked() {
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let v1 = a
        .register_manifest(&fx.signed(&alice(), &manifest("pay", "v1", &["KEY"])))
        .await
        .unwrap();
    let id = v1.function.function_id.clone();
    assert_eq!(v1.manifest.version, 1);
    assert_eq!(v1.function.owners, vec![alice().id().clone()]);

    // Unknown signer.
    let stranger = Identity::from_seed([7u8; 32], "stranger").unwrap();
    assert_eq!(
        denied(
            a.register_manifest(&fx.signed(&stranger, &manifest("x", "x", &[])))
                .await
        ),
        ErrorCode::UnknownIdentity
    );

    // Another developer redeploys alice's function (with the right previous digest).
    let mut next = manifest("pay", "evil", &["KEY", "OTHER"]);
    next.function_id = Some(id.clone());
    next.previous = Some(v1.manifest.digest.clone());
    assert_eq!(
        denied(a.register_manifest(&fx.signed(&mallory(), &next)).await),
        ErrorCode::NotOwner
    );
    // ... or takes its name as a new function, or binds the name to the id of another.
    assert_eq!(
        denied(
            a.register_manifest(&fx.signed(&mallory(), &manifest("pay", "evil", &[])))
                .await
        ),
        ErrorCode::Conflict
    );
    let mine = a
        .register_manifest(&fx.signed(&mallory(), &manifest("mine", "m", &[])))
        .await
        .unwrap();
    let mut bind = manifest("pay", "evil", &[]);
    bind.function_id = Some(mine.function.function_id.clone());
    bind.previous = Some(mine.manifest.digest.clone());
    assert_eq!(
        denied(a.register_manifest(&fx.signed(&mallory(), &bind)).await),
        ErrorCode::ManifestMismatch
    );

    // The owner's v2 works; the exact same signed bytes replayed are refused.
    let v2_signed = fx.signed(&alice(), &next);
    let v2 = a.register_manifest(&v2_signed).await.unwrap();
    assert_eq!(v2.manifest.version, 2);
    assert_eq!(
        denied(a.register_manifest(&v2_signed).await),
        ErrorCode::ReplayedRequest
    );
    // A freshly signed manifest naming v1 as previous (a fork / replayed old version).
    assert_eq!(
        denied(a.register_manifest(&fx.signed(&alice(), &next)).await),
        ErrorCode::ManifestMismatch
    );
    // The admin may act on every function (documented: admins can take over).
    let mut by_admin = manifest("pay", "v3", &[]);
    by_admin.function_id = Some(id.clone());
    by_admin.previous = Some(v2.manifest.digest.clone());
    assert_eq!(
        a.register_manifest(&fx.signed(&admin(), &by_admin))
            .await
            .unwrap()
            .manifest
            .version,
        3
    );
}

#[tokio::test]
async fn signed_requests_are_bound_to_this_platform_and_expire() {
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let m = manifest("f", "c", &[]);
    let elsewhere = sign(&alice(), &m, &SignOptions::for_platform(&"ab".repeat(32))).unwrap();
    assert_eq!(
        denied(a.register_manifest(&elsewhere).await),
        ErrorCode::BadSignature
    );
    let old = SignOptions {
        platform: fx.v.platform().to_owned(),
        now: 1_000_000,
        ttl_secs: 60,
    };
    assert_eq!(
        denied(
            a.register_manifest(&sign(&alice(), &m, &old).unwrap())
                .await
        ),
        ErrorCode::RequestExpired
    );
    let long = SignOptions {
        ttl_secs: 86_400,
        ..SignOptions::for_platform(fx.v.platform())
    };
    assert_eq!(
        denied(
            a.register_manifest(&sign(&alice(), &m, &long).unwrap())
                .await
        ),
        ErrorCode::RequestExpired
    );
    // A manifest signature presented as another operation is refused.
    let act = Activation {
        function_id: "00000000-0000-4000-8000-000000000000".into(),
        name: "pay".into(),
        version: 1,
        active: true,
        and_newer: false,
    };
    assert_eq!(
        denied(a.register_manifest(&fx.signed(&alice(), &act)).await),
        ErrorCode::InvalidRequest
    );
}

#[tokio::test]
async fn release_needs_the_manifest_code_and_an_active_version() {
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let reg = a
        .register_manifest(&fx.signed(&alice(), &manifest("pay", "real code", &["KEY"])))
        .await
        .unwrap();
    let id = reg.function.function_id.clone();
    let ok = a
        .authorize_run(&id, 1, &code_hash("real code"))
        .await
        .unwrap();
    assert_eq!(ok.secrets.len(), 1);
    assert_eq!(
        denied(a.authorize_run(&id, 1, &code_hash("other code")).await),
        ErrorCode::ManifestMismatch
    );
    assert_eq!(
        denied(a.authorize_run(&id, 2, &code_hash("real code")).await),
        ErrorCode::FunctionNotFound
    );
    // Deactivation by the owner; a non-owner cannot reactivate.
    let off = Activation {
        function_id: id.clone(),
        name: "pay".into(),
        version: 1,
        active: false,
        and_newer: false,
    };
    a.activate(&fx.signed(&alice(), &off)).await.unwrap();
    assert_eq!(
        denied(a.authorize_run(&id, 1, &code_hash("real code")).await),
        ErrorCode::InactiveVersion
    );
    let on = Activation {
        active: true,
        ..off
    };
    assert_eq!(
        denied(a.activate(&fx.signed(&mallory(), &on)).await),
        ErrorCode::NotOwner
    );
    a.activate(&fx.signed(&alice(), &on)).await.unwrap();
    a.authorize_run(&id, 1, &code_hash("real code"))
        .await
        .unwrap();

    // "This version and every newer one", as keyvault knows them: a rollback to v1 that
    // names v2 deactivates v2 and v3 whatever a gateway listed; one past the latest is a
    // no-op, two past is unknown; activating "and newer" is refused.
    let mut prev = a
        .function(&id)
        .await
        .unwrap()
        .unwrap()
        .latest_digest
        .clone();
    for code in ["v2 code", "v3 code"] {
        let mut m = manifest("pay", code, &["KEY"]);
        m.function_id = Some(id.clone());
        m.previous = Some(prev.clone());
        let r = a.register_manifest(&fx.signed(&alice(), &m)).await.unwrap();
        prev = r.function.latest_digest.clone();
    }
    let from = |version: u32, active: bool| Activation {
        function_id: id.clone(),
        name: "pay".into(),
        version,
        active,
        and_newer: true,
    };
    let r = a
        .activate(&fx.signed(&alice(), &from(2, false)))
        .await
        .unwrap();
    assert_eq!(r.active, vec![1]);
    for v in [2, 3] {
        assert_eq!(
            denied(
                a.authorize_run(&id, v, &code_hash(&format!("v{v} code")))
                    .await
            ),
            ErrorCode::InactiveVersion
        );
    }
    let r = a
        .activate(&fx.signed(&alice(), &from(4, false)))
        .await
        .unwrap();
    assert_eq!(r.active, vec![1]);
    assert_eq!(
        denied(a.activate(&fx.signed(&alice(), &from(5, false))).await),
        ErrorCode::FunctionNotFound
    );
    assert_eq!(
        denied(a.activate(&fx.signed(&alice(), &from(2, true))).await),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        denied(a.activate(&fx.signed(&mallory(), &from(2, false))).await),
        ErrorCode::NotOwner
    );
}

#[tokio::test]
async fn rows_altered_in_the_database_are_refused_after_a_restart() {
    let Fx { _dir, db, v } = Fx::new().await;
    let a = v.authority();
    let platform = v.platform().to_owned();
    let reg = a
        .register_manifest(
            &sign(
                &alice(),
                &manifest("pay", "real", &["KEY"]),
                &SignOptions::for_platform(&platform),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let id = reg.function.function_id.clone();
    drop(v);
    // The database owner swaps in a manifest declaring more secrets and other code, signed
    // by alice herself for this platform (a valid signature, but not what keyvault stored).
    let mut evil = manifest("pay", "evil", &["KEY", "ADMIN_PASSWORD"]);
    evil.activate = true;
    let forged = sign(&alice(), &evil, &SignOptions::for_platform(&platform)).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    let n = c
        .execute(
            "UPDATE kv_authority SET value = ?1 WHERE kind = 'manifest'",
            [forged],
        )
        .unwrap();
    assert_eq!(n, 1);
    // The manifest alone first (the function record intact).
    let v = open(&db).await;
    assert_eq!(
        denied(
            v.authority()
                .authorize_run(&id, 1, &code_hash("evil"))
                .await
        ),
        ErrorCode::ManifestMismatch
    );
    assert_eq!(
        denied(
            v.authority()
                .authorize_run(&id, 1, &code_hash("real"))
                .await
        ),
        ErrorCode::ManifestMismatch,
        "the altered manifest is refused, not trusted"
    );
    drop(v);
    // And adds mallory as an owner in the function record (valid JSON, old MAC).
    let (val,): (Vec<u8>,) = c
        .query_row(
            "SELECT value FROM kv_authority WHERE kind = 'function'",
            [],
            |r| Ok((r.get(0)?,)),
        )
        .unwrap();
    let mut rec: serde_json::Value = serde_json::from_slice(&val).unwrap();
    rec["owners"]
        .as_array_mut()
        .unwrap()
        .push(mallory().id().as_str().into());
    c.execute(
        "UPDATE kv_authority SET value = ?1 WHERE kind = 'function'",
        [serde_json::to_vec(&rec).unwrap()],
    )
    .unwrap();
    drop(c);
    let v = open(&db).await;
    assert_eq!(
        denied(
            v.authority()
                .authorize_run(&id, 1, &code_hash("evil"))
                .await
        ),
        ErrorCode::ManifestMismatch
    );
    assert_eq!(
        denied(
            v.authority()
                .authorize_run(&id, 1, &code_hash("real"))
                .await
        ),
        ErrorCode::ManifestMismatch,
        "an altered record is refused, not trusted"
    );
}

#[tokio::test]
async fn secret_writes_need_the_owner_signature_over_path_operation_and_value() {
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let reg = a
        .register_manifest(&fx.signed(&alice(), &manifest("pay", "c", &["KEY"])))
        .await
        .unwrap();
    let id = reg.function.function_id.clone();
    let path = secret_path(&id, "KEY");
    let sealed = b"sealed-bytes-of-a-value".to_vec();
    let body = |who_path: &SecretPath, op, sealed: &[u8]| SecretWrite {
        path: who_path.to_string(),
        op,
        sealed_digest: hex::encode(Sha256::digest(sealed)),
    };
    let good = fx.signed(&alice(), &body(&path, SecretOp::Put, &sealed));
    assert_eq!(
        a.authorize_secret_write(&good, &path, SecretOp::Put, &sealed)
            .await
            .unwrap(),
        *alice().id()
    );
    // The same signature cannot be used for another value, operation or path.
    let again = fx.signed(&alice(), &body(&path, SecretOp::Put, &sealed));
    assert_eq!(
        denied(
            a.authorize_secret_write(&again, &path, SecretOp::Put, b"other value")
                .await
        ),
        ErrorCode::InvalidRequest
    );
    let again = fx.signed(&alice(), &body(&path, SecretOp::Put, &sealed));
    assert_eq!(
        denied(
            a.authorize_secret_write(&again, &path, SecretOp::Rotate, &sealed)
                .await
        ),
        ErrorCode::InvalidRequest
    );
    // Replay of the accepted one.
    assert_eq!(
        denied(
            a.authorize_secret_write(&good, &path, SecretOp::Put, &sealed)
                .await
        ),
        ErrorCode::ReplayedRequest
    );
    // A registered developer who does not own the function.
    let m = fx.signed(&mallory(), &body(&path, SecretOp::Put, &sealed));
    assert_eq!(
        denied(
            a.authorize_secret_write(&m, &path, SecretOp::Put, &sealed)
                .await
        ),
        ErrorCode::NotOwner
    );
}

#[tokio::test]
async fn only_admins_change_the_registry() {
    let fx = Fx::new().await;
    let g = IdentityGrant {
        public_key: mallory().public_key().to_string(),
        role: IdentityRole::Admin,
        label: "promote myself".into(),
        expires: None,
    };
    assert_eq!(
        denied(
            fx.v.authority()
                .grant_identity(&fx.signed(&mallory(), &g))
                .await
        ),
        ErrorCode::NotOwner
    );
    let ids = fx.v.authority().identities().await.unwrap();
    let m = ids.iter().find(|(id, _)| id == mallory().id()).unwrap();
    assert_eq!(m.1.role, IdentityRole::Developer);
}

#[tokio::test]
async fn a_database_rolled_back_to_an_older_secret_version_is_refused() {
    let Fx { _dir, db, v } = Fx::new().await;
    let reg = alice_deploys(&v, "pay", "c", &["KEY"]).await;
    let id = reg.function.function_id.clone();
    let path = secret_path(&id, "KEY");
    v.put(&path, b"old-value", false, "t").await.unwrap();
    v.put(&path, b"new-value", true, "t").await.unwrap();
    let value = |r: (u64, cloister_keyvault::vault::Released)| {
        String::from_utf8(r.1["KEY"].expose().to_vec()).unwrap()
    };
    assert_eq!(
        value(v.release(&reg.manifest, "e", "x").await.unwrap()),
        "new-value"
    );

    // The database owner deletes the newest row (and bumps the epoch, as an executor would
    // otherwise keep its cached value).
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute("DELETE FROM kv_secrets WHERE version = 2", [])
        .unwrap();
    c.execute("UPDATE kv_epochs SET epoch = epoch + 1", [])
        .unwrap();
    let e = v.release(&reg.manifest, "e", "x").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::RollbackDetected, "{e}");
    drop(v);
    // After a restart the marks come from the database, under keyvault's MAC.
    let v = open(&db).await;
    let m = v
        .authority()
        .authorize_run(&id, 1, &code_hash("c"))
        .await
        .unwrap();
    assert_eq!(
        v.release(&m, "e", "x").await.unwrap_err().code(),
        ErrorCode::RollbackDetected
    );
    // Deleting every row of the secret is a rollback too (keyvault never deleted it) ...
    c.execute("DELETE FROM kv_secrets", []).unwrap();
    assert_eq!(
        v.release(&m, "e", "x").await.unwrap_err().code(),
        ErrorCode::RollbackDetected
    );
    // ... and so is editing the mark row itself (its MAC fails).
    c.execute(
        "UPDATE kv_authority SET value = CAST('{}' AS BLOB) WHERE kind = 'fresh'",
        [],
    )
    .unwrap();
    drop(v);
    let v = open(&db).await;
    assert_eq!(
        v.release(&m, "e", "x").await.unwrap_err().code(),
        ErrorCode::ManifestMismatch
    );
}

#[tokio::test]
async fn a_deleted_secret_cannot_be_resurrected_from_old_rows() {
    let Fx { _dir, db, v } = Fx::new().await;
    let reg = alice_deploys(&v, "pay", "c", &["KEY"]).await;
    let path = secret_path(&reg.function.function_id, "KEY");
    v.put(&path, b"leaked-once", false, "t").await.unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    let row: (String, i64, String, i64, Vec<u8>, String) = c
        .query_row(
            "SELECT path, version, namespace, dek_version, ciphertext, created_at FROM kv_secrets",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap();
    assert!(v.delete(&path, "t").await.unwrap());
    // The owner puts a new value: it gets version 2, never a reused 1.
    assert_eq!(v.put(&path, b"fresh", false, "t").await.unwrap().0, 2);
    assert!(v.delete(&path, "t").await.unwrap());
    // The database owner re-inserts the old, authentic row.
    c.execute(
        "INSERT INTO kv_secrets (path, version, namespace, dek_version, ciphertext, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![row.0, row.1, row.2, row.3, row.4, row.5],
    )
    .unwrap();
    assert_eq!(
        v.release(&reg.manifest, "e", "x").await.unwrap_err().code(),
        ErrorCode::RollbackDetected
    );
}

#[tokio::test]
async fn keyvault_never_readopts_its_rows_from_the_database_while_it_runs() {
    let Fx { _dir, db, v } = Fx::new().await;
    let reg = alice_deploys(&v, "pay", "c", &["KEY", "OTHER"]).await;
    let id = reg.function.function_id.clone();
    let p = |n: &str| {
        SecretPath::for_function(&id, &Environment::default(), &SecretRef::parse(n).unwrap())
            .unwrap()
    };
    v.put(&p("KEY"), b"v1", false, "t").await.unwrap();
    v.put(&p("OTHER"), b"o", false, "t").await.unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    let old_marks: (Vec<u8>, Vec<u8>) = c
        .query_row(
            "SELECT value, mac FROM kv_authority WHERE kind = 'fresh'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    v.put(&p("KEY"), b"v2", true, "t").await.unwrap();
    // The database owner restores the old (MAC-valid) marks and deletes KEY v2 ...
    c.execute(
        "UPDATE kv_authority SET value = ?1, mac = ?2 WHERE kind = 'fresh'",
        rusqlite::params![old_marks.0, old_marks.1],
    )
    .unwrap();
    c.execute("DELETE FROM kv_secrets WHERE version = 2", [])
        .unwrap();
    // ... and waits for the owner's next write in that namespace: it fails loudly instead of
    // re-adopting the old marks, and the rollback stays detected.
    assert!(v.put(&p("OTHER"), b"o2", true, "t").await.is_err());
    assert_eq!(
        v.release(&reg.manifest, "e", "x").await.unwrap_err().code(),
        ErrorCode::RollbackDetected
    );
}

#[tokio::test]
async fn nonces_deleted_from_the_database_still_cannot_be_replayed() {
    let Fx { _dir, db, v } = Fx::new().await;
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TRIGGER forget AFTER INSERT ON kv_nonces BEGIN DELETE FROM kv_nonces; END;",
    )
    .unwrap();
    let signed = sign(
        &alice(),
        &manifest("f", "c", &[]),
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap();
    v.authority().register_manifest(&signed).await.unwrap();
    assert_eq!(
        denied(v.authority().register_manifest(&signed).await),
        ErrorCode::ReplayedRequest
    );
}

#[tokio::test]
async fn used_nonces_are_remembered_across_a_restart() {
    let Fx { _dir, db, v } = Fx::new().await;
    let signed = sign(
        &alice(),
        &manifest("f", "c", &[]),
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap();
    v.authority().register_manifest(&signed).await.unwrap();
    v.authority().save_nonces().await.unwrap();
    drop(v);
    let v = open(&db).await;
    assert_eq!(
        denied(v.authority().register_manifest(&signed).await),
        ErrorCode::ReplayedRequest
    );
}

// ---- Identity lifecycle: rotation, revocation, machine identities, owners ----

fn change(fx: &Fx, who: &Identity, c: &cloister_authority::ops::RegistryChange) -> Vec<u8> {
    fx.signed(who, c)
}

#[tokio::test]
async fn a_rotated_key_hands_over_ownership_and_the_old_key_signs_nothing() {
    use cloister_authority::ops::RegistryChange;
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let reg = alice_deploys(&fx.v, "pay", "v1", &["KEY"]).await;
    let id = reg.function.function_id.clone();
    let alice2 = Identity::from_seed([12u8; 32], "alice").unwrap();
    // Only the key itself rotates itself: mallory cannot move alice's identity to her key.
    let rot = RegistryChange::Rotate {
        new_public_key: alice2.public_key().to_string(),
        proof: alice2.rotation_proof(alice().id(), fx.v.platform()),
    };
    // Onto a key whose holder did not sign the proof (someone else's published key).
    let unproven = RegistryChange::Rotate {
        new_public_key: alice2.public_key().to_string(),
        proof: mallory().rotation_proof(alice().id(), fx.v.platform()),
    };
    assert_eq!(
        denied(a.change_registry(&change(&fx, &alice(), &unproven)).await),
        ErrorCode::InvalidRequest
    );
    let digest_before = a.registry_digest();
    let out = a
        .change_registry(&change(&fx, &alice(), &rot))
        .await
        .unwrap();
    assert_eq!(out.rotated_to.as_ref(), Some(alice2.id()));
    assert_eq!(out.owners, vec![(id.clone(), vec![alice2.id().clone()])]);
    assert_ne!(
        a.registry_digest(),
        digest_before,
        "the bundle shows the rotation"
    );
    // The old key is retired: it can neither deploy nor rotate again.
    let mut m = manifest("pay", "v2", &["KEY"]);
    m.function_id = Some(id.clone());
    m.previous = Some(reg.manifest.digest.clone());
    assert_eq!(
        denied(a.register_manifest(&fx.signed(&alice(), &m)).await),
        ErrorCode::IdentityRevoked
    );
    assert_eq!(
        denied(a.change_registry(&change(&fx, &alice(), &rot)).await),
        ErrorCode::IdentityRevoked
    );
    // The new key owns the function; version 1 (signed by the old key) keeps working.
    a.register_manifest(&fx.signed(&alice2, &m)).await.unwrap();
    a.authorize_run(&id, 1, &code_hash("v1")).await.unwrap();
    a.authorize_run(&id, 2, &code_hash("v2")).await.unwrap();
    // Rotating onto a key already registered is refused (no identity merges).
    let onto_mallory = RegistryChange::Rotate {
        new_public_key: mallory().public_key().to_string(),
        proof: mallory().rotation_proof(alice2.id(), fx.v.platform()),
    };
    assert_eq!(
        denied(
            a.change_registry(&change(&fx, &alice2, &onto_mallory))
                .await
        ),
        ErrorCode::Conflict
    );
    // The rotation survives a restart (MACed rows), and the old key stays retired.
    drop(fx.v);
    let v = open(&fx.db).await;
    let reg = v.authority().function(&id).await.unwrap().unwrap();
    assert_eq!(reg.owners, vec![alice2.id().clone()]);
    let list = v.authority().registry();
    let old = list.iter().find(|(i, _)| i == alice().id()).unwrap();
    assert!(old.1.revoked);
    assert_eq!(old.1.rotated_to.as_ref(), Some(alice2.id()));
}

#[tokio::test]
async fn revocation_stops_new_signatures_and_compromise_distrusts_old_manifests() {
    use cloister_authority::ops::RegistryChange;
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let pay = alice_deploys(&fx.v, "pay", "v1", &["KEY"]).await;
    let id = pay.function.function_id.clone();
    // Only an admin (or alice herself) revokes alice.
    let revoke = |compromised| RegistryChange::Revoke {
        identity_id: alice().id().to_string(),
        compromised,
    };
    assert_eq!(
        denied(
            a.change_registry(&change(&fx, &mallory(), &revoke(false)))
                .await
        ),
        ErrorCode::NotOwner
    );
    // Plain revocation: alice signs nothing more; what she signed before keeps running.
    let out = a
        .change_registry(&change(&fx, &admin(), &revoke(false)))
        .await
        .unwrap();
    assert!(out.revoked);
    assert_eq!(out.distrusted_versions, 0);
    a.authorize_run(&id, 1, &code_hash("v1")).await.unwrap();
    let put = SecretWrite {
        path: secret_path(&id, "KEY").to_string(),
        op: SecretOp::Put,
        sealed_digest: hex::encode(Sha256::digest(b"sealed")),
    };
    assert_eq!(
        denied(
            a.authorize_secret_write(
                &fx.signed(&alice(), &put),
                &secret_path(&id, "KEY"),
                SecretOp::Put,
                b"sealed"
            )
            .await
        ),
        ErrorCode::IdentityRevoked
    );
    // Compromise (an escalation of the revocation): every version she signed is refused
    // secrets for good, and no owner can reactivate it; a redeploy signed by another owner
    // works.
    let out = a
        .change_registry(&change(&fx, &admin(), &revoke(true)))
        .await
        .unwrap();
    assert_eq!(out.distrusted_versions, 1);
    assert_eq!(
        denied(a.authorize_run(&id, 1, &code_hash("v1")).await),
        ErrorCode::IdentityRevoked
    );
    let on = Activation {
        function_id: id.clone(),
        name: "pay".into(),
        version: 1,
        active: true,
        and_newer: false,
    };
    assert_eq!(
        denied(a.activate(&fx.signed(&admin(), &on)).await),
        ErrorCode::IdentityRevoked
    );
    let mut m = manifest("pay", "v2 by admin", &["KEY"]);
    m.function_id = Some(id.clone());
    m.previous = Some(pay.manifest.digest.clone());
    a.register_manifest(&fx.signed(&admin(), &m)).await.unwrap();
    a.authorize_run(&id, 2, &code_hash("v2 by admin"))
        .await
        .unwrap();
    // The distrust outlives a restart.
    drop(fx.v);
    let v = open(&fx.db).await;
    assert_eq!(
        denied(v.authority().authorize_run(&id, 1, &code_hash("v1")).await),
        ErrorCode::IdentityRevoked
    );
    // Revoking twice is refused.
    let fx2 = Fx::new().await;
    fx2.v
        .authority()
        .change_registry(&change(&fx2, &admin(), &revoke(false)))
        .await
        .unwrap();
    assert_eq!(
        denied(
            fx2.v
                .authority()
                .change_registry(&change(&fx2, &admin(), &revoke(false)))
                .await
        ),
        ErrorCode::IdentityRevoked
    );
}

#[tokio::test]
async fn the_last_admin_cannot_be_revoked_or_demoted() {
    use cloister_authority::ops::RegistryChange;
    let fx = Fx::new().await;
    let a = fx.v.authority();
    assert_eq!(a.admins().len(), 1);
    let me = RegistryChange::Revoke {
        identity_id: admin().id().to_string(),
        compromised: false,
    };
    assert_eq!(
        denied(a.change_registry(&change(&fx, &admin(), &me)).await),
        ErrorCode::Conflict
    );
    let demote = IdentityGrant {
        public_key: admin().public_key().to_string(),
        role: IdentityRole::Developer,
        label: "admin".into(),
        expires: None,
    };
    assert_eq!(
        denied(a.grant_identity(&fx.signed(&admin(), &demote)).await),
        ErrorCode::Conflict
    );
    // With a second admin, the first may go.
    let second = Identity::from_seed([9u8; 32], "second").unwrap();
    a.grant_identity(&fx.signed(
        &admin(),
        &IdentityGrant {
            public_key: second.public_key().to_string(),
            role: IdentityRole::Admin,
            label: "second".into(),
            expires: None,
        },
    ))
    .await
    .unwrap();
    a.change_registry(&change(&fx, &second, &me)).await.unwrap();
    assert_eq!(a.admins(), vec![second.id().to_string()]);
    // A role change is audited with what it changed from.
    let dev = Identity::from_seed([10u8; 32], "dev-then-admin").unwrap();
    for role in [IdentityRole::Developer, IdentityRole::Admin] {
        a.grant_identity(&fx.signed(
            &second,
            &IdentityGrant {
                public_key: dev.public_key().to_string(),
                role,
                label: "d".into(),
                expires: None,
            },
        ))
        .await
        .unwrap();
    }
    use cloister_vault_store::AuditLog as _;
    let store = SqliteVault::open(&fx.db).unwrap();
    let grants: Vec<_> = store
        .audit_list(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "identity.grant" && e.subject == dev.id().to_string())
        .map(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.details).unwrap();
            (d["previous_role"].clone(), d["role"].clone())
        })
        .collect();
    assert_eq!(
        grants,
        vec![
            (serde_json::Value::Null, "developer".into()),
            ("developer".into(), "admin".into())
        ]
    );
}

#[tokio::test]
async fn machine_identities_act_only_where_added_and_only_until_they_expire() {
    use cloister_authority::ops::RegistryChange;
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let ci = Identity::from_seed([20u8; 32], "ci").unwrap();
    let expired = Identity::from_seed([21u8; 32], "old-ci").unwrap();
    let now = cloister_authority::request::unix_now();
    for (who, expires) in [(&ci, now + 3600), (&expired, now.saturating_sub(1))] {
        a.grant_identity(&fx.signed(
            &admin(),
            &IdentityGrant {
                public_key: who.public_key().to_string(),
                role: IdentityRole::Machine,
                label: who.label().into(),
                expires: Some(expires),
            },
        ))
        .await
        .unwrap();
    }
    // A machine creates no function.
    assert_eq!(
        denied(
            a.register_manifest(&fx.signed(&ci, &manifest("ci-made", "x", &[])))
                .await
        ),
        ErrorCode::Forbidden
    );
    let reg = alice_deploys(&fx.v, "pay", "v1", &["KEY"]).await;
    let id = reg.function.function_id.clone();
    let mut m = manifest("pay", "v2 from ci", &["KEY"]);
    m.function_id = Some(id.clone());
    m.previous = Some(reg.manifest.digest.clone());
    // Not an owner yet.
    assert_eq!(
        denied(a.register_manifest(&fx.signed(&ci, &m)).await),
        ErrorCode::NotOwner
    );
    // Mallory (not an owner) cannot add it; alice can; the machine cannot add others.
    let add = |who: &Identity| RegistryChange::Owners {
        function_id: id.clone(),
        name: "pay".into(),
        add: vec![who.id().to_string()],
        remove: vec![],
    };
    assert_eq!(
        denied(a.change_registry(&change(&fx, &mallory(), &add(&ci))).await),
        ErrorCode::NotOwner
    );
    let out = a
        .change_registry(&change(&fx, &alice(), &add(&ci)))
        .await
        .unwrap();
    assert_eq!(
        out.owners,
        vec![(id.clone(), vec![alice().id().clone(), ci.id().clone()])]
    );
    assert_eq!(
        denied(a.change_registry(&change(&fx, &ci, &add(&mallory()))).await),
        ErrorCode::Forbidden
    );
    a.register_manifest(&fx.signed(&ci, &m)).await.unwrap();
    // An expired grant authorises nothing, and cannot be made an owner.
    assert_eq!(
        denied(
            a.change_registry(&change(&fx, &alice(), &add(&expired)))
                .await
        ),
        ErrorCode::IdentityRevoked
    );
    let mut m3 = manifest("pay", "v3", &["KEY"]);
    m3.function_id = Some(id.clone());
    m3.previous = Some(
        a.function(&id)
            .await
            .unwrap()
            .unwrap()
            .latest_digest
            .clone(),
    );
    assert_eq!(
        denied(a.register_manifest(&fx.signed(&expired, &m3)).await),
        ErrorCode::IdentityRevoked
    );
    // The last live owner cannot be removed.
    let strip = RegistryChange::Owners {
        function_id: id.clone(),
        name: "pay".into(),
        add: vec![],
        remove: vec![
            alice().id().to_string(),
            ci.id().to_string(),
            expired.id().to_string(),
        ],
    };
    assert_eq!(
        denied(a.change_registry(&change(&fx, &alice(), &strip)).await),
        ErrorCode::InvalidRequest
    );
}

// ---- Rollback guard and admin-signed restore ----

async fn open_guarded(db: &std::path::Path, guard: &std::path::Path) -> Result<Vault, ErrorCode> {
    let store = Arc::new(SqliteVault::open(db).unwrap());
    Vault::open_guarded(store, &sealing(), Some(&admin().public_key()), guard)
        .await
        .map(|(v, _)| v)
        .map_err(|e| e.code())
}

fn restore_request(v: &Vault, who: &Identity, epoch: u64, head: (u64, String)) -> Vec<u8> {
    sign(
        who,
        &cloister_authority::ops::Restore {
            epoch,
            audit_head_seq: head.0,
            audit_head_hash: head.1,
        },
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_database_restored_behind_keyvault_s_back_is_refused_until_an_admin_signs_the_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (db, guard, backup) = (
        dir.path().join("kv.db"),
        dir.path().join("kv.guard"),
        dir.path().join("backup.db"),
    );
    let v = open_guarded(&db, &guard).await.unwrap();
    assert_eq!(v.epoch(), 1);
    let grant = |who: &Identity| IdentityGrant {
        public_key: who.public_key().to_string(),
        role: IdentityRole::Developer,
        label: who.label().into(),
        expires: None,
    };
    let signed = sign(
        &admin(),
        &grant(&alice()),
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap();
    v.authority().grant_identity(&signed).await.unwrap();
    // A second admin exists at backup time ...
    let second = Identity::from_seed([40u8; 32], "second admin").unwrap();
    let g2 = IdentityGrant {
        role: IdentityRole::Admin,
        ..grant(&second)
    };
    let signed = sign(&admin(), &g2, &SignOptions::for_platform(v.platform())).unwrap();
    v.authority().grant_identity(&signed).await.unwrap();
    v.checkpoint().await.unwrap();
    drop(v);
    SqliteVault::backup_file(&db, &backup).unwrap();
    // Life goes on after the backup: more entries, a newer checkpoint in the guard, and the
    // second admin is revoked.
    let v = open_guarded(&db, &guard).await.unwrap();
    let signed = sign(
        &admin(),
        &grant(&mallory()),
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap();
    v.authority().grant_identity(&signed).await.unwrap();
    let revoke = sign(
        &admin(),
        &cloister_authority::ops::RegistryChange::Revoke {
            identity_id: second.id().to_string(),
            compromised: false,
        },
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap();
    v.authority().change_registry(&revoke).await.unwrap();
    v.checkpoint().await.unwrap();
    drop(v);

    // The database owner puts the old copy back: keyvault refuses to start on it.
    let current = dir.path().join("current.db");
    std::fs::rename(&db, &current).unwrap();
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(db.with_extension(ext));
    }
    std::fs::copy(&backup, &db).unwrap();
    assert_eq!(
        open_guarded(&db, &guard).await.err(),
        Some(ErrorCode::RollbackDetected)
    );
    // Deleting the guard file as well does not help (the database knows a guard exists).
    let saved_guard = std::fs::read(&guard).unwrap();
    std::fs::remove_file(&guard).unwrap();
    assert_eq!(
        open_guarded(&db, &guard).await.err(),
        Some(ErrorCode::RollbackDetected)
    );
    std::fs::write(&guard, &saved_guard).unwrap();
    // An edited guard is refused too.
    let text = String::from_utf8(saved_guard.clone()).unwrap();
    std::fs::write(&guard, text.replace("\"epoch\": 1", "\"epoch\": 2")).unwrap();
    assert_eq!(
        open_guarded(&db, &guard).await.err(),
        Some(ErrorCode::RollbackDetected)
    );
    std::fs::write(&guard, &saved_guard).unwrap();

    // A restore needs an admin's signature over the next epoch and this chain's head.
    let store = Arc::new(SqliteVault::open(&db).unwrap());
    let r = Vault::open_for_restore(store, &sealing(), &guard)
        .await
        .unwrap();
    let head = r.audit_head().await.unwrap();
    assert_eq!(
        r.restore(&restore_request(&r, &alice(), 2, head.clone()))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotOwner,
        "a developer cannot accept a rolled-back database"
    );
    assert_eq!(
        r.restore(&restore_request(&r, &second, 2, head.clone()))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotOwner,
        "an admin of the copy, revoked since, cannot restore it"
    );
    assert_eq!(
        r.restore(&restore_request(&r, &admin(), 5, head.clone()))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidRequest,
        "the epoch is the next one, not any"
    );
    assert_eq!(
        r.restore(&restore_request(
            &r,
            &admin(),
            2,
            (head.0 + 1, head.1.clone())
        ))
        .await
        .unwrap_err()
        .code(),
        ErrorCode::InvalidRequest,
        "the admin approves this chain, not another"
    );
    let st = r
        .restore(&restore_request(&r, &admin(), 2, head))
        .await
        .unwrap();
    assert_eq!(st.epoch, 2);
    drop(r);
    // Now it starts, at epoch 2, with the restored registry (mallory's grant is gone), and the
    // restore is in the audit chain.
    let v = open_guarded(&db, &guard).await.unwrap();
    assert_eq!(v.epoch(), 2);
    assert!(
        v.authority()
            .registry()
            .iter()
            .all(|(id, _)| id != mallory().id())
    );
    let report = v.verify_audit().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.epoch, 2);
    // The newer database from before the restore is now the stale one.
    drop(v);
    std::fs::remove_file(&db).unwrap();
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(db.with_extension(ext));
    }
    std::fs::rename(&current, &db).unwrap();
    assert_eq!(
        open_guarded(&db, &guard).await.err(),
        Some(ErrorCode::RollbackDetected)
    );
}

// ---- The executor policy is a registry entry ----

const POLICY_A: &str = "allow_simulated: true\nallowed_tee_types: [sim]\nallowed_measurements:\n  sim: [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]\n";
const POLICY_B: &str = "allow_simulated: true\nallowed_tee_types: [sim]\nallowed_measurements:\n  sim: [\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"]\n";

#[tokio::test]
async fn only_an_admin_changes_the_executor_policy_and_the_bootstrap_is_used_once() {
    use cloister_authority::ops::RegistryChange;
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let shared = a.load_executor_policy(Some(POLICY_A)).await.unwrap();
    let (ma, mb) = ("a".repeat(96), "b".repeat(96));
    assert_eq!(a.executor_measurements(), vec![ma.clone()]);
    assert!(a.executor_allowed(&ma) && !a.executor_allowed(&mb));
    let set = |version, policy: &str| RegistryChange::ExecutorPolicy {
        version,
        policy: policy.into(),
    };
    assert_eq!(
        denied(
            a.change_registry(&change(&fx, &alice(), &set(2, POLICY_B)))
                .await
        ),
        ErrorCode::NotOwner,
        "a developer cannot widen which executors get secrets"
    );
    assert_eq!(
        denied(
            a.change_registry(&change(&fx, &admin(), &set(7, POLICY_B)))
                .await
        ),
        ErrorCode::InvalidRequest,
        "versions move one at a time (a replayed or stale change is refused)"
    );
    assert_eq!(
        denied(
            a.change_registry(&change(&fx, &admin(), &set(2, "allow_simulated: true\n")))
                .await
        ),
        ErrorCode::InvalidRequest,
        "a policy without an allowlist would accept any executor"
    );
    let out = a
        .change_registry(&change(&fx, &admin(), &set(2, POLICY_B)))
        .await
        .unwrap();
    assert_eq!(out.policy_version, Some(2));
    // The channel's copy changed in place; the old measurement is refused at once.
    assert_eq!(
        shared.read().unwrap().allowed_measurements_hex(),
        Some(vec![mb.clone()])
    );
    assert!(!a.executor_allowed(&ma) && a.executor_allowed(&mb));
    // After a restart the stored policy wins over the bootstrap value.
    drop(fx.v);
    let v = open(&fx.db).await;
    v.authority()
        .load_executor_policy(Some(POLICY_A))
        .await
        .unwrap();
    assert_eq!(v.authority().executor_measurements(), vec![mb.clone()]);
    assert_eq!(v.authority().executor_policy().unwrap().version, 2);
    drop(v);
    // The database owner swaps in the bootstrap policy: refused at load.
    let conn = rusqlite::Connection::open(&fx.db).unwrap();
    let (value, mac): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT value, mac FROM kv_authority WHERE kind = 'policy' AND key = 'executor'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let forged = String::from_utf8(value)
        .unwrap()
        .replace(&"b".repeat(96), &"a".repeat(96));
    conn.execute(
        "UPDATE kv_authority SET value = ?1, mac = ?2 WHERE kind = 'policy' AND key = 'executor'",
        rusqlite::params![forged.as_bytes(), mac],
    )
    .unwrap();
    drop(conn);
    let v = open(&fx.db).await;
    assert_eq!(
        v.authority()
            .load_executor_policy(Some(POLICY_A))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::ManifestMismatch
    );
    drop(v);
    // The database owner deletes the policy row and restarts keyvault offering a bootstrap
    // policy of their choice: an initialised vault refuses to take one.
    let conn = rusqlite::Connection::open(&fx.db).unwrap();
    conn.execute(
        "DELETE FROM kv_authority WHERE kind = 'policy' AND key = 'executor'",
        [],
    )
    .unwrap();
    drop(conn);
    let v = open(&fx.db).await;
    let e = v.authority().load_executor_policy(None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ManifestMismatch, "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    assert!(!v.authority().executor_allowed(&ma) && !v.authority().executor_allowed(&mb));
}

#[tokio::test]
async fn an_owner_change_or_activation_signed_for_one_name_cannot_be_redirected_to_another_function()
 {
    use cloister_authority::ops::RegistryChange;
    let fx = Fx::new().await;
    let a = fx.v.authority();
    // alice owns two functions; she means to act on "test-fn", the gateway names prod's id.
    alice_deploys(&fx.v, "test-fn", "t", &[]).await;
    let prod = alice_deploys(&fx.v, "prod-payments", "p", &["KEY"]).await;
    let prod_id = prod.function.function_id.clone();
    let add_mallory = RegistryChange::Owners {
        function_id: prod_id.clone(),
        name: "test-fn".into(),
        add: vec![mallory().id().to_string()],
        remove: vec![],
    };
    assert_eq!(
        denied(
            a.change_registry(&change(&fx, &alice(), &add_mallory))
                .await
        ),
        ErrorCode::ManifestMismatch
    );
    let off = Activation {
        function_id: prod_id.clone(),
        name: "test-fn".into(),
        version: 1,
        active: false,
        and_newer: false,
    };
    assert_eq!(
        denied(a.activate(&fx.signed(&alice(), &off)).await),
        ErrorCode::ManifestMismatch
    );
    assert_eq!(
        a.function(&prod_id).await.unwrap().unwrap().owners,
        vec![alice().id().clone()],
        "prod is untouched"
    );
    a.authorize_run(&prod_id, 1, &code_hash("p")).await.unwrap();
}

#[tokio::test]
async fn compromise_reaches_every_key_the_leaked_key_rotated_to() {
    use cloister_authority::ops::RegistryChange;
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let reg = alice_deploys(&fx.v, "pay", "v1", &["KEY"]).await;
    let id = reg.function.function_id.clone();
    // A thief with alice's key rotates it to a key of their own and deploys with it.
    let thief = Identity::from_seed([30u8; 32], "thief").unwrap();
    let rot = RegistryChange::Rotate {
        new_public_key: thief.public_key().to_string(),
        proof: thief.rotation_proof(alice().id(), fx.v.platform()),
    };
    a.change_registry(&change(&fx, &alice(), &rot))
        .await
        .unwrap();
    let mut m = manifest("pay", "stolen", &["KEY"]);
    m.function_id = Some(id.clone());
    m.previous = Some(reg.manifest.digest.clone());
    a.register_manifest(&fx.signed(&thief, &m)).await.unwrap();
    a.authorize_run(&id, 2, &code_hash("stolen")).await.unwrap();
    // The admin revokes alice's old id as compromised: the thief's key goes with it.
    let out = a
        .change_registry(&change(
            &fx,
            &admin(),
            &RegistryChange::Revoke {
                identity_id: alice().id().to_string(),
                compromised: true,
            },
        ))
        .await
        .unwrap();
    assert_eq!(out.distrusted_versions, 2);
    assert_eq!(
        denied(a.authorize_run(&id, 2, &code_hash("stolen")).await),
        ErrorCode::IdentityRevoked
    );
    let reg_list = a.registry();
    let t = reg_list.iter().find(|(i, _)| i == thief.id()).unwrap();
    assert!(t.1.revoked && t.1.compromised);
}

#[tokio::test]
async fn genuine_but_older_authority_rows_put_back_are_refused_at_start() {
    use cloister_authority::ops::RegistryChange;
    let dir = tempfile::tempdir().unwrap();
    let (db, guard) = (dir.path().join("kv.db"), dir.path().join("kv.guard"));
    let v = open_guarded(&db, &guard).await.unwrap();
    let signed = sign(
        &admin(),
        &IdentityGrant {
            public_key: alice().public_key().to_string(),
            role: IdentityRole::Developer,
            label: "alice".into(),
            expires: None,
        },
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap();
    v.authority().grant_identity(&signed).await.unwrap();
    let row = |db: &std::path::Path| -> (Vec<u8>, Vec<u8>) {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row(
                "SELECT value, mac FROM kv_authority WHERE kind = 'identity' AND key = ?1",
                [alice().id().as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let before_revoke = row(&db);
    // Also keep a whole copy of the database from this moment.
    let old_copy = dir.path().join("old.db");
    drop(v);
    SqliteVault::backup_file(&db, &old_copy).unwrap();
    let v = open_guarded(&db, &guard).await.unwrap();
    let revoke = sign(
        &admin(),
        &RegistryChange::Revoke {
            identity_id: alice().id().to_string(),
            compromised: true,
        },
        &SignOptions::for_platform(v.platform()),
    )
    .unwrap();
    v.authority().change_registry(&revoke).await.unwrap();
    v.checkpoint().await.unwrap();
    drop(v);
    // The database owner puts alice's genuine pre-revocation row (its MAC is valid) back.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE kv_authority SET value = ?1, mac = ?2 WHERE kind = 'identity' AND key = ?3",
        rusqlite::params![before_revoke.0, before_revoke.1, alice().id().as_str()],
    )
    .unwrap();
    drop(conn);
    assert_eq!(
        open_guarded(&db, &guard).await.err(),
        Some(ErrorCode::RollbackDetected)
    );
    // Or the old copy, with the current audit chain (and checkpoints) moved into it.
    let conn = rusqlite::Connection::open(&old_copy).unwrap();
    conn.execute_batch(&format!(
        "ATTACH DATABASE '{}' AS cur; DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM cur.audit_log; \
         DELETE FROM audit_checkpoints; INSERT INTO audit_checkpoints SELECT * FROM cur.audit_checkpoints; \
         DELETE FROM kv_authority WHERE kind = 'guard'; INSERT INTO kv_authority SELECT * FROM cur.kv_authority WHERE kind = 'guard'; DETACH cur;",
        db.display()
    ))
    .unwrap();
    drop(conn);
    assert_eq!(
        open_guarded(&old_copy, &guard).await.err(),
        Some(ErrorCode::RollbackDetected)
    );
}

#[tokio::test]
async fn the_same_content_again_registers_nothing_but_is_still_checked() {
    let fx = Fx::new().await;
    let a = fx.v.authority();
    let v1 = a
        .register_manifest(&fx.signed(&alice(), &manifest("same", "code", &[])))
        .await
        .unwrap();
    let id = v1.function.function_id.clone();
    let next = |previous: &str| Manifest {
        function_id: Some(id.clone()),
        previous: Some(previous.to_owned()),
        ..manifest("same", "code", &[])
    };
    // By its owner: nothing registered, version 1 stands.
    let again = a
        .register_manifest(&fx.signed(&alice(), &next(&v1.manifest.digest)))
        .await
        .unwrap();
    assert!(again.unchanged);
    assert_eq!(
        (again.manifest.version, again.function.latest_version),
        (1, 1)
    );
    // By someone who may not deploy it: refused, unchanged or not.
    let stranger = Identity::from_seed([7u8; 32], "stranger").unwrap();
    assert!(
        a.register_manifest(&fx.signed(&stranger, &next(&v1.manifest.digest)))
            .await
            .is_err()
    );
    // A version that may not run is not "unchanged": the same content is a new version.
    a.activate(&fx.signed(
        &alice(),
        &Activation {
            function_id: id.clone(),
            name: "same".into(),
            version: 1,
            active: false,
            and_newer: false,
        },
    ))
    .await
    .unwrap();
    let v2 = a
        .register_manifest(&fx.signed(&alice(), &next(&v1.manifest.digest)))
        .await
        .unwrap();
    assert!(!v2.unchanged);
    assert_eq!(v2.manifest.version, 2);
    // Other content is a new version too.
    let v3 = a
        .register_manifest(&fx.signed(
            &alice(),
            &Manifest {
                env: [("MODE".to_owned(), "x".to_owned())].into(),
                ..next(&v2.manifest.digest)
            },
        ))
        .await
        .unwrap();
    assert_eq!((v3.unchanged, v3.manifest.version), (false, 3));
}
