//! A bounded FIFO set of key hashes ("ghost" entries: keys recently evicted, remembered
//! without their values). Amortised O(1); stale duplicates are discarded as the queue rotates.
//! Must never hold anything but hashes.

use hashbrown::HashMap;
use std::collections::VecDeque;

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
        self.trim(limit);
    }

    /// Forget the oldest hashes beyond `limit`, and stale copies beyond twice that.
    fn trim(&mut self, limit: usize) {
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

    /// Trim to `limit` and, once the buffers hold more than four times what that needs, give
    /// the rest back (they grow by doubling, so shrinks and growths are a factor apart).
    pub fn shrink(&mut self, limit: usize) {
        self.trim(limit);
        let limit = limit.max(16);
        if self.live.capacity() > 4 * limit {
            self.live.shrink_to(2 * limit);
        }
        if self.order.capacity() > 8 * limit {
            self.order.shrink_to(4 * limit);
        }
    }

    /// Heap bytes of the queue and the map.
    pub fn heap_bytes(&self) -> u64 {
        (self.order.capacity() * std::mem::size_of::<(u64, u64)>() + self.live.allocation_size())
            as u64
    }
}

impl Ghost {
    /// Number of live hashes.
    pub fn len(&self) -> usize {
        self.live.len()
    }
}
