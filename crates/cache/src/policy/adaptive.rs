//! The default policy: W-TinyLFU whose window share adapts per request from two ghost lists
//! ([`Tuned`], see `tuned.rs`), and which falls back to plain LRU while a miniature simulation
//! says LRU is winning.
//!
//! The ghosts only see reuse within a tenth of the cache, so on LRU-friendly patterns (long
//! alternating sweeps, a trace's first pass over a recency-heavy working set) they react late or
//! not at all. [`Shadows`] therefore run a shadow LRU and a shadow copy of the ghost-tuned policy
//! (without shadows) over a hash-sampled subset of the keys. While the shadow LRU is clearly
//! ahead the real policy runs with the window at the whole cache, i.e. as LRU, evicting the least
//! recently used entry across its lists; when the copy is clearly ahead again it resumes with the
//! window share the copy has learned. The shadows' memory is a fixed budget taken out of the
//! capacity (see [`Adaptive::new`]).
//!
//! The shadows only observe while the cache is under pressure: from the request that fills it
//! to half its capacity (they start warm from the resident keys, see [`Shadows::start`]) until
//! it drops below a quarter. Below that nothing is evicted, so nothing they could say matters,
//! and a hit costs one flag test more than without them.
//!
//! Owns the shadows, when they run and the switch to and from LRU mode; must never change
//! anything but the inner policy's window size and eviction order, and nothing below it (the
//! shadows, the ghost-tuned policy) may import it.

use super::api::{Handle, Policy};
use super::kind::PolicyKind;
use super::shadow::{self, Shadows, Verdict};
use super::tuned::Tuned;

/// Most keys each shadow simulates. Caches of up to about this many entries are simulated in
/// full; larger ones at a rate of one key in 2^k.
pub const MAX_SAMPLES: usize = 1024;
/// Fewest keys worth simulating; a byte budget too small for this many runs without shadows.
const MIN_SAMPLES: usize = 64;
/// The shadows start observing when the entries reach 1/`START_AT` of the capacity...
const START_AT: u64 = 2;
/// ... and stop when they fall below 1/`STOP_AT` of it (invalidations, expiry).
const STOP_AT: u64 = 4;
/// The shadows may take at most this part of a byte capacity (1/32, about 3%): a 1 MiB shard
/// affords 64 samples, a 2 MiB one 159, an 8 MiB one 687, from 12 MiB the full [`MAX_SAMPLES`].
const SHADOW_SHARE: u64 = 32;

/// Adaptive W-TinyLFU.
#[derive(Debug)]
pub struct Adaptive {
    /// The ghost-tuned W-TinyLFU holding the entries (and the LRU mode switch).
    inner: Tuned,
    /// Shadow LRU against a shadow copy of the ghost-tuned policy.
    sim: Option<Box<Shadows>>,
    /// The shadows are observing requests (the cache is under pressure).
    observing: bool,
    /// Capacity given at construction: the entries' share plus `reserved`.
    capacity: u64,
    /// Bytes set aside for the shadows (0 when weights are not bytes).
    reserved: u64,
}

impl Adaptive {
    /// An empty adaptive policy whose weights are bytes (the cache's use): the shadows' budget
    /// (at most 1/32 of `capacity`, see [`shadow::budget`]) is taken out of the capacity, so
    /// entries and shadows together stay within it. Too small a capacity runs without shadows.
    pub fn new(capacity: u64) -> Self {
        let samples = samples_within(capacity / SHADOW_SHARE);
        if samples < MIN_SAMPLES {
            return Self::plain(capacity, capacity);
        }
        let reserved = shadow::budget(samples);
        Self::with_shadows(capacity, reserved, samples)
    }

    /// An empty adaptive policy whose weights count entries (trace replay): memory is not
    /// modelled, so the shadows simulate up to [`MAX_SAMPLES`] keys and take no capacity.
    pub fn counted(capacity: u64) -> Self {
        Self::with_shadows(capacity, 0, MAX_SAMPLES)
    }

    /// Shadows of up to `samples` keys, `reserved` weight units set aside for them.
    pub fn with_shadows(capacity: u64, reserved: u64, samples: usize) -> Self {
        let entries = capacity.saturating_sub(reserved);
        let mut p = Self::plain(entries, entries);
        p.sim = Some(Box::new(Shadows::new(entries, samples)));
        p.capacity = capacity;
        p.reserved = reserved;
        p
    }

    /// The ghost-tuned W-TinyLFU alone, without shadows, with its frequency sketch first sized
    /// for `expected_entries`.
    pub(crate) fn plain(capacity: u64, expected_entries: u64) -> Self {
        Self {
            inner: Tuned::new(capacity, expected_entries),
            sim: None,
            observing: false,
            capacity,
            reserved: 0,
        }
    }

    /// Current window capacity in weight units (the whole capacity while in LRU mode).
    pub fn window(&self) -> u64 {
        self.inner.window()
    }

    /// True while the policy runs as plain LRU because the shadow LRU is ahead.
    pub fn lru_mode(&self) -> bool {
        self.inner.lru_mode()
    }

    /// True while the shadows observe requests.
    pub fn observing(&self) -> bool {
        self.observing
    }

    /// Start the shadows if an insert of `weight` brings the cache to half its capacity.
    fn maybe_start(&mut self, weight: u32) {
        let Some(sim) = &mut self.sim else {
            return;
        };
        if START_AT * (self.inner.weight() + u64::from(weight)) >= self.inner.capacity() {
            sim.start(self.inner.wtinylfu());
            self.observing = true;
        }
    }

    /// Stop the shadows once the cache is well below capacity: they start afresh (and warm)
    /// when it fills again, and the policy runs as adaptive meanwhile.
    fn maybe_stop(&mut self) {
        if STOP_AT * self.inner.weight() >= self.inner.capacity() {
            return;
        }
        if let Some(sim) = &mut self.sim {
            sim.clear();
        }
        self.observing = false;
        if self.inner.lru_mode() {
            self.inner.leave_lru(None);
        }
    }

    /// True if requests for `hash` go to the shadows.
    #[inline]
    fn sampled(&self, hash: u64) -> bool {
        self.sim.as_ref().is_some_and(|s| s.sampled(hash))
    }

    /// A hit while the shadows observe (out of line, see `on_hit`).
    #[inline(never)]
    fn observed_hit(&mut self, h: Handle) {
        // Only sampled keys pay for more than the sampling test.
        let (hash, weight) = self.inner.hash_weight(h);
        if self.sampled(hash) {
            self.simulate(hash, weight);
        }
        self.inner.on_hit(h);
    }

    /// Feed a sampled request to the shadows and follow their verdict.
    fn simulate(&mut self, hash: u64, weight: u32) {
        let reused = self.inner.reused();
        let Some(sim) = &mut self.sim else {
            return;
        };
        sim.access(hash, weight, reused);
        let lru = sim.verdict() == Verdict::Lru;
        if lru != self.inner.lru_mode() {
            if lru {
                self.inner.enter_lru();
            } else {
                // Resume with the window share the shadow copy has learned.
                self.inner.leave_lru(Some(sim.window_share()));
            }
        }
    }
}

/// The most samples whose [`shadow::budget`] fits in `bytes` (at most [`MAX_SAMPLES`]).
/// Below [`MIN_SAMPLES`] if even those do not fit.
fn samples_within(bytes: u64) -> usize {
    if shadow::budget(MAX_SAMPLES) <= bytes {
        return MAX_SAMPLES;
    }
    // The budget grows with the samples: bisect for the last that fits.
    let (mut fits, mut over) = (MIN_SAMPLES - 1, MAX_SAMPLES);
    while over - fits > 1 {
        let mid = (fits + over) / 2;
        if shadow::budget(mid) <= bytes {
            fits = mid;
        } else {
            over = mid;
        }
    }
    fits
}

impl Policy for Adaptive {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Adaptive
    }
    fn entry_overhead(&self) -> u64 {
        // The ghost-tuned policy's share. The shadows are not per entry: they live in
        // `reserved_bytes`.
        self.inner.entry_overhead()
    }
    fn reserved_bytes(&self) -> u64 {
        self.reserved
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn weight(&self) -> u64 {
        self.inner.weight()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn contains(&self, h: Handle) -> bool {
        self.inner.contains(h)
    }
    fn on_hit(&mut self, h: Handle) {
        // Two tail calls: a cache under pressure goes through the shadows first; any other pays
        // a flag test (no register saves) over the plain W-TinyLFU hit.
        if self.observing {
            self.observed_hit(h);
        } else {
            self.inner.on_hit(h);
        }
    }
    fn insert(&mut self, h: Handle, hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        if !self.observing {
            self.maybe_start(weight);
        }
        if self.observing && self.sampled(hash) {
            self.simulate(hash, weight);
        }
        self.inner.insert(h, hash, weight, evicted);
    }
    fn remove(&mut self, h: Handle) {
        if let (true, Some(sim)) = (self.observing, &mut self.sim) {
            let hash = self.inner.hash_weight(h).0;
            if sim.sampled(hash) {
                sim.remove(hash);
            }
        }
        self.inner.remove(h);
        if self.observing {
            self.maybe_stop();
        }
    }
    fn clear(&mut self) {
        self.inner.clear();
        if let Some(sim) = &mut self.sim {
            sim.clear();
        }
        self.observing = false;
    }
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        // The shadows' share stays set aside; the entries get the rest. The shadows keep the
        // scale they were built for: the shard's reserve moves the capacity by a few percent.
        self.capacity = capacity;
        self.inner
            .set_capacity(capacity.saturating_sub(self.reserved), evicted);
    }
    fn heap_bytes(&self) -> u64 {
        self.inner.heap_bytes()
    }
    fn shrink(&mut self, handle_limit: Handle) {
        self.inner.shrink(handle_limit);
    }
    fn relocate(&mut self, from: Handle, to: Handle) {
        self.inner.relocate(from, to);
    }
    fn check(&self) -> Result<(), String> {
        if let Some(sim) = &self.sim {
            sim.check()?;
            if self.inner.lru_mode() != (sim.verdict() == Verdict::Lru) {
                return Err("adaptive: mode differs from the shadows' verdict".into());
            }
        }
        if self.inner.capacity() + self.reserved != self.capacity {
            return Err("adaptive: entries' capacity and reserve do not add up".into());
        }
        // The LRU mode's whole-cache window, and the inner policy's own invariants.
        self.inner.check()
    }
}

#[cfg(test)]
mod tests;
