//! A connection's task while its socket is up, in three parts that run concurrently: the
//! writer, which batches queued requests into socket writes; the reader, which matches each
//! reply to the oldest request; and the retirement, which drains a connection the pool
//! replaced. Whichever ends first ends the connection, and every request still waiting fails.
//!
//! Owns the socket for one connection attempt. Never awaits anything but the socket, its
//! request queue and its timers: a slow caller cannot stall it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use resp::Frame;
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

use super::queue::{self, Receiver, Sender};
use super::{close_relay, fail, ConnState, Due, Expect, Inline, Request};
use crate::bufs::Gather;
use crate::reply::{Outbound, Outbox, UpstreamError};
use crate::upstream::stream::{ReadHalf, Stream, WriteHalf};

/// How many bytes of queued requests are coalesced into one socket write.
const WRITE_BATCH: usize = 256 * 1024;
/// A retired connection keeps serving this long for requests already on their way to it.
const RETIRE_GRACE: Duration = Duration::from_millis(100);
/// A retired connection waits at most this long for its last replies.
const RETIRE_DRAIN: Duration = Duration::from_secs(10);

/// How a connection's service ended.
pub(super) enum Ended {
    /// Every handle is gone.
    Dropped,
    /// Replaced by the pool, after its last replies came in.
    Retired,
    Failed(UpstreamError),
}

/// Runs one established connection until it fails, is retired, or every handle is gone.
/// Requests that were written but not answered are failed before returning.
pub(super) async fn serve(
    stream: Stream,
    rx: &mut Receiver<Request>,
    state: &ConnState,
    timeout: Option<Duration>,
) -> Ended {
    let (mut rd, wr) = stream.into_split();
    let wr = Arc::new(wr);
    // Expectations, handed to the reader in the order their requests are written, by the
    // writer and by a dedicated connection's session writing inline.
    let (expected, incoming) = queue::queue();
    state.set_inline(Some(Inline {
        wr: wr.clone(),
        due: expected.clone(),
    }));
    let mut waiting = Waiting {
        incoming,
        queue: VecDeque::new(),
        relay: None,
    };
    let ended = tokio::select! {
        e = write_requests(&wr, rx, &expected, state, timeout) => e,
        e = read_replies(&mut rd, &mut waiting, state, timeout) => Ended::Failed(e),
        () = retired(state) => Ended::Retired,
    };
    state.set_inline(None);
    let err = match &ended {
        Ended::Failed(e) => e.clone(),
        Ended::Dropped | Ended::Retired => lost(state, "connection closed".into()),
    };
    waiting.fail_all(&err, state);
    ended
}

fn lost(state: &ConnState, cause: String) -> UpstreamError {
    UpstreamError::Lost {
        addr: state.addr.clone(),
        cause,
    }
}

/// The writer: takes requests off the queue, hands each expectation to the reader before its
/// bytes leave, and writes whatever is queued in one (vectored) write: short requests copied
/// together, longer ones from their own buffers (`bufs::Gather`). Ends when every handle is
/// gone or a write fails.
async fn write_requests(
    wr: &WriteHalf,
    rx: &mut Receiver<Request>,
    expected: &Sender<Due>,
    state: &ConnState,
    timeout: Option<Duration>,
) -> Ended {
    let mut out = Gather::with_capacity(16 * 1024);
    loop {
        let Some(req) = rx.recv().await else {
            return Ended::Dropped;
        };
        // The clock is read only when a timeout applies (not on the hot path otherwise).
        let now = timeout.map(|_| Instant::now());
        let mut batch = Some(req);
        let mut items = 0;
        while let Some(req) = batch.take() {
            items += 1;
            let Request {
                bytes,
                expect,
                timed,
            } = req;
            // The expectation is queued before the bytes leave, so the reader finds it (the
            // rest of a request its session began to write has queued its own).
            if !matches!(expect, Expect::Written) {
                let deadline = timeout.zip(now).filter(|_| timed).map(|(t, now)| now + t);
                if let Err(due) = expected.send(Due { expect, deadline }) {
                    // The reader is gone (it ended the connection): fail the request now.
                    fail(due.expect, &lost(state, "connection closed".into()), state);
                    continue;
                }
            }
            out.push(bytes);
            if !out.is_full(WRITE_BATCH) {
                batch = rx.try_recv();
            }
        }
        if let Err(e) = out.write_to(wr).await {
            return Ended::Failed(lost(state, e.to_string()));
        }
        state.written(items);
    }
}

/// The reader: measures each reply frame and delivers it, and fails the connection when the
/// oldest timed request is overdue. Returns why it stopped.
async fn read_replies(
    rd: &mut ReadHalf,
    waiting: &mut Waiting,
    state: &ConnState,
    timeout: Option<Duration>,
) -> UpstreamError {
    // Whatever Redis sends is forwarded: no depth, length or count limit on a reply.
    let limits = resp::Limits::UNBOUNDED;
    let mut buf = crate::bufs::ReadBuf::with_capacity(16 * 1024);
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let timer = tokio::time::sleep_until(far);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        waiting.take_new();
        // Replies come in order, so the oldest timed request is the one to watch.
        let next = waiting.queue.iter().find_map(|d| d.deadline);
        if next != armed {
            armed = next;
            let at = next.map_or(far, tokio::time::Instant::from_std);
            timer.as_mut().reset(at);
        }
        tokio::select! {
            r = rd.read_buf(&mut *buf) => match r {
                Ok(0) => return UpstreamError::Closed { addr: state.addr.clone() },
                Ok(_) => {}
                Err(e) => return lost(state, e.to_string()),
            },
            () = &mut timer, if armed.is_some() => {
                let after_ms = timeout.map_or(0, |t| t.as_millis() as u64);
                warn!(upstream = %state.addr, after_ms, "upstream reply timed out; retiring the connection");
                return UpstreamError::Timeout { addr: state.addr.clone(), after_ms };
            }
            () = waiting.incoming.arrived(), if armed.is_none() && timeout.is_some() => continue,
        }
        loop {
            let len = match resp::scan(&buf, &limits) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    return UpstreamError::Protocol {
                        addr: state.addr.clone(),
                        cause: e.to_string(),
                    }
                }
            };
            let frame = buf.split_to(len).freeze();
            if let Err(e) = waiting.deliver(frame, state) {
                return e;
            }
        }
        let wanted = resp::announced(&buf);
        buf.make_room_for(wanted);
    }
}

/// The retirement: resolves once the pool retired the connection and its last replies are in
/// (or have had long enough to come).
async fn retired(state: &ConnState) {
    state.retire.notified().await;
    // Sessions stop picking a retiring connection at once, but one that picked it a moment
    // ago may still be sending.
    tokio::time::sleep(RETIRE_GRACE).await;
    let deadline = tokio::time::Instant::now() + RETIRE_DRAIN;
    while state.inflight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a push is Redis saying that this connection's tracking redirect target is gone
/// (`>2 tracking-redir-broken <id>`). Judged by the push's first element, as Redis names its
/// pushes, never by the bytes anywhere in it: a key of that name in another push says nothing
/// about the redirect. Pushes are rare on a data connection, so parsing one costs nothing.
fn is_redir_broken(push: &[u8]) -> bool {
    let mut buf = BytesMut::from(push);
    let Ok(Some(Frame::Push(items))) = resp::parse_frame(&mut buf, &resp::Limits::default()) else {
        return false;
    };
    matches!(items.first(), Some(Frame::Bulk(kind) | Frame::Simple(kind))
        if kind.as_ref() == b"tracking-redir-broken")
}

/// Redis's refusals of a connection it has just accepted (then closes), which a connection
/// opened without a handshake meets as the reply to its first command.
const REFUSALS: [&[u8]; 2] = [b"-ERR max number of clients reached", b"-DENIED "];

/// The first frame on a connection opened without a handshake: a refusal fails the connection
/// (and what waits on it) as a failed handshake would.
fn refused(frame: &[u8], state: &ConnState) -> Result<(), UpstreamError> {
    if !REFUSALS.iter().any(|r| frame.starts_with(r)) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&frame[1..]).trim_end().to_string();
    Err(UpstreamError::Unavailable {
        addr: state.addr.clone(),
        cause: format!("handshake rejected: {text}"),
    })
}

/// What the reader waits for: expectations the writer handed over, in the order their
/// requests were written, and the session every frame goes to once the connection relays.
pub(super) struct Waiting {
    incoming: Receiver<Due>,
    pub(super) queue: VecDeque<Due>,
    relay: Option<Outbox>,
}

impl Waiting {
    /// A reader's queue holding `queue` already, for tests that deliver frames by hand.
    #[cfg(test)]
    pub(super) fn holding(queue: impl IntoIterator<Item = Due>) -> Waiting {
        Waiting {
            incoming: queue::queue().1,
            queue: queue.into_iter().collect(),
            relay: None,
        }
    }

    fn take_new(&mut self) {
        self.incoming.take_into(&mut self.queue);
    }

    /// Routes one reply frame: to the relay sink, to a push consumer, or to the oldest request.
    pub(super) fn deliver(&mut self, frame: Bytes, state: &ConnState) -> Result<(), UpstreamError> {
        self.take_new();
        if state.unprobed.swap(false, Ordering::AcqRel) {
            refused(&frame, state)?;
        }
        if self.relay.is_none()
            && matches!(
                self.queue.front(),
                Some(Due {
                    expect: Expect::Relay(_),
                    ..
                })
            )
        {
            if let Some(Due {
                expect: Expect::Relay(sink),
                ..
            }) = self.queue.pop_front()
            {
                state.inflight.fetch_sub(1, Ordering::AcqRel);
                self.relay = Some(sink);
            }
        }
        if let Some(sink) = &self.relay {
            // Later relay requests only confirm the mode; every frame goes to the session, up
            // to the reply that ends the relay.
            while self
                .queue
                .front()
                .is_some_and(|d| !matches!(d.expect, Expect::EndRelay(..)))
            {
                self.queue.pop_front();
                state.inflight.fetch_sub(1, Ordering::AcqRel);
            }
            if let Some(Due {
                expect: Expect::EndRelay(last, _),
                ..
            }) = self.queue.front()
            {
                if *last == frame {
                    if let Some(Due {
                        expect: Expect::EndRelay(_, then),
                        ..
                    }) = self.queue.pop_front()
                    {
                        state.inflight.fetch_sub(1, Ordering::AcqRel);
                        self.relay = None;
                        then.run(Ok(frame));
                    }
                    return Ok(());
                }
            }
            sink.send(Outbound::Frame(frame));
            return Ok(());
        }
        if frame.first() == Some(&b'>') {
            // A RESP3 push on a matched connection is never a reply. The one that matters
            // here: Redis lost our redirect target, so invalidations for this connection's
            // reads are lost.
            if is_redir_broken(&frame) {
                warn!(upstream = %state.addr, "tracking redirect broken");
                state.tracking_lost();
            }
            if let Some(sink) = state.pushes() {
                // A client's own connection: its pushes (invalidations redirected to it,
                // say) are the client's.
                sink.send(Outbound::Frame(frame));
                return Ok(());
            }
            debug!(upstream = %state.addr, "push frame on a matched connection");
            return Ok(());
        }
        let Some(Due { expect, deadline }) = self.queue.pop_front() else {
            return Err(UpstreamError::Protocol {
                addr: state.addr.clone(),
                cause: "reply without a request".into(),
            });
        };
        match expect {
            Expect::Track(epoch) => {
                state.inflight.fetch_sub(1, Ordering::AcqRel);
                if frame.starts_with(b"+OK") {
                    state.tracking_epoch.store(epoch, Ordering::Release);
                } else {
                    // Refused (the redirect target is gone, say): Redis keeps whatever tracking
                    // the connection had, pointing at a client that no longer listens. Nothing
                    // it read is protected, exactly as if it had closed.
                    warn!(upstream = %state.addr, reply = %String::from_utf8_lossy(&frame).trim_end(), "CLIENT TRACKING refused; the connection fills nothing until tracking is re-pointed");
                    state.tracking_lost();
                }
                Ok(())
            }
            Expect::One(tx) => {
                state.inflight.fetch_sub(1, Ordering::AcqRel);
                tx.send(Ok(frame));
                Ok(())
            }
            Expect::Then(then) => {
                state.inflight.fetch_sub(1, Ordering::AcqRel);
                then.run(Ok(frame));
                Ok(())
            }
            // Taken above before any frame is examined; kept total rather than panicking.
            Expect::Relay(sink) => {
                state.inflight.fetch_sub(1, Ordering::AcqRel);
                sink.send(Outbound::Frame(frame));
                self.relay = Some(sink);
                Ok(())
            }
            // Never queued for the reader (it carries bytes only); kept total.
            Expect::Written => Ok(()),
            // Not relaying (any more): the reply is the one awaited.
            Expect::EndRelay(_, then) => {
                state.inflight.fetch_sub(1, Ordering::AcqRel);
                then.run(Ok(frame));
                Ok(())
            }
            Expect::Each(mut replies) => {
                if replies.run(Ok(frame)) {
                    state.inflight.fetch_sub(1, Ordering::AcqRel);
                } else {
                    // More replies owed: it stays the oldest request, under the same deadline.
                    let expect = Expect::Each(replies);
                    self.queue.push_front(Due { expect, deadline });
                }
                Ok(())
            }
        }
    }

    /// The connection is gone: every request still waiting fails with `err`, and a relayed
    /// session is told and closed.
    pub(super) fn fail_all(mut self, err: &UpstreamError, state: &ConnState) {
        self.incoming.close();
        self.incoming.take_into(&mut self.queue);
        for due in self.queue.drain(..) {
            fail(due.expect, err, state);
        }
        if let Some(sink) = self.relay {
            close_relay(&sink, err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::conn::tests::tracked_conn;

    #[test]
    fn a_refused_tracking_redirect_is_a_lost_connection() {
        let (conn, _rx, tracking, sink) = tracked_conn();
        let tag = conn.fill_tag().unwrap();
        // The invalidation connection came back as client 43, and went again before this
        // connection's CLIENT TRACKING reached Redis.
        let epoch = tracking.up(43);
        let mut waiting = Waiting {
            incoming: queue::queue().1,
            queue: VecDeque::from([Due {
                expect: Expect::Track(epoch),
                deadline: None,
            }]),
            relay: None,
        };
        conn.state.inflight.fetch_add(1, Ordering::AcqRel);
        let refusal =
            Bytes::from_static(b"-ERR The client ID you want redirect to does not exist\r\n");
        waiting.deliver(refusal, &conn.state).unwrap();
        assert_eq!(
            conn.fill_tag(),
            None,
            "fills through a connection nobody tracks"
        );
        assert_eq!(*sink.lost.lock().unwrap(), [tag], "its entries dropped");
    }

    #[test]
    fn only_a_push_named_tracking_redir_broken_is_one() {
        assert!(is_redir_broken(
            b">2\r\n$21\r\ntracking-redir-broken\r\n:7\r\n"
        ));
        assert!(is_redir_broken(b">2\r\n+tracking-redir-broken\r\n:7\r\n"));
        // The same bytes as a key, a channel, a message or a reply are not.
        for other in [
            &b">2\r\n$10\r\ninvalidate\r\n*1\r\n$21\r\ntracking-redir-broken\r\n"[..],
            b">3\r\n$7\r\nmessage\r\n$21\r\ntracking-redir-broken\r\n$1\r\nx\r\n",
            b"*2\r\n$21\r\ntracking-redir-broken\r\n:7\r\n",
            b"$21\r\ntracking-redir-broken\r\n",
            b">1\r\n$21\r\ntracking-redir-broke",
        ] {
            assert!(
                !is_redir_broken(other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
