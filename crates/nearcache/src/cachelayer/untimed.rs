//! Keys known to have no TTL: what lets a miss skip the `PTTL` it would send after its read.
//!
//! A fill's `PTTL` that answers `-1` (a key without expiry; or `-2` with a null read: no key)
//! is remembered here with the fill's [`Stamp`], the invalidation state of the key and of the
//! connection whose tracking protected the read. The fact holds while that stamp is fresh
//! ([`cache::Cache::is_fresh`]): giving the key an expiry is a write, and Redis's invalidation
//! of it bumps the key's epoch; a lost tracking connection bumps its tag's; a flush, everything.
//! A later miss of the key, its own fill begun first, may then read without `PTTL` and fill with
//! no expiry, if the stamp is still fresh when its reply lands. An invalidation that arrives
//! before the miss began made the stamp stale; one after voids the miss's own fill.
//!
//! Owns a fixed table, direct-mapped by the key's hash (a newer fact replaces an older one in
//! its slot). Never decides a fill on its own: the cache's epochs do.

use std::sync::Mutex;

use cache::Stamp;

/// Bytes of `max_memory` per slot: with a slot's 56 bytes, the table takes under 0.7% of the
/// cache's budget (the slot count is rounded down to a power of two).
const BYTES_PER_SLOT: u64 = 8192;
/// At least this many slots, whatever the budget; at most [`MAX_SLOTS`].
const MIN_SLOTS: usize = 256;
const MAX_SLOTS: usize = 1 << 20;

/// The table of keys last seen without an expiry.
pub struct Untimed {
    slots: Box<[Mutex<Option<Stamp>>]>,
    mask: usize,
}

impl Untimed {
    /// A table sized for a cache of `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        let want = usize::try_from(max_bytes / BYTES_PER_SLOT).unwrap_or(MAX_SLOTS);
        let n = 1 << want.clamp(MIN_SLOTS, MAX_SLOTS).ilog2();
        Untimed {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            mask: n - 1,
        }
    }

    fn slot(&self, group_hash: u64) -> &Mutex<Option<Stamp>> {
        &self.slots[group_hash as usize & self.mask]
    }

    /// Remembers that the read whose fill was stamped `stamp` found its key without expiry.
    pub fn note(&self, stamp: Stamp) {
        *self
            .slot(stamp.group_hash)
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(stamp);
    }

    /// The stamp of the last read that found the key of `group_hash` without expiry, if any
    /// (fresh or not: the caller asks the cache).
    pub fn get(&self, group_hash: u64) -> Option<Stamp> {
        let slot = self
            .slot(group_hash)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        slot.filter(|s| s.group_hash == group_hash)
    }

    /// The table's own bytes.
    pub fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Mutex<Option<Stamp>>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache::{Cache, CacheConfig};

    #[test]
    fn a_key_is_known_untimed_until_invalidated_and_slots_never_mix_keys() {
        let cache = Cache::new(CacheConfig::with_max_bytes(1 << 20));
        let table = Untimed::new(0);
        let ticket = cache.begin_fill(b"k", 1);
        let stamp = ticket.stamp();
        drop(ticket);
        table.note(stamp);
        assert_eq!(table.get(stamp.group_hash), Some(stamp));
        // Another key in the same slot is not taken for this one.
        let other = stamp.group_hash ^ ((table.mask as u64 + 1) << 3);
        assert_eq!(table.get(other), None);
        assert!(cache.is_fresh(&stamp));
        cache.invalidate_group(b"k");
        assert!(!cache.is_fresh(&table.get(stamp.group_hash).unwrap()));
        assert!(table.bytes() >= MIN_SLOTS * 40);
    }
}
