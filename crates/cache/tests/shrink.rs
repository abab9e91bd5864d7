//! The cache's structures follow its entry count: after a byte-capped cache full of tiny
//! entries turns over to far fewer large ones (the soak's shape: many nil replies at first,
//! larger values later), the heap it holds falls back near what the live entries need, never
//! passes the cap on the way, and the bytes it reports match what the allocator holds.
//!
//! A counting global allocator measures the heap; one test function only, so no other test
//! thread allocates while we count.

use cache::{Cache, CacheConfig, PolicyKind, NEVER};

mod counting;

const MIB: u64 = 1 << 20;
const CAP: u64 = 16 * MIB;
const SHARDS: usize = 4;
/// What a shard may hold uncharged: its structures when empty (the W-TinyLFU sketch is the
/// largest, 80 KiB) and one chunk of cells with the index and arena for it.
const BASE_PER_SHARD: u64 = 192 << 10;
/// A nil reply, as the proxy caches it.
const TINY: &[u8] = b"$-1\r\n";
const LARGE: usize = 4000;

/// Reads keys `0..n` under `prefix` as the proxy does: a hit, or a fill with `value`.
fn read(cache: &Cache, prefix: &str, n: usize, value: &[u8], mut sample: impl FnMut()) {
    for i in 0..n {
        let group = format!("{prefix}:{i:08}");
        let key = format!("0/GET/{group}");
        if cache.get(group.as_bytes(), key.as_bytes(), 0).is_none() {
            let ticket = cache.begin_fill(group.as_bytes(), 1);
            let _ = cache.complete_fill(ticket, key, value, NEVER, 0);
        }
        if i.is_multiple_of(256) {
            sample();
        }
    }
}

/// Large keys read in the second phase: 80% of what fits.
fn large_keys(cache: &Cache) -> usize {
    (CAP * 8 / 10 / cache.entry_cost(20, 14, LARGE as u64)) as usize
}

struct Run {
    tiny_entries: u64,
    tiny_heap: i64,
    peak_heap: i64,
    end_heap: i64,
    end_entries: u64,
    end_reported: u64,
    large_keys: usize,
    large_resident: usize,
}

fn run(policy: PolicyKind) -> Run {
    let before = counting::live();
    let cache: Cache = Cache::new(CacheConfig {
        max_bytes: CAP,
        policy,
        shards: SHARDS,
    });
    let heap = || counting::live() - before;
    // Three times what fits of tiny entries, each read once; then large ones, 80% of what
    // fits, read four times over (so that admission by frequency takes them in too).
    let tiny_cost = cache.entry_cost(20, 14, TINY.len() as u64);
    read(&cache, "nil", (3 * CAP / tiny_cost) as usize, TINY, || {});
    cache.validate().expect("consistent after the tiny phase");
    let tiny_entries = cache.stats().entries;
    let tiny_heap = heap();
    let large = vec![b'v'; LARGE];
    let mut peak_heap = 0;
    for _ in 0..4 {
        read(&cache, "big", large_keys(&cache), &large, || {
            peak_heap = peak_heap.max(heap());
        });
    }
    cache.validate().expect("consistent after the large phase");
    let s = cache.stats();
    let end_heap = heap();
    let large_resident = (0..large_keys(&cache))
        .filter(|i| {
            let group = format!("big:{i:08}");
            let key = format!("0/GET/{group}");
            cache.get(group.as_bytes(), key.as_bytes(), 0).is_some()
        })
        .count();
    Run {
        tiny_entries,
        tiny_heap,
        peak_heap,
        end_heap,
        end_entries: s.entries,
        end_reported: s.bytes,
        large_keys: large_keys(&cache),
        large_resident,
    }
}

#[test]
fn structures_follow_the_entry_count_when_entries_grow() {
    let mib = |b: i64| b as f64 / MIB as f64;
    let bound = (CAP + CAP / 10 + SHARDS as u64 * BASE_PER_SHARD) as i64;
    let mut bad = Vec::new();
    for policy in PolicyKind::ALL {
        let r = run(policy);
        println!(
            "{policy:>10}: tiny phase {} entries, heap {:.1} MiB; large phase peak heap {:.1} MiB, \
             end heap {:.1} MiB for {} entries ({} of {} large keys), reported {:.1} MiB \
             (bound {:.1} MiB)",
            r.tiny_entries,
            mib(r.tiny_heap),
            mib(r.peak_heap),
            mib(r.end_heap),
            r.end_entries,
            r.large_resident,
            r.large_keys,
            mib(r.end_reported as i64),
            mib(bound),
        );
        if r.peak_heap > bound || r.end_heap > bound {
            bad.push(format!(
                "{policy}: heap peaked at {:.1} MiB, ended at {:.1} MiB, over {:.1} MiB",
                mib(r.peak_heap),
                mib(r.end_heap),
                mib(bound)
            ));
        }
        let ratio = r.end_reported as f64 / r.end_heap as f64;
        if !(0.85..=1.15).contains(&ratio) {
            bad.push(format!(
                "{policy}: reported/allocated {ratio:.3} at the end"
            ));
        }
        // The cap is kept by letting the structures go, not by refusing entries: the large
        // keys (all of them fit) end up resident.
        if r.large_resident * 10 < r.large_keys * 9 {
            bad.push(format!(
                "{policy}: {} of the {} large keys resident",
                r.large_resident, r.large_keys
            ));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
