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
