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
//!   more than one chunk of slack and never copies itself to grow);
//! * one `u32` in the index: the first entry of a group (its *head*) is indexed by the group's
//!   hash, the others by the hash of group and key, so the same table finds a key and a group
//!   (no group index);
//! * nothing per tag: an entry names its tag by a small per-shard id.
//!
//! No hash is stored: the index rehashes from the entry's bytes when it grows, and removals
//! recompute the hashes (a few nanoseconds for short keys).

mod check;
mod slab;

use crate::clock::NEVER;
use crate::policy::{Handle, Policy, PolicyKind};
use hashbrown::HashTable;
use slab::Slab;
use std::hash::BuildHasher;

pub(crate) type Hasher = hashbrown::DefaultHashBuilder;

const NIL: u32 = u32::MAX;
/// Flag in [`Entry::tag`]: the entry is its group's head (indexed by the group's hash).
const HEAD: u32 = 1 << 31;

/// Fixed per-entry cost, in bytes, of the shard's own structures beyond the entry's packed
/// bytes: the 32-byte cell, the index bucket (a `hashbrown` table of `u32` between 7/16 and 7/8
/// full: 5.7-11.4 bytes), and the allocator's rounding and header of the packed bytes (about
/// 16-24 bytes). The
/// policy adds its own share. Calibrated by `tests/overhead.rs` and
/// `nearcache/examples/entry_overhead.rs`.
pub const ENTRY_OVERHEAD: u64 = 64;

/// One resident entry: 32 bytes.
pub(crate) struct Entry {
    /// Group, key and value in one allocation, see [`pack`].
    data: Box<[u8]>,
    /// Deadline, see [`encode_deadline`].
    expires: u32,
    /// The shard's id for the entry's tag (index into `Core::tags`), and the [`HEAD`] flag.
    tag: u32,
    /// The entry's neighbours in its group's circular list (itself when alone).
    g_prev: u32,
    g_next: u32,
}

/// Deadlines below 2^31 ms (24.8 days on the caller's clock) are stored exactly; later ones in
/// units of 1,024 ms, rounded down (an entry may expire up to ~1 s early, never late), up to
/// ~69 years; `u32::MAX` is [`NEVER`].
const EXACT: u64 = 1 << 31;
const COARSE_SHIFT: u32 = 10;

pub(crate) fn encode_deadline(at: u64) -> u32 {
    if at == NEVER {
        return u32::MAX;
    }
    if at < EXACT {
        return at as u32;
    }
    let coarse = ((at - EXACT) >> COARSE_SHIFT).min(u64::from(u32::MAX) - 1 - EXACT);
    (EXACT + coarse) as u32
}

pub(crate) fn decode_deadline(d: u32) -> u64 {
    let d = u64::from(d);
    if d == u64::from(u32::MAX) {
        NEVER
    } else if d < EXACT {
        d
    } else {
        EXACT + ((d - EXACT) << COARSE_SHIFT)
    }
}

fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - (n | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> usize {
    let (mut n, mut shift) = (0usize, 0u32);
    loop {
        let x = b[*pos];
        *pos += 1;
        n |= usize::from(x & 0x7f) << shift;
        if x < 0x80 {
            return n;
        }
        shift += 7;
    }
}

/// Bytes [`pack`] produces for these lengths.
pub(crate) fn packed_len(group_len: usize, key_len: usize, value_len: usize) -> usize {
    varint_len(group_len) + varint_len(key_len) + group_len + key_len + value_len
}

/// An entry's bytes: group length and key length (LEB128), then group, key and value, in one
/// allocation of exactly that size.
pub(crate) fn pack(group: &[u8], key: &[u8], value: &[u8]) -> Box<[u8]> {
    let mut v = Vec::with_capacity(packed_len(group.len(), key.len(), value.len()));
    put_varint(&mut v, group.len());
    put_varint(&mut v, key.len());
    v.extend_from_slice(group);
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v.into_boxed_slice()
}

/// Group, key and value of packed bytes. Every lookup takes an entry apart two or three times
/// (the group to find its head, the key to compare, the value to copy), so the usual case, both
/// lengths under 128 (one byte each), skips the general decoding.
#[inline]
fn parts(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    if let [g @ 0..=0x7f, k @ 0..=0x7f, rest @ ..] = data {
        let (g, k) = (usize::from(*g), usize::from(*k));
        if let Some((group, rest)) = rest.split_at_checked(g) {
            if let Some((key, value)) = rest.split_at_checked(k) {
                return (group, key, value);
            }
        }
    }
    parts_varint(data)
}

/// [`parts`] for any lengths.
fn parts_varint(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut pos = 0;
    let g = get_varint(data, &mut pos);
    let k = get_varint(data, &mut pos);
    let (group, rest) = data[pos..].split_at(g);
    let (key, value) = rest.split_at(k);
    (group, key, value)
}

fn mix64(x: u64) -> u64 {
    let x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    let x = (x ^ (x >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// The index's hash of an entry that is not its group's head: its group's hash combined with
/// its key's.
pub(crate) fn entry_hash(hasher: &Hasher, group_hash: u64, key: &[u8]) -> u64 {
    mix64(group_hash ^ hasher.hash_one(key).rotate_left(29))
}

/// The index's hash of a group's head.
fn head_hash(group_hash: u64) -> u64 {
    mix64(group_hash ^ 0x9E37_79B9_7F4A_7C15)
}

impl Entry {
    fn is_head(&self) -> bool {
        self.tag & HEAD != 0
    }
    fn tag_id(&self) -> u32 {
        self.tag & !HEAD
    }
}

/// The hash an entry is indexed by.
fn hash_of(slab: &Slab, hasher: &Hasher, cell: u32) -> u64 {
    let e = slab.entry(cell);
    let (group, key, _) = parts(&e.data);
    let group_hash = hasher.hash_one(group);
    if e.is_head() {
        head_hash(group_hash)
    } else {
        entry_hash(hasher, group_hash, key)
    }
}

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

/// Structure bytes a shard may hold beyond its entries' costs without charging them: one chunk
/// of cells (32 KiB) and room for the index and the policy's arena of its 1,024 handles, so a
/// small cache is not charged for the structures every shard has.
const BASE_SLACK: u64 = 64 << 10;

/// Entries moved down per insert while the slab is sparse: more than the one entry an insert
/// adds, so compaction outpaces any refill.
const COMPACT_MOVES: usize = 4;

/// The share of the per-entry charge that pays the allocator's rounding of the packed bytes
/// rather than a structure (see [`ENTRY_OVERHEAD`]).
const PACKED_ROUNDING: u64 = 16;

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
    fn excess(&self) -> u64 {
        let covered = self.len as u64 * (self.fixed - PACKED_ROUNDING) + self.base;
        self.structure_bytes().saturating_sub(covered)
    }

    /// After every operation that removed or added entries: let the structures follow the live
    /// entry count (trailing empty chunks released, the index shrunk when under a quarter full,
    /// the policy told which handles are gone for good), then charge what they still hold
    /// beyond the entries' costs as the reserve, evicting if that no longer fits. Each shrink
    /// happens only after the count fell by a constant factor since the structure last grew, so
    /// this is O(1) amortised. Returns the entries evicted.
    fn tidy(&mut self, g: &mut Garbage) -> u64 {
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

    /// Look up an entry; on a hit, `f` gets its value (under the shard lock). Inlined into
    /// its one caller, [`crate::Cache::get_with`]: the hit path, where LLVM's own choice
    /// flipped with unrelated changes elsewhere (a call per key cost an MGET of ten ~400
    /// instructions).
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

    /// While more than a quarter of the slab (beyond one chunk) is free, move the highest
    /// entries into the lowest free cells, a few per call, so the top chunks drain and go even
    /// when long-lived entries sit in them (say, a hot entry placed when the count was at its
    /// peak). Never moves the slab's entries otherwise.
    fn compact(&mut self) {
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

    /// Look at up to `budget` cells after the sweep cursor and drop expired entries.
    fn sweep_expired(&mut self, now: u64, budget: usize, g: &mut Garbage) -> u64 {
        let n = self.slab.high();
        let mut expired = 0;
        for _ in 0..budget.min(n as usize) {
            self.sweep = (self.sweep + 1) % n;
            let cell = self.sweep;
            if matches!(self.slab.get(cell), Some(e) if decode_deadline(e.expires) <= now) {
                self.policy.remove(cell);
                g.push(self.unlink(cell));
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
        g: &mut Garbage,
    ) -> (u64, Delta) {
        let mut removed = 0;
        while let Some(cell) = self.find_group(group_hash, group) {
            self.policy.remove(cell);
            g.push(self.unlink(cell)); // the next member, if any, becomes the head
            removed += 1;
        }
        if removed == 0 {
            // Most invalidations find nothing (a write to a key never read through us, or the
            // second of a write's two invalidations): nothing shrank, so nothing to tidy.
            return (0, Delta::default());
        }
        (removed, self.tidied(g))
    }

    fn tidied(&mut self, g: &mut Garbage) -> Delta {
        Delta {
            evicted: self.tidy(g),
            ..Delta::default()
        }
    }

    /// Drop every entry with this tag: a scan of the slab, as tags die rarely (a lost upstream
    /// connection) and keeping per-tag lists would cost every entry two links.
    pub(crate) fn remove_tag(&mut self, tag: u64, g: &mut Garbage) -> (u64, Delta) {
        let Some(&id) = self.tag_ids.get(&tag) else {
            return (0, Delta::default());
        };
        let mut left = self.tags[id as usize].len;
        let mut removed = 0;
        let mut cell = 0;
        while left > 0 && cell < self.slab.high() {
            if self.slab.get(cell).is_some_and(|e| e.tag_id() == id) {
                self.policy.remove(cell);
                g.push(self.unlink(cell));
                left -= 1;
                removed += 1;
            }
            cell += 1;
        }
        (removed, self.tidied(g))
    }

    /// Drop everything.
    pub(crate) fn clear(&mut self, g: &mut Garbage) -> (u64, Delta) {
        let n = self.len as u64;
        g.items.extend(self.slab.drain().map(|e| e.data));
        self.index = HashTable::new();
        self.tags.clear();
        self.tag_ids.clear();
        self.free_tags.clear();
        self.policy.clear();
        self.policy.shrink(0);
        self.len = 0;
        self.bytes = 0;
        self.sweep = 0;
        (n, self.tidied(g))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_32_bytes() {
        assert_eq!(std::mem::size_of::<Option<Entry>>(), 32);
    }

    #[test]
    fn deadlines_never_move_later() {
        for at in [
            0,
            1,
            99,
            EXACT - 1,
            EXACT,
            EXACT + 1023,
            EXACT + 1024,
            EXACT + 5_000_000,
            1 << 40,
            1 << 41,
            1 << 50,
            NEVER - 1,
        ] {
            let back = decode_deadline(encode_deadline(at));
            assert!(back <= at, "{at} -> {back}");
            assert!(back != NEVER);
            if at < EXACT {
                assert_eq!(back, at);
            } else if at < 1 << 41 {
                assert!(at - back < 1024, "{at} -> {back}");
            }
        }
        assert_eq!(decode_deadline(encode_deadline(NEVER)), NEVER);
    }

    #[test]
    fn packs_and_unpacks() {
        for (g, k, v) in [
            (0usize, 0usize, 0usize),
            (1, 2, 3),
            (127, 127, 0),
            (128, 1, 9),
            (127, 128, 5),
            (300, 20_000, 70_000),
        ] {
            let (gb, kb, vb) = (vec![1u8; g], vec![2u8; k], vec![3u8; v]);
            let data = pack(&gb, &kb, &vb);
            assert_eq!(data.len(), packed_len(g, k, v));
            assert_eq!(parts(&data), (&gb[..], &kb[..], &vb[..]));
        }
    }
}
