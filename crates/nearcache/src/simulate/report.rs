//! What `nearcache simulate` reports: per size and policy a [`Run`], the trace's totals, the
//! smallest sizes reaching shares of the achievable hit ratio ([`Knee`]), as text or JSON.
//!
//! Plain data and its presentation; never replays anything.

use std::fmt::Write as _;
use std::path::Path;

use cache::PolicyKind;
use serde::Serialize;

use crate::config::values::{ByteSize, Value};

/// One size and policy replayed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Run {
    pub policy: String,
    pub max_memory: u64,
    pub shards: usize,
    /// How it was computed: `replay` (every request through the cache), `stack` (LRU stack
    /// distances, one pass for all sizes) or `shards` (SHARDS: the sampled keys replayed
    /// through a cache scaled by the rate, counts scaled back).
    pub method: String,
    /// The share of keys replayed (1 unless `shards`).
    pub sample_rate: f64,
    /// Cache lookups (an MGET looks each key up) and their outcome.
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: f64,
    /// Cacheable reads the proxy would send upstream without a lookup.
    pub bypassed: u64,
    /// Reads sent upstream (misses and bypassed), and those a hit saved.
    pub upstream_reads: u64,
    pub upstream_reads_saved: u64,
    /// Value bytes Redis would not have sent, thanks to hits.
    pub bytes_saved: u64,
    pub invalidations: u64,
    pub evictions: u64,
    pub expirations: u64,
}

impl Run {
    /// Scales a sampled run's counts back to the whole trace, then fills in the ratios and
    /// the upstream figures (with `bypassed` reads that never looked the cache up).
    pub fn finish(mut self, bypassed: u64) -> Run {
        if self.sample_rate > 0.0 && self.sample_rate < 1.0 {
            let up = |n: &mut u64| *n = (*n as f64 / self.sample_rate).round() as u64;
            for n in [
                &mut self.hits,
                &mut self.misses,
                &mut self.bytes_saved,
                &mut self.invalidations,
                &mut self.evictions,
                &mut self.expirations,
            ] {
                up(n);
            }
        }
        self.bypassed = bypassed;
        self.hit_ratio = self.hits as f64 / (self.hits + self.misses).max(1) as f64;
        self.upstream_reads = self.misses + bypassed;
        self.upstream_reads_saved = self.hits;
        self
    }
}

/// The smallest sizes reaching a share of the achievable hit ratio.
#[derive(Debug, Serialize)]
pub struct Knee {
    pub policy: String,
    pub p80: Option<u64>,
    pub p90: Option<u64>,
    pub p95: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub requests: u64,
    /// Distinct keys looked up.
    pub keys: u64,
    pub cacheable_reads: u64,
    pub lookups: u64,
    pub writes: u64,
    /// Commands that set a key's TTL; entries of those keys end when the key expires.
    pub ttl_sets: u64,
    pub duration_s: f64,
    /// The hit ratio of a cache that never evicts (only writes and the TTL cap end entries).
    pub achievable_hit_ratio: f64,
    pub runs: Vec<Run>,
    pub knees: Vec<Knee>,
}

/// The smallest size of `policy`'s runs reaching 80, 90 and 95% of the achievable ratio.
pub fn knee(report: &Report, policy: PolicyKind) -> Knee {
    let mut runs: Vec<&Run> = report
        .runs
        .iter()
        .filter(|r| r.policy == policy.name())
        .collect();
    runs.sort_by_key(|r| r.max_memory);
    let reach = |share: f64| {
        runs.iter()
            .find(|r| r.hit_ratio >= share * report.achievable_hit_ratio)
            .map(|r| r.max_memory)
    };
    Knee {
        policy: policy.name().to_string(),
        p80: reach(0.8),
        p90: reach(0.9),
        p95: reach(0.95),
    }
}

/// `replay`, `stack`, or `shards 1.2%` with the share of keys sampled.
fn method(run: &Run) -> String {
    match run.method.as_str() {
        "shards" => format!("shards {:.2}%", 100.0 * run.sample_rate),
        m => m.to_string(),
    }
}

pub fn text(path: &Path, r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "trace {}: {} requests over {:.1} s, {} cacheable reads ({} lookups of {} keys), {} writes",
        path.display(),
        r.requests,
        r.duration_s,
        r.cacheable_reads,
        r.lookups,
        r.keys,
        r.writes
    );
    if r.ttl_sets > 0 {
        let _ = writeln!(
            o,
            "{} commands set a key's TTL: those keys' entries end when the key expires",
            r.ttl_sets
        );
    }
    let _ = writeln!(
        o,
        "achievable hit ratio (a cache that never evicts): {:.2}%\n",
        100.0 * r.achievable_hit_ratio
    );
    let _ = writeln!(
        o,
        "{:<13} {:>10} {:>6} {:>13} {:>7} {:>10} {:>10} {:>9} {:>10} {:>8} {:>12} {:>12} {:>10}",
        "policy",
        "max_memory",
        "shards",
        "method",
        "hit%",
        "hits",
        "misses",
        "bypassed",
        "upstream",
        "fewer",
        "bytes saved",
        "invalidated",
        "evicted"
    );
    for run in &r.runs {
        let reads = run.upstream_reads + run.upstream_reads_saved;
        let fewer = reads as f64 / run.upstream_reads.max(1) as f64;
        let _ = writeln!(
            o,
            "{:<13} {:>10} {:>6} {:>13} {:>7.2} {:>10} {:>10} {:>9} {:>10} {:>7.2}x {:>12} {:>12} {:>10}",
            run.policy,
            ByteSize(run.max_memory).show(),
            run.shards,
            method(run),
            100.0 * run.hit_ratio,
            run.hits,
            run.misses,
            run.bypassed,
            run.upstream_reads,
            fewer,
            run.bytes_saved,
            run.invalidations,
            run.evictions
        );
    }
    let _ = writeln!(
        o,
        "\nsmallest size given reaching 80% / 90% / 95% of the achievable hit ratio:"
    );
    let show = |s: Option<u64>| s.map_or("-".to_string(), |b| ByteSize(b).show());
    for k in &r.knees {
        let _ = writeln!(
            o,
            "  {:<13} {} / {} / {}",
            k.policy,
            show(k.p80),
            show(k.p90),
            show(k.p95)
        );
    }
    o
}
