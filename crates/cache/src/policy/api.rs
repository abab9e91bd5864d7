//! The contract every eviction policy meets: [`Policy`], over [`Handle`]s.
//!
//! Owns only the trait and the handle type, which every policy, the shard and the trace replay
//! share. Must never name a policy type or import one: whatever builds or picks a policy sits
//! above the policies (`policy/mod.rs`), so each of them can import this file without importing
//! the others.

use super::kind::PolicyKind;

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
