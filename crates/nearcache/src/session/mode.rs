//! Where a session's commands go, and the one place that changes it: [`Session::transition`]
//! moves the session between shared connections, a dedicated connection kept for a transaction
//! or a blocking call, one kept for the session, and one whose every frame is relayed.
//!
//! Owns the session's upstream connection and the order across connections: before moving, the
//! session waits for every outstanding reply, so Redis sees a client's commands in the order the
//! client sent them. Never holds a dedicated connection in a state the pool did not make without
//! either keeping it for the session or closing it.

use std::sync::Arc;

use crate::socket::OwnedReadHalf;
use bytes::Bytes;
use tracing::debug;

use super::state::{Mode, Session, Stop};
use crate::command::{CacheUse, KeyList, Local, Route, Special};
use crate::obs::metrics::FlushReason;
use crate::obs::stats::StampExt as _;
use crate::reply::After;
use crate::upstream::{ConnHandle, Pool};

/// How long a relayed session waits for Redis to confirm it may leave relay mode.
const LEAVE_RELAY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How the command being handled is to be sent, once the session is where it must be.
pub(super) enum Send {
    /// Answered by the proxy.
    Local(Local),
    /// On a shared connection, through the cache.
    Shared,
    /// On the session's dedicated connection, one reply expected.
    Dedicated,
    /// On the session's dedicated connection, every frame relayed.
    Relay,
    /// Nowhere: no dedicated connection could be had, and the client has its error.
    Nowhere,
    /// On a connection of its own, which relays raw bytes from then on.
    Replicate,
}

impl Session {
    /// Moves the session to where `route` sends the command being handled.
    pub(super) async fn transition(
        &mut self,
        route: Route,
        args: &[Bytes],
        rd: &mut OwnedReadHalf,
    ) -> Result<Send, Stop> {
        if self.mode == Mode::Relay {
            return Ok(Send::Relay);
        }
        if route == Route::Replicate && !self.tx.is_open() {
            return Ok(Send::Replicate);
        }
        if self.mode == Mode::Transient
            && (self.conn_tainted() || !self.tx.is_open() && route != Route::Transient)
        {
            // The transaction or blocking call is over: keep the connection only if this
            // command needs one again. One that RESET logged out is given up at once, whatever
            // comes next: the session is back to what a new client has (shared connections,
            // the pool's user), and the pool closes the connection.
            self.give_back().await;
        }
        // A replication command inside a transaction goes where the transaction is, for Redis
        // to refuse it.
        let dedicated = matches!(
            route,
            Route::Transient | Route::Session | Route::Relay | Route::Replicate
        );
        if self.mode == Mode::Shared {
            if !dedicated {
                return Ok(match route {
                    Route::Local(local) => Send::Local(local),
                    _ => Send::Shared,
                });
            }
            if !self.take_dedicated(None, rd).await? {
                return Ok(Send::Nowhere);
            }
            self.mode = Mode::Transient;
        }
        // On a dedicated connection: QUIT is still answered here; RESET, SELECT 0 and the rest
        // go to Redis, whose connection state they concern.
        match route {
            Route::Local(Local::Quit) => return Ok(Send::Local(Local::Quit)),
            Route::Relay => {
                self.mode = Mode::Relay;
                return Ok(Send::Relay);
            }
            Route::Session => self.mode = Mode::Session,
            _ => {}
        }
        if self.spec.hello_version(args).is_some() {
            // The dedicated connection speaks another protocol from now on: never give it back.
            self.mode = Mode::Session;
        }
        Ok(Send::Dedicated)
    }

    /// The shared connection for the next command: the current one while replies are pending
    /// on it, else the pool's pick for this thread (after waiting for in-flight replies if it
    /// changes).
    pub(super) async fn pick_shared(&mut self) -> ConnHandle {
        if let Some(pool) = self.target.take() {
            return self.pick_on(&pool).await;
        }
        if let Some(c) = &self.conn {
            if c.proto() == self.proto && self.output.link.inflight() > 0 && c.is_up() {
                return c.clone();
            }
        }
        self.output.link.drained().await;
        let conn = match &self.who {
            Some(id) => self.ctx.pool.shared_as(id, self.proto),
            None => self.ctx.pool.shared(self.proto),
        };
        self.conn = Some(conn.clone());
        conn
    }

    /// Cluster mode: [`Session::pick_shared`] on the pool of the command's node. Commands to
    /// one node share a connection while replies are pending; moving to another node waits
    /// for them, as moving between connections does (Redis's order per client is kept).
    async fn pick_on(&mut self, pool: &Pool) -> ConnHandle {
        if let Some(c) = &self.conn {
            if c.proto() == self.proto
                && c.addr() == pool.addr()
                && self.output.link.inflight() > 0
                && c.is_up()
            {
                return c.clone();
            }
        }
        self.output.link.drained().await;
        let conn = crate::cluster::send::shared_as(pool, self.who.as_deref(), self.proto);
        self.conn = Some(conn.clone());
        conn
    }

    /// Sends a stateless command on the session's shared connection.
    pub(super) async fn send_shared(&mut self, args: &[Bytes], after: After) {
        let conn = self.pick_shared().await;
        let bytes = self.wire(args);
        self.stamp.sent_upstream();
        self.output.link.dispatched();
        let rx = conn.call_for(bytes, true, Some(self.output.out.meter()));
        self.queue_reply(rx, after);
    }

    /// Takes a dedicated connection for the session from `pool` (a cluster node's; `None`:
    /// the one pool); on failure replies with the error. A client that leaves while waiting
    /// for one gives up its place in line.
    pub(super) async fn take_dedicated(
        &mut self,
        pool: Option<Arc<Pool>>,
        rd: &mut OwnedReadHalf,
    ) -> Result<bool, Stop> {
        self.output.link.drained().await;
        let pool = pool.unwrap_or_else(|| self.ctx.pool.clone());
        let got = tokio::select! {
            got = pool.dedicated(self.proto) => got,
            () = client_gone(rd) => return Err(Stop::Closing),
        };
        let got = match got {
            Ok(conn) => match self.login(&conn).await {
                Ok(()) => Ok(conn),
                Err(refused) => {
                    pool.discard(conn);
                    self.output.reply(refused);
                    return Ok(false);
                }
            },
            Err(e) => Err(e),
        };
        Ok(match got {
            Ok(conn) => {
                self.ctx.metrics.pinned.inc();
                self.me.set_upstream(Some(conn.clone()));
                self.output.link.set_dedicated(true);
                self.conn = Some(conn);
                self.home = Some(pool);
                self.accept_pushes();
                true
            }
            Err(e) => {
                self.output.reply(e.to_frame());
                false
            }
        })
    }

    /// Whether the session's dedicated connection is no longer as the pool made it.
    pub(super) fn conn_tainted(&self) -> bool {
        self.conn.as_ref().is_some_and(ConnHandle::is_tainted)
    }

    /// In RESP3, pushes Redis sends the client's dedicated connection (invalidations
    /// redirected to this client) are the client's: they go to the writer as they come, so
    /// the reader stops writing beside it.
    pub(super) fn accept_pushes(&mut self) {
        if let (3, Some(conn)) = (self.proto, &self.conn) {
            conn.set_push_sink(Some(self.output.out.clone()));
            self.output.relaying();
        }
    }

    /// Gives a transient dedicated connection back once its last reply is in (the pool closes
    /// it if its state is not the pool's).
    pub(super) async fn give_back(&mut self) {
        self.output.link.drained().await;
        let home = self.home.take();
        if let Some(conn) = self.conn.take() {
            conn.set_push_sink(None);
            home.as_ref().unwrap_or(&self.ctx.pool).release(conn);
        }
        self.me.set_upstream(None);
        self.output.link.set_dedicated(false);
        self.ctx.metrics.pinned.dec();
        self.mode = Mode::Shared;
    }

    fn dedicated_conn(&mut self) -> Result<&ConnHandle, Stop> {
        if !self.conn.as_ref().is_some_and(ConnHandle::is_up) {
            // The state this session kept upstream (transaction, db, subscriptions) is gone:
            // the client is closed, as Redis closes a client it killed.
            debug!("dedicated upstream connection lost; closing the client");
            return Err(Stop::Closing);
        }
        self.conn.as_ref().ok_or(Stop::Closing)
    }

    /// Sends the command being handled on the dedicated connection, after noting what it does
    /// to the connection's protocol and transaction.
    pub(super) fn send_dedicated(&mut self, args: &[Bytes]) -> Result<(), Stop> {
        let reset = self.spec.is_reset(args);
        if reset {
            self.proto = 2;
            self.tx.reset();
            // Redis deauthenticates the connection (to the default user), and returns it to
            // RESP2 and db 0: it is no longer the pool's. Whatever kept it (a transaction, a
            // SELECT, an AUTH), the next command gives it up (`transition`).
            self.mode = Mode::Transient;
        } else if let Some(v) = self.spec.hello_version(args) {
            self.proto = v;
            self.accept_pushes();
        }
        if reset || self.mode != Mode::Transient {
            // Reset, or kept for the session (SELECT n, AUTH, CLIENT SETNAME, HELLO with a
            // version: `transition` pins those): never back to the pool.
            self.dedicated_conn()?.taint();
        }
        self.tx.track(self.spec.tx);
        self.me.set_multi(if self.tx.in_multi() { 0 } else { -1 });
        self.me.set_proto(self.proto);
        let after = match self.dedicated_write_effect(args) {
            After::Nothing => self
                .acl_poke(args)
                .unwrap_or_else(|| self.neutral_after(args)),
            after => after,
        };
        let bytes = self.wire(args);
        let timed = !self.spec.blocks(args);
        let after = if timed || self.tx.in_multi() {
            after
        } else {
            // A blocked client may be unblocked by another, by the proxy's id; and it shows
            // as blocked (`b`) until its reply is in.
            self.dedicated_conn()?.learn_client_id();
            self.me.set_blocked(true);
            let me = self.me.client();
            let unblocked: crate::reply::Patch = Box::new(move |reply| {
                me.set_blocked(false);
                reply
            });
            After::Patch(Box::new(after), unblocked)
        };
        let meter = self.output.out.meter().clone();
        let rx = self.dedicated_conn()?.call_for(bytes, timed, Some(&meter));
        self.stamp.sent_upstream();
        self.output.link.dispatched();
        self.queue_reply(rx, after);
        Ok(())
    }

    /// Writes on a dedicated connection: inside MULTI they run at EXEC, so their keys are
    /// collected and invalidated (again) when EXEC's reply arrives.
    pub(super) fn dedicated_write_effect(&mut self, args: &[Bytes]) -> After {
        use crate::command::TxEffect;
        let effect = self.cache_use(args);
        if self.spec.tx == TxEffect::Discard {
            self.tx.discard();
        }
        let is_exec = self.spec.tx == TxEffect::Exec;
        match effect {
            CacheUse::Write | CacheUse::WriteAll if self.tx.in_multi() && !is_exec => {
                if let Some(c) = &self.ctx.cache {
                    let keys = self.spec.write_keys(args);
                    c.invalidate_keys(&keys);
                    let all = effect == CacheUse::WriteAll;
                    if all {
                        c.flush(FlushReason::Flushall);
                    }
                    self.tx.queue_write(&keys, all);
                }
                After::Nothing
            }
            CacheUse::Write | CacheUse::WriteAll => self.write_effect(effect, args),
            _ if is_exec => match self.tx.take_written() {
                // A transaction's writes hold back every read until EXEC's reply.
                Some(keys) => self.changed(keys.map(KeyList::from_vec), false),
                None => After::Nothing,
            },
            _ => After::Nothing,
        }
    }

    /// Sends the command being handled on the relayed connection.
    pub(super) fn relay(&mut self, args: &[Bytes]) -> Result<(), Stop> {
        self.stamp.untimed();
        self.note_relayed(args);
        // No reply hook in relay mode: invalidate at dispatch only.
        if let (Some(c), CacheUse::Write) = (&self.ctx.cache, self.cache_use(args)) {
            c.invalidate_keys(&self.spec.write_keys(args));
        }
        if self.spec.is_reset(args) {
            self.proto = 2;
        } else if let Some(v) = self.spec.hello_version(args) {
            self.proto = v;
        }
        self.me.set_proto(self.proto);
        let bytes = self.encode(args);
        self.output.relaying();
        let out = self.output.out.clone();
        let conn = self.dedicated_conn()?;
        conn.taint();
        // Others may redirect their invalidations here, by the proxy's id.
        conn.learn_client_id();
        conn.relay(bytes, out);
        Ok(())
    }

    /// Before a command: a relayed session whose connection Redis no longer sends anything
    /// unasked goes back
    /// to matched replies, so that its commands can be answered by the proxy again (and `INFO`
    /// patched): a `PING` with a token goes up, every frame before its reply is relayed, and
    /// the session waits for that reply before it queues anything more. False (still relayed)
    /// if the reply does not come back in time.
    pub(super) async fn settle_relay(&mut self) {
        if self.mode == Mode::Relay && !self.unasked.any(self.proto, || self.me.tracking().on) {
            self.leave_relay().await;
        }
    }

    /// Ends the relay (see [`Session::settle_relay`]); false if Redis did not confirm it.
    async fn leave_relay(&mut self) -> bool {
        static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let Some(conn) = self.conn.clone().filter(ConnHandle::is_up) else {
            return false;
        };
        let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("nearcache-relay-end-{}-{n}", std::process::id());
        let ping = self.encode(&[Bytes::from_static(b"PING"), Bytes::from(token.clone())]);
        let reply = crate::reply::bulk(token.as_bytes());
        let (tx, rx) = tokio::sync::oneshot::channel();
        conn.end_relay(ping, reply, move |r| {
            let _ = tx.send(r.is_ok());
        });
        match tokio::time::timeout(LEAVE_RELAY_WAIT, rx).await {
            Ok(Ok(true)) => {
                self.mode = Mode::Session;
                true
            }
            _ => {
                self.unasked.stuck = true;
                false
            }
        }
    }

    /// Notes what a relayed command does to what Redis sends unasked, and counts `SUBSCRIBE`
    /// and the like in the client table (names given again are counted again: close enough
    /// for `sub=` and the `P` flag).
    fn note_relayed(&mut self, args: &[Bytes]) {
        use crate::clients::SubKind;
        if self.spec.is_reset(args) {
            for kind in [SubKind::Channel, SubKind::Pattern, SubKind::Shard] {
                self.me.set_subs(kind, 0);
            }
            self.unasked = Default::default();
            return;
        }
        match self.spec.name {
            "MONITOR" => self.unasked.monitor = true,
            // CLIENT REPLY (no other command is named REPLY).
            "REPLY" => {
                self.unasked.reply_off = !args.get(2).is_some_and(|a| a.eq_ignore_ascii_case(b"on"))
            }
            _ => {}
        }
        if self.spec.special != Special::Subscribe {
            return;
        }
        let kind = match self.spec.name {
            "PSUBSCRIBE" | "PUNSUBSCRIBE" => SubKind::Pattern,
            "SSUBSCRIBE" | "SUNSUBSCRIBE" => SubKind::Shard,
            _ => SubKind::Channel,
        };
        let n = args.len() as u32 - 1;
        let subscribing = !self.spec.name.contains("UNSUB");
        if subscribing || n == 0 {
            self.unasked.subscribed[kind as usize] = subscribing;
        }
        let now = self.me.subs(kind);
        let after = if !self.spec.name.contains("UNSUB") {
            now + n
        } else if n == 0 {
            0
        } else {
            now.saturating_sub(n)
        };
        self.me.set_subs(kind, after);
    }

    /// Ends the session: a transient connection with nothing pending could be reused, but the
    /// client is gone mid-whatever, so every dedicated connection is simply dropped (closed).
    pub(super) fn finish(&mut self) {
        let home = self.home.take();
        if self.mode != Mode::Shared {
            self.ctx.metrics.pinned.dec();
            if let Some(conn) = self.conn.take() {
                conn.set_push_sink(None);
                home.as_ref().unwrap_or(&self.ctx.pool).discard(conn);
            }
        }
        self.mode = Mode::Shared;
        self.conn = None;
        self.me.set_upstream(None);
        self.output.link.set_dedicated(false);
    }
}

/// Resolves when the client has closed its side with nothing left unread. With more input
/// queued nothing can be told, and it never resolves.
async fn client_gone(rd: &mut OwnedReadHalf) {
    let mut byte = [0u8; 1];
    match rd.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
