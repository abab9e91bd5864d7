//! Unit tests of the connection handle and its reader: fills judged against tracking losses
//! interleaved by hand, completions run exactly once, a request's several replies handed in
//! order to its one completion.

use super::serve::Waiting;
use super::*;
use crate::upstream::env::{Counters, Limits, Settings};
use crate::upstream::tracking::TrackingSink;
use std::sync::Mutex;

/// What the upstream side tells the cache, applied to a real cache and remembered.
pub(super) struct Sink {
    pub(super) cache: cache::Cache,
    pub(super) lost: Mutex<Vec<u64>>,
}

impl TrackingSink for Sink {
    fn connection_lost(&self, tag: u64) {
        self.lost.lock().unwrap().push(tag);
        self.cache.invalidate_tag(tag);
    }
    fn invalidate(&self, _keys: Option<Vec<Bytes>>) {}
    fn invalidation_lost(&self, scope: Option<u16>) {
        match scope {
            Some(s) => self.cache.invalidate_scope(s),
            None => self.cache.clear(),
        };
    }
}

/// A shared connection, up and tracked under the current epoch, with no task behind it
/// (its queue is returned so that it stays open), and the tracking and cache it reports to.
pub(super) fn tracked_conn() -> (
    ConnHandle,
    queue::Receiver<Request>,
    Arc<Tracking>,
    Arc<Sink>,
) {
    let sink = Arc::new(Sink {
        cache: cache::Cache::new(cache::CacheConfig {
            max_bytes: 1 << 20,
            policy: Default::default(),
            shards: 0,
        }),
        lost: Mutex::default(),
    });
    let tracking = Arc::new(Tracking::new(TrackingMode::Default, sink.clone()));
    let env = Env {
        settings: Settings {
            addr: "test".into(),
            shared_conns: 1,
            connect_timeout: Duration::from_secs(1),
            upstream_timeout: None,
            username: None,
            password: None,
            tracking_health: None,
            tcp_keepalive: None,
            tls: None,
            readonly: false,
            homes: Default::default(),
            limits: Limits {
                max_open: 0,
                max_idle: 0,
                max_lifetime: None,
                max_idle_time: None,
                wait_timeout: Duration::from_secs(1),
            },
        },
        counters: Arc::new(Counters::default()),
        health: Default::default(),
        tracking: Some(tracking.clone()),
    };
    let (conn, rx) = ConnHandle::new(&env, 3, true);
    conn.state.generation.store(1, Ordering::Release);
    let epoch = tracking.up(42);
    conn.state.tracking_epoch.store(epoch, Ordering::Release);
    conn.state.up.store(true, Ordering::Release);
    assert!(conn.fill_tag().is_some());
    (conn, rx, tracking, sink)
}

/// Begins a fill of `k` through `conn`, running `between` just before the ticket is
/// taken and `after` just after, and completes it once `begin_fill` has returned: whether
/// the entry was stored.
fn fill_with(conn: &ConnHandle, sink: &Sink, between: impl FnOnce(), after: impl FnOnce()) -> bool {
    let ticket = conn.begin_fill(|tag| {
        between();
        let ticket = sink.cache.begin_fill(b"k", tag);
        after();
        ticket
    });
    ticket.is_some_and(|t| sink.cache.complete_fill(t, b"GET k", b"v", u64::MAX, 0))
}

#[test]
fn a_fill_survives_no_loss_of_the_invalidation_connection_whenever_it_comes() {
    let (conn, _rx, tracking, sink) = tracked_conn();
    assert!(
        fill_with(&conn, &sink, || (), || ()),
        "a fill with nothing lost"
    );
    // The invalidation connection drops (fills stop, the cache is flushed) just before the
    // ticket is taken, then just after: either way nothing is stored.
    let drop_invalidation = || tracking.down();
    assert!(
        !fill_with(&conn, &sink, drop_invalidation, || ()),
        "lost before the ticket"
    );
    let (conn, _rx, tracking, sink) = tracked_conn();
    let drop_invalidation = || tracking.down();
    assert!(
        !fill_with(&conn, &sink, || (), drop_invalidation),
        "lost after the ticket"
    );
}

#[test]
fn a_fill_is_never_tagged_with_a_generation_already_lost() {
    let (conn, _rx, tracking, sink) = tracked_conn();
    // The connection drops and comes back (a new generation, tracked under the current
    // epoch) just before the ticket is taken: a fill tagged with the old generation would
    // outlive it, since that tag's entries were dropped before the ticket existed.
    let reconnect = || {
        conn.state.tracking_lost();
        conn.state.generation.fetch_add(1, Ordering::AcqRel);
        let (_, epoch) = tracking.redirect().unwrap();
        conn.state.tracking_epoch.store(epoch, Ordering::Release);
    };
    assert!(!fill_with(&conn, &sink, reconnect, || ()));
    assert!(
        fill_with(&conn, &sink, || (), || ()),
        "the new generation fills"
    );
}

fn recorder() -> (Arc<Mutex<Vec<UpstreamResult>>>, Completion) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let then = move |r| log.lock().unwrap().push(r);
    (seen, Completion(Some(Box::new(then))))
}

#[test]
fn a_completion_runs_once_with_its_reply() {
    let (seen, then) = recorder();
    then.run(Ok(Bytes::from_static(b"+OK\r\n")));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(matches!(&seen[0], Ok(b) if &b[..] == b"+OK\r\n"));
}

#[test]
fn a_completion_dropped_unanswered_runs_with_the_loss() {
    let (seen, then) = recorder();
    drop(then);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(matches!(&seen[0], Err(UpstreamError::Lost { .. })));
}

type Seen = Arc<Mutex<Vec<(usize, UpstreamResult)>>>;

/// A request expecting `count` replies, and what its completion was handed.
fn each(count: usize) -> (Seen, Expect) {
    let seen = Seen::default();
    let log = seen.clone();
    let then = move |i, r| log.lock().unwrap().push((i, r));
    let replies = Replies {
        then: Box::new(then),
        next: 0,
        count,
    };
    (seen, Expect::Each(replies))
}

/// Indexes and replies handed on (`Err` as "!" and the error's kind).
fn shown(seen: &Seen) -> Vec<(usize, String)> {
    let show = |r: &UpstreamResult| match r {
        Ok(b) => String::from_utf8_lossy(b).trim_end().to_string(),
        Err(UpstreamError::Lost { .. }) => "!lost".into(),
        Err(UpstreamError::Closed { .. }) => "!closed".into(),
        Err(e) => format!("!{e}"),
    };
    let seen = seen.lock().unwrap();
    seen.iter().map(|(i, r)| (*i, show(r))).collect()
}

#[test]
fn a_request_of_several_replies_hands_each_in_order_to_its_one_completion() {
    let (conn, _rx, _tracking, _sink) = tracked_conn();
    let (first, expect_first) = each(2);
    let (second, expect_second) = each(3);
    let deadline = Some(Instant::now() + Duration::from_secs(60));
    let mut waiting = Waiting::holding([
        Due {
            expect: expect_first,
            deadline: None,
        },
        Due {
            expect: expect_second,
            deadline,
        },
    ]);
    conn.state.inflight.fetch_add(2, Ordering::AcqRel);
    for frame in [&b"$1\r\na\r\n"[..], b":-1\r\n", b"$1\r\nb\r\n"] {
        waiting
            .deliver(Bytes::from_static(frame), &conn.state)
            .unwrap();
    }
    assert_eq!(shown(&first), [(0, "$1\r\na".into()), (1, ":-1".into())]);
    assert_eq!(shown(&second), [(0, "$1\r\nb".into())]);
    assert_eq!(
        conn.inflight(),
        1,
        "the first request is answered, not the second"
    );
    let front = waiting
        .queue
        .front()
        .expect("the second request still waits");
    assert_eq!(
        front.deadline, deadline,
        "under the deadline of the whole request"
    );

    // The connection fails with two replies still owed: each gets the error, once.
    let err = UpstreamError::Closed {
        addr: "test".into(),
    };
    waiting.fail_all(&err, &conn.state);
    assert_eq!(
        shown(&second),
        [
            (0, "$1\r\nb".into()),
            (1, "!closed".into()),
            (2, "!closed".into())
        ]
    );
    assert_eq!(
        shown(&first).len(),
        2,
        "nothing more for the answered request"
    );
    assert_eq!(conn.inflight(), 0);
}

#[test]
fn a_request_of_several_replies_dropped_unanswered_hands_each_the_loss_once() {
    let (seen, expect) = each(3);
    let Expect::Each(mut replies) = expect else {
        unreachable!()
    };
    assert!(!replies.run(Ok(Bytes::from_static(b"+OK\r\n"))));
    drop(replies);
    assert_eq!(
        shown(&seen),
        [(0, "+OK".into()), (1, "!lost".into()), (2, "!lost".into())]
    );
}
