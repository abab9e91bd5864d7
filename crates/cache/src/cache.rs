//! The concurrent cache: shards selected by the group's hash, the fill protocol, invalidation
//! and statistics.
//!
//! Each shard is a mutex around a single-threaded [`Core`]; there is no global lock on any path
//! (only `invalidate_tag`, `invalidate_scope`, `clear`, `stats` and `validate` visit every
//! shard, one at a time).
//! Values leaving the cache are dropped after the shard lock is released. This module must never
//! block while holding a shard lock, and never hold two shard locks at once.

use crate::policy::PolicyKind;
use crate::shard::{entry_hash, pack, packed_len, Core, Delta, Garbage, Hasher};
use crate::sync::{bump, AtomicU64, Mutex, Ordering};
use bytes::Bytes;
use std::hash::BuildHasher;

/// Number of hashed invalidation counters (per group hash and per tag hash).
#[cfg(not(feature = "shuttle"))]
const EPOCH_COUNTERS: usize = 1 << 16;
#[cfg(feature = "shuttle")]
const EPOCH_COUNTERS: usize = 16;

/// Number of hashed scope counters ([`tag_scope`]). A scope is an upstream node of a cluster
/// (a handful to a few hundred); sharing a counter only voids fills spuriously.
#[cfg(not(feature = "shuttle"))]
const SCOPE_COUNTERS: usize = 256;
#[cfg(feature = "shuttle")]
const SCOPE_COUNTERS: usize = 4;

/// A tag's scope: its top 16 bits. [`Cache::invalidate_scope`] drops every entry whose tag has
/// that scope (an upstream node's connections share one, so losing the node drops exactly what
/// it protected).
pub const fn tag_scope(tag: u64) -> u16 {
    (tag >> 48) as u16
}

/// How to build a [`Cache`].
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Global byte budget; each of the `n` shards gets `max_bytes / n`.
    pub max_bytes: u64,
    /// Eviction policy (every shard runs its own instance).
    pub policy: PolicyKind,
    /// Number of shards, rounded up to a power of two; 0 picks 4 x CPUs, fewer if that would
    /// leave a shard below 1 MiB (rounded down to a power of two).
    pub shards: usize,
}

impl CacheConfig {
    /// A config with the default policy and automatic sharding.
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            policy: PolicyKind::default(),
            shards: 0,
        }
    }
}

/// Counters (monotonic) and gauges (`entries`, `bytes`), summed over shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `get` calls that returned a value.
    pub hits: u64,
    /// `get` calls that returned nothing (absent or expired).
    pub misses: u64,
    /// Entries stored by `complete_fill`.
    pub inserts: u64,
    /// Entries dropped by the eviction policy to make room.
    pub evictions: u64,
    /// Entries dropped because their deadline passed.
    pub expirations: u64,
    /// Entries dropped by `invalidate_group`, `invalidate_tag` or `clear`.
    pub invalidations: u64,
    /// Fills refused because an invalidation raced with them.
    pub stale_fills: u64,
    /// Fills refused by the policy or because the entry cannot fit a shard.
    pub rejected_fills: u64,
    /// Entries resident now.
    pub entries: u64,
    /// Bytes charged for resident entries now.
    pub bytes: u64,
    /// The configured budget.
    pub max_bytes: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    invalidations: AtomicU64,
    stale_fills: AtomicU64,
    rejected_fills: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
}

/// One shard on its own cache lines.
#[repr(align(128))]
struct Shard {
    core: Mutex<Core>,
    /// Written only under `core`'s lock, read without it.
    counters: Counters,
}

/// Proof that a fill began at a given moment; see [`Cache::begin_fill`].
#[derive(Debug)]
#[must_use = "a fill ticket does nothing unless passed to complete_fill"]
pub struct FillTicket {
    group: Bytes,
    group_hash: u64,
    tag: u64,
    group_epoch: u64,
    tag_epoch: u64,
    scope_epoch: u64,
}

impl FillTicket {
    /// The group the fill is for.
    pub fn group(&self) -> &[u8] {
        &self.group
    }
    /// The tag the fill is for.
    pub fn tag(&self) -> u64 {
        self.tag
    }
    /// The group's hash, as [`Cache::group_hash`] has it.
    pub fn group_hash(&self) -> u64 {
        self.group_hash
    }
    /// The invalidation state the ticket remembers, to keep beyond the fill.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            group_hash: self.group_hash,
            group_epoch: self.group_epoch,
            tag: self.tag,
            tag_epoch: self.tag_epoch,
            scope_epoch: self.scope_epoch,
        }
    }
}

/// The invalidation state of a group and a tag at a fill's start ([`FillTicket::stamp`]):
/// [`Cache::is_fresh`] tells whether neither, nor the whole cache, has been invalidated
/// since. Something learnt by that fill's read stays true as long as the stamp is fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The group's hash (the cache's own hasher): which group the stamp is of.
    pub group_hash: u64,
    group_epoch: u64,
    tag: u64,
    tag_epoch: u64,
    scope_epoch: u64,
}

impl Stamp {
    /// The invalidation count of the group's counter when the fill began.
    pub fn group_epoch(&self) -> u64 {
        self.group_epoch
    }
}

/// A lookup's hashes: its group's ([`Cache::group_hash`]) and its entry's
/// ([`Cache::key_hash`]), for a caller that samples lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hashes {
    pub group: u64,
    pub key: u64,
}

/// A concurrent, byte-bounded cache of byte values keyed by (group, key), with group and tag
/// invalidation. See the crate docs for the model.
pub struct Cache {
    shards: Box<[Shard]>,
    mask: usize,
    hasher: Hasher,
    group_epochs: Box<[AtomicU64]>,
    tag_epochs: Box<[AtomicU64]>,
    /// Bumped, all of them, by `clear`; one by `invalidate_scope`.
    scope_epochs: Box<[AtomicU64]>,
    max_bytes: u64,
    policy: PolicyKind,
}

/// Smallest shard [`auto_shards`] makes.
const MIN_SHARD: u64 = 1 << 20;

/// Shards for a cache of `max_bytes` on `cpus` CPUs: 4 per CPU, fewer if that would leave a
/// shard below 1 MiB; rounded down to a power of two, at least one.
fn auto_shards(max_bytes: u64, cpus: usize) -> usize {
    let fit = usize::try_from(max_bytes / MIN_SHARD).unwrap_or(usize::MAX);
    let n = (4 * cpus).min(fit).max(1);
    1 << n.ilog2()
}

fn mix64(x: u64) -> u64 {
    let x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    let x = (x ^ (x >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

impl Cache {
    /// Build a cache.
    pub fn new(config: CacheConfig) -> Self {
        let n = if config.shards == 0 {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            auto_shards(config.max_bytes, cpus)
        } else {
            config.shards.min(1 << 16).next_power_of_two()
        };
        let budget = config.max_bytes / n as u64;
        let hasher = Hasher::default();
        let shards = (0..n)
            .map(|_| Shard {
                core: Mutex::new(Core::new(config.policy, budget, hasher.clone())),
                counters: Counters::default(),
            })
            .collect();
        let epochs = || (0..EPOCH_COUNTERS).map(|_| AtomicU64::new(0)).collect();
        Self {
            shards,
            mask: n - 1,
            hasher,
            group_epochs: epochs(),
            tag_epochs: epochs(),
            scope_epochs: (0..SCOPE_COUNTERS).map(|_| AtomicU64::new(0)).collect(),
            max_bytes: config.max_bytes,
            policy: config.policy,
        }
    }

    /// The policy every shard runs.
    pub fn policy(&self) -> PolicyKind {
        self.policy
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Bytes an entry with these sizes would be charged: key + group + value, their two length
    /// prefixes (a byte each below 128) and the fixed overhead ([`crate::ENTRY_OVERHEAD`] plus
    /// the policy's per-entry metadata).
    pub fn entry_cost(&self, key_len: usize, group_len: usize, value_bytes: u64) -> u64 {
        let packed = packed_len(group_len, key_len, value_bytes as usize);
        self.shards[0].core.lock().cost(packed)
    }

    fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    /// A group's hash (it picks the shard from bits 40 and up): what a lookup computes first.
    pub fn group_hash(&self, group: &[u8]) -> u64 {
        self.hash(group)
    }

    /// An entry's hash from its group's hash and its key.
    pub fn key_hash(&self, group_hash: u64, key: &[u8]) -> u64 {
        entry_hash(&self.hasher, group_hash, key)
    }

    fn shard(&self, group_hash: u64) -> &Shard {
        &self.shards[(group_hash >> 40) as usize & self.mask]
    }

    fn group_epoch(&self, group_hash: u64) -> &AtomicU64 {
        &self.group_epochs[(group_hash >> 20) as usize % EPOCH_COUNTERS]
    }

    fn tag_epoch(&self, tag: u64) -> &AtomicU64 {
        &self.tag_epochs[mix64(tag) as usize % EPOCH_COUNTERS]
    }

    fn scope_epoch(&self, tag: u64) -> &AtomicU64 {
        &self.scope_epochs[usize::from(tag_scope(tag)) % SCOPE_COUNTERS]
    }

    /// The invalidation count of the counter `group_hash` shares (see [`Stamp::group_epoch`]):
    /// unchanged since a stamp, nothing invalidated its group.
    pub fn group_epoch_now(&self, group_hash: u64) -> u64 {
        self.group_epoch(group_hash).load(Ordering::SeqCst)
    }

    /// Whether nothing invalidated `stamp`'s group or tag, nor cleared the cache, since its
    /// fill began (hashed counters: a false "no" is possible, a false "yes" is not).
    pub fn is_fresh(&self, stamp: &Stamp) -> bool {
        self.group_epoch(stamp.group_hash).load(Ordering::SeqCst) == stamp.group_epoch
            && self.tag_epoch(stamp.tag).load(Ordering::SeqCst) == stamp.tag_epoch
            && self.scope_epoch(stamp.tag).load(Ordering::SeqCst) == stamp.scope_epoch
    }

    /// Look up `key` in `group` and return a copy of its value, unless absent or expired at
    /// `now` (milliseconds on the caller's monotonic clock, see [`crate::Clock`]). An expired
    /// entry found here is removed. Entries are identified by (group, key), both compared in
    /// full; the group also picks the shard.
    pub fn get(&self, group: &[u8], key: &[u8], now: u64) -> Option<Bytes> {
        self.get_with(group, key, now, Bytes::copy_from_slice)
    }

    /// Like [`Cache::get`], but hands the value to `f` instead of copying it out. `f` runs under
    /// the shard's lock: it must be quick (copy the bytes somewhere) and must not call into the
    /// cache.
    #[inline]
    pub fn get_with<R>(
        &self,
        group: &[u8],
        key: &[u8],
        now: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        self.get_hashed(group, key, now, f).0
    }

    /// [`Cache::get_with`] that also hands back the group's hash it computed. The entry's own
    /// hash ([`Cache::key_hash`]) is computed only if the lookup needs it, so a caller that
    /// samples lookups asks for it when it samples one.
    #[inline]
    pub fn get_hashed<R>(
        &self,
        group: &[u8],
        key: &[u8],
        now: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> (Option<R>, u64) {
        let group_hash = self.hash(group);
        let shard = self.shard(group_hash);
        let mut garbage = Garbage::new();
        let found = {
            let mut core = shard.core.lock();
            let (found, delta) = core.get(group_hash, group, key, now, &mut garbage, f);
            let c = &shard.counters;
            bump(if found.is_some() { &c.hits } else { &c.misses }, 1);
            account(c, &core, delta);
            found
        };
        drop(garbage);
        (found, group_hash)
    }

    /// Start a fill: call *before* sending the read upstream. The ticket remembers the
    /// invalidation state of `group`, `tag` and the whole cache at this moment.
    pub fn begin_fill(&self, group: &[u8], tag: u64) -> FillTicket {
        self.begin_fill_shared(Bytes::copy_from_slice(group), tag)
    }

    /// [`Cache::begin_fill`] keeping `group` as it is rather than a copy of it: no allocation,
    /// but whatever `group` is a slice of stays alive as long as the ticket.
    pub fn begin_fill_shared(&self, group: Bytes, tag: u64) -> FillTicket {
        let group_hash = self.hash(&group);
        FillTicket {
            group,
            group_hash,
            tag,
            group_epoch: self.group_epoch(group_hash).load(Ordering::SeqCst),
            tag_epoch: self.tag_epoch(tag).load(Ordering::SeqCst),
            scope_epoch: self.scope_epoch(tag).load(Ordering::SeqCst),
        }
    }

    /// Finish a fill: store a copy of `value` under `key` (in the ticket's group and tag; group,
    /// key and value share one allocation) unless the group
    /// was invalidated, the tag invalidated or the cache cleared since `begin_fill` (checked
    /// under the shard lock, so an invalidation either rejects this fill or removes its entry).
    /// May also refuse because the policy does not admit the entry, the entry alone exceeds a
    /// shard's budget, or `expires_at <= now`. Returns whether the entry is now cached. An
    /// existing entry with the same key is replaced. Spurious refusals (hash collisions of the
    /// invalidation counters) can happen; a stale insert cannot.
    pub fn complete_fill(
        &self,
        ticket: FillTicket,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        expires_at: u64,
        now: u64,
    ) -> bool {
        self.complete_fill_parts(ticket, key, &[value.as_ref()], expires_at, now)
    }

    /// [`Cache::complete_fill`] with the value given in parts, stored as their concatenation
    /// (copied once, straight into the entry's allocation).
    pub fn complete_fill_parts(
        &self,
        ticket: FillTicket,
        key: impl AsRef<[u8]>,
        value: &[&[u8]],
        expires_at: u64,
        now: u64,
    ) -> bool {
        let shard = self.shard(ticket.group_hash);
        let key = key.as_ref();
        let key_hash = entry_hash(&self.hasher, ticket.group_hash, key);
        // Copied before the lock is taken.
        let data = pack(&ticket.group, key, value);
        let mut garbage = Garbage::new();
        let stored = {
            let mut core = shard.core.lock();
            let c = &shard.counters;
            let fresh = self.is_fresh(&ticket.stamp());
            if fresh {
                let (stored, delta) = core.insert(
                    key_hash,
                    ticket.group_hash,
                    data,
                    ticket.tag,
                    expires_at,
                    now,
                    &mut garbage,
                );
                bump(
                    if stored {
                        &c.inserts
                    } else {
                        &c.rejected_fills
                    },
                    1,
                );
                account(c, &core, delta);
                stored
            } else {
                bump(&c.stale_fills, 1);
                drop(core);
                drop(data);
                false
            }
        };
        drop(garbage);
        stored
    }

    /// Drop every entry of `group` and make in-flight fills of it fail. Returns entries removed.
    pub fn invalidate_group(&self, group: &[u8]) -> usize {
        let group_hash = self.hash(group);
        let shard = self.shard(group_hash);
        let mut garbage = Garbage::new();
        let removed = {
            let mut core = shard.core.lock();
            self.group_epoch(group_hash).fetch_add(1, Ordering::SeqCst);
            let (removed, delta) = core.remove_group(group_hash, group, &mut garbage);
            bump(&shard.counters.invalidations, removed);
            account(&shard.counters, &core, delta);
            removed
        };
        drop(garbage);
        removed as usize
    }

    /// Drop every entry stored with `tag` and make in-flight fills with it fail (use when the
    /// upstream connection whose tracking protected them is lost). Returns entries removed.
    pub fn invalidate_tag(&self, tag: u64) -> usize {
        self.tag_epoch(tag).fetch_add(1, Ordering::SeqCst);
        self.sweep_shards(|core, g| core.remove_tag(tag, g))
    }

    /// Drop every entry whose tag has `scope` ([`tag_scope`]) and make in-flight fills with
    /// such tags fail (use when whatever protected a whole scope, an upstream node's
    /// invalidation connection, is lost). Returns entries removed.
    pub fn invalidate_scope(&self, scope: u16) -> usize {
        self.scope_epoch(u64::from(scope) << 48)
            .fetch_add(1, Ordering::SeqCst);
        self.sweep_shards(|core, g| core.remove_scope(scope, g))
    }

    /// Drop everything and make every in-flight fill fail. Returns entries removed.
    pub fn clear(&self) -> usize {
        for epoch in self.scope_epochs.iter() {
            epoch.fetch_add(1, Ordering::SeqCst);
        }
        self.sweep_shards(|core, g| core.clear(g))
    }

    fn sweep_shards(&self, mut f: impl FnMut(&mut Core, &mut Garbage) -> (u64, Delta)) -> usize {
        let mut total = 0u64;
        for shard in self.shards.iter() {
            let mut garbage = Garbage::new();
            {
                let mut core = shard.core.lock();
                let (removed, delta) = f(&mut core, &mut garbage);
                bump(&shard.counters.invalidations, removed);
                account(&shard.counters, &core, delta);
                total += removed;
            }
            drop(garbage);
        }
        total as usize
    }

    /// Sum of the shards' counters; no locks taken, so a snapshot under concurrent use is only
    /// approximately consistent.
    pub fn stats(&self) -> CacheStats {
        let mut s = CacheStats {
            max_bytes: self.max_bytes,
            ..CacheStats::default()
        };
        for shard in self.shards.iter() {
            let c = &shard.counters;
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s.hits += get(&c.hits);
            s.misses += get(&c.misses);
            s.inserts += get(&c.inserts);
            s.evictions += get(&c.evictions);
            s.expirations += get(&c.expirations);
            s.invalidations += get(&c.invalidations);
            s.stale_fills += get(&c.stale_fills);
            s.rejected_fills += get(&c.rejected_fills);
            s.entries += get(&c.entries);
            s.bytes += get(&c.bytes);
        }
        s
    }

    /// Full consistency check (O(entries), locks each shard in turn): accounted bytes equal the
    /// sum of entry costs and fit the budget; every indexed entry is in exactly one policy
    /// structure and vice versa; group and tag indexes match the entries; gauges match.
    pub fn validate(&self) -> Result<(), String> {
        let mut bytes = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            let core = shard.core.lock();
            core.validate().map_err(|e| format!("shard {i}: {e}"))?;
            let c = &shard.counters;
            if c.entries.load(Ordering::Relaxed) != core.len() as u64
                || c.bytes.load(Ordering::Relaxed) != core.bytes()
            {
                return Err(format!("shard {i}: gauges out of step"));
            }
            bytes += core.bytes();
        }
        if bytes > self.max_bytes {
            return Err(format!("{bytes} bytes over the budget {}", self.max_bytes));
        }
        Ok(())
    }
}

/// Update counters and gauges after an operation (caller holds the shard lock).
fn account(c: &Counters, core: &Core, d: Delta) {
    bump(&c.evictions, d.evicted);
    bump(&c.expirations, d.expired);
    c.entries.store(core.len() as u64, Ordering::Relaxed);
    c.bytes.store(core.bytes(), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::{auto_shards, MIN_SHARD};

    #[test]
    fn auto_shards_keep_a_mebibyte_each() {
        const MIB: u64 = 1 << 20;
        assert_eq!(auto_shards(10 << 30, 2), 8);
        assert_eq!(auto_shards(64 * MIB, 2), 8);
        assert_eq!(auto_shards(6 * MIB, 2), 4);
        // 3 MiB rounds down to 2 shards, not up to 4 of 768 KiB.
        assert_eq!(auto_shards(3 * MIB, 2), 2);
        assert_eq!(auto_shards(MIN_SHARD / 2, 2), 1);
        // 3 CPUs: 12 rounds down to 8.
        assert_eq!(auto_shards(1 << 30, 3), 8);
        for bytes in [0, 1, MIB, 5 * MIB, 100 * MIB, 1 << 40] {
            for cpus in 1..=12 {
                let n = auto_shards(bytes, cpus);
                assert!(n.is_power_of_two() && n <= 4 * cpus, "{bytes} {cpus}: {n}");
                assert!(
                    n == 1 || bytes / n as u64 >= MIN_SHARD,
                    "{bytes} {cpus}: {n}"
                );
            }
        }
    }

    #[test]
    fn a_stamp_stays_fresh_until_its_group_its_tag_or_the_cache_is_invalidated() {
        let cache = super::Cache::new(super::CacheConfig::with_max_bytes(1 << 20));
        let stamp = |g: &[u8], tag| {
            let t = cache.begin_fill(g, tag);
            let s = t.stamp();
            drop(t);
            s
        };
        let s = stamp(b"k", 7);
        assert!(cache.is_fresh(&s));
        cache.invalidate_group(b"other");
        cache.invalidate_tag(8);
        assert!(
            cache.is_fresh(&s),
            "others' invalidations (barring counter collisions)"
        );
        cache.invalidate_group(b"k");
        assert!(!cache.is_fresh(&s));
        let s = stamp(b"k", 7);
        cache.invalidate_tag(7);
        assert!(!cache.is_fresh(&s));
        let s = stamp(b"k", 7);
        cache.clear();
        assert!(!cache.is_fresh(&s));
    }
}
