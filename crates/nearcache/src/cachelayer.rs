//! The proxy's use of the cache library: entry keys, fills with their expiry, and what Redis's
//! invalidations and lost connections mean for cached entries.
//!
//! Synchronous: the session and writer call into it, the upstream side calls it through
//! [`TrackingSink`]. It never holds a lock across an `.await` (it never awaits at all).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use cache::{Cache, CacheConfig, FillTicket, PolicyKind};
use hashbrown::HashMap;
use smallvec::SmallVec;

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::command;

mod rules;
use crate::obs::metrics::{FlushReason, Metrics};
use crate::reply::{self, OutMeter, ReplyTx, UpstreamResult};
use crate::upstream::TrackingSink;
pub use rules::CacheRules;

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

/// The leader's handle on its flight.
pub struct Landing {
    id: u64,
    group: Bytes,
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
    /// Misses answered by joining a read already in flight.
    pub collapsed: AtomicU64,
    /// Reads in flight, sharded by group.
    flights: Box<[Mutex<Flights>]>,
    /// Flights in `flights`: while there are none, an invalidation has nothing to ground and
    /// takes no flight lock (a write's keys are invalidated twice, at send and at reply).
    flying: AtomicUsize,
    next_flight: AtomicU64,
    hasher: hashbrown::DefaultHashBuilder,
}

/// A read sent upstream whose reply may be cached.
pub struct Fill {
    ticket: FillTicket,
    /// The compact entry key ([`put_entry_key`]); `None` if the entry key did not parse.
    key: Option<Vec<u8>>,
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
            flying: AtomicUsize::new(0),
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
        // Counted under the shard's lock: an invalidation that reads 0 after this would have
        // taken the lock before this flight was registered, with the same outcome.
        self.flying.fetch_add(1, Ordering::SeqCst);
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
            self.flying.fetch_sub(1, Ordering::SeqCst);
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
        if self.flying.load(Ordering::SeqCst) == 0 {
            return;
        }
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

    /// The entry key of a read as sessions handle it: protocol version, then the encoded
    /// command, written into `buf` (whose unused room it reuses). `key.slice(1..)` is the command
    /// as sent upstream. The cache itself stores the shorter form [`put_entry_key`] makes of it.
    /// The db is always 0 and the identity the proxy's own: sessions with another db or user
    /// never use the cache.
    pub fn entry_key<A: AsRef<[u8]>>(proto: u8, args: &[A], buf: &mut BytesMut) -> Bytes {
        Self::encode_key(proto, args, buf);
        buf.split().freeze()
    }

    fn encode_key<A: AsRef<[u8]>>(proto: u8, args: &[A], buf: &mut BytesMut) {
        buf.reserve(1 + resp::encode_command_len(args));
        buf.put_u8(proto);
        resp::encode_command(args, buf);
    }

    /// Looks a read up (its group is `args[1]`). The compact entry key is built in `buf`, and
    /// a hit's reply is copied in after it, in room the buffer already has: a hit allocates
    /// nothing once the buffer has its size, and the cache keeps no reference count per entry.
    /// A miss returns the entry key ([`CacheLayer::entry_key`]) as its own `Bytes`.
    /// [`CacheLayer::read`] that appends a hit's reply to `out` (the bytes about to be written
    /// to the client) instead of copying it out as its own `Bytes`; `keys` is scratch room for
    /// the entry key. Returns `None` on a hit, the entry key on a miss.
    pub fn read_into<A: AsRef<[u8]>>(
        &self,
        form: Form,
        args: &[A],
        keys: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Option<Bytes> {
        debug_assert!(keys.is_empty());
        let proto = form.proto;
        form.put_key(args, keys);
        let hit = self
            .cache
            .get_with(args[1].as_ref(), keys, self.clock.now(), |stored| {
                put_reply(out, stored)
            });
        keys.clear();
        match hit {
            Some(()) => None,
            None => {
                Self::encode_key(proto, args, keys);
                Some(keys.split().freeze())
            }
        }
    }

    pub fn read<A: AsRef<[u8]>>(&self, form: Form, args: &[A], buf: &mut BytesMut) -> Read {
        debug_assert!(buf.is_empty());
        if buf.capacity() < MIN_ROOM && !buf.try_reclaim(ROOM) && buf.capacity() < LOW_ROOM {
            buf.reserve(ROOM);
        }
        let proto = form.proto;
        form.put_key(args, buf);
        let key = buf.split();
        let hit = self
            .cache
            .get_with(args[1].as_ref(), &key, self.clock.now(), |stored| {
                put_reply(buf, stored)
            });
        drop(key);
        match hit {
            Some(()) => Read::Hit(buf.split().freeze()),
            None => {
                Self::encode_key(proto, args, buf);
                Read::Miss(buf.split().freeze())
            }
        }
    }

    /// A cached reply, if any, for an entry key made by [`CacheLayer::entry_key`].
    pub fn lookup(&self, group: &[u8], entry_key: &[u8]) -> Option<Bytes> {
        let key = compact_key(entry_key)?;
        self.cache
            .get_with(group, &key, self.clock.now(), |stored| {
                let mut out = BytesMut::new();
                put_reply(&mut out, stored);
                out.freeze()
            })
    }

    /// Starts a fill through a connection whose tracking protects entries tagged `tag`; `key`
    /// is the entry key [`CacheLayer::read`] returned.
    pub fn begin(&self, group: &[u8], tag: u64, key: Bytes) -> Fill {
        Fill {
            ticket: self.cache.begin_fill(group, tag),
            sent_at: self.clock.now(),
            key: compact_key(&key),
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
        let Some(key) = fill.key else {
            return;
        };
        let now = self.clock.now();
        let expires_at = self.clock.deadline(fill.sent_at, life);
        // The cache copies the reply, with the key, into one allocation of its own.
        match bulk_payload(reply) {
            Some(payload) => {
                let mut stored = Vec::with_capacity(1 + payload.len());
                stored.push(0);
                stored.extend_from_slice(payload);
                self.cache
                    .complete_fill(fill.ticket, key, stored, expires_at, now)
            }
            None => self
                .cache
                .complete_fill(fill.ticket, key, reply, expires_at, now),
        };
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

/// How a read is named in its compact entry key: the client's protocol and the command's
/// [`command::CommandSpec::read_code`], worked out once per command name rather than once per
/// lookup (an MGET looks up each of its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    pub proto: u8,
    pub code: Option<u8>,
}

impl Form {
    /// The form of a read named `name` (any case).
    pub fn of(proto: u8, name: &[u8]) -> Form {
        Form {
            proto,
            code: command::lookup(name).read_code(),
        }
    }

    /// [`put_entry_key`], with the command's code known.
    fn put_key<A: AsRef<[u8]>>(self, args: &[A], out: &mut impl BufMut) {
        debug_assert_eq!(self.code, command::lookup(args[0].as_ref()).read_code());
        put_key_coded(self.proto, self.code, args, out);
    }
}

/// Appends the compact entry key of a read, which the cache stores within the read's group
/// (`args[1]`, the Redis key): protocol version, the command's one-byte code
/// ([`command::CommandSpec::read_code`], or 0 followed by the name's length and the name), then every argument
/// after the Redis key preceded by its length (LEB128). Together with the group it determines
/// (protocol, command, every argument) exactly; the cache compares group and key in full.
pub fn put_entry_key<A: AsRef<[u8]>>(proto: u8, args: &[A], out: &mut impl BufMut) {
    put_key_coded(
        proto,
        command::lookup(args[0].as_ref()).read_code(),
        args,
        out,
    );
}

fn put_key_coded<A: AsRef<[u8]>>(proto: u8, code: Option<u8>, args: &[A], out: &mut impl BufMut) {
    fn put_len(out: &mut impl BufMut, mut n: usize) {
        while n >= 0x80 {
            out.put_u8(n as u8 | 0x80);
            n >>= 7;
        }
        out.put_u8(n as u8);
    }
    out.put_u8(proto);
    let name = args[0].as_ref();
    match code {
        Some(code) => out.put_u8(code),
        None => {
            out.put_u8(0);
            put_len(out, name.len());
            out.put_slice(name);
        }
    }
    for a in args.iter().skip(2) {
        let a = a.as_ref();
        put_len(out, a.len());
        out.put_slice(a);
    }
}

/// The payload of a bulk string reply (`$<n>\r\n<n bytes>\r\n`, length written as Redis
/// writes it), which the cache stores as a 0 byte and the payload: 6 to 10 bytes less per
/// entry. RESP replies never start with a 0 byte, so anything else is stored as it is.
fn bulk_payload(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply.strip_prefix(b"$")?;
    let end = rest.iter().position(|&c| c == b'\r')?;
    let digits = &rest[..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let body = rest[end..].strip_prefix(b"\r\n")?;
    (body.len() == n.checked_add(2)? && body.ends_with(b"\r\n")).then(|| &body[..n])
}

/// Appends a reply as the client gets it, from its stored form (see [`bulk_payload`]).
fn put_reply(out: &mut BytesMut, stored: &[u8]) {
    match stored.split_first() {
        Some((0, payload)) => {
            out.reserve(payload.len() + 24);
            resp::header(out, b'$', payload.len());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(stored),
    }
}

/// The compact key ([`put_entry_key`]) of an entry key made by [`CacheLayer::entry_key`].
fn compact_key(entry_key: &[u8]) -> Option<Vec<u8>> {
    fn header(b: &[u8], kind: u8) -> Option<(usize, &[u8])> {
        let b = b.strip_prefix(&[kind])?;
        let end = b.iter().position(|&c| c == b'\r')?;
        let n = std::str::from_utf8(&b[..end]).ok()?.parse().ok()?;
        Some((n, b.get(end + 2..)?))
    }
    let (&proto, wire) = entry_key.split_first()?;
    let (n, mut rest) = header(wire, b'*')?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let (len, r) = header(rest, b'$')?;
        if r.get(len..len.checked_add(2)?)? != b"\r\n" {
            return None;
        }
        args.push(&r[..len]);
        rest = &r[len + 2..];
    }
    if !rest.is_empty() || args.len() < 2 {
        return None;
    }
    let mut out = Vec::with_capacity(entry_key.len());
    put_entry_key(proto, &args, &mut out);
    Some(out)
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
    resp::header(out, b'*', n);
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

    fn compact(proto: u8, args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        put_entry_key(proto, args, &mut out);
        out
    }

    #[test]
    fn compact_keys_match_entry_keys_and_tell_reads_apart() {
        let reads: [&[&[u8]]; 8] = [
            &[b"GET", b"k"],
            &[b"get", b"k"],
            &[b"MGET", b"k"],
            &[b"HGET", b"k", b"ab"],
            &[b"HGET", b"k", b"a", b"b"],
            &[b"HMGET", b"k", b"a", b"b"],
            &[b"LRANGE", b"k", b"0", b"-1"],
            &[b"NOSUCHREAD", b"k", &[0x80; 200]],
        ];
        let mut seen = std::collections::HashSet::new();
        for args in reads {
            for proto in [2, 3] {
                let key = CacheLayer::entry_key(proto, args, &mut BytesMut::new());
                let c = compact(proto, args);
                assert_eq!(compact_key(&key).as_deref(), Some(&c[..]), "{args:?}");
                seen.insert(c);
            }
        }
        // GET and get share their entries; everything else is told apart.
        assert_eq!(seen.len(), 14);
        assert_eq!(compact(2, &[b"GET", b"a-long-redis-key"]), [2, 1]);
        assert!(compact_key(b"\x02*2\r\n$3\r\nGET\r\n$1\r\nkk\r\n").is_none());
    }

    #[test]
    fn bulk_replies_are_stored_without_their_framing() {
        for (reply, payload) in [
            (&b"$3\r\nabc\r\n"[..], Some(&b"abc"[..])),
            (b"$0\r\n\r\n", Some(b"")),
            (b"$12\r\nhello\r\nworld\r\n", Some(b"hello\r\nworld")),
            (b"$-1\r\n", None),
            (b"$03\r\nabc\r\n", None),
            (b"$+3\r\nabc\r\n", None),
            (b"$3\r\nabcd\r\n", None),
            (b"$3\r\nabc\r\n+OK\r\n", None),
            (b":5\r\n", None),
            (b"*1\r\n$1\r\na\r\n", None),
        ] {
            assert_eq!(bulk_payload(reply), payload, "{reply:?}");
            let stored = match payload {
                Some(p) => [&[0][..], p].concat(),
                None => reply.to_vec(),
            };
            let mut out = BytesMut::new();
            put_reply(&mut out, &stored);
            assert_eq!(&out[..], reply);
        }
    }

    fn small_layer() -> CacheLayer {
        CacheLayer::new(
            1 << 20,
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
        assert_eq!(&key[1..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(&out[..], b"+PONG\r\n");
        layer.complete(
            layer.begin(b"k", 1, key),
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
        assert_eq!(&key[1..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let reply = Bytes::from_static(b"$1\r\nv\r\n");
        layer.complete(layer.begin(b"k", 1, key), &reply, b":-1\r\n");
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
