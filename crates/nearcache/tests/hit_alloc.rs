//! The cache hit path and the forward path (a write, a read the cache does not look up)
//! allocate nothing per request in steady state, and a miss no more than its count today.
//!
//! The proxy runs in-process on a runtime of its own whose worker threads are marked; a
//! counting global allocator counts allocations made on marked threads only. A blocking client
//! on the test thread (unmarked) warms the cache, then sends GETs one at a time, GETs in
//! pipelines of 16 and MGETs of 10 keys, all hits, and the allocations the proxy made while
//! serving them are divided by the requests. Redis's own GET/MGET counters prove they were hits.
//! Then SETs (one at a time and in pipelines of 16), GETs with the cache off and GET misses
//! (each of a new key, filled) are counted the same way. One test function only, so no other
//! test's proxy allocates on marked threads meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use common::{redis_cmd_blocking, Proxy, RedisServer, With};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static PROXY_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    if PROXY_THREAD.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: usize = 100;
const VALUE: usize = 64;

fn key(i: usize) -> String {
    format!("hot:{i}")
}

/// `$64\r\n...\r\n`
const GET_REPLY: usize = 1 + 2 + 2 + VALUE + 2;

struct Client {
    s: TcpStream,
    scratch: Vec<u8>,
}

impl Client {
    /// Sends the commands in one write and reads `reply_bytes` bytes back.
    fn round(&mut self, cmds: &[u8], reply_bytes: usize) {
        self.s.write_all(cmds).unwrap();
        self.scratch.resize(reply_bytes, 0);
        self.s.read_exact(&mut self.scratch).unwrap();
        assert!(
            self.scratch.starts_with(b"$")
                || self.scratch.starts_with(b"*")
                || self.scratch.starts_with(b"+"),
            "unexpected reply {:?}",
            String::from_utf8_lossy(&self.scratch[..self.scratch.len().min(80)])
        );
    }
}

fn encode(cmds: &[Vec<String>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for c in cmds {
        resp::encode_command(c, &mut out);
    }
    out.to_vec()
}

fn calls(redis: &str, cmd: &str) -> u64 {
    let info = redis_cmd_blocking(redis, &[b"INFO", b"commandstats"]);
    let prefix = format!("cmdstat_{cmd}:calls=");
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A Redis holding `preset` keys, and a proxy with `max_memory` in front of it, on a runtime
/// whose threads are marked, with a client connected.
fn start(
    preset: usize,
    max_memory: &str,
) -> (
    RedisServer,
    tokio::runtime::Runtime,
    nearcache::Running,
    Client,
) {
    let redis = RedisServer::start();
    let value = "v".repeat(VALUE);
    for i in 0..preset {
        redis_cmd_blocking(
            &redis.addr(),
            &[b"SET", key(i).as_bytes(), value.as_bytes()],
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(|| PROXY_THREAD.with(|p| p.set(true)))
        .build()
        .unwrap();
    // One session thread: the sessions run on this marked runtime, none on a thread of the
    // proxy's own, so every allocation of the request path is counted.
    let config = Proxy::config(&redis.addr())
        .with("max_memory", max_memory)
        .with("threads", "1");
    let running = rt.block_on(nearcache::start(config)).unwrap();
    let c = Client {
        s: TcpStream::connect(running.listen_addr.expect("a plain-TCP listener")).unwrap(),
        scratch: Vec::new(),
    };
    c.s.set_nodelay(true).unwrap();
    (redis, rt, running, c)
}

#[test]
fn allocations_per_request() {
    the_hit_path_allocates_nothing();
    the_forward_path_allocates_little();
}

fn the_hit_path_allocates_nothing() {
    let (redis, rt, running, mut c) = start(KEYS, "16mb");

    let gets: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| encode(&[vec!["GET".into(), key(i)]]))
        .collect();
    let pipelines: Vec<Vec<u8>> = (0..KEYS / 16)
        .map(|p| {
            let cmds: Vec<Vec<String>> = (0..16)
                .map(|j| vec!["GET".into(), key(p * 16 + j)])
                .collect();
            encode(&cmds)
        })
        .collect();
    let mgets: Vec<Vec<u8>> = (0..KEYS / 10)
        .map(|m| {
            let mut cmd = vec!["MGET".to_string()];
            cmd.extend((0..10).map(|j| key(m * 10 + j)));
            encode(&[cmd])
        })
        .collect();
    let mget_reply = 5 + 10 * GET_REPLY;

    let run = |c: &mut Client, rounds: usize| {
        let mut requests = 0u64;
        for _ in 0..rounds {
            for g in &gets {
                c.round(g, GET_REPLY);
                requests += 1;
            }
            for p in &pipelines {
                c.round(p, 16 * GET_REPLY);
                requests += 16;
            }
            for m in &mgets {
                c.round(m, mget_reply);
                requests += 1;
            }
        }
        requests
    };

    // Warm up: fills (tracking comes up asynchronously, so repeat until Redis sees no reads),
    // then enough hits that every buffer has reached its steady size.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let before = calls(&redis.addr(), "get") + calls(&redis.addr(), "mget");
        run(&mut c, 1);
        if calls(&redis.addr(), "get") + calls(&redis.addr(), "mget") == before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reads never all hit");
    }
    run(&mut c, 20);

    let reads_before = calls(&redis.addr(), "get") + calls(&redis.addr(), "mget");
    let before = ALLOCS.load(Ordering::Relaxed);
    let requests = run(&mut c, 50);
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let reads = calls(&redis.addr(), "get") + calls(&redis.addr(), "mget") - reads_before;
    println!(
        "{requests} hit requests: {allocs} allocations on proxy threads ({:.4} per request), {reads} reads reached Redis",
        allocs as f64 / requests as f64
    );
    assert_eq!(reads, 0, "some requests were not hits");
    // Nothing per request; a handful in total allows for the runtime's own rare bookkeeping.
    assert!(
        allocs * 1000 < requests,
        "{allocs} allocations for {requests} hit requests"
    );
    drop(c);
    rt.block_on(running.shutdown());
}

/// Allocations per request on the proxy's threads while `round(i)` (the `i`th write of
/// commands, answered with `reply` bytes, `per` requests each) is sent 5,000 times, after 3,000
/// rounds of warm-up, through a proxy with `max_memory` in front of a Redis holding `preset`
/// keys.
fn per_request(
    max_memory: &str,
    preset: usize,
    round: &dyn Fn(usize) -> Vec<u8>,
    reply: usize,
    per: u64,
) -> f64 {
    let (_redis, rt, running, mut c) = start(preset, max_memory);
    let (warm, measured) = (3000, 5000);
    for i in 0..warm {
        c.round(&round(i), reply);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in warm..warm + measured {
        c.round(&round(i), reply);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    drop(c);
    rt.block_on(running.shutdown());
    allocs as f64 / (measured as u64 * per) as f64
}

/// What forwarding allocates per request: nothing for a write or a read the cache does not look
/// up (the reply's slot is recycled); for a miss the one completion of its read and `PTTL` (sent
/// as one request) and the entry itself. Its entry key and request are split off the session's
/// encode buffer, which allocates a new room only every few dozen misses.
fn the_forward_path_allocates_little() {
    let value = "v".repeat(VALUE);
    let set = |i: usize| encode(&[vec!["SET".into(), key(i % 1000), value.clone()]]);
    let set16 = |i: usize| {
        let cmds: Vec<Vec<String>> = (0..16)
            .map(|j| vec!["SET".into(), key((i * 16 + j) % 1000), value.clone()])
            .collect();
        encode(&cmds)
    };
    let get = |i: usize| encode(&[vec!["GET".into(), key(i)]]);
    let ok = 5;
    let rows = [
        ("SET", per_request("16mb", 0, &set, ok, 1), 0.0),
        (
            "SET, pipelines of 16",
            per_request("16mb", 0, &set16, 16 * ok, 16),
            0.0,
        ),
        (
            "GET, cache off",
            per_request("0", 8000, &get, GET_REPLY, 1),
            0.0,
        ),
        (
            "GET miss, filled",
            per_request("16mb", 8000, &get, GET_REPLY, 1),
            2.0,
        ),
    ];
    for (what, allocs, most) in rows {
        println!("{what}: {allocs:.3} allocations per request");
        // A fifth per request allows for rare bookkeeping (the runtime's, its queues' blocks,
        // the flights' map); one allocation made per request would still fail.
        assert!(
            allocs < most + 0.2,
            "{what}: {allocs:.3} per request, not {most}"
        );
    }
}
