//! Redis Cluster as an upstream: the parts the proxy's routing will stand on, not yet wired
//! into sessions or the pool (docs/cluster.md, "Not yet wired").
//!
//! Synchronous, socket-free logic (the upper half, docs/architecture.md):
//! - [`slot`]: CRC16 and key → slot with `{hash tags}`;
//! - [`topology`]: the slot map (each slot's master and replicas) and its `MOVED` updates;
//! - [`parse`]: `CLUSTER SHARDS` / `CLUSTER SLOTS` replies into a topology;
//! - [`redirect`]: `MOVED`/`ASK`/`TRYAGAIN`/`CLUSTERDOWN`/`CROSSSLOT` replies, typed;
//! - [`split`]: where a command goes (one slot, split per slot, fanned out, local, refused);
//! - [`keyless`]: the table of keyless commands' routes;
//! - [`merge`]: the client's reply from the parts' replies.
//!
//! Async (the lower half): [`discover`] fetches a topology from the first reachable seed,
//! through the upstream side's own handshake. Never keeps a connection, never touches a
//! session, the pool or the cache.

pub mod discover;
pub mod keyless;
pub mod merge;
pub mod parse;
pub mod redirect;
pub mod slot;
pub mod split;
pub mod topology;
