//! Redis Cluster as an upstream (`cluster = true`, docs/cluster.md): where each command goes,
//! the nodes' pools, and following redirects. Sessions use it from `session/cluster.rs`.
//!
//! Synchronous, socket-free logic (the upper half, docs/architecture.md):
//! - [`slot`]: CRC16 and key → slot with `{hash tags}`;
//! - [`topology`]: the slot map (each slot's master and replicas) and its `MOVED` updates;
//! - [`parse`]: `CLUSTER SHARDS` / `CLUSTER SLOTS` replies into a topology;
//! - [`redirect`]: `MOVED`/`ASK`/`TRYAGAIN`/`CLUSTERDOWN`/`CROSSSLOT` replies, typed;
//! - [`split`]: where a command goes (one slot, split per slot, fanned out, local, refused);
//! - [`keyless`]: the table of keyless commands' routes;
//! - [`merge`]: the client's reply from the parts' replies;
//! - [`scan`]: `SCAN`'s cursor over every master, and its replies.
//!
//! Async (the lower half): [`discover`] fetches a topology from the first reachable seed,
//! through the upstream side's own handshake; [`nodes`] keeps the map in force and a pool per
//! master, and refreshes them; [`send`] sends to nodes and follows `MOVED`/`ASK`/`TRYAGAIN`.
//! Never touches a session, and the cache only through `TrackingSink`.

pub mod discover;
pub mod keyless;
pub mod merge;
pub mod nodes;
pub mod parse;
pub mod redirect;
pub mod scan;
pub mod send;
pub mod slot;
pub mod split;
pub mod topology;
