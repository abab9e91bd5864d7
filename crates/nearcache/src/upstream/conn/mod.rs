//! One upstream connection as an active object: a task owning the socket, and cheap handles
//! through which sessions queue requests to it.
//!
//! The task ([`serve`]) runs two halves concurrently: the writer takes requests off the queue,
//! records what each expects, and writes them in batches; the reader measures each reply
//! frame (no parsing into a tree, no copy: the reply is a slice of the read buffer) and hands it
//! to the oldest expectation. A dedicated connection can switch to *relay* mode, where every
//! frame goes to the owning session in arrival order (pub/sub, MONITOR, CLIENT REPLY OFF).
//! [`spawn`] starts the tasks: shared connections reconnect, dedicated ones die with their
//! socket.
//!
//! Owns the socket and the order of replies. Never decides which connection a request goes
//! to (the pool and the session do), and never blocks its task on a caller.

mod queue;
mod serve;
pub(super) mod spawn;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::connect::tracking_command;
use super::env::Env;
use super::tracking::{scope_bits, Tracking, TrackingMode, BCAST_TAG};
use crate::reply::{
    self, OutMeter, Outbound, Outbox, ReplyRx, ReplyTx, UpstreamError, UpstreamResult,
};

/// What a request expects back.
pub enum Expect {
    /// Exactly one reply frame, delivered to this channel.
    One(ReplyTx),
    /// Exactly one reply frame (or why there is none), handed to this function by the
    /// connection's task as soon as it is read. The function must be quick and must not block:
    /// it is how a cache fill completes without a task of its own.
    Then(Completion),
    /// A fixed number of reply frames (several commands pipelined as one request), each handed
    /// in order to the same function as it is read, as [`Expect::Then`] hands its one. The
    /// request's timeout covers all of them.
    Each(Replies),
    /// Switch the connection to relay mode: from now on every frame goes to this session queue.
    Relay(Outbox),
    /// Leave relay mode: on a relaying connection, the frame equal to these bytes (the reply to
    /// this request, a `PING` with a token) is the last relayed one's successor; it is handed to
    /// the completion instead of the session, and replies are matched again from then on.
    EndRelay(Bytes, Completion),
    /// The rest of a request its session began to write itself: bytes only, its expectation
    /// is already with the reader (see [`Inline`]).
    Written,
    /// The reply to `CLIENT TRACKING on REDIRECT`: on `+OK`, fills through this connection are
    /// protected under this tracking epoch. Judged by the task that wrote the command, so the
    /// reply is known to come from the same socket.
    Track(u64),
}

/// Work done with a reply by the task that read it (see [`Expect::Then`]). It runs exactly
/// once: with the reply, with the error that failed the request, or, if the request is dropped
/// unanswered (its connection's task ended with it still queued), with that loss.
pub struct Completion(Option<Box<dyn FnOnce(UpstreamResult) + Send>>);

impl Completion {
    fn run(mut self, result: UpstreamResult) {
        if let Some(then) = self.0.take() {
            then(result);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(then) = self.0.take() {
            then(Err(reply::dropped()));
        }
    }
}

/// Work done with each of a request's reply frames by the task that read it (see
/// [`Expect::Each`]): the function is called once per reply owed, with its index (0 first) and
/// the reply, or the error that failed the request, or, if the request is dropped with replies
/// still owed, that loss; never more often than replies were owed.
pub struct Replies {
    then: Box<dyn FnMut(usize, UpstreamResult) + Send>,
    next: usize,
    count: usize,
}

impl Replies {
    /// Hands the next reply on; whether every reply owed has been handed on.
    fn run(&mut self, result: UpstreamResult) -> bool {
        if self.next < self.count {
            (self.then)(self.next, result);
            self.next += 1;
        }
        self.next >= self.count
    }

    /// Hands `err` on for every reply still owed.
    fn fail(&mut self, err: &UpstreamError) {
        while !self.run(Err(err.clone())) {}
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        if self.next >= self.count {
            // Answered in full (the usual case): nothing to make an error for.
            return;
        }
        self.fail(&reply::dropped());
    }
}

const CLIENT_ID: &[u8] = b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n";

/// The value of an integer reply (`:<n>\r\n`).
fn parse_integer(reply: &[u8]) -> Option<i64> {
    std::str::from_utf8(reply.strip_prefix(b":")?)
        .ok()?
        .trim_end()
        .parse()
        .ok()
}

/// An expectation with the time its reply is due.
struct Due {
    expect: Expect,
    deadline: Option<Instant>,
}

/// A dedicated connection's socket, as its session writes on it directly while the connection's
/// writer has nothing queued: one task hop less per command, and a command leaves for Redis
/// from the task that read it from the client (two clients' commands reach Redis in the order
/// they came more often). What the socket does not take at once goes to the writer, which
/// then has everything after it too until it has written it all.
struct Inline {
    wr: Arc<super::stream::WriteHalf>,
    due: queue::Sender<Due>,
}

impl Inline {
    /// Hands the expectation to the reader and writes what the socket takes now; returns the
    /// rest, for the writer.
    fn write(&self, req: Request, timeout: Option<Duration>) -> Option<Request> {
        let Request {
            bytes,
            expect,
            timed,
        } = req;
        let deadline = timeout.filter(|_| timed).map(|t| Instant::now() + t);
        if let Err(due) = self.due.send(Due { expect, deadline }) {
            // The reader is gone: the writer's path fails the request.
            let expect = due.expect;
            return Some(Request {
                bytes,
                expect,
                timed,
            });
        }
        let n = self.wr.try_write(&bytes).unwrap_or(0);
        (n < bytes.len()).then(|| Request {
            bytes: bytes.slice(n..),
            expect: Expect::Written,
            timed: false,
        })
    }
}

/// One encoded command (or several, pipelined) and what it expects back.
pub struct Request {
    pub bytes: Bytes,
    pub expect: Expect,
    /// Whether `--upstream-timeout` applies (not to blocking commands or relayed sessions).
    pub timed: bool,
}

/// State shared between a connection's task and its handles.
struct ConnState {
    addr: String,
    proto: u8,
    /// Requests sent whose reply has not arrived yet.
    inflight: AtomicUsize,
    /// False while a shared connection is reconnecting, and forever once a dedicated one dies.
    up: AtomicBool,
    /// Unique per connection object; with `generation`, it makes the cache tag.
    index: u64,
    /// Bumped at every (re)connect of a shared connection.
    generation: AtomicU64,
    /// Tracking epoch this connection's `CLIENT TRACKING ... REDIRECT` points at (0: none).
    tracking_epoch: AtomicU64,
    /// A dedicated connection's socket for its session to write on (`None` for a shared one,
    /// and while the connection is down).
    inline: Option<Mutex<Option<Inline>>>,
    /// Requests handed to the writer and not written yet (dedicated connections).
    queued: AtomicUsize,
    timeout: Option<Duration>,
    /// Opened without a handshake: its first frame may be Redis refusing it.
    unprobed: AtomicBool,
    /// Where the pushes this connection receives go while a client holds it.
    pushes: Mutex<Option<Outbox>>,
    /// The id Redis gave this connection, once asked (`CLIENT ID`), or -1.
    client_id: AtomicI64,
    asked_id: AtomicBool,
    tracking: Option<Arc<Tracking>>,
    created: Instant,
    /// Set when the pool replaces this connection: no new work, close once drained.
    retiring: AtomicBool,
    /// A dedicated connection whose session changed what the pool set up (its user, protocol,
    /// db, tracking, subscriptions): the pool never takes it back.
    tainted: AtomicBool,
    /// A dedicated connection logged in as a client's own ACL user: its session may keep using
    /// it, but the pool never takes it back.
    foreign: AtomicBool,
    retire: Notify,
    /// Signalled when the connection comes up.
    came_up: Notify,
}

impl ConnState {
    fn set_inline(&self, inline: Option<Inline>) {
        if let Some(slot) = &self.inline {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = inline;
        }
    }

    /// The writer has written `n` requests.
    fn written(&self, n: usize) {
        if self.inline.is_some() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
        }
    }

    fn pushes(&self) -> Option<Outbox> {
        self.pushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The node's scope (16 bits), the connection's index (16 bits, wrapping: two connections
    /// sharing a tag only drop more), its generation (32 bits).
    fn tag(&self) -> u64 {
        let scope = scope_bits(self.tracking.as_ref().and_then(|t| t.scope));
        scope
            | ((self.index & 0xffff) << 32)
            | (self.generation.load(Ordering::Acquire) & 0xffff_ffff)
    }

    /// The connection no longer protects what it filled: tell the cache, before any new fill.
    fn tracking_lost(&self) {
        self.tracking_epoch.store(0, Ordering::Release);
        if let Some(t) = &self.tracking {
            t.sink.connection_lost(self.tag());
        }
    }
}

/// A cheap, cloneable handle to a connection task.
#[derive(Clone)]
pub struct ConnHandle {
    tx: queue::Sender<Request>,
    state: Arc<ConnState>,
}

impl ConnHandle {
    fn new(env: &Env, proto: u8, tracking: bool) -> (Self, queue::Receiver<Request>) {
        let (tx, rx) = queue::queue();
        let state = Arc::new(ConnState {
            addr: env.settings.addr.clone(),
            proto,
            inflight: AtomicUsize::new(0),
            up: AtomicBool::new(false),
            index: env.counters.next_index(),
            generation: AtomicU64::new(0),
            tracking_epoch: AtomicU64::new(0),
            // Shared connections (the ones that track) are written by their task alone.
            inline: (!tracking).then(|| Mutex::new(None)),
            queued: AtomicUsize::new(0),
            timeout: env.settings.upstream_timeout,
            unprobed: AtomicBool::new(false),
            pushes: Mutex::new(None),
            client_id: AtomicI64::new(-1),
            asked_id: AtomicBool::new(false),
            tracking: env.tracking.clone().filter(|_| tracking),
            created: Instant::now(),
            retiring: AtomicBool::new(false),
            tainted: AtomicBool::new(false),
            foreign: AtomicBool::new(false),
            retire: Notify::new(),
            came_up: Notify::new(),
        });
        (ConnHandle { tx, state }, rx)
    }

    /// Sends a request expecting one reply; the receiver yields the reply or why there is none.
    pub fn call(&self, bytes: Bytes) -> ReplyRx {
        self.call_for(bytes, true, None)
    }

    /// [`ConnHandle::call`] for a client: whether the upstream timeout applies (a blocking
    /// command may legitimately wait for ever), and the client's output meter to charge.
    pub fn call_for(&self, bytes: Bytes, timed: bool, meter: Option<&Arc<OutMeter>>) -> ReplyRx {
        let (tx, rx) = reply::reply_channel(meter);
        self.send(Request {
            bytes,
            expect: Expect::One(tx),
            timed,
        });
        rx
    }

    /// Sends a request expecting one reply, and has the connection's task run `then` with it
    /// (or with why there is none). Replies read together are thus handed on together, with no
    /// task woken per reply.
    pub fn call_then(&self, bytes: Bytes, then: impl FnOnce(UpstreamResult) + Send + 'static) {
        self.send(Request {
            bytes,
            expect: Expect::Then(Completion(Some(Box::new(then)))),
            timed: true,
        });
    }

    /// Sends `count` commands pipelined in `bytes` as one request (at least one), and has the
    /// connection's task run `then` with each reply in turn, its index first (or with why there
    /// is none): one function, boxed once, for all of them. The timeout covers the whole
    /// request.
    pub fn call_each(
        &self,
        bytes: Bytes,
        count: usize,
        then: impl FnMut(usize, UpstreamResult) + Send + 'static,
    ) {
        assert!(count > 0, "a request expects at least one reply");
        self.send(Request {
            bytes,
            expect: Expect::Each(Replies {
                then: Box::new(then),
                next: 0,
                count,
            }),
            timed: true,
        });
    }

    /// Sends `ping` (a `PING` with a token, whose reply is `reply`) on a relaying connection;
    /// `then` runs when that reply arrives, every frame before it relayed, and replies are
    /// matched to requests again from then on. The session must know Redis sends nothing
    /// unasked any more (no subscriptions, no MONITOR, replies on, no pushes).
    pub fn end_relay(
        &self,
        ping: Bytes,
        reply: Bytes,
        then: impl FnOnce(UpstreamResult) + Send + 'static,
    ) {
        self.send(Request {
            bytes: ping,
            expect: Expect::EndRelay(reply, Completion(Some(Box::new(then)))),
            timed: false,
        });
    }

    /// Sends a request whose replies, and every frame after them, are relayed to `sink`.
    pub fn relay(&self, bytes: Bytes, sink: Outbox) {
        self.send(Request {
            bytes,
            expect: Expect::Relay(sink),
            timed: false,
        });
    }

    fn send(&self, req: Request) {
        self.state.inflight.fetch_add(1, Ordering::AcqRel);
        let Some(slot) = &self.state.inline else {
            return self.enqueue(req);
        };
        // Under the lock, so that two senders' bytes never interleave.
        let inline = slot.lock().unwrap_or_else(|p| p.into_inner());
        let req = match inline.as_ref() {
            Some(inline) if self.state.queued.load(Ordering::Acquire) == 0 => {
                match inline.write(req, self.state.timeout) {
                    None => return,
                    Some(rest) => rest,
                }
            }
            _ => req,
        };
        self.state.queued.fetch_add(1, Ordering::AcqRel);
        self.enqueue(req);
    }

    fn enqueue(&self, req: Request) {
        if let Err(req) = self.tx.send(req) {
            let err = UpstreamError::Lost {
                addr: self.state.addr.clone(),
                cause: "connection closed".into(),
            };
            fail(req.expect, &err, &self.state);
        }
    }

    /// Requests sent and not yet answered.
    pub fn inflight(&self) -> usize {
        self.state.inflight.load(Ordering::Acquire)
    }

    /// Pushes this connection receives go to `sink` (the session of the client holding it), or
    /// are dropped (`None`).
    pub fn set_push_sink(&self, sink: Option<Outbox>) {
        *self.state.pushes.lock().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// The id Redis gave this connection, once [`ConnHandle::learn_client_id`] has it.
    pub fn client_id(&self) -> Option<i64> {
        Some(self.state.client_id.load(Ordering::Acquire)).filter(|&id| id >= 0)
    }

    /// Asks Redis, once per connection, for its client id (`CLIENT ID`, sent before whatever is
    /// sent next). Only when the id is needed (a client others may redirect to or unblock):
    /// every command shows in `MONITOR`.
    pub fn learn_client_id(&self) {
        if self.state.asked_id.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = self.state.clone();
        self.call_then(Bytes::from_static(CLIENT_ID), move |reply| {
            if let Some(id) = reply.ok().as_deref().and_then(parse_integer) {
                state.client_id.store(id, Ordering::Release);
            }
        });
    }

    /// The id Redis gave this connection, asked now if not known yet (on a matched connection:
    /// the reply is awaited in turn).
    pub async fn fetch_client_id(&self) -> Option<i64> {
        if let Some(id) = self.client_id() {
            return Some(id);
        }
        let reply = self.call(Bytes::from_static(CLIENT_ID)).await.ok()?.ok()?;
        let id = parse_integer(&reply)?;
        self.state.client_id.store(id, Ordering::Release);
        Some(id)
    }

    /// Whether the connection is established and takes new work (a dead dedicated connection
    /// never comes back; a retiring one only finishes what it has).
    pub fn is_up(&self) -> bool {
        self.state.up.load(Ordering::Acquire)
            && !self.state.retiring.load(Ordering::Acquire)
            && !self.tx.is_closed()
    }

    /// Waits until the connection is up, for at most `limit`.
    pub async fn wait_up(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.state.came_up.notified();
            if self.is_up() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_up();
            }
        }
    }

    /// How long ago the connection object was created.
    pub fn age(&self) -> Duration {
        self.state.created.elapsed()
    }

    /// Takes the connection out of service: it answers what was sent to it, then closes and
    /// drops the cache entries its tracking protected. Only shared connections are retired.
    pub fn retire(&self) {
        self.state.retiring.store(true, Ordering::Release);
        self.state.retire.notify_one();
    }

    /// Marks a dedicated connection as no longer in the state the pool made it (a RESET logged
    /// it out, a HELLO changed its protocol, ...): [`crate::upstream::Pool::release`] closes it.
    pub fn taint(&self) {
        self.state.tainted.store(true, Ordering::Release);
    }

    /// Whether [`ConnHandle::taint`] was called.
    pub fn is_tainted(&self) -> bool {
        self.state.tainted.load(Ordering::Acquire)
    }

    /// Marks a dedicated connection logged in as another user than the pool's: unlike a
    /// tainted one, its session keeps it as long as it needs it; the pool closes it after.
    pub fn mark_foreign(&self) {
        self.state.foreign.store(true, Ordering::Release);
    }

    /// Whether [`ConnHandle::mark_foreign`] was called.
    pub fn is_foreign(&self) -> bool {
        self.state.foreign.load(Ordering::Acquire)
    }

    /// The RESP version this connection speaks.
    pub fn proto(&self) -> u8 {
        self.state.proto
    }

    /// Starts a fill through this connection, if its tracking protects fills now: `ticket`
    /// takes the fill's ticket(s) for the tag the entries will carry, and what it returns is
    /// handed back, or `None` (the tickets dropped) when there is nothing to fill.
    ///
    /// The ticket is taken *before* the tracking is judged, never after. A loss that comes
    /// before the judgement is seen by it (the epoch is no longer current, or the connection's
    /// generation, hence its tag, has changed); a loss that comes after it voids the ticket
    /// (the flush or `invalidate_tag` bumps a counter the ticket recorded). Judged first, a loss
    /// in between would be seen by neither: the judgement passed, and the ticket, taken after
    /// the flush, would be fresh. The judgement's reads synchronise with the loss's writes
    /// (the redirect's mutex; `tracking_lost` stores the epoch before it bumps the tag's
    /// counter, and a reconnect bumps the generation before it stores the new epoch), so a
    /// ticket that predates a loss is always followed by a judgement that sees it or by a
    /// counter that voids it.
    pub fn begin_fill<F>(&self, ticket: impl FnOnce(u64) -> F) -> Option<F> {
        let tag = self.fill_tag()?;
        let tickets = ticket(tag);
        (self.fill_tag() == Some(tag)).then_some(tickets)
    }

    /// The cache tag for a fill through this connection, if its tracking protects fills now.
    pub fn fill_tag(&self) -> Option<u64> {
        let t = self.state.tracking.as_ref()?;
        if t.mode != TrackingMode::Default {
            // BCAST: what protects an entry is the invalidation connection alone.
            return (self.is_up() && t.redirect().is_some()).then_some(BCAST_TAG);
        }
        let epoch = self.state.tracking_epoch.load(Ordering::Acquire);
        (self.is_up() && t.is_current(epoch)).then(|| self.state.tag())
    }

    /// Points this connection's tracking at a new invalidation connection. Fills through it
    /// resume once Redis has answered, if the connection was not replaced meanwhile.
    pub fn retrack(&self, client_id: i64, epoch: u64) {
        self.send(Request {
            bytes: tracking_command(client_id),
            expect: Expect::Track(epoch),
            timed: true,
        });
    }

    /// The `host:port` this connection goes to.
    pub fn addr(&self) -> &str {
        &self.state.addr
    }

    /// True when both handles drive the same connection.
    pub fn same(&self, other: &ConnHandle) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}

fn fail(expect: Expect, err: &UpstreamError, state: &ConnState) {
    if matches!(expect, Expect::Written) {
        // Counted, and failed, with the expectation it belongs to.
        return;
    }
    state.inflight.fetch_sub(1, Ordering::AcqRel);
    match expect {
        Expect::One(tx) => tx.send(Err(err.clone())),
        Expect::Then(then) => then.run(Err(err.clone())),
        Expect::Each(mut replies) => replies.fail(err),
        Expect::Relay(sink) => close_relay(&sink, err),
        Expect::Track(_) => {}
        Expect::EndRelay(_, then) => then.run(Err(err.clone())),
        Expect::Written => {}
    }
}

/// Ends a relayed session. A clean close by Redis (after QUIT, say) is passed on as a plain
/// close, as Redis itself would do it; anything else is explained first.
fn close_relay(sink: &Outbox, err: &UpstreamError) {
    // A relayed session's connection is its own: when it breaks the client is closed, as
    // Redis would close it, with no reply of the proxy's.
    if !err.ends_session() {
        sink.send(Outbound::Frame(err.to_frame()));
    }
    sink.send(Outbound::Close);
}

#[cfg(test)]
mod tests;
