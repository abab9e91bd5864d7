//! Eviction policies behind one trait, [`Policy`].
//!
//! A policy sees only *handles* (small integers chosen by its caller, reused after removal),
//! their weights and a 64-bit hash of the key. It decides admission and victims; it never owns
//! keys or values, never allocates per entry beyond its handle-indexed arena, and knows nothing
//! about groups, tags, expiry or locking (the shard does). Because of that, the trace-replay tool
//! drives the same code with unit weights.
//!
//! Every operation is O(1) amortised.
//!
//! Files, each importing only files listed before it: `kind.rs` the policies' names;
//! `api.rs` the [`Policy`] trait and [`Handle`]; `list.rs`, `ghost.rs`, `sketch.rs` and
//! `recency.rs` the shared structures; `lru.rs`, `lfu.rs`, `sieve.rs`, `s3fifo.rs` and
//! `wtinylfu.rs` the plain policies; `tuned.rs` W-TinyLFU with its window tuned by ghosts;
//! `reuse.rs` the default policy, that plus recency-aware admission; `shadow.rs` (with
//! `shadow/`) the shadows that race LRU against the ghost-tuned policy; `adaptive.rs` the
//! previous default, which runs both. This file only declares and re-exports them and, on top
//! of them all, builds a policy from its [`PolicyKind`]; no policy may import it.

mod adaptive;
mod api;
mod ghost;
mod kind;
mod lfu;
pub mod list;
mod lru;
mod recency;
mod reuse;
mod s3fifo;
mod shadow;
mod sieve;
mod sketch;
mod tuned;
mod wtinylfu;

pub use adaptive::Adaptive;
pub use api::{Handle, Policy};
pub use kind::{PolicyKind, UnknownPolicy};
pub use lfu::Lfu;
pub use lru::Lru;
pub use reuse::ReuseTinyLfu;
pub use s3fifo::S3Fifo;
pub use sieve::Sieve;
pub use wtinylfu::WTinyLfu;

impl PolicyKind {
    /// Build a policy of this kind whose weights are bytes, with the given capacity in bytes
    /// (what the cache does).
    pub fn build(self, capacity: u64) -> Box<dyn Policy> {
        match self {
            PolicyKind::Adaptive => Box::new(Adaptive::new(capacity)),
            _ => self.build_counted(capacity),
        }
    }

    /// Build a policy of this kind whose weights count entries rather than bytes (trace
    /// replay, unit weights): the same policy, except that adaptive's shadows are not charged
    /// to the capacity and simulate up to 1,024 keys whatever it is
    /// (see [`Adaptive::counted`]).
    pub fn build_counted(self, capacity: u64) -> Box<dyn Policy> {
        match self {
            PolicyKind::Lru => Box::new(Lru::new(capacity)),
            PolicyKind::Lfu => Box::new(Lfu::new(capacity)),
            PolicyKind::WTinyLfu => Box::new(WTinyLfu::new(capacity)),
            PolicyKind::S3Fifo => Box::new(S3Fifo::new(capacity)),
            PolicyKind::Sieve => Box::new(Sieve::new(capacity)),
            PolicyKind::Adaptive => Box::new(Adaptive::counted(capacity)),
            PolicyKind::ReuseTinyLfu => Box::new(ReuseTinyLfu::new(capacity)),
        }
    }
}
