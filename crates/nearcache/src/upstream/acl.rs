//! What Redis's users are now, as far as the proxy needs to know: whether a client that never
//! authenticates may act (Redis's `default` user is on and `nopass`), whether any ACL changed
//! (a digest of `ACL LIST`), and which users exist. Checked every `acl_check_interval`, and at
//! once when asked ([`AclView::poke`]: an `ACL` or `CONFIG` command went through the proxy).
//!
//! Owns the check: a short-lived connection says `PING` unauthenticated (a new client's view),
//! then, as the pool's user, `ACL LIST`. On a change it tells the cache
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

use super::connect::ask;
use super::env::Env;
use super::identity::Identities;

/// The proxy's knowledge of Redis's users, read by every session.
#[derive(Debug, Default)]
pub struct AclView {
    /// A new, unauthenticated client may run commands (the `default` user is on and nopass).
    default_nopass: AtomicBool,
    /// The pool's user may read `ACL LIST`: ACL changes are seen, and users' partitions of
    /// the cache can be trusted.
    readable: AtomicBool,
    poke: Notify,
}

impl AclView {
    /// Whether a client that has not authenticated acts as the `default` user.
    pub fn default_nopass(&self) -> bool {
        self.default_nopass.load(Ordering::Acquire)
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
    /// Digest of `ACL LIST` and the user names, if the pool's user may read it.
    list: Option<(u64, Vec<String>)>,
}

/// Runs the first check, then keeps checking every `every` until the identities are dropped.
pub(super) async fn watch(env: Arc<Env>, ids: Weak<Identities>, every: Duration) -> Arc<AclView> {
    let view = Arc::new(AclView::default());
    let first = check(&env).await;
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
            let seen = check(&env).await;
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
    if let Some(nopass) = seen.nopass {
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
                "the upstream user may not run ACL LIST: ACL changes made on Redis are not seen, \
                 so only the proxy's own user is cached (give it +acl|list)"
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

/// One check, on a connection of its own: `PING` as a new client, then `ACL LIST` as the pool's
/// user.
async fn check(env: &Env) -> Seen {
    let cfg = &env.settings;
    let mut cmds = vec![encode(&["PING"])];
    if let Some(pass) = &cfg.password {
        let user = cfg.username.as_deref().unwrap_or("default");
        cmds.push(encode(&["AUTH", user, pass]));
    }
    cmds.push(encode(&["ACL", "LIST"]));
    let Ok(replies) = ask(cfg, &cmds).await else {
        return Seen {
            nopass: None,
            list: None,
        };
    };
    let nopass = replies.first().map(|r| r.starts_with(b"+"));
    let list = replies.last().and_then(|r| acl_list(r));
    Seen { nopass, list }
}

fn encode(args: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    resp::encode_command(args, &mut out);
    out.freeze()
}

/// The digest and user names of an `ACL LIST` reply (`user NAME on ...` lines); `None` for an
/// error.
fn acl_list(reply: &Bytes) -> Option<(u64, Vec<String>)> {
    if reply.first() != Some(&b'*') {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    reply.hash(&mut hasher);
    let users = reply
        .split(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(b"user "))
        .filter_map(|rest| rest.split(|&b| b == b' ').next())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    Some((hasher.finish(), users))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_list_names_the_users_and_refuses_errors() {
        let reply = Bytes::from_static(
            b"*2\r\n$30\r\nuser alice on #abc ~app:* +@all\r\n$28\r\nuser default on nopass +@all\r\n",
        );
        let (_, users) = acl_list(&reply).unwrap();
        assert_eq!(users, ["alice", "default"]);
        assert!(acl_list(&Bytes::from_static(b"-NOPERM no\r\n")).is_none());
    }
}
