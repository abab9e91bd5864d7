//! `CLIENT` subcommands about the proxy's own clients, answered from its client table
//! ([`crate::clients`]): `ID`, `INFO`, `LIST`, `KILL`, `SETNAME`, `GETNAME`, `NO-EVICT`,
//! `GETREDIR`, `TRACKINGINFO`; `UNBLOCK` takes a proxy id and goes to Redis with the id of that
//! client's dedicated connection. Also what the session tells the table about `CLIENT
//! TRACKING`, whose `REDIRECT` names a proxy client and goes to Redis as that client's
//! dedicated connection.
//!
//! Never blocks: the table's locks are held only to copy a field.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{Mode, Session, Stop};
use crate::clients::{self, ClientType, KillFilter, TrackingView};
use crate::obs::stats::{Outcome, StampExt as _};
use crate::reply::{self, bulk, integer, null, verbatim, After};

/// What the session does with a `CLIENT` command answered here.
enum Answer {
    Reply(Bytes),
    /// Reply, then close this client (it killed itself).
    ReplyAndClose(Bytes),
    /// Send these arguments to Redis instead.
    Forward(Vec<Bytes>),
}

impl Session {
    /// Whether a client-table command is answered here. Not inside MULTI, where Redis queues
    /// it; and, on a relayed connection, only `GETREDIR` and `TRACKINGINFO` (whose ids must be
    /// the proxy's): a relayed session's replies are not matched to its commands, so any other
    /// answer of the proxy's could overtake the reply to a command sent before it. There Redis
    /// answers, about the client's dedicated connection (`SETNAME` is also noted here).
    pub(super) fn answers_client_here(&mut self, args: &[Bytes]) -> bool {
        if self.tx.in_multi() {
            return false;
        }
        if self.mode != Mode::Relay {
            return true;
        }
        match self.spec.name {
            "GETREDIR" | "TRACKINGINFO" => true,
            "SETNAME" => {
                if let Some(name) = args.get(2) {
                    self.me.set_name(name.clone());
                }
                false
            }
            _ => false,
        }
    }

    pub(super) async fn answer_client(&mut self, args: &[Bytes]) -> Result<(), Stop> {
        if self.spec.name == "ID" && self.mode != Mode::Shared {
            // A client that asks for its id may be about to be named as a REDIRECT target:
            // the id of its dedicated connection is then needed at once.
            if let Some(conn) = &self.conn {
                conn.fetch_client_id().await;
            }
        }
        let answer = match self.spec.redis.map(|r| r.arity) {
            Some(arity) if !arity_ok(arity, args.len()) => Answer::Reply(reply::error(&format!(
                "ERR wrong number of arguments for '{}' command",
                self.spec.full_name().to_ascii_lowercase()
            ))),
            _ => self.client_answer(args),
        };
        match answer {
            Answer::Reply(bytes) => {
                self.stamp.mark(Outcome::Local);
                self.output.reply(bytes);
                Ok(())
            }
            Answer::ReplyAndClose(bytes) => {
                self.stamp.mark(Outcome::Local);
                self.output.reply(bytes);
                Err(Stop::Closing)
            }
            Answer::Forward(args) => {
                self.frame = None;
                self.send_shared(&args, After::Nothing).await;
                Ok(())
            }
        }
    }

    fn client_answer(&mut self, args: &[Bytes]) -> Answer {
        let registry = self.me.registry().clone();
        let rest = &args[2..];
        let now = Instant::now();
        let qbuf = self.frame.as_ref().map_or(0, Bytes::len);
        let text = |s: String| Answer::Reply(verbatim(self.proto, &s));
        match self.spec.name {
            "ID" => Answer::Reply(integer(self.me.id as i64)),
            "INFO" => text(clients::line(&self.me, &registry, qbuf, now) + "\n"),
            "LIST" => {
                let filter = match list_filter(rest) {
                    Ok(f) => f,
                    Err(e) => return Answer::Reply(reply::error(&e)),
                };
                let mut out = String::new();
                for c in registry.all() {
                    let keep = match &filter {
                        clients::ListFilter::All => true,
                        clients::ListFilter::Type(t) => ClientType::of(&c) == *t,
                        clients::ListFilter::Ids(ids) => ids.contains(&c.id),
                    };
                    if keep {
                        let q = if c.id == self.me.id { qbuf } else { 0 };
                        out.push_str(&clients::line(&c, &registry, q, now));
                        out.push('\n');
                    }
                }
                text(out)
            }
            "KILL" => self.kill(rest, &registry),
            "SETNAME" => {
                let name = &rest[0];
                if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                    return Answer::Reply(reply::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                self.me.set_name(name.clone());
                Answer::Reply(reply::simple("OK"))
            }
            "GETNAME" => {
                let name = self.me.name();
                Answer::Reply(if name.is_empty() {
                    null(self.proto)
                } else {
                    bulk(&name)
                })
            }
            "NO-EVICT" => {
                let on = &rest[0];
                if on.eq_ignore_ascii_case(b"on") || on.eq_ignore_ascii_case(b"off") {
                    self.me.set_no_evict(on.eq_ignore_ascii_case(b"on"));
                    Answer::Reply(reply::simple("OK"))
                } else {
                    Answer::Reply(reply::error("ERR syntax error"))
                }
            }
            "GETREDIR" => Answer::Reply(integer(self.me.tracking().redirect_field())),
            "TRACKINGINFO" => {
                Answer::Reply(tracking_info(self.proto, &self.me.tracking(), &registry))
            }
            // "UNBLOCK"
            _ => {
                // Redis checks the arguments: an id that is no number, a wrong reason. One that
                // names no blocked client of ours goes as 0, which names none of Redis's either.
                let mut forward = args.to_vec();
                if let Some(id) = std::str::from_utf8(&rest[0])
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    let upstream = registry.get(id).map_or(-1, |c| c.upstream_id());
                    forward[2] = Bytes::from(upstream.max(0).to_string());
                }
                Answer::Forward(forward)
            }
        }
    }

    fn kill(&mut self, rest: &[Bytes], registry: &clients::Registry) -> Answer {
        let filter = match KillFilter::parse(rest, registry) {
            Ok(f) => f,
            Err(e) => return Answer::Reply(reply::error(&e)),
        };
        let mut killed = 0i64;
        let mut me_too = false;
        for c in registry.all() {
            if filter.matches(&c, self.me.id) {
                killed += 1;
                if c.id == self.me.id {
                    me_too = true;
                } else {
                    registry.kill(c.id);
                }
            }
        }
        let answer = if filter.old_form {
            if killed == 0 {
                reply::error("ERR No such client")
            } else {
                reply::simple("OK")
            }
        } else {
            integer(killed)
        };
        if me_too {
            Answer::ReplyAndClose(answer)
        } else {
            Answer::Reply(answer)
        }
    }

    /// `CLIENT TRACKING`'s arguments as they go to Redis: a `REDIRECT` to a proxy client
    /// becomes one to that client's dedicated connection. The table's view is updated. `Err`
    /// is the reply when the target cannot be redirected to.
    pub(super) fn tracking_args(&mut self, args: &[Bytes]) -> Result<Option<Vec<Bytes>>, Bytes> {
        let options = &args[2.min(args.len())..];
        let mut forward = None;
        let mut target = None;
        if let Some((i, id)) = clients::redirect_arg(options) {
            let registry = self.me.registry();
            let Some(c) = parse_id(id).and_then(|id| registry.get(id)) else {
                return Err(reply::error(
                    "ERR The client ID you want redirect to does not exist",
                ));
            };
            if c.upstream_id() < 0 {
                return Err(reply::error(
                    "ERR nearcache: a client to redirect invalidations to must hold a dedicated \
                     connection (be subscribed to __redis__:invalidate first)",
                ));
            }
            target = Some(c.id);
            let mut v = args.to_vec();
            v[2 + i] = Bytes::from(c.upstream_id().to_string());
            forward = Some(v);
        }
        let view = self.me.tracking().after(options, target);
        self.me.set_tracking(view);
        Ok(forward)
    }

    /// `CLIENT CACHING yes|no`: noted for `TRACKINGINFO` until the next command.
    pub(super) fn note_caching(&mut self, args: &[Bytes]) {
        let mut view = self.me.tracking();
        view.caching = args.get(2).map(|a| a.eq_ignore_ascii_case(b"yes"));
        self.me.set_tracking(view);
        self.caching_noted = true;
    }

    /// The command after `CLIENT CACHING` clears it, as in Redis.
    pub(super) fn clear_caching(&mut self) {
        self.caching_noted = false;
        let mut view = self.me.tracking();
        view.caching = None;
        self.me.set_tracking(view);
    }
}

fn arity_ok(arity: i16, n: usize) -> bool {
    let n = n as i64;
    let a = i64::from(arity);
    if a >= 0 {
        n == a
    } else {
        n >= -a
    }
}

fn parse_id(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn list_filter(rest: &[Bytes]) -> Result<clients::ListFilter, String> {
    match rest {
        [] => Ok(clients::ListFilter::All),
        [opt, t] if opt.eq_ignore_ascii_case(b"type") => ClientType::parse(t)
            .map(clients::ListFilter::Type)
            .ok_or_else(|| format!("ERR Unknown client type '{}'", String::from_utf8_lossy(t))),
        [opt, ids @ ..] if opt.eq_ignore_ascii_case(b"id") && !ids.is_empty() => ids
            .iter()
            .map(|id| {
                parse_id(id)
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| "ERR Invalid client ID".to_string())
            })
            .collect::<Result<_, _>>()
            .map(clients::ListFilter::Ids),
        _ => Err("ERR syntax error".into()),
    }
}

/// `CLIENT TRACKINGINFO`: a map of `flags`, `redirect`, `prefixes` (an array of six in RESP2).
fn tracking_info(proto: u8, view: &TrackingView, registry: &clients::Registry) -> Bytes {
    let mut out = BytesMut::new();
    let flags = view.flags(registry.redirect_broken(view));
    if proto == 3 {
        resp::header(&mut out, b'%', 3);
    } else {
        resp::header(&mut out, b'*', 6);
    }
    out.put_slice(&bulk(b"flags"));
    resp::header(&mut out, if proto == 3 { b'~' } else { b'*' }, flags.len());
    for f in flags {
        out.put_slice(&bulk(f.as_bytes()));
    }
    out.put_slice(&bulk(b"redirect"));
    out.put_slice(&integer(view.redirect_field()));
    out.put_slice(&bulk(b"prefixes"));
    resp::header(&mut out, b'*', view.prefixes.len());
    for p in &view.prefixes {
        out.put_slice(&bulk(p));
    }
    out.freeze()
}
