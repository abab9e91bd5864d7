//! What every part of the upstream side shares: its settings, the pool's limits, the counters
//! of connections closed and re-established, the reconnect backoff, and the environment a
//! connection task runs in.
//!
//! A leaf: it depends on no other upstream file except the two leaves it bundles
//! ([`Health`], [`Tracking`]), so that connections, the pool and the invalidation connection
//! can all depend on it without depending on each other. Never opens a socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::health::Health;
use super::tracking::Tracking;

/// Settings of the upstream side (`Debug` shows no password).
#[derive(Clone)]
pub struct Settings {
    /// `host:port` of Redis.
    pub addr: String,
    /// Shared connections per protocol version.
    pub shared_conns: usize,
    pub connect_timeout: Duration,
    /// A request unanswered this long fails, and its connection is retired.
    pub upstream_timeout: Option<Duration>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// How often the invalidation connection is checked, and its deadline; `None`: never.
    pub tracking_health: Option<Duration>,
    /// Idle time before TCP keepalive probes on every upstream socket; `None`: no keepalive.
    pub tcp_keepalive: Option<Duration>,
    /// TLS on every upstream connection; `None`: plain TCP.
    pub tls: Option<crate::tls::Upstream>,
    /// Sends `READONLY` in every handshake: a cluster replica's connections, which may then
    /// serve reads of its master's slots.
    pub readonly: bool,
    pub limits: Limits,
    /// The session threads' runtimes, over which the shared connections are spread.
    pub homes: Homes,
}

/// The runtimes shared connections live on: the session threads' (`workers.rs`), so that a
/// session sends through a connection whose task runs on its own thread. A forwarded command
/// then never wakes another thread, and the connection's task, woken once for what every
/// session of its thread queued, writes it in one batch. Empty: the caller's runtime.
#[derive(Clone, Default)]
pub struct Homes(pub Vec<tokio::runtime::Handle>);

thread_local! {
    static HOME: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl Homes {
    /// The home of the `i`th of a list of connections: one each in turn.
    pub fn nth(&self, i: usize) -> Option<usize> {
        (!self.0.is_empty()).then(|| i % self.0.len())
    }

    /// Runs `f` (which spawns a task) on the runtime of `home`, or on the caller's.
    pub fn enter<T>(&self, home: Option<usize>, f: impl FnOnce() -> T) -> T {
        match home.and_then(|h| self.0.get(h)) {
            Some(rt) => {
                let _on = rt.enter();
                f()
            }
            None => f(),
        }
    }

    /// Marks the calling thread as the runtime at `home`'s place (set by each session thread).
    pub fn mark_thread(home: usize) {
        HOME.with(|h| h.set(Some(home)));
    }

    /// The calling thread's place, if it runs sessions.
    pub fn here() -> Option<usize> {
        HOME.with(|h| h.get())
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("limits", &self.limits)
            .field("homes", &self.homes.0.len())
            .finish_non_exhaustive()
    }
}

/// The pool's limits, changeable at run time (SIGHUP, `NEARCACHE CONFIG SET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open data connections at most; 0 means no limit.
    pub max_open: usize,
    /// Idle dedicated connections kept for reuse.
    pub max_idle: usize,
    /// Connections are closed (dedicated) or replaced (shared) at this age.
    pub max_lifetime: Option<Duration>,
    /// Idle dedicated connections are closed after this long unused.
    pub max_idle_time: Option<Duration>,
    /// How long a session waits for a connection when `max_open` are open.
    pub wait_timeout: Duration,
}

/// Why the pool closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Given back while `max_idle` were already idle.
    MaxIdle,
    /// Idle longer than `max_idle_time`.
    MaxIdleTime,
    /// Older than `max_lifetime`.
    MaxLifetime,
    /// Failed: Redis closed it, the socket broke, a reply timed out.
    Error,
    /// Dropped with session state on it (the client left mid-transaction, switched protocol).
    Discarded,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        CloseReason::MaxIdle,
        CloseReason::MaxIdleTime,
        CloseReason::MaxLifetime,
        CloseReason::Error,
        CloseReason::Discarded,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::MaxIdle => "max_idle",
            CloseReason::MaxIdleTime => "max_idle_time",
            CloseReason::MaxLifetime => "max_lifetime",
            CloseReason::Error => "error",
            CloseReason::Discarded => "discarded",
        }
    }
}

/// Counters of the upstream side's life, read by the pool's statistics.
#[derive(Debug)]
pub struct Counters {
    closed: [AtomicU64; 5],
    reconnects: AtomicU64,
    /// The next connection object's number (its part of the cache tag).
    next_index: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            closed: Default::default(),
            reconnects: AtomicU64::new(0),
            next_index: AtomicU64::new(1),
        }
    }
}

impl Counters {
    /// Counts a connection the pool closed.
    pub fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed so far, indexed like [`CloseReason::ALL`].
    pub fn closed_counts(&self) -> [u64; 5] {
        self.closed.each_ref().map(|c| c.load(Ordering::Relaxed))
    }

    /// Counts a shared connection re-established after a loss.
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// A number no other connection of this pool has.
    pub fn next_index(&self) -> u64 {
        self.next_index.fetch_add(1, Ordering::Relaxed)
    }
}

/// Reconnection delays: doubling from 20 ms to 400 ms, back to the start after a success. Short
/// enough that a restarted Redis is found within half a second, long enough that a Redis that
/// stays down costs a few attempts per second per connection.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_millis(400);

    pub fn new() -> Self {
        Backoff(Self::MIN)
    }

    /// The delay before the next attempt; the one after it is longer.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        now
    }

    /// An attempt succeeded: the next failure waits the shortest delay again.
    pub fn reset(&mut self) {
        self.0 = Self::MIN;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// What every connection task of the pool needs.
pub struct Env {
    pub settings: Settings,
    pub counters: Arc<Counters>,
    pub health: Health,
    pub tracking: Option<Arc<Tracking>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [20, 40, 80, 160, 320, 400, 400]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 20);
    }
}
