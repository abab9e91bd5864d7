//! The proxy in front of a real Redis Cluster (`cluster = true`), with a real cluster of 3
//! masters with a replica each (`common::cluster`): reads and writes on every master in RESP2
//! and RESP3, cached reads protected by each node's tracking, split and fanned-out commands
//! equal to per-key answers, Redis Cluster's refusals, and a slot migrated under the proxy
//! followed with no error and no stale value.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::cluster::Cluster;
use common::{cache_hits as hits, eventually, read_until_hit, Proxy, RawConn, With as _};
use nearcache::cluster::slot::key_slot;
use resp::Frame;

/// How long an invalidation or a redirect may take to be seen.
const CONVERGE: Duration = Duration::from_secs(10);

fn bulk(v: &str) -> Bytes {
    Bytes::from(format!("${}\r\n{v}\r\n", v.len()))
}

/// The proxy in cluster mode, seeded with two of the nodes.
async fn proxy(cluster: &Cluster) -> Proxy {
    Proxy::start_config(config(cluster)).await
}

fn config(cluster: &Cluster) -> nearcache::Config {
    let seeds = cluster.addrs()[..2].join(",");
    Proxy::config(&seeds)
        .with("cluster", "true")
        .with("client_auth", "none")
}

/// The master serving `key`'s slot, by the cluster's own `CLUSTER SLOTS`.
fn owner(cluster: &Cluster, key: &str) -> String {
    cluster.owner_of_slot(key_slot(key.as_bytes()))
}

async fn on(addr: &str, args: &[&str]) -> Bytes {
    RawConn::connect(addr).await.cmd(args).await
}

/// 30 keys, which land on all three masters.
fn keys(cluster: &Cluster) -> Vec<String> {
    let keys: Vec<String> = (0..30).map(|i| format!("key:{i}")).collect();
    let mut owners: Vec<String> = keys.iter().map(|k| owner(cluster, k)).collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners.len(), 3, "keys on all three masters");
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_and_invalidations_on_every_master() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let keys = keys(&cluster);
    for proto in ["2", "3"] {
        let mut c = RawConn::connect(&proxy.addr()).await;
        let hello = c.cmd(&["HELLO", proto]).await;
        assert!(!hello.starts_with(b"-"), "HELLO {proto}: {hello:?}");
        for k in &keys {
            let v = format!("{k}-{proto}");
            assert_eq!(&c.cmd(&["SET", k, &v]).await[..], b"+OK\r\n");
            assert_eq!(c.cmd(&["GET", k]).await, bulk(&v), "RESP{proto} {k}");
            // Cached now: the next read is a hit, answered the same.
            read_until_hit(&mut c, k, &v, CONVERGE).await;
        }
        // A write straight to the owner reaches the proxy through that node's tracking.
        for k in &keys {
            let node = owner(&cluster, k);
            let v = format!("direct-{k}-{proto}");
            assert_eq!(&on(&node, &["SET", k, &v]).await[..], b"+OK\r\n");
            eventually(CONVERGE, "the node's invalidation", async || {
                c.cmd(&["GET", k]).await == bulk(&v)
            })
            .await;
            read_until_hit(&mut c, k, &v, CONVERGE).await;
        }
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_and_keyless_commands_span_the_masters() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let keys = keys(&cluster);
    let mut c = RawConn::connect(&proxy.addr()).await;
    let set: Vec<String> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .flat_map(|(i, k)| [k.clone(), format!("v{i}")])
        .collect();
    let mut mset = vec!["MSET".to_string()];
    mset.extend(set);
    assert_eq!(&c.cmd(&mset).await[..], b"+OK\r\n");

    let mut asked = keys.clone();
    asked.extend(["key:3", "{key:3}x", "missing"].map(String::from));
    let mut mget = vec!["MGET".to_string()];
    mget.extend(asked.iter().cloned());
    let mut want = format!("*{}\r\n", asked.len()).into_bytes();
    let mut present = 0;
    for k in &asked {
        let one = c.cmd(&["GET", k]).await;
        present += usize::from(!one.starts_with(b"$-1"));
        want.extend_from_slice(&one);
    }
    assert_eq!(&c.cmd(&mget).await[..], &want[..], "MGET = each GET");
    let mut exists = vec!["EXISTS".to_string()];
    exists.extend(asked.iter().cloned());
    let count = Bytes::from(format!(":{present}\r\n"));
    assert_eq!(c.cmd(&exists).await, count, "EXISTS counts repeats");
    let dbsize: usize = cluster
        .masters()
        .iter()
        .map(|(a, _)| {
            let r = common::redis_cmd_blocking(a, &[b"DBSIZE"]);
            String::from_utf8_lossy(&r[1..r.len() - 2])
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        c.cmd(&["DBSIZE"]).await,
        Bytes::from(format!(":{dbsize}\r\n")),
        "DBSIZE summed over the masters"
    );
    let mut del = vec!["DEL".to_string()];
    del.extend(keys.iter().cloned());
    let deleted = Bytes::from(format!(":{}\r\n", keys.len() * 2 / 3));
    assert_eq!(c.cmd(&del).await, deleted);
    for k in &keys {
        assert_eq!(&c.cmd(&["GET", k]).await[..], b"$-1\r\n", "{k} deleted");
    }

    let crossslot = c.cmd(&["SUNIONSTORE", "a", "b", "c"]).await;
    assert_eq!(
        &crossslot[..],
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        &c.cmd(&["SELECT", "1"]).await[..],
        b"-ERR SELECT is not allowed in cluster mode\r\n"
    );
    assert_eq!(&c.cmd(&["SELECT", "0"]).await[..], b"+OK\r\n");
    assert_eq!(&c.cmd(&["PING"]).await[..], b"+PONG\r\n");
    for refused in [&["MONITOR"][..], &["CLIENT", "TRACKING", "on"]] {
        let r = c.cmd(refused).await;
        assert!(
            r.starts_with(b"-ERR ") && String::from_utf8_lossy(&r).contains("cluster mode yet"),
            "{refused:?}: {r:?}"
        );
    }
    // A pipeline over several nodes: each command sees the ones before it, replies in order.
    let a = &keys[1];
    let b = keys
        .iter()
        .find(|k| owner(&cluster, k) != owner(&cluster, a))
        .unwrap();
    let replies = c
        .pipeline(&[
            vec!["SET", a, "p1"],
            vec!["SET", b, "p2"],
            vec!["MGET", a, b],
            vec!["DEL", a, b],
            vec!["GET", a],
            vec!["SET", b, "p3"],
            vec!["EXISTS", a, b],
            vec!["GET", b],
        ])
        .await;
    let want: Vec<&[u8]> = vec![
        b"+OK\r\n",
        b"+OK\r\n",
        b"*2\r\n$2\r\np1\r\n$2\r\np2\r\n",
        b":2\r\n",
        b"$-1\r\n",
        b"+OK\r\n",
        b":1\r\n",
        b"$2\r\np3\r\n",
    ];
    let got: Vec<&[u8]> = replies.iter().map(|r| &r[..]).collect();
    assert_eq!(got, want);

    let info = c.cmd(&["NEARCACHE", "INFO"]).await;
    let info = String::from_utf8_lossy(&info);
    assert!(info.contains("cluster_masters:3\r\n"), "{info}");
    assert!(info.contains("cluster_slots_unserved:0\r\n"), "{info}");
    for (addr, _) in cluster.masters() {
        assert!(
            info.contains(&format!("addr={addr},slots=")),
            "{addr}: {info}"
        );
    }
    // The session still works after the refusals.
    assert_eq!(&c.cmd(&["SET", "after", "1"]).await[..], b"+OK\r\n");
    assert_eq!(c.cmd(&["GET", "after"]).await, bulk("1"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_redis_client_works_through_the_proxy() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let keys = keys(&cluster);
    for protocol in [redis::ProtocolVersion::RESP2, redis::ProtocolVersion::RESP3] {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp("127.0.0.1".into(), proxy.addr.port()),
            redis: redis::RedisConnectionInfo {
                protocol,
                ..Default::default()
            },
        };
        let client = redis::Client::open(info).unwrap();
        let mut rc = client.get_multiplexed_async_connection().await.unwrap();
        for k in &keys {
            let v = format!("{k}-{protocol:?}");
            let _: () = redis::cmd("SET")
                .arg(k)
                .arg(&v)
                .query_async(&mut rc)
                .await
                .unwrap();
            let got: String = redis::cmd("GET").arg(k).query_async(&mut rc).await.unwrap();
            assert_eq!(got, v);
        }
        let got: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut rc)
            .await
            .unwrap();
        let want: Vec<Option<String>> = keys
            .iter()
            .map(|k| Some(format!("{k}-{protocol:?}")))
            .collect();
        assert_eq!(got, want);
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_under_the_proxy_is_followed() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&c.cmd(&["SET", "foo", "bar"]).await[..], b"+OK\r\n");
    read_until_hit(&mut c, "foo", "bar", CONVERGE).await;

    // Keys of other slots, cached: one on the slot's owner (dropped with what that node
    // filled when the slot moves away) and one on another master (kept).
    let src_addr = owner(&cluster, "foo");
    let find = |on_src: bool| {
        (0..)
            .map(|i| format!("bystander:{i}"))
            .find(|k| (owner(&cluster, k) == src_addr) == on_src)
            .unwrap()
    };
    let (near, far) = (find(true), find(false));
    for k in [&near, &far] {
        assert_eq!(&c.cmd(&["SET", k, "b"]).await[..], b"+OK\r\n");
        read_until_hit(&mut c, k, "b", CONVERGE).await;
    }
    assert_eq!(common::info_u64(&mut c, "cache_entries").await, 3);

    let slot = key_slot(b"foo").to_string();
    let masters = cluster.masters();
    let src_id = &masters.iter().find(|(a, _)| *a == src_addr).unwrap().1;
    let (dest_addr, dest_id) = masters.iter().find(|(a, _)| *a != src_addr).unwrap();
    let ok = |b: Bytes| assert_eq!(&b[..], b"+OK\r\n", "{b:?}");
    ok(on(
        dest_addr,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", src_id],
    )
    .await);
    ok(on(
        &src_addr,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", dest_id],
    )
    .await);
    // A key of the slot not on the source: ASK, followed with ASKING on the target.
    assert_eq!(&c.cmd(&["GET", "{foo}new"]).await[..], b"$-1\r\n");
    assert_eq!(&c.cmd(&["SET", "{foo}new", "n"]).await[..], b"+OK\r\n");
    assert_eq!(on(dest_addr, &["ASKING"]).await[..], b"+OK\r\n"[..]);
    assert_eq!(
        c.cmd(&["GET", "foo"]).await,
        bulk("bar"),
        "still on the source"
    );
    // Keys of one slot split between the two nodes: TRYAGAIN, retried, then the client's.
    for read in [
        &["MGET", "foo", "{foo}new"][..],
        &["EXISTS", "foo", "{foo}new"],
    ] {
        let r = c.cmd(read).await;
        assert!(r.starts_with(b"-TRYAGAIN"), "{read:?}: {r:?}");
    }

    let (host, port) = dest_addr.rsplit_once(':').unwrap();
    ok(on(
        &src_addr,
        &["MIGRATE", host, port, "", "0", "5000", "KEYS", "foo"],
    )
    .await);
    for (addr, _) in &masters {
        ok(on(addr, &["CLUSTER", "SETSLOT", &slot, "NODE", dest_id]).await);
    }
    // The proxy's map still says the source: MOVED, followed, the map patched, what the
    // source filled dropped before the new owner answers.
    assert_eq!(c.cmd(&["GET", "foo"]).await, bulk("bar"));
    assert_eq!(
        common::info_u64(&mut c, "cache_entries").await,
        1,
        "only the other master's entry left"
    );
    let before = hits(&mut c).await;
    assert_eq!(c.cmd(&["GET", &far]).await, bulk("b"));
    assert_eq!(hits(&mut c).await, before + 1, "{far} still cached");
    assert_eq!(c.cmd(&["GET", &near]).await, bulk("b"));
    assert_eq!(hits(&mut c).await, before + 1, "{near} was dropped");
    assert_eq!(c.cmd(&["GET", "{foo}new"]).await, bulk("n"));
    // The new owner protects what the proxy caches now.
    ok(on(dest_addr, &["SET", "foo", "baz"]).await);
    eventually(CONVERGE, "the new owner's invalidation", async || {
        c.cmd(&["GET", "foo"]).await == bulk("baz")
    })
    .await;
    for _ in 0..3 {
        assert_eq!(c.cmd(&["GET", "foo"]).await, bulk("baz"), "no stale value");
    }
    ok(c.cmd(&["SET", "foo", "qux"]).await);
    assert_eq!(on(dest_addr, &["GET", "foo"]).await, bulk("qux"));
    assert_eq!(c.cmd(&["GET", "foo"]).await, bulk("qux"));
    proxy.shutdown().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_drops_its_entries_and_its_replica_takes_over() {
    let mut cluster = Cluster::start();
    let proxy = Proxy::start_config(config(&cluster).with("admin_listen", "127.0.0.1:0")).await;
    let admin = proxy.admin.unwrap();
    let keys = keys(&cluster);
    eventually(CONVERGE, "ready", async || {
        common::http_get(admin, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    for k in &keys {
        assert_eq!(&c.cmd(&["SET", k, k]).await[..], b"+OK\r\n");
        assert_eq!(c.cmd(&["GET", k]).await, bulk(k));
    }
    assert!(
        common::info_u64(&mut c, "cache_entries").await > 0,
        "entries cached"
    );
    // Every write reached each master's replica before the master dies.
    for (addr, _) in cluster.masters() {
        let acked = on(&addr, &["WAIT", "1", "5000"]).await;
        assert_eq!(&acked[..], b":1\r\n", "{addr} replicated");
    }
    let victim = owner(&cluster, &keys[0]);
    let cached = common::info_u64(&mut c, "cache_entries").await;
    assert_eq!(cached, keys.len() as u64, "one entry per key");
    let (on_victim, elsewhere): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| owner(&cluster, k) == victim);
    let node = cluster
        .nodes
        .iter_mut()
        .find(|n| n.addr() == victim)
        .unwrap();
    node.kill();
    // Its invalidation connection is lost: what it protected is dropped, and only that.
    eventually(CONVERGE, "the killed node's entries dropped", async || {
        common::info_u64(&mut c, "cache_entries").await == elsewhere.len() as u64
    })
    .await;
    let lost = "nearcache_cache_node_drops_total{reason=\"invalidation_connection_lost\"}";
    assert!(common::metric(admin, lost).await >= 1.0);
    let flushed = "nearcache_cache_flushes_total{reason=\"invalidation_connection_lost\"}";
    assert_eq!(common::metric(admin, flushed).await, 0.0, "no whole flush");
    // The other masters' keys are still answered from the cache.
    let before = hits(&mut c).await;
    for k in &elsewhere {
        assert_eq!(c.cmd(&["GET", k]).await, bulk(k));
    }
    assert_eq!(hits(&mut c).await, before + elsewhere.len() as u64);
    assert!(!on_victim.is_empty());
    eventually(CONVERGE, "not ready, naming the node", async || {
        let body = common::http_get(admin, "/readyz").await;
        body.starts_with("HTTP/1.1 503") && body.contains(&victim)
    })
    .await;
    // Its replica is promoted; the proxy learns it and serves its slots again, with the value
    // the new master has.
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(40),
        "the failover followed",
        async || c.cmd(&["GET", &keys[0]]).await == bulk(&keys[0]),
    )
    .await;
    eprintln!(
        "recovered {:?} after the kill was seen (cluster-node-timeout 5s)",
        started.elapsed()
    );
    for k in &keys {
        assert_eq!(c.cmd(&["GET", k]).await, bulk(k), "{k} after the failover");
    }
    // The dead node's pool is closed once the map no longer has it: ready again.
    eventually(CONVERGE, "ready again", async || {
        common::http_get(admin, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stay_current_while_slots_are_resharded() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let view = common::cluster::slots_view(&cluster.addrs()[0]);
    let (start, _, (host, port, from_id), _) = view[0].clone();
    let to_id = view[1].2 .2.clone();
    let moved = start..start + 1000;
    // Keys in the slots that move, and some that stay.
    let names: Vec<String> = (0..)
        .map(|i| format!("r:{i}"))
        .filter(|k| moved.contains(&key_slot(k.as_bytes())))
        .take(12)
        .chain((0..8).map(|i| format!("stay:{i}")))
        .collect();
    let urls = cluster.urls();
    let client = redis::cluster::ClusterClient::new(urls).unwrap();
    let mut w = client.get_async_connection().await.unwrap();
    for k in &names {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(0)
            .query_async(&mut w)
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Vec<AtomicU64>> = Arc::new(names.iter().map(|_| AtomicU64::new(0)).collect());
    // The writer, straight to the cluster with a cluster-aware client.
    let writer = {
        let (stop, acked, names) = (stop.clone(), acked.clone(), names.clone());
        tokio::spawn(async move {
            let mut v = 0u64;
            while !stop.load(Ordering::Acquire) {
                v += 1;
                for (i, k) in names.iter().enumerate() {
                    let _: () = redis::cmd("SET")
                        .arg(k)
                        .arg(v)
                        .query_async(&mut w)
                        .await
                        .unwrap();
                    acked[i].store(v, Ordering::Release);
                }
            }
        })
    };
    // The reader, through the proxy: no error, and never a value older than one it saw.
    let reader = {
        let (stop, names, addr) = (stop.clone(), names.clone(), proxy.addr());
        tokio::spawn(async move {
            let mut c = RawConn::connect(&addr).await;
            let mut seen = vec![0u64; names.len()];
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) {
                for (i, k) in names.iter().enumerate() {
                    let r = c.cmd(&["GET", k]).await;
                    let text = String::from_utf8_lossy(&r);
                    let v: u64 = text
                        .lines()
                        .nth(1)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("GET {k} through the proxy: {text:?}"));
                    assert!(v >= seen[i], "GET {k}: {v} after {}", seen[i]);
                    seen[i] = v;
                    reads += 1;
                }
            }
            reads
        })
    };
    let seed = format!("{host}:{port}");
    let out = tokio::task::spawn_blocking(move || {
        let slots = "1000";
        let args = [
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &from_id,
            "--cluster-to",
            &to_id,
            "--cluster-slots",
            slots,
            "--cluster-yes",
        ];
        common::run_tool("redis-cli", &args, None, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "reshard: {}{}",
        out.stdout,
        out.stderr
    );
    let addrs = cluster.addrs();
    eventually(Duration::from_secs(30), "every node to agree", async || {
        let views: Vec<_> = addrs
            .iter()
            .map(|a| common::cluster::slots_view(a))
            .collect();
        views.iter().all(|v| *v == views[0])
    })
    .await;
    stop.store(true, Ordering::Release);
    writer.await.unwrap();
    let reads = reader.await.unwrap();
    assert!(reads > 0);
    assert_ne!(
        owner(&cluster, &names[0]),
        format!("{}:{}", view[0].2 .0, view[0].2 .1),
        "the slot moved"
    );
    // Once the writes stop, the proxy converges on the last acknowledged value of every key.
    let mut c = RawConn::connect(&proxy.addr()).await;
    for (i, k) in names.iter().enumerate() {
        let last = acked[i].load(Ordering::Acquire).to_string();
        eventually(CONVERGE, "the last write seen", async || {
            c.cmd(&["GET", k]).await == bulk(&last)
        })
        .await;
    }
    let info = c.cmd(&["NEARCACHE", "INFO"]).await;
    eprintln!(
        "{reads} reads during the reshard; {}",
        String::from_utf8_lossy(&info)
            .lines()
            .filter(|l| l.starts_with("cluster_"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    proxy.shutdown().await;
}

/// `client_auth = passthrough` (the default) over a cluster: a client logged in as an ACL user
/// acts as that user on every node, in single-slot, split and fanned-out commands alike, and
/// is never served from the cache what its user may not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_act_as_their_own_acl_user_on_every_node() {
    let cluster = Cluster::start();
    for node in cluster.addrs() {
        let ok = on(
            &node,
            &[
                "ACL", "SETUSER", "alice", "on", ">apw", "~a:*", "+get", "+set", "+mget",
            ],
        )
        .await;
        assert_eq!(&ok[..], b"+OK\r\n", "{node}");
    }
    let seeds = cluster.addrs()[..2].join(",");
    let proxy = Proxy::start_config(Proxy::config(&seeds).with("cluster", "true")).await;
    let (mine, others): (Vec<String>, Vec<String>) = (
        (0..30).map(|i| format!("a:{i}")).collect(),
        (0..30).map(|i| format!("b:{i}")).collect(),
    );
    let mut owners: Vec<String> = mine.iter().map(|k| owner(&cluster, k)).collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners.len(), 3, "alice's keys on all three masters");

    // The default user (nopass) writes and reads everything: cached as the default user.
    let mut dflt = RawConn::connect(&proxy.addr()).await;
    for k in mine.iter().chain(&others) {
        assert_eq!(
            &dflt.cmd(&["SET", k, &format!("v-{k}")]).await[..],
            b"+OK\r\n"
        );
        read_until_hit(&mut dflt, k, &format!("v-{k}"), CONVERGE).await;
    }

    let mut alice = RawConn::connect(&proxy.addr()).await;
    assert_eq!(&alice.cmd(&["AUTH", "alice", "apw"]).await[..], b"+OK\r\n");
    for k in &mine {
        assert_eq!(alice.cmd(&["GET", k]).await, bulk(&format!("v-{k}")));
    }
    for k in &others {
        let r = alice.cmd(&["GET", k]).await;
        assert!(r.starts_with(b"-NOPERM"), "alice read {k}: {r:?}");
        let r = alice.cmd(&["SET", k, "alice"]).await;
        assert!(r.starts_with(b"-NOPERM"), "alice wrote {k}: {r:?}");
    }
    // Split over the masters: alice's own keys answered, one forbidden key refuses the whole.
    let mut mget = vec!["MGET".to_string()];
    mget.extend(mine.iter().cloned());
    let mut want = format!("*{}\r\n", mine.len()).into_bytes();
    for k in &mine {
        want.extend_from_slice(&bulk(&format!("v-{k}")));
    }
    assert_eq!(&alice.cmd(&mget).await[..], &want[..]);
    mget.push(others[0].clone());
    let r = alice.cmd(&mget).await;
    assert!(
        r.starts_with(b"-NOPERM"),
        "split MGET with a forbidden key: {r:?}"
    );
    // A fan-out goes as alice too: FLUSHALL is refused on every master, and nothing is lost.
    let r = alice.cmd(&["FLUSHALL"]).await;
    assert!(r.starts_with(b"-NOPERM"), "FLUSHALL as alice: {r:?}");
    assert_eq!(&dflt.cmd(&["DBSIZE"]).await[..], b":60\r\n");
    proxy.shutdown().await;
}

/// `SCAN` through the proxy walks every master: the keys of the whole cluster, each once, with
/// `MATCH` and `COUNT` as Redis takes them; a cursor that names no master is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_walks_every_master() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    let sets: Vec<Vec<String>> = (0..300)
        .map(|i| vec!["SET".into(), format!("s:{i}"), "v".into()])
        .chain((0..50).map(|i| vec!["SET".into(), format!("other:{i}"), "v".into()]))
        .collect();
    for r in c.pipeline(&sets).await {
        assert_eq!(&r[..], b"+OK\r\n");
    }
    let scan = async |c: &mut RawConn, extra: &[&str]| {
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        loop {
            let mut args = vec!["SCAN", cursor.as_str()];
            args.extend_from_slice(extra);
            let Frame::Array(parts) = common::to_frame(&c.cmd(&args).await) else {
                panic!("SCAN {cursor}: not an array");
            };
            let (Frame::Bulk(next), Frame::Array(keys)) = (&parts[0], &parts[1]) else {
                panic!("SCAN {cursor}: {parts:?}");
            };
            for k in keys {
                let Frame::Bulk(k) = k else { panic!("{k:?}") };
                seen.push(String::from_utf8(k.to_vec()).unwrap());
            }
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                return seen;
            }
        }
    };
    let mut all = scan(&mut c, &["COUNT", "40"]).await;
    all.sort();
    let mut want: Vec<String> = sets.iter().map(|s| s[1].clone()).collect();
    want.sort();
    assert_eq!(all, want, "every key of every master, each once");
    let mut matched = scan(&mut c, &["MATCH", "other:*"]).await;
    matched.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("other:{i}")).collect();
    want.sort();
    assert_eq!(matched, want);
    assert_eq!(&c.cmd(&["SCAN", "3"]).await[..], b"-ERR invalid cursor\r\n");
    assert_eq!(&c.cmd(&["SCAN", "x"]).await[..], b"-ERR invalid cursor\r\n");
    proxy.shutdown().await;
}

/// `/metrics` with a cluster upstream: each master's pool figures labelled with its address,
/// and the unlabelled pool figures their sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_each_masters_pool() {
    let cluster = Cluster::start();
    let proxy = Proxy::start_config(config(&cluster).with("admin_listen", "127.0.0.1:0")).await;
    let mut c = RawConn::connect(&proxy.addr()).await;
    for k in keys(&cluster) {
        assert_eq!(&c.cmd(&["SET", &k, "v"]).await[..], b"+OK\r\n");
    }
    let body = common::http_get(proxy.admin.unwrap(), "/metrics").await;
    let value = |line: &str| -> f64 { line.rsplit(' ').next().unwrap().parse().unwrap() };
    let per_node = per_node(&body, "nearcache_node_pool_open_connections");
    let mut nodes: Vec<&str> = per_node.iter().map(|(n, _)| n.as_str()).collect();
    nodes.sort();
    let limits = per_node_names(&body, "nearcache_node_pool_max_open_connections");
    assert_eq!(limits, nodes, "every figure per node");
    let mut masters: Vec<String> = keys(&cluster).iter().map(|k| owner(&cluster, k)).collect();
    masters.sort();
    masters.dedup();
    assert_eq!(nodes, masters, "one figure per master:\n{body}");
    assert!(per_node.iter().all(|(_, open)| *open > 0.0), "{per_node:?}");
    let total = body
        .lines()
        .find(|l| l.starts_with("nearcache_pool_open_connections "))
        .map(value)
        .expect("the total");
    assert_eq!(total, per_node.iter().map(|(_, v)| v).sum::<f64>());
    proxy.shutdown().await;
}

/// Each `node` label's value of `metric` in a `/metrics` body.
fn per_node(body: &str, metric: &str) -> Vec<(String, f64)> {
    let prefix = format!("{metric}{{node=\"");
    body.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (node, _) = rest.split_once('"').unwrap();
            let value = rest.rsplit(' ').next().unwrap().parse().unwrap();
            (node.to_string(), value)
        })
        .collect()
}

/// The `node` labels of `metric`, sorted.
fn per_node_names(body: &str, metric: &str) -> Vec<String> {
    let mut names: Vec<String> = per_node(body, metric).into_iter().map(|(n, _)| n).collect();
    names.sort();
    names
}

/// `GET` calls the node at `addr` has served, by its `INFO commandstats`.
async fn gets_on(addr: &str) -> u64 {
    common::command_calls(&mut RawConn::connect(addr).await, "get").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_read_from_replica_misses_are_read_from_replicas_and_tracked_there() {
    let cluster = Cluster::start();
    let proxy = Proxy::start_config(
        config(&cluster)
            .with("read_from", "replica")
            .with("admin_listen", "127.0.0.1:0"),
    )
    .await;
    let keys = keys(&cluster);
    let mut c = RawConn::connect(&proxy.addr()).await;
    for k in &keys {
        assert_eq!(&c.cmd(&["SET", k, "1"]).await[..], b"+OK\r\n");
    }
    let view = cluster.wait_settled();
    let masters: Vec<String> = cluster.masters().into_iter().map(|(a, _)| a).collect();
    let replicas: Vec<String> = view
        .iter()
        .map(|(_, _, _, r)| format!("{}:{}", r[0].0, r[0].1))
        .collect();
    for m in &masters {
        assert_eq!(&on(m, &["WAIT", "1", "5000"]).await[..], b":1\r\n", "{m}");
    }
    let mut before = Vec::new();
    for a in masters.iter().chain(&replicas) {
        before.push(gets_on(a).await);
    }
    // Each key read once: a miss each, read from its slot's replica, not its master.
    for k in &keys {
        assert_eq!(c.cmd(&["GET", k]).await, bulk("1"), "{k}");
    }
    let mut after = Vec::new();
    for a in masters.iter().chain(&replicas) {
        after.push(gets_on(a).await);
    }
    assert_eq!(after[..3], before[..3], "no GET reached a master");
    let on_replicas: u64 = after[3..].iter().sum::<u64>() - before[3..].iter().sum::<u64>();
    assert_eq!(
        on_replicas,
        keys.len() as u64,
        "every miss read from a replica"
    );
    // Read again until cached (a replica's first reads may come before its tracking is up,
    // and are then not filled): still no GET on a master.
    for k in &keys {
        read_until_hit(&mut c, k, "1", CONVERGE).await;
    }
    for (m, was) in masters.iter().zip(&before) {
        assert_eq!(gets_on(m).await, *was, "no GET reached {m}");
    }
    // A write straight to a master reaches its replica, whose tracking invalidates what the
    // proxy filled from it: the new value is read, never the old one after it.
    let k = &keys[0];
    assert_eq!(
        &on(&owner(&cluster, k), &["SET", k, "2"]).await[..],
        b"+OK\r\n"
    );
    eventually(CONVERGE, "the replica's invalidation", async || {
        c.cmd(&["GET", k]).await == bulk("2")
    })
    .await;
    read_until_hit(&mut c, k, "2", CONVERGE).await;
    // A write through the proxy goes to the master, and is read back once replicated.
    assert_eq!(&c.cmd(&["SET", k, "3"]).await[..], b"+OK\r\n");
    eventually(CONVERGE, "the write read back", async || {
        c.cmd(&["GET", k]).await == bulk("3")
    })
    .await;
    read_until_hit(&mut c, k, "3", CONVERGE).await;
    // The replicas' pools have figures of their own on /metrics.
    let body = common::http_get(proxy.admin.unwrap(), "/metrics").await;
    let mut all: Vec<String> = masters.iter().chain(&replicas).cloned().collect();
    all.sort();
    assert_eq!(
        per_node_names(&body, "nearcache_node_pool_open_connections"),
        all
    );
    // A replica killed: what it filled is dropped, and its slots' reads go to their master,
    // with no error, while the map still lists it.
    let mut cluster = cluster;
    let replica = view
        .iter()
        .find(|(start, end, _, _)| (*start..=*end).contains(&key_slot(k.as_bytes())))
        .map(|(_, _, _, r)| format!("{}:{}", r[0].0, r[0].1))
        .unwrap();
    let node = cluster.nodes.iter_mut().find(|n| n.addr() == replica);
    node.unwrap().kill();
    for _ in 0..20 {
        assert_eq!(
            c.cmd(&["GET", k]).await,
            bulk("3"),
            "read with {replica} down"
        );
    }
    proxy.shutdown().await;
}

/// `MGET` calls each of `addrs` has served, by its `INFO commandstats`.
async fn mgets_on(addrs: &[String]) -> Vec<u64> {
    let mut calls = Vec::new();
    for a in addrs {
        calls.push(common::command_calls(&mut RawConn::connect(a).await, "mget").await);
    }
    calls
}

/// The RESP2 array of `values` as bulk strings.
fn bulk_array(values: &[String]) -> Bytes {
    let mut out = format!("*{}\r\n", values.len()).into_bytes();
    for v in values {
        out.extend_from_slice(&bulk(v));
    }
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mget_over_every_master_is_served_from_the_cache() {
    let cluster = Cluster::start();
    let proxy = proxy(&cluster).await;
    let keys = keys(&cluster);
    let masters: Vec<String> = cluster.masters().into_iter().map(|(a, _)| a).collect();
    let mut c = RawConn::connect(&proxy.addr()).await;
    for k in &keys {
        assert_eq!(&c.cmd(&["SET", k, k]).await[..], b"+OK\r\n");
    }
    let mut mget: Vec<&str> = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let mut want: Vec<String> = keys.clone();
    // Read until every key is a hit: one MGET counting a hit per key.
    eventually(CONVERGE, "the MGET's keys cached", async || {
        assert_eq!(c.cmd(&mget).await, bulk_array(&want));
        let before = hits(&mut c).await;
        assert_eq!(c.cmd(&mget).await, bulk_array(&want));
        hits(&mut c).await == before + keys.len() as u64
    })
    .await;
    let before = mgets_on(&masters).await;
    assert_eq!(c.cmd(&mget).await, bulk_array(&want));
    assert_eq!(mgets_on(&masters).await, before, "no MGET reached a node");
    // A key changed straight on its master: the node's tracking drops it, and the next MGET
    // fetches that key alone, from that node alone.
    let changed = &keys[0];
    let node = owner(&cluster, changed);
    assert_eq!(&on(&node, &["SET", changed, "new"]).await[..], b"+OK\r\n");
    want[0] = "new".into();
    eventually(CONVERGE, "the node's invalidation", async || {
        c.cmd(&mget).await == bulk_array(&want)
    })
    .await;
    eventually(CONVERGE, "the changed key cached again", async || {
        let before = hits(&mut c).await;
        assert_eq!(c.cmd(&mget).await, bulk_array(&want));
        hits(&mut c).await == before + keys.len() as u64
    })
    .await;
    let h = hits(&mut c).await;
    assert_eq!(&on(&node, &["SET", changed, "newer"]).await[..], b"+OK\r\n");
    want[0] = "newer".into();
    let before = mgets_on(&masters).await;
    eventually(CONVERGE, "the second invalidation", async || {
        c.cmd(&mget).await == bulk_array(&want)
    })
    .await;
    let after = mgets_on(&masters).await;
    for ((m, b), a) in masters.iter().zip(&before).zip(&after) {
        if *m == node {
            assert!(a > b, "{m} asked for the changed key");
        } else {
            assert_eq!(a, b, "{m} asked for nothing");
        }
    }
    assert!(hits(&mut c).await > h, "the other keys were hits");
    // RESP3 has entries of its own, filled and served the same way.
    assert!(!c.cmd(&["HELLO", "3"]).await.starts_with(b"-"));
    eventually(CONVERGE, "RESP3 entries cached", async || {
        let before = hits(&mut c).await;
        let r = c.cmd(&mget).await;
        assert!(r.starts_with(b"*30\r\n$5\r\nnewer\r\n"), "{r:?}");
        hits(&mut c).await == before + keys.len() as u64
    })
    .await;
    proxy.shutdown().await;
}
