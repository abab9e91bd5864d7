//! A trace through the proxy's own cache ([`cachelayer::cache_config`], its value cap and
//! TTL cap), request by request: every key (`replay`), or SHARDS's spatial sample of them
//! (Waldspurger et al., FAST 2015): a key is kept when the low 32 bits of its fixed hash are
//! below a threshold T, the sample then replayed through a cache of `size x T / 2^32` bytes.
//! The fixed-size variant: T is the hash of the (S+1)-th smallest key, so S keys are kept
//! whatever the trace's size. Its error against the full replay is measured in
//! docs/capture.md.
//!
//! Single-threaded and offline. Never decides what is looked up (that is [`Events`]').
//!
//! [`cachelayer::cache_config`]: crate::cachelayer::cache_config

use cache::{Cache, PolicyKind};

use super::events::{Event, Events, NOT_STORED};
use super::report::Run;
use crate::cachelayer::{cache_config, max_value};

/// A SHARDS sample: the keys whose hash's low 32 bits are below `threshold`.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub threshold: u64,
    pub rate: f64,
}

impl Sample {
    /// The fixed-size sample of `keys` keys, or `None` when the trace has no more keys than
    /// that (every key is replayed then).
    pub fn fixed_size(ev: &Events, keys: usize) -> Option<Sample> {
        if keys == 0 || ev.groups.len() <= keys {
            return None;
        }
        let mut low: Vec<u64> = ev.groups.iter().map(|g| g.hash & 0xffff_ffff).collect();
        let (_, &mut threshold, _) = low.select_nth_unstable(keys);
        Some(Sample {
            threshold,
            rate: threshold as f64 / (1u64 << 32) as f64,
        })
    }

    fn keeps(&self, hash: u64) -> bool {
        hash & 0xffff_ffff < self.threshold
    }
}

/// The shards the proxy's cache has at `max_bytes` (`shards` when given).
pub fn shards_at(max_bytes: u64, shards: usize) -> usize {
    let mut config = cache_config(max_bytes, PolicyKind::Lru);
    config.shards = shards;
    Cache::new(config).shard_count()
}

/// The trace (or its `sample`) through `policy` at `max_bytes`.
pub fn replay(
    ev: &Events,
    policy: PolicyKind,
    max_bytes: u64,
    shards: usize,
    ttl_cap_ms: u64,
    sample: Option<Sample>,
) -> Run {
    let real_shards = shards_at(max_bytes, shards);
    let mut config = cache_config(max_bytes, policy);
    config.shards = real_shards;
    let rate = sample.map_or(1.0, |s| s.rate);
    if let Some(s) = sample {
        // A shard keeps the budget it has in the proxy; the sample fills fewer of them.
        config.max_bytes = (max_bytes as f64 * s.rate) as u64;
        let scaled = (real_shards as f64 * s.rate).floor() as usize;
        config.shards = if scaled >= 2 { 1 << scaled.ilog2() } else { 1 };
    }
    let cache = Cache::new(config);
    // The cap of the size simulated, not of the scaled cache: the proxy's.
    let cap = max_value(max_bytes);
    let zeros = vec![0u8; cap as usize];
    let keep = |group: u32| sample.is_none_or(|s| s.keeps(ev.groups[group as usize].hash));
    let mut bytes_saved = 0;
    for e in &ev.events {
        match *e {
            Event::Lookup {
                at,
                entry,
                stored,
                value_bytes,
                ttl_ms,
            } => {
                let en = &ev.entries[entry as usize];
                if !keep(en.group) {
                    continue;
                }
                let group = &ev.groups[en.group as usize].key;
                let now = u64::from(at);
                if cache.get_with(group, &en.key, now, |_| ()).is_some() {
                    bytes_saved += u64::from(value_bytes);
                    continue;
                }
                if stored == NOT_STORED || u64::from(stored) > cap {
                    continue;
                }
                let ticket = cache.begin_fill(group, 1);
                let deadline = Events::deadline(at, ttl_ms, ttl_cap_ms);
                let value = &zeros[..stored as usize];
                cache.complete_fill(ticket, &en.key, value, deadline, now);
            }
            Event::Invalidate { group } => {
                if keep(group) {
                    cache.invalidate_group(&ev.groups[group as usize].key);
                }
            }
            Event::Clear => {
                cache.clear();
            }
        }
    }
    let s = cache.stats();
    // SHARDS_adj: the sample's lookups differ from their expected count (`lookups x rate`)
    // when it holds more or fewer hot keys than its share; the difference goes to the hits
    // (the paper adds it at stack distance 0).
    let hits = match sample {
        Some(smp) => {
            let expected = ev.lookups as f64 * smp.rate;
            let delta = expected - (s.hits + s.misses) as f64;
            (s.hits as f64 + delta).max(0.0).round() as u64
        }
        None => s.hits,
    };
    Run {
        policy: policy.name().to_string(),
        max_memory: max_bytes,
        shards: real_shards,
        method: if sample.is_some() { "shards" } else { "replay" }.into(),
        sample_rate: rate,
        hits,
        misses: s.misses,
        bytes_saved,
        invalidations: s.invalidations,
        evictions: s.evictions,
        expirations: s.expirations,
        ..Run::default()
    }
}
