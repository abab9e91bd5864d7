//! Starting connection tasks: shared connections, which reconnect with backoff for as long as
//! the pool keeps them, and dedicated ones, which die with their socket.
//!
//! Owns each task's life around [`serve`]: connecting, counting losses, failing requests while
//! Redis is unreachable. Never chooses which connections exist (the pool does).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::warn;

use super::queue::Receiver;
use super::serve::{serve, Ended};
use super::{fail, ConnHandle, ConnState, Request};
use crate::reply::UpstreamError;
use crate::upstream::connect::{connect, connect_quietly, tracking_command};
use crate::upstream::env::{Backoff, CloseReason, Env};
use crate::upstream::tracking::TrackingMode;

/// Starts a shared connection: a task that connects, serves, and reconnects with backoff until
/// it is retired or every handle is gone. While Redis is unreachable, requests fail at once
/// with the cause. The task keeps `permit` (its share of the pool's open limit) while it runs.
pub fn spawn_shared(env: Arc<Env>, proto: u8, permit: impl Send + 'static) -> ConnHandle {
    let (handle, mut rx) = ConnHandle::new(&env, proto, true);
    let state = handle.state.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let cfg = &env.settings;
        let mut backoff = Backoff::new();
        loop {
            let redirect = state
                .tracking
                .as_ref()
                .filter(|t| t.mode == TrackingMode::Default)
                .and_then(|t| t.redirect());
            let extra: Vec<Bytes> = redirect
                .iter()
                .map(|(id, _)| tracking_command(*id))
                .collect();
            match connect(cfg, proto, &extra).await {
                Ok((stream, replies)) => {
                    if state.generation.fetch_add(1, Ordering::AcqRel) > 0 {
                        env.counters.reconnected();
                    }
                    match (redirect, replies.first()) {
                        (Some(_), Some(r)) if r.first() == Some(&b'-') => {
                            // Not allowed to (an ACL user without +client|tracking, say): the
                            // connection serves, and fills nothing, as Redis protects none of
                            // what it reads.
                            warn!(upstream = %cfg.addr, user = ?cfg.username, reply = %String::from_utf8_lossy(r).trim_end(), "CLIENT TRACKING refused; reads on this connection are not cached");
                        }
                        (Some((_, epoch)), _) => {
                            state.tracking_epoch.store(epoch, Ordering::Release)
                        }
                        (None, _) => {}
                    }
                    env.health.connected("shared", &cfg.addr);
                    backoff.reset();
                    state.up.store(true, Ordering::Release);
                    state.came_up.notify_waiters();
                    let ended = serve(stream, &mut rx, &state, cfg.upstream_timeout).await;
                    state.up.store(false, Ordering::Release);
                    state.tracking_lost();
                    match ended {
                        Ended::Dropped | Ended::Retired => return,
                        Ended::Failed(err) => {
                            env.counters.closed(CloseReason::Error);
                            warn!(upstream = %cfg.addr, proto, %err, "upstream connection lost; reconnecting");
                        }
                    }
                }
                Err(err) => {
                    env.health.failed("shared", &err);
                    if !refuse_until(&mut rx, &state, &err, backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    });
    handle
}

/// Fails every request that arrives during `wait`; returns false once no handle is left.
async fn refuse_until(
    rx: &mut Receiver<Request>,
    state: &ConnState,
    err: &UpstreamError,
    wait: Duration,
) -> bool {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return true,
            req = rx.recv() => match req {
                Some(req) => fail(req.expect, err, state),
                None => return false,
            },
        }
    }
}

/// Opens a dedicated connection for one session, holding `permit` while it is open. It dies
/// with its socket: no reconnect, since the session state it carried (MULTI, SELECT,
/// subscriptions) would be gone.
pub async fn connect_dedicated(
    env: &Arc<Env>,
    proto: u8,
    permit: impl Send + 'static,
) -> Result<ConnHandle, UpstreamError> {
    let stream = match connect_quietly(&env.settings, proto).await {
        Ok(s) => s,
        Err(e) => {
            env.health.failed("dedicated", &e);
            return Err(e);
        }
    };
    // Nothing said yet (no HELLO, no AUTH): Redis's answer to the client's first command tells
    // whether it took the connection (see `Waiting::deliver`).
    let unprobed = proto == 2 && env.settings.password.is_none();
    if !unprobed {
        env.health.connected("dedicated", &env.settings.addr);
    }
    let (handle, mut rx) = ConnHandle::new(env, proto, false);
    let state = handle.state.clone();
    state.unprobed.store(unprobed, Ordering::Release);
    state.up.store(true, Ordering::Release);
    let env = env.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let ended = serve(stream, &mut rx, &state, env.settings.upstream_timeout).await;
        state.up.store(false, Ordering::Release);
        rx.close();
        let err = match ended {
            Ended::Failed(err) => {
                if matches!(err, UpstreamError::Unavailable { .. }) {
                    env.health.failed("dedicated", &err);
                }
                env.counters.closed(CloseReason::Error);
                err
            }
            Ended::Dropped | Ended::Retired => UpstreamError::Lost {
                addr: state.addr.clone(),
                cause: "connection closed".into(),
            },
        };
        while let Some(req) = rx.try_recv() {
            fail(req.expect, &err, &state);
        }
    });
    Ok(handle)
}
