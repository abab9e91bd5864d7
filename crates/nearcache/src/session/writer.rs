//! The client-facing writer: delivers replies in the order the commands arrived.
//!
//! It awaits each pending reply in turn, gathers whatever is already available into one buffer,
//! and writes when the next reply is not ready yet (or the buffer is large), so a pipelined
//! burst of hits and fast replies leaves in few syscalls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::reply::{Outbound, UpstreamError};

const FLUSH_AT: usize = 64 * 1024;

/// What the reader and writer halves of one client session share.
#[derive(Default)]
pub struct Link {
    /// Replies dispatched upstream that the writer has not received yet.
    inflight: AtomicUsize,
    /// The writer is gone (client unreachable): nobody will drain `inflight` any more.
    closed: AtomicBool,
    changed: Notify,
}

impl Link {
    pub fn dispatched(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    fn received(&self) {
        if self.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.changed.notify_waiters();
        }
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
) -> std::io::Result<()> {
    let result = write_loop(&mut rx, &mut wr, link).await;
    link.close();
    let _ = wr.shutdown().await;
    result
}

async fn write_loop(
    rx: &mut mpsc::UnboundedReceiver<Outbound>,
    wr: &mut OwnedWriteHalf,
    link: &Link,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Empty) => {
                flush(wr, &mut out).await?;
                match rx.recv().await {
                    Some(item) => item,
                    None => return Ok(()),
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match item {
            Outbound::Pending(mut reply) => {
                let result = match reply.try_recv() {
                    Ok(r) => Ok(r),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        flush(wr, &mut out).await?;
                        (&mut reply).await.map_err(|_| ())
                    }
                    Err(oneshot::error::TryRecvError::Closed) => Err(()),
                };
                link.received();
                match result {
                    Ok(Ok(bytes)) => out.extend_from_slice(&bytes),
                    Ok(Err(e)) => out.extend_from_slice(&e.to_frame()),
                    Err(()) => out.extend_from_slice(&dropped().to_frame()),
                }
            }
            Outbound::Frame(bytes) => out.extend_from_slice(&bytes),
            Outbound::Close => break,
        }
        if out.len() >= FLUSH_AT {
            flush(wr, &mut out).await?;
        }
    }
    flush(wr, &mut out).await
}

fn dropped() -> UpstreamError {
    UpstreamError::Lost {
        addr: "upstream".into(),
        cause: "request dropped".into(),
    }
}

async fn flush(wr: &mut OwnedWriteHalf, out: &mut BytesMut) -> std::io::Result<()> {
    if !out.is_empty() {
        wr.write_all(out).await?;
        out.clear();
    }
    Ok(())
}
