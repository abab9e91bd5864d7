//! LRU at every size in one pass (Mattson et al., 1970): LRU is a stack algorithm, so an
//! entry looked up again is a hit at size C exactly when the entries used since its last use,
//! and it, weigh at most C. Byte weights: each entry weighs what the cache charges it
//! ([`cache::Cache::entry_cost`]); a Fenwick tree over use times sums the weights used since
//! in O(log n). Sharded like the proxy's cache: each shard is its own stack of `max / shards`
//! bytes, the shard picked by the group's hash.
//!
//! Where it departs from the cache (its error is measured against the full replay, see
//! docs/capture.md): the shard's structure bytes are not charged (the capacity is the whole
//! budget); an entry that a write removed frees its bytes for entries already above it in the
//! stack, which LRU may have evicted before; an entry refilled after an eviction keeps the
//! deadline of its first fill. Pure computation over [`Events`]; never builds a cache.

use cache::{Cache, CacheConfig, PolicyKind};

use super::events::{Event, Events, NOT_STORED};
use super::report::Run;
use crate::fenwick::Fenwick;

const ABSENT: u32 = u32::MAX;

/// An entry's place in its shard's stack.
#[derive(Clone, Copy)]
struct Slot {
    /// Its last use, in the shard's use count; [`ABSENT`] when no cache holds it.
    pos: u32,
    weight: u32,
    deadline: u64,
}

/// One size's tallies.
#[derive(Default, Clone)]
struct Tally {
    hits: u64,
    misses: u64,
    bytes_saved: u64,
    inserts: u64,
    invalidations: u64,
    expirations: u64,
}

/// LRU runs at `sizes` (bytes), all with `shards` shards (a power of two) and the value cap
/// `value_cap`, in one pass over `ev`. `ttl_cap_ms` as [`Events::deadline`].
pub fn lru_runs(
    ev: &Events,
    sizes: &[u64],
    shards: usize,
    value_cap: u64,
    ttl_cap_ms: u64,
) -> Vec<Run> {
    let probe = Cache::new(CacheConfig {
        max_bytes: 1 << 20,
        policy: PolicyKind::Lru,
        shards: 1,
    });
    let mask = shards.max(1).next_power_of_two() - 1;
    let shard_of = |entry: u32| {
        let g = &ev.groups[ev.entries[entry as usize].group as usize];
        (g.hash >> 40) as usize & mask
    };
    // Each shard's stack is indexed by its own count of uses.
    let mut uses = vec![0usize; mask + 1];
    for e in &ev.events {
        if let Event::Lookup { entry, .. } = *e {
            uses[shard_of(entry)] += 1;
        }
    }
    let mut stacks: Vec<Fenwick> = uses.iter().map(|&n| Fenwick::new(n)).collect();
    let mut clock = vec![0u32; mask + 1];
    let caps: Vec<i64> = sizes
        .iter()
        .map(|&s| (s / (mask as u64 + 1)) as i64)
        .collect();
    let mut slots = vec![
        Slot {
            pos: ABSENT,
            weight: 0,
            deadline: 0,
        };
        ev.entries.len()
    ];
    let mut live: Vec<Vec<u32>> = vec![Vec::new(); ev.groups.len()];
    let mut tally = vec![Tally::default(); sizes.len()];
    // Drops an entry from its stack, counting it in `count` at the sizes that held it.
    let remove =
        |stacks: &mut Vec<Fenwick>, slot: &mut Slot, shard: usize, count: &mut dyn FnMut(usize)| {
            let d = i64::from(slot.weight) + stacks[shard].after(slot.pos as usize);
            for (i, &c) in caps.iter().enumerate() {
                if d <= c {
                    count(i);
                }
            }
            stacks[shard].add(slot.pos as usize, -i64::from(slot.weight));
            slot.pos = ABSENT;
        };
    for e in &ev.events {
        match *e {
            Event::Lookup {
                at,
                entry,
                stored,
                value_bytes,
                ttl_ms,
            } => {
                let shard = shard_of(entry);
                let slot = &mut slots[entry as usize];
                if slot.pos != ABSENT && slot.deadline <= u64::from(at) {
                    remove(&mut stacks, slot, shard, &mut |i| tally[i].expirations += 1);
                }
                let fill = stored != NOT_STORED && u64::from(stored) <= value_cap;
                let weight = match fill {
                    true => {
                        let en = &ev.entries[entry as usize];
                        let group = &ev.groups[en.group as usize].key;
                        probe.entry_cost(en.key.len(), group.len(), u64::from(stored)) as i64
                    }
                    false => i64::from(slot.weight),
                };
                let distance = match slot.pos {
                    ABSENT => i64::MAX,
                    pos => i64::from(slot.weight) + stacks[shard].after(pos as usize),
                };
                for (t, &c) in tally.iter_mut().zip(&caps) {
                    if distance <= c {
                        t.hits += 1;
                        t.bytes_saved += u64::from(value_bytes);
                    } else {
                        t.misses += 1;
                        t.inserts += u64::from(fill && weight <= c);
                    }
                }
                // Moves to the top of its stack: refilled where it missed, used where it hit.
                if slot.pos == ABSENT && !fill {
                    continue;
                }
                if slot.pos == ABSENT {
                    live[ev.entries[entry as usize].group as usize].push(entry);
                    slot.deadline = Events::deadline(at, ttl_ms, ttl_cap_ms);
                } else {
                    stacks[shard].add(slot.pos as usize, -i64::from(slot.weight));
                }
                slot.pos = clock[shard];
                clock[shard] += 1;
                slot.weight = u32::try_from(weight).unwrap_or(u32::MAX);
                stacks[shard].add(slot.pos as usize, weight);
            }
            Event::Invalidate { group } => {
                for entry in live[group as usize].drain(..) {
                    let slot = &mut slots[entry as usize];
                    if slot.pos != ABSENT {
                        let shard = shard_of(entry);
                        remove(&mut stacks, slot, shard, &mut |i| {
                            tally[i].invalidations += 1
                        });
                    }
                }
            }
            Event::Clear => {
                for (entry, slot) in slots.iter_mut().enumerate() {
                    if slot.pos != ABSENT {
                        remove(&mut stacks, slot, shard_of(entry as u32), &mut |_| {});
                    }
                }
                live.iter_mut().for_each(Vec::clear);
            }
        }
    }
    // What each size still holds at the end: the rest of its inserts were evicted.
    let mut resident = vec![0u64; sizes.len()];
    for (entry, slot) in slots.iter_mut().enumerate() {
        if slot.pos != ABSENT {
            remove(&mut stacks, slot, shard_of(entry as u32), &mut |i| {
                resident[i] += 1
            });
        }
    }
    sizes
        .iter()
        .zip(tally)
        .zip(resident)
        .map(|((&size, t), resident)| Run {
            policy: PolicyKind::Lru.name().to_string(),
            max_memory: size,
            shards: mask + 1,
            method: "stack".into(),
            sample_rate: 1.0,
            hits: t.hits,
            misses: t.misses,
            bytes_saved: t.bytes_saved,
            invalidations: t.invalidations,
            expirations: t.expirations,
            evictions: t
                .inserts
                .saturating_sub(t.invalidations + t.expirations + resident),
            ..Run::default()
        })
        .collect()
}
