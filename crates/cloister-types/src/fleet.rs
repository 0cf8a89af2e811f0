//! Fleet (invocation) key epochs: one key per rotation epoch, valid for its epoch plus an
//! overlap window. Defined once for keyvault (which derives the keys), executors (which
//! refresh them after each rotation) and clients.

/// Length of a rotation epoch.
pub const ROTATION_SECS: u64 = 24 * 3600;
/// How long a key stays valid after its epoch ended.
pub const OVERLAP_SECS: u64 = 3600;

/// The epochs whose keys are valid at `now`, newest first.
pub fn epochs_valid_at(now: u64) -> Vec<u64> {
    let current = now / ROTATION_SECS;
    let mut v = vec![current];
    if current > 0 && now < current * ROTATION_SECS + OVERLAP_SECS {
        v.push(current - 1);
    }
    v
}

/// The validity window of `epoch`'s key.
pub fn validity(epoch: u64) -> (u64, u64) {
    let start = epoch.saturating_mul(ROTATION_SECS);
    (
        start,
        start
            .saturating_add(ROTATION_SECS)
            .saturating_add(OVERLAP_SECS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_at_a_time_except_in_the_overlap_after_a_rotation() {
        let e = 20_000;
        let start = e * ROTATION_SECS;
        assert_eq!(epochs_valid_at(start), vec![e, e - 1]);
        assert_eq!(epochs_valid_at(start + OVERLAP_SECS - 1), vec![e, e - 1]);
        assert_eq!(epochs_valid_at(start + OVERLAP_SECS), vec![e]);
        assert_eq!(epochs_valid_at(start + ROTATION_SECS - 1), vec![e]);
        // Every key listed is valid at that time by its own window.
        for t in [start, start + OVERLAP_SECS - 1, start + ROTATION_SECS - 1] {
            for ep in epochs_valid_at(t) {
                let (nb, na) = validity(ep);
                assert!(nb <= t && t < na, "epoch {ep} at {t}");
            }
        }
        assert_eq!(epochs_valid_at(5), vec![0]);
    }
}
