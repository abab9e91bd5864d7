//! Memory accounting honesty: with a counting global allocator, fill a cache sized for about
//! 100k entries with 200k and check that the bytes the cache reports are within 15% of the
//! bytes actually allocated for what it holds (keys, groups, values, slab, indexes, policy
//! metadata and ghosts, with malloc-style rounding).
//! One test function only, so no other test thread allocates while we count.

use bytes::Bytes;
use cache::{Cache, CacheConfig, PolicyKind, NEVER};

mod counting;

const N: usize = 100_000;

/// Fills a cache sized for about `N` entries with `2 * N`, so that it is measured full, in the
/// steady state the budget is about (policies with ghost lists have them populated).
fn measure(policy: PolicyKind, value_len: usize) -> (i64, u64, u64) {
    let sizing: Cache = Cache::new(CacheConfig::with_max_bytes(1 << 20));
    let key_len = "0/GET/user:00000000".len();
    let cost = sizing.entry_cost(key_len, key_len - 6, value_len as u64);
    drop(sizing);
    let cache: Cache = Cache::new(CacheConfig {
        max_bytes: cost * N as u64,
        policy,
        shards: 4,
    });
    let before = counting::live();
    for i in 0..2 * N {
        let group = format!("user:{i:08}");
        let ticket = cache.begin_fill(group.as_bytes(), 1);
        let key = Bytes::from(format!("0/GET/{group}").into_bytes());
        let value = Bytes::from(vec![b'v'; value_len]);
        let _ = cache.complete_fill(ticket, key, value, NEVER, 0);
    }
    let actual = counting::live() - before;
    let (reported, entries) = (cache.stats().bytes, cache.stats().entries);
    cache.validate().expect("consistent");
    (actual, reported, entries)
}

#[test]
fn reported_bytes_track_allocated_bytes() {
    let mut bad = Vec::new();
    for policy in PolicyKind::ALL {
        for value_len in [16, 200] {
            let (actual, reported, entries) = measure(policy, value_len);
            let ratio = reported as f64 / actual as f64;
            println!(
                "{policy:>10} value {value_len:>3}: {entries} entries, allocated {:.1} B/entry, reported {:.1} B/entry, ratio {ratio:.3}",
                actual as f64 / entries as f64,
                reported as f64 / entries as f64
            );
            if !(0.85..=1.15).contains(&ratio) {
                bad.push(format!("{policy}/{value_len}: {ratio:.3}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "reported/allocated out of 0.85..1.15: {bad:?}"
    );
}
