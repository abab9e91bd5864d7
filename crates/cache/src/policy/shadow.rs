//! Set dueling for [`super::Adaptive`]: two miniature caches run over the same hash-sampled
//! subset of the keys (spatial sampling, as in SHARDS), a plain LRU and a copy of the ghost-tuned
//! W-TinyLFU (`tuned.rs`: the adaptive policy without shadows of its own), each with the real
//! capacity scaled by the sampling rate. A saturating counter moves by one for every sampled
//! request that exactly one of them hits; its verdict says which of the two has been doing better
//! lately.
//!
//! Memory is a fixed budget per policy instance, whatever the shard's size: each shadow holds at
//! most `max_samples` keys (the sampling rate halves when either holds more), every
//! count-dependent buffer is sized for that bound up front, and [`budget()`] is an upper bound of
//! everything it can hold (checked by [`Shadows::check`]). Only sampled keys reach it (the
//! caller asks [`Shadows::sampled`], one multiply), so on a shard of many thousand entries almost
//! every request skips it. Amortised O(1): a rate halving rebuilds the shadows in
//! O(`max_samples`) and happens at most [`MAX_SHIFT`] times in a policy's life.
//!
//! The shadows only run while the real cache is under pressure ([`super::Adaptive`] starts them
//! when it is half full, see [`Shadows::start`]): a cache that never fills never pays for them.
//! They start warm, from the real cache's resident keys in recency order, so they hold what they
//! would have held had they run from the first request. Until the real cache evicts, a second
//! pair at half the capacity runs over the same keys: it evicts first, so when the real cache
//! starts evicting it already tells whether LRU is likely to win, and a clear hint makes the
//! real policy start in LRU mode on trial (see [`Phase`]).
//!
//! This file runs the duel (it implements [`Shadows`]); what the shadows hold is in
//! `shadow/state.rs`, their memory bound in `shadow/budget.rs`. Must never influence which real
//! entries are resident: it only observes and gives a verdict. Must never import the adaptive
//! policy it serves: it runs the ghost-tuned policy below it instead.

mod budget;
mod state;

pub use budget::budget;
use budget::{half_handles, handles_for, table_bytes};
use state::{Hits, Pair, Phase, START_SHARE};
pub use state::{Shadows, Verdict};

use super::api::{Handle, Policy};
use super::wtinylfu::WTinyLfu;
use hashbrown::HashTable;
use std::cmp::Reverse;

/// Net sampled requests (hit by one shadow, missed by the other) the shadow LRU must be ahead by
/// before the real policy switches to LRU. Lower reacts sooner on LRU-friendly traffic but lets
/// sampling noise flip the mode on traffic where neither policy is clearly ahead; higher leaves
/// LRU-friendly phases to TinyLFU for longer.
const TO_LRU: i64 = 64;
/// Net sampled requests the shadow adaptive policy must be ahead by before the real policy
/// leaves LRU mode. Higher than [`TO_LRU`]: resuming costs a refill of the main space, so leaving
/// on a small lead loses more than it wins.
const TO_ADAPTIVE: i64 = 128;
/// The counter saturates here, so old history is outweighed within a bounded number of
/// requests.
const SATURATION: i64 = 512;
/// Largest sampling shift. Past it the shadows only fill up with zero-weight keys, and are
/// cleared instead of halved.
pub const MAX_SHIFT: u32 = 32;
/// The half-size pair's net lead for LRU that starts the real cache in LRU mode on trial: at
/// least this many requests, and at least [`HINT_Z`] standard deviations of a fair coin over the
/// requests the pair disagreed on (a lucky streak on a few requests is no evidence).
const HINT_MIN: i64 = 16;
/// See [`HINT_MIN`].
const HINT_Z: i64 = 3;
/// During the trial, the full-size duel confirms LRU mode at this lead...
const TRIAL_CONFIRM: i64 = 16;
/// ... and ends it at this lead for the copy (or when the trial has run its length).
const TRIAL_ABANDON: i64 = 4;
/// Highest frequency copied from the real cache's sketch into the copies' at start (the sketch
/// counts to 15).
const MAX_SEED: u32 = 15;

#[inline]
fn sample_bits(hash: u64) -> u64 {
    // Independent of the bits the sketch and the maps use.
    let x = (hash ^ 0x94D0_49BB_1331_11EB).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}

impl Shadows {
    /// Shadows of a cache of `capacity` weight units, each holding at most `max_samples` keys
    /// (the sampling rate is chosen by [`Shadows::start`] and halved when a shadow holds more).
    pub fn new(capacity: u64, max_samples: usize) -> Self {
        let handles = handles_for(max_samples);
        let mut s = Self {
            hashes: Vec::with_capacity(handles),
            index: HashTable::with_capacity(handles),
            free: Vec::with_capacity(handles),
            full: Pair::new(0, 0, 0),
            capacity,
            shift: 0,
            mask: 0,
            max_samples,
            evicted: Vec::with_capacity(max_samples + 2),
            half: None,
            hint: 0,
            hint_n: 0,
            phase: Phase::Filling,
            psel: 0,
            verdict: Verdict::Adaptive,
        };
        s.rebuild_shadows(false);
        s
    }

    /// Fresh, empty shadows at the current scale, their arenas sized for every handle, with a
    /// half-size pair if `half`.
    fn rebuild_shadows(&mut self, half: bool) {
        let handles = handles_for(self.max_samples);
        let cap = self.capacity >> self.shift;
        self.full = Pair::new(cap, self.max_samples, handles);
        self.half = half.then(|| {
            let handles = half_handles(self.max_samples);
            Box::new(Pair::new(cap / 2, self.max_samples / 2, handles))
        });
    }

    /// Start observing a real cache that holds `real`'s entries and has not evicted since the
    /// shadows were last cleared: pick the sampling rate that leaves each shadow about
    /// 1/[`START_SHARE`] of its samples, and replay the sampled resident keys oldest first
    /// (with the real sketch's frequencies) into both pairs, so they hold what they would
    /// have held had they run all along. The duel starts from zero.
    pub fn start(&mut self, real: &WTinyLfu) {
        // Keys sampled at shift k are those whose low k sample bits are zero.
        let mut by_zeros = [0usize; 65];
        let mut total = 0;
        real.for_each_resident(|hash, _, _| {
            by_zeros[sample_bits(hash).trailing_zeros() as usize] += 1;
            total += 1;
        });
        let mut shift = 0;
        while total > self.max_samples / START_SHARE && shift < MAX_SHIFT {
            total -= by_zeros[shift as usize];
            shift += 1;
        }
        self.shift = shift;
        self.mask = (1u64 << shift).wrapping_sub(1);
        self.reset_handles();
        self.rebuild_shadows(true);
        let mut keys = Vec::with_capacity(total);
        real.for_each_resident(|hash, weight, age| {
            if self.sampled(hash) {
                keys.push((Reverse(age), hash, weight));
            }
        });
        keys.sort_unstable();
        for (_, hash, weight) in keys {
            self.feed(hash, weight);
            for _ in 1..real.frequency(hash).min(MAX_SEED) {
                self.full.ad.record(hash);
                if let Some(half) = &mut self.half {
                    half.ad.record(hash);
                }
            }
        }
        self.psel = 0;
        (self.hint, self.hint_n) = (0, 0);
        self.phase = Phase::Filling;
        self.verdict = Verdict::Adaptive;
        self.settle_rate();
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
        let cap = self.full.ad.capacity();
        if cap == 0 {
            0.0
        } else {
            self.full.ad.window() as f64 / cap as f64
        }
    }

    /// A request for a sampled key (hit or miss in the real cache, it does not matter).
    /// `reused`: the real cache has had a hit other than a back-to-back repeat since it was
    /// last cleared (see [`Shadows::end_filling`]).
    pub fn access(&mut self, hash: u64, weight: u32, reused: bool) {
        debug_assert!(self.sampled(hash));
        let hits = self.feed(hash, weight);
        if hits.lru != hits.ad {
            let d = if hits.lru { 1 } else { -1 };
            self.psel = (self.psel + d).clamp(-SATURATION, SATURATION);
        }
        match self.phase {
            Phase::Trial { left } => {
                if self.psel >= TRIAL_CONFIRM {
                    self.phase = Phase::Duel;
                } else if self.psel <= -TRIAL_ABANDON || left == 0 {
                    self.phase = Phase::Duel;
                    self.verdict = Verdict::Adaptive;
                } else {
                    self.phase = Phase::Trial { left: left - 1 };
                }
            }
            Phase::Filling if hits.lru_evicted => self.end_filling(reused),
            _ => {
                if self.psel >= TO_LRU {
                    self.verdict = Verdict::Lru;
                } else if self.psel <= -TO_ADAPTIVE {
                    self.verdict = Verdict::Adaptive;
                }
            }
        }
        self.settle_rate();
    }

    /// The shadow LRU evicts for the first time: read the half-size pair's hint (the pair itself
    /// went in [`Shadows::feed`]).
    /// A clear hint for LRU starts a trial of LRU mode of half a shadow's worth of sampled
    /// requests. So does no reuse so far (`reused` false): no key was requested again, other
    /// than back-to-back, before the first eviction. Any policy hits a back-to-back repeat, so
    /// it is evidence for neither side; without evidence, and as a first sweep's turn only
    /// rewards recency, that trial lasts until the full-size duel confirms or refutes it.
    fn end_filling(&mut self, reused: bool) {
        let (lead, n) = (self.hint, self.hint_n);
        if lead >= HINT_MIN && lead * lead >= HINT_Z * HINT_Z * n {
            self.verdict = Verdict::Lru;
            self.phase = Phase::Trial {
                left: self.full.lru.len() / 2,
            };
        } else if !reused {
            self.verdict = Verdict::Lru;
            self.phase = Phase::Trial { left: usize::MAX };
        } else {
            self.phase = Phase::Duel;
        }
    }

    /// Drops the half-size pair, freeing the handles only it held (a no-op on free handles).
    fn drop_half(&mut self) {
        self.half = None;
        for s in 0..self.hashes.len() as Handle {
            if !self.holds(s) {
                self.release(s);
            }
        }
    }

    /// Halve the sampling rate while a shadow holds more than its samples.
    fn settle_rate(&mut self) {
        while self.full.lru.len() > self.max_samples || self.full.ad.len() > self.max_samples {
            if self.shift == MAX_SHIFT {
                self.forget();
                break;
            }
            self.halve_rate();
        }
    }

    /// Run one request through every shadow; returns what the full-size pair did.
    fn feed(&mut self, hash: u64, weight: u32) -> Hits {
        let handle = self.handle(hash);
        let mut evicted = std::mem::take(&mut self.evicted);
        evicted.clear();
        let hits = self.full.feed(handle, hash, weight, &mut evicted);
        if let Some(half) = &mut self.half {
            let h = half.feed(handle, hash, weight, &mut evicted);
            if h.lru != h.ad {
                self.hint_n += 1;
                self.hint += if h.lru { 1 } else { -1 };
            }
        }
        for &v in &evicted {
            if !self.holds(v) {
                self.release(v);
            }
        }
        self.evicted = evicted;
        if hits.lru_evicted && self.half.is_some() {
            // The half-size pair's arenas hold only the handles a shadow LRU that never
            // evicted can have live. It may first evict while its keys are replayed (a new
            // rate, a new start), not only on a request: the pair goes then, its hint kept.
            self.drop_half();
        }
        hits
    }

    /// True if a shadow holds `handle`.
    fn holds(&self, handle: Handle) -> bool {
        self.full.lru.contains(handle)
            || self.full.ad.contains(handle)
            || self.half.as_ref().is_some_and(|h| h.holds(handle))
    }

    /// The handle of `hash`, taking a free one if it has none.
    fn handle(&mut self, hash: u64) -> Handle {
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

    /// Free a handle no shadow holds (a no-op if it is already free).
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
        self.full.remove(s);
        if let Some(half) = &mut self.half {
            half.remove(s);
        }
        self.release(s);
    }

    /// Halve the sampling rate: the shadows are rebuilt at the new scale from the shadow LRU's
    /// keys that stay sampled (oldest first), which loses the copy's frequency history, so the
    /// counter restarts too. The verdict stands until the counter says otherwise. While
    /// filling, the half-size pair is rebuilt the same way (the shadow LRU still holds every
    /// sampled key) and its hint kept: it is evidence at any rate.
    fn halve_rate(&mut self) {
        self.shift += 1;
        self.mask = (1u64 << self.shift) - 1;
        let keep: Vec<(u64, u32)> = self
            .full
            .lru
            .oldest_first()
            .into_iter()
            .map(|(s, w)| (self.hashes[s as usize], w))
            .filter(|&(h, _)| self.sampled(h))
            .collect();
        self.reset_handles();
        self.rebuild_shadows(self.half.is_some());
        for (hash, weight) in keep {
            self.feed(hash, weight);
        }
        self.psel = 0;
    }

    fn reset_handles(&mut self) {
        self.hashes.clear();
        self.index.clear();
        self.free.clear();
    }

    /// Forget every key and the counter's history (the sampling rate is kept).
    fn forget(&mut self) {
        self.reset_handles();
        self.full.lru.clear();
        self.full.ad.clear();
        self.psel = 0;
    }

    /// Forget everything, as after construction but at the current sampling rate; the next
    /// [`Shadows::start`] begins afresh.
    pub fn clear(&mut self) {
        self.forget();
        self.half = None;
        (self.hint, self.hint_n) = (0, 0);
        self.phase = Phase::Filling;
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
            + (self.full.heap_bytes() + self.half.as_ref().map_or(0, |h| h.heap_bytes())) as usize
    }

    /// Shadow invariants: each shadow's own check, every handle held by a shadow indexed by its
    /// hash, no more than the handles the budget allows, and the bytes within the budget.
    pub fn check(&self) -> Result<(), String> {
        self.full.lru.check()?;
        self.full.ad.check()?;
        if let Some(half) = &self.half {
            half.lru.check()?;
            half.ad.check()?;
            if self.hashes.len() > half_handles(self.max_samples) {
                return Err("shadows: more handles than the half-size pair's arenas".into());
            }
        }
        let live = self.hashes.len() - self.free.len();
        if self.index.len() != live || live > handles_for(self.max_samples) {
            return Err(format!(
                "shadows: {} indexed, {live} live handles",
                self.index.len()
            ));
        }
        for (s, &hash) in self.hashes.iter().enumerate() {
            let s = s as Handle;
            let held = self.holds(s);
            let indexed = self.index.find(hash, |&x| x == s).is_some();
            if held && !(indexed && self.sampled(hash)) {
                return Err(format!(
                    "shadows: handle {s} held but not indexed or not sampled"
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
