//! `nearcache-cache`: a concurrent, byte-bounded in-memory cache with pluggable eviction.
//!
//! This crate is the storage half of nearcache's client-side cache. It knows nothing about
//! sockets, Redis or async runtimes, and must never block on anything but its own shard locks.
//!
//! # Model
//! - **group** (`&[u8]`): the upstream key an entry derives from. [`Cache::invalidate_group`]
//!   drops all entries of a group. The group picks the shard.
//! - **key** (`&[u8]`): identifies the entry within its group. An entry is identified by
//!   (group, key), both compared in full, never by hash alone.
//! - **tag** (`u64`): the upstream connection/generation whose tracking protects the entry;
//!   [`Cache::invalidate_tag`] drops all entries with that tag. Its top 16 bits are its
//!   **scope** ([`tag_scope`]: the upstream node); [`Cache::invalidate_scope`] drops all
//!   entries whose tags share one.
//! - **value** (bytes): copied in by [`Cache::complete_fill`] into one allocation with the group
//!   and key; read back as a copy ([`Cache::get`]) or under the lock ([`Cache::get_with`]).
//!   **cost** = group + key + value bytes + two length bytes + [`ENTRY_OVERHEAD`] + the
//!   policy's per-entry metadata ([`Cache::entry_cost`]).
//! - **expires_at**: a deadline in milliseconds on the caller's monotonic clock (see
//!   [`Clock`]); every call that needs time takes `now`, so tests are deterministic. Expired
//!   entries are never returned; they are removed when met by `get` or by a small sweep on
//!   every insert, and are otherwise evicted like any cold entry. Deadlines past 2^31 ms are
//!   kept in ~1 s units, rounded down (an entry may then expire up to a second early).
//!
//! # Fill protocol
//! `begin_fill(group, tag)` before sending the read upstream, `complete_fill(ticket, ...)` with
//! the reply. The insert happens only if no invalidation of the group, of the tag or of its
//! scope, and no `clear` happened in between (hashed counters: false "stale" verdicts
//! possible, stale inserts impossible).
//!
//! # Concurrency and memory
//! Shards (a power of two) each hold a mutex around a single-threaded core; the budget is split
//! evenly (`max_bytes / shards` per shard). Evicted values are dropped outside the lock.

mod cache;
mod clock;
pub mod policy;
mod shard;
mod sync;

pub use cache::{tag_scope, Cache, CacheConfig, CacheStats, FillTicket, Hashes, Stamp};
pub use clock::{Clock, NEVER};
pub use policy::{PolicyKind, UnknownPolicy};
pub use shard::ENTRY_OVERHEAD;
