//! A Fenwick tree (binary indexed tree): prefix sums over positions with point updates, both
//! in O(log n). What LRU stack distances are computed with, offline (`simulate::stack`) and in
//! the running proxy (`cachelayer::mrc`): positions are use times, values the bytes of the
//! entry last used then. Plain data; never grows by itself.

/// Prefix sums over positions `0..len`, with point updates.
pub struct Fenwick {
    tree: Vec<i64>,
    total: i64,
}

impl Fenwick {
    pub fn new(n: usize) -> Self {
        Fenwick {
            tree: vec![0; n + 1],
            total: 0,
        }
    }

    /// Positions it has.
    pub fn positions(&self) -> usize {
        self.tree.len() - 1
    }

    /// Adds `v` at `pos` (below [`Fenwick::positions`]).
    pub fn add(&mut self, pos: usize, v: i64) {
        self.total += v;
        let mut i = pos + 1;
        while i < self.tree.len() {
            self.tree[i] += v;
            i += i & i.wrapping_neg();
        }
    }

    /// The sum of positions `0..pos`.
    pub fn prefix(&self, pos: usize) -> i64 {
        let (mut i, mut s) = (pos, 0);
        while i > 0 {
            s += self.tree[i];
            i &= i - 1;
        }
        s
    }

    /// The sum of positions after `pos`.
    pub fn after(&self, pos: usize) -> i64 {
        self.total - self.prefix(pos + 1)
    }

    /// Every position back to 0.
    pub fn clear(&mut self) {
        self.tree.iter_mut().for_each(|v| *v = 0);
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Fenwick;

    #[test]
    fn sums_match_a_plain_array() {
        let mut f = Fenwick::new(37);
        let mut plain = [0i64; 37];
        for (i, v) in (0..200).map(|i| ((i * 7) % 37, (i % 11) as i64 - 3)) {
            f.add(i, v);
            plain[i] += v;
        }
        for pos in 0..37 {
            assert_eq!(f.prefix(pos), plain[..pos].iter().sum::<i64>());
            assert_eq!(f.after(pos), plain[pos + 1..].iter().sum::<i64>());
        }
        f.clear();
        assert_eq!((f.after(0), f.prefix(37), f.positions()), (0, 0, 37));
    }
}
