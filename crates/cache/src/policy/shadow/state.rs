//! What the shadows hold: the [`Shadows`] struct, its [`Pair`]s of shadow policies (an LRU and a
//! copy of the ghost-tuned W-TinyLFU at one capacity) and where the duel stands ([`Phase`],
//! [`Verdict`]).
//!
//! Data and the pair's own plumbing only, shared by the duel (`shadow.rs`, which implements
//! [`Shadows`]) and its memory bound (`budget.rs`, which sizes it). Must never import either of
//! them, nor decide anything about the duel.

use crate::policy::api::{Handle, Policy};
use crate::policy::lru::Lru;
use crate::policy::tuned::Tuned;
use hashbrown::HashTable;

/// The sampling rate at start leaves a shadow holding at most this part of its samples, as the
/// real cache is then half full.
pub(super) const START_SHARE: usize = 2;

/// Where the duel stands since [`Shadows::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// The shadow LRU has not evicted yet; the half-size pair runs.
    Filling,
    /// The half-size pair hinted at LRU, so the verdict is LRU until the full-size duel
    /// confirms it ([`super::TRIAL_CONFIRM`]), refutes it ([`super::TRIAL_ABANDON`]) or `left`
    /// sampled requests have passed.
    Trial { left: usize },
    /// The full-size duel alone decides.
    Duel,
}

/// Which behaviour the real cache should follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Plain LRU has been winning.
    Lru,
    /// The adaptive W-TinyLFU has been winning.
    Adaptive,
}

/// A shadow LRU and a shadow copy of the ghost-tuned W-TinyLFU (the adaptive policy without
/// shadows) at one capacity.
#[derive(Debug)]
pub(super) struct Pair {
    pub(super) lru: Lru,
    pub(super) ad: Tuned,
}

impl Pair {
    /// An empty pair of `capacity` weight units whose arenas have room for handles below
    /// `handles`.
    pub(super) fn new(capacity: u64, expected: usize, handles: usize) -> Self {
        let mut lru = Lru::new(capacity);
        lru.reserve(handles);
        let mut ad = Tuned::new(capacity, expected as u64);
        ad.reserve(handles);
        Self { lru, ad }
    }

    /// Run one request through both; returns whether each hit and whether the LRU evicted.
    pub(super) fn feed(
        &mut self,
        handle: Handle,
        hash: u64,
        weight: u32,
        evicted: &mut Vec<Handle>,
    ) -> Hits {
        let before = evicted.len();
        let lru = self.lru.contains(handle);
        if lru {
            self.lru.on_hit(handle);
        } else {
            self.lru.insert(handle, hash, weight, evicted);
        }
        let lru_evicted = evicted.len() > before;
        let ad = self.ad.contains(handle);
        if ad {
            self.ad.on_hit(handle);
        } else {
            self.ad.insert(handle, hash, weight, evicted);
        }
        Hits {
            lru,
            ad,
            lru_evicted,
        }
    }

    pub(super) fn holds(&self, handle: Handle) -> bool {
        self.lru.contains(handle) || self.ad.contains(handle)
    }

    pub(super) fn remove(&mut self, handle: Handle) {
        if self.lru.contains(handle) {
            self.lru.remove(handle);
        }
        if self.ad.contains(handle) {
            self.ad.remove(handle);
        }
    }

    pub(super) fn heap_bytes(&self) -> u64 {
        self.lru.heap_bytes() + self.ad.heap_bytes()
    }
}

/// What one request did in a pair.
pub(super) struct Hits {
    pub(super) lru: bool,
    pub(super) ad: bool,
    pub(super) lru_evicted: bool,
}

/// Two shadow policies over sampled keys, and the duel between them.
#[derive(Debug)]
pub struct Shadows {
    /// Key hash of every handle; a handle is live while a shadow holds it.
    pub(super) hashes: Vec<u64>,
    /// Live handles by key hash.
    pub(super) index: HashTable<u32>,
    pub(super) free: Vec<u32>,
    /// The pair at the real capacity (scaled by the sampling rate).
    pub(super) full: Pair,
    /// The half-size pair, while [`Phase::Filling`].
    pub(super) half: Option<Box<Pair>>,
    /// Net requests the half-size LRU hit and its copy missed, and requests they disagreed on.
    pub(super) hint: i64,
    pub(super) hint_n: i64,
    pub(super) phase: Phase,
    /// Capacity of the real policy being simulated (weight units).
    pub(super) capacity: u64,
    pub(super) shift: u32,
    pub(super) mask: u64,
    pub(super) max_samples: usize,
    pub(super) evicted: Vec<Handle>,
    pub(super) psel: i64,
    pub(super) verdict: Verdict,
}
