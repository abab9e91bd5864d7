//! Set dueling for [`super::Adaptive`]: two miniature caches run over the same hash-sampled
//! subset of the keys (spatial sampling, as in SHARDS), a plain LRU and a copy of the
//! ghost-adaptive W-TinyLFU without shadows of its own, each with the real capacity scaled by the
//! sampling rate. A saturating counter moves by one for every sampled request that exactly one
//! of them hits; its verdict says which of the two has been doing better lately.
//!
//! Memory is a fixed budget per policy instance, whatever the shard's size: each shadow holds at
//! most `max_samples` keys (the sampling rate halves when either holds more), every
//! count-dependent buffer is sized for that bound up front, and [`budget`] is an upper bound of
//! everything it can hold (checked by [`Shadows::check`]). Only sampled keys reach it (the
//! caller asks [`Shadows::sampled`], one multiply), so on a shard of many thousand entries almost
//! every request skips it. Amortised O(1): a rate halving rebuilds the shadows in
//! O(`max_samples`) and happens at most [`MAX_SHIFT`] times in a policy's life.
//!
//! Must never influence which real entries are resident: it only observes and gives a verdict.

use super::adaptive::{Adaptive, GHOST_DIVISOR};
use super::lru::Lru;
use super::wtinylfu::WTinyLfu;
use super::{Handle, Policy};
use hashbrown::HashTable;

/// Net sampled requests (hit by one shadow, missed by the other) the shadow LRU must be ahead by
/// before the real policy switches to LRU. Lower reacts sooner on LRU-friendly traces but lets
/// sampling noise flip the mode (measured on the first version: 16 and 32 cost web07 @ 2048 0.4
/// points, 128 cost backf @ 75 one point).
const TO_LRU: i64 = 64;
/// Net sampled requests the shadow adaptive policy must be ahead by before the real policy
/// leaves LRU mode. Higher than [`TO_LRU`]: resuming costs a refill of the main space, so leaving
/// on a small lead loses more than it wins (sprite @ 707: 0.2 points).
const TO_ADAPTIVE: i64 = 128;
/// The counter saturates here, so old history is outweighed within a bounded number of
/// requests.
const SATURATION: i64 = 512;
/// Largest sampling shift. Past it the shadows only fill up with zero-weight keys, and are
/// cleared instead of halved.
pub const MAX_SHIFT: u32 = 32;

/// Which behaviour the real cache should follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Plain LRU has been winning.
    Lru,
    /// The adaptive W-TinyLFU has been winning.
    Adaptive,
}

/// Bytes a `hashbrown` table of `capacity` (as reported by `capacity()`) holds: buckets of
/// `slot` bytes plus one control byte each, plus a group of trailing control bytes.
pub fn table_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    // hashbrown keeps 1/8 of the buckets empty (from 8 buckets up; below, one).
    let buckets = if capacity < 7 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (slot + 1) + 16
}

/// Most bytes a `hashbrown` table holds once it has held up to `items` entries.
fn table_bound(items: usize, slot: usize) -> usize {
    // A table grows to at least one more than its capacity, and sizes buckets for 8/7 of that.
    let buckets = ((items + 1) * 8 / 7 + 1).next_power_of_two().max(4);
    buckets * (slot + 1) + 16
}

/// Most bytes a `Vec` or `VecDeque` of `len` elements of `size` bytes holds after growing one
/// push at a time (capacity doubles).
fn vec_bound(len: usize, size: usize) -> usize {
    (2 * len).max(4) * size
}

/// Upper bound of the heap bytes a [`Shadows`] of `max_samples` ever holds (every buffer, plus
/// the allocator's header and rounding on each of its allocations).
pub fn budget(max_samples: usize) -> u64 {
    let s = max_samples;
    let slots = slots_for(s);
    // Per slot: its hash, a free-list entry, an LRU node and a W-TinyLFU node.
    let per_slot = 8 + 4 + Lru::NODE_BYTES + WTinyLfu::NODE_BYTES;
    // The copy's sketch, sized for `s` entries (two words each, rounded up to a power of two,
    // and a quarter of that in doorkeeper words).
    let words = (s.max(16) * 2).next_power_of_two();
    let sketch = (words + (words / 4).max(1)) * 8;
    // The copy's two ghosts: each remembers up to a tenth of its entries (at least 16), in a map
    // and a queue that may hold stale copies up to twice that.
    let ghost_live = ((s + 2) / GHOST_DIVISOR).max(16) + 1;
    let ghost = table_bound(ghost_live, 16) + vec_bound(2 * ghost_live + 1, 16);
    // The copy's eviction log and our eviction buffer: up to one shadow's worth per insert.
    let logs = 2 * vec_bound(s + 2, 8) + (s + 2) * 4;
    let allocations = 16 * 64 + std::mem::size_of::<Shadows>();
    (slots * per_slot + table_bound(slots, 4) + sketch + 2 * ghost + logs + allocations) as u64
}

/// Slots needed for `max_samples`: each shadow holds at most one more than `max_samples`
/// (the request that overflows it), and a slot lives while either holds its key.
fn slots_for(max_samples: usize) -> usize {
    2 * max_samples + 2
}

#[inline]
fn sample_bits(hash: u64) -> u64 {
    // Independent of the bits the sketch and the maps use.
    let x = (hash ^ 0x94D0_49BB_1331_11EB).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}

/// Two shadow policies over sampled keys, and the duel between them.
#[derive(Debug)]
pub struct Shadows {
    /// Key hash of every slot; a slot is live while either shadow holds it.
    hashes: Vec<u64>,
    /// Live slots by key hash.
    index: HashTable<u32>,
    free: Vec<u32>,
    lru: Lru,
    ad: Adaptive,
    /// Capacity of the real policy being simulated (weight units).
    capacity: u64,
    shift: u32,
    mask: u64,
    max_samples: usize,
    evicted: Vec<Handle>,
    psel: i64,
    verdict: Verdict,
}

impl Shadows {
    /// Shadows of a cache of `capacity` weight units, sampling every key until a shadow holds
    /// more than `max_samples`.
    pub fn new(capacity: u64, max_samples: usize) -> Self {
        let slots = slots_for(max_samples);
        let mut s = Self {
            hashes: Vec::with_capacity(slots),
            index: HashTable::with_capacity(slots),
            free: Vec::with_capacity(slots),
            lru: Lru::new(0),
            ad: Adaptive::plain(0, 0),
            capacity,
            shift: 0,
            mask: 0,
            max_samples,
            evicted: Vec::with_capacity(max_samples + 2),
            psel: 0,
            verdict: Verdict::Adaptive,
        };
        s.rebuild_shadows();
        s
    }

    /// Fresh, empty shadows at the current scale, their arenas sized for every slot.
    fn rebuild_shadows(&mut self) {
        let slots = slots_for(self.max_samples);
        let cap = self.capacity >> self.shift;
        self.lru = Lru::new(cap);
        self.lru.reserve(slots);
        self.ad = Adaptive::plain(cap, self.max_samples as u64);
        self.ad.reserve(slots);
    }

    /// True if requests for `hash` are simulated.
    #[inline]
    pub fn sampled(&self, hash: u64) -> bool {
        sample_bits(hash) & self.mask == 0
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Window share of the shadow adaptive policy, in parts of its capacity.
    pub fn window_share(&self) -> f64 {
        let cap = self.ad.capacity();
        if cap == 0 {
            0.0
        } else {
            self.ad.window() as f64 / cap as f64
        }
    }

    /// A request for a sampled key (hit or miss in the real cache, it does not matter).
    pub fn access(&mut self, hash: u64, weight: u32) {
        debug_assert!(self.sampled(hash));
        let (lru_hit, ad_hit) = self.feed(hash, weight);
        if lru_hit != ad_hit {
            let d = if lru_hit { 1 } else { -1 };
            self.psel = (self.psel + d).clamp(-SATURATION, SATURATION);
            if self.psel >= TO_LRU {
                self.verdict = Verdict::Lru;
            } else if self.psel <= -TO_ADAPTIVE {
                self.verdict = Verdict::Adaptive;
            }
        }
        while self.lru.len() > self.max_samples || self.ad.len() > self.max_samples {
            if self.shift == MAX_SHIFT {
                self.forget();
                break;
            }
            self.halve_rate();
        }
    }

    /// Run one request through both shadows; returns whether each hit.
    fn feed(&mut self, hash: u64, weight: u32) -> (bool, bool) {
        let slot = self.slot(hash);
        let mut evicted = std::mem::take(&mut self.evicted);
        evicted.clear();
        let lru_hit = self.lru.contains(slot);
        if lru_hit {
            self.lru.on_hit(slot);
        } else {
            self.lru.insert(slot, hash, weight, &mut evicted);
        }
        let ad_hit = self.ad.contains(slot);
        if ad_hit {
            self.ad.on_hit(slot);
        } else {
            self.ad.insert(slot, hash, weight, &mut evicted);
        }
        for &v in &evicted {
            if !self.lru.contains(v) && !self.ad.contains(v) {
                self.release(v);
            }
        }
        self.evicted = evicted;
        (lru_hit, ad_hit)
    }

    /// The slot of `hash`, taking a free one if it has none.
    fn slot(&mut self, hash: u64) -> Handle {
        let hashes = &self.hashes;
        if let Some(&s) = self.index.find(hash, |&s| hashes[s as usize] == hash) {
            return s;
        }
        let s = match self.free.pop() {
            Some(s) => {
                self.hashes[s as usize] = hash;
                s
            }
            None => {
                self.hashes.push(hash);
                (self.hashes.len() - 1) as Handle
            }
        };
        let hashes = &self.hashes;
        self.index.insert_unique(hash, s, |&x| hashes[x as usize]);
        s
    }

    /// Free a slot neither shadow holds (a no-op if it is already free).
    fn release(&mut self, s: Handle) {
        let hash = self.hashes[s as usize];
        if let Ok(e) = self.index.find_entry(hash, |&x| x == s) {
            e.remove();
            self.free.push(s);
        }
    }

    /// The real cache dropped a sampled key without evicting it: drop it from the shadows too.
    pub fn remove(&mut self, hash: u64) {
        let hashes = &self.hashes;
        let Some(&s) = self.index.find(hash, |&s| hashes[s as usize] == hash) else {
            return;
        };
        if self.lru.contains(s) {
            self.lru.remove(s);
        }
        if self.ad.contains(s) {
            self.ad.remove(s);
        }
        self.release(s);
    }

    /// Halve the sampling rate: the shadows are rebuilt at the new scale from the shadow LRU's
    /// keys that stay sampled (oldest first), which loses the copy's frequency history, so the
    /// counter restarts too. The verdict stands until the counter says otherwise.
    fn halve_rate(&mut self) {
        self.shift += 1;
        self.mask = (1u64 << self.shift) - 1;
        let keep: Vec<(u64, u32)> = self
            .lru
            .oldest_first()
            .into_iter()
            .map(|(s, w)| (self.hashes[s as usize], w))
            .filter(|&(h, _)| self.sampled(h))
            .collect();
        self.reset_slots();
        self.rebuild_shadows();
        for (hash, weight) in keep {
            self.feed(hash, weight);
        }
        self.psel = 0;
    }

    fn reset_slots(&mut self) {
        self.hashes.clear();
        self.index.clear();
        self.free.clear();
    }

    /// Forget every key and the counter's history (the sampling rate is kept).
    fn forget(&mut self) {
        self.reset_slots();
        self.lru.clear();
        self.ad.clear();
        self.psel = 0;
    }

    /// Forget everything, as after construction but at the current sampling rate.
    pub fn clear(&mut self) {
        self.forget();
        self.verdict = Verdict::Adaptive;
    }

    /// Keys either shadow holds.
    #[cfg(test)]
    pub fn live_keys(&self) -> usize {
        self.index.len()
    }

    /// Heap bytes held now.
    pub fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * 8
            + self.free.capacity() * 4
            + table_bytes(self.index.capacity(), 4)
            + self.evicted.capacity() * 4
            + (self.lru.heap_bytes() + self.ad.heap_bytes()) as usize
    }

    /// Shadow invariants: each shadow's own check, every slot held by a shadow indexed by its
    /// hash, no more than the slots the budget allows, and the bytes within the budget.
    pub fn check(&self) -> Result<(), String> {
        self.lru.check()?;
        self.ad.check()?;
        let live = self.hashes.len() - self.free.len();
        if self.index.len() != live || live > slots_for(self.max_samples) {
            return Err(format!(
                "shadows: {} indexed, {live} live slots",
                self.index.len()
            ));
        }
        for (s, &hash) in self.hashes.iter().enumerate() {
            let s = s as Handle;
            let held = self.lru.contains(s) || self.ad.contains(s);
            let indexed = self.index.find(hash, |&x| x == s).is_some();
            if held && !(indexed && self.sampled(hash)) {
                return Err(format!(
                    "shadows: slot {s} held but not indexed or not sampled"
                ));
            }
        }
        if self.psel.abs() > SATURATION {
            return Err("shadows: counter out of range".into());
        }
        let (bytes, limit) = (self.heap_bytes() as u64, budget(self.max_samples));
        if bytes > limit {
            return Err(format!(
                "shadows: {bytes} heap bytes over the budget {limit}"
            ));
        }
        Ok(())
    }
}
