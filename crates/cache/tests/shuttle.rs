//! Model-checked concurrency tests (run with `--features shuttle`): shuttle explores thread
//! interleavings of the cache's locks and atomics, which the `sync` module swaps for shuttle's.
#![cfg(feature = "shuttle")]

use bytes::Bytes;
use cache::{Cache, CacheConfig, PolicyKind, NEVER};
use shuttle::sync::atomic::{AtomicBool, Ordering};
use shuttle::thread;
use std::sync::Arc;

const ITERATIONS: usize = 1500;

fn small_cache(policy: PolicyKind, max_bytes: u64) -> Arc<Cache> {
    Arc::new(Cache::new(CacheConfig {
        max_bytes,
        policy,
        shards: 2,
    }))
}

/// One fill races one invalidation. If the invalidation had not even started when `begin_fill`
/// returned, the entry must not be cached at the end.
fn fill_vs(invalidate: fn(&Cache)) {
    let cache = small_cache(PolicyKind::Adaptive, 1 << 20);
    let started = Arc::new(AtomicBool::new(false));
    let inv = {
        let (cache, started) = (cache.clone(), started.clone());
        thread::spawn(move || {
            started.store(true, Ordering::SeqCst);
            invalidate(&cache);
        })
    };
    let ticket = cache.begin_fill(b"g", 1);
    let started_before = started.load(Ordering::SeqCst);
    let stored = cache.complete_fill(
        ticket,
        Bytes::from_static(b"k"),
        Bytes::from_static(b"v"),
        NEVER,
        0,
    );
    inv.join().expect("invalidator");
    let present = cache.get(b"g", b"k", 0).is_some();
    assert!(!present || stored);
    if !started_before {
        assert!(
            !present,
            "a fill that began before the invalidation survived it"
        );
    }
    cache.validate().expect("consistent");
}

#[test]
fn fill_vs_invalidate_group() {
    shuttle::check_random(
        || {
            fill_vs(|c| {
                c.invalidate_group(b"g");
            })
        },
        ITERATIONS,
    );
    shuttle::check_pct(
        || {
            fill_vs(|c| {
                c.invalidate_group(b"g");
            })
        },
        ITERATIONS,
        3,
    );
}

#[test]
fn fill_vs_invalidate_tag() {
    shuttle::check_random(
        || {
            fill_vs(|c| {
                c.invalidate_tag(1);
            })
        },
        ITERATIONS,
    );
    shuttle::check_pct(
        || {
            fill_vs(|c| {
                c.invalidate_tag(1);
            })
        },
        ITERATIONS,
        3,
    );
}

#[test]
fn fill_vs_clear() {
    shuttle::check_random(
        || {
            fill_vs(|c| {
                c.clear();
            })
        },
        ITERATIONS,
    );
    shuttle::check_pct(
        || {
            fill_vs(|c| {
                c.clear();
            })
        },
        ITERATIONS,
        3,
    );
}

/// Two threads fill and read overlapping keys in a cache that holds only a few entries, a third
/// validates concurrently: accounting and indexes stay consistent through evictions.
fn get_fill_evict(policy: PolicyKind) {
    // Two or three entries per shard (cost 91-164 bytes each, depending on the policy).
    let cache = small_cache(policy, 2 * 330);
    let workers: Vec<_> = (0..2u8)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                for i in 0..4u8 {
                    let k = (t + i) % 5;
                    let group = [b'g', k];
                    let key = Bytes::copy_from_slice(&[b'k', k]);
                    if cache.get(&group, &key, 0).is_none() {
                        let ticket = cache.begin_fill(&group, u64::from(t));
                        cache.complete_fill(ticket, key, b"value", NEVER, 0);
                    }
                }
            })
        })
        .collect();
    cache.validate().expect("consistent mid-run");
    for w in workers {
        w.join().expect("worker");
    }
    cache.validate().expect("consistent at the end");
    let s = cache.stats();
    assert!(s.bytes <= s.max_bytes);
}

#[test]
fn concurrent_get_fill_evict() {
    for policy in PolicyKind::ALL {
        shuttle::check_random(move || get_fill_evict(policy), ITERATIONS / 3);
    }
    shuttle::check_pct(|| get_fill_evict(PolicyKind::Adaptive), ITERATIONS, 3);
}
