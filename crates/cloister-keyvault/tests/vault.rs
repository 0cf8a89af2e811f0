//! The vault over a real SQLite file: initialise/unseal, put and release, namespace isolation,
//! ciphertext bound to its row, rotations, versions, migration with the recovery key.

use cloister_authority::manifest::{Manifest, ManifestLimits};
use cloister_authority::{Identity, SignOptions, sign};
use cloister_crypto::SecretKey32;
use cloister_keyvault::authority::RegisteredManifest;
use cloister_keyvault::{Opened, Sealing, Vault, VaultError, migrate};
use cloister_types::code_hash;
use cloister_types::{Environment, SecretPath, SecretRef};
use cloister_vault_store::{AuditLog, SqliteVault};
use std::sync::Arc;

fn sealing(m: u8) -> Sealing {
    Sealing {
        measurement: [m; 48],
        key: SecretKey32::from_array([m ^ 0x5a; 32]),
    }
}

fn path(f: &str, name: &str) -> SecretPath {
    SecretPath::for_function(f, &Environment::default(), &SecretRef::parse(name).unwrap()).unwrap()
}

fn admin() -> Identity {
    Identity::from_seed([9u8; 32], "admin").unwrap()
}

/// Registers the next version of function `name` (creating it) declaring `names`.
async fn register(v: &Vault, name: &str, env: &str, names: &[&str]) -> Arc<RegisteredManifest> {
    register_with_keys(v, name, env, names, &[]).await
}

/// Registers the next version of function `name` declaring secrets `names` and `keys`.
async fn register_with_keys(
    v: &Vault,
    name: &str,
    env: &str,
    names: &[&str],
    keys: &[&str],
) -> Arc<RegisteredManifest> {
    let signed = key_manifest(v, name, env, names, keys, Default::default()).await;
    v.authority()
        .register_manifest(&signed)
        .await
        .unwrap()
        .manifest
}

/// A signed manifest for the next version of `name` declaring `keys` with `key_limits`.
async fn key_manifest(
    v: &Vault,
    name: &str,
    env: &str,
    names: &[&str],
    keys: &[&str],
    key_limits: std::collections::BTreeMap<String, cloister_types::KeyLimits>,
) -> Vec<u8> {
    let existing = v.authority().function_by_name(name).await.unwrap();
    let m = Manifest {
        name: name.into(),
        function_id: existing.as_ref().map(|f| f.function_id.clone()),
        previous: existing.as_ref().map(|f| f.latest_digest.clone()),
        environment: env.into(),
        runtime: "javascript".into(),
        entrypoint: "handler".into(),
        code_hash: code_hash(name),
        secrets: names.iter().map(|s| s.to_string()).collect(),
        limits: ManifestLimits {
            timeout_ms: 1000,
            memory_mb: 16,
        },
        activate: true,
        confidential: false,
        env: Default::default(),
        source_name: None,
        keys: keys.iter().map(|k| k.to_string()).collect(),
        key_limits,
        egress: None,
    };
    sign(&admin(), &m, &SignOptions::for_platform(v.platform())).unwrap()
}

/// The id keyvault assigned to function `name` (registering it if new).
async fn fid(v: &Vault, name: &str) -> String {
    match v.authority().function_by_name(name).await.unwrap() {
        Some(f) => f.function_id.clone(),
        None => register(v, name, "production", &[])
            .await
            .function_id
            .clone(),
    }
}

async fn release_env(
    v: &Vault,
    f: &str,
    env: &str,
    names: &[&str],
) -> Result<Vec<(String, String)>, VaultError> {
    let m = register(v, f, env, names).await;
    let (_, vals) = v.release(&m, "exec-1", "executor").await?;
    Ok(vals
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.expose().to_vec()).unwrap()))
        .collect())
}

async fn release(v: &Vault, f: &str, names: &[&str]) -> Result<Vec<(String, String)>, VaultError> {
    release_env(v, f, "production", names).await
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        Self { _dir: dir, db }
    }
    fn store(&self) -> Arc<SqliteVault> {
        Arc::new(SqliteVault::open(&self.db).unwrap())
    }
    async fn vault(&self, m: u8) -> Result<(Vault, Opened), VaultError> {
        Vault::open(self.store(), &sealing(m), Some(&admin().public_key())).await
    }
}

#[tokio::test]
async fn initialises_once_then_unseals_with_the_same_keys() {
    let fx = Fixture::new();
    let (v, opened) = fx.vault(1).await.unwrap();
    assert!(matches!(opened, Opened::Created(_)));
    v.put(
        &path(&fid(&v, "f1").await, "API_KEY"),
        b"s3cret",
        false,
        "t",
    )
    .await
    .unwrap();
    let hpke = v.hpke_public();
    let audit = v.audit_public();
    drop(v);
    let (v2, opened) = fx.vault(1).await.unwrap();
    assert!(matches!(opened, Opened::Unsealed));
    assert_eq!(v2.hpke_public(), hpke, "the sealing key survives restarts");
    assert_eq!(v2.audit_public(), audit);
    assert_eq!(
        release(&v2, "f1", &["API_KEY"]).await.unwrap(),
        vec![("API_KEY".into(), "s3cret".into())]
    );
}

#[tokio::test]
async fn another_measurement_cannot_unseal_until_migrated_with_the_recovery_key() {
    let fx = Fixture::new();
    let (v, opened) = fx.vault(1).await.unwrap();
    let Opened::Created(recovery) = opened else {
        panic!("new vault")
    };
    v.put(&path(&fid(&v, "f1").await, "K"), b"value-1", false, "t")
        .await
        .unwrap();
    drop(v);
    let err = fx.vault(2).await.unwrap_err();
    assert!(err.to_string().contains("cannot unseal"), "{err}");
    let wrong = cloister_keyvault::RecoveryKey::generate().unwrap();
    let err = migrate(fx.store(), &wrong, &sealing(2)).await.unwrap_err();
    assert!(err.to_string().contains("recovery key"), "{err}");
    migrate(fx.store(), &recovery, &sealing(2)).await.unwrap();
    let (v2, _) = fx.vault(2).await.unwrap();
    assert_eq!(release(&v2, "f1", &["K"]).await.unwrap()[0].1, "value-1");
    assert!(
        fx.vault(1).await.is_err(),
        "the old measurement no longer unseals"
    );
}

#[tokio::test]
async fn a_development_reseal_needs_an_admin_approval_naming_both_builds() {
    use cloister_authority::ops::KeyvaultReseal;
    use cloister_keyvault::reseal_approved;
    let fx = Fixture::new();
    let (v, opened) = fx.vault(1).await.unwrap();
    let Opened::Created(recovery) = opened else {
        panic!("new vault")
    };
    v.put(&path(&fid(&v, "f1").await, "K"), b"value-1", false, "t")
        .await
        .unwrap();
    let platform = v.platform().to_owned();
    drop(v);
    let (from, to) = (hex::encode([1u8; 48]), hex::encode([2u8; 48]));
    let approval = |who: &Identity, from: &str, to: &str| {
        let body = KeyvaultReseal {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        sign(who, &body, &SignOptions::for_platform(&platform)).unwrap()
    };
    let stranger = Identity::from_seed([7u8; 32], "not registered").unwrap();
    let refused = [
        // Not an identity of this vault.
        (approval(&stranger, &from, &to), &recovery),
        // Another target build than the one re-sealing.
        (
            approval(&admin(), &from, &hex::encode([3u8; 48])),
            &recovery,
        ),
        // Another source than what the root is sealed to.
        (approval(&admin(), &hex::encode([4u8; 48]), &to), &recovery),
    ];
    let guard = fx.db.with_file_name("guard");
    for (signed, key) in refused {
        let e = reseal_approved(fx.store(), key, &sealing(2), &signed, &guard)
            .await
            .unwrap_err();
        assert!(
            fx.vault(2).await.is_err(),
            "a refused re-seal ({e}) changed nothing"
        );
    }
    // A good approval with the wrong recovery key.
    let wrong = cloister_keyvault::RecoveryKey::generate().unwrap();
    let good = approval(&admin(), &from, &to);
    let e = reseal_approved(fx.store(), &wrong, &sealing(2), &good, &guard)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("recovery key"), "{e}");
    // Approved, with the recovery key: the new build unseals, the old one no longer does,
    // and the admin's act is audited.
    reseal_approved(fx.store(), &recovery, &sealing(2), &good, &guard)
        .await
        .unwrap();
    let (v2, _) = fx.vault(2).await.unwrap();
    assert_eq!(release(&v2, "f1", &["K"]).await.unwrap()[0].1, "value-1");
    let entries = fx.store().audit_list(0, 1000).await.unwrap();
    let last = entries
        .iter()
        .rev()
        .find(|e| e.action == "key.migrate_root")
        .expect("audited");
    assert_eq!(last.actor, admin().id().to_string());
    drop(v2);
    assert!(fx.vault(1).await.is_err());
    // Moved back to the first build with the recovery key, the same approval (still within
    // its lifetime, naming exactly this move) cannot be used again: its nonce is spent.
    migrate(fx.store(), &recovery, &sealing(1)).await.unwrap();
    let e = reseal_approved(fx.store(), &recovery, &sealing(2), &good, &guard)
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("replay"), "{e}");
    assert!(fx.vault(2).await.is_err(), "the replay changed nothing");
}

#[tokio::test]
async fn functions_only_see_their_own_namespace_and_declared_names() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    v.put(&path(&fid(&v, "aaa").await, "TOKEN"), b"for-a", false, "t")
        .await
        .unwrap();
    v.put(&path(&fid(&v, "bbb").await, "TOKEN"), b"for-b", false, "t")
        .await
        .unwrap();
    v.put(
        &path(&fid(&v, "aaa").await, "OTHER"),
        b"undeclared",
        false,
        "t",
    )
    .await
    .unwrap();
    let a = release(&v, "aaa", &["TOKEN"]).await.unwrap();
    assert_eq!(a, vec![("TOKEN".into(), "for-a".into())]);
    let b = release(&v, "bbb", &["TOKEN"]).await.unwrap();
    assert_eq!(b, vec![("TOKEN".into(), "for-b".into())]);
    let err = release(&v, "bbb", &["TOKEN", "OTHER"]).await.unwrap_err();
    assert!(
        matches!(err, VaultError::Missing { ref name, ref environment } if name == "OTHER" && environment == "production"),
        "{err}"
    );
    // Another environment is another path.
    let staging = Environment::parse("staging").unwrap();
    let _ = staging;
    let err = release_env(&v, "aaa", "staging", &["TOKEN"])
        .await
        .unwrap_err();
    assert!(
        matches!(err, VaultError::Missing { ref environment, .. } if environment == "staging"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ciphertext_copied_to_another_row_fails_to_decrypt() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    v.put(&path(&fid(&v, "aaa").await, "A"), b"alpha", false, "t")
        .await
        .unwrap();
    v.put(&path(&fid(&v, "aaa").await, "B"), b"bravo", false, "t")
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&fx.db).unwrap();
    conn.execute(
        "UPDATE kv_secrets SET ciphertext = (SELECT ciphertext FROM kv_secrets WHERE path LIKE '%/A') WHERE path LIKE '%/B'",
        [],
    )
    .unwrap();
    let err = release(&v, "aaa", &["B"]).await.unwrap_err();
    assert!(err.to_string().contains("failed authentication"), "{err}");
    // Moving a version number is caught too (the version is in the AAD).
    v.put(&path(&fid(&v, "aaa").await, "A"), b"alpha-2", false, "t")
        .await
        .unwrap();
    conn.execute(
        "DELETE FROM kv_secrets WHERE path LIKE '%/A' AND version = 1",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE kv_secrets SET version = 3 WHERE path LIKE '%/A'",
        [],
    )
    .unwrap();
    assert!(release(&v, "aaa", &["A"]).await.is_err());
}

#[tokio::test]
async fn versions_are_kept_and_rotations_keep_everything_readable() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let p = path(&fid(&v, "aaa").await, "db/password");
    assert_eq!(v.put(&p, b"one", false, "t").await.unwrap().0, 1);
    assert_eq!(v.put(&p, b"two", true, "t").await.unwrap().0, 2);
    v.put(&path(&fid(&v, "bbb").await, "X"), b"x", false, "t")
        .await
        .unwrap();
    let versions = v.versions(&p).await.unwrap();
    assert_eq!(
        versions.iter().map(|i| i.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        release(&v, "aaa", &["db/password"]).await.unwrap()[0].1,
        "two"
    );

    let aaa = fid(&v, "aaa").await;
    let (ns, dek_v, n) = v.rotate_dek(&aaa, "t").await.unwrap();
    assert_eq!((ns, dek_v, n), (format!("function-{aaa}"), 2, 2));
    assert!(
        v.versions(&p)
            .await
            .unwrap()
            .iter()
            .all(|i| i.dek_version == 2)
    );
    let (_, rewrapped) = v.rotate_mek("t").await.unwrap();
    assert_eq!(rewrapped, 3, "two DEK versions of aaa plus one of bbb");
    assert_eq!(
        release(&v, "aaa", &["db/password"]).await.unwrap()[0].1,
        "two"
    );
    drop(v);
    // After a restart (keys reloaded from the store) everything still opens.
    let (v, _) = fx.vault(1).await.unwrap();
    assert_eq!(
        release(&v, "aaa", &["db/password"]).await.unwrap()[0].1,
        "two"
    );
    assert_eq!(release(&v, "bbb", &["X"]).await.unwrap()[0].1, "x");
    assert!(matches!(
        v.put(&path(&fid(&v, "aaa").await, "NEW"), b"n", true, "t")
            .await,
        Err(VaultError::NotFound(_))
    ));
}

#[tokio::test]
async fn the_database_holds_no_plaintext_and_every_change_is_audited() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let value = format!(
        "needle-{}",
        hex::encode(cloister_crypto::random_bytes::<12>().unwrap())
    );
    v.put(
        &path(&fid(&v, "aaa").await, "K"),
        value.as_bytes(),
        false,
        "tok",
    )
    .await
    .unwrap();
    v.rotate_dek(&fid(&v, "aaa").await, "tok").await.unwrap();
    release(&v, "aaa", &["K"]).await.unwrap();
    v.delete(&path(&fid(&v, "aaa").await, "K"), "tok")
        .await
        .unwrap();
    drop(v);
    let bytes = std::fs::read(&fx.db).unwrap();
    let wal = std::fs::read(fx.db.with_extension("db-wal")).unwrap_or_default();
    for hay in [&bytes, &wal] {
        assert!(!hay.windows(value.len()).any(|w| w == value.as_bytes()));
    }
    let store = fx.store();
    let actions: Vec<String> = store
        .audit_list(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "keyvault.init",
            "identity.grant",
            "function.deploy",
            "secret.put",
            "key.rotate_dek",
            "function.deploy",
            "secret.release",
            "secret.delete"
        ]
    );
}

#[tokio::test]
async fn sealed_values_open_only_for_their_path() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let p = path(&fid(&v, "aaa").await, "K");
    let info = cloister_types::binding::secret_seal_info(&p.to_string());
    let sealed = v.hpke_public().seal(&info, b"", b"hello").unwrap();
    assert_eq!(v.open_sealed(&p, &sealed).unwrap().expose(), b"hello");
    assert!(matches!(
        v.open_sealed(&path(&fid(&v, "bbb").await, "K"), &sealed),
        Err(VaultError::BadSealedValue)
    ));
    let mut tampered = sealed.clone();
    tampered[40] ^= 1;
    assert!(v.open_sealed(&p, &tampered).is_err());
}

/// Signs version `previous + 1` of `name` (a new function when `previous` is `None`).
fn manifest_for(
    v: &Vault,
    name: &str,
    previous: Option<&cloister_keyvault::authority::FunctionRecord>,
    confidential: bool,
) -> Vec<u8> {
    manifest_with_code(v, name, previous, confidential, name)
}

/// [`manifest_for`] with the hash of `code`.
fn manifest_with_code(
    v: &Vault,
    name: &str,
    previous: Option<&cloister_keyvault::authority::FunctionRecord>,
    confidential: bool,
    code: &str,
) -> Vec<u8> {
    let m = Manifest {
        name: name.into(),
        function_id: previous.map(|f| f.function_id.clone()),
        previous: previous.map(|f| f.latest_digest.clone()),
        environment: "production".into(),
        runtime: "javascript".into(),
        entrypoint: "handler".into(),
        code_hash: code_hash(code),
        secrets: vec![],
        limits: ManifestLimits {
            timeout_ms: 1000,
            memory_mb: 16,
        },
        activate: true,
        confidential,
        env: Default::default(),
        source_name: None,
        keys: Vec::new(),
        key_limits: Default::default(),
        egress: None,
    };
    sign(&admin(), &m, &SignOptions::for_platform(v.platform())).unwrap()
}

#[tokio::test]
async fn a_confidential_function_takes_only_confidential_versions_whatever_the_database_lost() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let a = v.authority();
    a.register_manifest(&manifest_for(&v, "hidden", None, true))
        .await
        .unwrap();
    let f = a.function_by_name("hidden").await.unwrap().unwrap();
    let e = a
        .register_manifest(&manifest_for(&v, "hidden", Some(&f), false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("confidential"), "{e}");
    a.register_manifest(&manifest_with_code(&v, "hidden", Some(&f), true, "v2"))
        .await
        .unwrap();
    let f = a.function_by_name("hidden").await.unwrap().unwrap();
    assert_eq!(f.latest_version, 2);
    drop(v);
    // The database owner deletes every manifest row, and keyvault restarts: the function's
    // record still says it was confidential.
    let conn = rusqlite::Connection::open(&fx.db).unwrap();
    let gone = conn
        .execute("DELETE FROM kv_authority WHERE kind = 'manifest'", [])
        .unwrap();
    assert_eq!(gone, 2);
    let (v, _) = fx.vault(1).await.unwrap();
    let e = v
        .authority()
        .register_manifest(&manifest_for(&v, "hidden", Some(&f), false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("confidential"), "{e}");
}

#[tokio::test]
async fn a_name_stays_taken_when_its_row_is_deleted_even_across_a_restart() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    v.authority()
        .register_manifest(&manifest_for(&v, "payroll", None, false))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&fx.db).unwrap();
    let delete_name = || {
        conn.execute(
            "DELETE FROM kv_authority WHERE kind = 'name' AND key = 'payroll'",
            [],
        )
        .unwrap()
    };
    assert_eq!(delete_name(), 1);
    let taken = |e: cloister_keyvault::authority::Denied| {
        assert!(
            e.to_string().contains("is bound to an existing function"),
            "{e}"
        );
    };
    taken(
        v.authority()
            .register_manifest(&manifest_for(&v, "payroll", None, false))
            .await
            .unwrap_err(),
    );
    drop(v);
    let (v, _) = fx.vault(1).await.unwrap();
    taken(
        v.authority()
            .register_manifest(&manifest_for(&v, "payroll", None, false))
            .await
            .unwrap_err(),
    );
    // Other names are free as ever.
    v.authority()
        .register_manifest(&manifest_for(&v, "payroll-2", None, false))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_broken_mac_neither_frees_a_name_nor_lets_an_older_record_back() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let a = v.authority();
    a.register_manifest(&manifest_for(&v, "payroll", None, false))
        .await
        .unwrap();
    let first = a.function_by_name("payroll").await.unwrap().unwrap();
    let conn = rusqlite::Connection::open(&fx.db).unwrap();
    let old: (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT value, mac FROM kv_authority WHERE kind = 'function'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    a.register_manifest(&manifest_for(&v, "payroll", Some(&first), false))
        .await
        .unwrap();
    drop(v);
    // The database owner breaks the MACs of the function record and the name row (values
    // untouched, so keyvault's start-up rollback guard, which hashes values, passes).
    let broken = conn
        .execute(
            "UPDATE kv_authority SET mac = X'00' WHERE kind IN ('function', 'name')",
            [],
        )
        .unwrap();
    assert_eq!(broken, 2);
    let (v, _) = fx.vault(1).await.unwrap();
    // Then, while keyvault runs, deletes the name row and puts the older record back with
    // its genuine MAC.
    conn.execute("DELETE FROM kv_authority WHERE kind = 'name'", [])
        .unwrap();
    conn.execute(
        "UPDATE kv_authority SET value = ?1, mac = ?2 WHERE kind = 'function'",
        rusqlite::params![old.0, old.1],
    )
    .unwrap();
    let e = v
        .authority()
        .register_manifest(&manifest_for(&v, "payroll", None, false))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("is bound to an existing function"),
        "{e}"
    );
    let e = v
        .authority()
        .function(&first.function_id)
        .await
        .unwrap_err();
    assert!(
        matches!(e, cloister_keyvault::authority::Denied::Tampered(_)),
        "the older record was read back: {e}"
    );
}

#[tokio::test]
async fn values_are_any_bytes_up_to_the_documented_limit() {
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let p = path(&fid(&v, "f1").await, "BIN");
    let max = cloister_types::limits::MAX_SECRET_VALUE_BYTES;
    v.put(&p, &vec![0xffu8; max], false, "t").await.unwrap();
    let err = v
        .put(&p, &vec![0xffu8; max + 1], false, "t")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        cloister_types::ErrorCode::PayloadTooLarge,
        "{err}"
    );
    assert!(err.to_string().contains("65537 bytes"), "{err}");
    let err = v.put(&p, b"", false, "t").await.unwrap_err();
    assert_eq!(err.code(), cloister_types::ErrorCode::InvalidRequest);
    // Not UTF-8: released exactly as written.
    let bin = [0x00u8, 0xc3, 0x28, 0x0a];
    v.put(&p, &bin, true, "t").await.unwrap();
    let m = register(&v, "f1", "production", &["BIN"]).await;
    let (_, vals) = v.release(&m, "exec-1", "executor").await.unwrap();
    assert_eq!(vals["BIN"].expose(), &bin[..]);
}

#[tokio::test]
async fn a_function_gets_at_most_the_release_limit_of_secrets_together() {
    use cloister_vault_store::AuditLog as _;
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let id = fid(&v, "big").await;
    let max = cloister_types::limits::MAX_SECRET_VALUE_BYTES;
    let names: Vec<String> = (0..16).map(|i| format!("K{i}")).collect();
    for n in &names {
        v.put(&path(&id, n), &vec![7u8; max], false, "t")
            .await
            .unwrap();
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let m = register(&v, "big", "production", &refs).await;
    let err = v.release(&m, "exec-big", "executor").await.unwrap_err();
    assert_eq!(
        err.code(),
        cloister_types::ErrorCode::PayloadTooLarge,
        "{err}"
    );
    // Refused, and recorded as such: no release entry says the values went out.
    let entries = fx.store().audit_list(0, 10_000).await.unwrap();
    let ns = cloister_types::namespace_of(&id);
    assert!(
        !entries
            .iter()
            .any(|e| e.action == "secret.release" && e.subject == ns)
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "authority.refusal" && e.subject == ns)
    );
    // Fifteen fit.
    let m = register(&v, "big", "production", &refs[..15]).await;
    assert_eq!(
        v.release(&m, "exec-ok", "executor").await.unwrap().1.len(),
        15
    );
}

#[tokio::test]
async fn function_keys_are_made_inside_keyvault_and_sign_only_for_manifests_that_declare_them() {
    use cloister_crypto::keys::{KeyAlgorithm, SignHash};
    use cloister_types::{ErrorCode, KeyName};
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let f = fid(&v, "signer").await;
    let name = |n: &str| KeyName::parse(n).unwrap();
    for (n, alg) in [
        ("ed", KeyAlgorithm::Ed25519),
        ("p256", KeyAlgorithm::EcdsaP256),
        ("k1", KeyAlgorithm::EcdsaSecp256k1),
        ("mac", KeyAlgorithm::HmacSha256),
    ] {
        let k = v
            .create_key(&f, &name(n), alg, false, "owner")
            .await
            .unwrap();
        assert_eq!((k.version, k.algorithm), (1, alg));
        assert_eq!(k.public_key.is_some(), alg != KeyAlgorithm::HmacSha256);
    }
    // A taken name is refused; a rotation makes version 2 with another public key.
    let e = v
        .create_key(&f, &name("ed"), KeyAlgorithm::Ed25519, false, "owner")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    let before = v.key_info(&f, &name("ed")).await.unwrap();
    let after = v.rotate_key(&f, &name("ed"), "owner").await.unwrap();
    assert_eq!(after.version, 2);
    assert_ne!(after.public_key, before.public_key);
    assert_eq!(
        v.rotate_key(&f, &name("nope"), "owner")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::KeyNotFound
    );
    let listed: Vec<String> = v
        .list_keys(&f)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(listed, ["ed", "k1", "mac", "p256"]);
    // Keys are not secrets: the secret listing of the function does not show them.
    assert!(v.list(&format!("function-{f}/")).await.unwrap().is_empty());

    // Only a manifest that declares a key gets signatures with it, by its newest version.
    let m = register_with_keys(&v, "signer", "production", &[], &["ed", "k1"]).await;
    let s = v
        .sign_for_function(&m, "ed", b"pay 5", SignHash::Sha256, "exec-1", "executor")
        .await
        .unwrap();
    assert_eq!(s.key.version, 2);
    let pk = cloister_crypto::VerifyingKey::from_slice(after.public_key.as_ref().unwrap()).unwrap();
    pk.verify(b"pay 5", &s.signature.bytes).unwrap();
    assert!(pk.verify(b"pay 6", &s.signature.bytes).is_err());
    let k1 = v
        .sign_for_function(&m, "k1", b"tx", SignHash::Keccak256, "exec-1", "executor")
        .await
        .unwrap();
    assert!(matches!(k1.signature.recovery_id, Some(0 | 1)));
    assert_eq!(
        v.sign_for_function(&m, "p256", b"x", SignHash::Sha256, "e", "executor")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::KeyNotDeclared
    );
    // Another function declaring the same name reaches only its own namespace.
    let other = register_with_keys(&v, "other", "production", &[], &["ed"]).await;
    assert_eq!(
        v.sign_for_function(&other, "ed", b"x", SignHash::Sha256, "e", "executor")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::KeyNotFound
    );
    // Each signature is audited with the digest of what was signed, never the key.
    let entries = fx.store().audit_list(0, 10_000).await.unwrap();
    let signs: Vec<_> = entries
        .iter()
        .filter(|e| e.action.as_str() == "key.sign")
        .collect();
    assert_eq!(signs.len(), 2);
    let d: serde_json::Value = serde_json::from_str(&signs[0].details).unwrap();
    assert_eq!(d["key"], "ed");
    assert_eq!(d["key_version"], 2);
    assert_eq!(
        d["message_sha256"],
        "6880dc3427b880e1d3e1fb8d50280c4551d2554fdc98ec428385f33aa8fe4313"
    );
}

#[tokio::test]
async fn a_manifests_key_limits_refuse_each_violation_with_its_own_code() {
    use cloister_crypto::keys::{KeyAlgorithm, SignHash};
    use cloister_types::{ErrorCode, KeyLimits, KeyName, KeyOperation, KeyRate};
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let f = fid(&v, "limited").await;
    for n in ["tagged", "hidden", "free"] {
        v.create_key(
            &f,
            &KeyName::parse(n).unwrap(),
            KeyAlgorithm::EcdsaSecp256k1,
            false,
            "owner",
        )
        .await
        .unwrap();
    }
    let tagged = KeyLimits {
        operations: None,
        hashes: Some(vec![SignHash::Keccak256]),
        max_message_bytes: Some(32),
        rate: Some(KeyRate {
            count: 2,
            seconds: 3600,
        }),
        prefix: Some("limited-v1-tag::".into()),
    };
    let hidden = KeyLimits {
        operations: Some(vec![KeyOperation::Sign]),
        ..Default::default()
    };
    let limits = std::collections::BTreeMap::from([
        ("tagged".to_owned(), tagged),
        ("hidden".to_owned(), hidden),
    ]);
    // keyvault refuses limits that make no sense or name an undeclared key.
    let mut bad = limits.clone();
    bad.insert("undeclared".into(), KeyLimits::default());
    let signed = key_manifest(
        &v,
        "limited",
        "production",
        &[],
        &["tagged", "hidden", "free"],
        bad,
    )
    .await;
    let e = v.authority().register_manifest(&signed).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest, "{e}");
    let mut bad = limits.clone();
    bad.get_mut("tagged").unwrap().hashes = Some(vec![SignHash::Prehashed]);
    let signed = key_manifest(
        &v,
        "limited",
        "production",
        &[],
        &["tagged", "hidden", "free"],
        bad,
    )
    .await;
    assert!(v.authority().register_manifest(&signed).await.is_err());

    let signed = key_manifest(
        &v,
        "limited",
        "production",
        &[],
        &["tagged", "hidden", "free"],
        limits,
    )
    .await;
    let m = v
        .authority()
        .register_manifest(&signed)
        .await
        .unwrap()
        .manifest;
    let use_key = |key: &'static str, msg: &'static [u8], hash: SignHash| {
        let v = &v;
        let m = m.clone();
        async move {
            v.sign_for_function(&m, key, msg, hash, "exec", "executor")
                .await
                .map(|s| s.key.version)
                .map_err(|e| e.code())
        }
    };
    // Each limit refuses with its own code, and none of these refusals spends the rate.
    for (msg, hash, code) in [
        (
            &b"limited-v1-tag::pay"[..],
            SignHash::Sha256,
            ErrorCode::KeyOperationNotAllowed,
        ),
        (
            b"limited-v1-tag::0123456789012345678901",
            SignHash::Keccak256,
            ErrorCode::KeyMessageTooLarge,
        ),
        (
            b"other:v1:pay",
            SignHash::Keccak256,
            ErrorCode::KeyDomainTagMissing,
        ),
        (
            b"limited-v1-tag:",
            SignHash::Keccak256,
            ErrorCode::KeyDomainTagMissing,
        ),
    ] {
        assert_eq!(use_key("tagged", msg, hash).await, Err(code), "{msg:?}");
    }
    assert_eq!(
        use_key("tagged", b"limited-v1-tag::pay 1", SignHash::Keccak256).await,
        Ok(1)
    );
    assert_eq!(
        use_key("tagged", b"limited-v1-tag::pay 2", SignHash::Keccak256).await,
        Ok(1)
    );
    let e = v
        .sign_for_function(
            &m,
            "tagged",
            b"limited-v1-tag::pay 3",
            SignHash::Keccak256,
            "exec",
            "executor",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyRateLimited);
    assert!(e.to_string().contains("2/3600s"), "{e}");
    // A redeploy (a new version with the same limits) does not refill the rate.
    let mut next = m.manifest.clone();
    next.code_hash = code_hash("limited-v2");
    next.previous = Some(m.digest.clone());
    let signed = sign(&admin(), &next, &SignOptions::for_platform(v.platform())).unwrap();
    let m2 = v
        .authority()
        .register_manifest(&signed)
        .await
        .unwrap()
        .manifest;
    assert_eq!(m2.version, m.version + 1);
    assert_eq!(
        v.sign_for_function(
            &m2,
            "tagged",
            b"limited-v1-tag::pay 4",
            SignHash::Keccak256,
            "e",
            "executor"
        )
        .await
        .unwrap_err()
        .code(),
        ErrorCode::KeyRateLimited
    );
    // Operations: `hidden` signs but does not give its public key; `free` does both.
    assert_eq!(
        use_key("hidden", b"anything", SignHash::Sha256).await,
        Ok(1)
    );
    assert_eq!(
        v.public_key_for_function(&m, "hidden")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::KeyOperationNotAllowed
    );
    assert!(v.public_key_for_function(&m, "free").await.is_ok());
    assert_eq!(use_key("free", &[7; 32], SignHash::Prehashed).await, Ok(1));
    // Exactly the signatures made are audited.
    let entries = fx.store().audit_list(0, 10_000).await.unwrap();
    let signs = entries
        .iter()
        .filter(|e| e.action.as_str() == "key.sign")
        .count();
    assert_eq!(signs, 4);
}

#[tokio::test]
async fn the_newest_active_version_that_declares_a_key_sets_its_limits_for_every_version() {
    use cloister_authority::ops::Activation;
    use cloister_crypto::keys::{KeyAlgorithm, SignHash};
    use cloister_types::{ErrorCode, KeyLimits, KeyName};
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let f = fid(&v, "tightened").await;
    v.create_key(
        &f,
        &KeyName::parse("k").unwrap(),
        KeyAlgorithm::Ed25519,
        false,
        "owner",
    )
    .await
    .unwrap();
    let loose = register_with_keys(&v, "tightened", "production", &[], &["k"]).await;
    let small = KeyLimits {
        max_message_bytes: Some(4),
        ..Default::default()
    };
    let signed = key_manifest(
        &v,
        "tightened",
        "production",
        &[],
        &["k"],
        [("k".to_owned(), small)].into(),
    )
    .await;
    let tight = v
        .authority()
        .register_manifest(&signed)
        .await
        .unwrap()
        .manifest;
    // The older, still active version is held to the newer version's limits: running it
    // does not escape them.
    for m in [&loose, &tight] {
        let e = v
            .sign_for_function(m, "k", b"12345", SignHash::Sha256, "e", "executor")
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            ErrorCode::KeyMessageTooLarge,
            "version {}",
            m.version
        );
    }
    // A newer version that does not declare the key leaves the limits where they were.
    let _undeclared = register_with_keys(&v, "tightened", "production", &[], &[]).await;
    let e = v
        .sign_for_function(&loose, "k", b"12345", SignHash::Sha256, "e", "executor")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyMessageTooLarge);
    // Rolling back (the tight version and those above deactivated) brings back the loose
    // version's own limits.
    let off = Activation {
        function_id: f.clone(),
        name: "tightened".into(),
        version: tight.version,
        active: false,
        and_newer: true,
    };
    let signed = sign(&admin(), &off, &SignOptions::for_platform(v.platform())).unwrap();
    v.authority().activate(&signed).await.unwrap();
    v.sign_for_function(&loose, "k", b"12345", SignHash::Sha256, "e", "executor")
        .await
        .unwrap();
}

#[tokio::test]
async fn an_owner_signs_with_the_newest_version_unless_asked_and_old_versions_still_verify() {
    use cloister_crypto::keys::{KeyAlgorithm, SignHash};
    use cloister_keyvault::function_keys::{OwnerKeyOp, OwnerKeyRequest};
    use cloister_types::{ErrorCode, KeyName};
    fn req<'a>(
        name: &'a KeyName,
        version: Option<u64>,
        message: &'a [u8],
        op: OwnerKeyOp<'a>,
    ) -> OwnerKeyRequest<'a> {
        OwnerKeyRequest {
            name,
            version,
            message,
            hash: SignHash::Sha256,
            op,
        }
    }
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let f = fid(&v, "owned").await;
    for (n, alg) in [
        ("ed", KeyAlgorithm::Ed25519),
        ("mac", KeyAlgorithm::HmacSha256),
    ] {
        let name = KeyName::parse(n).unwrap();
        v.create_key(&f, &name, alg, false, "owner").await.unwrap();
        let sign = |version| {
            let (v, f, name) = (&v, &f, &name);
            async move {
                v.use_key_as_owner(f, req(name, version, b"m", OwnerKeyOp::Sign), "owner")
                    .await
                    .unwrap()
            }
        };
        let check = |version, sig: Vec<u8>| {
            let (v, f, name) = (&v, &f, &name);
            async move {
                let r = v
                    .use_key_as_owner(
                        f,
                        req(name, version, b"m", OwnerKeyOp::Verify { signature: &sig }),
                        "owner",
                    )
                    .await
                    .unwrap();
                (r.valid.unwrap(), r.version)
            }
        };
        let old = sign(None).await;
        assert_eq!(old.version, 1);
        let old_sig = old.signature.unwrap().bytes;
        v.rotate_key(&f, &name, "owner").await.unwrap();
        // The newest version signs; version 1 only when asked.
        let new = sign(None).await;
        assert_eq!(new.version, 2, "{n}");
        let new_sig = new.signature.unwrap().bytes;
        assert_ne!(new_sig, old_sig);
        let again = sign(Some(1)).await;
        assert_eq!(
            (again.version, again.signature.unwrap().bytes),
            (1, old_sig.clone())
        );
        // Checks try every version, newest first, and say which one matched.
        assert_eq!(check(None, old_sig.clone()).await, (true, 1), "{n}");
        assert_eq!(check(None, new_sig.clone()).await, (true, 2), "{n}");
        assert_eq!(check(Some(2), old_sig.clone()).await, (false, 2), "{n}");
        let mut bad = new_sig.clone();
        bad[0] ^= 1;
        assert_eq!(check(None, bad).await, (false, 2), "{n}");
        let e = v
            .use_key_as_owner(&f, req(&name, Some(9), b"m", OwnerKeyOp::Sign), "owner")
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::KeyNotFound);
    }
    let e = v
        .use_key_as_owner(
            &f,
            req(
                &KeyName::parse("ed").unwrap(),
                None,
                &[0; 65537],
                OwnerKeyOp::Sign,
            ),
            "owner",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyMessageTooLarge);
    // Uses are audited with the verdict, never the key.
    let entries = fx.store().audit_list(0, 10_000).await.unwrap();
    let verifies: Vec<serde_json::Value> = entries
        .iter()
        .filter(|e| e.action.as_str() == "key.verify")
        .map(|e| serde_json::from_str(&e.details).unwrap())
        .collect();
    assert_eq!(verifies.len(), 8);
    assert_eq!(verifies.iter().filter(|d| d["valid"] == true).count(), 4);
    assert!(verifies.iter().all(|d| d["via"] == "api"));
}

#[tokio::test]
async fn another_function_signs_with_a_key_only_while_its_owner_grants_it() {
    use cloister_crypto::keys::{KeyAlgorithm, SignHash};
    use cloister_types::{ErrorCode, KeyLimits, KeyName};
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let holder = fid(&v, "holder").await;
    let k = KeyName::parse("k").unwrap();
    let created = v
        .create_key(&holder, &k, KeyAlgorithm::Ed25519, false, "owner")
        .await
        .unwrap();
    let user_id = fid(&v, "user").await;
    let small = KeyLimits {
        max_message_bytes: Some(24),
        ..Default::default()
    };
    let signed = key_manifest(
        &v,
        "user",
        "production",
        &[],
        &["holder/k"],
        [("holder/k".to_owned(), small)].into(),
    )
    .await;
    let user = v
        .authority()
        .register_manifest(&signed)
        .await
        .unwrap()
        .manifest;
    let other = register_with_keys(&v, "other", "production", &[], &["holder/k"]).await;
    let use_key = |m: Arc<RegisteredManifest>, msg: &'static [u8]| {
        let v = &v;
        async move {
            v.sign_for_function(&m, "holder/k", msg, SignHash::Sha256, "e", "executor")
                .await
                .map_err(|e| e.code())
        }
    };
    // Declared but not granted: refused.
    assert_eq!(
        use_key(user.clone(), b"pay").await.unwrap_err(),
        ErrorCode::KeyNotGranted
    );
    // Granted to `user`: it signs with the holder's key, within its own limits on it.
    v.grant_key(
        &holder,
        &k,
        &user_id,
        "user",
        Some(KeyLimits::default()),
        "owner",
    )
    .await
    .unwrap();
    let s = use_key(user.clone(), b"pay").await.unwrap();
    assert_eq!(s.key.name, "holder/k");
    // The holder's owner can limit the grant: a prefix the grantee's own limits lack binds it.
    let tagged = KeyLimits {
        prefix: Some("holder-grant-v1::".into()),
        ..Default::default()
    };
    v.grant_key(&holder, &k, &user_id, "user", Some(tagged), "owner")
        .await
        .unwrap();
    assert_eq!(
        use_key(user.clone(), b"pay").await.unwrap_err(),
        ErrorCode::KeyDomainTagMissing
    );
    use_key(user.clone(), b"holder-grant-v1::p").await.unwrap();
    v.grant_key(
        &holder,
        &k,
        &user_id,
        "user",
        Some(KeyLimits::default()),
        "owner",
    )
    .await
    .unwrap();
    let pk =
        cloister_crypto::VerifyingKey::from_slice(created.public_key.as_ref().unwrap()).unwrap();
    pk.verify(b"pay", &s.signature.bytes).unwrap();
    assert_eq!(
        use_key(user.clone(), b"pay 12345678901234567890123")
            .await
            .unwrap_err(),
        ErrorCode::KeyMessageTooLarge
    );
    assert!(v.public_key_for_function(&user, "holder/k").await.is_ok());
    // A function it was not granted to gets nothing.
    assert_eq!(
        use_key(other.clone(), b"pay").await.unwrap_err(),
        ErrorCode::KeyNotGranted
    );
    // A function needs no grant for its own keys, and cannot be granted them.
    assert_eq!(
        v.grant_key(
            &holder,
            &k,
            &holder,
            "holder",
            Some(KeyLimits::default()),
            "owner"
        )
        .await
        .unwrap_err()
        .code(),
        ErrorCode::InvalidRequest
    );
    // The use is audited in the holder's namespace, naming the grantee.
    let entries = fx.store().audit_list(0, 10_000).await.unwrap();
    let sign = entries
        .iter()
        .find(|e| e.action.as_str() == "key.sign")
        .unwrap();
    assert_eq!(sign.subject, format!("function-{holder}"));
    let d: serde_json::Value = serde_json::from_str(&sign.details).unwrap();
    assert_eq!(d["granted_to"], user_id);
    assert!(entries.iter().any(|e| e.action.as_str() == "key.grant"));
    // A revocation holds at once; a database that drops the revocation is caught.
    v.grant_key(&holder, &k, &user_id, "user", None, "owner")
        .await
        .unwrap();
    assert_eq!(
        use_key(user.clone(), b"pay").await.unwrap_err(),
        ErrorCode::KeyNotGranted
    );
    let conn = rusqlite::Connection::open(&fx.db).unwrap();
    conn.execute(
        "DELETE FROM kv_secrets WHERE path LIKE '%/@grants/k' AND version = \
         (SELECT MAX(version) FROM kv_secrets WHERE path LIKE '%/@grants/k')",
        [],
    )
    .unwrap();
    assert_eq!(
        use_key(user, b"pay").await.unwrap_err(),
        ErrorCode::RollbackDetected
    );
}

#[tokio::test]
async fn a_keyvault_restart_does_not_refill_a_keys_rate() {
    use cloister_crypto::keys::{KeyAlgorithm, SignHash};
    use cloister_types::{ErrorCode, KeyLimits, KeyName, KeyRate};
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let f = fid(&v, "rated").await;
    v.create_key(
        &f,
        &KeyName::parse("k").unwrap(),
        KeyAlgorithm::Ed25519,
        false,
        "owner",
    )
    .await
    .unwrap();
    let rate = KeyLimits {
        rate: Some(KeyRate {
            count: 2,
            seconds: 86_400,
        }),
        ..Default::default()
    };
    let signed = key_manifest(
        &v,
        "rated",
        "production",
        &[],
        &["k"],
        [("k".to_owned(), rate)].into(),
    )
    .await;
    let m = v
        .authority()
        .register_manifest(&signed)
        .await
        .unwrap()
        .manifest;
    async fn sign(v: &Vault, m: &Arc<RegisteredManifest>) -> Result<(), ErrorCode> {
        v.sign_for_function(m, "k", b"x", SignHash::Sha256, "e", "executor")
            .await
            .map(|_| ())
            .map_err(|e| e.code())
    }
    // The keyvault that created the store starts full.
    assert_eq!(sign(&v, &m).await, Ok(()));
    drop(v);
    // A restart (the host's to cause) counts the day's rate from empty.
    let (v, _) = fx.vault(1).await.unwrap();
    assert_eq!(sign(&v, &m).await, Err(ErrorCode::KeyRateLimited));
}

#[tokio::test]
async fn an_exportable_key_leaves_only_sealed_and_an_imported_key_only_signs() {
    use cloister_crypto::HpkeKeyPair;
    use cloister_crypto::keys::{KeyAlgorithm, KeyMaterial, SignHash};
    use cloister_types::binding::{key_export_info, key_import_info};
    use cloister_types::{ErrorCode, KeyName};
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let f = fid(&v, "exporter").await;
    let name = |n: &str| KeyName::parse(n).unwrap();
    let recipient = HpkeKeyPair::generate().unwrap();
    // Not exportable (the default): no export, whoever signs.
    v.create_key(&f, &name("kept"), KeyAlgorithm::Ed25519, false, "owner")
        .await
        .unwrap();
    let e = v
        .export_key(
            &f,
            &name("kept"),
            None,
            &recipient.public(),
            ("owner", "admin"),
            &[0u8; 32],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::KeyNotExportable);
    // Exportable: sealed to the recipient, who opens the same key (and only under the info
    // naming this function, key, algorithm and version).
    let made = v
        .create_key(
            &f,
            &name("portable"),
            KeyAlgorithm::EcdsaP256,
            true,
            "owner",
        )
        .await
        .unwrap();
    assert!(made.exportable);
    let rotated = v.rotate_key(&f, &name("portable"), "owner").await.unwrap();
    assert!(rotated.exportable, "a rotation keeps exportability");
    let out = v
        .export_key(
            &f,
            &name("portable"),
            Some(1),
            &recipient.public(),
            ("owner", "admin"),
            &[0u8; 32],
        )
        .await
        .unwrap();
    assert_eq!(out.version, 1);
    let info = key_export_info(&f, "portable", "ecdsa-p256", 1);
    let secret = recipient.open(&info, b"", &out.sealed).unwrap();
    let opened = KeyMaterial::from_secret(KeyAlgorithm::EcdsaP256, secret.expose()).unwrap();
    assert_eq!(opened.public_key().unwrap(), made.public_key);
    assert!(
        recipient
            .open(
                &key_export_info(&f, "portable", "ecdsa-p256", 2),
                b"",
                &out.sealed
            )
            .is_err()
    );
    let other = HpkeKeyPair::generate().unwrap();
    assert!(other.open(&info, b"", &out.sealed).is_err());

    // Import: sealed to keyvault for this function and name; the key signs as the original.
    let original = KeyMaterial::generate(KeyAlgorithm::EcdsaSecp256k1).unwrap();
    let secret = &original.to_stored()[1..];
    let sealed = v
        .hpke_public()
        .seal(&key_import_info(&f, "imported"), b"", secret)
        .unwrap();
    // Sealed for another name: refused.
    let e = v
        .import_key(
            &f,
            &name("elsewhere"),
            KeyAlgorithm::EcdsaSecp256k1,
            &sealed,
            false,
            "owner",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    let k = v
        .import_key(
            &f,
            &name("imported"),
            KeyAlgorithm::EcdsaSecp256k1,
            &sealed,
            false,
            "owner",
        )
        .await
        .unwrap();
    assert_eq!(k.public_key, original.public_key().unwrap());
    assert!(!k.exportable);
    let m = register_with_keys(&v, "exporter", "production", &[], &["imported"]).await;
    let s = v
        .sign_for_function(&m, "imported", b"tx", SignHash::Sha256, "e", "executor")
        .await
        .unwrap();
    assert!(
        original
            .verify(b"tx", SignHash::Sha256, &s.signature.bytes)
            .unwrap()
    );
    // The secret bytes are nowhere in the database.
    let db = std::fs::read(&fx.db).unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret));
    assert!(!String::from_utf8_lossy(&db).contains(&hex::encode(secret)));
    // Exports are audited with their recipient; refusals leave nothing to open.
    let entries = fx.store().audit_list(0, 10_000).await.unwrap();
    let exports: Vec<_> = entries
        .iter()
        .filter(|e| e.action.as_str() == "key.export")
        .collect();
    assert_eq!(exports.len(), 1);
    assert!(exports[0].details.contains(&recipient.public().to_hex()));
}

#[tokio::test]
async fn a_database_hiding_a_key_neither_lets_a_create_replace_it_nor_serves_an_older_one() {
    use cloister_crypto::keys::{KeyAlgorithm, SignHash};
    use cloister_types::{ErrorCode, KeyName};
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let f = fid(&v, "hider").await;
    let name = KeyName::parse("main").unwrap();
    v.create_key(&f, &name, KeyAlgorithm::Ed25519, false, "owner")
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&fx.db).unwrap();
    // The database forgets the key: a create does not make a new one under the old name.
    conn.execute("DELETE FROM kv_secrets WHERE path LIKE '%/@keys/main'", [])
        .unwrap();
    let e = v
        .create_key(&f, &name, KeyAlgorithm::Ed25519, false, "owner")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict, "{e}");
    // The keyvault that made the key still signs with it (from memory, the version it
    // wrote)...
    let m = register_with_keys(&v, "hider", "production", &[], &["main"]).await;
    let s = v
        .sign_for_function(&m, "main", b"x", SignHash::Sha256, "e", "executor")
        .await
        .unwrap();
    assert_eq!(s.key.version, 1);
    // ...and one that must read it (after a restart) is not served missing-then-anything:
    // keyvault knows a version existed.
    drop(v);
    let (v, _) = fx.vault(1).await.unwrap();
    let e = v
        .sign_for_function(&m, "main", b"x", SignHash::Sha256, "e", "executor")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::RollbackDetected, "{e}");
    // And the refusal is on the audit chain.
    let entries = fx.store().audit_list(0, 10_000).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.action.as_str() == "authority.refusal"
                && e.details.contains("rollback_detected")
                && e.details.contains("@keys/main")),
        "no refusal recorded"
    );
}

/// Writes that arrive together share a commit (group commit), and still behave as if made
/// one after another: racing puts of one path get consecutive versions, every put is
/// readable, keyvault's freshness marks match the rows (a reopened vault releases the latest),
/// and a rotation of a secret that does not exist is refused even inside a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_stay_in_order() {
    let fx = Fixture::new();
    concurrent_writes(|| {
        let s: Arc<dyn cloister_keyvault::KeyvaultStore> = fx.store();
        async move { s }
    })
    .await;
}

/// The same on PostgreSQL, where a group commit is one multi-row statement per table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_stay_in_order_on_postgres() {
    let Some(db) = cloister_db::testing::TestSchema::new("kv_batch") else {
        return;
    };
    concurrent_writes(|| {
        let pg = db.pg();
        async move {
            let s: Arc<dyn cloister_keyvault::KeyvaultStore> =
                Arc::new(cloister_vault_store::PgVault::connect(&pg).await.unwrap());
            s
        }
    })
    .await;
}

async fn concurrent_writes<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn cloister_keyvault::KeyvaultStore>>,
{
    let store = open().await;
    let (v, _) = Vault::open(store.clone(), &sealing(1), Some(&admin().public_key()))
        .await
        .unwrap();
    let v = Arc::new(v);
    let f1 = fid(&v, "f1").await;
    let f2 = fid(&v, "f2").await;
    let mut tasks = Vec::new();
    for w in 0..24u32 {
        let v = v.clone();
        let f = if w % 2 == 0 { f1.clone() } else { f2.clone() };
        tasks.push(tokio::spawn(async move {
            // Half race on one path per function, half write their own.
            let name = if w % 3 == 0 {
                "SHARED".to_owned()
            } else {
                format!("K{w}")
            };
            let mut versions = Vec::new();
            for i in 0..5u32 {
                let (version, _) = v
                    .put(&path(&f, &name), format!("{w}-{i}").as_bytes(), false, "t")
                    .await
                    .unwrap();
                versions.push(version);
            }
            (f, name, versions)
        }));
    }
    let mut shared: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for t in tasks {
        let (f, name, versions) = t.await.unwrap();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        if name == "SHARED" {
            shared.entry(f).or_default().extend(versions);
        } else {
            assert_eq!(versions, [1, 2, 3, 4, 5], "{name}");
        }
    }
    for (f, mut versions) in shared {
        versions.sort_unstable();
        let n = versions.len() as u64;
        assert_eq!(
            versions,
            (1..=n).collect::<Vec<_>>(),
            "{f}: distinct, gap-free"
        );
    }
    let err = v
        .put(&path(&f1, "NEVER_PUT"), b"x", true, "t")
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::NotFound(_)), "{err:?}");
    let entries = store.audit_list(0, 100_000).await.unwrap();
    assert!(
        entries.iter().filter(|e| e.action == "secret.put").count() >= 120,
        "every put is audited"
    );
    drop(v);
    drop(store);
    // Reopened: marks and rows agree, so every latest value is released.
    let (v2, _) = Vault::open(open().await, &sealing(1), Some(&admin().public_key()))
        .await
        .unwrap();
    let names: Vec<String> = (0..24u32)
        .filter(|w| w % 3 != 0 && w % 2 == 0)
        .map(|w| format!("K{w}"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let released = release(&v2, "f1", &refs).await.unwrap();
    assert_eq!(released.len(), names.len());
    for (name, value) in released {
        assert!(
            value.ends_with("-4"),
            "{name}: the last put wins, got {value}"
        );
    }
}

/// A writer that gives up while queued (its future dropped, as when the gateway cancels the
/// RPC) takes its write back: it is never applied later, behind the caller's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_queued_write_is_never_applied() {
    use cloister_vault_store::VaultStore as _;
    let fx = Fixture::new();
    let (v, _) = fx.vault(1).await.unwrap();
    let f = fid(&v, "f1").await;
    let held = v.authority().write_lock().await;
    let given_up = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        v.put(&path(&f, "CANCELLED"), b"late", false, "t"),
    )
    .await;
    assert!(given_up.is_err(), "the put waited behind the lock");
    drop(held);
    v.put(&path(&f, "OTHER"), b"v", false, "t").await.unwrap();
    assert!(
        fx.store()
            .vault_records(path(&f, "CANCELLED").to_string())
            .await
            .unwrap()
            .is_empty(),
        "the abandoned write was applied by a later leader"
    );
}

/// A commit whose writer never learned the outcome (cancelled after the database committed,
/// or the connection lost during COMMIT) leaves keyvault's freshness mark in doubt; the next
/// write settles it from the database instead of failing forever on a stale expectation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_change_in_doubt_is_settled_from_the_database() {
    use cloister_keyvault::freshness::Mark;
    use cloister_vault_store::VaultStore as _;
    let fx = Fixture::new();
    // The vault's own store handle: the direct write below is keyvault's (its audit MAC and
    // head), as a commit whose writer was cancelled would be.
    let store = fx.store();
    let (v, _) = Vault::open(store.clone(), &sealing(1), Some(&admin().public_key()))
        .await
        .unwrap();
    let f = fid(&v, "f1").await;
    let p = path(&f, "K");
    v.put(&p, b"one", false, "t").await.unwrap();
    // Version 2 commits, but the writer is gone before it records the new mark.
    let ns = p.namespace();
    let mark = v
        .authority()
        .mark(&ns, &p.to_string(), Mark::written(2))
        .await
        .unwrap();
    v.authority().marking(&[&mark]);
    let rec = cloister_vault_store::SecretRecord {
        path: p.to_string(),
        version: 2,
        namespace: ns.clone(),
        dek_version: 1,
        ciphertext: b"written by a writer that never came back".to_vec(),
        created_at: String::new(),
    };
    store
        .vault_put_secret(
            rec,
            cloister_audit::AuditDraft::new("t", cloister_audit::Action::SecretPut, p.to_string()),
            vec![mark.write.clone()],
        )
        .await
        .unwrap();
    // The next write adopts the committed mark and goes on at version 3.
    let (version, _) = v.put(&p, b"three", false, "t").await.unwrap();
    assert_eq!(version, 3);
    assert_eq!(
        release(&v, "f1", &["K"]).await.unwrap(),
        vec![("K".into(), "three".into())]
    );
}
