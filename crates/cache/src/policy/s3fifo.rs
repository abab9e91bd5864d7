//! S3-FIFO: a small FIFO (10% of capacity) that filters one-hit wonders, a main FIFO with a
//! 2-bit reinsertion counter, and a ghost FIFO of hashes of entries recently evicted from the
//! small queue (a ghost hit inserts straight into main). All queues are FIFO, so every operation
//! is amortised O(1): an entry can be reinserted at most 3 times per hit it received.
//! Must never move an entry on a hit (hits only bump the counter).

use super::api::{Handle, Policy};
use super::ghost::Ghost;
use super::kind::PolicyKind;
use super::list::{Arena, List};

/// Hits an entry needs while in the small queue to be promoted to main instead of evicted.
const MOVE_TO_MAIN: u8 = 1;
const MAX_FREQ: u8 = 3;

#[derive(Clone, Copy, Debug, Default)]
struct Meta {
    hash: u64,
    /// 0 = not resident, 1 = small, 2 = main.
    queue: u8,
    freq: u8,
}

/// S3-FIFO policy.
#[derive(Debug)]
pub struct S3Fifo {
    arena: Arena<Meta>,
    small: List,
    main: List,
    ghost: Ghost,
    capacity: u64,
    small_cap: u64,
}

impl S3Fifo {
    /// An empty S3-FIFO with the given weight capacity.
    pub fn new(capacity: u64) -> Self {
        Self {
            arena: Arena::default(),
            small: List::default(),
            main: List::default(),
            ghost: Ghost::default(),
            capacity,
            small_cap: (capacity / 10).max(1),
        }
    }

    fn total(&self) -> u64 {
        self.small.weight() + self.main.weight()
    }

    fn ghost_limit(&self) -> usize {
        // As many ghosts as there are resident entries (90% ghost ratio of a 100% cache, rounded up).
        (self.small.len() + self.main.len()).max(16)
    }

    /// Evict exactly one entry.
    fn evict_one(&mut self) -> Handle {
        loop {
            if self.small.weight() > self.small_cap || self.main.is_empty() {
                if let Some(t) = self.small.tail() {
                    self.small.unlink(&mut self.arena, t);
                    let m = &mut self.arena.node_mut(t).meta;
                    if m.freq >= MOVE_TO_MAIN {
                        m.queue = 2;
                        m.freq = 0;
                        self.main.push_head(&mut self.arena, t);
                        continue;
                    }
                    let hash = m.hash;
                    m.queue = 0;
                    let limit = self.ghost_limit();
                    self.ghost.push(hash, limit);
                    return t;
                }
            }
            let t = self.main.tail().expect("evicting from a non-empty cache");
            self.main.unlink(&mut self.arena, t);
            let m = &mut self.arena.node_mut(t).meta;
            if m.freq > 0 {
                m.freq -= 1;
                self.main.push_head(&mut self.arena, t);
                continue;
            }
            m.queue = 0;
            return t;
        }
    }
}

impl Policy for S3Fifo {
    fn kind(&self) -> PolicyKind {
        PolicyKind::S3Fifo
    }
    fn entry_overhead(&self) -> u64 {
        // Node, plus one ghost per entry: a queue pair and a map bucket with its control byte.
        (std::mem::size_of::<super::list::Node<Meta>>() + 16 + 17) as u64
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn weight(&self) -> u64 {
        self.total()
    }
    fn len(&self) -> usize {
        self.small.len() + self.main.len()
    }
    fn contains(&self, h: Handle) -> bool {
        self.arena.get(h).is_some_and(|n| n.meta.queue != 0)
    }
    fn on_hit(&mut self, h: Handle) {
        let m = &mut self.arena.node_mut(h).meta;
        m.freq = (m.freq + 1).min(MAX_FREQ);
    }
    fn insert(&mut self, h: Handle, hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.arena.ensure(h);
        if u64::from(weight) > self.capacity {
            evicted.push(h);
            return;
        }
        let had_room = self.total() + u64::from(weight) <= self.capacity;
        while self.total() + u64::from(weight) > self.capacity {
            let v = self.evict_one();
            evicted.push(v);
        }
        // A ghost hit goes to main; so does a newcomer while the small queue is full but the
        // cache still has room (warm-up), which keeps main from starting empty.
        let to_main = self.ghost.take(hash) || (had_room && self.small.weight() >= self.small_cap);
        let n = self.arena.node_mut(h);
        n.weight = weight;
        n.meta = Meta {
            hash,
            queue: if to_main { 2 } else { 1 },
            freq: 0,
        };
        if to_main {
            self.main.push_head(&mut self.arena, h);
        } else {
            self.small.push_head(&mut self.arena, h);
        }
    }
    fn remove(&mut self, h: Handle) {
        match self.arena.node(h).meta.queue {
            1 => self.small.unlink(&mut self.arena, h),
            _ => self.main.unlink(&mut self.arena, h),
        }
        self.arena.node_mut(h).meta.queue = 0;
    }
    fn clear(&mut self) {
        self.arena.reset();
        self.small.clear();
        self.main.clear();
        self.ghost.clear();
    }
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        self.capacity = capacity;
        self.small_cap = (capacity / 10).max(1);
        while self.total() > capacity {
            let v = self.evict_one();
            evicted.push(v);
        }
    }
    fn heap_bytes(&self) -> u64 {
        self.arena.heap_bytes() as u64 + self.ghost.heap_bytes()
    }
    fn shrink(&mut self, handle_limit: Handle) {
        self.arena.shrink(handle_limit);
        self.ghost.shrink(self.ghost_limit());
    }
    fn relocate(&mut self, from: Handle, to: Handle) {
        match self.arena.node(from).meta.queue {
            1 => self.small.relocate(&mut self.arena, from, to),
            _ => self.main.relocate(&mut self.arena, from, to),
        }
    }
    fn check(&self) -> Result<(), String> {
        for (list, q, name) in [
            (&self.small, 1, "s3fifo small"),
            (&self.main, 2, "s3fifo main"),
        ] {
            list.check(&self.arena, name, |h, n| {
                if n.meta.queue == q && n.meta.freq <= MAX_FREQ {
                    Ok(())
                } else {
                    Err(format!("{name}: {h} has queue {}", n.meta.queue))
                }
            })?;
        }
        if self.total() > self.capacity {
            return Err("s3fifo: over capacity".into());
        }
        Ok(())
    }
}
