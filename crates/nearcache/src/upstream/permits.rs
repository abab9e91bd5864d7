//! Open-connection accounting, as Go's database/sql does it.
//!
//! Every open upstream data connection (shared or dedicated; not the invalidation connection)
//! holds a [`Permit`], and at most `max_open` permits exist. Idle dedicated connections wait in a
//! list, at most `max_idle` of them. A caller that finds neither an idle connection nor a free
//! permit joins a line and is served first come, first served: a connection given back goes to the
//! first waiter, and so does the permit of a connection that closes. A waiter that gave up (its
//! wait timed out, its client left) is skipped, never served.
//!
//! Owns the open count, the idle list and the line of waiters. Nothing here awaits while holding
//! the lock, and nothing drops a [`Permit`] under it (dropping one re-enters to hand it on).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::conn::ConnHandle;
use super::env::{CloseReason, Counters, Limits};

/// What a waiter is handed.
pub enum Grant {
    /// A connection given back by another session.
    Conn(ConnHandle),
    /// Permission to open a new connection.
    Permit(Permit),
}

/// The outcome of asking for a dedicated connection.
pub enum Take {
    Idle(ConnHandle),
    Open(Permit),
    Wait(oneshot::Receiver<Grant>),
}

struct Waiter {
    proto: u8,
    tx: oneshot::Sender<Grant>,
}

struct Idle {
    conn: ConnHandle,
    since: Instant,
}

struct Inner {
    limits: Limits,
    open: usize,
    waiters: VecDeque<Waiter>,
    /// Index 0: RESP2 connections, 1: RESP3. Most recently returned at the back.
    idle: [VecDeque<Idle>; 2],
}

/// The pool's bookkeeping: open count, idle list, waiters and the statistics.
pub struct Permits {
    inner: Mutex<Inner>,
    wait_count: AtomicU64,
    wait_nanos: AtomicU64,
    counters: Arc<Counters>,
}

/// One unit of `max_open`, held by an open connection for its whole life.
pub struct Permit(Option<Arc<Permits>>);

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(permits) = self.0.take() {
            permits.free();
        }
    }
}

/// The figures of `sql.DBStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermitStats {
    pub max_open: usize,
    pub open: usize,
    pub idle_dedicated: usize,
    pub waiting: usize,
    pub wait_count: u64,
    pub wait_duration: Duration,
    pub closed: [u64; 5],
}

fn proto_index(proto: u8) -> usize {
    usize::from(proto >= 3)
}

fn expired(
    conn: &ConnHandle,
    since: Instant,
    limits: &Limits,
    now: Instant,
) -> Option<CloseReason> {
    if limits.max_lifetime.is_some_and(|l| conn.age() >= l) {
        return Some(CloseReason::MaxLifetime);
    }
    if limits
        .max_idle_time
        .is_some_and(|t| now.duration_since(since) >= t)
    {
        return Some(CloseReason::MaxIdleTime);
    }
    None
}

impl Permits {
    pub fn new(limits: Limits, counters: Arc<Counters>) -> Arc<Permits> {
        Arc::new(Permits {
            inner: Mutex::new(Inner {
                limits,
                open: 0,
                waiters: VecDeque::new(),
                idle: [VecDeque::new(), VecDeque::new()],
            }),
            wait_count: AtomicU64::new(0),
            wait_nanos: AtomicU64::new(0),
            counters,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limits(&self) -> Limits {
        self.lock().limits.clone()
    }

    /// Applies new limits; connections over them are closed as they become idle.
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
        self.reap();
    }

    /// Counts a connection the pool closed.
    pub fn closed(&self, reason: CloseReason) {
        self.counters.closed(reason);
    }

    /// A permit taken whatever the limit: the shared connections the proxy cannot run without.
    pub fn force(self: &Arc<Self>) -> Permit {
        self.lock().open += 1;
        Permit(Some(self.clone()))
    }

    /// A permit if one is free and nobody waits for it (replacing a shared connection).
    pub fn try_open(self: &Arc<Self>) -> Option<Permit> {
        let mut g = self.lock();
        let max = g.limits.max_open;
        let free = max == 0 || g.open < max;
        (free && g.waiters.iter().all(|w| w.tx.is_closed())).then(|| {
            g.open += 1;
            Permit(Some(self.clone()))
        })
    }

    /// An idle connection speaking `proto`, a permit to open one, or a place in line.
    pub fn take(self: &Arc<Self>, proto: u8) -> Take {
        let mut closing = Vec::new();
        let now = Instant::now();
        let mut g = self.lock();
        let inner = &mut *g;
        let mut found = None;
        while let Some(idle) = inner.idle[proto_index(proto)].pop_back() {
            match expired(&idle.conn, idle.since, &inner.limits, now) {
                Some(reason) => {
                    self.closed(reason);
                    closing.push(idle.conn);
                }
                None if !idle.conn.is_up() => closing.push(idle.conn),
                None => {
                    found = Some(idle.conn);
                    break;
                }
            }
        }
        let take = if let Some(conn) = found {
            Take::Idle(conn)
        } else if inner.limits.max_open == 0 || inner.open < inner.limits.max_open {
            inner.open += 1;
            Take::Open(Permit(Some(self.clone())))
        } else {
            // At the limit. An idle connection of the other protocol is of no use to anyone
            // waiting here: close it, and its permit comes to the line.
            if let Some(idle) = inner.idle[1 - proto_index(proto)].pop_front() {
                self.closed(CloseReason::MaxIdle);
                closing.push(idle.conn);
            }
            inner.waiters.retain(|w| !w.tx.is_closed());
            let (tx, rx) = oneshot::channel();
            inner.waiters.push_back(Waiter { proto, tx });
            self.wait_count.fetch_add(1, Ordering::Relaxed);
            Take::Wait(rx)
        };
        drop(g);
        drop(closing);
        take
    }

    /// Adds the time a session spent in line.
    pub fn waited(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Takes back a dedicated connection in a clean state: to the first waiter, to the idle
    /// list, or closed when too old or too many are idle.
    pub fn put(&self, mut conn: ConnHandle) {
        let mut g = self.lock();
        if g.limits.max_lifetime.is_some_and(|l| conn.age() >= l) {
            drop(g);
            self.closed(CloseReason::MaxLifetime);
            return;
        }
        while let Some(w) = g.waiters.front() {
            if w.proto != conn.proto() && !w.tx.is_closed() {
                // The first in line speaks the other protocol: close this one so that its
                // permit goes to them.
                drop(g);
                self.closed(CloseReason::MaxIdle);
                return;
            }
            let Some(w) = g.waiters.pop_front() else {
                break;
            };
            match w.tx.send(Grant::Conn(conn)) {
                Ok(()) => return,
                Err(Grant::Conn(c)) => conn = c,
                // Only a connection was sent; a permit cannot come back, but never drop one here.
                Err(other) => {
                    drop(g);
                    drop(other);
                    return;
                }
            }
        }
        let idle: usize = g.idle.iter().map(VecDeque::len).sum();
        if idle >= g.limits.max_idle {
            drop(g);
            self.closed(CloseReason::MaxIdle);
            return;
        }
        g.idle[proto_index(conn.proto())].push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// A connection's permit is free: hand it to the first waiter, or count one fewer open.
    fn free(self: &Arc<Self>) {
        let mut grant = Grant::Permit(Permit(Some(self.clone())));
        loop {
            let waiter = {
                let mut g = self.lock();
                let max = g.limits.max_open;
                let over = max != 0 && g.open > max;
                match g.waiters.pop_front() {
                    Some(w) if !over => Some(w),
                    other => {
                        if let Some(w) = other {
                            g.waiters.push_front(w);
                        }
                        g.open -= 1;
                        None
                    }
                }
            };
            let Some(waiter) = waiter else {
                // Disarm: this permit was counted out above.
                if let Grant::Permit(s) = &mut grant {
                    s.0 = None;
                }
                return;
            };
            match waiter.tx.send(grant) {
                Ok(()) => return,
                Err(g) => grant = g,
            }
        }
    }

    /// Closes idle connections past their idle time or lifetime, or beyond `max_idle`.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut closing = Vec::new();
        let mut g = self.lock();
        let inner = &mut *g;
        for list in &mut inner.idle {
            list.retain(
                |idle| match expired(&idle.conn, idle.since, &inner.limits, now) {
                    Some(reason) => {
                        self.closed(reason);
                        closing.push(idle.conn.clone());
                        false
                    }
                    None => idle.conn.is_up(),
                },
            );
        }
        while inner.idle.iter().map(VecDeque::len).sum::<usize>() > inner.limits.max_idle {
            let fuller = usize::from(inner.idle[0].len() < inner.idle[1].len());
            if let Some(idle) = inner.idle[fuller].pop_front() {
                self.closed(CloseReason::MaxIdle);
                closing.push(idle.conn);
            }
        }
        drop(g);
        drop(closing);
    }

    pub fn stats(&self) -> PermitStats {
        let g = self.lock();
        PermitStats {
            max_open: g.limits.max_open,
            open: g.open,
            idle_dedicated: g.idle.iter().map(VecDeque::len).sum(),
            waiting: g.waiters.iter().filter(|w| !w.tx.is_closed()).count(),
            wait_count: self.wait_count.load(Ordering::Relaxed),
            wait_duration: Duration::from_nanos(self.wait_nanos.load(Ordering::Relaxed)),
            closed: self.counters.closed_counts(),
        }
    }
}
