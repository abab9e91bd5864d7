//! The output queue's hand-over between a connection's task and a session's writer, and the
//! reply channel's slots.

use super::*;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Wake, Waker};

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Count>, Waker) {
    let c = Arc::new(Count::default());
    (c.clone(), Waker::from(c))
}

fn wakes(c: &Count) -> usize {
    c.0.load(Ordering::SeqCst)
}

/// Polls the writer's wait for the next item once.
fn poll_recv(rx: &mut OutboxRx, waker: &Waker) -> Poll<Option<Outbound>> {
    pin!(rx.recv()).poll(&mut Context::from_waker(waker))
}

fn pending(rx: crate::reply::ReplyRx) -> Outbound {
    Outbound::Pending(rx, After::Nothing, None, None)
}

#[test]
fn a_pending_reply_wakes_the_writer_once_it_arrives_not_when_queued() {
    let (out, mut rx) = Outbox::new(1 << 20);
    let (count, waker) = counter();
    assert!(poll_recv(&mut rx, &waker).is_pending());
    let (tx, reply) = reply_channel(Some(out.meter()));
    out.send_pending(pending(reply));
    assert_eq!(
        wakes(&count),
        0,
        "queuing a pending reply must not wake the writer"
    );
    let Poll::Ready(Some(Outbound::Pending(mut reply, ..))) = poll_recv(&mut rx, &waker) else {
        panic!("the pending item is queued")
    };
    let wait = rx.reply(&mut reply);
    let mut wait = pin!(wait);
    assert!(wait
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    tx.send(Ok(Bytes::from_static(b"+OK\r\n")));
    assert_eq!(wakes(&count), 1, "the reply's arrival wakes the writer");
    match wait.poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(Ok(Ok(bytes))) => assert_eq!(&bytes[..], b"+OK\r\n"),
        other => panic!("expected the reply, got {:?}", other.map(|r| r.is_ok())),
    }
}

#[test]
fn a_reply_that_arrived_before_it_was_queued_still_wakes_the_writer() {
    let (out, mut rx) = Outbox::new(1 << 20);
    let (count, waker) = counter();
    let (tx, reply) = reply_channel(Some(out.meter()));
    // The connection answers before the session has queued the item...
    tx.send(Ok(Bytes::from_static(b"+OK\r\n")));
    // ...while the writer, woken by that, found nothing and went back to waiting.
    assert!(poll_recv(&mut rx, &waker).is_pending());
    let before = wakes(&count);
    out.send_pending(pending(reply));
    assert_eq!(wakes(&count), before + 1, "the writer must be told");
    assert!(matches!(
        poll_recv(&mut rx, &waker),
        Poll::Ready(Some(Outbound::Pending(..)))
    ));
}

#[test]
fn a_reply_dropped_unsent_reaches_the_writer_as_an_error() {
    let (out, mut rx) = Outbox::new(1 << 20);
    let (count, waker) = counter();
    let (tx, reply) = reply_channel(Some(out.meter()));
    out.send_pending(pending(reply));
    let Poll::Ready(Some(Outbound::Pending(mut reply, ..))) = poll_recv(&mut rx, &waker) else {
        panic!("the pending item is queued")
    };
    let mut wait = pin!(rx.reply(&mut reply));
    assert!(wait
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    drop(tx);
    assert_eq!(wakes(&count), 1);
    match wait.poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(Ok(Err(e))) => assert_eq!(e, dropped()),
        other => panic!(
            "expected the dropped error, got {:?}",
            other.map(|r| r.is_ok())
        ),
    }
}

#[test]
fn the_queue_closes_when_every_sender_is_gone_and_it_is_drained() {
    let (out, mut rx) = Outbox::new(1 << 20);
    let (count, waker) = counter();
    let relay = out.clone();
    relay.send(Outbound::Frame(Bytes::from_static(b"+a\r\n")));
    drop(out);
    assert!(matches!(
        poll_recv(&mut rx, &waker),
        Poll::Ready(Some(Outbound::Frame(_)))
    ));
    assert!(poll_recv(&mut rx, &waker).is_pending());
    drop(relay);
    assert_eq!(
        wakes(&count),
        1,
        "the last sender's leaving wakes the writer"
    );
    assert!(matches!(poll_recv(&mut rx, &waker), Poll::Ready(None)));
}

fn slot_of(rx: &ReplyRx) -> *const Slot {
    Arc::as_ptr(rx.0.as_ref().expect("not taken yet"))
}

#[test]
fn an_awaited_reply_is_woken_through_its_slot() {
    let (count, waker) = counter();
    let (tx, mut reply) = reply_channel(None);
    let mut cx = Context::from_waker(&waker);
    assert!(pin!(&mut reply).poll(&mut cx).is_pending());
    tx.send(Ok(Bytes::from_static(b":1\r\n")));
    assert_eq!(wakes(&count), 1);
    match pin!(&mut reply).poll(&mut cx) {
        Poll::Ready(Ok(Ok(bytes))) => assert_eq!(&bytes[..], b":1\r\n"),
        _ => panic!("expected the reply"),
    }
}

#[test]
fn an_unmetered_sender_dropped_unsent_closes_its_receiver() {
    let (count, waker) = counter();
    let (tx, mut reply) = reply_channel(None);
    let mut cx = Context::from_waker(&waker);
    assert!(pin!(&mut reply).poll(&mut cx).is_pending());
    drop(tx);
    assert_eq!(wakes(&count), 1);
    assert!(matches!(
        pin!(&mut reply).poll(&mut cx),
        Poll::Ready(Err(RecvError))
    ));
    assert_eq!(reply.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn a_slot_is_reused_once_both_ends_let_go_and_not_before() {
    let (tx, mut first) = reply_channel(None);
    let used = slot_of(&first);
    tx.send(Ok(Bytes::from_static(b"+OK\r\n")));
    assert!(first.try_recv().is_ok());
    let (tx, second) = reply_channel(None);
    assert_eq!(slot_of(&second), used, "the released slot is taken again");
    // The receiver goes first: the slot stays with the sender, and is empty when reused.
    drop(second);
    let (tx2, third) = reply_channel(None);
    assert_ne!(slot_of(&third), used, "the sender still holds it");
    drop(tx);
    let (_tx3, mut fourth) = reply_channel(None);
    assert_eq!(slot_of(&fourth), used);
    assert_eq!(fourth.try_recv(), Err(TryRecvError::Empty));
    drop((tx2, third));
}
