//! What Redis's users are now, as far as the proxy needs to know: whether a client that never
//! authenticates may act (Redis's `default` user is on and `nopass`), whether any ACL changed
//! (a digest of `ACL LIST`), and which users exist. Checked every `acl_check_interval`, and at
//! once when asked ([`AclView::poke`]: an `ACL` or `CONFIG` command went through the proxy).
//!
//! Owns the check: `ACL LIST` on one of the pool's shared connections (no connection of its
//! own, so Redis sees no more connections than before), whose `default` line says whether new
//! clients may act without a password. At start (no shared connection up yet), or if the
//! pool's user may not read it, a short-lived connection asks `ACL LIST` unauthenticated (a
//! new client's view: a connection's authentication is fixed when it connects; `-NOAUTH` or
//! not), and again after an `AUTH` as the pool's user when it has a password. On a change it tells the cache
//! ([`super::TrackingSink::acl_changed`]) and revokes the identities of deleted users. Never
//! logs, keeps or shows `ACL LIST` itself (it holds password hashes): only a digest and the
//! user names.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::connect::ask_anonymously;
use super::env::Env;
use super::identity::Identities;
use super::shared::SharedConns;

/// The proxy's knowledge of Redis's users, read by every session.
#[derive(Debug, Default)]
pub struct AclView {
    /// A new, unauthenticated client may run commands (the `default` user is on and nopass).
    default_nopass: AtomicBool,
    /// A check has answered at least once (until then, whether clients must authenticate is
    /// not known).
    known: AtomicBool,
    /// The pool's user may read `ACL LIST`: ACL changes are seen, and users' partitions of
    /// the cache can be trusted.
    readable: AtomicBool,
    /// Why the last check could not reach Redis, while no check has answered: what a client
    /// refused for want of an answer is told.
    unreachable: std::sync::Mutex<Option<String>>,
    poke: Notify,
}

impl AclView {
    /// Whether a client that has not authenticated acts as the `default` user.
    pub fn default_nopass(&self) -> bool {
        self.default_nopass.load(Ordering::Acquire)
    }

    /// Whether a check has answered yet.
    pub fn known(&self) -> bool {
        self.known.load(Ordering::Acquire)
    }

    /// Why Redis could not be asked, if the last check failed to reach it.
    pub fn unreachable(&self) -> Option<String> {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether ACL changes are seen (the pool's user may run `ACL LIST`).
    pub fn readable(&self) -> bool {
        self.readable.load(Ordering::Acquire)
    }

    /// Checks again now (a command that may change users or passwords went through).
    pub fn poke(&self) {
        self.poke.notify_one();
    }
}

/// What one check found.
struct Seen {
    nopass: Option<bool>,
    /// Why Redis could not be reached.
    failure: Option<String>,
    /// Digest of `ACL LIST` and the user names, if the pool's user may read it.
    list: Option<(u64, Vec<String>)>,
}

/// Runs the first check, then keeps checking every `every` until the identities are dropped.
pub(super) async fn watch(
    env: Arc<Env>,
    shared: Arc<SharedConns>,
    ids: Weak<Identities>,
    every: Duration,
) -> Arc<AclView> {
    let view = Arc::new(AclView::default());
    let first = check(&env, &shared).await;
    let mut digest = apply(&env, &view, &ids, first, None);
    let v = view.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = v.poke.notified() => {}
            }
            if ids.strong_count() == 0 {
                return;
            }
            let seen = check(&env, &shared).await;
            digest = apply(&env, &v, &ids, seen, digest);
        }
    });
    view
}

/// Records what a check found; returns the digest now.
fn apply(
    env: &Env,
    view: &AclView,
    ids: &Weak<Identities>,
    seen: Seen,
    digest: Option<u64>,
) -> Option<u64> {
    *view.unreachable.lock().unwrap_or_else(|p| p.into_inner()) = seen.failure;
    if let Some(nopass) = seen.nopass {
        view.known.store(true, Ordering::Release);
        if view.default_nopass.swap(nopass, Ordering::AcqRel) != nopass {
            info!(
                default_nopass = nopass,
                "clients that do not authenticate are now {}",
                if nopass {
                    "served as the default user"
                } else {
                    "refused (NOAUTH)"
                }
            );
        }
    }
    let Some((now, users)) = seen.list else {
        if view.readable.swap(false, Ordering::AcqRel) || digest.is_none() {
            warn!(
                user = env.settings.username.as_deref().unwrap_or("default"),
                "ACL LIST could not be read as the upstream user (refused, or Redis unreachable): \
                 ACL changes made on Redis are not seen, so only the proxy's own user's reads \
                 are cached until it can be (give the user +acl|list)"
            );
        }
        return digest;
    };
    view.readable.store(true, Ordering::Release);
    if digest.is_some_and(|d| d != now) {
        info!("Redis's ACL changed: cached replies dropped");
        if let Some(t) = &env.tracking {
            t.sink.acl_changed();
        }
    }
    if let Some(ids) = ids.upgrade() {
        ids.retain_users(&users);
    }
    Some(now)
}

/// One check: `ACL LIST` as the pool's user, on a shared connection that is up; when none is
/// (at start, while they connect) or it is refused, on a connection of its own: `ACL LIST` as
/// a new client, then `AUTH` as the pool's user and `ACL LIST` again when it has a password.
async fn check(env: &Env, shared: &SharedConns) -> Seen {
    let conn = shared.pick(2);
    if conn.is_up() {
        if let Ok(Ok(reply)) = conn.call(encode(&["ACL", "LIST"])).await {
            if let Some((digest, users, nopass)) = acl_list(&reply) {
                return Seen {
                    nopass: Some(nopass),
                    failure: None,
                    list: Some((digest, users)),
                };
            }
        }
    }
    // `ACL LIST` first as a new client: its answer tells whether clients must authenticate,
    // and as an admin command it is not shown to MONITOR (a PING would be, among a test's or
    // an operator's own commands).
    let cfg = &env.settings;
    let mut cmds = vec![encode(&["ACL", "LIST"])];
    if let Some(pass) = &cfg.password {
        let user = cfg.username.as_deref().unwrap_or("default");
        cmds.push(encode(&["AUTH", user, pass]));
        cmds.push(encode(&["ACL", "LIST"]));
    }
    let replies = match ask_anonymously(cfg, &cmds).await {
        Ok(replies) => replies,
        Err(e) => {
            return Seen {
                nopass: None,
                failure: Some(e.to_string().replace(['\r', '\n'], " ")),
                list: None,
            }
        }
    };
    let listed = replies.last().and_then(acl_list);
    Seen {
        nopass: replies.first().and_then(|r| answer_means_nopass(r)),
        failure: None,
        list: listed.map(|(digest, users, _)| (digest, users)),
    }
}

/// What a new client's first command's answer says of the default user: answered (or refused
/// for want of a permission), it needs no password; `-NOAUTH`, it does. Any other error
/// (`-BUSY` while a script runs, `-LOADING`) says neither, and what was known stays.
fn answer_means_nopass(reply: &[u8]) -> Option<bool> {
    if reply.starts_with(b"-NOAUTH") {
        Some(false)
    } else if reply.starts_with(b"-NOPERM") || !matches!(reply.first(), Some(b'-' | b'!')) {
        Some(true)
    } else {
        None
    }
}

fn encode(args: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    resp::encode_command(args, &mut out);
    out.freeze()
}

/// The digest, user names and whether `default` is on and `nopass`, of an `ACL LIST` reply
/// (`user NAME on ...` lines); `None` for an error.
fn acl_list(reply: &Bytes) -> Option<(u64, Vec<String>, bool)> {
    if reply.first() != Some(&b'*') {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    reply.hash(&mut hasher);
    let (mut users, mut nopass) = (Vec::new(), false);
    for line in reply.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"user ") else {
            continue;
        };
        let mut words = rest.trim_ascii_end().split(|&b| b == b' ');
        let Some(name) = words.next() else {
            continue;
        };
        if name == b"default" {
            let words: Vec<&[u8]> = words.collect();
            nopass = words.contains(&&b"on"[..]) && words.contains(&&b"nopass"[..]);
        }
        users.push(String::from_utf8_lossy(name).into_owned());
    }
    Some((hasher.finish(), users, nopass))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_list_names_the_users_and_refuses_errors() {
        let reply = Bytes::from_static(
            b"*2\r\n$30\r\nuser alice on #abc ~app:* +@all\r\n$28\r\nuser default on nopass +@all\r\n",
        );
        let (_, users, nopass) = acl_list(&reply).unwrap();
        assert_eq!(users, ["alice", "default"]);
        assert!(nopass);
        let off = Bytes::from_static(b"*1\r\n$28\r\nuser default off nopass +@all\r\n");
        assert!(!acl_list(&off).unwrap().2);
        let pass = Bytes::from_static(b"*1\r\n$26\r\nuser default on #ab +@all\r\n");
        assert!(!acl_list(&pass).unwrap().2);
        assert!(acl_list(&Bytes::from_static(b"-NOPERM no\r\n")).is_none());
    }

    #[test]
    fn only_noauth_says_a_password_is_needed() {
        assert_eq!(answer_means_nopass(b"*0\r\n"), Some(true));
        let noperm = b"-NOPERM this user has no permissions to run the 'acl|list' command\r\n";
        assert_eq!(answer_means_nopass(noperm), Some(true));
        let noauth = b"-NOAUTH Authentication required.\r\n";
        assert_eq!(answer_means_nopass(noauth), Some(false));
        let busy = b"-BUSY Redis is busy running a script.\r\n";
        assert_eq!(answer_means_nopass(busy), None);
        assert_eq!(answer_means_nopass(b"-LOADING Redis is loading\r\n"), None);
    }
}
