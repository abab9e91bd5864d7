//! W-TinyLFU whose window share adapts per request, ARC style, from two ghost lists: the
//! default policy without its shadows. [`super::Adaptive`] wraps it with the shadows, and the
//! shadows run it as their copy of the adaptive policy.
//!
//! Two ghost lists remember the hashes of recently evicted entries, split by where they were
//! evicted from: candidates that left from the window (refused by TinyLFU admission) and victims
//! evicted from the main space. A miss on a window ghost means a larger window (more recency)
//! would have hit, so the window grows by the entry's weight (times the ghost-size ratio, as in
//! ARC); a miss on a main ghost means a larger main space (more frequency) would have hit, so the
//! window shrinks. A large window makes the policy behave like LRU (good for recency-heavy
//! traces), a small one like TinyLFU (good for frequency-heavy, scan and loop traces). Unlike a
//! periodic hill climber it needs no sampling period, so it adapts on short traces too. A window
//! that goes without hits while the cache has them is halved (see [`Tuned::idle_window`]).
//!
//! It can also run as plain LRU (the window at the whole cache, evicting the least recently used
//! entry across its lists), keeping the learned window for when it leaves; when to do so is its
//! owner's call ([`Tuned::enter_lru`], [`Tuned::leave_lru`]). It must never look at shadows or
//! decide that on its own, and must never change anything but the inner policy's window size and
//! eviction order.

use super::api::{Handle, Policy};
use super::ghost::Ghost;
use super::wtinylfu::{Traffic, WTinyLfu};

/// Window share at start.
const START_WINDOW: f64 = 0.05;
/// Each ghost remembers `resident entries / GHOST_DIVISOR` hashes: only very recent evictions
/// are evidence that a slightly larger window or main space would have hit; longer ghosts move
/// the window on reuse that no resize within the cache could catch, and cost memory per entry.
pub(crate) const GHOST_DIVISOR: usize = 10;
/// Largest window share (at 100% the policy is plain LRU).
const MAX_WINDOW: f64 = 1.0;
/// The window halves when it has had no hit while its share of the cache's hits would have
/// been this many (see [`Tuned::idle_window`]).
const IDLE_HITS: u64 = 5;

/// Ghost-tuned W-TinyLFU.
#[derive(Debug)]
pub(crate) struct Tuned {
    inner: WTinyLfu,
    window_ghost: Ghost,
    main_ghost: Ghost,
    window: u64,
    max_window: u64,
    /// Running as plain LRU (window = whole cache), as the owner asked.
    lru_mode: bool,
    /// Since when the window has had no hit (see [`Tuned::idle_window`]).
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

impl Tuned {
    /// An empty ghost-tuned W-TinyLFU of `capacity` weight units, with its frequency sketch
    /// first sized for `expected_entries`.
    pub(crate) fn new(capacity: u64, expected_entries: u64) -> Self {
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
            lru_mode: false,
            idle: Idle::default(),
        }
    }

    /// The W-TinyLFU underneath (its resident keys and frequencies warm the shadows).
    pub(crate) fn wtinylfu(&self) -> &WTinyLfu {
        &self.inner
    }

    /// Current window capacity in weight units (the whole capacity while in LRU mode).
    pub(crate) fn window(&self) -> u64 {
        self.inner.window_cap()
    }

    /// True while running as plain LRU.
    pub(crate) fn lru_mode(&self) -> bool {
        self.lru_mode
    }

    /// Run as plain LRU: the window is the whole cache, and overflow leaves in global LRU
    /// order. The learned window is kept for [`Tuned::leave_lru`].
    pub(crate) fn enter_lru(&mut self) {
        self.lru_mode = true;
        self.apply_window();
    }

    /// Leave LRU mode, with the window at `share` of the capacity if given (the share a shadow
    /// copy has learned meanwhile), else where it was.
    pub(crate) fn leave_lru(&mut self, share: Option<f64>) {
        self.lru_mode = false;
        if let Some(share) = share {
            let cap = self.inner.capacity();
            self.window = ((cap as f64 * share) as u64).min(self.max_window);
        }
        self.apply_window();
    }

    /// Make room for handles below `handles` up front, so the arena never grows later.
    pub(crate) fn reserve(&mut self, handles: usize) {
        self.inner.reserve(handles);
    }

    /// Count one more request for `hash` in the frequency sketch (seeding a shadow copy).
    pub(crate) fn record(&mut self, hash: u64) {
        self.inner.record(hash);
    }

    /// Key hash and weight of a resident handle.
    #[inline]
    pub(crate) fn hash_weight(&self, h: Handle) -> (u64, u32) {
        self.inner.hash_weight(h)
    }

    /// True if the policy has had a hit other than a back-to-back repeat since it was last
    /// cleared.
    pub(crate) fn reused(&self) -> bool {
        self.inner.traffic().reuses != 0
    }

    /// Weight capacity (what the entries may hold).
    pub(crate) fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    /// Total weight of resident handles.
    pub(crate) fn weight(&self) -> u64 {
        self.inner.weight()
    }

    /// Number of resident handles.
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if `h` is resident.
    #[inline]
    pub(crate) fn contains(&self, h: Handle) -> bool {
        self.inner.contains(h)
    }

    /// Heap bytes of metadata per resident entry: the inner W-TinyLFU's plus two ghost lists of
    /// up to one hash per 10 entries each (queue + map, with the queue allowed to hold stale
    /// copies up to twice the live set).
    pub(crate) fn entry_overhead(&self) -> u64 {
        self.inner.entry_overhead() + 2 * (2 * 16 + 17) / GHOST_DIVISOR as u64
    }

    /// Turn on the inner W-TinyLFU's recency-aware admission (for [`super::ReuseTinyLfu`]),
    /// its table first sized for `expected_entries`.
    pub(crate) fn enable_recency(&mut self, expected_entries: usize) {
        self.inner.enable_recency(expected_entries);
    }

    /// A resident handle was read.
    #[inline]
    pub(crate) fn on_hit(&mut self, h: Handle) {
        self.inner.on_hit(h);
    }

    /// Offer a new handle (see [`Policy::insert`]): the ghosts move the window first, then the
    /// inner policy decides, and what it evicted is remembered in the ghosts.
    pub(crate) fn insert(&mut self, h: Handle, hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.adapt(hash, u64::from(weight));
        self.inner.insert(h, hash, weight, evicted);
        self.idle_window();
        self.remember_evictions();
    }

    /// Drop a resident handle without counting it as an eviction.
    pub(crate) fn remove(&mut self, h: Handle) {
        self.inner.remove(h);
    }

    /// Drop every handle and the ghosts, and leave LRU mode.
    pub(crate) fn clear(&mut self) {
        self.inner.clear();
        self.window_ghost.clear();
        self.main_ghost.clear();
        self.lru_mode = false;
        self.apply_window();
        self.idle = Idle::start(self.inner.traffic());
    }

    /// Change the weight capacity; evicts (pushing to `evicted`) until the weight fits it.
    pub(crate) fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        self.inner.set_capacity(capacity, evicted);
        self.max_window = (capacity as f64 * MAX_WINDOW) as u64;
        self.window = self.window.min(self.max_window);
        // In LRU mode the window follows the capacity.
        self.apply_window();
        self.remember_evictions();
    }

    /// Heap bytes the inner policy and the ghosts hold now.
    pub(crate) fn heap_bytes(&self) -> u64 {
        self.inner.heap_bytes() + self.window_ghost.heap_bytes() + self.main_ghost.heap_bytes()
    }

    /// See [`Policy::shrink`]; the ghosts are sized for the resident count.
    pub(crate) fn shrink(&mut self, handle_limit: Handle) {
        self.inner.shrink(handle_limit);
        let limit = (self.inner.len() / GHOST_DIVISOR).max(16);
        self.window_ghost.shrink(limit);
        self.main_ghost.shrink(limit);
    }

    /// See [`Policy::relocate`].
    pub(crate) fn relocate(&mut self, from: Handle, to: Handle) {
        self.inner.relocate(from, to);
    }

    /// The inner policy's invariants, and a whole-cache window in LRU mode.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.lru_mode && self.inner.window_cap() != self.inner.capacity() {
            return Err("adaptive: LRU mode with a partial window".into());
        }
        self.inner.check()
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

fn clear(mut v: Vec<u64>) -> Vec<u64> {
    v.clear();
    v
}
