//! Hits allocate nothing, also while the cache is full and evicting, when the default policy's
//! shadows run and sample some of the hits (4 MiB shards afford 335 samples of ~20k entries:
//! about one hit in 60 is fed to them). A counting global allocator counts allocation calls;
//! one test function only, so no other test thread allocates while it counts.

use cache::{Cache, CacheConfig, PolicyKind, NEVER};

mod counting;

const MIB: u64 = 1 << 20;

fn key(i: u64) -> (String, String) {
    let group = format!("k:{i:08}");
    let key = format!("0/GET/{group}");
    (group, key)
}

/// Reads key `i` as the proxy does: a hit copied into `out`, or a fill.
fn read(cache: &Cache, i: u64, out: &mut Vec<u8>) -> bool {
    let (group, key) = key(i);
    let hit = cache
        .get_with(group.as_bytes(), key.as_bytes(), 0, |v| {
            out.clear();
            out.extend_from_slice(v);
        })
        .is_some();
    if !hit {
        let ticket = cache.begin_fill(group.as_bytes(), 1);
        let _ = cache.complete_fill(ticket, key, [b'v'; 64], NEVER, 0);
    }
    hit
}

#[test]
fn hits_allocate_nothing_under_pressure() {
    for policy in PolicyKind::ALL {
        // Two shards of 4 MiB: the adaptive shadows afford a few hundred samples each.
        let cache = Cache::new(CacheConfig {
            max_bytes: 8 * MIB,
            policy,
            shards: 2,
        });
        let mut out = Vec::with_capacity(256);
        // A skewed stream over three times what fits: the cache fills, evicts, and (adaptive)
        // starts its shadows; every key is read often enough to be admitted at some point.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let spread = 3 * 8 * MIB / 200;
        for _ in 0..400_000 {
            let r = next();
            let i = if r % 4 == 0 { r % spread } else { r % 2_000 };
            read(&cache, i, &mut out);
        }
        cache.validate().expect("consistent");
        // Now only the hot keys that are resident, again and again: hits, some of them fed to
        // the shadows.
        let resident: Vec<u64> = (0..2_000)
            .filter(|&i| {
                let (group, key) = key(i);
                cache
                    .get_with(group.as_bytes(), key.as_bytes(), 0, |_| ())
                    .is_some()
            })
            .collect();
        assert!(
            resident.len() > 1_000,
            "{policy}: {} hot keys resident",
            resident.len()
        );
        let keys: Vec<(String, String)> = resident.iter().map(|&i| key(i)).collect();
        let before = counting::calls();
        let mut hits = 0;
        for _ in 0..20 {
            for (group, key) in &keys {
                let hit = cache.get_with(group.as_bytes(), key.as_bytes(), 0, |v| {
                    out.clear();
                    out.extend_from_slice(v);
                });
                hits += usize::from(hit.is_some());
            }
        }
        let allocations = counting::calls() - before;
        assert_eq!(
            hits,
            20 * resident.len(),
            "{policy}: a hot key was evicted by hits"
        );
        assert_eq!(
            allocations, 0,
            "{policy}: {hits} hits made {allocations} allocations"
        );
    }
}
