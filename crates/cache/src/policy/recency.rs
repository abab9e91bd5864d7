//! When was a key last requested, now that it is no longer cached? A compact, lossy table of
//! (16-bit fingerprint, 16-bit epoch) cells, two candidate cells per key, written when an entry
//! leaves the cache with the time of its last request, and read when the key comes back. It
//! remembers the keys that left most recently, about twice as many as it is sized for. Time is
//! the policy's request clock; an epoch is a power of two of requests near a sixty-fourth of
//! the count the table is sized for, so a gap is known to within a sixty-fourth of a turnover.
//!
//! Lossy in the safe direction: a key whose cells were taken by others reads as never seen (a
//! gap longer than any), and a gap is rounded up, so a key never looks more recent than it was
//! (but for a 1-in-65,536 fingerprint match). Nothing happens on a hit. Must never allocate
//! except when resized (grown with the resident count, shrunk when it falls far below), and
//! never hold anything but fingerprints and epochs. O(1) per write and read; epochs wrap after
//! 65,536, and cells half that old are forgotten before they alias (a sweep every 32,768 epochs,
//! amortised O(1)).

/// Epochs per count the table is sized for (rounded to a power of two of requests): how finely
/// gaps are measured against how long before the 16-bit epochs wrap (1,024 such counts).
const EPOCHS_PER_TURNOVER: usize = 64;
/// A cell that was never written.
const EMPTY: u32 = 0;

fn mix(hash: u64, seed: u64) -> u64 {
    let x = (hash ^ seed).wrapping_mul(0x9FB2_1C65_1E98_DF25);
    x ^ (x >> 28)
}

/// Last-request epochs of keys that left the cache.
#[derive(Debug)]
pub struct Recency {
    cells: Vec<u32>,
    /// log2 of the requests per epoch.
    shift: u32,
    /// The epoch of the last sweep for cells old enough to alias.
    swept: u16,
    sized_for: usize,
    floor: usize,
}

impl Recency {
    /// A table sized for about `entries` resident keys (two cells each).
    pub fn new(entries: usize) -> Self {
        let sized_for = entries.max(16).next_power_of_two();
        Self {
            cells: vec![EMPTY; 2 * sized_for],
            shift: (sized_for / EPOCHS_PER_TURNOVER).max(1).trailing_zeros(),
            swept: 0,
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

    fn epoch(&self, clock: u32) -> u16 {
        // Epoch 0 marks nothing: cells are told from EMPTY by their fingerprint.
        (clock >> self.shift) as u16
    }

    #[inline]
    fn slots(&self, hash: u64) -> (usize, usize, u32) {
        let mask = self.cells.len() - 1;
        // One mix gives both cells and the fingerprint: bits from 0, bits from 24, the top 16.
        let m = mix(hash, 0xB492_B66F_BE98_F273);
        let fp = ((m >> 48) as u32).max(1) << 16;
        (m as usize & mask, (m >> 24) as usize & mask, fp)
    }

    /// Remember that `hash` left the cache, last requested at request clock `at`; `now` is the
    /// clock now.
    pub fn record(&mut self, hash: u64, at: u32, now: u32) {
        self.sweep(now);
        let (a, b, fp) = self.slots(hash);
        let now_epoch = self.epoch(now);
        let age = |c: u32| {
            if c == EMPTY {
                u32::MAX
            } else {
                u32::from(now_epoch.wrapping_sub(c as u16))
            }
        };
        let mine = |c: u32| c & 0xFFFF_0000 == fp;
        let slot = if mine(self.cells[a]) {
            a
        } else if mine(self.cells[b]) {
            b
        } else if age(self.cells[a]) >= age(self.cells[b]) {
            a
        } else {
            b
        };
        self.cells[slot] = fp | u32::from(self.epoch(at));
    }

    /// Requests from `hash`'s last request before it left to `now`, rounded up to whole
    /// epochs; `None` if the table does not remember it.
    pub fn gap(&self, hash: u64, now: u32) -> Option<u64> {
        let (a, b, fp) = self.slots(hash);
        let now_epoch = self.epoch(now);
        [a, b]
            .into_iter()
            .map(|s| self.cells[s])
            .find(|&c| c != EMPTY && c & 0xFFFF_0000 == fp)
            .map(|c| (u64::from(now_epoch.wrapping_sub(c as u16)) + 1) << self.shift)
    }

    /// Every 32,768 epochs, forget cells written half the epoch range ago or more, before
    /// they alias.
    fn sweep(&mut self, now: u32) {
        let epoch = self.epoch(now);
        if epoch.wrapping_sub(self.swept) < 0x8000 {
            return;
        }
        self.swept = epoch;
        for c in &mut self.cells {
            if *c != EMPTY && epoch.wrapping_sub(*c as u16) >= 0x8000 {
                *c = EMPTY;
            }
        }
    }

    /// Check the invariants: two cells per key sized for (a power of two), an epoch length
    /// that matches that size, nothing below the size it was built with.
    pub fn check(&self) -> Result<(), String> {
        let want = (self.sized_for / EPOCHS_PER_TURNOVER)
            .max(1)
            .trailing_zeros();
        if !self.sized_for.is_power_of_two()
            || self.cells.len() != 2 * self.sized_for
            || self.shift != want
            || self.sized_for < self.floor
        {
            return Err(format!(
                "recency: {} cells, sized for {} (floor {}), shift {}",
                self.cells.len(),
                self.sized_for,
                self.floor,
                self.shift
            ));
        }
        Ok(())
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
        assert_eq!(r.gap(7, 0), None);
        r.record(7, 5, 5);
        let g = r.gap(7, 15).expect("remembered");
        assert!(g >= 10, "gap {g} shorter than the 10 requests since");
        assert_eq!(r.gap(8, 15), None);
    }

    #[test]
    fn the_oldest_of_two_cells_is_replaced() {
        let mut r = Recency::new(16);
        // Many more keys than cells: the most recent ones are still known.
        for k in 0..1_000u32 {
            r.record(u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15), k, k);
        }
        let known = (990..1_000u64)
            .filter(|k| {
                r.gap(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1_000)
                    .is_some()
            })
            .count();
        assert!(known >= 8, "only {known} of the last 10 keys remembered");
    }

    #[test]
    fn old_cells_are_forgotten_before_they_alias() {
        let mut r = Recency::new(16);
        r.record(7, 0, 0);
        // Far past the epoch range: the sweep must have dropped the cell.
        let later = 0x9000u32 << r.shift;
        r.record(8, later, later);
        assert_eq!(r.gap(7, later), None);
    }
}
