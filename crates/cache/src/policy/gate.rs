//! The fill gate: whether a miss is worth filling, decided before the value is fetched.
//!
//! A fill costs the proxy about as much as the forward it follows (the entry built, indexed and
//! offered to the policy) and Redis a `PTTL` and a tracking record. Where almost no fill is ever
//! read again (keys drawn from a set far larger than the cache, a scan), those costs buy
//! nothing. So, once the cache is full and fewer than one sampled lookup in [`RATIO`] hits, a
//! key's first request in the recency table's memory is forwarded without a fill, and only a
//! second request fills it (the "cache on second hit" rule of CDNs, Maggs and Sitaraman,
//! "Algorithmic Nuggets in Content Delivery", 2015). The policy still counts the first request
//! (sketch, recency table), so the second is admitted as if the first had been cached and left.
//!
//! The hit ratio is measured on a fixed sample of keys (one in [`SAMPLE`], by hash) that are
//! always filled: gating the others cannot lower what it measures, so a gated cache opens again
//! as soon as its traffic would hit. Owns only those counters; never allocates.

/// One key in `SAMPLE` (by hash) is always filled and measures the hit ratio: a sixteenth of
/// the traffic keeps full service, for a measure that follows the traffic within a few thousand
/// requests.
const SAMPLE: u64 = 16;
/// Below one hit in `RATIO` sampled lookups the gate closes. It trades hits for work: a closed
/// gate gives up at most the hits of keys' second requests, under a sixteenth of the requests
/// there, and saves a fill on every other first request.
const RATIO: u32 = 100;
/// Sampled lookups between decisions; the counts are halved after each, so older traffic
/// weighs half as much per period.
const PERIOD: u32 = 1024;

/// The hit-ratio estimate and the gate's state.
#[derive(Debug, Default, Clone)]
pub(crate) struct FillGate {
    lookups: u32,
    hits: u32,
    closed: bool,
}

impl FillGate {
    /// Whether `hash` is one of the sampled keys.
    #[inline]
    pub fn sampled(hash: u64) -> bool {
        hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60 < 16 / SAMPLE
    }

    /// A lookup of `hash`, hit or not.
    #[inline]
    pub fn observe(&mut self, hash: u64, hit: bool) {
        if !Self::sampled(hash) {
            return;
        }
        self.lookups += 1;
        self.hits += u32::from(hit);
        if self.lookups >= PERIOD {
            self.lookups /= 2;
            self.hits /= 2;
        }
        self.closed = self.lookups >= PERIOD / 2 && self.hits * RATIO < self.lookups;
    }

    /// Whether the gate lets a miss on `hash` fill without a second request.
    pub fn open_for(&self, hash: u64) -> bool {
        !self.closed || Self::sampled(hash)
    }

    /// Forget the traffic seen (the cache was emptied).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}
