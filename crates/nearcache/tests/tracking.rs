//! Faults of the tracking machinery that must never pass silently, against a real Redis behind
//! a relay the test steers (`tests/common/relay.rs`): an invalidation connection that goes
//! quiet without closing, and pushes on data connections that only look like a lost redirect.

mod common;

use std::time::Duration;

use common::relay::SteeredRelay;
use common::*;

/// How long the proxy may take to notice and recover: generous, since the point is that it
/// does, not how fast (the health check's default interval is 1 s).
const RECOVER: Duration = Duration::from_secs(10);

/// What only the invalidation connection sends.
const INVALIDATION: &[&[u8]] = &[b"__redis__:invalidate"];
/// What only RESP3 data connections send: `HELLO 3` and a tracking redirect.
const RESP3_DATA: &[&[u8]] = &[b"$5\r\nHELLO\r\n$1\r\n3\r\n", b"REDIRECT"];

fn bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

/// Waits until a read of `key` through the proxy is answered from the cache: a second read
/// does not reach Redis.
async fn wait_until_cached(c: &mut RawConn, redis: &mut RawConn, key: &str) {
    let what = format!("GET {key} served from the cache");
    eventually(RECOVER, &what, async || {
        c.cmd(&["GET", key]).await;
        let before = command_calls(redis, "get").await;
        c.cmd(&["GET", key]).await;
        command_calls(redis, "get").await == before
    })
    .await;
}

/// Whether a read of `key` through the proxy reaches Redis.
async fn reaches_redis(c: &mut RawConn, redis: &mut RawConn, key: &str) -> bool {
    let before = command_calls(redis, "get").await;
    c.cmd(&["GET", key]).await;
    command_calls(redis, "get").await > before
}

struct Setup {
    _redis_srv: RedisServer,
    relay: SteeredRelay,
    proxy: Proxy,
    redis: RawConn,
}

/// Redis, the relay in front of it, and the proxy connected through the relay.
async fn setup() -> Setup {
    let redis_srv = RedisServer::start();
    let relay = SteeredRelay::start(&redis_srv.addr()).await;
    let config = Proxy::config(&relay.addr())
        .with("upstream_conns", "1")
        .with("admin_listen", "127.0.0.1:0");
    let proxy = Proxy::start_config(config).await;
    let redis = RawConn::connect(&redis_srv.addr()).await;
    Setup {
        _redis_srv: redis_srv,
        relay,
        proxy,
        redis,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_invalidation_connection_stops_stale_reads_and_tracking_recovers() {
    let Setup {
        _redis_srv,
        relay,
        proxy,
        mut redis,
    } = setup().await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    redis.cmd(&["SET", "bh", "old"]).await;
    wait_until_cached(&mut c, &mut redis, "bh").await;
    // Packets to and from the invalidation connection vanish; neither end sees a close.
    assert_eq!(relay.black_hole(INVALIDATION), 1);
    redis.cmd(&["SET", "bh", "new"]).await;
    // Its invalidation is lost in the hole: the proxy must notice the silence, and drop what
    // that connection protected, rather than serve "old" for as long as the cache keeps it.
    eventually(RECOVER, "the stale entry dropped", async || {
        &c.cmd(&["GET", "bh"]).await[..] == bulk("new").as_slice()
    })
    .await;
    let flushes = metric(
        proxy.admin.unwrap(),
        "nearcache_cache_flushes_total{reason=\"invalidation_connection_lost\"}",
    )
    .await;
    assert!(flushes >= 1.0, "flushes for the lost connection: {flushes}");
    // A new invalidation connection takes over; caching and invalidation work again.
    eventually(RECOVER, "a new invalidation connection", async || {
        relay.count(INVALIDATION) == 1
    })
    .await;
    wait_until_cached(&mut c, &mut redis, "bh").await;
    redis.cmd(&["SET", "bh", "newer"]).await;
    eventually(RECOVER, "the new invalidation delivered", async || {
        &c.cmd(&["GET", "bh"]).await[..] == bulk("newer").as_slice()
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_tracking_redir_broken_push_stops_fills_not_a_key_of_that_name() {
    const KEY: &str = "tracking-redir-broken";
    let Setup {
        _redis_srv,
        relay,
        proxy,
        mut redis,
    } = setup().await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    c.hello3().await;
    redis.cmd(&["SET", KEY, "v1"]).await;
    wait_until_cached(&mut c, &mut redis, KEY).await;
    // A push that merely carries those bytes (here an invalidation of the key of that name,
    // delivered to the data connection itself) says nothing about the redirect.
    let push = format!(">2\r\n$10\r\ninvalidate\r\n*1\r\n$21\r\n{KEY}\r\n");
    assert_eq!(relay.inject(RESP3_DATA, push.as_bytes()).await, 1);
    // SET's reply comes after the push on the same connection: the push has been handled.
    assert_eq!(&c.cmd(&["SET", KEY, "v2"]).await[..], b"+OK\r\n");
    wait_until_cached(&mut c, &mut redis, KEY).await;
    assert_eq!(&c.cmd(&["GET", KEY]).await[..], bulk("v2").as_slice());
    // The real thing: Redis lost the redirect target, so nothing this connection read is
    // protected any more. Its entries go, and it fills nothing until tracking is re-pointed.
    let broken = b">2\r\n$21\r\ntracking-redir-broken\r\n:12345\r\n";
    assert_eq!(relay.inject(RESP3_DATA, broken).await, 1);
    // A reply read after the push on the same connection: the push has been handled.
    assert_eq!(&c.cmd(&["ECHO", "x"]).await[..], b"$1\r\nx\r\n");
    assert!(reaches_redis(&mut c, &mut redis, KEY).await, "entry kept");
    assert!(reaches_redis(&mut c, &mut redis, KEY).await, "filled again");
    proxy.shutdown().await;
}
