//! How long `nearcache simulate` takes on a large trace, and how far its fast methods (LRU by
//! stack distances, SHARDS sampling for the other policies) are from replaying every request.
//!
//! Writes a synthetic trace (GET/SET over Zipf-distributed keys, value sizes fixed per key)
//! in the `.nctrace` format, then simulates it at 8 sizes with one policy and prints the
//! time; `--compare` also runs `--exact` and prints the hit ratios side by side.
//!
//! ```sh
//! cargo run --release -p nearcache --example simulate_bench -- \
//!     --requests 10000000 --keys 1000000 --policy lru
//! cargo run --release -p nearcache --example simulate_bench -- \
//!     --requests 2000000 --keys 200000 --policy s3fifo --compare
//! ```

use std::io::BufWriter;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use nearcache::capture::trace::{Class, Request, TraceWriter, TtlChange};
use nearcache::simulate::{self, SimulateArgs};

struct Opts {
    requests: u64,
    keys: u64,
    alpha: f64,
    writes: f64,
    policy: String,
    sizes: String,
    sample_keys: usize,
    compare: bool,
    seed: u64,
}

fn opts() -> Opts {
    let mut o = Opts {
        requests: 10_000_000,
        keys: 1_000_000,
        alpha: 0.9,
        writes: 0.05,
        policy: "lru".into(),
        sizes: "8mb,16mb,32mb,64mb,128mb,256mb,512mb,1gb".into(),
        sample_keys: 65536,
        compare: false,
        seed: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--requests" => o.requests = v.parse().expect("--requests N"),
            "--keys" => o.keys = v.parse().expect("--keys N"),
            "--alpha" => o.alpha = v.parse().expect("--alpha X"),
            "--writes" => o.writes = v.parse().expect("--writes SHARE"),
            "--policy" => o.policy = v,
            "--sizes" => o.sizes = v,
            "--sample-keys" => o.sample_keys = v.parse().expect("--sample-keys N"),
            "--seed" => o.seed = v.parse().expect("--seed N"),
            "--compare" => {
                o.compare = true;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    o
}

/// xorshift64*: the same trace for the same seed, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes the trace; key i (0 hottest) has a value of 50 to 2,000 bytes.
fn write_trace(path: &Path, o: &Opts) {
    let mut cdf = Vec::with_capacity(o.keys as usize);
    let mut sum = 0.0;
    for i in 1..=o.keys {
        sum += 1.0 / (i as f64).powf(o.alpha);
        cdf.push(sum);
    }
    let mut rng = Rng(o.seed.max(1) * 0x9E37_79B9_7F4A_7C15);
    let file = std::fs::File::create(path).expect("create trace");
    let mut w = TraceWriter::new(BufWriter::with_capacity(1 << 20, file)).expect("write trace");
    for n in 0..o.requests {
        let u = rng.unit() * sum;
        let k = cdf.partition_point(|&c| c < u) as u64;
        // Keys are scattered so that rank and hash are unrelated.
        let key = Bytes::from(format!("key:{:x}", k.wrapping_mul(0x9E37_79B9) % (1 << 40)));
        let value = 50 + (k.wrapping_mul(7919) % 1950) as u32;
        let write = rng.unit() < o.writes;
        let r = Request {
            time_us: 1_700_000_000_000_000 + n * 10,
            conn: 1 + (n % 8) as u32,
            db: 0,
            proto: 2,
            name: if write { "set" } else { "get" }.into(),
            class: if write { Class::Write } else { Class::Read },
            keys: vec![key],
            extra: vec![],
            req_bytes: 40 + if write { value } else { 0 },
            reply_bytes: Some(if write { 5 } else { value + 8 }),
            values: if write { vec![] } else { vec![Some(value + 1)] },
            flags: 0,
            ttl: if write {
                TtlChange::Clear
            } else {
                TtlChange::Keep
            },
        };
        w.write(&r).expect("write trace");
    }
    w.finish().expect("flush trace");
}

/// CPU seconds this process has used: on a shared machine, wall time also counts the waits
/// for a core, CPU time much less.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn simulate(path: &Path, o: &Opts, exact: bool) -> (serde_json::Value, f64) {
    let mut args = SimulateArgs::new(path.to_path_buf());
    args.max_memory = o.sizes.split(',').map(String::from).collect();
    args.eviction = o.policy.clone();
    args.sample_keys = o.sample_keys;
    args.exact = exact;
    args.json = true;
    // The trace spans minutes at most; the TTL cap must not be what ends entries.
    args.cache_ttl = "1h".into();
    let (t, cpu) = (Instant::now(), cpu_secs());
    let out = simulate::run(&args).expect("simulate");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  ({secs:.1} s wall, {:.1} s CPU, load average {})",
        cpu_secs() - cpu,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?")
    );
    (serde_json::from_str(&out).expect("json"), secs)
}

fn main() {
    let o = opts();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zipf.nctrace");
    let t = Instant::now();
    write_trace(&path, &o);
    println!(
        "trace: {} requests over {} keys (Zipf {}), {:.0}% writes, written in {:.1} s",
        o.requests,
        o.keys,
        o.alpha,
        100.0 * o.writes,
        t.elapsed().as_secs_f64()
    );
    let (fast, secs) = simulate(&path, &o, false);
    let n = fast["runs"].as_array().map_or(0, Vec::len);
    println!(
        "simulate --eviction {} at {n} sizes: {secs:.1} s (method {})",
        o.policy, fast["runs"][0]["method"]
    );
    if !o.compare {
        for r in fast["runs"].as_array().into_iter().flatten() {
            println!("  {:>12} hit {:.4}", r["max_memory"], r["hit_ratio"]);
        }
        return;
    }
    let (exact, exact_secs) = simulate(&path, &o, true);
    println!("simulate --exact: {exact_secs:.1} s");
    println!(
        "{:>12} {:>8} {:>8} {:>8}",
        "max_memory", "fast", "exact", "error"
    );
    let mut worst: f64 = 0.0;
    let mut sum = 0.0;
    for (f, e) in fast["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(exact["runs"].as_array().into_iter().flatten())
    {
        let (hf, he) = (
            f["hit_ratio"].as_f64().unwrap_or(0.0),
            e["hit_ratio"].as_f64().unwrap_or(0.0),
        );
        worst = worst.max((hf - he).abs());
        sum += (hf - he).abs();
        println!(
            "{:>12} {hf:>8.4} {he:>8.4} {:>+8.4}",
            f["max_memory"],
            hf - he
        );
    }
    println!(
        "mean absolute error {:.4}, worst {worst:.4}",
        sum / n.max(1) as f64
    );
}
