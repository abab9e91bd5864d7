//! Tracking state shared by the upstream connections and the cache.
//!
//! Every shared connection turns on `CLIENT TRACKING ... REDIRECT <id>`, pointing at one
//! invalidation connection subscribed to `__redis__:invalidate`. An entry may be filled through a
//! connection only while that connection's tracking points at the invalidation connection that
//! is up *now* (same epoch). The entry is tagged with the connection's identity and generation:
//! when that connection closes, Redis forgets what it read and will never invalidate it, so the
//! tag's entries are dropped (redis#11767).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the cache must be told by the upstream side.
pub trait TrackingSink: Send + Sync {
    /// A connection whose tracking protected entries tagged `tag` closed or lost its redirect.
    fn connection_lost(&self, tag: u64);
    /// Keys Redis says changed (a `None` list means every key: FLUSHALL/FLUSHDB).
    fn invalidate(&self, keys: Option<Vec<bytes::Bytes>>);
    /// The invalidation connection of `scope` is gone: nothing filled through that scope's
    /// connections is protected. `None`: the one invalidation connection (one Redis), which
    /// protected everything.
    fn invalidation_lost(&self, scope: Option<u16>);
    /// Redis's ACL changed: what one user could read may differ now.
    fn acl_changed(&self) {}
    /// The cluster node of `scope` no longer serves a slot it did: what it protected of that
    /// slot may change unseen now.
    fn slots_moved(&self, scope: u16) {
        self.invalidation_lost(Some(scope));
    }
}

/// The scope of a tag ([`cache::tag_scope`]): one Redis's connections, or one cluster node's.
pub const fn scope_bits(scope: Option<u16>) -> u64 {
    match scope {
        Some(s) => (s as u64) << 48,
        None => 0,
    }
}

/// How Redis learns what to invalidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingMode {
    /// Redis remembers every key each shared connection reads and invalidates exactly those,
    /// through the invalidation connection (REDIRECT). Entries depend on the connection that
    /// read them.
    Default,
    /// The invalidation connection subscribes to every change of keys under these prefixes
    /// (all keys if empty); Redis remembers nothing per read, and only keys under the prefixes
    /// may be cached.
    Bcast(Vec<bytes::Bytes>),
}

/// The tag of entries filled in BCAST mode: they depend on the invalidation connection only
/// (one Redis only: a cluster refuses BCAST).
pub const BCAST_TAG: u64 = u64::MAX;

/// The current redirect target and its epoch.
pub struct Tracking {
    pub mode: TrackingMode,
    /// The cluster node whose connections this tracks (`None` with one Redis): the top 16 bits
    /// of their tags, dropped together when the invalidation connection goes.
    pub scope: Option<u16>,
    /// `(client id, epoch)` of the live invalidation connection, if one is up.
    redirect: Mutex<Option<(i64, u64)>>,
    epoch: AtomicU64,
    pub sink: Arc<dyn TrackingSink>,
}

impl Tracking {
    pub fn new(mode: TrackingMode, sink: Arc<dyn TrackingSink>) -> Self {
        Self::scoped(mode, sink, None)
    }

    /// The tracking of one cluster node's connections, their tags in `scope`.
    pub fn scoped(mode: TrackingMode, sink: Arc<dyn TrackingSink>, scope: Option<u16>) -> Self {
        Tracking {
            mode,
            scope,
            redirect: Mutex::new(None),
            epoch: AtomicU64::new(0),
            sink,
        }
    }

    /// The live redirect target, if any.
    pub fn redirect(&self) -> Option<(i64, u64)> {
        *self.redirect.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new invalidation connection is up with `client_id`; returns its epoch.
    pub fn up(&self, client_id: i64) -> u64 {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        *self.redirect.lock().unwrap_or_else(|p| p.into_inner()) = Some((client_id, epoch));
        epoch
    }

    /// The invalidation connection is down: stop fills first, then drop what it protected.
    pub fn down(&self) {
        *self.redirect.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.sink.invalidation_lost(self.scope);
    }

    /// True when fills tracked under `epoch` are protected now.
    pub fn is_current(&self, epoch: u64) -> bool {
        epoch != 0 && self.redirect().is_some_and(|(_, e)| e == epoch)
    }
}
