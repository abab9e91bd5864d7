//! The default policy: W-TinyLFU whose window share is tuned online by hill climbing.
//!
//! Every sample period (a multiple of the resident entry count, in requests) it compares the hit
//! ratio with the previous period's. If the ratio fell, the last step was wrong and the direction
//! flips; each step shrinks geometrically so the window settles, and a large swing in hit ratio
//! (a workload change) restarts with a full-size step. A large window makes the policy behave
//! like LRU (good for recency-heavy traces), a small one like TinyLFU (good for frequency-heavy
//! and scan/loop traces). Must never change anything but the window size of the inner policy.

use super::wtinylfu::WTinyLfu;
use super::{Handle, Policy, PolicyKind};

/// Window share the climber starts with.
const START_WINDOW: f64 = 0.01;
/// Largest window share (the protected main space never vanishes entirely).
const MAX_WINDOW: f64 = 0.90;
/// First step, as a share of capacity.
const START_STEP: f64 = 0.0625;
/// Each step is this much smaller than the previous one.
const DECAY: f64 = 0.98;
/// A change of hit ratio this large restarts the climb with a full step.
const RESTART: f64 = 0.05;
/// Sample period = this many requests per resident entry...
const PERIOD_PER_ENTRY: u64 = 1;
/// ...but at least this many requests.
const MIN_PERIOD: u64 = 256;

/// Adaptive W-TinyLFU.
#[derive(Debug)]
pub struct Adaptive {
    inner: WTinyLfu,
    hits: u64,
    misses: u64,
    prev_rate: Option<f64>,
    step: f64,
    window: f64,
}

impl Adaptive {
    /// An empty adaptive policy with the given weight capacity.
    pub fn new(capacity: u64) -> Self {
        let mut inner = WTinyLfu::new(capacity);
        inner.set_window((capacity as f64 * START_WINDOW) as u64);
        Self {
            inner,
            hits: 0,
            misses: 0,
            prev_rate: None,
            step: START_STEP,
            window: START_WINDOW,
        }
    }

    /// Current window share of the capacity (0..=0.9).
    pub fn window_share(&self) -> f64 {
        self.window
    }

    fn maybe_climb(&mut self) {
        let requests = self.hits + self.misses;
        let period = (PERIOD_PER_ENTRY * self.inner.len() as u64).max(MIN_PERIOD);
        if requests < period {
            return;
        }
        let rate = self.hits as f64 / requests as f64;
        if let Some(prev) = self.prev_rate {
            let delta = rate - prev;
            if delta < 0.0 {
                self.step = -self.step;
            }
            self.step = if delta.abs() >= RESTART {
                START_STEP.copysign(self.step)
            } else {
                self.step * DECAY
            };
        }
        self.window = (self.window + self.step).clamp(0.0, MAX_WINDOW);
        let cap = self.inner.capacity();
        self.inner.set_window((cap as f64 * self.window) as u64);
        self.prev_rate = Some(rate);
        self.hits = 0;
        self.misses = 0;
    }
}

impl Policy for Adaptive {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Adaptive
    }
    fn entry_overhead(&self) -> u64 {
        self.inner.entry_overhead()
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
        self.hits += 1;
        self.inner.on_hit(h);
        self.maybe_climb();
    }
    fn insert(&mut self, h: Handle, hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.misses += 1;
        self.inner.insert(h, hash, weight, evicted);
        self.maybe_climb();
    }
    fn remove(&mut self, h: Handle) {
        self.inner.remove(h);
    }
    fn clear(&mut self) {
        self.inner.clear();
    }
    fn check(&self) -> Result<(), String> {
        self.inner.check()
    }
}
