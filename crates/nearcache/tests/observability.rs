//! Observability: per-command metrics, the `NEARCACHE` admin command, the slow log, the
//! dashboard's endpoints, and (through the binary, which runs on jemalloc with its profiler)
//! heap and CPU profiles, `nearcache heap-diff` and trace captures.

mod common;

use std::time::Duration;

use common::*;
use nearcache::obs::heapdiff;

const PROFILE_LIMIT: Duration = Duration::from_secs(120);

async fn proxy_with_admin(redis: &RedisServer) -> Proxy {
    Proxy::start_config(Proxy::config(&redis.addr()).with("admin_listen", "127.0.0.1:0")).await
}

/// The value of the metric line starting with `prefix` (name and labels), 0 when absent.
fn metric(body: &str, prefix: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn commands_are_counted_by_name_and_outcome_with_bounded_labels() {
    let redis = RedisServer::start();
    let proxy = proxy_with_admin(&redis).await;
    let admin = proxy.admin.unwrap();
    let mut c = RawConn::connect(&proxy.addr()).await;
    c.cmd(&["SET", "k", "v"]).await;
    c.cmd(&["GET", "k"]).await;
    // The fill lands shortly after the reply; poll until a GET hits.
    let hit = "nearcache_commands_by_outcome_total{command=\"GET\",outcome=\"hit\"}";
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    loop {
        c.cmd(&["GET", "k"]).await;
        if metric(&http_get(admin, "/metrics").await, hit) >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no cache hit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = c.cmd(&["NOSUCHCMD_abc", "x"]).await;
    assert!(reply.starts_with(b"-"), "{}", show(&reply));
    c.cmd(&["INCR", "k"]).await; // an error reply from Redis: not an integer
    let body = http_get(admin, "/metrics").await;
    for line in [
        "nearcache_commands_by_outcome_total{command=\"GET\",outcome=\"miss\"}",
        "nearcache_commands_by_outcome_total{command=\"SET\",outcome=\"forwarded\"}",
        "nearcache_commands_by_outcome_total{command=\"OTHER\",outcome=\"error\"}",
        "nearcache_commands_by_outcome_total{command=\"INCR\",outcome=\"error\"}",
        "nearcache_command_duration_seconds_count{outcome=\"hit\"}",
        "nearcache_command_duration_seconds_bucket{le=\"+Inf\",outcome=\"miss\"}",
        "nearcache_client_bytes_received_total",
        "nearcache_client_bytes_sent_total",
        "nearcache_process_resident_memory_bytes",
        "nearcache_connected_clients",
    ] {
        assert!(
            metric(&body, line) >= 1.0,
            "{line} missing or zero in:\n{body}"
        );
    }
    assert!(body.contains("nearcache_upstream_reconnects_total"));
    assert!(
        !body.contains("NOSUCHCMD"),
        "unknown names must fold into OTHER"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn nearcache_admin_command_answers_locally_and_info_still_reaches_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    c.cmd(&["SET", "k", "v"]).await;
    c.cmd(&["GET", "k"]).await;
    let info = c.cmd(&["nearcache", "info"]).await;
    let text = String::from_utf8_lossy(&info);
    assert!(text.starts_with('$'), "{text}");
    for field in [
        "used_memory_rss:",
        "maxmemory:",
        "cache_entries:",
        "cache_hit_ratio:",
        "connected_clients:1",
        "pool_in_use_connections:",
        "cmd_get:",
    ] {
        assert!(text.contains(field), "{field} missing in {text}");
    }
    // INFO is Redis's.
    let redis_info = c.cmd(&["INFO", "server"]).await;
    assert!(String::from_utf8_lossy(&redis_info).contains("redis_version:"));

    // FLUSH empties the proxy's cache, never Redis.
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    loop {
        c.cmd(&["GET", "k"]).await;
        let t = String::from_utf8_lossy(&c.cmd(&["NEARCACHE", "INFO"]).await).into_owned();
        if !t.contains("cache_entries:0\r") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing cached: {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(&c.cmd(&["NEARCACHE", "FLUSH"]).await[..], b"+OK\r\n");
    let t = String::from_utf8_lossy(&c.cmd(&["NEARCACHE", "INFO"]).await).into_owned();
    assert!(t.contains("cache_entries:0\r"), "{t}");
    assert_eq!(&c.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");

    // CONFIG GET / SET, and errors for what cannot be set.
    assert_eq!(
        &c.cmd(&["NEARCACHE", "CONFIG", "SET", "slowlog-threshold-ms", "7"])
            .await[..],
        b"+OK\r\n"
    );
    // The old name (a number of ms) still works; the setting is now a duration.
    assert_eq!(
        &c.cmd(&["NEARCACHE", "CONFIG", "GET", "slowlog-threshold"])
            .await[..],
        b"*2\r\n$17\r\nslowlog-threshold\r\n$3\r\n7ms\r\n"
    );
    assert_eq!(
        &c.cmd(&["NEARCACHE", "CONFIG", "SET", "slowlog-threshold", "25ms"])
            .await[..],
        b"+OK\r\n"
    );
    for bad in [
        &["NEARCACHE", "CONFIG", "SET", "bogus", "1"][..],
        &["NEARCACHE", "CONFIG", "SET", "slowlog-threshold-ms", "soon"],
        &["NEARCACHE", "CONFIG", "SET", "max-memory", "1gb"],
        &["NEARCACHE", "NOPE"],
        &["NEARCACHE"],
    ] {
        let r = c.cmd(bad).await;
        assert!(r.starts_with(b"-ERR"), "{bad:?}: {}", show(&r));
    }
    // Inside MULTI (a dedicated connection) it still answers locally.
    assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n");
    let r = c.cmd(&["NEARCACHE", "CONFIG", "GET", "trace-sample"]).await;
    assert!(r.starts_with(b"*2"), "{}", show(&r));
    assert_eq!(&c.cmd(&["DISCARD"]).await[..], b"+OK\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn dashboard_and_stats_are_served_and_heap_profile_explains_its_absence() {
    let redis = RedisServer::start();
    let proxy = proxy_with_admin(&redis).await;
    let admin = proxy.admin.unwrap();
    let page = http_get(admin, "/").await;
    assert!(
        page.contains("text/html") && page.contains("canvas"),
        "{page}"
    );
    assert!(page.contains("/api/stats"));
    let stats = http_get(admin, "/api/stats").await;
    for key in [
        "\"rss_bytes\":",
        "\"ops\":",
        "\"latency_buckets\":",
        "\"pool_in_use\":",
    ] {
        assert!(stats.contains(key), "{key} in {stats}");
    }
    // In-process there is no jemalloc profiler: a 5xx with a reason, not a broken profile.
    let (status, body) = http_get_bytes(admin, "/debug/pprof/heap", Duration::from_secs(10)).await;
    assert!((500..600).contains(&status), "status {status}");
    assert!(String::from_utf8_lossy(&body).contains("jemalloc"));
    let (status, _) = http_get_bytes(admin, "/debug/pprof/profile?seconds=0", READ_TIMEOUT).await;
    assert_eq!(status, 400);
    let (status, _) = http_get_bytes(admin, "/debug/pprof/profile?seconds=61", READ_TIMEOUT).await;
    assert_eq!(status, 400);
    proxy.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_commands_are_logged() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn_with(&redis.addr(), &["--slowlog-threshold-ms", "20"]);
    let mut c = RawConn::connect(&proxy.addr()).await;
    // BLPOP on an empty list waits its timeout upstream: 0.1 s, past the threshold.
    assert_eq!(&c.cmd(&["BLPOP", "empty", "0.1"]).await[..], b"*-1\r\n");
    poll_until(READ_TIMEOUT, "a slow log line for BLPOP", || {
        let logs = proxy.logs();
        logs.lines()
            .any(|l| l.contains("slow command") && l.contains("BLPOP"))
            .then_some(())
    });
    // A fast command is not logged.
    c.cmd(&["PING"]).await;
    assert!(!proxy
        .logs()
        .lines()
        .any(|l| l.contains("slow command") && l.contains("PING")));
}

/// Keeps the proxy busy with GETs and SETs on one connection until `stop` turns true.
async fn load(addr: String, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let mut c = RawConn::connect(&addr).await;
    let mut n = 0u64;
    while !*stop.borrow() {
        let cmds: Vec<Vec<String>> = (0..64)
            .map(|i| {
                let k = format!("load:{}", (n + i) % 500);
                if i % 8 == 0 {
                    vec!["SET".into(), k, "x".repeat(200)]
                } else {
                    vec!["GET".into(), k]
                }
            })
            .collect();
        c.pipeline(&cmds).await;
        n += 64;
    }
    n
}

#[tokio::test]
async fn binary_serves_heap_and_cpu_profiles_that_heap_diff_reads() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn(&redis.addr());
    let admin = proxy.admin.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let (status, old) = http_get_bytes(admin, "/debug/pprof/heap", PROFILE_LIMIT).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&old));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(load(proxy.addr(), stop));
    let (status, cpu) =
        http_get_bytes(admin, "/debug/pprof/profile?seconds=1", PROFILE_LIMIT).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&cpu));
    let (status, svg) =
        http_get_bytes(admin, "/debug/pprof/flamegraph?seconds=1", PROFILE_LIMIT).await;
    stop_tx.send(true).unwrap();
    assert!(worker.await.unwrap() > 0);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));
    let (status, new) = http_get_bytes(admin, "/debug/pprof/heap", PROFILE_LIMIT).await;
    assert_eq!(status, 200);

    for (what, bytes) in [("heap", &old), ("heap", &new), ("cpu", &cpu)] {
        assert!(
            bytes.starts_with(&[0x1f, 0x8b]),
            "{what} profile is not gzipped"
        );
        let p = heapdiff::decode(bytes).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert!(!p.sample_type.is_empty(), "{what}: no sample types");
        assert!(!p.sample.is_empty(), "{what}: no samples");
        let types: Vec<&str> = p
            .sample_type
            .iter()
            .map(|t| p.string_table[t.ty as usize].as_str())
            .collect();
        if what == "heap" {
            assert_eq!(types, ["inuse_space"]);
            assert!(!p.function.is_empty(), "heap profile is not symbolised");
        } else {
            assert!(types.contains(&"cpu"), "{types:?}");
        }
    }

    let (old_path, new_path) = (dir.path().join("old.pb.gz"), dir.path().join("new.pb.gz"));
    std::fs::write(&old_path, &old).unwrap();
    std::fs::write(&new_path, &new).unwrap();
    let out = run_tool(
        env!("CARGO_BIN_EXE_nearcache"),
        &[
            "heap-diff",
            "--top",
            "5",
            old_path.to_str().unwrap(),
            new_path.to_str().unwrap(),
        ],
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "heap-diff failed: {}", out.stderr);
    assert!(out.stdout.contains("in-use bytes: old"), "{}", out.stdout);
    assert!(out.stdout.lines().count() >= 3, "{}", out.stdout);
    // A file that is not a profile is an error, not a panic.
    std::fs::write(&old_path, b"not a profile").unwrap();
    let out = run_tool(
        env!("CARGO_BIN_EXE_nearcache"),
        &[
            "heap-diff",
            old_path.to_str().unwrap(),
            new_path.to_str().unwrap(),
        ],
        None,
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("not a pprof protobuf profile"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn binary_pauses_heap_profiling_on_request_and_refuses_concurrent_cpu_profiles() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn_admin(&redis.addr(), &["--heap-profiling", "false"]);
    let admin = proxy.admin.unwrap();
    let (status, body) = http_get_bytes(admin, "/debug/pprof/heap", PROFILE_LIMIT).await;
    assert!((500..600).contains(&status), "status {status}");
    assert!(String::from_utf8_lossy(&body).contains("switched off"));
    let mut c = RawConn::connect(&proxy.addr()).await;
    let r = c
        .cmd(&["NEARCACHE", "CONFIG", "SET", "heap-profiling", "true"])
        .await;
    assert_eq!(&r[..], b"+OK\r\n");
    let (status, _) = http_get_bytes(admin, "/debug/pprof/heap", PROFILE_LIMIT).await;
    assert_eq!(status, 200);

    // One capture at a time: while a 3 s capture runs, another request gets 409 (if the
    // other one happened to start first, the 3 s request is the one refused).
    let first = tokio::spawn(http_get_bytes(
        admin,
        "/debug/pprof/profile?seconds=3",
        PROFILE_LIMIT,
    ));
    let mut refused = false;
    let deadline = tokio::time::Instant::now() + PROFILE_LIMIT;
    while !first.is_finished() && tokio::time::Instant::now() < deadline {
        let (status, _) =
            http_get_bytes(admin, "/debug/pprof/profile?seconds=1", PROFILE_LIMIT).await;
        if status == 409 {
            refused = true;
            break;
        }
        assert_eq!(status, 200);
    }
    let first = first.await.unwrap().0;
    assert!(
        refused || first == 409,
        "no capture was refused (first: {first})"
    );
}

#[tokio::test]
async fn binary_captures_sampled_request_traces_as_chrome_json() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn_admin(&redis.addr(), &["--trace-sample", "10"]);
    let admin = proxy.admin.unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(load(proxy.addr(), stop));
    let (status, body) = http_get_bytes(admin, "/debug/trace?seconds=1", PROFILE_LIMIT).await;
    stop_tx.send(true).unwrap();
    assert!(worker.await.unwrap() > 0);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with("{\"traceEvents\":["),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(text.contains("\"name\":\"request\""), "no request spans");
    assert!(text.contains("\"name\":\"upstream\""), "no upstream spans");
    assert!(text.contains("\"sample_every\":10"));
    assert!(text.contains("\"name\":\"reply\""), "no reply spans");
}

/// Every cacheable read is counted once: as a hit, a miss, or a bypass with its reason, so
/// that hits over their sum is the share of reads the cache spared Redis.
#[tokio::test]
async fn every_cacheable_read_is_a_hit_a_miss_or_a_bypass_with_its_reason() {
    let redis = RedisServer::start();
    let config = Proxy::config(&redis.addr())
        .with("admin_listen", "127.0.0.1:0")
        .with("cache_deny_commands", "STRLEN");
    let proxy = Proxy::start_config(config).await;
    let admin = proxy.admin.unwrap();
    let bypass = |reason: &str| format!("nearcache_cache_bypass_total{{reason=\"{reason}\"}} ");
    let mut c = RawConn::connect(&proxy.addr()).await;
    let mut reads = 0u64;
    c.cmd(&["SET", "k", "v"]).await;
    for _ in 0..3 {
        c.cmd(&["GET", "k"]).await;
        reads += 1;
    }
    // Inside a transaction, on the session's dedicated connection.
    c.cmd(&["MULTI"]).await;
    c.cmd(&["GET", "k"]).await;
    c.cmd(&["MGET", "k", "other"]).await;
    c.cmd(&["EXEC"]).await;
    reads += 3;
    // A session pinned to a dedicated connection by its db.
    let mut pinned = RawConn::connect(&proxy.addr()).await;
    pinned.cmd(&["SELECT", "1"]).await;
    pinned.cmd(&["GET", "k"]).await;
    pinned.cmd(&["MGET", "k", "other"]).await;
    reads += 3;
    // Left out by the operator's rules.
    c.cmd(&["STRLEN", "k"]).await;
    reads += 1;
    // A reply larger than an entry may be (64 KB with the default 64 MB cap).
    c.cmd(&["SET", "big", &"x".repeat(100_000)]).await;
    c.cmd(&["GET", "big"]).await;
    reads += 1;
    // The fill of `big` is judged after its reply, when the key's PTTL is in: wait for it
    // without scraping, since a scrape before it counts the read as a miss until more come.
    let mut info_conn = RawConn::connect(&proxy.addr()).await;
    eventually(READ_TIMEOUT, "the large reply to be counted", async || {
        let info = info_conn.cmd(&["NEARCACHE", "INFO"]).await;
        String::from_utf8_lossy(&info).contains("cache_bypass_too_large:1\r")
    })
    .await;
    let body = http_get(admin, "/metrics").await;
    let sum: f64 = [
        "nearcache_cache_hits_total ",
        "nearcache_cache_misses_total ",
    ]
    .iter()
    .map(|m| metric(&body, m))
    .chain(
        [
            "write_in_flight",
            "transaction",
            "dedicated",
            "too_large",
            "not_cacheable",
        ]
        .iter()
        .map(|r| metric(&body, &bypass(r))),
    )
    .sum();
    assert_eq!(sum as u64, reads, "hits + misses + bypasses");
    for (reason, n) in [
        ("transaction", 3.0),
        ("dedicated", 3.0),
        ("not_cacheable", 1.0),
        ("too_large", 1.0),
        ("write_in_flight", 0.0),
    ] {
        assert_eq!(metric(&body, &bypass(reason)), n, "{reason}");
    }
    proxy.shutdown().await;
}
