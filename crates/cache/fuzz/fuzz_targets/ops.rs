//! Interprets the input as a sequence of cache operations over a tiny key space and checks
//! `validate()` plus the no-stale-fill rule after each one.
#![no_main]

use bytes::Bytes;
use cache::{Cache, CacheConfig, FillTicket, PolicyKind, NEVER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let policy = PolicyKind::ALL[usize::from(first) % PolicyKind::ALL.len()];
    let cache: Cache = Cache::new(CacheConfig {
        max_bytes: 4096 + u64::from(first) * 64,
        policy,
        shards: 1 + usize::from(first >> 6),
    });
    // (ticket, invalidated since begin)
    let mut pending: Vec<(FillTicket, bool)> = Vec::new();
    let mut now = 0u64;
    for chunk in rest.chunks_exact(3) {
        let (op, a, b) = (chunk[0] % 8, chunk[1], chunk[2]);
        let group = [b'g', a % 8];
        match op {
            0 | 1 => pending.push((cache.begin_fill(&group, u64::from(b % 3)), false)),
            2 | 3 if !pending.is_empty() => {
                let (ticket, stale) = pending.remove(usize::from(a) % pending.len());
                let key = Bytes::from(vec![b'k', ticket.group()[1], b % 4]);
                let ttl = if b & 0x80 != 0 { NEVER } else { now + u64::from(b & 0x3f) };
                let value = vec![b'v'; usize::from(b) * 3];
                let stored = cache.complete_fill(ticket, key, value, ttl, now);
                assert!(!(stale && stored), "stale fill stored");
            }
            4 => {
                let key = [b'k', a % 8, b % 4];
                let _ = cache.get(&group, &key, now);
            }
            5 => {
                cache.invalidate_group(&group);
                for p in pending.iter_mut().filter(|p| p.0.group() == group) {
                    p.1 = true;
                }
            }
            6 => {
                if b % 16 == 0 {
                    cache.clear();
                    pending.iter_mut().for_each(|p| p.1 = true);
                } else {
                    let tag = u64::from(b % 3);
                    cache.invalidate_tag(tag);
                    for p in pending.iter_mut().filter(|p| p.0.tag() == tag) {
                        p.1 = true;
                    }
                }
            }
            _ => now += u64::from(b % 16),
        }
        if let Err(e) = cache.validate() {
            panic!("invalid after {chunk:?}: {e}");
        }
    }
});
