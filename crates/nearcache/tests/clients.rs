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

/// The value of an integer reply.
fn int(reply: &[u8]) -> i64 {
    std::str::from_utf8(&reply[1..reply.len() - 2])
        .unwrap()
        .parse()
        .unwrap()
}

/// The payload of a bulk reply, as text.
fn text(reply: &[u8]) -> String {
    let start = reply.iter().position(|&b| b == b'\n').unwrap() + 1;
    String::from_utf8_lossy(&reply[start..reply.len() - 2]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_has_its_own_id_name_and_line_in_client_list() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut a = RawConn::connect(&proxy.addr()).await;
    let mut b = RawConn::connect(&proxy.addr()).await;
    let (id_a, id_b) = (
        int(&a.cmd(&["CLIENT", "ID"]).await),
        int(&b.cmd(&["CLIENT", "ID"]).await),
    );
    assert_ne!(id_a, id_b);
    assert_eq!(
        &a.cmd(&["CLIENT", "SETNAME", "alpha"]).await[..],
        b"+OK\r\n"
    );
    assert_eq!(&a.cmd(&["CLIENT", "GETNAME"]).await[..], b"$5\r\nalpha\r\n");
    assert_eq!(&b.cmd(&["CLIENT", "GETNAME"]).await[..], b"$-1\r\n");
    let bad = a.cmd(&["CLIENT", "SETNAME", "a b"]).await;
    assert!(
        bad.starts_with(b"-ERR Client names cannot contain spaces"),
        "{bad:?}"
    );

    // Both clients, as the proxy sees them: their own addresses, not the upstream ones.
    let list = text(&b.cmd(&["CLIENT", "LIST"]).await);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let line_a = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={id_a} ")))
        .unwrap();
    let addr_a = a.local_addr();
    assert!(line_a.contains(&format!(" addr={addr_a} ")), "{line_a}");
    assert!(line_a.contains(" name=alpha "), "{line_a}");
    assert!(
        line_a.contains(&format!(" laddr={} ", proxy.addr)),
        "{line_a}"
    );
    let line_b = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={id_b} ")))
        .unwrap();
    assert!(line_b.contains(" cmd=client|list "), "{line_b}");
    let only_a = text(&b.cmd(&["CLIENT", "LIST", "ID", &id_a.to_string()]).await);
    assert_eq!(only_a.lines().count(), 1);
    let info = text(&a.cmd(&["CLIENT", "INFO"]).await);
    assert!(info.starts_with(&format!("id={id_a} ")), "{info}");

    // INFO clients counts the proxy's clients.
    let info = text(&a.cmd(&["INFO", "clients"]).await);
    assert!(info.contains("\r\nconnected_clients:2\r\n"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_closes_the_proxy_client_it_names() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut killer = RawConn::connect(&proxy.addr()).await;
    let mut victim = RawConn::connect(&proxy.addr()).await;
    let id = int(&victim.cmd(&["CLIENT", "ID"]).await);
    assert_eq!(
        &killer.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]).await[..],
        b":1\r\n"
    );
    // The victim's connection is closed, as Redis closes a client it kills.
    assert!(victim.try_cmd(&["PING"]).await.is_err());
    let addr = victim.local_addr().to_string();
    assert_eq!(
        &killer.cmd(&["CLIENT", "KILL", &addr]).await[..],
        b"-ERR No such client\r\n"
    );
    let bad = killer.cmd(&["CLIENT", "KILL", "ID", "0"]).await;
    assert!(
        bad.starts_with(b"-ERR client-id should be greater than 0"),
        "{bad:?}"
    );
    // SKIPME no: the caller too, after its reply.
    assert_eq!(
        &killer.cmd(&["CLIENT", "KILL", "SKIPME", "no"]).await[..],
        b":1\r\n"
    );
    assert!(killer.try_cmd(&["PING"]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_redirects_to_a_client_by_the_id_the_proxy_gave_it() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut target = RawConn::connect(&proxy.addr()).await;
    let target_id = int(&target.cmd(&["CLIENT", "ID"]).await).to_string();
    let sub = target.cmd(&["SUBSCRIBE", "__redis__:invalidate"]).await;
    assert!(sub.starts_with(b"*3\r\n$9\r\nsubscribe\r\n"), "{sub:?}");

    let mut reader = RawConn::connect(&proxy.addr()).await;
    let ok = reader
        .cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", &target_id])
        .await;
    assert_eq!(&ok[..], b"+OK\r\n");
    assert_eq!(
        int(&reader.cmd(&["CLIENT", "GETREDIR"]).await).to_string(),
        target_id
    );
    assert_eq!(&reader.cmd(&["SET", "k", "1"]).await[..], b"+OK\r\n");
    assert_eq!(&reader.cmd(&["GET", "k"]).await[..], b"$1\r\n1\r\n");

    let mut writer = RawConn::connect(&redis.addr()).await;
    assert_eq!(&writer.cmd(&["SET", "k", "2"]).await[..], b"+OK\r\n");
    let message = target.read_raw().await;
    assert_eq!(
        &message[..],
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n"
    );
    let info = text(&reader.cmd(&["INFO", "clients"]).await);
    assert!(info.contains("\r\ntracking_clients:1\r\n"), "{info}");

    let gone = reader
        .cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", "987654"])
        .await;
    assert_eq!(
        &gone[..],
        b"-ERR The client ID you want redirect to does not exist\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_dedicated_connection_is_killed_is_closed_without_a_reply() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["SELECT", "1"]).await[..], b"+OK\r\n");
    // Kill every normal connection Redis has but ours: the proxy's, the dedicated one among them.
    let mut admin = RawConn::connect(&redis.addr()).await;
    let killed = admin
        .cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .await;
    assert!(int(&killed) >= 1);
    match c.try_cmd(&["GET", "k"]).await {
        Err(_) => {}
        Ok(reply) => panic!("expected the connection closed, got {reply:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_back_from_pub_sub_is_answered_by_the_proxy_again() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    let id = c.cmd(&["CLIENT", "ID"]).await;
    c.cmd(&["SUBSCRIBE", "ch"]).await;
    let unsub = c.cmd(&["UNSUBSCRIBE"]).await;
    assert!(
        unsub.starts_with(b"*3\r\n$11\r\nunsubscribe\r\n"),
        "{unsub:?}"
    );
    // Redis sends nothing unasked any more: the proxy's own answers are in order again.
    assert_eq!(c.cmd(&["CLIENT", "ID"]).await, id);
    let replies = c
        .pipeline(&[
            vec!["SET", "x", "1"],
            vec!["CLIENT", "ID"],
            vec!["GET", "x"],
        ])
        .await;
    assert_eq!(&replies[0][..], b"+OK\r\n");
    assert_eq!(replies[1], id);
    assert_eq!(&replies[2][..], b"$1\r\n1\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_larger_than_the_socket_takes_at_once_arrive_whole_and_in_order() {
    // A dedicated connection's session writes on the socket itself; what the socket does not
    // take at once (8 MB) goes to the connection's writer, and what follows waits behind it.
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr()).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    c.timeout = Duration::from_secs(30);
    let big = vec![b'x'; 8 << 20];
    let replies = c
        .pipeline(&[
            vec![&b"SELECT"[..], b"3"],
            vec![b"SET", b"big", &big],
            vec![b"APPEND", b"big", b"yz"],
            vec![b"STRLEN", b"big"],
            vec![b"GETRANGE", b"big", b"-3", b"-1"],
        ])
        .await;
    assert_eq!(&replies[0][..], b"+OK\r\n");
    assert_eq!(&replies[1][..], b"+OK\r\n");
    assert_eq!(
        &replies[2][..],
        format!(":{}\r\n", (8 << 20) + 2).as_bytes()
    );
    assert_eq!(
        &replies[3][..],
        format!(":{}\r\n", (8 << 20) + 2).as_bytes()
    );
    assert_eq!(&replies[4][..], b"$3\r\nxyz\r\n");
}

/// With two session threads and clients placed in turn, clients on either thread are served,
/// share the cache, and a message published on one thread reaches a subscriber on the other.
#[tokio::test]
async fn clients_on_two_threads_share_the_proxy() {
    let redis = RedisServer::start();
    let config = Proxy::config(&redis.addr())
        .with("max_memory", "16mb")
        .with("threads", "2")
        .with("thread_placement", "connection");
    let proxy = Proxy::start_config(config).await;
    let mut a = RawConn::connect(&proxy.addr()).await;
    let mut b = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&a.cmd(&["SET", "k", "1"]).await[..], b"+OK\r\n");
    assert_eq!(&b.cmd(&["GET", "k"]).await[..], b"$1\r\n1\r\n");
    assert_eq!(&a.cmd(&["GET", "k"]).await[..], b"$1\r\n1\r\n");
    // b's write invalidates what a's thread reads from the cache.
    assert_eq!(&b.cmd(&["SET", "k", "2"]).await[..], b"+OK\r\n");
    assert_eq!(&a.cmd(&["GET", "k"]).await[..], b"$1\r\n2\r\n");

    let mut sub = RawConn::connect(&proxy.addr()).await;
    let mut publisher = RawConn::connect(&proxy.addr()).await;
    let reply = sub.cmd(&["SUBSCRIBE", "ch"]).await;
    assert!(contains(&reply, b"subscribe"), "{reply:?}");
    assert_eq!(
        &publisher.cmd(&["PUBLISH", "ch", "hi"]).await[..],
        b":1\r\n"
    );
    let message = sub.read_raw().await;
    assert!(contains(&message, b"hi"), "{message:?}");
}

/// The shared connections are spread over the session threads, and a client forwards through
/// its own thread's: two clients on the two threads reach Redis on two connections, each
/// always on the same one (Redis's MONITOR names the connection each command came on).
#[tokio::test]
async fn each_thread_forwards_through_a_shared_connection_of_its_own() {
    let redis = RedisServer::start();
    let config = Proxy::config(&redis.addr())
        .with("threads", "2")
        .with("thread_placement", "connection")
        .with("upstream_conns", "2");
    let proxy = Proxy::start_config(config).await;
    let mut monitor = RawConn::connect(&redis.addr()).await;
    assert_eq!(&monitor.cmd(&["MONITOR"]).await[..], b"+OK\r\n");
    let mut a = RawConn::connect(&proxy.addr()).await;
    let mut b = RawConn::connect(&proxy.addr()).await;
    // A connection still coming up is passed over for one that is up, on any thread: wait
    // for all four (two per protocol) first.
    eventually(
        Duration::from_secs(10),
        "every shared connection up",
        async || info_u64(&mut a, "pool_idle_connections").await >= 4,
    )
    .await;
    for i in 0..5 {
        let (ka, kb) = (format!("from-a:{i}"), format!("from-b:{i}"));
        assert_eq!(&a.cmd(&["SET", &ka, "1"]).await[..], b"+OK\r\n");
        assert_eq!(&b.cmd(&["SET", &kb, "1"]).await[..], b"+OK\r\n");
    }
    // Each MONITOR line: +<time> [<db> <addr>] "SET" "<key>" "1"
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 10 {
        assert!(std::time::Instant::now() < deadline, "MONITOR saw {seen:?}");
        text.push_str(&String::from_utf8_lossy(&monitor.read_raw().await));
        while let Some(end) = text.find("\r\n") {
            let line: String = text.drain(..end + 2).collect();
            let Some((_, rest)) = line.split_once(" [") else {
                continue;
            };
            let Some((who, command)) = rest.split_once("] ") else {
                continue;
            };
            let addr = who
                .split_whitespace()
                .last()
                .unwrap_or_default()
                .to_string();
            if let Some(key) = command.strip_prefix("\"SET\" \"") {
                let client = key.split(':').next().unwrap_or_default().to_string();
                seen.push((client, addr));
            }
        }
    }
    let conns = |client: &str| -> std::collections::BTreeSet<&String> {
        seen.iter()
            .filter(|(c, _)| c == client)
            .map(|(_, addr)| addr)
            .collect()
    };
    let (via_a, via_b) = (conns("from-a"), conns("from-b"));
    assert_eq!(via_a.len(), 1, "a's commands came on {via_a:?}");
    assert_eq!(via_b.len(), 1, "b's commands came on {via_b:?}");
    assert_ne!(
        via_a, via_b,
        "both threads forwarded through one connection"
    );
}
