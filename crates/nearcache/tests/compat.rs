//! Compatibility suite: every scenario runs the same command sequence against Redis directly and
//! through nearcache (each side with its own fresh redis-server), in RESP2 and again after
//! `HELLO 3`, and the replies must be byte-identical.
//!
//! `NEARCACHE_COMPAT_TARGET=direct` runs the suite direct-vs-direct (no proxy), to debug the
//! harness itself.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use resp::Frame;

/// Bound on one scenario run (one side, one protocol).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
struct Entry {
    label: String,
    reply: Bytes,
}

type Log = Arc<Mutex<Vec<Entry>>>;

/// What a scenario talks to: `target` is where "through" clients connect (Redis itself, or the
/// proxy), `redis` is the backing Redis for out-of-band direct access.
#[derive(Clone)]
struct Cx {
    target: String,
    redis: String,
    resp3: bool,
    log: Log,
}

impl Cx {
    /// A client through the target (the proxy on the proxy side); switched to RESP3 when the
    /// run is a RESP3 run, with the masked HELLO reply recorded.
    async fn conn(&self, name: &str) -> C {
        self.open(&self.target.clone(), name).await
    }

    /// A client straight to the backing Redis.
    async fn direct(&self, name: &str) -> C {
        self.open(&self.redis.clone(), name).await
    }

    async fn open(&self, addr: &str, name: &str) -> C {
        let mut c = C {
            conn: RawConn::connect(addr).await,
            name: name.to_string(),
            log: self.log.clone(),
        };
        if self.resp3 {
            c.hello(&["HELLO", "3"]).await;
        }
        c
    }

    /// Waits (bounded) until the backing Redis reports `n` blocked clients.
    async fn wait_blocked(&self, n: usize) {
        let redis = self.redis.clone();
        poll_until_async(Duration::from_secs(5), "blocked_clients", || {
            let redis = redis.clone();
            async move {
                let mut c = RawConn::connect(&redis).await;
                let info = c.cmd(&["INFO", "clients"]).await;
                let text = String::from_utf8_lossy(&info).to_string();
                let count = text
                    .lines()
                    .find_map(|l| l.strip_prefix("blocked_clients:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                (count >= n).then_some(())
            }
        })
        .await
    }
}

/// A scenario client: every reply it reads is recorded in the transcript.
struct C {
    conn: RawConn,
    name: String,
    log: Log,
}

impl C {
    fn rec(&self, label: String, reply: Bytes) {
        self.log.lock().unwrap().push(Entry {
            label: format!("{}: {label}", self.name),
            reply,
        });
    }

    /// Runs a command and records its reply.
    async fn cmd<A: AsRef<[u8]>>(&mut self, a: &[A]) -> Bytes {
        let r = self.conn.cmd(a).await;
        self.rec(show_cmd(a), r.clone());
        r
    }

    /// Runs commands one after another.
    async fn run(&mut self, cmds: &[&[&str]]) {
        for c in cmds {
            self.cmd(c).await;
        }
    }

    /// Runs a command whose reply is an unordered collection (e.g. SMEMBERS of a hash table
    /// set); records it with the top-level elements sorted.
    async fn cmd_unordered<A: AsRef<[u8]>>(&mut self, a: &[A]) -> Bytes {
        let r = self.conn.cmd(a).await;
        let sorted = match to_frame(&r) {
            Frame::Array(mut v) => {
                v.sort_by_key(to_bytes);
                to_bytes(&Frame::Array(v))
            }
            Frame::Set(mut v) => {
                v.sort_by_key(to_bytes);
                to_bytes(&Frame::Set(v))
            }
            _ => r.clone(),
        };
        self.rec(format!("{} (sorted)", show_cmd(a)), sorted);
        r
    }

    /// Like [`C::cmd_unordered`] for field/value replies (HGETALL of a hash table hash): sorts
    /// the pairs of a map, or of a flat RESP2 array.
    async fn cmd_unordered_pairs<A: AsRef<[u8]>>(&mut self, a: &[A]) -> Bytes {
        let r = self.conn.cmd(a).await;
        let sorted = match to_frame(&r) {
            Frame::Map(mut pairs) => {
                pairs.sort_by_key(|(k, v)| (to_bytes(k), to_bytes(v)));
                to_bytes(&Frame::Map(pairs))
            }
            Frame::Array(items) if items.len() % 2 == 0 => {
                let mut pairs: Vec<Vec<Frame>> = items.chunks(2).map(|p| p.to_vec()).collect();
                pairs.sort_by_key(|p| (to_bytes(&p[0]), to_bytes(&p[1])));
                to_bytes(&Frame::Array(pairs.concat()))
            }
            _ => r.clone(),
        };
        self.rec(format!("{} (pairs sorted)", show_cmd(a)), sorted);
        r
    }

    /// Runs HELLO and records the reply with the connection id masked.
    async fn hello<A: AsRef<[u8]>>(&mut self, a: &[A]) -> Bytes {
        let r = self.conn.cmd(a).await;
        self.rec(format!("{} (id masked)", show_cmd(a)), mask_hello(&r));
        r
    }

    /// Sends without reading.
    async fn send<A: AsRef<[u8]>>(&mut self, a: &[A]) {
        self.conn.send(a).await;
    }

    /// Reads and records the next frame.
    async fn read(&mut self, what: &str) -> Bytes {
        let r = self.conn.read_raw().await;
        self.rec(format!("<- {what}"), r.clone());
        r
    }

    /// Sends a command that has `n` replies (SUBSCRIBE a b ..) and records them all.
    async fn cmd_n<A: AsRef<[u8]>>(&mut self, a: &[A], n: usize) {
        self.send(a).await;
        for i in 0..n {
            let r = self.conn.read_raw().await;
            self.rec(format!("{} [reply {i}]", show_cmd(a)), r);
        }
    }

    /// Writes all commands at once, records every reply.
    async fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) {
        let replies = self.conn.pipeline(cmds).await;
        for (i, (c, r)) in cmds.iter().zip(replies).enumerate() {
            self.rec(format!("[pipeline #{i}] {}", show_cmd(c)), r);
        }
    }

    /// Writes raw bytes and records the next `n` replies.
    async fn raw(&mut self, bytes: &[u8], n: usize) {
        self.conn.send_raw(bytes).await;
        for i in 0..n {
            let r = self.conn.read_raw().await;
            self.rec(format!("raw {} [reply {i}]", show(bytes)), r);
        }
    }

    /// Records whether the server closes the connection (and what arrived before).
    async fn closed(&mut self) {
        let pending = self.conn.expect_closed().await;
        self.rec("<connection closed>".into(), pending);
    }
}

/// Replaces the value of the `id` field of a HELLO reply (map or flat array) with 0.
fn mask_hello(reply: &[u8]) -> Bytes {
    let is_id = |f: &Frame| f.as_bytes() == Some(b"id".as_slice());
    match to_frame(reply) {
        Frame::Map(mut pairs) => {
            for (k, v) in pairs.iter_mut() {
                if is_id(k) {
                    *v = Frame::Integer(0);
                }
            }
            to_bytes(&Frame::Map(pairs))
        }
        Frame::Array(mut items) => {
            for i in (0..items.len().saturating_sub(1)).step_by(2) {
                if is_id(&items[i]) {
                    items[i + 1] = Frame::Integer(0);
                }
            }
            to_bytes(&Frame::Array(items))
        }
        _ => Bytes::copy_from_slice(reply),
    }
}

fn through_proxy() -> bool {
    std::env::var("NEARCACHE_COMPAT_TARGET").as_deref() != Ok("direct")
}

/// Runs one side of a scenario, returning its transcript and its panic message if it failed.
async fn run_side<F, Fut>(scenario: &F, cx: Cx) -> (Vec<Entry>, Option<String>)
where
    F: Fn(Cx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let log = cx.log.clone();
    let handle = tokio::spawn(tokio::time::timeout(SCENARIO_TIMEOUT, scenario(cx)));
    let err = match handle.await {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(format!("scenario timed out after {SCENARIO_TIMEOUT:?}")),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            Some(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
            )
        }
        Err(e) => Some(e.to_string()),
    };
    let entries = log.lock().unwrap().clone();
    (entries, err)
}

/// Describes how `got` differs from `want`, or `None` when identical.
fn diff(want: &[Entry], got: &[Entry]) -> Option<String> {
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..want.len().max(got.len()) {
        let (w, g) = (want.get(i), got.get(i));
        let same = matches!((w, g), (Some(w), Some(g)) if w.reply == g.reply && w.label == g.label);
        if same {
            continue;
        }
        shown += 1;
        if shown > 8 {
            out.push_str("  ... (more differences)\n");
            break;
        }
        let label = w.or(g).map(|e| e.label.as_str()).unwrap_or("");
        out.push_str(&format!("  #{i} {label}\n"));
        match w {
            Some(w) => out.push_str(&format!("    redis:     {}\n", show(&w.reply))),
            None => out.push_str("    redis:     <no entry>\n"),
        }
        match g {
            Some(g) if g.label != label => out.push_str(&format!(
                "    nearcache: {} (for {})\n",
                show(&g.reply),
                g.label
            )),
            Some(g) => out.push_str(&format!("    nearcache: {}\n", show(&g.reply))),
            None => out.push_str("    nearcache: <no entry>\n"),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Runs `scenario` direct and through the proxy, in RESP2 and RESP3, and asserts identical
/// transcripts.
async fn check<F, Fut>(name: &str, scenario: F)
where
    F: Fn(Cx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut failures = Vec::new();
    for resp3 in [false, true] {
        let proto = if resp3 { "RESP3" } else { "RESP2" };
        let a = RedisServer::start();
        let b = RedisServer::start();
        let proxy = if through_proxy() {
            Some(Proxy::start(&b.addr()).await)
        } else {
            None
        };
        let target_b = proxy.as_ref().map(|p| p.addr()).unwrap_or_else(|| b.addr());
        let cx = |target: String, redis: String| Cx {
            target,
            redis,
            resp3,
            log: Arc::default(),
        };
        let (want, want_err) = run_side(&scenario, cx(a.addr(), a.addr())).await;
        let (got, got_err) = run_side(&scenario, cx(target_b, b.addr())).await;
        if let Some(e) = want_err {
            failures.push(format!(
                "{name} {proto}: the scenario failed against Redis itself (harness bug): {e}"
            ));
        }
        if let Some(e) = &got_err {
            failures.push(format!("{name} {proto}: through nearcache: {e}"));
        }
        if let Some(d) = diff(&want, &got) {
            failures.push(format!(
                "{name} {proto}: replies differ ({} vs {} entries):\n{d}",
                want.len(),
                got.len()
            ));
        }
        if let Some(p) = proxy {
            p.shutdown().await;
        }
    }
    if !failures.is_empty() {
        panic!("{}", failures.join("\n"));
    }
}

macro_rules! compat_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                check(stringify!($name), scenarios::$name).await;
            }
        )*
    };
}

compat_tests!(
    strings,
    hashes,
    lists,
    sets,
    sorted_sets,
    scripts,
    binary_keys_and_values,
    large_value,
    error_replies,
    multi_exec,
    watch_abort,
    large_pipelines,
    select_isolation,
    pubsub,
    blocking_pops,
    hello,
    quit,
    reset,
    inline_commands,
    client_tracking,
    client_reply,
    pipelined_mode_switches,
);

fn v(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

mod scenarios {
    use super::*;

    pub async fn strings(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.run(&[
            &["GET", "s"],
            &["SET", "s", "hello"],
            &["GET", "s"],
            &["GET", "s"],
            &["APPEND", "s", " world"],
            &["GET", "s"],
            &["STRLEN", "s"],
            &["STRLEN", "nosuch"],
            &["GETRANGE", "s", "0", "4"],
            &["GETRANGE", "s", "-5", "-1"],
            &["GETRANGE", "s", "100", "200"],
            &["SETRANGE", "s", "6", "WORLD"],
            &["GET", "s"],
            &["SETRANGE", "pad", "5", "x"],
            &["GET", "pad"],
            &["SET", "n", "-42"],
            &["GET", "n"],
            &["INCR", "n"],
            &["GET", "n"],
            &["DECRBY", "n", "100"],
            &["INCRBY", "n", "-7"],
            &["GET", "n"],
            &["DECR", "n"],
            &["INCR", "fresh"],
            &["INCRBYFLOAT", "f", "-1.5"],
            &["INCRBYFLOAT", "f", "3.25"],
            &["GET", "f"],
            &["SET", "max", "9223372036854775807"],
            &["INCR", "max"],
            &["GET", "max"],
            &["SET", "min", "-9223372036854775808"],
            &["DECR", "min"],
            &["MSET", "m1", "a", "m2", "b", "m3", ""],
            &["MGET", "m1", "m2", "m3", "nosuch"],
            &["GET", "m3"],
            &["SETNX", "m1", "z"],
            &["SETNX", "m4", "z"],
            &["GET", "m1"],
            &["GET", "m4"],
            &["GETDEL", "m4"],
            &["GETDEL", "m4"],
            &["GET", "m4"],
            &["GETSET", "m1", "aa"],
            &["GET", "m1"],
            &["SET", "m1", "b", "NX"],
            &["SET", "m1", "c", "XX", "GET"],
            &["GET", "m1"],
            &["SET", "m5", "d", "XX"],
            &["GET", "m5"],
            &["MSETNX", "m5", "x", "m1", "y"],
            &["MGET", "m1", "m5"],
            &["EXISTS", "m1", "m2", "nosuch"],
            &["DEL", "m1", "m2", "nosuch"],
            &["GET", "m1"],
            &["MGET", "m1", "m2", "m3"],
            &["TYPE", "s"],
            &["TYPE", "nosuch"],
            &["SET", "ttl", "v", "EX", "1000"],
            &["TTL", "ttl"],
            &["PERSIST", "ttl"],
            &["TTL", "ttl"],
            &["GET", "ttl"],
            &["GET", "gone"],
            &["SET", "gone", "v"],
            &["GET", "gone"],
            &["EXPIRE", "gone", "0"],
            &["GET", "gone"],
            &["GETEX", "s", "PERSIST"],
            &["RENAME", "s", "s2"],
            &["GET", "s"],
            &["GET", "s2"],
            &["COPY", "s2", "s3"],
            &["GET", "s3"],
            &["LCS", "s2", "s3"],
            &["ECHO", "echo"],
            &["PING"],
            &["PING", "msg"],
            &["DBSIZE"],
            &["EXISTS", "s2"],
            &["UNLINK", "s2"],
            &["GET", "s2"],
        ])
        .await;
    }

    pub async fn hashes(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.run(&[
            &["HGETALL", "h"],
            &["HGET", "h", "f1"],
            &["HSET", "h", "f1", "v1", "f2", "v2"],
            &["HGET", "h", "f1"],
            &["HGET", "h", "f1"],
            &["HGETALL", "h"],
            &["HMGET", "h", "f1", "nosuch", "f2"],
            &["HINCRBY", "h", "cnt", "5"],
            &["HINCRBY", "h", "cnt", "-10"],
            &["HINCRBYFLOAT", "h", "fl", "1.5"],
            &["HINCRBYFLOAT", "h", "fl", "-0.25"],
            &["HGETALL", "h"],
            &["HEXISTS", "h", "f1"],
            &["HEXISTS", "h", "nosuch"],
            &["HKEYS", "h"],
            &["HVALS", "h"],
            &["HLEN", "h"],
            &["HSTRLEN", "h", "f2"],
            &["HSETNX", "h", "f1", "x"],
            &["HSETNX", "h", "f3", "x"],
            &["HSET", "h", "f1", "new"],
            &["HGET", "h", "f1"],
            &["HDEL", "h", "f1", "nosuch"],
            &["HGET", "h", "f1"],
            &["HMSET", "h", "a", "1", "b", "2"],
            &["HGETALL", "h"],
            &["HSCAN", "h", "0"],
            &["DEL", "h"],
            &["HGETALL", "h"],
            &["HLEN", "h"],
        ])
        .await;
    }

    pub async fn lists(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.run(&[
            &["LRANGE", "l", "0", "-1"],
            &["RPUSH", "l", "a", "b", "c"],
            &["LPUSH", "l", "z"],
            &["LRANGE", "l", "0", "-1"],
            &["LRANGE", "l", "0", "-1"],
            &["LINDEX", "l", "1"],
            &["LINDEX", "l", "99"],
            &["LLEN", "l"],
            &["LPOP", "l"],
            &["LPOP", "l", "2"],
            &["RPOP", "l"],
            &["LRANGE", "l", "0", "-1"],
            &["RPUSH", "l", "1", "2", "3", "4", "5"],
            &["LSET", "l", "0", "x"],
            &["LSET", "l", "99", "x"],
            &["LINSERT", "l", "BEFORE", "3", "y"],
            &["LRANGE", "l", "0", "-1"],
            &["LREM", "l", "1", "y"],
            &["LPOS", "l", "4"],
            &["LPOS", "l", "nosuch"],
            &["LTRIM", "l", "1", "-2"],
            &["LRANGE", "l", "0", "-1"],
            &["LMOVE", "l", "l2", "LEFT", "RIGHT"],
            &["RPOPLPUSH", "l", "l2"],
            &["LRANGE", "l2", "0", "-1"],
            &["LRANGE", "l", "0", "-1"],
            &["LPUSHX", "nosuch", "a"],
            &["LRANGE", "nosuch", "0", "-1"],
            &["LPOP", "nosuch"],
            &["LPOP", "nosuch", "2"],
            &["LMPOP", "2", "nosuch", "l", "LEFT", "COUNT", "2"],
            &["LMPOP", "1", "nosuch", "RIGHT"],
            &["LLEN", "l"],
        ])
        .await;
    }

    pub async fn sets(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.run(&[
            &["SMEMBERS", "si"],
            &["SADD", "si", "3", "1", "2", "10"],
            &["SADD", "si", "2"],
            &["SMEMBERS", "si"],
            &["SMEMBERS", "si"],
            &["SISMEMBER", "si", "3"],
            &["SISMEMBER", "si", "4"],
            &["SMISMEMBER", "si", "1", "4", "10"],
            &["SCARD", "si"],
            &["SREM", "si", "10", "99"],
            &["SMEMBERS", "si"],
            &["SADD", "sj", "2", "3", "4"],
            &["SINTER", "si", "sj"],
            &["SUNION", "si", "sj"],
            &["SDIFF", "si", "sj"],
            &["SINTERCARD", "2", "si", "sj"],
            &["SINTERSTORE", "sk", "si", "sj"],
            &["SMEMBERS", "sk"],
            &["SMOVE", "si", "sj", "1"],
            &["SMEMBERS", "sj"],
            &["SADD", "ss", "apple", "banana", "cherry"],
            &["SORT", "ss", "ALPHA"],
            &["SORT", "sj", "DESC"],
            &["SISMEMBER", "ss", "banana"],
            &["SCARD", "ss"],
        ])
        .await;
        // String sets are hash tables in Redis 7.0: member order depends on the per-process
        // hash seed, so compare these replies as multisets.
        c.cmd_unordered(&["SMEMBERS", "ss"]).await;
        c.cmd_unordered(&["SUNION", "ss", "si"]).await;
        c.run(&[&["SREM", "ss", "banana"], &["SORT", "ss", "ALPHA"]])
            .await;
        c.cmd_unordered(&["SMEMBERS", "ss"]).await;
        c.run(&[&["DEL", "ss"], &["SMEMBERS", "ss"], &["SCARD", "ss"]])
            .await;
    }

    pub async fn sorted_sets(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.run(&[
            &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
            &["ZADD", "z", "1", "a", "2", "b", "3.5", "c"],
            &["ZADD", "z", "-inf", "ninf", "+inf", "pinf", "0.1", "tenth"],
            &["ZRANGE", "z", "0", "-1"],
            &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
            &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
            &["ZSCORE", "z", "c"],
            &["ZSCORE", "z", "ninf"],
            &["ZSCORE", "z", "tenth"],
            &["ZSCORE", "z", "nosuch"],
            &["ZSCORE", "nosuch", "a"],
            &["ZMSCORE", "z", "a", "nosuch", "pinf"],
            &["ZINCRBY", "z", "0.25", "a"],
            &["ZSCORE", "z", "a"],
            &["ZRANK", "z", "c"],
            &["ZREVRANK", "z", "c"],
            &["ZRANK", "z", "nosuch"],
            &[
                "ZRANGEBYSCORE",
                "z",
                "(1",
                "+inf",
                "WITHSCORES",
                "LIMIT",
                "0",
                "2",
            ],
            &["ZREVRANGEBYSCORE", "z", "3", "-inf", "WITHSCORES"],
            &["ZRANGE", "z", "0", "-1", "REV", "WITHSCORES"],
            &["ZRANGE", "z", "(1", "5", "BYSCORE"],
            &["ZCOUNT", "z", "-inf", "+inf"],
            &["ZCARD", "z"],
            &["ZPOPMIN", "z"],
            &["ZPOPMIN", "z", "2"],
            &["ZPOPMAX", "z"],
            &["ZPOPMIN", "nosuch"],
            &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
            &["ZADD", "z2", "10", "b", "20", "d"],
            &["ZUNION", "2", "z", "z2", "WITHSCORES"],
            &["ZINTER", "2", "z", "z2", "WITHSCORES"],
            &["ZUNIONSTORE", "z3", "2", "z", "z2"],
            &["ZRANGE", "z3", "0", "-1", "WITHSCORES"],
            &["ZRANGESTORE", "z4", "z3", "0", "1"],
            &["ZRANGE", "z4", "0", "-1", "WITHSCORES"],
            &["ZADD", "z", "INCR", "5", "x"],
            &["ZADD", "z", "XX", "CH", "7", "x"],
            &["ZADD", "z", "NX", "1", "x"],
            &["ZREM", "z", "x", "nosuch"],
            &["ZADD", "lex", "0", "a", "0", "b", "0", "c"],
            &["ZRANGEBYLEX", "lex", "[b", "+"],
            &["ZLEXCOUNT", "lex", "-", "+"],
            &["ZMPOP", "2", "nosuch", "z3", "MIN", "COUNT", "2"],
            &["ZRANGE", "z3", "0", "-1", "WITHSCORES"],
        ])
        .await;
    }

    pub async fn scripts(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.run(&[
            &["EVAL", "return {1,2,{3,'x',{'deep'}},'y'}", "0"],
            &["EVAL", "return true", "0"],
            &["EVAL", "return false", "0"],
            &["EVAL", "return nil", "0"],
            &["EVAL", "return 3.99", "0"],
            &["EVAL", "return 'str'", "0"],
            &["EVAL", "return {1, nil, 3}", "0"],
            &["EVAL", "return {err='MYERR boom'}", "0"],
            &["EVAL", "return redis.error_reply('OTHER bad')", "0"],
            &["EVAL", "return redis.status_reply('FINE')", "0"],
            &["EVAL", "return {double=3.14}", "0"],
            &["EVAL", "return redis.call('nosuchcmd')", "0"],
            &["EVAL", "error('raw lua error')", "0"],
            &["EVAL", "return 1", "-1"],
            &["EVAL", "return KEYS[1]", "2", "only-one"],
            &["SET", "sk", "before"],
            &["GET", "sk"],
            &[
                "EVAL",
                "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])",
                "1",
                "sk",
                "from-lua",
            ],
            &["GET", "sk"],
            &["EVAL", "return redis.pcall('INCR', KEYS[1])", "1", "sk"],
            &["HSET", "sh", "a", "1", "b", "2"],
            &["EVAL", "return redis.call('HGETALL', KEYS[1])", "1", "sh"],
            &[
                "EVAL",
                "redis.setresp(3); return redis.call('HGETALL', KEYS[1])",
                "1",
                "sh",
            ],
            &["ZADD", "sz", "1.5", "m"],
            &[
                "EVAL",
                "redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'm')",
                "1",
                "sz",
            ],
            &[
                "EVAL",
                "redis.setresp(3); return redis.call('EXISTS', KEYS[1]) == 1",
                "1",
                "sz",
            ],
            &["SCRIPT", "LOAD", "return ARGV[1]"],
            &[
                "EVALSHA",
                "098e0f0d1448c0a81dafe820f66d460eb09263da",
                "0",
                "hi",
            ],
            &["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"],
            &[
                "SCRIPT",
                "EXISTS",
                "098e0f0d1448c0a81dafe820f66d460eb09263da",
                "ffffffffffffffffffffffffffffffffffffffff",
            ],
            &["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "sk"],
            &["EVAL_RO", "return redis.call('DEL', KEYS[1])", "1", "sk"],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return {keys[1], args[1]} end)",
            ],
            &["FCALL", "myfunc", "1", "k", "arg"],
            &["FCALL", "nosuchfunc", "0"],
            &["GET", "sk"],
        ])
        .await;
    }

    pub async fn binary_keys_and_values(cx: Cx) {
        let mut c = cx.conn("c").await;
        let all: Vec<u8> = (0..=255u8).collect();
        let rev: Vec<u8> = (0..=255u8).rev().collect();
        let resp_like = b"$3\r\nfoo\r\n*1\r\n:1\r\n+OK\r\n".to_vec();
        let set: &[u8] = b"SET";
        let get: &[u8] = b"GET";
        c.cmd(&[get, &all]).await;
        c.cmd(&[set, &all, &rev]).await;
        c.cmd(&[get, &all]).await;
        c.cmd(&[get, &all]).await;
        c.cmd(&[b"STRLEN".as_slice(), &all]).await;
        c.cmd(&[b"GETRANGE".as_slice(), &all, b"10", b"20"]).await;
        c.cmd(&[set, b"\r\n", b"\r\n\r\n"]).await;
        c.cmd(&[get, b"\r\n"]).await;
        c.cmd(&[set, b"", b""]).await;
        c.cmd(&[get, b""]).await;
        c.cmd(&[b"EXISTS".as_slice(), b""]).await;
        c.cmd(&[set, b"k y \"q\"", &resp_like]).await;
        c.cmd(&[get, b"k y \"q\""]).await;
        c.cmd(&[b"APPEND".as_slice(), b"k y \"q\"", b"\0\r\n\0"])
            .await;
        c.cmd(&[get, b"k y \"q\""]).await;
        c.cmd(&[
            b"MGET".as_slice(),
            &all,
            b"\r\n",
            b"",
            b"k y \"q\"",
            b"nosuch",
        ])
        .await;
        c.cmd(&[b"HSET".as_slice(), b"bh", &all, &rev, b"\r\n", b"\n"])
            .await;
        c.cmd(&[b"HGET".as_slice(), b"bh", &all]).await;
        // Values over 64 bytes make it a hash table: field order depends on the hash seed.
        c.cmd_unordered_pairs(&[b"HGETALL".as_slice(), b"bh"]).await;
        c.cmd(&[b"RPUSH".as_slice(), &rev, &all, b"\r\n", &resp_like])
            .await;
        c.cmd(&[b"LRANGE".as_slice(), &rev, b"0", b"-1"]).await;
        c.cmd(&[b"ZADD".as_slice(), b"bz", b"1", &all]).await;
        c.cmd(&[b"ZRANGE".as_slice(), b"bz", b"0", b"-1", b"WITHSCORES"])
            .await;
        c.cmd(&[b"ECHO".as_slice(), &all]).await;
        c.cmd(&[b"DEL".as_slice(), &all]).await;
        c.cmd(&[get, &all]).await;
        for b in [0u8, 13, 10, 255, b'*', b'$'] {
            let key = [b'k', b];
            let val = [b, b, b];
            c.cmd(&[set, &key, &val]).await;
            c.cmd(&[get, &key]).await;
        }
    }

    pub async fn large_value(cx: Cx) {
        let mut c = cx.conn("c").await;
        let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        let set: &[u8] = b"SET";
        let get: &[u8] = b"GET";
        c.cmd(&[set, b"big", &big]).await;
        c.cmd(&[get, b"big"]).await;
        c.cmd(&[get, b"big"]).await;
        c.cmd(&[b"STRLEN".as_slice(), b"big"]).await;
        c.cmd(&[b"GETRANGE".as_slice(), b"big", b"100000", b"100010"])
            .await;
        c.cmd(&[b"APPEND".as_slice(), b"big", b"tail"]).await;
        c.cmd(&[get, b"big"]).await;
        c.cmd(&[b"RPUSH".as_slice(), b"bigl", &big, b"small", &big])
            .await;
        c.cmd(&[b"LRANGE".as_slice(), b"bigl", b"0", b"-1"]).await;
        c.cmd(&[b"HSET".as_slice(), b"bigh", b"f", &big]).await;
        c.cmd(&[b"HGETALL".as_slice(), b"bigh"]).await;
        c.cmd(&[b"MGET".as_slice(), b"big", b"nosuch", b"big"])
            .await;
        // Several big replies in one pipeline.
        let cmds: Vec<Vec<Vec<u8>>> = (0..10).map(|_| v(&[b"GET", b"big"])).collect();
        c.pipeline(&cmds).await;
        c.cmd(&[set, b"big", b"small now"]).await;
        c.cmd(&[get, b"big"]).await;
    }

    pub async fn error_replies(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.run(&[
            &["SET", "s", "v"],
            &["LPUSH", "s", "x"],
            &["HGET", "s", "f"],
            &["ZSCORE", "s", "m"],
            &["SMEMBERS", "s"],
            &["GET", "s"],
            &["RPUSH", "l", "a"],
            &["GET", "l"],
            &["INCR", "l"],
            &["FOOBAR", "x", "y"],
            &["FOOBAR"],
            &["GET"],
            &["GET", "a", "b"],
            &["SET", "k"],
            &["get"],
            &["HSET", "h", "f"],
            &["INCR", "s"],
            &["INCRBYFLOAT", "s", "1"],
            &["INCRBY", "n", "notanumber"],
            &["SET", "k", "v", "EX", "-1"],
            &["SET", "k", "v", "EX", "abc"],
            &["SET", "k", "v", "BADOPT"],
            &["ZADD", "z", "notnum", "m"],
            &["EXEC"],
            &["DISCARD"],
            &["SELECT", "99"],
            &["SELECT", "x"],
            &["OBJECT", "NOSUCH"],
            &["CLIENT", "NOSUCH"],
            &["CONFIG", "GET"],
            &["EXPIRE", "s", "x"],
            &["LRANGE", "l", "a", "b"],
            &["GETRANGE", "s", "x", "1"],
            &["SETRANGE", "s", "-1", "x"],
            &["BITCOUNT", "s", "0"],
            &["PING", "a", "b"],
            &["GET", "s"],
        ])
        .await;
        // An empty command name and a command with no arguments at all.
        c.raw(b"*1\r\n$0\r\n\r\n", 1).await;
        c.raw(b"*0\r\nPING\r\n", 1).await;
    }

    pub async fn multi_exec(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.run(&[
            &["SET", "k", "orig"],
            &["GET", "k"],
            &["MULTI"],
            &["SET", "tx", "1"],
            &["INCR", "tx"],
            &["GET", "tx"],
            &["LPUSH", "tx", "x"],
            &["SET", "k", "in-tx"],
            &["GET", "k"],
            &["EXEC"],
            &["GET", "tx"],
            &["GET", "k"],
            // A queue-time error aborts the transaction.
            &["MULTI"],
            &["SET", "tx2", "a"],
            &["NOSUCHCMD"],
            &["SET", "tx3", "b"],
            &["EXEC"],
            &["GET", "tx2"],
            &["GET", "tx3"],
            &["MULTI"],
            &["GET", "k"],
            &["GET"],
            &["EXEC"],
            &["MULTI"],
            &["SET", "d", "1"],
            &["DISCARD"],
            &["GET", "d"],
            &["MULTI"],
            &["MULTI"],
            &["WATCH", "k"],
            &["DISCARD"],
            &["HSET", "h", "a", "1"],
            &["ZADD", "z", "1.5", "m"],
            &["MULTI"],
            &["HGETALL", "h"],
            &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
            &["ZSCORE", "z", "m"],
            &["GET", "nosuch"],
            &["SMEMBERS", "nosuch"],
            &["EXEC"],
            &["MULTI"],
            &["EXEC"],
        ])
        .await;
    }

    pub async fn watch_abort(cx: Cx) {
        let mut c = cx.conn("c").await;
        let mut c2 = cx.conn("c2").await;
        let mut d = cx.direct("direct").await;
        c.run(&[&["SET", "w", "1"], &["WATCH", "w"], &["GET", "w"]])
            .await;
        d.cmd(&["SET", "w", "2"]).await;
        c.run(&[&["MULTI"], &["SET", "w", "3"], &["EXEC"], &["GET", "w"]])
            .await;
        // Unmodified: commits.
        c.run(&[
            &["WATCH", "w"],
            &["MULTI"],
            &["SET", "w", "4"],
            &["EXEC"],
            &["GET", "w"],
        ])
        .await;
        // UNWATCH forgets the watch.
        c.run(&[&["WATCH", "w"], &["UNWATCH"]]).await;
        d.cmd(&["SET", "w", "5"]).await;
        c.run(&[&["MULTI"], &["INCR", "w"], &["EXEC"]]).await;
        // Modified by another client of the proxy.
        c.run(&[&["WATCH", "w", "other"], &["GET", "other"]]).await;
        c2.cmd(&["SET", "other", "x"]).await;
        c.run(&[&["MULTI"], &["GET", "w"], &["EXEC"], &["GET", "other"]])
            .await;
        // Modified by the watching client itself before MULTI.
        c.run(&[
            &["WATCH", "w"],
            &["SET", "w", "self"],
            &["MULTI"],
            &["GET", "w"],
            &["EXEC"],
        ])
        .await;
        // A watched key that does not exist yet.
        c.run(&[&["WATCH", "fresh"], &["GET", "fresh"]]).await;
        d.cmd(&["SET", "fresh", "now"]).await;
        c.run(&[&["MULTI"], &["SET", "fresh", "tx"], &["EXEC"]])
            .await;
    }

    pub async fn large_pipelines(cx: Cx) {
        let mut c = cx.conn("c").await;
        let mut p1 = Vec::new();
        for i in 0..200 {
            let k = format!("k{}", i % 20);
            let val = format!("v{i}");
            p1.push(v(&[b"SET", k.as_bytes(), val.as_bytes()]));
            p1.push(v(&[b"GET", k.as_bytes()]));
            p1.push(v(&[b"INCR", b"cnt"]));
        }
        c.pipeline(&p1).await;
        // Reads of one hot key interleaved with writes to it.
        let mut p2 = Vec::new();
        for i in 0..150 {
            p2.push(v(&[b"GET", b"hot"]));
            if i % 3 == 0 {
                p2.push(v(&[b"APPEND", b"hot", b"x"]));
            }
            p2.push(v(&[b"MGET", b"hot", b"k1", b"nosuch"]));
        }
        c.pipeline(&p2).await;
        // Errors, transactions and several types inside one pipeline.
        let mut p3 = Vec::new();
        for i in 0..50 {
            let n = i.to_string();
            p3.push(v(&[b"MULTI"]));
            p3.push(v(&[b"SET", b"a", n.as_bytes()]));
            p3.push(v(&[b"GET", b"a"]));
            p3.push(v(&[b"EXEC"]));
            p3.push(v(&[b"NOSUCH", n.as_bytes()]));
            p3.push(v(&[b"HSET", b"h", n.as_bytes(), n.as_bytes()]));
            p3.push(v(&[b"HGET", b"h", n.as_bytes()]));
            p3.push(v(&[b"ZADD", b"z", n.as_bytes(), n.as_bytes()]));
            p3.push(v(&[b"ZSCORE", b"z", n.as_bytes()]));
            p3.push(v(&[b"GET", b"a"]));
        }
        c.pipeline(&p3).await;
        c.cmd(&["GET", "cnt"]).await;
    }

    pub async fn select_isolation(cx: Cx) {
        let mut a = cx.conn("a").await;
        let mut b = cx.conn("b").await;
        a.run(&[
            &["SET", "k", "db0"],
            &["GET", "k"],
            &["SELECT", "1"],
            &["GET", "k"],
            &["SET", "k", "db1"],
            &["GET", "k"],
        ])
        .await;
        b.run(&[&["GET", "k"], &["GET", "k"]]).await;
        a.cmd(&["GET", "k"]).await;
        b.run(&[
            &["SELECT", "1"],
            &["GET", "k"],
            &["SET", "k", "db1-by-b"],
            &["SELECT", "0"],
            &["GET", "k"],
        ])
        .await;
        a.run(&[
            &["GET", "k"],
            &["SELECT", "0"],
            &["GET", "k"],
            &["SELECT", "15"],
            &["GET", "k"],
            &["SELECT", "16"],
            &["GET", "k"],
            &["MOVE", "k", "0"],
            &["SET", "m", "in15"],
            &["MOVE", "m", "0"],
            &["GET", "m"],
            &["SELECT", "0"],
            &["GET", "m"],
            &["SWAPDB", "0", "1"],
            &["GET", "k"],
            &["SELECT", "1"],
            &["GET", "k"],
            &["DBSIZE"],
        ])
        .await;
        b.run(&[&["GET", "k"], &["DBSIZE"]]).await;
        // A fresh connection starts in db 0 again.
        let mut c = cx.conn("c").await;
        c.cmd(&["GET", "k"]).await;
    }

    pub async fn pubsub(cx: Cx) {
        let mut sub = cx.conn("sub").await;
        let mut sub2 = cx.conn("sub2").await;
        let mut pd = cx.direct("pub-direct").await;
        let mut pp = cx.conn("pub-proxy").await;
        sub.cmd_n(&["SUBSCRIBE", "ch1", "ch2"], 2).await;
        pd.cmd(&["PUBLISH", "ch1", "hello"]).await;
        sub.read("message ch1").await;
        pp.cmd(&["PUBLISH", "ch2", "via proxy"]).await;
        sub.read("message ch2").await;
        pp.cmd(&["PUBLISH", "nobody", "x"]).await;
        sub.cmd_n(&["PSUBSCRIBE", "p*"], 1).await;
        pd.cmd(&["PUBLISH", "pa", "pattern"]).await;
        sub.read("pmessage pa").await;
        // Binary and large payloads.
        let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        pp.cmd(&[b"PUBLISH".as_slice(), b"ch1", b"a\r\nb\0"]).await;
        sub.read("message binary").await;
        pp.cmd(&[b"PUBLISH".as_slice(), b"ch1", &payload]).await;
        sub.read("message large").await;
        // Two subscribers.
        sub2.cmd_n(&["SUBSCRIBE", "ch1"], 1).await;
        pd.cmd(&["PUBLISH", "ch1", "both"]).await;
        sub.read("message both (sub)").await;
        sub2.read("message both (sub2)").await;
        // Commands inside subscribed mode: allowed ones, and (RESP2) refused ones; in RESP3
        // a subscribed client can run anything.
        sub.cmd(&["PING"]).await;
        sub.cmd(&["PING", "x"]).await;
        sub.cmd(&["SET", "k", "v"]).await;
        sub.cmd(&["GET", "k"]).await;
        sub.cmd_n(&["SUBSCRIBE", "ch3"], 1).await;
        pp.cmd(&["PUBLISH", "ch3", "three"]).await;
        sub.read("message ch3").await;
        sub.cmd_n(&["UNSUBSCRIBE", "ch1", "ch2"], 2).await;
        pd.cmd(&["PUBLISH", "ch1", "sub2 only"]).await;
        sub2.read("message sub2 only").await;
        sub.cmd_n(&["PUNSUBSCRIBE", "p*"], 1).await;
        sub.cmd_n(&["UNSUBSCRIBE", "ch3"], 1).await;
        sub.cmd(&["PING"]).await;
        sub.cmd(&["GET", "k"]).await;
        sub.cmd_n(&["UNSUBSCRIBE"], 1).await;
        sub2.cmd_n(&["UNSUBSCRIBE"], 1).await;
        pd.cmd(&["PUBLISH", "ch1", "nobody"]).await;
        sub2.cmd(&["PING"]).await;
        pp.cmd(&["PUBSUB", "NUMSUB", "ch1", "ch2"]).await;
    }

    pub async fn blocking_pops(cx: Cx) {
        let mut a = cx.conn("a").await;
        let mut b = cx.conn("b").await;
        let mut d = cx.direct("direct").await;
        // Woken by another client of the proxy.
        a.send(&["BLPOP", "q", "5"]).await;
        cx.wait_blocked(1).await;
        b.cmd(&["LPUSH", "q", "v1"]).await;
        a.read("BLPOP q").await;
        // Woken by a direct client; the proxy keeps serving others meanwhile.
        a.send(&["BLPOP", "q2", "q", "5"]).await;
        cx.wait_blocked(1).await;
        b.run(&[&["SET", "x", "1"], &["GET", "x"], &["GET", "x"]])
            .await;
        d.cmd(&["RPUSH", "q2", "v2", "v3"]).await;
        a.read("BLPOP q2").await;
        a.cmd(&["LRANGE", "q2", "0", "-1"]).await;
        // Timeouts: a null reply (null array in RESP2, null in RESP3).
        a.cmd(&["BLPOP", "nokey", "0.1"]).await;
        a.cmd(&["BRPOP", "nokey", "0.1"]).await;
        a.cmd(&["BLMOVE", "nokey", "dst", "LEFT", "RIGHT", "0.1"])
            .await;
        a.cmd(&["BZPOPMIN", "nokey", "0.1"]).await;
        // Already available: no blocking.
        b.cmd(&["ZADD", "bz", "2.5", "m"]).await;
        a.cmd(&["BZPOPMIN", "bz", "1"]).await;
        a.send(&["BZPOPMAX", "bz", "5"]).await;
        cx.wait_blocked(1).await;
        b.cmd(&["ZADD", "bz", "7", "n"]).await;
        a.read("BZPOPMAX bz").await;
        a.send(&["BLMOVE", "src", "dst", "RIGHT", "LEFT", "5"])
            .await;
        cx.wait_blocked(1).await;
        b.cmd(&["RPUSH", "src", "moved"]).await;
        a.read("BLMOVE src").await;
        b.cmd(&["LRANGE", "dst", "0", "-1"]).await;
        // Inside MULTI a blocking command does not block.
        a.run(&[&["MULTI"], &["BLPOP", "nokey", "5"], &["EXEC"]])
            .await;
        // A blocking command with a non-number timeout is an error.
        a.cmd(&["BLPOP", "q", "soon"]).await;
    }

    pub async fn hello(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.hello(&["HELLO"]).await;
        c.hello(&["HELLO", "2"]).await;
        c.cmd(&["GET", "nosuch"]).await;
        c.hello(&["HELLO", "3"]).await;
        c.cmd(&["GET", "nosuch"]).await;
        c.cmd(&["HSET", "h", "a", "1"]).await;
        c.cmd(&["HGETALL", "h"]).await;
        c.cmd(&["HELLO", "4"]).await;
        c.cmd(&["HELLO", "abc"]).await;
        c.hello(&["HELLO", "3", "SETNAME", "myname"]).await;
        c.cmd(&["CLIENT", "GETNAME"]).await;
        // No requirepass: the default user accepts any password.
        c.hello(&["HELLO", "3", "AUTH", "default", "wrong"]).await;
        c.hello(&["HELLO", "2"]).await;
        c.cmd(&["HGETALL", "h"]).await;
        c.cmd(&["CLIENT", "GETNAME"]).await;
    }

    pub async fn quit(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.cmd(&["SET", "q", "1"]).await;
        c.cmd(&["QUIT"]).await;
        c.closed().await;
        // QUIT in the middle of a pipeline: later commands are not run.
        let mut p = cx.conn("p").await;
        let cmds = vec![
            v(&[b"PING"]),
            v(&[b"QUIT"]),
            v(&[b"SET", b"after-quit", b"1"]),
        ];
        let mut bytes = bytes::BytesMut::new();
        for c in &cmds {
            resp::encode_command(c, &mut bytes);
        }
        p.raw(&bytes, 2).await;
        p.closed().await;
        let mut c2 = cx.conn("c2").await;
        c2.cmd(&["GET", "q"]).await;
        c2.cmd(&["EXISTS", "after-quit"]).await;
    }

    pub async fn reset(cx: Cx) {
        let mut c = cx.conn("c").await;
        let mut d = cx.direct("direct").await;
        c.run(&[
            &["SELECT", "3"],
            &["SET", "rk", "v"],
            &["GET", "rk"],
            &["CLIENT", "SETNAME", "nm"],
        ])
        .await;
        c.hello(&["HELLO", "3"]).await;
        c.run(&[&["MULTI"], &["SET", "x", "1"], &["RESET"]]).await;
        c.run(&[
            &["GET", "rk"],
            &["HSET", "h", "a", "1"],
            &["HGETALL", "h"],
            &["CLIENT", "GETNAME"],
            &["EXEC"],
            &["GET", "x"],
        ])
        .await;
        c.cmd_n(&["SUBSCRIBE", "ch"], 1).await;
        c.cmd(&["RESET"]).await;
        c.cmd(&["PING"]).await;
        d.cmd(&["PUBLISH", "ch", "m"]).await;
        c.run(&[&["SET", "w", "1"], &["WATCH", "w"], &["RESET"]])
            .await;
        d.cmd(&["SET", "w", "2"]).await;
        c.run(&[&["MULTI"], &["GET", "w"], &["EXEC"]]).await;
    }

    pub async fn inline_commands(cx: Cx) {
        let mut c = cx.conn("c").await;
        c.raw(b"PING\r\n", 1).await;
        c.raw(b"ping\n", 1).await;
        c.raw(b"SET inl \"a b\"\r\n", 1).await;
        c.raw(b"GET inl\r\n", 1).await;
        c.raw(b"ECHO \"x\\r\\ny\\x00\\xff\"\r\n", 1).await;
        c.raw(b"PING\r\nPING hello\r\n", 2).await;
        // Blank lines are ignored (no reply).
        c.raw(b"\r\n\r\nPING\r\n", 1).await;
        // Inline and multibulk mixed in one write.
        c.raw(
            b"SET inl2 v\r\n*2\r\n$3\r\nGET\r\n$4\r\ninl2\r\nEXISTS inl inl2\r\n",
            3,
        )
        .await;
        c.raw(b"  GET   inl  \r\n", 1).await;
        c.raw(b"NOSUCH a b\r\n", 1).await;
        c.raw(b"GET\r\n", 1).await;
        c.raw(b"HSET ih 'f 1' \"v\\t2\"\r\nHGETALL ih\r\n", 2).await;
        // A command split across writes.
        c.conn.send_raw(b"GE").await;
        c.raw(b"T inl\r\n", 1).await;
    }

    pub async fn client_tracking(cx: Cx) {
        let mut t = cx.conn("tracker").await;
        let mut w = cx.conn("writer").await;
        let mut d = cx.direct("direct").await;
        w.cmd(&["SET", "k", "1"]).await;
        t.cmd(&["CLIENT", "TRACKING", "ON"]).await;
        t.cmd(&["GET", "k"]).await;
        if !cx.resp3 {
            // RESP2 clients need REDIRECT to receive invalidations (that needs a client id,
            // which differs between runs): only check the commands are accepted.
            w.cmd(&["SET", "k", "2"]).await;
            t.cmd(&["GET", "k"]).await;
            t.cmd(&["CLIENT", "TRACKING", "OFF"]).await;
            return;
        }
        w.cmd(&["SET", "k", "2"]).await;
        t.read("invalidate k (write through the proxy)").await;
        t.cmd(&["GET", "k"]).await;
        d.cmd(&["SET", "k", "3"]).await;
        t.read("invalidate k (direct write)").await;
        t.cmd(&["GET", "k"]).await;
        t.cmd(&["MGET", "k", "k2"]).await;
        d.cmd(&["MSET", "k2", "x"]).await;
        t.read("invalidate k2").await;
        d.cmd(&["FLUSHALL"]).await;
        t.read("invalidate all (flush)").await;
        t.cmd(&["CLIENT", "TRACKING", "OFF"]).await;
        t.cmd(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:"])
            .await;
        w.cmd(&["SET", "user:1", "a"]).await;
        t.read("invalidate user:1 (bcast)").await;
        w.cmd(&["SET", "other", "a"]).await;
        w.cmd(&["SET", "user:2", "b"]).await;
        t.read("invalidate user:2 (bcast)").await;
        t.cmd(&["CLIENT", "TRACKING", "OFF"]).await;
        t.cmd(&["CLIENT", "TRACKING", "ON", "OPTIN"]).await;
        t.cmd(&["GET", "k"]).await;
        t.cmd(&["CLIENT", "CACHING", "YES"]).await;
        t.cmd(&["GET", "k3"]).await;
        w.cmd(&["SET", "k", "no-push-expected"]).await;
        w.cmd(&["SET", "k3", "push-expected"]).await;
        t.read("invalidate k3 (optin)").await;
        t.cmd(&["CLIENT", "TRACKINGINFO"]).await;
        t.cmd(&["CLIENT", "TRACKING", "OFF"]).await;
        t.cmd(&["PING"]).await;
    }

    pub async fn client_reply(cx: Cx) {
        let mut c = cx.conn("c").await;
        // SKIP: the next command's reply is suppressed.
        c.send(&["CLIENT", "REPLY", "SKIP"]).await;
        c.send(&["SET", "a", "1"]).await;
        c.cmd(&["GET", "a"]).await;
        // OFF until ON: nothing comes back for the commands in between.
        c.send(&["CLIENT", "REPLY", "OFF"]).await;
        c.send(&["SET", "b", "2"]).await;
        c.send(&["GET", "b"]).await;
        c.send(&["NOSUCH"]).await;
        c.cmd(&["CLIENT", "REPLY", "ON"]).await;
        c.cmd(&["GET", "b"]).await;
        c.cmd(&["MGET", "a", "b"]).await;
    }

    pub async fn pipelined_mode_switches(cx: Cx) {
        // One write carrying commands that change connection state (db, transaction, watch,
        // blocking, name, subscription) in the middle of ordinary ones.
        let mut c = cx.conn("c").await;
        let cmds: Vec<Vec<Vec<u8>>> = [
            &["SET", "a", "1"][..],
            &["SELECT", "1"],
            &["GET", "a"],
            &["SET", "a", "db1"],
            &["SELECT", "0"],
            &["GET", "a"],
            &["MULTI"],
            &["INCR", "c"],
            &["GET", "a"],
            &["EXEC"],
            &["BLPOP", "nokey", "0.1"],
            &["LPUSH", "q", "x"],
            &["BLPOP", "q", "1"],
            &["WATCH", "a"],
            &["MULTI"],
            &["GET", "a"],
            &["EXEC"],
            &["CLIENT", "SETNAME", "piped"],
            &["CLIENT", "GETNAME"],
            &["SUBSCRIBE", "ch"],
            &["PING"],
            &["UNSUBSCRIBE", "ch"],
            &["GET", "a"],
            &["SELECT", "1"],
            &["MULTI"],
            &["GET", "a"],
            &["DISCARD"],
            &["GET", "a"],
            &["SELECT", "0"],
            &["GET", "c"],
        ]
        .iter()
        .map(|a| args(a))
        .collect();
        c.pipeline(&cmds).await;
        c.cmd(&["GET", "a"]).await;
        // The same again, twice in one write.
        let twice: Vec<Vec<Vec<u8>>> = cmds.iter().chain(cmds.iter()).cloned().collect();
        c.pipeline(&twice).await;
        c.cmd(&["GET", "c"]).await;
    }
}
