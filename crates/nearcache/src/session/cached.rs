//! The cached read path of a session on shared connections: a cacheable read is looked up, a
//! hit answered at once (in order, behind the replies still pending), a miss joined to the same
//! read in flight or sent upstream followed by a `PTTL` of its key, and filled when that
//! returns; MGET is looked up key by key and only its missing keys are fetched.
//!
//! Owns the session's side of the cache protocol. Never fills an entry itself: the fill is
//! completed by the upstream connection's task as it reads the reply (`cachelayer`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::state::Session;
use crate::cachelayer::complete::{Fetch, Miss};
use crate::cachelayer::{CacheLayer, Form, Join, Read};
use crate::command;
use crate::obs::metrics::Bypass;
use crate::obs::stats::{Outcome, StampExt as _};
use crate::reply::{self, After, OutMeter, ReplyRx};
use crate::upstream::ConnHandle;

impl Session {
    /// A cacheable read on a shared connection: a hit is answered at once (in order, behind
    /// the replies still pending); a miss goes upstream followed by a `PTTL` of its key, and is cached
    /// when it returns.
    pub(super) async fn cached_read(&mut self, args: &[Bytes]) {
        // While a write of this session to the key is in flight, Redis may not have applied it
        // yet, and the client expects to read it back: read through, on the connection the
        // write went to, and leave the cache alone. Reads of other keys use the cache.
        let cache = match &self.ctx.cache {
            _ if self.cache_part().is_none() => return self.uncached_user(args).await,
            Some(c) if !self.output.link.writes.hold_back(&args[1..2]) => c,
            _ => return self.read_through(args).await,
        };
        let lookup = self.stamp.phase("cache_lookup");
        let form = self.form();
        if let Some(direct) = self.output.direct() {
            // The reply can go straight into the bytes the reader writes at the end of this read.
            let at = direct.len();
            match cache.read_into(form, args, &mut self.encode_buf, direct) {
                None => {
                    self.stamp.mark(Outcome::Hit);
                    let is_error = matches!(direct.get(at), Some(b'-' | b'!'));
                    self.output.answered = Some(is_error);
                    return;
                }
                Some(key) => {
                    drop(lookup);
                    return self.cached_miss(cache.clone(), args, key).await;
                }
            }
        }
        let key = match cache.read(form, args, &mut self.encode_buf) {
            Read::Hit(hit) => {
                self.stamp.mark(Outcome::Hit);
                return self.output.reply(hit);
            }
            Read::Miss(key) => key,
        };
        drop(lookup);
        self.cached_miss(cache.clone(), args, key).await
    }

    /// A cacheable read held back by a write in flight: sent to Redis as it is, behind the
    /// write, neither looked up nor filled.
    async fn read_through(&mut self, args: &[Bytes]) {
        self.count_bypass(Bypass::WriteInFlight, args);
        self.send_shared(args, After::Nothing).await
    }

    /// A cacheable read of a user whose reads are not cached (`Session::cache_part`).
    async fn uncached_user(&mut self, args: &[Bytes]) {
        self.count_bypass(Bypass::NotCacheable, args);
        self.send_shared(args, After::Nothing).await
    }

    /// A cacheable read that missed (`key`, its entry key): joins the same read in flight, or
    /// sends it followed by a `PTTL` of its key in the same request (none when the key is known
    /// to have no expiry), and has the reply cached when that returns.
    async fn cached_miss(&mut self, cache: Arc<CacheLayer>, args: &[Bytes], key: Bytes) {
        let group = &args[1];
        self.stamp.mark(Outcome::Miss);
        self.stamp.sent_upstream();
        // The connection is picked before joining: a leader must be able to send at once.
        let conn = self.pick_shared().await;
        let landing = match cache.join(group, &key, Some(self.output.out.meter())) {
            Join::Follower(rx) => {
                // The read joined is on another connection: a later write of this session to
                // the key must not overtake it (`Session::after_joined_reads`).
                self.joined.joined(group);
                self.output.link.dispatched();
                self.queue_reply(rx, After::Nothing);
                return;
            }
            Join::Leader(landing) => landing,
        };
        // The read goes upstream as the client sent it.
        let wire = self.wire(args);
        let fill = conn.begin_fill(|tag| cache.begin(group, tag, key));
        let (to_client, rx) = reply::reply_channel(Some(self.output.out.meter()));
        let mut miss = Miss::new(cache, landing, fill, to_client);
        let bytes = if miss.needs_pttl() {
            // The PTTL right after the read, in the same request, so that Redis (and MONITOR)
            // sees the client's command first; a write between the two invalidates the key,
            // voiding the fill.
            let pttl = [&b"PTTL"[..], &group[..]];
            let buf = &mut self.encode_buf;
            buf.reserve(wire.len() + resp::encode_command_len(&pttl));
            buf.extend_from_slice(&wire);
            resp::encode_command(&pttl, buf);
            buf.split().freeze()
        } else {
            wire
        };
        conn.call_each(bytes, miss.replies(), move |i, result| {
            miss.reply(i, result)
        });
        self.output.link.dispatched();
        self.queue_reply(rx, After::Nothing);
    }

    /// MGET: every key is looked up on its own; the keys that miss are fetched with one MGET
    /// (followed by the PTTL of each not known to have no expiry), cached one by one, and
    /// merged with the hits in the asked order.
    pub(super) async fn cached_mget(&mut self, args: &[Bytes]) {
        let cache = match &self.ctx.cache {
            _ if self.cache_part().is_none() => return self.uncached_user(args).await,
            Some(c) if !self.output.link.writes.hold_back(&args[1..]) => c.clone(),
            _ => return self.read_through(args).await,
        };
        let keys = &args[1..];
        let mut items = std::mem::take(&mut self.mget_items);
        let mut misses = Vec::new();
        let mut looked_up = 0;
        let form = mget_form(self.proto, self.cache_part().unwrap_or(0));
        // One clock reading for every key, as Redis judges a command's keys at its start.
        let now = cache.now();
        if let Some(direct) = self.output.direct() {
            match mget_into(
                direct,
                &mut self.encode_buf,
                &cache,
                form,
                now,
                keys,
                &mut items,
                &mut misses,
            ) {
                None => {
                    self.stamp.mark(Outcome::Hit);
                    self.output.answered = Some(false);
                    self.mget_items = items;
                    return;
                }
                Some(n) => looked_up = n,
            }
        }
        for (i, key) in keys.iter().enumerate().skip(looked_up) {
            let entry = [&b"MGET"[..], &key[..]];
            match cache.read_at(form, &entry, &mut self.encode_buf, now) {
                Read::Hit(hit) => items.push(Some(hit)),
                Read::Miss(entry_key) => {
                    items.push(None);
                    misses.push((i, entry_key));
                }
            }
        }
        if misses.is_empty() {
            self.stamp.mark(Outcome::Hit);
            self.output.reply_array(&items);
            items.clear();
            self.mget_items = items;
            return;
        }
        self.stamp.mark(Outcome::Miss);
        self.stamp.sent_upstream();
        let conn = self.pick_shared().await;
        let meter = self.output.out.meter().clone();
        let rx = self.fetch_missing(&cache, &conn, keys, items, &misses, Some(&meter));
        self.output.link.dispatched();
        self.queue_reply(rx, After::Nothing);
    }

    /// Fetches the keys of an MGET that missed (`misses`: their places in `keys` and their
    /// entry keys; `items` has the hits, `None` at those places) with one MGET on `conn`,
    /// followed in the same request by the PTTL of each not known to have no expiry (one
    /// completion for all their replies, `cachelayer::complete::Fetch`), and has each cached
    /// when its PTTL (or the MGET, for those) returns. The receiver gets the whole array: hits
    /// and fetched values in `keys`' order (or the error Redis answered), charged to `meter`.
    pub(super) fn fetch_missing(
        &mut self,
        cache: &Arc<CacheLayer>,
        conn: &ConnHandle,
        keys: &[Bytes],
        items: Vec<Option<Bytes>>,
        misses: &[(usize, Bytes)],
        meter: Option<&Arc<OutMeter>>,
    ) -> ReplyRx {
        let begun = conn.begin_fill(|tag| {
            let begin =
                |(i, entry_key): &(usize, Bytes)| cache.begin(&keys[*i], tag, entry_key.clone());
            misses.iter().map(begin).collect::<Vec<_>>()
        });
        let asked: Vec<usize> = misses.iter().map(|(i, _)| *i).collect();
        let (to_client, rx) = reply::reply_channel(meter);
        // Keys known to have no expiry are filled when the MGET's reply lands; the others
        // after their PTTL, each right after the MGET in the same request (see `cached_miss`).
        let mut fetch = Fetch::new(cache.clone(), items, asked, begun, to_client);
        let mut missing = smallvec::SmallVec::<[&[u8]; 16]>::new();
        missing.push(b"MGET");
        missing.extend(misses.iter().map(|(i, _)| &keys[*i][..]));
        resp::encode_command(&missing, &mut self.encode_buf);
        for n in fetch.pttls() {
            resp::encode_command(&[&b"PTTL"[..], missing[n + 1]], &mut self.encode_buf);
        }
        let bytes = self.encode_buf.split().freeze();
        conn.call_each(bytes, fetch.replies(), move |i, result| {
            fetch.reply(i, result)
        });
        rx
    }
}

/// An MGET whose keys all hit, answered straight into `direct`, the bytes the reader writes at
/// the end of this read: `None`. If a key misses, nothing stays written: the keys looked up so
/// far are in `items` and `misses` as the general path would have put them, and their count
/// is returned, so that no key is looked up (and counted) twice. Every key is looked up at
/// `now`, the command's one clock reading.
#[allow(clippy::too_many_arguments)]
fn mget_into(
    direct: &mut BytesMut,
    encode_buf: &mut BytesMut,
    cache: &CacheLayer,
    form: Form,
    now: u64,
    keys: &[Bytes],
    items: &mut Vec<Option<Bytes>>,
    misses: &mut Vec<(usize, Bytes)>,
) -> Option<usize> {
    let at = direct.len();
    resp::header(direct, b'*', keys.len());
    let first = direct.len();
    let mut ends: smallvec::SmallVec<[usize; 16]> = smallvec::SmallVec::new();
    for (i, key) in keys.iter().enumerate() {
        let entry = [&b"MGET"[..], &key[..]];
        let Some(entry_key) = cache.read_into_at(form, &entry, encode_buf, direct, now) else {
            ends.push(direct.len());
            continue;
        };
        // A miss: hand the hits so far over as items, then take back what was written.
        let mut start = first;
        for end in ends {
            items.push(Some(Bytes::copy_from_slice(&direct[start..end])));
            start = end;
        }
        items.push(None);
        misses.push((i, entry_key));
        direct.truncate(at);
        return Some(i + 1);
    }
    None
}

/// How an MGET's keys are named in entry keys: each is cached as `MGET key`.
pub(super) fn mget_form(proto: u8, part: u32) -> Form {
    Form {
        proto,
        code: Some(command::MGET_CODE),
        part,
    }
}
