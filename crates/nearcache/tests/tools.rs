//! Real clients through the proxy: redis-cli (normal, RESP3, --pipe), redis-benchmark, and the
//! redis-rs crate. The CLI tests run the `nearcache` binary; the redis-rs tests run it
//! in-process. Nothing here asserts speed.

mod common;

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use redis::AsyncCommands;

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn cli(port: u16, args: &[&str]) -> ToolOutput {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    run_tool("redis-cli", &all, None, Duration::from_secs(30))
}

#[test]
fn binary_prints_ready_line_and_serves() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn(&redis.addr());
    assert_eq!(proxy.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(proxy.port(), 0);
    let admin = proxy
        .admin
        .expect("--admin-listen given, so the ready line must name an admin address");
    assert_ne!(admin.port(), 0);
    // The admin port answers HTTP with metrics.
    let mut http = std::net::TcpStream::connect(admin).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    let _ = http.read_to_string(&mut body);
    assert!(body.starts_with("HTTP/1.1 200"), "GET /metrics: {body:?}");
    let out = cli(proxy.port(), &["ping"]);
    assert_eq!(out.stdout, "PONG\n", "{out:?}");
}

#[test]
fn binary_without_admin_says_none() {
    let redis = RedisServer::start();
    let mut proxy = ProxyProcess::spawn_with(&redis.addr(), &[]);
    assert!(proxy.is_running());
    assert_eq!(proxy.admin, None, "--no-admin must print admin=none");
    let out = cli(proxy.port(), &["ping"]);
    assert_eq!(out.stdout, "PONG\n", "{out:?}");
}

#[test]
fn redis_cli_commands_match_direct() {
    let direct = RedisServer::start();
    let behind = RedisServer::start();
    let proxy = ProxyProcess::spawn(&behind.addr());

    let out = cli(proxy.port(), &["set", "a", "b"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, "OK\n");
    let out = cli(proxy.port(), &["get", "a"]);
    assert_eq!(out.stdout, "b\n", "{out:?}");
    cli(direct.port(), &["set", "a", "b"]);

    // The same invocations against Redis and through the proxy print the same thing.
    let script: &[&[&str]] = &[
        &["get", "a"],
        &["--no-raw", "get", "a"],
        &["--no-raw", "get", "nosuch"],
        &["-3", "--no-raw", "get", "nosuch"],
        &["incr", "n"],
        &["--no-raw", "incr", "n"],
        &["hset", "h", "f", "v", "g", "w"],
        &["--no-raw", "hgetall", "h"],
        &["-3", "--no-raw", "hgetall", "h"],
        &["-3", "hgetall", "h"],
        &["zadd", "z", "1.5", "m", "2", "n"],
        &["--no-raw", "zrange", "z", "0", "-1", "withscores"],
        &["-3", "--no-raw", "zrange", "z", "0", "-1", "withscores"],
        &["-3", "--no-raw", "zscore", "z", "m"],
        &["sadd", "si", "3", "1", "2"],
        &["-3", "--no-raw", "smembers", "si"],
        &["rpush", "l", "x", "y z", "\r\n"],
        &["--no-raw", "lrange", "l", "0", "-1"],
        &["--no-raw", "lrange", "nosuch", "0", "-1"],
        &[
            "-3",
            "--no-raw",
            "eval",
            "return {1, true, false, {double=1.5}, 'x'}",
            "0",
        ],
        &["--no-raw", "eval", "return {1, true, false, 'x'}", "0"],
        &["--no-raw", "nosuchcmd", "arg"],
        &["--no-raw", "lpush", "a", "x"],
        &["-n", "1", "set", "a", "db1"],
        &["-n", "1", "get", "a"],
        &["get", "a"],
        &["-3", "-n", "2", "--no-raw", "get", "a"],
        &["--no-raw", "mget", "a", "nosuch", "n"],
        &["--no-raw", "del", "a", "h"],
        &["--no-raw", "get", "a"],
        &["--no-raw", "dbsize"],
    ];
    for args in script {
        let want = cli(direct.port(), args);
        let got = cli(proxy.port(), args);
        assert_eq!(
            (want.status.code(), &want.stdout),
            (got.status.code(), &got.stdout),
            "redis-cli {args:?}: direct (left) vs nearcache (right); nearcache stderr: {}",
            got.stderr
        );
    }
}

#[test]
fn redis_cli_pipe_mode() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn(&redis.addr());
    let mut data = BytesMut::new();
    let n_keys = 5000;
    for i in 0..n_keys {
        let k = format!("key:{i}");
        let v = format!("val:{i}");
        resp::encode_command(&["SET", &k, &v], &mut data);
        if i % 5 == 0 {
            resp::encode_command(&["INCR", "counter"], &mut data);
        }
    }
    let total = n_keys + n_keys / 5;
    let port = proxy.port().to_string();
    let out = run_tool(
        "redis-cli",
        &["-h", "127.0.0.1", "-p", &port, "--pipe"],
        Some(data.to_vec()),
        TOOL_TIMEOUT,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains(&format!("errors: 0, replies: {total}")),
        "unexpected --pipe summary: {out:?}"
    );
    let a = redis.addr();
    assert_eq!(
        &redis_cmd_blocking(&a, &[b"DBSIZE"])[..],
        format!(":{}\r\n", n_keys + 1).as_bytes()
    );
    assert_eq!(
        &redis_cmd_blocking(&a, &[b"GET", b"counter"])[..],
        format!("$4\r\n{}\r\n", n_keys / 5).as_bytes()
    );
    assert_eq!(
        &redis_cmd_blocking(&a, &[b"GET", b"key:4999"])[..],
        b"$8\r\nval:4999\r\n"
    );
}

/// Extracts `(test, requests per second)` from `redis-benchmark -q` output.
fn benchmark_rates(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .split(['\r', '\n'])
        .filter_map(|line| {
            let (name, rest) = line.split_once(": ")?;
            let (rate, _) = rest.split_once(" requests per second")?;
            Some((name.trim().to_string(), rate.trim().parse().ok()?))
        })
        .collect()
}

fn run_benchmark(port: u16, args: &[&str]) -> ToolOutput {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    run_tool("redis-benchmark", &all, None, TOOL_TIMEOUT)
}

#[test]
fn redis_benchmark_completes() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn(&redis.addr());
    let out = run_benchmark(
        proxy.port(),
        &["-t", "get,set", "-n", "20000", "-c", "20", "-P", "16", "-q"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stderr.contains("Error from server") && !out.stdout.contains("Error from server"),
        "{out:?}"
    );
    let rates = benchmark_rates(&out.stdout);
    for test in ["SET", "GET"] {
        let r = rates.iter().find(|(n, _)| n == test);
        assert!(
            matches!(r, Some((_, rate)) if *rate > 0.0),
            "no non-zero {test} rate in {:?}",
            out.stdout
        );
    }
    assert_eq!(
        &redis_cmd_blocking(&redis.addr(), &[b"EXISTS", b"key:__rand_int__"])[..],
        b":1\r\n"
    );
}

#[test]
fn redis_benchmark_resp3_many_commands() {
    let redis = RedisServer::start();
    let proxy = ProxyProcess::spawn(&redis.addr());
    let tests = "ping_inline,ping_mbulk,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,zadd,zpopmin,lrange_100,mset";
    let out = run_benchmark(
        proxy.port(),
        &[
            "-3", "-t", tests, "-n", "2000", "-c", "10", "-P", "4", "-r", "100", "-q",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stderr.contains("Error from server") && !out.stdout.contains("Error from server"),
        "{out:?}"
    );
    let rates = benchmark_rates(&out.stdout);
    assert!(
        rates.len() >= tests.split(',').count(),
        "expected a rate per test, got {rates:?} from {:?}",
        out.stdout
    );
    assert!(rates.iter().all(|(_, r)| *r > 0.0), "{rates:?}");
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_through_proxy() {
    for proto in ["resp2", "resp3"] {
        let redis = RedisServer::start();
        let proxy = Proxy::start(&redis.addr()).await;
        let url = format!("redis://{}/?protocol={proto}", proxy.addr());
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut con = within("connect", client.get_multiplexed_async_connection())
            .await
            .unwrap_or_else(|e| panic!("{proto}: connect through the proxy: {e}"));

        let () = within("SET", con.set("k", "v")).await.unwrap();
        let v: String = within("GET", con.get("k")).await.unwrap();
        assert_eq!(v, "v", "{proto}");
        let v: Option<String> = within("GET", con.get("nosuch")).await.unwrap();
        assert_eq!(v, None, "{proto}");
        let bin: Vec<u8> = (0..=255u8).collect();
        let () = within("SET bin", con.set(&bin[..], &bin[..]))
            .await
            .unwrap();
        let got: Vec<u8> = within("GET bin", con.get(&bin[..])).await.unwrap();
        assert_eq!(got, bin, "{proto}");

        let (p1, cnt, list): (String, i64, Vec<String>) = within(
            "pipeline",
            redis::pipe()
                .set("p1", "x")
                .ignore()
                .get("p1")
                .incr("cnt", 5)
                .rpush("l", &["a", "b"])
                .ignore()
                .lrange("l", 0, -1)
                .query_async(&mut con),
        )
        .await
        .unwrap();
        assert_eq!(
            (p1.as_str(), cnt, list),
            ("x", 5, vec!["a".to_string(), "b".into()]),
            "{proto}"
        );

        let (t, h): (i64, std::collections::HashMap<String, String>) = within(
            "MULTI pipeline",
            redis::pipe()
                .atomic()
                .set("t", 1)
                .ignore()
                .incr("t", 2)
                .hset("h", "f", "g")
                .ignore()
                .hgetall("h")
                .query_async(&mut con),
        )
        .await
        .unwrap();
        assert_eq!(t, 3, "{proto}");
        assert_eq!(h.get("f").map(String::as_str), Some("g"), "{proto}");
        assert_eq!(
            &redis_cmd_blocking(&redis.addr(), &[b"GET", b"t"])[..],
            b"$1\r\n3\r\n"
        );

        let err: redis::RedisResult<i64> = within("INCR", con.incr("k", 1)).await;
        let err = err.expect_err("INCR of a non-number must fail");
        assert!(err.to_string().contains("not an integer"), "{proto}: {err}");

        let (score,): (f64,) = within(
            "ZADD/ZSCORE",
            redis::pipe()
                .zadd("z", "m", 2.5)
                .ignore()
                .zscore("z", "m")
                .query_async(&mut con),
        )
        .await
        .unwrap();
        assert_eq!(score, 2.5, "{proto}");

        // Many concurrent requests on the multiplexed connection: each gets its own reply.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200 {
            let mut con = con.clone();
            set.spawn(async move {
                let k = format!("c{i}");
                let () = con.set(&k, i).await.unwrap();
                let got: i64 = con.get(&k).await.unwrap();
                assert_eq!(got, i);
            });
        }
        within("concurrent requests", async {
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
        })
        .await;

        drop(con);
        proxy.shutdown().await;
    }
}
