//! Client limits: `max_clients` and the idle `timeout` as Redis applies them, and the bounds on
//! a client's query buffer and on the replies waiting for it.

mod common;

use std::time::Duration;

use common::{eventually, metric, show, Proxy, RawConn, RedisServer, With};

#[tokio::test]
async fn clients_beyond_max_clients_get_redis_error_and_are_closed() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_config(Proxy::config(&redis.addr()).with("max_clients", "2")).await;
    let mut a = RawConn::connect(&proxy.addr()).await;
    let mut b = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&a.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert_eq!(&b.cmd(&["PING"]).await[..], b"+PONG\r\n");

    let mut c = RawConn::connect(&proxy.addr()).await;
    let got = c.expect_closed().await;
    assert_eq!(&got[..], b"-ERR max number of clients reached\r\n");

    // Once a client leaves, a newcomer is served again.
    a.close().await;
    common::poll_until_async(Duration::from_secs(5), "room for another client", || {
        let addr = proxy.addr();
        async move {
            let mut d = RawConn::try_connect(&addr).await.ok()?;
            let r = d.try_cmd(&["PING"]).await.ok()?;
            (&r[..] == b"+PONG\r\n").then_some(())
        }
    })
    .await;
    assert_eq!(&b.cmd(&["PING"]).await[..], b"+PONG\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn idle_clients_are_closed_but_blocked_and_subscribed_ones_are_not() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_config(Proxy::config(&redis.addr()).with("timeout", "1s")).await;
    let mut idle = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&idle.cmd(&["PING"]).await[..], b"+PONG\r\n");

    let mut blocked = RawConn::connect(&proxy.addr()).await;
    blocked.send(&["BLPOP", "limits:list", "0"]).await;
    let mut subscribed = RawConn::connect(&proxy.addr()).await;
    subscribed.send(&["SUBSCRIBE", "limits:ch"]).await;
    let confirm = subscribed.read_raw().await;
    assert!(confirm.starts_with(b"*3\r\n$9\r\nsubscribe"), "{confirm:?}");

    assert!(
        idle.closed_within(Duration::from_secs(5)).await,
        "idle client not closed"
    );

    // Both others outlived the idle one, and still work.
    let mut other = RawConn::connect(&proxy.addr()).await;
    assert_eq!(
        &other.cmd(&["RPUSH", "limits:list", "x"]).await[..],
        b":1\r\n"
    );
    assert_eq!(
        &blocked.read_raw().await[..],
        b"*2\r\n$11\r\nlimits:list\r\n$1\r\nx\r\n"
    );
    assert_eq!(
        &other.cmd(&["PUBLISH", "limits:ch", "m"]).await[..],
        b":1\r\n"
    );
    assert_eq!(
        &subscribed.read_raw().await[..],
        b"*3\r\n$7\r\nmessage\r\n$9\r\nlimits:ch\r\n$1\r\nm\r\n"
    );
    proxy.shutdown().await;
}

/// A proxy with the admin port on, a small output limit and `max_memory` as given.
async fn limited_proxy(redis: &RedisServer, max_memory: &str) -> Proxy {
    let mut config = Proxy::config(&redis.addr());
    config.set("admin_listen", "127.0.0.1:0").unwrap();
    config.set("client_output_buffer_limit", "1mb").unwrap();
    config.set("client_query_buffer_limit", "1mb").unwrap();
    config.set("max_memory", max_memory).unwrap();
    Proxy::start_config(config).await
}

/// Sends `n` GETs of `key` (a 10 KB value) without reading a reply, and checks the proxy drops
/// the client while serving another one.
async fn flood_without_reading(proxy: &Proxy, key: &str, n: usize) {
    let admin = proxy.admin.unwrap();
    let mut other = RawConn::connect(&proxy.addr()).await;
    let mut flood = RawConn::connect(&proxy.addr()).await;
    let mut wire = Vec::new();
    for _ in 0..n {
        wire.extend_from_slice(
            format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
        );
    }
    // The proxy may close the socket before it has read everything: a failed write is fine.
    let _ = flood.try_send_raw(&wire).await;
    eventually(
        Duration::from_secs(10),
        "the flooding client to be dropped",
        async || metric(admin, "nearcache_connected_clients").await == 1.0,
    )
    .await;
    assert!(flood.closed_within(Duration::from_secs(5)).await);
    assert_eq!(&other.cmd(&["PING"]).await[..], b"+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cache_hits_is_disconnected() {
    let redis = RedisServer::start();
    common::redis_cmd_blocking(&redis.addr(), &[b"SET", b"big", &[b'x'; 10_000]]);
    let proxy = limited_proxy(&redis, "64mb").await;
    // 5000 x 10 KB = 50 MB of replies, most of them served from the cache.
    flood_without_reading(&proxy, "big", 5000).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_forwarded_replies_is_disconnected() {
    let redis = RedisServer::start();
    common::redis_cmd_blocking(&redis.addr(), &[b"SET", b"big", &[b'x'; 10_000]]);
    // No cache: every reply comes from Redis.
    let proxy = limited_proxy(&redis, "0").await;
    flood_without_reading(&proxy, "big", 5000).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_buffer_over_the_limit_gets_an_error_and_a_close() {
    let redis = RedisServer::start();
    let proxy = limited_proxy(&redis, "64mb").await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    // A 100 MB value announced, 2 MB of it sent: past the 1 MB query buffer limit.
    let mut wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n".to_vec();
    wire.extend(vec![b'v'; 2 << 20]);
    let _ = c.try_send_raw(&wire).await;
    let got = c.expect_closed().await;
    assert!(
        got.starts_with(b"-ERR nearcache: client query buffer limit"),
        "{}",
        show(&got)
    );
    let mut other = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&other.cmd(&["PING"]).await[..], b"+PONG\r\n");
    proxy.shutdown().await;
}

/// A client pipelining far more commands than Redis answers at once, and reading its replies
/// as they come (like `redis-cli --pipe`), is held back, not cut off, and gets every reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pipeline_read_as_it_goes_is_served_in_full() {
    let redis = RedisServer::start();
    let proxy = limited_proxy(&redis, "0").await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    let cmds: Vec<Vec<String>> = (0..20_000)
        .map(|i| vec!["SET".to_string(), format!("k{i}"), "v".to_string()])
        .collect();
    let replies = c.pipeline(&cmds).await;
    assert_eq!(replies.len(), 20_000);
    assert!(replies.iter().all(|r| &r[..] == b"+OK\r\n"));
    proxy.shutdown().await;
}
