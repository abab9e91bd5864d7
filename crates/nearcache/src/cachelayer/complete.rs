//! Completing a read that went upstream: the fill with its expiry, the flight landed, the
//! reply handed on; and for MGET, the fetched elements merged with the hits in the asked order.
//!
//! Run by the upstream connection's task as it reads the reply, so it must be quick and never
//! block; followers are answered even if the leader's client has gone.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::oneshot;

use super::flights::Landing;
use super::{CacheLayer, Fill};
use crate::reply::{ReplyTx, UpstreamResult};

/// A fill waiting for its key's `PTTL` reply.
pub type PendingFill = (Fill, oneshot::Receiver<UpstreamResult>);

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
}
