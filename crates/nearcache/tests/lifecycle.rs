//! The process's life: graceful shutdown on SIGTERM (in-flight requests finish, within a bound)
//! and configuration reload on SIGHUP.

mod common;

use std::time::Duration;

use common::*;

fn blocked_clients(redis: &RedisServer) -> usize {
    let info = redis_cmd_blocking(&redis.addr(), &[b"INFO", b"clients"]);
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A client of `proxy` blocked in Redis on `BLPOP q TIMEOUT`.
async fn blocked_client(proxy: &ProxyProcess, redis: &RedisServer, timeout: &str) -> RawConn {
    let mut c = RawConn::connect(&proxy.addr()).await;
    c.send(&["BLPOP", "q", timeout]).await;
    eventually(
        Duration::from_secs(5),
        "the BLPOP to block in Redis",
        async || blocked_clients(redis) == 1,
    )
    .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_then_exits() {
    let redis = RedisServer::start();
    let mut proxy = ProxyProcess::spawn(&redis.addr());
    let mut c = blocked_client(&proxy, &redis, "1").await;
    proxy.signal("TERM");
    // The reply to the command already sent still arrives, then the connection closes.
    assert_eq!(&c.read_raw().await[..], b"*-1\r\n");
    assert!(c.closed_within(Duration::from_secs(5)).await);
    let status = tokio::task::block_in_place(|| proxy.wait_exit(Duration::from_secs(10)));
    assert!(status.success(), "exit status {status}");
    assert!(RawConn::try_connect(&proxy.addr()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_beyond_its_timeout() {
    let redis = RedisServer::start();
    let mut proxy = ProxyProcess::spawn_with(&redis.addr(), &["--shutdown-timeout", "200ms"]);
    let mut c = blocked_client(&proxy, &redis, "0").await;
    proxy.signal("TERM");
    // After the shutdown timeout the wait is cut short with an error, and the client closed.
    let r = c.read_raw().await;
    assert!(r.starts_with(b"-ERR nearcache: "), "{}", show(&r));
    assert!(c.closed_within(Duration::from_secs(5)).await);
    let status = tokio::task::block_in_place(|| proxy.wait_exit(Duration::from_secs(10)));
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_live_settings_and_names_the_rest() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nearcache.toml");
    let write = |max_open: usize, eviction: &str| {
        let text = format!(
            "upstream = \"{}\"\nmax_open_conns = {max_open}\neviction = \"{eviction}\"\n",
            redis.addr()
        );
        std::fs::write(&path, text).unwrap();
    };
    write(20, "adaptive");
    let proxy = ProxyProcess::spawn_args(&[
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let admin = proxy.admin.unwrap();
    assert_eq!(
        metric(admin, "nearcache_pool_max_open_connections").await,
        20.0
    );
    write(30, "lru");
    proxy.signal("HUP");
    eventually(
        Duration::from_secs(5),
        "the new max-open-conns",
        async || metric(admin, "nearcache_pool_max_open_connections").await == 30.0,
    )
    .await;
    let logs = proxy.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("need a restart") && l.contains("eviction")),
        "{logs}"
    );
    // A file that does not validate is refused, and the proxy keeps its settings.
    std::fs::write(&path, "max_open_conns = 1\n").unwrap();
    proxy.signal("HUP");
    eventually(
        Duration::from_secs(5),
        "the refusal to be logged",
        async || {
            proxy.logs().contains("configuration reload")
                && proxy.logs().contains("max_open_conns (1)")
        },
    )
    .await;
    assert_eq!(
        metric(admin, "nearcache_pool_max_open_connections").await,
        30.0
    );
    // A file valid on its own, whose live max_open_conns does not fit the upstream_conns in
    // force until a restart, is refused too.
    std::fs::write(&path, "upstream_conns = 1\nmax_open_conns = 3\n").unwrap();
    proxy.signal("HUP");
    eventually(
        Duration::from_secs(5),
        "the mixed configuration to be refused",
        async || {
            proxy
                .logs()
                .contains("with the settings in force until a restart")
        },
    )
    .await;
    assert_eq!(
        metric(admin, "nearcache_pool_max_open_connections").await,
        30.0
    );
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
}
