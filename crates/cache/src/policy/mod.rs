//! Eviction policies behind one trait, [`Policy`].
//!
//! A policy sees only *handles* (small integers chosen by its caller, reused after removal),
//! their weights and a 64-bit hash of the key. It decides admission and victims; it never owns
//! keys or values, never allocates per entry beyond its handle-indexed arena, and knows nothing
//! about groups, tags, expiry or locking (the shard does). Because of that, the trace-replay tool
//! drives the same code with unit weights.
//!
//! Every operation is O(1) amortised.

mod adaptive;
mod ghost;
mod lfu;
pub mod list;
mod lru;
mod s3fifo;
mod shadow;
mod sieve;
mod sketch;
mod wtinylfu;

use std::fmt;
use std::str::FromStr;

pub use adaptive::Adaptive;
pub use lfu::Lfu;
pub use lru::Lru;
pub use s3fifo::S3Fifo;
pub use sieve::Sieve;
pub use wtinylfu::WTinyLfu;

/// Identifies one resident entry inside a policy (the shard uses its slab index).
pub type Handle = u32;

/// An eviction policy over weighted handles.
///
/// Contract: `insert` is only called for a handle that is not resident; `on_hit` and `remove`
/// only for resident ones. After `insert` returns, `weight() <= capacity()` and every handle that
/// stopped being resident (possibly the inserted one, if the policy refused it) was pushed to
/// `evicted`.
pub trait Policy: Send {
    /// Which policy this is.
    fn kind(&self) -> PolicyKind;
    /// Heap bytes of policy metadata per resident entry (node, sketch, ghost share), used in
    /// the cache's per-entry cost.
    fn entry_overhead(&self) -> u64;
    /// Heap bytes the policy holds whatever its entries (adaptive's shadows). They are already
    /// set aside inside `capacity()`: the entries only get the rest.
    fn reserved_bytes(&self) -> u64 {
        0
    }
    /// Weight capacity given at construction.
    fn capacity(&self) -> u64;
    /// Total weight of resident handles.
    fn weight(&self) -> u64;
    /// Number of resident handles.
    fn len(&self) -> usize;
    /// True if no handle is resident.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// True if `h` is resident.
    fn contains(&self, h: Handle) -> bool;
    /// A resident handle was read. Must not allocate or change `heap_bytes`: the shard charges
    /// the structures after inserts and removals only (the policy property test checks it).
    fn on_hit(&mut self, h: Handle);
    /// Offer a new handle; evicts (pushing to `evicted`) until the weight fits the capacity.
    fn insert(&mut self, h: Handle, hash: u64, weight: u32, evicted: &mut Vec<Handle>);
    /// Drop a resident handle without counting it as an eviction (invalidation, expiry).
    fn remove(&mut self, h: Handle);
    /// Drop every handle.
    fn clear(&mut self);
    /// Change the weight capacity; evicts (pushing to `evicted`) until the weight fits it.
    /// The shard lowers it by what its structures hold beyond the entries' share.
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>);
    /// Heap bytes the policy's metadata holds now (arena, sketch, ghosts, buffers).
    fn heap_bytes(&self) -> u64;
    /// No handle at or above `handle_limit` is resident or will be offered until the arena
    /// grows again: let the handle-indexed metadata shrink, and size the count-based structures
    /// (sketch, ghosts) for the resident count. Shrinks only after a constant-factor drop since
    /// the last growth, so it is O(1) amortised.
    fn shrink(&mut self, handle_limit: Handle);
    /// The resident handle `from` is now called `to` (which is not resident): same place, same
    /// metadata. The shard moves entries down to let its structures shrink.
    fn relocate(&mut self, from: Handle, to: Handle);
    /// Check internal invariants: each resident handle is in exactly one structure, lengths and
    /// weights add up, and the weight fits the capacity.
    fn check(&self) -> Result<(), String>;
}

/// The available policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// Least frequently used (exact in-cache counts, O(1) frequency buckets, LRU tie-break).
    Lfu,
    /// Window-TinyLFU with a fixed 1% window.
    WTinyLfu,
    /// S3-FIFO (small/main/ghost FIFO queues).
    S3Fifo,
    /// SIEVE (FIFO with a visited bit and a moving hand).
    Sieve,
    /// W-TinyLFU whose window share adapts per request from two ghost lists (the default).
    #[default]
    Adaptive,
}

impl PolicyKind {
    /// All policies, in display order.
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Lru,
        PolicyKind::Lfu,
        PolicyKind::WTinyLfu,
        PolicyKind::S3Fifo,
        PolicyKind::Sieve,
        PolicyKind::Adaptive,
    ];

    /// The name accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Lfu => "lfu",
            PolicyKind::WTinyLfu => "w-tinylfu",
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::Sieve => "sieve",
            PolicyKind::Adaptive => "adaptive",
        }
    }

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
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown policy name; its message lists the valid names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown eviction policy {:?}; valid: ", self.0)?;
        for (i, k) in PolicyKind::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(k.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    /// Case-insensitive; also accepts `wtinylfu`, `tinylfu`, `s3-fifo`, `default`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "lru" => PolicyKind::Lru,
            "lfu" => PolicyKind::Lfu,
            "w-tinylfu" | "wtinylfu" | "tinylfu" => PolicyKind::WTinyLfu,
            "s3fifo" | "s3-fifo" => PolicyKind::S3Fifo,
            "sieve" => PolicyKind::Sieve,
            "adaptive" | "default" => PolicyKind::Adaptive,
            _ => return Err(UnknownPolicy(s.to_string())),
        })
    }
}
