//! The platform played against by a hostile gateway operator (ARCHITECTURE §11): the harness
//! holds the gateway's internal credential and its database, and speaks the executor's and
//! keyvault's internal RPCs directly. Each attack must fail with its documented code and
//! release nothing of the victim's.

mod common;

use std::time::Duration;

use cloister_rpc::executor::executor_client::ExecutorClient;
use cloister_rpc::executor::{FunctionRef, InvokeRequest, invoke_response::Outcome};
use cloister_rpc::keyvault::keyvault_client::KeyvaultClient;
use cloister_rpc::keyvault::{PutSecretRequest, SignedRequest};
use cloister_types::code_hash;
use cloister_types::wire::{DeployRequest, FunctionInfo};
use common::{Platform, assert_api_error};
use tonic::metadata::MetadataValue;

/// The victim's function: it declares one secret and echoes nothing.
const VICTIM: &str = "function handler(p, s) { return { ok: typeof s.API_KEY === 'string' }; }";
/// Attacker code: returns whatever secrets it is given.
const EXFIL: &str = "function handler(p, s) { return { stolen: s }; }";
const NEEDLE: &str = "victim-api-key-0b9f8e7d";

/// What the operator of the gateway host holds.
struct Insider {
    executor_token: String,
    keyvault_token: String,
    executor_url: String,
    keyvault_url: String,
}

fn proc_args(pid: u32, file: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn insider(p: &Platform) -> Insider {
    let serve = p.child.as_ref().unwrap().id();
    let gw = common::child_pid(serve, "gateway").expect("gateway process");
    let args = proc_args(gw, "cmdline");
    let after = |flag: &str| {
        let i = args.iter().position(|a| a == flag).expect(flag);
        args[i + 1].clone()
    };
    let creds = common::gateway_credentials(p);
    Insider {
        executor_token: creds["executor"].clone(),
        keyvault_token: creds["keyvault"].clone(),
        executor_url: after("--executor-url"),
        keyvault_url: after("--keyvault-url"),
    }
}

impl Insider {
    fn req_with<T>(token: &str, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        r
    }

    /// A request to keyvault with the gateway's keyvault credential.
    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        Self::req_with(&self.keyvault_token, msg)
    }

    async fn invoke(&self, f: &FunctionInfo, code: Option<&str>, hash: &str) -> Outcome {
        self.invoke_with(f, code, hash, "null").await
    }

    /// Runs `f` on the executor directly with parameters of the insider's choice.
    async fn invoke_with(
        &self,
        f: &FunctionInfo,
        code: Option<&str>,
        hash: &str,
        params: &str,
    ) -> Outcome {
        let mut c = ExecutorClient::new(channel(&self.executor_url).await);
        let r = c
            .invoke(Self::req_with(
                &self.executor_token,
                InvokeRequest {
                    function: Some(FunctionRef {
                        function_id: f.function_id.clone(),
                        version: f.version,
                        code_hash: hash.to_owned(),
                        secrets_epoch: 0,
                    }),
                    params_json: params.into(),
                    code: code.map(str::to_owned),
                    execution_id: uuid(),
                    link_id: Vec::new(),
                    sealed: None,
                    receipt_nonce: Vec::new(),
                    receipt_signer: Vec::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        r.outcome.expect("an outcome")
    }

    async fn keyvault(&self) -> KeyvaultClient<tonic::transport::Channel> {
        KeyvaultClient::new(channel(&self.keyvault_url).await)
    }
}

async fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn uuid() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u128::from_le_bytes(b)
}

fn refused(o: Outcome, code: &str) {
    match o {
        Outcome::Failure(f) => {
            assert_eq!(f.code, code, "{}", f.message);
            assert!(!f.message.contains(NEEDLE));
        }
        Outcome::Success(s) => panic!("the attack ran: {}", s.result_json),
        Outcome::CodeRequired(_) => panic!("executor asked for code"),
        Outcome::Sealed(s) => panic!("the attack ran: sealed outcome {}", s.outcome),
    }
}

/// `cloister secret put|rotate API_KEY --function victim` with `value` on stdin, as the owner.
fn write_victim_key(p: &Platform, verb: &str, value: &[u8]) -> std::process::Output {
    let root = p.sim_root();
    p.cli_stdin(
        &[
            "secret",
            verb,
            "API_KEY",
            "--function",
            "victim",
            "--from-stdin",
            "--sim-root",
            &root,
        ],
        value,
    )
}

async fn victim(p: &Platform) -> FunctionInfo {
    let req = DeployRequest {
        required_secrets: vec!["API_KEY".into()],
        ..DeployRequest::javascript("victim", VICTIM)
    };
    let info = p.admin().deploy(&req).await.unwrap();
    let out = write_victim_key(p, "put", NEEDLE.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The victim runs, so its secrets now sit in the executor's cache.
    let r = p.admin().invoke("victim", "null", None).await.unwrap();
    assert_eq!(r.result.get(), r#"{"ok":true}"#);
    info
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_gateway_cannot_run_other_code_as_a_function_or_widen_a_release() {
    let p = Platform::start().await;
    let v = victim(&p).await;
    let evil = insider(&p);

    // Other code under the victim's id (hash consistent with the code sent): refused by
    // keyvault although the victim's values sit in the executor's cache.
    refused(
        evil.invoke(&v, Some(EXFIL), &code_hash(EXFIL)).await,
        "manifest_mismatch",
    );
    // The victim's code hash with other code: the executor runs only code that hashes to the
    // hash (here the victim's, from its cache), never the code sent.
    match evil.invoke(&v, Some(EXFIL), &v.code_hash).await {
        Outcome::Success(s) => assert_eq!(s.result_json, r#"{"ok":true}"#),
        other => panic!("{other:?}"),
    }
    // Another version number, or a function id that does not exist.
    let mut other = v.clone();
    other.version = 7;
    refused(
        evil.invoke(&other, Some(EXFIL), &code_hash(EXFIL)).await,
        "function_not_found",
    );

    // The victim's own code, by the book, still works for the gateway: that is its job.
    match evil.invoke(&v, None, &v.code_hash).await {
        Outcome::Success(s) => assert_eq!(s.result_json, r#"{"ok":true}"#),
        other => panic!("{other:?}"),
    }

    // The gateway's database says the victim's code is EXFIL and declares more secrets: the
    // executor loads EXFIL from the gateway and keyvault refuses it.
    let db = rusqlite::Connection::open(p.data().join("gateway.db")).unwrap();
    db.execute(
        "UPDATE function_versions SET code = ?1, code_hash = ?2, \
         required_secrets = '[\"API_KEY\",\"OTHER\"]'",
        [EXFIL, &code_hash(EXFIL)],
    )
    .unwrap();
    drop(db);
    // The gateway caches resolved versions briefly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = assert_api_error(
        p.admin().invoke("victim", "null", None).await,
        "manifest_mismatch",
        409,
    );
    assert!(!e.message.contains(NEEDLE));

    // Nothing above put the needle anywhere a caller sees; the refusals are audited.
    let audit = p.cli(&["--json", "audit", "list", "--limit", "1000"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(text.contains("authority.refusal"), "{text}");
    assert!(!text.contains(NEEDLE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyvault_refuses_unsigned_or_foreign_requests_relayed_by_the_gateway() {
    let mut p = Platform::start().await;
    let v = victim(&p).await;
    let evil = insider(&p);
    let mut kv = evil.keyvault().await;

    // An unsigned manifest, or garbage, straight to keyvault.
    let e = kv
        .register_manifest(evil.req(SignedRequest {
            signed: vec![],
            sealed_code: None,
            sealed: Vec::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "invalid_request");
    // A secret overwrite without the owner's signature.
    let e = kv
        .put_secret(evil.req(PutSecretRequest {
            path: format!("function-{}/production/default/API_KEY", v.function_id),
            sealed: vec![0; 64],
            rotate: true,
            actor: "mallory".into(),
            signed: vec![],
        }))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "bad_signature");

    // A developer identity that does not own the victim: redeploy, secret write.
    let mallory = p.developer_identity("mallory").await;
    let mut m = p.admin().with_identity(mallory.clone(), None);
    let mut req = DeployRequest {
        required_secrets: vec!["API_KEY".into(), "OTHER".into()],
        ..DeployRequest::javascript("victim", EXFIL)
    };
    assert_api_error(m.deploy(&req).await, "not_owner", 403);
    let path = cloister_types::SecretPath::parse(&format!(
        "function-{}/production/default/API_KEY",
        v.function_id
    ))
    .unwrap();
    assert_api_error(m.delete_secret(&path).await, "not_owner", 403);
    // Deploying under a new name is fine for her; taking the victim's name with no id is not.
    req.name = "mallorys".into();
    m.deploy(&req).await.unwrap();

    // Straight at keyvault, a manifest creating a new function named "victim" is refused —
    // also after the database owner deletes keyvault's name row, which would otherwise let
    // her function take the name (and, on a client's first use, the victim's sealed calls).
    let platform = p
        .admin()
        .attestation()
        .await
        .unwrap()
        .keyvault
        .audit_public_key;
    let claim = || common::new_function_manifest(&mallory, "victim", &code_hash(EXFIL), &platform);
    assert_eq!(
        code_of(&register_straight(&evil, claim()).await.unwrap_err()),
        "conflict"
    );
    let deleted = rusqlite::Connection::open(p.data().join("keyvault.db"))
        .unwrap()
        .execute(
            "DELETE FROM kv_authority WHERE kind = 'name' AND key = 'victim'",
            [],
        )
        .unwrap();
    assert_eq!(deleted, 1, "keyvault's name row for the victim");
    let alarmed = |p: &Platform| {
        assert!(
            p.log()
                .contains("ALARM: keyvault's name row vanished from the database"),
            "{}",
            p.log()
        )
    };
    assert_eq!(
        code_of(&register_straight(&evil, claim()).await.unwrap_err()),
        "conflict"
    );
    alarmed(&p);
    // The victim still runs with its secret.
    let r = p.admin().invoke("victim", "null", None).await.unwrap();
    assert_eq!(r.result.get(), r#"{"ok":true}"#);
    // Nor does a restart free the name: keyvault's rollback guard (the rows its audit chain
    // records) refuses to start on a database missing a row keyvault wrote.
    p.stop();
    let dir = std::mem::replace(&mut p.dir, tempfile::tempdir().unwrap());
    drop(p);
    let p = Platform::start_in(dir).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !p.log().contains("refusing to start") {
        assert!(std::time::Instant::now() < deadline, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        p.log()
            .contains("rollback detected: the name row \"victim\" that keyvault wrote is missing"),
        "{}",
        p.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_version_receives_nothing() {
    let p = Platform::start().await;
    let v1 = victim(&p).await;
    let mut admin = p.admin();
    let act = admin
        .activate("victim", &v1.function_id, 1, false)
        .await
        .unwrap();
    assert!(act.active.is_empty());
    // Cached grants expire with the TTL or the epoch; the refusal comes at the next fetch.
    let evil = insider(&p);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        match evil.invoke(&v1, None, &v1.code_hash).await {
            Outcome::Failure(f) if f.code == "inactive_version" => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "still served: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    admin
        .activate("victim", &v1.function_id, 1, true)
        .await
        .unwrap();
    let r = p.admin().invoke("victim", "null", None).await.unwrap();
    assert_eq!(r.result.get(), r#"{"ok":true}"#);
}

/// keyvault's answer to manifest `signed` relayed straight to it by `ins`.
async fn register_straight(
    ins: &Insider,
    signed: Vec<u8>,
) -> Result<cloister_rpc::keyvault::RegisterManifestResponse, tonic::Status> {
    ins.keyvault()
        .await
        .register_manifest(ins.req(SignedRequest {
            signed,
            sealed_code: None,
            sealed: Vec::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

fn code_of(s: &tonic::Status) -> String {
    s.metadata()
        .get("x-cloister-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_secret_row_in_the_database_is_refused_not_served() {
    let p = Platform::start().await;
    victim(&p).await;
    let out = write_victim_key(&p, "rotate", b"rotated-value");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(p.data().join("keyvault.db")).unwrap();
    db.execute("DELETE FROM kv_secrets WHERE version = 2", [])
        .unwrap();
    db.execute(
        "UPDATE kv_epochs SET epoch = epoch + 1, \
         changed = (SELECT MAX(changed) FROM kv_epochs) + 1",
        [],
    )
    .unwrap();
    drop(db);
    let e = assert_api_error(
        p.admin().invoke("victim", "null", None).await,
        "rollback_detected",
        409,
    );
    assert!(!e.message.contains(NEEDLE));
    let metrics = p.admin().metrics().await.unwrap();
    assert!(
        metrics.contains("rollback_detected"),
        "an alarm in the metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invocation_reading_secrets_is_audited_cache_hits_included() {
    const CALLS: usize = 240;
    const CLIENTS: usize = 8;
    let p = Platform::start().await;
    victim(&p).await;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = p.admin();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..CALLS / CLIENTS {
                ids.push(c.invoke("victim", "null", None).await.unwrap().execution_id);
            }
            ids
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), CALLS);
    // Reads are recorded in batches (group commit) within tens of milliseconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (reads, cached) = loop {
        let (mut reads, mut cached) = (0usize, 0usize);
        for e in audit_entries(&p).await {
            if e["action"] != "secret.read" {
                continue;
            }
            let d = details(&e);
            if ids.contains(d["execution_id"].as_str().unwrap()) {
                reads += 1;
                assert_eq!(d["names"], serde_json::json!(["API_KEY"]));
                if d["cached"] == true {
                    cached += 1;
                }
            }
        }
        if reads == CALLS || std::time::Instant::now() > deadline {
            break (reads, cached);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reads, CALLS, "one secret.read entry per invocation");
    assert!(
        cached > CALLS / 2,
        "cache hits are audited too ({cached} of {CALLS})"
    );
    // Each entry is MACed by keyvault, and the chain verifies.
    assert_chain_verifies(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_token_acts_only_on_functions_its_identity_owns() {
    let p = Platform::start().await;
    let v = victim(&p).await;
    let mallory = p.developer_identity("mallory").await;
    let token = p
        .admin()
        .create_token(&cloister_types::wire::TokenCreateRequest {
            role: cloister_types::Role::Developer,
            label: Some("mallory".into()),
            identity: Some(mallory.id().to_string()),
            functions: vec![],
        })
        .await
        .unwrap();
    let mut m = p
        .client(Some(&token.token))
        .with_identity(mallory.clone(), None);
    let mut req = DeployRequest {
        required_secrets: vec!["API_KEY".into()],
        ..DeployRequest::javascript("victim", EXFIL)
    };
    assert_api_error(m.deploy(&req).await, "forbidden", 403);
    assert_api_error(m.delete("victim").await, "forbidden", 403);
    let path = cloister_types::SecretPath::parse(&format!(
        "function-{}/production/default/API_KEY",
        v.function_id
    ))
    .unwrap();
    assert_api_error(m.delete_secret(&path).await, "forbidden", 403);
    assert_api_error(
        m.json(
            hyper::Method::GET,
            &format!("/v1/secrets?prefix=function-{}/", v.function_id),
            None,
        )
        .await,
        "forbidden",
        403,
    );
    assert_api_error(
        m.activate("victim", &v.function_id, 1, false).await,
        "forbidden",
        403,
    );
    // A manifest signed by someone else cannot be relayed with her token either.
    req.name = "relayed".into();
    let mut admin_signed = req.clone();
    admin_signed.manifest = Some(
        cloister_client::signing::sign_deploy(
            &p.admin_identity(),
            &p.admin()
                .attestation()
                .await
                .unwrap()
                .keyvault
                .audit_public_key,
            &req,
            None,
        )
        .unwrap(),
    );
    assert_api_error(m.deploy(&admin_signed).await, "forbidden", 403);
    // Her own function is hers to redeploy and delete.
    req.name = "mallorys".into();
    let mine = m.deploy(&req).await.unwrap();
    assert_eq!(mine.owners, vec![mallory.id().to_string()]);
    m.deploy(&req).await.unwrap();
    m.delete("mallorys").await.unwrap();
    // The victim is untouched.
    let r = p.admin().invoke("victim", "null", None).await.unwrap();
    assert_eq!(r.result.get(), r#"{"ok":true}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_credentials_are_per_role_pair_and_never_in_an_environment() {
    let p = Platform::start().await;
    let creds = common::gateway_credentials(&p);
    let (to_executor, to_keyvault) = (creds["executor"].clone(), creds["keyvault"].clone());
    assert_ne!(to_executor, to_keyvault, "one credential per role pair");
    let serve = p.child.as_ref().unwrap().id();
    let pids = common::descendants(serve);
    assert!(
        pids.len() >= 4,
        "serve, gateway, executor, keyvault: {pids:?}"
    );
    for pid in &pids {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let text = String::from_utf8_lossy(&env);
        assert!(
            !text.contains(&to_executor),
            "credential in the environment of {pid}"
        );
        assert!(
            !text.contains(&to_keyvault),
            "credential in the environment of {pid}"
        );
        assert!(!text.contains("CLOISTER_INTERNAL_TOKEN"), "{pid}");
        let cmdline = String::from_utf8_lossy(
            &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default(),
        )
        .into_owned();
        assert!(!cmdline.contains(&to_executor) && !cmdline.contains(&to_keyvault));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.data().join("gateway.credentials"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The executor's credential does not open keyvault, and the reverse.
    let evil = insider(&p);
    let mut kv = evil.keyvault().await;
    let e = kv
        .list_secrets(Insider::req_with(
            &to_executor,
            cloister_rpc::keyvault::ListSecretsRequest {
                prefix: "function-".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut ex = ExecutorClient::new(channel(&evil.executor_url).await);
    let e = ex
        .status(Insider::req_with(
            &to_keyvault,
            cloister_rpc::executor::StatusRequest {},
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
}

/// The keyvault measurement clients expect (`attest measure`, run by the platform's CLI).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_binds_the_registry_and_the_cli_warns_when_it_changes() {
    let p = Platform::start().await;
    victim(&p).await;
    // The registry digest is part of what keyvault's evidence binds.
    let mut bundle = p.admin().attestation().await.unwrap();
    let expected = p.keyvault_measurement();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let kv =
        cloister_client::attestation::verify_bundle(&bundle, &p.sim_root(), &expected, 300, now)
            .unwrap();
    assert_eq!(kv.admins.len(), 1);
    bundle.keyvault.registry_digest = "00".repeat(32);
    assert!(matches!(
        cloister_client::attestation::verify_bundle(&bundle, &p.sim_root(), &expected, 300, now),
        Err(cloister_client::attestation::BundleError::Unbound)
    ));
    // A new admin appears: the next CLI command that verifies the bundle says so.
    let newcomer = cloister_authority::Identity::generate("newcomer").unwrap();
    p.admin()
        .grant_identity(
            &newcomer.public_key(),
            cloister_authority::ops::IdentityRole::Admin,
            "newcomer",
            None,
        )
        .await
        .unwrap();
    let out = write_victim_key(&p, "put", b"v2");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("identity registry") && err.contains("changed"),
        "{err}"
    );
    assert!(err.contains(newcomer.id().as_str()), "{err}");
    // Unchanged since: no warning.
    let out = write_victim_key(&p, "put", b"v3");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"));
}

/// `cloister keyvault policy set` with `yaml`, as the dev admin.
fn set_policy(p: &Platform, file: &std::path::Path, yaml: &str, root: &str) {
    std::fs::write(file, yaml).unwrap();
    let set = p.cli(&[
        "keyvault",
        "policy",
        "set",
        file.to_str().unwrap(),
        "--sim-root",
        root,
    ]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_allowlist_is_a_registry_entry_only_an_admin_changes() {
    let p = Platform::start().await;
    victim(&p).await;
    let root = p.sim_root();
    let show = p.cli(&["--json", "keyvault", "policy", "show", "--sim-root", &root]);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let before: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(before["version"], 1);
    assert_eq!(before["setBy"], "bootstrap");
    let this_build = before["measurements"][0].as_str().unwrap().to_owned();
    let original = before["policy"].as_str().unwrap().to_owned();
    // A function that signs: its signatures travel on the executor's multiplexed signing
    // channel, which the policy binds as much as the channel secrets travel on.
    signer_with_key(&p, "psigner", "pk").await;
    let sign_once = || async {
        p.admin()
            .invoke("psigner", r#"{"key":"pk","msg":"hello"}"#, None)
            .await
    };
    assert_eq!(sign_once().await.unwrap().result.get(), r#"{"v":1,"n":64}"#);

    // A developer identity cannot change it, even relayed with the admin's token.
    let dev = p.developer_identity("dev").await;
    let mut as_dev = p.client(Some(&p.token)).with_identity(dev, None);
    let other = "ab".repeat(48);
    let evil = original.replace(&this_build, &other);
    assert_api_error(
        as_dev
            .change_registry(&cloister_authority::ops::RegistryChange::ExecutorPolicy {
                version: 2,
                policy: evil.clone(),
            })
            .await,
        "not_owner",
        403,
    );

    // The admin moves it to another build: the bundle binds the new list and this build's
    // executor stops receiving secrets (at its next fetch: a rotation bumps the epoch).
    let file = p.dir.path().join("policy.yaml");
    set_policy(&p, &file, &evil, &root);
    let bundle = p.admin().attestation().await.unwrap();
    assert_eq!(bundle.executor_measurements, vec![other.clone()]);
    assert!(write_victim_key(&p, "rotate", b"rotated").status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match p.admin().invoke("victim", "null", None).await {
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("no longer on keyvault's executor policy"),
                    "{text}"
                );
                break;
            }
            Ok(r) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "still served: {}",
                    r.result.get()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    // Nor signatures: the signing channel is refused and cut at its next request.
    let e = sign_once()
        .await
        .expect_err("signed for a build off the policy");
    let text = e.to_string();
    assert!(
        text.contains("attestation_failed") || text.contains("executor policy"),
        "{text}"
    );
    // Putting this build back (version 3) lets its executor re-attest and run again.
    set_policy(&p, &file, &original, &root);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match p.admin().invoke("victim", "null", None).await {
            Ok(r) => {
                assert_eq!(r.result.get(), r#"{"ok":true}"#);
                assert_eq!(
                    sign_once().await.unwrap().result.get(),
                    r#"{"v":1,"n":64}"#,
                    "the signing channel re-attests too"
                );
                break;
            }
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "not restored: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    let audit = p.cli(&["audit", "list"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(
        text.matches("policy.set").count(),
        3,
        "bootstrap + two changes: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_proves_itself_to_the_gateway_and_links_are_not_guessable() {
    let p = Platform::start().await;
    let v = victim(&p).await;
    // The platform's gateway attested its executor before routing to it.
    assert!(
        p.log().contains("executor attested to the gateway"),
        "{}",
        p.log()
    );
    // Holding the gateway's credential is not enough to claim a link: an unknown link id is
    // refused before anything runs.
    let evil = insider(&p);
    let mut c = ExecutorClient::new(channel(&evil.executor_url).await);
    let err = c
        .invoke(Insider::req_with(
            &evil.executor_token,
            InvokeRequest {
                function: Some(FunctionRef {
                    function_id: v.function_id.clone(),
                    version: v.version,
                    code_hash: v.code_hash.clone(),
                    secrets_epoch: 0,
                }),
                params_json: "null".into(),
                code: None,
                execution_id: uuid(),
                link_id: vec![0u8; 16],
                sealed: None,
                receipt_nonce: Vec::new(),
                receipt_signer: Vec::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "attestation_failed");
    // An Attest answered by the real executor binds the caller's nonce and key: evidence
    // obtained for one gateway key does not verify for another.
    let nonce = [5u8; 32];
    let ans = c
        .attest(Insider::req_with(
            &evil.executor_token,
            cloister_rpc::executor::AttestRequest {
                nonce: nonce.to_vec(),
                gateway_public: vec![6u8; 32],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let bundle = p.admin().attestation().await.unwrap();
    let now = cloister_attest::time_fmt::now();
    let root = p.sim_root();
    assert!(
        cloister_gateway::executor_link::verify(
            &ans,
            &nonce,
            &[6u8; 32],
            &root,
            &bundle.executor_measurements,
            now
        )
        .is_ok()
    );
    assert!(
        cloister_gateway::executor_link::verify(
            &ans,
            &nonce,
            &[7u8; 32],
            &root,
            &bundle.executor_measurements,
            now
        )
        .is_err()
    );
    // A linked request runs at most once: replaying it (same execution id) is refused.
    let linked = |execution_id: String| {
        Insider::req_with(
            &evil.executor_token,
            InvokeRequest {
                function: Some(FunctionRef {
                    function_id: v.function_id.clone(),
                    version: v.version,
                    code_hash: v.code_hash.clone(),
                    secrets_epoch: 0,
                }),
                params_json: "null".into(),
                code: None,
                execution_id,
                link_id: ans.link_id.clone(),
                sealed: None,
                receipt_nonce: Vec::new(),
                receipt_signer: Vec::new(),
            },
        )
    };
    let id = uuid();
    let first = c.invoke(linked(id.clone())).await.unwrap().into_inner();
    assert_eq!(
        first.link_mac.len(),
        32,
        "linked responses carry the link MAC"
    );
    let again = c.invoke(linked(id)).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_binds_the_fleet_keys_a_gateway_cannot_swap_or_stretch_one() {
    let p = Platform::start().await;
    let bundle = p.admin().attestation().await.unwrap();
    let expected = p.keyvault_measurement();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verify = |b: &cloister_client::attestation::Bundle, at: i64| {
        cloister_client::attestation::verify_bundle(b, &p.sim_root(), &expected, 300, at)
    };
    let kv = verify(&bundle, now).unwrap();
    assert!(!kv.fleet_keys.is_empty(), "keyvault publishes a fleet key");
    let k = &bundle.keyvault.fleet_keys[0];
    assert_eq!(
        kv.fleet_keys[0].public.0.to_vec(),
        hex::decode(&k.public_key).unwrap()
    );
    // The hostile gateway swaps in its own key (with a matching id), stretches a key's
    // validity, or drops one: the evidence no longer matches.
    let own = cloister_crypto::HpkeKeyPair::derive(&[7u8; 32])
        .unwrap()
        .public();
    use sha2::Digest as _;
    let mut swapped = bundle.clone();
    swapped.keyvault.fleet_keys[0].public_key = hex::encode(own.0);
    swapped.keyvault.fleet_keys[0].key_id = hex::encode(&sha2::Sha256::digest(own.0)[..8]);
    let mut stretched = bundle.clone();
    stretched.keyvault.fleet_keys[0].not_after += 365 * 86400;
    let mut dropped = bundle.clone();
    dropped.keyvault.fleet_keys.clear();
    for (what, b) in [
        ("swapped", swapped),
        ("stretched", stretched),
        ("dropped", dropped),
    ] {
        assert!(
            matches!(
                verify(&b, now),
                Err(cloister_client::attestation::BundleError::Unbound)
            ),
            "{what} fleet key accepted"
        );
    }
    // The attested executor holds exactly the published keys (it checks each private half
    // yields its public key), and keyvault audited the release to it.
    p.executor_holds_keys().await;
    let log = p.log();
    let line = log
        .lines()
        .find(|l| l.contains("holding fleet keys"))
        .unwrap();
    for k in &bundle.keyvault.fleet_keys {
        assert!(
            line.contains(&format!("{}@{}", k.key_id, k.epoch)),
            "{line}"
        );
    }
    let audit: serde_json::Value =
        serde_json::from_slice(&p.cli(&["--json", "audit", "list"]).stdout).unwrap();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "key.fleet_release"
                && e["actor"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("executor:")),
        "{audit}"
    );
    // An id that is not its key's is malformed before anything else.
    let mut mislabelled = bundle.clone();
    mislabelled.keyvault.fleet_keys[0].key_id = "00".repeat(8);
    assert!(matches!(
        verify(&mislabelled, now),
        Err(cloister_client::attestation::BundleError::Malformed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_gateway_cannot_run_a_sealed_request_as_other_code() {
    use base64::Engine as _;
    use cloister_client::sealed::{Target, pick_key, seal_call};
    let p = Platform::start().await;
    let victim = victim(&p).await;
    let evil = p
        .admin()
        .deploy(&DeployRequest::javascript("evil", EXFIL))
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let kv = p.trusted_keyvault().await;
    p.executor_holds_keys().await;
    let key = pick_key(&kv.fleet_keys, now as u64).unwrap();
    let target = Target {
        function_id: victim.function_id.clone(),
        version: victim.version,
        code_hash: victim.code_hash.clone(),
        manifest_digest: victim.manifest_digest.clone(),
    };
    let sealed = |params: &str| {
        let call = seal_call(key, &target, params, now as u64).unwrap();
        let i = call.input;
        cloister_rpc::executor::SealedInput {
            suite: i.suite,
            key_id: i.key_id,
            function_id: i.function_id,
            version: i.version,
            code_hash: i.code_hash,
            manifest_digest: i.manifest_digest,
            request_id: i.request_id,
            timestamp: i.timestamp,
            ciphertext: base64::engine::general_purpose::STANDARD
                .decode(i.ciphertext)
                .unwrap(),
        }
    };
    let ins = insider(&p);
    let mut c = ExecutorClient::new(channel(&ins.executor_url).await);
    // The insider routes the victim's sealed request to its own function (with its own code),
    // then to the victim's function id with its own code's hash: both refused before running.
    for (f, code) in [
        (
            FunctionRef {
                function_id: evil.function_id.clone(),
                version: evil.version,
                code_hash: evil.code_hash.clone(),
                secrets_epoch: 0,
            },
            Some(EXFIL.to_owned()),
        ),
        (
            FunctionRef {
                function_id: victim.function_id.clone(),
                version: victim.version,
                code_hash: code_hash(EXFIL),
                secrets_epoch: 0,
            },
            Some(EXFIL.to_owned()),
        ),
    ] {
        let out = c
            .invoke(Insider::req_with(
                &ins.executor_token,
                InvokeRequest {
                    function: Some(f),
                    params_json: String::new(),
                    code,
                    execution_id: uuid(),
                    link_id: Vec::new(),
                    sealed: Some(sealed(r#"{"m":"x"}"#)),
                    receipt_nonce: Vec::new(),
                    receipt_signer: Vec::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        refused(out.outcome.expect("an outcome"), "code_hash_mismatch");
    }
    // Sealed input with plain params alongside is malformed.
    let err = c
        .invoke(Insider::req_with(
            &ins.executor_token,
            InvokeRequest {
                function: Some(FunctionRef {
                    function_id: victim.function_id.clone(),
                    version: victim.version,
                    code_hash: victim.code_hash.clone(),
                    secrets_epoch: 0,
                }),
                params_json: "null".into(),
                code: None,
                execution_id: uuid(),
                link_id: Vec::new(),
                sealed: Some(sealed("1")),
                receipt_nonce: Vec::new(),
                receipt_signer: Vec::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_code_cached_in_the_executor_is_never_served_to_another_function() {
    use cloister_client::sealed::{pick_key, seal_call};
    let p = Platform::start().await;
    p.executor_holds_keys().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let kv = p.trusted_keyvault().await;
    let key = pick_key(&kv.fleet_keys, now as u64).unwrap();
    // The victim's confidential function runs once: its plaintext is now in the executor's
    // code cache.
    let secret_code = "function handler(p) { return { secret: 'confidential-logic' }; }";
    let mut admin = p.admin();
    let victim = admin
        .deploy_confidential(&DeployRequest::javascript("vault-logic", secret_code), key)
        .await
        .unwrap();
    let t = admin
        .verified_target(&kv, "vault-logic", None)
        .await
        .unwrap();
    let call = seal_call(key, &t.target, "{}", now as u64).unwrap();
    admin.invoke_sealed("vault-logic", &call).await.unwrap();

    // Mallory registers a plain function naming the victim's (public) code hash, straight at
    // keyvault; the insider then asks the executor to run it with no code attached.
    let mallory = p.developer_identity("mallory").await;
    let signed = common::new_function_manifest(
        &mallory,
        "copycat",
        &victim.code_hash,
        &kv.audit_key.to_string(),
    );
    let ins = insider(&p);
    let reg = register_straight(&ins, signed).await.unwrap();
    let out = ins
        .invoke(
            &FunctionInfo {
                function_id: reg.function_id.clone(),
                version: reg.version,
                ..victim.clone()
            },
            None,
            &victim.code_hash,
        )
        .await;
    assert!(
        matches!(out, Outcome::CodeRequired(_)),
        "the victim's cached plaintext was served to another function: {out:?}"
    );
    // Handed the victim's stored (sealed) code, it still cannot run: keyvault grants no code
    // key to a plain manifest, and the victim's key would not open it for another function.
    let stored: String = rusqlite::Connection::open(p.data().join("gateway.db"))
        .unwrap()
        .query_row(
            "SELECT code FROM function_versions WHERE function_id = ?1",
            [&victim.function_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stored.starts_with(cloister_types::sealed::STORED_CODE_PREFIX));
    let out = ins
        .invoke(
            &FunctionInfo {
                function_id: reg.function_id,
                version: reg.version,
                ..victim.clone()
            },
            Some(&stored),
            &victim.code_hash,
        )
        .await;
    refused(out, "invalid_request");
}

/// A stand-in gateway: serves `bundle` at `GET /v1/attestation`, answers everything else 404
/// `function_not_found`, and records every request line it gets.
async fn forging_gateway(
    bundle: serde_json::Value,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            let bundle = bundle.to_string();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                log.lock().unwrap().push(line.clone());
                let (status, body) = if line.starts_with("GET /v1/attestation ") {
                    ("200 OK", bundle)
                } else {
                    (
                        "404 Not Found",
                        r#"{"error":{"code":"function_not_found","message":"no","details":{}}}"#
                            .to_owned(),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_naming_another_platform_gets_nothing_signed() {
    let p = Platform::start().await;
    // keyvault's real bundle, but naming another platform's instance key: whatever a client
    // signed for it would be valid there, not here.
    let raw = p
        .admin()
        .raw(hyper::Method::GET, "/v1/attestation", None)
        .await
        .unwrap();
    let mut bundle: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    bundle["keyvault"]["auditPublicKey"] = hex::encode([7u8; 32]).into();
    let (url, seen) = forging_gateway(bundle).await;
    let add = common::workloads().join("add.js");
    let root = p.sim_root();
    for args in [
        vec!["fn", "deploy", add.to_str().unwrap(), "--name", "victim"],
        vec!["fn", "activate", "victim", "--version", "1"],
        vec!["identity", "revoke", "0123456789abcdef0123456789abcdef"],
    ] {
        let mut all = vec!["--url", url.as_str(), "--token", p.token.as_str()];
        all.extend(args.iter().copied());
        let o = p.cli_env(&all, b"", &[("CLOISTER_SIM_ROOT", root.as_str())]);
        assert!(!o.status.success(), "{args:?} went through");
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|l| l.starts_with("GET ")),
        "a signed request reached the forging gateway: {seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("GET /v1/attestation ")),
        "{seen:?}"
    );
}

/// `cloister audit verify` (against the platform's sim root) says the chain is whole.
fn assert_chain_verifies(p: &Platform) {
    let root = p.sim_root();
    let v: serde_json::Value = serde_json::from_slice(
        &p.cli(&["--json", "audit", "verify", "--sim-root", &root])
            .stdout,
    )
    .unwrap();
    assert_eq!(v["ok"], true, "{v}");
}

/// Every audit entry, in order (the API pages by 1000).
async fn audit_entries(p: &Platform) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    loop {
        let after = all
            .last()
            .map_or(0, |e: &serde_json::Value| e["seq"].as_u64().unwrap());
        let page = p
            .admin()
            .json(
                hyper::Method::GET,
                &format!("/v1/audit?after={after}&limit=1000"),
                None,
            )
            .await
            .unwrap();
        let entries = page["entries"].as_array().unwrap().clone();
        let done = entries.len() < 1000;
        all.extend(entries);
        if done {
            return all;
        }
    }
}

fn details(e: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(e["details"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_gateway_cannot_grow_the_audit_log_without_end_and_what_it_floods_is_counted() {
    const EVENTS: usize = 640;
    const REFUSALS: usize = 320;
    const TASKS: usize = 16;
    let p = Platform::start().await;
    let evil = std::sync::Arc::new(insider(&p));
    let kv = evil.keyvault().await;
    let marker = format!("flood-{}", uuid());

    // Events reported as the gateway: each would be one audit entry.
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (mut kv, evil, marker) = (kv.clone(), evil.clone(), marker.clone());
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..EVENTS / TASKS {
                let ev = cloister_rpc::keyvault::GatewayEvent {
                    action: "token.revoke".into(),
                    subject: marker.clone(),
                    actor: "flood".into(),
                    details_json: String::new(),
                };
                codes.push(match kv.record_event(evil.req(ev)).await {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => code_of(&e),
                });
            }
            codes
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let recorded = codes.iter().filter(|c| *c == "ok").count();
    let limited = codes.iter().filter(|c| *c == "rate_limited").count();
    assert_eq!(recorded + limited, EVENTS, "{codes:?}");
    // The budget of this kind: 200 at once, 20 a second after (one second of slack).
    let most = 200.0 + 20.0 * (elapsed + 1.0);
    assert!(
        (recorded as f64) <= most && limited > 0,
        "{recorded} recorded, {limited} refused in {elapsed:.2} s"
    );

    // Each kind of entry has its own budget: the flood of one does not silence another.
    let other_kind = cloister_rpc::keyvault::GatewayEvent {
        action: "function.current".into(),
        subject: marker.clone(),
        actor: "flood".into(),
        details_json: String::new(),
    };
    kv.clone()
        .record_event(evil.req(other_kind))
        .await
        .expect("another kind of event is still recorded");

    // Refusals have budgets of their own, by code; past them, refused requests are still
    // refused with their own code (the budget changes what is written, never what is
    // allowed).
    let refusals: Vec<_> = (0..REFUSALS)
        .map(|_| {
            let (mut kv, evil) = (kv.clone(), evil.clone());
            tokio::spawn(async move {
                kv.register_manifest(evil.req(SignedRequest {
                    signed: vec![1, 2, 3],
                    sealed_code: None,
                    sealed: Vec::new(),
                }))
                .await
            })
        })
        .collect();
    for r in refusals {
        assert_eq!(code_of(&r.await.unwrap().unwrap_err()), "invalid_request");
    }

    // What was left out is on the chain as keyvault's own counts, within a tick or two.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let entries = audit_entries(&p).await;
        let written_events = entries
            .iter()
            .filter(|e| e["action"] == "token.revoke" && e["subject"] == marker.as_str())
            .count();
        let written_refusals = entries
            .iter()
            .filter(|e| {
                e["action"] == "authority.refusal"
                    && e["subject"] == "manifest"
                    && details(e)["operation"] == "deploy"
            })
            .count();
        let (mut left_events, mut left_refusals) = (0, 0);
        for e in entries.iter().filter(|e| e["action"] == "audit.suppressed") {
            assert_eq!(e["actor"], "keyvault", "{e}");
            let d = details(e);
            left_events += d["counts"]["token.revoke"].as_u64().unwrap_or(0) as usize;
            left_refusals += d["counts"]["authority.refusal"].as_u64().unwrap_or(0) as usize;
            assert_eq!(d["budget_per_second"], 20);
        }
        assert_eq!(
            written_events, recorded,
            "every admitted event is written once"
        );
        if written_events + left_events == EVENTS && written_refusals + left_refusals == REFUSALS {
            assert!(
                left_refusals > 0,
                "the refusals came while the budget was spent"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events {written_events} written + {left_events} counted of {EVENTS}, \
             refusals {written_refusals} + {left_refusals} of {REFUSALS}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the chain, counts included, verifies.
    assert_chain_verifies(&p);
}

/// A function that signs what it is given with the key it is told to use.
/// Deploys `function` (the admin owns it) running [`SIGNER`] and declaring key `key`, which
/// the admin creates (Ed25519, not exportable).
async fn signer_with_key(
    p: &Platform,
    function: &str,
    key: &str,
) -> (
    cloister_types::wire::FunctionInfo,
    cloister_types::wire::KeyInfo,
) {
    let f = p
        .admin()
        .deploy(&DeployRequest {
            required_keys: vec![key.into()],
            ..DeployRequest::javascript(function, SIGNER)
        })
        .await
        .unwrap();
    let k = p
        .admin()
        .write_key(&cloister_authority::ops::KeyWrite {
            function_id: f.function_id.clone(),
            function: function.into(),
            name: key.into(),
            op: cloister_authority::ops::KeyOp::Create {
                algorithm: "ed25519".into(),
                exportable: false,
            },
        })
        .await
        .unwrap();
    (f, k)
}

const SIGNER: &str = "async function handler(p, s, c) {
    const r = await c.sign(p.key, p.msg);
    return { v: r.keyVersion, n: r.signature.length };
}";
/// Attacker code that tries the victim's key under the victim's function id.
const EVIL_SIGNER: &str = "async function handler(p, s, c) {
    const r = await c.sign('vk', 'drain the account');
    return { stolen: Array.from(r.signature) };
}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_one_but_the_declaring_function_gets_a_signature_with_its_key() {
    let p = Platform::start().await;
    let evil = insider(&p);
    // The victim's function declares key `vk`, which its owner (the admin) creates.
    let (v, vk) = signer_with_key(&p, "kvictim", "vk").await;
    let r = p
        .admin()
        .invoke("kvictim", r#"{"key":"vk","msg":"hello"}"#, None)
        .await
        .unwrap();
    assert_eq!(r.result.get(), r#"{"v":1,"n":64}"#);
    // What the gateway relays about the key is keyvault's, signed with the attested audit
    // key: a public key the gateway substitutes, or the key shown as another function's,
    // does not verify.
    let kv = p.trusted_keyvault().await;
    cloister_client::keys::verify(&vk, &kv.audit_key, "kvictim").unwrap();
    let mut forged = vk.clone();
    forged.public_key = Some(hex::encode([7u8; 32]));
    assert!(cloister_client::keys::verify(&forged, &kv.audit_key, "kvictim").is_err());
    assert!(cloister_client::keys::verify(&vk, &kv.audit_key, "mallorys-signer").is_err());
    // An owner's request the gateway points at another function (the id of one, the name
    // of another) is refused by keyvault.
    let other = p
        .admin()
        .deploy(&DeployRequest::javascript("kother", SIGNER))
        .await
        .unwrap();
    assert_api_error(
        p.admin()
            .write_key(&cloister_authority::ops::KeyWrite {
                function_id: other.function_id.clone(),
                function: "kvictim".into(),
                name: "vk2".into(),
                op: cloister_authority::ops::KeyOp::Create {
                    algorithm: "ed25519".into(),
                    exportable: false,
                },
            })
            .await,
        "manifest_mismatch",
        409,
    );

    // Another developer declares a key of the same name in her own function: keyvault looks
    // in her function's namespace only, where there is none.
    let mallory = p.developer_identity("mallory").await;
    let mut m = p.admin().with_identity(mallory.clone(), None);
    m.deploy(&DeployRequest {
        required_keys: vec!["vk".into()],
        ..DeployRequest::javascript("mallorys-signer", SIGNER)
    })
    .await
    .unwrap();
    let e = assert_api_error(
        p.admin()
            .invoke("mallorys-signer", r#"{"key":"vk","msg":"hello"}"#, None)
            .await,
        "function_error",
        422,
    );
    assert_eq!(e.details["code"], "key_not_found", "{e:?}");
    // Nor may she rotate (or otherwise touch) the victim's key: she owns no part of it.
    let e = assert_api_error(
        m.write_key(&cloister_authority::ops::KeyWrite {
            function_id: v.function_id.clone(),
            function: "kvictim".into(),
            name: "vk".into(),
            op: cloister_authority::ops::KeyOp::Rotate,
        })
        .await,
        "not_owner",
        403,
    );
    assert!(e.message.contains("own"), "{e:?}");

    // The gateway's operator, speaking the executor's RPC with the gateway's credential,
    // runs attacker code under the victim's id: keyvault authorises no run of that code, so
    // nothing is signed.
    refused(
        evil.invoke(&v, Some(EVIL_SIGNER), &code_hash(EVIL_SIGNER))
            .await,
        "manifest_mismatch",
    );
    // The victim's key is where it was, at the version it had.
    let list = p.admin().keys("kvictim").await.unwrap();
    let created = cloister_types::wire::KeyInfo {
        write_signature: None,
        ..vk
    };
    assert_eq!(list.keys, vec![created]);

    // The victim's next version limits the key: a domain tag and three signatures an hour.
    // The insider drives the victim's own code on the executor with messages of its choice:
    // keyvault, not the code, not the executor, refuses what the limits do not allow.
    let v2 = p
        .admin()
        .deploy(&DeployRequest {
            required_keys: vec!["vk".into()],
            key_limits: [(
                "vk".to_owned(),
                cloister_types::KeyLimits {
                    prefix: Some("kvictim-transfers:".into()),
                    rate: Some(cloister_types::KeyRate {
                        count: 3,
                        seconds: 3600,
                    }),
                    ..Default::default()
                },
            )]
            .into(),
            ..DeployRequest::javascript("kvictim", SIGNER)
        })
        .await
        .unwrap();
    let hash = code_hash(SIGNER);
    let drive = |f: FunctionInfo, msg: &'static str| {
        let evil = &evil;
        let hash = hash.clone();
        async move {
            evil.invoke_with(
                &f,
                Some(SIGNER),
                &hash,
                &format!(r#"{{"key":"vk","msg":"{msg}"}}"#),
            )
            .await
        }
    };
    let cause = |o: Outcome| match o {
        Outcome::Failure(f) => (f.code, f.cause.unwrap_or_default()),
        Outcome::Success(s) => ("signed".into(), s.result_json),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        cause(drive(v2.clone(), "drain the account").await),
        ("function_error".into(), "key_domain_tag_missing".into())
    );
    // The unlimited first version is still active (a rollback target), and the insider runs
    // it instead: the newer version's limits bind it too, rate included.
    assert_eq!(
        cause(drive(v.clone(), "drain the account").await),
        ("function_error".into(), "key_domain_tag_missing".into())
    );
    for (f, msg) in [
        (&v2, "kvictim-transfers:1"),
        (&v, "kvictim-transfers:2"),
        (&v2, "kvictim-transfers:3"),
    ] {
        let (code, _) = cause(drive(f.clone(), msg).await);
        assert_eq!(code, "signed", "{msg}");
    }
    for f in [&v, &v2] {
        assert_eq!(
            cause(drive(f.clone(), "kvictim-transfers:4").await),
            ("function_error".into(), "key_rate_limited".into())
        );
    }
    // keyvault signed for the victim's own call and the three the limits allow; the uses
    // it refused are audited.
    let audit = p.cli(&["--json", "audit", "list", "--limit", "1000"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(text.matches("\"key.sign\"").count(), 4, "{text}");
    let entries = audit_entries(&p).await;
    for code in ["key_domain_tag_missing", "key_rate_limited"] {
        assert!(
            entries.iter().any(|e| e["action"] == "authority.refusal"
                && details(e)["operation"] == "sign"
                && details(e)["code"] == code),
            "the refused key use ({code}) is on the audit chain"
        );
    }
    let entries = audit_entries(&p).await;
    assert!(
        entries.iter().any(|e| e["action"] == "authority.refusal"
            && details(e)["operation"] == "sign"
            && details(e)["code"] == "key_not_found"),
        "the refused key use is on the audit chain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_key_use_cannot_be_replayed_redirected_or_its_result_altered() {
    use cloister_authority::ops::{KeyOp, KeyUse, KeyUseOp, KeyWrite};
    use cloister_rpc::keyvault::KeyUseRequest;
    use sha2::Digest as _;
    let p = Platform::start().await;
    let evil = insider(&p);
    let f = p
        .admin()
        .deploy(&DeployRequest::javascript("kuse", SIGNER))
        .await
        .unwrap();
    p.admin()
        .write_key(&KeyWrite {
            function_id: f.function_id.clone(),
            function: "kuse".into(),
            name: "uk".into(),
            op: KeyOp::Create {
                algorithm: "ed25519".into(),
                exportable: false,
            },
        })
        .await
        .unwrap();
    let audit_key = p.trusted_keyvault().await.audit_key;
    let usage = |message: &[u8], op: KeyUseOp| KeyUse {
        function_id: f.function_id.clone(),
        function: "kuse".into(),
        name: "uk".into(),
        version: None,
        hash: "sha256".into(),
        message_sha256: hex::encode(sha2::Sha256::digest(message)),
        op,
    };
    let mut owner = p.admin();

    // The gateway swaps the message under an owner's request: keyvault refuses it.
    let req = signed_use(&mut owner, usage(b"pay 5 to bob", KeyUseOp::Sign)).await;
    let e = evil
        .keyvault()
        .await
        .use_key(evil.req(KeyUseRequest {
            signed: req.clone(),
            message: b"pay 5000 to mallory".to_vec(),
            sealed_message: Vec::new(),
        }))
        .await
        .unwrap_err();
    assert!(e.message().contains("message_sha256"), "{e:?}");

    // A message sealed to keyvault (as the CLI sends it) is read by keyvault alone: it
    // signs over it; the same bytes sealed for another key of the function, or sent with a
    // plain message next to them, are refused.
    let kv = p.trusted_keyvault().await;
    let seal = |key: &str, m: &[u8]| {
        kv.hpke
            .seal(
                &cloister_types::binding::key_use_info(&f.function_id, key),
                b"",
                m,
            )
            .unwrap()
    };
    let sealed_send = |signed: Vec<u8>, message: Vec<u8>, sealed_message: Vec<u8>| {
        let evil = &evil;
        async move {
            evil.keyvault()
                .await
                .use_key(evil.req(KeyUseRequest {
                    signed,
                    message,
                    sealed_message,
                }))
                .await
        }
    };
    let req = signed_use(&mut owner, usage(b"pay 7 to bob", KeyUseOp::Sign)).await;
    let sealed = seal("uk", b"pay 7 to bob");
    assert!(
        !sealed.windows(12).any(|w| w == b"pay 7 to bob"),
        "the relayed bytes do not carry the message"
    );
    let e = sealed_send(req.clone(), Vec::new(), seal("other", b"pay 7 to bob"))
        .await
        .unwrap_err();
    assert!(e.message().contains("sealed"), "{e:?}");
    let req = signed_use(&mut owner, usage(b"pay 7 to bob", KeyUseOp::Sign)).await;
    let e = sealed_send(req.clone(), b"pay 7 to bob".to_vec(), sealed.clone())
        .await
        .unwrap_err();
    assert!(e.message().contains("not both"), "{e:?}");
    let req = signed_use(&mut owner, usage(b"pay 7 to bob", KeyUseOp::Sign)).await;
    let signed_sealed = sealed_send(req.clone(), Vec::new(), sealed)
        .await
        .unwrap()
        .into_inner();
    let list = p.admin().keys("kuse").await.unwrap();
    let public = cloister_client::keys::verify(&list.keys[0], &kv.audit_key, "kuse")
        .unwrap()
        .unwrap();
    cloister_crypto::VerifyingKey::from_slice(&public)
        .unwrap()
        .verify(b"pay 7 to bob", &signed_sealed.signature)
        .expect("keyvault signed the message it unsealed");
    // The request as signed succeeds once; its replay is refused.
    let req = signed_use(&mut owner, usage(b"pay 5 to bob", KeyUseOp::Sign)).await;
    let send =
        |signed: Vec<u8>, message: &'static [u8]| sealed_send(signed, message.to_vec(), Vec::new());
    let good = send(req.clone(), b"pay 5 to bob")
        .await
        .unwrap()
        .into_inner();
    let e = send(req.clone(), b"pay 5 to bob").await.unwrap_err();
    assert!(
        e.message().contains("replay") || e.message().contains("used"),
        "{e:?}"
    );

    // Nor may another developer use the key: she owns no part of the function.
    let mallory = p.developer_identity("mallory-keys").await;
    let mut m = p.admin().with_identity(mallory, None);
    let e = send(
        signed_use(&mut m, usage(b"pay 5 to bob", KeyUseOp::Sign)).await,
        b"pay 5 to bob",
    )
    .await
    .unwrap_err();
    assert!(e.message().contains("own"), "{e:?}");

    // What keyvault answers is signed over the request it answers: the gateway cannot alter
    // a signature, turn a failed check into a passed one, or answer a request with the
    // result of another.
    let as_wire = |r: &cloister_rpc::keyvault::KeyUseReply| cloister_types::wire::KeyUseResult {
        algorithm: r.algorithm.clone(),
        key_version: r.key_version,
        signature: (!r.signature.is_empty()).then(|| hex::encode(&r.signature)),
        recovery_id: r.recovery_id.map(|x| x as u8),
        valid: r.valid,
        keyvault_signature: hex::encode(&r.keyvault_signature),
    };
    let digest = |b: &[u8]| -> [u8; 32] { sha2::Sha256::digest(b).into() };
    let genuine = as_wire(&good);
    cloister_client::keys::verify_use(&genuine, &audit_key, &digest(&req)).unwrap();
    let mut altered = genuine.clone();
    let mut sig = hex::decode(altered.signature.as_ref().unwrap()).unwrap();
    sig[0] ^= 1;
    altered.signature = Some(hex::encode(sig));
    assert!(cloister_client::keys::verify_use(&altered, &audit_key, &digest(&req)).is_err());
    let other_req = signed_use(&mut owner, usage(b"pay 5 to bob", KeyUseOp::Sign)).await;
    assert!(cloister_client::keys::verify_use(&genuine, &audit_key, &digest(&other_req)).is_err());

    let forged = hex::encode([9u8; 64]);
    let check_req = signed_use(
        &mut owner,
        usage(b"pay 5 to bob", KeyUseOp::Verify { signature: forged }),
    )
    .await;
    let verdict = send(check_req.clone(), b"pay 5 to bob")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict.valid, Some(false));
    let mut passed = as_wire(&verdict);
    cloister_client::keys::verify_use(&passed, &audit_key, &digest(&check_req)).unwrap();
    passed.valid = Some(true);
    assert!(cloister_client::keys::verify_use(&passed, &audit_key, &digest(&check_req)).is_err());

    // keyvault signed exactly twice (the plain and the sealed request); each refusal is
    // audited.
    let audit = p.cli(&["--json", "audit", "list", "--limit", "1000"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(text.matches("\"key.sign\"").count(), 2, "{text}");
    let entries = audit_entries(&p).await;
    let refusals = entries
        .iter()
        .filter(|e| e["action"] == "authority.refusal" && details(e)["operation"] == "key_use")
        .count();
    // The swapped message, the message sealed for another key, the message sent both ways,
    // the replay and Mallory's request.
    assert_eq!(refusals, 5, "the refused uses are on the audit chain");
}

/// `u` signed by `c`'s identity, as bytes.
async fn signed_use(
    c: &mut cloister_client::Client,
    u: cloister_authority::ops::KeyUse,
) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(c.sign_body(&u, "owner").await.unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_grant_is_the_owners_alone_and_names_exactly_one_function() {
    use cloister_authority::ops::{KeyOp, KeyWrite};
    let p = Platform::start().await;
    let victim = p
        .admin()
        .deploy(&DeployRequest::javascript("gvictim", SIGNER))
        .await
        .unwrap();
    let friend = p
        .admin()
        .deploy(&DeployRequest {
            required_keys: vec!["gvictim/gk".into()],
            ..DeployRequest::javascript("gfriend", SIGNER)
        })
        .await
        .unwrap();
    let write = |to: &FunctionInfo, to_name: &str, name: &str| KeyWrite {
        function_id: victim.function_id.clone(),
        function: "gvictim".into(),
        name: name.into(),
        op: KeyOp::Grant {
            to_function_id: to.function_id.clone(),
            to_function: to_name.into(),
            limits: Default::default(),
        },
    };
    p.admin()
        .write_key(&KeyWrite {
            function_id: victim.function_id.clone(),
            function: "gvictim".into(),
            name: "gk".into(),
            op: KeyOp::Create {
                algorithm: "ed25519".into(),
                exportable: false,
            },
        })
        .await
        .unwrap();
    // Mallory declares the victim's key in her own function and grants it to herself: she
    // owns no part of the victim, so keyvault refuses.
    let mallory = p.developer_identity("mallory-grants").await;
    let mut m = p.admin().with_identity(mallory, None);
    let mf = m
        .deploy(&DeployRequest {
            required_keys: vec!["gvictim/gk".into()],
            ..DeployRequest::javascript("gmallory", SIGNER)
        })
        .await
        .unwrap();
    assert_api_error(
        m.write_key(&write(&mf, "gmallory", "gk")).await,
        "not_owner",
        403,
    );
    // The owner grants the key to `gfriend`, but the gateway told the owner's client
    // Mallory's id for that name: keyvault binds names to ids and refuses.
    assert_api_error(
        p.admin().write_key(&write(&mf, "gfriend", "gk")).await,
        "manifest_mismatch",
        409,
    );
    let granted = p
        .admin()
        .write_key(&write(&friend, "gfriend", "gk"))
        .await
        .unwrap();
    // keyvault's signed view lists the grant; a gateway hiding it breaks the signature.
    let kv = p.trusted_keyvault().await;
    assert_eq!(granted.granted_to, vec!["gfriend".to_owned()]);
    let listed = p.admin().keys("gvictim").await.unwrap();
    cloister_client::keys::verify(&listed.keys[0], &kv.audit_key, "gvictim").unwrap();
    let mut hidden = listed.keys[0].clone();
    hidden.granted_to.clear();
    assert!(cloister_client::keys::verify(&hidden, &kv.audit_key, "gvictim").is_err());
    // The answer to the grant is bound to the request: it cannot answer another change.
    assert!(
        cloister_client::keys::verify_write(&granted, &kv.audit_key, "gvictim", &[1; 32]).is_err()
    );
    // The friend signs; Mallory's function, declaring the same key, does not.
    let r = p
        .admin()
        .invoke("gfriend", r#"{"key":"gvictim/gk","msg":"hello"}"#, None)
        .await
        .unwrap();
    assert_eq!(r.result.get(), r#"{"v":1,"n":64}"#);
    let e = assert_api_error(
        p.admin()
            .invoke("gmallory", r#"{"key":"gvictim/gk","msg":"hello"}"#, None)
            .await,
        "function_error",
        422,
    );
    assert_eq!(e.details["code"], "key_not_granted", "{e:?}");
    // Exactly one grant and one signature are on the audit chain.
    let audit = p.cli(&["--json", "audit", "list", "--limit", "1000"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(text.matches("\"key.grant\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"key.sign\"").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_needs_an_owner_and_an_independent_admin_and_a_kept_key_has_no_export_at_all() {
    use cloister_authority::ops::{IdentityRole, KeyExport, KeyOp, KeyWrite};
    use cloister_crypto::HpkeKeyPair;
    use cloister_crypto::keys::{KeyAlgorithm, KeyMaterial};
    let p = Platform::start().await;
    // A developer owns the function; the bootstrap admin added her and a second admin.
    let dev = p.developer_identity("exporter-dev").await;
    let mut owner = p.admin().with_identity(dev, None);
    let f = owner
        .deploy(&DeployRequest::javascript("xfn", SIGNER))
        .await
        .unwrap();
    let admin2_id = std::sync::Arc::new(cloister_authority::Identity::generate("admin-2").unwrap());
    p.admin()
        .grant_identity(
            &admin2_id.public_key(),
            IdentityRole::Admin,
            "admin-2",
            None,
        )
        .await
        .unwrap();
    let mut admin1 = p.admin();
    let mut admin2 = p.admin().with_identity(admin2_id, None);
    let create = |name: &str, exportable: bool| KeyWrite {
        function_id: f.function_id.clone(),
        function: "xfn".into(),
        name: name.into(),
        op: KeyOp::Create {
            algorithm: "ecdsa-p256".into(),
            exportable,
        },
    };
    let portable = owner.write_key(&create("portable", true)).await.unwrap();
    let kept = owner.write_key(&create("kept", false)).await.unwrap();
    // keyvault's signed view says which keys can ever leave it; the gateway cannot flip that.
    let audit_key = p.trusted_keyvault().await.audit_key;
    assert!(portable.exportable && !kept.exportable && !kept.imported);
    let mut flipped = kept.clone();
    flipped.exportable = true;
    assert!(cloister_client::keys::verify(&flipped, &audit_key, "xfn").is_err());

    let recipient = HpkeKeyPair::generate().unwrap();
    let body = |name: &str, recipient: &HpkeKeyPair| KeyExport {
        function_id: f.function_id.clone(),
        function: "xfn".into(),
        name: name.into(),
        version: None,
        recipient: recipient.public().to_hex(),
    };
    let b = body("portable", &recipient);

    // One identity signing twice is not two parties.
    let e = assert_api_error(export_twice(&mut owner, &b).await, "invalid_request", 400);
    assert!(e.message.contains("two identities"), "{e:?}");
    // Two admins are not an owner and an admin.
    assert_api_error(
        export(&mut admin1, &b, &mut admin2, &b).await,
        "not_owner",
        403,
    );
    // The second signer must be an admin.
    let dev2 = p.developer_identity("exporter-dev-2").await;
    let mut developer = p.admin().with_identity(dev2, None);
    assert_api_error(
        export(&mut owner, &b, &mut developer, &b).await,
        "not_owner",
        403,
    );
    // Nor may the admin be the one who added the owner to the registry: one stolen admin
    // key could otherwise make its own second party.
    let e = assert_api_error(
        export(&mut owner, &b, &mut admin1, &b).await,
        "invalid_request",
        400,
    );
    assert!(e.message.contains("independent"), "{e:?}");
    // The admin must sign the same export (here: another recipient, the gateway's own).
    let gateway_recipient = HpkeKeyPair::generate().unwrap();
    assert_api_error(
        export(
            &mut owner,
            &b,
            &mut admin2,
            &body("portable", &gateway_recipient),
        )
        .await,
        "invalid_request",
        400,
    );
    // A key created without `exportable` has no export, whoever signs.
    let k = body("kept", &recipient);
    assert_api_error(
        export(&mut owner, &k, &mut admin2, &k).await,
        "key_not_exportable",
        403,
    );

    // Both signatures: the key is sealed to the recipient, who checks keyvault's signature
    // (bound to the owner's request) and opens the same key the public half names.
    let (out, request) = export(&mut owner, &b, &mut admin2, &b).await.unwrap();
    let secret = cloister_client::keys::open_export(
        &out,
        &recipient,
        &f.function_id,
        "portable",
        &request,
        &audit_key,
    )
    .unwrap();
    let opened = KeyMaterial::from_secret(KeyAlgorithm::EcdsaP256, &secret).unwrap();
    assert_eq!(
        opened.public_key().unwrap().map(hex::encode),
        portable.public_key
    );
    // The export answers that request only: passed off as the answer to another, it fails.
    assert!(
        cloister_client::keys::open_export(
            &out,
            &recipient,
            &f.function_id,
            "portable",
            &[7; 32],
            &audit_key
        )
        .is_err()
    );
    // A gateway that swaps in a key it sealed itself to the recipient is caught.
    let mut swapped = out.clone();
    {
        use base64::Engine as _;
        let own = KeyMaterial::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let sealed = recipient
            .public()
            .seal(
                &cloister_types::binding::key_export_info(
                    &f.function_id,
                    "portable",
                    "ecdsa-p256",
                    1,
                ),
                b"",
                &own.to_stored()[1..],
            )
            .unwrap();
        swapped.sealed = base64::engine::general_purpose::STANDARD.encode(sealed);
    }
    assert!(
        cloister_client::keys::open_export(
            &swapped,
            &recipient,
            &f.function_id,
            "portable",
            &request,
            &audit_key
        )
        .is_err()
    );
    // Exactly one export is on the audit chain, and each refusal is too.
    let audit = p.cli(&["--json", "audit", "list", "--limit", "1000"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(text.matches("\"key.export\"").count(), 1, "{text}");
    let entries = audit_entries(&p).await;
    let refused = entries
        .iter()
        .filter(|e| e["action"] == "authority.refusal" && details(e)["operation"] == "key_export")
        .count();
    assert_eq!(refused, 6, "each refused export is audited");
}

/// An export of `a` signed by `first` and of `b` signed by `second`; with the SHA-256 of the
/// first signed request.
async fn export(
    first: &mut cloister_client::Client,
    a: &cloister_authority::ops::KeyExport,
    second: &mut cloister_client::Client,
    b: &cloister_authority::ops::KeyExport,
) -> Result<(cloister_types::wire::KeyExported, [u8; 32]), cloister_client::ClientError> {
    let one = first.sign_body(a, "first").await.unwrap();
    let two = second.sign_body(b, "second").await.unwrap();
    first.export_key(one, two).await
}

/// An export of `a` signed twice by the same identity.
async fn export_twice(
    c: &mut cloister_client::Client,
    a: &cloister_authority::ops::KeyExport,
) -> Result<(cloister_types::wire::KeyExported, [u8; 32]), cloister_client::ClientError> {
    let one = c.sign_body(a, "first").await.unwrap();
    let two = c.sign_body(a, "again").await.unwrap();
    c.export_key(one, two).await
}
