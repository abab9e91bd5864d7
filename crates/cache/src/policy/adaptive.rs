//! The default policy: W-TinyLFU whose window share adapts per request, ARC style, and which
//! falls back to plain LRU while a miniature simulation says LRU is winning.
//!
//! Two ghost lists remember the hashes of recently evicted entries, split by where they were
//! evicted from: candidates that left from the window (refused by TinyLFU admission) and victims
//! evicted from the main space. A miss on a window ghost means a larger window (more recency)
//! would have hit, so the window grows by the entry's weight (times the ghost-size ratio, as in
//! ARC); a miss on a main ghost means a larger main space (more frequency) would have hit, so the
//! window shrinks. A large window makes the policy behave like LRU (good for recency-heavy
//! traces), a small one like TinyLFU (good for frequency-heavy, scan and loop traces). Unlike a
//! periodic hill climber it needs no sampling period, so it adapts on short traces too.
//!
//! The ghosts only see reuse within a tenth of the cache, so on LRU-friendly patterns (long
//! alternating sweeps, a trace's first pass over a recency-heavy working set) they react late or
//! not at all. [`Shadows`] therefore run a shadow LRU and a shadow copy of this policy (without
//! shadows) over a hash-sampled subset of the keys. While the shadow LRU is clearly ahead the
//! real policy runs with the window at the whole cache, i.e. as LRU, evicting the least recently
//! used entry across its lists; when the copy is clearly ahead again it resumes with the window
//! share the copy has learned. The shadows' memory is a fixed budget taken out of the capacity
//! (see [`Adaptive::new`]).
//!
//! The shadows only observe while the cache is under pressure: from the request that fills it
//! to half its capacity (they start warm from the resident keys, see [`Shadows::start`]) until
//! it drops below a quarter. Below that nothing is evicted, so nothing they could say matters,
//! and a hit costs one flag test more than without them.
//!
//! Must never change anything but the inner policy's window size and eviction order.

use super::api::{Handle, Policy};
use super::ghost::Ghost;
use super::kind::PolicyKind;
use super::shadow::{self, Shadows, Verdict};
use super::wtinylfu::{Traffic, WTinyLfu};

/// Window share at start.
const START_WINDOW: f64 = 0.05;
/// Each ghost remembers `resident entries / GHOST_DIVISOR` hashes: only very recent evictions
/// are evidence that a slightly larger window or main space would have hit; longer ghosts move
/// the window on reuse that no resize within the cache could catch, and cost memory per entry.
pub(crate) const GHOST_DIVISOR: usize = 10;
/// Largest window share (at 100% the policy is plain LRU).
const MAX_WINDOW: f64 = 1.0;
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
/// The window halves when it has had no hit while its share of the cache's hits would have
/// been this many (see [`Adaptive::idle_window`]).
const IDLE_HITS: u64 = 5;

/// Adaptive W-TinyLFU.
#[derive(Debug)]
pub struct Adaptive {
    inner: WTinyLfu,
    window_ghost: Ghost,
    main_ghost: Ghost,
    window: u64,
    max_window: u64,
    /// Shadow LRU against a shadow copy of this policy (absent inside that copy).
    sim: Option<Box<Shadows>>,
    /// The shadows are observing requests (the cache is under pressure).
    observing: bool,
    /// Running as plain LRU (window = whole cache) because the shadow LRU is ahead.
    lru_mode: bool,
    /// Capacity given at construction: the entries' share plus `reserved`.
    capacity: u64,
    /// Bytes set aside for the shadows (0 when weights are not bytes).
    reserved: u64,
    /// Since when the window has had no hit (see [`Adaptive::idle_window`]).
    idle: Idle,
}

/// A period without window hits.
#[derive(Debug, Default)]
struct Idle {
    /// The inner policy's counters when it began.
    since: Traffic,
    /// The inner policy's request clock at the last insert.
    clock: u32,
    /// Hits (on any entry) since it began.
    hits: u64,
}

impl Idle {
    fn start(since: Traffic) -> Self {
        Self {
            since,
            clock: since.clock,
            hits: 0,
        }
    }
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

    /// The ghost-adaptive W-TinyLFU alone, without shadows (what the shadows run), with its
    /// frequency sketch first sized for `expected_entries`.
    pub(crate) fn plain(capacity: u64, expected_entries: u64) -> Self {
        let mut inner = WTinyLfu::with_expected(capacity, expected_entries);
        inner.enable_log();
        inner.strict_small_window();
        let window = (capacity as f64 * START_WINDOW) as u64;
        inner.set_window(window);
        Self {
            inner,
            window_ghost: Ghost::default(),
            main_ghost: Ghost::default(),
            window,
            max_window: (capacity as f64 * MAX_WINDOW) as u64,
            sim: None,
            observing: false,
            lru_mode: false,
            capacity,
            reserved: 0,
            idle: Idle::default(),
        }
    }

    /// Current window capacity in weight units (the whole capacity while in LRU mode).
    pub fn window(&self) -> u64 {
        self.inner.window_cap()
    }

    /// True while the policy runs as plain LRU because the shadow LRU is ahead.
    pub fn lru_mode(&self) -> bool {
        self.lru_mode
    }

    /// Make room for handles below `handles` up front, so the arena never grows later.
    pub(crate) fn reserve(&mut self, handles: usize) {
        self.inner.reserve(handles);
    }

    /// Count one more request for `hash` in the frequency sketch (seeding a shadow copy).
    pub(crate) fn record(&mut self, hash: u64) {
        self.inner.record(hash);
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
            sim.start(&self.inner);
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
        if self.lru_mode {
            self.lru_mode = false;
            self.apply_window();
        }
    }

    fn adapt(&mut self, hash: u64, weight: u64) {
        let (w, m) = (self.window_ghost.len().max(1), self.main_ghost.len().max(1));
        if self.window_ghost.take(hash) {
            let step = weight.saturating_mul((m / w).max(1) as u64);
            self.window = self.window.saturating_add(step).min(self.max_window);
        } else if self.main_ghost.take(hash) {
            let step = weight.saturating_mul((w / m).max(1) as u64);
            self.window = self.window.saturating_sub(step);
        } else {
            return;
        }
        self.apply_window();
    }

    /// True if requests for `hash` go to the shadows (never inside the shadows' own copy).
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
        let reused = self.inner.traffic().reuses != 0;
        let Some(sim) = &mut self.sim else {
            return;
        };
        sim.access(hash, weight, reused);
        let lru = sim.verdict() == Verdict::Lru;
        if lru != self.lru_mode {
            self.lru_mode = lru;
            if !lru {
                // Resume with the window share the shadow copy has learned.
                let cap = self.inner.capacity();
                self.window = ((cap as f64 * sim.window_share()) as u64).min(self.max_window);
            }
            self.apply_window();
        }
    }

    fn apply_window(&mut self) {
        // In LRU mode the window is the whole cache and overflow leaves in global LRU order,
        // so entries still in main are not flushed ahead of older window entries.
        self.inner.set_evict_oldest(self.lru_mode);
        if self.lru_mode {
            self.inner.set_window(self.inner.capacity());
        } else {
            self.inner.set_window(self.window);
        }
    }

    /// A window that had no hit while candidates of the whole cache's weight left it, and while
    /// the cache as a whole had hits enough that the window's share of them would have been
    /// [`IDLE_HITS`], serves less than its share: halve it. (Were a window entry worth an average
    /// entry, the chance of no hit at all by then would be e^-IDLE_HITS.) Evidence for a larger
    /// window comes from the window ghost.
    fn idle_window(&mut self) {
        let now = self.inner.traffic();
        // The clock counts hits and inserts; this insert is one tick.
        let ticks = now.clock.wrapping_sub(self.idle.clock);
        self.idle.hits += u64::from(ticks.saturating_sub(1));
        self.idle.clock = now.clock;
        if self.lru_mode || now.window_hits != self.idle.since.window_hits {
            self.idle = Idle::start(now);
            return;
        }
        let cap = self.inner.capacity();
        if now.window_out.wrapping_sub(self.idle.since.window_out) < cap {
            return;
        }
        let window = self.inner.window_cap().max(1);
        if self.idle.hits.saturating_mul(window) >= IDLE_HITS.saturating_mul(cap) {
            self.idle = Idle::start(now);
            self.window /= 2;
            self.apply_window();
        }
    }

    fn remember_evictions(&mut self) {
        let limit = (self.inner.len() / GHOST_DIVISOR).max(16);
        if let Some(log) = self.inner.log_mut() {
            let from_window = std::mem::take(&mut log.from_window);
            let from_main = std::mem::take(&mut log.from_main);
            for h in &from_window {
                self.window_ghost.push(*h, limit);
            }
            for h in &from_main {
                self.main_ghost.push(*h, limit);
            }
            // Hand the (now empty) buffers back to keep their capacity.
            if let Some(log) = self.inner.log_mut() {
                log.from_window = clear(from_window);
                log.from_main = clear(from_main);
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

fn clear(mut v: Vec<u64>) -> Vec<u64> {
    v.clear();
    v
}

impl Policy for Adaptive {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Adaptive
    }
    fn entry_overhead(&self) -> u64 {
        // Inner W-TinyLFU plus two ghost lists of up to one hash per 10 entries each (queue + map, with
        // the queue allowed to hold stale copies up to twice the live set). The shadows are
        // not per entry: they live in `reserved_bytes`.
        self.inner.entry_overhead() + 2 * (2 * 16 + 17) / GHOST_DIVISOR as u64
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
        self.adapt(hash, u64::from(weight));
        self.inner.insert(h, hash, weight, evicted);
        self.idle_window();
        self.remember_evictions();
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
        self.window_ghost.clear();
        self.main_ghost.clear();
        if let Some(sim) = &mut self.sim {
            sim.clear();
        }
        self.observing = false;
        self.lru_mode = false;
        self.apply_window();
        self.idle = Idle::start(self.inner.traffic());
    }
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        // The shadows' share stays set aside; the entries get the rest. The shadows keep the
        // scale they were built for: the shard's reserve moves the capacity by a few percent.
        self.capacity = capacity;
        let capacity = capacity.saturating_sub(self.reserved);
        self.inner.set_capacity(capacity, evicted);
        self.max_window = (capacity as f64 * MAX_WINDOW) as u64;
        self.window = self.window.min(self.max_window);
        // In LRU mode the window follows the capacity.
        self.apply_window();
        self.remember_evictions();
    }
    fn heap_bytes(&self) -> u64 {
        self.inner.heap_bytes() + self.window_ghost.heap_bytes() + self.main_ghost.heap_bytes()
    }
    fn shrink(&mut self, handle_limit: Handle) {
        self.inner.shrink(handle_limit);
        let limit = (self.inner.len() / GHOST_DIVISOR).max(16);
        self.window_ghost.shrink(limit);
        self.main_ghost.shrink(limit);
    }
    fn relocate(&mut self, from: Handle, to: Handle) {
        self.inner.relocate(from, to);
    }
    fn check(&self) -> Result<(), String> {
        if let Some(sim) = &self.sim {
            sim.check()?;
            if self.lru_mode != (sim.verdict() == Verdict::Lru) {
                return Err("adaptive: mode differs from the shadows' verdict".into());
            }
        }
        if self.lru_mode && self.inner.window_cap() != self.inner.capacity() {
            return Err("adaptive: LRU mode with a partial window".into());
        }
        if self.inner.capacity() + self.reserved != self.capacity {
            return Err("adaptive: entries' capacity and reserve do not add up".into());
        }
        self.inner.check()
    }
}

#[cfg(test)]
mod tests;
