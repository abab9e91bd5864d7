//! When was a key last requested? A compact, lossy table of (16-bit fingerprint, 16-bit epoch)
//! cells, two candidate cells per key, that remembers the most recent requests of roughly
//! twice as many keys as it is sized for, resident or not. An epoch is a sixty-fourth of the
//! resident count in requests, so a gap is known to within a sixty-fourth of a cache turnover.
//!
//! Lossy in the safe direction: a key whose cells were taken by others reads as never seen (a
//! gap longer than any), and a gap is rounded up, so a key never looks more recent than it was
//! (but for a 1-in-65,536 fingerprint match). Must never allocate except when resized (grown
//! with the resident count, shrunk when it falls far below), and never hold anything but
//! fingerprints and epochs. O(1) per request; epochs wrap after 65,536, and a sweep every
//! 32,768 epochs forgets cells old enough to alias (amortised O(1)).

/// Epochs per resident count: how finely gaps are measured.
const EPOCHS_PER_TURNOVER: u64 = 64;
/// A cell that was never written (epoch 0 is skipped when the counter wraps).
const EMPTY: u32 = 0;

fn mix(hash: u64, seed: u64) -> u64 {
    let x = (hash ^ seed).wrapping_mul(0x9FB2_1C65_1E98_DF25);
    x ^ (x >> 28)
}

/// Last-request epochs of recently requested keys.
#[derive(Debug)]
pub struct Recency {
    cells: Vec<u32>,
    /// Current epoch (never 0).
    epoch: u16,
    /// Requests per epoch, and requests so far in this one.
    tick: u64,
    count: u64,
    sized_for: usize,
    floor: usize,
}

impl Recency {
    /// A table sized for about `entries` resident keys (two cells each).
    pub fn new(entries: usize) -> Self {
        let sized_for = entries.max(16).next_power_of_two();
        Self {
            cells: vec![EMPTY; 2 * sized_for],
            epoch: 1,
            tick: 1,
            count: 0,
            sized_for,
            floor: sized_for,
        }
    }

    /// Grow (and forget) once more keys than it was sized for are resident.
    pub fn ensure(&mut self, entries: usize) {
        if entries > self.sized_for {
            let floor = self.floor;
            *self = Self::new(entries);
            self.floor = floor;
        }
    }

    /// Shrink (and forget) once sized for more than eight times `entries`.
    pub fn shrink(&mut self, entries: usize) {
        if self.sized_for > self.floor && self.sized_for > 8 * entries {
            let floor = self.floor;
            *self = Self::new((entries * 2).max(floor));
            self.floor = floor;
        }
    }

    /// Heap bytes of the cells.
    pub fn heap_bytes(&self) -> u64 {
        (self.cells.capacity() * 4) as u64
    }

    /// Count one request; `resident` sets the epoch's length when a new epoch starts.
    #[inline]
    pub fn advance(&mut self, resident: usize) {
        self.count += 1;
        if self.count >= self.tick {
            self.count = 0;
            self.tick = (resident as u64 / EPOCHS_PER_TURNOVER).max(1);
            self.epoch = self.epoch.wrapping_add(1).max(1);
            if self.epoch.is_multiple_of(0x8000) {
                self.forget_old();
            }
        }
    }

    fn slots(&self, hash: u64) -> (usize, usize, u32) {
        let mask = self.cells.len() - 1;
        let m = mix(hash, 0xB492_B66F_BE98_F273);
        let fp = ((m >> 48) as u32).max(1) << 16;
        let a = m as usize & mask;
        let b = mix(hash, 0x2127_599B_F432_5C37) as usize & mask;
        (a, b, fp)
    }

    /// Remember that `hash` is requested now.
    #[inline]
    pub fn record(&mut self, hash: u64) {
        let (a, b, fp) = self.slots(hash);
        let now = fp | u32::from(self.epoch);
        let mine = |c: u32| c & 0xFFFF_0000 == fp;
        let slot = if mine(self.cells[a]) {
            a
        } else if mine(self.cells[b]) {
            b
        } else if self.age(self.cells[a]) >= self.age(self.cells[b]) {
            a
        } else {
            b
        };
        self.cells[slot] = now;
    }

    /// Epochs since a cell was written (`u32::MAX` if empty).
    fn age(&self, cell: u32) -> u32 {
        if cell == EMPTY {
            return u32::MAX;
        }
        u32::from(self.epoch.wrapping_sub(cell as u16))
    }

    /// Requests since `hash` was last recorded, rounded up to whole epochs; `None` if the
    /// table does not remember it.
    pub fn gap(&self, hash: u64) -> Option<u64> {
        let (a, b, fp) = self.slots(hash);
        [a, b]
            .into_iter()
            .map(|s| self.cells[s])
            .find(|&c| c != EMPTY && c & 0xFFFF_0000 == fp)
            .map(|c| (u64::from(self.age(c)) + 1) * self.tick)
    }

    /// Forget cells written half the epoch range ago or more, before they alias.
    fn forget_old(&mut self) {
        let epoch = self.epoch;
        for c in &mut self.cells {
            if *c != EMPTY && epoch.wrapping_sub(*c as u16) >= 0x8000 {
                *c = EMPTY;
            }
        }
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.cells.iter_mut().for_each(|c| *c = EMPTY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_rounded_up_and_unknown_keys_are_none() {
        let mut r = Recency::new(16);
        assert_eq!(r.gap(7), None);
        r.record(7);
        for _ in 0..10 {
            r.advance(1);
        }
        let g = r.gap(7).expect("remembered");
        assert!(g >= 10, "gap {g} shorter than the 10 requests since");
        assert_eq!(r.gap(8), None);
    }

    #[test]
    fn the_oldest_of_two_cells_is_replaced() {
        let mut r = Recency::new(16);
        // Many more keys than cells: the most recent ones are still known.
        for k in 0..1_000u64 {
            r.record(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            r.advance(16);
        }
        let known = (990..1_000u64)
            .filter(|k| r.gap(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)).is_some())
            .count();
        assert!(known >= 8, "only {known} of the last 10 keys remembered");
    }
}
