//! Completing a miss's request to Redis, reply by reply, on the upstream connection's task as
//! it reads them: the read's reply lands its flight (answering the misses that joined it) and
//! goes to the leader's client at once; the `PTTL` of each key, sent after the read in the same
//! request, completes that key's fill with the value the read brought. A single read is a
//! [`Miss`], an MGET of the keys that missed a [`Fetch`]; each is the one completion of its
//! request ([`crate::upstream::ConnHandle::call_each`]) and keeps the values between the read's
//! reply and the `PTTL`s' itself.
//!
//! Owns what a miss keeps between its replies. Never waits (it runs on the connection's task,
//! which must not stall), and never fills an entry with a reply other than its own key's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::{join_array, split_array, CacheLayer, Fill, Known, Landing};
use crate::reply::{ReplyTx, UpstreamResult};

/// A leader's single read sent upstream, followed in the same request by its key's `PTTL`
/// when its fill needs one ([`Miss::needs_pttl`]).
pub struct Miss {
    cache: Arc<CacheLayer>,
    /// The flight to land and the client to answer, until the read's reply is in.
    answer: Option<(Landing, ReplyTx)>,
    /// `None` when the connection's tracking protects no fill.
    fill: Option<Fill>,
    /// What shows the key has no expiry: then no `PTTL` follows, and the fill completes with
    /// the read's reply.
    known: Option<Known>,
    /// The read's reply, kept for the fill until the `PTTL`'s comes.
    value: Option<Bytes>,
}

impl Miss {
    /// A miss that `landing` leads, whose reply goes to `to_client`, filled through `fill`
    /// (begun before this is made).
    pub fn new(
        cache: Arc<CacheLayer>,
        landing: Landing,
        fill: Option<Fill>,
        to_client: ReplyTx,
    ) -> Miss {
        let known = fill.as_ref().and_then(|f| cache.untimed(f));
        if known.is_some() {
            cache.pttl_skipped.fetch_add(1, Ordering::Relaxed);
        }
        Miss {
            cache,
            answer: Some((landing, to_client)),
            fill,
            known,
            value: None,
        }
    }

    /// Whether the read must be followed by a `PTTL` of its key: it is filled, and its key is
    /// not known to have no expiry.
    pub fn needs_pttl(&self) -> bool {
        self.fill.is_some() && self.known.is_none()
    }

    /// The replies the request brings: the read's, and the `PTTL`'s if it has one.
    pub fn replies(&self) -> usize {
        1 + usize::from(self.needs_pttl())
    }

    /// The `index`th reply of the request (or why there is none).
    pub fn reply(&mut self, index: usize, result: UpstreamResult) {
        if index > 0 {
            if let (Some(fill), Some(value), Ok(pttl)) =
                (self.fill.take(), self.value.take(), result)
            {
                self.cache.complete(fill, &value, &pttl);
            }
            return;
        }
        let Some((landing, to_client)) = self.answer.take() else {
            return;
        };
        let value = match (&self.fill, &result) {
            (Some(_), Ok(value)) => Some(value.clone()),
            _ => None,
        };
        self.cache.land(landing, &result);
        to_client.send(result);
        match (self.known, value) {
            (Some(known), Some(value)) => {
                if let Some(fill) = self.fill.take() {
                    self.cache.complete_untimed(fill, &value, &known);
                }
            }
            (None, value) => self.value = value,
            (Some(_), None) => {}
        }
    }
}

/// The keys of a client's MGET that missed, fetched with one MGET followed in the same request
/// by the `PTTL` of each key whose fill needs one ([`Fetch::pttls`]); the client gets the hits
/// and the fetched values merged in its order.
pub struct Fetch {
    cache: Arc<CacheLayer>,
    /// The client's reply in the making: the hits, `None` at the places of the keys fetched
    /// (`asked`, in the order they are fetched), and where it goes; until the MGET's reply.
    answer: Option<(Vec<Option<Bytes>>, Vec<usize>, ReplyTx)>,
    /// Fills of keys known to have no expiry, completed with the MGET's reply: each with its
    /// key's place among those fetched.
    untimed: Vec<(usize, Fill, Known)>,
    /// Fills completed by a `PTTL` each, in the order the `PTTL`s follow the MGET.
    timed: Vec<Option<(usize, Fill)>>,
    /// The values fetched, kept for the timed fills.
    values: Vec<Bytes>,
}

impl Fetch {
    /// A fetch of the keys at `asked` (places in `items`, which has the hits), answering
    /// `to_client`, filled through `fills` (one per key asked, begun before this is made), or
    /// through none.
    pub fn new(
        cache: Arc<CacheLayer>,
        items: Vec<Option<Bytes>>,
        asked: Vec<usize>,
        fills: Option<Vec<Fill>>,
        to_client: ReplyTx,
    ) -> Fetch {
        let (mut untimed, mut timed) = (Vec::new(), Vec::new());
        for (n, fill) in fills.into_iter().flatten().enumerate() {
            match cache.untimed(&fill) {
                Some(known) => untimed.push((n, fill, known)),
                None => timed.push(Some((n, fill))),
            }
        }
        cache
            .pttl_skipped
            .fetch_add(untimed.len() as u64, Ordering::Relaxed);
        Fetch {
            cache,
            answer: Some((items, asked, to_client)),
            untimed,
            timed,
            values: Vec::new(),
        }
    }

    /// The keys whose `PTTL` must follow the MGET, in order: their places among those fetched.
    pub fn pttls(&self) -> impl Iterator<Item = usize> + '_ {
        self.timed.iter().flatten().map(|(n, _)| *n)
    }

    /// The replies the request brings: the MGET's, and one per `PTTL`.
    pub fn replies(&self) -> usize {
        1 + self.timed.len()
    }

    /// The `index`th reply of the request (or why there is none).
    pub fn reply(&mut self, index: usize, result: UpstreamResult) {
        if index > 0 {
            let timed = self.timed.get_mut(index - 1).and_then(Option::take);
            if let (Some((n, fill)), Ok(pttl)) = (timed, result) {
                if let Some(value) = self.values.get(n) {
                    self.cache.complete(fill, value, &pttl);
                }
            }
            return;
        }
        let Some((items, asked, to_client)) = self.answer.take() else {
            return;
        };
        self.values = complete_mget(items, asked, result, to_client).unwrap_or_default();
        for (n, fill, known) in std::mem::take(&mut self.untimed) {
            if let Some(value) = self.values.get(n) {
                self.cache.complete_untimed(fill, value, &known);
            }
        }
    }
}

/// Answers the client of an MGET whose keys at `asked` (places in `items`, which has the hits)
/// were fetched with `result`: the whole array, hits and fetched elements in the asked order,
/// or, if Redis answered an error (or an unexpected shape), that reply as it is. Returns the
/// fetched elements, for the fills.
fn complete_mget(
    mut items: Vec<Option<Bytes>>,
    asked: Vec<usize>,
    result: UpstreamResult,
    to_client: ReplyTx,
) -> Option<Vec<Bytes>> {
    let fetched = match &result {
        Ok(bytes) => split_array(bytes).filter(|f| f.len() == asked.len()),
        Err(_) => None,
    };
    let Some(fetched) = fetched else {
        to_client.send(result);
        return None;
    };
    for (&i, elem) in asked.iter().zip(&fetched) {
        items[i] = Some(elem.clone());
    }
    let all: Option<Vec<Bytes>> = items.into_iter().collect();
    let reply = match all {
        Some(all) => Ok(join_array(&all)),
        None => result,
    };
    to_client.send(reply);
    Some(fetched)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::cachelayer::{CacheRules, Form, Join, Read};
    use crate::obs::metrics::Metrics;
    use crate::reply::{self, ReplyRx};

    fn layer() -> Arc<CacheLayer> {
        let metrics = Arc::new(Metrics::default());
        let rules = CacheRules::default();
        Arc::new(CacheLayer::new(
            1 << 20,
            64,
            Default::default(),
            60_000,
            rules,
            metrics,
        ))
    }

    fn reply_of(rx: &mut ReplyRx) -> Option<Bytes> {
        rx.try_recv().ok().and_then(Result::ok)
    }

    const V: &[u8] = b"$1\r\nv\r\n";

    /// A leader's miss of `GET k` filled through tag 1, its entry key, its client's receiver
    /// and a follower's that joined it.
    fn miss_of_k(cache: &Arc<CacheLayer>) -> (Miss, Bytes, ReplyRx, ReplyRx) {
        let get = [Bytes::from_static(b"GET"), Bytes::from_static(b"k")];
        let Read::Miss(key) = cache.read(Form::of(2, b"GET"), &get, &mut BytesMut::new()) else {
            panic!("a hit in an empty cache");
        };
        let Join::Leader(landing) = cache.join(&get[1], &key, None) else {
            panic!("nobody reads k yet");
        };
        let Join::Follower(follower) = cache.join(&get[1], &key, None) else {
            panic!("the same read is in flight");
        };
        let fill = cache.begin(&get[1], 1, key.clone());
        let (tx, rx) = reply::reply_channel(None);
        let miss = Miss::new(cache.clone(), landing, Some(fill), tx);
        (miss, key, rx, follower)
    }

    #[test]
    fn a_miss_answers_with_the_read_and_fills_with_the_pttl() {
        let cache = layer();
        let (mut miss, key, mut rx, mut follower) = miss_of_k(&cache);
        assert!(miss.needs_pttl());
        assert_eq!(miss.replies(), 2);
        miss.reply(0, Ok(Bytes::from_static(V)));
        assert_eq!(reply_of(&mut rx).as_deref(), Some(V), "the client, at once");
        assert_eq!(reply_of(&mut follower).as_deref(), Some(V), "the follower");
        assert_eq!(cache.lookup(b"k", &key), None, "not filled before its PTTL");
        miss.reply(1, Ok(Bytes::from_static(b":-1\r\n")));
        assert_eq!(cache.lookup(b"k", &key).as_deref(), Some(V));

        // The key is now known to have no expiry: the next miss sends no PTTL, and fills with
        // its read.
        let get = [Bytes::from_static(b"GET"), Bytes::from_static(b"k")];
        let Join::Leader(landing) = cache.join(&get[1], &key, None) else {
            panic!("the first read landed");
        };
        let fill = cache.begin(&get[1], 1, key.clone());
        let (tx, _rx) = reply::reply_channel(None);
        let miss = Miss::new(cache.clone(), landing, Some(fill), tx);
        assert!(!miss.needs_pttl());
        assert_eq!(miss.replies(), 1);
    }

    #[test]
    fn a_miss_whose_pttl_fails_answers_and_fills_nothing() {
        let cache = layer();
        let (mut miss, key, mut rx, _follower) = miss_of_k(&cache);
        miss.reply(0, Ok(Bytes::from_static(V)));
        let lost = crate::reply::UpstreamError::Closed { addr: "x".into() };
        miss.reply(1, Err(lost));
        assert_eq!(reply_of(&mut rx).as_deref(), Some(V));
        assert_eq!(cache.lookup(b"k", &key), None);
    }

    #[test]
    fn a_fetch_answers_the_merged_array_and_fills_each_key_with_its_pttl() {
        let cache = layer();
        let form = Form {
            proto: 2,
            code: Some(crate::command::MGET_CODE),
            part: 0,
        };
        let keys = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        let mut entries = Vec::new();
        for k in &keys {
            let Read::Miss(e) = cache.read(form, &[&b"MGET"[..], k], &mut BytesMut::new()) else {
                panic!("a hit in an empty cache");
            };
            entries.push(e);
        }
        let hit = Bytes::from_static(b"$1\r\nh\r\n");
        let items = vec![None, Some(hit), None];
        let fills = keys.iter().zip(&entries);
        let fills = fills.map(|(k, e)| cache.begin(k, 1, e.clone())).collect();
        let (tx, mut rx) = reply::reply_channel(None);
        let mut fetch = Fetch::new(cache.clone(), items, vec![0, 2], Some(fills), tx);
        assert_eq!(fetch.pttls().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(fetch.replies(), 3);
        fetch.reply(0, Ok(Bytes::from_static(b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n")));
        let all = b"*3\r\n$1\r\nx\r\n$1\r\nh\r\n$1\r\ny\r\n";
        assert_eq!(reply_of(&mut rx).as_deref(), Some(&all[..]));
        fetch.reply(1, Ok(Bytes::from_static(b":5000\r\n")));
        assert_eq!(
            cache.lookup(b"a", &entries[0]).as_deref(),
            Some(&b"$1\r\nx\r\n"[..])
        );
        assert_eq!(cache.lookup(b"b", &entries[1]), None, "b's PTTL not in yet");
        fetch.reply(2, Ok(Bytes::from_static(b"-ERR no\r\n")));
        assert_eq!(cache.lookup(b"b", &entries[1]), None, "an error is no TTL");
    }
}
