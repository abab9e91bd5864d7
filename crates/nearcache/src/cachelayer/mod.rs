//! The proxy's use of the cache library: lookups, fills with their expiry, completing a read
//! that went upstream, and what Redis's invalidations and lost connections mean for cached
//! entries. Entry keys and stored replies are `entry.rs`'s, reads in flight `flights.rs`'s,
//! array replies `arrays.rs`'s, completing a miss's request reply by reply `complete.rs`'s
//! (which callers use directly), the operator's narrowing `rules.rs`'s, keys known to have no
//! TTL `untimed.rs`'s, the sampled estimate of the hit ratio at other sizes `mrc.rs`'s (fed
//! here: lookups, fills, writes, invalidations).
//!
//! Synchronous: the session and writer call into it, the upstream side calls it through
//! [`TrackingSink`]. It never holds a lock across an `.await` (it never awaits at all), and
//! never caches a reply a concurrent invalidation may have made stale (fill tickets).

mod arrays;
pub mod complete;
mod entry;
mod flights;
mod mrc;
mod rules;
mod untimed;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cache::{Cache, CacheConfig, FillTicket, Hashes, PolicyKind};

use crate::clock::Clock;
use crate::obs::metrics::{Bypass, FlushReason, Metrics};
use crate::reply::{OutMeter, UpstreamResult};
use crate::upstream::TrackingSink;
pub use arrays::{join_array, put_array, split_array};
use entry::{bulk_payload, is_null, parse_pttl, put_reply, CompactKey, Pttl};
pub use entry::{put_entry_key, Form};
use flights::Flights;
pub use flights::{Join, Landing};
use mrc::Mrc;
pub use mrc::{Summary as MrcSummary, HALF_LIFE as MRC_HALF_LIFE};
pub use rules::CacheRules;
pub use untimed::Known;
use untimed::Untimed;

/// A cacheable read looked up.
pub enum Read {
    /// The cached reply, copied into the caller's buffer (it shares that buffer's allocation).
    Hit(Bytes),
    /// Not cached: the entry key ([`CacheLayer::entry_key`]), to fill it with.
    Miss(Bytes),
}

/// Room for hits in the encode buffer: when it has less than `MIN_ROOM` left, [`CacheLayer::read`]
/// takes `ROOM` back from it if nothing else holds it (no allocation), and allocates a new one
/// only when it is also below `LOW_ROOM`. So the replies of a request's hits (an MGET's
/// elements, alive together) are copied in without allocating.
const ROOM: usize = 4096;
const MIN_ROOM: usize = 1024;
const LOW_ROOM: usize = 256;

/// Gives the encode buffer room (see [`ROOM`]). A miss's entry key and its request are split
/// off the same room, so a miss allocates for them only when a room runs out (every few dozen
/// misses) rather than twice (the bytes, and the shared header a first split adds).
#[inline]
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() < MIN_ROOM && !buf.try_reclaim(ROOM) && buf.capacity() < LOW_ROOM {
        buf.reserve(ROOM);
    }
}

/// The cache as the proxy sees it.
pub struct CacheLayer {
    cache: Cache,
    /// What the operator allows to be cached.
    pub rules: CacheRules,
    clock: Clock,
    /// Upper bound on any entry's life, so a lost invalidation cannot pin a value forever.
    ttl_cap_ms: u64,
    /// Replies larger than this are not cached: copying them in would cost more than it saves
    /// once the policy, whose window is a small share of a shard, pushes them out again.
    max_value: u64,
    metrics: Arc<Metrics>,
    /// Invalidation messages (keys) received from Redis, and those that matched no entry.
    pub invalidated_keys: AtomicU64,
    pub unmatched_keys: AtomicU64,
    /// Reads in flight.
    flights: Flights,
    /// Keys last seen without an expiry, and the misses that skipped their `PTTL` for it.
    untimed: Untimed,
    pub pttl_skipped: AtomicU64,
    /// The sampled miss-ratio curve.
    mrc: Mrc,
}

/// The sizes, as multiples of the cache's, whose estimated hit ratio `/metrics` publishes.
pub const MRC_MULTIPLES: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// How the proxy builds its cache for `max_bytes` and `policy` (shards as many as
/// [`CacheConfig::shards`] picks on this machine): also what `nearcache simulate` replays
/// through, so that its figures are the proxy's.
pub fn cache_config(max_bytes: u64, policy: PolicyKind) -> CacheConfig {
    CacheConfig {
        max_bytes,
        policy,
        shards: 0,
    }
}

/// The largest reply the proxy caches with `max_bytes` of cache.
pub fn max_value(max_bytes: u64) -> u64 {
    (max_bytes / 1024).clamp(16 * 1024, 1024 * 1024)
}

/// The bytes the cache stores for a reply (a bulk string's payload and one byte, anything
/// else as it is): the value size its entry is charged for.
pub fn stored_len(reply: &[u8]) -> usize {
    bulk_payload(reply).map_or(reply.len(), |p| p.len() + 1)
}

/// A read sent upstream whose reply may be cached.
pub struct Fill {
    ticket: FillTicket,
    /// The compact entry key ([`put_entry_key`]), inline unless long.
    key: CompactKey,
    /// When the read left, on the cache clock: the key's TTL is counted from here, so the entry
    /// never outlives the key.
    sent_at: u64,
    /// The generation of keys known to have no expiry when the fill began (`untimed.rs`).
    generation: u32,
}

impl CacheLayer {
    /// A cache of `max_bytes` whose online curve samples at most `mrc_sample_keys` keys.
    pub fn new(
        max_bytes: u64,
        mrc_sample_keys: usize,
        policy: PolicyKind,
        ttl_cap_ms: u64,
        rules: CacheRules,
        metrics: Arc<Metrics>,
    ) -> Self {
        CacheLayer {
            rules,
            cache: Cache::new(cache_config(max_bytes, policy)),
            clock: Clock::new(),
            ttl_cap_ms,
            max_value: max_value(max_bytes),
            metrics,
            invalidated_keys: AtomicU64::new(0),
            unmatched_keys: AtomicU64::new(0),
            flights: Flights::default(),
            untimed: Untimed::new(max_bytes),
            pttl_skipped: AtomicU64::new(0),
            mrc: Mrc::new(mrc_sample_keys, max_bytes),
        }
    }

    /// Joins the read of `key` in flight, or starts one. Call only once the read can be sent
    /// without waiting, so that a follower never waits on a leader that waits on it.
    pub fn join(&self, group: &Bytes, key: &Bytes, meter: Option<&Arc<OutMeter>>) -> Join {
        self.flights.join(group, key, meter)
    }

    /// The leader's reply is in: close the flight and hand the reply to everyone who joined.
    pub fn land(&self, landing: Landing, result: &UpstreamResult) {
        self.flights.land(landing, result)
    }

    /// Misses answered by joining a read already in flight.
    pub fn collapsed(&self) -> u64 {
        self.flights.collapsed.load(Ordering::Relaxed)
    }

    /// The entry key of a read as sessions handle it: its compact key (the protocol version,
    /// the user's partition when not the proxy's own user, the command's code and the arguments
    /// after the Redis key: [`put_entry_key`]), what the cache stores the entry under and what
    /// reads in flight are joined by, written into `buf` (whose unused room it reuses). The db
    /// is always 0: sessions in another db never use the cache.
    pub fn entry_key<A: AsRef<[u8]>>(proto: u8, args: &[A], buf: &mut BytesMut) -> Bytes {
        Form::of(proto, args[0].as_ref()).put_key(args, buf);
        buf.split().freeze()
    }

    /// Looks a read up (its group is `args[1]`). The compact entry key is built in `buf`, and
    /// a hit's reply is copied in after it, in room the buffer already has: a hit allocates
    /// nothing once the buffer has its size, and the cache keeps no reference count per entry.
    /// A miss returns the entry key ([`CacheLayer::entry_key`]) as its own `Bytes`.
    /// [`CacheLayer::read`] that appends a hit's reply to `out` (the bytes about to be written
    /// to the client) instead of copying it out as its own `Bytes`; `keys` is scratch room for
    /// the entry key. Returns `None` on a hit, the entry key on a miss.
    #[inline]
    pub fn read_into<A: AsRef<[u8]>>(
        &self,
        form: Form,
        args: &[A],
        keys: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Option<Bytes> {
        self.read_into_at(form, args, keys, out, self.clock.now())
    }

    /// [`CacheLayer::read_into`] at `now`, one reading of [`CacheLayer::now`] for all the keys
    /// of one command (an MGET's), as Redis judges every key of a command expired or not at
    /// the time the command started.
    #[inline]
    pub fn read_into_at<A: AsRef<[u8]>>(
        &self,
        form: Form,
        args: &[A],
        keys: &mut BytesMut,
        out: &mut BytesMut,
        now: u64,
    ) -> Option<Bytes> {
        debug_assert!(keys.is_empty());
        make_room(keys);
        form.put_key(args, keys);
        let (hit, group_hash) = self
            .cache
            .get_hashed(args[1].as_ref(), keys, now, |stored| put_reply(out, stored));
        if self.mrc.samples(group_hash) {
            self.sample(group_hash, keys, now);
        }
        match hit {
            Some(()) => {
                keys.clear();
                None
            }
            None => Some(keys.split().freeze()),
        }
    }

    /// The cache's clock now (what lookups compare entries' deadlines with).
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    #[inline]
    pub fn read<A: AsRef<[u8]>>(&self, form: Form, args: &[A], buf: &mut BytesMut) -> Read {
        self.read_at(form, args, buf, self.clock.now())
    }

    /// [`CacheLayer::read`] at `now` (see [`CacheLayer::read_into_at`]).
    #[inline]
    pub fn read_at<A: AsRef<[u8]>>(
        &self,
        form: Form,
        args: &[A],
        buf: &mut BytesMut,
        now: u64,
    ) -> Read {
        debug_assert!(buf.is_empty());
        make_room(buf);
        form.put_key(args, buf);
        let key = buf.split();
        let (hit, group_hash) = self
            .cache
            .get_hashed(args[1].as_ref(), &key, now, |stored| put_reply(buf, stored));
        if self.mrc.samples(group_hash) {
            self.sample(group_hash, &key, now);
        }
        match hit {
            Some(()) => {
                drop(key);
                Read::Hit(buf.split().freeze())
            }
            None => Read::Miss(key.freeze()),
        }
    }

    /// A cached reply, if any, for an entry key made by [`CacheLayer::entry_key`].
    pub fn lookup(&self, group: &[u8], entry_key: &[u8]) -> Option<Bytes> {
        let now = self.clock.now();
        let (hit, group_hash) = self.cache.get_hashed(group, entry_key, now, |stored| {
            let mut out = BytesMut::new();
            put_reply(&mut out, stored);
            out.freeze()
        });
        if self.mrc.samples(group_hash) {
            self.sample(group_hash, entry_key, now);
        }
        hit
    }

    /// A sampled lookup, to the curve; out of line, so that the lookup path keeps only the test.
    #[cold]
    #[inline(never)]
    fn sample(&self, group_hash: u64, key: &[u8], now: u64) {
        let hashes = Hashes {
            group: group_hash,
            key: self.cache.key_hash(group_hash, key),
        };
        self.mrc.reference(hashes, now, || self.lookups());
    }

    /// Lookups so far, hits and misses.
    fn lookups(&self) -> u64 {
        let s = self.cache.stats();
        s.hits + s.misses
    }

    /// A written or invalidated group leaves the curve's sample, if it was in it.
    fn unsample(&self, group: &[u8]) {
        let group_hash = self.cache.group_hash(group);
        if self.mrc.samples(group_hash) {
            self.mrc.invalidate(group_hash);
        }
    }

    /// The estimated LRU hit ratio at each of `sizes` (bytes); `None` before any lookup was
    /// sampled. Computed here, on the caller's time (a scrape), never on the lookup path.
    pub fn mrc_curve(&self, sizes: &[u64]) -> Option<Vec<f64>> {
        self.mrc.curve(sizes, self.lookups())
    }

    /// What the curve's sample holds.
    pub fn mrc_summary(&self) -> MrcSummary {
        self.mrc.summary()
    }

    /// Starts a fill through a connection whose tracking protects entries tagged `tag`; `key`
    /// is the entry key [`CacheLayer::read`] returned. The ticket keeps `group` itself, not a
    /// copy (a slice of the client's read buffer, which the read's flight holds until its
    /// reply anyway; the fill completes with the reply after it).
    pub fn begin(&self, group: &Bytes, tag: u64, key: Bytes) -> Fill {
        Fill {
            generation: self.untimed.generation(),
            ticket: self.cache.begin_fill_shared(group.clone(), tag),
            sent_at: self.clock.now(),
            key: CompactKey::from_slice(&key),
        }
    }

    /// Completes a fill with the reply and the key's `PTTL` reply, sent right after the read on
    /// the same connection. The key's expiry is no later than the read's send time plus that
    /// TTL (it only shortens, unless a write changes it, and then an invalidation voids the
    /// fill). A key that changed between the two (gone with a value read, there with a null
    /// read) is not filled: the invalidation on its way would void it.
    /// A key found without expiry is remembered as such (`untimed.rs`).
    pub fn complete(&self, fill: Fill, reply: &Bytes, pttl: &[u8]) {
        if !self.fillable(reply) {
            return;
        }
        let Some(ttl) = parse_pttl(pttl) else {
            return;
        };
        let life = match (ttl, is_null(reply)) {
            (Pttl::Ms(ms), false) => ms.min(self.ttl_cap_ms),
            (Pttl::Forever, false) | (Pttl::Missing, true) => {
                let stamp = fill.ticket.stamp();
                self.untimed.note(Known {
                    group_hash: stamp.group_hash,
                    group_epoch: stamp.group_epoch() as u32,
                    generation: fill.generation,
                });
                self.ttl_cap_ms
            }
            _ => return,
        };
        self.store(fill, reply, life);
    }

    /// What shows `fill`'s key has no expiry (a read found none, and since then nothing
    /// invalidated the key, no tracking connection was lost, the cache was not flushed), if
    /// anything does: the miss may then go without `PTTL`, and complete with
    /// [`CacheLayer::complete_untimed`]. Call after the fill began.
    pub fn untimed(&self, fill: &Fill) -> Option<Known> {
        let known = self.untimed.get(fill.ticket.group_hash())?;
        self.still_untimed(&known).then_some(known)
    }

    fn still_untimed(&self, known: &Known) -> bool {
        self.untimed
            .holds(known, self.cache.group_epoch_now(known.group_hash))
    }

    /// Completes a fill sent without `PTTL` because `known` showed its key has no expiry: the
    /// reply is cached with no TTL of its own if `known` still holds.
    pub fn complete_untimed(&self, fill: Fill, reply: &Bytes, known: &Known) {
        if self.fillable(reply) && self.still_untimed(known) {
            self.store(fill, reply, self.ttl_cap_ms);
        }
    }

    /// Whether `reply` may be cached at all: not an error, not too large.
    fn fillable(&self, reply: &Bytes) -> bool {
        if reply.first().is_some_and(|b| *b == b'-' || *b == b'!') {
            return false;
        }
        if reply.len() as u64 > self.max_value {
            // It will miss every time: a read the cache cannot serve, not one it failed to.
            self.metrics.bypass(Bypass::TooLarge, 1);
            return false;
        }
        true
    }

    /// Stores a fillable reply for `life` ms from when its read left.
    fn store(&self, fill: Fill, reply: &Bytes, life: u64) {
        let key = fill.key;
        let now = self.clock.now();
        let expires_at = self.clock.deadline(fill.sent_at, life);
        let group_hash = fill.ticket.group_hash();
        if self.mrc.samples(group_hash) {
            // As LRU would store it, whatever the policy's admission decides.
            let group = fill.ticket.group();
            let hashes = Hashes {
                group: group_hash,
                key: self.cache.key_hash(group_hash, &key),
            };
            let cost = self
                .cache
                .entry_cost(key.len(), group.len(), stored_len(reply) as u64);
            self.mrc.fill(hashes, cost, expires_at, || self.lookups());
        }
        // The cache copies the reply, with the key, into one allocation of its own: a bulk
        // string as a 0 byte and its payload (`entry.rs`), copied once.
        let stored: [&[u8]; 2] = match bulk_payload(reply) {
            Some(payload) => [&[0], payload],
            None => [&[], reply],
        };
        self.cache
            .complete_fill_parts(fill.ticket, key, &stored, expires_at, now);
    }

    /// Drops every entry derived from these Redis keys (a write through the proxy).
    pub fn invalidate_keys(&self, keys: &[Bytes]) {
        for k in keys {
            self.cache.invalidate_group(k);
            self.flights.ground(k);
            self.unsample(k);
        }
    }

    /// Empties the cache.
    pub fn flush(&self, reason: FlushReason) {
        self.untimed.forget_all();
        self.cache.clear();
        self.flights.ground_all();
        self.mrc.clear();
        self.metrics.flush(reason);
    }

    /// Drops what one cluster node's connections filled (their tags' `scope`), and voids their
    /// fills in flight.
    fn drop_scope(&self, scope: u16, reason: FlushReason) {
        // What was learnt through the node may be stale; the table does not know the node.
        self.untimed.forget_all();
        self.cache.invalidate_scope(scope);
        self.flights.ground_all();
        self.metrics.node_drop(reason);
    }

    /// Bytes of the table of keys known to have no expiry (beside the cache's budget).
    pub fn untimed_bytes(&self) -> usize {
        self.untimed.bytes()
    }

    pub fn stats(&self) -> cache::CacheStats {
        self.cache.stats()
    }

    pub fn validate(&self) -> Result<(), String> {
        self.cache.validate()
    }
}

impl TrackingSink for CacheLayer {
    fn connection_lost(&self, tag: u64) {
        // The keys it read are protected no longer: what was learnt of them may be stale.
        self.untimed.forget_all();
        self.cache.invalidate_tag(tag);
        // Reads in flight on that connection will fail; new misses must not join them.
        self.flights.ground_all();
        self.metrics.connection_lost.inc();
    }

    fn invalidate(&self, keys: Option<Vec<Bytes>>) {
        match keys {
            None => self.flush(FlushReason::Flushall),
            Some(keys) => {
                for k in &keys {
                    self.invalidated_keys.fetch_add(1, Ordering::Relaxed);
                    self.flights.ground(k);
                    self.unsample(k);
                    if self.cache.invalidate_group(k) == 0 {
                        // Keys we no longer hold, or Redis's tracking table evicting
                        // (tracking-table-max-keys): harmless, but counted.
                        self.unmatched_keys.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    fn invalidation_lost(&self, scope: Option<u16>) {
        match scope {
            Some(scope) => self.drop_scope(scope, FlushReason::InvalidationConnectionLost),
            None => self.flush(FlushReason::InvalidationConnectionLost),
        }
    }

    fn acl_changed(&self) {
        self.flush(FlushReason::AclChanged);
    }

    fn slots_moved(&self, scope: u16) {
        self.drop_scope(scope, FlushReason::SlotMoved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_layer() -> CacheLayer {
        CacheLayer::new(
            1 << 20,
            4096,
            PolicyKind::default(),
            60_000,
            CacheRules::default(),
            Arc::new(Metrics::default()),
        )
    }

    #[test]
    fn read_into_appends_a_hit_to_the_output_and_hands_back_a_miss_key() {
        let layer = small_layer();
        let get = [Bytes::from_static(b"GET"), Bytes::from_static(b"k")];
        let (mut keys, mut out) = (BytesMut::new(), BytesMut::from(&b"+PONG\r\n"[..]));
        let key = layer
            .read_into(Form::of(2, b"GET"), &get, &mut keys, &mut out)
            .expect("a miss");
        assert_eq!(&key[..], [2, 1], "the compact key: RESP2, GET");
        assert_eq!(&out[..], b"+PONG\r\n");
        layer.complete(
            layer.begin(&Bytes::from_static(b"k"), 1, key),
            &Bytes::from_static(b"$1\r\nv\r\n"),
            b":-1\r\n",
        );
        assert!(layer
            .read_into(Form::of(2, b"GET"), &get, &mut keys, &mut out)
            .is_none());
        assert_eq!(&out[..], b"+PONG\r\n$1\r\nv\r\n");
        assert!(keys.is_empty());
    }

    #[test]
    fn hits_are_copied_into_the_callers_buffer() {
        let layer = small_layer();
        let get = [Bytes::from_static(b"GET"), Bytes::from_static(b"k")];
        let mut buf = BytesMut::new();
        let Read::Miss(key) = layer.read(Form::of(2, b"GET"), &get, &mut buf) else {
            panic!("hit in an empty cache");
        };
        assert_eq!(&key[..], [2, 1], "the compact key: RESP2, GET");
        let reply = Bytes::from_static(b"$1\r\nv\r\n");
        layer.complete(
            layer.begin(&Bytes::from_static(b"k"), 1, key),
            &reply,
            b":-1\r\n",
        );
        let Read::Hit(hit) = layer.read(Form::of(2, b"GET"), &get, &mut buf) else {
            panic!("miss after the fill");
        };
        assert_eq!(hit, reply);
        assert!(buf.is_empty());
        let Read::Miss(_) = layer.read(Form::of(3, b"GET"), &get, &mut buf) else {
            panic!("RESP3 reads have entries of their own");
        };
    }

    #[test]
    fn fills_respect_ttl_and_invalidation() {
        let layer = small_layer();
        let get = [Bytes::from_static(b"GET"), Bytes::from_static(b"k")];
        let key = CacheLayer::entry_key(2, &get, &mut BytesMut::new());
        assert_eq!(&key[..], [2, 1], "the compact key: RESP2, GET");
        let reply = Bytes::from_static(b"$1\r\nv\r\n");
        let fill = layer.begin(&Bytes::from_static(b"k"), 1, key.clone());
        layer.complete(fill, &reply, b":-1\r\n");
        assert_eq!(layer.lookup(b"k", &key), Some(reply.clone()));
        layer.invalidate(Some(vec![Bytes::from_static(b"k")]));
        assert_eq!(layer.lookup(b"k", &key), None);

        // An invalidation while the read is in flight: the reply is not cached.
        let fill = layer.begin(&Bytes::from_static(b"k"), 1, key.clone());
        layer.invalidate_keys(&[Bytes::from_static(b"k")]);
        layer.complete(fill, &reply, b":-1\r\n");
        assert_eq!(layer.lookup(b"k", &key), None);

        // The protecting connection closes: its entries go.
        let fill = layer.begin(&Bytes::from_static(b"k"), 7, key.clone());
        layer.complete(fill, &reply, b":-1\r\n");
        layer.connection_lost(7);
        assert_eq!(layer.lookup(b"k", &key), None);

        // Errors are never cached.
        let fill = layer.begin(&Bytes::from_static(b"k"), 1, key.clone());
        layer.complete(fill, &Bytes::from_static(b"-WRONGTYPE x\r\n"), b":-1\r\n");
        assert_eq!(layer.lookup(b"k", &key), None);
        layer.validate().unwrap();
    }
}
