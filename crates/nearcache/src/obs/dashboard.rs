//! The admin dashboard: one self-contained page (inline JS and CSS, nothing fetched from
//! elsewhere) that polls `/api/stats` every second and draws the last minutes on canvases.
//!
//! `/api/stats` returns cumulative counters and current gauges; the page computes rates and
//! the p99 from differences between polls, so the server keeps no history.
//! Never shows a key or a value, and never fetches anything from outside the proxy.

use std::fmt::Write as _;

use super::stats::BOUNDS;
use crate::obs::metrics::{Bypass, CacheSnapshot, Metrics};
use crate::upstream::PoolStats;

/// The page, compiled into the binary.
pub const PAGE: &str = include_str!("dashboard.html");

/// The sizes the page draws the miss-ratio curve at, as multiples of the cache's: half
/// octaves from a quarter to eight times, `/metrics`'s among them.
pub const MRC_MULTIPLES: [f64; 11] = [
    0.25,
    0.353_553_390_593_273_8,
    0.5,
    std::f64::consts::FRAC_1_SQRT_2,
    1.0,
    std::f64::consts::SQRT_2,
    2.0,
    2.828_427_124_746_190_3,
    4.0,
    5.656_854_249_492_381,
    8.0,
];

/// The figures the dashboard polls, as JSON. Absent figures are `null`.
pub fn stats_json(metrics: &Metrics, cache: Option<CacheSnapshot>, pool: &PoolStats) -> String {
    let mrc: Vec<String> = cache
        .as_ref()
        .map(|c| &c.mrc[..])
        .unwrap_or_default()
        .iter()
        .map(|(size, ratio)| format!("[{size},{ratio:.4}]"))
        .collect();
    let cache_figures = cache.as_ref().map(|c| {
        (
            c.stats.bytes,
            c.stats.hits,
            c.stats.misses,
            c.stats.evictions,
            c.invalidated_keys,
            c.stats.entries,
        )
    });
    let by = metrics.cmd.by_outcome();
    let mut s = String::with_capacity(1024);
    let _ = write!(
        s,
        "{{\"uptime_ms\":{},\"rss_bytes\":{},\"max_memory_bytes\":{},\"clients\":{},\"commands\":{}",
        metrics.started.elapsed().as_millis(),
        super::rss_bytes(),
        metrics.max_memory(),
        metrics.clients.get(),
        metrics.commands.get(),
    );
    match cache_figures {
        Some((bytes, hits, misses, evictions, invalidations, entries)) => {
            // Reads that did not look the cache up: with hits and misses, every cacheable read
            // (a too-large read is among the misses here, counted once).
            let bypassed: u64 = Bypass::ALL
                .iter()
                .filter(|&&r| r != Bypass::TooLarge)
                .map(|&r| metrics.bypassed(r))
                .sum();
            let _ = write!(
                s,
                ",\"cache_bytes\":{bytes},\"cache_entries\":{entries},\"hits\":{hits},\"misses\":{misses},\"bypassed\":{bypassed},\"evictions\":{evictions},\"invalidations\":{invalidations}"
            );
        }
        None => s.push_str(
            ",\"cache_bytes\":null,\"cache_entries\":null,\"hits\":null,\"misses\":null,\"bypassed\":null,\"evictions\":null,\"invalidations\":null",
        ),
    }
    let _ = write!(
        s,
        ",\"ops\":{{\"hit\":{},\"miss\":{},\"forwarded\":{},\"error\":{},\"local\":{}}}",
        by[0], by[1], by[2], by[3], by[4]
    );
    let _ = write!(
        s,
        ",\"pool_in_use\":{},\"pool_open\":{},\"pool_waits\":{}",
        pool.in_use, pool.open, pool.wait_count,
    );
    // The estimated LRU hit ratio by cache size, [bytes, ratio] pairs ([] before any estimate).
    let _ = write!(s, ",\"mrc\":[{}]", mrc.join(","));
    let bounds: Vec<String> = BOUNDS.iter().map(|b| b.to_string()).collect();
    let buckets: Vec<String> = metrics
        .cmd
        .merged_buckets()
        .iter()
        .map(u64::to_string)
        .collect();
    let _ = write!(
        s,
        ",\"latency_bounds_s\":[{}],\"latency_buckets\":[{}]}}",
        bounds.join(","),
        buckets.join(",")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_without_a_cache_are_nulls() {
        let m = Metrics::default();
        let json = stats_json(&m, None, &PoolStats::default());
        assert!(json.starts_with('{') && json.ends_with('}'));
        assert!(json.contains("\"cache_bytes\":null"));
        assert!(json.contains("\"pool_in_use\":0"));
        assert!(json.contains("\"ops\":{\"hit\":0,"));
        assert!(json.contains("\"mrc\":[]"));
    }

    #[test]
    fn the_curve_is_sizes_and_ratios() {
        let m = Metrics::default();
        let cache = CacheSnapshot {
            stats: cache::CacheStats::default(),
            invalidated_keys: 0,
            unmatched_keys: 0,
            collapsed: 0,
            mrc: vec![(1024, 0.5), (2048, 0.75)],
        };
        let json = stats_json(&m, Some(cache), &PoolStats::default());
        assert!(
            json.contains("\"mrc\":[[1024,0.5000],[2048,0.7500]]"),
            "{json}"
        );
        assert!(PAGE.contains("drawMrc"));
    }

    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(PAGE.contains("/api/stats"));
    }
}
