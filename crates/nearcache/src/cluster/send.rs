//! Sending to a cluster's nodes and settling what they answer: a reply that is a redirect or
//! a "not now" is followed until a node gives the command's own reply ([`settle`]), and the
//! parts of a split or fanned-out command are sent together and merged ([`parts`]).
//!
//! - `MOVED`: the map is patched ([`Nodes::moved`]) and the command sent again to the new
//!   owner, up to [`MAX_REDIRECTS`] times;
//! - `ASK`: `ASKING` and the command, back to back on one dedicated connection of the target
//!   (a shared connection could let another client's command in between), once per `ASK`;
//! - `TRYAGAIN`, `CLUSTERDOWN`: sent again after a backoff (doubling from [`FIRST_BACKOFF`]),
//!   to the slot's master then, until [`RETRY_FOR`] has passed; then the client gets the error;
//! - a node that cannot be reached: the map is read again in the background, and the client
//!   gets the error (a read sent to a replica goes to the slot's master instead, once).
//!
//! Owns the retry policy. Never touches the cache (a command sent again here is never filled
//! from) nor a session; never holds a lock across an `.await` (`Nodes` locks only inside its
//! own calls).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp::Frame;
use tokio::time::Instant;

use super::keyless::Merge;
use super::merge::{merge_fanout, merge_split};
use super::nodes::Nodes;
use super::redirect::{ClusterError, NodeAddr};
use super::split::Split;
use crate::reply::{self, OutMeter, ReplyRx, UpstreamError, UpstreamResult};
use crate::upstream::{ConnHandle, Identity, Pool};

/// Redirects followed for one command: more means the nodes disagree for longer than a
/// migration's step takes, and the client is better told.
pub const MAX_REDIRECTS: usize = 5;
/// How long `TRYAGAIN`/`CLUSTERDOWN` are retried: a failover's usual detection and election
/// time is a few seconds; past this the client gets the node's error.
pub const RETRY_FOR: Duration = Duration::from_secs(2);
/// The first wait before sending again after `TRYAGAIN`/`CLUSTERDOWN`, doubled each time up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// The reply a slot no node serves gets (Redis's own words).
pub const SLOT_UNSERVED: &str = "CLUSTERDOWN Hash slot not served";

/// A command sent to a node, as it can be sent again.
pub struct Again {
    pub nodes: Arc<Nodes>,
    /// The command, encoded.
    pub bytes: Bytes,
    /// Its keys' slot, if it has keys.
    pub slot: Option<u16>,
    /// `host:port` of the node it was sent to.
    pub from: String,
    /// The protocol of the connections it goes on.
    pub proto: u8,
    /// The ACL identity the client acts as (`client_auth = passthrough`); `None`: the pool's
    /// user.
    pub who: Option<Arc<Identity>>,
    /// Sent to a replica (a cacheable read, `read_from = replica`): if the replica cannot be
    /// reached, the read goes to the slot's master (a read is safe to send twice).
    pub replica: bool,
}

/// A single-slot command's reply is settled by the session's writer when it comes
/// ([`crate::reply::Settle`]): no task runs for the replies that need nothing.
impl crate::reply::Settle for Again {
    fn needed(&self, first: &UpstreamResult) -> bool {
        match first {
            Ok(bytes) => ClusterError::from_reply(bytes).is_some(),
            Err(e) => unreachable(e),
        }
    }

    fn settle(
        self: Box<Self>,
        first: UpstreamResult,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = UpstreamResult> + Send>> {
        Box::pin(settle(first, *self))
    }
}

/// A node that could not be reached, or whose connection broke or was closed under the
/// command (a killed node's socket reads as closed): the map may be out of date.
fn unreachable(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::Unavailable { .. }
            | UpstreamError::Lost { .. }
            | UpstreamError::Closed { .. }
    )
}

/// `result` if it is the command's own reply; else what following its redirect (or retrying
/// it) gives.
pub async fn settle(mut result: UpstreamResult, mut again: Again) -> UpstreamResult {
    let deadline = Instant::now() + RETRY_FOR;
    let (mut redirects, mut backoff) = (0, FIRST_BACKOFF);
    loop {
        let err = match &result {
            Ok(bytes) => match ClusterError::from_reply(bytes) {
                Some(e) => e,
                None => return result,
            },
            Err(e) => {
                let unreachable = unreachable(e);
                if unreachable {
                    again.nodes.refresh_soon();
                }
                let master = (unreachable && again.replica)
                    .then(|| again.slot.and_then(|s| again.nodes.for_slot(s)))
                    .flatten();
                let Some((addr, pool)) = master else {
                    return result;
                };
                again.replica = false;
                result = call(&pool, &again).await;
                again.from = addr;
                continue;
            }
        };
        match err {
            ClusterError::Moved { slot, addr } if redirects < MAX_REDIRECTS => {
                redirects += 1;
                let to = again.nodes.moved(slot, &addr, &again.from);
                result = call(&again.nodes.pool_at(&to), &again).await;
                again.from = to;
            }
            ClusterError::Ask { addr, .. } if redirects < MAX_REDIRECTS => {
                redirects += 1;
                let to = addr.resolve(&host_of(&again.from));
                result = asking(&again.nodes.pool_at(&to), &again).await;
                again.from = to;
            }
            e if e.retry_later() && Instant::now() + backoff < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if let Some((addr, _)) = again.slot.and_then(|s| again.nodes.for_slot(s)) {
                    again.from = addr;
                }
                result = call(&again.nodes.pool_at(&again.from), &again).await;
            }
            _ => return result,
        }
    }
}

fn host_of(addr: &str) -> String {
    NodeAddr::parse(addr).map(|a| a.host).unwrap_or_default()
}

async fn call(pool: &Pool, again: &Again) -> UpstreamResult {
    let rx = shared_as(pool, again.who.as_deref(), again.proto).call(again.bytes.clone());
    rx.await.unwrap_or_else(|_| Err(reply::dropped()))
}

/// A shared connection of `pool` (a node's) acting as `who`: the identity of the same user
/// and password on that node, with connections of its own unless it is the pool's user.
pub fn shared_as(pool: &Pool, who: Option<&Identity>, proto: u8) -> ConnHandle {
    match who {
        Some(id) if !id.is_pool_user() => {
            pool.shared_as(&pool.identities().get(&id.user, id.password()), proto)
        }
        _ => pool.shared(proto),
    }
}

/// `ASKING` then the command on one connection nobody else writes to, logged in as the
/// client's user first if that is not the pool's.
async fn asking(pool: &Pool, again: &Again) -> UpstreamResult {
    let conn = pool.dedicated(again.proto).await?;
    if let Some(id) = again.who.as_ref().filter(|id| !id.is_pool_user()) {
        if let Err(refused) = id.log_in(&conn).await {
            pool.discard(conn);
            return Ok(refused);
        }
    }
    let ask = conn.call(Bytes::from_static(b"*1\r\n$6\r\nASKING\r\n"));
    let rx = conn.call(again.bytes.clone());
    let asked = ask.await.unwrap_or_else(|_| Err(reply::dropped()));
    let result = rx.await.unwrap_or_else(|_| Err(reply::dropped()));
    match asked {
        Ok(_) => pool.release(conn),
        Err(_) => pool.discard(conn),
    }
    result
}

/// One command of several sent at once (a split's part, a fan-out's node).
pub struct Sent {
    again: Again,
    /// `None`: no node serves its slot.
    rx: Option<ReplyRx>,
}

impl Sent {
    /// A part sent on the caller's own terms (`rx` its first reply; `None`: no node serves its
    /// slot), settled and merged by [`parts`] like the others.
    pub fn new(again: Again, rx: Option<ReplyRx>) -> Sent {
        Sent { again, rx }
    }
}

/// Sends `bytes` to the master of `slot` (or the node at `to`) as `who`, now.
pub fn send(
    nodes: &Arc<Nodes>,
    bytes: Bytes,
    slot: Option<u16>,
    to: Option<(String, Arc<Pool>)>,
    (proto, who): (u8, Option<&Arc<Identity>>),
) -> Sent {
    let to = to.or_else(|| slot.and_then(|s| nodes.for_slot(s)));
    let (from, rx) = match to {
        Some((addr, pool)) => {
            let conn = shared_as(&pool, who.map(|id| &**id), proto);
            (addr, Some(conn.call(bytes.clone())))
        }
        None => (String::new(), None),
    };
    Sent {
        again: Again {
            nodes: nodes.clone(),
            bytes,
            slot,
            from,
            proto,
            who: who.cloned(),
            replica: false,
        },
        rx,
    }
}

/// How the parts' replies make the client's.
pub enum Join {
    Split(Split),
    Fanout(Merge),
    /// One master's `SCAN` reply, its cursor made the client's: the master's place among
    /// how many.
    Scan(usize, usize),
}

/// The client's reply from parts already sent (so they travel in parallel), each settled,
/// then merged; charged to `meter`.
pub fn parts(sent: Vec<Sent>, join: Join, meter: &Arc<OutMeter>) -> ReplyRx {
    let (tx, out) = reply::reply_channel(Some(meter));
    tokio::spawn(async move {
        let mut replies = Vec::with_capacity(sent.len());
        for Sent { again, rx } in sent {
            let result = match rx {
                Some(rx) => {
                    let first = rx.await.unwrap_or_else(|_| Err(reply::dropped()));
                    settle(first, again).await
                }
                None => Ok(reply::error(SLOT_UNSERVED)),
            };
            replies.push(frame_of(result));
        }
        let merged = match join {
            Join::Split(split) => merge_split(&split, replies),
            Join::Fanout(merge) => merge_fanout(merge, replies),
            Join::Scan(place, masters) => match replies.pop() {
                Some(reply) => super::scan::rewrite(reply, place, masters),
                None => Frame::error(SLOT_UNSERVED),
            },
        };
        let mut buf = BytesMut::new();
        resp::encode(&merged, &mut buf);
        tx.send(Ok(buf.freeze()));
    });
    out
}

/// A node's reply (or why there is none) as a frame; one that does not parse is an error.
fn frame_of(result: UpstreamResult) -> Frame {
    let bytes = match result {
        Ok(b) => b,
        Err(e) => e.to_frame(),
    };
    let mut buf = BytesMut::from(&bytes[..]);
    match resp::parse_frame(&mut buf, &resp::Limits::default()) {
        Ok(Some(f)) => f,
        _ => Frame::error("ERR nearcache: unreadable reply from a cluster node"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_whose_connection_closed_under_a_command_counts_as_unreachable() {
        let addr = "127.0.0.1:1".to_string();
        let cause = "x".to_string();
        // A killed node's socket reads as closed when the command was already queued on it:
        // a replica's read must then go to the master, as when it was refused.
        assert!(unreachable(&UpstreamError::Closed { addr: addr.clone() }));
        assert!(unreachable(&UpstreamError::Lost {
            addr: addr.clone(),
            cause: cause.clone()
        }));
        assert!(unreachable(&UpstreamError::Unavailable {
            addr: addr.clone(),
            cause: cause.clone()
        }));
        // A node that answered with garbage or too late was reached: sending again could run
        // the command twice for nothing.
        assert!(!unreachable(&UpstreamError::Timeout {
            addr: addr.clone(),
            after_ms: 1
        }));
        assert!(!unreachable(&UpstreamError::Protocol { addr, cause }));
    }
}
