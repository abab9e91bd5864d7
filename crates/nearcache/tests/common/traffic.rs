//! Known traffic for the capture tests: what they send to a Redis, and the per-command counts
//! a capture of it must match (Redis's own `INFO commandstats`).

use std::collections::BTreeMap;
use std::time::Duration;

use nearcache::capture::trace::Request;

use super::{redis_cmd_blocking, run_tool};

/// redis-benchmark's mix of commands against the Redis at 127.0.0.1:`port`, at pipeline 1 and
/// 16, then an MGET of a key that exists and one that does not.
pub fn benchmark_traffic(port: u16) {
    let port = port.to_string();
    for extra in [&["-P", "1"][..], &["-P", "16"]] {
        let mut args = vec!["-p", &port, "-n", "2000", "-c", "4", "-r", "300", "-q"];
        args.extend_from_slice(&["-t", "set,get,incr,lpush,lpop,mset,hset"]);
        args.extend_from_slice(extra);
        let out = run_tool("redis-benchmark", &args, None, Duration::from_secs(120));
        assert!(out.status.success(), "redis-benchmark: {}", out.stderr);
    }
    let addr = format!("127.0.0.1:{port}");
    redis_cmd_blocking(&addr, &[b"MGET", b"key:000000000001", b"nokey"]);
}

/// The requests of `trace` per command, and the calls Redis counted between `before` and
/// `after` (`common::commandstats`), less the `INFO` that read `before`, which ran before the
/// capture began. Commands with no call are left out of both.
pub fn captured_and_served(
    trace: &[Request],
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut captured: BTreeMap<String, u64> = BTreeMap::new();
    for r in trace {
        *captured.entry(r.name.clone()).or_default() += 1;
    }
    let mut served: BTreeMap<String, u64> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .collect();
    if let Some(info) = served.get_mut("info") {
        *info -= 1;
    }
    served.retain(|_, v| *v > 0);
    (captured, served)
}
