//! The client-facing writer: delivers replies in the order the commands arrived.
//!
//! It awaits each pending reply in turn, gathers whatever is already available (short replies
//! copied into one buffer, longer ones kept as they are: `bufs::Gather`), and writes it in one
//! vectored write when the next reply is not ready yet (or much is gathered), so a pipelined
//! burst of hits and fast replies leaves in few syscalls.
//!
//! The reader may write to the socket itself, but only while the writer has nothing queued
//! (`Link::writer_idle`): the writer counts an item as done only once its bytes are written, so
//! a reply the reader writes can never overtake one queued before it.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::socket::OwnedWriteHalf;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::link::Link;
use crate::bufs::Gather;
use crate::cachelayer::CacheLayer;
use crate::obs::metrics::{FlushReason, Metrics};
use crate::obs::stats::{Outcome, Stamp};
use crate::reply::{dropped, After, Empty, OutMeter, Outbound, OutboxRx, TryRecvError, WriteMark};

const FLUSH_AT: usize = 64 * 1024;
/// Runs until the session queue closes, a `Close` item is written, or the client goes away.
pub async fn run(
    mut rx: OutboxRx,
    mut wr: Arc<OwnedWriteHalf>,
    link: &Link,
    cache: Option<&CacheLayer>,
    meter: &OutMeter,
    metrics: &Metrics,
) -> io::Result<()> {
    let mut w = Writer {
        metrics,
        meter,
        last_error: false,
        traced: Vec::new(),
        now: None,
    };
    // Biased: the write loop is what wakes the writer nearly every time.
    let result = tokio::select! {
        biased;
        r = write_loop(&mut rx, &wr, link, cache, &mut w) => r,
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
    rx: &mut OutboxRx,
    wr: &OwnedWriteHalf,
    link: &Link,
    cache: Option<&CacheLayer>,
    w: &mut Writer<'_>,
) -> io::Result<()> {
    let mut out = Out {
        buf: Gather::with_capacity(16 * 1024),
        items: 0,
    };
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(Empty::Now) => {
                w.flush(wr, link, &mut out).await?;
                match rx.recv().await {
                    Some(item) => item,
                    None => return Ok(()),
                }
            }
            Err(Empty::Closed) => break,
        };
        match item {
            Outbound::Pending(mut reply, after, stamp, settle) => {
                let result = match reply.try_recv() {
                    Ok(r) => Ok(r),
                    Err(TryRecvError::Empty) => {
                        w.flush(wr, link, &mut out).await?;
                        rx.reply(&mut reply).await.map_err(|_| ())
                    }
                    Err(TryRecvError::Closed) => Err(()),
                };
                let result = match (result, settle) {
                    (Ok(first), Some(settle)) if settle.needed(&first) => {
                        // Followed now, in the client's order: what is ready goes out first.
                        w.flush(wr, link, &mut out).await?;
                        let charged = first.as_ref().map_or(0, Bytes::len);
                        let settled = settle.settle(first).await;
                        w.meter.written(charged);
                        w.meter.charge(settled.as_ref().map_or(0, Bytes::len));
                        Ok(settled)
                    }
                    (result, _) => result,
                };
                link.received();
                // Replies were counted against the client's limit as they were handed over;
                // errors made here are counted now.
                let reply = match result {
                    Ok(Ok(bytes)) => {
                        w.last_error = is_error(&bytes);
                        Some(bytes)
                    }
                    // The connection that held the client's session state is gone: close the
                    // client, as Redis closes a client it kills.
                    Ok(Err(e)) if e.ends_session() && link.is_dedicated() => {
                        return Err(io::ErrorKind::ConnectionAborted.into());
                    }
                    Ok(Err(e)) => {
                        w.last_error = true;
                        w.metrics.upstream_error(&e);
                        let frame = e.to_frame();
                        w.meter.charge(frame.len());
                        out.buf.push_slice(&frame);
                        None
                    }
                    Err(()) => {
                        w.last_error = true;
                        let frame = dropped().to_frame();
                        w.meter.charge(frame.len());
                        out.buf.push_slice(&frame);
                        None
                    }
                };
                // A patch may change the reply's length (HELLO's id, INFO's clients section):
                // the client's count is moved to what is written, so it neither grows nor
                // wraps below zero.
                let (charged, before) = (reply.as_ref().map_or(0, Bytes::len), out.buf.len());
                after_reply(after, reply, cache, link, &mut out.buf);
                let written = out.buf.len() - before;
                if written > charged {
                    w.meter.charge(written - charged);
                } else {
                    w.meter.written(charged - written);
                }
                if let Some(stamp) = stamp {
                    w.done(stamp);
                }
            }
            Outbound::Frame(bytes) => {
                w.last_error = is_error(&bytes);
                out.buf.push(bytes);
            }
            Outbound::Done(stamp) => w.done(stamp),
            Outbound::Close => break,
        }
        out.items += 1;
        if out.buf.is_full(FLUSH_AT) {
            w.flush(wr, link, &mut out).await?;
        }
    }
    w.flush(wr, link, &mut out).await
}

/// Bytes waiting to be written, and how many queued items they complete.
struct Out {
    buf: Gather,
    items: usize,
}

/// Records a command whose reply is queued (or, when the reader writes it itself, at hand):
/// counts it by outcome, times it, logs it if slow. Returns the stamp if it is being traced, so
/// that its reply span can last until the bytes are written. `now` is when the reply was at
/// hand: one clock reading serves every reply of a batch.
pub fn record(
    metrics: &Metrics,
    mut stamp: Stamp,
    last_error: bool,
    now: Instant,
) -> Option<Stamp> {
    let took = now.saturating_duration_since(stamp.start);
    let upstream = matches!(stamp.outcome, Outcome::Miss | Outcome::Forwarded);
    if last_error && stamp.outcome != Outcome::Hit {
        stamp.outcome = Outcome::Error;
    }
    metrics
        .cmd
        .record(stamp.command, stamp.outcome, stamp.timed.then_some(took));
    let threshold = metrics.live.slowlog_threshold_ms.load(Ordering::Relaxed);
    if upstream && stamp.timed && threshold > 0 && took.as_millis() >= u128::from(threshold) {
        tracing::warn!(
            command = crate::command::name_of(stamp.command),
            duration_ms = took.as_secs_f64() * 1000.0,
            outcome = ?stamp.outcome,
            "slow command"
        );
    }
    let t = stamp.trace.as_mut()?;
    // The wait for Redis ends here; the reply phase lasts until the bytes are written.
    t.upstream = None;
    t.reply = Some(t.phase("reply"));
    Some(stamp)
}

/// The writer's share of observability: command figures, the slow log, sampled traces.
struct Writer<'a> {
    metrics: &'a Metrics,
    meter: &'a OutMeter,
    /// The last reply queued was an error.
    last_error: bool,
    /// Sampled requests whose reply waits in the buffer: their spans close once it is written.
    traced: Vec<Stamp>,
    /// When the replies gathered since the last write were at hand (read once per batch).
    now: Option<Instant>,
}

impl Writer<'_> {
    fn done(&mut self, stamp: Stamp) {
        let now = *self.now.get_or_insert_with(Instant::now);
        if let Some(traced) = record(self.metrics, stamp, self.last_error, now) {
            self.traced.push(traced);
        }
    }

    async fn flush(&mut self, wr: &OwnedWriteHalf, link: &Link, out: &mut Out) -> io::Result<()> {
        if !out.buf.is_empty() {
            let len = out.buf.len();
            self.metrics.bytes_out.inc_by(len as u64);
            out.buf.write_to(wr).await?;
            self.meter.written(len);
        }
        link.written(std::mem::take(&mut out.items));
        self.traced.clear();
        self.now = None;
        Ok(())
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
    out: &mut Gather,
) {
    match (after, cache) {
        (After::Invalidate(keys, mark), c) => {
            if let Some(c) = c {
                c.invalidate_keys(&keys);
            }
            link.writes.done(mark);
        }
        (After::FlushAll, c) => {
            if let Some(c) = c {
                c.flush(FlushReason::Flushall);
            }
            link.writes.done(WriteMark::Session);
        }
        (After::Patch(inner, patch), c) => {
            return after_reply(*inner, patch(reply), c, link, out);
        }
        _ => {}
    }
    if let Some(bytes) = reply {
        out.push(bytes);
    }
}
