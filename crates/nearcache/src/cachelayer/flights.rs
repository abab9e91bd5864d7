//! Reads in flight that later misses of the same entry join instead of reading again, so
//! that concurrent misses for one entry make one upstream read.
//!
//! Owns the flights, sharded by group (the Redis key). Never lets a miss join a read that an
//! invalidation may have overtaken: an invalidation grounds its group's flights, and later
//! misses read again. Never holds a shard's lock while handing a reply on.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::reply::{self, OutMeter, ReplyRx, ReplyTx, UpstreamResult};

const SHARDS: usize = 16;

/// A read in flight.
struct Flight {
    id: u64,
    /// The entry key.
    key: Bytes,
    /// Clients waiting for the reply besides the leader.
    waiters: Vec<ReplyTx>,
    /// An invalidation came after this read was sent: later misses must read again rather
    /// than join it, but those who joined before still get its reply.
    grounded: bool,
}

/// A group's reads in flight: an invalidation grounds a whole group at once, and a group rarely
/// has more than one read in flight, so its list is searched in order.
struct Group {
    group: Bytes,
    reads: SmallVec<[Flight; 1]>,
}

/// Groups with reads in flight, by the group's hash (computed once per miss: it picks the
/// shard, and the leader's [`Landing`] keeps it).
type Map = HashTable<Group>;

/// How a miss proceeds.
pub enum Join {
    /// Nobody is reading this entry: send the read, then land its reply ([`Flights::land`]).
    Leader(Landing),
    /// The same read is already in flight: this receiver yields its reply.
    Follower(ReplyRx),
}

/// The leader's handle on its flight.
pub struct Landing {
    id: u64,
    group: Bytes,
    hash: u64,
}

/// Every read in flight.
pub struct Flights {
    shards: Box<[Mutex<Map>]>,
    /// Flights registered: while there are none, an invalidation has nothing to ground and
    /// takes no lock (a write's keys are invalidated twice, at send and at reply).
    flying: AtomicUsize,
    next_id: AtomicU64,
    hasher: hashbrown::DefaultHashBuilder,
    /// Misses answered by joining a read already in flight.
    pub collapsed: AtomicU64,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            flying: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            hasher: Default::default(),
            collapsed: AtomicU64::new(0),
        }
    }
}

impl Flights {
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Map> {
        let i = hash as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the read of `key` in flight, or starts one. Call only once the read can be sent
    /// without waiting, so that a follower never waits on a leader that waits on it.
    pub fn join(&self, group: &Bytes, key: &Bytes, meter: Option<&Arc<OutMeter>>) -> Join {
        let hash = self.hasher.hash_one(group.as_ref());
        let mut flights = self.shard(hash);
        let joinable = flights
            .find_mut(hash, |g| g.group == *group)
            .and_then(|g| g.reads.iter_mut().find(|f| !f.grounded && f.key == *key));
        if let Some(f) = joinable {
            let (tx, rx) = reply::reply_channel(meter);
            f.waiters.push(tx);
            self.collapsed.fetch_add(1, Ordering::Relaxed);
            return Join::Follower(rx);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Counted under the shard's lock: an invalidation that reads 0 after this would have
        // taken the lock before this flight was registered, with the same outcome.
        self.flying.fetch_add(1, Ordering::SeqCst);
        let flight = Flight {
            id,
            key: key.clone(),
            waiters: Vec::new(),
            grounded: false,
        };
        let hasher = &self.hasher;
        flights
            .entry(
                hash,
                |g| g.group == *group,
                |g| hasher.hash_one(g.group.as_ref()),
            )
            .or_insert_with(|| Group {
                group: group.clone(),
                reads: SmallVec::new(),
            })
            .get_mut()
            .reads
            .push(flight);
        Join::Leader(Landing {
            id,
            group: group.clone(),
            hash,
        })
    }

    /// The leader's reply is in: close the flight and hand the reply to everyone who joined.
    pub fn land(&self, landing: Landing, result: &UpstreamResult) {
        let waiters = {
            let mut flights = self.shard(landing.hash);
            let Ok(mut entry) = flights.find_entry(landing.hash, |g| g.group == landing.group)
            else {
                return;
            };
            let reads = &mut entry.get_mut().reads;
            let Some(at) = reads.iter().position(|f| f.id == landing.id) else {
                return;
            };
            let flight = reads.swap_remove(at);
            self.flying.fetch_sub(1, Ordering::SeqCst);
            if reads.is_empty() {
                entry.remove();
            }
            flight.waiters
        };
        for w in waiters {
            w.send(result.clone());
        }
    }

    /// After an invalidation, later misses must read again rather than join a read that may
    /// have run before the change; those who joined earlier still get its reply.
    pub fn ground(&self, group: &[u8]) {
        if self.flying.load(Ordering::SeqCst) == 0 {
            return;
        }
        let hash = self.hasher.hash_one(group);
        if let Some(g) = self.shard(hash).find_mut(hash, |g| g.group == group) {
            for f in g.reads.iter_mut() {
                f.grounded = true;
            }
        }
    }

    pub fn ground_all(&self) {
        for shard in self.shards.iter() {
            let mut flights = shard.lock().unwrap_or_else(|p| p.into_inner());
            for f in flights.iter_mut().flat_map(|g| g.reads.iter_mut()) {
                f.grounded = true;
            }
        }
    }
}
