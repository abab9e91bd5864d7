//! The client-facing writer: delivers replies in the order the commands arrived.
//!
//! It awaits each pending reply in turn, gathers whatever is already available into one buffer,
//! and writes when the next reply is not ready yet (or the buffer is large), so a pipelined
//! burst of hits and fast replies leaves in few syscalls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::cachelayer::CacheLayer;
use crate::metrics::FlushReason;
use crate::reply::{After, OutMeter, Outbound, UpstreamError};

const FLUSH_AT: usize = 64 * 1024;
/// Replies a session may have outstanding upstream before it stops reading from its client,
/// so that a client pipelining faster than Redis answers cannot queue without bound.
pub const MAX_INFLIGHT: usize = 4096;
/// A reader held back by [`MAX_INFLIGHT`] resumes below this many.
const RESUME_BELOW: usize = MAX_INFLIGHT / 2;

/// What the reader and writer halves of one client session share.
#[derive(Default)]
pub struct Link {
    /// Replies dispatched upstream that the writer has not received yet.
    inflight: AtomicUsize,
    /// Writes dispatched whose reply the writer has not received yet.
    writes: AtomicUsize,
    /// The writer is gone (client unreachable): nobody will drain `inflight` any more.
    closed: AtomicBool,
    changed: Notify,
}

impl Link {
    pub fn dispatched(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    fn received(&self) {
        let before = self.inflight.fetch_sub(1, Ordering::AcqRel);
        if before == 1 || before == RESUME_BELOW {
            self.changed.notify_waiters();
        }
    }

    pub fn write_sent(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }

    fn write_done(&self) {
        self.writes.fetch_sub(1, Ordering::AcqRel);
    }

    /// Writes still in flight: while any is, the session must not answer reads from the cache
    /// (the write may not have reached Redis yet, and the client expects to read it back).
    pub fn writes_inflight(&self) -> usize {
        self.writes.load(Ordering::Acquire)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until every dispatched reply has come back (or the writer is gone), so that the
    /// next command may go to another upstream connection without overtaking earlier ones.
    pub async fn drained(&self) {
        loop {
            let notified = self.changed.notified();
            if self.inflight() == 0 || self.is_closed() {
                return;
            }
            tracing::trace!(inflight = self.inflight(), "reader waits for drain");
            notified.await;
        }
    }

    /// Waits until fewer than [`RESUME_BELOW`] replies are outstanding (or the writer is gone).
    pub async fn below(&self) {
        loop {
            let notified = self.changed.notified();
            if self.inflight() < RESUME_BELOW || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once the writer is gone.
    pub async fn closed(&self) {
        loop {
            let notified = self.changed.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }
}

/// Runs until the session queue closes, a `Close` item is written, or the client goes away.
pub async fn run(
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    mut wr: OwnedWriteHalf,
    link: &Link,
    cache: Option<&CacheLayer>,
    meter: &OutMeter,
) -> std::io::Result<()> {
    let result = tokio::select! {
        r = write_loop(&mut rx, &mut wr, link, cache, meter) => r,
        // A client over its output limit is closed at once, even while a write is stuck.
        () = meter.overflowed() => Err(std::io::ErrorKind::OutOfMemory.into()),
    };
    link.close();
    let _ = wr.shutdown().await;
    result
}

async fn write_loop(
    rx: &mut mpsc::UnboundedReceiver<Outbound>,
    wr: &mut OwnedWriteHalf,
    link: &Link,
    cache: Option<&CacheLayer>,
    meter: &OutMeter,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Empty) => {
                flush(wr, &mut out, meter).await?;
                match rx.recv().await {
                    Some(item) => item,
                    None => return Ok(()),
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match item {
            Outbound::Pending(mut reply, after) => {
                let result = match reply.try_recv() {
                    Ok(r) => Ok(r),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        flush(wr, &mut out, meter).await?;
                        (&mut reply).await.map_err(|_| ())
                    }
                    Err(oneshot::error::TryRecvError::Closed) => Err(()),
                };
                link.received();
                // Replies were counted against the client's limit as they were handed over;
                // errors made here are counted now.
                let reply = match result {
                    Ok(Ok(bytes)) => Some(bytes),
                    Ok(Err(e)) => {
                        let frame = e.to_frame();
                        meter.charge(frame.len());
                        out.extend_from_slice(&frame);
                        None
                    }
                    Err(()) => {
                        let frame = dropped().to_frame();
                        meter.charge(frame.len());
                        out.extend_from_slice(&frame);
                        None
                    }
                };
                after_reply(after, reply, cache, link, &mut out);
            }
            Outbound::Frame(bytes) => out.extend_from_slice(&bytes),
            Outbound::Close => break,
        }
        if out.len() >= FLUSH_AT {
            flush(wr, &mut out, meter).await?;
        }
    }
    flush(wr, &mut out, meter).await
}

/// Applies a reply's cache effect, then queues the reply for the client. Invalidations happen
/// before the client can see the reply, so it reads its own write back.
fn after_reply(
    after: After,
    reply: Option<Bytes>,
    cache: Option<&CacheLayer>,
    link: &Link,
    out: &mut BytesMut,
) {
    match (after, cache) {
        (After::Invalidate(keys), c) => {
            if let Some(c) = c {
                c.invalidate_keys(&keys);
            }
            link.write_done();
        }
        (After::FlushAll, c) => {
            if let Some(c) = c {
                c.flush(FlushReason::Flushall);
            }
            link.write_done();
        }
        _ => {}
    }
    if let Some(bytes) = reply {
        out.extend_from_slice(&bytes);
    }
}

fn dropped() -> UpstreamError {
    UpstreamError::Lost {
        addr: "upstream".into(),
        cause: "request dropped".into(),
    }
}

async fn flush(
    wr: &mut OwnedWriteHalf,
    out: &mut BytesMut,
    meter: &OutMeter,
) -> std::io::Result<()> {
    if !out.is_empty() {
        wr.write_all(out).await?;
        meter.written(out.len());
        out.clear();
    }
    Ok(())
}
