//! The single-threaded core of one shard: an entry slab, one index for keys and groups, the
//! tag table, and the shard's eviction policy.
//!
//! Everything here runs under the shard's lock, so it must never block, never call back into the
//! cache and never drop entry data: removed entries are handed back in a [`Garbage`] bag that the
//! caller drops after unlocking. It knows nothing about fill tickets or epochs (see `cache.rs`).
//!
//! Memory layout, per entry (see docs/cache.md, "Per-entry cost"):
//! * one heap allocation holding the group, the key and the value ([`pack`]);
//! * a 32-byte [`Entry`] cell in a chunked slab (chunks of 1,024 cells, so the slab never holds
//!   more than one chunk of slack and never copies itself to grow); a cell's number is the
//!   entry's handle in the policy;
//! * one `u32` in the index: the first entry of a group (its *head*) is indexed by the group's
//!   hash, the others by the hash of group and key, so the same table finds a key and a group
//!   (no group index);
//! * nothing per tag: an entry names its tag by a small per-shard id.
//!
//! No hash is stored: the index rehashes from the entry's bytes when it grows, and removals
//! recompute the hashes (a few nanoseconds for short keys).
//!
//! Files: this one holds the lookup, the insert and the index, group-circle and tag-table
//! bookkeeping; `entry.rs` the entry's format and hashes; `slab.rs` the cells; `remove.rs`
//! expiry and invalidation; `tidy.rs` the structures that follow the entry count and the
//! reserve charged for them; `check.rs` the invariant checker.

mod check;
mod entry;
mod remove;
mod slab;
mod tidy;

use crate::policy::{Handle, Policy, PolicyKind};
use entry::{decode_deadline, encode_deadline, hash_of, head_hash, parts, Entry, HEAD};
use hashbrown::HashTable;
use slab::Slab;
use std::hash::BuildHasher;
use tidy::BASE_SLACK;

pub(crate) use entry::{entry_hash, pack, packed_len};

pub(crate) type Hasher = hashbrown::DefaultHashBuilder;

const NIL: u32 = u32::MAX;

/// Fixed per-entry cost, in bytes, of the shard's own structures beyond the entry's packed
/// bytes: the 32-byte cell, the index bucket (a `hashbrown` table of `u32` between 7/16 and 7/8
/// full: 5.7-11.4 bytes), and the allocator's rounding and header of the packed bytes (about
/// 16-24 bytes). The policy adds its own share. Calibrated by `tests/overhead.rs` and
/// `nearcache/examples/entry_overhead.rs`.
pub const ENTRY_OVERHEAD: u64 = 64;

/// A tag in use in this shard, and how many entries carry it.
struct TagRec {
    tag: u64,
    len: u32,
}

/// Entry bytes removed under the lock, to be dropped after it is released.
pub(crate) struct Garbage {
    items: Vec<Box<[u8]>>,
}

impl Garbage {
    pub(crate) fn new() -> Self {
        Self { items: Vec::new() }
    }
    fn push(&mut self, e: Entry) {
        self.items.push(e.data);
    }
}

/// What a shard operation changed, for the statistics.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Delta {
    pub evicted: u64,
    pub expired: u64,
    pub removed: u64,
}

pub(crate) struct Core {
    slab: Slab,
    /// Every entry's cell: a group's head by [`head_hash`], the others by [`entry_hash`].
    index: HashTable<u32>,
    /// Tags by the shard's tag id; a record is freed with the last entry carrying it.
    tags: Vec<TagRec>,
    tag_ids: hashbrown::HashMap<u64, u32>,
    free_tags: Vec<u32>,
    hasher: Hasher,
    policy: Box<dyn Policy>,
    scratch: Vec<Handle>,
    /// `ENTRY_OVERHEAD` plus the policy's share, fixed when the shard is built.
    fixed: u64,
    /// What the policy sets aside inside its capacity (adaptive's shadows), fixed when the
    /// shard is built; kept here so the per-request accounting makes no call for it.
    set_aside: u64,
    len: usize,
    /// Sum of the resident entries' costs (what the policy holds as weight).
    bytes: u64,
    /// Structure bytes beyond what the entries' costs and `base` cover, charged on top of
    /// `bytes`: the policy's capacity is `budget - reserve`. See [`Core::tidy`].
    reserve: u64,
    /// Structure bytes never charged: those of an empty shard plus [`BASE_SLACK`].
    base: u64,
    budget: u64,
    sweep: u32,
}

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

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes charged against the budget: the entries' costs, the structures' reserve and what
    /// the policy sets aside inside its capacity (adaptive's shadows).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes + self.reserve + self.set_aside
    }

    /// Bytes an entry of `packed` bytes (see [`pack`]) is charged.
    pub(crate) fn cost(&self, packed: usize) -> u64 {
        packed as u64 + self.fixed
    }

    fn cost_of(&self, e: &Entry) -> u64 {
        self.cost(e.data.len())
    }

    /// The entry (group, key); `hash` is its [`entry_hash`].
    fn find(&self, hash: u64, group_hash: u64, group: &[u8], key: &[u8]) -> Option<u32> {
        let head = self.find_group(group_hash, group)?;
        let e = self.slab.entry(head);
        if parts(&e.data).1 == key {
            return Some(head);
        }
        if e.g_next == head {
            return None;
        }
        self.index
            .find(hash, |&s| {
                let e = self.slab.entry(s);
                let (g, k, _) = parts(&e.data);
                !e.is_head() && k == key && g == group
            })
            .copied()
    }

    /// The head of a group.
    fn find_group(&self, group_hash: u64, group: &[u8]) -> Option<u32> {
        self.index
            .find(head_hash(group_hash), |&s| {
                let e = self.slab.entry(s);
                e.is_head() && parts(&e.data).0 == group
            })
            .copied()
    }

    /// Look up an entry; on a hit, `f` gets its value (under the shard lock). Always inlined
    /// into its one caller, [`crate::Cache::get_with`]: this is the hit path, run once per key
    /// of a multi-key read, and the inliner's own choice for it is not stable across unrelated
    /// changes, so it is not left to it.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn get<R>(
        &mut self,
        hash: u64,
        group_hash: u64,
        group: &[u8],
        key: &[u8],
        now: u64,
        g: &mut Garbage,
        f: impl FnOnce(&[u8]) -> R,
    ) -> (Option<R>, Delta) {
        let mut d = Delta::default();
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
        if let Some(old) = self.find(hash, group_hash, group, key) {
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

    fn tag_id(&mut self, tag: u64) -> u32 {
        if let Some(&id) = self.tag_ids.get(&tag) {
            self.tags[id as usize].len += 1;
            return id;
        }
        let rec = TagRec { tag, len: 1 };
        let id = match self.free_tags.pop() {
            Some(id) => {
                self.tags[id as usize] = rec;
                id
            }
            None => {
                assert!(
                    self.tags.len() < HEAD as usize,
                    "fewer than 2^31 tags per shard"
                );
                self.tags.push(rec);
                (self.tags.len() - 1) as u32
            }
        };
        self.tag_ids.insert(tag, id);
        id
    }

    fn link(&mut self, hash: u64, group_hash: u64, data: Box<[u8]>, tag: u64, expires: u32) -> u32 {
        let head = self.find_group(group_hash, parts(&data).0);
        let tag = self.tag_id(tag) | if head.is_none() { HEAD } else { 0 };
        let cost = self.cost(data.len());
        let cell = self.slab.place(Entry {
            data,
            expires,
            tag,
            g_prev: NIL,
            g_next: NIL,
        });
        // Join the group's circle right after its head, or start one as its head.
        let (g_prev, g_next, indexed_by) = match head {
            Some(m) => {
                let next = self.slab.entry(m).g_next;
                self.slab.entry_mut(m).g_next = cell;
                self.slab.entry_mut(next).g_prev = cell;
                (m, next, hash)
            }
            None => (cell, cell, head_hash(group_hash)),
        };
        let e = self.slab.entry_mut(cell);
        e.g_prev = g_prev;
        e.g_next = g_next;
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.index
            .insert_unique(indexed_by, cell, |&s| hash_of(slab, hasher, s));
        self.len += 1;
        self.bytes += cost;
        cell
    }

    /// Remove an entry from the slab and the indexes (not from the policy). When it was its
    /// group's head, the next member of the group becomes the head.
    fn unlink(&mut self, cell: u32) -> Entry {
        let e = self.slab.take(cell);
        self.len -= 1;
        self.bytes -= self.cost_of(&e);
        let (group, key, _) = parts(&e.data);
        let group_hash = self.hasher.hash_one(group);
        let indexed_by = if e.is_head() {
            head_hash(group_hash)
        } else {
            entry_hash(&self.hasher, group_hash, key)
        };
        if let Ok(o) = self.index.find_entry(indexed_by, |&s| s == cell) {
            o.remove();
        }
        if e.g_next != cell {
            self.slab.entry_mut(e.g_prev).g_next = e.g_next;
            self.slab.entry_mut(e.g_next).g_prev = e.g_prev;
            if e.is_head() {
                let next = e.g_next;
                let old = entry_hash(
                    &self.hasher,
                    group_hash,
                    parts(&self.slab.entry(next).data).1,
                );
                if let Ok(o) = self.index.find_entry(old, |&s| s == next) {
                    o.remove();
                }
                self.slab.entry_mut(next).tag |= HEAD;
                let (slab, hasher) = (&self.slab, &self.hasher);
                self.index
                    .insert_unique(head_hash(group_hash), next, |&s| hash_of(slab, hasher, s));
            }
        }
        let id = e.tag_id();
        let rec = &mut self.tags[id as usize];
        rec.len -= 1;
        if rec.len == 0 {
            let t = rec.tag;
            self.tag_ids.remove(&t);
            self.free_tags.push(id);
        }
        e
    }
}
