//! SIEVE: a FIFO queue with one visited bit per entry and a hand that walks from the oldest
//! entry towards the newest, clearing visited bits and evicting the first unvisited entry.
//! Hits only set a bit (no list movement). Amortised O(1): each bit is cleared at most once per
//! setting. Must never move an entry on a hit.

use super::api::{Handle, Policy};
use super::kind::PolicyKind;
use super::list::{Arena, List};

const RESIDENT: u8 = 1;
const VISITED: u8 = 2;

/// SIEVE policy.
#[derive(Debug)]
pub struct Sieve {
    arena: Arena<u8>,
    queue: List,
    /// Next candidate for eviction; `None` means "start at the tail".
    hand: Option<Handle>,
    capacity: u64,
}

impl Sieve {
    /// An empty SIEVE with the given weight capacity.
    pub fn new(capacity: u64) -> Self {
        Self {
            arena: Arena::default(),
            queue: List::default(),
            hand: None,
            capacity,
        }
    }

    fn evict_one(&mut self) -> Handle {
        let mut cur = self
            .hand
            .or(self.queue.tail())
            .expect("evict on non-empty queue");
        loop {
            let meta = &mut self.arena.node_mut(cur).meta;
            if *meta & VISITED == 0 {
                break;
            }
            *meta &= !VISITED;
            cur = List::newer(&self.arena, cur)
                .or(self.queue.tail())
                .expect("queue non-empty");
        }
        self.hand = List::newer(&self.arena, cur);
        self.queue.unlink(&mut self.arena, cur);
        self.arena.node_mut(cur).meta = 0;
        cur
    }
}

impl Policy for Sieve {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Sieve
    }
    fn entry_overhead(&self) -> u64 {
        std::mem::size_of::<super::list::Node<u8>>() as u64
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn weight(&self) -> u64 {
        self.queue.weight()
    }
    fn len(&self) -> usize {
        self.queue.len()
    }
    fn contains(&self, h: Handle) -> bool {
        self.arena.get(h).is_some_and(|n| n.meta & RESIDENT != 0)
    }
    fn on_hit(&mut self, h: Handle) {
        self.arena.node_mut(h).meta |= VISITED;
    }
    fn insert(&mut self, h: Handle, _hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.arena.ensure(h);
        let n = self.arena.node_mut(h);
        n.weight = weight;
        n.meta = RESIDENT;
        // Make room first so the newcomer is not its own victim unless it cannot fit at all.
        while self.queue.weight() + u64::from(weight) > self.capacity && !self.queue.is_empty() {
            let v = self.evict_one();
            evicted.push(v);
        }
        if u64::from(weight) > self.capacity {
            self.arena.node_mut(h).meta = 0;
            evicted.push(h);
            return;
        }
        self.queue.push_head(&mut self.arena, h);
    }
    fn remove(&mut self, h: Handle) {
        if self.hand == Some(h) {
            self.hand = List::newer(&self.arena, h);
        }
        self.queue.unlink(&mut self.arena, h);
        self.arena.node_mut(h).meta = 0;
    }
    fn clear(&mut self) {
        self.arena.reset();
        self.queue.clear();
        self.hand = None;
    }
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        self.capacity = capacity;
        while self.queue.weight() > capacity {
            let v = self.evict_one();
            evicted.push(v);
        }
    }
    fn heap_bytes(&self) -> u64 {
        self.arena.heap_bytes() as u64
    }
    fn shrink(&mut self, handle_limit: Handle) {
        self.arena.shrink(handle_limit);
    }
    fn relocate(&mut self, from: Handle, to: Handle) {
        self.queue.relocate(&mut self.arena, from, to);
        if self.hand == Some(from) {
            self.hand = Some(to);
        }
    }
    fn check(&self) -> Result<(), String> {
        let mut hand_seen = self.hand.is_none();
        self.queue.check(&self.arena, "sieve", |h, n| {
            hand_seen |= self.hand == Some(h);
            if n.meta & RESIDENT == 0 {
                return Err(format!("sieve: {h} listed but not resident"));
            }
            Ok(())
        })?;
        if !hand_seen {
            return Err("sieve: hand points outside the queue".into());
        }
        if self.queue.weight() > self.capacity {
            return Err("sieve: over capacity".into());
        }
        Ok(())
    }
}
