//! Stateful sessions through the proxy in front of a real Redis Cluster (`cluster = true`,
//! `common::cluster`: 3 masters with a replica each): transactions on the master of their
//! slot (held `MULTI`, `WATCH`, `-CROSSSLOT` dooming the transaction, the cache coherent after
//! `EXEC`), blocking commands unblocked by another client, `SUBSCRIBE` and `SSUBSCRIBE` relayed
//! in RESP2 and RESP3, and the session back on shared connections after each; `INFO`,
//! `CONFIG` and `CLUSTER` answered as by one Redis without cluster support; a transaction
//! run as the client's own ACL user.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::cluster::Cluster;
use common::{eventually, read_until_hit, Proxy, RawConn, With as _};
use nearcache::cluster::slot::key_slot;

/// How long an invalidation, a subscription or a blocked client may take to be seen.
const CONVERGE: Duration = Duration::from_secs(10);
const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
const EXECABORT: &[u8] = b"-EXECABORT Transaction discarded because of previous errors.\r\n";

fn bulk(v: &str) -> Bytes {
    Bytes::from(format!("${}\r\n{v}\r\n", v.len()))
}

async fn proxy(cluster: &Cluster) -> Proxy {
    let seeds = cluster.addrs()[..2].join(",");
    let config = Proxy::config(&seeds)
        .with("cluster", "true")
        .with("client_auth", "none")
        .with("admin_listen", "127.0.0.1:0");
    Proxy::start_config(config).await
}

async fn on(addr: &str, args: &[&str]) -> Bytes {
    RawConn::connect(addr).await.cmd(args).await
}

fn owner(cluster: &Cluster, key: &str) -> String {
    cluster.owner_of_slot(key_slot(key.as_bytes()))
}

/// One hash tag per master (`{t0}`, ... as found), so that `{tN}a` and `{tN}b` share a slot.
fn tags(cluster: &Cluster) -> Vec<String> {
    let mut found: Vec<(String, String)> = Vec::new();
    for i in 0.. {
        let tag = format!("{{t{i}}}");
        let node = owner(cluster, &tag);
        if !found.iter().any(|(_, n)| *n == node) {
            found.push((tag, node));
        }
        if found.len() == 3 {
            break;
        }
    }
    found.into_iter().map(|(t, _)| t).collect()
}

/// A connection to the proxy speaking `proto`.
async fn client(proxy: &Proxy, proto: &str) -> RawConn {
    let mut c = RawConn::connect(&proxy.addr()).await;
    let hello = c.cmd(&["HELLO", proto]).await;
    assert!(!hello.starts_with(b"-"), "HELLO {proto}: {hello:?}");
    c
}

/// Waits until no session holds a node's connection of its own: every one taken was given
/// back, counted once.
async fn none_pinned(proxy: &Proxy) {
    let admin = proxy.admin.expect("an admin port");
    eventually(CONVERGE, "no session pinned", async || {
        common::metric(admin, "nearcache_pinned_sessions").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_run_on_the_master_of_their_slot() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let tags = tags(&cluster);
    let mut other = client(&proxy, "2").await;
    for proto in ["2", "3"] {
        let mut c = client(&proxy, proto).await;
        let (null_array, null): (&[u8], &str) = if proto == "3" {
            (b"_\r\n", "_\r\n")
        } else {
            (b"*-1\r\n", "$-1\r\n")
        };
        for tag in &tags {
            // Held MULTI and PING, sent to the node of the first key; the node ran them.
            let (a, b) = (format!("{tag}a:{proto}"), format!("{tag}b:{proto}"));
            let (a, b) = (a.as_str(), b.as_str());
            let replies = c
                .pipeline(&[
                    vec!["MULTI"],
                    vec!["PING"],
                    vec!["SET", a, "1"],
                    vec!["INCR", a],
                    vec!["SET", b, "x"],
                    vec!["EXEC"],
                ])
                .await;
            assert_eq!(&replies[0][..], b"+OK\r\n", "{tag} RESP{proto}");
            for queued in &replies[1..5] {
                assert_eq!(&queued[..], b"+QUEUED\r\n", "{tag} RESP{proto}");
            }
            assert_eq!(&replies[5][..], b"*4\r\n+PONG\r\n+OK\r\n:2\r\n+OK\r\n");
            assert_eq!(on(&owner(&cluster, a), &["GET", a]).await, bulk("2"));
            assert_eq!(on(&owner(&cluster, b), &["GET", b]).await, bulk("x"));
        }
        let (t0, t1) = (&tags[0], &tags[1]);
        let (k, far) = (format!("{t0}k:{proto}"), format!("{t1}k:{proto}"));
        let (k, far) = (k.as_str(), far.as_str());
        // One command at a time, as a client that waits for each reply does.
        assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n");
        assert_eq!(&c.cmd(&["SET", k, "v"]).await[..], b"+QUEUED\r\n");
        assert_eq!(&c.cmd(&["GET", k]).await[..], b"+QUEUED\r\n");
        assert_eq!(
            c.cmd(&["EXEC"]).await,
            format!("*2\r\n+OK\r\n{}", bulk_str("v"))
        );

        // No key at all: any master runs it.
        let replies = c
            .pipeline(&[vec!["MULTI"], vec!["PING", "hi"], vec!["EXEC"]])
            .await;
        assert_eq!(replies[2], format!("*1\r\n{}", bulk_str("hi")));
        // DISCARD before and after the node is known: nothing runs.
        for queued in [&["PING"][..], &["SET", k, "discarded"]] {
            assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n");
            assert_eq!(&c.cmd(queued).await[..], b"+QUEUED\r\n");
            assert_eq!(&c.cmd(&["DISCARD"]).await[..], b"+OK\r\n");
        }
        assert_eq!(c.cmd(&["GET", k]).await, bulk("v"));
        assert_eq!(&c.cmd(&["MULTI"]).await[..], b"+OK\r\n");
        assert_eq!(
            &c.cmd(&["MULTI"]).await[..],
            b"-ERR MULTI calls can not be nested\r\n"
        );
        assert_eq!(&c.cmd(&["DISCARD"]).await[..], b"+OK\r\n");
        assert_eq!(&c.cmd(&["EXEC"]).await[..], b"-ERR EXEC without MULTI\r\n");
        // SELECT n inside MULTI: Redis Cluster's refusal, and the transaction doomed.
        let replies = c
            .pipeline(&[
                vec!["MULTI"],
                vec!["SELECT", "1"],
                vec!["SET", k, "doomed"],
                vec!["EXEC"],
            ])
            .await;
        assert_eq!(
            &replies[1][..],
            b"-ERR SELECT is not allowed in cluster mode\r\n"
        );
        assert_eq!(&replies[3][..], EXECABORT);

        // A command of another slot, on the node or before it is known, dooms the transaction.
        let replies = c
            .pipeline(&[
                vec!["MULTI"],
                vec!["SET", k, "doomed"],
                vec!["SET", far, "doomed"],
                vec!["EXEC"],
            ])
            .await;
        assert_eq!(&replies[2][..], CROSSSLOT);
        assert_eq!(&replies[3][..], EXECABORT);
        let replies = c
            .pipeline(&[
                vec!["MULTI"],
                vec!["MGET", k, far],
                vec!["SET", k, "doomed"],
                vec!["EXEC"],
            ])
            .await;
        assert_eq!(&replies[1][..], CROSSSLOT);
        assert_eq!(&replies[3][..], EXECABORT);
        assert_eq!(c.cmd(&["GET", k]).await, bulk("v"));
        assert_eq!(c.cmd(&["GET", far]).await, null);

        // WATCH: a write by another client in between aborts; none commits.
        assert_eq!(&c.cmd(&["WATCH", k]).await[..], b"+OK\r\n");
        assert_eq!(&c.cmd(&["WATCH", far]).await[..], CROSSSLOT);
        assert_eq!(&other.cmd(&["SET", k, "theirs"]).await[..], b"+OK\r\n");
        let replies = c
            .pipeline(&[vec!["MULTI"], vec!["SET", k, "mine"], vec!["EXEC"]])
            .await;
        assert_eq!(&replies[2][..], null_array, "RESP{proto}");
        assert_eq!(c.cmd(&["GET", k]).await, bulk("theirs"));
        assert_eq!(&c.cmd(&["WATCH", k]).await[..], b"+OK\r\n");
        let replies = c
            .pipeline(&[vec!["MULTI"], vec!["APPEND", k, "+"], vec!["EXEC"]])
            .await;
        assert_eq!(&replies[2][..], b"*1\r\n:7\r\n");
        assert_eq!(&c.cmd(&["WATCH", k]).await[..], b"+OK\r\n");
        assert_eq!(&c.cmd(&["UNWATCH"]).await[..], b"+OK\r\n");
        // A WATCH of nothing keeps no node: a key of another slot is served after it.
        assert_eq!(
            &c.cmd(&["WATCH"]).await[..],
            b"-ERR wrong number of arguments for 'watch' command\r\n"
        );
        assert_eq!(c.cmd(&["GET", far]).await, null);
        // RESET ends the transaction on its node: nothing queued runs.
        let replies = c
            .pipeline(&[vec!["MULTI"], vec!["SET", k, "reset"], vec!["RESET"]])
            .await;
        assert_eq!(&replies[2][..], b"+RESET\r\n");
        assert_eq!(&c.cmd(&["EXEC"]).await[..], b"-ERR EXEC without MULTI\r\n");
        if proto == "3" {
            c.hello3().await;
        }
        assert_eq!(c.cmd(&["GET", k]).await, bulk("theirs+"));

        // A cached key written inside EXEC reads back new, here and for another client.
        assert_eq!(&c.cmd(&["SET", k, "old"]).await[..], b"+OK\r\n");
        read_until_hit(&mut c, k, "old", CONVERGE).await;
        read_until_hit(&mut other, k, "old", CONVERGE).await;
        let replies = c
            .pipeline(&[
                vec!["MULTI"],
                vec!["SET", k, "new"],
                vec!["EXEC"],
                vec!["GET", k],
            ])
            .await;
        assert_eq!(&replies[2][..], b"*1\r\n+OK\r\n");
        assert_eq!(replies[3], bulk("new"));
        assert_eq!(other.cmd(&["GET", k]).await, bulk("new"));
        // Back on shared connections: reads are cached again, splits work.
        read_until_hit(&mut c, k, "new", CONVERGE).await;
        let mget = c.cmd(&["MGET", k, far]).await;
        assert_eq!(mget, format!("*2\r\n{}{null}", bulk_str("new")));
    }
    none_pinned(&proxy).await;
    proxy.shutdown().await;
}

fn bulk_str(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

/// `blocked_clients` of the node at `addr`.
async fn blocked(addr: &str) -> u64 {
    let info = on(addr, &["INFO", "clients"]).await;
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("blocked_clients in INFO")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_and_subscriptions_hold_a_node_s_connection() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let tags = tags(&cluster);
    let mut other = client(&proxy, "2").await;
    for proto in ["2", "3"] {
        let push = if proto == "3" { '>' } else { '*' };
        let mut c = client(&proxy, proto).await;
        for tag in &tags {
            // BLPOP waits on the key's master until another client pushes.
            let list = format!("{tag}list:{proto}");
            let node = owner(&cluster, &list);
            c.send(&["BLPOP", &list, "0"]).await;
            eventually(CONVERGE, "BLPOP blocked on its node", async || {
                blocked(&node).await == 1
            })
            .await;
            let admin = proxy.admin.expect("an admin port");
            assert_eq!(
                common::metric(admin, "nearcache_pinned_sessions").await,
                1.0
            );
            assert_eq!(&other.cmd(&["RPUSH", &list, "v"]).await[..], b":1\r\n");
            let popped = format!("*2\r\n{}{}", bulk_str(&list), bulk_str("v"));
            assert_eq!(c.read_raw().await, popped);
            assert_eq!(blocked(&node).await, 0);
        }
        // XREAD BLOCK too, on the stream's master.
        let stream = format!("{}stream:{proto}", tags[2]);
        let node = owner(&cluster, &stream);
        c.send(&["XREAD", "BLOCK", "0", "STREAMS", &stream, "$"])
            .await;
        eventually(CONVERGE, "XREAD blocked on its node", async || {
            blocked(&node).await == 1
        })
        .await;
        let id = other.cmd(&["XADD", &stream, "*", "f", "v"]).await;
        assert!(id.starts_with(b"$"), "XADD: {id:?}");
        let read = c.read_raw().await;
        assert!(
            read.windows(id.len()).any(|w| w == &id[..]),
            "XREAD: {read:?} lacks {id:?}"
        );
        let (a, b) = (format!("{}x", tags[0]), format!("{}x", tags[1]));
        let (a, b) = (a.as_str(), b.as_str());
        assert_eq!(&c.cmd(&["BLPOP", a, b, "1"]).await[..], CROSSSLOT);
        let blmove = ["BLMOVE", a, b, "LEFT", "RIGHT", "1"];
        assert_eq!(&c.cmd(&blmove).await[..], CROSSSLOT);
        assert_eq!(&c.cmd(&["SET", a, "after"]).await[..], b"+OK\r\n");
        assert_eq!(c.cmd(&["GET", a]).await, bulk("after"));

        // SUBSCRIBE on one master gets what is published on any node.
        let ch = format!("ch:{proto}");
        let confirm = format!("{push}3\r\n$9\r\nsubscribe\r\n{}:1\r\n", bulk_str(&ch));
        assert_eq!(c.cmd(&["SUBSCRIBE", &ch]).await, confirm);
        assert_eq!(&other.cmd(&["PUBLISH", &ch, "one"]).await[..], b":1\r\n");
        let message = |m: &str| {
            format!(
                "{push}3\r\n$7\r\nmessage\r\n{}{}",
                bulk_str(&ch),
                bulk_str(m)
            )
        };
        assert_eq!(c.read_raw().await, message("one"));
        for node in cluster.addrs() {
            on(&node, &["PUBLISH", &ch, "two"]).await;
            assert_eq!(c.read_raw().await, message("two"), "published on {node}");
        }
        let bye = format!("{push}3\r\n$11\r\nunsubscribe\r\n{}:0\r\n", bulk_str(&ch));
        assert_eq!(c.cmd(&["UNSUBSCRIBE"]).await, bye);
        assert_eq!(c.cmd(&["GET", a]).await, bulk("after"));

        // SSUBSCRIBE on the master of the shard channel's slot.
        for tag in &tags {
            let sch = format!("{tag}sch:{proto}");
            let confirm = format!("{push}3\r\n$10\r\nssubscribe\r\n{}:1\r\n", bulk_str(&sch));
            assert_eq!(c.cmd(&["SSUBSCRIBE", &sch]).await, confirm);
            assert_eq!(&other.cmd(&["SPUBLISH", &sch, "s"]).await[..], b":1\r\n");
            let smessage = format!(
                "{push}3\r\n$8\r\nsmessage\r\n{}{}",
                bulk_str(&sch),
                bulk_str("s")
            );
            assert_eq!(c.read_raw().await, smessage);
            let bye = format!("{push}3\r\n$12\r\nsunsubscribe\r\n{}:0\r\n", bulk_str(&sch));
            // Without channels: the session leaves the node only once subscribed to nothing.
            assert_eq!(c.cmd(&["SUNSUBSCRIBE"]).await, bye);
            assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
        }
        let (s1, s2) = (format!("{}s", tags[0]), format!("{}s", tags[1]));
        assert_eq!(&c.cmd(&["SSUBSCRIBE", &s1, &s2]).await[..], CROSSSLOT);
        assert_eq!(c.cmd(&["GET", a]).await, bulk("after"));
    }
    none_pinned(&proxy).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_config_cluster_and_an_acl_user_s_transaction() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let masters: Vec<String> = cluster.masters().into_iter().map(|(a, _)| a).collect();
    for proto in ["2", "3"] {
        let mut c = client(&proxy, proto).await;
        let info = String::from_utf8_lossy(&c.cmd(&["INFO"]).await).into_owned();
        assert!(info.contains("cluster_enabled:0\r\n"), "{info}");
        assert!(info.contains("redis_version:"), "{info}");
        for sub in ["SLOTS", "SHARDS", "NODES", "INFO"] {
            assert_eq!(
                &c.cmd(&["CLUSTER", sub]).await[..],
                b"-ERR This instance has cluster support disabled\r\n",
                "CLUSTER {sub}"
            );
        }
        assert_eq!(
            &c.cmd(&["CLUSTER", "KEYSLOT", "foo"]).await[..],
            b":12182\r\n"
        );
        // CONFIG SET reaches every master; CONFIG GET reads the first.
        let value = if proto == "2" {
            "allkeys-lru"
        } else {
            "noeviction"
        };
        assert_eq!(
            &c.cmd(&["CONFIG", "SET", "maxmemory-policy", value]).await[..],
            b"+OK\r\n"
        );
        for m in &masters {
            let got = on(m, &["CONFIG", "GET", "maxmemory-policy"]).await;
            assert!(got.ends_with(&bulk(value)), "{m}: {got:?}");
        }
        let got = c.cmd(&["CONFIG", "GET", "maxmemory-policy"]).await;
        assert!(got.ends_with(&bulk(value)), "{got:?}");
    }
    proxy.shutdown().await;

    // `client_auth = passthrough`: a transaction runs as the client's ACL user on its node.
    for node in cluster.addrs() {
        let acl = [
            "ACL",
            "SETUSER",
            "alice",
            "on",
            ">apw",
            "~a:*",
            "+@transaction",
            "+set",
        ];
        assert_eq!(&on(&node, &acl).await[..], b"+OK\r\n", "{node}");
    }
    let seeds = cluster.addrs()[..2].join(",");
    let proxy = Proxy::start_config(Proxy::config(&seeds).with("cluster", "true")).await;
    let mut alice = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&alice.cmd(&["AUTH", "alice", "apw"]).await[..], b"+OK\r\n");
    let replies = alice
        .pipeline(&[vec!["MULTI"], vec!["SET", "a:1", "alice"], vec!["EXEC"]])
        .await;
    assert_eq!(&replies[2][..], b"*1\r\n+OK\r\n");
    assert_eq!(
        on(&owner(&cluster, "a:1"), &["GET", "a:1"]).await,
        bulk("alice")
    );
    let replies = alice
        .pipeline(&[vec!["MULTI"], vec!["SET", "b:1", "alice"], vec!["EXEC"]])
        .await;
    assert!(replies[1].starts_with(b"-NOPERM"), "{:?}", replies[1]);
    assert_eq!(&replies[2][..], EXECABORT);
    proxy.shutdown().await;
}

/// A slot that moves while a transaction holds its node's connection: the node's `MOVED`
/// reaches the client, never followed, and `EXEC` discards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_under_a_transaction_is_the_client_s_error() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let mut c = client(&proxy, "2").await;
    assert_eq!(&c.cmd(&["SET", "mv", "1"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["WATCH", "mv"]).await[..], b"+OK\r\n");

    let slot = key_slot(b"mv").to_string();
    let masters = cluster.masters();
    let src = owner(&cluster, "mv");
    let src_id = &masters.iter().find(|(a, _)| *a == src).unwrap().1;
    let (dest, dest_id) = masters.iter().find(|(a, _)| *a != src).unwrap();
    let ok = |b: Bytes| assert_eq!(&b[..], b"+OK\r\n", "{b:?}");
    ok(on(dest, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", src_id]).await);
    ok(on(&src, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", dest_id]).await);
    let (host, port) = dest.rsplit_once(':').unwrap();
    let migrate = ["MIGRATE", host, port, "", "0", "5000", "KEYS", "mv"];
    ok(on(&src, &migrate).await);
    for (addr, _) in &masters {
        ok(on(addr, &["CLUSTER", "SETSLOT", &slot, "NODE", dest_id]).await);
    }

    let replies = c
        .pipeline(&[vec!["MULTI"], vec!["SET", "mv", "2"], vec!["EXEC"]])
        .await;
    assert_eq!(&replies[0][..], b"+OK\r\n");
    let moved = format!("-MOVED {slot} {dest}\r\n");
    assert_eq!(replies[1], moved);
    assert_eq!(&replies[2][..], EXECABORT);
    // Back on shared connections, where MOVED is followed.
    assert_eq!(c.cmd(&["GET", "mv"]).await, bulk("1"));
    assert_eq!(on(dest, &["GET", "mv"]).await, bulk("1"));
    proxy.shutdown().await;
}
