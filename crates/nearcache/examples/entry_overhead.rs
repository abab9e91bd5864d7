//! Per-entry memory overhead of the proxy's cache, measured the way the proxy stores entries.
//!
//! Fills N small entries (default 1,000,000) through `CacheLayer` exactly as a session does on
//! misses (entry key built in a reused encode buffer, a flight joined and landed, the reply
//! copied in by `complete`), reads each
//! once (as hits do), and divides the growth of the process's RSS by N. The allocator is
//! jemalloc, as in the binary. What a Redis user would call the payload is the key and the
//! value; everything above that is overhead: the entry key's RESP framing, the group (key)
//! copy, the reply's framing, the slab cell, indexes, policy metadata, allocator rounding.
//!
//! ```sh
//! cargo run --release -p nearcache --example entry_overhead [N] [KEY_LEN] [VALUE_LEN] [POLICY]
//! ```

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use nearcache::cachelayer::CacheRules;
use nearcache::cachelayer::{CacheLayer, Form, Join, Read};
use nearcache::obs::metrics::Metrics;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm resident field");
    pages * 4096
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = arg(1, 1_000_000);
    let key_len = arg(2, 16).max(8);
    let value_len = arg(3, 32);
    let policy: cache::PolicyKind = std::env::args()
        .nth(4)
        .map_or(Ok(Default::default()), |p| p.parse())
        .expect("policy name");
    let layer = CacheLayer::new(
        64 << 30,
        4096, // mrc_sample_keys's default, as the proxy runs
        policy,
        3_600_000,
        CacheRules::default(),
        Arc::new(Metrics::default()),
    );
    // Every key first, so the measurement holds the cache's memory only.
    let keys: Vec<Bytes> = (0..n)
        .map(|i| Bytes::from(format!("{i:0key_len$}").into_bytes()))
        .collect();
    let reply = {
        let mut r = format!("${value_len}\r\n").into_bytes();
        r.extend(std::iter::repeat_n(b'v', value_len));
        r.extend_from_slice(b"\r\n");
        Bytes::from(r)
    };
    let get = Bytes::from_static(b"GET");
    let mut buf = BytesMut::new();
    // A key built from a `Vec` gets its shared header on its first clone; in the proxy the
    // arguments are slices of the client's read buffer, so that header is no cost of the cache's.
    drop(keys.clone());
    let base = rss_bytes();
    for key in &keys {
        let args = [get.clone(), key.clone()];
        let Read::Miss(entry_key) = layer.read(Form::of(2, b"GET"), &args, &mut buf) else {
            panic!("hit before fill")
        };
        let Join::Leader(landing) = layer.join(key, &entry_key, None) else {
            panic!("no other read in flight")
        };
        let fill = layer.begin(key, 1, entry_key);
        layer.complete(fill, &reply, b":-1\r\n");
        layer.land(landing, &Ok(reply.clone()));
    }
    let filled = rss_bytes();
    let mut hits = 0;
    for key in &keys {
        if let Read::Hit(_) = layer.read(Form::of(2, b"GET"), &[get.clone(), key.clone()], &mut buf)
        {
            hits += 1;
        }
    }
    let read = rss_bytes();
    let stats = layer.stats();
    assert_eq!(stats.entries, n as u64, "every entry resident");
    assert_eq!(hits, n, "every entry hit");
    let per = |bytes: u64| bytes as f64 / n as f64;
    let payload = (key_len + value_len) as f64;
    println!(
        "entries {n}, key {key_len} B, value {value_len} B (reply {} B), policy {policy}",
        reply.len()
    );
    println!(
        "RSS growth per entry: {:.1} B after the fill, {:.1} B after one hit each",
        per(filled - base),
        per(read - base)
    );
    println!(
        "overhead beyond key and value: {:.1} B after the fill, {:.1} B after one hit each",
        per(filled - base) - payload,
        per(read - base) - payload
    );
    println!(
        "the cache's own accounting: {:.1} B per entry ({:.2}x the RSS growth)",
        per(stats.bytes),
        stats.bytes as f64 / (read - base) as f64
    );
}
