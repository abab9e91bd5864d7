//! The upstream pool against a real Redis: the `max_open` limit shared by many clients, waiting
//! in line, giving up a place in line, idle and lifetime closing, and the figures on `/metrics`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

async fn start(redis: &RedisServer, tweak: impl FnOnce(&mut nearcache::Config)) -> Proxy {
    let mut config = Proxy::config(&redis.addr());
    config.set("admin_listen", "127.0.0.1:0").unwrap();
    tweak(&mut config);
    Proxy::start_config(config).await
}

fn connected_clients(redis_addr: &str) -> usize {
    let info = redis_cmd_blocking(redis_addr, &[b"INFO", b"clients"]);
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The id of the upstream connection a transaction ran on.
async fn tx_client_id(c: &mut RawConn) -> String {
    assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["CLIENT", "ID"]).await[..], b"+QUEUED\r\n");
    let exec = c.cmd(&["EXEC"]).await;
    let text = String::from_utf8_lossy(&exec).to_string();
    let id = text.lines().nth(1).and_then(|l| l.strip_prefix(':'));
    id.unwrap_or_else(|| panic!("EXEC of CLIENT ID: {}", show(&exec)))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_share_max_open_conns() {
    const CLIENTS: usize = 100;
    const TX_EACH: usize = 5;
    const MAX_OPEN: usize = 10;
    let redis = RedisServer::start();
    let proxy = start(&redis, |c| {
        c.set("max_open_conns", &MAX_OPEN.to_string()).unwrap();
        c.set("pool_wait_timeout", "30s").unwrap();
    })
    .await;
    let admin = proxy.admin.unwrap();
    // Sample how many connections Redis sees while the clients run.
    let most = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(1));
    let sampler = {
        let (most, running, addr) = (most.clone(), running.clone(), redis.addr());
        std::thread::spawn(move || {
            while running.load(Ordering::Acquire) == 1 {
                // The sampling connection itself is one of the clients Redis counts.
                let n = connected_clients(&addr).saturating_sub(1);
                most.fetch_max(n, Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let addr = proxy.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = RawConn::connect(&addr).await;
            for _ in 0..TX_EACH {
                assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n", "client {i}");
                assert_eq!(&c.cmd(&["INCR", "counter"]).await[..], b"+QUEUED\r\n");
                let exec = c.cmd(&["EXEC"]).await;
                assert!(exec.starts_with(b"*1\r\n:"), "client {i}: {}", show(&exec));
                // And an ordinary command between transactions, on the shared connections.
                assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    running.store(0, Ordering::Release);
    sampler.join().unwrap();
    let mut redis_conn = RawConn::connect(&redis.addr()).await;
    let total = (CLIENTS * TX_EACH).to_string();
    assert_eq!(
        &redis_conn.cmd(&["GET", "counter"]).await[..],
        format!("${}\r\n{total}\r\n", total.len()).as_bytes()
    );
    // The data connections plus the one invalidation connection, never more.
    let seen = most.load(Ordering::Acquire);
    assert!(
        seen <= MAX_OPEN + 1,
        "Redis saw {seen} proxy connections, max-open-conns is {MAX_OPEN}"
    );
    assert_eq!(
        metric(admin, "nearcache_pool_max_open_connections").await,
        MAX_OPEN as f64
    );
    let open = metric(admin, "nearcache_pool_open_connections").await;
    assert!(open >= 4.0 && open <= MAX_OPEN as f64, "open {open}");
    assert!(metric(admin, "nearcache_pool_wait_count_total").await > 0.0);
    assert!(metric(admin, "nearcache_pool_wait_duration_seconds_total").await > 0.0);
    let body = http_get(admin, "/metrics").await;
    for name in [
        "nearcache_pool_in_use_connections",
        "nearcache_pool_idle_connections",
        "nearcache_pool_closed_connections_total{reason=\"max_idle\"}",
        "nearcache_pool_closed_connections_total{reason=\"max_lifetime\"}",
        "nearcache_pool_closed_connections_total{reason=\"max_idle_time\"}",
        "nearcache_pool_closed_connections_total{reason=\"error\"}",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    proxy.shutdown().await;
}

/// With room for one dedicated connection: A holds it, B queues then leaves, C queues. When A
/// is done, its connection goes to C (same Redis client id), not to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_client_left_is_skipped() {
    let redis = RedisServer::start();
    let proxy = start(&redis, |c| {
        c.set("max_open_conns", "5").unwrap(); // 4 shared + 1 dedicated
        c.set("pool_wait_timeout", "20s").unwrap();
    })
    .await;
    let admin = proxy.admin.unwrap();
    let mut a = RawConn::connect(&proxy.addr()).await;
    let a_id = tx_client_id(&mut a).await;
    // The connection went back to the idle list; A takes it again and keeps it.
    assert_eq!(&a.cmd(&["MULTI"]).await[..], b"+OK\r\n");
    let mut b = RawConn::connect(&proxy.addr()).await;
    b.send(&["MULTI"]).await;
    poll_until_async(Duration::from_secs(5), "B to wait", || async {
        (metric(admin, "nearcache_pool_wait_count_total").await >= 1.0).then_some(())
    })
    .await;
    drop(b);
    let mut c = RawConn::connect(&proxy.addr()).await;
    c.send(&["MULTI"]).await;
    poll_until_async(Duration::from_secs(5), "C to wait", || async {
        (metric(admin, "nearcache_pool_wait_count_total").await >= 2.0).then_some(())
    })
    .await;
    assert_eq!(&a.cmd(&["EXEC"]).await[..], b"*0\r\n");
    // A's next command is not a transaction: the connection is given back, to C.
    assert_eq!(&a.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert_eq!(&c.read_raw().await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["CLIENT", "ID"]).await[..], b"+QUEUED\r\n");
    let exec = c.cmd(&["EXEC"]).await;
    assert_eq!(
        String::from_utf8_lossy(&exec).lines().nth(1),
        Some(format!(":{a_id}").as_str()),
        "C should run on A's connection"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_gets_a_clear_error() {
    let redis = RedisServer::start();
    let proxy = start(&redis, |c| {
        c.set("max_open_conns", "5").unwrap();
        c.set("pool_wait_timeout", "200ms").unwrap();
    })
    .await;
    let mut a = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&a.cmd(&["MULTI"]).await[..], b"+OK\r\n");
    let mut b = RawConn::connect(&proxy.addr()).await;
    let err = b.cmd(&["MULTI"]).await;
    let text = String::from_utf8_lossy(&err);
    assert!(
        text.starts_with("-ERR nearcache: upstream") && text.contains("no connection free"),
        "{text}"
    );
    // B is still a working client on the shared connections.
    assert_eq!(&b.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert_eq!(&a.cmd(&["EXEC"]).await[..], b"*0\r\n");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_their_idle_time() {
    let redis = RedisServer::start();
    let proxy = start(&redis, |c| {
        c.set("conn_max_idle_time", "300ms").unwrap();
    })
    .await;
    let admin = proxy.admin.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = RawConn::connect(&proxy.addr()).await;
        assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n");
        clients.push(c);
    }
    let busy = connected_clients(&redis.addr());
    for c in &mut clients {
        assert_eq!(&c.cmd(&["EXEC"]).await[..], b"*0\r\n");
        assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
    }
    poll_until_async(Duration::from_secs(10), "idle connections to close", || {
        let addr = redis.addr();
        async move {
            let closed = metric(
                admin,
                "nearcache_pool_closed_connections_total{reason=\"max_idle_time\"}",
            )
            .await;
            (closed >= 3.0 && connected_clients(&addr) <= busy - 3).then_some(())
        }
    })
    .await;
    proxy.shutdown().await;
}

/// Shared connections reach their lifetime and are replaced one at a time: no whole-cache
/// flush, entries filled through the other connections stay cached, and the cache keeps
/// working (and stays coherent) through the new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_connections_rotate_without_flushing_the_cache() {
    let redis = RedisServer::start();
    let proxy = start(&redis, |c| {
        c.set("upstream_conns", "1").unwrap();
        c.set("conn_max_lifetime", "1500ms").unwrap();
    })
    .await;
    let admin = proxy.admin.unwrap();
    let mut direct = RawConn::connect(&redis.addr()).await;
    direct.cmd(&["SET", "k2", "two"]).await;
    direct.cmd(&["SET", "k3", "three"]).await;
    let mut c2 = RawConn::connect(&proxy.addr()).await;
    let mut c3 = RawConn::connect(&proxy.addr()).await;
    c3.hello3().await;
    // Fill once through each protocol's connection, until the read is answered from cache.
    eventually(Duration::from_secs(5), "both entries cached", async || {
        c2.cmd(&["GET", "k2"]).await;
        c3.cmd(&["GET", "k3"]).await;
        let before = command_calls(&mut direct, "get").await;
        c2.cmd(&["GET", "k2"]).await;
        c3.cmd(&["GET", "k3"]).await;
        command_calls(&mut direct, "get").await == before
    })
    .await;
    let flushes = |admin| async move {
        let body = http_get(admin, "/metrics").await;
        body.lines()
            .filter(|l| l.starts_with("nearcache_cache_flushes_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let flushes_before = flushes(admin).await;
    // The RESP2 connection is replaced first (the RESP3 one a tick later).
    poll_until_async(Duration::from_secs(10), "a rotation", || async {
        let n = metric(
            admin,
            "nearcache_pool_closed_connections_total{reason=\"max_lifetime\"}",
        )
        .await;
        (n >= 1.0).then_some(())
    })
    .await;
    let before = command_calls(&mut direct, "get").await;
    assert_eq!(&c3.cmd(&["GET", "k3"]).await[..], b"$5\r\nthree\r\n");
    assert_eq!(
        command_calls(&mut direct, "get").await,
        before,
        "the RESP3 entry should have survived the RESP2 connection's rotation"
    );
    // After both rotated, the new connections fill and are invalidated as before.
    poll_until_async(Duration::from_secs(10), "both rotated", || async {
        let n = metric(
            admin,
            "nearcache_pool_closed_connections_total{reason=\"max_lifetime\"}",
        )
        .await;
        (n >= 2.0).then_some(())
    })
    .await;
    assert_eq!(&c2.cmd(&["GET", "k2"]).await[..], b"$3\r\ntwo\r\n");
    direct.cmd(&["SET", "k2", "deux"]).await;
    eventually(Duration::from_secs(5), "the write to be seen", async || {
        &c2.cmd(&["GET", "k2"]).await[..] == b"$4\r\ndeux\r\n"
    })
    .await;
    assert_eq!(flushes(admin).await, flushes_before, "no whole-cache flush");
    proxy.shutdown().await;
}

/// A proxy with upstream credentials whose pool can hold one dedicated connection (two shared
/// ones, one per protocol, take the other permits), so that a dedicated connection given back
/// is the one the next transaction gets. Clients act as the proxy's user without
/// authenticating (`client_auth = none`): what is tested is the connections' state.
async fn one_dedicated(redis: &RedisServer, user: Option<&str>, password: &str) -> Proxy {
    start(redis, |c| {
        c.set("client_auth", "none").unwrap();
        c.set("upstream_conns", "1").unwrap();
        c.set("max_open_conns", "3").unwrap();
        c.set("pool_wait_timeout", "10s").unwrap();
        if let Some(user) = user {
            c.set("upstream_user", user).unwrap();
        }
        c.set("upstream_password", password).unwrap();
    })
    .await
}

/// MULTI, then RESET, which Redis runs at once: it ends the transaction, and logs the
/// connection out (to the default user), back to RESP2 and db 0.
async fn multi_then_reset(c: &mut RawConn) {
    assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["RESET"]).await[..], b"+RESET\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_in_a_transaction_never_leaves_a_logged_out_connection_in_use() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let proxy = one_dedicated(&redis, None, "s3cret").await;
    let tx = [vec!["MULTI"], vec!["SET", "k", "v"], vec!["EXEC"]];
    let done: [&[u8]; 3] = [b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"];
    let mut a = RawConn::connect(&proxy.addr()).await;
    // The same client starts another transaction at once.
    multi_then_reset(&mut a).await;
    assert_eq!(
        a.pipeline(&tx).await,
        done,
        "a transaction right after RESET"
    );
    // Or goes on with plain commands, and another client's transaction follows.
    multi_then_reset(&mut a).await;
    assert_eq!(&a.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    let mut b = RawConn::connect(&proxy.addr()).await;
    assert_eq!(b.pipeline(&tx).await, done, "another client's transaction");
    assert_eq!(&a.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_in_a_transaction_hands_no_one_a_connection_as_another_user_or_protocol() {
    let redis = RedisServer::start();
    let mut direct = RawConn::connect(&redis.addr()).await;
    let acl = ["ACL", "SETUSER", "pool", "on", ">pw", "~*", "&*", "+@all"];
    assert_eq!(&direct.cmd(&acl).await[..], b"+OK\r\n");
    direct.cmd(&["HSET", "h", "f", "v"]).await;
    let proxy = one_dedicated(&redis, Some("pool"), "pw").await;
    let mut a = RawConn::connect(&proxy.addr()).await;
    a.hello3().await;
    multi_then_reset(&mut a).await;
    // RESET leaves the client in RESP2, as the pool's user like any new client.
    assert_eq!(
        &a.cmd(&["HGETALL", "h"]).await[..],
        b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    let mut b = RawConn::connect(&proxy.addr()).await;
    b.hello3().await;
    let replies = b
        .pipeline(&[
            vec!["MULTI"],
            vec!["ACL", "WHOAMI"],
            vec!["HGETALL", "h"],
            vec!["EXEC"],
        ])
        .await;
    assert_eq!(
        show(&replies[3]),
        show(b"*2\r\n$4\r\npool\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"),
        "a RESP3 transaction as the pool's user"
    );
    proxy.shutdown().await;
}
