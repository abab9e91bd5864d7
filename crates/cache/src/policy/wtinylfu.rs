//! Window-TinyLFU: new entries enter a small LRU *window*; entries leaving the window become
//! candidates for the *main* space, a segmented LRU (probation + protected, 80% protected). A
//! candidate is admitted to main only if the frequency sketch says it is more popular than the
//! main victim it would displace (with a 1/128 chance for warm candidates, so an attacker cannot
//! pin the cache by colliding hashes). The window share is fixed here (1%); the ghost-tuned
//! policy ([`super::tuned::Tuned`]) moves it. Must never evict from main without a frequency
//! duel unless the cache is over its total capacity (which only happens right after the window
//! was shrunk).

use super::api::{Handle, Policy};
use super::kind::PolicyKind;
use super::list::{Arena, List, Node};
use super::recency::Recency;
use super::sketch::Sketch;

const NONE: u8 = 0;
const WINDOW: u8 = 1;
const PROBATION: u8 = 2;
const PROTECTED: u8 = 3;

/// Sketch bytes charged per resident entry: the middle of the 20-40 it holds between resizes
/// (see `Sketch::ensure`).
const SKETCH_SHARE: usize = 32;
/// Recency-table bytes charged per resident entry when it is on: two 4-byte cells per key it is
/// sized for, which is 1-2 times the resident count between resizes (8-16 bytes).
const RECENCY_SHARE: usize = 12;

#[derive(Clone, Copy, Debug, Default)]
struct Meta {
    /// The key's hash, low half first: two `u32` keep the node's alignment at 4, so it is 28
    /// bytes (a chunk of 16 is 448, an exact size class) instead of the 32 a `u64` pads it to.
    hash: [u32; 2],
    /// Request clock at the last access.
    stamp: u32,
    /// Requests between the entry's insertion and the request before it ([`gap_code`]), when
    /// recency-aware admission is on and the key was remembered; [`NO_GAP`] otherwise.
    gap: u16,
    region: u8,
}

impl Meta {
    /// The key's hash.
    #[inline]
    fn hash(&self) -> u64 {
        u64::from(self.hash[0]) | u64::from(self.hash[1]) << 32
    }
}

const _: () = assert!(std::mem::size_of::<Node<Meta>>() == 28);

/// A gap code for "not known" (longer than any).
const NO_GAP: u16 = u16::MAX;

/// Encode a gap in requests as 16 bits, rounding up (exact below 2,048, then 11 significant
/// bits): a gap never reads shorter than it was.
fn gap_code(gap: u64) -> u16 {
    if gap < 2048 {
        return gap as u16;
    }
    let mut e = 64 - gap.leading_zeros() - 11;
    let mut m = gap.div_ceil(1 << e);
    if m == 2048 {
        e += 1;
        m = 1024;
    }
    if e >= 31 {
        return NO_GAP;
    }
    (e as u16) << 11 | m as u16
}

/// The gap a code stands for (at least the gap that was encoded); `None` for [`NO_GAP`].
fn gap_of(code: u16) -> Option<u64> {
    if code == NO_GAP {
        return None;
    }
    let (e, m) = (code >> 11, u64::from(code & 2047));
    Some(if e == 0 { m } else { m << e })
}

/// W-TinyLFU policy with a settable window size.
#[derive(Debug)]
pub struct WTinyLfu {
    arena: Arena<Meta>,
    window: List,
    probation: List,
    protected: List,
    sketch: Sketch,
    capacity: u64,
    window_cap: u64,
    rng: u64,
    /// When set, hashes of evicted entries are logged: candidates refused by admission (or
    /// evicted straight from the window) and main victims, for [`super::tuned::Tuned`].
    log: Option<EvictionLog>,
    /// When over capacity, evict the least recently used of the three list tails instead of
    /// main first (plain LRU order, for [`super::tuned::Tuned`]'s LRU mode).
    evict_oldest: bool,
    clock: u32,
    /// Hits on window entries (wrapping), for [`super::tuned::Tuned`].
    window_hits: u32,
    /// While the window is under 1% of the capacity, admission needs a lead of 2 (see
    /// [`WTinyLfu::admit`]); set by [`super::tuned::Tuned`].
    strict_small_window: bool,
    /// Weight of the candidates that left the window (wrapping), for [`super::tuned::Tuned`].
    window_out: u64,
    /// When set, a candidate that lost the frequency duel is still admitted if it was requested
    /// again sooner than the victim has gone unrequested (see [`WTinyLfu::admit`]); for
    /// [`super::ReuseTinyLfu`].
    recency: Option<Recency>,
    /// Hits since the last clear, not counting a hit on the entry the previous request touched
    /// (a back-to-back repeat, which any policy hits), saturating; for [`super::Adaptive`].
    reuses: u32,
}

/// Counters of the window's use (see [`WTinyLfu::traffic`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Traffic {
    pub window_hits: u32,
    pub clock: u32,
    pub window_out: u64,
    /// Hits since the last clear other than back-to-back repeats (saturating).
    pub reuses: u32,
}

/// Hashes of entries evicted since the log was last drained, by where they were evicted from.
#[derive(Debug, Default)]
pub(crate) struct EvictionLog {
    /// Entries that never made it into main.
    pub from_window: Vec<u64>,
    /// Entries evicted from main.
    pub from_main: Vec<u64>,
}

impl WTinyLfu {
    /// An empty W-TinyLFU with a 1% window.
    pub fn new(capacity: u64) -> Self {
        Self::with_expected(capacity, capacity)
    }

    /// An empty W-TinyLFU with a 1% window whose sketch is first sized for `expected_entries`
    /// (at most 4096; it grows with the resident count either way).
    pub(crate) fn with_expected(capacity: u64, expected_entries: u64) -> Self {
        let mut p = Self {
            arena: Arena::default(),
            window: List::default(),
            probation: List::default(),
            protected: List::default(),
            // Weighted caches do not know their entry count up front; grow with `len`.
            sketch: Sketch::new(expected_entries.min(4096) as usize),
            capacity,
            window_cap: 0,
            rng: 0x853C_49E6_748F_EA9B,
            log: None,
            evict_oldest: false,
            clock: 0,
            window_hits: 0,
            window_out: 0,
            reuses: 0,
            strict_small_window: false,
            recency: None,
        };
        p.set_window(capacity / 100);
        p
    }

    /// Turn on recency-aware admission (see [`WTinyLfu::admit`]), with its table first sized
    /// for `expected_entries`.
    pub(crate) fn enable_recency(&mut self, expected_entries: usize) {
        self.recency = Some(Recency::new(expected_entries));
    }

    /// Demand a lead of 2 for admission while the window is under 1% of the capacity.
    pub(crate) fn strict_small_window(&mut self) {
        self.strict_small_window = true;
    }

    /// Start logging evicted hashes (see [`EvictionLog`]).
    pub(crate) fn enable_log(&mut self) {
        self.log = Some(EvictionLog::default());
    }

    /// The eviction log, if enabled.
    pub(crate) fn log_mut(&mut self) -> Option<&mut EvictionLog> {
        self.log.as_mut()
    }

    fn note(&mut self, h: Handle, from_main: bool) {
        let meta = self.arena.node(h).meta;
        let (hash, stamp) = (meta.hash(), meta.stamp);
        if let Some(r) = &mut self.recency {
            r.record(hash, stamp, self.clock);
        }
        if let Some(log) = &mut self.log {
            if from_main {
                log.from_main.push(hash);
            } else {
                log.from_window.push(hash);
            }
        }
    }

    /// Key hash and weight of a resident handle.
    pub(crate) fn hash_weight(&self, h: Handle) -> (u64, u32) {
        let n = self.arena.node(h);
        (n.meta.hash(), n.weight)
    }

    /// Make room for handles below `handles` up front, so the arena never grows later.
    pub(crate) fn reserve(&mut self, handles: usize) {
        self.arena.reserve(handles);
    }

    /// Bytes of one arena node.
    pub(crate) const NODE_BYTES: usize = std::mem::size_of::<Node<Meta>>();

    /// Hits on window entries, requests (hits and inserts) and the weight of the candidates
    /// that left the window so far, all wrapping.
    pub(crate) fn traffic(&self) -> Traffic {
        Traffic {
            window_hits: self.window_hits,
            clock: self.clock,
            window_out: self.window_out,
            reuses: self.reuses,
        }
    }

    /// Current window capacity (weight units).
    pub fn window_cap(&self) -> u64 {
        self.window_cap
    }

    /// Change the window capacity (clamped to `[1, capacity]`); entries move lazily.
    pub fn set_window(&mut self, cap: u64) {
        self.window_cap = cap.clamp(1.min(self.capacity), self.capacity);
    }

    fn main_cap(&self) -> u64 {
        self.capacity - self.window_cap
    }

    fn protected_cap(&self) -> u64 {
        self.main_cap() / 5 * 4
    }

    fn total(&self) -> u64 {
        self.window.weight() + self.probation.weight() + self.protected.weight()
    }

    fn list_mut(&mut self, region: u8) -> &mut List {
        match region {
            WINDOW => &mut self.window,
            PROBATION => &mut self.probation,
            _ => &mut self.protected,
        }
    }

    fn unlink(&mut self, h: Handle) {
        let region = self.arena.node(h).meta.region;
        let mut list = *self.list_mut(region);
        list.unlink(&mut self.arena, h);
        *self.list_mut(region) = list;
        self.arena.node_mut(h).meta.region = NONE;
    }

    fn push(&mut self, region: u8, h: Handle) {
        self.arena.node_mut(h).meta.region = region;
        let mut list = *self.list_mut(region);
        list.push_head(&mut self.arena, h);
        *self.list_mut(region) = list;
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Evict in global LRU order (oldest of the three list tails) when over capacity.
    pub(crate) fn set_evict_oldest(&mut self, on: bool) {
        self.evict_oldest = on;
    }

    fn tick(&mut self) -> u32 {
        self.clock = self.clock.wrapping_add(1);
        self.clock
    }

    /// The list tail accessed longest ago. Each list is roughly in access order, so this is
    /// the least recently used entry, give or take entries that changed lists.
    fn oldest_tail(&self) -> Option<Handle> {
        [
            self.window.tail(),
            self.probation.tail(),
            self.protected.tail(),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|&h| self.clock.wrapping_sub(self.arena.node(h).meta.stamp))
    }

    /// Does `candidate` deserve to replace `victim`?
    fn admit(&mut self, candidate: Handle, victim: Handle) -> bool {
        let c = self.sketch.estimate(self.arena.node(candidate).meta.hash());
        let v = self.sketch.estimate(self.arena.node(victim).meta.hash());
        // With a window under 1% (for [`super::tuned::Tuned`], which shrinks an idle one), the
        // candidate must lead by more than the request that brought it in: in a loop it always
        // leads the victim (due sooner) by exactly that one request.
        let margin = u32::from(self.strict_small_window && self.window_cap * 100 < self.capacity);
        if c > v + margin {
            return true;
        }
        // Recency-aware admission (LIRS's rule): a candidate whose last reuse came sooner than
        // the victim has now gone without one is the likelier of the two to be requested
        // next, whatever their counts. In a loop the victim is always due sooner (it has not
        // yet waited a whole loop), so loops keep what TinyLFU keeps.
        if self.recency.is_some() {
            let gap = gap_of(self.arena.node(candidate).meta.gap);
            let idle = u64::from(self.clock.wrapping_sub(self.arena.node(victim).meta.stamp));
            if gap.is_some_and(|g| g < idle) {
                return true;
            }
        }
        c >= 6 && self.next_random() & 127 == 0
    }

    /// Main's victim for candidate `c`: probation's least recently used entry, or, with
    /// recency-aware admission, protected's when that has gone unrequested for longer than the
    /// candidate's last reuse distance (a protected segment left from a past phase must give
    /// way to the new one, not only probation).
    fn main_victim(&self, c: Handle) -> Option<Handle> {
        let probation = self.probation.tail();
        let Some(t) = self.protected.tail() else {
            return probation;
        };
        if self.recency.is_some() {
            if let Some(gap) = gap_of(self.arena.node(c).meta.gap) {
                let idle = u64::from(self.clock.wrapping_sub(self.arena.node(t).meta.stamp));
                if gap < idle {
                    return Some(t);
                }
            }
        }
        probation.or(Some(t))
    }

    /// Move a window overflow entry into main, dueling main victims while main is full.
    fn offer_to_main(&mut self, c: Handle, evicted: &mut Vec<Handle>) {
        let w = u64::from(self.arena.node(c).weight);
        if w > self.main_cap() {
            self.note(c, false);
            evicted.push(c);
            return;
        }
        while self.probation.weight() + self.protected.weight() + w > self.main_cap() {
            let victim = self
                .main_victim(c)
                .expect("main over capacity implies non-empty");
            if self.admit(c, victim) {
                self.unlink(victim);
                self.note(victim, true);
                evicted.push(victim);
            } else {
                self.note(c, false);
                evicted.push(c);
                return;
            }
        }
        self.push(PROBATION, c);
    }

    fn rebalance(&mut self, evicted: &mut Vec<Handle>) {
        while self.window.weight() > self.window_cap {
            let c = self.window.tail().expect("non-empty window");
            self.window_out = self
                .window_out
                .wrapping_add(u64::from(self.arena.node(c).weight));
            self.unlink(c);
            self.offer_to_main(c, evicted);
        }
        while self.total() > self.capacity {
            let v = if self.evict_oldest {
                self.oldest_tail()
            } else {
                self.probation
                    .tail()
                    .or(self.protected.tail())
                    .or(self.window.tail())
            }
            .expect("over capacity implies non-empty");
            let from_main = self.arena.node(v).meta.region != WINDOW;
            self.unlink(v);
            self.note(v, from_main);
            evicted.push(v);
        }
    }

    /// Record an access that did not go through `on_hit`/`insert` (not used by the cache).
    pub fn record(&mut self, hash: u64) {
        self.sketch.increment(hash);
    }

    /// The sketch's estimate of how often `hash` was requested lately.
    pub(crate) fn frequency(&self, hash: u64) -> u32 {
        self.sketch.estimate(hash)
    }

    /// Calls `f(hash, weight, age)` for every resident entry, in no particular order; `age` is
    /// the number of requests since the entry's last access.
    pub(crate) fn for_each_resident(&self, mut f: impl FnMut(u64, u32, u32)) {
        for list in [&self.window, &self.probation, &self.protected] {
            for h in list.oldest_first(&self.arena) {
                let n = self.arena.node(h);
                f(
                    n.meta.hash(),
                    n.weight,
                    self.clock.wrapping_sub(n.meta.stamp),
                );
            }
        }
    }
}

impl Policy for WTinyLfu {
    fn kind(&self) -> PolicyKind {
        PolicyKind::WTinyLfu
    }
    fn entry_overhead(&self) -> u64 {
        // Node plus sketch: the table holds 2-4 words per resident entry depending on where it
        // is between resizes, plus a quarter of that in doorkeeper bits (20-40 bytes).
        let recency = if self.recency.is_some() {
            RECENCY_SHARE
        } else {
            0
        };
        (std::mem::size_of::<Node<Meta>>() + SKETCH_SHARE + recency) as u64
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn weight(&self) -> u64 {
        self.total()
    }
    fn len(&self) -> usize {
        self.window.len() + self.probation.len() + self.protected.len()
    }
    fn contains(&self, h: Handle) -> bool {
        self.arena.get(h).is_some_and(|n| n.meta.region != NONE)
    }
    fn on_hit(&mut self, h: Handle) {
        let stamp = self.tick();
        let meta = &mut self.arena.node_mut(h).meta;
        let repeat = meta.stamp.wrapping_add(1) == stamp;
        meta.stamp = stamp;
        self.reuses = self.reuses.saturating_add(u32::from(!repeat));
        let (hash, region) = (meta.hash(), meta.region);
        self.sketch.increment(hash);

        match region {
            WINDOW => {
                self.window_hits = self.window_hits.wrapping_add(1);
                self.window.move_to_head(&mut self.arena, h);
            }
            PROTECTED => self.protected.move_to_head(&mut self.arena, h),
            _ => {
                self.unlink(h);
                self.push(PROTECTED, h);
                while self.protected.weight() > self.protected_cap() {
                    let d = self.protected.tail().expect("non-empty protected");
                    self.unlink(d);
                    self.push(PROBATION, d);
                }
            }
        }
    }
    fn insert(&mut self, h: Handle, hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.arena.ensure(h);
        self.sketch.ensure(self.len() + 1);
        self.sketch.increment(hash);
        let (len, clock) = (self.len(), self.clock);
        let gap = self.recency.as_mut().map_or(NO_GAP, |r| {
            r.ensure(len + 1);
            r.gap(hash, clock).map_or(NO_GAP, gap_code)
        });
        if u64::from(weight) > self.capacity {
            evicted.push(h);
            return;
        }
        let stamp = self.tick();
        let n = self.arena.node_mut(h);
        n.weight = weight;
        n.meta = Meta {
            hash: [hash as u32, (hash >> 32) as u32],
            stamp,
            gap,
            region: NONE,
        };
        self.push(WINDOW, h);
        self.rebalance(evicted);
    }
    fn remove(&mut self, h: Handle) {
        self.unlink(h);
    }
    fn clear(&mut self) {
        self.arena.reset();
        self.window.clear();
        self.probation.clear();
        self.protected.clear();
        self.sketch.clear();
        if let Some(r) = &mut self.recency {
            r.clear();
        }
        self.reuses = 0;
    }
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        self.capacity = capacity;
        self.set_window(self.window_cap);
        self.rebalance(evicted);
    }
    fn heap_bytes(&self) -> u64 {
        let log = self
            .log
            .as_ref()
            .map_or(0, |l| l.from_window.capacity() + l.from_main.capacity());
        (self.arena.heap_bytes() + log * 8) as u64
            + self.sketch.heap_bytes()
            + self.recency.as_ref().map_or(0, Recency::heap_bytes)
    }
    fn shrink(&mut self, handle_limit: Handle) {
        self.arena.shrink(handle_limit);
        let len = self.len();
        self.sketch.shrink(len);
        if let Some(r) = &mut self.recency {
            r.shrink(len);
        }
        if let Some(log) = &mut self.log {
            log.from_window.shrink_to(64);
            log.from_main.shrink_to(64);
        }
    }
    fn relocate(&mut self, from: Handle, to: Handle) {
        let region = self.arena.node(from).meta.region;
        let mut list = *self.list_mut(region);
        list.relocate(&mut self.arena, from, to);
        *self.list_mut(region) = list;
    }
    fn check(&self) -> Result<(), String> {
        for (list, r, name) in [
            (&self.window, WINDOW, "wtinylfu window"),
            (&self.probation, PROBATION, "wtinylfu probation"),
            (&self.protected, PROTECTED, "wtinylfu protected"),
        ] {
            list.check(&self.arena, name, |h, n| {
                if n.meta.region == r {
                    Ok(())
                } else {
                    Err(format!("{name}: {h} marked region {}", n.meta.region))
                }
            })?;
        }
        if self.total() > self.capacity {
            return Err("wtinylfu: over capacity".into());
        }
        if let Some(r) = &self.recency {
            r.check()?;
        }
        Ok(())
    }
}
