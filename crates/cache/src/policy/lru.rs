//! Least-recently-used: one list, hits move to the head, victims come from the tail.
//! Must never reorder on anything but a hit or an insert.

use super::list::{Arena, List};
use super::{Handle, Policy, PolicyKind};

/// LRU policy.
#[derive(Debug)]
pub struct Lru {
    arena: Arena<bool>,
    list: List,
    capacity: u64,
}

impl Lru {
    /// An empty LRU with the given weight capacity.
    pub fn new(capacity: u64) -> Self {
        Self {
            arena: Arena::default(),
            list: List::default(),
            capacity,
        }
    }

    /// Make room for handles below `handles` up front, so the arena never grows later.
    pub(crate) fn reserve(&mut self, handles: usize) {
        if let Some(top) = handles.checked_sub(1) {
            self.arena.ensure(top as Handle);
        }
    }

    /// Resident handles and their weights, least recently used first.
    pub(crate) fn oldest_first(&self) -> Vec<(Handle, u32)> {
        let mut out = Vec::with_capacity(self.list.len());
        let mut cur = self.list.tail();
        while let Some(h) = cur {
            out.push((h, self.arena.node(h).weight));
            cur = List::newer(&self.arena, h);
        }
        out
    }

    /// Heap bytes held by the node arena.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.heap_bytes()
    }

    /// Bytes of one arena node.
    pub(crate) const NODE_BYTES: usize = std::mem::size_of::<super::list::Node<bool>>();
}

impl Policy for Lru {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Lru
    }
    fn entry_overhead(&self) -> u64 {
        std::mem::size_of::<super::list::Node<bool>>() as u64
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn weight(&self) -> u64 {
        self.list.weight()
    }
    fn len(&self) -> usize {
        self.list.len()
    }
    fn contains(&self, h: Handle) -> bool {
        self.arena.get(h).is_some_and(|n| n.meta)
    }
    fn on_hit(&mut self, h: Handle) {
        self.list.move_to_head(&mut self.arena, h);
    }
    fn insert(&mut self, h: Handle, _hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.arena.ensure(h);
        if u64::from(weight) > self.capacity {
            evicted.push(h);
            return;
        }
        while self.list.weight() + u64::from(weight) > self.capacity {
            let v = self
                .list
                .pop_tail(&mut self.arena)
                .expect("over capacity implies non-empty");
            self.arena.node_mut(v).meta = false;
            evicted.push(v);
        }
        let n = self.arena.node_mut(h);
        n.weight = weight;
        n.meta = true;
        self.list.push_head(&mut self.arena, h);
    }
    fn remove(&mut self, h: Handle) {
        self.list.unlink(&mut self.arena, h);
        self.arena.node_mut(h).meta = false;
    }
    fn clear(&mut self) {
        self.arena.reset();
        self.list.clear();
    }
    fn check(&self) -> Result<(), String> {
        self.list.check(&self.arena, "lru", |h, n| {
            if n.meta {
                Ok(())
            } else {
                Err(format!("lru: {h} listed but not marked resident"))
            }
        })?;
        if self.list.weight() > self.capacity {
            return Err("lru: over capacity".into());
        }
        Ok(())
    }
}
