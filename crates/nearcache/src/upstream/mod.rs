//! The upstream side: connections to Redis, each an active object, and the pool that owns them.
//!
//! A connection is a task that owns its socket and a queue of requests: it writes requests as
//! they come (batching whatever is queued into one write), reads replies, and hands each reply
//! to the request it answers, in order. Callers never touch the socket and never hold a lock
//! across an `.await`; they talk to the task through channels.
//!
//! The files depend on each other in one direction, from the bottom up:
//! - `env` (settings, limits, counters, backoff), `health`, `tracking`: leaves;
//! - `connect`: opening a socket and the handshake (TLS and per-user auth belong here);
//! - `identity`: other users' shared connections; `acl`: the watch of Redis's users;
//! - `conn`: the connection task and its handles (`serve`: writer, reader, retirement;
//!   `spawn`: shared connections that reconnect, dedicated ones that do not);
//! - `permits` (the `max_open` accounting and idle list), `shared` (the shared lists),
//!   `invalidation` (the connection Redis sends invalidations to);
//! - `pool`: on top, deciding which connections exist and for how long.
//!
//! Never knows about clients or the cache: it reports invalidations through [`TrackingSink`].

mod acl;
mod conn;
mod connect;
mod env;
mod health;
mod identity;
mod invalidation;
mod permits;
mod pool;
mod shared;
mod stream;
mod tracking;

pub use acl::AclView;
pub use conn::{ConnHandle, Request};
pub use connect::{ask, ask_anonymously};
pub use env::{CloseReason, Homes, Limits, Settings};
pub use identity::Identity;
pub use pool::{Pool, PoolStats};
pub use stream::Stream;
pub use tracking::{Tracking, TrackingMode, TrackingSink};
