//! The single-threaded core of one shard: an entry slab, the key index, the group and tag
//! indexes, and the shard's eviction policy.
//!
//! Everything here runs under the shard's lock, so it must never block, never call back into the
//! cache and never drop a value: removed entries are handed back in a [`Garbage`] bag that the
//! caller drops after unlocking. It knows nothing about fill tickets or epochs (see `cache.rs`).

mod check;

use crate::policy::{Handle, Policy, PolicyKind};
use bytes::Bytes;
use hashbrown::HashTable;

const NIL: u32 = u32::MAX;

/// Fixed per-entry cost, in bytes, of the shard's own structures: the 112-byte entry slot and the
/// 48-byte group record (one group per entry in the worst case), both in doubling vectors (~1.3x
/// average slack), key and group index slots, and malloc rounding of the key, group and value
/// buffers. The policy adds its own share. Calibrated by `tests/overhead.rs`.
pub const ENTRY_OVERHEAD: u64 = 300;

pub(crate) struct Entry<V> {
    key: Bytes,
    value: V,
    hash: u64,
    expires_at: u64,
    tag: u64,
    cost: u32,
    group: u32,
    g_prev: u32,
    g_next: u32,
    t_prev: u32,
    t_next: u32,
}

struct Group {
    name: Bytes,
    hash: u64,
    head: u32,
    len: u32,
}

#[derive(Clone, Copy)]
struct Tag {
    head: u32,
    len: u32,
}

/// Values removed under the lock, to be dropped after it is released.
pub(crate) struct Garbage<V> {
    items: Vec<(Bytes, V)>,
}

impl<V> Garbage<V> {
    pub(crate) fn new() -> Self {
        Self { items: Vec::new() }
    }
    fn push(&mut self, e: Entry<V>) {
        self.items.push((e.key, e.value));
    }
}

/// What a shard operation changed, for the statistics.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Delta {
    pub evicted: u64,
    pub expired: u64,
    pub removed: u64,
}

/// Result of a lookup.
pub(crate) enum Lookup<V> {
    Hit(V),
    Miss,
}

pub(crate) struct Core<V> {
    slots: Vec<Option<Entry<V>>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    groups: Vec<Option<Group>>,
    free_groups: Vec<u32>,
    group_index: HashTable<u32>,
    tags: hashbrown::HashMap<u64, Tag>,
    policy: Box<dyn Policy>,
    scratch: Vec<Handle>,
    bytes: u64,
    budget: u64,
    sweep: usize,
}

impl<V: Clone> Core<V> {
    pub(crate) fn new(kind: PolicyKind, budget: u64) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            group_index: HashTable::new(),
            tags: hashbrown::HashMap::new(),
            policy: kind.build(budget),
            scratch: Vec::new(),
            bytes: 0,
            budget,
            sweep: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes an entry with these sizes is charged.
    pub(crate) fn cost(&self, key_len: usize, group_len: usize, value_bytes: u64) -> u64 {
        (key_len as u64 + group_len as u64)
            .saturating_add(value_bytes)
            .saturating_add(ENTRY_OVERHEAD + self.policy.entry_overhead())
    }

    fn entry(&self, slot: u32) -> &Entry<V> {
        self.slots[slot as usize]
            .as_ref()
            .expect("index points at a live slot")
    }

    fn entry_mut(&mut self, slot: u32) -> &mut Entry<V> {
        self.slots[slot as usize]
            .as_mut()
            .expect("index points at a live slot")
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        self.index
            .find(hash, |&s| self.entry(s).key.as_ref() == key)
            .copied()
    }

    pub(crate) fn get(
        &mut self,
        hash: u64,
        key: &[u8],
        now: u64,
        g: &mut Garbage<V>,
    ) -> (Lookup<V>, Delta) {
        let mut d = Delta::default();
        let Some(slot) = self.find(hash, key) else {
            return (Lookup::Miss, d);
        };
        if self.entry(slot).expires_at <= now {
            self.policy.remove(slot);
            g.push(self.unlink(slot));
            d.expired = 1;
            return (Lookup::Miss, d);
        }
        self.policy.on_hit(slot);
        (Lookup::Hit(self.entry(slot).value.clone()), d)
    }

    /// Insert (or replace) an entry. Returns whether it is resident afterwards.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: Bytes,
        group_hash: u64,
        group: &[u8],
        tag: u64,
        value: V,
        cost: u64,
        expires_at: u64,
        now: u64,
        g: &mut Garbage<V>,
    ) -> (bool, Delta) {
        let mut d = Delta::default();
        if let Some(old) = self.find(hash, &key) {
            self.policy.remove(old);
            g.push(self.unlink(old));
            d.removed += 1;
        }
        d.expired += self.sweep_expired(now, 2, g);
        let weight = match u32::try_from(cost) {
            Ok(w) if cost <= self.budget && expires_at > now => w,
            _ => {
                g.items.push((key, value));
                return (false, d);
            }
        };
        let slot = self.link(hash, key, group_hash, group, tag, value, cost, expires_at);
        let mut scratch = std::mem::take(&mut self.scratch);
        self.policy.insert(slot, hash, weight, &mut scratch);
        let mut resident = true;
        for &v in &scratch {
            resident &= v != slot;
            g.push(self.unlink(v));
        }
        d.evicted += scratch.len() as u64 - u64::from(!resident);
        scratch.clear();
        self.scratch = scratch;
        (resident, d)
    }

    /// Look at up to `budget` slots after the sweep cursor and drop expired entries.
    fn sweep_expired(&mut self, now: u64, budget: usize, g: &mut Garbage<V>) -> u64 {
        let n = self.slots.len();
        let mut expired = 0;
        for _ in 0..budget.min(n) {
            self.sweep = (self.sweep + 1) % n;
            let slot = self.sweep as u32;
            if matches!(&self.slots[self.sweep], Some(e) if e.expires_at <= now) {
                self.policy.remove(slot);
                g.push(self.unlink(slot));
                expired += 1;
            }
        }
        expired
    }

    /// Drop every entry of a group.
    pub(crate) fn remove_group(
        &mut self,
        group_hash: u64,
        group: &[u8],
        g: &mut Garbage<V>,
    ) -> u64 {
        let Some(gi) = self.find_group(group_hash, group) else {
            return 0;
        };
        let mut removed = 0;
        loop {
            let head = self.groups[gi as usize].as_ref().map_or(NIL, |gr| gr.head);
            if head == NIL {
                break;
            }
            self.policy.remove(head);
            g.push(self.unlink(head)); // frees the group with its last entry
            removed += 1;
        }
        removed
    }

    /// Drop every entry with this tag.
    pub(crate) fn remove_tag(&mut self, tag: u64, g: &mut Garbage<V>) -> u64 {
        let mut removed = 0;
        while let Some(t) = self.tags.get(&tag) {
            let head = t.head;
            self.policy.remove(head);
            g.push(self.unlink(head));
            removed += 1;
        }
        removed
    }

    /// Drop everything.
    pub(crate) fn clear(&mut self, g: &mut Garbage<V>) -> u64 {
        let n = self.index.len() as u64;
        for e in self.slots.drain(..).flatten() {
            g.push(e);
        }
        self.free.clear();
        self.index.clear();
        self.groups.clear();
        self.free_groups.clear();
        self.group_index.clear();
        self.tags.clear();
        self.policy.clear();
        self.bytes = 0;
        self.sweep = 0;
        n
    }

    fn find_group(&self, group_hash: u64, group: &[u8]) -> Option<u32> {
        let groups = &self.groups;
        self.group_index
            .find(group_hash, |&gi| {
                groups[gi as usize]
                    .as_ref()
                    .is_some_and(|gr| gr.name.as_ref() == group)
            })
            .copied()
    }

    #[allow(clippy::too_many_arguments)]
    fn link(
        &mut self,
        hash: u64,
        key: Bytes,
        group_hash: u64,
        group: &[u8],
        tag: u64,
        value: V,
        cost: u64,
        expires_at: u64,
    ) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 entries per shard")
            }
        };
        // Group record: find or create, then push the entry at its head.
        let gi = match self.find_group(group_hash, group) {
            Some(gi) => gi,
            None => {
                let rec = Group {
                    name: Bytes::copy_from_slice(group),
                    hash: group_hash,
                    head: NIL,
                    len: 0,
                };
                let gi = match self.free_groups.pop() {
                    Some(gi) => {
                        self.groups[gi as usize] = Some(rec);
                        gi
                    }
                    None => {
                        self.groups.push(Some(rec));
                        (self.groups.len() - 1) as u32
                    }
                };
                let groups = &self.groups;
                self.group_index.insert_unique(group_hash, gi, |&x| {
                    groups[x as usize].as_ref().map_or(0, |gr| gr.hash)
                });
                gi
            }
        };
        let grec = self.groups[gi as usize].as_mut().expect("group just found");
        let g_next = grec.head;
        grec.head = slot;
        grec.len += 1;
        if g_next != NIL {
            self.entry_mut(g_next).g_prev = slot;
        }
        let trec = self.tags.entry(tag).or_insert(Tag { head: NIL, len: 0 });
        let t_next = trec.head;
        trec.head = slot;
        trec.len += 1;
        if t_next != NIL {
            self.entry_mut(t_next).t_prev = slot;
        }
        self.slots[slot as usize] = Some(Entry {
            key,
            value,
            hash,
            expires_at,
            tag,
            cost: cost as u32,
            group: gi,
            g_prev: NIL,
            g_next,
            t_prev: NIL,
            t_next,
        });
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&s| {
            slots[s as usize].as_ref().map_or(0, |e| e.hash)
        });
        self.bytes += cost;
        slot
    }

    /// Remove an entry from the slab and every index (not from the policy).
    fn unlink(&mut self, slot: u32) -> Entry<V> {
        let e = self.slots[slot as usize]
            .take()
            .expect("unlink of a live slot");
        self.free.push(slot);
        self.bytes -= u64::from(e.cost);
        if let Ok(o) = self.index.find_entry(e.hash, |&s| s == slot) {
            o.remove();
        }
        // Group list.
        if e.g_prev != NIL {
            self.entry_mut(e.g_prev).g_next = e.g_next;
        }
        if e.g_next != NIL {
            self.entry_mut(e.g_next).g_prev = e.g_prev;
        }
        let grec = self.groups[e.group as usize]
            .as_mut()
            .expect("entry's group exists");
        if e.g_prev == NIL {
            grec.head = e.g_next;
        }
        grec.len -= 1;
        if grec.len == 0 {
            let gh = grec.hash;
            self.groups[e.group as usize] = None;
            self.free_groups.push(e.group);
            if let Ok(o) = self.group_index.find_entry(gh, |&x| x == e.group) {
                o.remove();
            }
        }
        // Tag list.
        if e.t_prev != NIL {
            self.entry_mut(e.t_prev).t_next = e.t_next;
        }
        if e.t_next != NIL {
            self.entry_mut(e.t_next).t_prev = e.t_prev;
        }
        if let Some(trec) = self.tags.get_mut(&e.tag) {
            if e.t_prev == NIL {
                trec.head = e.t_next;
            }
            trec.len -= 1;
            if trec.len == 0 {
                self.tags.remove(&e.tag);
            }
        }
        e
    }
}
