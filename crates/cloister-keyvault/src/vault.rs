//! The unsealed vault: keys in memory, ciphertext in the store, every change audited.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use cloister_authority::ops::Restore;

use cloister_audit::{Action, AuditDraft, ChainReport, Checkpoint};
use cloister_crypto::{
    HpkeKeyPair, HpkePublicKey, KeyId, SecretBytes, SecretKey32, SigningKey, VerifyingKey,
    WrappedKey, kdf::hkdf_sha256,
};
use cloister_types::binding::secret_seal_info;
use cloister_types::{SecretPath, namespace_of};
use cloister_vault_store::{
    AuthorityWrite, DekRecord, MekRecord, RootRecord, SecretRecord, SecretSummary,
    SecretVersionInfo, StoreError,
};

use crate::authority::{Authority, Denied, RegisteredManifest};
use crate::error::{KeyvaultError, VaultError};
use crate::guard::{Guard, GuardState};
use crate::hierarchy::{Dek, Mek};
use crate::sealing::{MEASUREMENT_LEN, RecoveryKey, SealedRoot};

pub use cloister_vault_store::KeyvaultStore;

/// The TEE's sealing identity: this binary's measurement and the key the TEE derives for it.
pub struct Sealing {
    /// Measurement of the running keyvault.
    pub measurement: [u8; MEASUREMENT_LEN],
    /// Sealing key derived by the TEE for that measurement.
    pub key: SecretKey32,
}

/// How [`Vault::open`] found the vault.
#[derive(Debug)]
pub enum Opened {
    /// Unsealed existing state.
    Unsealed,
    /// Initialised a new vault; show this recovery key to the operator exactly once.
    Created(RecoveryKey),
}

/// Who keyvault records as the actor of its own events.
const ACTOR: &str = "keyvault";
/// Attempts for an optimistic write that lost a race with another writer.
const RETRIES: usize = 5;
/// Entries read per page when verifying the audit chain.
const AUDIT_PAGE: u32 = 10_000;

struct Meks {
    by_id: HashMap<String, Arc<Mek>>,
    active: String,
}

/// keyvault's unsealed state.
pub struct Vault {
    store: Arc<dyn KeyvaultStore>,
    root_id: KeyId,
    root: SecretKey32,
    meks: RwLock<Meks>,
    deks: Mutex<HashMap<(String, u32), Arc<Dek>>>,
    hpke: HpkeKeyPair,
    audit_key: SigningKey,
    last_checkpoint: Mutex<Option<Checkpoint>>,
    audit_mac: cloister_crypto::MacKey,
    authority: Authority,
    guard: Option<Guard>,
    guard_state: Mutex<Option<GuardState>>,
    untrusted_budget: crate::audit_budget::AuditBudget,
    key_rates: crate::key_rates::KeyRates,
    group_commit: crate::group_commit::GroupCommit,
    key_cache: crate::function_keys::KeyCache,
    /// Secret writes waiting for a group commit.
    put_queue: Mutex<Vec<put_batch::Pending>>,
}

mod put_batch;

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("root_id", &self.root_id.to_hex())
            .field("hpke_public_key", &self.hpke.public().to_hex())
            .finish_non_exhaustive()
    }
}

/// Whether a record written by [`Vault::write_record`] must exist before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// It must (a rotation).
    Must,
    /// It may or may not (a put).
    May,
    /// It must not (a creation).
    MustNot,
}

/// One released secret value, by the name the function sees.
pub type Released = BTreeMap<String, SecretBytes>;

fn wrapped(kek_id: &str, blob: Vec<u8>) -> Result<WrappedKey, VaultError> {
    Ok(WrappedKey {
        kek_id: KeyId::from_hex(kek_id).map_err(|_| corrupt("key id"))?,
        blob,
    })
}

fn corrupt(what: &'static str) -> VaultError {
    VaultError::Keys(KeyvaultError::Corrupt { what })
}

fn derive(root: &SecretKey32, root_id: &KeyId, purpose: &str) -> Result<SecretKey32, VaultError> {
    let info = format!("cloister/keyvault/{purpose}/v1");
    Ok(
        hkdf_sha256(root.expose(), root_id.as_bytes(), info.as_bytes())
            .map_err(KeyvaultError::from)?,
    )
}

/// Authority-row kind of the database's copy of the rollback-guard epoch.
const GUARD_KIND: &str = "guard";
const GUARD_KEY: &str = "epoch";

fn rollback(msg: String) -> VaultError {
    tracing::error!("ALARM: {msg}");
    VaultError::Denied(Denied::Rollback(msg))
}

fn guard_err(e: crate::guard::GuardError) -> VaultError {
    match e {
        crate::guard::GuardError::Tampered(p) => rollback(format!(
            "the rollback guard {p} failed authentication (altered or from another keyvault)"
        )),
        e => VaultError::Invalid(e.to_string()),
    }
}

impl Vault {
    /// Unseals the vault in `store`, initialising it (root, recovery key, first MEK) if empty.
    /// No rollback guard: see [`Vault::open_guarded`].
    pub async fn open(
        store: Arc<dyn KeyvaultStore>,
        sealing: &Sealing,
        bootstrap_admin: Option<&VerifyingKey>,
    ) -> Result<(Self, Opened), VaultError> {
        Self::open_inner(store, sealing, bootstrap_admin, None).await
    }

    /// Like [`Vault::open`], with the rollback guard at `guard` (see [`crate::guard`]): a
    /// database older than the guard refuses to open with `rollback_detected`.
    pub async fn open_guarded(
        store: Arc<dyn KeyvaultStore>,
        sealing: &Sealing,
        bootstrap_admin: Option<&VerifyingKey>,
        guard: &Path,
    ) -> Result<(Self, Opened), VaultError> {
        let (v, opened) = Self::open_inner(store, sealing, bootstrap_admin, Some(guard)).await?;
        v.check_guard().await?;
        Ok((v, opened))
    }

    /// Opens a restored database without checking the guard, to apply an admin-signed
    /// [`Vault::restore`] (nothing else should be done with it).
    pub async fn open_for_restore(
        store: Arc<dyn KeyvaultStore>,
        sealing: &Sealing,
        guard: &Path,
    ) -> Result<Self, VaultError> {
        Ok(Self::open_inner(store, sealing, None, Some(guard)).await?.0)
    }

    async fn open_inner(
        store: Arc<dyn KeyvaultStore>,
        sealing: &Sealing,
        bootstrap_admin: Option<&VerifyingKey>,
        guard: Option<&Path>,
    ) -> Result<(Self, Opened), VaultError> {
        let (root_id, root, opened) = match store.vault_root().await? {
            Some(rec) => {
                let root_id = KeyId::from_hex(&rec.root_id).map_err(|_| corrupt("root id"))?;
                let mut measurement = [0u8; MEASUREMENT_LEN];
                hex::decode_to_slice(&rec.measurement, &mut measurement)
                    .map_err(|_| corrupt("root measurement"))?;
                let sealed = SealedRoot {
                    root_id,
                    measurement,
                    blob: rec.sealed,
                };
                let root = sealed.unseal(&sealing.measurement, &sealing.key)?;
                store.set_audit_mac(audit_mac_fn(&root, &root_id)?);
                (root_id, root, Opened::Unsealed)
            }
            None => {
                let root_id = KeyId::random().map_err(KeyvaultError::from)?;
                let root = SecretKey32::random().map_err(KeyvaultError::from)?;
                let recovery = RecoveryKey::generate()?;
                let sealed = SealedRoot::seal(root_id, &root, sealing.measurement, &sealing.key)?;
                let mek = Mek::generate()?;
                let w = mek.wrap(&root, root_id)?;
                let rec = RootRecord {
                    root_id: root_id.to_hex(),
                    measurement: hex::encode(sealing.measurement),
                    sealed: sealed.blob,
                    recovery: recovery.wrap_root(root_id, &root)?,
                    created_at: String::new(),
                };
                let mek_rec = MekRecord {
                    id: mek.id.to_hex(),
                    kek_id: w.kek_id.to_hex(),
                    wrapped: w.blob,
                    active: true,
                    created_at: String::new(),
                };
                let audit = AuditDraft::new(ACTOR, Action::VaultInit, "root")
                    .detail("measurement", hex::encode(sealing.measurement));
                store.set_audit_mac(audit_mac_fn(&root, &root_id)?);
                match store.vault_init(rec, mek_rec, audit).await {
                    Ok(()) => (root_id, root, Opened::Created(recovery)),
                    // Another keyvault initialised it first: unseal what it stored.
                    Err(StoreError::Conflict(_)) => {
                        return Box::pin(Self::open_inner(store, sealing, None, guard)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Self::assemble(store, root_id, root, opened, bootstrap_admin, guard).await
    }

    /// The vault around an unsealed (or recovered) root: derived keys, registry, MEKs.
    async fn assemble(
        store: Arc<dyn KeyvaultStore>,
        root_id: KeyId,
        root: SecretKey32,
        opened: Opened,
        bootstrap_admin: Option<&VerifyingKey>,
        guard: Option<&Path>,
    ) -> Result<(Self, Opened), VaultError> {
        let hpke = HpkeKeyPair::derive(derive(&root, &root_id, "hpke-secret-sealing")?.expose())
            .map_err(KeyvaultError::from)?;
        let audit_key = SigningKey::from_seed(derive(&root, &root_id, "audit-signing")?)
            .map_err(KeyvaultError::from)?;
        let authority = Authority::new(
            store.clone(),
            cloister_crypto::MacKey::new(&derive(&root, &root_id, "authority-mac")?),
            audit_key.verifying_key().to_string(),
        );
        let audit_mac = cloister_crypto::MacKey::new(&derive(&root, &root_id, "audit-mac")?);
        let guard = match guard {
            Some(p) => Some(Guard::new(
                p,
                cloister_crypto::MacKey::new(&derive(&root, &root_id, "rollback-guard")?),
            )),
            None => None,
        };
        let vault = Self {
            store,
            root_id,
            root,
            meks: RwLock::new(Meks {
                by_id: HashMap::new(),
                active: String::new(),
            }),
            deks: Mutex::new(HashMap::new()),
            hpke,
            audit_key,
            last_checkpoint: Mutex::new(None),
            audit_mac,
            authority,
            guard,
            guard_state: Mutex::new(None),
            untrusted_budget: crate::audit_budget::AuditBudget::default(),
            // A keyvault over an existing store (a restart) counts every rate from empty.
            group_commit: crate::group_commit::GroupCommit::default(),
            key_cache: crate::function_keys::KeyCache::default(),
            put_queue: Mutex::new(Vec::new()),
            key_rates: if matches!(opened, Opened::Created(_)) {
                crate::key_rates::KeyRates::default()
            } else {
                crate::key_rates::KeyRates::emptied_at(std::time::Instant::now())
            },
        };
        vault.authority.load_registry().await?;
        vault.authority.load_nonces().await?;
        if let (Opened::Created(_), Some(admin)) = (&opened, bootstrap_admin) {
            vault
                .authority
                .bootstrap_admin(admin, "bootstrap admin")
                .await?;
        }
        vault.reload_meks().await?;
        // Only checkpoints keyvault signed count (a forged row is ignored, and reported by
        // verification).
        let audit_public = vault.audit_public();
        let last = vault
            .store
            .audit_checkpoints()
            .await?
            .into_iter()
            .filter(|c| c.is_signed_by(&audit_public))
            .max_by_key(|c| c.seq);
        *lock(&vault.last_checkpoint) = last;
        Ok((vault, opened))
    }

    /// The database's copy of the guard epoch (MAC-verified), with its stored bytes.
    async fn guard_marker(&self) -> Result<Option<(u64, Vec<u8>)>, VaultError> {
        let Some(bytes) = self.authority.load(GUARD_KIND, GUARD_KEY).await? else {
            return Ok(None);
        };
        let epoch: u64 = Authority::decode(GUARD_KIND, GUARD_KEY, &bytes)?;
        Ok(Some((epoch, bytes)))
    }

    async fn write_guard_marker(
        &self,
        epoch: u64,
        expect: Option<Vec<u8>>,
        audit: Option<AuditDraft>,
    ) -> Result<(), VaultError> {
        let row = self
            .authority
            .row(GUARD_KIND, GUARD_KEY, Authority::encode(&epoch)?);
        self.store
            .authority_write(vec![AuthorityWrite { row, expect }], audit, None)
            .await?;
        Ok(())
    }

    async fn head(&self) -> Result<(u64, String), VaultError> {
        Ok(self
            .store
            .audit_head()
            .await?
            .unwrap_or_else(|| (0, hex::encode(cloister_audit::GENESIS_HASH))))
    }

    /// Checks the database against the rollback guard at start (see [`crate::guard`]).
    async fn check_guard(&self) -> Result<(), VaultError> {
        let Some(g) = &self.guard else {
            return Ok(());
        };
        let file = g.load().map_err(guard_err)?;
        let marker = self.guard_marker().await?;
        let restore_hint =
            "if this database was restored on purpose, an admin runs `cloister keyvault restore`";
        let state = match (marker, file) {
            (None, None) => {
                // First start with a guard: this database is the baseline of epoch 1.
                let (seq, hash) = self.head().await?;
                let st = GuardState {
                    epoch: 1,
                    seq,
                    hash,
                    admins: self.admin_keys(),
                };
                self.write_guard_marker(1, None, None).await?;
                g.save(&st).map_err(guard_err)?;
                st
            }
            (Some((e, _)), None) => {
                return Err(rollback(format!(
                    "the database records rollback-guard epoch {e} but the guard file is missing \
                     (deleted, or this database comes from elsewhere); {restore_hint}"
                )));
            }
            (None, Some(st)) => {
                return Err(rollback(format!(
                    "the database predates keyvault's rollback guard (epoch {}, entry {}): it is an \
                     older copy; {restore_hint}",
                    st.epoch, st.seq
                )));
            }
            (Some((e, _)), Some(st)) if e != st.epoch => {
                return Err(rollback(format!(
                    "the database is from anti-rollback epoch {e}, keyvault is at epoch {}; {restore_hint}",
                    st.epoch
                )));
            }
            (Some(_), Some(st)) => {
                if st.seq > 0 {
                    let at = self.store.audit_list(st.seq - 1, 1).await?;
                    let found = at.first().filter(|e| e.seq == st.seq);
                    if found.is_none_or(|e| e.hash != st.hash) {
                        let (head, _) = self.head().await?;
                        return Err(rollback(format!(
                            "the database's audit chain (head {head}) does not contain entry {} that \
                             keyvault checkpointed: it is an older copy, or was cut or rewritten; {restore_hint}",
                            st.seq
                        )));
                    }
                }
                st
            }
        };
        self.check_authority_rows().await?;
        *lock(&self.guard_state) = Some(state);
        Ok(())
    }

    /// Replays the audit chain (links, hashes and keyvault's MACs checked) for the rows each
    /// entry records (`details.rows`, see `cloister_vault_store::authority::record_rows`) and
    /// refuses an authority row that is not the latest value keyvault wrote (an older,
    /// genuinely MACed copy put back) or that keyvault wrote and is gone.
    async fn check_authority_rows(&self) -> Result<(), VaultError> {
        use sha2::Digest;
        let entries = self.audit_entries(0).await?;
        let mut prev = hex::encode(cloister_audit::GENESIS_HASH);
        let mut expected: HashMap<(String, String), String> = HashMap::new();
        for e in &entries {
            // Events the gateway reports never carry keyvault's row records.
            let reported = cloister_audit::Action::gateway_reported(&e.action).is_some();
            let details: Option<serde_json::Value> = (!reported && e.details.contains("\"rows\""))
                .then(|| serde_json::from_str(&e.details).ok())
                .flatten();
            let rows = details
                .as_ref()
                .and_then(|d| d.get("rows"))
                .and_then(|r| r.as_array());
            let mac_needed = rows.is_some() || !e.mac.is_empty();
            if e.prev_hash != prev
                || hex::encode(e.compute_hash()) != e.hash
                || (mac_needed && !self.entry_mac_ok(&e.hash, &e.mac))
            {
                return Err(rollback(format!(
                    "audit entry {} is not linked to the one before it or was not written by \
                     keyvault; the database was altered",
                    e.seq
                )));
            }
            prev.clone_from(&e.hash);
            for r in rows.into_iter().flatten() {
                if let Some([k, key, d]) = r.as_array().map(Vec::as_slice)
                    && let (Some(k), Some(key), Some(d)) = (k.as_str(), key.as_str(), d.as_str())
                {
                    expected.insert((k.to_owned(), key.to_owned()), d.to_owned());
                }
            }
        }
        for kind in [
            "identity", "function", "name", "manifest", "fresh", "policy",
        ] {
            let mut present = std::collections::HashSet::new();
            for row in self.store.authority_list(kind).await? {
                let digest = hex::encode(sha2::Sha256::digest(&row.value));
                if let Some(d) = expected.get(&(kind.to_owned(), row.key.clone()))
                    && *d != digest
                {
                    return Err(rollback(format!(
                        "the {kind} row {:?} is not the value keyvault last wrote (an older copy \
                         was put back in the database)",
                        row.key
                    )));
                }
                present.insert(row.key);
            }
            if let Some(((_, key), _)) = expected
                .iter()
                .find(|((k, key), _)| k == kind && !present.contains(key))
            {
                return Err(rollback(format!(
                    "the {kind} row {key:?} that keyvault wrote is missing from the database"
                )));
            }
        }
        Ok(())
    }

    /// Public keys (hex) of the live admins, as the guard records them.
    fn admin_keys(&self) -> Vec<String> {
        let admins = self.authority.admins();
        let mut keys: Vec<String> = self
            .authority
            .registry()
            .into_iter()
            .filter(|(id, _)| admins.contains(&id.to_string()))
            .map(|(_, r)| r.public_key)
            .collect();
        keys.sort();
        keys
    }

    /// keyvault's anti-rollback epoch (0 without a guard).
    pub fn epoch(&self) -> u64 {
        lock(&self.guard_state).as_ref().map_or(0, |s| s.epoch)
    }

    /// The current head of the audit chain (sequence number, hash), for a restore request.
    pub async fn audit_head(&self) -> Result<(u64, String), VaultError> {
        self.head().await
    }

    /// The epoch a restore continues from: the higher of the guard's and the database's (a
    /// damaged guard file must not block a restore), with both records.
    async fn restore_base(
        &self,
        g: &Guard,
    ) -> Result<(u64, Option<GuardState>, Option<(u64, Vec<u8>)>), VaultError> {
        let file = g.load().ok().flatten();
        let marker = self.guard_marker().await?;
        let current = file
            .as_ref()
            .map_or(0, |s| s.epoch)
            .max(marker.as_ref().map_or(0, |m| m.0));
        Ok((current, file, marker))
    }

    /// The epoch a restore of this database must name, minus one (see [`Vault::restore`]).
    pub async fn restore_base_epoch(&self) -> Result<u64, VaultError> {
        match &self.guard {
            Some(g) => Ok(self.restore_base(g).await?.0),
            None => Ok(0),
        }
    }

    /// Accepts this (restored) database as the baseline of the next anti-rollback epoch, on
    /// an admin-signed [`Restore`] naming that epoch and the chain's current head. Audited.
    pub async fn restore(&self, signed: &[u8]) -> Result<GuardState, VaultError> {
        let g = self
            .guard
            .as_ref()
            .ok_or_else(|| VaultError::Invalid("keyvault runs without a rollback guard".into()))?;
        let (current, file, marker) = self.restore_base(g).await?;
        // The restored database may hold older key versions than this process saw.
        self.key_cache.clear();
        // Who may restore is decided by the deployment being replaced (the admins the guard
        // recorded), not by the copy's own registry; without a readable guard, by the copy's.
        let v = cloister_authority::request::verify::<Restore>(
            signed,
            self.platform(),
            cloister_authority::request::unix_now(),
            crate::authority::MAX_REQUEST_TTL_SECS,
        )
        .map_err(Denied::from)?;
        let signer_key = v.signer().to_string();
        let allowed = match file.as_ref().filter(|f| !f.admins.is_empty()) {
            Some(f) => f.admins.contains(&signer_key),
            None => self.admin_keys().contains(&signer_key),
        };
        if !allowed {
            return Err(Denied::NotAdmin(v.signer_id().clone()).into());
        }
        let r = v.body();
        if r.epoch != current + 1 {
            return Err(VaultError::Invalid(format!(
                "a restore starts epoch {}, not {}",
                current + 1,
                r.epoch
            )));
        }
        let (seq, hash) = self.head().await?;
        if r.audit_head_seq != seq || r.audit_head_hash != hash {
            return Err(VaultError::Invalid(format!(
                "the restored chain ends at entry {seq} ({hash}); the signed request names {} ({})",
                r.audit_head_seq, r.audit_head_hash
            )));
        }
        let audit = AuditDraft::new(
            v.signer_id().to_string(),
            Action::KeyvaultRestore,
            "database",
        )
        .detail("epoch", r.epoch)
        .detail("restored_head_seq", seq)
        .detail("restored_head_hash", hash)
        .detail("previous_epoch", current)
        .detail("previous_checkpoint_seq", file.as_ref().map(|s| s.seq));
        self.write_guard_marker(r.epoch, marker.map(|m| m.1), Some(audit))
            .await?;
        let (seq, hash) = self.head().await?;
        let st = GuardState {
            epoch: r.epoch,
            seq,
            hash,
            admins: self.admin_keys(),
        };
        g.save(&st).map_err(guard_err)?;
        *lock(&self.guard_state) = Some(st.clone());
        tracing::warn!(
            epoch = st.epoch,
            "keyvault restored: new anti-rollback epoch"
        );
        Ok(st)
    }

    /// The rates counted for manifests' key limits.
    pub(crate) fn key_rates(&self) -> &crate::key_rates::KeyRates {
        &self.key_rates
    }

    /// Keys keyvault read or wrote recently, decrypted.
    pub(crate) fn key_cache(&self) -> &crate::function_keys::KeyCache {
        &self.key_cache
    }

    /// The identity registry, function records and manifests.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// keyvault's instance key (hex): what signed requests bind as their platform.
    pub fn platform(&self) -> &str {
        self.authority.platform()
    }

    /// The fleet key generation in force: the executor policy's version, so every policy
    /// change (a removed build above all) replaces every fleet key (see [`crate::fleet`]).
    pub fn fleet_generation(&self) -> u64 {
        self.authority.executor_policy_version()
    }

    /// The fleet key pair of `epoch` in `generation`: only for attested executors.
    pub fn fleet_key(&self, generation: u64, epoch: u64) -> Result<HpkeKeyPair, VaultError> {
        let seed = derive(
            &self.root,
            &self.root_id,
            &format!("fleet-hpke/{generation}/{epoch}"),
        )?;
        Ok(HpkeKeyPair::derive(seed.expose()).map_err(KeyvaultError::from)?)
    }

    /// The code key of function `function_id`: its confidential code is stored under it
    /// (derived from the root, so it outlives fleet-key rotation and is the same on every
    /// keyvault of the platform); released only to attested executors with a manifest.
    pub fn code_key(&self, function_id: &str) -> Result<SecretKey32, VaultError> {
        derive(
            &self.root,
            &self.root_id,
            &format!("code-key/{function_id}"),
        )
    }

    /// Opens confidential code sealed by its deployer to a fleet key valid at `now` for the
    /// manifest with digest `manifest_digest` (the HPKE info binds it); the plaintext must
    /// hash to that manifest's `code_hash`.
    pub fn open_sealed_code(
        &self,
        sealed: &cloister_rpc::keyvault::SealedCode,
        manifest_digest: &str,
        code_hash: &str,
        now: u64,
    ) -> Result<SecretBytes, VaultError> {
        let invalid = |m: &str| VaultError::Invalid(format!("confidential code: {m}"));
        if sealed.suite != cloister_types::sealed::SUITE_ID {
            return Err(invalid("unsupported suite"));
        }
        let generation = self.fleet_generation();
        let info =
            cloister_types::sealed::code_info(&sealed.suite, &sealed.key_id, manifest_digest);
        for epoch in crate::fleet::epochs_valid_at(now) {
            let pair = self.fleet_key(generation, epoch)?;
            if hex::encode(crate::fleet::public_of(&pair, epoch).key_id) != sealed.key_id {
                continue;
            }
            let code = pair
                .open(&info, b"", &sealed.ciphertext)
                .map_err(|_| invalid("does not open (altered, or sealed for another manifest)"))?;
            let text = std::str::from_utf8(code.expose()).map_err(|_| invalid("not UTF-8"))?;
            if cloister_types::code_hash(text) != code_hash {
                return Err(invalid(
                    "the code does not hash to the manifest's code hash",
                ));
            }
            return Ok(code);
        }
        Err(invalid(
            "sealed to a fleet key that is not valid now: fetch the bundle again",
        ))
    }

    /// Seals confidential code under `function_id`'s code key for storage.
    pub fn store_code(
        &self,
        function_id: &str,
        version: u32,
        code_hash: &str,
        code: &SecretBytes,
    ) -> Result<Vec<u8>, VaultError> {
        let key = self.code_key(function_id)?;
        let aad = cloister_crypto::Aad::from_encoded(cloister_types::sealed::stored_code_aad(
            function_id,
            version,
            code_hash,
        ));
        Ok(cloister_crypto::aead::seal(&key, &aad, code.expose()).map_err(KeyvaultError::from)?)
    }

    /// The fleet keys valid at `now` (Unix seconds) in the generation in force, newest first.
    pub fn fleet_public(&self, now: u64) -> Result<Vec<crate::fleet::FleetPublic>, VaultError> {
        let generation = self.fleet_generation();
        crate::fleet::epochs_valid_at(now)
            .into_iter()
            .map(|e| Ok(crate::fleet::public_of(&self.fleet_key(generation, e)?, e)))
            .collect()
    }

    /// The key clients seal secret values to.
    pub fn hpke_public(&self) -> HpkePublicKey {
        self.hpke.public()
    }

    /// The key audit checkpoints are signed with.
    pub fn audit_public(&self) -> VerifyingKey {
        self.audit_key.verifying_key()
    }

    async fn reload_meks(&self) -> Result<(), VaultError> {
        let mut by_id = HashMap::new();
        let mut active = String::new();
        for rec in self.store.vault_meks().await? {
            let id = KeyId::from_hex(&rec.id).map_err(|_| corrupt("MEK id"))?;
            let mek = Mek::unwrap(&self.root, &wrapped(&rec.kek_id, rec.wrapped)?, id)?;
            if rec.active {
                active.clone_from(&rec.id);
            }
            by_id.insert(rec.id, Arc::new(mek));
        }
        if active.is_empty() {
            return Err(corrupt("MEK (none is active)"));
        }
        *write(&self.meks) = Meks { by_id, active };
        Ok(())
    }

    async fn mek(&self, id: &str) -> Result<Arc<Mek>, VaultError> {
        if let Some(m) = read(&self.meks).by_id.get(id) {
            return Ok(m.clone());
        }
        self.reload_meks().await?;
        read(&self.meks)
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| corrupt("MEK (unknown id)"))
    }

    fn active_mek(&self) -> Result<Arc<Mek>, VaultError> {
        let m = read(&self.meks);
        m.by_id
            .get(&m.active)
            .cloned()
            .ok_or_else(|| corrupt("MEK (active one missing)"))
    }

    async fn dek(&self, rec: &DekRecord) -> Result<Arc<Dek>, VaultError> {
        let key = (rec.namespace.clone(), rec.version);
        if let Some(d) = lock(&self.deks).get(&key)
            && d.id.to_hex() == rec.id
        {
            return Ok(d.clone());
        }
        let mek = self.mek(&rec.mek_id).await?;
        let id = KeyId::from_hex(&rec.id).map_err(|_| corrupt("DEK id"))?;
        let w = wrapped(&rec.mek_id, rec.wrapped.clone())?;
        let dek = Arc::new(Dek::unwrap(&mek, &w, id, &rec.namespace, rec.version)?);
        lock(&self.deks).insert(key, dek.clone());
        Ok(dek)
    }

    /// The namespace's current DEK, creating version 1 on first use.
    async fn current_dek(&self, namespace: &str) -> Result<Arc<Dek>, VaultError> {
        for _ in 0..RETRIES {
            let deks = self.store.vault_deks(Some(namespace.to_owned())).await?;
            if let Some(rec) = deks.last() {
                return self.dek(rec).await;
            }
            let dek = Dek::generate(namespace, 1)?;
            let mek = self.active_mek()?;
            let w = dek.wrap(&mek)?;
            let rec = DekRecord {
                namespace: namespace.to_owned(),
                version: 1,
                id: dek.id.to_hex(),
                mek_id: mek.id.to_hex(),
                wrapped: w.blob,
                created_at: String::new(),
            };
            match self.store.vault_add_dek(rec).await {
                Ok(()) => {
                    let dek = Arc::new(dek);
                    lock(&self.deks).insert((namespace.to_owned(), 1), dek.clone());
                    return Ok(dek);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(VaultError::Busy)
    }

    /// Opens bytes a client sealed to keyvault's HPKE key under `info`.
    pub(crate) fn hpke_open(
        &self,
        info: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes, cloister_crypto::CryptoError> {
        self.hpke.open(info, b"", sealed)
    }

    /// Opens a value the client sealed for `path` (HPKE info binds the path).
    pub fn open_sealed(&self, path: &SecretPath, sealed: &[u8]) -> Result<SecretBytes, VaultError> {
        self.hpke
            .open(&secret_seal_info(&path.to_string()), b"", sealed)
            .map_err(|_| VaultError::BadSealedValue)
    }

    /// Stores `value` as the next version of `path`; with `rotate`, the secret must exist.
    pub async fn put(
        &self,
        path: &SecretPath,
        value: &[u8],
        rotate: bool,
        actor: &str,
    ) -> Result<(u64, String), VaultError> {
        let max = cloister_types::limits::MAX_SECRET_VALUE_BYTES;
        if value.len() > max {
            return Err(VaultError::TooLarge {
                bytes: value.len(),
                max,
            });
        }
        if value.is_empty() {
            return Err(VaultError::Invalid("secret values cannot be empty".into()));
        }
        let action = if rotate {
            Action::SecretRotate
        } else {
            Action::SecretPut
        };
        let existing = if rotate {
            Existing::Must
        } else {
            Existing::May
        };
        let p = path.to_string();
        let (actor, subject) = (actor.to_owned(), p.clone());
        let audit = move |version: u64, dek_version: u32| {
            AuditDraft::new(actor.as_str(), action, subject.as_str())
                .detail("version", version)
                .detail("dek_version", dek_version)
        };
        self.write_record(&p, &path.namespace(), value, existing, audit)
            .await
    }

    /// Stores `value` as the next version of the record at `p` in `namespace` (encrypted
    /// under the namespace's DEK with AAD = path + version, its freshness marked, `audit`'s
    /// entry written in the same transaction); `existing` says whether the record must, may
    /// or must not exist already. Returns the version and its time. Writes arriving together
    /// share one commit (`put_batch`).
    pub(crate) async fn write_record(
        &self,
        p: &str,
        namespace: &str,
        value: &[u8],
        existing: Existing,
        audit: impl Fn(u64, u32) -> AuditDraft + Send + Sync + 'static,
    ) -> Result<(u64, String), VaultError> {
        let (done, _) = tokio::sync::oneshot::channel();
        self.write_queued(put_batch::Pending {
            id: 0,
            path: p.to_owned(),
            namespace: namespace.to_owned(),
            value: SecretBytes::new(value.to_vec()),
            existing,
            audit: Box::new(audit),
            done,
        })
        .await
    }

    /// One write in a transaction of its own, retried when it loses a race (the caller holds
    /// keyvault's write lock: mark updates are serialised in this process, so a lost
    /// compare-and-set on keyvault's own rows means someone else wrote them — they are never
    /// reloaded from the database).
    async fn write_alone(&self, w: &put_batch::Pending) -> Result<(u64, String), VaultError> {
        let (p, namespace, existing) = (&w.path, &w.namespace, w.existing);
        for _ in 0..RETRIES {
            let store_next = self.store.vault_next_version(p.clone()).await?;
            match existing {
                Existing::Must if store_next == 1 => return Err(VaultError::NotFound(p.clone())),
                Existing::MustNot if store_next != 1 => {
                    return Err(VaultError::KeyExists(p.clone()));
                }
                _ => {}
            }
            let version = self
                .authority
                .next_version(namespace, p, store_next)
                .await?;
            // keyvault's own record counts too: a database hiding an existing record does not
            // make it new.
            if existing == Existing::MustNot && version != 1 {
                return Err(VaultError::KeyExists(p.clone()));
            }
            let mark = self
                .authority
                .mark(namespace, p, crate::freshness::Mark::written(version))
                .await?;
            let dek = self.current_dek(namespace).await?;
            let ciphertext = dek.encrypt_value(p, version, w.value.expose())?;
            let audit = (w.audit)(version, dek.version);
            let rec = SecretRecord {
                path: p.clone(),
                version,
                namespace: namespace.clone(),
                dek_version: dek.version,
                ciphertext,
                created_at: String::new(),
            };
            // Until the store answers, the mark's outcome is in doubt (a cancelled caller, a
            // connection lost during the commit): the next use settles it.
            self.authority.marking(&[&mark]);
            match self
                .store
                .vault_put_secret(rec, audit, vec![mark.write.clone()])
                .await
            {
                Ok(at) => {
                    self.authority.marked(mark);
                    return Ok((version, at));
                }
                Err(StoreError::Conflict(_)) => {
                    self.authority.not_marked([namespace.as_str()]);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::error!(namespace = %namespace, "ALARM: keyvault's freshness row keeps changing in the database; write refused");
        Err(VaultError::Busy)
    }

    /// The store keyvault writes its records to.
    pub(crate) fn store(&self) -> &Arc<dyn KeyvaultStore> {
        &self.store
    }

    /// The latest version of the record at `p` in `namespace`, decrypted, after keyvault's
    /// freshness check (a database holding an older version than keyvault wrote is caught);
    /// `None` when there is none.
    pub(crate) async fn read_record(
        &self,
        p: &str,
        namespace: &str,
    ) -> Result<Option<(u64, SecretBytes)>, VaultError> {
        let paths = vec![p.to_owned()];
        let records = self.store.vault_latest(paths.clone()).await?;
        if let Err(d) = self
            .authority
            .check_fresh(namespace, &paths, &records)
            .await
        {
            return Err(self.refused_read(namespace, p, d).await);
        }
        let Some(rec) = records.into_iter().find(|r| r.path == p) else {
            return Ok(None);
        };
        let deks = self.store.vault_deks(Some(namespace.to_owned())).await?;
        let value = self.decrypt_record(&rec, &deks).await?;
        Ok(Some((rec.version, value)))
    }

    /// Audits a read of record `p` refused as `d` (within the budget for entries untrusted
    /// parties cause) and returns the error for it.
    async fn refused_read(
        &self,
        namespace: &str,
        p: &str,
        d: crate::authority::Denied,
    ) -> VaultError {
        let audit = AuditDraft::new("keyvault", Action::AuthorityRefusal, namespace)
            .detail("operation", "read")
            .detail("path", p)
            .detail("code", d.code().as_str())
            .detail("reason", d.to_string());
        if let Err(e) = self.audit_untrusted(audit).await {
            return e;
        }
        d.into()
    }

    /// Every stored version of record `p`, oldest first, decrypted; the newest is checked
    /// fresh (a database holding older state than keyvault wrote is caught) as by
    /// [`Vault::read_record`]. Empty if there is none.
    pub(crate) async fn read_record_versions(
        &self,
        p: &str,
        namespace: &str,
    ) -> Result<Vec<(u64, SecretBytes)>, VaultError> {
        let records = self.store.vault_records(p.to_owned()).await?;
        // Versions are numbered 1, 2, … and never deleted one by one: a gap is a database
        // hiding one (which could make keyvault call a genuine old signature invalid).
        if records
            .iter()
            .enumerate()
            .any(|(i, r)| r.version != i as u64 + 1)
        {
            tracing::error!(
                path = p,
                "ALARM: a record's older versions are missing from the database"
            );
            let d = crate::authority::Denied::Tampered(format!("the versions of {p}"));
            return Err(self.refused_read(namespace, p, d).await);
        }
        let newest: Vec<_> = records.last().cloned().into_iter().collect();
        if let Err(d) = self
            .authority
            .check_fresh(namespace, &[p.to_owned()], &newest)
            .await
        {
            return Err(self.refused_read(namespace, p, d).await);
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let deks = self.store.vault_deks(Some(namespace.to_owned())).await?;
        let mut out = Vec::with_capacity(records.len());
        for rec in &records {
            out.push((rec.version, self.decrypt_record(rec, &deks).await?));
        }
        Ok(out)
    }

    /// The value of `rec`, under its DEK version among the namespace's `deks`.
    async fn decrypt_record(
        &self,
        rec: &SecretRecord,
        deks: &[DekRecord],
    ) -> Result<SecretBytes, VaultError> {
        let dek_rec = deks
            .iter()
            .find(|d| d.version == rec.dek_version)
            .ok_or_else(|| corrupt("DEK (missing version)"))?;
        let dek = self.dek(dek_rec).await?;
        Ok(dek.decrypt_value(&rec.path, rec.version, &rec.ciphertext)?)
    }

    /// Releases the latest values of the secrets `manifest` declares (and nothing else) to the
    /// attested executor `executor`; a missing one fails the whole release.
    pub async fn release(
        &self,
        manifest: &RegisteredManifest,
        execution_id: &str,
        executor: &str,
    ) -> Result<(u64, Released), VaultError> {
        let function_id = manifest.function_id.as_str();
        let environment = &manifest.environment;
        let declared = &manifest.secrets;
        let namespace = namespace_of(function_id);
        // The epoch is read first: a change racing with this read makes the cache look older
        // than it is (an extra refetch), never newer.
        let epoch = self.store.vault_epoch(namespace.clone()).await?;
        let mut out = BTreeMap::new();
        if declared.is_empty() {
            return Ok((epoch, out));
        }
        let mut paths = Vec::with_capacity(declared.len());
        for r in declared {
            let p = SecretPath::for_function(function_id, environment, r)
                .map_err(|e| VaultError::Invalid(e.to_string()))?;
            paths.push(p.to_string());
        }
        let records = self.store.vault_latest(paths.clone()).await?;
        if let Err(d) = self
            .authority
            .check_fresh(&namespace, &paths, &records)
            .await
        {
            let audit = AuditDraft::new(executor, Action::AuthorityRefusal, namespace.clone())
                .detail("operation", "release")
                .detail("code", d.code().as_str())
                .detail("reason", d.to_string())
                .detail("execution_id", execution_id);
            self.audit_untrusted(audit).await?;
            return Err(d.into());
        }
        let deks = self.store.vault_deks(Some(namespace.clone())).await?;
        for (r, p) in declared.iter().zip(&paths) {
            let rec =
                records
                    .iter()
                    .find(|rec| &rec.path == p)
                    .ok_or_else(|| VaultError::Missing {
                        name: r.to_string(),
                        environment: environment.to_string(),
                    })?;
            let value = self.decrypt_record(rec, &deks).await?;
            out.insert(r.name().to_owned(), value);
        }
        // What one function's declared secrets may hold together (they travel in one channel
        // message and one worker frame): refused, not released, and said so in the log.
        let max = cloister_types::limits::MAX_RELEASED_SECRET_BYTES;
        let total: usize = out.iter().map(|(k, v)| k.len() + v.expose().len()).sum();
        if total > max {
            let audit = AuditDraft::new(executor, Action::AuthorityRefusal, namespace.clone())
                .detail("operation", "release")
                .detail("code", cloister_types::ErrorCode::PayloadTooLarge.as_str())
                .detail("reason", "declared secrets over the release limit")
                .detail("execution_id", execution_id);
            self.audit_untrusted(audit).await?;
            return Err(VaultError::ReleaseTooLarge { max });
        }
        let names: Vec<String> = declared.iter().map(ToString::to_string).collect();
        let audit = AuditDraft::new(executor, Action::SecretRelease, namespace)
            .detail("environment", environment.as_str())
            .detail("version", manifest.version)
            .detail("manifest_digest", manifest.digest.clone())
            .detail("names", names)
            .detail("execution_id", execution_id);
        self.store.audit_append(audit).await?;
        Ok((epoch, out))
    }

    /// Deletes a secret with every version.
    pub async fn delete(&self, path: &SecretPath, actor: &str) -> Result<bool, VaultError> {
        let p = path.to_string();
        let namespace = path.namespace();
        let _writes = self.authority.write_lock().await;
        for _ in 0..RETRIES {
            let versions = self.store.vault_versions(p.clone()).await?;
            let (_, marks) = self.authority.marks(&namespace).await?;
            let Some(last) = versions.last().map(|v| v.version) else {
                // No rows: fine if keyvault never wrote it or deleted it; otherwise the rows
                // are being hidden from this delete.
                return match marks.get(&p) {
                    Some(m) if !m.deleted => Err(crate::authority::Denied::Rollback(format!(
                        "{p}: keyvault wrote version {} but the database shows no rows",
                        m.version
                    ))
                    .into()),
                    _ => Ok(false),
                };
            };
            let version = last.max(marks.get(&p).map(|m| m.version).unwrap_or(0));
            let mark = self
                .authority
                .mark(
                    &namespace,
                    &p,
                    crate::freshness::Mark::deleted_after(version),
                )
                .await?;
            let audit = AuditDraft::new(actor, Action::SecretDelete, p.clone())
                .detail("after_version", version);
            self.authority.marking(&[&mark]);
            match self
                .store
                .vault_delete(p.clone(), audit, vec![mark.write.clone()])
                .await
            {
                Ok(deleted) => {
                    if deleted {
                        self.authority.marked(mark);
                    } else {
                        self.authority.not_marked([namespace.as_str()]);
                    }
                    return Ok(deleted);
                }
                Err(StoreError::Conflict(_)) => {
                    self.authority.not_marked([namespace.as_str()]);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::error!(namespace = %namespace, "ALARM: keyvault's freshness row keeps changing in the database; write refused");
        Err(VaultError::Busy)
    }

    /// Metadata of secrets under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<SecretSummary>, VaultError> {
        // Only secrets: the namespace's other records (its keys) are not secret paths.
        let mut all = self.store.vault_list(prefix.to_owned()).await?;
        all.retain(|s| SecretPath::parse(&s.path).is_ok());
        Ok(all)
    }

    /// Metadata of every version of `path`.
    pub async fn versions(&self, path: &SecretPath) -> Result<Vec<SecretVersionInfo>, VaultError> {
        let v = self.store.vault_versions(path.to_string()).await?;
        if v.is_empty() {
            return Err(VaultError::NotFound(path.to_string()));
        }
        Ok(v)
    }

    /// A new DEK version for the function's namespace; re-encrypts every value under it.
    /// Returns (namespace, new version, values re-encrypted).
    pub async fn rotate_dek(
        &self,
        function_id: &str,
        actor: &str,
    ) -> Result<(String, u32, u64), VaultError> {
        let namespace = namespace_of(function_id);
        for _ in 0..RETRIES {
            let deks = self.store.vault_deks(Some(namespace.clone())).await?;
            let next = deks.last().map(|d| d.version + 1).unwrap_or(1);
            let dek = Dek::generate(&namespace, next)?;
            let mek = self.active_mek()?;
            let w = dek.wrap(&mek)?;
            let secrets = self
                .store
                .vault_namespace_secrets(namespace.clone())
                .await?;
            let mut reencrypted = Vec::with_capacity(secrets.len());
            for s in secrets {
                let old_rec = deks
                    .iter()
                    .find(|d| d.version == s.dek_version)
                    .ok_or_else(|| corrupt("DEK (missing version)"))?;
                let old = self.dek(old_rec).await?;
                let value = old.decrypt_value(&s.path, s.version, &s.ciphertext)?;
                let ciphertext = dek.encrypt_value(&s.path, s.version, value.expose())?;
                reencrypted.push(SecretRecord {
                    ciphertext,
                    dek_version: next,
                    ..s
                });
            }
            let count = reencrypted.len() as u64;
            let rec = DekRecord {
                namespace: namespace.clone(),
                version: next,
                id: dek.id.to_hex(),
                mek_id: mek.id.to_hex(),
                wrapped: w.blob,
                created_at: String::new(),
            };
            let audit = AuditDraft::new(actor, Action::DekRotate, namespace.clone())
                .detail("dek_version", next)
                .detail("reencrypted", count);
            match self.store.vault_rotate_dek(rec, reencrypted, audit).await {
                Ok(()) => {
                    lock(&self.deks).insert((namespace.clone(), next), Arc::new(dek));
                    return Ok((namespace, next, count));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(VaultError::Busy)
    }

    /// A new MEK; re-wraps every DEK under it. Returns (MEK id, DEKs re-wrapped).
    pub async fn rotate_mek(&self, actor: &str) -> Result<(String, u64), VaultError> {
        for _ in 0..RETRIES {
            let mek = Mek::generate()?;
            let w = mek.wrap(&self.root, self.root_id)?;
            let deks = self.store.vault_deks(None).await?;
            let mut rewrapped = Vec::with_capacity(deks.len());
            for rec in deks {
                let dek = self.dek(&rec).await?;
                let nw = dek.wrap(&mek)?;
                rewrapped.push(DekRecord {
                    mek_id: mek.id.to_hex(),
                    wrapped: nw.blob,
                    ..rec
                });
            }
            let count = rewrapped.len() as u64;
            let rec = MekRecord {
                id: mek.id.to_hex(),
                kek_id: w.kek_id.to_hex(),
                wrapped: w.blob,
                active: true,
                created_at: String::new(),
            };
            let audit = AuditDraft::new(actor, Action::MekRotate, "mek")
                .detail("mek_id", mek.id.to_hex())
                .detail("rewrapped", count);
            match self.store.vault_rotate_mek(rec, rewrapped, audit).await {
                Ok(()) => {
                    let id = mek.id.to_hex();
                    let mut m = write(&self.meks);
                    m.by_id.insert(id.clone(), Arc::new(mek));
                    m.active.clone_from(&id);
                    return Ok((id, count));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(VaultError::Busy)
    }

    /// Appends events in one transaction (group commit); returns the last sequence number.
    pub async fn audit_many(&self, drafts: Vec<AuditDraft>) -> Result<u64, VaultError> {
        Ok(self.store.audit_append_many(drafts).await?)
    }

    /// Appends an event to the audit log; returns its sequence number once committed.
    /// Entries appended at the same time share one transaction (`crate::group_commit`).
    pub async fn audit(&self, draft: AuditDraft) -> Result<u64, VaultError> {
        self.group_commit.append(&self.store, draft).await
    }

    /// Appends an event an untrusted party caused (a gateway report, a refused request, a
    /// failed attestation) while their shared budget allows (`crate::audit_budget`); beyond it
    /// the event is only counted and `None` is returned.
    pub async fn audit_untrusted(&self, draft: AuditDraft) -> Result<Option<u64>, VaultError> {
        if !self.untrusted_budget.admit(&draft) {
            return Ok(None);
        }
        self.audit(draft).await.map(Some)
    }

    /// Writes the `audit.suppressed` entry for what the untrusted parties' budget left out
    /// since the last call, if anything (keyvault's ticker calls this once a second).
    pub async fn audit_suppressed(&self) -> Result<(), VaultError> {
        let Some(left_out) = self.untrusted_budget.take() else {
            return Ok(());
        };
        if let Err(e) = self.audit(left_out.draft()).await {
            self.untrusted_budget.restore(left_out);
            return Err(e);
        }
        Ok(())
    }

    fn entry_mac_ok(&self, hash: &str, mac: &str) -> bool {
        hex::decode(mac).is_ok_and(|m| {
            self.audit_mac
                .verify(&[AUDIT_MAC_DOMAIN, hash.as_bytes()], &m)
                .is_ok()
        })
    }

    async fn audit_entries(
        &self,
        after: u64,
    ) -> Result<Vec<cloister_audit::AuditEntry>, VaultError> {
        let mut entries: Vec<cloister_audit::AuditEntry> = Vec::new();
        loop {
            let from = entries.last().map(|e| e.seq).unwrap_or(after);
            let page = self.store.audit_list(from, AUDIT_PAGE).await?;
            let done = (page.len() as u32) < AUDIT_PAGE;
            entries.extend(page);
            if done {
                return Ok(entries);
            }
        }
    }

    /// Signs a checkpoint over the chain's new head, only if the entries since keyvault's last
    /// checkpoint extend it: each links to the one before, hashes to itself and carries
    /// keyvault's MAC. A chain that was cut and regrown, or rewritten, gets no checkpoint: the
    /// refusal is logged as an alarm and [`Vault::verify_audit`] reports it.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, VaultError> {
        // Read first: entries appended after this point are simply left for the next round.
        let written = self.store.audit_written_head();
        let last = lock(&self.last_checkpoint).clone();
        let from = last.as_ref().map(|c| c.seq.saturating_sub(1)).unwrap_or(0);
        let entries = self.audit_entries(from).await?;
        let mut prev = match &last {
            Some(c) => {
                let anchor = entries
                    .first()
                    .filter(|e| e.seq == c.seq && e.hash == c.hash);
                if anchor.is_none() {
                    tracing::error!(
                        checkpoint = c.seq,
                        "ALARM: the audit chain no longer extends keyvault's last checkpoint; no checkpoint signed"
                    );
                    return Err(VaultError::AuditDiverged(c.seq));
                }
                c.hash.clone()
            }
            None => hex::encode(cloister_audit::GENESIS_HASH),
        };
        let mut head = None;
        let skip = usize::from(last.is_some());
        for e in entries.iter().skip(skip) {
            let expected = head
                .as_ref()
                .map(|(s, _): &(u64, String)| s + 1)
                .unwrap_or(from + 1 + skip as u64);
            if e.seq != expected
                || e.prev_hash != prev
                || hex::encode(e.compute_hash()) != e.hash
                || !self.entry_mac_ok(&e.hash, &e.mac)
            {
                tracing::error!(
                    seq = e.seq,
                    "ALARM: audit entry not written by keyvault or not linked; no checkpoint signed"
                );
                return Err(VaultError::AuditDiverged(e.seq));
            }
            prev.clone_from(&e.hash);
            head = Some((e.seq, e.hash.clone()));
        }
        if let Some((ws, wh)) = &written {
            let reached = entries.iter().any(|e| e.seq == *ws && &e.hash == wh)
                || last.as_ref().is_some_and(|c| c.seq >= *ws);
            if !reached {
                tracing::error!(
                    seq = ws,
                    "ALARM: the audit chain does not reach the entry keyvault last wrote; no checkpoint signed"
                );
                return Err(VaultError::AuditDiverged(*ws));
            }
        }
        let Some((seq, hash)) = head else {
            return Ok(None);
        };
        let cp = Checkpoint::sign(&self.audit_key, seq, &hash, now_rfc3339());
        self.store.audit_add_checkpoint(cp.clone()).await?;
        *lock(&self.last_checkpoint) = Some(cp.clone());
        self.advance_guard(seq, &hash);
        Ok(Some(cp))
    }

    /// Records a new checkpoint in the rollback guard (never ahead of committed entries).
    fn advance_guard(&self, seq: u64, hash: &str) {
        let Some(g) = &self.guard else {
            return;
        };
        let mut st = lock(&self.guard_state);
        let Some(cur) = st.as_mut() else {
            return;
        };
        if seq <= cur.seq {
            return;
        }
        let next = GuardState {
            epoch: cur.epoch,
            seq,
            hash: hash.to_owned(),
            admins: self.admin_keys(),
        };
        match g.save(&next) {
            Ok(()) => *cur = next,
            Err(e) => tracing::error!(error = %e, "cannot advance the rollback guard"),
        }
    }

    /// Verifies the whole chain (links, hashes, keyvault's MAC on every entry) against the
    /// stored checkpoints and the last one this process signed (so deleting checkpoint rows
    /// does not hide a truncation); signs a new checkpoint when the chain is intact.
    pub async fn verify_audit(&self) -> Result<ChainReport, VaultError> {
        let entries = self.audit_entries(0).await?;
        let mut checkpoints = self.store.audit_checkpoints().await?;
        if let Some(mine) = lock(&self.last_checkpoint).clone()
            && !checkpoints.contains(&mine)
        {
            checkpoints.push(mine);
        }
        let report = cloister_audit::verify_chain_with_macs(
            &entries,
            &checkpoints,
            &self.audit_public(),
            |h, m| self.entry_mac_ok(h, m),
        );
        let mut report = report;
        report.epoch = self.epoch();
        if report.ok {
            self.checkpoint().await?;
        }
        Ok(report)
    }

    /// One page of the audit log (`GET /v1/audit`): up to `limit` entries after `after`, and
    /// the stored checkpoints in that range (all later ones on the last page).
    pub async fn audit_page(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<cloister_audit::AuditPage, VaultError> {
        let entries = self.store.audit_list(after, limit).await?;
        let last = entries.last().map(|e| e.seq);
        let full = entries.len() == limit as usize;
        let checkpoints = self
            .store
            .audit_checkpoints()
            .await?
            .into_iter()
            .filter(|c| c.seq > after && (!full || last.is_some_and(|l| c.seq <= l)))
            .collect();
        Ok(cloister_audit::AuditPage {
            next_after: if full { last } else { None },
            entries,
            checkpoints,
        })
    }

    /// Namespaces whose secrets epoch changed after store-wide change number `after`.
    pub async fn epoch_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<cloister_vault_store::EpochChange>, VaultError> {
        Ok(self.store.vault_epoch_changes(after, limit).await?)
    }

    /// keyvault's signature (audit key) over an export
    /// (`cloister_types::binding::key_export_message`).
    pub(crate) fn sign_key_export(
        &self,
        request_sha256: &[u8; 32],
        export_info: &[u8],
        recipient: &[u8],
        public_key: &[u8],
        sealed_sha256: &[u8],
    ) -> [u8; 64] {
        self.audit_key
            .sign(&cloister_types::binding::key_export_message(
                request_sha256,
                export_info,
                recipient,
                public_key,
                sealed_sha256,
            ))
    }

    /// keyvault's signature (audit key) over the result of an owner's key use
    /// (`cloister_types::binding::key_use_message`).
    pub fn sign_key_use(
        &self,
        request_sha256: &[u8; 32],
        r: &crate::function_keys::OwnerKeyResult,
    ) -> [u8; 64] {
        let (signature, recovery_id) = match &r.signature {
            Some(s) => (s.bytes.as_slice(), s.recovery_id),
            None => (&[][..], None),
        };
        self.audit_key
            .sign(&cloister_types::binding::key_use_message(
                request_sha256,
                r.algorithm.as_str(),
                r.version,
                signature,
                recovery_id,
                r.valid,
            ))
    }

    /// keyvault's signature over one of a function's keys' public facts
    /// (`cloister_types::binding::key_view_message`), by its audit key, and, for the answer
    /// to an owner's change, its signature binding that request (`key_write_message`).
    pub fn sign_key_view(
        &self,
        facts: &cloister_types::binding::KeyViewFacts<'_>,
        request_sha256: Option<&[u8; 32]>,
    ) -> ([u8; 64], Option<[u8; 64]>) {
        let view = cloister_types::binding::key_view_message(facts);
        let write = request_sha256.map(|r| {
            self.audit_key
                .sign(&cloister_types::binding::key_write_message(r, &view))
        });
        (self.audit_key.sign(&view), write)
    }

    /// keyvault's signature (audit key) over its statement about one version of a key
    /// (`cloister_types::binding::key_version_message`).
    pub fn sign_key_version(&self, message: &[u8]) -> [u8; 64] {
        self.audit_key.sign(message)
    }

    /// Signs an audit verdict for a client: Ed25519 by the audit (instance) key over the
    /// domain, the client's nonce and the report's JSON, so a relayed verdict cannot be forged
    /// or replayed.
    pub fn sign_verdict(&self, nonce: &[u8], report_json: &str) -> [u8; 64] {
        self.audit_key
            .sign(&cloister_types::binding::audit_verdict_message(
                nonce,
                report_json,
            ))
    }
}

/// Domain of keyvault's MAC over audit entries.
const AUDIT_MAC_DOMAIN: &[u8] = b"cloister/audit-entry-mac/v1";

fn audit_mac_fn(
    root: &SecretKey32,
    root_id: &KeyId,
) -> Result<cloister_vault_store::AuditMac, VaultError> {
    let key = cloister_crypto::MacKey::new(&derive(root, root_id, "audit-mac")?);
    Ok(Arc::new(move |hash: &str| {
        hex::encode(key.tag(&[AUDIT_MAC_DOMAIN, hash.as_bytes()]))
    }))
}

/// The stored root record, and the root unwrapped with the recovery key.
async fn recover_root(
    store: &dyn KeyvaultStore,
    recovery: &RecoveryKey,
) -> Result<(RootRecord, KeyId, SecretKey32), VaultError> {
    let rec = store
        .vault_root()
        .await?
        .ok_or_else(|| VaultError::NotFound("keyvault state (not initialised)".into()))?;
    let root_id = KeyId::from_hex(&rec.root_id).map_err(|_| corrupt("root id"))?;
    let root = recovery.unwrap_root(root_id, &rec.recovery)?;
    Ok((rec, root_id, root))
}

/// Re-seals the root to `sealing` (a new binary's measurement) with the recovery key.
pub async fn migrate(
    store: Arc<dyn KeyvaultStore>,
    recovery: &RecoveryKey,
    sealing: &Sealing,
) -> Result<String, VaultError> {
    let (rec, root_id, root) = recover_root(store.as_ref(), recovery).await?;
    let sealed = SealedRoot::seal(root_id, &root, sealing.measurement, &sealing.key)?;
    let audit = AuditDraft::new(ACTOR, Action::RootMigrate, "root")
        .detail("from", rec.measurement.clone())
        .detail("to", hex::encode(sealing.measurement));
    store
        .vault_reseal(hex::encode(sealing.measurement), sealed.blob, audit)
        .await?;
    Ok(rec.measurement)
}

/// Re-seals the root to `sealing` with the recovery key, as an admin's signed
/// [`KeyvaultReseal`](cloister_authority::ops::KeyvaultReseal) allows: it must name the
/// measurement the root is sealed to now and `sealing`'s, be signed by a live admin of this
/// vault's registry (read with the recovered root, so the database cannot forge one, and only
/// after the rollback guard accepted the database, so an older registry cannot vouch), and
/// not be replayed (its nonce is stored before the re-seal). Audited as that admin's
/// `key.migrate_root`. Returns the old measurement.
pub async fn reseal_approved(
    store: Arc<dyn KeyvaultStore>,
    recovery: &RecoveryKey,
    sealing: &Sealing,
    signed: &[u8],
    guard: &Path,
) -> Result<String, VaultError> {
    use cloister_authority::ops::{IdentityRole, KeyvaultReseal};
    let (rec, root_id, root) = recover_root(store.as_ref(), recovery).await?;
    store.set_audit_mac(audit_mac_fn(&root, &root_id)?);
    let (vault, _) = Vault::assemble(
        store.clone(),
        root_id,
        root,
        Opened::Unsealed,
        None,
        Some(guard),
    )
    .await?;
    vault.check_guard().await?;
    let (v, signer) = vault
        .authority
        .verify_signed::<KeyvaultReseal>(signed)
        .await?;
    // Spent for good before anything changes: the approval cannot be used again, even
    // after the root is moved back.
    vault.authority.save_nonces().await?;
    if signer.role != IdentityRole::Admin {
        return Err(Denied::NotAdmin(v.signer_id().clone()).into());
    }
    let to = hex::encode(sealing.measurement);
    if v.body().from != rec.measurement || v.body().to != to {
        return Err(VaultError::Invalid(format!(
            "the approval re-seals {} -> {}, but the root is sealed to {} and this keyvault \
             measures {to}",
            v.body().from,
            v.body().to,
            rec.measurement
        )));
    }
    let sealed = SealedRoot::seal(root_id, &vault.root, sealing.measurement, &sealing.key)?;
    let audit = AuditDraft::new(v.signer_id().to_string(), Action::RootMigrate, "root")
        .detail("from", rec.measurement.clone())
        .detail("to", to.clone())
        .detail("development", true);
    store.vault_reseal(to, sealed.blob, audit).await?;
    Ok(rec.measurement)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}
