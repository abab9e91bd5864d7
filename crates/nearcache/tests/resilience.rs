//! Failure handling: Redis dying and coming back, Redis absent at start, clients vanishing
//! mid-pipeline, and clients sending garbage. Every wait is bounded.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;

/// How long the proxy may take to serve again once Redis is back.
const RECOVERY: Duration = Duration::from_secs(10);

const PHASE_UP: u8 = 0;
const PHASE_KILLED: u8 = 1;
const PHASE_RESTARTED: u8 = 2;

#[derive(Default)]
struct ClientStats {
    ok_before: AtomicU64,
    err_while_down: AtomicU64,
    ok_after: AtomicU64,
}

fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-') | Some(b'!'))
}

/// One load client: SET then GET of its own key, forever, recording what happens.
async fn load_client(
    id: usize,
    addr: String,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    stats: Arc<ClientStats>,
    fatal: Arc<Mutex<Vec<String>>>,
) {
    let mut c = RawConn::connect(&addr).await;
    let key = format!("load:{id}");
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let p = phase.load(Ordering::SeqCst);
        let val = format!("{id}-{n}");
        let set = c.try_cmd(&["SET", &key, &val]).await;
        let get = match &set {
            Ok(_) => c.try_cmd(&["GET", &key]).await,
            Err(_) => Err(ReadError::Timeout),
        };
        match (set, get) {
            (Ok(s), Ok(g)) if !is_error(&s) && !is_error(&g) => {
                let want = format!("${}\r\n{val}\r\n", val.len());
                if &s[..] != b"+OK\r\n" || g[..] != *want.as_bytes() {
                    fatal.lock().unwrap().push(format!(
                        "client {id}: SET/GET {key} {val}: got {} / {} (phase {p})",
                        show(&s),
                        show(&g)
                    ));
                    return;
                }
                match p {
                    PHASE_UP => stats.ok_before.fetch_add(1, Ordering::SeqCst),
                    PHASE_RESTARTED => stats.ok_after.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
            }
            (Ok(_), Ok(_)) => {
                if p == PHASE_KILLED {
                    stats.err_while_down.fetch_add(1, Ordering::SeqCst);
                }
                // Pace the retries a little so an outage does not turn into a busy loop.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (Err(e), _) | (_, Err(e)) => {
                fatal.lock().unwrap().push(format!(
                    "client {id}: no reply (phase {p}): {e:?} — expected an error reply, not a hang or a closed connection"
                ));
                return;
            }
        }
    }
}

fn check_fatal(fatal: &Mutex<Vec<String>>) {
    let f = fatal.lock().unwrap();
    assert!(f.is_empty(), "client failures:\n{}", f.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load() {
    let mut redis = RedisServer::start();
    let mut proxy = ProxyProcess::spawn(&redis.addr());
    let addr = proxy.addr();

    // A key read (and so possibly cached) before the crash; Redis comes back empty.
    let mut early = RawConn::connect(&addr).await;
    assert_eq!(&early.cmd(&["SET", "cached", "old"]).await[..], b"+OK\r\n");
    assert_eq!(&early.cmd(&["GET", "cached"]).await[..], b"$3\r\nold\r\n");
    assert_eq!(&early.cmd(&["GET", "cached"]).await[..], b"$3\r\nold\r\n");

    let phase = Arc::new(AtomicU8::new(PHASE_UP));
    let stop = Arc::new(AtomicBool::new(false));
    let fatal = Arc::new(Mutex::new(Vec::new()));
    let stats: Vec<Arc<ClientStats>> = (0..4).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (i, s) in stats.iter().enumerate() {
        tasks.push(tokio::spawn(load_client(
            i,
            addr.clone(),
            phase.clone(),
            stop.clone(),
            s.clone(),
            fatal.clone(),
        )));
    }
    let all = |f: &dyn Fn(&ClientStats) -> bool| stats.iter().all(|s| f(s));

    poll_until_async(
        RECOVERY,
        "every client to succeed before the kill",
        || async {
            check_fatal(&fatal);
            all(&|s| s.ok_before.load(Ordering::SeqCst) >= 20).then_some(())
        },
    )
    .await;

    phase.store(PHASE_KILLED, Ordering::SeqCst);
    redis.kill();
    poll_until_async(
        RECOVERY,
        "every client to get an error reply while Redis is down",
        || async {
            check_fatal(&fatal);
            all(&|s| s.err_while_down.load(Ordering::SeqCst) >= 3).then_some(())
        },
    )
    .await;
    assert!(proxy.is_running(), "the proxy process died with Redis");
    // A client connecting during the outage gets a reply too (an error), not silence.
    let mut during = RawConn::connect(&addr).await;
    let r = during.cmd(&["GET", "cached"]).await;
    assert!(
        is_error(&r),
        "GET while Redis is down: expected an error reply, got {}",
        show(&r)
    );

    tokio::task::block_in_place(|| redis.restart());
    phase.store(PHASE_RESTARTED, Ordering::SeqCst);
    poll_until_async(
        RECOVERY,
        "every client to work again after the restart",
        || async {
            check_fatal(&fatal);
            all(&|s| s.ok_after.load(Ordering::SeqCst) >= 5).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("load client did not stop")
            .expect("load client panicked");
    }
    check_fatal(&fatal);
    assert!(proxy.is_running());

    // The restarted Redis is empty: nothing from before the crash may be served, neither on a
    // connection that lived through the outage nor on the one opened during it nor a new one.
    let mut fresh = RawConn::connect(&addr).await;
    for (name, c) in [
        ("early", &mut early),
        ("during", &mut during),
        ("fresh", &mut fresh),
    ] {
        let deadline = tokio::time::Instant::now() + RECOVERY;
        let r = loop {
            let r = c.cmd(&["GET", "cached"]).await;
            if !is_error(&r) {
                break r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} connection: still {} {RECOVERY:?} after the restart",
                show(&r)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            &r[..],
            b"$-1\r\n",
            "{name} connection: GET cached after Redis restarted empty returned {}",
            show(&r)
        );
        assert_eq!(&c.cmd(&["SET", "cached", "new"]).await[..], b"+OK\r\n");
        assert_eq!(&c.cmd(&["GET", "cached"]).await[..], b"$3\r\nnew\r\n");
        c.cmd(&["DEL", "cached"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_proxy_start() {
    let port = free_port();
    let upstream = format!("127.0.0.1:{port}");
    let proxy = Proxy::start(&upstream).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    let r = c.cmd(&["GET", "k"]).await;
    assert!(is_error(&r), "expected an error reply, got {}", show(&r));
    assert!(
        String::from_utf8_lossy(&r).contains(&upstream),
        "the error should name the upstream {upstream}: {}",
        show(&r)
    );
    let mut redis = None;
    for _ in 0..5 {
        match RedisServer::start_on_port(port, &[]) {
            Ok(s) => {
                redis = Some(s);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let redis = redis.expect("could not start redis on the reserved port");
    // The same client connection starts working.
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        let r = c.cmd(&["SET", "k", "v"]).await;
        if &r[..] == b"+OK\r\n" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SET through the proxy still fails {RECOVERY:?} after Redis started: {}",
            show(&r)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(&c.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    let mut c2 = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c2.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    assert_eq!(
        &redis_cmd_blocking(&redis.addr(), &[b"GET", b"k"])[..],
        b"$1\r\nv\r\n"
    );
    proxy.shutdown().await;
}

fn value_for(i: usize) -> Vec<u8> {
    // Distinct, variable-length values so a reply delivered to the wrong request shows.
    let mut v = format!("value-{i}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 97));
    v
}

fn bulk(v: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_pipeline_does_not_disturb_others() {
    const KEYS: usize = 1000;
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let addr = proxy.addr();
    {
        let mut d = RawConn::connect(&redis.addr()).await;
        let cmds: Vec<Vec<Vec<u8>>> = (0..KEYS)
            .map(|i| vec![b"SET".to_vec(), format!("k{i}").into_bytes(), value_for(i)])
            .collect();
        d.pipeline(&cmds).await;
        let big = vec![b'B'; 256 * 1024];
        d.cmd(&[b"SET".as_slice(), b"big", &big]).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    // Vandals: write 500 commands (reads, writes, big replies, a blocking pop) and vanish.
    let vandal = {
        let addr = addr.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut round = 0usize;
            while !stop.load(Ordering::SeqCst) {
                round += 1;
                let mut out = BytesMut::new();
                for j in 0..500 {
                    let k = format!("k{}", (round * 7 + j * 13) % KEYS);
                    match j % 10 {
                        0 => resp::encode_command(&["GET", "big"], &mut out),
                        1 => resp::encode_command(&["SET", "vandal", "x"], &mut out),
                        2 => resp::encode_command(&["MGET", &k, "k1", "k2"], &mut out),
                        _ => resp::encode_command(&["GET", &k], &mut out),
                    }
                }
                if round.is_multiple_of(3) {
                    resp::encode_command(&["BLPOP", "never", "2"], &mut out);
                }
                if round.is_multiple_of(2) {
                    // Leave a half-written command behind too.
                    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$10\r\nk1");
                }
                let Ok(mut c) = RawConn::try_connect(&addr).await else {
                    continue;
                };
                let _ = c.try_send_raw(&out).await;
                if round % 4 == 1 {
                    // Sometimes read a little before leaving.
                    let _ = c.try_read_raw().await;
                }
                drop(c);
            }
            round
        })
    };

    // Honest clients: pipelines of GETs of distinct keys; every reply must match its request.
    let mut honest = Vec::new();
    for h in 0..2usize {
        let addr = addr.clone();
        honest.push(tokio::spawn(async move {
            let mut c = RawConn::connect(&addr).await;
            for round in 0..25usize {
                let idx: Vec<usize> = (0..300)
                    .map(|j| (h * 5003 + round * 331 + j * 37) % KEYS)
                    .collect();
                let cmds: Vec<Vec<Vec<u8>>> = idx
                    .iter()
                    .map(|i| vec![b"GET".to_vec(), format!("k{i}").into_bytes()])
                    .collect();
                let replies = c.pipeline(&cmds).await;
                for (i, r) in idx.iter().zip(&replies) {
                    let want = bulk(&value_for(*i));
                    assert_eq!(
                        r,
                        &want,
                        "client {h} round {round}: GET k{i} got {} want {}",
                        show(r),
                        show(&want)
                    );
                }
            }
        }));
    }
    for t in honest {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("honest client did not finish")
            .expect("honest client got a wrong reply");
    }
    stop.store(true, Ordering::SeqCst);
    let rounds = tokio::time::timeout(Duration::from_secs(30), vandal)
        .await
        .expect("vandal did not stop")
        .unwrap();
    assert!(rounds > 0);

    // Still healthy afterwards, for new and pipelining clients alike.
    let mut c = RawConn::connect(&addr).await;
    let cmds: Vec<Vec<Vec<u8>>> = (0..KEYS)
        .map(|i| vec![b"GET".to_vec(), format!("k{i}").into_bytes()])
        .collect();
    for (i, r) in c.pipeline(&cmds).await.iter().enumerate() {
        assert_eq!(r, &bulk(&value_for(i)), "after the vandals: GET k{i}");
    }
    proxy.shutdown().await;
}

/// Inputs Redis answers with `-ERR Protocol error: ...` and then closes the connection.
fn garbage_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("non-numeric multibulk length", b"*abc\r\n".to_vec()),
        ("non-numeric bulk length", b"*1\r\n$abc\r\n".to_vec()),
        ("negative bulk length", b"*1\r\n$-5\r\n".to_vec()),
        ("integer instead of bulk", b"*1\r\n:5\r\n".to_vec()),
        ("huge bulk length", b"*1\r\n$999999999999\r\n".to_vec()),
        ("huge multibulk length", b"*99999999999\r\n".to_vec()),
        (
            "1 GB bulk header",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1073741824\r\n".to_vec(),
        ),
        ("unbalanced quotes", b"SET \"unbalanced\r\n".to_vec()),
        ("inline line over 64 KB", vec![b'A'; 70 * 1024]),
    ]
}

async fn expect_error_then_close(c: &mut RawConn, what: &str, side: &str) -> Bytes {
    let r = match c.try_read_raw().await {
        Ok(r) => r,
        Err(e) => panic!("{side}, {what}: expected an error reply, got {e:?}"),
    };
    assert!(
        r.starts_with(b"-ERR Protocol error"),
        "{side}, {what}: expected -ERR Protocol error..., got {}",
        show(&r)
    );
    assert!(
        c.closed_within(Duration::from_secs(5)).await,
        "{side}, {what}: connection not closed after the protocol error"
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_error_and_a_close() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut bystander = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&bystander.cmd(&["SET", "k", "v"]).await[..], b"+OK\r\n");
    let mut notes = Vec::new();
    for (what, bytes) in garbage_cases() {
        // Redis itself, as the reference.
        let mut d = RawConn::connect(&redis.addr()).await;
        d.send_raw(&bytes).await;
        let want = expect_error_then_close(&mut d, what, "redis").await;
        // Through the proxy.
        let mut c = RawConn::connect(&proxy.addr()).await;
        c.send_raw(&bytes).await;
        let got = expect_error_then_close(&mut c, what, "nearcache").await;
        if want != got {
            notes.push(format!(
                "{what}: redis {} nearcache {}",
                show(&want),
                show(&got)
            ));
        }
        // The bystander is unaffected.
        assert_eq!(
            &bystander.cmd(&["GET", "k"]).await[..],
            b"$1\r\nv\r\n",
            "bystander after {what}"
        );
    }
    // Redis's own words (tests/protocol.rs covers every case of its parser).
    assert!(notes.is_empty(), "{}", notes.join("\n"));

    // Good commands before the garbage in the same write are answered, in order, first.
    for (side, addr) in [("redis", redis.addr()), ("nearcache", proxy.addr())] {
        let mut c = RawConn::connect(&addr).await;
        c.send_raw(b"PING\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*x\r\n")
            .await;
        assert_eq!(&c.read_raw().await[..], b"+PONG\r\n", "{side}");
        assert_eq!(&c.read_raw().await[..], b"+PONG\r\n", "{side}");
        assert_eq!(&c.read_raw().await[..], b"$1\r\nv\r\n", "{side}");
        expect_error_then_close(&mut c, "garbage after a pipeline", side).await;
    }

    // Garbage while another client's pipeline is in flight.
    let addr = proxy.addr();
    let pipeline = tokio::spawn(async move {
        let mut c = RawConn::connect(&addr).await;
        let cmds: Vec<Vec<Vec<u8>>> = (0..2000)
            .map(|i| vec![b"ECHO".to_vec(), format!("e{i}").into_bytes()])
            .collect();
        let replies = c.pipeline(&cmds).await;
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(r, &bulk(format!("e{i}").as_bytes()), "ECHO e{i}");
        }
    });
    for (what, bytes) in garbage_cases() {
        let mut c = RawConn::connect(&proxy.addr()).await;
        c.send_raw(&bytes).await;
        expect_error_then_close(&mut c, what, "nearcache (concurrent)").await;
    }
    tokio::time::timeout(Duration::from_secs(60), pipeline)
        .await
        .expect("pipelining client did not finish")
        .expect("pipelining client saw a wrong reply");
    assert_eq!(&bystander.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_blocked_clients_all_get_served() {
    // More blocked clients than the proxy keeps idle dedicated connections (default 16),
    // while ordinary clients keep working.
    const BLOCKED: usize = 40;
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut blocked = Vec::new();
    for i in 0..BLOCKED {
        let mut c = RawConn::connect(&proxy.addr()).await;
        c.send(&["BLPOP", &format!("bq{i}"), "20"]).await;
        blocked.push(c);
    }
    // All of them are blocked in Redis (bounded poll).
    let redis_addr = redis.addr();
    poll_until_async(
        Duration::from_secs(10),
        "all BLPOPs blocked in Redis",
        || {
            let redis_addr = redis_addr.clone();
            async move {
                let info = redis_cmd_blocking(&redis_addr, &[b"INFO", b"clients"]);
                let text = String::from_utf8_lossy(&info).to_string();
                let n: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("blocked_clients:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                (n >= BLOCKED).then_some(())
            }
        },
    )
    .await;
    let mut other = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&other.cmd(&["SET", "k", "v"]).await[..], b"+OK\r\n");
    assert_eq!(&other.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    for i in (0..BLOCKED).rev() {
        let v = format!("item{i}");
        assert_eq!(
            &other.cmd(&["RPUSH", &format!("bq{i}"), &v]).await[..],
            b":1\r\n"
        );
    }
    for (i, c) in blocked.iter_mut().enumerate() {
        let k = format!("bq{i}");
        let v = format!("item{i}");
        let want = format!("*2\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len());
        assert_eq!(
            &c.read_raw().await[..],
            want.as_bytes(),
            "blocked client {i}"
        );
        // And the connection is usable afterwards.
        assert_eq!(&c.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    }
    // Clients that vanish while blocked do not leave the proxy stuck.
    for i in 0..BLOCKED {
        let mut c = RawConn::connect(&proxy.addr()).await;
        c.send(&["BLPOP", &format!("gone{i}"), "0"]).await;
        drop(c);
    }
    // Their upstream connections are released: nothing stays blocked in Redis for them.
    poll_until_async(
        Duration::from_secs(10),
        "Redis to have no blocked clients left after the blocked clients disconnected",
        || {
            let a = redis.addr();
            async move {
                let info = redis_cmd_blocking(&a, &[b"INFO", b"clients"]);
                String::from_utf8_lossy(&info)
                    .contains("blocked_clients:0")
                    .then_some(())
            }
        },
    )
    .await;
    let mut late = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&late.cmd(&["PING"]).await[..], b"+PONG\r\n");
    late.send(&["BLPOP", "last", "5"]).await;
    other.cmd(&["RPUSH", "last", "x"]).await;
    assert_eq!(
        &late.read_raw().await[..],
        b"*2\r\n$4\r\nlast\r\n$1\r\nx\r\n"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_clients_and_returns() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let addr = proxy.addr();
    let mut idle = RawConn::connect(&addr).await;
    assert_eq!(&idle.cmd(&["PING"]).await[..], b"+PONG\r\n");
    let mut blocked = RawConn::connect(&addr).await;
    blocked.send(&["BLPOP", "never", "0"]).await;
    let mut sub = RawConn::connect(&addr).await;
    sub.send(&["SUBSCRIBE", "ch"]).await;
    sub.read_raw().await;
    let mut in_multi = RawConn::connect(&addr).await;
    in_multi.cmd(&["MULTI"]).await;
    // Make sure the BLPOP reached Redis before shutting down.
    poll_until_async(Duration::from_secs(10), "BLPOP blocked", || {
        let a = redis.addr();
        async move {
            let info = redis_cmd_blocking(&a, &[b"INFO", b"clients"]);
            String::from_utf8_lossy(&info)
                .contains("blocked_clients:1")
                .then_some(())
        }
    })
    .await;
    proxy.shutdown().await; // bounded inside (10 s)
    for (name, c) in [
        ("idle", &mut idle),
        ("blocked", &mut blocked),
        ("subscribed", &mut sub),
        ("in MULTI", &mut in_multi),
    ] {
        assert!(
            c.closed_within(Duration::from_secs(5)).await,
            "{name} client still connected after shutdown"
        );
    }
    // The listener is gone too.
    assert!(
        RawConn::try_connect(&addr).await.is_err(),
        "proxy still accepts connections after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_upstream() {
    let mut redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    // Without the password configured, clients get an error reply, not a hang.
    let bare = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&bare.addr()).await;
    let r = c.cmd(&["GET", "k"]).await;
    assert!(
        is_error(&r),
        "no upstream password: expected an error, got {}",
        show(&r)
    );
    bare.shutdown().await;

    let mut config = Proxy::config(&redis.addr());
    config.set("upstream_password", "s3cret").unwrap();
    // Clients act as the proxy's user (passthrough mode is tests/auth.rs's).
    config.set("client_auth", "none").unwrap();
    let proxy = Proxy::start_config(config).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["AUTH", "s3cret"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["SET", "k", "v"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    let r = c.cmd(&["AUTH", "wrong"]).await;
    assert!(r.starts_with(b"-WRONGPASS"), "AUTH wrong: {}", show(&r));
    // A failed AUTH by one client breaks nothing for anyone.
    assert_eq!(&c.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    let mut authed = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&authed.cmd(&["AUTH", "s3cret"]).await[..], b"+OK\r\n");
    assert_eq!(&authed.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    // A client that did not AUTH itself is served with the configured password.
    let mut other = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&other.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    // After a restart the proxy's reconnects authenticate again.
    tokio::task::block_in_place(|| redis.restart());
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        let r = other.cmd(&["SET", "k", "after"]).await;
        if &r[..] == b"+OK\r\n" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SET after restart of a password-protected Redis: {}",
            show(&r)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The client whose AUTH lived on a connection that died lost that state, as with Redis
    // itself: it gets an error reply or is disconnected, never a hang.
    match authed.try_cmd(&["GET", "k"]).await {
        Ok(r) => assert!(
            is_error(&r) || &r[..] == b"$5\r\nafter\r\n",
            "AUTHed client after the restart: {}",
            show(&r)
        ),
        Err(ReadError::Closed { .. }) | Err(ReadError::Io(_)) => {}
        Err(e) => panic!("AUTHed client after the restart: {e:?}"),
    }
    assert_eq!(&other.cmd(&["GET", "k"]).await[..], b"$5\r\nafter\r\n");
    proxy.shutdown().await;
}
