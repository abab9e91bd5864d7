//! `nearcache simulate` on traces written here: the fast methods (LRU by stack distances,
//! SHARDS sampling) against the full replay through the cache, TTLs the trace saw, and the
//! miss-ratio plot. The traces are synthetic (no Redis needed: `tests/capture.rs` checks the
//! simulator against a real proxy).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use nearcache::capture::trace::{Class, Request, TraceWriter, TtlChange};
use nearcache::simulate::{self, SimulateArgs};

/// xorshift64: the same trace every run.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn request(t_ms: u64, name: &str, class: Class, key: &str, value: u32, ttl: TtlChange) -> Request {
    let read = class == Class::Read;
    Request {
        time_us: 1_700_000_000_000_000 + t_ms * 1000,
        conn: 1,
        db: 0,
        proto: 2,
        name: name.into(),
        class,
        keys: vec![Bytes::copy_from_slice(key.as_bytes())],
        extra: vec![],
        req_bytes: 30,
        reply_bytes: Some(value + 8),
        values: if read { vec![Some(value + 1)] } else { vec![] },
        flags: 0,
        ttl,
    }
}

fn write_trace(path: &Path, requests: &[Request]) {
    let mut w = TraceWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for r in requests {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
}

/// Skewed reads (a power law over `keys` keys, the hot ones scattered), one write in
/// `1/writes`, values of 50 B to 2 KB fixed per key, 1 ms apart.
fn skewed(path: &Path, n: usize, keys: f64, writes: f64, seed: u64) {
    let mut rnd = Rng(seed);
    let reqs: Vec<Request> = (0..n as u64)
        .map(|i| {
            let k = (keys * rnd.unit().powi(3)) as u64;
            let key = format!("user:{}", k.wrapping_mul(2_654_435_761) % 1_000_003);
            let value = 50 + (k as u32 * 7919) % 1950;
            match rnd.unit() < writes {
                true => request(i, "set", Class::Write, &key, value, TtlChange::Clear),
                false => request(i, "get", Class::Read, &key, value, TtlChange::Keep),
            }
        })
        .collect();
    write_trace(path, &reqs);
}

fn run(trace: &Path, policy: &str, sizes: &str, f: impl FnOnce(&mut SimulateArgs)) -> Vec<f64> {
    let mut args = SimulateArgs::new(trace.to_path_buf());
    args.max_memory = sizes.split(',').map(String::from).collect();
    args.eviction = policy.into();
    args.json = true;
    f(&mut args);
    let report: serde_json::Value = serde_json::from_str(&simulate::run(&args).unwrap()).unwrap();
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["hit_ratio"].as_f64().unwrap())
        .collect()
}

fn trace_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

const SIZES: &str = "256kb,512kb,1mb,2mb,4mb,8mb,16mb";

#[test]
fn lru_by_stack_distances_matches_the_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace_file(&dir, "skewed.nctrace");
    skewed(&trace, 60_000, 20_000.0, 0.05, 0x853c_49e6_748f_ea9b);
    for shards in [1, 4] {
        let fast = run(&trace, "lru", SIZES, |a| a.shards = shards);
        let exact = run(&trace, "lru", SIZES, |a| {
            a.shards = shards;
            a.exact = true
        });
        for ((f, e), size) in fast.iter().zip(&exact).zip(SIZES.split(',')) {
            eprintln!("lru {size} shards {shards}: stack {f:.4} replay {e:.4}");
            assert!(
                (f - e).abs() <= 0.01,
                "{size}, {shards} shards: stack {f:.4}, replay {e:.4}"
            );
        }
        assert!(exact[0] < exact[exact.len() - 1] - 0.1, "sizes that matter");
    }
}

#[test]
fn shards_sampling_estimates_the_other_policies_close_to_the_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace_file(&dir, "skewed.nctrace");
    skewed(&trace, 60_000, 20_000.0, 0.05, 0x2545_f491_4f6c_dd1d);
    for policy in ["s3fifo", "w-tinylfu", "reuse-tinylfu"] {
        let sampled = run(&trace, policy, SIZES, |a| a.sample_keys = 2000);
        let exact = run(&trace, policy, SIZES, |a| a.exact = true);
        let mut sum = 0.0;
        for ((s, e), size) in sampled.iter().zip(&exact).zip(SIZES.split(',')) {
            eprintln!("{policy} {size}: shards {s:.4} replay {e:.4}");
            sum += (s - e).abs();
        }
        let mean = sum / exact.len() as f64;
        eprintln!("{policy}: mean absolute error {mean:.4}");
        assert!(mean <= 0.04, "{policy}: mean absolute error {mean:.4}");
    }
}

#[test]
fn a_ttl_the_trace_saw_ends_the_entry_where_the_cache_ttl_would_not() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace_file(&dir, "ttl.nctrace");
    let get = |t, key| request(t, "get", Class::Read, key, 10, TtlChange::Keep);
    write_trace(
        &trace,
        &[
            request(0, "set", Class::Write, "a", 10, TtlChange::Set(1_000)),
            request(0, "set", Class::Write, "b", 10, TtlChange::Clear),
            get(100, "a"),   // miss, filled until 1,000 ms
            get(100, "b"),   // miss, filled for the cache TTL
            get(900, "a"),   // hit
            get(900, "b"),   // hit
            get(1_500, "a"), // miss: the key expired in Redis
            get(1_500, "b"), // hit
        ],
    );
    let mut args = SimulateArgs::new(trace.clone());
    args.max_memory = vec!["1mb".into()];
    let text = simulate::run(&args).unwrap();
    assert!(text.contains("1 commands set a key's TTL"), "{text}");
    for exact in [false, true] {
        let hits = run(&trace, "lru", "1mb", |a| a.exact = exact);
        assert_eq!(hits, vec![3.0 / 6.0], "exact: {exact}");
        let hits = run(&trace, "s3fifo", "1mb", |a| a.exact = exact);
        assert_eq!(hits, vec![3.0 / 6.0], "exact: {exact}");
    }
}

#[test]
fn the_plot_is_an_svg_with_one_curve_per_policy() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace_file(&dir, "skewed.nctrace");
    skewed(&trace, 20_000, 5_000.0, 0.05, 7);
    let svg_path = dir.path().join("mrc.svg");
    let mut args = SimulateArgs::new(trace.clone());
    args.max_memory = vec!["128kb".into(), "512kb".into(), "2mb".into()];
    args.eviction = "all".into();
    args.plot = Some(svg_path.clone());
    let text = simulate::run(&args).unwrap();
    assert!(text.contains("achievable hit ratio"), "{text}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let curves: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("class") == Some("curve"))
        .collect();
    let names: Vec<&str> = curves
        .iter()
        .filter_map(|c| c.attribute("data-policy"))
        .collect();
    let all: Vec<&str> = cache::PolicyKind::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(names, all);
    for c in &curves {
        let points: Vec<(f64, f64)> = c
            .attribute("points")
            .unwrap()
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(points.len(), 3, "a point per size");
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "sizes in order");
    }
}
