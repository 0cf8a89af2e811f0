//! Chain verification: recompute every hash and link, then hold the chain against keyvault's
//! signed checkpoints so that a shortened chain is caught too.

use crate::checkpoint::Checkpoint;
use crate::entry::{AuditEntry, GENESIS_HASH};
use cloister_crypto::VerifyingKey;
use serde::Serialize;

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The entry's fields do not hash to its stored hash (edited, or moved to another seq).
    #[error("entry {seq} does not match its hash (edited or moved)")]
    Edited {
        /// The entry.
        seq: u64,
    },
    /// An entry is missing: the chain jumps from `seq - 1` to a later number.
    #[error("entry {seq} is missing (deleted or reordered)")]
    Missing {
        /// The first missing sequence number.
        seq: u64,
    },
    /// The entry does not point at the hash of the entry before it.
    #[error("entry {seq} does not link to entry {}", seq - 1)]
    BrokenLink {
        /// The entry.
        seq: u64,
    },
    /// A checkpoint covers entries that are no longer there.
    #[error("the chain ends at {last} but keyvault signed a checkpoint at {checkpoint}: entries from {} on were truncated", last + 1)]
    Truncated {
        /// Last entry present.
        last: u64,
        /// Highest signed checkpoint.
        checkpoint: u64,
    },
    /// A checkpoint's hash differs from the entry it covers.
    #[error("entry {seq} differs from keyvault's signed checkpoint")]
    CheckpointMismatch {
        /// The entry.
        seq: u64,
    },
    /// A checkpoint is not signed by keyvault's audit key.
    #[error("the checkpoint at {seq} is not signed by keyvault's audit key")]
    BadCheckpoint {
        /// Its sequence number.
        seq: u64,
    },
    /// The entry lacks keyvault's MAC: written or rewritten outside keyvault.
    #[error("entry {seq} carries no valid keyvault MAC (written or rewritten outside keyvault)")]
    Unauthenticated {
        /// The entry.
        seq: u64,
    },
}

impl Problem {
    /// The first sequence number that is wrong.
    pub fn first_bad_seq(&self) -> u64 {
        match self {
            Self::Edited { seq }
            | Self::Missing { seq }
            | Self::BrokenLink { seq }
            | Self::CheckpointMismatch { seq }
            | Self::BadCheckpoint { seq }
            | Self::Unauthenticated { seq } => *seq,
            Self::Truncated { last, .. } => last + 1,
        }
    }
}

/// Result of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Whether the chain and every checkpoint check out.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// Last sequence number present (0 for an empty chain).
    pub head_seq: u64,
    /// Hash of the last entry (hex; zeros for an empty chain).
    pub head_hash: String,
    /// Checkpoints whose signature and hash were checked.
    pub checkpoints_verified: u64,
    /// Highest signed checkpoint.
    pub last_checkpoint_seq: Option<u64>,
    /// First wrong sequence number, if any.
    pub first_bad_seq: Option<u64>,
    /// What was wrong, if anything.
    pub problem: Option<Problem>,
    /// keyvault's anti-rollback epoch (set by keyvault; 0 when computed elsewhere). It rises
    /// only by an admin-signed restore, after which the chain may be shorter than before.
    pub epoch: u64,
}

/// Verifies `entries` (in stored order by seq) and `checkpoints` against keyvault's audit key.
pub fn verify_chain(
    entries: &[AuditEntry],
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
) -> ChainReport {
    let mut report = ChainReport {
        ok: false,
        entries: entries.len() as u64,
        head_seq: 0,
        head_hash: hex::encode(GENESIS_HASH),
        checkpoints_verified: 0,
        last_checkpoint_seq: checkpoints.iter().map(|c| c.seq).max(),
        first_bad_seq: None,
        problem: None,
        epoch: 0,
    };
    let problem = check_links(entries, &mut report)
        .or_else(|| check_checkpoints(entries, checkpoints, key, &mut report));
    report.first_bad_seq = problem.as_ref().map(Problem::first_bad_seq);
    report.ok = problem.is_none();
    report.problem = problem;
    report
}

/// [`verify_chain`] plus keyvault's MAC on every entry (`mac_ok(hash, mac)`): what keyvault
/// itself checks; clients without the key check the chain and checkpoints only.
pub fn verify_chain_with_macs(
    entries: &[AuditEntry],
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    mac_ok: impl Fn(&str, &str) -> bool,
) -> ChainReport {
    let mut report = verify_chain(entries, checkpoints, key);
    let unauthenticated = entries.iter().find(|e| !mac_ok(&e.hash, &e.mac));
    if let Some(e) = unauthenticated
        && report.first_bad_seq.is_none_or(|s| e.seq < s)
    {
        let p = Problem::Unauthenticated { seq: e.seq };
        report.first_bad_seq = Some(e.seq);
        report.ok = false;
        report.problem = Some(p);
    }
    report
}

fn check_links(entries: &[AuditEntry], report: &mut ChainReport) -> Option<Problem> {
    let mut prev = hex::encode(GENESIS_HASH);
    for (i, e) in entries.iter().enumerate() {
        let expected = i as u64 + 1;
        if e.seq != expected {
            return Some(Problem::Missing { seq: expected });
        }
        if hex::encode(e.compute_hash()) != e.hash {
            return Some(Problem::Edited { seq: e.seq });
        }
        if e.prev_hash != prev {
            return Some(Problem::BrokenLink { seq: e.seq });
        }
        prev.clone_from(&e.hash);
        report.head_seq = e.seq;
    }
    report.head_hash = prev;
    None
}

fn check_checkpoints(
    entries: &[AuditEntry],
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    report: &mut ChainReport,
) -> Option<Problem> {
    let mut sorted: Vec<&Checkpoint> = checkpoints.iter().collect();
    sorted.sort_by_key(|c| c.seq);
    for c in sorted {
        if !c.is_signed_by(key) {
            return Some(Problem::BadCheckpoint { seq: c.seq });
        }
        let Some(entry) = c
            .seq
            .checked_sub(1)
            .and_then(|i| entries.get(usize::try_from(i).ok()?))
        else {
            return Some(Problem::Truncated {
                last: report.head_seq,
                checkpoint: c.seq,
            });
        };
        if entry.hash != c.hash {
            return Some(Problem::CheckpointMismatch { seq: c.seq });
        }
        report.checkpoints_verified += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Action, AuditDraft};
    use cloister_crypto::SigningKey;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let e = AuditDraft::new("kv", Action::SecretPut, format!("s{seq}")).chain(
                    seq,
                    format!("t{seq}"),
                    prev,
                );
                prev = e.hash_bytes().unwrap();
                e
            })
            .collect()
    }

    fn cp(key: &SigningKey, entries: &[AuditEntry], seq: u64) -> Checkpoint {
        let e = &entries[seq as usize - 1];
        Checkpoint::sign(key, seq, &e.hash, "now".into())
    }

    #[test]
    fn intact_chain_verifies() {
        let k = SigningKey::generate().unwrap();
        let e = chain(10);
        let r = verify_chain(&e, &[cp(&k, &e, 5), cp(&k, &e, 10)], &k.verifying_key());
        assert!(r.ok, "{r:?}");
        assert_eq!((r.head_seq, r.checkpoints_verified), (10, 2));
        let empty = verify_chain(&[], &[], &k.verifying_key());
        assert!(empty.ok);
    }

    #[test]
    fn each_tampering_names_the_first_bad_seq() {
        let k = SigningKey::generate().unwrap();
        let vk = k.verifying_key();
        let e = chain(10);
        let cps = [cp(&k, &e, 10)];

        let mut edited = e.clone();
        edited[3].subject = "other".into();
        assert_eq!(verify_chain(&edited, &cps, &vk).first_bad_seq, Some(4));

        let mut deleted = e.clone();
        deleted.remove(6);
        assert_eq!(verify_chain(&deleted, &cps, &vk).first_bad_seq, Some(7));

        let mut swapped = e.clone();
        swapped.swap(2, 5);
        assert_eq!(verify_chain(&swapped, &cps, &vk).first_bad_seq, Some(3));

        let truncated = e[..8].to_vec();
        let r = verify_chain(&truncated, &cps, &vk);
        assert_eq!(r.first_bad_seq, Some(9));
        assert!(matches!(
            r.problem,
            Some(Problem::Truncated {
                last: 8,
                checkpoint: 10
            })
        ));

        let forged = [Checkpoint::sign(
            &SigningKey::generate().unwrap(),
            10,
            &e[9].hash,
            "now".into(),
        )];
        assert_eq!(verify_chain(&e, &forged, &vk).first_bad_seq, Some(10));
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_next_link_or_checkpoint() {
        let k = SigningKey::generate().unwrap();
        let vk = k.verifying_key();
        let mut e = chain(5);
        // The attacker edits entry 3 and recomputes its hash: entry 4 no longer links.
        e[2].subject = "rewritten".into();
        e[2].hash = hex::encode(e[2].compute_hash());
        assert_eq!(verify_chain(&e, &[], &vk).first_bad_seq, Some(4));
        // Rewriting the tail entry cleanly is caught by the checkpoint over it.
        let mut t = chain(5);
        let cps = [cp(&k, &t, 5)];
        t[4].subject = "rewritten".into();
        t[4].hash = hex::encode(t[4].compute_hash());
        assert_eq!(verify_chain(&t, &cps, &vk).first_bad_seq, Some(5));
    }
}
