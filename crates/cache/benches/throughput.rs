//! Throughput of a get-then-fill-on-miss loop on a Zipf(1.0) key stream, 1 and 2 threads:
//! this crate's cache (default policy) against moka (sync, weigher) and quick_cache (weighter),
//! all with the same byte budget and the same per-entry weight.

use bytes::Bytes;
use cache::{Cache, CacheConfig, PolicyKind, NEVER};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};

const KEYS: usize = 200_000;
const OPS_PER_THREAD: usize = 50_000;
const VALUE: usize = 100;
const BUDGET: u64 = 16 << 20;

fn zipf_stream(n: usize, len: usize, seed: u64) -> Vec<usize> {
    let mut cdf: Vec<f64> = (1..=n).map(|r| 1.0 / r as f64).collect();
    let mut acc = 0.0;
    for c in cdf.iter_mut() {
        acc += *c;
        *c = acc;
    }
    let mut s = seed;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64 * acc;
            cdf.partition_point(|&c| c < u).min(n - 1)
        })
        .collect()
}

trait Bench: Sync {
    fn run(&self, key: &Bytes, value: &Bytes);
}

struct Ours(Cache);
impl Bench for Ours {
    fn run(&self, key: &Bytes, value: &Bytes) {
        if self.0.get(key, key, 0).is_none() {
            let t = self.0.begin_fill(key, 1);
            self.0.complete_fill(t, key, value, NEVER, 0);
        }
    }
}

struct Moka(moka::sync::Cache<Bytes, Bytes>);
impl Bench for Moka {
    fn run(&self, key: &Bytes, value: &Bytes) {
        if self.0.get(key).is_none() {
            self.0.insert(key.clone(), value.clone());
        }
    }
}

#[derive(Clone)]
struct W(u64);
impl quick_cache::Weighter<Bytes, Bytes> for W {
    fn weight(&self, key: &Bytes, val: &Bytes) -> u64 {
        2 * key.len() as u64 + val.len() as u64 + self.0
    }
}
struct Quick(quick_cache::sync::Cache<Bytes, Bytes, W>);
impl Bench for Quick {
    fn run(&self, key: &Bytes, value: &Bytes) {
        if self.0.get(key).is_none() {
            self.0.insert(key.clone(), value.clone());
        }
    }
}

fn build(name: &str) -> Box<dyn Bench> {
    let ours = Cache::new(CacheConfig {
        max_bytes: BUDGET,
        policy: PolicyKind::default(),
        shards: 0,
    });
    // Same weight for everyone: our charged cost (key + group + value + fixed overhead).
    let overhead = ours.entry_cost(0, 0, 0);
    match name {
        "nearcache" => Box::new(Ours(ours)),
        "moka" => Box::new(Moka(
            moka::sync::Cache::builder()
                .max_capacity(BUDGET)
                .weigher(move |k: &Bytes, v: &Bytes| {
                    (2 * k.len() + v.len()) as u32 + overhead as u32
                })
                .build(),
        )),
        _ => Box::new(Quick(quick_cache::sync::Cache::with_weighter(
            (BUDGET / (overhead + 130)) as usize,
            BUDGET,
            W(overhead),
        ))),
    }
}

fn throughput(c: &mut Criterion) {
    let keys: Vec<Bytes> = (0..KEYS)
        .map(|i| Bytes::from(format!("0/GET/key:{i:010}")))
        .collect();
    let value = Bytes::from(vec![b'x'; VALUE]);
    let streams: Vec<Vec<usize>> = (0..2)
        .map(|t| zipf_stream(KEYS, OPS_PER_THREAD, 0x9E37_79B9 + t))
        .collect();
    let mut group = c.benchmark_group("zipf1.0-get-fill");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements((threads * OPS_PER_THREAD) as u64));
        for name in ["nearcache", "moka", "quick_cache"] {
            let cache = build(name);
            for s in &streams {
                s.iter().for_each(|&k| cache.run(&keys[k], &value));
            }
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        std::thread::scope(|s| {
                            for stream in streams.iter().take(threads) {
                                let (cache, keys, value) = (&cache, &keys, &value);
                                s.spawn(move || {
                                    stream.iter().for_each(|&k| cache.run(&keys[k], value))
                                });
                            }
                        });
                        total += start.elapsed();
                    }
                    total
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
