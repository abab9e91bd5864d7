//! A session's state, and the vocabulary its parts share: the server context it serves
//! under, where its commands go ([`Mode`]), the command being handled and when it arrived.
//!
//! Owns the [`Session`] struct and the small helpers every phase uses (encoding a command,
//! queueing its reply). Never runs a phase itself: those are `mod.rs`, `mode.rs` and
//! `cached.rs`, which import from here and never the other way round.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::output::Output;
use super::tx::{NodeTx, Tx};
use super::writes::JoinedReads;
use crate::cachelayer::CacheLayer;
use crate::command::memo::NameMemo;
use crate::command::{CommandSpec, Special};
use crate::config::live::ClientLimits;
use crate::control::Control;
use crate::obs::metrics::Metrics;
use crate::obs::stats::Stamp;
use crate::reply::{After, ReplyRx};
use crate::upstream::{ConnHandle, Pool};

/// Everything a session needs from the server.
pub struct Context {
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    pub limits: resp::Limits,
    /// Limits on each client, changed by `control`.
    pub clients: Arc<ClientLimits>,
    /// The configuration in force (`NEARCACHE CONFIG`).
    pub control: Arc<Control>,
    /// The tracking cache; `None` when caching is off.
    pub cache: Option<Arc<CacheLayer>>,
    /// Raised when the server stops: sessions stop reading and deliver what is in flight.
    pub stop: crate::stop::StopSignal,
    /// Every client connected (`CLIENT LIST`).
    pub registry: Arc<crate::clients::Registry>,
    /// How clients authenticate (`session/auth.rs`).
    pub gate: AuthGate,
    /// With `cluster = true`: the cluster's nodes, each with its own pool (`pool` is then the
    /// first seed's master's, for what is not routed by slot). `None` for one Redis.
    pub cluster: Option<Arc<crate::cluster::nodes::Nodes>>,
}

/// How clients authenticate, as `client_auth` says.
#[derive(Clone)]
pub enum AuthGate {
    /// Nobody does: every client acts as the pool's user.
    None,
    /// With this password, to the proxy; clients then act as the pool's user.
    Password(Arc<str>),
    /// As Redis would: checked upstream, and each client acts as its own ACL user.
    Passthrough(Arc<crate::upstream::AclView>),
}

impl std::fmt::Debug for AuthGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthGate::None => "none",
            AuthGate::Password(_) => "password",
            AuthGate::Passthrough(_) => "passthrough",
        })
    }
}

/// Why the reader stopped.
pub(super) enum Stop {
    /// QUIT, or a dedicated connection died: the writer finishes and closes.
    Closing,
    /// `SYNC`/`PSYNC` (this command, as sent upstream): the session becomes a byte relay.
    Replicate(Bytes),
}

/// When the commands being handled arrived.
pub(super) struct Arrival {
    /// When the last read returned: the arrival time of every command it brought.
    pub(super) batch_at: Instant,
    /// The same, noted only while a trace capture runs.
    pub(super) read_at: Option<Instant>,
    /// When the replies answered from the proxy in this batch were at hand (read once).
    pub(super) answered_at: Option<Instant>,
}

pub(super) struct Session {
    pub(super) ctx: Arc<Context>,
    pub(super) output: Output,
    /// The protocol the client speaks (and the connections it uses).
    pub(super) proto: u8,
    pub(super) mode: Mode,
    /// The connection the in-flight requests went to.
    pub(super) conn: Option<ConnHandle>,
    pub(super) tx: Tx,
    pub(super) names: NameMemo,
    /// The command being handled.
    pub(super) spec: &'static CommandSpec,
    /// Its figures and sampled trace (see `obs`).
    pub(super) stamp: Option<Stamp>,
    /// Its bytes as the client sent them (multibulk only), forwarded without a copy.
    pub(super) frame: Option<Bytes>,
    pub(super) arrival: Arrival,
    /// Scratch space kept between commands: encoding, an MGET's cached elements.
    pub(super) encode_buf: BytesMut,
    pub(super) mget_items: Vec<Option<Bytes>>,
    /// This client's entry in the client table.
    pub(super) me: crate::clients::Registered,
    /// `CLIENT CACHING` was the last command: the next one clears it.
    pub(super) caching_noted: bool,
    /// What makes Redis send this client frames it did not ask for (relay mode's reasons).
    pub(super) unasked: Unasked,
    /// Keys whose misses joined another session's read still in flight (`writes.rs`).
    pub(super) joined: JoinedReads,
    /// The ACL identity the session acts as upstream; `None` until it authenticates
    /// (`auth.rs`).
    pub(super) who: Option<Arc<crate::upstream::Identity>>,
    /// Cluster mode: the pool of the node the command being handled goes to.
    pub(super) target: Option<Arc<Pool>>,
    /// Cluster mode: the command being handled as it can be sent again, so that its reply is
    /// settled (redirects followed) before the client has it.
    pub(super) again: Option<crate::cluster::send::Again>,
    /// The pool the session's dedicated connection came from, when not `ctx.pool` (cluster
    /// mode: its node's).
    pub(super) home: Option<Arc<Pool>>,
    /// Cluster mode: the transaction as the proxy holds it until its node is known.
    pub(super) node_tx: NodeTx,
}

/// Why Redis may send a client frames that answer no command of its own: while none holds,
/// a relayed session can go back to matching replies to commands.
#[derive(Debug, Default)]
pub(super) struct Unasked {
    /// Subscribed to channels, patterns, shard channels (until unsubscribed from all).
    pub(super) subscribed: [bool; 3],
    pub(super) monitor: bool,
    /// `CLIENT REPLY OFF|SKIP`: replies are missing.
    pub(super) reply_off: bool,
    /// Leaving relay mode was tried and Redis did not confirm it: not tried again before
    /// `RESET`.
    pub(super) stuck: bool,
}

impl Unasked {
    /// Whether anything may come unasked, for a client speaking `proto` whose tracking is
    /// `tracking_on` (in RESP3, invalidations are pushes on its own connection).
    pub(super) fn any(&self, proto: u8, tracking_on: impl FnOnce() -> bool) -> bool {
        self.subscribed.iter().any(|&s| s)
            || self.monitor
            || self.reply_off
            || self.stuck
            || (proto == 3 && tracking_on())
    }
}

/// An [`After::Patch`] with no other effect.
pub(super) fn patch(f: impl FnOnce(Option<Bytes>) -> Option<Bytes> + Send + 'static) -> After {
    After::Patch(Box::new(After::Nothing), Box::new(f))
}

/// Where the session's commands currently go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Multiplexed shared connections.
    Shared,
    /// A dedicated connection, given back when the transaction or blocking call is over; one a
    /// RESET logged out is closed before the next command instead.
    Transient,
    /// A dedicated connection kept until the client leaves.
    Session,
    /// A dedicated connection whose every frame is relayed to the client.
    Relay,
}

impl Session {
    /// Queues the reply to the command being handled, with its stamp.
    /// In cluster mode the reply is settled (its redirects followed) by the writer, when it
    /// comes: see [`crate::reply::Settle`].
    pub(super) fn queue_reply(&mut self, rx: ReplyRx, after: After) {
        let settle = self
            .again
            .take()
            .map(|again| Box::new(again) as Box<dyn crate::reply::Settle>);
        let stamp = self.stamp.take();
        self.output.queue_reply(rx, after, stamp, settle);
    }

    /// The command being handled, to send upstream: as the client sent it when it can be,
    /// sparing a copy (a large SET's value is not copied again).
    pub(super) fn wire(&mut self, args: &[Bytes]) -> Bytes {
        self.frame.take().unwrap_or_else(|| self.encode(args))
    }

    /// What a reply that changes nothing cached still does: `SELECT` moves the client to its
    /// db, `INFO` tells the proxy's clients, `HELLO` gives the client's id (as `CLIENT ID`
    /// does, not the upstream connection's).
    pub(super) fn neutral_after(&self, args: &[Bytes]) -> After {
        match self.spec.special {
            Special::Select => {
                let Some(db) = args
                    .get(1)
                    .and_then(|a| std::str::from_utf8(a).ok()?.parse().ok())
                else {
                    return After::Nothing;
                };
                let me = self.me.client();
                patch(move |reply| {
                    if reply
                        .as_ref()
                        .is_some_and(|r| !matches!(r.first(), Some(b'-' | b'!')))
                    {
                        me.set_db(db);
                    }
                    reply
                })
            }
            Special::Info => {
                let (registry, max) = (self.me.registry().clone(), self.ctx.clients.max_clients());
                let cluster = self.ctx.cluster.is_some();
                patch(move |reply| {
                    let reply = reply?;
                    let reply =
                        crate::clients::info_clients(&reply, &registry, max).unwrap_or(reply);
                    Some(match cluster {
                        true => crate::cluster::merge::info_as_one_node(reply),
                        false => reply,
                    })
                })
            }
            Special::Hello => {
                let id = self.me.id;
                patch(move |reply| Some(hello_with_id(reply?, id)))
            }
            _ => After::Nothing,
        }
    }

    pub(super) fn encode(&mut self, args: &[Bytes]) -> Bytes {
        self.encode_buf.reserve(resp::encode_command_len(args));
        resp::encode_command(args, &mut self.encode_buf);
        self.encode_buf.split().freeze()
    }
}

/// The name `HELLO ... SETNAME name` gives the client.
pub(super) fn hello_setname(args: &[Bytes]) -> Option<&Bytes> {
    let i = args
        .iter()
        .position(|a| a.eq_ignore_ascii_case(b"SETNAME"))?;
    args.get(i + 1)
}

/// A `HELLO` reply (RESP2 array or RESP3 map, as Redis writes it) with its `id` field's value
/// replaced by `id`; any other reply as it is.
pub(super) fn hello_with_id(reply: Bytes, id: u64) -> Bytes {
    const KEY: &[u8] = b"$2\r\nid\r\n:";
    if !matches!(reply.first(), Some(b'*' | b'%')) {
        return reply;
    }
    let Some(at) = reply.windows(KEY.len()).position(|w| w == KEY) else {
        return reply;
    };
    let start = at + KEY.len();
    let Some(len) = reply[start..].iter().position(|&b| b == b'\r') else {
        return reply;
    };
    let mut out = Vec::with_capacity(reply.len() + 20);
    out.extend_from_slice(&reply[..start]);
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(&reply[start + len..]);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_replies_carry_the_given_id() {
        let resp2 = Bytes::from_static(
            b"*6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:6\r\n",
        );
        assert_eq!(
            &hello_with_id(resp2, 1234)[..],
            b"*6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:1234\r\n"
        );
        let resp3 = Bytes::from_static(b"%2\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:98765\r\n");
        assert_eq!(
            &hello_with_id(resp3, 7)[..],
            b"%2\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:7\r\n"
        );
        let err = Bytes::from_static(b"-NOPROTO unsupported protocol version\r\n");
        assert_eq!(hello_with_id(err.clone(), 7), err);
    }
}
