//! The shadows' memory bound: [`budget`] is an upper bound of every byte a [`Shadows`] of
//! `max_samples` can ever hold, computed from the same sizes the shadows reserve up front.
//!
//! Only arithmetic on the sizes of what the shadows hold (`state.rs`): it must never allocate,
//! look at a live [`Shadows`] or import the duel (`shadow.rs`); `Shadows::check` compares what
//! they hold with it, and the cache takes it out of the shard's capacity.

use super::state::{Pair, Shadows, START_SHARE};
use crate::policy::list::arena_bound;
use crate::policy::lru::Lru;
use crate::policy::tuned::GHOST_DIVISOR;
use crate::policy::wtinylfu::WTinyLfu;

/// Bytes a `hashbrown` table of `capacity` (as reported by `capacity()`) holds: buckets of
/// `bucket` bytes plus one control byte each, plus a group of trailing control bytes.
pub(super) fn table_bytes(capacity: usize, bucket: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    // hashbrown keeps 1/8 of the buckets empty (from 8 buckets up; below, one).
    let buckets = if capacity < 7 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (bucket + 1) + 16
}

/// Most bytes a `hashbrown` table holds once it has held up to `items` entries.
fn table_bound(items: usize, bucket: usize) -> usize {
    // A table grows to at least one more than its capacity, and sizes buckets for 8/7 of that.
    let buckets = ((items + 1) * 8 / 7 + 1).next_power_of_two().max(4);
    buckets * (bucket + 1) + 16
}

/// Most bytes a `Vec` or `VecDeque` of `len` elements of `size` bytes holds after growing one
/// push at a time (capacity doubles).
fn vec_bound(len: usize, size: usize) -> usize {
    (2 * len).max(4) * size
}

/// Upper bound of the heap bytes a [`Shadows`] of `max_samples` ever holds (every buffer, plus
/// the allocator's header and rounding on each of its allocations).
pub fn budget(max_samples: usize) -> u64 {
    let s = max_samples;
    let handles = handles_for(s);
    // Per handle: its hash and a free-list entry; and the full-size pair's arenas, an LRU node
    // and a W-TinyLFU node per handle (in chunks).
    let per_handle = 8 + 4;
    let nodes = |n| arena_bound(n, Lru::NODE_BYTES) + arena_bound(n, WTinyLfu::NODE_BYTES);
    // The half-size pair's nodes: it only runs while no handle above `half_handles` is in use.
    let half = nodes(half_handles(s));
    // Each pair's copy: its sketch, two ghosts and an eviction log (the half-size copy may hold
    // as many keys as the shadow LRU, if they are light).
    let copies = 2 * copy_bound(s);
    // Our eviction buffer (made for `s + 2` handles, grown at most twice by four shadows
    // evicting up to `s + 1` each) and the warm-up list.
    let buffers = 4 * (s + 2) * 4 + (s / START_SHARE + 1) * 16;
    let allocations = 32 * 64 + std::mem::size_of::<Shadows>() + std::mem::size_of::<Pair>();
    let own = handles * per_handle + table_bound(handles, 4) + nodes(handles);
    (own + half + copies + buffers + allocations) as u64
}

/// Most bytes the count-dependent structures of a shadow copy of up to `s` entries hold.
fn copy_bound(s: usize) -> usize {
    // Its sketch, sized for `s` entries (two words each, rounded up to a power of two, and a
    // quarter of that in doorkeeper words).
    let words = (s.max(16) * 2).next_power_of_two();
    let sketch = (words + (words / 4).max(1)) * 8;
    // Its two ghosts: each remembers up to a tenth of its entries (at least 16), in a map and a
    // queue that may hold stale copies up to twice that.
    let ghost_live = ((s + 2) / GHOST_DIVISOR).max(16) + 1;
    let ghost = table_bound(ghost_live, 16) + vec_bound(2 * ghost_live + 1, 16);
    // Its eviction log: up to one shadow's worth per insert, in two vectors.
    let log = 2 * vec_bound(s + 2, 8);
    sketch + 2 * ghost + log
}

/// Handles needed for `max_samples`: each shadow holds at most one more than `max_samples`
/// (the request that overflows it), and a handle lives while either holds its key.
pub(super) fn handles_for(max_samples: usize) -> usize {
    2 * max_samples + 2
}

/// Handles in use while filling: the shadow LRU has evicted nothing since the handles were last
/// reset, so it holds every live key, at most one more than `max_samples`.
pub(super) fn half_handles(max_samples: usize) -> usize {
    max_samples + 2
}
