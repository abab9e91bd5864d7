//! Faults on the upstream side, against a real Redis: a stalled server (`DEBUG SLEEP`) and the
//! upstream timeout, a server that refuses us (maxclients, a password we lack) logged once per
//! cause, and a TCP path that dribbles bytes or cuts mid-reply. Redis killed and restarted,
//! and connections killed with CLIENT KILL, are in resilience.rs and cache.rs.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

fn is_nearcache_error(r: &[u8]) -> bool {
    r.starts_with(b"-ERR nearcache: ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_times_out_and_the_connection_is_replaced() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let mut config = Proxy::config(&redis.addr());
    config.set("upstream_conns", "1").unwrap();
    config.set("upstream_timeout", "300ms").unwrap();
    config.set("admin_listen", "127.0.0.1:0").unwrap();
    let proxy = Proxy::start_config(config).await;
    let admin = proxy.admin.unwrap();
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["SET", "k", "v"]).await[..], b"+OK\r\n");
    // Redis stalls for 2 s; the GET waits behind the sleep on the same upstream connection.
    let replies = c
        .pipeline(&[vec!["DEBUG", "SLEEP", "2"], vec!["GET", "k"]])
        .await;
    for r in &replies {
        assert!(
            is_nearcache_error(r) && String::from_utf8_lossy(r).contains("within 300 ms"),
            "a request behind a stall: {}",
            show(r)
        );
    }
    assert!(
        metric(
            admin,
            "nearcache_pool_closed_connections_total{reason=\"error\"}"
        )
        .await
            >= 1.0
    );
    // Once Redis is back, a new connection serves the same client.
    eventually(
        Duration::from_secs(10),
        "service after the stall",
        async || &c.cmd(&["GET", "k"]).await[..] == b"$1\r\nv\r\n",
    )
    .await;
    // A blocking command may wait longer than the upstream timeout.
    let mut blocker = RawConn::connect(&proxy.addr()).await;
    assert_eq!(
        &blocker.cmd(&["BLPOP", "nothing", "1"]).await[..],
        b"*-1\r\n"
    );
    proxy.shutdown().await;
}

/// The `err=` field of each warn line about failing upstream connections, with its count.
fn logged_causes(logs: &str) -> HashMap<String, usize> {
    let mut causes = HashMap::new();
    for line in logs
        .lines()
        .filter(|l| l.contains("cannot connect upstream"))
    {
        let cause = line.split("err=").nth(1).unwrap_or(line).to_string();
        *causes.entry(cause).or_insert(0) += 1;
    }
    causes
}

async fn hammer(addr: &str, args: &[&str], times: usize) -> Vec<bytes::Bytes> {
    let mut replies = Vec::new();
    for _ in 0..times {
        let mut c = RawConn::connect(addr).await;
        replies.push(c.cmd(args).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_at_maxclients_gives_a_clear_error_logged_once() {
    // Room for the proxy's 4 shared connections and its invalidation connection, no more.
    let redis = RedisServer::start_with(&["--maxclients", "5"]);
    // Passthrough mode's ACL check opens a short-lived connection of its own while no shared
    // connection is up (docs/security.md), which a Redis this full may refuse.
    let proxy = ProxyProcess::spawn_with(&redis.addr(), &["--client-auth", "none"]);
    let mut c = RawConn::connect(&proxy.addr()).await;
    eventually(Duration::from_secs(10), "the proxy to serve", async || {
        &c.cmd(&["PING"]).await[..] == b"+PONG\r\n"
    })
    .await;
    // The shared connections come up on their own threads: all four hold their places in
    // Redis before the transaction asks for a fifth.
    eventually(
        Duration::from_secs(10),
        "every shared connection up",
        async || info_u64(&mut c, "pool_idle_connections").await >= 4,
    )
    .await;
    // A transaction needs one more connection, which Redis refuses.
    let replies = hammer(&proxy.addr(), &["MULTI"], 30).await;
    for r in &replies {
        let text = String::from_utf8_lossy(r);
        assert!(
            is_nearcache_error(r) && text.contains("max number of clients reached"),
            "{text}"
        );
    }
    let logs = proxy.logs();
    let causes = logged_causes(&logs);
    assert!(
        causes
            .keys()
            .any(|c| c.contains("max number of clients reached")),
        "the cause is logged:\n{logs}"
    );
    for (cause, n) in &causes {
        assert_eq!(*n, 1, "logged {n} times: {cause}\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_we_lack_gives_a_clear_error_logged_once_per_cause() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    // Clients act as the proxy's user (in passthrough mode they would get Redis's own -NOAUTH
    // until they authenticate: tests/auth.rs).
    let proxy = ProxyProcess::spawn_with(&redis.addr(), &["--client-auth", "none"]);
    // Long enough for several rounds of reconnect attempts by every connection.
    let replies = hammer(&proxy.addr(), &["GET", "k"], 40).await;
    for r in &replies {
        let text = String::from_utf8_lossy(r);
        assert!(is_nearcache_error(r) && text.contains("NOAUTH"), "{text}");
    }
    let logs = proxy.logs();
    let causes = logged_causes(&logs);
    assert!(!causes.is_empty(), "nothing logged:\n{logs}");
    for (cause, n) in &causes {
        assert_eq!(*n, 1, "logged {n} times: {cause}\n{logs}");
    }
}

/// Every client reads its own values back, pipelined, while Redis's replies arrive one byte at
/// a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_dribbled_byte_by_byte_are_never_mixed() {
    let redis = RedisServer::start();
    let relay = FaultRelay::start(&redis.addr(), Fault::Dribble).await;
    let mut config = Proxy::config(&relay.addr());
    config.set("max_memory", "0").unwrap(); // every read goes upstream
    let proxy = Proxy::start_config(config).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let addr = proxy.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = RawConn::connect(&addr).await;
            for round in 0..5 {
                let sets: Vec<Vec<String>> = (0..10)
                    .map(|j| {
                        vec![
                            "SET".into(),
                            format!("c{i}k{j}"),
                            format!("v{i}-{round}-{j}"),
                        ]
                    })
                    .collect();
                for r in c.pipeline(&sets).await {
                    assert_eq!(&r[..], b"+OK\r\n");
                }
                let gets: Vec<Vec<String>> = (0..10)
                    .map(|j| vec!["GET".into(), format!("c{i}k{j}")])
                    .collect();
                for (j, r) in c.pipeline(&gets).await.into_iter().enumerate() {
                    let v = format!("v{i}-{round}-{j}");
                    assert_eq!(&r[..], format!("${}\r\n{v}\r\n", v.len()).as_bytes());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    proxy.shutdown().await;
}

/// The first upstream connections are cut in the middle of a reply: the clients whose replies
/// were lost get an error, every other reply is the client's own, and service resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_reply_never_mixes_replies() {
    let redis = RedisServer::start();
    let relay = FaultRelay::start(
        &redis.addr(),
        Fault::CutAfter {
            bytes: 10_000,
            conns: 6,
        },
    )
    .await;
    let mut config = Proxy::config(&relay.addr());
    config.set("max_memory", "0").unwrap();
    let proxy = Proxy::start_config(config).await;
    let value = |i: usize| vec![b'a' + i as u8; 4096];
    for i in 0..8 {
        redis_cmd_blocking(
            &redis.addr(),
            &[b"SET", format!("big{i}").as_bytes(), &value(i)],
        );
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let addr = proxy.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = RawConn::connect(&addr).await;
            let want = {
                let mut w = b"$4096\r\n".to_vec();
                w.extend(value(i));
                w.extend(b"\r\n");
                w
            };
            let key = format!("big{i}");
            let (mut ok, mut errors) = (0, 0);
            for _ in 0..60 {
                let r = c.cmd(&["GET", &key]).await;
                if r[..] == want[..] {
                    ok += 1;
                } else {
                    assert!(is_nearcache_error(&r), "client {i} got {}", show(&r));
                    errors += 1;
                }
            }
            // The last reads came after the cuts.
            assert_eq!(&c.cmd(&["GET", &key]).await[..], &want[..]);
            (ok, errors)
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap().1;
    }
    assert!(
        errors > 0,
        "no reply was cut: the relay did not inject its fault"
    );
    proxy.shutdown().await;
}

/// The invalidation connection comes up while the shared connections are still in their
/// handshake (their first replies are held back): the tracking they are then asked to turn on
/// must count for the connections they end up with, and reads get cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_turned_on_during_a_handshake_takes_effect() {
    let redis = RedisServer::start();
    // The proxy opens its 4 shared connections first, then the invalidation connection.
    let relay = FaultRelay::start(
        &redis.addr(),
        Fault::DelayFirst {
            delay: Duration::from_millis(300),
            conns: 4,
        },
    )
    .await;
    let mut config = Proxy::config(&relay.addr());
    config.set("admin_listen", "127.0.0.1:0").unwrap();
    let proxy = Proxy::start_config(config).await;
    let admin = proxy.admin.unwrap();
    let mut c = RawConn::connect(&proxy.addr()).await;
    eventually(
        Duration::from_secs(10),
        "a read answered from the cache",
        async || {
            c.cmd(&["GET", "k"]).await;
            metric(admin, "nearcache_cache_hits_total").await > 0.0
        },
    )
    .await;
    proxy.shutdown().await;
}
