//! `nearcache simulate`: the what-if. Replays a request trace (`nearcache capture --out`)
//! through the cache library exactly as the proxy builds and uses it ([`cachelayer`]'s
//! configuration, entry keys, stored value sizes and size cap): a cacheable read looks its
//! entry up and fills it on a miss, a write invalidates its keys, FLUSHALL clears. Prints,
//! per size and policy, the hit ratio, upstream reads and bytes saved, invalidations, and
//! the smallest size given that reaches 80/90/95% of the hit ratio an unbounded cache gets.
//!
//! How, per policy: LRU at every size in one pass of stack distances ([`stack`]); the other
//! policies replayed through the cache, every key when the trace has at most `--sample-keys`
//! keys, a SHARDS sample of them otherwise ([`replay`]); `--exact` replays everything. The
//! trace is read once ([`events`]); [`report`] prints, [`plot`] draws the curves.
//!
//! Offline and single-threaded: never touches a socket. Reads the proxy would not look up
//! (another db, a write of the same connection in flight) go upstream here too.

pub mod events;
pub mod plot;
pub mod replay;
pub mod report;
pub mod stack;

use std::collections::BTreeMap;
use std::path::PathBuf;

use cache::PolicyKind;
use clap::Parser;

use crate::cachelayer::max_value;
use crate::config::values::{ByteSize, Value};
use events::Events;
use replay::{replay, shards_at, Sample};
use report::{knee, text, Report, Run};

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
    /// Replay every request through the cache at every size, LRU included (slow; the
    /// reference the fast methods are measured against).
    #[arg(long)]
    pub exact: bool,
    /// SHARDS sample size: policies other than LRU replay this many keys (a fixed-size
    /// sample) when the trace has more; 0 replays every key.
    #[arg(long, default_value = "65536")]
    pub sample_keys: usize,
    /// Draws the miss-ratio curves (one per policy) into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

impl SimulateArgs {
    /// The arguments `nearcache simulate TRACE` would have.
    pub fn new(trace: PathBuf) -> SimulateArgs {
        SimulateArgs::parse_from([std::ffi::OsString::from("simulate"), trace.into()])
    }
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
    let ev = Events::load(&args.trace)?;
    let mut report = Report {
        requests: ev.requests,
        keys: ev.groups.len() as u64,
        cacheable_reads: ev.cacheable_reads,
        lookups: ev.lookups,
        writes: ev.writes,
        ttl_sets: ev.ttl_sets,
        duration_s: ev.duration_s,
        achievable_hit_ratio: ev.achievable(ttl_ms, max_value(u64::MAX)),
        ..Report::default()
    };
    let sample = match args.exact {
        true => None,
        false => Sample::fixed_size(&ev, args.sample_keys),
    };
    for &policy in &policies {
        let runs = if policy == PolicyKind::Lru && !args.exact {
            lru_by_stack(&ev, &sizes, args.shards, ttl_ms)
        } else {
            sizes
                .iter()
                .map(|&size| replay(&ev, policy, size, args.shards, ttl_ms, sample))
                .collect()
        };
        report
            .runs
            .extend(runs.into_iter().map(|r| r.finish(ev.bypassed)));
        report.knees.push(knee(&report, policy));
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, plot::svg(&report))
            .map_err(|e| anyhow::anyhow!("--plot {}: {e}", path.display()))?;
    }
    Ok(if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        text(&args.trace, &report)
    })
}

/// LRU at `sizes`, one stack pass per set of sizes that share the proxy's shard count and,
/// for this trace, its value cap (caps above every stored value are the same cap).
fn lru_by_stack(ev: &Events, sizes: &[u64], shards: usize, ttl_ms: u64) -> Vec<Run> {
    let mut passes: BTreeMap<(usize, u64), Vec<u64>> = BTreeMap::new();
    for &size in sizes {
        let cap = max_value(size).min(u64::from(ev.max_stored));
        passes
            .entry((shards_at(size, shards), cap))
            .or_default()
            .push(size);
    }
    let mut runs: Vec<Run> = passes
        .into_iter()
        .flat_map(|((shards, cap), sizes)| stack::lru_runs(ev, &sizes, shards, cap, ttl_ms))
        .collect();
    // In the order given.
    runs.sort_by_key(|r| sizes.iter().position(|&s| s == r.max_memory));
    runs
}
