//! The shard's structures follow its entry count: the slab's top chunks are drained by moving
//! entries down and released, the index and the policy's arenas shrink, and whatever they still
//! hold beyond the entries' share is charged as the shard's reserve, evicting to make it fit.
//!
//! Runs after inserts and removals only, never on a hit, and every shrink waits for a
//! constant-factor fall since the structure last grew, so all of it is O(1) amortised. Like the
//! rest of the core it runs under the shard lock and drops nothing: evicted entries go to the
//! caller's [`Garbage`].

use super::core::{hash_of, Core, Garbage, TagRec};
use super::slab;

/// Structure bytes a shard may hold beyond its entries' costs without charging them: one chunk
/// of cells (32 KiB) and room for the index and the policy's arena of its 1,024 handles, so a
/// small cache is not charged for the structures every shard has.
pub(super) const BASE_SLACK: u64 = 64 << 10;

/// Entries moved down per insert while the slab is sparse: more than the one entry an insert
/// adds, so compaction outpaces any refill.
const COMPACT_MOVES: usize = 4;

/// The share of the per-entry charge that pays the allocator's rounding of the packed bytes
/// rather than a structure (see [`super::ENTRY_OVERHEAD`]).
const PACKED_ROUNDING: u64 = 16;

impl Core {
    /// Heap bytes of the shard's structures (everything but the entries' packed bytes): slab,
    /// index, tag table, scratch and the policy's metadata.
    pub(crate) fn structure_bytes(&self) -> u64 {
        let vecs = self.tags.capacity() * std::mem::size_of::<TagRec>()
            + (self.free_tags.capacity() + self.scratch.capacity()) * 4;
        self.slab.heap_bytes()
            + (self.index.allocation_size() + self.tag_ids.allocation_size() + vecs) as u64
            + self.policy.heap_bytes()
    }

    /// Structure bytes that neither the resident entries' costs nor the base cover.
    pub(super) fn excess(&self) -> u64 {
        let covered = self.len as u64 * (self.fixed - PACKED_ROUNDING) + self.base;
        self.structure_bytes().saturating_sub(covered)
    }

    /// After every operation that removed or added entries: let the structures follow the live
    /// entry count (trailing empty chunks released, the index shrunk when under a quarter full,
    /// the policy told which handles are gone for good), then charge what they still hold
    /// beyond the entries' costs as the reserve, evicting if that no longer fits. Each shrink
    /// happens only after the count fell by a constant factor since the structure last grew, so
    /// this is O(1) amortised. Returns the entries evicted.
    pub(super) fn tidy(&mut self, g: &mut Garbage) -> u64 {
        let mut evicted = 0;
        // Each eviction for the reserve takes its entry's share off what covers the
        // structures, so the reserve grows again, by less than the evicted weight: repeat until
        // it settles. Only a round that raises the reserve can evict, and one that evicts
        // nothing changes nothing, so the rounds stay within the evictions plus a few.
        loop {
            self.slab.release();
            self.policy.shrink(self.slab.high());
            if self.index.len() < self.index.capacity() / 4 {
                let (slab, hasher) = (&self.slab, &self.hasher);
                self.index
                    .shrink_to(self.index.len() * 2, |&s| hash_of(slab, hasher, s));
            }
            let reserve = self.excess();
            if reserve == self.reserve {
                break;
            }
            self.reserve = reserve;
            let mut scratch = std::mem::take(&mut self.scratch);
            self.policy
                .set_capacity(self.budget.saturating_sub(reserve), &mut scratch);
            for &v in &scratch {
                g.push(self.unlink(v));
            }
            evicted += scratch.len() as u64;
            scratch.clear();
            self.scratch = scratch;
        }
        evicted
    }

    /// While more than a quarter of the slab (beyond one chunk) is free, move the highest
    /// entries into the lowest free cells, a few per call, so the top chunks drain and go even
    /// when long-lived entries sit in them (say, a hot entry placed when the count was at its
    /// peak). Never moves the slab's entries otherwise.
    pub(super) fn compact(&mut self) {
        for _ in 0..COMPACT_MOVES {
            let high = self.slab.high() as usize;
            if high - self.len <= high / 4 + slab::CHUNK {
                return;
            }
            let Some(from) = self.slab.highest() else {
                return;
            };
            let to = self.slab.move_down(from);
            if to == from {
                return;
            }
            self.relocated(from, to);
        }
    }

    /// Point the index, the group circle and the policy at an entry's new cell.
    fn relocated(&mut self, from: u32, to: u32) {
        let hash = hash_of(&self.slab, &self.hasher, to);
        if let Some(s) = self.index.find_mut(hash, |&s| s == from) {
            *s = to;
        }
        let (prev, next) = {
            let e = self.slab.entry(to);
            (e.g_prev, e.g_next)
        };
        if next == from {
            let e = self.slab.entry_mut(to);
            e.g_prev = to;
            e.g_next = to;
        } else {
            self.slab.entry_mut(prev).g_next = to;
            self.slab.entry_mut(next).g_prev = to;
        }
        self.policy.relocate(from, to);
    }
}
