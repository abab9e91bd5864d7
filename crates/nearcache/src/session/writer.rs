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
use crate::metrics::{FlushReason, Metrics};
use crate::obs::stats::{Outcome, Stamp};
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
    metrics: &Metrics,
) -> std::io::Result<()> {
    let mut w = Writer {
        metrics,
        meter,
        last_error: false,
        traced: Vec::new(),
    };
    let result = tokio::select! {
        r = write_loop(&mut rx, &mut wr, link, cache, &mut w) => r,
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
    w: &mut Writer<'_>,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Empty) => {
                w.flush(wr, &mut out).await?;
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
                        w.flush(wr, &mut out).await?;
                        (&mut reply).await.map_err(|_| ())
                    }
                    Err(oneshot::error::TryRecvError::Closed) => Err(()),
                };
                link.received();
                // Replies were counted against the client's limit as they were handed over;
                // errors made here are counted now.
                let reply = match result {
                    Ok(Ok(bytes)) => {
                        w.last_error = is_error(&bytes);
                        Some(bytes)
                    }
                    Ok(Err(e)) => {
                        w.last_error = true;
                        w.metrics.upstream_error(&e);
                        let frame = e.to_frame();
                        w.meter.charge(frame.len());
                        out.extend_from_slice(&frame);
                        None
                    }
                    Err(()) => {
                        w.last_error = true;
                        let frame = dropped().to_frame();
                        w.meter.charge(frame.len());
                        out.extend_from_slice(&frame);
                        None
                    }
                };
                after_reply(after, reply, cache, link, &mut out);
            }
            Outbound::Frame(bytes) => {
                w.last_error = is_error(&bytes);
                out.extend_from_slice(&bytes);
            }
            Outbound::Done(stamp) => w.done(stamp),
            Outbound::Close => break,
        }
        if out.len() >= FLUSH_AT {
            w.flush(wr, &mut out).await?;
        }
    }
    w.flush(wr, &mut out).await
}

/// The writer's share of observability: command figures, the slow log, sampled traces.
struct Writer<'a> {
    metrics: &'a Metrics,
    meter: &'a OutMeter,
    /// The last reply queued was an error.
    last_error: bool,
    /// Sampled requests whose reply waits in the buffer: their spans close once it is written.
    traced: Vec<Stamp>,
}

impl Writer<'_> {
    /// A command's reply is queued: count it by outcome, time it, log it if slow.
    fn done(&mut self, mut stamp: Stamp) {
        let took = stamp.start.elapsed();
        let upstream = matches!(stamp.outcome, Outcome::Miss | Outcome::Forwarded);
        if self.last_error && stamp.outcome != Outcome::Hit {
            stamp.outcome = Outcome::Error;
        }
        self.metrics
            .cmd
            .record(stamp.slot, stamp.outcome, stamp.timed.then_some(took));
        let threshold = self
            .metrics
            .live
            .slowlog_threshold_ms
            .load(Ordering::Relaxed);
        if upstream && stamp.timed && threshold > 0 && took.as_millis() >= u128::from(threshold) {
            tracing::warn!(
                command = crate::obs::stats::slot_name(stamp.slot),
                duration_ms = took.as_secs_f64() * 1000.0,
                outcome = ?stamp.outcome,
                "slow command"
            );
        }
        if let Some(t) = &mut stamp.trace {
            // The wait for Redis ends here; the reply phase lasts until the bytes are written.
            t.upstream = None;
            t.reply = Some(t.phase("reply"));
            self.traced.push(stamp);
        }
    }

    async fn flush(&mut self, wr: &mut OwnedWriteHalf, out: &mut BytesMut) -> std::io::Result<()> {
        if !out.is_empty() {
            self.metrics.bytes_out.inc_by(out.len() as u64);
        }
        let r = flush(wr, out, self.meter).await;
        self.traced.clear();
        r
    }
}

/// A RESP2 or RESP3 error reply (`-ERR ...`, `!<len>` blob error).
fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-' | b'!'))
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
