//! Least-frequently-used with exact in-cache counts, in O(1) per operation: entries sit in
//! per-frequency buckets kept in a chain sorted by frequency (the "O(1) LFU" layout), the victim
//! is the least recently touched entry of the lowest bucket. There is no aging and a count is
//! forgotten when its entry leaves (this matches the classic LFU that simulators report). Must
//! never scan more than one bucket per operation.

use super::api::{Handle, Policy};
use super::kind::PolicyKind;
use super::list::{Arena, List, NIL};

#[derive(Clone, Copy, Debug)]
struct Bucket {
    freq: u32,
    entries: List,
    /// Neighbouring buckets (lower / higher frequency).
    lower: u32,
    higher: u32,
}

/// LFU policy.
#[derive(Debug)]
pub struct Lfu {
    /// Entry node meta = index of its bucket, `NIL` when not resident.
    arena: Arena<BucketIdx>,
    buckets: Vec<Bucket>,
    free_buckets: Vec<u32>,
    lowest: u32,
    weight: u64,
    len: usize,
    capacity: u64,
}

/// Bucket index of a node (`NIL` = not resident).
#[derive(Clone, Copy, Debug)]
struct BucketIdx(u32);

impl Default for BucketIdx {
    fn default() -> Self {
        BucketIdx(NIL)
    }
}

impl Lfu {
    /// An empty LFU with the given weight capacity.
    pub fn new(capacity: u64) -> Self {
        Self {
            arena: Arena::default(),
            buckets: Vec::new(),
            free_buckets: Vec::new(),
            lowest: NIL,
            weight: 0,
            len: 0,
            capacity,
        }
    }

    /// Create a bucket for `freq` right above `lower` (or at the bottom if `lower == NIL`).
    fn new_bucket(&mut self, freq: u32, lower: u32) -> u32 {
        let higher = if lower == NIL {
            self.lowest
        } else {
            self.buckets[lower as usize].higher
        };
        let b = Bucket {
            freq,
            entries: List::default(),
            lower,
            higher,
        };
        let idx = match self.free_buckets.pop() {
            Some(i) => {
                self.buckets[i as usize] = b;
                i
            }
            None => {
                self.buckets.push(b);
                (self.buckets.len() - 1) as u32
            }
        };
        if lower == NIL {
            self.lowest = idx;
        } else {
            self.buckets[lower as usize].higher = idx;
        }
        if higher != NIL {
            self.buckets[higher as usize].lower = idx;
        }
        idx
    }

    fn drop_bucket_if_empty(&mut self, b: u32) {
        let Bucket {
            entries,
            lower,
            higher,
            ..
        } = self.buckets[b as usize];
        if !entries.is_empty() {
            return;
        }
        if lower == NIL {
            self.lowest = higher;
        } else {
            self.buckets[lower as usize].higher = higher;
        }
        if higher != NIL {
            self.buckets[higher as usize].lower = lower;
        }
        self.free_buckets.push(b);
    }

    /// Evict from the lowest bucket until `extra` more weight fits.
    fn make_room(&mut self, extra: u64, evicted: &mut Vec<Handle>) {
        while self.weight + extra > self.capacity && self.lowest != NIL {
            let v = self.buckets[self.lowest as usize]
                .entries
                .tail()
                .expect("non-empty buckets only");
            self.remove(v);
            evicted.push(v);
        }
    }

    fn detach(&mut self, h: Handle) -> u32 {
        let b = self.arena.node(h).meta.0;
        self.buckets[b as usize].entries.unlink(&mut self.arena, h);
        b
    }
}

impl Policy for Lfu {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Lfu
    }
    fn entry_overhead(&self) -> u64 {
        // Node plus (at worst) one bucket per entry amortised to a quarter.
        (std::mem::size_of::<super::list::Node<BucketIdx>>() + std::mem::size_of::<Bucket>() / 4)
            as u64
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn weight(&self) -> u64 {
        self.weight
    }
    fn len(&self) -> usize {
        self.len
    }
    fn contains(&self, h: Handle) -> bool {
        self.arena.get(h).is_some_and(|n| n.meta.0 != NIL)
    }
    fn on_hit(&mut self, h: Handle) {
        let b = self.arena.node(h).meta.0;
        let Bucket { freq, higher, .. } = self.buckets[b as usize];
        // Hits never allocate: the shard charges what the structures hold after inserts. A hit
        // that would need a new bucket when the free list is empty and the buckets are at
        // capacity keeps its count, as a saturated one does (the insert path leaves a quarter
        // of spare buckets, so only a run of hits making that many new frequencies between two
        // inserts gets here).
        let promote = higher != NIL && self.buckets[higher as usize].freq == freq + 1
            || !self.free_buckets.is_empty()
            || self.buckets.len() < self.buckets.capacity();
        if freq == u32::MAX || !promote {
            self.buckets[b as usize]
                .entries
                .move_to_head(&mut self.arena, h);
            return;
        }
        self.detach(h);
        let target = if higher != NIL && self.buckets[higher as usize].freq == freq + 1 {
            higher
        } else {
            self.new_bucket(freq + 1, b)
        };
        self.buckets[target as usize]
            .entries
            .push_head(&mut self.arena, h);
        self.arena.node_mut(h).meta = BucketIdx(target);
        self.drop_bucket_if_empty(b);
    }
    fn insert(&mut self, h: Handle, _hash: u64, weight: u32, evicted: &mut Vec<Handle>) {
        self.arena.ensure(h);
        if u64::from(weight) > self.capacity {
            evicted.push(h);
            return;
        }
        self.make_room(u64::from(weight), evicted);
        let low = self.lowest;
        let target = if low != NIL && self.buckets[low as usize].freq == 1 {
            low
        } else {
            self.new_bucket(1, NIL)
        };
        let n = self.arena.node_mut(h);
        n.weight = weight;
        n.meta = BucketIdx(target);
        self.buckets[target as usize]
            .entries
            .push_head(&mut self.arena, h);
        self.weight += u64::from(weight);
        self.len += 1;
        // Room for hits to make new buckets without allocating (see `on_hit`): a quarter more
        // than there are, and a free list as long as the buckets can be.
        let spare = self.buckets.len() / 4 + 1;
        if self.buckets.capacity() < self.buckets.len() + spare {
            self.buckets.reserve(spare);
        }
        if self.free_buckets.capacity() < self.buckets.capacity() {
            self.free_buckets
                .reserve(self.buckets.capacity() - self.free_buckets.len());
        }
    }
    fn remove(&mut self, h: Handle) {
        let w = u64::from(self.arena.node(h).weight);
        let b = self.detach(h);
        self.arena.node_mut(h).meta = BucketIdx(NIL);
        self.drop_bucket_if_empty(b);
        self.weight -= w;
        self.len -= 1;
    }
    fn clear(&mut self) {
        self.arena.reset();
        self.buckets.clear();
        self.free_buckets.clear();
        self.lowest = NIL;
        self.weight = 0;
        self.len = 0;
    }
    fn set_capacity(&mut self, capacity: u64, evicted: &mut Vec<Handle>) {
        self.capacity = capacity;
        self.make_room(0, evicted);
    }
    fn heap_bytes(&self) -> u64 {
        (self.arena.heap_bytes()
            + self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self.free_buckets.capacity() * 4) as u64
    }
    fn shrink(&mut self, handle_limit: Handle) {
        self.arena.shrink(handle_limit);
    }
    fn relocate(&mut self, from: Handle, to: Handle) {
        let b = self.arena.node(from).meta.0;
        self.buckets[b as usize]
            .entries
            .relocate(&mut self.arena, from, to);
    }
    fn check(&self) -> Result<(), String> {
        let (mut len, mut weight) = (0usize, 0u64);
        let mut b = self.lowest;
        let mut prev = NIL;
        let mut last_freq = 0u32;
        while b != NIL {
            let bucket = &self.buckets[b as usize];
            if bucket.lower != prev || bucket.freq <= last_freq || bucket.entries.is_empty() {
                return Err(format!("lfu: bucket chain broken at {b}"));
            }
            bucket.entries.check(&self.arena, "lfu bucket", |h, n| {
                if n.meta.0 == b {
                    Ok(())
                } else {
                    Err(format!("lfu: {h} in bucket {b} but points to {}", n.meta.0))
                }
            })?;
            len += bucket.entries.len();
            weight += bucket.entries.weight();
            last_freq = bucket.freq;
            prev = b;
            b = bucket.higher;
        }
        if len != self.len || weight != self.weight || weight > self.capacity {
            return Err(format!(
                "lfu: buckets hold {len}/{weight}, recorded {}/{} cap {}",
                self.len, self.weight, self.capacity
            ));
        }
        Ok(())
    }
}
