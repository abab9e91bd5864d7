//! The shared connections: a few multiplexed connections per protocol version, which every
//! session without connection state of its own sends through.
//!
//! Owns the lists and the choice of the least busy connection; the pool decides when one is
//! replaced. Never holds its lock beyond a clone or a swap.

use std::sync::RwLock;
use std::time::Duration;

use super::conn::ConnHandle;

/// The list of a protocol version: RESP2 clients are served by index 0, RESP3 by index 1.
pub fn proto_index(proto: u8) -> usize {
    usize::from(proto >= 3)
}

/// The protocol versions, in list order.
pub const PROTOS: [u8; 2] = [2, 3];

/// The current shared connections, replaced one at a time as they reach their lifetime.
pub struct SharedConns {
    lists: [RwLock<Vec<ConnHandle>>; 2],
    /// Connections of other users (`identity.rs`): never chosen here, but re-pointed with
    /// the rest when the invalidation connection changes.
    extra: RwLock<Vec<ConnHandle>>,
}

impl SharedConns {
    /// The lists, one per protocol version.
    pub fn new(lists: [Vec<ConnHandle>; 2]) -> Self {
        SharedConns {
            lists: lists.map(RwLock::new),
            extra: RwLock::new(Vec::new()),
        }
    }

    /// Every shared connection now, other users' included.
    pub fn all(&self) -> Vec<ConnHandle> {
        self.lists
            .iter()
            .chain([&self.extra])
            .flat_map(|l| l.read().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
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

    /// The least busy connection for `proto`, preferring connected ones.
    pub fn least_busy(&self, proto: u8) -> ConnHandle {
        let conns = self.lists[proto_index(proto)]
            .read()
            .unwrap_or_else(|p| p.into_inner());
        conns
            .iter()
            .min_by_key(|c| (!c.is_up(), c.inflight()))
            .cloned()
            .expect("at least one shared connection per protocol")
    }

    /// The first connection at least `lifetime` old: its list and place in it.
    pub fn first_older_than(&self, lifetime: Duration) -> Option<(usize, usize)> {
        self.lists.iter().enumerate().find_map(|(list, l)| {
            let conns = l.read().unwrap_or_else(|p| p.into_inner());
            conns
                .iter()
                .position(|c| c.age() >= lifetime)
                .map(|index| (list, index))
        })
    }

    /// Puts `fresh` in place of the connection at `index` of `list`, returning the old one.
    pub fn replace(&self, list: usize, index: usize, fresh: ConnHandle) -> Option<ConnHandle> {
        let mut conns = self.lists[list].write().unwrap_or_else(|p| p.into_inner());
        conns.get_mut(index).map(|c| std::mem::replace(c, fresh))
    }
}
