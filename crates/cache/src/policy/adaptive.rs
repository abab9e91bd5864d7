//! The default policy: W-TinyLFU whose window share adapts per request, ARC style.
//!
//! Two ghost lists remember the hashes of recently evicted entries, split by where they were
//! evicted from: candidates that left from the window (refused by TinyLFU admission) and victims
//! evicted from the main space. A miss on a window ghost means a larger window (more recency)
//! would have hit, so the window grows by the entry's weight (times the ghost-size ratio, as in
//! ARC); a miss on a main ghost means a larger main space (more frequency) would have hit, so the
//! window shrinks. A large window makes the policy behave like LRU (good for recency-heavy
//! traces), a small one like TinyLFU (good for frequency-heavy, scan and loop traces). Unlike a
//! periodic hill climber it needs no sampling period, so it adapts on short traces too. Must never
//! change anything but the inner policy's window size.

use super::ghost::Ghost;
use super::wtinylfu::WTinyLfu;
use super::{Handle, Policy, PolicyKind};

/// Window share at start.
const START_WINDOW: f64 = 0.05;
/// Each ghost remembers `resident entries / GHOST_DIVISOR` hashes: only very recent evictions
/// are evidence (measured on the traces: 1/10 beat 1/8, 1/4, 1/2 and 1/1 of the resident count).
const GHOST_DIVISOR: usize = 10;
/// Largest window share (at 100% the policy is plain LRU).
const MAX_WINDOW: f64 = 1.0;

/// Adaptive W-TinyLFU.
#[derive(Debug)]
pub struct Adaptive {
    inner: WTinyLfu,
    window_ghost: Ghost,
    main_ghost: Ghost,
    window: u64,
    max_window: u64,
}

impl Adaptive {
    /// An empty adaptive policy with the given weight capacity.
    pub fn new(capacity: u64) -> Self {
        let mut inner = WTinyLfu::new(capacity);
        inner.enable_log();
        let window = (capacity as f64 * START_WINDOW) as u64;
        inner.set_window(window);
        Self {
            inner,
            window_ghost: Ghost::default(),
            main_ghost: Ghost::default(),
            window,
            max_window: (capacity as f64 * MAX_WINDOW) as u64,
        }
    }

    /// Current window capacity in weight units.
    pub fn window(&self) -> u64 {
        self.window
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
        self.inner.set_window(self.window);
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

impl Policy for Adaptive {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Adaptive
    }
    fn entry_overhead(&self) -> u64 {
        // Inner W-TinyLFU plus two ghosts of up to 1/10 slot per entry each (queue + map, with
        // the queue allowed to hold stale copies up to twice the live set).
        self.inner.entry_overhead() + 2 * (2 * 16 + 17) / GHOST_DIVISOR as u64
    }
    fn capacity(&self) -> u64 {
        self.inner.capacity()
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
        self.inner.on_hit(h);
    }
    fn insert(&mut self, h: Handle, hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.adapt(hash, u64::from(weight));
        self.inner.insert(h, hash, weight, evicted);
        self.remember_evictions();
    }
    fn remove(&mut self, h: Handle) {
        self.inner.remove(h);
    }
    fn clear(&mut self) {
        self.inner.clear();
        self.window_ghost.clear();
        self.main_ghost.clear();
    }
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        self.inner.set_capacity(capacity, evicted);
        self.max_window = (capacity as f64 * MAX_WINDOW) as u64;
        self.window = self.window.min(self.max_window);
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
        self.inner.check()
    }
}
