//! A trace loaded once for every run of `nearcache simulate`: each request reduced to what a
//! cache sees (a lookup of an interned entry, an invalidation of an interned group, a clear),
//! plus the trace's totals and the hit ratio of a cache that never evicts.
//!
//! Decides what the proxy would look up ([`lookups`]), so every replay method sees the same
//! lookups. Never replays through a cache itself and never prints.

use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::BufReader;
use std::path::Path;

use bytes::Bytes;

use crate::cachelayer::put_entry_key;
use crate::capture::trace::{Class, Request, TraceReader, TtlChange, AFTER_WRITE};

/// The interning tables' map: looked up once or more per request, so a fast hash (foldhash,
/// hashbrown's default) rather than SipHash; a trace is not an attacker.
type FastMap<K, V> = hashbrown::HashMap<K, V, hashbrown::DefaultHashBuilder>;

/// `Event::Lookup::stored` when the proxy would not store the reply.
pub const NOT_STORED: u32 = u32::MAX;

/// What one request does to a cache.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A lookup of entry `entry` at `at` ms after the trace's start; on a miss the proxy
    /// stores `stored` value bytes ([`NOT_STORED`]: nothing), and a hit saves Redis
    /// `value_bytes`. `ttl_ms` is the key's remaining life as the trace last saw it set
    /// (0: none seen), which caps the entry's.
    Lookup {
        at: u32,
        entry: u32,
        stored: u32,
        value_bytes: u32,
        ttl_ms: u32,
    },
    /// A write: every entry of the group goes.
    Invalidate { group: u32 },
    /// FLUSHALL, FLUSHDB, SWAPDB.
    Clear,
}

/// A Redis key that some lookup read.
#[derive(Debug)]
pub struct Group {
    pub key: Bytes,
    /// A fixed hash of the key: its high bits pick the shard in the stack model, its low 32
    /// bits decide whether SHARDS samples it.
    pub hash: u64,
}

/// One cache entry: the compact entry key the proxy stores it under, and its group.
#[derive(Debug)]
pub struct Entry {
    pub key: Box<[u8]>,
    pub group: u32,
}

/// A trace in memory.
#[derive(Debug, Default)]
pub struct Events {
    pub events: Vec<Event>,
    pub groups: Vec<Group>,
    pub entries: Vec<Entry>,
    pub requests: u64,
    pub cacheable_reads: u64,
    pub lookups: u64,
    pub writes: u64,
    /// Cacheable reads the proxy would send upstream without a lookup.
    pub bypassed: u64,
    pub duration_s: f64,
    /// The largest value the trace would store.
    pub max_stored: u32,
    /// Commands that set a key's TTL (SET EX, EXPIRE...), whose deadlines the replay applies.
    pub ttl_sets: u64,
}

/// One cache lookup of a trace request: the entry's group (the Redis key), the arguments
/// naming the entry, the bytes the proxy would store, the bytes Redis sent.
pub struct Lookup<'a> {
    pub group: &'a Bytes,
    pub args: Vec<&'a [u8]>,
    pub stored: Option<u32>,
    pub value_bytes: u64,
}

/// Every lookup a request makes: one for a read, one per key for MGET; none when the proxy
/// would not look it up (returned as `Err(count)`).
pub fn lookups(r: &Request) -> Result<Vec<Lookup<'_>>, u64> {
    let bypass = r.db != 0 || r.flags & AFTER_WRITE != 0;
    match r.class {
        Class::Read if !r.keys.is_empty() => {
            if bypass {
                return Err(1);
            }
            let mut args: Vec<&[u8]> = vec![r.name.as_bytes(), &r.keys[0]];
            args.extend(r.extra.iter().map(|a| &a[..]));
            Ok(vec![Lookup {
                group: &r.keys[0],
                args,
                stored: r.values.first().copied().flatten(),
                value_bytes: u64::from(r.reply_bytes.unwrap_or(0)),
            }])
        }
        Class::MultiRead => {
            if bypass {
                return Err(r.keys.len() as u64);
            }
            Ok(r.keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let stored = r.values.get(i).copied().flatten();
                    Lookup {
                        group: k,
                        args: vec![b"MGET", k],
                        stored,
                        value_bytes: u64::from(stored.unwrap_or(0)),
                    }
                })
                .collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// The fixed hash of a group (the same in every run, unlike the cache's seeded one).
pub fn group_hash(key: &[u8]) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

/// Deadlines the trace set on keys ([`TtlChange`]): per key, the capture time in ms (from the
/// trace's start) when it expires.
#[derive(Default)]
struct KeyTtls(FastMap<Bytes, u64>);

impl KeyTtls {
    fn note(&mut self, r: &Request, now_ms: u64) {
        match r.ttl {
            TtlChange::Keep => {}
            TtlChange::Clear if self.0.is_empty() => {}
            TtlChange::Clear => r.keys.iter().for_each(|k| {
                self.0.remove(k);
            }),
            TtlChange::Set(ms) => {
                for k in &r.keys {
                    self.0.insert(k.clone(), now_ms.saturating_add(ms));
                }
            }
        }
    }

    /// The key's remaining life at `now_ms`, 0 when none is known, at least 1 when known.
    fn left(&self, key: &[u8], now_ms: u64) -> u32 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.get(key).map_or(0, |&d| {
            u32::try_from(d.saturating_sub(now_ms).max(1)).unwrap_or(u32::MAX)
        })
    }
}

impl Events {
    /// Reads the trace at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Events> {
        let file = File::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open trace {}: {e}", path.display()))?;
        let reader = TraceReader::new(BufReader::with_capacity(1 << 20, file))?;
        let mut ev = Events::default();
        let mut group_ids: FastMap<Bytes, u32> = FastMap::default();
        let mut entry_ids: FastMap<Box<[u8]>, u32> = FastMap::default();
        let mut ttls = KeyTtls::default();
        let (mut first, mut last) = (None, 0u64);
        let mut key = Vec::new();
        for r in reader {
            let r = r?;
            ev.requests += 1;
            let t0 = *first.get_or_insert(r.time_us);
            last = last.max(r.time_us);
            let at_ms = r.time_us.saturating_sub(t0) / 1000;
            let at = u32::try_from(at_ms).unwrap_or(u32::MAX);
            match r.class {
                Class::Read | Class::MultiRead => ev.cacheable_reads += 1,
                Class::Write | Class::WriteAll => ev.writes += 1,
                _ => {}
            }
            match r.class {
                Class::Write => {
                    for k in &r.keys {
                        if let Some(&group) = group_ids.get(k) {
                            ev.events.push(Event::Invalidate { group });
                        }
                    }
                }
                Class::WriteAll => ev.events.push(Event::Clear),
                _ => {}
            }
            ev.ttl_sets += u64::from(matches!(r.ttl, TtlChange::Set(_)));
            ttls.note(&r, at_ms);
            let found = match lookups(&r) {
                Ok(found) => found,
                Err(n) => {
                    ev.bypassed += n;
                    continue;
                }
            };
            for l in found {
                ev.lookups += 1;
                let next = ev.groups.len() as u32;
                let group = *group_ids.entry(l.group.clone()).or_insert_with(|| {
                    ev.groups.push(Group {
                        key: l.group.clone(),
                        hash: group_hash(l.group),
                    });
                    next
                });
                // An entry is its group and its entry key: interned as both together.
                key.clear();
                key.extend_from_slice(&group.to_le_bytes());
                put_entry_key(r.proto, &l.args, &mut key);
                let next = ev.entries.len() as u32;
                let entry = *entry_ids.entry_ref(&key[..]).or_insert_with(|| {
                    ev.entries.push(Entry {
                        key: key[4..].into(),
                        group,
                    });
                    next
                });
                let stored = l.stored.map_or(NOT_STORED, |n| n.min(NOT_STORED - 1));
                if stored != NOT_STORED {
                    ev.max_stored = ev.max_stored.max(stored);
                }
                ev.events.push(Event::Lookup {
                    at,
                    entry,
                    stored,
                    value_bytes: u32::try_from(l.value_bytes).unwrap_or(u32::MAX),
                    ttl_ms: ttls.left(l.group, at_ms),
                });
            }
        }
        ev.duration_s = first.map_or(0.0, |f| (last - f) as f64 / 1e6);
        Ok(ev)
    }

    /// When an entry filled at `at` stops being served: the proxy's TTL cap, or the key's
    /// own TTL when the trace saw one set.
    pub fn deadline(at: u32, ttl_ms: u32, cap_ms: u64) -> u64 {
        let life = match ttl_ms {
            0 => cap_ms,
            t => cap_ms.min(u64::from(t)),
        };
        u64::from(at).saturating_add(life)
    }

    /// The hit ratio of a cache that never evicts (only writes and deadlines end entries),
    /// storing values up to `value_cap` bytes.
    pub fn achievable(&self, cap_ms: u64, value_cap: u64) -> f64 {
        let mut deadline: Vec<u64> = vec![0; self.entries.len()];
        let mut live: Vec<Vec<u32>> = vec![Vec::new(); self.groups.len()];
        let (mut hits, mut lookups) = (0u64, 0u64);
        for &e in &self.events {
            match e {
                Event::Lookup {
                    at,
                    entry,
                    stored,
                    ttl_ms,
                    ..
                } => {
                    lookups += 1;
                    let d = &mut deadline[entry as usize];
                    if *d > u64::from(at) {
                        hits += 1;
                    } else if stored != NOT_STORED && u64::from(stored) <= value_cap {
                        if *d == 0 {
                            live[self.entries[entry as usize].group as usize].push(entry);
                        }
                        *d = Self::deadline(at, ttl_ms, cap_ms).max(1);
                    }
                }
                Event::Invalidate { group } => {
                    for e in live[group as usize].drain(..) {
                        deadline[e as usize] = 0;
                    }
                }
                Event::Clear => {
                    deadline.iter_mut().for_each(|d| *d = 0);
                    live.iter_mut().for_each(Vec::clear);
                }
            }
        }
        hits as f64 / lookups.max(1) as f64
    }
}
