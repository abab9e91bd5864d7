//! `nearcache simulate`: the what-if. Replays a request trace (`nearcache capture --out`)
//! through the cache library exactly as the proxy builds and uses it ([`cachelayer`]'s
//! configuration, entry keys, stored value sizes and size cap): a cacheable read looks its
//! entry up and fills it on a miss, a write invalidates its keys, FLUSHALL clears. Prints,
//! per size and policy, the hit ratio, upstream reads and bytes saved, invalidations, and
//! the smallest size given that reaches 80/90/95% of the hit ratio an unbounded cache gets.
//!
//! Offline and single-threaded: never touches a socket. Reads the proxy would not look up
//! (another db, a write of the same connection in flight) go upstream here too.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cache::{Cache, PolicyKind};
use clap::Parser;
use serde::Serialize;

use crate::cachelayer::{cache_config, max_value, put_entry_key};
use crate::capture::trace::{Class, Request, TraceReader, AFTER_WRITE};
use crate::config::values::{ByteSize, Value};

/// `nearcache simulate TRACE`: hit ratios of the proxy's cache at other sizes and policies.
#[derive(Debug, Parser)]
#[command(name = "nearcache simulate")]
pub struct SimulateArgs {
    /// A trace written by `nearcache capture --out`.
    pub trace: PathBuf,
    /// Cache sizes, comma-separated (64mb,1gb).
    #[arg(long, value_delimiter = ',', default_value = "64mb")]
    pub max_memory: Vec<String>,
    /// Eviction policy (lru, lfu, w-tinylfu, s3fifo, sieve, adaptive), or `all`.
    #[arg(long, default_value = "adaptive")]
    pub eviction: String,
    /// Upper bound on an entry's life, as the proxy's `cache_ttl`.
    #[arg(long, default_value = "5m")]
    pub cache_ttl: String,
    /// Shards; 0 picks what the proxy picks on this machine (4 per CPU, at least 1 MiB each).
    #[arg(long, default_value = "0")]
    pub shards: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One size and policy replayed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Run {
    pub policy: String,
    pub max_memory: u64,
    pub shards: usize,
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
    pub cacheable_reads: u64,
    pub lookups: u64,
    pub writes: u64,
    pub duration_s: f64,
    /// The hit ratio of a cache that never evicts (only writes and the TTL cap end entries).
    pub achievable_hit_ratio: f64,
    pub runs: Vec<Run>,
    pub knees: Vec<Knee>,
}

/// Runs `nearcache simulate` and returns what it prints.
pub fn run(args: &SimulateArgs) -> anyhow::Result<String> {
    let sizes = args
        .max_memory
        .iter()
        .map(|s| ByteSize::parse(s).map(|b| b.0))
        .collect::<Result<Vec<u64>, String>>()
        .map_err(|e| anyhow::anyhow!("--max-memory: {e}"))?;
    let policies: Vec<PolicyKind> = if args.eviction.eq_ignore_ascii_case("all") {
        PolicyKind::ALL.to_vec()
    } else {
        vec![args.eviction.parse()?]
    };
    let ttl = humantime::parse_duration(&args.cache_ttl)
        .map_err(|e| anyhow::anyhow!("--cache-ttl: {e}"))?;
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut report = unbounded(&args.trace, ttl_ms)?;
    for &policy in &policies {
        for &size in &sizes {
            report
                .runs
                .push(replay(&args.trace, policy, size, args.shards, ttl_ms)?);
        }
        report.knees.push(knee(&report, policy));
    }
    Ok(if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        text(&args.trace, &report)
    })
}

fn open(path: &Path) -> io::Result<TraceReader<BufReader<File>>> {
    TraceReader::new(BufReader::with_capacity(1 << 20, File::open(path)?))
}

/// One cache lookup of a trace request: the entry's group (the Redis key), the arguments
/// naming the entry, the bytes the proxy would store, the bytes Redis sent.
struct Lookup<'a> {
    group: &'a Bytes,
    args: Vec<&'a [u8]>,
    stored: Option<u32>,
    value_bytes: u64,
}

/// Every lookup a request makes: one for a read, one per key for MGET; none when the proxy
/// would not look it up (returned as `Err(count)`).
fn lookups(r: &Request) -> Result<Vec<Lookup<'_>>, u64> {
    let bypass = r.db != 0 || r.flags & AFTER_WRITE != 0;
    match r.class {
        Class::Read if !r.keys.is_empty() => {
            if bypass {
                return Err(1);
            }
            let mut args: Vec<&[u8]> = vec![r.name.as_bytes(), &r.keys[0]];
            args.extend(r.extra.iter().map(|a| &a[..]));
            let stored = r.values.first().copied().flatten();
            Ok(vec![Lookup {
                group: &r.keys[0],
                args,
                stored,
                value_bytes: u64::from(r.reply_bytes.unwrap_or(0)),
            }])
        }
        Class::MultiRead => {
            if bypass {
                return Err(r.keys.len() as u64);
            }
            Ok(r.keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let stored = r.values.get(i).copied().flatten();
                    Lookup {
                        group: k,
                        args: vec![b"MGET", k],
                        stored,
                        value_bytes: u64::from(stored.unwrap_or(0)),
                    }
                })
                .collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// The trace through the proxy's cache at one size and policy.
fn replay(
    path: &Path,
    policy: PolicyKind,
    max_bytes: u64,
    shards: usize,
    ttl_ms: u64,
) -> anyhow::Result<Run> {
    let mut config = cache_config(max_bytes, policy);
    if shards > 0 {
        config.shards = shards;
    }
    let cache = Cache::new(config);
    let cap = max_value(max_bytes);
    let zeros = vec![0u8; cap as usize];
    let mut run = Run {
        policy: policy.name().to_string(),
        max_memory: max_bytes,
        shards: cache.shard_count(),
        ..Run::default()
    };
    let mut key = Vec::new();
    let mut t0 = None;
    for r in open(path)? {
        let r = r?;
        let now = (r.time_us - *t0.get_or_insert(r.time_us)) / 1000;
        match r.class {
            Class::Write => {
                for k in &r.keys {
                    cache.invalidate_group(k);
                }
            }
            Class::WriteAll => {
                cache.clear();
            }
            _ => {}
        }
        let found = match lookups(&r) {
            Ok(found) => found,
            Err(n) => {
                run.bypassed += n;
                continue;
            }
        };
        for l in found {
            key.clear();
            put_entry_key(r.proto, &l.args, &mut key);
            if cache.get_with(l.group, &key, now, |_| ()).is_some() {
                run.bytes_saved += l.value_bytes;
                continue;
            }
            let Some(stored) = l.stored.filter(|&n| u64::from(n) <= cap) else {
                continue;
            };
            let ticket = cache.begin_fill(l.group, 1);
            let stored = &zeros[..stored as usize];
            cache.complete_fill(ticket, &key, stored, now.saturating_add(ttl_ms), now);
        }
    }
    let s = cache.stats();
    run.hits = s.hits;
    run.misses = s.misses;
    run.hit_ratio = s.hits as f64 / (s.hits + s.misses).max(1) as f64;
    run.upstream_reads = s.misses + run.bypassed;
    run.upstream_reads_saved = s.hits;
    run.invalidations = s.invalidations;
    run.evictions = s.evictions;
    run.expirations = s.expirations;
    Ok(run)
}

/// The trace's totals and the hit ratio of a cache that never evicts.
fn unbounded(path: &Path, ttl_ms: u64) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut entries: HashMap<Bytes, HashMap<Vec<u8>, u64>> = HashMap::new();
    let (mut hits, mut misses) = (0u64, 0u64);
    let (mut first, mut last) = (None, 0u64);
    let cap = max_value(u64::MAX);
    for r in open(path)? {
        let r = r?;
        report.requests += 1;
        let t0 = *first.get_or_insert(r.time_us);
        last = last.max(r.time_us);
        let now = (r.time_us - t0) / 1000;
        match r.class {
            Class::Read | Class::MultiRead => report.cacheable_reads += 1,
            Class::Write | Class::WriteAll => report.writes += 1,
            _ => {}
        }
        match r.class {
            Class::Write => r.keys.iter().for_each(|k| drop(entries.remove(k))),
            Class::WriteAll => entries.clear(),
            _ => {}
        }
        for l in lookups(&r).unwrap_or_default() {
            report.lookups += 1;
            let mut key = Vec::new();
            put_entry_key(r.proto, &l.args, &mut key);
            let group = entries.entry(l.group.clone()).or_default();
            if group.get(&key).is_some_and(|&deadline| deadline > now) {
                hits += 1;
                continue;
            }
            misses += 1;
            if l.stored.is_some_and(|n| u64::from(n) <= cap) {
                group.insert(key, now.saturating_add(ttl_ms));
            }
        }
    }
    report.duration_s = first.map_or(0.0, |f| (last - f) as f64 / 1e6);
    report.achievable_hit_ratio = hits as f64 / (hits + misses).max(1) as f64;
    Ok(report)
}

/// The smallest size of `policy`'s runs reaching 80, 90 and 95% of the achievable ratio.
fn knee(report: &Report, policy: PolicyKind) -> Knee {
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

fn text(path: &Path, r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "trace {}: {} requests over {:.1} s, {} cacheable reads ({} lookups), {} writes",
        path.display(),
        r.requests,
        r.duration_s,
        r.cacheable_reads,
        r.lookups,
        r.writes
    );
    let _ = writeln!(
        o,
        "achievable hit ratio (a cache that never evicts): {:.2}%\n",
        100.0 * r.achievable_hit_ratio
    );
    let _ = writeln!(
        o,
        "{:<10} {:>10} {:>6} {:>7} {:>10} {:>10} {:>9} {:>10} {:>8} {:>12} {:>12} {:>10}",
        "policy",
        "max_memory",
        "shards",
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
            "{:<10} {:>10} {:>6} {:>7.2} {:>10} {:>10} {:>9} {:>10} {:>7.2}x {:>12} {:>12} {:>10}",
            run.policy,
            ByteSize(run.max_memory).show(),
            run.shards,
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
            "  {:<10} {} / {} / {}",
            k.policy,
            show(k.p80),
            show(k.p90),
            show(k.p95)
        );
    }
    o
}
