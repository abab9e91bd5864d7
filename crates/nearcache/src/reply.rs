//! What flows from the upstream side back to a client session: replies, relayed frames, and
//! errors that say where they came from; and the session's output queue with its byte meter.
//!
//! Owns the hand-over between an upstream connection's task and a session's writer. Never
//! loses a reply silently: a reply dropped unsent reaches the writer as an error.

use atomic_waker::AtomicWaker;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Poll;

/// Why an upstream request failed. Every variant becomes an `-ERR nearcache: ...` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// No connection to Redis could be made (refused, timed out, handshake rejected).
    Unavailable { addr: String, cause: String },
    /// The connection broke after the request was sent; Redis may or may not have run it.
    Lost { addr: String, cause: String },
    /// Redis closed the connection cleanly (QUIT, CLIENT KILL, idle timeout, shutdown).
    Closed { addr: String },
    /// Redis sent bytes that are not RESP, or a reply nobody asked for.
    Protocol { addr: String, cause: String },
    /// No reply within `--upstream-timeout`; the connection was retired, since later replies
    /// could no longer be matched to their requests.
    Timeout { addr: String, after_ms: u64 },
}

impl UpstreamError {
    /// The connection broke or was closed (not a timeout or a refusal): on a client's
    /// dedicated connection, its session state is gone with it.
    pub fn ends_session(&self) -> bool {
        matches!(
            self,
            UpstreamError::Lost { .. } | UpstreamError::Closed { .. }
        )
    }

    /// The error as a RESP error reply.
    pub fn to_frame(&self) -> Bytes {
        let text = self.to_string().replace(['\r', '\n'], " ");
        let mut out = BytesMut::with_capacity(text.len() + 3);
        out.put_u8(b'-');
        out.put_slice(text.as_bytes());
        out.put_slice(b"\r\n");
        out.freeze()
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Unavailable { addr, cause } => {
                write!(f, "ERR nearcache: upstream {addr} unavailable: {cause}")
            }
            UpstreamError::Lost { addr, cause } => write!(
                f,
                "ERR nearcache: connection to upstream {addr} lost before the reply ({cause})"
            ),
            UpstreamError::Closed { addr } => {
                write!(f, "ERR nearcache: upstream {addr} closed the connection")
            }
            UpstreamError::Protocol { addr, cause } => {
                write!(
                    f,
                    "ERR nearcache: protocol error from upstream {addr}: {cause}"
                )
            }
            UpstreamError::Timeout { addr, after_ms } => write!(
                f,
                "ERR nearcache: upstream {addr} did not reply within {after_ms} ms"
            ),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// A reply as the raw bytes of one RESP frame, or why there is none.
pub type UpstreamResult = Result<Bytes, UpstreamError>;

/// What the writer does when a pending reply arrives, before the client sees it.
pub enum After {
    Nothing,
    /// Drop the entries of these Redis keys (a write): read-your-writes. The mark is the
    /// write's place in the session's writes in flight, released once the keys are dropped.
    Invalidate(crate::command::KeyList, WriteMark),
    /// Empty the cache (FLUSHALL, FLUSHDB, SWAPDB).
    FlushAll,
    /// Runs on the reply (`None`: an error of the proxy's) before the client has it, and may
    /// rewrite it (`SELECT` notes the client's db, `INFO` tells the proxy's clients, a blocking
    /// call is over); then the other effect.
    Patch(Box<After>, Patch),
}

/// A write's place in its session's writes in flight (`session/writes.rs`), which the writer
/// releases once the write's reply is in and its keys invalidated: until then, reads of those
/// keys (or, for [`WriteMark::Session`], every read of the session) bypass the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMark {
    /// The write's keys hold these slots (a bit each) of the session's key set.
    Keys(u16),
    /// Its keys are not known exactly, or did not fit: it holds back every read of the session.
    Session,
}

/// See [`After::Patch`].
pub type Patch = Box<dyn FnOnce(Option<Bytes>) -> Option<Bytes> + Send>;

/// What a reply may need before the client can have it: following it (a Redis Cluster node's
/// redirect, `cluster::send`) until it is the command's own. The session's writer asks it of
/// the reply when the reply comes, in the client's order, so that no task runs per command.
pub trait Settle: Send {
    /// Whether `first` is not the command's own reply yet.
    fn needed(&self, first: &UpstreamResult) -> bool;
    /// The command's own reply, from `first` (which [`Settle::needed`]).
    fn settle(
        self: Box<Self>,
        first: UpstreamResult,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = UpstreamResult> + Send>>;
}

/// One item in a session's ordered output queue.
pub enum Outbound {
    /// The reply to a command sent upstream, delivered when it arrives (settled first, if it
    /// must be), and the command's stamp (recorded as for [`Outbound::Done`] once the reply is
    /// queued for the client).
    Pending(
        ReplyRx,
        After,
        Option<crate::obs::stats::Stamp>,
        Option<Box<dyn Settle>>,
    ),
    /// Bytes ready to write: a local reply, or a frame relayed from a dedicated connection.
    Frame(Bytes),
    /// Write everything queued so far, then close the client connection.
    Close,
    /// The command before this item is answered: count it, and time it from its arrival.
    Done(crate::obs::stats::Stamp),
}

/// A session's output queue. Every byte held for the client (queued frames, replies the writer
/// has taken but not written) is counted against the client's output limit, whoever queued it:
/// the session, or a connection relaying pub/sub messages.
///
/// A queue of our own rather than a channel, for one thing a channel cannot do: take a pending
/// reply without waking the writer ([`Outbox::send_pending`]). The writer has nothing to do
/// with a reply until it arrives, and the reply's arrival wakes it ([`ReplyTx`]'s drop), so a
/// forwarded command wakes the writer once instead of twice.
pub struct Outbox {
    queue: Arc<Queue>,
    meter: Arc<OutMeter>,
}

struct Queue {
    items: Mutex<VecDeque<Outbound>>,
    /// Live [`Outbox`] handles: at 0 the writer sees the queue closed once it is drained.
    senders: AtomicUsize,
}

/// The writer's end of an [`Outbox`].
pub struct OutboxRx {
    queue: Arc<Queue>,
    meter: Arc<OutMeter>,
}

/// Why [`OutboxRx::try_recv`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Empty {
    /// Nothing queued now.
    Now,
    /// Nothing queued, and every sender is gone.
    Closed,
}

/// The count of bytes held for one client.
pub struct OutMeter {
    queued: AtomicUsize,
    limit: usize,
    over: AtomicBool,
    /// Wakes the writer waiting in [`OutMeter::overflowed`]: a waker, not a `Notify`, because
    /// that wait is polled each time the writer wakes, and a `Notify` locks to be polled.
    overflow: AtomicWaker,
    /// Wakes the writer when something is queued or a reply it waits for arrives.
    writer: AtomicWaker,
}

impl Outbox {
    /// A queue whose client is disconnected once more than `limit` bytes wait for it.
    pub fn new(limit: usize) -> (Outbox, OutboxRx) {
        let meter = Arc::new(OutMeter {
            queued: AtomicUsize::new(0),
            limit,
            over: AtomicBool::new(false),
            overflow: AtomicWaker::new(),
            writer: AtomicWaker::new(),
        });
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            senders: AtomicUsize::new(1),
        });
        let rx = OutboxRx {
            queue: queue.clone(),
            meter: meter.clone(),
        };
        (Outbox { queue, meter }, rx)
    }

    pub fn send(&self, item: Outbound) {
        if let Outbound::Frame(bytes) = &item {
            self.meter.charge(bytes.len());
        }
        self.push(item);
        self.meter.writer.wake();
    }

    /// Queues a pending reply without waking the writer: the reply wakes it when it arrives.
    /// The reply's sender must come from [`reply_channel`] with this queue's meter, or the
    /// writer may never learn that it arrived.
    pub fn send_pending(&self, item: Outbound) {
        let mut items = self.queue.items.lock().unwrap_or_else(|p| p.into_inner());
        items.push_back(item);
        // Looked at after the push, under the lock: a reply that arrived before the push found
        // nothing for the writer to take and must be announced here; one that arrives after it
        // is announced by its sender, and the writer, whose look at the queue is ordered with
        // this one by the lock, finds the item.
        let arrived = matches!(items.back(), Some(Outbound::Pending(rx, ..)) if !rx.is_empty());
        drop(items);
        if arrived {
            self.meter.writer.wake();
        }
    }

    fn push(&self, item: Outbound) {
        self.queue
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(item);
    }

    pub fn meter(&self) -> &Arc<OutMeter> {
        &self.meter
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.queue.senders.fetch_add(1, Ordering::AcqRel);
        Outbox {
            queue: self.queue.clone(),
            meter: self.meter.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.queue.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.meter.writer.wake();
        }
    }
}

impl OutboxRx {
    /// The next item, if one is queued.
    pub fn try_recv(&mut self) -> Result<Outbound, Empty> {
        Self::take(&self.queue)
    }

    fn take(queue: &Queue) -> Result<Outbound, Empty> {
        // Senders are counted before the queue is looked at: an item pushed by the last sender
        // before it left is then still found.
        let closed = queue.senders.load(Ordering::Acquire) == 0;
        let item = queue
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        match item {
            Some(item) => Ok(item),
            None if closed => Err(Empty::Closed),
            None => Err(Empty::Now),
        }
    }

    /// Waits for the next item; `None` once the queue is closed and drained.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let writer = &self.meter.writer;
        let queue = &self.queue;
        wait_with(writer, || match Self::take(queue) {
            Ok(item) => Some(Some(item)),
            Err(Empty::Closed) => Some(None),
            Err(Empty::Now) => None,
        })
        .await
    }

    /// Waits for a pending reply. Woken by [`ReplyTx`] when it is sent or dropped, not through
    /// the slot, so that the writer has one waker to be woken by.
    pub async fn reply(&self, rx: &mut ReplyRx) -> Result<UpstreamResult, TryRecvError> {
        wait_with(&self.meter.writer, || match rx.try_recv() {
            Err(TryRecvError::Empty) => None,
            done => Some(done),
        })
        .await
    }
}

impl OutMeter {
    /// Counts `n` more bytes held for the client.
    pub fn charge(&self, n: usize) {
        let queued = self.queued.fetch_add(n, Ordering::AcqRel) + n;
        if queued > self.limit && !self.over.swap(true, Ordering::AcqRel) {
            self.overflow.wake();
        }
    }

    /// `n` bytes reached the client's socket. More than were counted is a bug of the
    /// caller's (caught in debug builds); in release the count stops at zero rather than wrap
    /// and close the client as over its limit.
    pub fn written(&self, n: usize) {
        let before = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            })
            .unwrap_or_default();
        debug_assert!(before >= n, "{n} bytes written, {before} counted");
    }

    /// Bytes held now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// The limit was crossed: the client must be disconnected.
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// Resolves once the limit has been crossed.
    pub async fn overflowed(&self) {
        wait_with(&self.overflow, || self.is_over().then_some(())).await
    }
}

/// Waits until `look` finds something, woken through `waker`. `look` runs again after the
/// waker is registered: what changed between the first look and the registration may have
/// found no waker to wake.
pub async fn wait_with<T>(waker: &AtomicWaker, mut look: impl FnMut() -> Option<T>) -> T {
    std::future::poll_fn(|cx| {
        if let Some(found) = look() {
            return Poll::Ready(found);
        }
        waker.register(cx.waker());
        match look() {
            Some(found) => Poll::Ready(found),
            None => Poll::Pending,
        }
    })
    .await
}

/// Where one reply goes: a slot shared with its [`ReplyRx`], and the output meter of the client
/// it is for, charged with the reply's bytes as it is handed over (so replies waiting for a slow
/// client count). A metered sender wakes the client's writer once the reply is in, or once it
/// is dropped without one (the writer then reports the reply lost).
pub struct ReplyTx {
    slot: Option<Arc<Slot>>,
    meter: Option<Arc<OutMeter>>,
}

/// Where a reply is awaited: polled by the session's writer (woken through the client's meter)
/// or awaited as a future (woken through the slot).
pub struct ReplyRx(Option<Arc<Slot>>);

/// Why [`ReplyRx::try_recv`] returned no reply.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Not sent yet.
    Empty,
    /// The sender is gone without a reply, or the reply was taken already.
    Closed,
}

/// An awaited [`ReplyRx`]'s sender went away without a reply.
#[derive(Debug, PartialEq, Eq)]
pub struct RecvError;

/// One reply's way from a connection's task to whoever waits for it: the allocation a
/// forwarded command would otherwise make for a channel of its own. Slots are recycled through
/// a small per-thread free list by whichever end lets go last, so a session's steady stream of
/// commands reuses the same few (`tests/hit_alloc.rs` counts none per SET).
struct Slot {
    state: Mutex<State>,
    /// The receiver's task when it is awaited as a future.
    waker: AtomicWaker,
}

enum State {
    Waiting,
    Ready(UpstreamResult),
    /// Taken by the receiver, or the sender left without a reply.
    Closed,
}

/// Slots kept per thread for reuse: more than a client pipelines at once on most threads, and
/// at most a few KiB per thread.
const SPARE_SLOTS: usize = 64;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Arc<Slot>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Slot {
    fn get() -> Arc<Slot> {
        let spare = SPARE
            .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
            .ok()
            .flatten();
        spare.unwrap_or_else(|| {
            Arc::new(Slot {
                state: Mutex::new(State::Waiting),
                waker: AtomicWaker::new(),
            })
        })
    }

    /// Lets go of one end; the last one out puts the slot back, emptied, for reuse on this
    /// thread. The old contents are dropped before the free list is touched: dropping a waker
    /// may run other code that lets go of slots.
    fn release(mut slot: Arc<Slot>) {
        let Some(s) = Arc::get_mut(&mut slot) else {
            return;
        };
        let state = s.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(state, State::Waiting);
        let waker = s.waker.take();
        drop((old, waker));
        let _ = SPARE.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < SPARE_SLOTS {
                    spare.push(slot);
                }
            }
        });
    }

    /// Stores the outcome (`None`: the sender left without one) and wakes an awaiting receiver.
    fn put(&self, result: Option<UpstreamResult>) {
        {
            let mut state = lock(&self.state);
            if matches!(*state, State::Waiting) {
                *state = result.map_or(State::Closed, State::Ready);
            }
        }
        self.waker.wake();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A reply channel, metered for a client when `meter` is given.
pub fn reply_channel(meter: Option<&Arc<OutMeter>>) -> (ReplyTx, ReplyRx) {
    let slot = Slot::get();
    let rx = ReplyRx(Some(slot.clone()));
    (
        ReplyTx {
            slot: Some(slot),
            meter: meter.cloned(),
        },
        rx,
    )
}

impl ReplyTx {
    pub fn send(mut self, result: UpstreamResult) {
        if let (Some(m), Ok(bytes)) = (&self.meter, &result) {
            m.charge(bytes.len());
        }
        if let Some(slot) = self.slot.take() {
            slot.put(Some(result));
            // Let go before the writer is woken (by the drop that follows): the writer, taking
            // the reply, is then the last one out and recycles the slot on its own thread.
            Slot::release(slot);
        }
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // A client's reply channel always carries a value, so that the writer can tell an
            // arrived reply by looking (see [`Outbox::send_pending`]): one dropped unsent (its
            // connection died with it) says so.
            slot.put(self.meter.is_some().then(|| Err(dropped())));
            Slot::release(slot);
        }
        // Then the wake-up that makes the writer look.
        if let Some(m) = &self.meter {
            m.writer.wake();
        }
    }
}

impl ReplyRx {
    /// The reply, if it has come.
    pub fn try_recv(&mut self) -> Result<UpstreamResult, TryRecvError> {
        let slot = self.0.as_ref().ok_or(TryRecvError::Closed)?;
        let mut state = lock(&slot.state);
        match std::mem::replace(&mut *state, State::Closed) {
            State::Ready(result) => {
                drop(state);
                if let Some(slot) = self.0.take() {
                    Slot::release(slot);
                }
                Ok(result)
            }
            State::Waiting => {
                *state = State::Waiting;
                Err(TryRecvError::Empty)
            }
            State::Closed => Err(TryRecvError::Closed),
        }
    }

    /// Nothing has come yet: no reply, and the sender is still there (or the reply was taken).
    pub fn is_empty(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|slot| matches!(*lock(&slot.state), State::Waiting))
    }
}

impl std::future::Future for ReplyRx {
    type Output = Result<UpstreamResult, RecvError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        let look = |rx: &mut ReplyRx| match rx.try_recv() {
            Ok(result) => Some(Ok(result)),
            Err(TryRecvError::Closed) => Some(Err(RecvError)),
            Err(TryRecvError::Empty) => None,
        };
        if let Some(done) = look(&mut self) {
            return Poll::Ready(done);
        }
        if let Some(slot) = &self.0 {
            slot.waker.register(cx.waker());
        }
        look(&mut self).map_or(Poll::Pending, Poll::Ready)
    }
}

impl Drop for ReplyRx {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            Slot::release(slot);
        }
    }
}

/// The error a client gets for a request whose reply was dropped unsent.
pub fn dropped() -> UpstreamError {
    UpstreamError::Lost {
        addr: "upstream".into(),
        cause: "request dropped".into(),
    }
}

/// Encodes a simple-string reply.
pub fn simple(s: &str) -> Bytes {
    Bytes::from(format!("+{s}\r\n"))
}

/// Encodes an integer reply.
pub fn integer(n: i64) -> Bytes {
    Bytes::from(format!(":{n}\r\n"))
}

/// Encodes a bulk string reply.
pub fn bulk(b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(b.len() + 16);
    resp::header(&mut out, b'$', b.len());
    out.put_slice(b);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The null reply of protocol `proto`.
pub fn null(proto: u8) -> Bytes {
    Bytes::from_static(if proto == 3 { b"_\r\n" } else { b"$-1\r\n" })
}

/// A text reply: a bulk string in RESP2, a verbatim `txt` string in RESP3 (as Redis sends
/// `CLIENT LIST` and `CLIENT INFO`).
pub fn verbatim(proto: u8, s: &str) -> Bytes {
    if proto < 3 {
        return bulk(s.as_bytes());
    }
    let mut out = BytesMut::with_capacity(s.len() + 20);
    resp::header(&mut out, b'=', s.len() + 4);
    out.put_slice(b"txt:");
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
    out.freeze()
}

/// Encodes an error reply; `msg` starts with its code (`ERR`, `WRONGTYPE`, ...).
pub fn error(msg: &str) -> Bytes {
    Bytes::from(format!("-{}\r\n", msg.replace(['\r', '\n'], " ")))
}

#[cfg(test)]
mod tests;
