//! The proxy's clients as Redis would see them: a client that becomes a replica (`SYNC`,
//! `PSYNC`) reads the replication stream byte for byte.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads from `s` into `buf` until `done(buf)` holds; panics after a few seconds.
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(buf) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("timed out; read so far: {:?}", Bytes::from(buf.clone())))
            .expect("read");
        assert!(n > 0, "closed; read so far: {:?}", Bytes::from(buf.clone()));
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_relays_the_replication_stream_byte_for_byte() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["SET", "before", "1"]).await[..], b"+OK\r\n");

    let mut replica = TcpStream::connect(proxy.addr).await.unwrap();
    replica.write_all(b"SYNC\r\n").await.unwrap();
    // `$<len>\r\n` (after any newlines Redis sends while it prepares the RDB), then the payload
    // with no CRLF after it.
    let mut buf = Vec::new();
    read_until(&mut replica, &mut buf, |b| {
        b.iter().skip_while(|&&c| c == b'\n').any(|&c| c == b'\n')
    })
    .await;
    let start = buf.iter().position(|&c| c != b'\n').unwrap();
    let line_end = start + buf[start..].iter().position(|&c| c == b'\n').unwrap();
    assert_eq!(buf[start], b'$', "{:?}", Bytes::from(buf.clone()));
    let len: usize = std::str::from_utf8(&buf[start + 1..line_end - 1])
        .unwrap()
        .parse()
        .unwrap();
    let payload = line_end + 1;
    read_until(&mut replica, &mut buf, |b| b.len() >= payload + len).await;
    assert!(buf[payload..].starts_with(b"REDIS"), "an RDB payload");
    assert!(contains(&buf[payload..payload + len], b"before"));

    // A write made through the proxy reaches the replica as Redis propagates it.
    assert_eq!(&c.cmd(&["SET", "after", "2"]).await[..], b"+OK\r\n");
    read_until(&mut replica, &mut buf, |b| {
        contains(&b[payload + len..], b"after")
    })
    .await;

    // The relay carries what the replica sends too: Redis answers nothing to REPLCONF ACK, and
    // the stream goes on.
    replica
        .write_all(b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n")
        .await
        .unwrap();
    assert_eq!(&c.cmd(&["SET", "later", "3"]).await[..], b"+OK\r\n");
    read_until(&mut replica, &mut buf, |b| {
        contains(&b[payload + len..], b"later")
    })
    .await;

    // The other client's session is unaffected.
    assert_eq!(&c.cmd(&["GET", "after"]).await[..], b"$1\r\n2\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psync_after_other_commands_answers_fullresync() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut replica = TcpStream::connect(proxy.addr).await.unwrap();
    // Replies to earlier commands come first, then the stream; the command after PSYNC in the
    // same write goes to Redis on the relay.
    replica
        .write_all(b"PING\r\nSET k v\r\nPSYNC ? -1\r\nREPLCONF ACK 0\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_until(&mut replica, &mut buf, |b| contains(b, b"+FULLRESYNC ")).await;
    assert!(
        buf.starts_with(b"+PONG\r\n+OK\r\n+FULLRESYNC "),
        "{:?}",
        Bytes::from(buf)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_inside_multi_is_refused_by_redis() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n");
    let reply = c.cmd(&["SYNC"]).await;
    assert!(reply.starts_with(b"-"), "{reply:?}");
    let mut direct = RawConn::connect(&redis.addr()).await;
    assert_eq!(&direct.cmd(&["MULTI"]).await[..], b"+OK\r\n");
    assert_eq!(direct.cmd(&["SYNC"]).await, reply);
}
