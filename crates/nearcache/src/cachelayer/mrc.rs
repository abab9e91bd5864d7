//! The running proxy's own miss-ratio curve: the hit ratio an LRU cache would get at other
//! sizes, estimated from a spatial sample of the lookups (SHARDS, Waldspurger et al., FAST
//! 2015, its fixed-size variant with the `adj` correction).
//!
//! A lookup is sampled when its group's hash, rotated away from the bits that pick the shard
//! ([`spot`]), falls under a threshold T: one comparison on the lookup path, with the hash the
//! cache computed anyway. Sampled lookups, the fills and invalidations of sampled groups come
//! here, under a lock no other lookup takes. Each sampled entry sits on one LRU stack: a
//! Fenwick tree over use times holds its cost ([`cache::Cache::entry_cost`]), so its stack
//! distance (the bytes used since its last use, its own included) is a prefix sum, scaled by
//! 1/R (R = T/2^64) into bytes of the whole cache. Distances go to a histogram of log-spaced
//! buckets (16 per octave), read at any size when a scrape asks ([`Mrc::curve`]).
//!
//! Bounded: at most `max_keys` entries (more, and T drops to the highest spot sampled, whose
//! entries leave), the `mrc_sample_keys` setting or what [`MEMORY_SHARE`] of `max_memory`
//! holds ([`affordable_keys`]), whichever is fewer; use times renumbered when the tree is
//! full; a fixed histogram. The histogram halves every [`HALF_LIFE`] sampled lookups, so the curve
//! follows the current workload. What it leaves out: the cache's admission policy (the curve
//! is LRU's), its shards (one stack of the whole budget), entries dropped with a lost
//! connection's tag (they stay on the stack until used, invalidated or expired).
//! Never on the lookup path beyond [`Mrc::samples`]; never calls into the cache.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use cache::Hashes;

use crate::fenwick::Fenwick;

/// Share of `max_memory` the sample may take at most: what the issue of a sampler that costs
/// "well under 1%" of the cache's memory allows, half of it.
const MEMORY_SHARE: u64 = 200;

/// What a sampled entry takes: its place in the map (16-byte key, 16-byte slot, in B-tree
/// nodes of 11; 51-56 bytes requested per entry, measured with this map's churn at 164 to
/// 4,096 entries, before the allocator's rounding) and its [`TIMES_PER_KEY`] use times of 8.
const BYTES_PER_KEY: u64 = 80;

/// What the sampler takes whatever its size: the histogram.
const FIXED_BYTES: u64 = (BUCKETS * std::mem::size_of::<f64>()) as u64;

/// The sampled entries `max_memory` affords at [`MEMORY_SHARE`]: 4,096 from 64 MB up (the
/// default `mrc_sample_keys`), 164 at 4 MB, none below about 1.6 MB (no curve).
pub fn affordable_keys(max_memory: u64) -> usize {
    let room = (max_memory / MEMORY_SHARE).saturating_sub(FIXED_BYTES);
    usize::try_from(room / BYTES_PER_KEY).unwrap_or(usize::MAX)
}

/// Fewer sampled entries than this make no curve worth showing (SHARDS's spread at a few
/// dozen keys is tens of points): the sampler stays off.
const MIN_KEYS: usize = 64;

/// The first threshold: one group in 64 (R = 1/64). Samples no more than that even when the
/// cache has few keys, so that the sampler's lock and stack cost a sixty-fourth of their price
/// per lookup on average; a smaller share would leave a cache of a few thousand keys with a
/// few dozen sampled ones.
const FIRST_THRESHOLD: u64 = u64::MAX >> 6;

/// Use times per sampled entry before the stack is renumbered (every live entry keeps its
/// order): renumbering, O(n log n), comes once in every 2n uses.
const TIMES_PER_KEY: usize = 3;

/// Sampled lookups after which the histogram's counts halve.
pub const HALF_LIFE: u64 = 1 << 17;

/// Histogram buckets per octave, as a shift.
const SUB_BITS: u32 = 4;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) << SUB_BITS;

/// Where a group falls in the sample space: its hash, rotated so that the bits the cache picks
/// a shard with (40 and up) are not the ones compared (sampled groups spread over every shard).
#[inline]
fn spot(group_hash: u64) -> u64 {
    group_hash.rotate_left(24)
}

/// A distance's bucket: exact below 16 bytes, then 16 per octave.
fn bucket(d: u64) -> usize {
    if d < 1 << SUB_BITS {
        return d as usize;
    }
    let e = 63 - d.leading_zeros();
    let m = (d >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (((e - SUB_BITS + 1) << SUB_BITS) as u64 + m) as usize
}

/// The smallest distance in bucket `b`.
fn lower(b: usize) -> f64 {
    if b < 1 << SUB_BITS {
        return b as f64;
    }
    let e = (b >> SUB_BITS) as i32 + SUB_BITS as i32 - 1;
    let m = (b & ((1 << SUB_BITS) - 1)) as f64;
    (16.0 + m) * 2f64.powi(e - SUB_BITS as i32)
}

/// A sampled entry's place on the stack.
#[derive(Clone, Copy)]
struct Slot {
    pos: u32,
    weight: u32,
    deadline: u64,
}

/// The sample, under [`Mrc`]'s lock.
struct Sample {
    threshold: u64,
    max_keys: usize,
    /// By (spot, entry hash): a group's entries are a range, the highest spot the last.
    entries: BTreeMap<(u64, u64), Slot>,
    stack: Fenwick,
    clock: usize,
    /// Sampled lookups by stack distance (bytes of the whole cache), and those that missed at
    /// every size; decayed.
    hist: Vec<f64>,
    cold: f64,
    since_decay: u64,
    /// Sampled lookups expected (the cache's lookups times the rate then), decayed alike;
    /// counted up to `counted`, the cache's lookups at the last count.
    expected: f64,
    counted: u64,
}

/// What the sample holds, for `NEARCACHE INFO`.
pub struct Summary {
    pub keys: usize,
    /// Most keys it may hold (0: the curve is off).
    pub max_keys: usize,
    pub rate: f64,
    pub lookups: f64,
}

/// The sampler: the threshold every lookup compares with, and the sample behind a lock.
pub struct Mrc {
    threshold: AtomicU64,
    sample: Mutex<Sample>,
}

impl Mrc {
    /// A sampler of at most `max_keys` entries, fewer if `max_memory` does not afford them;
    /// off (it samples nothing) below [`MIN_KEYS`].
    pub fn new(max_keys: usize, max_memory: u64) -> Self {
        let keys = max_keys.min(affordable_keys(max_memory));
        if keys < MIN_KEYS {
            return Mrc::with_threshold(0, 0);
        }
        Mrc::with_threshold(FIRST_THRESHOLD, keys)
    }

    /// A sampler of `max_keys` entries that starts at `threshold` (u64::MAX samples every
    /// group at first, 0 none ever).
    fn with_threshold(threshold: u64, max_keys: usize) -> Self {
        Mrc {
            threshold: AtomicU64::new(threshold),
            sample: Mutex::new(Sample {
                threshold,
                max_keys,
                entries: BTreeMap::new(),
                stack: Fenwick::new(TIMES_PER_KEY * max_keys),
                clock: 0,
                hist: vec![0.0; BUCKETS],
                cold: 0.0,
                since_decay: 0,
                expected: 0.0,
                counted: 0,
            }),
        }
    }

    /// Whether the group of this hash is sampled: the one test a lookup pays.
    #[inline]
    pub fn samples(&self, group_hash: u64) -> bool {
        spot(group_hash) < self.threshold.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Sample> {
        // The sample stays consistent at every step a panic could interrupt.
        self.sample.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A sampled lookup at `now` (cache clock); `lookups` counts the cache's lookups so far.
    pub fn reference(&self, h: Hashes, now: u64, lookups: impl Fn() -> u64) {
        let mut s = self.lock();
        let key = (spot(h.group), h.key);
        if key.0 >= s.threshold {
            return; // the threshold dropped since the test
        }
        if s.clock == s.stack.positions() {
            s.renumber();
        }
        let scale = s.scale();
        let Sample {
            entries,
            stack,
            hist,
            clock,
            ..
        } = &mut *s;
        match entries.get_mut(&key) {
            Some(slot) if slot.deadline > now => {
                let weight = i64::from(slot.weight);
                let used = weight + stack.after(slot.pos as usize);
                let d = used.max(0) as f64 * scale;
                hist[bucket(d as u64)] += 1.0;
                stack.add(slot.pos as usize, -weight);
                stack.add(*clock, weight);
                slot.pos = *clock as u32;
                *clock += 1;
            }
            Some(_) => {
                s.remove(key);
                s.cold += 1.0;
            }
            None => s.cold += 1.0,
        }
        s.since_decay += 1;
        if s.since_decay >= HALF_LIFE {
            s.count(lookups());
            s.since_decay = 0;
            s.hist.iter_mut().for_each(|c| *c /= 2.0);
            s.cold /= 2.0;
            s.expected /= 2.0;
        }
    }

    /// A sampled entry stored (or replaced) at `cost` bytes, until `deadline`.
    pub fn fill(&self, h: Hashes, cost: u64, deadline: u64, lookups: impl Fn() -> u64) {
        let mut s = self.lock();
        let key = (spot(h.group), h.key);
        if key.0 >= s.threshold {
            return;
        }
        s.remove(key);
        let weight = u32::try_from(cost).unwrap_or(u32::MAX);
        let pos = s.next_pos();
        s.stack.add(pos, i64::from(weight));
        s.entries.insert(
            key,
            Slot {
                pos: pos as u32,
                weight,
                deadline,
            },
        );
        while s.entries.len() > s.max_keys {
            // Fixed size: the highest spot leaves, and the rate drops to what remains.
            let Some((&(top, _), _)) = s.entries.last_key_value() else {
                break;
            };
            s.count(lookups());
            s.remove_group(top);
            s.threshold = top;
            self.threshold.store(top, Ordering::Relaxed);
        }
    }

    /// A sampled group written or invalidated: its entries leave the stack.
    pub fn invalidate(&self, group_hash: u64) {
        self.lock().remove_group(spot(group_hash));
    }

    /// The cache emptied: so is the stack (the histogram keeps what it saw).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.entries.clear();
        s.stack.clear();
        s.clock = 0;
    }

    /// The estimated LRU hit ratio at each of `sizes` (bytes), given the cache's lookups so
    /// far; `None` before any lookup was sampled. Non-decreasing in the size.
    pub fn curve(&self, sizes: &[u64], lookups: u64) -> Option<Vec<f64>> {
        let mut s = self.lock();
        s.count(lookups);
        let seen = s.hist.iter().sum::<f64>() + s.cold;
        if seen == 0.0 {
            return None;
        }
        // SHARDS's adj: the sampled lookups the rate promised but the sample did not see (or
        // saw too many of) are those of the hottest groups, under- (or over-) sampled: counted
        // as hits at every size, as the hottest entries' lookups are.
        // Out of the expected count (the sampled lookups themselves before any was expected).
        let total = if s.expected > 0.0 { s.expected } else { seen };
        let missing = total - seen;
        Some(
            sizes
                .iter()
                .map(|&size| ((s.hits_within(size as f64) + missing) / total).clamp(0.0, 1.0))
                .collect(),
        )
    }

    pub fn summary(&self) -> Summary {
        let s = self.lock();
        Summary {
            keys: s.entries.len(),
            max_keys: s.max_keys,
            rate: s.rate(),
            lookups: s.hist.iter().sum::<f64>() + s.cold,
        }
    }
}

impl Sample {
    fn rate(&self) -> f64 {
        self.threshold as f64 / 2f64.powi(64)
    }

    /// Bytes of the whole cache per byte of the sample.
    fn scale(&self) -> f64 {
        1.0 / self.rate()
    }

    /// Counts the sampled lookups expected since the last count, at the rate in force.
    fn count(&mut self, lookups: u64) {
        self.expected += lookups.saturating_sub(self.counted) as f64 * self.rate();
        self.counted = self.counted.max(lookups);
    }

    /// Sampled lookups at most `size` bytes deep, interpolated inside the bucket holding it.
    fn hits_within(&self, size: f64) -> f64 {
        let mut hits = 0.0;
        for (b, &n) in self.hist.iter().enumerate() {
            let (lo, hi) = (lower(b), lower(b + 1));
            if hi <= size + 1.0 {
                hits += n;
            } else {
                if lo <= size {
                    hits += n * (size + 1.0 - lo) / (hi - lo);
                }
                break;
            }
        }
        hits
    }

    /// A fresh use time, renumbering the live entries' when none is left.
    fn next_pos(&mut self) -> usize {
        if self.clock == self.stack.positions() {
            self.renumber();
        }
        self.clock += 1;
        self.clock - 1
    }

    /// Use times 0.. again for the live entries, in their order.
    fn renumber(&mut self) {
        let mut order: Vec<(u32, (u64, u64))> =
            self.entries.iter().map(|(k, s)| (s.pos, *k)).collect();
        order.sort_unstable();
        self.stack.clear();
        for (i, (_, key)) in order.iter().enumerate() {
            if let Some(slot) = self.entries.get_mut(key) {
                slot.pos = i as u32;
                self.stack.add(i, i64::from(slot.weight));
            }
        }
        self.clock = order.len();
    }

    fn remove(&mut self, key: (u64, u64)) {
        if let Some(slot) = self.entries.remove(&key) {
            self.stack.add(slot.pos as usize, -i64::from(slot.weight));
        }
    }

    fn remove_group(&mut self, spot: u64) {
        let keys: Vec<(u64, u64)> = self
            .entries
            .range((spot, 0)..=(spot, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setting's default.
    const KEYS: usize = 4096;

    #[test]
    fn buckets_are_ordered_and_hold_their_distances() {
        for d in (0..5000u64).chain([1 << 20, (1 << 40) + 12345, (1 << 62) + (1 << 50)]) {
            let b = bucket(d);
            assert!(b < BUCKETS, "{d}");
            assert!(
                lower(b) <= d as f64 && (d as f64) < lower(b + 1),
                "{d} in {b}"
            );
        }
        assert!((1..BUCKETS).all(|b| lower(b - 1) < lower(b)));
    }

    fn hashes(group: u64, key: u64) -> Hashes {
        // Spots are the rotated hash: pick the spot, rotate back.
        Hashes {
            group: group.rotate_right(24),
            key,
        }
    }

    #[test]
    fn a_cyclic_scan_hits_only_where_it_fits() {
        // 100 entries of 10 bytes read in a loop: each is 1,000 bytes deep.
        let mrc = Mrc::with_threshold(u64::MAX, KEYS);
        let mut lookups = 0;
        for round in 0..10 {
            for g in 0..100u64 {
                lookups += 1;
                let h = hashes(g << 32, g);
                mrc.reference(h, 0, || lookups);
                if round == 0 {
                    mrc.fill(h, 10, u64::MAX, || lookups);
                }
            }
        }
        // 1,000 falls in the bucket 992..1024: sizes below it miss, sizes past it hit.
        let c = mrc.curve(&[900, 1023, 1_000_000], lookups).unwrap();
        assert_eq!(c[0], 0.0);
        assert!((c[1] - 0.9).abs() < 1e-9, "{c:?}");
        assert!((c[2] - 0.9).abs() < 1e-9, "{c:?}");
    }

    /// Hit ratios of an exact byte-weighted LRU (a list, most recent first) at `sizes`, and
    /// the sampler's estimate for the same lookups, filled on a miss as the proxy does.
    fn exact_and_estimated(threshold: u64, sizes: &[u64]) -> (Vec<f64>, Vec<f64>) {
        let mrc = Mrc::with_threshold(threshold, KEYS);
        let mut list: Vec<(u64, u64)> = Vec::new();
        let mut hits = vec![0u64; sizes.len()];
        let mut x = 7u64;
        let n = 40_000u64;
        for lookups in 1..=n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Skewed: key = 3000 * u^3 (all fit the sample at rate 1), 100 to 900 bytes.
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let k = (3000.0 * u * u * u) as u64;
            let weight = 100 + (k * 37) % 800;
            let at = list.iter().position(|&(key, _)| key == k);
            if let Some(at) = at {
                let depth: u64 = list[..=at].iter().map(|&(_, w)| w).sum();
                for (h, &size) in hits.iter_mut().zip(sizes) {
                    *h += u64::from(depth <= size);
                }
                list.remove(at);
            }
            list.insert(0, (k, weight));
            let h = Hashes {
                group: k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                key: k,
            };
            if mrc.samples(h.group) {
                mrc.reference(h, 0, || lookups);
                if at.is_none() {
                    mrc.fill(h, weight, u64::MAX, || lookups);
                }
            }
        }
        let exact = hits.iter().map(|&h| h as f64 / n as f64).collect();
        (exact, mrc.curve(sizes, n).unwrap())
    }

    #[test]
    fn the_estimate_follows_an_exact_lru() {
        let sizes = [50_000, 200_000, 500_000, 1_000_000, 4_000_000];
        // Every key sampled: only the histogram's buckets part them.
        let (exact, all) = exact_and_estimated(u64::MAX, &sizes);
        for (e, a) in exact.iter().zip(&all) {
            assert!((e - a).abs() < 0.01, "exact {exact:?}, estimated {all:?}");
        }
        // A quarter of the keys: SHARDS's spread.
        let (_, some) = exact_and_estimated(u64::MAX / 4, &sizes);
        for (e, a) in exact.iter().zip(&some) {
            assert!((e - a).abs() < 0.05, "exact {exact:?}, sampled {some:?}");
        }
    }

    #[test]
    fn invalidated_expired_and_flushed_entries_miss() {
        let mrc = Mrc::with_threshold(u64::MAX, KEYS);
        let (a, b) = (hashes(1 << 40, 1), hashes(2 << 40, 2));
        mrc.fill(a, 10, 100, || 0);
        mrc.fill(b, 10, 100, || 0);
        mrc.invalidate(a.group);
        mrc.reference(a, 0, || 1); // invalidated
        mrc.reference(b, 0, || 2); // a hit, 10 bytes deep
        mrc.reference(b, 100, || 3); // expired
        mrc.fill(a, 10, 100, || 3);
        mrc.clear();
        mrc.reference(a, 0, || 4); // flushed
        let c = mrc.curve(&[10, 1 << 30], 4).unwrap();
        assert_eq!(c, vec![0.25, 0.25]);
        assert_eq!(mrc.summary().keys, 0);
    }

    #[test]
    fn the_sample_keeps_its_size_and_its_stack_its_length() {
        let mrc = Mrc::with_threshold(u64::MAX, KEYS);
        let mut lookups = 0;
        for i in 0..(4 * KEYS as u64) {
            let h = Hashes {
                group: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                key: i,
            };
            lookups += 1;
            if mrc.samples(h.group) {
                mrc.reference(h, 0, || lookups);
                mrc.fill(h, 100, u64::MAX, || lookups);
            }
        }
        let s = mrc.summary();
        assert_eq!(s.keys, KEYS);
        // A quarter of the groups fit: the rate fell to about that.
        assert!((0.2..0.3).contains(&s.rate), "{}", s.rate);
        // Every lookup was cold, and about as many were seen as the rate promised.
        assert!(mrc.curve(&[u64::MAX >> 1], lookups).unwrap()[0] < 0.05);
        let locked = mrc.lock();
        assert_eq!(locked.stack.positions(), TIMES_PER_KEY * KEYS);
        assert!(locked.clock <= TIMES_PER_KEY * KEYS);
    }

    #[test]
    fn the_sample_fits_half_a_percent_of_the_cache_or_is_off() {
        for mb in [2u64, 4, 16, 64, 1024] {
            let bytes = mb << 20;
            let keys = affordable_keys(bytes);
            assert!(
                keys as u64 * BYTES_PER_KEY + FIXED_BYTES <= bytes / MEMORY_SHARE,
                "{mb}"
            );
        }
        assert!(affordable_keys(64 << 20) >= KEYS);
        assert!((100..200).contains(&affordable_keys(4 << 20)));
        // Off: with 0 keys, or a cache too small to afford a useful sample.
        for mrc in [Mrc::new(0, 1 << 30), Mrc::new(KEYS, 1 << 20)] {
            assert!((0..1000u64).all(|h| !mrc.samples(h.wrapping_mul(0x9E37_79B9_7F4A_7C15))));
            assert_eq!(mrc.summary().max_keys, 0);
            assert!(mrc.curve(&[1 << 20], 1000).is_none());
        }
        let mrc = Mrc::new(KEYS, 4 << 20);
        assert_eq!(mrc.summary().max_keys, affordable_keys(4 << 20));
    }
}
