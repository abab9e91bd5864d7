//! A cluster session's connection of its own (`cluster = true`): transactions (`MULTI`,
//! `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`), blocking commands and subscriptions, each on a
//! dedicated connection from the pool of the master that serves their keys' (or channels')
//! slot, given back as with one Redis once the transaction or blocking call is over or the
//! subscriptions are gone.
//!
//! Owns when a cluster session takes, keeps and leaves a node's dedicated connection, the
//! transaction's slot (a command of another slot gets `-CROSSSLOT` and dooms the transaction),
//! and what the proxy holds of a transaction before its node is known ([`NodeTx`]: `MULTI`
//! answered `+OK`, keyless commands `+QUEUED`). Sends through the paths one Redis uses
//! (`send_dedicated`, `relay`), so writes inside `EXEC` invalidate the cache as they do there.
//! Never follows a redirect: a `MOVED` or `ASK` inside a transaction or a subscription reaches
//! the client as the node's error (docs/cluster.md).

use std::sync::Arc;

use bytes::Bytes;

use super::state::{Mode, Session, Stop};
use super::tx::NodeTx;
use crate::cluster::keyless::{self, Keyless, SELECT_REFUSED};
use crate::cluster::nodes::Nodes;
use crate::cluster::redirect::CROSSSLOT;
use crate::cluster::send::SLOT_UNSERVED;
use crate::cluster::split::{self, Plan};
use crate::command::{Local, Route, Special, TxEffect};
use crate::obs::stats::{Outcome, StampExt as _};
use crate::reply;
use crate::socket::OwnedReadHalf;
use crate::upstream::Pool;

/// Redis's reply to `EXEC` after one of the queued commands was refused.
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
/// Redis's reply to `MULTI` inside `MULTI`.
const NESTED: &str = "ERR MULTI calls can not be nested";
/// A command no node knows. Sent inside `MULTI` after the proxy refused a queued command the
/// node never saw: the node refuses it too, which makes it discard the transaction at `EXEC`
/// (`-EXECABORT`), as Redis does for any refused queued command.
const DOOM: &[u8] = b"NEARCACHE.ABORT-TRANSACTION";
const WHY_PINNED: &str = "commands that keep connection state for the rest of the session";

impl Session {
    /// Cluster mode, before a command is routed by its plan: the command of a session that
    /// holds a node's connection, holds a transaction, or needs a connection of its own now.
    /// False when it is not one (the caller routes it as usual).
    pub(super) async fn node_dispatch(
        &mut self,
        nodes: &Arc<Nodes>,
        route: Route,
        args: &[Bytes],
        rd: &mut OwnedReadHalf,
    ) -> Result<bool, Stop> {
        if self.mode == Mode::Relay {
            self.settle_relay().await;
            if self.mode == Mode::Relay {
                // Subscribed: the node decides what a subscribed client may send.
                self.count_dedicated_read(args);
                self.relay(args)?;
                return Ok(true);
            }
        }
        let over = match self.mode {
            // Left relay mode: the subscriptions are gone.
            Mode::Session => true,
            Mode::Transient => !self.tx.is_open() || self.conn_tainted(),
            _ => false,
        };
        if over {
            self.leave_node().await;
        }
        if route == Route::Local(Local::Quit) {
            return Ok(false);
        }
        if self.spec.special == Special::Reset {
            // The node's connection holds a transaction or a WATCH: closed rather than reset,
            // and the proxy answers RESET as for any session on shared connections.
            self.output.link.drained().await;
            self.finish();
            self.end_tx();
            return Ok(false);
        }
        if self.mode == Mode::Transient {
            return self.on_node(route, args).await;
        }
        if self.node_tx.held_multi {
            self.held(nodes, route, args, rd).await?;
            return Ok(true);
        }
        match route {
            Route::Transient if self.spec.tx == TxEffect::Multi => {
                self.tx.track(TxEffect::Multi);
                self.me.set_multi(0);
                self.node_tx.held_multi = true;
                self.answer(reply::simple("OK"));
            }
            // A call Redis refuses at once (`WATCH` without keys): its error from any node,
            // with no connection kept for a WATCH that watches nothing.
            Route::Transient if !split::well_formed(self.spec, args) => return Ok(false),
            Route::Transient => self.pin_for(nodes, args, rd).await?,
            Route::Relay if self.spec.special == Special::Subscribe => {
                self.subscribe(nodes, args, rd).await?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `WATCH` or a blocking command on a session with shared connections: a dedicated
    /// connection to the master of its keys' slot. Keyless ones (`WAIT`, `WAITAOF`) go to the
    /// first master, as one Redis's do to it.
    async fn pin_for(
        &mut self,
        nodes: &Arc<Nodes>,
        args: &[Bytes],
        rd: &mut OwnedReadHalf,
    ) -> Result<(), Stop> {
        let node = match split::plan(self.spec, args) {
            Plan::Slot(slot) => {
                if self.spec.tx == TxEffect::Watch {
                    self.node_tx.slot = Some(slot);
                }
                nodes.for_slot(slot)
            }
            Plan::Keyless(_) => nodes.any(),
            Plan::Split(_) => {
                self.answer(reply::error(CROSSSLOT));
                return Ok(());
            }
            Plan::Refuse(msg) => {
                self.answer(reply::error(msg));
                return Ok(());
            }
        };
        let Some((_, pool)) = node else {
            self.node_tx = NodeTx::default();
            self.answer(reply::error(SLOT_UNSERVED));
            return Ok(());
        };
        if self.open_on(pool, rd).await? {
            self.count_dedicated_read(args);
            self.send_dedicated(args)?;
        }
        Ok(())
    }

    /// `SUBSCRIBE` and the like on a session with shared connections: a relayed dedicated
    /// connection to one master (Redis Cluster propagates `PUBLISH` to every node), or to the
    /// master of the shard channels' slot for `SSUBSCRIBE`/`SUNSUBSCRIBE`.
    async fn subscribe(
        &mut self,
        nodes: &Arc<Nodes>,
        args: &[Bytes],
        rd: &mut OwnedReadHalf,
    ) -> Result<(), Stop> {
        let node = match keyless::classify(self.spec, args) {
            Keyless::ChannelSlot => match split::channel_slot(self.spec, args) {
                Ok(Some(slot)) => nodes.for_slot(slot),
                Ok(None) => nodes.any(),
                Err(msg) => {
                    self.answer(reply::error(msg));
                    return Ok(());
                }
            },
            _ => nodes.any(),
        };
        let Some((_, pool)) = node else {
            self.answer(reply::error(SLOT_UNSERVED));
            return Ok(());
        };
        if self.take_dedicated(Some(pool), rd).await? {
            self.mode = Mode::Relay;
            self.relay(args)?;
        }
        Ok(())
    }

    /// A command while a transaction or a WATCH is open on the node's connection.
    async fn on_node(&mut self, route: Route, args: &[Bytes]) -> Result<bool, Stop> {
        if route == Route::Local(Local::Client) && self.answers_client_here(args) {
            return Ok(false);
        }
        if let Some(refusal) = self.not_in_tx(route, args) {
            self.refuse_queued(refusal);
            return Ok(true);
        }
        if let Err(msg) = self.same_slot(args) {
            self.refuse_queued(reply::error(msg));
            return Ok(true);
        }
        self.count_dedicated_read(args);
        self.send_dedicated(args)?;
        Ok(true)
    }

    /// A command after a `MULTI` the proxy holds: `EXEC`, `DISCARD` and refusals answered
    /// here; a keyed command (or one the node must judge) sends the transaction to its node;
    /// a keyless one is held too.
    async fn held(
        &mut self,
        nodes: &Arc<Nodes>,
        route: Route,
        args: &[Bytes],
        rd: &mut OwnedReadHalf,
    ) -> Result<(), Stop> {
        match self.spec.tx {
            TxEffect::Exec if self.node_tx.aborted => {
                self.end_tx();
                self.answer(reply::error(EXECABORT));
                return Ok(());
            }
            // No key at all: any master runs it.
            TxEffect::Exec => return self.send_held(nodes.any(), args, rd).await,
            TxEffect::Discard => {
                self.end_tx();
                self.answer(reply::simple("OK"));
                return Ok(());
            }
            TxEffect::Multi => {
                self.answer(reply::error(NESTED));
                return Ok(());
            }
            _ => {}
        }
        if let Some(refusal) = self.not_in_tx(route, args) {
            self.refuse_queued(refusal);
            return Ok(());
        }
        match split::plan(self.spec, args) {
            Plan::Split(_) => self.refuse_queued(reply::error(CROSSSLOT)),
            Plan::Refuse(msg) => self.refuse_queued(reply::error(msg)),
            Plan::Slot(slot) if !self.node_tx.aborted => {
                self.node_tx.slot = Some(slot);
                return self.send_held(nodes.for_slot(slot), args, rd).await;
            }
            // A call Redis would refuse (unknown, wrong arity): the node's own error.
            Plan::Keyless(_) if !self.node_tx.aborted && !split::well_formed(self.spec, args) => {
                return self.send_held(nodes.any(), args, rd).await;
            }
            // Keyless, or doomed already: queued here.
            _ => {
                let _ = self.dedicated_write_effect(args);
                let bytes = self.wire(args);
                self.node_tx.held.push(bytes);
                self.answer(reply::simple("QUEUED"));
            }
        }
        Ok(())
    }

    /// Takes the node's connection for a held transaction, sends what is held, then the
    /// command being handled.
    async fn send_held(
        &mut self,
        node: Option<(String, Arc<Pool>)>,
        args: &[Bytes],
        rd: &mut OwnedReadHalf,
    ) -> Result<(), Stop> {
        let Some((_, pool)) = node else {
            self.refuse_queued(reply::error(SLOT_UNSERVED));
            return Ok(());
        };
        if self.open_on(pool, rd).await? {
            self.count_dedicated_read(args);
            self.send_dedicated(args)?;
        } else {
            self.node_tx.aborted = true;
        }
        Ok(())
    }

    /// Takes a dedicated connection of `pool` and sends the held `MULTI`, if any, waiting for
    /// its `+OK` (the commands after it must not run outside a transaction), then the held
    /// commands, whose `+QUEUED` the client had from the proxy. False, with the client's
    /// reply given, when the connection or `MULTI` failed.
    async fn open_on(&mut self, pool: Arc<Pool>, rd: &mut OwnedReadHalf) -> Result<bool, Stop> {
        if !self.take_dedicated(Some(pool), rd).await? {
            return Ok(false);
        }
        self.mode = Mode::Transient;
        if !self.node_tx.held_multi {
            return Ok(true);
        }
        let Some(conn) = self.conn.clone() else {
            return Err(Stop::Closing);
        };
        let multi = self.encode(&[Bytes::from_static(b"MULTI")]);
        let refused = match conn.call(multi).await {
            Ok(Ok(r)) if r.starts_with(b"+OK") => None,
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => Some(e.to_frame()),
            Err(_) => Some(reply::error("ERR nearcache: upstream connection lost")),
        };
        if let Some(refused) = refused {
            self.give_back().await;
            self.answer(refused);
            return Ok(false);
        }
        self.node_tx.held_multi = false;
        // Their replies are the node's `+QUEUED` (or an error, which makes EXEC fail as it
        // would have): the client had the proxy's already.
        for bytes in std::mem::take(&mut self.node_tx.held) {
            conn.call_then(bytes, |_| {});
        }
        Ok(true)
    }

    /// Why the command being handled cannot run inside a transaction through the proxy: what
    /// would change the node's connection for the rest of the session.
    fn not_in_tx(&mut self, route: Route, args: &[Bytes]) -> Option<Bytes> {
        if self.spec.special == Special::Select && route == Route::Session {
            return Some(reply::error(SELECT_REFUSED));
        }
        let pins = matches!(route, Route::Session | Route::Relay | Route::Replicate)
            || self.spec.special == Special::Hello;
        pins.then(|| self.not_yet_reply(args, WHY_PINNED))
    }

    /// The command's keys are in the transaction's slot (which they set, if it has none).
    fn same_slot(&mut self, args: &[Bytes]) -> Result<(), &'static str> {
        match split::plan(self.spec, args) {
            Plan::Slot(slot) => match self.node_tx.slot {
                Some(s) if s != slot => Err(CROSSSLOT),
                _ => {
                    self.node_tx.slot = Some(slot);
                    Ok(())
                }
            },
            Plan::Split(_) => Err(CROSSSLOT),
            Plan::Refuse(msg) => Err(msg),
            Plan::Keyless(_) => Ok(()),
        }
    }

    /// Answers a command the proxy refuses inside a transaction; inside `MULTI` the
    /// transaction is then doomed, as Redis dooms it: `EXEC` gets `-EXECABORT`.
    fn refuse_queued(&mut self, refusal: Bytes) {
        if self.tx.in_multi() {
            self.node_tx.aborted = true;
            let doom = self.encode(&[Bytes::from_static(DOOM)]);
            if let Some(conn) = &self.conn {
                conn.call_then(doom, |_| {});
            }
        }
        self.answer(refusal);
    }

    /// Back to shared connections: the transaction, blocking call or subscriptions are over.
    async fn leave_node(&mut self) {
        self.give_back().await;
        self.node_tx = NodeTx::default();
    }

    /// No transaction any more, held or not.
    fn end_tx(&mut self) {
        self.tx.reset();
        self.tx.discard();
        self.me.set_multi(-1);
        self.node_tx = NodeTx::default();
    }

    /// The proxy's own reply to the command being handled.
    fn answer(&mut self, bytes: Bytes) {
        self.stamp.mark(Outcome::Local);
        self.output.reply(bytes);
    }
}
