//! The tracking cache against a real Redis: hits stay in the proxy, every way Redis can change
//! or forget a key reaches the cache, and the memory cap holds.

mod common;

use std::time::Duration;

use common::*;

const CONVERGE: Duration = Duration::from_secs(5);

fn bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

/// Reads `key` through the proxy until it returns `want`, within [`CONVERGE`].
async fn converges(c: &mut RawConn, key: &str, want: &[u8]) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let got = c.cmd(&["GET", key]).await;
        if &got[..] == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {key} still {} after {CONVERGE:?}, want {}",
            show(&got),
            show(want)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The proxy's connections as Redis lists them: (id, flags).
async fn proxy_conns(redis: &mut RawConn) -> Vec<(String, String)> {
    let list = redis.cmd(&["CLIENT", "LIST"]).await;
    String::from_utf8_lossy(&list)
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| {
            let field = |name: &str| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(name))
                    .map(str::to_string)
            };
            Some((field("id=")?, field("flags=")?))
        })
        .collect()
}

/// Kills, from Redis's side, every connection whose flags contain `flag` (`t`: tracking data
/// connections, `P`: the subscribed invalidation connection); returns how many.
async fn kill_proxy_conns(redis: &mut RawConn, flag: char) -> usize {
    let ids: Vec<String> = proxy_conns(redis)
        .await
        .into_iter()
        .filter(|(_, flags)| flags.contains(flag))
        .map(|(id, _)| id)
        .collect();
    for id in &ids {
        redis.cmd(&["CLIENT", "KILL", "ID", id]).await;
    }
    ids.len()
}

/// Waits until a read of `key` through the proxy is answered from the cache (tracking is up
/// and the entry filled): a second read does not reach Redis.
async fn wait_until_cached(c: &mut RawConn, redis: &mut RawConn, key: &str) {
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        c.cmd(&["GET", key]).await;
        let before = command_calls(redis, "get").await;
        c.cmd(&["GET", key]).await;
        if command_calls(redis, "get").await == before {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {key} never served from the cache"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Setup {
    _redis_srv: RedisServer,
    proxy: Proxy,
    redis: RawConn,
    c: RawConn,
}

/// The default config with the admin endpoint on a free port (for tests that read metrics).
fn with_admin(c: nearcache::Config) -> nearcache::Config {
    c.with("admin_listen", "127.0.0.1:0")
}

async fn setup(config: impl FnOnce(nearcache::Config) -> nearcache::Config) -> Setup {
    // DEBUG is needed to turn active expiry off (`setup_without_active_expiry`).
    let redis_srv = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let proxy = Proxy::start_config(config(Proxy::config(&redis_srv.addr()))).await;
    let redis = RawConn::connect(&redis_srv.addr()).await;
    let c = RawConn::connect(&proxy.addr()).await;
    Setup {
        _redis_srv: redis_srv,
        proxy,
        redis,
        c,
    }
}

/// [`setup`] with Redis's active expiry turned off: a key then expires only when read, and no
/// invalidation comes for it by itself.
async fn setup_without_active_expiry(
    config: impl FnOnce(nearcache::Config) -> nearcache::Config,
) -> Setup {
    let mut s = setup(config).await;
    let off = s.redis.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]).await;
    assert_eq!(&off[..], b"+OK\r\n");
    s
}

#[tokio::test]
async fn repeated_reads_are_served_from_memory() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c).await;
    assert_eq!(&c.cmd(&["SET", "hot", "v1"]).await[..], b"+OK\r\n");
    wait_until_cached(&mut c, &mut redis, "hot").await;
    let before = command_calls(&mut redis, "get").await;
    for _ in 0..20 {
        assert_eq!(&c.cmd(&["GET", "hot"]).await[..], &bulk("v1")[..]);
    }
    assert_eq!(
        command_calls(&mut redis, "get").await,
        before,
        "hits reached Redis"
    );
    // A RESP3 client gets its own entry in its own shape.
    let mut c3 = RawConn::connect(&proxy.addr()).await;
    c3.hello3().await;
    assert_eq!(&c3.cmd(&["GET", "missing"]).await[..], b"_\r\n");
    assert_eq!(&c.cmd(&["GET", "missing"]).await[..], b"$-1\r\n");
    proxy.shutdown().await;
}

/// Hits are written by the session's reader when nothing is queued ahead of them, else behind
/// what is: in a pipeline mixing hits, misses, writes and local replies, every reply keeps its
/// place, and a read after a write in the same pipeline sees the write.
#[tokio::test]
async fn pipelined_hits_misses_and_writes_reply_in_order() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c).await;
    c.cmd(&["SET", "hot", "h"]).await;
    wait_until_cached(&mut c, &mut redis, "hot").await;
    for round in 0..20 {
        let cold = format!("cold{round}");
        let v = format!("v{round}");
        let cmds: Vec<Vec<&str>> = vec![
            vec!["GET", "hot"],
            vec!["GET", "hot"],
            vec!["GET", &cold],
            vec!["GET", "hot"],
            vec!["SELECT", "0"],
            vec!["SET", &cold, &v],
            vec!["GET", &cold],
            vec!["GET", "hot"],
            vec!["PING"],
            vec!["GET", "absent"],
            vec!["GET", "hot"],
            vec!["SELECT", "0"],
        ];
        let replies = c.pipeline(&cmds).await;
        let want: Vec<Vec<u8>> = vec![
            bulk("h"),
            bulk("h"),
            b"$-1\r\n".to_vec(),
            bulk("h"),
            b"+OK\r\n".to_vec(),
            b"+OK\r\n".to_vec(),
            bulk(&v),
            bulk("h"),
            b"+PONG\r\n".to_vec(),
            b"$-1\r\n".to_vec(),
            bulk("h"),
            b"+OK\r\n".to_vec(),
        ];
        let got: Vec<Vec<u8>> = replies.iter().map(|r| r.to_vec()).collect();
        assert_eq!(got, want, "round {round}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_write_straight_to_redis_invalidates_the_entry() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c).await;
    redis.cmd(&["HSET", "h", "f", "1"]).await;
    redis.cmd(&["SET", "k", "old"]).await;
    wait_until_cached(&mut c, &mut redis, "k").await;
    assert_eq!(&c.cmd(&["HGET", "h", "f"]).await[..], b"$1\r\n1\r\n");
    redis.cmd(&["SET", "k", "new"]).await;
    redis.cmd(&["HSET", "h", "f", "2"]).await;
    converges(&mut c, "k", &bulk("new")).await;
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while &c.cmd(&["HGET", "h", "f"]).await[..] != b"$1\r\n2\r\n" {
        assert!(tokio::time::Instant::now() < deadline, "HGET stayed stale");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And the new value is cached in turn.
    wait_until_cached(&mut c, &mut redis, "k").await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn flushall_empties_the_cache() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c).await;
    redis.cmd(&["SET", "f", "1"]).await;
    wait_until_cached(&mut c, &mut redis, "f").await;
    redis.cmd(&["FLUSHALL"]).await;
    converges(&mut c, "f", b"$-1\r\n").await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn killed_data_connections_leave_no_stale_entries() {
    // Redis forgets what a killed connection read and never invalidates it: the proxy must
    // drop what that connection protected (redis#11767).
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c).await;
    redis.cmd(&["SET", "kd", "old"]).await;
    wait_until_cached(&mut c, &mut redis, "kd").await;
    let killed = kill_proxy_conns(&mut redis, 't').await;
    assert!(killed > 0, "no tracking connections found");
    redis.cmd(&["SET", "kd", "new"]).await;
    converges(&mut c, "kd", &bulk("new")).await;
    // Tracking is re-established: the new value gets cached, then invalidated again.
    wait_until_cached(&mut c, &mut redis, "kd").await;
    redis.cmd(&["SET", "kd", "newer"]).await;
    converges(&mut c, "kd", &bulk("newer")).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_killed_invalidation_connection_flushes_and_recovers() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c).await;
    redis.cmd(&["SET", "ki", "old"]).await;
    wait_until_cached(&mut c, &mut redis, "ki").await;
    let killed = kill_proxy_conns(&mut redis, 'P').await;
    assert_eq!(killed, 1, "one invalidation connection");
    redis.cmd(&["SET", "ki", "new"]).await;
    converges(&mut c, "ki", &bulk("new")).await;
    wait_until_cached(&mut c, &mut redis, "ki").await;
    redis.cmd(&["SET", "ki", "newer"]).await;
    converges(&mut c, "ki", &bulk("newer")).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn entries_do_not_outlive_the_key_ttl() {
    // Redis expires keys lazily and may not invalidate at once; the entry's own deadline
    // (from PTTL) must end it anyway. Redis's active expiry is off to prove it.
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup_without_active_expiry(|c| c).await;
    redis.cmd(&["SET", "warm", "w"]).await;
    wait_until_cached(&mut c, &mut redis, "warm").await;
    redis.cmd(&["SET", "t", "v", "PX", "400"]).await;
    assert_eq!(&c.cmd(&["GET", "t"]).await[..], &bulk("v")[..]);
    let before = command_calls(&mut redis, "get").await;
    assert_eq!(&c.cmd(&["GET", "t"]).await[..], &bulk("v")[..]);
    assert_eq!(command_calls(&mut redis, "get").await, before, "not cached");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(&c.cmd(&["GET", "t"]).await[..], b"$-1\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_cache_stays_under_its_cap_while_a_hot_key_keeps_hitting() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| {
        c.with("max_memory", "1mb")
            .with("admin_listen", "127.0.0.1:0")
    })
    .await;
    let value = "x".repeat(1000);
    let n = 5 * 1024; // five times the cap in values alone
    let sets: Vec<Vec<String>> = (0..n)
        .map(|i| vec!["SET".into(), format!("cap:{i}"), value.clone()])
        .collect();
    redis.pipeline(&sets).await;
    redis.cmd(&["SET", "hotcap", "h"]).await;
    wait_until_cached(&mut c, &mut redis, "hotcap").await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let gets: Vec<Vec<String>> = chunk
            .iter()
            .map(|i| vec!["GET".into(), format!("cap:{i}")])
            .collect();
        c.pipeline(&gets).await;
        assert_eq!(&c.cmd(&["GET", "hotcap"]).await[..], b"$1\r\nh\r\n");
    }
    let before = command_calls(&mut redis, "get").await;
    for _ in 0..10 {
        c.cmd(&["GET", "hotcap"]).await;
    }
    assert_eq!(
        command_calls(&mut redis, "get").await,
        before,
        "the hot key was evicted"
    );

    let admin = proxy.admin.expect("admin enabled");
    let body = http_get(admin, "/metrics").await;
    let metric = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    let bytes = metric("nearcache_cache_bytes");
    assert!(
        bytes > 0.0 && bytes <= (1 << 20) as f64,
        "cache bytes {bytes}"
    );
    assert!(metric("nearcache_cache_evictions_total") > 0.0);
    assert!(metric("nearcache_cache_hits_total") > 0.0);
    assert!(metric("nearcache_cache_misses_total") > 0.0);
    assert!(metric("nearcache_cache_entries") > 0.0);
    assert!(body.contains("nearcache_invalidations_total"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn concurrent_misses_for_one_entry_make_one_upstream_read() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(with_admin).await;
    redis.cmd(&["SET", "warm", "w"]).await;
    wait_until_cached(&mut c, &mut redis, "warm").await;
    redis.cmd(&["SET", "herd", "v"]).await;
    let admin = proxy.admin.expect("admin enabled");
    let collapsed = || async move {
        let body = http_get(admin, "/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix("nearcache_cache_collapsed_misses_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before_calls = command_calls(&mut redis, "get").await;
    let before = collapsed().await;
    // Hold Redis still so the first read stays in flight while the others arrive. The pause
    // ends by itself (CLIENT UNPAUSE would be paused too), well within the read timeout.
    assert_eq!(
        &redis.cmd(&["CLIENT", "PAUSE", "2500", "ALL"]).await[..],
        b"+OK\r\n"
    );
    const N: u64 = 20;
    let mut herd = Vec::new();
    for _ in 0..N {
        let mut h = RawConn::connect(&proxy.addr()).await;
        h.send(&["GET", "herd"]).await;
        herd.push(h);
    }
    poll_until_async(CONVERGE, "the herd to join one read", || async {
        let n = collapsed().await - before;
        (n == N - 1).then_some(())
    })
    .await;
    for h in &mut herd {
        assert_eq!(&h.read_raw().await[..], &bulk("v")[..]);
    }
    assert_eq!(command_calls(&mut redis, "get").await - before_calls, 1);
    // A write ends the flight's reuse: the next miss reads again.
    assert_eq!(&c.cmd(&["SET", "herd", "v2"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["GET", "herd"]).await[..], &bulk("v2")[..]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn mget_fetches_only_the_keys_that_miss() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c).await;
    for (k, v) in [("ma", "1"), ("mb", "2"), ("mc", "3")] {
        redis.cmd(&["SET", k, v]).await;
    }
    redis.cmd(&["SET", "warm", "w"]).await;
    wait_until_cached(&mut c, &mut redis, "warm").await;
    let want_ab = b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n";
    assert_eq!(&c.cmd(&["MGET", "ma", "mb"]).await[..], want_ab);

    let mut monitor = RawConn::connect(&redis.peer.to_string()).await;
    assert_eq!(&monitor.cmd(&["MONITOR"]).await[..], b"+OK\r\n");
    let want = b"*4\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n";
    assert_eq!(&c.cmd(&["MGET", "ma", "mb", "nokey", "mc"]).await[..], want);
    // Everything Redis saw for that call, up to the MGET it was sent.
    let mut seen = Vec::new();
    loop {
        let line = monitor.read_raw().await;
        let text = String::from_utf8_lossy(&line).to_string();
        let is_mget = text.contains("\"MGET\"");
        seen.push(text);
        if is_mget {
            break;
        }
    }
    let mget = seen.last().unwrap();
    assert!(
        mget.contains("\"MGET\" \"nokey\" \"mc\"") && !mget.contains("\"ma\""),
        "Redis saw {seen:?}"
    );
    // All four are cached now; a direct write to one is seen through the proxy.
    let before = command_calls(&mut redis, "mget").await;
    assert_eq!(&c.cmd(&["MGET", "ma", "mb", "nokey", "mc"]).await[..], want);
    assert_eq!(
        command_calls(&mut redis, "mget").await,
        before,
        "full hit reached Redis"
    );
    redis.cmd(&["SET", "mb", "22"]).await;
    let deadline = tokio::time::Instant::now() + CONVERGE;
    let want2 = b"*4\r\n$1\r\n1\r\n$2\r\n22\r\n$-1\r\n$1\r\n3\r\n";
    while &c.cmd(&["MGET", "ma", "mb", "nokey", "mc"]).await[..] != want2 {
        assert!(tokio::time::Instant::now() < deadline, "MGET stayed stale");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn bcast_mode_caches_only_its_prefixes_and_stays_coherent() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c.with("tracking", "bcast").with("tracking_prefixes", "b:")).await;
    redis.cmd(&["SET", "b:1", "old"]).await;
    redis.cmd(&["SET", "other", "x"]).await;
    wait_until_cached(&mut c, &mut redis, "b:1").await;
    // Outside the prefixes nothing would invalidate an entry, so nothing is cached.
    let before = command_calls(&mut redis, "get").await;
    c.cmd(&["GET", "other"]).await;
    c.cmd(&["GET", "other"]).await;
    assert_eq!(command_calls(&mut redis, "get").await - before, 2);

    redis.cmd(&["SET", "b:1", "new"]).await;
    converges(&mut c, "b:1", &bulk("new")).await;
    // Data connections carry no tracking in this mode; losing the invalidation connection
    // (the one tracking, in BCAST) empties the cache.
    wait_until_cached(&mut c, &mut redis, "b:1").await;
    assert_eq!(kill_proxy_conns(&mut redis, 't').await, 1);
    redis.cmd(&["SET", "b:1", "newer"]).await;
    converges(&mut c, "b:1", &bulk("newer")).await;
    wait_until_cached(&mut c, &mut redis, "b:1").await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_invalidation_during_a_read_in_flight_keeps_its_reply_out_of_the_cache() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(with_admin).await;
    let admin = proxy.admin.expect("admin enabled");
    redis.cmd(&["SET", "warm", "w"]).await;
    wait_until_cached(&mut c, &mut redis, "warm").await;
    redis.cmd(&["SET", "race", "v1"]).await;
    let misses = metric(admin, "nearcache_cache_misses_total").await;
    let stale = metric(admin, "nearcache_cache_stale_fills_total").await;

    // Hold Redis so the read stays in flight: the ordering is injected, not hoped for.
    assert_eq!(
        &redis.cmd(&["CLIENT", "PAUSE", "1500", "ALL"]).await[..],
        b"+OK\r\n"
    );
    let mut reader = RawConn::connect(&proxy.addr()).await;
    reader.send(&["GET", "race"]).await;
    poll_until_async(CONVERGE, "the read to be in flight", || async {
        (metric(admin, "nearcache_cache_misses_total").await > misses).then_some(())
    })
    .await;
    // The write goes through the proxy: it invalidates "race" as it is sent, while the read
    // is still waiting for Redis.
    let mut writer = RawConn::connect(&proxy.addr()).await;
    writer.send(&["SET", "race", "v2"]).await;
    let first = reader.read_raw().await;
    assert!(first[..] == bulk("v1")[..] || first[..] == bulk("v2")[..]);
    assert_eq!(&writer.read_raw().await[..], b"+OK\r\n");

    assert!(
        metric(admin, "nearcache_cache_stale_fills_total").await > stale,
        "the raced read was not refused"
    );
    for _ in 0..5 {
        assert_eq!(&c.cmd(&["GET", "race"]).await[..], &bulk("v2")[..]);
    }
    proxy.shutdown().await;
}

/// Read-your-writes by key: in a pipeline `SET a; GET b; GET a`, the read of `a` waits for the
/// write (it reads through, behind it, or finds the entry the write invalidated gone), while
/// `b`, which no write of the session touches, is answered from the cache.
#[tokio::test]
async fn a_pipelined_write_holds_back_only_reads_of_its_own_keys() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(with_admin).await;
    let admin = proxy.admin.expect("admin enabled");
    c.cmd(&["SET", "a", "old"]).await;
    c.cmd(&["SET", "b", "bee"]).await;
    wait_until_cached(&mut c, &mut redis, "a").await;
    wait_until_cached(&mut c, &mut redis, "b").await;
    let hits = metric(admin, "nearcache_cache_hits_total").await;
    let held = "nearcache_cache_bypass_total{reason=\"write_in_flight\"}";
    let held_before = metric(admin, held).await;
    let gets = command_calls(&mut redis, "get").await;
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let v = format!("new{round}");
        let cmds = [vec!["SET", "a", &v], vec!["GET", "b"], vec!["GET", "a"]];
        let got: Vec<Vec<u8>> = c.pipeline(&cmds).await.iter().map(|r| r.to_vec()).collect();
        assert_eq!(
            got,
            vec![b"+OK\r\n".to_vec(), bulk("bee"), bulk(&v)],
            "round {round}"
        );
    }
    // Every GET b was a hit; GET a never is (its entry goes with each SET), and whatever
    // reached Redis was a read of a.
    let hits = metric(admin, "nearcache_cache_hits_total").await - hits;
    assert_eq!(hits as usize, ROUNDS, "GET b did not always hit");
    let upstream = command_calls(&mut redis, "get").await - gets;
    assert!(upstream as usize <= ROUNDS, "{upstream} GETs reached Redis");
    // A read held back is counted as such, and only those reads are.
    let held = metric(admin, held).await - held_before;
    assert!(held as u64 <= upstream, "{held} held back, {upstream} sent");
    proxy.shutdown().await;
}

/// A key a read found without expiry is read again, once its entry is gone while the key did
/// not change (the entry's own `cache_ttl` ran out), with no PTTL. Once the key is given an
/// expiry, the invalidation makes that knowledge stale: the next miss asks PTTL again, and the
/// entry ends with the key (Redis's active expiry is off, so no invalidation comes then).
#[tokio::test]
async fn a_key_known_to_have_no_expiry_is_read_again_without_pttl_until_it_gets_one() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup_without_active_expiry(|c| c.with("cache_ttl", "3s")).await;
    redis.cmd(&["SET", "plain", "v"]).await;
    wait_until_cached(&mut c, &mut redis, "plain").await;
    let pttl = command_calls(&mut redis, "pttl").await;
    let gets = command_calls(&mut redis, "get").await;
    eventually(CONVERGE, "the entry's cache_ttl to run out", async || {
        assert_eq!(&c.cmd(&["GET", "plain"]).await[..], &bulk("v")[..]);
        command_calls(&mut redis, "get").await > gets
    })
    .await;
    assert_eq!(command_calls(&mut redis, "pttl").await, pttl, "a PTTL went");
    let info = c.cmd(&["NEARCACHE", "INFO"]).await;
    let info = String::from_utf8_lossy(&info);
    assert!(info.contains("pttl_skipped:1\r"), "{info}");
    wait_until_cached(&mut c, &mut redis, "plain").await;

    assert_eq!(
        &redis.cmd(&["PEXPIRE", "plain", "500"]).await[..],
        b":1\r\n"
    );
    let pttl = command_calls(&mut redis, "pttl").await;
    eventually(
        CONVERGE,
        "the invalidation to reach the proxy",
        async || {
            let gets = command_calls(&mut redis, "get").await;
            c.cmd(&["GET", "plain"]).await;
            command_calls(&mut redis, "get").await > gets
        },
    )
    .await;
    // The PTTL follows the read on its connection: Redis may count it a moment later.
    eventually(
        CONVERGE,
        "the miss after the key got an expiry to ask PTTL",
        async || command_calls(&mut redis, "pttl").await > pttl,
    )
    .await;
    // The key's own expiry, not a condition the test could poll for.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(&c.cmd(&["GET", "plain"]).await[..], b"$-1\r\n");
    proxy.shutdown().await;
}

/// An MGET's misses ask PTTL only of the keys not known to have no expiry.
#[tokio::test]
async fn an_mget_asks_pttl_only_of_keys_not_known_to_have_no_expiry() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup(|c| c.with("cache_ttl", "1s")).await;
    redis.cmd(&["SET", "ma", "1"]).await;
    redis.cmd(&["SET", "mb", "2"]).await;
    redis.cmd(&["SET", "mc", "3", "EX", "100"]).await;
    let all = b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n";
    let mget = ["MGET", "ma", "mb", "mc"];
    // Tracking up first, so that one MGET fills the three with one deadline.
    redis.cmd(&["SET", "warm", "w"]).await;
    wait_until_cached(&mut c, &mut redis, "warm").await;
    eventually(CONVERGE, "the three keys cached", async || {
        assert_eq!(&c.cmd(&mget).await[..], all);
        let before = command_calls(&mut redis, "mget").await;
        assert_eq!(&c.cmd(&mget).await[..], all);
        command_calls(&mut redis, "mget").await == before
    })
    .await;
    let pttl = command_calls(&mut redis, "pttl").await;
    let mgets = command_calls(&mut redis, "mget").await;
    eventually(CONVERGE, "the entries' cache_ttl to run out", async || {
        assert_eq!(&c.cmd(&mget).await[..], all);
        command_calls(&mut redis, "mget").await > mgets
    })
    .await;
    // The PTTLs follow the MGET on its connection, so Redis may count them a moment later;
    // mc's comes last.
    eventually(CONVERGE, "mc's PTTL", async || {
        command_calls(&mut redis, "pttl").await > pttl
    })
    .await;
    assert_eq!(
        command_calls(&mut redis, "pttl").await,
        pttl + 1,
        "one PTTL, mc's"
    );
    proxy.shutdown().await;
}

/// A lost data connection took with it what Redis would have told of the keys it read: that a
/// key had no expiry may be stale after it, so the next miss asks PTTL again. Here the expiry
/// is given while the connection is gone, so no invalidation ever comes for it.
#[tokio::test]
async fn a_lost_connection_makes_known_untimed_keys_ask_pttl_again() {
    let Setup {
        _redis_srv,
        proxy,
        mut redis,
        mut c,
    } = setup_without_active_expiry(|c| c.with("cache_ttl", "3s")).await;
    redis.cmd(&["SET", "lost", "v"]).await;
    wait_until_cached(&mut c, &mut redis, "lost").await;
    assert!(kill_proxy_conns(&mut redis, 't').await > 0);
    assert_eq!(&redis.cmd(&["PEXPIRE", "lost", "500"]).await[..], b":1\r\n");
    // The killed connection's entry is dropped once the proxy sees it gone; the next miss
    // fills from a new connection.
    let gets = command_calls(&mut redis, "get").await;
    eventually(CONVERGE, "a read of the key to reach Redis", async || {
        c.cmd(&["GET", "lost"]).await;
        command_calls(&mut redis, "get").await > gets
    })
    .await;
    wait_until_cached(&mut c, &mut redis, "lost").await;
    // The key's own expiry, not a condition the test could poll for.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(&c.cmd(&["GET", "lost"]).await[..], b"$-1\r\n");
    proxy.shutdown().await;
}
