//! The table itself: a [`Registry`] of [`Client`]s, each client's fields written by its
//! session and read by whoever asks.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use crate::clock::Clock;
use crate::socket::ClientAddr;
use crate::upstream::ConnHandle;

use super::tracking::TrackingView;

/// Every connected client, by id.
pub struct Registry {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<Client>>>,
    /// Clients whose tracking is on, for `INFO clients`.
    tracking: AtomicI64,
    /// For `idle=`: a reading costs a memory read, where an `Instant` difference does not.
    pub(super) clock: Clock,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            next: AtomicU64::new(1),
            map: Mutex::new(BTreeMap::new()),
            tracking: AtomicI64::new(0),
            clock: Clock::new(),
        }
    }
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Client>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a client; it leaves the table when the returned guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        addr: ClientAddr,
        laddr: ClientAddr,
        fd: i32,
        user: &str,
    ) -> Registered {
        let id = self.next.fetch_add(1, Relaxed);
        let client = Arc::new(Client {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            idle_since_ms: AtomicU64::new(self.clock.now()),
            cmd: AtomicU32::new(u32::MAX),
            name: Mutex::new(Bytes::new()),
            user: Mutex::new(user.to_string()),
            db: AtomicU32::new(0),
            proto: AtomicU8::new(2),
            multi: AtomicI32::new(-1),
            subs: [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)],
            no_evict: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            tracking: Mutex::new(TrackingView::default()),
            upstream: Mutex::new(None),
            killed: AtomicBool::new(false),
            on_kill: Mutex::new(None),
        });
        self.map().insert(id, client.clone());
        Registered {
            registry: self.clone(),
            client,
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<Client>> {
        self.map().get(&id).cloned()
    }

    /// Every client, in id order.
    pub fn all(&self) -> Vec<Arc<Client>> {
        self.map().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `view`'s redirect target is gone (Redis would find it so at its next
    /// invalidation).
    pub fn redirect_broken(&self, view: &TrackingView) -> bool {
        view.redirect.is_some_and(|id| self.get(id).is_none())
    }

    pub fn tracking_clients(&self) -> i64 {
        self.tracking.load(Relaxed).max(0)
    }

    /// Takes the client out of the table at once (it no longer counts) and tells its session
    /// to close the connection.
    pub fn kill(&self, id: u64) -> bool {
        match self.map().remove(&id) {
            Some(c) => {
                self.forget_tracking(&c);
                c.killed.store(true, Relaxed);
                let stop = c.on_kill.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(stop) = stop {
                    stop();
                }
                true
            }
            None => false,
        }
    }

    fn forget_tracking(&self, c: &Client) {
        if c.tracking().on {
            self.tracking.fetch_sub(1, Relaxed);
        }
    }
}

/// A client's place in the [`Registry`], given up on drop.
pub struct Registered {
    registry: Arc<Registry>,
    client: Arc<Client>,
}

impl Registered {
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn client(&self) -> Arc<Client> {
        self.client.clone()
    }

    /// `RESET`: name, db, protocol, tracking and subscriptions as a new client has them.
    pub fn reset(&self) {
        self.set_name(Bytes::new());
        self.set_db(0);
        self.set_proto(2);
        self.set_multi(-1);
        for kind in [SubKind::Channel, SubKind::Pattern, SubKind::Shard] {
            self.set_subs(kind, 0);
        }
        self.set_tracking(TrackingView::default());
    }

    /// The client sent something, for `idle=`.
    #[inline]
    pub fn active(&self) {
        let now = self.registry.clock.now();
        self.client.idle_since_ms.store(now, Relaxed);
    }

    /// `CLIENT KILL` runs `then` (the session's way to stop at once).
    pub fn on_kill(&self, then: Box<dyn Fn() + Send + Sync>) {
        *self
            .client
            .on_kill
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(then);
    }

    /// Sets the client's tracking view, keeping the registry's count of tracking clients.
    pub fn set_tracking(&self, view: TrackingView) {
        let mut t = self
            .client
            .tracking
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (t.on, view.on) {
            (false, true) => self.registry.tracking.fetch_add(1, Relaxed),
            (true, false) => self.registry.tracking.fetch_sub(1, Relaxed),
            _ => 0,
        };
        *t = view;
    }
}

impl std::ops::Deref for Registered {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.registry.map();
        if map.remove(&self.client.id).is_some() {
            drop(map);
            self.registry.forget_tracking(&self.client);
        }
    }
}

/// Which subscription count: channels, patterns, shard channels.
#[derive(Debug, Clone, Copy)]
pub enum SubKind {
    Channel = 0,
    Pattern = 1,
    Shard = 2,
}

/// One client connection, as `CLIENT LIST` describes it.
pub struct Client {
    pub id: u64,
    pub addr: ClientAddr,
    pub laddr: ClientAddr,
    pub fd: i32,
    pub(super) created: Instant,
    /// When the client last sent something, on the registry's clock.
    pub(super) idle_since_ms: AtomicU64,
    /// The last command it sent ([`CommandSpec::code`](crate::command::CommandSpec::code)).
    pub(super) cmd: AtomicU32,
    name: Mutex<Bytes>,
    user: Mutex<String>,
    db: AtomicU32,
    pub(super) proto: AtomicU8,
    /// Commands queued in MULTI, or -1 outside one.
    pub(super) multi: AtomicI32,
    subs: [AtomicU32; 3],
    pub(super) no_evict: AtomicBool,
    /// Waiting on a blocking command.
    pub(super) blocked: AtomicBool,
    tracking: Mutex<TrackingView>,
    /// The client's dedicated connection, if it holds one.
    upstream: Mutex<Option<ConnHandle>>,
    killed: AtomicBool,
    /// Stops the client's session: set by the session, run by [`Registry::kill`]. Not a wait
    /// of the session's own, which it would poll at every wake-up.
    on_kill: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Client {
    /// The client runs a command, for `cmd=`.
    #[inline]
    pub fn ran(&self, cmd: u32) {
        self.cmd.store(cmd, Relaxed);
    }

    pub fn name(&self) -> Bytes {
        self.name.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_name(&self, name: Bytes) {
        *self.name.lock().unwrap_or_else(|p| p.into_inner()) = name;
    }

    pub fn user(&self) -> String {
        self.user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_user(&self, user: &str) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = user.to_string();
    }

    pub fn db(&self) -> u32 {
        self.db.load(Relaxed)
    }

    pub fn set_db(&self, db: u32) {
        self.db.store(db, Relaxed);
    }

    pub fn set_proto(&self, proto: u8) {
        self.proto.store(proto, Relaxed);
    }

    pub fn set_multi(&self, queued: i32) {
        self.multi.store(queued, Relaxed);
    }

    pub fn set_subs(&self, kind: SubKind, n: u32) {
        self.subs[kind as usize].store(n, Relaxed);
    }

    pub fn subs(&self, kind: SubKind) -> u32 {
        self.subs[kind as usize].load(Relaxed)
    }

    pub fn set_blocked(&self, on: bool) {
        self.blocked.store(on, Relaxed);
    }

    pub fn set_no_evict(&self, on: bool) {
        self.no_evict.store(on, Relaxed);
    }

    pub fn tracking(&self) -> TrackingView {
        self.tracking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The id Redis gave the client's dedicated connection, or -1 (none, or not known yet).
    pub fn upstream_id(&self) -> i64 {
        let conn = self.upstream.lock().unwrap_or_else(|p| p.into_inner());
        conn.as_ref().and_then(ConnHandle::client_id).unwrap_or(-1)
    }

    pub fn set_upstream(&self, conn: Option<ConnHandle>) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }

    /// Whether `CLIENT KILL` named this client.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Relaxed)
    }
}
