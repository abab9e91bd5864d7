//! nearcache: a Redis proxy whose purpose is a server-assisted client-side cache.
//!
//! Two halves (see docs/architecture.md). Below, async I/O on tokio:
//! - [`session`]: one reader and one writer task per client, the request's phases in order;
//! - [`upstream`]: connections to Redis as active objects, and the pool that owns them.
//!
//! Above, synchronous logic that never touches a socket:
//! - [`command`]: the command table, the one place that knows what a command is;
//! - [`cachelayer`]: the tracking cache as the proxy uses it;
//! - [`config`]: typed settings, each defined once.
//!
//! Offline tools on the same table and cache: [`capture`] turns a packet capture into a request
//! trace and a summary, [`simulate`] replays a trace through the cache at other sizes.
//!
//! Redis Cluster upstream parts, not yet wired into sessions: [`cluster`] (slots, the slot map,
//! command splitting, discovery).
//!
//! Around them: [`clients`] is the proxy's own client table, [`server`] builds and runs one
//! proxy (its clients served on the threads of `workers`) and [`socket`] is a client's TCP or
//! Unix socket, [`control`] changes its configuration while it runs, [`admin`] answers
//! `NEARCACHE ...`, [`obs`] tells what it does (metrics, profiles, traces, the admin HTTP port),
//! and [`reply`] is what flows from Redis to a client.

pub mod admin;
mod bufs;
pub mod cachelayer;
pub mod capture;
pub mod clients;
mod clock;
pub mod cluster;
pub mod command;
pub mod config;
pub mod control;
mod fenwick;
pub mod obs;
pub mod reply;
pub mod server;
pub mod session;
pub mod simulate;
pub mod socket;
mod stop;
pub mod tls;
pub mod upstream;
mod workers;

pub use config::Config;
pub use server::{start, start_with, Running};
