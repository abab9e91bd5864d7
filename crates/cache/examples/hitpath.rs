//! The hit path's instruction count per policy, for callgrind: fills a 16 MiB cache (4 shards)
//! with 200,000 entries of 100-byte values, so it is evicting and every structure of the policy
//! is live, then reads 1,000 resident keys `ROUNDS` times through `get_with` (the proxy's hit
//! path) inside [`hits`], the only function callgrind is told to count. Must never time
//! anything: the figure is callgrind's instruction count divided by the reads.
//!
//! Usage: `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*hits*'
//! target/release/examples/hitpath POLICY [ROUNDS]` (the reads are printed; instructions per
//! hit = callgrind's total / reads).

use cache::{Cache, CacheConfig, PolicyKind, NEVER};

fn group(i: usize) -> String {
    format!("user:{i:08}")
}

/// Reads every key of `keys` `rounds` times; returns the bytes read (so nothing is elided).
#[inline(never)]
fn hits(cache: &Cache, keys: &[String], rounds: usize) -> usize {
    let mut total = 0;
    for _ in 0..rounds {
        for g in keys {
            total += cache
                .get_with(g.as_bytes(), b"GET", 0, |v| v.len())
                .unwrap_or(0);
        }
    }
    total
}

fn main() {
    let mut args = std::env::args().skip(1);
    let policy: PolicyKind = args.next().and_then(|p| p.parse().ok()).unwrap_or_default();
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20);
    let cache = Cache::new(CacheConfig {
        max_bytes: 16 << 20,
        policy,
        shards: 4,
    });
    let value = vec![b'v'; 100];
    for i in 0..200_000 {
        let g = group(i);
        let ticket = cache.begin_fill(g.as_bytes(), 1);
        cache.complete_fill(ticket, b"GET", &value, NEVER, 0);
    }
    let resident: Vec<String> = (0..200_000)
        .rev()
        .map(group)
        .filter(|g| cache.get_with(g.as_bytes(), b"GET", 0, |_| ()).is_some())
        .take(1_000)
        .collect();
    let bytes = hits(&cache, &resident, rounds);
    println!(
        "{policy}: {} reads of {} resident keys, {bytes} bytes",
        resident.len() * rounds,
        resident.len()
    );
}
