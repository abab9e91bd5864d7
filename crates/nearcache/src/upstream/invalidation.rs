//! The invalidation connection: a RESP3 connection subscribed to `__redis__:invalidate`, the
//! redirect target of every shared connection's tracking.
//!
//! When it is up, it tells [`Tracking`] its client id (a new epoch) and asks each shared
//! connection to point its tracking here. When it drops, fills stop and the cache is told that
//! nothing it holds is protected any more; then it reconnects with backoff.
//!
//! A connection that goes quiet without closing (a firewall or NAT forgetting it, a frozen
//! host) would let the cache fill while no invalidation arrives, so its life is proved, not
//! assumed: every `tracking_health_interval` it is sent a PING (and the socket has TCP
//! keepalive), and an interval after a PING with nothing read since, it is dropped like a
//! closed one. Never carries a request: its only traffic is the handshake, those PINGs and
//! Redis's pushes.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::connect::{connect, handshake};
use super::env::{Backoff, Env, Settings};
use super::shared::SharedConns;
use super::stream::{ReadHalf, Stream};
use super::tracking::{Tracking, TrackingMode};
use crate::reply::UpstreamError;

/// Starts the invalidation connection task for these shared connections. It runs until
/// `closed` says true (the pool was closed: a cluster node that left), and then stops fills and
/// drops what it protected, as a lost connection does.
pub fn spawn(
    env: Arc<Env>,
    tracking: Arc<Tracking>,
    shared: Arc<SharedConns>,
    mut closed: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = run(env, tracking.clone(), shared) => {}
            Ok(_) = closed.wait_for(|c| *c) => tracking.down(),
        }
    });
}

/// Keeps an invalidation connection up, reconnecting with backoff, for ever.
async fn run(env: Arc<Env>, tracking: Arc<Tracking>, shared: Arc<SharedConns>) {
    let cfg = &env.settings;
    let mut backoff = Backoff::new();
    let mut healthy = true;
    loop {
        match open(cfg, &tracking.mode).await {
            Ok((stream, id)) => {
                backoff.reset();
                let epoch = tracking.up(id);
                if tracking.mode == TrackingMode::Default {
                    for conn in shared.all() {
                        conn.retrack(id, epoch);
                    }
                }
                env.health.connected("invalidation", &cfg.addr);
                if !healthy {
                    info!(upstream = %cfg.addr, "invalidation connection re-established");
                }
                healthy = true;
                let err = listen(stream, &tracking, cfg.tracking_health).await;
                tracking.down();
                warn!(upstream = %cfg.addr, %err, "invalidation connection lost; cache flushed");
            }
            Err(err) => {
                env.health.failed("invalidation", &err);
                if healthy {
                    warn!(upstream = %cfg.addr, "invalidation connection down; caching paused");
                    healthy = false;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Connects, learns the client id and subscribes to the invalidation channel.
async fn open(cfg: &Settings, mode: &TrackingMode) -> Result<(Stream, i64), UpstreamError> {
    let (mut stream, _) = connect(cfg, 3, &[]).await?;
    if let Some(every) = cfg.tracking_health {
        keep_alive(stream.tcp(), every);
    }
    let mut out = BytesMut::new();
    resp::encode_command(&["CLIENT", "ID"], &mut out);
    let mut replies_wanted = 1;
    if let TrackingMode::Bcast(prefixes) = mode {
        // Invalidations for every change under the prefixes, as pushes on this connection.
        let mut cmd: Vec<Bytes> = ["CLIENT", "TRACKING", "on", "BCAST"]
            .into_iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        for p in prefixes {
            cmd.push(Bytes::from_static(b"PREFIX"));
            cmd.push(p.clone());
        }
        resp::encode_command(&cmd, &mut out);
        replies_wanted += 1;
    }
    resp::encode_command(&["SUBSCRIBE", "__redis__:invalidate"], &mut out);
    // The subscribe confirmation is a push, which `handshake` skips; nothing else can arrive
    // before shared connections are pointed here, so nothing is lost.
    let unavailable = |cause: String| UpstreamError::Unavailable {
        addr: cfg.addr.clone(),
        cause,
    };
    let replies = tokio::time::timeout(
        cfg.connect_timeout,
        handshake(&mut stream, &out, replies_wanted),
    )
    .await
    .map_err(|_| unavailable("invalidation handshake timed out".into()))?
    .map_err(|e| unavailable(e.to_string()))?;
    if let Some(r) = replies.get(1).filter(|r| r.first() == Some(&b'-')) {
        let text = String::from_utf8_lossy(r).trim_end().to_string();
        return Err(unavailable(format!("CLIENT TRACKING BCAST failed: {text}")));
    }
    match replies.first().map(|r| &r[..]) {
        Some(r) if r.starts_with(b":") => {
            let id = std::str::from_utf8(&r[1..])
                .ok()
                .and_then(|s| s.trim_end().parse().ok())
                .ok_or_else(|| unavailable("bad CLIENT ID reply".into()))?;
            Ok((stream, id))
        }
        other => Err(unavailable(format!(
            "CLIENT ID failed: {}",
            other.map(String::from_utf8_lossy).unwrap_or_default()
        ))),
    }
}

/// Asks the kernel to probe the connection while it is idle, every `every` (at least a
/// second, its granularity), and to give up after two unanswered probes. The PINGs are what
/// bound how long a silent connection goes unnoticed (probes wait while a PING is unacknowledged);
/// keepalive also keeps NAT and firewall state from expiring between them.
fn keep_alive(stream: &TcpStream, every: Duration) {
    let every = every.max(Duration::from_secs(1));
    let probes = socket2::TcpKeepalive::new().with_time(every);
    #[cfg(target_os = "linux")]
    let probes = probes.with_interval(every).with_retries(2);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&probes) {
        debug!(%e, "TCP keepalive not set on the invalidation connection");
    }
}

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// Reads invalidation messages until the connection fails or, with `health`, goes quiet: a PING
/// is sent every interval, and a whole interval after a PING with nothing read since (a reply,
/// an invalidation: any byte is a sign of life), the connection counts as lost. So a silent
/// connection is dropped within about two intervals of its last sign of life.
async fn listen(stream: Stream, tracking: &Tracking, health: Option<Duration>) -> UpstreamError {
    // Invalidation messages nest three deep at most, and their tree is built recursively:
    // the default depth cap stays.
    let limits = resp::Limits::default();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let addr = stream
        .tcp()
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (mut rd, mut wr) = stream.into_split();
    // Without a health check the timer is never polled; a year keeps its deadline in range.
    let every = health.unwrap_or(Duration::from_secs(86400 * 365));
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A PING was sent and nothing has been read since.
    let mut unanswered = false;
    let silent = |addr: String| UpstreamError::Timeout {
        addr,
        after_ms: every.as_millis() as u64,
    };
    loop {
        loop {
            match resp::parse_frame(&mut buf, &limits) {
                Ok(Some(frame)) => handle(frame, tracking),
                Ok(None) => break,
                Err(e) => {
                    return UpstreamError::Protocol {
                        addr,
                        cause: e.to_string(),
                    }
                }
            }
        }
        tokio::select! {
            biased;
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return UpstreamError::Closed { addr },
                Ok(_) => unanswered = false,
                Err(e) => {
                    return UpstreamError::Lost {
                        addr,
                        cause: e.to_string(),
                    }
                }
            },
            _ = tick.tick(), if health.is_some() => {
                if unanswered && !arrived(&mut rd, &mut buf) {
                    return silent(addr);
                }
                unanswered = match tokio::time::timeout(every, wr.write_all(PING)).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => return UpstreamError::Lost { addr, cause: e.to_string() },
                    Err(_) => return silent(addr),
                };
            }
        }
    }
}

/// Whether bytes are waiting to be read, taking them. A tick that fires late (a starved
/// runtime) may find the reply already there: that is life, not silence.
fn arrived(rd: &mut ReadHalf, buf: &mut BytesMut) -> bool {
    matches!(rd.try_read_buf(buf), Ok(n) if n > 0)
}

/// `>3 message __redis__:invalidate [keys...]` (or a null for FLUSHALL/FLUSHDB); the direct
/// form `>2 invalidate [keys]` is understood too.
fn handle(frame: Frame, tracking: &Tracking) {
    let Frame::Push(items) = frame else {
        return;
    };
    let payload = match items.as_slice() {
        [Frame::Bulk(kind), _, payload] if kind.as_ref() == b"message" => payload,
        [Frame::Bulk(kind), payload] if kind.as_ref() == b"invalidate" => payload,
        _ => {
            debug!("ignoring push on the invalidation connection");
            return;
        }
    };
    match payload {
        Frame::Array(keys) | Frame::Set(keys) => {
            let keys: Vec<Bytes> = keys
                .iter()
                .filter_map(|k| match k {
                    Frame::Bulk(b) | Frame::Simple(b) => Some(b.clone()),
                    _ => None,
                })
                .collect();
            tracking.sink.invalidate(Some(keys));
        }
        Frame::Null | Frame::NullArray | Frame::NullBulk => tracking.sink.invalidate(None),
        _ => debug!("ignoring unexpected invalidation payload"),
    }
}
