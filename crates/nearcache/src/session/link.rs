//! What the reader and writer halves of one client session share: how many replies are
//! outstanding, which writes are in flight (`writes.rs`), whether the writer has anything
//! queued, and whether it is gone.
//!
//! Owns those counts and the waits on them. Never locks on the hot path: counts are atomics,
//! and a wait takes the `Notify`'s lock only while someone actually waits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use atomic_waker::AtomicWaker;
use tokio::sync::Notify;

use super::writes::WritesInFlight;
use crate::reply::wait_with;

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
    /// Writes dispatched whose reply the writer has not handled yet, and their keys: while
    /// one may change a read's key, the read must not be answered from the cache.
    pub writes: WritesInFlight,
    /// Items the reader queued whose bytes the writer has not written yet.
    queued: AtomicUsize,
    /// The writer is gone (client unreachable): nobody will drain `inflight` any more.
    closed: AtomicBool,
    /// The session's replies come from a dedicated connection: losing it closes the client.
    dedicated: AtomicBool,
    /// Wakes whoever waits in [`Link::closed`]: a waker rather than a `Notify`, because the
    /// session polls that wait every time it wakes, and a `Notify` takes a lock to be polled.
    close_waker: AtomicWaker,
    /// The reader waits in [`Link::drained`] or [`Link::below`]: only then does a reply
    /// received need to signal `changed` (which takes a lock).
    waiting: AtomicBool,
    changed: Notify,
}

impl Link {
    pub fn dispatched(&self) {
        self.inflight.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn received(&self) {
        let before = self.inflight.fetch_sub(1, Ordering::SeqCst);
        if (before == 1 || before == RESUME_BELOW) && self.waiting.load(Ordering::SeqCst) {
            self.changed.notify_waiters();
        }
    }

    /// Waits for `changed` until `done` holds. The flag is raised before `done` is checked
    /// again, so a reply received after the check sees it and signals (all `SeqCst`).
    async fn wait_until(&self, done: impl Fn(&Self) -> bool) {
        loop {
            let notified = self.changed.notified();
            self.waiting.store(true, Ordering::SeqCst);
            if done(self) || self.is_closed() {
                self.waiting.store(false, Ordering::SeqCst);
                return;
            }
            notified.await;
        }
    }

    /// The reader is about to queue an item for the writer.
    pub fn queuing(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// The writer has written the bytes of `n` items. Saturating: frames relayed from a
    /// dedicated connection reach the writer without being counted (the reader never writes
    /// directly once a session relays).
    pub(super) fn written(&self, n: usize) {
        if n > 0 {
            let _ = self
                .queued
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                    Some(q.saturating_sub(n))
                });
            if self.waiting.load(Ordering::SeqCst) {
                self.changed.notify_waiters();
            }
        }
    }

    /// Nothing the reader queued is still waiting to be written: the reader may write itself.
    pub fn writer_idle(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn set_dedicated(&self, on: bool) {
        self.dedicated.store(on, Ordering::Release);
    }

    pub fn is_dedicated(&self) -> bool {
        self.dedicated.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until every dispatched reply has come back (or the writer is gone), so that the
    /// next command may go to another upstream connection without overtaking earlier ones.
    pub async fn drained(&self) {
        self.wait_until(|l| l.inflight.load(Ordering::SeqCst) == 0)
            .await
    }

    /// Waits until every reply is in and written (or the writer is gone): the socket is the
    /// reader's alone from then on, as long as it queues nothing more.
    pub async fn flushed(&self) {
        self.wait_until(|l| {
            l.inflight.load(Ordering::SeqCst) == 0 && l.queued.load(Ordering::SeqCst) == 0
        })
        .await
    }

    /// Waits until fewer than [`RESUME_BELOW`] replies are outstanding (or the writer is gone).
    pub async fn below(&self) {
        self.wait_until(|l| l.inflight.load(Ordering::SeqCst) < RESUME_BELOW)
            .await
    }

    /// Resolves once the writer is gone.
    pub async fn closed(&self) {
        wait_with(&self.close_waker, || self.is_closed().then_some(())).await
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.close_waker.wake();
        self.changed.notify_waiters();
    }
}
