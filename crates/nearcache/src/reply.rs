//! What flows from the upstream side back to a client session: replies, relayed frames, and
//! errors that say where they came from.

use atomic_waker::AtomicWaker;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

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
    /// Drop the entries of these Redis keys (a write): read-your-writes.
    Invalidate(Vec<Bytes>),
    /// Empty the cache (FLUSHALL, FLUSHDB, SWAPDB).
    FlushAll,
}

/// One item in a session's ordered output queue.
pub enum Outbound {
    /// The reply to a command sent upstream, delivered when it arrives, and the command's
    /// stamp (recorded as for [`Outbound::Done`] once the reply is queued for the client).
    Pending(
        oneshot::Receiver<UpstreamResult>,
        After,
        Option<crate::obs::stats::Stamp>,
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
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outbound>,
    meter: Arc<OutMeter>,
}

/// The count of bytes held for one client.
pub struct OutMeter {
    queued: AtomicUsize,
    limit: usize,
    over: AtomicBool,
    /// Wakes the writer waiting in [`OutMeter::overflowed`]: a waker, not a `Notify`, because
    /// that wait is polled each time the writer wakes, and a `Notify` locks to be polled.
    overflow: AtomicWaker,
}

impl Outbox {
    /// A queue whose client is disconnected once more than `limit` bytes wait for it.
    pub fn new(limit: usize) -> (Outbox, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let meter = Arc::new(OutMeter {
            queued: AtomicUsize::new(0),
            limit,
            over: AtomicBool::new(false),
            overflow: AtomicWaker::new(),
        });
        (Outbox { tx, meter }, rx)
    }

    pub fn send(&self, item: Outbound) {
        if let Outbound::Frame(bytes) = &item {
            self.meter.charge(bytes.len());
        }
        let _ = self.tx.send(item);
    }

    pub fn meter(&self) -> &Arc<OutMeter> {
        &self.meter
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

    /// `n` bytes reached the client's socket.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
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
        std::future::poll_fn(|cx| {
            if self.is_over() {
                return std::task::Poll::Ready(());
            }
            self.overflow.register(cx.waker());
            // Crossed between the check and the registration: `wake` may have found no waker.
            if self.is_over() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// Where one reply goes: a oneshot, and the output meter of the client it is for, charged
/// with the reply's bytes as it is handed over (so replies waiting for a slow client count).
pub struct ReplyTx {
    tx: oneshot::Sender<UpstreamResult>,
    meter: Option<Arc<OutMeter>>,
}

/// A reply channel, metered for a client when `meter` is given.
pub fn reply_channel(
    meter: Option<&Arc<OutMeter>>,
) -> (ReplyTx, oneshot::Receiver<UpstreamResult>) {
    let (tx, rx) = oneshot::channel();
    let meter = meter.cloned();
    (ReplyTx { tx, meter }, rx)
}

impl ReplyTx {
    pub fn send(self, result: UpstreamResult) {
        if let (Some(m), Ok(bytes)) = (&self.meter, &result) {
            m.charge(bytes.len());
        }
        let _ = self.tx.send(result);
    }
}

/// Encodes a simple-string reply.
pub fn simple(s: &str) -> Bytes {
    Bytes::from(format!("+{s}\r\n"))
}

/// Encodes an error reply; `msg` starts with its code (`ERR`, `WRONGTYPE`, ...).
pub fn error(msg: &str) -> Bytes {
    Bytes::from(format!("-{}\r\n", msg.replace(['\r', '\n'], " ")))
}
