//! Deterministic tests of the fill protocol and basic semantics.

use bytes::Bytes;
use cache::{Cache, CacheConfig, PolicyKind, NEVER};

fn cache(policy: PolicyKind) -> Cache {
    Cache::new(CacheConfig {
        max_bytes: 1 << 20,
        policy,
        shards: 4,
    })
}

fn fill(c: &Cache, group: &str, tag: u64, key: &str, val: &str) -> bool {
    let t = c.begin_fill(group.as_bytes(), tag);
    c.complete_fill(t, key, val, NEVER, 0)
}

#[test]
fn fill_then_get() {
    for p in PolicyKind::ALL {
        let c = cache(p);
        assert!(fill(&c, "g", 1, "k", "v"), "{p}");
        assert_eq!(c.get(b"g", b"k", 0), Some(Bytes::from_static(b"v")));
        assert_eq!(c.get(b"g", b"other", 0), None);
        c.validate().unwrap();
    }
}

#[test]
fn group_invalidation_during_fill_rejects() {
    let c = cache(PolicyKind::Adaptive);
    let t = c.begin_fill(b"g", 1);
    let other = c.begin_fill(b"h", 1);
    assert_eq!(c.invalidate_group(b"g"), 0);
    assert!(!c.complete_fill(
        t,
        Bytes::from_static(b"k"),
        Bytes::from_static(b"v"),
        NEVER,
        0
    ));
    assert_eq!(c.get(b"g", b"k", 0), None);
    assert!(c.complete_fill(
        other,
        Bytes::from_static(b"k2"),
        Bytes::from_static(b"v"),
        NEVER,
        0
    ));
    assert_eq!(c.get(b"h", b"k2", 0), Some(Bytes::from_static(b"v")));
    assert_eq!(c.stats().stale_fills, 1);
    c.validate().unwrap();
}

#[test]
fn tag_invalidation_during_fill_rejects() {
    let c = cache(PolicyKind::Lru);
    let t = c.begin_fill(b"g", 7);
    let other = c.begin_fill(b"g2", 8);
    c.invalidate_tag(7);
    assert!(!c.complete_fill(
        t,
        Bytes::from_static(b"k"),
        Bytes::from_static(b"v"),
        NEVER,
        0
    ));
    assert!(c.complete_fill(
        other,
        Bytes::from_static(b"k2"),
        Bytes::from_static(b"v"),
        NEVER,
        0
    ));
    c.validate().unwrap();
}

#[test]
fn clear_during_fill_rejects() {
    let c = cache(PolicyKind::S3Fifo);
    let t = c.begin_fill(b"g", 1);
    c.clear();
    assert!(!c.complete_fill(
        t,
        Bytes::from_static(b"k"),
        Bytes::from_static(b"v"),
        NEVER,
        0
    ));
    assert!(fill(&c, "g", 1, "k", "v"));
    c.validate().unwrap();
}

#[test]
fn invalidation_after_fill_removes() {
    let c = cache(PolicyKind::Sieve);
    assert!(fill(&c, "g", 1, "a", "1"));
    assert!(fill(&c, "g", 2, "b", "2"));
    assert!(fill(&c, "h", 1, "c", "3"));
    assert_eq!(c.invalidate_group(b"g"), 2);
    assert_eq!(c.get(b"h", b"c", 0), Some(Bytes::from_static(b"3")));
    assert!(fill(&c, "g", 2, "b", "2"));
    assert_eq!(c.invalidate_tag(1), 1);
    assert_eq!(c.get(b"h", b"c", 0), None);
    assert_eq!(c.get(b"g", b"b", 0), Some(Bytes::from_static(b"2")));
    assert_eq!(c.clear(), 1);
    assert_eq!(c.stats().entries, 0);
    assert_eq!(c.stats().invalidations, 4);
    c.validate().unwrap();
}

#[test]
fn a_scope_invalidation_drops_its_tags_entries_and_voids_their_fills() {
    let node = |scope: u64, conn: u64| (scope << 48) | conn;
    for p in PolicyKind::ALL {
        let c = cache(p);
        assert_eq!(cache::tag_scope(node(3, 9)), 3);
        for i in 0..50 {
            assert!(fill(&c, &format!("a{i}"), node(1, i % 3), "k", "1"), "{p}");
            assert!(fill(&c, &format!("b{i}"), node(2, i % 3), "k", "2"), "{p}");
        }
        let in_flight = c.begin_fill(b"late", node(1, 7));
        let other = c.begin_fill(b"other", node(2, 7));
        assert_eq!(c.invalidate_scope(1), 50, "{p}");
        assert!(!c.complete_fill(in_flight, "k", "1", NEVER, 0), "{p}");
        assert!(c.complete_fill(other, "k", "2", NEVER, 0), "{p}");
        for i in 0..50 {
            assert_eq!(c.get(format!("a{i}").as_bytes(), b"k", 0), None, "{p}");
            assert!(c.get(format!("b{i}").as_bytes(), b"k", 0).is_some(), "{p}");
        }
        // The scope's tags are free for new fills again.
        assert!(fill(&c, "a0", node(1, 0), "k", "1"), "{p}");
        assert_eq!(c.stats().entries, 52, "{p}");
        c.validate().unwrap();
    }
}

#[test]
fn expiry_is_respected() {
    let c = cache(PolicyKind::Lfu);
    let t = c.begin_fill(b"g", 1);
    assert!(c.complete_fill(
        t,
        Bytes::from_static(b"k"),
        Bytes::from_static(b"v"),
        100,
        10
    ));
    assert!(c.get(b"g", b"k", 99).is_some());
    assert!(c.get(b"g", b"k", 100).is_none());
    assert_eq!(c.stats().expirations, 1);
    let t = c.begin_fill(b"g", 1);
    assert!(!c.complete_fill(t, Bytes::from_static(b"k"), Bytes::from_static(b"v"), 5, 10));
    c.validate().unwrap();
}

#[test]
fn byte_budget_holds_and_oversized_is_refused() {
    for p in PolicyKind::ALL {
        let c: Cache = Cache::new(CacheConfig {
            max_bytes: 64 * 1024,
            policy: p,
            shards: 2,
        });
        for i in 0..2000 {
            let t = c.begin_fill(format!("g{i}").as_bytes(), 1);
            let _ = c.complete_fill(t, format!("k{i}"), [0u8; 100], NEVER, 0);
            if i % 100 == 0 {
                c.validate().unwrap();
            }
        }
        let s = c.stats();
        assert!(s.bytes <= s.max_bytes, "{p}: {s:?}");
        assert!(s.evictions + s.rejected_fills > 0, "{p}: {s:?}");
        let t = c.begin_fill(b"big", 1);
        assert!(!c.complete_fill(t, Bytes::from_static(b"big"), vec![0u8; 40_000], NEVER, 0));
        c.validate().unwrap();
    }
}

#[test]
fn replacing_a_key_keeps_accounting() {
    let c = cache(PolicyKind::WTinyLfu);
    assert!(fill(&c, "g", 1, "k", "one"));
    assert!(fill(&c, "g", 2, "k", "two!"));
    assert_eq!(c.get(b"g", b"k", 0), Some(Bytes::from_static(b"two!")));
    assert_eq!(c.stats().entries, 1);
    assert_eq!(c.invalidate_tag(1), 0);
    assert_eq!(c.invalidate_tag(2), 1);
    c.validate().unwrap();
}

#[test]
fn policy_names_parse() {
    for p in PolicyKind::ALL {
        assert_eq!(p.name().parse::<PolicyKind>().unwrap(), p);
    }
    assert_eq!(
        "W-TinyLFU".parse::<PolicyKind>().unwrap(),
        PolicyKind::WTinyLfu
    );
    let err = "arc".parse::<PolicyKind>().unwrap_err().to_string();
    assert!(
        err.contains("lru") && err.contains("adaptive") && err.contains("s3fifo"),
        "{err}"
    );
}

#[test]
fn groups_with_many_entries() {
    for p in PolicyKind::ALL {
        let c = cache(p);
        for i in 0..50u64 {
            assert!(fill(&c, "g", 1 + i % 3, &format!("k{i}"), "v"), "{p}");
        }
        assert!(fill(&c, "h", 1, "k0", "w"), "{p}");
        c.validate().unwrap();
        // Tag 1 holds the group's head (k0) and every third entry, and h's only entry.
        assert_eq!(c.invalidate_tag(1), 18, "{p}");
        c.validate().unwrap();
        for i in 0..50u64 {
            let found = c.get(b"g", format!("k{i}").as_bytes(), 0).is_some();
            assert_eq!(found, i % 3 != 0, "{p} k{i}");
        }
        assert!(fill(&c, "g", 1, "k3", "again"), "{p}");
        assert_eq!(c.get(b"g", b"k3", 0), Some(Bytes::from_static(b"again")));
        assert_eq!(c.invalidate_group(b"g"), 34, "{p}");
        assert_eq!(c.stats().entries, 0, "{p}");
        c.validate().unwrap();
    }
}
