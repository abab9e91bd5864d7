//! The wire as Redis speaks it, compared byte for byte with a real redis-server: a client's
//! malformed request gets Redis's own error and the connection closes as Redis closes it; odd
//! requests Redis reads are read alike; replies nested deeper than any client limit pass.

mod common;

use bytes::Bytes;
use common::*;

/// Requests that Redis refuses with `-ERR Protocol error: ...` before closing.
fn refused() -> Vec<(&'static str, Vec<u8>)> {
    // A line starting at `at` that runs just over Redis's PROTO_INLINE_MAX_SIZE without an
    // end: refused once all of it is read.
    let over = |prefix: &[u8], at: usize| {
        let mut v = prefix.to_vec();
        v.resize(at + 64 * 1024 + 1, b'1');
        v
    };
    vec![
        // tests/unit/protocol.tcl
        ("out of range multibulk length", b"*3000000000\r\n".to_vec()),
        (
            "wrong multibulk payload header",
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n".to_vec(),
        ),
        (
            "negative payload length",
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n".to_vec(),
        ),
        (
            "out of range payload length",
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n".to_vec(),
        ),
        (
            "non-number payload length",
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n".to_vec(),
        ),
        ("not followed by bulks", b"*1\r\nfoo\r\n".to_vec()),
        (
            "unbalanced quotes",
            b"set \"\"\"test-key\"\"\" test-value\r\nping\r\n".to_vec(),
        ),
        // The other cases of processMultibulkBuffer and processInlineBuffer.
        ("non-canonical count", b"*01\r\n".to_vec()),
        ("streamed count", b"*?\r\n".to_vec()),
        (
            "non-canonical bulk length",
            b"*1\r\n$03\r\nfoo\r\n".to_vec(),
        ),
        ("null bulk in a request", b"*1\r\n$-1\r\n".to_vec()),
        ("empty line for a bulk", b"*1\r\n\r\n".to_vec()),
        ("LF for a bulk", b"*1\r\n\n\r\n".to_vec()),
        ("non-ASCII for a bulk", b"*1\r\n\x80\r\n".to_vec()),
        ("too big mbulk count string", over(b"*", 0)),
        ("too big bulk count string", over(b"*1\r\n$", 4)),
        ("NUL in a count line", over(b"*\x00", 0)),
        ("too big inline request", over(b"A", 0)),
        ("NUL in an inline line", over(b"\x00", 0)),
        (
            "after a pipeline",
            b"PING\r\n*1\r\n$4\r\nPING\r\n*x\r\nPING\r\n".to_vec(),
        ),
    ]
}

/// Everything the server sends until it closes, after `input`.
async fn answer_then_close(addr: &str, input: &[u8]) -> Bytes {
    let mut c = RawConn::connect(addr).await;
    // Redis may close before it has read a long request to its end.
    let _ = c.try_send_raw(input).await;
    c.expect_closed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_redis_own_and_close_the_connection() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut differ = Vec::new();
    for (what, input) in refused() {
        let want = answer_then_close(&redis.addr(), &input).await;
        assert!(
            want.ends_with(b"\r\n") && want.windows(20).any(|w| w == b"-ERR Protocol error:"),
            "{what}: redis said {}",
            show(&want)
        );
        let got = answer_then_close(&proxy.addr(), &input).await;
        if got != want {
            differ.push(format!(
                "{what}: redis {} nearcache {}",
                show(&want),
                show(&got)
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_are_read_as_redis_reads_them() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    // (what, request, replies it gets)
    let cases: [(&str, &[u8], usize); 8] = [
        ("negative count, then PING", b"*-10\r\nPING\r\n", 1),
        ("empty lines, then PING", b"\r\n\n*0\r\nPING\r\n", 1),
        ("vertical tab inside an argument", b"ECHO a\x0bb\r\n", 1),
        ("quoted, then a vertical tab", b"ECHO \"a\"\x0bb\r\n", 1),
        ("empty quoted argument", b"ECHO \"\"\r\n", 1),
        ("CR inside an inline line", b"ECHO\rPING\r\n", 1),
        (
            "any two bytes after a payload",
            b"*2\r\n$4\r\nECHO\r\n$1\r\naXY*1\r\n$4\r\nPING\r\n",
            2,
        ),
        (
            "any byte after a header's CR",
            b"*2\rX$4\r\nECHO\r\n$1\rYaZZ",
            1,
        ),
    ];
    for (what, input, n) in cases {
        let mut replies = Vec::new();
        for addr in [redis.addr(), proxy.addr()] {
            let mut c = RawConn::connect(&addr).await;
            c.send_raw(input).await;
            let mut got = Vec::new();
            for _ in 0..n {
                got.push(c.read_raw().await);
            }
            // And the connection is still in step.
            assert_eq!(
                &c.cmd(&["PING"]).await[..],
                b"+PONG\r\n",
                "{what} at {addr}"
            );
            replies.push(got);
        }
        assert_eq!(replies[1], replies[0], "{what}: nearcache vs redis");
    }
    proxy.shutdown().await;
}

/// A Lua table `depth` levels deep, returned as nested arrays.
const DEEP: &str = "local t = {1} for i = 2, tonumber(ARGV[1]) do t = {t} end return t";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_nested_deeper_than_any_client_limit_are_forwarded() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    for resp3 in [false, true] {
        let mut replies = Vec::new();
        for addr in [redis.addr(), proxy.addr()] {
            let mut c = RawConn::connect(&addr).await;
            if resp3 {
                c.hello3().await;
            }
            let reply = c.cmd(&["EVAL", DEEP, "0", "1000"]).await;
            // And the connection (and the proxy's shared one) is fine afterwards.
            assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
            replies.push(reply);
        }
        let want = [&b"*1\r\n".repeat(1000)[..], b":1\r\n"].concat();
        assert!(
            replies[0] == want,
            "redis, resp3 {resp3}: {}",
            show(&replies[0])
        );
        assert!(
            replies[1] == replies[0],
            "nearcache, resp3 {resp3}: {}",
            show(&replies[1])
        );
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_a_script_shapes_oddly_are_forwarded_as_they_came() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    // Redis sends this big number with a space for each CR and LF: `(123  123`.
    let script = "redis.setresp(3); return {big_number='123\\r\\n123'}";
    let mut replies = Vec::new();
    for addr in [redis.addr(), proxy.addr()] {
        let mut c = RawConn::connect(&addr).await;
        c.hello3().await;
        replies.push(c.cmd(&["EVAL", script, "0"]).await);
        assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
    }
    assert_eq!(&replies[0][..], b"(123  123\r\n");
    assert_eq!(replies[1], replies[0]);
    proxy.shutdown().await;
}

/// HELLO's reply carries the client's own id (what CLIENT ID says), which may be longer than
/// the upstream connection's it replaces: what the client is owed is counted by what is
/// written, so the count neither grows nor wraps (a debug build checks every addition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_gives_the_clients_own_id_and_its_output_count_stays_true() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    // Client ids of three digits, while the proxy's connections to Redis keep fewer.
    for _ in 0..110 {
        let mut c = RawConn::connect(&proxy.addr()).await;
        assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
    }
    let mut c = RawConn::connect(&proxy.addr()).await;
    for proto in ["3", "2", "3"] {
        let hello = c.cmd(&["HELLO", proto]).await;
        let id = c.cmd(&["CLIENT", "ID"]).await;
        let want = format!("$2\r\nid\r\n{}", String::from_utf8_lossy(&id));
        let found = hello.windows(want.len()).any(|w| w == want.as_bytes());
        assert!(found, "{} lacks {want:?}", show(&hello));
        c.cmd(&["SET", "k", "v"]).await;
        assert_eq!(&c.cmd(&["GET", "k"]).await[..], b"$1\r\nv\r\n");
    }
    proxy.shutdown().await;
}
