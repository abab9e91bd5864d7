//! The proxy's use of the cache library: entry keys, fills with their expiry, and what Redis's
//! invalidations and lost connections mean for cached entries.
//!
//! Synchronous: the session and writer call into it, the upstream side calls it through
//! [`TrackingSink`]. It never holds a lock across an `.await` (it never awaits at all).

use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use cache::{Cache, CacheConfig, FillTicket, PolicyKind};
use hashbrown::HashMap;
use smallvec::SmallVec;

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::keys::CacheRules;
use crate::metrics::{FlushReason, Metrics};
use crate::reply::{self, OutMeter, ReplyTx, UpstreamResult};
use crate::upstream::TrackingSink;

const FLIGHT_SHARDS: usize = 16;

/// A read in flight that later misses of the same entry join instead of reading again.
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

/// Reads in flight by group (Redis key): an invalidation grounds a whole group at once, and a
/// group rarely has more than one read in flight, so its list is searched in order.
type Flights = HashMap<Bytes, SmallVec<[Flight; 1]>, hashbrown::DefaultHashBuilder>;

/// A fill waiting for its key's `PTTL` reply.
pub type PendingFill = (Fill, oneshot::Receiver<UpstreamResult>);

/// How a miss proceeds.
pub enum Join {
    /// Nobody is reading this entry: send the read, then [`CacheLayer::land`] its reply.
    Leader(Landing),
    /// The same read is already in flight: this receiver yields its reply.
    Follower(oneshot::Receiver<UpstreamResult>),
}

/// A cacheable read looked up.
pub enum Read {
    /// The cached reply.
    Hit(Bytes),
    /// Not cached: the entry key, to fill it with.
    Miss(Bytes),
}

/// The leader's handle on its flight.
pub struct Landing {
    id: u64,
    group: Bytes,
}

/// The cache as the proxy sees it.
pub struct CacheLayer {
    cache: Cache<Bytes>,
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
    /// Misses answered by joining a read already in flight.
    pub collapsed: AtomicU64,
    /// Reads in flight, sharded by group.
    flights: Box<[Mutex<Flights>]>,
    next_flight: AtomicU64,
    hasher: hashbrown::DefaultHashBuilder,
}

/// A read sent upstream whose reply may be cached.
pub struct Fill {
    ticket: FillTicket,
    key: Bytes,
    /// When the read left, on the cache clock: the key's TTL is counted from here, so the entry
    /// never outlives the key.
    sent_at: u64,
}

impl CacheLayer {
    pub fn new(
        max_bytes: u64,
        policy: PolicyKind,
        ttl_cap_ms: u64,
        rules: CacheRules,
        metrics: Arc<Metrics>,
    ) -> Self {
        CacheLayer {
            rules,
            cache: Cache::new(CacheConfig {
                max_bytes,
                policy,
                shards: 0,
            }),
            clock: Clock::new(),
            ttl_cap_ms,
            max_value: (max_bytes / 1024).clamp(16 * 1024, 1024 * 1024),
            metrics,
            invalidated_keys: AtomicU64::new(0),
            unmatched_keys: AtomicU64::new(0),
            collapsed: AtomicU64::new(0),
            flights: (0..FLIGHT_SHARDS).map(|_| Mutex::default()).collect(),
            next_flight: AtomicU64::new(1),
            hasher: Default::default(),
        }
    }

    fn flight_shard(&self, group: &[u8]) -> std::sync::MutexGuard<'_, Flights> {
        let i = self.hasher.hash_one(group) as usize % FLIGHT_SHARDS;
        self.flights[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the read of `key` in flight, or starts one. Call only once the read can be sent
    /// without waiting, so that a follower never waits on a leader that waits on it.
    pub fn join(&self, group: &Bytes, key: &Bytes, meter: Option<&Arc<OutMeter>>) -> Join {
        let mut flights = self.flight_shard(group);
        let joinable = flights
            .get_mut(group.as_ref())
            .and_then(|reads| reads.iter_mut().find(|f| !f.grounded && f.key == *key));
        if let Some(f) = joinable {
            let (tx, rx) = reply::reply_channel(meter);
            f.waiters.push(tx);
            self.collapsed.fetch_add(1, Ordering::Relaxed);
            return Join::Follower(rx);
        }
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        flights.entry(group.clone()).or_default().push(Flight {
            id,
            key: key.clone(),
            waiters: Vec::new(),
            grounded: false,
        });
        Join::Leader(Landing {
            id,
            group: group.clone(),
        })
    }

    /// The leader's reply is in: close the flight and hand the reply to everyone who joined.
    pub fn land(&self, landing: Landing, result: &UpstreamResult) {
        let waiters = {
            let mut flights = self.flight_shard(&landing.group);
            let Some(reads) = flights.get_mut(landing.group.as_ref()) else {
                return;
            };
            let Some(at) = reads.iter().position(|f| f.id == landing.id) else {
                return;
            };
            let flight = reads.swap_remove(at);
            if reads.is_empty() {
                flights.remove(landing.group.as_ref());
            }
            flight.waiters
        };
        for w in waiters {
            w.send(result.clone());
        }
    }

    /// After an invalidation, later misses must read again rather than join a read that may
    /// have run before the change; those who joined earlier still get its reply.
    fn ground(&self, group: &[u8]) {
        if let Some(reads) = self.flight_shard(group).get_mut(group) {
            for f in reads.iter_mut() {
                f.grounded = true;
            }
        }
    }

    fn ground_all(&self) {
        for shard in self.flights.iter() {
            let mut flights = shard.lock().unwrap_or_else(|p| p.into_inner());
            for f in flights.values_mut().flatten() {
                f.grounded = true;
            }
        }
    }

    /// The entry key of a read: protocol version, then the encoded command, written into `buf`
    /// (whose unused room it reuses). `key.slice(1..)` is the command as sent upstream. The db
    /// is always 0 and the identity the proxy's own: sessions with another db or user never
    /// use the cache.
    pub fn entry_key<A: AsRef<[u8]>>(proto: u8, args: &[A], buf: &mut BytesMut) -> Bytes {
        Self::encode_key(proto, args, buf);
        buf.split().freeze()
    }

    fn encode_key<A: AsRef<[u8]>>(proto: u8, args: &[A], buf: &mut BytesMut) {
        buf.reserve(1 + resp::encode_command_len(args));
        buf.put_u8(proto);
        resp::encode_command(args, buf);
    }

    /// Looks a read up (its group is `args[1]`). The entry key is built in `buf`, whose room
    /// it reuses: a hit allocates nothing, a miss takes the key out as its own `Bytes`.
    pub fn read<A: AsRef<[u8]>>(&self, proto: u8, args: &[A], buf: &mut BytesMut) -> Read {
        debug_assert!(buf.is_empty());
        Self::encode_key(proto, args, buf);
        match self.lookup(args[1].as_ref(), buf) {
            Some(hit) => {
                buf.clear();
                Read::Hit(hit)
            }
            None => Read::Miss(buf.split().freeze()),
        }
    }

    /// A cached reply, if any.
    pub fn lookup(&self, group: &[u8], key: &[u8]) -> Option<Bytes> {
        self.cache.get(group, key, self.clock.now())
    }

    /// Starts a fill through a connection whose tracking protects entries tagged `tag`.
    pub fn begin(&self, group: &[u8], tag: u64, key: Bytes) -> Fill {
        Fill {
            ticket: self.cache.begin_fill(group, tag),
            sent_at: self.clock.now(),
            key,
        }
    }

    /// Completes a fill with the reply and the key's `PTTL` reply (sent right before the read).
    pub fn complete(&self, fill: Fill, reply: &Bytes, pttl: &[u8]) {
        if reply.first().is_some_and(|b| *b == b'-' || *b == b'!') {
            return;
        }
        if reply.len() as u64 > self.max_value {
            return;
        }
        let Some(ttl) = parse_pttl(pttl) else {
            return;
        };
        let life = match ttl {
            Some(ms) => ms.min(self.ttl_cap_ms),
            None => self.ttl_cap_ms,
        };
        let now = self.clock.now();
        let expires_at = self.clock.deadline(fill.sent_at, life);
        // A copy of its own: a slice would pin the whole upstream read buffer it came from,
        // and the cache's byte count would no longer be what the allocator holds.
        self.cache.complete_fill(
            fill.ticket,
            fill.key,
            Bytes::copy_from_slice(reply),
            reply.len() as u64,
            expires_at,
            now,
        );
    }

    /// Drops every entry derived from these Redis keys (a write through the proxy).
    pub fn invalidate_keys(&self, keys: &[Bytes]) {
        for k in keys {
            self.cache.invalidate_group(k);
            self.ground(k);
        }
    }

    /// Empties the cache.
    pub fn flush(&self, reason: FlushReason) {
        self.cache.clear();
        self.ground_all();
        self.metrics.flush(reason);
    }

    pub fn stats(&self) -> cache::CacheStats {
        self.cache.stats()
    }

    pub fn validate(&self) -> Result<(), String> {
        self.cache.validate()
    }
}

/// Completes a leader's read with its reply (or why there is none): fills the cache, lands the
/// flight, and passes the reply on to the leader's own client. Run by the upstream connection's
/// task as it reads the reply ([`crate::upstream::ConnHandle::call_then`]), so followers get
/// their reply even if the leader's client has gone, and no task is woken per miss.
pub fn complete_flight(
    cache: &CacheLayer,
    landing: Landing,
    fill: Option<PendingFill>,
    result: UpstreamResult,
    to_client: ReplyTx,
) {
    if let (Some((fill, pttl)), Ok(bytes)) = (fill, &result) {
        if let Some(ttl) = pttl_reply(pttl) {
            cache.complete(fill, bytes, &ttl);
        }
    }
    cache.land(landing, &result);
    to_client.send(result);
}

/// The reply to a fill's `PTTL`, which was sent just before the read on the same connection and
/// so has been delivered by the time the read's reply is: `None` if it failed.
fn pttl_reply(mut rx: oneshot::Receiver<UpstreamResult>) -> Option<Bytes> {
    rx.try_recv().ok()?.ok()
}

/// The elements of an array reply, each as its raw bytes; `None` for anything else.
pub fn split_array(reply: &Bytes) -> Option<Vec<Bytes>> {
    let limits = resp::Limits::default();
    let header_end = reply.iter().position(|&b| b == b'\n')? + 1;
    let count: usize = std::str::from_utf8(reply.get(1..header_end - 2)?)
        .ok()?
        .parse()
        .ok()?;
    if reply.first() != Some(&b'*') {
        return None;
    }
    let mut items = Vec::with_capacity(count);
    let mut pos = header_end;
    for _ in 0..count {
        let len = resp::scan(&reply[pos..], &limits).ok()??;
        items.push(reply.slice(pos..pos + len));
        pos += len;
    }
    (pos == reply.len()).then_some(items)
}

/// An array reply from its elements' raw bytes.
pub fn join_array(items: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    put_array(&mut out, items.len(), items.iter());
    out.freeze()
}

/// Appends an array reply of these `n` elements' raw bytes to `out`.
pub fn put_array<'a>(out: &mut BytesMut, n: usize, items: impl Iterator<Item = &'a Bytes> + Clone) {
    let len: usize = items.clone().map(Bytes::len).sum();
    out.reserve(len + 16);
    let _ = write!(out, "*{n}\r\n");
    for item in items {
        out.put_slice(item);
    }
}

/// Completes an MGET of the keys that missed: fills each key's entry from its element, then
/// answers the client with the whole array, hits and fetched elements in the asked order. Run
/// by the upstream connection's task, like [`complete_flight`].
pub fn complete_mget(
    cache: &CacheLayer,
    mut items: Vec<Option<Bytes>>,
    fills: Vec<(usize, Option<PendingFill>)>,
    result: UpstreamResult,
    to_client: ReplyTx,
) {
    let fetched = match &result {
        Ok(bytes) => split_array(bytes).filter(|f| f.len() == fills.len()),
        Err(_) => None,
    };
    let Some(fetched) = fetched else {
        // An error (or an unexpected shape): the client gets Redis's reply as it is.
        to_client.send(result);
        return;
    };
    for ((slot, fill), elem) in fills.into_iter().zip(fetched) {
        if let Some((fill, pttl)) = fill {
            if let Some(ttl) = pttl_reply(pttl) {
                cache.complete(fill, &elem, &ttl);
            }
        }
        items[slot] = Some(elem);
    }
    let all: Option<Vec<Bytes>> = items.into_iter().collect();
    let reply = match all {
        Some(all) => Ok(join_array(&all)),
        None => result,
    };
    to_client.send(reply);
}

/// `PTTL` reply: `Some(Some(ms))` for a TTL, `Some(None)` for none (-1) or a missing key (-2),
/// `None` when the reply is not an integer (then nothing is cached).
fn parse_pttl(reply: &[u8]) -> Option<Option<u64>> {
    let text = std::str::from_utf8(reply.strip_prefix(b":")?).ok()?;
    let ms: i64 = text.trim_end().parse().ok()?;
    Some((ms >= 0).then_some(ms as u64))
}

impl TrackingSink for CacheLayer {
    fn connection_lost(&self, tag: u64) {
        self.cache.invalidate_tag(tag);
        // Reads in flight on that connection will fail; new misses must not join them.
        self.ground_all();
        self.metrics.connection_lost.inc();
    }

    fn invalidate(&self, keys: Option<Vec<Bytes>>) {
        match keys {
            None => self.flush(FlushReason::Flushall),
            Some(keys) => {
                for k in &keys {
                    self.invalidated_keys.fetch_add(1, Ordering::Relaxed);
                    self.ground(k);
                    if self.cache.invalidate_group(k) == 0 {
                        // Keys we no longer hold, or Redis's tracking table evicting
                        // (tracking-table-max-keys): harmless, but counted.
                        self.unmatched_keys.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    fn invalidation_lost(&self) {
        self.flush(FlushReason::InvalidationConnectionLost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_joins_arrays() {
        let reply = Bytes::from_static(b"*3\r\n$1\r\na\r\n$-1\r\n_\r\n");
        let items = split_array(&reply).unwrap();
        assert_eq!(items, vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b"_\r\n"]);
        assert_eq!(join_array(&items), reply);
        assert!(split_array(&Bytes::from_static(b"-ERR x\r\n")).is_none());
        assert!(split_array(&Bytes::from_static(b"*2\r\n$1\r\na\r\n")).is_none());
    }

    #[test]
    fn reads_pttl_replies() {
        assert_eq!(parse_pttl(b":1500\r\n"), Some(Some(1500)));
        assert_eq!(parse_pttl(b":-1\r\n"), Some(None));
        assert_eq!(parse_pttl(b":-2\r\n"), Some(None));
        assert_eq!(parse_pttl(b"-ERR x\r\n"), None);
    }

    #[test]
    fn fills_respect_ttl_and_invalidation() {
        let layer = CacheLayer::new(
            1 << 20,
            PolicyKind::default(),
            60_000,
            CacheRules::default(),
            Arc::new(Metrics::default()),
        );
        let get = [Bytes::from_static(b"GET"), Bytes::from_static(b"k")];
        let key = CacheLayer::entry_key(2, &get, &mut BytesMut::new());
        assert_eq!(&key[1..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let reply = Bytes::from_static(b"$1\r\nv\r\n");
        let fill = layer.begin(b"k", 1, key.clone());
        layer.complete(fill, &reply, b":-1\r\n");
        assert_eq!(layer.lookup(b"k", &key), Some(reply.clone()));
        layer.invalidate(Some(vec![Bytes::from_static(b"k")]));
        assert_eq!(layer.lookup(b"k", &key), None);

        // An invalidation while the read is in flight: the reply is not cached.
        let fill = layer.begin(b"k", 1, key.clone());
        layer.invalidate_keys(&[Bytes::from_static(b"k")]);
        layer.complete(fill, &reply, b":-1\r\n");
        assert_eq!(layer.lookup(b"k", &key), None);

        // The protecting connection closes: its entries go.
        let fill = layer.begin(b"k", 7, key.clone());
        layer.complete(fill, &reply, b":-1\r\n");
        layer.connection_lost(7);
        assert_eq!(layer.lookup(b"k", &key), None);

        // Errors are never cached.
        let fill = layer.begin(b"k", 1, key.clone());
        layer.complete(fill, &Bytes::from_static(b"-WRONGTYPE x\r\n"), b":-1\r\n");
        assert_eq!(layer.lookup(b"k", &key), None);
        layer.validate().unwrap();
    }
}
