//! The single-threaded core of one shard: an entry slab, one index for keys and groups, the
//! tag table, and the shard's eviction policy.
//!
//! Everything here runs under the shard's lock, so it must never block, never call back into the
//! cache and never drop entry data: removed entries are handed back in a [`Garbage`] bag that the
//! caller drops after unlocking. It knows nothing about fill tickets or epochs (see `cache.rs`).
//!
//! Memory layout, per entry (see docs/cache.md, "Per-entry cost"):
//! * one heap allocation holding the group, the key and the value ([`pack`]);
//! * a 32-byte [`entry::Entry`] cell in a chunked slab (chunks of 1,024 cells, so the slab never
//!   holds more than one chunk of slack and never copies itself to grow); a cell's number is the
//!   entry's handle in the policy;
//! * one `u32` in the index: the first entry of a group (its *head*) is indexed by the group's
//!   hash, the others by the hash of group and key, so the same table finds a key and a group
//!   (no group index);
//! * nothing per tag: an entry names its tag by a small per-shard id.
//!
//! No hash is stored: the index rehashes from the entry's bytes when it grows, and removals
//! recompute the hashes (a few nanoseconds for short keys).
//!
//! Files, each importing only those listed before it: `entry.rs` the entry's format and hashes;
//! `slab.rs` the cells; `core.rs` the [`Core`] struct, the types the files share and the index,
//! group-circle and tag-table bookkeeping; `tidy.rs` the structures that follow the entry count
//! and the reserve charged for them; `remove.rs` expiry and invalidation; `check.rs` the
//! invariant checker. This file sits on top: it only declares and re-exports them and holds
//! the operations the cache calls first, building a core, the lookup and the insert. No file
//! of the shard may import it.

mod check;
mod core;
mod entry;
mod remove;
mod slab;
mod tidy;

use crate::policy::PolicyKind;
use entry::{decode_deadline, encode_deadline, parts};
use hashbrown::HashTable;
use slab::Slab;
use tidy::BASE_SLACK;

pub(crate) use self::core::{Core, Delta, Garbage};
pub(crate) use entry::{entry_hash, pack, packed_len, Hasher};

/// Fixed per-entry cost, in bytes, of the shard's own structures beyond the entry's packed
/// bytes: the 32-byte cell, the index bucket (a `hashbrown` table of `u32` between 7/16 and 7/8
/// full: 5.7-11.4 bytes), and the allocator's rounding and header of the packed bytes (about
/// 16-24 bytes). The policy adds its own share. Calibrated by `tests/overhead.rs` and
/// `nearcache/examples/entry_overhead.rs`.
pub const ENTRY_OVERHEAD: u64 = 64;

impl Core {
    pub(crate) fn new(kind: PolicyKind, budget: u64, hasher: Hasher) -> Self {
        let policy = kind.build(budget);
        let mut core = Self {
            slab: Slab::default(),
            index: HashTable::new(),
            tags: Vec::new(),
            tag_ids: hashbrown::HashMap::new(),
            free_tags: Vec::new(),
            hasher,
            fixed: ENTRY_OVERHEAD + policy.entry_overhead(),
            set_aside: policy.reserved_bytes(),
            policy,
            scratch: Vec::new(),
            len: 0,
            bytes: 0,
            reserve: 0,
            base: 0,
            budget,
            sweep: 0,
        };
        core.base = core.structure_bytes() + BASE_SLACK;
        core
    }

    /// Look up an entry; on a hit, `f` gets its value (under the shard lock). Always inlined
    /// into its one caller, [`crate::Cache::get_with`]: this is the hit path, run once per key
    /// of a multi-key read, and the inliner's own choice for it is not stable across unrelated
    /// changes, so it is not left to it.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn get<R>(
        &mut self,
        group_hash: u64,
        group: &[u8],
        key: &[u8],
        now: u64,
        g: &mut Garbage,
        f: impl FnOnce(&[u8]) -> R,
    ) -> (Option<R>, Delta) {
        let mut d = Delta::default();
        let hasher = &self.hasher;
        let hash = || entry_hash(hasher, group_hash, key);
        let Some(cell) = self.find(hash, group_hash, group, key) else {
            return (None, d);
        };
        if decode_deadline(self.slab.entry(cell).expires) <= now {
            self.policy.remove(cell);
            g.push(self.unlink(cell));
            d.expired = 1;
            d.evicted = self.tidy(g);
            return (None, d);
        }
        self.policy.on_hit(cell);
        (Some(f(parts(&self.slab.entry(cell).data).2)), d)
    }

    /// Insert (or replace) an entry made by [`pack`]. Returns whether it is resident afterwards.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        group_hash: u64,
        data: Box<[u8]>,
        tag: u64,
        expires_at: u64,
        now: u64,
        g: &mut Garbage,
    ) -> (bool, Delta) {
        let mut d = Delta::default();
        let (group, key, _) = parts(&data);
        if let Some(old) = self.find(|| hash, group_hash, group, key) {
            self.policy.remove(old);
            g.push(self.unlink(old));
            d.removed += 1;
        }
        d.expired += self.sweep_expired(now, 2, g);
        self.compact();
        let cost = self.cost(data.len());
        let expires = encode_deadline(expires_at);
        let weight = match u32::try_from(cost) {
            Ok(w) if cost <= self.budget && decode_deadline(expires) > now => w,
            _ => {
                g.items.push(data);
                return (false, d);
            }
        };
        let cell = self.link(hash, group_hash, data, tag, expires);
        let mut scratch = std::mem::take(&mut self.scratch);
        self.policy.insert(cell, hash, weight, &mut scratch);
        for &v in &scratch {
            g.push(self.unlink(v));
        }
        let mut evicted = scratch.len() as u64;
        scratch.clear();
        self.scratch = scratch;
        evicted += self.tidy(g);
        // Nothing was placed after the entry, so its cell is live only if it stayed.
        let resident = self.slab.get(cell).is_some();
        d.evicted += evicted - u64::from(!resident);
        (resident, d)
    }
}
