//! The shared connections: a few multiplexed connections per protocol version, which every
//! session without connection state of its own sends through.
//!
//! Owns the lists and the choice of a connection (one of the session's own thread, the least
//! busy); the pool decides when one is replaced. Never holds its lock beyond a clone or a swap.

use std::sync::RwLock;
use std::time::Duration;

use super::conn::ConnHandle;
use super::env::Homes;

/// A shared connection and the session thread its task runs on (`None`: not one of them).
#[derive(Clone)]
pub struct Shared {
    pub home: Option<usize>,
    pub conn: ConnHandle,
}

/// The list of a protocol version: RESP2 clients are served by index 0, RESP3 by index 1.
pub fn proto_index(proto: u8) -> usize {
    usize::from(proto >= 3)
}

/// The protocol versions, in list order.
pub const PROTOS: [u8; 2] = [2, 3];

/// The current shared connections, replaced one at a time as they reach their lifetime.
pub struct SharedConns {
    lists: [RwLock<Vec<Shared>>; 2],
    /// Connections of other users (`identity.rs`): never chosen here, but re-pointed with
    /// the rest when the invalidation connection changes.
    extra: RwLock<Vec<ConnHandle>>,
}

impl SharedConns {
    /// The lists, one per protocol version.
    pub fn new(lists: [Vec<Shared>; 2]) -> Self {
        SharedConns {
            lists: lists.map(RwLock::new),
            extra: RwLock::new(Vec::new()),
        }
    }

    /// Every shared connection now, other users' included.
    pub fn all(&self) -> Vec<ConnHandle> {
        let lists = self.lists.iter().flat_map(|l| {
            let conns = l.read().unwrap_or_else(|p| p.into_inner());
            conns.iter().map(|s| s.conn.clone()).collect::<Vec<_>>()
        });
        let extra = self.extra.read().unwrap_or_else(|p| p.into_inner()).clone();
        lists.chain(extra).collect()
    }

    /// Adds another user's connection to those re-pointed (see `extra`).
    pub fn add_extra(&self, conn: ConnHandle) {
        let mut extra = self.extra.write().unwrap_or_else(|p| p.into_inner());
        extra.push(conn);
    }

    /// Forgets another user's connection.
    pub fn remove_extra(&self, conn: &ConnHandle) {
        let mut extra = self.extra.write().unwrap_or_else(|p| p.into_inner());
        extra.retain(|c| !c.same(conn));
    }

    /// The connection for `proto` a session on this thread sends through: a connected one
    /// before one that is down, then one whose task runs on this thread ([`Homes`]), then
    /// the least busy.
    pub fn pick(&self, proto: u8) -> ConnHandle {
        let here = Homes::here();
        let conns = self.lists[proto_index(proto)]
            .read()
            .unwrap_or_else(|p| p.into_inner());
        conns
            .iter()
            .min_by_key(|s| {
                let c = &s.conn;
                (!c.is_up(), here.is_none() || s.home != here, c.inflight())
            })
            .map(|s| s.conn.clone())
            .expect("at least one shared connection per protocol")
    }

    /// The thread the connection at `index` of `list` runs on.
    pub fn home(&self, list: usize, index: usize) -> Option<usize> {
        let conns = self.lists[list].read().unwrap_or_else(|p| p.into_inner());
        conns.get(index).and_then(|s| s.home)
    }

    /// The first connection at least `lifetime` old: its list and place in it.
    pub fn first_older_than(&self, lifetime: Duration) -> Option<(usize, usize)> {
        self.lists.iter().enumerate().find_map(|(list, l)| {
            let conns = l.read().unwrap_or_else(|p| p.into_inner());
            conns
                .iter()
                .position(|s| s.conn.age() >= lifetime)
                .map(|index| (list, index))
        })
    }

    /// Puts `fresh` in place of the connection at `index` of `list`, returning the old one.
    pub fn replace(&self, list: usize, index: usize, fresh: ConnHandle) -> Option<ConnHandle> {
        let mut conns = self.lists[list].write().unwrap_or_else(|p| p.into_inner());
        conns
            .get_mut(index)
            .map(|s| std::mem::replace(&mut s.conn, fresh))
    }
}
