//! A connection's queues: requests (every handle of the connection sends, its task receives)
//! and expectations (its writer and an inline-writing session send, its reader receives).
//!
//! A locked queue the task takes whole rather than a channel read one item at a time: a
//! burst of requests costs the task one lock, and a send costs a lock and a wake-up. Like an
//! unbounded channel, a send fails once the receiver is closed or gone, and the receiver learns
//! that every sender is gone once it has taken what they sent. Owns nothing but the queued
//! items; never blocks a sender.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use atomic_waker::AtomicWaker;

struct Shared<T> {
    /// The items sent and not taken yet.
    items: Mutex<VecDeque<T>>,
    /// The receiver refuses more: set, and read by senders, under the lock.
    closed: AtomicBool,
    /// Live senders: at 0 the receiver sees the queue end once it is drained.
    senders: AtomicUsize,
    /// The receiving task, while it waits.
    task: AtomicWaker,
}

/// A new queue's two ends.
pub(super) fn queue<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        closed: AtomicBool::new(false),
        senders: AtomicUsize::new(1),
        task: AtomicWaker::new(),
    });
    let rx = Receiver {
        shared: shared.clone(),
        taken: VecDeque::new(),
    };
    (Sender(shared), rx)
}

pub(super) struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Queues `item`; gives it back if the receiver is closed or gone.
    pub(super) fn send(&self, item: T) -> Result<(), T> {
        let mut items = self.0.items.lock().unwrap_or_else(|p| p.into_inner());
        if self.0.closed.load(Ordering::Acquire) {
            return Err(item);
        }
        items.push_back(item);
        drop(items);
        self.0.task.wake();
        Ok(())
    }

    /// Whether the receiver is closed or gone.
    pub(super) fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::AcqRel);
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.task.wake();
        }
    }
}

pub(super) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Items taken from the queue in one go and not handed out yet.
    taken: VecDeque<T>,
}

impl<T> Receiver<T> {
    /// The next item, if one was sent.
    pub(super) fn try_recv(&mut self) -> Option<T> {
        take(&self.shared, &mut self.taken)
    }

    /// Waits for the next item; `None` once every sender is gone and everything they sent
    /// was taken.
    pub(super) async fn recv(&mut self) -> Option<T> {
        let (shared, taken) = (&*self.shared, &mut self.taken);
        crate::reply::wait_with(&shared.task, || {
            // Senders are counted before the queue is looked at: an item the last sender sent
            // before it left is then still found.
            let ended = shared.senders.load(Ordering::Acquire) == 0;
            match take(shared, taken) {
                Some(item) => Some(Some(item)),
                None if ended => Some(None),
                None => None,
            }
        })
        .await
    }

    /// Moves everything sent and not taken yet to the back of `queue`, with one lock.
    pub(super) fn take_into(&mut self, queue: &mut VecDeque<T>) {
        if !self.taken.is_empty() {
            queue.extend(self.taken.drain(..));
        }
        let mut items = self.shared.items.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_empty() {
            std::mem::swap(queue, &mut *items);
        } else {
            queue.extend(items.drain(..));
        }
    }

    /// Resolves once something was sent and not taken yet; takes nothing. The future holds
    /// only the shared queue, so it is `Send` whatever the items taken before are.
    pub(super) fn arrived(&self) -> impl std::future::Future<Output = ()> + Send + '_
    where
        T: Send,
    {
        let held = !self.taken.is_empty();
        let shared = &*self.shared;
        async move {
            if held {
                return;
            }
            crate::reply::wait_with(&shared.task, || {
                let items = shared.items.lock().unwrap_or_else(|p| p.into_inner());
                (!items.is_empty()).then_some(())
            })
            .await;
        }
    }

    /// Refuses every later send; what was sent before can still be taken.
    pub(super) fn close(&mut self) {
        let _items = self.shared.items.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.closed.store(true, Ordering::Release);
    }
}

/// The next item: from those taken before, or else from all the queue holds, taken at once.
fn take<T>(shared: &Shared<T>, taken: &mut VecDeque<T>) -> Option<T> {
    if taken.is_empty() {
        let mut items = shared.items.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(taken, &mut *items);
    }
    taken.pop_front()
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_and_the_end_comes_after_them() {
        let (tx, mut rx) = queue();
        let other = tx.clone();
        tx.send(1).unwrap();
        other.send(2).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        tx.send(3).unwrap();
        drop(tx);
        other.send(4).unwrap();
        drop(other);
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(
            rx.recv().await,
            None,
            "every sender gone and everything taken"
        );
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_and_by_the_last_sender_leaving() {
        let (tx, mut rx) = queue::<u32>();
        let waiting = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::task::yield_now().await;
        tx.send(7).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiting.await.unwrap(), (Some(7), None));
    }

    #[test]
    fn a_closed_or_dropped_receiver_refuses_sends_but_keeps_what_came_before() {
        let (tx, mut rx) = queue();
        tx.send(1).unwrap();
        assert!(!tx.is_closed());
        rx.close();
        assert!(tx.is_closed());
        assert_eq!(tx.send(2), Err(2));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), None);
        let (tx, rx) = queue();
        drop(rx);
        assert_eq!(tx.send(3), Err(3));
    }

    #[test]
    fn take_into_keeps_the_order_behind_what_is_held() {
        let (tx, mut rx) = queue();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let mut held = VecDeque::from([0]);
        rx.take_into(&mut held);
        tx.send(3).unwrap();
        tx.send(4).unwrap();
        assert_eq!(rx.try_recv(), Some(3), "one taken alone first");
        rx.close();
        rx.take_into(&mut held);
        assert_eq!(held, [0, 1, 2, 4]);
        assert_eq!(tx.send(5), Err(5), "refused once closed");
        let mut empty = VecDeque::new();
        rx.take_into(&mut empty);
        assert!(empty.is_empty());
    }
}
