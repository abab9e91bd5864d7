//! The state of one shard's core ([`Core`]: the entry slab, the index, the tag table, the
//! policy and the byte accounting), the types the shard's files share ([`Garbage`], [`Delta`]),
//! and the index bookkeeping every operation builds on: finding an entry or a group's head,
//! linking an entry into the slab, the index, its group's circle and the tag table, and
//! unlinking it again.
//!
//! Everything here runs under the shard's lock: it must never block, never drop entry data
//! (unlinked entries are returned to the caller, who puts them in its [`Garbage`]) and never
//! tell the policy anything (its callers do). It is the bottom of the shard's files: it imports
//! only `entry.rs` and `slab.rs`, and must never call into the operations built on it
//! (`mod.rs`, `remove.rs`, `tidy.rs`, `check.rs`).

use super::entry::{entry_hash, head_hash, parts, same, Entry, Hasher, HEAD, NIL};
use super::slab::Slab;
use crate::policy::{Handle, Policy};
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// A tag in use in this shard, and how many entries carry it.
pub(super) struct TagRec {
    pub(super) tag: u64,
    pub(super) len: u32,
}

/// Entry bytes removed under the lock, to be dropped after it is released.
pub(crate) struct Garbage {
    pub(super) items: Vec<Box<[u8]>>,
}

impl Garbage {
    pub(crate) fn new() -> Self {
        Self { items: Vec::new() }
    }
    pub(super) fn push(&mut self, e: Entry) {
        self.items.push(e.data);
    }
}

/// Entries after a group's head that [`Core::find`] compares, following the group's circle,
/// before it probes the index: past a few steps a probe is the cheaper way.
const WALK: usize = 3;

/// What a shard operation changed, for the statistics.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Delta {
    pub evicted: u64,
    pub expired: u64,
    pub removed: u64,
}

/// One shard's single-threaded state (see the module's notes and `shard/mod.rs`).
pub(crate) struct Core {
    pub(super) slab: Slab,
    /// Every entry's cell: a group's head by [`head_hash`], the others by [`entry_hash`].
    pub(super) index: HashTable<u32>,
    /// Tags by the shard's tag id; a record is freed with the last entry carrying it.
    pub(super) tags: Vec<TagRec>,
    pub(super) tag_ids: hashbrown::HashMap<u64, u32>,
    pub(super) free_tags: Vec<u32>,
    pub(super) hasher: Hasher,
    pub(super) policy: Box<dyn Policy>,
    pub(super) scratch: Vec<Handle>,
    /// `ENTRY_OVERHEAD` plus the policy's share, fixed when the shard is built.
    pub(super) fixed: u64,
    /// What the policy sets aside inside its capacity (adaptive's shadows), fixed when the
    /// shard is built; kept here so the per-request accounting makes no call for it.
    pub(super) set_aside: u64,
    pub(super) len: usize,
    /// Sum of the resident entries' costs (what the policy holds as weight).
    pub(super) bytes: u64,
    /// Structure bytes beyond what the entries' costs and `base` cover, charged on top of
    /// `bytes`: the policy's capacity is `budget - reserve`. See [`Core::tidy`].
    pub(super) reserve: u64,
    /// Structure bytes never charged: those of an empty shard plus [`super::tidy::BASE_SLACK`].
    pub(super) base: u64,
    pub(super) budget: u64,
    pub(super) sweep: u32,
}

impl Core {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes charged against the budget: the entries' costs, the structures' reserve and what
    /// the policy sets aside inside its capacity (adaptive's shadows).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes + self.reserve + self.set_aside
    }

    /// Bytes an entry of `packed` bytes (see [`super::entry::pack`]) is charged.
    pub(crate) fn cost(&self, packed: usize) -> u64 {
        packed as u64 + self.fixed
    }

    pub(super) fn cost_of(&self, e: &Entry) -> u64 {
        self.cost(e.data.len())
    }

    /// The entry (group, key); `hash` gives its [`entry_hash`], asked for only when the index
    /// must be probed for it (not for a group's head, nor for an entry a short walk finds).
    pub(super) fn find(
        &self,
        hash: impl FnOnce() -> u64,
        group_hash: u64,
        group: &[u8],
        key: &[u8],
    ) -> Option<u32> {
        let head = self.find_group(group_hash, group)?;
        let e = self.slab.entry(head);
        if same(parts(&e.data).1, key) {
            return Some(head);
        }
        // The group's next entries, along its circle (all of the same group): a step costs
        // about a quarter of what a probe of the index does, so a short walk finds the entry
        // of a group of a few (a GET's and an MGET's of one key) for less.
        let mut cell = e.g_next;
        for _ in 0..WALK {
            if cell == head {
                return None;
            }
            let e = self.slab.entry(cell);
            if same(parts(&e.data).1, key) {
                return Some(cell);
            }
            cell = e.g_next;
        }
        if cell == head {
            return None;
        }
        self.index
            .find(hash(), |&s| {
                let e = self.slab.entry(s);
                let (g, k, _) = parts(&e.data);
                !e.is_head() && same(k, key) && same(g, group)
            })
            .copied()
    }

    /// The head of a group.
    pub(super) fn find_group(&self, group_hash: u64, group: &[u8]) -> Option<u32> {
        self.index
            .find(head_hash(group_hash), |&s| {
                let e = self.slab.entry(s);
                e.is_head() && same(parts(&e.data).0, group)
            })
            .copied()
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

    pub(super) fn link(
        &mut self,
        hash: u64,
        group_hash: u64,
        data: Box<[u8]>,
        tag: u64,
        expires: u32,
    ) -> u32 {
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
    pub(super) fn unlink(&mut self, cell: u32) -> Entry {
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

/// The hash an entry is indexed by (what the index rehashes with when it grows or shrinks).
pub(super) fn hash_of(slab: &Slab, hasher: &Hasher, cell: u32) -> u64 {
    let e = slab.entry(cell);
    let (group, key, _) = parts(&e.data);
    let group_hash = hasher.hash_one(group);
    if e.is_head() {
        head_hash(group_hash)
    } else {
        entry_hash(hasher, group_hash, key)
    }
}
