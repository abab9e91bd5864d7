//! Client limits: `max_clients` and the idle `timeout`, as Redis applies them.

mod common;

use std::time::Duration;

use common::{Proxy, RawConn, RedisServer};

#[tokio::test]
async fn clients_beyond_max_clients_get_redis_error_and_are_closed() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_config(nearcache::Config {
        max_clients: 2,
        ..Proxy::config(&redis.addr())
    })
    .await;
    let mut a = RawConn::connect(&proxy.addr()).await;
    let mut b = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&a.cmd(&["PING"]).await[..], b"+PONG\r\n");
    assert_eq!(&b.cmd(&["PING"]).await[..], b"+PONG\r\n");

    let mut c = RawConn::connect(&proxy.addr()).await;
    let got = c.expect_closed().await;
    assert_eq!(&got[..], b"-ERR max number of clients reached\r\n");

    // Once a client leaves, a newcomer is served again.
    a.close().await;
    common::poll_until_async(Duration::from_secs(5), "a free client slot", || {
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
    let proxy = Proxy::start_config(nearcache::Config {
        timeout: 1,
        ..Proxy::config(&redis.addr())
    })
    .await;
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
