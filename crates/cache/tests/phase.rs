//! A change of working set through the whole cache (byte weights, several shards): a scan of
//! five caches' worth of keys read twice, then a new hot set of a quarter of the cache read
//! three times. The recency-aware W-TinyLFU must hold the hot set by its third pass; plain
//! W-TinyLFU, which admits on frequency alone, must not (so the test can tell them apart).
//! `validate()` runs after each phase.

use cache::{Cache, CacheConfig, PolicyKind, NEVER};

const MAX_BYTES: u64 = 4 << 20;
const VALUE: usize = 512;

fn read(cache: &Cache, key: u64) -> bool {
    let group = format!("k:{key:08}");
    if cache.get(group.as_bytes(), b"GET", 0).is_some() {
        return true;
    }
    let ticket = cache.begin_fill(group.as_bytes(), 1);
    cache.complete_fill(ticket, b"GET", vec![b'v'; VALUE], NEVER, 0);
    false
}

/// Hits on the hot set's third pass, out of its size.
fn third_pass_hits(policy: PolicyKind) -> (usize, usize) {
    let cache = Cache::new(CacheConfig {
        max_bytes: MAX_BYTES,
        policy,
        shards: 2,
    });
    let per_entry = cache.entry_cost(3, 10, VALUE as u64);
    let fits = MAX_BYTES / per_entry;
    let scan = 5 * fits;
    for _ in 0..2 {
        for k in 0..scan {
            read(&cache, k);
        }
    }
    cache.validate().expect("consistent after the scan");
    let hot: Vec<u64> = (scan..scan + fits / 4).collect();
    let mut hits = 0;
    for pass in 0..3 {
        // A different order each pass (odd strides over the set), so no pass replays another.
        let stride = [1, 7, 13][pass];
        for i in 0..hot.len() {
            let k = hot[(i * stride) % hot.len()];
            let hit = read(&cache, k);
            if pass == 2 {
                hits += usize::from(hit);
            }
        }
    }
    cache.validate().expect("consistent after the hot passes");
    (hits, hot.len())
}

#[test]
fn a_new_hot_set_is_resident_by_its_third_pass() {
    let (hits, n) = third_pass_hits(PolicyKind::ReuseTinyLfu);
    assert!(hits * 100 >= n * 99, "reuse-tinylfu: {hits} of {n} hits");
}

#[test]
fn frequency_alone_refuses_the_new_hot_set() {
    // The contrast that shows the scenario is hard: the scan's counts outweigh the hot set's.
    let (hits, n) = third_pass_hits(PolicyKind::WTinyLfu);
    assert!(hits * 2 < n, "w-tinylfu: {hits} of {n} hits");
}
