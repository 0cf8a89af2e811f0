//! The executor's worker places: a hard cap on live worker processes, each place carrying the
//! unprivileged uid its worker runs as.
//!
//! A [`Place`] is taken before a worker process exists and given back when the value holding
//! it is dropped, whichever way that happens: a normal retire, a kill, a failed start, or an
//! invocation future dropped half-way because its caller went away. No path has to remember
//! to give it back, so places cannot leak.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// The places of one executor.
pub struct Places {
    max: usize,
    uids: Range<u32>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Uids of live places (their count is the number of live workers).
    in_use: HashSet<u32>,
    /// Where the search for a free uid starts next (round robin over the range).
    next: u64,
}

/// One taken place; given back on drop.
pub struct Place {
    places: Arc<Places>,
    uid: u32,
}

impl Place {
    /// The uid (and gid) the worker in this place switches to.
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.places.lock().in_use.remove(&self.uid);
    }
}

impl Places {
    /// At most `max` places, with uids from `uids` (no two live places share one).
    pub fn new(max: usize, uids: Range<u32>) -> Arc<Self> {
        Arc::new(Self {
            max,
            uids,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live places.
    pub fn live(&self) -> usize {
        self.lock().in_use.len()
    }

    /// The most places.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes a place with a uid no live place has, or `None` when every place is taken.
    pub fn take(self: &Arc<Self>) -> Option<Place> {
        let span = u64::from(self.uids.end.saturating_sub(self.uids.start));
        let mut st = self.lock();
        if st.in_use.len() >= self.max || st.in_use.len() as u64 >= span {
            return None;
        }
        for _ in 0..span {
            let offset = st.next % span;
            st.next = st.next.wrapping_add(1);
            // `offset` < span, which is a u32 difference.
            let uid = self.uids.start + u32::try_from(offset).unwrap_or(0);
            if st.in_use.insert(uid) {
                return Some(Place {
                    places: self.clone(),
                    uid,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_uids_unique_and_given_back_on_drop() {
        let places = Places::new(3, 100..103);
        let a = places.take().unwrap();
        let b = places.take().unwrap();
        let c = places.take().unwrap();
        assert!(places.take().is_none(), "the cap holds");
        let mut uids = vec![a.uid(), b.uid(), c.uid()];
        uids.sort();
        assert_eq!(uids, vec![100, 101, 102]);
        let freed = b.uid();
        drop(b);
        assert_eq!(places.live(), 2);
        let d = places.take().unwrap();
        assert_eq!(d.uid(), freed, "only the free uid can be handed out");
        drop((a, c, d));
        assert_eq!(places.live(), 0);
    }

    #[test]
    fn a_uid_range_smaller_than_the_cap_is_the_cap() {
        let places = Places::new(10, 7..8);
        let _a = places.take().unwrap();
        assert!(places.take().is_none());
    }
}
