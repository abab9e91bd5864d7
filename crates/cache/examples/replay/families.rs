//! Workload families: traces generated from a few parameters and a seed, at a given capacity,
//! for the shapes the shared traces lack (phase changes, reshuffled popularity, loops just over
//! the capacity, one-hit-wonder bursts, mixed sizes). Each marks where its final phase starts.
//! The development half and the held-out half use different parameters, capacities and seeds.
//! Must never look at a policy: a family is data only.

use super::traces::{zipf_cdf, zipf_draw, Rng, Set, Trace};

/// The shape of a family.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Ids 0..5C read twice in order (a scan of five caches' worth), then a hot set of
    /// `hot_pct`% of the capacity read three times, each pass in a new random order. `overlap`:
    /// the hot ids are drawn from the scanned ones; otherwise they are new. Final phase: the
    /// third hot pass (the hot set should be resident within two).
    ScanHot { hot_pct: u64, overlap: bool },
    /// Zipf(`alpha`) over 10C objects, 30C requests; every `period`·C requests the ranking is
    /// reshuffled (a new random assignment of popularity to the same objects). Final phase:
    /// the last period.
    ZipfShift { alpha: f64, period: f64 },
    /// A loop over `factor`·C objects, ten times. Final phase: the last loop.
    Loop { factor: f64 },
    /// Zipf(`alpha`) over 10C objects, 30C requests, with a burst of `burst`·C ids never seen
    /// before or after every `period`·C requests. Final phase: from the last burst on.
    ZipfBurst { alpha: f64, period: f64, burst: f64 },
}

/// One family: a shape, whether entries have mixed weights, and the half it belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub shape: Shape,
    /// Weights drawn log-uniformly from 1..=64 per object (mean about 15); the capacity is C
    /// times [`MEAN_WEIGHT`], so about C objects fit.
    pub sized: bool,
    pub set: Set,
}

/// Capacity multiplier for sized families (the mean of the weight distribution, rounded).
pub const MEAN_WEIGHT: u64 = 15;

/// Capacities (in objects) each family is generated at.
pub fn capacities(set: Set) -> &'static [u64] {
    match set {
        Set::Dev => &[1_000, 30_000],
        Set::Held => &[4_000, 60_000],
    }
}

/// Every family, development half first.
pub fn all() -> Vec<Spec> {
    use Set::{Dev, Held};
    use Shape::*;
    let plain = |shape, set| Spec {
        shape,
        sized: false,
        set,
    };
    let sized = |shape, set| Spec {
        shape,
        sized: true,
        set,
    };
    let scan = |hot_pct, overlap| ScanHot { hot_pct, overlap };
    vec![
        plain(scan(10, true), Dev),
        plain(scan(10, false), Dev),
        plain(scan(50, true), Dev),
        plain(scan(50, false), Dev),
        plain(
            ZipfShift {
                alpha: 0.9,
                period: 5.0,
            },
            Dev,
        ),
        plain(Loop { factor: 1.01 }, Dev),
        plain(Loop { factor: 1.5 }, Dev),
        plain(
            ZipfBurst {
                alpha: 0.9,
                period: 5.0,
                burst: 1.0,
            },
            Dev,
        ),
        sized(scan(50, false), Dev),
        sized(
            ZipfShift {
                alpha: 0.9,
                period: 5.0,
            },
            Dev,
        ),
        plain(scan(25, true), Held),
        plain(scan(25, false), Held),
        plain(
            ZipfShift {
                alpha: 0.8,
                period: 2.0,
            },
            Held,
        ),
        plain(
            ZipfShift {
                alpha: 1.0,
                period: 10.0,
            },
            Held,
        ),
        plain(Loop { factor: 1.2 }, Held),
        plain(
            ZipfBurst {
                alpha: 0.8,
                period: 8.0,
                burst: 2.0,
            },
            Held,
        ),
        sized(scan(25, true), Held),
        sized(
            ZipfBurst {
                alpha: 0.8,
                period: 8.0,
                burst: 2.0,
            },
            Held,
        ),
    ]
}

impl Spec {
    /// The family's name (without capacity).
    pub fn name(&self) -> String {
        let base = match self.shape {
            Shape::ScanHot { hot_pct, overlap } => {
                let ids = if overlap { "overlap" } else { "disjoint" };
                format!("scan-hot-{hot_pct}%-{ids}")
            }
            Shape::ZipfShift { alpha, period } => format!("zipf-{alpha}-shift-{period}C"),
            Shape::Loop { factor } => format!("loop-{factor}C"),
            Shape::ZipfBurst {
                alpha,
                period,
                burst,
            } => format!("zipf-{alpha}-burst-{burst}C-per-{period}C"),
        };
        if self.sized {
            format!("sized-{base}")
        } else {
            base
        }
    }

    /// The family's trace at capacity `c` objects.
    pub fn generate(&self, c: u64) -> Trace {
        let seed = match self.set {
            Set::Dev => 0x5DEE_CE66_D1CE_4E5B,
            Set::Held => 0xA076_1D64_78BD_642F,
        };
        let mut rng = Rng(seed ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let c_us = c as usize;
        let (ids, final_from) = match self.shape {
            Shape::ScanHot { hot_pct, overlap } => scan_hot(&mut rng, c_us, hot_pct, overlap),
            Shape::ZipfShift { alpha, period } => zipf_shift(&mut rng, c_us, alpha, period),
            Shape::Loop { factor } => looped(c_us, factor),
            Shape::ZipfBurst {
                alpha,
                period,
                burst,
            } => zipf_burst(&mut rng, c_us, alpha, period, burst),
        };
        let distinct = ids.iter().map(|&i| i as usize + 1).max().unwrap_or(0);
        let (weights, cap) = if self.sized {
            // 2^U(0,6): log-uniform over 1..=64.
            let w = (0..distinct)
                .map(|_| (2f64.powf(6.0 * rng.unit())).round() as u32)
                .collect();
            (Some(w), c * MEAN_WEIGHT)
        } else {
            (None, c)
        };
        Trace {
            name: self.name(),
            ids,
            distinct,
            caps: vec![cap],
            weights,
            final_from: Some(final_from),
            set: self.set,
        }
    }
}

fn scan_hot(rng: &mut Rng, c: usize, hot_pct: u64, overlap: bool) -> (Vec<u32>, usize) {
    let scan = 5 * c;
    let hot = (c * hot_pct as usize / 100).max(1);
    let mut ids: Vec<u32> = (0..2).flat_map(|_| 0..scan as u32).collect();
    let mut set: Vec<u32> = if overlap {
        let mut all: Vec<u32> = (0..scan as u32).collect();
        rng.shuffle(&mut all);
        all.truncate(hot);
        all
    } else {
        (scan as u32..(scan + hot) as u32).collect()
    };
    let mut final_from = 0;
    for pass in 0..3 {
        rng.shuffle(&mut set);
        if pass == 2 {
            final_from = ids.len();
        }
        ids.extend_from_slice(&set);
    }
    (ids, final_from)
}

fn zipf_shift(rng: &mut Rng, c: usize, alpha: f64, period: f64) -> (Vec<u32>, usize) {
    let n = 10 * c;
    let cdf = zipf_cdf(n, alpha);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut perm);
    let period = ((period * c as f64) as usize).max(1);
    let total = 30 * c;
    let mut ids = Vec::with_capacity(total);
    let mut final_from = 0;
    for i in 0..total {
        if i > 0 && i % period == 0 {
            rng.shuffle(&mut perm);
            final_from = i;
        }
        ids.push(perm[zipf_draw(&cdf, rng) as usize]);
    }
    (ids, final_from)
}

fn looped(c: usize, factor: f64) -> (Vec<u32>, usize) {
    let len = ((factor * c as f64).round() as usize).max(1);
    let ids: Vec<u32> = (0..10).flat_map(|_| 0..len as u32).collect();
    (ids, 9 * len)
}

fn zipf_burst(rng: &mut Rng, c: usize, alpha: f64, period: f64, burst: f64) -> (Vec<u32>, usize) {
    let n = 10 * c;
    let cdf = zipf_cdf(n, alpha);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut perm);
    let period = ((period * c as f64) as usize).max(1);
    let burst = ((burst * c as f64) as usize).max(1);
    let mut fresh = n as u32;
    let mut ids = Vec::new();
    let mut final_from = 0;
    for i in 0..30 * c {
        if i > 0 && i % period == 0 {
            final_from = ids.len();
            for _ in 0..burst {
                ids.push(fresh);
                fresh += 1;
            }
        }
        ids.push(perm[zipf_draw(&cdf, rng) as usize]);
    }
    (ids, final_from)
}
