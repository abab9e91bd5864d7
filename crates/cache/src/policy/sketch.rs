//! Frequency sketch for TinyLFU admission: a count-min sketch of 4-bit counters (4 rows folded
//! into one table, conservative update) in front of which sits a doorkeeper bit set, so keys seen
//! once only cost a bit. The table has two 64-bit words per expected key. Aging: after `sample`
//! (20 x words) additions every counter is halved and the
//! doorkeeper is cleared. Estimates may over-count (hash collisions), never under-count since the
//! last aging. Must never allocate except when resized (grown with the resident count, shrunk
//! when it falls far below what the sketch was sized for).

const SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
];

/// Count-min sketch with doorkeeper and periodic halving.
#[derive(Debug)]
pub struct Sketch {
    table: Vec<u64>,
    door: Vec<u64>,
    additions: u64,
    sample: u64,
    sized_for: usize,
    /// `sized_for` at construction: `shrink` goes no lower.
    floor: usize,
}

fn mix(hash: u64, seed: u64) -> u64 {
    let x = (hash ^ seed).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^ (x >> 29)
}

impl Sketch {
    /// A sketch sized for about `entries` distinct hot keys.
    pub fn new(entries: usize) -> Self {
        // Two words (32 counters, i.e. 8 keys' worth of 4 counters) per expected key.
        let words = (entries.max(16) * 2).next_power_of_two();
        Self {
            table: vec![0; words],
            door: vec![0; (words / 4).max(1)], // 32 doorkeeper bits per expected key
            additions: 0,
            sample: 20 * words as u64,
            sized_for: words / 2,
            floor: words / 2,
        }
    }

    /// Grow (and reset) the sketch once more than it was sized for are resident, to the size
    /// `new` gives that many: the power-of-two rounding is the headroom (so resets come at
    /// doublings), and a grown sketch has the same 2-4 words per entry as one sized up front.
    pub fn ensure(&mut self, entries: usize) {
        if entries > self.sized_for {
            *self = Self {
                floor: self.floor,
                ..Self::new(entries)
            };
        }
    }

    /// Shrink (and reset) the sketch once it is sized for more than eight times `entries`,
    /// to the size `new` gives twice `entries` (room to grow back without a reset), never
    /// below its size at construction.
    pub fn shrink(&mut self, entries: usize) {
        if self.sized_for > self.floor && self.sized_for > 8 * entries {
            *self = Self {
                floor: self.floor,
                ..Self::new((entries * 2).max(self.floor))
            };
        }
    }

    /// Heap bytes of the table and the doorkeeper.
    pub fn heap_bytes(&self) -> u64 {
        ((self.table.capacity() + self.door.capacity()) * 8) as u64
    }

    fn door_bits(&self, hash: u64) -> [(usize, u64); 2] {
        let mask = self.door.len() * 64 - 1;
        let a = mix(hash, 0x2545_F491_4F6C_DD1D) as usize & mask;
        let b = mix(hash, 0x5851_F42D_4C95_7F2D) as usize & mask;
        [(a / 64, 1 << (a % 64)), (b / 64, 1 << (b % 64))]
    }

    /// The four counters of `hash`: table word and bit shift of each.
    fn counters(&self, hash: u64) -> [(usize, u32); 4] {
        let mask = self.table.len() - 1;
        let mut out = [(0, 0); 4];
        for (i, seed) in SEEDS.iter().enumerate() {
            let m = mix(hash, *seed);
            out[i] = ((m >> 8) as usize & mask, (m & 15) as u32 * 4);
        }
        out
    }

    fn counter(&self, (w, shift): (usize, u32)) -> u64 {
        (self.table[w] >> shift) & 15
    }

    /// Record one access.
    pub fn increment(&mut self, hash: u64) {
        self.additions += 1;
        if self.additions >= self.sample {
            self.age();
        }
        let bits = self.door_bits(hash);
        if bits.iter().any(|&(w, b)| self.door[w] & b == 0) {
            for (w, b) in bits {
                self.door[w] |= b;
            }
            return;
        }
        let counters = self.counters(hash);
        let min = counters
            .iter()
            .map(|&s| self.counter(s))
            .min()
            .unwrap_or(15);
        if min == 15 {
            return;
        }
        for s in counters {
            if self.counter(s) == min {
                self.table[s.0] += 1 << s.1;
            }
        }
    }

    /// Estimated accesses since the last aging (plus one if the doorkeeper has seen it).
    pub fn estimate(&self, hash: u64) -> u32 {
        let counters = self.counters(hash);
        let min = counters.iter().map(|&s| self.counter(s)).min().unwrap_or(0) as u32;
        let door = self
            .door_bits(hash)
            .iter()
            .all(|&(w, b)| self.door[w] & b != 0);
        min + u32::from(door)
    }

    fn age(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.door.iter_mut().for_each(|w| *w = 0);
        self.additions /= 2;
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.table.iter_mut().for_each(|w| *w = 0);
        self.door.iter_mut().for_each(|w| *w = 0);
        self.additions = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
    }

    #[test]
    fn estimates_never_undercount_and_saturate_at_fifteen() {
        let mut s = Sketch::new(4096);
        // Key i is seen i % 20 times: the doorkeeper takes the first, the counters the rest.
        for i in 0..2_000u64 {
            for _ in 0..i % 20 {
                s.increment(hash(i));
            }
        }
        for i in 0..2_000u64 {
            let seen = (i % 20) as u32;
            assert!(s.estimate(hash(i)) >= seen.min(16), "key {i}");
        }
        let hot = hash(1_000_000);
        for _ in 0..100 {
            s.increment(hot);
        }
        assert_eq!(s.estimate(hot), 16, "15 counted plus the doorkeeper");
        s.age();
        assert_eq!(s.estimate(hot), 7, "halved, doorkeeper cleared");
    }
}
