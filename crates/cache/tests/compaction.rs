//! When the entry count falls, the shard moves entries from its top slab chunks into free low
//! cells and lets the structures shrink. Moving must keep everything that points at a cell
//! right: the index (for group heads and other members alike), the group circles, the tag
//! counts and each policy's lists. Groups of several entries, tags and invalidations go through
//! a fall in the count here, with `validate()` along the way and every value read back.

use cache::{Cache, CacheConfig, PolicyKind, NEVER};

fn value_of(group: usize, key: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{group}/{key}/").into_bytes();
    v.resize(len.max(v.len()), b'x');
    v
}

fn fill(cache: &Cache, group: usize, key: usize, len: usize) {
    let g = format!("g{group}");
    let ticket = cache.begin_fill(g.as_bytes(), (group % 8) as u64);
    let _ = cache.complete_fill(
        ticket,
        format!("k{key}"),
        value_of(group, key, len),
        NEVER,
        0,
    );
}

/// Every resident (group, key) under `groups x keys` holds its own value.
fn check_values(cache: &Cache, groups: usize, keys: usize) -> usize {
    let mut resident = 0;
    for group in 0..groups {
        for key in 0..keys {
            let got = cache.get(
                format!("g{group}").as_bytes(),
                format!("k{key}").as_bytes(),
                0,
            );
            if let Some(v) = got {
                let want = format!("{group}/{key}/");
                assert!(
                    v.starts_with(want.as_bytes()),
                    "g{group}/k{key} holds another value"
                );
                resident += 1;
            }
        }
    }
    resident
}

#[test]
fn moving_entries_down_keeps_groups_tags_and_policies_consistent() {
    const GROUPS: usize = 12_000;
    for policy in PolicyKind::ALL {
        let cache = Cache::new(CacheConfig {
            max_bytes: 4 << 20,
            policy,
            shards: 2,
        });
        // Many small entries, four per group, each read once more so every policy keeps some.
        for round in 0..2 {
            for i in 0..4 * GROUPS {
                fill(&cache, i / 4, i % 4, 8);
                if round == 1 && i.is_multiple_of(3) {
                    let _ = cache.get(format!("g{}", i / 4).as_bytes(), b"k0", 0);
                }
            }
        }
        cache.validate().expect("after the small entries");
        let small = cache.stats().entries;
        // Drop two tags' worth and half the groups, then far fewer, larger entries in some of
        // the same groups (so groups mix entries placed before and after the fall).
        cache.invalidate_tag(3);
        cache.invalidate_tag(4);
        for g in (0..GROUPS).step_by(2) {
            cache.invalidate_group(format!("g{g}").as_bytes());
        }
        cache.validate().expect("after the invalidations");
        for pass in 0..4 {
            for i in 0..1200 {
                let group = i * 10 % GROUPS;
                fill(&cache, group, 4 + i % 2, 2000);
                if i.is_multiple_of(500) {
                    cache
                        .validate()
                        .unwrap_or_else(|e| panic!("{policy}, pass {pass}, fill {i}: {e}"));
                }
            }
        }
        cache.validate().expect("after the large entries");
        let resident = check_values(&cache, GROUPS, 6);
        let s = cache.stats();
        assert_eq!(
            resident as u64, s.entries,
            "{policy}: index and count disagree"
        );
        assert!(s.entries < small, "{policy}: the count did not fall");
        for g in (0..GROUPS).step_by(3) {
            cache.invalidate_group(format!("g{g}").as_bytes());
        }
        cache.invalidate_tag(5);
        cache.validate().expect("after invalidating again");
        cache.clear();
        cache.validate().expect("after clear");
        assert_eq!(check_values(&cache, GROUPS, 6), 0);
    }
}
