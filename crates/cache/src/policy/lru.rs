//! Least-recently-used: one list, hits move to the head, victims come from the tail.
//! Must never reorder on anything but a hit or an insert.

use super::api::{Handle, Policy};
use super::kind::PolicyKind;
use super::list::{Arena, List};

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
        self.arena.reserve(handles);
    }

    /// Resident handles and their weights, least recently used first.
    pub(crate) fn oldest_first(&self) -> Vec<(Handle, u32)> {
        self.list
            .oldest_first(&self.arena)
            .map(|h| (h, self.arena.node(h).weight))
            .collect()
    }

    /// Bytes of one arena node.
    pub(crate) const NODE_BYTES: usize = std::mem::size_of::<super::list::Node<bool>>();
}

impl Lru {
    /// Evict from the tail until `extra` more weight fits.
    fn make_room(&mut self, extra: u64, evicted: &mut Vec<Handle>) {
        while self.list.weight() + extra > self.capacity {
            let Some(v) = self.list.pop_tail(&mut self.arena) else {
                return;
            };
            self.arena.node_mut(v).meta = false;
            evicted.push(v);
        }
    }
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
        self.make_room(u64::from(weight), evicted);
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
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        self.capacity = capacity;
        self.make_room(0, evicted);
    }
    fn heap_bytes(&self) -> u64 {
        self.arena.heap_bytes() as u64
    }
    fn shrink(&mut self, handle_limit: Handle) {
        self.arena.shrink(handle_limit);
    }
    fn relocate(&mut self, from: Handle, to: Handle) {
        self.list.relocate(&mut self.arena, from, to);
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
