//! The running proxy's own miss-ratio curve (`nearcache_cache_mrc_hit_ratio`): on a skewed
//! workload through a real Redis, its estimate at the cache's own size is close to the hit
//! ratio the proxy measured over the same lookups, and the curve rises with the size.

mod common;

use common::*;
use std::time::Duration;

/// Keys in Redis; the cache holds a fraction of them.
const KEYS: usize = 400_000;
/// Zipf exponent of the reads.
const SKEW: f64 = 0.9;
/// GETs sent, in pipelines of `BATCH`.
const READS: usize = 1_600_000;
const BATCH: usize = 2_000;
/// Most the estimate at 1x may be off the measured hit ratio, in hit-ratio points: the sample
/// (655 keys, what half a percent of 16 MB holds, picked by a hash seeded afresh in each
/// process) sees the hottest keys by chance, and the proxy's sharded cache is not quite one
/// LRU.
const TOLERANCE: f64 = 0.10;
/// Large enough that the sample's spread sits well inside the tolerance (its standard
/// deviation halves with four times the keys; at 4 MB, 164 keys, it was near a third of it).
const MAX_MEMORY: u64 = 16 << 20;

/// splitmix64: a seeded generator, so every run reads the same keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Key ranks drawn with probability proportional to 1 / (rank + 1)^SKEW.
fn zipf(n: usize, draws: usize, rng: &mut Rng) -> Vec<usize> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for i in 0..n {
        sum += 1.0 / ((i + 1) as f64).powf(SKEW);
        cdf.push(sum);
    }
    (0..draws)
        .map(|_| {
            let u = rng.unit() * sum;
            cdf.partition_point(|&c| c < u).min(n - 1)
        })
        .collect()
}

/// Samples of a metric family: (labels, value).
fn samples(body: &str, family: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter_map(|l| l.strip_prefix(family))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn one(body: &str, name: &str) -> f64 {
    samples(body, name)
        .into_iter()
        .find(|(labels, _)| labels.is_empty())
        .map_or(0.0, |(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimate_at_the_cache_size_matches_the_measured_hit_ratio() {
    let redis = RedisServer::start();
    let mut direct = RawConn::connect(&redis.addr()).await;
    let value = "v".repeat(100);
    for start in (0..KEYS).step_by(BATCH) {
        let sets: Vec<Vec<String>> = (start..(start + BATCH).min(KEYS))
            .map(|i| vec!["SET".into(), format!("key:{i}"), value.clone()])
            .collect();
        direct.pipeline(&sets).await;
    }
    let config = Proxy::config(&redis.addr())
        .with("admin_listen", "127.0.0.1:0")
        .with("max_memory", &MAX_MEMORY.to_string())
        .with("eviction", "lru");
    let proxy = Proxy::start_config(config).await;
    let admin = proxy.admin.unwrap();
    let mut c = RawConn::connect(&proxy.addr()).await;

    // Ranks become keys through a fixed shuffle, so the hot keys are not the first ones.
    let mut rng = Rng(20);
    let mut perm: Vec<usize> = (0..KEYS).collect();
    for i in (1..KEYS).rev() {
        perm.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let reads = zipf(KEYS, READS, &mut rng);
    for batch in reads.chunks(BATCH) {
        let gets: Vec<Vec<String>> = batch
            .iter()
            .map(|&r| vec!["GET".into(), format!("key:{}", perm[r])])
            .collect();
        for reply in c.pipeline(&gets).await {
            assert!(reply.starts_with(b"$100\r\n"), "{}", show(&reply));
        }
    }

    let body = http_get(admin, "/metrics").await;
    let (hits, misses) = (
        one(&body, "nearcache_cache_hits_total"),
        one(&body, "nearcache_cache_misses_total"),
    );
    assert_eq!(
        hits + misses,
        READS as f64,
        "every read looked the cache up"
    );
    let measured = hits / (hits + misses);
    let mut curve: Vec<(u64, f64)> = samples(&body, "nearcache_cache_mrc_hit_ratio")
        .into_iter()
        .map(|(labels, v)| {
            let size = labels
                .trim_start_matches("{size_bytes=\"")
                .trim_end_matches("\"}")
                .parse()
                .unwrap_or_else(|_| panic!("label {labels}"));
            (size, v)
        })
        .collect();
    curve.sort_by_key(|&(size, _)| size);
    let sizes: Vec<u64> = curve.iter().map(|&(s, _)| s).collect();
    let want: Vec<u64> = [1, 2, 4, 8, 16, 32].map(|m| m * MAX_MEMORY / 4).to_vec();
    assert_eq!(sizes, want, "{body}");
    let at = |size: u64| curve.iter().find(|&&(s, _)| s == size).unwrap().1;
    let estimate = at(MAX_MEMORY);
    eprintln!("measured {measured:.4}, curve {curve:?}");
    assert!(
        (0.4..0.9).contains(&measured),
        "the workload should hit about half the time: {measured}"
    );
    assert!(
        (estimate - measured).abs() <= TOLERANCE,
        "estimated {estimate:.4} at 1x, measured {measured:.4}: {curve:?}"
    );
    assert!(
        curve.windows(2).all(|w| w[0].1 <= w[1].1),
        "not monotone: {curve:?}"
    );
    // More memory buys hits on this workload, less loses some.
    assert!(at(8 * MAX_MEMORY) > estimate && at(MAX_MEMORY / 4) < estimate);

    let info = String::from_utf8_lossy(&c.cmd(&["NEARCACHE", "INFO"]).await).into_owned();
    for field in [
        "mrc_sampled_keys:",
        "mrc_sample_max_keys:",
        "mrc_sample_rate:",
        "mrc_hit_ratio_1x:",
    ] {
        assert!(info.contains(field), "{field} missing from {info}");
    }
    proxy.shutdown().await;
}

/// `mrc_sample_keys = 0` turns the curve off: reads are served as ever, and neither `/metrics`
/// nor `NEARCACHE INFO` shows an estimate.
#[tokio::test]
async fn no_curve_with_no_sample() {
    let redis = RedisServer::start();
    let config = Proxy::config(&redis.addr())
        .with("admin_listen", "127.0.0.1:0")
        .with("mrc_sample_keys", "0");
    let proxy = Proxy::start_config(config).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    let gets: Vec<Vec<String>> = (0..2_000)
        .map(|i| vec!["GET".into(), format!("key:{}", i % 100)])
        .collect();
    // Until the cache serves hits (its tracking connection comes up after the proxy starts).
    let admin = proxy.admin.unwrap();
    let mut body = String::new();
    eventually(Duration::from_secs(10), "cache hits", async || {
        for reply in c.pipeline(&gets).await {
            assert_eq!(&reply[..], b"$-1\r\n");
        }
        body = http_get(admin, "/metrics").await;
        one(&body, "nearcache_cache_hits_total") > 0.0
    })
    .await;
    assert!(samples(&body, "nearcache_cache_mrc_hit_ratio").is_empty());
    let info = String::from_utf8_lossy(&c.cmd(&["NEARCACHE", "INFO"]).await).into_owned();
    assert!(info.contains("mrc_sample_max_keys:0\r\n"), "{info}");
    assert!(info.contains("mrc_sampled_keys:0\r\n"), "{info}");
    assert!(!info.contains("mrc_hit_ratio_1x:"), "{info}");
    proxy.shutdown().await;
}
