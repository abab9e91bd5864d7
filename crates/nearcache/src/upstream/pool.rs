//! The pool: shared multiplexed connections per protocol version, and dedicated connections for
//! sessions that need connection state of their own, under one `max_open` limit.
//!
//! Shared connections speak the protocol of the clients they serve (RESP2 or RESP3), so replies
//! pass through byte for byte: Redis shapes some replies by protocol (ZRANGE WITHSCORES, EVAL
//! returning false, nulls), which no after-the-fact conversion can reproduce exactly.
//!
//! What "in use" means (docs/pool.md): a shared connection is in use while it has requests in
//! flight, idle otherwise; a dedicated connection is in use while a session holds it. Both kinds
//! hold one slot of `max_open` for as long as they are open.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tracing::{debug, info};

use super::conn::{connect_dedicated, spawn_shared, ConnHandle};
use super::health::Health;
use super::invalidation;
use super::slots::{CloseReason, Grant, Limits, SlotStats, Slots, Take};
use super::tracking::Tracking;
use crate::reply::UpstreamError;

/// Settings of the upstream side.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// `host:port` of Redis.
    pub addr: String,
    /// Shared connections per protocol version.
    pub shared_conns: usize,
    pub connect_timeout: Duration,
    /// A request unanswered this long fails, and its connection is retired.
    pub upstream_timeout: Option<Duration>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub limits: Limits,
}

/// What every connection task of the pool needs.
pub struct Env {
    pub cfg: PoolConfig,
    pub slots: Arc<Slots>,
    pub health: Health,
    pub tracking: Option<Arc<Tracking>>,
}

/// The current shared connections, replaced one at a time as they reach their lifetime.
pub struct SharedConns {
    /// Index 0 serves RESP2 clients, index 1 RESP3 clients.
    lists: [RwLock<Vec<ConnHandle>>; 2],
}

impl SharedConns {
    /// Every shared connection now.
    pub fn all(&self) -> Vec<ConnHandle> {
        self.lists
            .iter()
            .flat_map(|l| l.read().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }
}

/// The pool's figures, as `sql.DBStats` has them.
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    pub max_open: usize,
    pub open: usize,
    pub in_use: usize,
    pub idle: usize,
    pub wait_count: u64,
    pub wait_duration: Duration,
    /// Indexed like [`CloseReason::ALL`].
    pub closed: [u64; 5],
}

/// Upstream connections, shared and dedicated.
pub struct Pool {
    env: Arc<Env>,
    shared: Arc<SharedConns>,
}

fn slot(proto: u8) -> usize {
    usize::from(proto >= 3)
}

impl Pool {
    /// Creates the pool and starts its shared connections. Must run inside a tokio runtime.
    /// With `tracking`, every shared connection tracks what it reads, redirecting invalidations
    /// to an invalidation connection this pool also runs.
    pub fn new(cfg: PoolConfig, tracking: Option<Arc<Tracking>>) -> Arc<Pool> {
        let slots = Slots::new(cfg.limits.clone());
        let env = Arc::new(Env {
            cfg,
            slots,
            health: Health::default(),
            tracking: tracking.clone(),
        });
        let n = env.cfg.shared_conns.max(1);
        let lists = [2u8, 3u8].map(|p| {
            let conns = (0..n)
                .map(|_| spawn_shared(env.clone(), p, env.slots.force()))
                .collect();
            RwLock::new(conns)
        });
        let shared = Arc::new(SharedConns { lists });
        if let Some(t) = tracking {
            invalidation::spawn(env.clone(), t, shared.clone());
        }
        let pool = Arc::new(Pool { env, shared });
        tokio::spawn(maintain(Arc::downgrade(&pool)));
        pool
    }

    /// The upstream address.
    pub fn addr(&self) -> &str {
        &self.env.cfg.addr
    }

    /// The least busy shared connection for `proto`, preferring connected ones.
    pub fn shared(&self, proto: u8) -> ConnHandle {
        let conns = self.shared.lists[slot(proto)]
            .read()
            .unwrap_or_else(|p| p.into_inner());
        conns
            .iter()
            .min_by_key(|c| (!c.is_up(), c.inflight()))
            .cloned()
            .expect("pool has at least one shared connection")
    }

    /// A dedicated connection: an idle one if any is still up, else a new one, else the first
    /// to come free within the wait timeout.
    pub async fn dedicated(&self, proto: u8) -> Result<ConnHandle, UpstreamError> {
        let grant = match self.env.slots.take(proto) {
            Take::Idle(conn) => return Ok(conn),
            Take::Open(slot) => Grant::Slot(slot),
            Take::Wait(rx) => {
                let started = std::time::Instant::now();
                let wait = self.env.slots.limits().wait_timeout;
                let got = tokio::time::timeout(wait, rx).await;
                self.env.slots.waited(started.elapsed());
                match got {
                    Ok(Ok(grant)) => grant,
                    _ => return Err(self.exhausted(wait)),
                }
            }
        };
        match grant {
            Grant::Conn(conn) if conn.is_up() => Ok(conn),
            // Handed a connection that died meanwhile: its slot is ours to reopen, but that
            // slot lives in the dead connection's task. Ask again, without waiting in line.
            Grant::Conn(_) => match self.env.slots.try_open() {
                Some(slot) => connect_dedicated(&self.env, proto, slot).await,
                None => Err(self.exhausted(Duration::ZERO)),
            },
            Grant::Slot(slot) => connect_dedicated(&self.env, proto, slot).await,
        }
    }

    fn exhausted(&self, waited: Duration) -> UpstreamError {
        let max = self.env.slots.limits().max_open;
        UpstreamError::Unavailable {
            addr: self.env.cfg.addr.clone(),
            cause: format!(
                "no connection free within {} ms (max-open-conns {max} in use)",
                waited.as_millis()
            ),
        }
    }

    /// Returns a dedicated connection whose state is clean (no transaction, no WATCH, db 0, the
    /// protocol it was opened with). A busy or broken one is dropped, which closes it.
    pub fn release(&self, conn: ConnHandle) {
        if !conn.is_up() || conn.inflight() > 0 {
            self.env.slots.closed(CloseReason::Discarded);
            return;
        }
        self.env.slots.put(conn);
    }

    /// Drops a dedicated connection whose session state cannot be reused.
    pub fn discard(&self, conn: ConnHandle) {
        if conn.is_up() {
            self.env.slots.closed(CloseReason::Discarded);
        }
        drop(conn);
    }

    /// The pool limits now.
    pub fn limits(&self) -> Limits {
        self.env.slots.limits()
    }

    /// Applies new limits (configuration reload).
    pub fn set_limits(&self, limits: Limits) {
        self.env.slots.set_limits(limits);
    }

    /// The pool's figures now.
    pub fn stats(&self) -> PoolStats {
        let SlotStats {
            max_open,
            open,
            idle_dedicated,
            wait_count,
            wait_duration,
            closed,
            ..
        } = self.env.slots.stats();
        let idle_shared = self
            .shared
            .all()
            .iter()
            .filter(|c| c.is_up() && c.inflight() == 0)
            .count();
        let idle = (idle_dedicated + idle_shared).min(open);
        PoolStats {
            max_open,
            open,
            in_use: open - idle,
            idle,
            wait_count,
            wait_duration,
            closed,
        }
    }

    /// Replaces the shared connection at `index` with a new one, once the new one is up.
    async fn rotate(&self, side: usize, index: usize) {
        let Some(slot) = self.env.slots.try_open() else {
            debug!("no free slot to replace a shared connection; will retry");
            return;
        };
        let proto = [2u8, 3u8][side];
        let fresh = spawn_shared(self.env.clone(), proto, slot);
        if !fresh.wait_up(self.env.cfg.connect_timeout).await {
            // Dropping the handle ends its task, which frees the slot.
            return;
        }
        let old = {
            let mut list = self.shared.lists[side]
                .write()
                .unwrap_or_else(|p| p.into_inner());
            match list.get_mut(index) {
                Some(c) => std::mem::replace(c, fresh),
                None => return,
            }
        };
        self.env.slots.closed(CloseReason::MaxLifetime);
        info!(
            proto,
            age_s = old.age().as_secs(),
            "shared upstream connection replaced at its max lifetime"
        );
        old.retire();
    }

    /// The first shared connection past its lifetime, if any.
    fn due_for_rotation(&self, lifetime: Duration) -> Option<(usize, usize)> {
        self.shared.lists.iter().enumerate().find_map(|(side, l)| {
            let list = l.read().unwrap_or_else(|p| p.into_inner());
            list.iter()
                .position(|c| c.age() >= lifetime)
                .map(|index| (side, index))
        })
    }
}

/// Once a second: close idle connections past their time, and replace at most one shared
/// connection past its lifetime (one at a time, so the cache never loses all its protection at
/// once). Ends when the pool is dropped.
async fn maintain(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.env.slots.reap();
        let lifetime = pool.env.slots.limits().max_lifetime;
        if let Some((side, index)) = lifetime.and_then(|l| pool.due_for_rotation(l)) {
            pool.rotate(side, index).await;
        }
    }
}
