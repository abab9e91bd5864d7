//! The pool: shared multiplexed connections per protocol version, and dedicated connections for
//! sessions that need connection state of their own, under one `max_open` limit.
//!
//! Shared connections speak the protocol of the clients they serve (RESP2 or RESP3), so replies
//! pass through byte for byte: Redis shapes some replies by protocol (ZRANGE WITHSCORES, EVAL
//! returning false, nulls), which no after-the-fact conversion can reproduce exactly.
//!
//! What "in use" means (docs/pool.md): a shared connection is in use while it has requests in
//! flight, idle otherwise; a dedicated connection is in use while a session holds it. Both kinds
//! hold one permit of `max_open` for as long as they are open.
//!
//! Owns which connections exist and for how long: it sits on top of the connections, the
//! open-connection accounting and the invalidation connection. Never touches a socket.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{debug, info};

use super::acl::AclView;
use super::conn::spawn::{connect_dedicated, spawn_shared};
use super::conn::ConnHandle;
use super::env::{CloseReason, Counters, Env, Limits, Settings};
use super::health::Health;
use super::identity::{Identities, Identity};
use super::invalidation;
use super::permits::{Grant, PermitStats, Permits, Take};
use super::shared::{Shared, SharedConns, PROTOS};
use super::tracking::Tracking;
use crate::reply::UpstreamError;

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
    /// Shared connections re-established after a loss.
    pub reconnects: u64,
}

impl PoolStats {
    /// Adds `other`'s figures to these (several pools as one: a cluster's masters).
    pub fn add(&mut self, other: &PoolStats) {
        self.max_open += other.max_open;
        self.open += other.open;
        self.in_use += other.in_use;
        self.idle += other.idle;
        self.wait_count += other.wait_count;
        self.wait_duration += other.wait_duration;
        for (c, o) in self.closed.iter_mut().zip(other.closed) {
            *c += o;
        }
        self.reconnects += other.reconnects;
    }
}

/// Upstream connections, shared and dedicated.
pub struct Pool {
    env: Arc<Env>,
    permits: Arc<Permits>,
    shared: Arc<SharedConns>,
    /// Other users' shared connections (client authentication in passthrough mode).
    ids: Arc<Identities>,
    /// Raised by [`Pool::close`]: the invalidation connection ends.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Pool {
    /// Creates the pool and starts its shared connections. Must run inside a tokio runtime.
    /// With `tracking`, every shared connection tracks what it reads, redirecting invalidations
    /// to an invalidation connection this pool also runs.
    pub fn new(settings: Settings, tracking: Option<Arc<Tracking>>) -> Arc<Pool> {
        let counters = Arc::new(Counters::default());
        let permits = Permits::new(settings.limits.clone(), counters.clone());
        let env = Arc::new(Env {
            settings,
            counters,
            health: Health::default(),
            tracking: tracking.clone(),
        });
        let n = env.settings.shared_conns.max(1);
        let homes = &env.settings.homes;
        let lists = PROTOS.map(|p| {
            (0..n)
                .map(|i| {
                    let home = homes.nth(i);
                    let conn = homes.enter(home, || spawn_shared(env.clone(), p, permits.force()));
                    Shared { home, conn }
                })
                .collect()
        });
        let shared = Arc::new(SharedConns::new(lists));
        let (closing, closed) = tokio::sync::watch::channel(false);
        if let Some(t) = tracking {
            invalidation::spawn(env.clone(), t, shared.clone(), closed);
        }
        let ids = Arc::new(Identities::new(
            env.clone(),
            permits.clone(),
            shared.clone(),
        ));
        let pool = Arc::new(Pool {
            env,
            permits,
            shared,
            ids,
            closing,
        });
        tokio::spawn(maintain(Arc::downgrade(&pool)));
        pool
    }

    /// Closes the pool for good (a cluster node that left): its invalidation connection ends,
    /// dropping what it protected, and its shared connections end once the last holder of the
    /// pool lets go of it.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The tracking state of this pool's connections, if it tracks.
    pub fn tracking(&self) -> Option<&Arc<Tracking>> {
        self.env.tracking.as_ref()
    }

    /// The upstream address.
    pub fn addr(&self) -> &str {
        &self.env.settings.addr
    }

    /// The ACL user the pool's connections act as.
    pub fn user(&self) -> &str {
        self.env.settings.username.as_deref().unwrap_or("default")
    }

    /// A connection outside the pool, authenticated as the pool's user and speaking RESP2, for
    /// a byte relay the pool never sees again (a replica's replication stream).
    pub async fn connect_raw(&self) -> Result<super::Stream, crate::reply::UpstreamError> {
        super::connect::connect_quietly(&self.env.settings, 2).await
    }

    /// The shared connection for `proto` a session on this thread sends through
    /// ([`SharedConns::pick`]).
    pub fn shared(&self, proto: u8) -> ConnHandle {
        self.shared.pick(proto)
    }

    /// The shared connection for a client acting as `id`: the pool's own for the pool's
    /// user, else that identity's own connection.
    pub fn shared_as(&self, id: &Identity, proto: u8) -> ConnHandle {
        self.ids
            .shared(id, proto)
            .unwrap_or_else(|| self.shared.pick(proto))
    }

    /// The identities clients act as.
    pub fn identities(&self) -> &Identities {
        &self.ids
    }

    /// Starts watching Redis's users every `every` (after a first check, done before this
    /// returns): see `acl.rs`.
    pub async fn watch_acl(&self, every: Duration) -> Arc<AclView> {
        let (env, shared) = (self.env.clone(), self.shared.clone());
        super::acl::watch(env, shared, Arc::downgrade(&self.ids), every).await
    }

    /// The upstream settings, for a check that opens a connection of its own.
    pub fn settings(&self) -> &Settings {
        &self.env.settings
    }

    /// A dedicated connection: an idle one if any is still up, else a new one, else the first
    /// to come free within the wait timeout.
    pub async fn dedicated(&self, proto: u8) -> Result<ConnHandle, UpstreamError> {
        let grant = match self.permits.take(proto) {
            Take::Idle(conn) => return Ok(conn),
            Take::Open(permit) => Grant::Permit(permit),
            Take::Wait(rx) => {
                let started = std::time::Instant::now();
                let wait = self.permits.limits().wait_timeout;
                let got = tokio::time::timeout(wait, rx).await;
                self.permits.waited(started.elapsed());
                match got {
                    Ok(Ok(grant)) => grant,
                    _ => return Err(self.exhausted(wait)),
                }
            }
        };
        match grant {
            Grant::Conn(conn) if conn.is_up() => Ok(conn),
            // Handed a connection that died meanwhile: its permit is ours to reopen, but that
            // permit lives in the dead connection's task. Ask again, without waiting in line.
            Grant::Conn(_) => match self.permits.try_open() {
                Some(permit) => connect_dedicated(&self.env, proto, permit).await,
                None => Err(self.exhausted(Duration::ZERO)),
            },
            Grant::Permit(permit) => connect_dedicated(&self.env, proto, permit).await,
        }
    }

    fn exhausted(&self, waited: Duration) -> UpstreamError {
        let max = self.permits.limits().max_open;
        UpstreamError::Unavailable {
            addr: self.env.settings.addr.clone(),
            cause: format!(
                "no connection free within {} ms (max-open-conns {max} in use)",
                waited.as_millis()
            ),
        }
    }

    /// Returns a dedicated connection to the pool. It goes back to the idle list only in the
    /// state the pool made it (authenticated as the pool's user, its protocol, db 0, no
    /// tracking changes, no subscriptions, no transaction): a busy, broken or tainted one
    /// ([`ConnHandle::taint`]) is dropped, which closes it, so that the next session never
    /// inherits another's state.
    pub fn release(&self, conn: ConnHandle) {
        if !conn.is_up() || conn.inflight() > 0 || conn.is_tainted() || conn.is_foreign() {
            self.permits.closed(CloseReason::Discarded);
            return;
        }
        self.permits.put(conn);
    }

    /// Drops a dedicated connection whose session state cannot be reused.
    pub fn discard(&self, conn: ConnHandle) {
        if conn.is_up() {
            self.permits.closed(CloseReason::Discarded);
        }
        drop(conn);
    }

    /// The pool limits now.
    pub fn limits(&self) -> Limits {
        self.permits.limits()
    }

    /// Applies new limits (configuration reload).
    pub fn set_limits(&self, limits: Limits) {
        self.permits.set_limits(limits);
    }

    /// The pool's figures now.
    pub fn stats(&self) -> PoolStats {
        let PermitStats {
            max_open,
            open,
            idle_dedicated,
            wait_count,
            wait_duration,
            closed,
            ..
        } = self.permits.stats();
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
            reconnects: self.env.counters.reconnects(),
        }
    }

    /// Replaces the shared connection at `index` of `list` with a new one, once the new one
    /// is up.
    async fn rotate(&self, list: usize, index: usize) {
        let Some(permit) = self.permits.try_open() else {
            debug!("no free permit to replace a shared connection; will retry");
            return;
        };
        let proto = PROTOS[list];
        let home = self.shared.home(list, index);
        let fresh = self
            .env
            .settings
            .homes
            .enter(home, || spawn_shared(self.env.clone(), proto, permit));
        if !fresh.wait_up(self.env.settings.connect_timeout).await {
            // Dropping the handle ends its task, which frees the permit.
            return;
        }
        let Some(old) = self.shared.replace(list, index, fresh) else {
            return;
        };
        self.permits.closed(CloseReason::MaxLifetime);
        info!(
            proto,
            age_s = old.age().as_secs(),
            "shared upstream connection replaced at its max lifetime"
        );
        old.retire();
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
        pool.permits.reap();
        pool.ids.reap();
        let lifetime = pool.permits.limits().max_lifetime;
        if let Some((list, index)) = lifetime.and_then(|l| pool.shared.first_older_than(l)) {
            pool.rotate(list, index).await;
        }
    }
}
