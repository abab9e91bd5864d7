//! Client authentication, before a command is routed: who the session acts as upstream
//! ([`Session::who`]), `AUTH` and `HELLO ... AUTH` checked as `client_auth` says, and Redis's
//! own `-NOAUTH` for everything else until then (docs/security.md).
//!
//! - `passthrough`: `AUTH` is checked by Redis, on a connection of its own with the client's own
//!   words, and its reply passed on as it is; on success the session acts as that ACL user (its
//!   identity's shared connections, its partition of the cache). A client that never
//!   authenticates acts as `default` while Redis lets new clients do so (`AclView`).
//! - `password`: the proxy checks the password itself and acts as its upstream user.
//! - `none`: nothing is checked; `AUTH` goes to Redis as any stateful command.
//!
//! Owns the gate and the identity changes. Never logs a password, and never sends a client's
//! password in `password` mode anywhere.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use super::state::{hello_setname, hello_with_id, patch, AuthGate, Mode, Session, Stop};
use crate::command::{redis::flag, Special};
use crate::obs::stats::{Outcome, StampExt as _};
use crate::reply::{self, UpstreamError};
use crate::upstream::{ConnHandle, Identity};

/// Redis 7.0's replies, byte for byte (`tests/auth.rs` compares them with a real server).
pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already \
    authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate \
    the client and select the RESP protocol version at the same time";

/// What the gate did with a command.
pub(super) enum Gated {
    /// Answered here.
    Answered,
    /// Goes on, as the client sent it.
    Pass,
    /// Goes on with these words instead (`HELLO` with its `AUTH` taken out, in password mode).
    Rewritten(Vec<Bytes>),
}

/// The user and password of an `AUTH [user] pass` or `HELLO v AUTH user pass`; `None` if the
/// command carries no credentials (or not in a form Redis accepts: Redis says why).
fn credentials(special: Special, args: &[Bytes]) -> Option<(Bytes, Bytes, usize)> {
    if special == Special::Hello {
        let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"AUTH"))?;
        let (user, pass) = (args.get(at + 1)?, args.get(at + 2)?);
        return Some((user.clone(), pass.clone(), at));
    }
    match args.len() {
        2 => Some((Bytes::from_static(b"default"), args[1].clone(), 0)),
        3 => Some((args[1].clone(), args[2].clone(), 0)),
        _ => None,
    }
}

impl Session {
    /// Whom a new client acts as: the proxy's user when nobody authenticates, `default` in
    /// passthrough mode while Redis serves clients that do not authenticate, else nobody yet.
    pub(super) fn first_identity(&self) -> Option<Arc<Identity>> {
        match &self.ctx.gate {
            AuthGate::None => Some(self.ctx.pool.identities().own()),
            AuthGate::Password(_) => None,
            AuthGate::Passthrough(view) => view
                .default_nopass()
                .then(|| self.ctx.pool.identities().get("default", None)),
        }
    }

    /// Before a command is routed: closes the session of a deleted user, answers `AUTH`, and
    /// refuses what an unauthenticated client may not run.
    pub(super) async fn gate(&mut self, args: &[Bytes]) -> Result<Gated, Stop> {
        if matches!(self.ctx.gate, AuthGate::None) {
            return Ok(Gated::Pass);
        }
        if self.who.as_ref().is_some_and(|id| id.is_revoked()) {
            // As Redis closes the clients of a user ACL DELUSER removes.
            debug!("the client's ACL user was deleted; closing the client");
            return Err(Stop::Closing);
        }
        let special = self.spec.special;
        let auth = self.spec.name == "AUTH" && self.spec.redis.is_some();
        let creds = (auth || special == Special::Hello)
            .then(|| credentials(special, args))
            .flatten();
        let password_mode = matches!(self.ctx.gate, AuthGate::Password(_));
        if self.spec.is_reset(args) {
            // RESET logs the client out, as Redis does.
            self.set_identity(self.first_identity()).await;
            return Ok(Gated::Pass);
        }
        if (auth || creds.is_some()) && (password_mode || self.mode == Mode::Shared) {
            return self.authenticate(args, creds).await;
        }
        if self.who.is_none() {
            // As in Redis, a client that has not authenticated may act as soon as the default
            // user needs no password.
            self.who = self.first_identity();
        }
        if self.who.is_some() || self.mode != Mode::Shared {
            // On a dedicated connection the client is already someone, and Redis judges.
            return Ok(Gated::Pass);
        }
        let no_auth = self
            .spec
            .redis
            .is_some_and(|r| r.flags & flag::NO_AUTH != 0);
        if no_auth && special != Special::Hello {
            return Ok(Gated::Pass);
        }
        self.stamp.mark(Outcome::Local);
        let refusal = match &self.ctx.gate {
            AuthGate::Passthrough(view) if !view.known() => match view.unreachable() {
                // Redis's own reason (refused, a failed TLS handshake), as a shared connection
                // would have given it.
                Some(why) => reply::error(&why),
                None => UpstreamError::Unavailable {
                    addr: self.ctx.pool.addr().to_string(),
                    cause: "no answer yet on whether clients must authenticate".into(),
                }
                .to_frame(),
            },
            _ if special == Special::Hello => reply::error(HELLO_NOAUTH),
            _ => reply::error(NOAUTH),
        };
        self.output.reply(refusal);
        Ok(Gated::Answered)
    }

    /// `AUTH` or `HELLO ... AUTH`: checked as the mode says; on success the session acts as
    /// the user it names.
    async fn authenticate(
        &mut self,
        args: &[Bytes],
        creds: Option<(Bytes, Bytes, usize)>,
    ) -> Result<Gated, Stop> {
        self.stamp.mark(Outcome::Local);
        let gate = self.ctx.gate.clone();
        match gate {
            AuthGate::Password(secret) => {
                let Some((user, pass, at)) = creds else {
                    let name = self.spec.name.to_ascii_lowercase();
                    let text = match self.spec.special {
                        Special::Hello => "ERR Syntax error in HELLO option 'auth'".to_string(),
                        _ => format!("ERR wrong number of arguments for '{name}' command"),
                    };
                    self.output.reply(reply::error(&text));
                    return Ok(Gated::Answered);
                };
                if &user[..] != b"default"
                    || !crate::config::values::same_secret(&pass, secret.as_bytes())
                {
                    self.output.reply(reply::error(WRONGPASS));
                    return Ok(Gated::Answered);
                }
                self.set_identity(Some(self.ctx.pool.identities().own()))
                    .await;
                if self.spec.special != Special::Hello {
                    self.output.reply(reply::simple("OK"));
                    return Ok(Gated::Answered);
                }
                // HELLO goes on without its AUTH: the protocol and name are Redis's business.
                let mut rest = args.to_vec();
                rest.drain(at..at + 3);
                self.frame = None;
                Ok(Gated::Rewritten(rest))
            }
            _ => {
                let wire = self.wire(args);
                let checked =
                    crate::upstream::ask_anonymously(self.ctx.pool.settings(), &[wire]).await;
                let reply = match checked {
                    Ok(mut replies) => replies.pop().unwrap_or_default(),
                    Err(e) => e.to_frame(),
                };
                let ok = !reply.is_empty() && !matches!(reply[0], b'-' | b'!');
                if let (true, Some((user, pass, _))) = (ok, creds) {
                    let user = String::from_utf8_lossy(&user).into_owned();
                    let pass = String::from_utf8_lossy(&pass).into_owned();
                    let id = self.ctx.pool.identities().get(&user, Some(&pass));
                    self.set_identity(Some(id)).await;
                    if let Some(v) = self.spec.hello_version(args) {
                        self.proto = v;
                        self.me.set_proto(v);
                    }
                    if let Some(name) = hello_setname(args) {
                        self.me.set_name(name.clone());
                    }
                }
                // The id the client gets is its own, not the checking connection's.
                let reply = if self.spec.special == Special::Hello {
                    hello_with_id(reply, self.me.id)
                } else {
                    reply
                };
                self.output.reply(reply);
                Ok(Gated::Answered)
            }
        }
    }

    /// Acts as `id` from the next command on. Replies still due on the old identity's
    /// connection are waited for first, so that no later command reaches Redis before them, and
    /// none goes out as the old user.
    async fn set_identity(&mut self, id: Option<Arc<Identity>>) {
        let same = match (&self.who, &id) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.output.link.drained().await;
        if self.mode == Mode::Shared {
            self.conn = None;
        }
        let user = id.as_ref().map_or("default", |i| i.user.as_str());
        self.me.client().set_user(user);
        self.who = id;
    }

    /// The cache partition of the session's reads; `None` when its reads are not cached: a
    /// user past the partition cap, or any user but the proxy's own when Redis's ACL changes
    /// cannot be seen.
    pub(super) fn cache_part(&self) -> Option<u32> {
        let id = self.who.as_ref()?;
        if id.is_pool_user() {
            return Some(0);
        }
        match &self.ctx.gate {
            AuthGate::Passthrough(view) if view.readable() => id.partition,
            _ => None,
        }
    }

    /// Whether the client may change the proxy (`NEARCACHE FLUSH`, `NEARCACHE CONFIG SET`):
    /// anyone when nobody authenticates; whoever gave the proxy's password; in passthrough, a
    /// user named in `admin_users` or one Redis lets run `CONFIG SET` (asked with
    /// `ACL DRYRUN` as the proxy's user, at each such command: they are rare). If the proxy's
    /// user may not ask, only `admin_users` are.
    pub(super) async fn may_administer(&self) -> bool {
        let id = match (&self.ctx.gate, &self.who) {
            (AuthGate::None, _) => return true,
            (AuthGate::Password(_), who) => return who.is_some(),
            (AuthGate::Passthrough(_), None) => return false,
            (AuthGate::Passthrough(_), Some(id)) => id.clone(),
        };
        let listed = self.ctx.control.config().admin_users.0.contains(&id.user);
        if listed {
            return true;
        }
        let words = [
            "ACL",
            "DRYRUN",
            id.user.as_str(),
            "CONFIG",
            "SET",
            "maxmemory",
            "0",
        ];
        let mut out = bytes::BytesMut::new();
        resp::encode_command(&words, &mut out);
        let conn = self.ctx.pool.shared(2);
        matches!(conn.call(out.freeze()).await, Ok(Ok(r)) if r.starts_with(b"+OK"))
    }

    /// A dedicated connection comes authenticated as the pool's user: one for a client acting
    /// as another user is logged in as that user first. The error reply if Redis refuses.
    pub(super) async fn login(&self, conn: &ConnHandle) -> Result<(), Bytes> {
        match self.who.as_ref().filter(|id| !id.is_pool_user()) {
            Some(id) => id.log_in(conn).await,
            None => Ok(()),
        }
    }

    /// A reply hook for a command that may have changed users or passwords: once Redis has
    /// run it, the cache is emptied (before the client has the reply, so that no read after it
    /// is served what the change forbids) and the users are checked again at once. A change made
    /// on Redis directly is only seen by the periodic check (`acl.rs`).
    pub(super) fn acl_poke(&self, args: &[Bytes]) -> Option<crate::reply::After> {
        let AuthGate::Passthrough(view) = &self.ctx.gate else {
            return None;
        };
        if !is_acl_change(args) {
            return None;
        }
        let (view, cache) = (view.clone(), self.ctx.cache.clone());
        Some(patch(move |r| {
            // Refused, nothing changed (both commands are all or nothing); no reply at all
            // (the connection lost), it may have.
            let refused = r.as_ref().is_some_and(|r| matches!(r.first(), Some(b'-')));
            if !refused {
                if let Some(cache) = cache {
                    cache.flush(crate::obs::metrics::FlushReason::AclChanged);
                }
                view.poke();
            }
            r
        }))
    }
}

/// `ACL SETUSER|DELUSER|LOAD`, or a `CONFIG SET` of a setting that changes what a user may do
/// (`requirepass`, the default user's password; `acl-pubsub-default`, new users' channels).
fn is_acl_change(args: &[Bytes]) -> bool {
    let word = |i: usize, w: &[u8]| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(w));
    if word(0, b"ACL") {
        return word(1, b"SETUSER") || word(1, b"DELUSER") || word(1, b"LOAD");
    }
    word(0, b"CONFIG")
        && word(1, b"SET")
        && args.iter().skip(2).step_by(2).any(|p| {
            p.eq_ignore_ascii_case(b"requirepass") || p.eq_ignore_ascii_case(b"acl-pubsub-default")
        })
}

#[cfg(test)]
mod tests {
    use super::is_acl_change;
    use bytes::Bytes;

    fn words(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn only_changes_of_rights_count_as_acl_changes() {
        for yes in [
            "ACL SETUSER bob on",
            "acl deluser bob",
            "ACL LOAD",
            "CONFIG SET requirepass pw",
            "config set maxmemory 1mb RequirePass pw",
            "CONFIG SET acl-pubsub-default allchannels",
        ] {
            assert!(is_acl_change(&words(yes)), "{yes}");
        }
        for no in [
            "ACL LIST",
            "ACL WHOAMI",
            "CONFIG SET maxmemory 1mb",
            "CONFIG SET maxmemory requirepass",
            "CONFIG GET requirepass",
            "SET requirepass x",
        ] {
            assert!(!is_acl_change(&words(no)), "{no}");
        }
    }
}
