//! Authority inside keyvault (ARCHITECTURE §11): the identity registry, function records and
//! owner-signed manifests. Rows live in the untrusted database under a MAC only keyvault can
//! compute; this process caches what it verified and is the only writer, so a row changed
//! underneath it is never read again while it runs, and fails its MAC when it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloister_audit::{Action, AuditDraft};
use cloister_authority::manifest::Manifest;
use cloister_authority::ops::{
    Activation, IdentityGrant, IdentityRole, RegistryChange, SecretOp, SecretWrite,
};
use cloister_authority::request::{Body, Verified, inspect, unix_now, verify};
use cloister_authority::{AuthorityError, IdentityId};
use cloister_crypto::{MacKey, VerifyingKey};
use cloister_types::{
    Entrypoint, Environment, ErrorCode, FunctionName, SecretPath, SecretRef, names,
};
use cloister_vault_store::{AuthorityRow, AuthorityWrite, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::vault::KeyvaultStore;

/// Longest lifetime keyvault accepts for a signed request.
pub const MAX_REQUEST_TTL_SECS: u64 = 600;

const IDENTITY: &str = "identity";
const FUNCTION: &str = "function";
const NAME: &str = "name";
const MANIFEST: &str = "manifest";

/// Why keyvault refused an authorising request or a release.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The signed request itself failed.
    #[error(transparent)]
    Signature(#[from] AuthorityError),
    /// The signer is not registered.
    #[error("identity {0} is not in keyvault's registry")]
    UnknownIdentity(IdentityId),
    /// The signer was revoked.
    #[error("identity {0} was revoked")]
    IdentityRevoked(IdentityId),
    /// The signer's grant expired.
    #[error("identity {0}'s grant expired")]
    IdentityExpired(IdentityId),
    /// The manifest of this version was signed by an identity revoked as compromised.
    #[error(
        "version {version} of function {function_id} was signed by {signer}, revoked as compromised"
    )]
    SignerCompromised {
        /// Function.
        function_id: String,
        /// Version.
        version: u32,
        /// Who signed its manifest.
        signer: IdentityId,
    },
    /// The signer's role does not allow this.
    #[error("an identity with the {role} role may not {action}")]
    RoleForbids {
        /// The role.
        role: &'static str,
        /// What was tried.
        action: &'static str,
    },
    /// The change would leave the registry without an admin.
    #[error("this would leave no admin; grant another admin first")]
    LastAdmin,
    /// The nonce was used before.
    #[error("this signed request was already used (replay)")]
    Replayed,
    /// The signer does not own the function.
    #[error("identity {identity} does not own function {function_id}")]
    NotOwner {
        /// Signer.
        identity: IdentityId,
        /// Function.
        function_id: String,
    },
    /// Only admins may do this.
    #[error("identity {0} is not an admin")]
    NotAdmin(IdentityId),
    /// A manifest does not fit (previous digest, name binding, code hash, request fields).
    #[error("manifest mismatch: {0}")]
    ManifestMismatch(String),
    /// That version may not receive secrets.
    #[error("version {version} of function {function_id} is not active")]
    InactiveVersion {
        /// Function.
        function_id: String,
        /// Version.
        version: u32,
    },
    /// keyvault knows no such function or version.
    #[error("keyvault has no function {0}")]
    UnknownFunction(String),
    /// The name belongs to a function already.
    #[error("the name {0:?} is bound to an existing function; redeploy it with its id")]
    NameTaken(String),
    /// A field of the signed body is invalid.
    #[error("invalid signed request: {0}")]
    Invalid(String),
    /// A stored row failed its MAC or could not be decoded.
    #[error("stored {0} failed authentication (altered in the database)")]
    Tampered(String),
    /// The database holds an older (or unknown) version than keyvault recorded.
    #[error("rollback detected: {0}")]
    Rollback(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Concurrent writers kept winning.
    #[error("keyvault is busy with concurrent changes; retry")]
    Busy,
}

impl Denied {
    /// The stable public error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Signature(e) => e.code(),
            Self::UnknownIdentity(_) => ErrorCode::UnknownIdentity,
            Self::IdentityRevoked(_)
            | Self::IdentityExpired(_)
            | Self::SignerCompromised { .. } => ErrorCode::IdentityRevoked,
            Self::RoleForbids { .. } => ErrorCode::Forbidden,
            Self::LastAdmin => ErrorCode::Conflict,
            Self::Replayed => ErrorCode::ReplayedRequest,
            Self::NotOwner { .. } | Self::NotAdmin(_) => ErrorCode::NotOwner,
            Self::ManifestMismatch(_) | Self::Tampered(_) => ErrorCode::ManifestMismatch,
            Self::InactiveVersion { .. } => ErrorCode::InactiveVersion,
            Self::UnknownFunction(_) => ErrorCode::FunctionNotFound,
            Self::NameTaken(_) | Self::Busy => ErrorCode::Conflict,
            Self::Invalid(_) => ErrorCode::InvalidRequest,
            Self::Store(_) => ErrorCode::Unavailable,
            Self::Rollback(_) => ErrorCode::RollbackDetected,
        }
    }
}

/// A registered identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// Hex Ed25519 public key.
    pub public_key: String,
    /// Role.
    pub role: IdentityRole,
    /// Label.
    pub label: String,
    /// Revoked identities authorise nothing.
    pub revoked: bool,
    /// Revoked because the key leaked: versions whose manifest it signed get no secrets.
    #[serde(default)]
    pub compromised: bool,
    /// The key that replaced this one (`identity rotate`).
    #[serde(default)]
    pub rotated_to: Option<IdentityId>,
    /// Unix seconds after which it authorises nothing (machine identities).
    #[serde(default)]
    pub expires: Option<u64>,
    /// The admin who added it (none: the bootstrap admin, or a record from before this
    /// field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<IdentityId>,
}

impl IdentityRecord {
    /// Whether it may sign at `now` (not revoked, grant not expired).
    pub fn live(&self, now: u64) -> bool {
        !self.revoked && self.expires.is_none_or(|e| e > now)
    }

    fn new(public_key: String, role: IdentityRole, label: String, expires: Option<u64>) -> Self {
        Self {
            public_key,
            role,
            label,
            revoked: false,
            compromised: false,
            rotated_to: None,
            expires,
            granted_by: None,
        }
    }
}

/// What a registry change did, for the gateway to mirror in its routing tables.
#[derive(Debug, Clone, Default)]
pub struct RegistryOutcome {
    /// The identity the change was about.
    pub identity_id: Option<IdentityId>,
    /// After a rotation, the new identity.
    pub rotated_to: Option<IdentityId>,
    /// Whether the identity is now revoked.
    pub revoked: bool,
    /// Functions whose owners changed, with their owners now.
    pub owners: Vec<(String, Vec<IdentityId>)>,
    /// Versions that may no longer receive secrets (compromised signer).
    pub distrusted_versions: u32,
    /// The executor policy's version after a policy change.
    pub policy_version: Option<u64>,
}

/// keyvault's record of one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Id (assigned by keyvault).
    pub function_id: String,
    /// Name (bound by keyvault).
    pub name: String,
    /// Identities that may act on it.
    pub owners: Vec<IdentityId>,
    /// Latest version.
    pub latest_version: u32,
    /// Digest of the latest manifest (hex).
    pub latest_digest: String,
    /// Versions that may receive secrets.
    pub active: Vec<u32>,
    /// A version was confidential: every later one must be (records written before this
    /// field existed read `false`, and the latest manifest is checked instead).
    #[serde(default)]
    pub confidential: bool,
}

/// A manifest keyvault registered: its fields may be acted on.
#[derive(Debug, Clone)]
pub struct RegisteredManifest {
    /// Function id.
    pub function_id: String,
    /// Version.
    pub version: u32,
    /// Digest of the signed bytes (hex).
    pub digest: String,
    /// Who signed it.
    pub signer: IdentityId,
    /// The manifest.
    pub manifest: Manifest,
    /// Its environment, parsed.
    pub environment: Environment,
    /// Its declared secrets, parsed.
    pub secrets: Vec<SecretRef>,
}

/// What registering a manifest produced.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The function record after the change.
    pub function: FunctionRecord,
    /// The manifest.
    pub manifest: Arc<RegisteredManifest>,
    /// Nothing was registered: the function's latest version already is this manifest's
    /// content, is active and was signed by a trusted identity (`manifest` is that version's).
    pub unchanged: bool,
}

/// Whether two manifests describe the same version: everything but the chain links
/// (`function_id`, `previous`) and `activate`.
fn same_content(a: &Manifest, b: &Manifest) -> bool {
    a.name == b.name
        && a.environment == b.environment
        && a.runtime == b.runtime
        && a.entrypoint == b.entrypoint
        && a.code_hash == b.code_hash
        && a.secrets == b.secrets
        && a.limits == b.limits
        && a.confidential == b.confidential
        && a.env == b.env
        && a.source_name == b.source_name
        && a.keys == b.keys
        && a.key_limits == b.key_limits
        && a.egress == b.egress
}

#[derive(Default)]
pub(crate) struct Cache {
    /// Freshness marks by namespace, with their encoded bytes (the CAS expectation).
    pub(crate) fresh: HashMap<String, (Vec<u8>, crate::freshness::Marks)>,
    /// Mark changes whose commit outcome is unknown (the writer was cancelled, or the database
    /// went away during the commit), by namespace: resolved from the database's row at the
    /// next use, which must be either the change or what it replaced.
    pub(crate) doubt: HashMap<String, crate::freshness::MarkUpdate>,
    identities: std::collections::BTreeMap<IdentityId, IdentityRecord>,
    functions: HashMap<String, Arc<FunctionRecord>>,
    /// Function names → ids: loaded whole at start, then only this process adds to it, so a
    /// name row deleted from the database while keyvault runs cannot be registered again.
    names: HashMap<String, String>,
    /// Function ids whose record failed its check at start: refused from then on, never
    /// re-read (the database could put an older, genuinely MACed copy back).
    quarantined: std::collections::HashSet<String>,
    manifests: HashMap<(String, u32), Arc<RegisteredManifest>>,
}

/// What [`Authority::load_functions`] read at start.
struct LoadedFunctions {
    functions: HashMap<String, Arc<FunctionRecord>>,
    names: HashMap<String, String>,
    quarantined: std::collections::HashSet<String>,
}

/// The authority state of one keyvault.
pub struct Authority {
    pub(crate) store: Arc<dyn KeyvaultStore>,
    mac: MacKey,
    platform: String,
    pub(crate) cache: Mutex<Cache>,
    writes: tokio::sync::Mutex<()>,
    nonces: Mutex<HashMap<String, u64>>,
    unsaved_nonces: Mutex<Vec<(String, u64)>>,
    pub(crate) policy: Mutex<Option<crate::policy::Current>>,
}

/// Most nonces held in memory (each lives at most [`MAX_REQUEST_TTL_SECS`]).
const MAX_NONCES: usize = 1 << 20;

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

fn manifest_key(function_id: &str, version: u32) -> String {
    format!("{function_id}/{version:010}")
}

/// A lost compare-and-set on rows only keyvault writes (with its writes serialised) means the
/// database changed them.
fn tampered_on_conflict(e: StoreError) -> Denied {
    match e {
        StoreError::Conflict(_) => {
            tracing::error!("ALARM: keyvault's authority rows changed in the database");
            Denied::Tampered("authority row".into())
        }
        e => e.into(),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Authority {
    /// Authority over `store`, MACing rows with `mac`, accepting requests signed for
    /// `platform` (keyvault's instance key, hex).
    pub fn new(store: Arc<dyn KeyvaultStore>, mac: MacKey, platform: String) -> Self {
        Self {
            store,
            mac,
            platform,
            cache: Mutex::new(Cache::default()),
            writes: tokio::sync::Mutex::new(()),
            nonces: Mutex::new(HashMap::new()),
            unsaved_nonces: Mutex::new(Vec::new()),
            policy: Mutex::new(None),
        }
    }

    /// Loads the unexpired nonces recorded before a restart.
    pub async fn load_nonces(&self) -> Result<(), Denied> {
        let saved = self.store.nonces_load(unix_now()).await?;
        lock(&self.nonces).extend(saved);
        Ok(())
    }

    /// Writes the nonces used since the last call to the database (for restarts), in one
    /// transaction; keyvault calls it every second.
    pub async fn save_nonces(&self) -> Result<(), Denied> {
        let batch = std::mem::take(&mut *lock(&self.unsaved_nonces));
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.nonces_persist(batch.clone(), unix_now()).await {
            lock(&self.unsaved_nonces).extend(batch);
            return Err(e.into());
        }
        Ok(())
    }

    /// Serialises keyvault's writes of its own rows: with it held, a lost compare-and-set
    /// means the database changed them, and the in-memory state stays authoritative.
    pub async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Accepts `nonce` once: in memory (authoritative while running); saved to the database
    /// within a second for restarts (no extra fsync on the request path).
    async fn use_nonce(&self, nonce: &str, expires: u64) -> Result<bool, Denied> {
        let now = unix_now();
        {
            let mut n = lock(&self.nonces);
            if n.len() >= MAX_NONCES {
                n.retain(|_, exp| *exp >= now);
            }
            if n.len() >= MAX_NONCES {
                return Err(Denied::Busy);
            }
            if n.insert(nonce.to_owned(), expires).is_some() {
                return Ok(false);
            }
        }
        lock(&self.unsaved_nonces).push((nonce.to_owned(), expires));
        Ok(true)
    }

    /// The platform id signed requests must name.
    pub fn platform(&self) -> &str {
        &self.platform
    }

    pub(crate) fn row(&self, kind: &str, key: &str, value: Vec<u8>) -> AuthorityRow {
        let mac = self
            .mac
            .tag(&[kind.as_bytes(), key.as_bytes(), &value])
            .to_vec();
        AuthorityRow {
            kind: kind.to_owned(),
            key: key.to_owned(),
            value,
            mac,
        }
    }

    pub(crate) async fn load(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, Denied> {
        let Some(row) = self.store.authority_get(kind, key).await? else {
            return Ok(None);
        };
        if row.kind != kind || row.key != key {
            return Err(Denied::Tampered(format!("{kind} {key}")));
        }
        self.mac
            .verify(&[kind.as_bytes(), key.as_bytes(), &row.value], &row.mac)
            .map_err(|_| {
                tracing::error!(kind, key, "ALARM: an authority row failed its MAC");
                Denied::Tampered(format!("{kind} {key}"))
            })?;
        Ok(Some(row.value))
    }

    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        kind: &str,
        key: &str,
        v: &[u8],
    ) -> Result<T, Denied> {
        serde_json::from_slice(v).map_err(|_| Denied::Tampered(format!("{kind} {key}")))
    }

    pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Denied> {
        serde_json::to_vec(v).map_err(|e| Denied::Invalid(e.to_string()))
    }

    /// Registers the first admin when keyvault is initialised (never afterwards).
    pub async fn bootstrap_admin(
        &self,
        key: &VerifyingKey,
        label: &str,
    ) -> Result<IdentityId, Denied> {
        let id = IdentityId::of(key);
        let rec = IdentityRecord::new(key.to_string(), IdentityRole::Admin, label.to_owned(), None);
        let value = Self::encode(&rec)?;
        let audit = AuditDraft::new("keyvault", Action::IdentityGrant, id.to_string())
            .detail("role", "admin")
            .detail("label", label)
            .detail("bootstrap", true);
        self.store
            .authority_write(
                vec![AuthorityWrite {
                    row: self.row(IDENTITY, id.as_str(), value),
                    expect: None,
                }],
                Some(audit),
                None,
            )
            .await?;
        lock(&self.cache).identities.insert(id.clone(), rec);
        Ok(id)
    }

    /// The registered identities (verified rows only).
    pub async fn identities(&self) -> Result<Vec<(IdentityId, IdentityRecord)>, Denied> {
        let mut out = Vec::new();
        for row in self.store.authority_list(IDENTITY).await? {
            let Some(v) = self.load(IDENTITY, &row.key).await? else {
                continue;
            };
            let id = IdentityId::parse(&row.key).map_err(|_| Denied::Tampered(row.key.clone()))?;
            out.push((id, Self::decode(IDENTITY, &row.key, &v)?));
        }
        Ok(out)
    }

    /// Loads the whole registry (MAC-verified) into memory; from then on this process is its
    /// only source (a row added or restored in the database is not seen until a restart).
    pub async fn load_registry(&self) -> Result<(), Denied> {
        let all = self.identities().await?;
        let loaded = self.load_functions().await?;
        let mut c = lock(&self.cache);
        c.identities = all.into_iter().collect();
        c.functions = loaded.functions;
        c.names = loaded.names;
        c.quarantined = loaded.quarantined;
        Ok(())
    }

    /// Every function record and name (MAC-verified). A name is taken if a function record
    /// carries it *or* a name row binds it (even one whose MAC fails: the row's key is the
    /// name), so neither deleting nor corrupting one of the two rows frees a name; such a
    /// mismatch is logged as an `ALARM`. A function record failing its check is quarantined.
    async fn load_functions(&self) -> Result<LoadedFunctions, Denied> {
        let mut functions = HashMap::new();
        let mut names: HashMap<String, String> = HashMap::new();
        let mut quarantined = std::collections::HashSet::new();
        for row in self.store.authority_list(FUNCTION).await? {
            // A record that fails its MAC is left out (and refused when asked for, as
            // before): one altered row does not stop keyvault.
            let rec = match self.load(FUNCTION, &row.key).await {
                Ok(Some(v)) => Self::decode::<FunctionRecord>(FUNCTION, &row.key, &v)
                    .ok()
                    .filter(|r| r.function_id == row.key),
                Ok(None) => continue,
                Err(Denied::Tampered(_)) => None,
                Err(e) => return Err(e),
            };
            let Some(rec) = rec else {
                tracing::error!(function_id = %row.key, "ALARM: a function record of keyvault's failed its check");
                quarantined.insert(row.key);
                continue;
            };
            if let Some(other) = names.insert(rec.name.clone(), rec.function_id.clone()) {
                tracing::error!(name = %rec.name, first = %other, second = %rec.function_id, "ALARM: two of keyvault's functions carry the same name");
            }
            functions.insert(rec.function_id.clone(), Arc::new(rec));
        }
        let mut bound = std::collections::HashSet::new();
        for row in self.store.authority_list(NAME).await? {
            let id = match self.load(NAME, &row.key).await {
                Ok(Some(id)) => String::from_utf8(id).ok(),
                Ok(None) => continue,
                Err(Denied::Tampered(_)) => None,
                Err(e) => return Err(e),
            };
            let Some(id) = id else {
                tracing::error!(name = %row.key, "ALARM: a name row of keyvault's failed its check");
                // Still taken: no new function gets a name keyvault once bound.
                names.entry(row.key.clone()).or_default();
                bound.insert(row.key);
                continue;
            };
            match names.get(&row.key) {
                Some(f) if *f == id => {}
                Some(f) => {
                    tracing::error!(name = %row.key, row = %id, record = %f, "ALARM: keyvault's name row and function record disagree");
                }
                None => {
                    tracing::error!(name = %row.key, function_id = %id, "ALARM: keyvault's name row names a function whose record is gone");
                    names.insert(row.key.clone(), id);
                }
            }
            bound.insert(row.key);
        }
        for (name, id) in &names {
            if !bound.contains(name) {
                tracing::error!(name = %name, function_id = %id, "ALARM: keyvault's name row vanished from the database");
            }
        }
        Ok(LoadedFunctions {
            functions,
            names,
            quarantined,
        })
    }

    async fn identity(&self, id: &IdentityId) -> Result<Option<IdentityRecord>, Denied> {
        Ok(lock(&self.cache).identities.get(id).cloned())
    }

    /// Digest of the registry keyvault's evidence binds (identities and executor policy; see
    /// `binding::registry_digest`).
    pub fn registry_digest(&self) -> [u8; 32] {
        let policy = self.executor_policy();
        let c = lock(&self.cache);
        let rotated: Vec<Option<String>> = c
            .identities
            .values()
            .map(|r| r.rotated_to.as_ref().map(ToString::to_string))
            .collect();
        let entries: Vec<cloister_types::binding::RegistryEntry<'_>> = c
            .identities
            .iter()
            .zip(&rotated)
            .map(|((id, r), rot)| cloister_types::binding::RegistryEntry {
                id: id.as_str(),
                public_key: r.public_key.as_str(),
                role: r.role.as_str(),
                revoked: r.revoked,
                compromised: r.compromised,
                expires: r.expires,
                rotated_to: rot.as_deref(),
            })
            .collect();
        cloister_types::binding::registry_digest(
            &entries,
            policy.as_ref().map(|p| (p.version, p.policy.as_str())),
        )
    }

    /// Ids of the admin identities that may still sign (not revoked, not expired).
    pub fn admins(&self) -> Vec<String> {
        let now = unix_now();
        lock(&self.cache)
            .identities
            .iter()
            .filter(|(_, r)| r.role == IdentityRole::Admin && r.live(now))
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Verifies a signed request and its signer's standing; consumes its nonce.
    pub async fn verify_signed<B: Body>(
        &self,
        bytes: &[u8],
    ) -> Result<(Verified<B>, IdentityRecord), Denied> {
        let v = verify::<B>(bytes, &self.platform, unix_now(), MAX_REQUEST_TTL_SECS)?;
        let rec = self
            .identity(v.signer_id())
            .await?
            .ok_or_else(|| Denied::UnknownIdentity(v.signer_id().clone()))?;
        if rec.public_key != v.signer().to_string() {
            return Err(Denied::Tampered(format!("identity {}", v.signer_id())));
        }
        if rec.revoked {
            return Err(Denied::IdentityRevoked(v.signer_id().clone()));
        }
        if rec.expires.is_some_and(|e| e <= unix_now()) {
            return Err(Denied::IdentityExpired(v.signer_id().clone()));
        }
        if !self.use_nonce(v.nonce(), v.expires()).await? {
            return Err(Denied::Replayed);
        }
        Ok((v, rec))
    }

    /// keyvault's record of a function (MAC-verified), if any.
    pub async fn function(&self, function_id: &str) -> Result<Option<Arc<FunctionRecord>>, Denied> {
        {
            let c = lock(&self.cache);
            if let Some(f) = c.functions.get(function_id) {
                return Ok(Some(f.clone()));
            }
            if c.quarantined.contains(function_id) {
                return Err(Denied::Tampered(format!("function {function_id}")));
            }
        }
        let Some(v) = self.load(FUNCTION, function_id).await? else {
            return Ok(None);
        };
        let rec: FunctionRecord = Self::decode(FUNCTION, function_id, &v)?;
        if rec.function_id != function_id {
            return Err(Denied::Tampered(format!("function {function_id}")));
        }
        let rec = Arc::new(rec);
        lock(&self.cache)
            .functions
            .insert(function_id.to_owned(), rec.clone());
        Ok(Some(rec))
    }

    /// keyvault's record of the function bound to `name`, if any.
    pub async fn function_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Arc<FunctionRecord>>, Denied> {
        let known = lock(&self.cache).names.get(name).cloned();
        let stored = match self.load(NAME, name).await? {
            Some(id) => {
                Some(String::from_utf8(id).map_err(|_| Denied::Tampered(format!("name {name}")))?)
            }
            None => None,
        };
        let id = match (known, stored) {
            (None, None) => return Ok(None),
            (Some(k), Some(s)) if k == s => k,
            // A name keyvault has not seen (another replica's, or restored): the row's MAC
            // checked out, so it is keyvault's own.
            (None, Some(s)) => {
                lock(&self.cache).names.insert(name.to_owned(), s.clone());
                s
            }
            (Some(_), _) => {
                tracing::error!(
                    name,
                    "ALARM: keyvault's name row changed or vanished in the database"
                );
                return Err(Denied::Tampered(format!("name {name}")));
            }
        };
        let f = self.function(&id).await?;
        if f.as_ref().is_some_and(|f| f.name != name) {
            return Err(Denied::Tampered(format!("name {name}")));
        }
        Ok(f)
    }

    /// Whether `id` (with record `rec`) may act on `f`: an admin, an owner, or the key an
    /// owner rotated to (so a function whose record a rotation could not rewrite still
    /// follows the rotation).
    /// Whether identity `id` (its text form) was revoked as compromised.
    pub fn compromised(&self, id: &str) -> bool {
        let c = lock(&self.cache);
        c.identities
            .iter()
            .any(|(k, r)| r.compromised && k.to_string() == id)
    }

    /// Whether `id` owns `f`: listed, or the key an owner rotated to.
    fn owns(&self, id: &IdentityId, f: &FunctionRecord) -> bool {
        if f.owners.contains(id) {
            return true;
        }
        let c = lock(&self.cache);
        f.owners.iter().any(|o| {
            let mut cur = o.clone();
            for _ in 0..16 {
                match c.identities.get(&cur).and_then(|r| r.rotated_to.clone()) {
                    Some(next) if next == *id => return true,
                    Some(next) => cur = next,
                    None => return false,
                }
            }
            false
        })
    }

    fn may_act(
        &self,
        rec: &IdentityRecord,
        id: &IdentityId,
        f: &FunctionRecord,
    ) -> Result<(), Denied> {
        if rec.role == IdentityRole::Admin || self.owns(id, f) {
            Ok(())
        } else {
            Err(Denied::NotOwner {
                identity: id.clone(),
                function_id: f.function_id.clone(),
            })
        }
    }

    /// Refuses a request whose signer named another function than the id it carries.
    fn same_name(f: &FunctionRecord, name: &str) -> Result<(), Denied> {
        if f.name == name {
            Ok(())
        } else {
            Err(Denied::ManifestMismatch(format!(
                "function {} is named {:?}; the request was signed for {name:?}",
                f.function_id, f.name
            )))
        }
    }

    /// Checks the fields of a manifest and parses what keyvault acts on; `max_secrets` caps
    /// the declared secrets of a new manifest (a stored one is read whatever its count).
    fn check_manifest(
        m: &Manifest,
        max_secrets: usize,
    ) -> Result<(Environment, Vec<SecretRef>), Denied> {
        let inv = |e: String| Denied::Invalid(e);
        FunctionName::parse(&m.name).map_err(|e| inv(e.to_string()))?;
        Entrypoint::parse(&m.entrypoint).map_err(|e| inv(e.to_string()))?;
        let env = Environment::parse(&m.environment).map_err(|e| inv(e.to_string()))?;
        if m.runtime != "javascript" {
            return Err(inv(format!("unknown runtime {:?}", m.runtime)));
        }
        let hex_part = m.code_hash.strip_prefix("sha256:").unwrap_or("");
        if hex_part.len() != 64 || hex::decode(hex_part).is_err() {
            return Err(inv("code_hash must be sha256:<64 hex digits>".into()));
        }
        let refs = SecretRef::parse_declared_within(&m.secrets, max_secrets)
            .map_err(|e| inv(e.to_string()))?;
        if m.limits.timeout_ms == 0 || m.limits.memory_mb == 0 {
            return Err(inv("limits must be positive".into()));
        }
        if let Some(id) = &m.function_id {
            names::validate_function_id(id).map_err(|e| inv(e.to_string()))?;
        }
        Ok((env, refs))
    }

    /// Whether a version of `f` was confidential: its record's flag, or (records written before
    /// the flag) its latest manifest, which must be there.
    async fn was_confidential(&self, f: &FunctionRecord) -> Result<bool, Denied> {
        if f.confidential {
            return Ok(true);
        }
        match self.manifest(&f.function_id, f.latest_version).await? {
            Some(latest) => Ok(latest.manifest.confidential),
            None => {
                tracing::error!(function_id = %f.function_id, version = f.latest_version, "ALARM: the latest manifest of a function is missing from the database");
                Err(Denied::Tampered(format!(
                    "manifest {}",
                    manifest_key(&f.function_id, f.latest_version)
                )))
            }
        }
    }

    /// Registers an owner-signed manifest as the function's next version.
    pub async fn register_manifest(&self, signed: &[u8]) -> Result<Registered, Denied> {
        let _writes = self.write_lock().await;
        let (v, signer) = self.verify_signed::<Manifest>(signed).await?;
        let m = v.body().clone();
        let (environment, secrets) =
            Self::check_manifest(&m, cloister_types::MAX_DECLARED_SECRETS)?;
        // Rules for new manifests only: a stored one stays readable if they tighten.
        cloister_types::function_env::check_env(&m.env)
            .map_err(|e| Denied::Invalid(e.to_string()))?;
        if let Some(n) = &m.source_name {
            cloister_types::SourceName::parse(n).map_err(|e| Denied::Invalid(e.to_string()))?;
        }
        cloister_types::KeyName::parse_declared(&m.keys)
            .map_err(|e| Denied::Invalid(e.to_string()))?;
        cloister_types::key_limits::check_key_limits(&m.keys, &m.key_limits)
            .map_err(|e| Denied::Invalid(e.to_string()))?;
        if let Some(e) = &m.egress {
            let names: Vec<&str> = secrets.iter().map(|r| r.name()).collect();
            e.check(&names)
                .map_err(|e| Denied::Invalid(e.to_string()))?;
            // Each extra root must be one rustls takes as a trust anchor, or every run of the
            // version would fail at its first request.
            for (i, r) in e.ca.iter().enumerate() {
                use rustls::pki_types::pem::PemObject as _;
                let bad = |why: String| Denied::Invalid(format!("egress extra root {i}: {why}"));
                let cert = rustls::pki_types::CertificateDer::from_pem_slice(r.pem.as_bytes())
                    .map_err(|e| bad(e.to_string()))?;
                rustls::RootCertStore::empty()
                    .add(cert)
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
        // Another function's key is declared by that function's name: it must exist now, or
        // whoever registers the name first would choose the key this function signs with.
        for r in cloister_types::KeyName::parse_declared(&m.keys)
            .map_err(|e| Denied::Invalid(e.to_string()))?
        {
            if let cloister_types::KeyRef::Granted { function, .. } = &r
                && !lock(&self.cache).names.contains_key(function.as_str())
            {
                return Err(Denied::UnknownFunction(format!(
                    "{function} (the manifest declares its key {r}; a function may declare \
                     another's key only once that function exists)"
                )));
            }
        }
        let signer_id = v.signer_id().clone();
        let digest = hex::encode(v.digest());
        let (old, old_value, function_id) = match &m.function_id {
            None => {
                if signer.role == IdentityRole::Machine {
                    return Err(Denied::RoleForbids {
                        role: "machine",
                        action: "create functions (an owner adds it to one)",
                    });
                }
                if m.previous.is_some() {
                    return Err(Denied::ManifestMismatch(
                        "a manifest creating a function names no previous manifest".into(),
                    ));
                }
                let known = lock(&self.cache).names.contains_key(&m.name);
                let stored = self.load(NAME, &m.name).await?.is_some();
                if known && !stored {
                    tracing::error!(name = %m.name, "ALARM: keyvault's name row vanished from the database");
                }
                if known || stored {
                    return Err(Denied::NameTaken(m.name.clone()));
                }
                (None, None, uuid::Uuid::new_v4().to_string())
            }
            Some(id) => {
                let f = self
                    .function(id)
                    .await?
                    .ok_or_else(|| Denied::UnknownFunction(id.clone()))?;
                self.may_act(&signer, &signer_id, &f)?;
                if f.name != m.name {
                    return Err(Denied::ManifestMismatch(format!(
                        "function {id} is named {:?}, not {:?}",
                        f.name, m.name
                    )));
                }
                if m.previous.as_deref() != Some(f.latest_digest.as_str()) {
                    return Err(Denied::ManifestMismatch(format!(
                        "previous must be the digest of version {} ({}); replayed or stale manifest",
                        f.latest_version, f.latest_digest
                    )));
                }
                // A confidential function stays confidential: a plain version would hand its
                // code (its next revision, likely close to the sealed one) to the platform.
                if !m.confidential && self.was_confidential(&f).await? {
                    return Err(Denied::Invalid(format!(
                        "function {:?} is confidential: deploy its new version with --confidential \
                         (to publish code, deploy it under another name)",
                        f.name
                    )));
                }
                // The same content again, by someone who may deploy it: the latest version
                // stands if it can run (active, its signer not distrusted).
                if m.activate
                    && f.active.contains(&f.latest_version)
                    && let Some(latest) = self.manifest(id, f.latest_version).await?
                    && same_content(&latest.manifest, &m)
                    && self.signer_trusted(&latest).is_ok()
                {
                    return Ok(Registered {
                        function: (*f).clone(),
                        manifest: latest,
                        unchanged: true,
                    });
                }
                let old_value = Self::encode(f.as_ref())?;
                (Some(f), Some(old_value), id.clone())
            }
        };
        let version = old.as_ref().map(|f| f.latest_version + 1).unwrap_or(1);
        let mut active = old.as_ref().map(|f| f.active.clone()).unwrap_or_default();
        if m.activate {
            active.push(version);
        }
        let rec = FunctionRecord {
            function_id: function_id.clone(),
            name: m.name.clone(),
            owners: old
                .as_ref()
                .map(|f| f.owners.clone())
                .unwrap_or_else(|| vec![signer_id.clone()]),
            latest_version: version,
            latest_digest: digest.clone(),
            active,
            confidential: m.confidential || old.as_ref().is_some_and(|f| f.confidential),
        };
        let mut writes = vec![
            AuthorityWrite {
                row: self.row(FUNCTION, &function_id, Self::encode(&rec)?),
                expect: old_value,
            },
            AuthorityWrite {
                row: self.row(
                    MANIFEST,
                    &manifest_key(&function_id, version),
                    signed.to_vec(),
                ),
                expect: None,
            },
        ];
        if old.is_none() {
            writes.push(AuthorityWrite {
                row: self.row(NAME, &m.name, function_id.as_bytes().to_vec()),
                expect: None,
            });
        }
        let audit = AuditDraft::new(
            signer_id.to_string(),
            Action::FunctionDeploy,
            m.name.clone(),
        )
        .detail("function_id", function_id.clone())
        .detail("version", version)
        .detail("code_hash", m.code_hash.clone())
        .detail("manifest_digest", digest.clone())
        .detail("secrets", m.secrets.clone())
        .detail("active", m.activate);
        let bump = old
            .as_ref()
            .map(|_| cloister_types::namespace_of(&function_id));
        match self.store.authority_write(writes, Some(audit), bump).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                // Writes are serialised here: someone else changed keyvault's rows.
                tracing::error!(function_id = %function_id, "ALARM: keyvault's function rows changed in the database");
                return Err(if old.is_none() {
                    Denied::NameTaken(m.name.clone())
                } else {
                    Denied::Tampered(format!("function {function_id}"))
                });
            }
            Err(e) => return Err(e.into()),
        }
        let reg = Arc::new(RegisteredManifest {
            function_id: function_id.clone(),
            version,
            digest,
            signer: signer_id,
            manifest: m,
            environment,
            secrets,
        });
        let rec = Arc::new(rec);
        let mut c = lock(&self.cache);
        c.names.insert(rec.name.clone(), function_id.clone());
        c.functions.insert(function_id.clone(), rec.clone());
        c.manifests.insert((function_id, version), reg.clone());
        Ok(Registered {
            function: (*rec).clone(),
            manifest: reg,
            unchanged: false,
        })
    }

    /// The signed bytes of the manifest registered for `function_id` `version`, checked to be
    /// that version's (the row is MACed; its content must name the function it is stored
    /// under).
    pub async fn signed_manifest(
        &self,
        function_id: &str,
        version: u32,
    ) -> Result<Option<Vec<u8>>, Denied> {
        if self.manifest(function_id, version).await?.is_none() {
            return Ok(None);
        }
        self.load(MANIFEST, &manifest_key(function_id, version))
            .await
    }

    /// A registered manifest (MAC-verified), if any.
    pub async fn manifest(
        &self,
        function_id: &str,
        version: u32,
    ) -> Result<Option<Arc<RegisteredManifest>>, Denied> {
        let key = (function_id.to_owned(), version);
        if let Some(m) = lock(&self.cache).manifests.get(&key) {
            return Ok(Some(m.clone()));
        }
        let k = manifest_key(function_id, version);
        let Some(bytes) = self.load(MANIFEST, &k).await? else {
            return Ok(None);
        };
        let i =
            inspect::<Manifest>(&bytes).map_err(|_| Denied::Tampered(format!("manifest {k}")))?;
        if i.body
            .function_id
            .as_deref()
            .is_some_and(|id| id != function_id)
        {
            return Err(Denied::Tampered(format!("manifest {k}")));
        }
        let (environment, secrets) = Self::check_manifest(&i.body, usize::MAX)
            .map_err(|_| Denied::Tampered(format!("manifest {k}")))?;
        let reg = Arc::new(RegisteredManifest {
            function_id: function_id.to_owned(),
            version,
            digest: hex::encode(Sha256::digest(&bytes)),
            signer: i.signer_id,
            manifest: i.body,
            environment,
            secrets,
        });
        lock(&self.cache).manifests.insert(key, reg.clone());
        Ok(Some(reg))
    }

    /// What keyvault may act on for an executor that loaded code hashing to `code_hash` for
    /// (function, version): the registered manifest, if that version is active and its code
    /// hash is the one loaded.
    pub async fn authorize_run(
        &self,
        function_id: &str,
        version: u32,
        code_hash: &str,
    ) -> Result<Arc<RegisteredManifest>, Denied> {
        let f = self
            .function(function_id)
            .await?
            .ok_or_else(|| Denied::UnknownFunction(function_id.to_owned()))?;
        let m = self
            .manifest(function_id, version)
            .await?
            .ok_or_else(|| Denied::UnknownFunction(format!("{function_id} version {version}")))?;
        if !f.active.contains(&version) {
            return Err(Denied::InactiveVersion {
                function_id: function_id.to_owned(),
                version,
            });
        }
        self.signer_trusted(&m)?;
        if m.manifest.code_hash != code_hash {
            return Err(Denied::ManifestMismatch(format!(
                "the executor loaded code {code_hash}; version {version}'s manifest names {}",
                m.manifest.code_hash
            )));
        }
        Ok(m)
    }

    /// The manifest whose limits govern `running`'s use of key `name` (docs/CAPABILITIES.md):
    /// the newest active version of the function that declares the key and whose signer is
    /// trusted. Tightening a key's limits in a new version so binds the older versions still
    /// active, which a gateway could otherwise run to escape them; a rollback (the older
    /// version newest active again) brings back its own limits. A version whose signer was
    /// later revoked as compromised is skipped, so its limits no longer apply (revoking the
    /// signer of a tightening brings back the older limits). `running` must itself declare
    /// the key; the caller checks that.
    pub async fn key_limits_source(
        &self,
        running: &Arc<RegisteredManifest>,
        name: &str,
    ) -> Result<Arc<RegisteredManifest>, Denied> {
        let f = self
            .function(&running.function_id)
            .await?
            .ok_or_else(|| Denied::UnknownFunction(running.function_id.clone()))?;
        for &version in f.active.iter().rev() {
            if version == running.version {
                break;
            }
            // A registered, active version's manifest missing from the database is tampering:
            // skipping it would let an older version's looser limits apply.
            let Some(m) = self.manifest(&f.function_id, version).await? else {
                tracing::error!(function_id = %f.function_id, version, "ALARM: an active version's manifest is missing from the database");
                return Err(Denied::Tampered(format!(
                    "manifest {}",
                    manifest_key(&f.function_id, version)
                )));
            };
            if m.manifest.keys.iter().any(|k| k == name) && self.signer_trusted(&m).is_ok() {
                return Ok(m);
            }
        }
        Ok(running.clone())
    }

    /// The secrets of `running`'s function that are egress-only for a run of `running`: those
    /// its own manifest declares so, and those any newer registered version declares so,
    /// whatever its state or signer (a restriction only tightens: a rollback, a deactivation or
    /// a revoked signer does not make a value readable again). The values go to the executor
    /// apart from readable ones.
    pub async fn egress_only_names(
        &self,
        running: &Arc<RegisteredManifest>,
    ) -> Result<std::collections::BTreeSet<String>, Denied> {
        let mut names: std::collections::BTreeSet<String> = running
            .manifest
            .egress
            .iter()
            .flat_map(|e| e.secrets.keys().cloned())
            .collect();
        let f = self
            .function(&running.function_id)
            .await?
            .ok_or_else(|| Denied::UnknownFunction(running.function_id.clone()))?;
        for version in running.version.saturating_add(1)..=f.latest_version {
            // A registered version's manifest missing from the database is tampering: skipping
            // it could make a value readable again.
            let Some(m) = self.manifest(&f.function_id, version).await? else {
                tracing::error!(function_id = %f.function_id, version, "ALARM: a registered version's manifest is missing from the database");
                return Err(Denied::Tampered(format!(
                    "manifest {}",
                    manifest_key(&f.function_id, version)
                )));
            };
            if let Some(e) = &m.manifest.egress {
                names.extend(e.secrets.keys().cloned());
            }
        }
        Ok(names)
    }

    /// Refuses a manifest whose signer was revoked as compromised (what it signed before is
    /// distrusted); a plain revocation or a rotation leaves its manifests valid.
    fn signer_trusted(&self, m: &RegisteredManifest) -> Result<(), Denied> {
        let c = lock(&self.cache);
        match c.identities.get(&m.signer) {
            Some(r) if r.compromised => Err(Denied::SignerCompromised {
                function_id: m.function_id.clone(),
                version: m.version,
                signer: m.signer.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks an owner-signed write to `path` of `sealed` (empty for deletes); returns the
    /// signer.
    pub async fn authorize_secret_write(
        &self,
        signed: &[u8],
        path: &SecretPath,
        op: SecretOp,
        sealed: &[u8],
    ) -> Result<IdentityId, Denied> {
        let (v, signer) = self.verify_signed::<SecretWrite>(signed).await?;
        let b: &SecretWrite = v.body();
        let digest = if sealed.is_empty() {
            String::new()
        } else {
            hex::encode(Sha256::digest(sealed))
        };
        if b.path != path.to_string() || b.op != op || b.sealed_digest != digest {
            return Err(Denied::Signature(AuthorityError::Malformed(
                "the signature covers another path, operation or value".into(),
            )));
        }
        let function_id = path.function_id();
        let f = self
            .function(function_id)
            .await?
            .ok_or_else(|| Denied::UnknownFunction(function_id.to_owned()))?;
        self.may_act(&signer, v.signer_id(), &f)?;
        Ok(v.signer_id().clone())
    }

    /// Checks an owner's signature over a change to one of a function's keys; returns the
    /// signer, the change and the SHA-256 of the signed request.
    pub async fn authorize_key_write(
        &self,
        signed: &[u8],
    ) -> Result<(IdentityId, cloister_authority::ops::KeyWrite, [u8; 32]), Denied> {
        self.authorize_key_request(signed).await
    }

    /// Checks an owner's signature over a request `B` about one of a function's keys:
    /// returns the signer, the request and the SHA-256 of the signed bytes.
    async fn authorize_key_request<B: cloister_authority::Body + NamesKey + Clone>(
        &self,
        signed: &[u8],
    ) -> Result<(IdentityId, B, [u8; 32]), Denied> {
        let (v, signer) = self.verify_signed::<B>(signed).await?;
        let f = self.key_function(v.body()).await?;
        self.may_act(&signer, v.signer_id(), &f)?;
        Ok((v.signer_id().clone(), v.body().clone(), *v.digest()))
    }

    /// The function a key request names, once the key's name is valid and keyvault binds
    /// the function's name to its id (a gateway cannot point an owner's request at another
    /// function).
    async fn key_function(&self, b: &impl NamesKey) -> Result<Arc<FunctionRecord>, Denied> {
        let (function_id, function, name) = b.names();
        cloister_types::KeyName::parse(name).map_err(|e| Denied::Invalid(e.to_string()))?;
        let f = self
            .function(function_id)
            .await?
            .ok_or_else(|| Denied::UnknownFunction(function_id.to_owned()))?;
        if f.name != function {
            return Err(Denied::ManifestMismatch(format!(
                "function {function_id} is named {:?}, not {function:?}",
                f.name
            )));
        }
        Ok(f)
    }

    /// Checks the two signatures an export needs over one `KeyExport` body: `owner_signed` by
    /// an identity that may act on the function, `admin_signed` by an admin, two distinct
    /// identities (one stolen key is not enough). Returns the body, the two signers and the
    /// SHA-256 of the owner's signed request (which keyvault's signed result binds).
    pub async fn authorize_key_export(
        &self,
        owner_signed: &[u8],
        admin_signed: &[u8],
    ) -> Result<
        (
            cloister_authority::ops::KeyExport,
            IdentityId,
            IdentityId,
            [u8; 32],
        ),
        Denied,
    > {
        use cloister_authority::ops::KeyExport;
        let (o, owner) = self.verify_signed::<KeyExport>(owner_signed).await?;
        let (a, admin) = self.verify_signed::<KeyExport>(admin_signed).await?;
        if o.body() != a.body() {
            return Err(Denied::Invalid(
                "the owner and the admin signed different exports".into(),
            ));
        }
        if o.signer_id() == a.signer_id() {
            return Err(Denied::Invalid(
                "an export needs two identities: an owner's signature and another, an admin's"
                    .into(),
            ));
        }
        if admin.role != IdentityRole::Admin {
            return Err(Denied::NotAdmin(a.signer_id().clone()));
        }
        let b = o.body().clone();
        let f = self.key_function(&b).await?;
        // The first signature is an owner's own, never an admin's by role: otherwise two
        // admins, with no owner, could export.
        let _ = owner;
        if !self.owns(o.signer_id(), &f) {
            return Err(Denied::NotOwner {
                identity: o.signer_id().clone(),
                function_id: f.function_id.clone(),
            });
        }
        // Neither signer may be one the other put in the registry (a stolen admin key would
        // otherwise make its own second party).
        let granted_by = |id: &IdentityId| {
            lock(&self.cache)
                .identities
                .get(id)
                .and_then(|r| r.granted_by.clone())
        };
        if granted_by(o.signer_id()).as_ref() == Some(a.signer_id())
            || granted_by(a.signer_id()).as_ref() == Some(o.signer_id())
        {
            return Err(Denied::Invalid(
                "an export needs two independent identities: one of the signers added the other \
                 to the registry"
                    .into(),
            ));
        }
        Ok((b, o.signer_id().clone(), a.signer_id().clone(), *o.digest()))
    }

    /// Checks an owner's signature over a use of one of a function's keys through the API;
    /// returns the signer, the request and the SHA-256 of the signed bytes (which keyvault's
    /// signed result binds).
    pub async fn authorize_key_use(
        &self,
        signed: &[u8],
    ) -> Result<(IdentityId, cloister_authority::ops::KeyUse, [u8; 32]), Denied> {
        self.authorize_key_request(signed).await
    }

    /// An admin adds an identity or changes its role.
    pub async fn grant_identity(&self, signed: &[u8]) -> Result<IdentityId, Denied> {
        let _writes = self.write_lock().await;
        let (v, signer) = self.verify_signed::<IdentityGrant>(signed).await?;
        if signer.role != IdentityRole::Admin {
            return Err(Denied::NotAdmin(v.signer_id().clone()));
        }
        let g = v.body();
        let key_bytes = hex::decode(&g.public_key)
            .map_err(|_| Denied::Invalid("public_key must be hex".into()))?;
        let key =
            VerifyingKey::from_slice(&key_bytes).map_err(|e| Denied::Invalid(e.to_string()))?;
        let id = IdentityId::of(&key);
        let old_rec = self.identity(&id).await?;
        let old = old_rec.as_ref().map(Self::encode).transpose()?;
        if g.role == IdentityRole::Machine && g.expires.is_none() {
            tracing::warn!(identity = %id, "machine identity granted without an expiry");
        }
        let mut rec = IdentityRecord::new(key.to_string(), g.role, g.label.clone(), g.expires);
        rec.granted_by = Some(v.signer_id().clone());
        if old_rec.as_ref().is_some_and(|r| r.revoked) {
            return Err(Denied::IdentityRevoked(id));
        }
        if g.role != IdentityRole::Admin
            && old_rec
                .as_ref()
                .is_some_and(|r| r.role == IdentityRole::Admin)
            && self.admins().len() <= 1
        {
            return Err(Denied::LastAdmin);
        }
        let audit = AuditDraft::new(
            v.signer_id().to_string(),
            Action::IdentityGrant,
            id.to_string(),
        )
        .detail("role", g.role.as_str())
        .detail("label", g.label.clone())
        .detail("expires", g.expires)
        // A role change says what it changed from (null: a new identity).
        .detail("previous_role", old_rec.as_ref().map(|r| r.role.as_str()));
        self.store
            .authority_write(
                vec![AuthorityWrite {
                    row: self.row(IDENTITY, id.as_str(), Self::encode(&rec)?),
                    expect: old,
                }],
                Some(audit),
                None,
            )
            .await
            .map_err(tampered_on_conflict)?;
        lock(&self.cache).identities.insert(id.clone(), rec);
        Ok(id)
    }

    /// An owner activates or deactivates a version.
    pub async fn activate(&self, signed: &[u8]) -> Result<FunctionRecord, Denied> {
        let _writes = self.write_lock().await;
        let (v, signer) = self.verify_signed::<Activation>(signed).await?;
        let a = v.body();
        let f = self
            .function(&a.function_id)
            .await?
            .ok_or_else(|| Denied::UnknownFunction(a.function_id.clone()))?;
        Self::same_name(&f, &a.name)?;
        self.may_act(&signer, v.signer_id(), &f)?;
        if a.and_newer && a.active {
            return Err(Denied::Invalid(
                "\"and_newer\" applies to deactivations only".into(),
            ));
        }
        // A deactivation of everything above the latest deactivates nothing, and is allowed
        // (the signer cannot know the latest but by the gateway's word).
        let past_latest_ok = a.and_newer && a.version == f.latest_version.saturating_add(1);
        if a.version == 0 || (a.version > f.latest_version && !past_latest_ok) {
            return Err(Denied::UnknownFunction(format!(
                "{} version {}",
                a.function_id, a.version
            )));
        }
        if a.active {
            let m = self
                .manifest(&a.function_id, a.version)
                .await?
                .ok_or_else(|| {
                    Denied::UnknownFunction(format!("{} version {}", a.function_id, a.version))
                })?;
            self.signer_trusted(&m)?;
        }
        let mut rec = (*f).clone();
        rec.active
            .retain(|x| *x != a.version && !(a.and_newer && *x > a.version));
        if a.active {
            rec.active.push(a.version);
            rec.active.sort_unstable();
        }
        let audit = AuditDraft::new(
            v.signer_id().to_string(),
            Action::FunctionActivate,
            rec.name.clone(),
        )
        .detail("function_id", rec.function_id.clone())
        .detail("version", a.version)
        .detail("active", a.active)
        .detail("and_newer", a.and_newer);
        self.store
            .authority_write(
                vec![AuthorityWrite {
                    row: self.row(FUNCTION, &rec.function_id, Self::encode(&rec)?),
                    expect: Some(Self::encode(f.as_ref())?),
                }],
                Some(audit),
                Some(cloister_types::namespace_of(&rec.function_id)),
            )
            .await
            .map_err(tampered_on_conflict)?;
        lock(&self.cache)
            .functions
            .insert(rec.function_id.clone(), Arc::new(rec.clone()));
        Ok(rec)
    }

    /// Rotates, revokes or changes owners (see [`RegistryChange`] for who may sign each).
    pub async fn change_registry(&self, signed: &[u8]) -> Result<RegistryOutcome, Denied> {
        let _writes = self.write_lock().await;
        let (v, signer) = self.verify_signed::<RegistryChange>(signed).await?;
        let signer_id = v.signer_id().clone();
        match v.body().clone() {
            RegistryChange::Rotate {
                new_public_key,
                proof,
            } => {
                self.rotate(&signer_id, &signer, &new_public_key, &proof)
                    .await
            }
            RegistryChange::Revoke {
                identity_id,
                compromised,
            } => {
                let target =
                    IdentityId::parse(&identity_id).map_err(|e| Denied::Invalid(e.to_string()))?;
                if signer.role != IdentityRole::Admin && target != signer_id {
                    return Err(Denied::NotAdmin(signer_id));
                }
                self.revoke(&signer_id, &target, compromised).await
            }
            RegistryChange::Owners {
                function_id,
                name,
                add,
                remove,
            } => {
                self.change_owners(&signer_id, &signer, &function_id, &name, &add, &remove)
                    .await
            }
            RegistryChange::ExecutorPolicy { version, policy } => {
                if signer.role != IdentityRole::Admin {
                    return Err(Denied::NotAdmin(signer_id));
                }
                let v = self
                    .set_executor_policy(&signer_id, version, &policy)
                    .await?;
                Ok(RegistryOutcome {
                    policy_version: Some(v),
                    ..RegistryOutcome::default()
                })
            }
            _ => Err(Denied::Invalid("unknown registry change".into())),
        }
    }

    /// Every function record (MAC-verified), from the database.
    async fn all_functions(&self) -> Result<Vec<FunctionRecord>, Denied> {
        let mut out = Vec::new();
        for row in self.store.authority_list(FUNCTION).await? {
            if let Some(f) = self.function(&row.key).await? {
                out.push((*f).clone());
            }
        }
        Ok(out)
    }

    async fn rotate(
        &self,
        old_id: &IdentityId,
        old: &IdentityRecord,
        new_public_key: &str,
        proof: &str,
    ) -> Result<RegistryOutcome, Denied> {
        let key = hex::decode(new_public_key)
            .ok()
            .and_then(|b| VerifyingKey::from_slice(&b).ok())
            .ok_or_else(|| Denied::Invalid("new_public_key must be a hex Ed25519 key".into()))?;
        let sig = hex::decode(proof).map_err(|_| Denied::Invalid("proof must be hex".into()))?;
        key.verify(
            &cloister_authority::ops::rotation_proof_message(old_id, &self.platform),
            &sig,
        )
        .map_err(|_| {
            Denied::Signature(AuthorityError::Malformed(
                "the new key's proof of possession does not verify".into(),
            ))
        })?;
        let new_id = IdentityId::of(&key);
        if self.identity(&new_id).await?.is_some() {
            return Err(Denied::NameTaken(format!(
                "identity {new_id} (already in the registry; rotate to a fresh key)"
            )));
        }
        let mut new =
            IdentityRecord::new(key.to_string(), old.role, old.label.clone(), old.expires);
        new.granted_by = old.granted_by.clone();
        let mut retired = old.clone();
        retired.revoked = true;
        retired.rotated_to = Some(new_id.clone());
        let mut writes = vec![
            AuthorityWrite {
                row: self.row(IDENTITY, old_id.as_str(), Self::encode(&retired)?),
                expect: Some(Self::encode(old)?),
            },
            AuthorityWrite {
                row: self.row(IDENTITY, new_id.as_str(), Self::encode(&new)?),
                expect: None,
            },
        ];
        let mut changed = Vec::new();
        for f in self.all_functions().await? {
            if !f.owners.contains(old_id) {
                continue;
            }
            let mut g = f.clone();
            g.owners.retain(|o| o != old_id);
            g.owners.push(new_id.clone());
            writes.push(AuthorityWrite {
                row: self.row(FUNCTION, &g.function_id, Self::encode(&g)?),
                expect: Some(Self::encode(&f)?),
            });
            changed.push(g);
        }
        let audit = AuditDraft::new(
            old_id.to_string(),
            Action::IdentityRotate,
            old_id.to_string(),
        )
        .detail("new_identity", new_id.to_string())
        .detail("role", old.role.as_str())
        .detail("functions", changed.len());
        self.store
            .authority_write(writes, Some(audit), None)
            .await
            .map_err(tampered_on_conflict)?;
        let mut c = lock(&self.cache);
        c.identities.insert(old_id.clone(), retired);
        c.identities.insert(new_id.clone(), new);
        let owners = changed
            .into_iter()
            .map(|g| {
                let owners = g.owners.clone();
                let id = g.function_id.clone();
                c.functions.insert(id.clone(), Arc::new(g));
                (id, owners)
            })
            .collect();
        Ok(RegistryOutcome {
            identity_id: Some(old_id.clone()),
            rotated_to: Some(new_id),
            revoked: true,
            owners,
            distrusted_versions: 0,
            policy_version: None,
        })
    }

    async fn revoke(
        &self,
        by: &IdentityId,
        target: &IdentityId,
        compromised: bool,
    ) -> Result<RegistryOutcome, Denied> {
        let old = self
            .identity(target)
            .await?
            .ok_or_else(|| Denied::UnknownIdentity(target.clone()))?;
        if old.revoked && (old.compromised || !compromised) {
            return Err(Denied::IdentityRevoked(target.clone()));
        }
        // A leaked key may have been rotated by the thief: compromise reaches every key it
        // rotated to (an admin grants the rightful owner a fresh one).
        let mut chain = vec![(target.clone(), old.clone())];
        if compromised {
            let mut next = old.rotated_to.clone();
            while let Some(id) = next {
                if chain.iter().any(|(c, _)| *c == id) {
                    break;
                }
                let Some(r) = self.identity(&id).await? else {
                    break;
                };
                next = r.rotated_to.clone();
                chain.push((id, r));
            }
        }
        let now = unix_now();
        let admins_left = self
            .admins()
            .iter()
            .filter(|a| !chain.iter().any(|(c, _)| c.as_str() == a.as_str()))
            .count();
        if chain
            .iter()
            .any(|(_, r)| r.role == IdentityRole::Admin && r.live(now))
            && admins_left == 0
        {
            return Err(Denied::LastAdmin);
        }
        // Count the versions this distrusts, for the caller and the audit entry.
        let mut distrusted = 0u32;
        if compromised {
            for f in self.all_functions().await? {
                for version in f.active.iter().copied() {
                    if let Some(m) = self.manifest(&f.function_id, version).await?
                        && chain.iter().any(|(c, _)| *c == m.signer)
                    {
                        distrusted += 1;
                    }
                }
            }
        }
        let mut writes = Vec::new();
        let mut updated = Vec::new();
        for (id, r) in &chain {
            let mut rec = r.clone();
            rec.revoked = true;
            rec.compromised |= compromised;
            writes.push(AuthorityWrite {
                row: self.row(IDENTITY, id.as_str(), Self::encode(&rec)?),
                expect: Some(Self::encode(r)?),
            });
            updated.push((id.clone(), rec));
        }
        let audit = AuditDraft::new(by.to_string(), Action::IdentityRevoke, target.to_string())
            .detail("compromised", compromised)
            .detail(
                "successors",
                chain
                    .iter()
                    .skip(1)
                    .map(|(c, _)| c.to_string())
                    .collect::<Vec<_>>(),
            )
            .detail("distrusted_active_versions", distrusted);
        self.store
            .authority_write(writes, Some(audit), None)
            .await
            .map_err(tampered_on_conflict)?;
        {
            let mut c = lock(&self.cache);
            for (id, rec) in updated {
                c.identities.insert(id, rec);
            }
        }
        tracing::warn!(identity = %target, compromised, distrusted, "identity revoked");
        Ok(RegistryOutcome {
            identity_id: Some(target.clone()),
            rotated_to: None,
            revoked: true,
            owners: Vec::new(),
            distrusted_versions: distrusted,
            policy_version: None,
        })
    }

    async fn change_owners(
        &self,
        signer_id: &IdentityId,
        signer: &IdentityRecord,
        function_id: &str,
        name: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<RegistryOutcome, Denied> {
        if signer.role == IdentityRole::Machine {
            return Err(Denied::RoleForbids {
                role: "machine",
                action: "change owners",
            });
        }
        let f = self
            .function(function_id)
            .await?
            .ok_or_else(|| Denied::UnknownFunction(function_id.to_owned()))?;
        Self::same_name(&f, name)?;
        self.may_act(signer, signer_id, &f)?;
        let mut g = (*f).clone();
        for r in remove {
            let id = IdentityId::parse(r).map_err(|e| Denied::Invalid(e.to_string()))?;
            g.owners.retain(|o| *o != id);
        }
        let now = unix_now();
        for a in add {
            let id = IdentityId::parse(a).map_err(|e| Denied::Invalid(e.to_string()))?;
            match self.identity(&id).await? {
                None => return Err(Denied::UnknownIdentity(id)),
                Some(r) if r.revoked => return Err(Denied::IdentityRevoked(id)),
                Some(r) if !r.live(now) => return Err(Denied::IdentityExpired(id)),
                Some(_) => {}
            }
            if !g.owners.contains(&id) {
                g.owners.push(id);
            }
        }
        {
            let c = lock(&self.cache);
            let live = g
                .owners
                .iter()
                .filter(|o| c.identities.get(*o).is_some_and(|r| r.live(now)))
                .count();
            if live == 0 {
                return Err(Denied::Invalid(
                    "a function keeps at least one owner that is neither revoked nor expired"
                        .into(),
                ));
            }
        }
        let audit = AuditDraft::new(
            signer_id.to_string(),
            Action::FunctionOwners,
            g.name.clone(),
        )
        .detail("function_id", g.function_id.clone())
        .detail(
            "owners",
            g.owners.iter().map(ToString::to_string).collect::<Vec<_>>(),
        );
        self.store
            .authority_write(
                vec![AuthorityWrite {
                    row: self.row(FUNCTION, &g.function_id, Self::encode(&g)?),
                    expect: Some(Self::encode(f.as_ref())?),
                }],
                Some(audit),
                None,
            )
            .await
            .map_err(tampered_on_conflict)?;
        let owners = g.owners.clone();
        lock(&self.cache)
            .functions
            .insert(g.function_id.clone(), Arc::new(g));
        Ok(RegistryOutcome {
            identity_id: None,
            rotated_to: None,
            revoked: false,
            owners: vec![(function_id.to_owned(), owners)],
            distrusted_versions: 0,
            policy_version: None,
        })
    }

    /// The registry (id, record) in id order, from memory.
    pub fn registry(&self) -> Vec<(IdentityId, IdentityRecord)> {
        lock(&self.cache)
            .identities
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A signed request about one key of one function: what it names.
trait NamesKey {
    /// (function id, function name, key name).
    fn names(&self) -> (&str, &str, &str);
}

impl NamesKey for cloister_authority::ops::KeyWrite {
    fn names(&self) -> (&str, &str, &str) {
        (&self.function_id, &self.function, &self.name)
    }
}

impl NamesKey for cloister_authority::ops::KeyUse {
    fn names(&self) -> (&str, &str, &str) {
        (&self.function_id, &self.function, &self.name)
    }
}

impl NamesKey for cloister_authority::ops::KeyExport {
    fn names(&self) -> (&str, &str, &str) {
        (&self.function_id, &self.function, &self.name)
    }
}
