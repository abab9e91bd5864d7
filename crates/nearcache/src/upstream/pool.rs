//! The pool: shared multiplexed connections per protocol version, and dedicated connections for
//! sessions that need connection state of their own.
//!
//! Shared connections speak the protocol of the clients they serve (RESP2 or RESP3), so replies
//! pass through byte for byte: Redis shapes some replies by protocol (ZRANGE WITHSCORES, EVAL
//! returning false, nulls), which no after-the-fact conversion can reproduce exactly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::conn::{connect_dedicated, spawn_shared, ConnHandle};
use super::invalidation;
use super::tracking::Tracking;
use crate::reply::UpstreamError;

/// Settings of the upstream side.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// `host:port` of Redis.
    pub addr: String,
    /// Shared connections per protocol version.
    pub shared_conns: usize,
    /// Idle dedicated connections kept for reuse, per protocol version.
    pub max_idle_dedicated: usize,
    pub connect_timeout: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Upstream connections, shared and dedicated.
pub struct Pool {
    cfg: Arc<PoolConfig>,
    /// Index 0 serves RESP2 clients, index 1 RESP3 clients.
    shared: [Vec<ConnHandle>; 2],
    idle: [Mutex<Vec<ConnHandle>>; 2],
}

fn slot(proto: u8) -> usize {
    usize::from(proto >= 3)
}

impl Pool {
    /// Creates the pool and starts its shared connections. Must run inside a tokio runtime.
    /// With `tracking`, every shared connection tracks what it reads, redirecting invalidations
    /// to an invalidation connection this pool also runs.
    pub fn new(cfg: PoolConfig, tracking: Option<Arc<Tracking>>) -> Arc<Pool> {
        let cfg = Arc::new(cfg);
        let n = cfg.shared_conns.max(1);
        let shared: [Vec<ConnHandle>; 2] = [2u8, 3u8].map(|p| {
            (0..n)
                .map(|_| spawn_shared(cfg.clone(), p, tracking.clone()))
                .collect()
        });
        if let Some(t) = tracking {
            let all = shared.iter().flatten().cloned().collect();
            invalidation::spawn(cfg.clone(), t, all);
        }
        Arc::new(Pool {
            cfg,
            shared,
            idle: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
        })
    }

    /// The upstream address.
    pub fn addr(&self) -> &str {
        &self.cfg.addr
    }

    /// The least busy shared connection for `proto`, preferring connected ones.
    pub fn shared(&self, proto: u8) -> ConnHandle {
        let conns = &self.shared[slot(proto)];
        conns
            .iter()
            .min_by_key(|c| (!c.is_up(), c.inflight()))
            .cloned()
            .expect("pool has at least one shared connection")
    }

    /// A dedicated connection: an idle one if any is still up, else a new one.
    pub async fn dedicated(&self, proto: u8) -> Result<ConnHandle, UpstreamError> {
        loop {
            let idle = self.idle[slot(proto)]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            match idle {
                Some(c) if c.is_up() => return Ok(c),
                Some(_) => continue,
                None => break,
            }
        }
        connect_dedicated(&self.cfg, proto).await
    }

    /// Returns a dedicated connection whose state is clean (no transaction, no WATCH, db 0, the
    /// protocol it was opened with). A busy or broken one is dropped, which closes it.
    pub fn release(&self, conn: ConnHandle) {
        if !conn.is_up() || conn.inflight() > 0 {
            return;
        }
        let mut idle = self.idle[slot(conn.proto())]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.cfg.max_idle_dedicated {
            idle.push(conn);
        }
    }
}
