//! The client-facing writer: delivers replies in the order the commands arrived.
//!
//! It awaits each pending reply in turn, gathers whatever is already available into one buffer,
//! and writes when the next reply is not ready yet (or the buffer is large), so a pipelined
//! burst of hits and fast replies leaves in few syscalls.
//!
//! The reader may write to the socket itself, but only while the writer has nothing queued
//! (`Link::writer_idle`): the writer counts an item as done only once its bytes are written, so
//! a reply the reader writes can never overtake one queued before it.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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
/// Replies this large are written from their own buffer rather than copied into the batch.
const WRITE_ALONE: usize = 16 * 1024;

/// What the reader and writer halves of one client session share.
#[derive(Default)]
pub struct Link {
    /// Replies dispatched upstream that the writer has not received yet.
    inflight: AtomicUsize,
    /// Writes dispatched whose reply the writer has not received yet.
    writes: AtomicUsize,
    /// Items the reader queued whose bytes the writer has not written yet.
    queued: AtomicUsize,
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

    /// The reader is about to queue an item for the writer.
    pub fn queuing(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// The writer has written the bytes of `n` items. Saturating: frames relayed from a
    /// dedicated connection reach the writer without being counted (the reader never writes
    /// directly once a session relays).
    fn written(&self, n: usize) {
        if n > 0 {
            let _ = self
                .queued
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                    Some(q.saturating_sub(n))
                });
        }
    }

    /// Nothing the reader queued is still waiting to be written: the reader may write itself.
    pub fn writer_idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
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
    mut wr: Arc<OwnedWriteHalf>,
    link: &Link,
    cache: Option<&CacheLayer>,
    meter: &OutMeter,
) -> io::Result<()> {
    let result = tokio::select! {
        r = write_loop(&mut rx, &wr, link, cache, meter) => r,
        // A client over its output limit is closed at once, even while a write is stuck.
        () = meter.overflowed() => Err(io::ErrorKind::OutOfMemory.into()),
    };
    link.close();
    // The reader gives up its handle when it relays, and has returned before a `Close`; when it
    // still holds one (the client went away), the socket closes when the session ends.
    if let Some(wr) = Arc::get_mut(&mut wr) {
        let _ = wr.shutdown().await;
    }
    result
}

async fn write_loop(
    rx: &mut mpsc::UnboundedReceiver<Outbound>,
    wr: &OwnedWriteHalf,
    link: &Link,
    cache: Option<&CacheLayer>,
    meter: &OutMeter,
) -> io::Result<()> {
    let mut out = Out {
        buf: BytesMut::with_capacity(16 * 1024),
        items: 0,
    };
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Empty) => {
                out.flush(wr, link, meter).await?;
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
                        out.flush(wr, link, meter).await?;
                        (&mut reply).await.map_err(|_| ())
                    }
                    Err(oneshot::error::TryRecvError::Closed) => Err(()),
                };
                link.received();
                // Replies were counted against the client's limit as they were handed over;
                // errors made here are counted now.
                let reply = match result {
                    Ok(Ok(bytes)) if bytes.len() >= WRITE_ALONE => {
                        after_reply(after, None, cache, link, &mut out.buf);
                        out.flush(wr, link, meter).await?;
                        write_all(wr, &bytes).await?;
                        meter.written(bytes.len());
                        out.items += 1;
                        continue;
                    }
                    Ok(Ok(bytes)) => Some(bytes),
                    Ok(Err(e)) => {
                        let frame = e.to_frame();
                        meter.charge(frame.len());
                        out.buf.extend_from_slice(&frame);
                        None
                    }
                    Err(()) => {
                        let frame = dropped().to_frame();
                        meter.charge(frame.len());
                        out.buf.extend_from_slice(&frame);
                        None
                    }
                };
                after_reply(after, reply, cache, link, &mut out.buf);
            }
            Outbound::Frame(bytes) => out.buf.extend_from_slice(&bytes),
            Outbound::Close => break,
        }
        out.items += 1;
        if out.buf.len() >= FLUSH_AT {
            out.flush(wr, link, meter).await?;
        }
    }
    out.flush(wr, link, meter).await
}

/// Bytes waiting to be written, and how many queued items they complete.
struct Out {
    buf: BytesMut,
    items: usize,
}

impl Out {
    async fn flush(
        &mut self,
        wr: &OwnedWriteHalf,
        link: &Link,
        meter: &OutMeter,
    ) -> io::Result<()> {
        write_all(wr, &self.buf).await?;
        meter.written(self.buf.len());
        self.buf.clear();
        link.written(std::mem::take(&mut self.items));
        Ok(())
    }
}

async fn write_all(wr: &OwnedWriteHalf, bytes: &[u8]) -> io::Result<()> {
    let mut pos = 0;
    while pos < bytes.len() {
        match wr.try_write(&bytes[pos..]) {
            Ok(n) => pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wr.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
