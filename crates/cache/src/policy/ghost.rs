//! A bounded FIFO set of key hashes ("ghost" entries: keys recently evicted, remembered
//! without their values). Amortised O(1); stale duplicates are discarded as the queue rotates.
//! Must never hold anything but hashes.

use std::collections::{HashMap, VecDeque};

/// Bounded FIFO set of hashes.
#[derive(Debug, Default)]
pub struct Ghost {
    order: VecDeque<(u64, u64)>,
    /// hash -> sequence number of its newest copy in `order`.
    live: HashMap<u64, u64>,
    seq: u64,
}

impl Ghost {
    pub fn push(&mut self, hash: u64, limit: usize) {
        self.seq += 1;
        self.order.push_back((hash, self.seq));
        self.live.insert(hash, self.seq);
        while self.live.len() > limit {
            let Some((h, s)) = self.order.pop_front() else {
                break;
            };
            if self.live.get(&h) == Some(&s) {
                self.live.remove(&h);
            }
        }
        // Stale copies (re-pushed or taken hashes) are discarded as the queue rotates; keep the
        // queue from growing past twice the live set.
        while self.order.len() > 2 * limit.max(1) {
            if let Some((h, s)) = self.order.pop_front() {
                if self.live.get(&h) == Some(&s) {
                    self.live.remove(&h);
                }
            }
        }
    }

    pub fn take(&mut self, hash: u64) -> bool {
        self.live.remove(&hash).is_some()
    }

    pub fn clear(&mut self) {
        self.order.clear();
        self.live.clear();
    }
}

impl Ghost {
    /// Number of live hashes.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Heap bytes held by the queue and the map (estimated from their capacities).
    pub fn heap_bytes(&self) -> usize {
        self.order.capacity() * std::mem::size_of::<(u64, u64)>()
            + super::shadow::table_bytes(self.live.capacity(), std::mem::size_of::<(u64, u64)>())
    }
}
