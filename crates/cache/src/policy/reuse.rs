//! The default policy: W-TinyLFU whose window adapts from ghost lists, and which also admits on
//! reuse distance.
//!
//! The structure is Caffeine's W-TinyLFU (`wtinylfu.rs`): new entries enter an LRU *window*;
//! what leaves it is a candidate for the segmented-LRU *main* space, admitted if the frequency
//! sketch counts it more often than main's victim. The window's share moves as in ARC
//! (`tuned.rs`): a miss on a recently refused candidate grows it, a miss on a recently evicted
//! main entry shrinks it, so recency-heavy traffic gets a large window and frequency-heavy
//! traffic a small one.
//!
//! Frequency alone cannot tell a new working set from an old one that has stopped being used:
//! after a scan or a change of popular keys, main's entries keep the counts they earned before,
//! and a new hot set is refused until it out-counts them, a cliff LRU never falls off. So a
//! candidate is also admitted when it was last requested sooner before this request than the
//! victim has now gone without one (the inter-reference recency rule of LIRS, Jiang and Zhang,
//! SIGMETRICS 2002), and main's victim is protected's least recently used entry instead of
//! probation's when that one has gone unrequested longer than the candidate's last reuse (a
//! protected segment left from a past phase gives way too). Whichever rule admits, the victim is
//! the likelier of the two to wait longest for its next request. In a loop the victim is always
//! due sooner than the candidate (it has not yet waited a whole loop), so loops keep what
//! TinyLFU keeps; in a scan the candidates were never seen before, so scans are refused as
//! before. Reuse distances come from a compact table of recent requests (`recency.rs`).
//!
//! This file only builds that configuration and delegates to it; it must never pick victims,
//! admit entries or size the window itself, and never allocate on a hit.

use super::api::{Handle, Policy};
use super::kind::PolicyKind;
use super::tuned::Tuned;

/// Ghost-tuned W-TinyLFU with recency-aware admission.
#[derive(Debug)]
pub struct ReuseTinyLfu {
    inner: Tuned,
}

impl ReuseTinyLfu {
    /// An empty policy of `capacity` weight units.
    pub fn new(capacity: u64) -> Self {
        Self::with_expected(capacity, capacity)
    }

    /// An empty policy whose sketch and recency table are first sized for `expected_entries`
    /// (at most 4,096; they grow with the resident count either way).
    pub fn with_expected(capacity: u64, expected_entries: u64) -> Self {
        let mut inner = Tuned::new(capacity, expected_entries);
        inner.enable_recency(expected_entries.min(4096) as usize);
        Self { inner }
    }

    /// Current window capacity in weight units.
    pub fn window(&self) -> u64 {
        self.inner.window()
    }
}

impl Policy for ReuseTinyLfu {
    fn kind(&self) -> PolicyKind {
        PolicyKind::ReuseTinyLfu
    }
    fn entry_overhead(&self) -> u64 {
        self.inner.entry_overhead()
    }
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    fn weight(&self) -> u64 {
        self.inner.weight()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn contains(&self, h: Handle) -> bool {
        self.inner.contains(h)
    }
    #[inline]
    fn on_hit(&mut self, h: Handle) {
        self.inner.on_hit(h);
    }
    fn insert(&mut self, h: Handle, hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.inner.insert(h, hash, weight, evicted);
    }
    fn remove(&mut self, h: Handle) {
        self.inner.remove(h);
    }
    fn clear(&mut self) {
        self.inner.clear();
    }
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        self.inner.set_capacity(capacity, evicted);
    }
    fn heap_bytes(&self) -> u64 {
        self.inner.heap_bytes()
    }
    fn shrink(&mut self, handle_limit: Handle) {
        self.inner.shrink(handle_limit);
    }
    fn relocate(&mut self, from: Handle, to: Handle) {
        self.inner.relocate(from, to);
    }
    fn check(&self) -> Result<(), String> {
        self.inner.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::WTinyLfu;

    /// Replays `ids` (unit weights), checking invariants, and returns the hits from `from` on.
    fn hits_from(p: &mut dyn Policy, ids: &[u32], from: usize) -> usize {
        let mut resident = std::collections::HashSet::new();
        let mut evicted = Vec::new();
        let mut hits = 0;
        for (i, &id) in ids.iter().enumerate() {
            if resident.contains(&id) {
                hits += usize::from(i >= from);
                p.on_hit(id);
                continue;
            }
            evicted.clear();
            let hash = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            p.insert(id, hash ^ (hash >> 29), 1, &mut evicted);
            resident.insert(id);
            for v in &evicted {
                resident.remove(v);
            }
            p.check().expect("invariants");
        }
        hits
    }

    #[test]
    fn a_hot_set_after_a_scan_is_resident_by_its_third_pass() {
        let cap = 2_000u32;
        let mut ids: Vec<u32> = (0..2).flat_map(|_| 0..5 * cap).collect();
        let hot = cap / 4;
        for _ in 0..3 {
            ids.extend(5 * cap..5 * cap + hot);
        }
        let third = ids.len() - hot as usize;
        let hits = hits_from(&mut ReuseTinyLfu::new(u64::from(cap)), &ids, third);
        assert!(hits * 100 >= hot as usize * 99, "{hits} hits of {hot}");
        // Frequency alone keeps the scan's keys.
        let plain = hits_from(&mut WTinyLfu::new(u64::from(cap)), &ids, third);
        assert!(plain * 2 < hot as usize, "w-tinylfu {plain} hits of {hot}");
    }

    #[test]
    fn a_loop_keeps_what_frequency_keeps() {
        // A loop a fifth longer than the cache: the victim is always due before the candidate.
        let cap = 1_000u32;
        let ids: Vec<u32> = (0..10).flat_map(|_| 0..cap * 6 / 5).collect();
        let reuse = hits_from(&mut ReuseTinyLfu::new(u64::from(cap)), &ids, 0);
        let plain = hits_from(&mut WTinyLfu::new(u64::from(cap)), &ids, 0);
        assert!(
            reuse + ids.len() / 100 >= plain,
            "reuse {reuse} vs w-tinylfu {plain}"
        );
    }
}
