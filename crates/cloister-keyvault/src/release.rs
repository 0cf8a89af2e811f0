//! Secret release over the mutually attested channel: an executor names the function version
//! and the hash of the code it loaded; keyvault answers with that version's owner-signed
//! manifest and exactly the secrets it declares, or refuses (and audits the refusal). Every
//! connection's attestation is audited.

use std::future::Future;
use std::sync::Arc;

use cloister_audit::{Action, AuditDraft};
use cloister_channel::{AttestedStream, ChannelAcceptor, ChannelError, Incoming, TlsConn};
use cloister_rpc::keyvault::{
    ExecutorMessage, FleetKeys, FleetSecret, KeyvaultReply, ManifestView, ReadAck, ReadBatch,
    ReleaseError, ReleaseRequest, ReleaseResponse, Released, SignRequest, SignResponse,
    executor_message, keyvault_reply, release_response,
};
use cloister_types::{ErrorCode, namespace_of};
use prost::Message;
use tokio::net::TcpListener;

use crate::error::VaultError;
use crate::vault::Vault;

/// Serves executors on `listener` until `shutdown` resolves.
pub async fn serve_channel(
    listener: TcpListener,
    acceptor: Arc<ChannelAcceptor>,
    vault: Arc<Vault>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let vault = vault.clone();
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(ch) => {
                    let m = hex::encode(&ch.peer().verified.claims().measurement.0);
                    let role = ch.peer().role.clone();
                    tracing::info!(peer = %addr, role, measurement = %m, "executor attested");
                    let audit =
                        AuditDraft::new(format!("{role}:{m}"), Action::AttestationSuccess, role)
                            .detail("peer", addr.to_string())
                            .detail("measurement", m.clone());
                    if let Err(e) = vault.audit(audit).await {
                        tracing::error!(error = %e, "cannot audit an attestation");
                        return;
                    }
                    if let Err(e) = serve_connection(ch, &vault, &m).await {
                        tracing::info!(peer = %addr, error = %e, "executor channel closed");
                    }
                }
                Err(e) => {
                    tracing::warn!(peer = %addr, error = %e, "refused a peer's attestation");
                    let audit =
                        AuditDraft::new(addr.to_string(), Action::AttestationFailure, "executor")
                            .detail("code", e.code())
                            .detail("reason", e.to_string());
                    if let Err(e) = vault.audit_untrusted(audit).await {
                        tracing::error!(error = %e, "cannot audit an attestation failure");
                    }
                }
            }
        });
    }
}

/// What keyvault knows of one executor connection's reads, for its disconnect entry.
#[derive(Default)]
struct ReadState {
    boot_id: String,
    last_read_seq: u64,
    clean: bool,
}

/// The fleet keys valid now, private halves included, for the attested executor `actor`
/// (its measurement was checked against the executor policy by the caller). Audited when
/// they differ from the last set released on this connection (`last`): an executor asked to
/// refresh by requests under unknown key ids must not flood the audit log with repeats.
async fn fleet_release(
    vault: &Vault,
    actor: &str,
    last: &mut Option<(u64, Vec<u64>)>,
) -> Result<FleetKeys, Refusal> {
    let now = cloister_authority::request::unix_now();
    let internal = |e: VaultError| Refusal::new(ErrorCode::Internal, e.to_string());
    let mut keys = Vec::new();
    let generation = vault.fleet_generation();
    for epoch in crate::fleet::epochs_valid_at(now) {
        let pair = vault.fleet_key(generation, epoch).map_err(internal)?;
        let public = crate::fleet::public_of(&pair, epoch);
        keys.push(FleetSecret {
            key_id: public.key_id.to_vec(),
            epoch,
            public_key: public.public.0.to_vec(),
            private_key: pair.private().expose().to_vec(),
            not_before: public.not_before,
            not_after: public.not_after,
        });
    }
    let epochs: Vec<u64> = keys.iter().map(|k| k.epoch).collect();
    let released = Some((generation, epochs));
    if *last != released {
        let epochs = released.as_ref().map(|r| r.1.clone()).unwrap_or_default();
        let audit = AuditDraft::new(actor, Action::FleetRelease, "fleet")
            .detail("epochs", format!("{epochs:?}"))
            .detail("generation", generation);
        vault.audit(audit).await.map_err(internal)?;
        *last = released;
    }
    Ok(FleetKeys { keys })
}

/// Signs (or gives the public half) with a key of the function whose run the attested
/// executor `actor` asks for: the run is authorised as for a release (function, version,
/// loaded code), and only a key its manifest declares is used.
async fn sign(vault: &Vault, req: SignRequest, actor: &str) -> Result<SignResponse, Refusal> {
    let refused = |e: VaultError| Refusal::new(e.code(), e.to_string());
    let hash = cloister_crypto::keys::SignHash::parse(&req.hash).ok_or_else(|| {
        Refusal::new(
            ErrorCode::InvalidRequest,
            format!(
                "unknown hash {:?}: use sha256, keccak256 or prehashed",
                req.hash
            ),
        )
    })?;
    let manifest = vault
        .authority()
        .authorize_run(&req.function_id, req.version, &req.code_hash)
        .await
        .map_err(|d| refused(VaultError::Denied(d)))?;
    if req.public_key_only {
        let k = vault
            .public_key_for_function(&manifest, &req.key)
            .await
            .map_err(refused)?;
        return Ok(SignResponse {
            algorithm: k.algorithm.as_str().to_owned(),
            key_version: k.version,
            signature: Vec::new(),
            public_key: k.public_key.unwrap_or_default(),
            recovery_id: None,
        });
    }
    let s = vault
        .sign_for_function(
            &manifest,
            &req.key,
            &req.message,
            hash,
            &req.execution_id,
            actor,
        )
        .await
        .map_err(refused)?;
    Ok(SignResponse {
        algorithm: s.key.algorithm.as_str().to_owned(),
        key_version: s.key.version,
        signature: s.signature.bytes,
        public_key: s.key.public_key.unwrap_or_default(),
        recovery_id: s.signature.recovery_id.map(u32::from),
    })
}

/// The answer to a function's signing request, its refusal audited.
async fn sign_reply(vault: &Vault, req: SignRequest, actor: &str) -> keyvault_reply::Body {
    let (function_id, key, execution_id) = (
        req.function_id.clone(),
        req.key.clone(),
        req.execution_id.clone(),
    );
    match sign(vault, req, actor).await {
        Ok(r) => keyvault_reply::Body::Signed(r),
        Err(r) => {
            // Refused uses are audited like refused releases (within the refusals' budgets,
            // by code).
            let audit =
                AuditDraft::new(actor, Action::AuthorityRefusal, namespace_of(&function_id))
                    .detail("operation", "sign")
                    .detail("key", key.chars().take(64).collect::<String>())
                    .detail("code", r.code.as_str())
                    .detail("reason", r.message.clone())
                    .detail("execution_id", execution_id);
            if let Err(e) = vault.audit_untrusted(audit).await {
                tracing::error!(error = %e, "cannot audit a refused key use");
            }
            keyvault_reply::Body::Error(r.into_wire())
        }
    }
}

/// The refusal of a request from an executor whose build an admin removed from the policy.
fn no_longer_allowed() -> Refusal {
    Refusal::new(
        ErrorCode::AttestationFailed,
        "this executor's measurement is no longer on keyvault's executor policy".into(),
    )
}

/// The answer of one concurrent exchange, owed to the connection: sent once by
/// [`ReplyGuard::send`], or as an `internal` refusal if the task ends without one (a panic),
/// so the connection never waits for an answer that will not come.
struct ReplyGuard {
    id: u64,
    done: Option<tokio::sync::mpsc::UnboundedSender<(u64, zeroize::Zeroizing<Vec<u8>>)>>,
}

impl ReplyGuard {
    fn send(mut self, body: keyvault_reply::Body) {
        if let Some(done) = self.done.take() {
            let msg = KeyvaultReply { body: Some(body) };
            let _ = done.send((self.id, zeroize::Zeroizing::new(msg.encode_to_vec())));
        }
    }
}

impl Drop for ReplyGuard {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let msg = KeyvaultReply {
                body: Some(keyvault_reply::Body::Error(
                    Refusal::new(ErrorCode::Internal, "keyvault failed to answer".into())
                        .into_wire(),
                )),
            };
            let _ = done.send((self.id, zeroize::Zeroizing::new(msg.encode_to_vec())));
        }
    }
}

/// Exchanges one executor connection may have running at once. Tagged signing requests run
/// concurrently (their audit entries share commits); everything else is answered in order.
/// Beyond the bound keyvault stops reading the connection until a reply is sent.
pub const MAX_IN_FLIGHT: usize = 256;

/// Sends `reply` as the answer to the exchange `id` (or untagged).
async fn answer<T: TlsConn>(
    ch: &mut AttestedStream<T>,
    id: Option<u64>,
    reply: &[u8],
) -> Result<(), ChannelError> {
    match id {
        Some(id) => ch.send_tagged(id, reply).await,
        None => ch.send(reply).await,
    }
}

async fn serve_connection<T: TlsConn>(
    mut ch: AttestedStream<T>,
    vault: &Arc<Vault>,
    measurement: &str,
) -> Result<(), ChannelError> {
    let actor = format!("executor:{measurement}");
    let mut reads = ReadState::default();
    let mut last_fleet = None;
    let policy_version = vault.authority().executor_policy_version();
    let (done_tx, mut done_rx) =
        tokio::sync::mpsc::unbounded_channel::<(u64, zeroize::Zeroizing<Vec<u8>>)>();
    let mut in_flight = 0usize;
    let result = loop {
        let incoming = tokio::select! {
            biased;
            Some((id, reply)) = done_rx.recv() => {
                in_flight -= 1;
                if let Err(e) = ch.send_tagged(id, &reply).await {
                    break Err(e);
                }
                continue;
            }
            incoming = ch.recv_any(), if in_flight < MAX_IN_FLIGHT => incoming,
        };
        let (id, bytes) = match incoming {
            Ok(Incoming { id, data }) => (id, data),
            Err(ChannelError::Closed) => break Ok(()),
            Err(e) => break Err(e),
        };
        // The executor policy may have changed since this channel attested: a measurement
        // an admin removed gets no more secrets (its read records are still kept), and any
        // policy change closes the channel after this reply so the executor re-attests under
        // the policy in force.
        let allowed = vault.authority().executor_allowed(measurement);
        let policy_changed = vault.authority().executor_policy_version() != policy_version;
        let decoded = ExecutorMessage::decode(bytes.as_slice()).map(|m| m.body);
        // Nothing a removed build could use leaves keyvault: no secrets, no fleet keys.
        let sensitive = matches!(
            decoded,
            Ok(Some(
                executor_message::Body::Release(_)
                    | executor_message::Body::Fleet(_)
                    | executor_message::Body::Sign(_)
            ))
        );
        if !allowed && sensitive {
            tracing::warn!(
                measurement,
                "executor measurement no longer allowed; closing its channel"
            );
            let refusal = no_longer_allowed();
            let msg = KeyvaultReply {
                body: Some(keyvault_reply::Body::Error(refusal.into_wire())),
            };
            let _ = answer(&mut ch, id, &msg.encode_to_vec()).await;
            let audit = AuditDraft::new(actor.as_str(), Action::AttestationFailure, "executor")
                .detail("code", "measurement_not_allowed")
                .detail("reason", "removed from the executor policy");
            if let Err(e) = vault.audit_untrusted(audit).await {
                tracing::error!(error = %e, "cannot audit a refused executor");
            }
            break Ok(());
        }
        let decoded = match (id, decoded) {
            (Some(id), Ok(Some(executor_message::Body::Sign(req)))) => {
                in_flight += 1;
                let (vault, actor, m) = (vault.clone(), actor.clone(), measurement.to_owned());
                let reply = ReplyGuard {
                    id,
                    done: Some(done_tx.clone()),
                };
                tokio::spawn(async move {
                    // Checked again as the signature is about to be made: a build removed from
                    // the policy while this request waited gets no signature.
                    let body = if vault.authority().executor_allowed(&m) {
                        sign_reply(&vault, req, &actor).await
                    } else {
                        keyvault_reply::Body::Error(no_longer_allowed().into_wire())
                    };
                    reply.send(body);
                });
                if policy_changed {
                    break Ok(());
                }
                continue;
            }
            (_, decoded) => decoded,
        };
        let reply = match decoded {
            Ok(Some(executor_message::Body::Release(req))) => {
                keyvault_reply::Body::Release(release_reply(release(vault, req, &actor).await))
            }
            Ok(Some(executor_message::Body::Fleet(_))) => {
                match fleet_release(vault, &actor, &mut last_fleet).await {
                    Ok(keys) => keyvault_reply::Body::Fleet(keys),
                    Err(r) => keyvault_reply::Body::Error(r.into_wire()),
                }
            }
            Ok(Some(executor_message::Body::Sign(req))) => sign_reply(vault, req, &actor).await,
            Ok(Some(executor_message::Body::Reads(batch))) => {
                match record_reads(vault, batch, &actor, &mut reads).await {
                    Ok(n) => keyvault_reply::Body::Ack(ReadAck { recorded: n }),
                    Err(r) => keyvault_reply::Body::Error(r.into_wire()),
                }
            }
            Ok(None) => keyvault_reply::Body::Error(
                Refusal::new(ErrorCode::InvalidRequest, "empty message".into()).into_wire(),
            ),
            Err(e) => keyvault_reply::Body::Error(
                Refusal::new(
                    ErrorCode::InvalidRequest,
                    format!("malformed executor message: {e}"),
                )
                .into_wire(),
            ),
        };
        let mut msg = KeyvaultReply { body: Some(reply) };
        let encoded = zeroize::Zeroizing::new(msg.encode_to_vec());
        // Fleet private keys, secret values and code keys do not outlive the send.
        match &mut msg.body {
            Some(keyvault_reply::Body::Fleet(f)) => {
                for k in &mut f.keys {
                    zeroize::Zeroize::zeroize(&mut k.private_key);
                }
            }
            Some(keyvault_reply::Body::Release(ReleaseResponse {
                outcome: Some(release_response::Outcome::Released(r)),
            })) => {
                zeroize::Zeroize::zeroize(&mut r.code_key);
                for v in r.values.values_mut() {
                    zeroize::Zeroize::zeroize(v);
                }
            }
            _ => {}
        }
        if let Err(e) = answer(&mut ch, id, &encoded).await {
            break Err(e);
        }
        if !allowed || policy_changed {
            tracing::info!(
                measurement,
                "executor policy changed; closing the channel to re-attest"
            );
            break Ok(());
        }
    };
    // Signatures still being made are answered before the channel closes (refused instead if
    // this executor's build has left the policy meanwhile). Every task answers, even one that
    // panicked (`ReplyGuard`), and the channel of answers ends with the last of them.
    drop(done_tx);
    if result.is_ok() {
        while in_flight > 0 {
            let Some((id, reply)) = done_rx.recv().await else {
                break;
            };
            in_flight -= 1;
            let refusal;
            let reply = if vault.authority().executor_allowed(measurement) {
                reply.as_slice()
            } else {
                refusal = KeyvaultReply {
                    body: Some(keyvault_reply::Body::Error(no_longer_allowed().into_wire())),
                }
                .encode_to_vec();
                refusal.as_slice()
            };
            if ch.send_tagged(id, reply).await.is_err() {
                break;
            }
        }
    }
    if !reads.boot_id.is_empty() {
        let audit = AuditDraft::new(actor.as_str(), Action::ExecutorDisconnect, "executor")
            .detail("boot", reads.boot_id.clone())
            .detail("last_read_seq", reads.last_read_seq)
            .detail("clean", reads.clean);
        if let Err(e) = vault.audit(audit).await {
            tracing::error!(error = %e, "cannot audit an executor disconnect");
        }
    }
    result
}

fn release_reply(outcome: Result<Released, Refusal>) -> ReleaseResponse {
    ReleaseResponse {
        outcome: Some(match outcome {
            Ok(r) => release_response::Outcome::Released(r),
            Err(r) => release_response::Outcome::Error(r.into_wire()),
        }),
    }
}

/// Largest read batch accepted.
const MAX_READS_PER_BATCH: usize = 4096;

/// Appends one `secret.read` entry per reported read, in one transaction.
async fn record_reads(
    vault: &Vault,
    batch: ReadBatch,
    actor: &str,
    state: &mut ReadState,
) -> Result<u64, Refusal> {
    if batch.reads.len() > MAX_READS_PER_BATCH || batch.boot_id.len() > 64 {
        return Err(Refusal::new(
            ErrorCode::PayloadTooLarge,
            "read batch too large".into(),
        ));
    }
    let drafts: Vec<AuditDraft> = batch
        .reads
        .iter()
        .map(|r| {
            AuditDraft::new(actor, Action::SecretRead, namespace_of(&r.function_id))
                .detail("version", r.version)
                .detail("names", r.names.clone())
                .detail("execution_id", r.execution_id.clone())
                .detail("at_ms", r.at_ms)
                .detail("cached", r.cached)
                .detail("boot", batch.boot_id.clone())
                .detail("read_seq", r.read_seq)
        })
        .collect();
    let n = drafts.len() as u64;
    vault.audit_many(drafts).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record secret reads");
        Refusal::new(ErrorCode::Unavailable, "cannot record reads".into())
    })?;
    state.boot_id = batch.boot_id;
    if let Some(last) = batch.reads.iter().map(|r| r.read_seq).max() {
        state.last_read_seq = state.last_read_seq.max(last);
    }
    state.clean = batch.r#final;
    Ok(n)
}

/// Why a release was refused.
#[derive(Debug)]
struct Refusal {
    code: ErrorCode,
    message: String,
    secret: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: String) -> Self {
        Self {
            code,
            message,
            secret: String::new(),
        }
    }

    fn into_wire(self) -> ReleaseError {
        ReleaseError {
            code: self.code.as_str().to_owned(),
            message: self.message,
            secret: self.secret,
        }
    }
}

async fn release(vault: &Vault, req: ReleaseRequest, actor: &str) -> Result<Released, Refusal> {
    let refused = |e: VaultError| {
        if matches!(e, VaultError::Keys(_) | VaultError::Store(_)) {
            tracing::error!(error = %e, "secret release failed");
        }
        let mut r = Refusal::new(e.code(), e.to_string());
        if let VaultError::Missing { name, .. } = e {
            r.secret = name;
        }
        r
    };
    let manifest = match vault
        .authority()
        .authorize_run(&req.function_id, req.version, &req.code_hash)
        .await
    {
        Ok(m) => m,
        Err(d) => {
            tracing::warn!(function_id = %req.function_id, version = req.version, error = %d, "release refused");
            let audit = AuditDraft::new(
                actor,
                Action::AuthorityRefusal,
                namespace_of(&req.function_id),
            )
            .detail("operation", "release")
            .detail("version", req.version)
            .detail("code_hash", req.code_hash.clone())
            .detail("code", d.code().as_str())
            .detail("execution_id", req.execution_id.clone());
            if let Err(e) = vault.audit_untrusted(audit).await {
                tracing::error!(error = %e, "cannot audit a refused release");
            }
            return Err(refused(VaultError::Denied(d)));
        }
    };
    let (epoch, values) = vault
        .release(&manifest, &req.execution_id, actor)
        .await
        .map_err(refused)?;
    let m = &manifest.manifest;
    let egress_only = vault
        .authority()
        .egress_only_names(&manifest)
        .await
        .map_err(|d| refused(VaultError::Denied(d)))?;
    let egress_json = match &m.egress {
        None => String::new(),
        Some(e) => serde_json::to_string(e).map_err(|e| {
            tracing::error!(error = %e, "cannot write out an egress policy");
            Refusal::new(
                ErrorCode::Internal,
                "cannot write out the egress policy".into(),
            )
        })?,
    };
    let (mut readable, mut egress_values) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    for (k, v) in values {
        let bytes = v.expose().to_vec();
        if egress_only.contains(&k) {
            egress_values.insert(k, bytes);
        } else {
            readable.insert(k, bytes);
        }
    }
    // Confidential code: the function's code key travels with the manifest it was granted by.
    let code_key = if m.confidential {
        vault
            .code_key(&manifest.function_id)
            .map_err(refused)?
            .expose()
            .to_vec()
    } else {
        Vec::new()
    };
    Ok(Released {
        code_key,
        epoch,
        values: readable,
        egress_values,
        manifest: Some(ManifestView {
            function_id: manifest.function_id.clone(),
            version: manifest.version,
            name: m.name.clone(),
            environment: m.environment.clone(),
            runtime: m.runtime.clone(),
            entrypoint: m.entrypoint.clone(),
            code_hash: m.code_hash.clone(),
            secrets: m.secrets.clone(),
            timeout_ms: m.limits.timeout_ms,
            memory_mb: m.limits.memory_mb,
            digest: manifest.digest.clone(),
            env: m.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            source_name: m.source_name.clone().unwrap_or_default(),
            keys: m.keys.clone(),
            egress_json,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_vault_store::AuditLog as _;

    #[tokio::test]
    async fn fleet_keys_released_are_the_published_ones_and_the_release_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(cloister_vault_store::SqliteVault::open(&dir.path().join("c.db")).unwrap());
        let sealing = crate::Sealing {
            measurement: [1; 48],
            key: cloister_crypto::SecretKey32::from_array([2; 32]),
        };
        let (vault, _) = Vault::open(store.clone(), &sealing, None).await.unwrap();
        let mut last = None;
        let released = fleet_release(&vault, "executor:abc", &mut last)
            .await
            .unwrap();
        // The same keys again on the same connection: not audited twice.
        fleet_release(&vault, "executor:abc", &mut last)
            .await
            .unwrap();
        let published = vault
            .fleet_public(cloister_authority::request::unix_now())
            .unwrap();
        assert_eq!(released.keys.len(), published.len());
        for (k, p) in released.keys.iter().zip(&published) {
            assert_eq!((k.epoch, k.key_id.as_slice()), (p.epoch, &p.key_id[..]));
            // The private half is the published key's.
            let mut sk = [0u8; 32];
            sk.copy_from_slice(&k.private_key);
            let pair = cloister_crypto::HpkeKeyPair::from_private(
                cloister_crypto::SecretKey32::from_array(sk),
            )
            .unwrap();
            assert_eq!(pair.public(), p.public);
        }
        // Another epoch's key is another key.
        let e = published[0].epoch;
        let g = vault.fleet_generation();
        assert_ne!(
            vault.fleet_key(g, e).unwrap().public(),
            vault.fleet_key(g, e + 1).unwrap().public()
        );
        // Another generation's key (after a policy change) is another key.
        assert_ne!(
            vault.fleet_key(g, e).unwrap().public(),
            vault.fleet_key(g + 1, e).unwrap().public()
        );
        let audit = store.audit_list(0, 100).await.unwrap();
        assert_eq!(
            audit
                .iter()
                .filter(|a| a.action == "key.fleet_release" && a.actor == "executor:abc")
                .count(),
            1,
            "{audit:?}"
        );
    }
}
