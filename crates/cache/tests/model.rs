//! Property test: random operation sequences against a HashMap model, for every policy.
//!
//! The cache may hold fewer entries than the model (eviction, admission, spurious stale
//! verdicts), but must never return a value the model does not hold, nor an expired or
//! invalidated one, nor insert a fill that raced with an invalidation; `validate()` must hold
//! after every step.

use bytes::Bytes;
use cache::{Cache, CacheConfig, PolicyKind, NEVER};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Op {
    Begin {
        group: u8,
        tag: u8,
    },
    Complete {
        pending: usize,
        key: u8,
        value_len: u16,
        ttl: Option<u8>,
    },
    Get {
        group: u8,
        key: u8,
    },
    InvalidateGroup(u8),
    InvalidateTag(u8),
    InvalidateScope(u16),
    Clear,
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6u8, 0..4u8).prop_map(|(group, tag)| Op::Begin { group, tag }),
        4 => (0..8usize, 0..6u8, 0..1500u16, proptest::option::of(1..60u8))
            .prop_map(|(pending, key, value_len, ttl)| Op::Complete { pending, key, value_len, ttl }),
        6 => (0..6u8, 0..6u8).prop_map(|(group, key)| Op::Get { group, key }),
        1 => (0..6u8).prop_map(Op::InvalidateGroup),
        1 => (0..4u8).prop_map(Op::InvalidateTag),
        1 => (0..2u16).prop_map(Op::InvalidateScope),
        1 => Just(Op::Clear),
        1 => (0..40u8).prop_map(Op::Advance),
    ]
}

struct Modelled {
    value: Bytes,
    group: u8,
    tag: u8,
    expires_at: u64,
}

/// The cache's tag for the model's: tags 0 and 1 in scope 0, 2 and 3 in scope 1.
fn full_tag(tag: u8) -> u64 {
    (u64::from(tag / 2) << 48) | u64::from(tag)
}

fn key_of(group: u8, key: u8) -> Bytes {
    Bytes::from(format!("g{group}/k{key}"))
}

fn run(policy: PolicyKind, shards: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let cache: Cache = Cache::new(CacheConfig {
        max_bytes: 12 * 1024,
        policy,
        shards,
    });
    let mut model: HashMap<Bytes, Modelled> = HashMap::new();
    // (ticket, group, tag, invalidated since begin)
    let mut pending = Vec::new();
    let mut now = 0u64;
    let mut serial = 0u64;
    for op in ops {
        match op {
            Op::Begin { group, tag } => {
                let t = cache.begin_fill(format!("g{group}").as_bytes(), full_tag(tag));
                pending.push((t, group, tag, false));
            }
            Op::Complete {
                pending: i,
                key,
                value_len,
                ttl,
            } => {
                if pending.is_empty() {
                    continue;
                }
                let (ticket, group, tag, stale) = pending.remove(i % pending.len());
                serial += 1;
                let mut v = format!("v{serial}:").into_bytes();
                v.resize(v.len() + usize::from(value_len), b'x');
                let value = Bytes::from(v);
                let expires_at = ttl.map_or(NEVER, |t| now + u64::from(t));
                let k = key_of(group, key);
                let stored = cache.complete_fill(ticket, &k, &value, expires_at, now);
                prop_assert!(!(stale && stored), "stale fill was stored");
                if stored {
                    model.insert(
                        k,
                        Modelled {
                            value,
                            group,
                            tag,
                            expires_at,
                        },
                    );
                }
            }
            Op::Get { group, key } => {
                let k = key_of(group, key);
                if let Some(got) = cache.get(format!("g{group}").as_bytes(), &k, now) {
                    let m = model.get(&k);
                    prop_assert!(m.is_some(), "cache returned a value the model lacks");
                    let m = m.expect("checked");
                    prop_assert_eq!(&got, &m.value);
                    prop_assert!(m.expires_at > now, "expired value returned");
                }
            }
            Op::InvalidateGroup(g) => {
                cache.invalidate_group(format!("g{g}").as_bytes());
                model.retain(|_, m| m.group != g);
                pending
                    .iter_mut()
                    .filter(|p| p.1 == g)
                    .for_each(|p| p.3 = true);
            }
            Op::InvalidateTag(t) => {
                cache.invalidate_tag(full_tag(t));
                model.retain(|_, m| m.tag != t);
                pending
                    .iter_mut()
                    .filter(|p| p.2 == t)
                    .for_each(|p| p.3 = true);
            }
            Op::InvalidateScope(scope) => {
                cache.invalidate_scope(scope);
                let in_scope = |t: u8| u16::from(t / 2) == scope;
                model.retain(|_, m| !in_scope(m.tag));
                pending
                    .iter_mut()
                    .filter(|p| in_scope(p.2))
                    .for_each(|p| p.3 = true);
            }
            Op::Clear => {
                cache.clear();
                model.clear();
                pending.iter_mut().for_each(|p| p.3 = true);
            }
            Op::Advance(d) => now += u64::from(d),
        }
        if let Err(e) = cache.validate() {
            return Err(TestCaseError::fail(e));
        }
        let s = cache.stats();
        prop_assert!(s.bytes <= s.max_bytes);
        prop_assert!(
            s.entries as usize <= model.len(),
            "cache holds more than the model"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn lru(ops in proptest::collection::vec(op(), 1..200), shards in 1..4usize) {
        run(PolicyKind::Lru, shards, ops)?;
    }
    #[test]
    fn lfu(ops in proptest::collection::vec(op(), 1..200), shards in 1..4usize) {
        run(PolicyKind::Lfu, shards, ops)?;
    }
    #[test]
    fn wtinylfu(ops in proptest::collection::vec(op(), 1..200), shards in 1..4usize) {
        run(PolicyKind::WTinyLfu, shards, ops)?;
    }
    #[test]
    fn s3fifo(ops in proptest::collection::vec(op(), 1..200), shards in 1..4usize) {
        run(PolicyKind::S3Fifo, shards, ops)?;
    }
    #[test]
    fn sieve(ops in proptest::collection::vec(op(), 1..200), shards in 1..4usize) {
        run(PolicyKind::Sieve, shards, ops)?;
    }
    #[test]
    fn adaptive(ops in proptest::collection::vec(op(), 1..200), shards in 1..4usize) {
        run(PolicyKind::Adaptive, shards, ops)?;
    }
    #[test]
    fn reuse_tinylfu(ops in proptest::collection::vec(op(), 1..200), shards in 1..4usize) {
        run(PolicyKind::ReuseTinyLfu, shards, ops)?;
    }
}
