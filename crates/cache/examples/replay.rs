//! Trace replay: hit ratios of every policy on the shared traces and synthetic ones.
//!
//! Drives the policies directly (unit weights, one handle per distinct object) the way a
//! simulator does: a request for a resident object is a hit, anything else a miss followed by
//! an insert. Prints a markdown table. `--export DIR` also writes every trace as plain text
//! (one dense id per line) plus `manifest.txt` for `scripts/libcachesim_ref.py`.
//! Policies are built with `build_counted` (weights count entries); `--samples N` makes
//! adaptive's shadows simulate at most N keys instead of 1,024, as a shard whose byte budget
//! affords only N would (see docs/cache.md).
//!
//! Usage: `cargo run --release -p nearcache-cache --example replay -- [--traces DIR]
//! [--export DIR] [--only SUBSTRING] [--capacity N] [--samples N]`
//! (`--capacity N` replays at N objects instead of the usual capacities)

use cache::policy::{Adaptive, Handle, Policy};
use cache::PolicyKind;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

struct Trace {
    name: String,
    /// Dense ids, 0..distinct.
    ids: Vec<u32>,
    distinct: usize,
    /// Extra capacities besides 1% and 10% of distinct objects.
    caps: Vec<u64>,
}

fn densify(name: &str, raw: Vec<u64>, caps: &[u64]) -> Trace {
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

fn load_dir(dir: &Path) -> io::Result<Vec<Trace>> {
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
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sampler of Zipf(alpha) ranks over `n` objects via the inverse CDF.
fn zipf_cdf(n: usize, alpha: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for rank in 1..=n {
        sum += 1.0 / (rank as f64).powf(alpha);
        cdf.push(sum);
    }
    cdf.iter_mut().for_each(|c| *c /= sum);
    cdf
}

fn zipf_draw(cdf: &[f64], rng: &mut Rng) -> u64 {
    let u = rng.unit();
    cdf.partition_point(|&c| c < u) as u64
}

fn synthetic() -> Vec<Trace> {
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

fn hash(id: u32) -> u64 {
    let x = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 31)
}

/// Hit ratio (percent) of `kind` at `capacity` objects; `samples` bounds adaptive's shadows.
fn simulate(kind: PolicyKind, capacity: u64, samples: Option<usize>, trace: &Trace) -> f64 {
    let mut policy: Box<dyn Policy> = match (kind, samples) {
        (PolicyKind::Adaptive, Some(n)) => Box::new(Adaptive::with_shadows(capacity, 0, n)),
        _ => kind.build_counted(capacity),
    };
    let mut resident = vec![false; trace.distinct];
    let mut evicted: Vec<Handle> = Vec::new();
    let mut hits = 0u64;
    for &id in &trace.ids {
        if resident[id as usize] {
            hits += 1;
            policy.on_hit(id);
        } else {
            evicted.clear();
            policy.insert(id, hash(id), 1, &mut evicted);
            resident[id as usize] = true;
            for &v in &evicted {
                resident[v as usize] = false;
            }
        }
    }
    100.0 * hits as f64 / trace.ids.len() as f64
}

fn capacities(t: &Trace) -> Vec<u64> {
    let mut caps = t.caps.clone();
    for pct in [1, 10] {
        let c = ((t.distinct * pct) as f64 / 100.0).round().max(1.0) as u64;
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps.sort_unstable();
    caps
}

fn export(dir: &Path, traces: &[Trace]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut manifest = File::create(dir.join("manifest.txt"))?;
    for t in traces {
        let path = dir.join(format!("{}.txt", t.name));
        let mut w = io::BufWriter::new(File::create(&path)?);
        for id in &t.ids {
            writeln!(w, "{}", u64::from(*id) + 1)?;
        }
        w.flush()?;
        let caps: Vec<String> = capacities(t).iter().map(|c| c.to_string()).collect();
        writeln!(
            manifest,
            "{}\t{}\t{}",
            t.name,
            path.display(),
            caps.join(",")
        )?;
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("/work/shared/traces");
    let mut export_dir = None;
    let mut only = None;
    let mut samples = None;
    let mut cap_only = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--traces" => dir = args.next().map(PathBuf::from).unwrap_or(dir),
            "--export" => export_dir = args.next().map(PathBuf::from),
            "--only" => only = args.next(),
            "--samples" => samples = args.next().and_then(|n| n.parse().ok()),
            "--capacity" => cap_only = args.next().and_then(|n| n.parse::<u64>().ok()),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let mut traces = load_dir(&dir)?;
    traces.extend(synthetic());
    if let Some(o) = &only {
        traces.retain(|t| t.name.contains(o.as_str()));
    }
    if let Some(d) = export_dir {
        export(&d, &traces)?;
    }
    let classic = [
        PolicyKind::Lru,
        PolicyKind::Lfu,
        PolicyKind::WTinyLfu,
        PolicyKind::S3Fifo,
        PolicyKind::Sieve,
    ];
    print!("| trace @ capacity | requests | distinct |");
    for k in PolicyKind::ALL {
        print!(" {} |", k.name());
    }
    println!(" adaptive - best classic |");
    print!("|---|---:|---:|");
    for _ in PolicyKind::ALL {
        print!("---:|");
    }
    println!("---:|");
    for t in &traces {
        let caps = cap_only.map_or_else(|| capacities(t), |c| vec![c]);
        for cap in caps {
            let ratios: Vec<f64> = PolicyKind::ALL
                .iter()
                .map(|&k| simulate(k, cap, samples, t))
                .collect();
            let best = classic
                .iter()
                .map(|k| ratios[PolicyKind::ALL.iter().position(|x| x == k).unwrap_or(0)])
                .fold(0.0, f64::max);
            let adaptive = ratios[PolicyKind::ALL.len() - 1];
            print!(
                "| {} @ {} | {} | {} |",
                t.name,
                cap,
                t.ids.len(),
                t.distinct
            );
            for r in &ratios {
                print!(" {r:.2} |");
            }
            println!(" {:+.2} |", adaptive - best);
        }
    }
    Ok(())
}
