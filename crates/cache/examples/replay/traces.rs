//! The replay's workloads as data: [`Trace`] (dense ids, optional weights, where the final
//! phase starts), the shared trace files, the fixed synthetic traces, and the seeded generator
//! the workload families use. Must never simulate a policy (`main.rs` does) and never read
//! anything but the trace directory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Which half of the data a row belongs to: policies are chosen and tuned on `Dev` rows only;
/// `Held` rows are reported untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    Dev,
    Held,
}

impl Set {
    pub fn name(self) -> &'static str {
        match self {
            Set::Dev => "dev",
            Set::Held => "held-out",
        }
    }
}

/// One workload.
pub struct Trace {
    pub name: String,
    /// Dense ids, 0..distinct.
    pub ids: Vec<u32>,
    pub distinct: usize,
    /// Capacities to replay at (weight units). Empty: the traces README's plus 1% and 10%.
    pub caps: Vec<u64>,
    /// Weight of each id (indexed by id); `None` is unit weights.
    pub weights: Option<Vec<u32>>,
    /// Index of the first request of the final phase, for workloads that have phases.
    pub final_from: Option<usize>,
    pub set: Set,
}

/// Shared traces and fixed synthetic ones reported untouched (every other one is `Dev`):
/// alternate names in sorted order, so each half has LIRS-paper, storage and synthetic traces.
const HELD_OUT: &[&str] = &[
    "OLTP",
    "cloudPhysicsIO",
    "cs",
    "loop",
    "multi2",
    "ps",
    "sprite",
    "zigzag",
    "zipf-1.0",
    "loop-5k",
];

/// Renumber raw ids densely in order of first appearance.
pub fn densify(name: &str, raw: Vec<u64>, caps: &[u64]) -> Trace {
    let mut map: HashMap<u64, u32> = HashMap::new();
    let ids = raw
        .iter()
        .map(|&id| {
            let next = map.len() as u32;
            *map.entry(id).or_insert(next)
        })
        .collect();
    Trace {
        name: name.to_string(),
        ids,
        distinct: map.len(),
        caps: caps.to_vec(),
        weights: None,
        final_from: None,
        set: if HELD_OUT.contains(&name) {
            Set::Held
        } else {
            Set::Dev
        },
    }
}

fn numbers(reader: impl BufRead) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for line in reader.lines() {
        if let Ok(id) = line?.trim().parse::<u64>() {
            out.push(id);
        }
    }
    Ok(out)
}

fn oltp(reader: impl BufRead) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        let mut f = line.split_whitespace().map(|x| x.parse::<u64>());
        if let (Some(Ok(start)), Some(Ok(len))) = (f.next(), f.next()) {
            out.extend(start..start + len);
        }
    }
    Ok(out)
}

fn be32(mut reader: impl Read) -> io::Result<Vec<u64>> {
    let mut buf = Vec::new();
    reader.read_to_end(&mut buf)?;
    Ok(buf
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect())
}

/// Capacities the traces README asks for, besides 1% and 10%.
fn readme_caps(name: &str) -> &'static [u64] {
    match name {
        "OLTP" => &[256, 1000, 2000],
        "multi3" => &[745],
        "sprite" => &[707],
        "2_pools" => &[99],
        "loop" => &[101],
        "web07" => &[2048],
        "cloudPhysicsIO" => &[4897],
        _ => &[],
    }
}

/// The shared traces in `dir`, by file name.
pub fn load_dir(dir: &Path) -> io::Result<Vec<Trace>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_string();
        let (name, raw) = if let Some(n) = file.strip_suffix(".trace.gz") {
            let r = BufReader::new(flate2::read::GzDecoder::new(File::open(&path)?));
            (n.to_string(), numbers(r)?)
        } else if let Some(n) = file.strip_suffix(".lis.zst") {
            let r = BufReader::new(zstd::Decoder::new(File::open(&path)?)?);
            (n.to_string(), oltp(r)?)
        } else if let Some(n) = file.strip_suffix(".trace.xz") {
            (
                n.to_string(),
                be32(xz2::read::XzDecoder::new(File::open(&path)?))?,
            )
        } else if let Some(n) = file.strip_suffix(".txt") {
            // Plain text; a comment line, if any, does not parse and is skipped.
            (n.to_string(), numbers(BufReader::new(File::open(&path)?))?)
        } else {
            continue;
        };
        if raw.is_empty() {
            eprintln!("skipping {file}: no ids");
            continue;
        }
        out.push(densify(&name, raw, readme_caps(&name)));
    }
    Ok(out)
}

/// Deterministic xorshift generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A uniform index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Shuffle in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Sampler of Zipf(alpha) ranks over `n` objects via the inverse CDF.
pub fn zipf_cdf(n: usize, alpha: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for rank in 1..=n {
        sum += 1.0 / (rank as f64).powf(alpha);
        cdf.push(sum);
    }
    cdf.iter_mut().for_each(|c| *c /= sum);
    cdf
}

pub fn zipf_draw(cdf: &[f64], rng: &mut Rng) -> u64 {
    let u = rng.unit();
    cdf.partition_point(|&c| c < u) as u64
}

/// The fixed synthetic traces (same seeds as always), replayed like the shared ones.
pub fn synthetic() -> Vec<Trace> {
    const N: usize = 100_000;
    const REQUESTS: usize = 1_000_000;
    let mut out = Vec::new();
    for (name, alpha) in [("zipf-0.8", 0.8), ("zipf-1.0", 1.0)] {
        let cdf = zipf_cdf(N, alpha);
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let raw = (0..REQUESTS).map(|_| zipf_draw(&cdf, &mut rng)).collect();
        out.push(densify(name, raw, &[]));
    }
    // Zipf 0.9 with a burst of 20k one-time ids every 100k requests.
    let cdf = zipf_cdf(N, 0.9);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut raw = Vec::with_capacity(REQUESTS + 200_000);
    let mut fresh = N as u64;
    for i in 0..REQUESTS {
        if i % 100_000 == 50_000 {
            for _ in 0..20_000 {
                raw.push(fresh);
                fresh += 1;
            }
        }
        raw.push(zipf_draw(&cdf, &mut rng));
    }
    out.push(densify("zipf-scan", raw, &[]));
    // A loop over 5,000 objects, 100 times.
    let raw = (0..500_000u64).map(|i| i % 5_000).collect();
    out.push(densify("loop-5k", raw, &[]));
    out
}
