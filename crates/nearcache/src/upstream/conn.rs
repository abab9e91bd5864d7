//! One upstream connection as an active object.
//!
//! The task owning the socket runs two halves concurrently: the writer takes requests off the
//! queue, records what each expects, and writes them in batches; the reader measures each reply
//! frame (no parsing into a tree, no copy: the reply is a slice of the read buffer) and hands it
//! to the oldest expectation. A dedicated connection can switch to *relay* mode, where every
//! frame goes to the owning session in arrival order (pub/sub, MONITOR, CLIENT REPLY OFF).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, warn};

use crate::reply::{self, OutMeter, Outbound, Outbox, ReplyTx, UpstreamError, UpstreamResult};

use super::pool::{Env, PoolConfig};
use super::slots::{CloseReason, Slot};
use super::tracking::{Tracking, TrackingMode, BCAST_TAG};

/// How many bytes of queued requests are coalesced into one socket write.
const WRITE_BATCH: usize = 256 * 1024;
/// Requests this large are written from their own buffer rather than copied into the batch.
const WRITE_ALONE: usize = 16 * 1024;
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(400);
/// A retired connection keeps serving this long for requests already on their way to it.
const RETIRE_GRACE: Duration = Duration::from_millis(100);
/// A retired connection waits at most this long for its last replies.
const RETIRE_DRAIN: Duration = Duration::from_secs(10);

/// What a request expects back.
pub enum Expect {
    /// Exactly one reply frame, delivered to this channel.
    One(ReplyTx),
    /// Exactly one reply frame (or why there is none), handed to this function by the
    /// connection's task as soon as it is read. The function must be quick and must not block:
    /// it is how a cache fill completes without a task of its own.
    Then(Completion),
    /// Switch the connection to relay mode: from now on every frame goes to this session queue.
    Relay(Outbox),
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
            then(Err(UpstreamError::Lost {
                addr: "upstream".into(),
                cause: "request dropped".into(),
            }));
        }
    }
}

/// One encoded command (or several, pipelined) and what it expects back.
pub struct Request {
    pub bytes: Bytes,
    pub expect: Expect,
    /// Whether `--upstream-timeout` applies (not to blocking commands or relayed sessions).
    pub timed: bool,
}

/// An expectation with the time its reply is due.
struct Due {
    expect: Expect,
    deadline: Option<Instant>,
}

/// How a connection's service ended.
enum Ended {
    /// Every handle is gone.
    Dropped,
    /// Replaced by the pool, after its last replies came in.
    Retired,
    Failed(UpstreamError),
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
    tracking: Option<Arc<Tracking>>,
    created: Instant,
    /// Set when the pool replaces this connection: no new work, close once drained.
    retiring: AtomicBool,
    retire: Notify,
    /// Signalled when the connection comes up.
    came_up: Notify,
}

impl ConnState {
    fn tag(&self) -> u64 {
        (self.index << 32) | (self.generation.load(Ordering::Acquire) & 0xffff_ffff)
    }

    /// The connection no longer protects what it filled: tell the cache, before any new fill.
    fn tracking_lost(&self) {
        self.tracking_epoch.store(0, Ordering::Release);
        if let Some(t) = &self.tracking {
            t.sink.connection_lost(self.tag());
        }
    }
}

static NEXT_INDEX: AtomicU64 = AtomicU64::new(1);

/// A cheap, cloneable handle to a connection task.
#[derive(Clone)]
pub struct ConnHandle {
    tx: mpsc::UnboundedSender<Request>,
    state: Arc<ConnState>,
}

impl ConnHandle {
    fn new(
        addr: &str,
        proto: u8,
        tracking: Option<Arc<Tracking>>,
    ) -> (Self, mpsc::UnboundedReceiver<Request>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(ConnState {
            addr: addr.to_string(),
            proto,
            inflight: AtomicUsize::new(0),
            up: AtomicBool::new(false),
            index: NEXT_INDEX.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            tracking_epoch: AtomicU64::new(0),
            tracking,
            created: Instant::now(),
            retiring: AtomicBool::new(false),
            retire: Notify::new(),
            came_up: Notify::new(),
        });
        (ConnHandle { tx, state }, rx)
    }

    /// Sends a request expecting one reply; the receiver yields the reply or why there is none.
    pub fn call(&self, bytes: Bytes) -> oneshot::Receiver<UpstreamResult> {
        self.call_for(bytes, true, None)
    }

    /// [`ConnHandle::call`] for a client: whether the upstream timeout applies (a blocking
    /// command may legitimately wait for ever), and the client's output meter to charge.
    pub fn call_for(
        &self,
        bytes: Bytes,
        timed: bool,
        meter: Option<&Arc<OutMeter>>,
    ) -> oneshot::Receiver<UpstreamResult> {
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
        if let Err(mpsc::error::SendError(req)) = self.tx.send(req) {
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

    /// The RESP version this connection speaks.
    pub fn proto(&self) -> u8 {
        self.state.proto
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

    /// True when both handles drive the same connection.
    pub fn same(&self, other: &ConnHandle) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}

fn fail(expect: Expect, err: &UpstreamError, state: &ConnState) {
    state.inflight.fetch_sub(1, Ordering::AcqRel);
    match expect {
        Expect::One(tx) => tx.send(Err(err.clone())),
        Expect::Then(then) => then.run(Err(err.clone())),
        Expect::Relay(sink) => close_relay(&sink, err),
        Expect::Track(_) => {}
    }
}

/// Ends a relayed session. A clean close by Redis (after QUIT, say) is passed on as a plain
/// close, as Redis itself would do it; anything else is explained first.
fn close_relay(sink: &Outbox, err: &UpstreamError) {
    if !matches!(err, UpstreamError::Closed { .. }) {
        sink.send(Outbound::Frame(err.to_frame()));
    }
    sink.send(Outbound::Close);
}

fn tracking_command(client_id: i64) -> Bytes {
    let mut out = BytesMut::new();
    let id = client_id.to_string();
    resp::encode_command(
        &["CLIENT", "TRACKING", "on", "REDIRECT", id.as_str()],
        &mut out,
    );
    out.freeze()
}

/// Opens a TCP connection and performs the handshake: `HELLO 3` for RESP3, `AUTH` when the
/// proxy has upstream credentials, then any `extra` commands (each must not fail). With none
/// of these a `PING` is sent, so that a server refusing us (maxclients) is noticed here and not
/// by the first client request.
pub async fn connect(
    cfg: &PoolConfig,
    proto: u8,
    extra: &[Bytes],
) -> Result<TcpStream, UpstreamError> {
    let unavailable = |cause: String| UpstreamError::Unavailable {
        addr: cfg.addr.clone(),
        cause,
    };
    let mut stream = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&cfg.addr))
        .await
        .map_err(|_| unavailable("connect timed out".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut hello: Vec<Bytes> = Vec::new();
    if proto == 3 {
        hello.extend([b"HELLO".as_slice(), b"3"].map(Bytes::from_static));
        if let Some(pass) = &cfg.password {
            let user = cfg.username.clone().unwrap_or_else(|| "default".into());
            hello.extend([
                Bytes::from_static(b"AUTH"),
                user.into(),
                pass.clone().into(),
            ]);
        }
    } else if let Some(pass) = &cfg.password {
        hello.push(Bytes::from_static(b"AUTH"));
        if let Some(user) = &cfg.username {
            hello.push(user.clone().into());
        }
        hello.push(pass.clone().into());
    }
    if hello.is_empty() && extra.is_empty() {
        hello.push(Bytes::from_static(b"PING"));
    }
    let mut out = BytesMut::new();
    let mut expected = extra.len();
    if !hello.is_empty() {
        resp::encode_command(&hello, &mut out);
        expected += 1;
    }
    for cmd in extra {
        out.extend_from_slice(cmd);
    }
    let replies = tokio::time::timeout(cfg.connect_timeout, handshake(&mut stream, &out, expected))
        .await
        .map_err(|_| unavailable("handshake timed out".into()))?
        .map_err(|e| unavailable(format!("handshake failed: {e}")))?;
    for reply in replies {
        if reply.first() == Some(&b'-') {
            let text = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
            return Err(unavailable(format!("handshake rejected: {text}")));
        }
    }
    Ok(stream)
}

/// Writes `out` and reads `n` replies (push frames are skipped).
pub async fn handshake(
    stream: &mut TcpStream,
    out: &[u8],
    n: usize,
) -> std::io::Result<Vec<Bytes>> {
    stream.write_all(out).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut replies = Vec::with_capacity(n);
    while replies.len() < n {
        match resp::scan(&buf, &resp::Limits::default())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            Some(len) => {
                let frame = buf.split_to(len).freeze();
                if frame.first() != Some(&b'>') {
                    replies.push(frame);
                }
            }
            None => {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
    Ok(replies)
}

/// Starts a shared connection holding `slot`: a task that connects, serves, and reconnects with
/// backoff until it is retired or every handle is gone. While Redis is unreachable, requests
/// fail at once with the cause.
pub fn spawn_shared(env: Arc<Env>, proto: u8, slot: Slot) -> ConnHandle {
    let (handle, mut rx) = ConnHandle::new(&env.cfg.addr, proto, env.tracking.clone());
    let state = handle.state.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let cfg = &env.cfg;
        let mut backoff = MIN_BACKOFF;
        loop {
            let redirect = state
                .tracking
                .as_ref()
                .filter(|t| t.mode == TrackingMode::Default)
                .and_then(|t| t.redirect());
            let extra: Vec<Bytes> = redirect
                .iter()
                .map(|(id, _)| tracking_command(*id))
                .collect();
            match connect(cfg, proto, &extra).await {
                Ok(stream) => {
                    if state.generation.fetch_add(1, Ordering::AcqRel) > 0 {
                        crate::obs::upstream_reconnected();
                    }
                    if let Some((_, epoch)) = redirect {
                        state.tracking_epoch.store(epoch, Ordering::Release);
                    }
                    env.health.connected("shared", &cfg.addr);
                    backoff = MIN_BACKOFF;
                    state.up.store(true, Ordering::Release);
                    state.came_up.notify_waiters();
                    let ended = serve(stream, &mut rx, &state, cfg.upstream_timeout).await;
                    state.up.store(false, Ordering::Release);
                    state.tracking_lost();
                    match ended {
                        Ended::Dropped | Ended::Retired => return,
                        Ended::Failed(err) => {
                            env.slots.closed(CloseReason::Error);
                            warn!(upstream = %cfg.addr, proto, %err, "upstream connection lost; reconnecting");
                        }
                    }
                }
                Err(err) => {
                    env.health.failed("shared", &err);
                    if !refuse_until(&mut rx, &state, &err, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
    handle
}

/// Fails every request that arrives during `wait`; returns false once no handle is left.
async fn refuse_until(
    rx: &mut mpsc::UnboundedReceiver<Request>,
    state: &ConnState,
    err: &UpstreamError,
    wait: Duration,
) -> bool {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return true,
            req = rx.recv() => match req {
                Some(req) => fail(req.expect, err, state),
                None => return false,
            },
        }
    }
}

/// Opens a dedicated connection for one session, holding `slot`. It dies with its socket: no
/// reconnect, since the session state it carried (MULTI, SELECT, subscriptions) would be gone.
pub async fn connect_dedicated(
    env: &Arc<Env>,
    proto: u8,
    slot: Slot,
) -> Result<ConnHandle, UpstreamError> {
    let stream = match connect(&env.cfg, proto, &[]).await {
        Ok(s) => s,
        Err(e) => {
            env.health.failed("dedicated", &e);
            return Err(e);
        }
    };
    env.health.connected("dedicated", &env.cfg.addr);
    let (handle, mut rx) = ConnHandle::new(&env.cfg.addr, proto, None);
    let state = handle.state.clone();
    state.up.store(true, Ordering::Release);
    let env = env.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let ended = serve(stream, &mut rx, &state, env.cfg.upstream_timeout).await;
        state.up.store(false, Ordering::Release);
        rx.close();
        let err = match ended {
            Ended::Failed(err) => {
                env.slots.closed(CloseReason::Error);
                err
            }
            Ended::Dropped | Ended::Retired => UpstreamError::Lost {
                addr: state.addr.clone(),
                cause: "connection closed".into(),
            },
        };
        while let Ok(req) = rx.try_recv() {
            fail(req.expect, &err, &state);
        }
    });
    Ok(handle)
}

/// Runs one established connection until it fails, is retired, or every handle is gone.
/// Requests that were written but not answered are failed before returning.
async fn serve(
    stream: TcpStream,
    rx: &mut mpsc::UnboundedReceiver<Request>,
    state: &ConnState,
    timeout: Option<Duration>,
) -> Ended {
    let (mut rd, mut wr) = stream.into_split();
    let (exp_tx, mut exp_rx) = mpsc::unbounded_channel::<Due>();
    let mut relay: Option<Outbox> = None;
    let mut queue: VecDeque<Due> = VecDeque::new();
    let addr = &state.addr;
    let lost = |cause: String| UpstreamError::Lost {
        addr: addr.clone(),
        cause,
    };

    let writing = async {
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            let Some(req) = rx.recv().await else {
                return Ended::Dropped;
            };
            // The clock is read only when a timeout applies (not on the hot path otherwise).
            let now = timeout.map(|_| Instant::now());
            let mut batch = Some(req);
            while let Some(req) = batch.take() {
                let Request {
                    bytes,
                    expect,
                    timed,
                } = req;
                let deadline = timeout.zip(now).filter(|_| timed).map(|(t, now)| now + t);
                // The expectation is queued before the bytes leave, so the reader finds it.
                let _ = exp_tx.send(Due { expect, deadline });
                if bytes.len() < WRITE_ALONE {
                    out.extend_from_slice(&bytes);
                } else {
                    // A large request (a big SET): written as it is, after what precedes it.
                    let written = async {
                        wr.write_all(&out).await?;
                        wr.write_all(&bytes).await
                    };
                    if let Err(e) = written.await {
                        return Ended::Failed(lost(e.to_string()));
                    }
                    out.clear();
                }
                if out.len() < WRITE_BATCH {
                    batch = rx.try_recv().ok();
                }
            }
            if let Err(e) = wr.write_all(&out).await {
                return Ended::Failed(lost(e.to_string()));
            }
            out.clear();
        }
    };

    let reading = async {
        let limits = resp::Limits::default();
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
        let timer = tokio::time::sleep_until(far);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            while let Ok(due) = exp_rx.try_recv() {
                queue.push_back(due);
            }
            // Replies come in order, so the oldest timed request is the one to watch.
            let next = queue.iter().find_map(|d| d.deadline);
            if next != armed {
                armed = next;
                let at = next.map_or(far, tokio::time::Instant::from_std);
                timer.as_mut().reset(at);
            }
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) => return UpstreamError::Closed { addr: addr.clone() },
                    Ok(_) => {}
                    Err(e) => return lost(e.to_string()),
                },
                () = &mut timer, if armed.is_some() => {
                    let after_ms = timeout.map_or(0, |t| t.as_millis() as u64);
                    warn!(upstream = %addr, after_ms, "upstream reply timed out; retiring the connection");
                    return UpstreamError::Timeout { addr: addr.clone(), after_ms };
                }
                Some(due) = exp_rx.recv(), if armed.is_none() && timeout.is_some() => {
                    queue.push_back(due);
                    continue;
                }
            }
            loop {
                let len = match resp::scan(&buf, &limits) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(e) => {
                        return UpstreamError::Protocol {
                            addr: addr.clone(),
                            cause: e.to_string(),
                        }
                    }
                };
                let frame = buf.split_to(len).freeze();
                if let Err(e) = deliver(frame, state, &mut exp_rx, &mut queue, &mut relay) {
                    return e;
                }
            }
            crate::bufs::make_room(&mut buf);
        }
    };

    let retired = async {
        state.retire.notified().await;
        // Sessions stop picking a retiring connection at once, but one that picked it a
        // moment ago may still be sending.
        tokio::time::sleep(RETIRE_GRACE).await;
        let deadline = tokio::time::Instant::now() + RETIRE_DRAIN;
        while state.inflight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };

    let ended = tokio::select! {
        e = writing => e,
        e = reading => Ended::Failed(e),
        () = retired => Ended::Retired,
    };
    let err = match &ended {
        Ended::Failed(e) => e.clone(),
        Ended::Dropped | Ended::Retired => lost("connection closed".into()),
    };
    while let Ok(due) = exp_rx.try_recv() {
        queue.push_back(due);
    }
    for due in queue.drain(..) {
        fail(due.expect, &err, state);
    }
    if let Some(sink) = relay {
        close_relay(&sink, &err);
    }
    ended
}

/// Routes one reply frame: to the relay sink, to a push consumer, or to the oldest request.
fn deliver(
    frame: Bytes,
    state: &ConnState,
    expected: &mut mpsc::UnboundedReceiver<Due>,
    queue: &mut VecDeque<Due>,
    relay: &mut Option<Outbox>,
) -> Result<(), UpstreamError> {
    while let Ok(e) = expected.try_recv() {
        queue.push_back(e);
    }
    if relay.is_none()
        && matches!(
            queue.front(),
            Some(Due {
                expect: Expect::Relay(_),
                ..
            })
        )
    {
        if let Some(Due {
            expect: Expect::Relay(sink),
            ..
        }) = queue.pop_front()
        {
            state.inflight.fetch_sub(1, Ordering::AcqRel);
            *relay = Some(sink);
        }
    }
    if let Some(sink) = relay {
        // Later relay requests only confirm the mode; every frame goes to the session.
        for _ in queue.drain(..) {
            state.inflight.fetch_sub(1, Ordering::AcqRel);
        }
        sink.send(Outbound::Frame(frame));
        return Ok(());
    }
    if frame.first() == Some(&b'>') {
        // A RESP3 push on a matched connection is never a reply. The one that matters here:
        // Redis lost our redirect target, so invalidations for this connection's reads are lost.
        if frame.windows(21).any(|w| w == b"tracking-redir-broken") {
            warn!(upstream = %state.addr, "tracking redirect broken");
            state.tracking_lost();
        }
        debug!(upstream = %state.addr, "push frame on a matched connection");
        return Ok(());
    }
    match queue.pop_front().map(|d| d.expect) {
        Some(Expect::Track(epoch)) => {
            state.inflight.fetch_sub(1, Ordering::AcqRel);
            if frame.starts_with(b"+OK") {
                state.tracking_epoch.store(epoch, Ordering::Release);
            } else {
                warn!(upstream = %state.addr, reply = %String::from_utf8_lossy(&frame).trim_end(), "CLIENT TRACKING refused");
            }
            Ok(())
        }
        Some(Expect::One(tx)) => {
            state.inflight.fetch_sub(1, Ordering::AcqRel);
            tx.send(Ok(frame));
            Ok(())
        }
        Some(Expect::Then(then)) => {
            state.inflight.fetch_sub(1, Ordering::AcqRel);
            then.run(Ok(frame));
            Ok(())
        }
        // Taken above before any frame is examined; kept total rather than panicking.
        Some(Expect::Relay(sink)) => {
            state.inflight.fetch_sub(1, Ordering::AcqRel);
            sink.send(Outbound::Frame(frame));
            *relay = Some(sink);
            Ok(())
        }
        None => Err(UpstreamError::Protocol {
            addr: state.addr.clone(),
            cause: "reply without a request".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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
}
