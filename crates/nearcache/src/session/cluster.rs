//! A session's commands when the upstream is a Redis Cluster (`cluster = true`): each goes
//! where `cluster::split` plans it: a single-slot command through the usual cache path to its
//! slot's master ([`Session::target`]), with its reply settled by `cluster::send` (redirects
//! followed); a split or fanned-out command to its nodes in parallel, merged (a split `MGET`
//! through the cache first, `cluster_mget.rs`); the rest answered here.
//!
//! Transactions, blocking commands and subscriptions, which need a node's connection of
//! their own, are `node_tx.rs`'s; the other commands that need one are refused here.
//!
//! Owns the mapping from a plan to the session's sending paths. Never decides a route itself
//! (`split`, `keyless` do), never follows a redirect itself (`cluster::send` does), and never
//! takes a dedicated connection itself (`node_tx.rs` does; docs/cluster.md).

use std::sync::Arc;

use bytes::Bytes;

use super::state::{Session, Stop};
use crate::cluster::keyless::{Keyless, SELECT_REFUSED};
use crate::cluster::nodes::Nodes;
use crate::cluster::scan;
use crate::cluster::send::{self, Again, Join, SLOT_UNSERVED};
use crate::cluster::split::{self, Plan, SplitKind};
use crate::command::{CacheUse, Local, Route, Special};
use crate::obs::stats::{Outcome, StampExt as _};
use crate::reply::{self, After};
use crate::socket::OwnedReadHalf;
use crate::upstream::Pool;

impl Session {
    /// Phases 3 to 5 in cluster mode.
    pub(super) async fn cluster_dispatch(
        &mut self,
        nodes: Arc<Nodes>,
        route: Route,
        args: &[Bytes],
        rd: &mut OwnedReadHalf,
    ) -> Result<(), Stop> {
        if self.node_dispatch(&nodes, route, args, rd).await? {
            return Ok(());
        }
        let refused = match (route, self.spec.special) {
            (Route::Local(Local::Client), _) if !self.answers_client_here(args) => {
                Some("CLIENT subcommands that reach Redis")
            }
            (Route::Local(local), special) => {
                if special == Special::Reset {
                    self.me.reset();
                }
                return self.answer_local(local, args).await;
            }
            (_, Special::Select) => {
                self.output.reply(reply::error(SELECT_REFUSED));
                return Ok(());
            }
            (_, Special::Tracking) => Some("client-side tracking through the proxy"),
            // Malformed: the node's own error (`node_tx.rs` took the well-formed ones).
            (Route::Shared | Route::Transient, _) => None,
            (Route::Relay, _) => Some("commands whose replies are relayed (MONITOR, CLIENT REPLY)"),
            _ => Some("commands that keep connection state for the rest of the session"),
        };
        if let Some(why) = refused {
            self.not_yet(args, why);
            return Ok(());
        }
        match split::plan(self.spec, args) {
            Plan::Slot(slot) => {
                // A cacheable read goes where its miss should (a replica, with read_from).
                let node = match self.cache_use(args) {
                    CacheUse::Read | CacheUse::MultiRead => nodes.reader_for_slot(slot),
                    _ => nodes.for_slot(slot),
                };
                match node {
                    Some(node) => self.through_node(&nodes, node, Some(slot), args).await,
                    None => self.output.reply(reply::error(SLOT_UNSERVED)),
                }
            }
            Plan::Split(split) => {
                let split = match split.kind {
                    SplitKind::Mget => match self.cached_split_mget(&nodes, split, args).await {
                        Some(uncached) => uncached,
                        None => return Ok(()),
                    },
                    _ => split,
                };
                let after = self.before_parts(args).await;
                let sent = split
                    .parts
                    .iter()
                    .map(|p| {
                        let bytes = self.encode(&p.args);
                        send::send(
                            &nodes,
                            bytes,
                            Some(p.slot),
                            None,
                            (self.proto, self.who.as_ref()),
                        )
                    })
                    .collect();
                self.queue_parts(sent, Join::Split(split), after);
            }
            Plan::Keyless(keyless) => self.keyless(&nodes, keyless, args).await,
            Plan::Refuse(msg) => self.output.reply(reply::error(msg)),
        }
        Ok(())
    }

    async fn keyless(&mut self, nodes: &Arc<Nodes>, keyless: Keyless, args: &[Bytes]) {
        match keyless {
            Keyless::Local => self.answer_ping(args),
            Keyless::AnyNode => match nodes.any() {
                Some(node) => self.through_node(nodes, node, None, args).await,
                None => self.output.reply(reply::error(SLOT_UNSERVED)),
            },
            Keyless::ChannelSlot => match split::channel_slot(self.spec, args) {
                Ok(Some(slot)) => match nodes.for_slot(slot) {
                    Some(node) => self.through_node(nodes, node, Some(slot), args).await,
                    None => self.output.reply(reply::error(SLOT_UNSERVED)),
                },
                Ok(None) => Box::pin(self.keyless(nodes, Keyless::AnyNode, args)).await,
                Err(msg) => self.output.reply(reply::error(msg)),
            },
            // Replicas have no pools: `AllNodes` commands reach the masters only.
            Keyless::Masters(merge) | Keyless::AllNodes(merge) => {
                let after = self.before_parts(args).await;
                let bytes = self.wire(args);
                let sent = nodes
                    .masters()
                    .into_iter()
                    .map(|node| {
                        send::send(
                            nodes,
                            bytes.clone(),
                            None,
                            Some(node),
                            (self.proto, self.who.as_ref()),
                        )
                    })
                    .collect();
                self.queue_parts(sent, Join::Fanout(merge), after);
            }
            Keyless::Scan => self.scan(nodes, args).await,
            Keyless::Refuse(msg) => self.output.reply(reply::error(msg)),
            Keyless::NotYet(why) => self.not_yet(args, why),
        }
    }

    /// `SCAN cursor [...]`: the master the cursor names, asked with its own cursor; the reply's
    /// cursor made the client's (`cluster::scan`).
    async fn scan(&mut self, nodes: &Arc<Nodes>, args: &[Bytes]) {
        let masters = nodes.masters();
        let (place, cursor) = match scan::node_cursor(&args[1], masters.len()) {
            Ok(at) => at,
            Err(msg) => return self.output.reply(reply::error(msg)),
        };
        let mut asked = args.to_vec();
        asked[1] = Bytes::from(cursor.to_string());
        let bytes = self.encode(&asked);
        let after = self.before_parts(args).await;
        let count = masters.len();
        let node = masters.into_iter().nth(place);
        let sent = vec![send::send(
            nodes,
            bytes,
            None,
            node,
            (self.proto, self.who.as_ref()),
        )];
        self.queue_parts(sent, Join::Scan(place, count), after);
    }

    /// The command through the session's usual path (the cache included) to `node`, its
    /// reply settled by `cluster::send` (see [`Session::queue_reply`]).
    async fn through_node(
        &mut self,
        nodes: &Arc<Nodes>,
        (addr, pool): (String, Arc<Pool>),
        slot: Option<u16>,
        args: &[Bytes],
    ) {
        let bytes = match &self.frame {
            Some(f) => f.clone(),
            None => self.encode(args),
        };
        self.target = Some(pool);
        self.again = Some(self.again_to(nodes, bytes, slot, addr));
        self.send_through_cache(args).await;
        // A hit used neither.
        self.target = None;
        self.again = None;
    }

    /// How a command sent to the node at `from` (a replica's reads may fall back to the
    /// master) is sent again when its reply asks for it (`cluster::send`).
    pub(super) fn again_to(
        &self,
        nodes: &Arc<Nodes>,
        bytes: Bytes,
        slot: Option<u16>,
        from: String,
    ) -> Again {
        Again {
            nodes: nodes.clone(),
            bytes,
            slot,
            replica: nodes.is_replica(&from),
            from,
            proto: self.proto,
            who: self.who.clone(),
        }
    }

    /// Before parts go to several nodes, on connections of their own choosing: every reply
    /// outstanding is awaited (so that no part overtakes an earlier command of the client's on
    /// another connection), and a write's keys (or the whole cache, for FLUSHALL) are
    /// invalidated as on a shared connection; returns what the reply must do then. Split MGETs
    /// are not looked up in the cache.
    async fn before_parts(&mut self, args: &[Bytes]) -> After {
        self.output.link.drained().await;
        match self.cache_use(args) {
            effect @ (CacheUse::Write | CacheUse::WriteAll) => self.write_effect(effect, args),
            _ => After::Nothing,
        }
    }

    /// Queues the reply merged from parts sent; the next command waits for it before going to
    /// a node (no session connection holds the parts).
    pub(super) fn queue_parts(&mut self, sent: Vec<send::Sent>, join: Join, after: After) {
        self.stamp.sent_upstream();
        self.output.link.dispatched();
        self.conn = None;
        let rx = send::parts(sent, join, self.output.out.meter());
        self.queue_reply(rx, after);
    }

    /// `PING [msg]` and `ECHO msg`, answered by the proxy.
    fn answer_ping(&mut self, args: &[Bytes]) {
        self.stamp.mark(Outcome::Local);
        let is_echo = args[0].eq_ignore_ascii_case(b"ECHO");
        let answer = match (is_echo, args.get(1)) {
            (false, None) => reply::simple("PONG"),
            (_, Some(msg)) if args.len() == 2 => reply::bulk(msg),
            _ => reply::error(&format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&args[0]).to_lowercase()
            )),
        };
        self.output.reply(answer);
    }

    /// A clear refusal of what cluster mode does not do yet.
    fn not_yet(&mut self, args: &[Bytes], why: &str) {
        let refusal = self.not_yet_reply(args, why);
        self.output.reply(refusal);
    }

    pub(super) fn not_yet_reply(&self, args: &[Bytes], why: &str) -> Bytes {
        let name = String::from_utf8_lossy(&args[0]).to_uppercase();
        reply::error(&format!(
            "ERR {name} is not supported by nearcache in cluster mode yet ({why})"
        ))
    }
}
