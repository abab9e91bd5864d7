//! Where a session's commands go, and the one place that changes it: [`Session::transition`]
//! moves the session between shared connections, a dedicated connection kept for a transaction
//! or a blocking call, one kept for the session, and one whose every frame is relayed.
//!
//! Owns the session's upstream connection and the order across connections: before moving, the
//! session waits for every outstanding reply, so Redis sees a client's commands in the order the
//! client sent them. Never holds a dedicated connection in a state the pool did not make without
//! either keeping it for the session or closing it.

use bytes::Bytes;
use tokio::net::tcp::OwnedReadHalf;

use super::state::{Mode, Session, Stop};
use crate::command::{CacheUse, Local, Route};
use crate::obs::metrics::FlushReason;
use crate::obs::stats::StampExt as _;
use crate::reply::{self, After};
use crate::upstream::ConnHandle;

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
        if self.mode == Mode::Transient
            && (self.conn_tainted() || !self.tx.is_open() && route != Route::Transient)
        {
            // The transaction or blocking call is over: keep the connection only if this
            // command needs one again. One that RESET logged out is given up at once, whatever
            // comes next: the session is back to what a new client has (shared connections,
            // the pool's user), and the pool closes the connection.
            self.give_back().await;
        }
        let dedicated = matches!(route, Route::Transient | Route::Session | Route::Relay);
        if self.mode == Mode::Shared {
            if !dedicated {
                return Ok(match route {
                    Route::Local(local) => Send::Local(local),
                    _ => Send::Shared,
                });
            }
            if !self.take_dedicated(rd).await? {
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
    /// on it, else the least busy one (after waiting for in-flight replies if it changes).
    pub(super) async fn pick_shared(&mut self) -> ConnHandle {
        if let Some(c) = &self.conn {
            if c.proto() == self.proto && self.output.link.inflight() > 0 && c.is_up() {
                return c.clone();
            }
        }
        self.output.link.drained().await;
        let conn = self.ctx.pool.shared(self.proto);
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

    /// Takes a dedicated connection for the session; on failure replies with the error. A
    /// client that leaves while waiting for one gives up its place in line.
    async fn take_dedicated(&mut self, rd: &mut OwnedReadHalf) -> Result<bool, Stop> {
        self.output.link.drained().await;
        let got = tokio::select! {
            got = self.ctx.pool.dedicated(self.proto) => got,
            () = client_gone(rd) => return Err(Stop::Closing),
        };
        Ok(match got {
            Ok(conn) => {
                self.ctx.metrics.pinned.inc();
                self.conn = Some(conn);
                true
            }
            Err(e) => {
                self.output.reply(e.to_frame());
                false
            }
        })
    }

    /// Whether the session's dedicated connection is no longer as the pool made it.
    fn conn_tainted(&self) -> bool {
        self.conn.as_ref().is_some_and(ConnHandle::is_tainted)
    }

    /// Gives a transient dedicated connection back once its last reply is in (the pool closes
    /// it if its state is not the pool's).
    async fn give_back(&mut self) {
        self.output.link.drained().await;
        if let Some(conn) = self.conn.take() {
            self.ctx.pool.release(conn);
        }
        self.ctx.metrics.pinned.dec();
        self.mode = Mode::Shared;
    }

    fn dedicated_conn(&mut self) -> Result<&ConnHandle, Stop> {
        if !self.conn.as_ref().is_some_and(ConnHandle::is_up) {
            // The state this session kept upstream (transaction, db, subscriptions) is gone.
            self.output.reply(reply::error(
                "ERR nearcache: dedicated upstream connection lost; closing the session",
            ));
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
        }
        if reset || self.mode != Mode::Transient {
            // Reset, or kept for the session (SELECT n, AUTH, CLIENT SETNAME, HELLO with a
            // version: `transition` pins those): never back to the pool.
            self.dedicated_conn()?.taint();
        }
        self.tx.track(self.spec.tx);
        let after = self.dedicated_write_effect(args);
        let bytes = self.wire(args);
        let timed = !self.spec.blocks(args);
        let meter = self.output.out.meter().clone();
        let rx = self.dedicated_conn()?.call_for(bytes, timed, Some(&meter));
        self.stamp.sent_upstream();
        self.output.link.dispatched();
        self.queue_reply(rx, after);
        Ok(())
    }

    /// Writes on a dedicated connection: inside MULTI they run at EXEC, so their keys are
    /// collected and invalidated (again) when EXEC's reply arrives.
    fn dedicated_write_effect(&mut self, args: &[Bytes]) -> After {
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
                Some(keys) => self.changed(keys),
                None => After::Nothing,
            },
            _ => After::Nothing,
        }
    }

    /// Sends the command being handled on the relayed connection.
    pub(super) fn relay(&mut self, args: &[Bytes]) -> Result<(), Stop> {
        self.stamp.untimed();
        // No reply hook in relay mode: invalidate at dispatch only.
        if let (Some(c), CacheUse::Write) = (&self.ctx.cache, self.cache_use(args)) {
            c.invalidate_keys(&self.spec.write_keys(args));
        }
        if self.spec.is_reset(args) {
            self.proto = 2;
        } else if let Some(v) = self.spec.hello_version(args) {
            self.proto = v;
        }
        let bytes = self.encode(args);
        self.output.relaying();
        let out = self.output.out.clone();
        let conn = self.dedicated_conn()?;
        conn.taint();
        conn.relay(bytes, out);
        Ok(())
    }

    /// Ends the session: a transient connection with nothing pending could be reused, but the
    /// client is gone mid-whatever, so every dedicated connection is simply dropped (closed).
    pub(super) fn finish(&mut self) {
        if self.mode != Mode::Shared {
            self.ctx.metrics.pinned.dec();
            if let Some(conn) = self.conn.take() {
                self.ctx.pool.discard(conn);
            }
        }
        self.conn = None;
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
