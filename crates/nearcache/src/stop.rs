//! The server's stop signal as client sessions wait for it.
//!
//! A session waits for the stop beside its read loop, so the wait is polled every time the
//! session wakes: once per request at pipeline 1. A `watch` or `Notify` wait takes a lock on
//! every poll; this one registers the task's waker once and afterwards costs one atomic load
//! (and a waker comparison) per poll. Stopping wakes every registered session.
//! Never un-raises: a stop is final.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Raised once, when the server stops; sessions wait for it with [`StopSignal::stopped`].
#[derive(Default)]
pub struct StopSignal {
    raised: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    wakers: HashMap<u64, Waker>,
}

impl StopSignal {
    /// Raises the signal and wakes everyone waiting for it.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut self.waiters.lock().expect("stop waiters").wakers);
        for w in wakers.into_values() {
            w.wake();
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Resolves once the signal is raised.
    pub fn stopped(&self) -> Stopped<'_> {
        Stopped {
            signal: self,
            registered: None,
        }
    }
}

/// The wait for a [`StopSignal`]; unregisters itself when dropped.
pub struct Stopped<'a> {
    signal: &'a StopSignal,
    /// The id and waker this wait registered.
    registered: Option<(u64, Waker)>,
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_raised() {
            return Poll::Ready(());
        }
        if let Some((_, w)) = &self.registered {
            if w.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        let signal = self.signal;
        let mut waiters = signal.waiters.lock().expect("stop waiters");
        let id = match &self.registered {
            Some((id, _)) => *id,
            None => {
                waiters.next_id += 1;
                waiters.next_id
            }
        };
        waiters.wakers.insert(id, cx.waker().clone());
        drop(waiters);
        self.registered = Some((id, cx.waker().clone()));
        // Raised between the first check and the registration: `raise` may have taken the
        // wakers before this one was added.
        if signal.is_raised() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if let Some((id, _)) = self.registered.take() {
            if let Ok(mut w) = self.signal.waiters.lock() {
                w.wakers.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_every_waiter_and_later_waits_resolve_at_once() {
        let signal = Arc::new(StopSignal::default());
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let s = signal.clone();
            tasks.push(tokio::spawn(async move { s.stopped().await }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(signal.waiters.lock().unwrap().wakers.len(), 3);
        signal.raise();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("woken")
                .unwrap();
        }
        signal.stopped().await;
    }

    #[tokio::test]
    async fn a_dropped_wait_unregisters() {
        let signal = StopSignal::default();
        let r = tokio::time::timeout(Duration::from_millis(10), signal.stopped()).await;
        assert!(r.is_err());
        assert!(signal.waiters.lock().unwrap().wakers.is_empty());
    }
}
