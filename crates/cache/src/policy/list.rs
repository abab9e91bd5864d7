//! Index-based intrusive doubly-linked lists shared by the eviction policies.
//!
//! Every policy keeps one [`Arena`] of nodes indexed by entry handle; a node is in at most one
//! [`List`] at a time, so all lists of a policy share the arena's links. All operations are O(1).
//! This module never allocates per operation (the arena grows only when a larger handle appears,
//! and shrinks only when its caller says the high handles are gone) and never decides anything
//! about eviction: it is plumbing.
//!
//! The arena is chunked: nodes live in fixed chunks of [`CHUNK`], allocated as handles reach
//! them and released when the caller says the handles above are gone. It never holds more than
//! one chunk beyond its highest handle (and one spare) and is never copied to grow; a doubling
//! `Vec` would hold up to twice the nodes it needs (64 bytes per entry for W-TinyLFU's 32-byte
//! nodes just past a power of two), plus the old copy while it grows.
//! Chunks are small and fixed-size, so a node's address is one load from the chunk table and
//! needs no second bounds check.

use super::api::Handle;

/// "No node" marker for links.
pub const NIL: u32 = u32::MAX;

/// One node: links, the entry's weight and policy-specific metadata.
#[derive(Clone, Copy, Debug)]
pub struct Node<M> {
    prev: u32,
    next: u32,
    /// Weight of the entry (bytes in the cache, 1 in trace replay).
    pub weight: u32,
    /// Policy-specific data; policies use it to know which list holds the node.
    pub meta: M,
}

const CHUNK_BITS: u32 = 4;
/// Nodes per chunk.
const CHUNK: usize = 1 << CHUNK_BITS;
const MASK: usize = CHUNK - 1;

/// Most heap bytes an arena of nodes of `node_bytes` holds once handles below `handles` have
/// nodes: its chunks and its chunk table, grown by doubling. (A chunk of 16-, 28- or 32-byte
/// nodes is 256, 448 or 512 bytes, exact size classes of jemalloc, so no rounding.)
pub(crate) fn arena_bound(handles: usize, node_bytes: usize) -> usize {
    let chunks = handles.div_ceil(CHUNK);
    chunks * CHUNK * node_bytes + chunks.next_power_of_two() * 8
}

/// Nodes indexed by handle, in chunks (see the module's notes).
#[derive(Debug, Default)]
pub struct Arena<M> {
    chunks: Vec<Box<[Node<M>; CHUNK]>>,
}

impl<M> Arena<M> {
    /// Node of `h`, if the arena is large enough.
    pub fn get(&self, h: Handle) -> Option<&Node<M>> {
        let h = h as usize;
        Some(&self.chunks.get(h >> CHUNK_BITS)?[h & MASK])
    }

    /// Node of `h`. Panics if `h` was never `ensure`d (a caller bug).
    #[inline]
    pub fn node(&self, h: Handle) -> &Node<M> {
        let h = h as usize;
        &self.chunks[h >> CHUNK_BITS][h & MASK]
    }

    /// Mutable node of `h`. Panics if `h` was never `ensure`d (a caller bug).
    #[inline]
    pub fn node_mut(&mut self, h: Handle) -> &mut Node<M> {
        let h = h as usize;
        &mut self.chunks[h >> CHUNK_BITS][h & MASK]
    }

    /// Bytes held by the arena's chunks and its chunk table.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * std::mem::size_of::<[Node<M>; CHUNK]>()
            + self.chunks.capacity() * std::mem::size_of::<Box<[Node<M>; CHUNK]>>()
    }

    /// No node at or above `limit` is in a list: the chunks above the one `limit` falls in are
    /// released, one spare kept (no copy: chunks never move), and the chunk table is cut to
    /// twice its length once four times longer.
    pub fn shrink(&mut self, limit: Handle) {
        let keep = (limit as usize).div_ceil(CHUNK) + 1;
        if limit == 0 {
            self.chunks = Vec::new();
        } else if self.chunks.len() > keep {
            self.chunks.truncate(keep);
            if self.chunks.capacity() > 4 * keep {
                self.chunks.shrink_to(2 * keep);
            }
        }
    }
}

impl<M: Copy + Default> Arena<M> {
    /// Make room for handles below `handles` up front, so the arena never grows later.
    pub fn reserve(&mut self, handles: usize) {
        if let Some(top) = handles.checked_sub(1) {
            self.ensure(top as Handle);
        }
    }

    /// Make sure `h` has a node, growing the arena if needed.
    pub fn ensure(&mut self, h: Handle) {
        let node = Node {
            prev: NIL,
            next: NIL,
            weight: 0,
            meta: M::default(),
        };
        while self.chunks.len() <= h as usize >> CHUNK_BITS {
            self.chunks.push(Box::new([node; CHUNK]));
        }
    }

    /// Reset every node's metadata (used by `clear`).
    pub fn reset(&mut self) {
        for n in self.chunks.iter_mut().flat_map(|c| c.iter_mut()) {
            n.prev = NIL;
            n.next = NIL;
            n.weight = 0;
            n.meta = M::default();
        }
    }
}

/// A list of nodes: head is the newest / most recently used end, tail the oldest.
#[derive(Clone, Copy, Debug)]
pub struct List {
    head: u32,
    tail: u32,
    len: u32,
    weight: u64,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
            weight: 0,
        }
    }
}

impl List {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of node weights.
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// Oldest / least recently used node.
    pub fn tail(&self) -> Option<Handle> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Newest node.
    pub fn head(&self) -> Option<Handle> {
        (self.head != NIL).then_some(self.head)
    }

    /// The list's nodes from the tail (oldest) to the head.
    pub fn oldest_first<'a, M>(&self, arena: &'a Arena<M>) -> impl Iterator<Item = Handle> + 'a {
        std::iter::successors(self.tail(), move |&h| List::newer(arena, h))
    }

    /// Node just newer than `h` (towards the head), if any.
    pub fn newer<M>(arena: &Arena<M>, h: Handle) -> Option<Handle> {
        let p = arena.node(h).prev;
        (p != NIL).then_some(p)
    }

    /// Insert `h` at the head. `h` must not be in any list.
    pub fn push_head<M>(&mut self, arena: &mut Arena<M>, h: Handle) {
        let old = self.head;
        {
            let n = arena.node_mut(h);
            n.prev = NIL;
            n.next = old;
            self.weight += u64::from(n.weight);
        }
        if old != NIL {
            arena.node_mut(old).prev = h;
        } else {
            self.tail = h;
        }
        self.head = h;
        self.len += 1;
    }

    /// Unlink `h`, which must be in this list.
    pub fn unlink<M>(&mut self, arena: &mut Arena<M>, h: Handle) {
        let (prev, next, w) = {
            let n = arena.node_mut(h);
            let r = (n.prev, n.next, n.weight);
            n.prev = NIL;
            n.next = NIL;
            r
        };
        if prev != NIL {
            arena.node_mut(prev).next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            arena.node_mut(next).prev = prev;
        } else {
            self.tail = prev;
        }
        self.len -= 1;
        self.weight -= u64::from(w);
    }

    /// Move `h` (in this list) to the head. Relinks in place (the hit path of every list
    /// policy): the length and weight do not change, so they are not touched.
    #[inline]
    pub fn move_to_head<M>(&mut self, arena: &mut Arena<M>, h: Handle) {
        let old = self.head;
        if old == h {
            return;
        }
        // Not the head, so `h` has a newer neighbour, and the list is not empty.
        let (prev, next) = {
            let n = arena.node_mut(h);
            let r = (n.prev, n.next);
            n.prev = NIL;
            n.next = old;
            r
        };
        arena.node_mut(prev).next = next;
        if next != NIL {
            arena.node_mut(next).prev = prev;
        } else {
            self.tail = prev;
        }
        arena.node_mut(old).prev = h;
        self.head = h;
    }

    /// Move `from` (in this list) to the unused node `to`, keeping its place in the list;
    /// `from` is left reset.
    pub fn relocate<M: Copy + Default>(&mut self, arena: &mut Arena<M>, from: Handle, to: Handle) {
        arena.ensure(to);
        let n = *arena.node(from);
        *arena.node_mut(to) = n;
        if n.prev != NIL {
            arena.node_mut(n.prev).next = to;
        } else {
            self.head = to;
        }
        if n.next != NIL {
            arena.node_mut(n.next).prev = to;
        } else {
            self.tail = to;
        }
        *arena.node_mut(from) = Node {
            prev: NIL,
            next: NIL,
            weight: 0,
            meta: M::default(),
        };
    }

    /// Remove and return the tail.
    pub fn pop_tail<M>(&mut self, arena: &mut Arena<M>) -> Option<Handle> {
        let t = self.tail()?;
        self.unlink(arena, t);
        Some(t)
    }

    /// Forget all nodes (the arena must be reset separately).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Walk the list from head to tail checking links, count and weight; calls `f` on each node.
    pub fn check<M>(
        &self,
        arena: &Arena<M>,
        name: &str,
        mut f: impl FnMut(Handle, &Node<M>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut cur = self.head;
        let mut prev = NIL;
        let mut count = 0u32;
        let mut weight = 0u64;
        while cur != NIL {
            let n = arena
                .get(cur)
                .ok_or_else(|| format!("{name}: handle {cur} outside arena"))?;
            if n.prev != prev {
                return Err(format!("{name}: broken prev link at {cur}"));
            }
            count += 1;
            if count > self.len {
                return Err(format!("{name}: longer than its len {}", self.len));
            }
            weight += u64::from(n.weight);
            f(cur, n)?;
            prev = cur;
            cur = n.next;
        }
        if prev != self.tail {
            return Err(format!("{name}: tail mismatch"));
        }
        if count != self.len || weight != self.weight {
            return Err(format!(
                "{name}: counted {count}/{weight}, recorded {}/{}",
                self.len, self.weight
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, Default)]
    struct Meta(u32);

    #[test]
    fn arena_grows_by_chunks_and_releases_them() {
        let mut a: Arena<Meta> = Arena::default();
        assert!(a.get(0).is_none());
        a.ensure(0);
        assert_eq!(a.chunks.len(), 1);
        assert!(a.get(CHUNK as Handle - 1).is_some() && a.get(CHUNK as Handle).is_none());
        // A handle far up makes every chunk below it, none above.
        a.ensure(10 * CHUNK as Handle + 3);
        assert_eq!(a.chunks.len(), 11);
        a.node_mut(10 * CHUNK as Handle + 3).meta = Meta(7);
        let node = std::mem::size_of::<Node<Meta>>();
        assert!(a.heap_bytes() >= 11 * CHUNK * node);
        assert!(a.heap_bytes() <= arena_bound(11 * CHUNK, node));
        // Nothing at or above 2 chunks' worth is in use: keep those and one spare.
        a.shrink(2 * CHUNK as Handle);
        assert_eq!(a.chunks.len(), 3);
        // A lower limit inside the same chunk keeps it.
        a.shrink(2 * CHUNK as Handle - 1);
        assert_eq!(a.chunks.len(), 3);
        // Growing again gives fresh nodes, not the released ones.
        a.ensure(10 * CHUNK as Handle + 3);
        assert_eq!(a.node(10 * CHUNK as Handle + 3).meta.0, 0);
        a.shrink(0);
        assert_eq!((a.chunks.len(), a.heap_bytes()), (0, 0));
    }

    #[test]
    fn list_links_cross_chunks() {
        let mut a: Arena<Meta> = Arena::default();
        let mut l = List::default();
        let hs = [0, CHUNK as Handle + 1, 5 * CHUNK as Handle, 3];
        for &h in &hs {
            a.ensure(h);
            a.node_mut(h).weight = 1;
            l.push_head(&mut a, h);
        }
        l.move_to_head(&mut a, CHUNK as Handle + 1);
        l.unlink(&mut a, 5 * CHUNK as Handle);
        // Moving a node into another chunk keeps its place.
        l.relocate(&mut a, 0, 2 * CHUNK as Handle + 7);
        let order: Vec<Handle> = l.oldest_first(&a).collect();
        assert_eq!(order, vec![2 * CHUNK as Handle + 7, 3, CHUNK as Handle + 1]);
        assert_eq!((l.len(), l.weight()), (3, 3));
        l.check(&a, "test", |_, _| Ok(())).expect("consistent list");
    }
}
