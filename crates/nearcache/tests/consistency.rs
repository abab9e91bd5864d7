//! Cache consistency: what a caching proxy must never get wrong. These pass trivially for a
//! transparent proxy and guard the cache as it lands.
//!
//! * Writes through the proxy are visible to every client of the proxy at once (the writer got
//!   its reply, so a later read anywhere must not be stale).
//! * Writes made directly to Redis become visible through the proxy within a bounded time
//!   (invalidations are asynchronous; polled, never assumed).
//! * Expired keys disappear; databases and protocols never share cached replies.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;

/// Bound for changes made behind the proxy's back to show through it.
const CONVERGE: Duration = Duration::from_secs(5);

async fn setup() -> (RedisServer, Proxy) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    (redis, proxy)
}

async fn conn(addr: &str, resp3: bool) -> RawConn {
    let mut c = RawConn::connect(addr).await;
    if resp3 {
        let r = c.hello3().await;
        assert!(r.starts_with(b"%"), "HELLO 3: {}", show(&r));
    }
    c
}

fn bulk(v: &str) -> Bytes {
    Bytes::from(format!("${}\r\n{v}\r\n", v.len()))
}

fn null(resp3: bool) -> &'static [u8] {
    if resp3 {
        b"_\r\n"
    } else {
        b"$-1\r\n"
    }
}

/// Polls `args` on `c` until the reply equals `want`; panics with the last reply on timeout.
async fn converges(c: &mut RawConn, args: &[&str], want: &[u8], why: &str) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let r = c.cmd(args).await;
        if &r[..] == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{why}: {} still returns {} after {CONVERGE:?}, want {}",
            show_cmd(args),
            show(&r),
            show(want)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_the_proxy_are_seen_by_other_clients_at_once() {
    let (_redis, proxy) = setup().await;
    for resp3 in [false, true] {
        let mut reader = conn(&proxy.addr(), resp3).await;
        let mut writer = conn(&proxy.addr(), !resp3).await;
        let key = format!("rw{resp3}");
        for i in 0..200 {
            // Warm whatever the reader may cache, then write from another client.
            reader.cmd(&["GET", &key]).await;
            reader.cmd(&["GET", &key]).await;
            let val = format!("v{i}");
            assert_eq!(&writer.cmd(&["SET", &key, &val]).await[..], b"+OK\r\n");
            let r = reader.cmd(&["GET", &key]).await;
            assert_eq!(
                r,
                bulk(&val),
                "round {i}: reader (resp3={resp3}) saw {} after the writer's SET {val} returned",
                show(&r)
            );
        }
        // Other kinds of writes, each followed by an immediate read from the other client.
        let n = null(resp3);
        let steps: Vec<(Vec<&str>, Vec<&str>, Vec<u8>)> = vec![
            (vec!["SET", "x", "1"], vec!["GET", "x"], bulk("1").to_vec()),
            (
                vec!["APPEND", "x", "2"],
                vec!["GET", "x"],
                bulk("12").to_vec(),
            ),
            (vec!["INCR", "x"], vec!["GET", "x"], bulk("13").to_vec()),
            (
                vec!["MSET", "x", "m", "y", "n"],
                vec!["GET", "x"],
                bulk("m").to_vec(),
            ),
            (vec!["DEL", "x"], vec!["GET", "x"], n.to_vec()),
            (
                vec!["SET", "x", "back"],
                vec!["GET", "x"],
                bulk("back").to_vec(),
            ),
            (vec!["EXPIRE", "x", "0"], vec!["GET", "x"], n.to_vec()),
            (
                vec!["SET", "x", "z"],
                vec!["STRLEN", "x"],
                b":1\r\n".to_vec(),
            ),
            (
                vec!["RENAME", "x", "y"],
                vec!["GET", "y"],
                bulk("z").to_vec(),
            ),
            (
                vec!["SET", "x", "again"],
                vec!["GET", "x"],
                bulk("again").to_vec(),
            ),
            (
                vec!["EVAL", "return redis.call('SET', KEYS[1], 'lua')", "1", "x"],
                vec!["GET", "x"],
                bulk("lua").to_vec(),
            ),
            (
                vec!["HSET", "h", "f", "1"],
                vec!["HGET", "h", "f"],
                bulk("1").to_vec(),
            ),
            (
                vec!["HINCRBY", "h", "f", "5"],
                vec!["HGET", "h", "f"],
                bulk("6").to_vec(),
            ),
            (
                vec!["RPUSH", "l", "a"],
                vec!["LLEN", "l"],
                b":1\r\n".to_vec(),
            ),
            (
                vec!["RPUSH", "l", "b"],
                vec!["LINDEX", "l", "-1"],
                bulk("b").to_vec(),
            ),
            (
                vec!["SADD", "s", "1"],
                vec!["SCARD", "s"],
                b":1\r\n".to_vec(),
            ),
            (
                vec!["SADD", "s", "2"],
                vec!["SISMEMBER", "s", "2"],
                b":1\r\n".to_vec(),
            ),
            (vec!["FLUSHDB"], vec!["GET", "x"], n.to_vec()),
        ];
        for (write, read, want) in steps {
            // Warm the read first.
            reader.cmd(&read).await;
            reader.cmd(&read).await;
            let w = writer.cmd(&write).await;
            assert!(!w.starts_with(b"-"), "{}: {}", show_cmd(&write), show(&w));
            let r = reader.cmd(&read).await;
            assert_eq!(
                &r[..],
                &want[..],
                "after {} by another client (resp3 reader={resp3}): {} returned {}",
                show_cmd(&write),
                show_cmd(&read),
                show(&r)
            );
        }
        // A write inside MULTI/EXEC.
        reader.cmd(&["GET", "tx"]).await;
        writer.cmd(&["MULTI"]).await;
        writer.cmd(&["SET", "tx", "committed"]).await;
        writer.cmd(&["EXEC"]).await;
        assert_eq!(reader.cmd(&["GET", "tx"]).await, bulk("committed"));
        writer.cmd(&["FLUSHDB"]).await;
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_become_visible_through_the_proxy() {
    let (redis, proxy) = setup().await;
    for resp3 in [false, true] {
        let mut c = conn(&proxy.addr(), resp3).await;
        let mut d = RawConn::connect(&redis.addr()).await;
        for i in 0..30 {
            let key = format!("d{resp3}{i}");
            d.cmd(&["SET", &key, "old"]).await;
            assert_eq!(c.cmd(&["GET", &key]).await, bulk("old"));
            assert_eq!(c.cmd(&["GET", &key]).await, bulk("old"));
            d.cmd(&["SET", &key, "new"]).await;
            converges(&mut c, &["GET", &key], &bulk("new"), "direct SET").await;
            d.cmd(&["DEL", &key]).await;
            converges(&mut c, &["GET", &key], null(resp3), "direct DEL").await;
        }
        // Many cached keys, then FLUSHALL behind the proxy's back.
        for i in 0..50 {
            d.cmd(&["SET", &format!("f{i}"), "v"]).await;
            c.cmd(&["GET", &format!("f{i}")]).await;
        }
        d.cmd(&["FLUSHALL"]).await;
        for i in 0..50 {
            converges(&mut c, &["GET", &format!("f{i}")], null(resp3), "FLUSHALL").await;
        }
        // Hash fields.
        d.cmd(&["HSET", "h", "f", "1"]).await;
        c.cmd(&["HGET", "h", "f"]).await;
        c.cmd(&["HGETALL", "h"]).await;
        d.cmd(&["HSET", "h", "f", "2"]).await;
        converges(&mut c, &["HGET", "h", "f"], &bulk("2"), "direct HSET").await;
        d.cmd(&["FLUSHALL"]).await;
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_not_served() {
    let (redis, proxy) = setup().await;
    let mut c = conn(&proxy.addr(), false).await;
    let mut d = RawConn::connect(&redis.addr()).await;
    assert_eq!(
        &c.cmd(&["SET", "e1", "v", "PX", "200"]).await[..],
        b"+OK\r\n"
    );
    d.cmd(&["SET", "e2", "v", "PX", "200"]).await;
    c.cmd(&["SET", "e3", "v"]).await;
    assert_eq!(c.cmd(&["GET", "e1"]).await, bulk("v"));
    assert_eq!(c.cmd(&["GET", "e2"]).await, bulk("v"));
    assert_eq!(c.cmd(&["GET", "e3"]).await, bulk("v"));
    c.cmd(&["PEXPIRE", "e3", "200"]).await;
    for k in ["e1", "e2", "e3"] {
        converges(&mut c, &["GET", k], b"$-1\r\n", "expiry").await;
    }
    // Once gone, gone for good (no stale copy resurfacing).
    for k in ["e1", "e2", "e3"] {
        assert_eq!(&c.cmd(&["GET", k]).await[..], b"$-1\r\n");
        assert_eq!(&c.cmd(&["EXISTS", k]).await[..], b":0\r\n");
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_do_not_share_cached_replies() {
    let (redis, proxy) = setup().await;
    let mut c0 = conn(&proxy.addr(), false).await;
    let mut c1 = conn(&proxy.addr(), false).await;
    c1.cmd(&["SELECT", "1"]).await;
    c0.cmd(&["SET", "k", "zero"]).await;
    c1.cmd(&["SET", "k", "one"]).await;
    for _ in 0..3 {
        assert_eq!(c0.cmd(&["GET", "k"]).await, bulk("zero"));
        assert_eq!(c1.cmd(&["GET", "k"]).await, bulk("one"));
    }
    // A write in db 1 leaves db 0 alone, and is seen in db 1 at once.
    c1.cmd(&["SET", "k", "one-b"]).await;
    assert_eq!(c0.cmd(&["GET", "k"]).await, bulk("zero"));
    assert_eq!(c1.cmd(&["GET", "k"]).await, bulk("one-b"));
    // Likewise behind the proxy's back.
    let mut d = RawConn::connect(&redis.addr()).await;
    d.cmd(&["SELECT", "1"]).await;
    d.cmd(&["SET", "k", "one-direct"]).await;
    converges(
        &mut c1,
        &["GET", "k"],
        &bulk("one-direct"),
        "direct write db 1",
    )
    .await;
    assert_eq!(c0.cmd(&["GET", "k"]).await, bulk("zero"));
    // The same connection switching databases.
    c0.cmd(&["SELECT", "1"]).await;
    assert_eq!(c0.cmd(&["GET", "k"]).await, bulk("one-direct"));
    c0.cmd(&["SELECT", "0"]).await;
    assert_eq!(c0.cmd(&["GET", "k"]).await, bulk("zero"));
    // SWAPDB swaps what every client sees.
    assert_eq!(&c0.cmd(&["SWAPDB", "0", "1"]).await[..], b"+OK\r\n");
    assert_eq!(c0.cmd(&["GET", "k"]).await, bulk("one-direct"));
    assert_eq!(c1.cmd(&["GET", "k"]).await, bulk("zero"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp2_and_resp3_clients_get_their_own_reply_shapes() {
    let (redis, proxy) = setup().await;
    let mut setup = RawConn::connect(&redis.addr()).await;
    setup.cmd(&["HSET", "h", "a", "1", "b", "2"]).await;
    setup.cmd(&["ZADD", "z", "1.5", "m", "2", "n"]).await;
    setup.cmd(&["SADD", "si", "1", "2", "3"]).await;
    setup.cmd(&["SET", "s", "v"]).await;
    let reads: &[&[&str]] = &[
        &["HGETALL", "h"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["ZSCORE", "z", "m"],
        &["SMEMBERS", "si"],
        &["GET", "nosuch"],
        &["HGET", "h", "nosuch"],
        &["LRANGE", "nosuch", "0", "-1"],
        &["MGET", "s", "nosuch"],
        &["GET", "s"],
    ];
    let mut want2 = Vec::new();
    let mut want3 = Vec::new();
    {
        let mut d2 = conn(&redis.addr(), false).await;
        let mut d3 = conn(&redis.addr(), true).await;
        for r in reads {
            want2.push(d2.cmd(r).await);
            want3.push(d3.cmd(r).await);
        }
    }
    let mut p2 = conn(&proxy.addr(), false).await;
    let mut p3 = conn(&proxy.addr(), true).await;
    for round in 0..3 {
        for (i, r) in reads.iter().enumerate() {
            // Alternate which protocol reads first, so either could fill a shared cache.
            let (a, b) = if (round + i) % 2 == 0 {
                let a = p2.cmd(r).await;
                (a, p3.cmd(r).await)
            } else {
                let b = p3.cmd(r).await;
                (p2.cmd(r).await, b)
            };
            assert_eq!(
                a,
                want2[i],
                "RESP2 {}: got {} want {}",
                show_cmd(r),
                show(&a),
                show(&want2[i])
            );
            assert_eq!(
                b,
                want3[i],
                "RESP3 {}: got {} want {}",
                show_cmd(r),
                show(&b),
                show(&want3[i])
            );
        }
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_never_see_the_past() {
    // Each writer increments its own counter through the proxy; readers on other connections
    // must see a non-decreasing sequence that ends at the final value. Each reader also
    // pipelines writes to keys of its own between those reads, and must read every one of them
    // back, in the same pipeline, never an older value.
    let (_redis, proxy) = setup().await;
    let addr = proxy.addr();
    let mut tasks = Vec::new();
    for w in 0..2 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = RawConn::connect(&addr).await;
            for _ in 0..300 {
                let r = c.cmd(&["INCR", &format!("ctr{w}")]).await;
                assert!(r.starts_with(b":"), "{}", show(&r));
            }
        }));
    }
    for rd in 0..2 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = conn(&addr, rd == 1).await;
            let (own, count) = (format!("own{rd}"), format!("count{rd}"));
            let mut last = [0i64; 2];
            for i in 0..300 {
                let v = format!("v{i}");
                let cmds: Vec<Vec<&str>> = vec![
                    vec!["GET", "ctr0"],
                    vec!["SET", &own, &v],
                    vec!["GET", "ctr1"],
                    vec!["GET", &own],
                    vec!["INCR", &count],
                    vec!["MGET", "ctr0", &own, "ctr1"],
                    vec!["GET", &count],
                    vec!["GET", &own],
                ];
                let r = c.pipeline(&cmds).await;
                let counter = |b: &[u8]| -> i64 {
                    match to_frame(b) {
                        resp::Frame::Bulk(b) => std::str::from_utf8(&b).unwrap().parse().unwrap(),
                        _ => 0,
                    }
                };
                for (w, at) in [(0, 0), (1, 2)] {
                    let v = counter(&r[at]);
                    assert!(
                        v >= last[w],
                        "reader {rd}: ctr{w} went back from {} to {v}",
                        last[w]
                    );
                    last[w] = v;
                }
                for at in [3, 7] {
                    assert_eq!(
                        r[at],
                        bulk(&v),
                        "reader {rd} round {i}: {own} after its SET {v}"
                    );
                }
                let n = format!("{}", i + 1);
                assert_eq!(&r[4][..], format!(":{n}\r\n").as_bytes(), "reader {rd}");
                assert_eq!(
                    r[6],
                    bulk(&n),
                    "reader {rd} round {i}: {count} after its INCR"
                );
                match to_frame(&r[5]) {
                    resp::Frame::Array(items) if items.len() == 3 => {
                        assert_eq!(
                            to_bytes(&items[1]),
                            bulk(&v),
                            "reader {rd} round {i}: MGET's {own} after its SET {v}"
                        );
                    }
                    other => panic!("reader {rd}: MGET returned {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("task did not finish")
            .expect("task failed");
    }
    let mut c = RawConn::connect(&addr).await;
    assert_eq!(c.cmd(&["GET", "ctr0"]).await, bulk("300"));
    assert_eq!(c.cmd(&["GET", "ctr1"]).await, bulk("300"));
    proxy.shutdown().await;
}

/// One command of a generated pipeline, over a few keys (`K`) so that writes and reads of the
/// same and of other keys mix.
#[derive(Debug, Clone)]
enum Op {
    Set(u8, String),
    Get(u8),
    Strlen(u8),
    Append(u8, String),
    Del(Vec<u8>),
    Mget(Vec<u8>),
    Mset(Vec<(u8, String)>),
    /// A script's write: its keys are not known exactly, so it holds back every read.
    Eval(u8, String),
}

const K: u8 = 6;

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let key = || 0..K;
    let val = || "[a-z]{0,5}";
    let keys = || proptest::collection::vec(0..K, 1..4);
    prop_oneof![
        3 => (key(), val()).prop_map(|(k, v)| Op::Set(k, v)),
        5 => key().prop_map(Op::Get),
        1 => key().prop_map(Op::Strlen),
        1 => (key(), val()).prop_map(|(k, v)| Op::Append(k, v)),
        1 => keys().prop_map(Op::Del),
        2 => keys().prop_map(Op::Mget),
        1 => proptest::collection::vec((key(), val()), 1..3).prop_map(Op::Mset),
        1 => (key(), val()).prop_map(|(k, v)| Op::Eval(k, v)),
    ]
}

/// The command `op` sends for keys under `prefix`, and the reply the model expects (RESP2);
/// the model is updated as Redis would be.
fn run_model(
    op: &Op,
    prefix: &str,
    model: &mut std::collections::HashMap<u8, String>,
) -> (Vec<String>, Vec<u8>) {
    let key = |k: &u8| format!("{prefix}:k{k}");
    let value = |v: Option<&String>| match v {
        Some(v) => bulk(v).to_vec(),
        None => b"$-1\r\n".to_vec(),
    };
    let int = |n: usize| format!(":{n}\r\n").into_bytes();
    let ok = b"+OK\r\n".to_vec();
    match op {
        Op::Set(k, v) => {
            model.insert(*k, v.clone());
            (vec!["SET".into(), key(k), v.clone()], ok)
        }
        Op::Get(k) => (vec!["GET".into(), key(k)], value(model.get(k))),
        Op::Strlen(k) => (
            vec!["STRLEN".into(), key(k)],
            int(model.get(k).map_or(0, String::len)),
        ),
        Op::Append(k, v) => {
            let now = model.entry(*k).or_default();
            now.push_str(v);
            (vec!["APPEND".into(), key(k), v.clone()], int(now.len()))
        }
        Op::Del(ks) => {
            let mut cmd = vec!["DEL".to_string()];
            cmd.extend(ks.iter().map(key));
            let gone = ks.iter().filter(|k| model.remove(k).is_some()).count();
            (cmd, int(gone))
        }
        Op::Mget(ks) => {
            let mut cmd = vec!["MGET".to_string()];
            cmd.extend(ks.iter().map(key));
            let mut want = format!("*{}\r\n", ks.len()).into_bytes();
            for k in ks {
                want.extend(value(model.get(k)));
            }
            (cmd, want)
        }
        Op::Mset(pairs) => {
            let mut cmd = vec!["MSET".to_string()];
            for (k, v) in pairs {
                cmd.extend([key(k), v.clone()]);
                model.insert(*k, v.clone());
            }
            (cmd, ok)
        }
        Op::Eval(k, v) => {
            model.insert(*k, v.clone());
            let script = "return redis.call('SET', KEYS[1], ARGV[1])";
            let cmd = vec!["EVAL".into(), script.into(), "1".into(), key(k), v.clone()];
            (cmd, ok)
        }
    }
}

/// Random pipelines of reads and writes through the proxy, against a model of the keys: every
/// reply is the model's, so no read is ever older than a write the client made before it, in
/// the same pipeline or an earlier one. Another client keeps reading the same keys meanwhile,
/// so that entries are filled (and reads in flight joined) by a session other than the writer's.
#[test]
fn random_pipelines_read_their_own_writes() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_redis, proxy) = rt.block_on(setup());
    let addr = proxy.addr();
    // Each case, shrinking included, uses keys of its own: it starts from an empty keyspace.
    let case = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let (addr, case, stop) = (addr.clone(), case.clone(), stop.clone());
        rt.spawn(async move {
            let mut c = RawConn::connect(&addr).await;
            while !stop.load(Ordering::Relaxed) {
                let p = format!("p{}", case.load(Ordering::Relaxed));
                for k in 0..K {
                    c.cmd(&["GET", &format!("{p}:k{k}")]).await;
                }
                c.cmd(&["MGET", &format!("{p}:k0"), &format!("{p}:k1")])
                    .await;
            }
        })
    };
    let pipelines = proptest::collection::vec(proptest::collection::vec(op(), 1..30), 1..5);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&pipelines, |pipelines| {
        let prefix = format!("p{}", case.fetch_add(1, Ordering::Relaxed) + 1);
        let mut model = std::collections::HashMap::new();
        let mut client = rt.block_on(RawConn::connect(&addr));
        for (n, ops) in pipelines.iter().enumerate() {
            let (cmds, want): (Vec<_>, Vec<_>) = ops
                .iter()
                .map(|op| run_model(op, &prefix, &mut model))
                .unzip();
            let got = rt.block_on(client.pipeline(&cmds));
            for (i, (got, want)) in got.iter().zip(&want).enumerate() {
                if got[..] != want[..] {
                    return Err(TestCaseError::fail(format!(
                        "pipeline {n}, command {i} ({}): got {}, want {}",
                        show_cmd(&cmds[i]),
                        show(got),
                        show(want)
                    )));
                }
            }
        }
        Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), noise).await;
        proxy.shutdown().await;
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Random writes made directly on Redis (values with and without expiry, expiries given and
/// taken away, deletes) and reads through the proxy, with entries whose own `cache_ttl` runs
/// out quickly, so that misses often find their key known to have no expiry and skip `PTTL`:
/// no read sent after a value's expiry returns it. Redis's active expiry is off, so nothing
/// but the proxy's own deadlines ends those entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_expiries_never_let_an_expired_value_through() {
    use std::collections::HashMap;
    use std::time::Instant;
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let config = Proxy::config(&redis.addr()).with("cache_ttl", "150ms");
    let proxy = Proxy::start_config(config).await;
    let mut d = RawConn::connect(&redis.addr()).await;
    let off = d.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]).await;
    assert_eq!(&off[..], b"+OK\r\n");
    let mut c = RawConn::connect(&proxy.addr()).await;
    let keys = ["r0", "r1", "r2"];
    // Per value written: when it expires at the latest (`None`: never).
    let mut ends: HashMap<String, Option<Instant>> = HashMap::new();
    // Per key: the value it holds, as far as the writes made tell.
    let mut holds: [Option<String>; 3] = Default::default();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    // Far enough from its end that a command sent now surely meets the value alive.
    let margin = Duration::from_millis(30);
    let (mut reads, mut values_read) = (0, 0);
    for step in 0..1500 {
        let k = next(3) as usize;
        let key = keys[k];
        let alive = |v: &Option<String>, ends: &HashMap<String, Option<Instant>>| {
            let v = v.as_ref()?;
            match ends[v] {
                Some(end) if end < Instant::now() + margin => None,
                end => Some((v.clone(), end)),
            }
        };
        match next(10) {
            0 | 1 => {
                let v = format!("v{step}");
                let ms = 40 + next(120);
                if next(2) == 0 {
                    d.cmd(&["SET", key, &v]).await;
                    ends.insert(v.clone(), None);
                } else {
                    d.cmd(&["SET", key, &v, "PX", &ms.to_string()]).await;
                    let end = Instant::now() + Duration::from_millis(ms);
                    ends.insert(v.clone(), Some(end));
                }
                holds[k] = Some(v);
            }
            2 => {
                if let Some((v, _)) = alive(&holds[k], &ends) {
                    let ms = 40 + next(120);
                    let r = d.cmd(&["PEXPIRE", key, &ms.to_string()]).await;
                    assert_eq!(&r[..], b":1\r\n", "PEXPIRE {key}");
                    let end = Instant::now() + Duration::from_millis(ms);
                    ends.insert(v, Some(end));
                }
            }
            3 => {
                if let Some((v, Some(_))) = alive(&holds[k], &ends) {
                    let r = d.cmd(&["PERSIST", key]).await;
                    assert_eq!(&r[..], b":1\r\n", "PERSIST {key}");
                    ends.insert(v, None);
                }
            }
            4 => {
                d.cmd(&["DEL", key]).await;
                holds[k] = None;
            }
            _ => {
                let sent = Instant::now();
                let r = c.cmd(&["GET", key]).await;
                reads += 1;
                if r[0] != b'$' || &r[..] == b"$-1\r\n" {
                    continue;
                }
                values_read += 1;
                let text = String::from_utf8_lossy(&r);
                let v = text.split("\r\n").nth(1).unwrap_or_default().to_string();
                if let Some(Some(end)) = ends.get(&v) {
                    assert!(
                        sent <= *end + Duration::from_millis(2),
                        "step {step}: GET {key} sent {:?} after {v} expired returned it",
                        sent - *end
                    );
                }
            }
        }
        if next(8) == 0 {
            tokio::time::sleep(Duration::from_millis(next(40))).await;
        }
    }
    assert!(
        reads > 500 && values_read > 100,
        "{reads} reads, {values_read} values"
    );
    proxy.shutdown().await;
}
