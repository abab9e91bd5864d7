//! Keys known to have no TTL: what lets a miss skip the `PTTL` it would send after its read.
//!
//! A fill's `PTTL` that answers `-1` (a key without expiry; or `-2` with a null read: no key)
//! is remembered here with what the fill's ticket saw when it began: the invalidation count of
//! the key's counter in the cache ([`cache::Stamp::group_epoch`]) and this table's generation,
//! which every lost tracking connection and every flush moves on. The fact holds while both
//! are unchanged: giving the key an expiry is a write, and Redis's invalidation of it moves the
//! key's counter; a lost connection may have missed that invalidation. A later miss of the
//! key, its own fill begun first, may then read without `PTTL` and fill with no expiry, if the
//! fact still holds when its reply lands. An invalidation that arrives before the miss began
//! made the fact stale; one after voids the miss's own fill.
//!
//! Owns a fixed table of 16-byte slots, direct-mapped by the key's hash (a newer fact replaces
//! an older one in its slot) and locked in stripes. Never decides a fill on its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Bytes of `max_memory` per slot: with 16-byte slots, the table takes 1/64 of the cache's
/// budget (the slot count is rounded down to a power of two), a slot for every few entries a
/// cache of small values holds.
const BYTES_PER_SLOT: u64 = 1024;
/// At least this many slots, whatever the budget; at most [`MAX_SLOTS`].
const MIN_SLOTS: usize = 1024;
const MAX_SLOTS: usize = 1 << 24;
/// Locks, each over an equal share of the slots.
const STRIPES: usize = 64;

/// What a read learnt, as it is kept. Counts are kept to 32 bits: a stale fact passes for
/// fresh only after exactly 2^32 invalidations of its counter, or flushes and lost
/// connections, between the two looks.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Known {
    pub group_hash: u64,
    pub group_epoch: u32,
    pub generation: u32,
}

/// The table of keys last seen without an expiry.
pub struct Untimed {
    stripes: Box<[Mutex<Box<[Known]>>]>,
    per_stripe: usize,
    generation: AtomicU32,
}

impl Untimed {
    /// A table sized for a cache of `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        let want = usize::try_from(max_bytes / BYTES_PER_SLOT).unwrap_or(MAX_SLOTS);
        let n = 1usize << want.clamp(MIN_SLOTS, MAX_SLOTS).ilog2();
        let per_stripe = n / STRIPES;
        Untimed {
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(vec![Known::default(); per_stripe].into_boxed_slice()))
                .collect(),
            per_stripe,
            generation: AtomicU32::new(0),
        }
    }

    /// The generation now: take it when a fill begins.
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Makes every fact noted so far stale (a tracking connection was lost, the cache flushed).
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn with_slot<R>(&self, group_hash: u64, f: impl FnOnce(&mut Known) -> R) -> R {
        let stripe = group_hash as usize % STRIPES;
        let at = (group_hash >> 8) as usize % self.per_stripe;
        let mut slots = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut slots[at])
    }

    /// Remembers that a read found its key without expiry.
    pub fn note(&self, known: Known) {
        self.with_slot(known.group_hash, |slot| *slot = known);
    }

    /// What was last noted for the key of `group_hash`, if anything (fresh or not: see
    /// [`Untimed::holds`]).
    pub fn get(&self, group_hash: u64) -> Option<Known> {
        let slot = self.with_slot(group_hash, |slot| *slot);
        (slot.group_hash == group_hash && slot != Known::default()).then_some(slot)
    }

    /// Whether `known` still holds, given the key's invalidation count now.
    pub fn holds(&self, known: &Known, group_epoch_now: u64) -> bool {
        known.generation == self.generation() && known.group_epoch == group_epoch_now as u32
    }

    /// The table's own bytes.
    pub fn bytes(&self) -> usize {
        self.stripes.len() * self.per_stripe * std::mem::size_of::<Known>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_holds_until_its_key_is_invalidated_or_everything_is_forgotten() {
        let table = Untimed::new(0);
        assert_eq!(std::mem::size_of::<Known>(), 16);
        assert_eq!(table.bytes(), MIN_SLOTS * 16);
        let known = Known {
            group_hash: 0xABCD_0000_1234,
            group_epoch: 7,
            generation: table.generation(),
        };
        table.note(known);
        assert_eq!(table.get(known.group_hash), Some(known));
        // Another key in the same slot is not taken for this one.
        let other = known.group_hash ^ ((table.per_stripe * STRIPES) as u64) << 8;
        assert_eq!(table.get(other), None);
        assert!(table.holds(&known, 7));
        assert!(!table.holds(&known, 8), "the key was invalidated");
        table.forget_all();
        assert!(!table.holds(&known, 7), "a connection was lost");
    }
}
