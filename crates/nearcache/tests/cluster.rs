//! The cluster parts (`nearcache::cluster`) against a real Redis Cluster of 3 masters with a
//! replica each (`common::cluster`): key slots as Redis computes them, discovery as every node
//! describes the cluster, redirects applied to the map, and split commands sent to the real
//! nodes giving what a cluster-aware client (redis-rs) gets.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::cluster::{slots_view, Cluster, SlotsView};
use common::{free_port, poll_until, to_frame, RawConn};
use nearcache::cluster::discover::{discover, Source};
use nearcache::cluster::merge::merge_split;
use nearcache::cluster::parse::{parse_shards, parse_slots};
use nearcache::cluster::redirect::ClusterError;
use nearcache::cluster::slot::key_slot;
use nearcache::cluster::split::{plan, Plan, Split};
use nearcache::cluster::topology::Topology;
use nearcache::upstream::{Limits, Settings};
use resp::Frame;

fn settings() -> Settings {
    Settings {
        addr: String::new(),
        shared_conns: 1,
        connect_timeout: Duration::from_secs(5),
        upstream_timeout: None,
        username: None,
        password: None,
        tracking_health: None,
        tcp_keepalive: None,
        tls: None,
        readonly: false,
        homes: Default::default(),
        limits: Limits {
            max_open: 0,
            max_idle: 0,
            max_lifetime: None,
            max_idle_time: None,
            wait_timeout: Duration::from_secs(5),
        },
    }
}

/// A topology in the shape of [`slots_view`], replicas that are not online left out (as
/// `CLUSTER SLOTS` leaves them out).
fn view(topo: &Topology) -> SlotsView {
    let node = |n: &nearcache::cluster::topology::Node| (n.host.clone(), n.port, n.id.clone());
    topo.ranges()
        .into_iter()
        .map(|(start, end, _)| {
            let shard = topo.shard(start).expect("a shard");
            let mut replicas: Vec<_> = shard.replicas.iter().map(node).collect();
            replicas.sort();
            (start, end, node(&shard.master), replicas)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_matches_cluster_slots_from_every_node_in_both_protocols() {
    let cluster = Cluster::start();
    let settled = cluster.wait_settled();
    for addr in cluster.addrs() {
        let (topo, seed, source) = discover(std::slice::from_ref(&addr), &settings())
            .await
            .unwrap();
        assert_eq!((seed.as_str(), source), (addr.as_str(), Source::Shards));
        assert_eq!(topo.unassigned(), 0);
        assert_eq!(view(&topo), slots_view(&addr), "discovered from {addr}");
        assert_eq!(view(&topo), settled);
        // The same node's replies in RESP3, and CLUSTER SLOTS in both protocols.
        let mut conn = RawConn::connect(&addr).await;
        let slots2 = to_frame(&conn.cmd(&["CLUSTER", "SLOTS"]).await);
        conn.hello3().await;
        let shards3 = to_frame(&conn.cmd(&["CLUSTER", "SHARDS"]).await);
        let slots3 = to_frame(&conn.cmd(&["CLUSTER", "SLOTS"]).await);
        assert!(matches!(shards3, Frame::Array(ref s) if matches!(s[0], Frame::Map(_))));
        assert_eq!(view(&parse_shards(&shards3, "127.0.0.1").unwrap()), settled);
        assert_eq!(view(&parse_slots(&slots2, "127.0.0.1").unwrap()), settled);
        assert_eq!(view(&parse_slots(&slots3, "127.0.0.1").unwrap()), settled);
    }

    // An unreachable seed is skipped; with none reachable, each seed's cause is reported.
    let dead = format!("127.0.0.1:{}", free_port());
    let seeds = [dead.clone(), cluster.addrs()[1].clone()];
    let (topo, seed, _) = discover(&seeds, &settings()).await.unwrap();
    assert_eq!(seed, seeds[1]);
    assert_eq!(view(&topo), settled);
    let err = discover(&[dead.clone(), dead.clone()], &settings())
        .await
        .unwrap_err();
    assert_eq!(err.0.len(), 2);
    assert!(err.to_string().contains(&dead), "{err}");

    // A node that refuses CLUSTER SHARDS (here by ACL; older servers do not know it) is asked
    // CLUSTER SLOTS instead.
    let first = cluster.addrs()[0].clone();
    let mut conn = RawConn::connect(&first).await;
    assert_eq!(
        &conn
            .cmd(&["ACL", "SETUSER", "default", "-cluster|shards"])
            .await[..],
        b"+OK\r\n"
    );
    let refused = conn.cmd(&["CLUSTER", "SHARDS"]).await;
    assert!(refused.starts_with(b"-NOPERM"), "{refused:?}");
    let (topo, _, source) = discover(std::slice::from_ref(&first), &settings())
        .await
        .unwrap();
    assert_eq!(source, Source::Slots);
    assert_eq!(view(&topo), settled);
}

/// Deterministic pseudo-random bytes (xorshift), so that a failure names its key.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A key of 0..24 bytes, biased toward braces so that hash tags of every shape appear.
    fn key(&mut self) -> Vec<u8> {
        let len = (self.next() % 24) as usize;
        (0..len)
            .map(|_| match self.next() % 8 {
                0 => b'{',
                1 => b'}',
                2 | 3 => b'a' + (self.next() % 4) as u8,
                _ => self.next() as u8,
            })
            .collect()
    }
}

/// Sends each part of `split` to the master of its slot (the parts of one node pipelined on a
/// plain connection in protocol `proto`) and merges the replies.
async fn run_split(topo: &Topology, split: &Split, proto: u8) -> Frame {
    let mut replies: Vec<Option<Frame>> = vec![None; split.parts.len()];
    for (addr, parts) in split.by_node(topo) {
        let mut conn = RawConn::connect(&addr.expect("every slot served")).await;
        if proto == 3 {
            conn.hello3().await;
        }
        let cmds: Vec<&Vec<Bytes>> = parts.iter().map(|&i| &split.parts[i].args).collect();
        for (&i, reply) in parts.iter().zip(conn.pipeline(&cmds).await) {
            replies[i] = Some(to_frame(&reply));
        }
    }
    merge_split(split, replies.into_iter().map(Option::unwrap).collect())
}

fn split_of(args: &[Bytes]) -> Split {
    match plan(nearcache::command::lookup(&args[0]).resolve(args), args) {
        Plan::Split(s) => s,
        other => panic!("{args:?} not split: {other:?}"),
    }
}

fn line(name: &str, keys: &[String]) -> Vec<Bytes> {
    std::iter::once(name.to_string())
        .chain(keys.iter().cloned())
        .map(Bytes::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_agree_and_split_commands_match_a_cluster_client() {
    let cluster = Cluster::start();
    let addrs = cluster.addrs();

    // CLUSTER KEYSLOT on a real node, for edge cases and 2,000 random keys.
    let mut keys: Vec<Vec<u8>> = [
        "", "{", "}", "}{", "{}", "{}a", "a{}", "{a}", "a{b}c", "{{a}}",
    ]
    .iter()
    .map(|k| k.as_bytes().to_vec())
    .collect();
    keys.extend([
        b"\x00{\xff}".to_vec(),
        b"foo{}{bar}".to_vec(),
        b"foo{{bar}}zap".to_vec(),
    ]);
    let mut rng = Rng(0x9e3779b97f4a7c15);
    keys.extend((0..2000).map(|_| rng.key()));
    let mut conn = RawConn::connect(&addrs[0]).await;
    let cmds: Vec<Vec<&[u8]>> = keys
        .iter()
        .map(|k| vec![&b"CLUSTER"[..], b"KEYSLOT", k])
        .collect();
    for (key, reply) in keys.iter().zip(conn.pipeline(&cmds).await) {
        let theirs = to_frame(&reply);
        assert_eq!(theirs, Frame::Integer(key_slot(key).into()), "key {key:?}");
    }

    // Split commands over keys on every master, against redis-rs's cluster client.
    let (topo, _, _) = discover(&addrs[..1], &settings()).await.unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
    let mut asked = names.clone();
    asked.extend(["key:3", "{key:3}x", "key:0"].map(String::from)); // repeats, a shared tag
    let mget = split_of(&line("MGET", &asked));
    assert_eq!(mget.by_node(&topo).len(), 3, "keys on all three masters");
    for proto in [2u8, 3] {
        let urls: Vec<String> = addrs.iter().map(|a| format!("redis://{a}")).collect();
        let protocol = if proto == 3 {
            redis::ProtocolVersion::RESP3
        } else {
            redis::ProtocolVersion::RESP2
        };
        let client = redis::cluster::ClusterClientBuilder::new(urls)
            .use_protocol(protocol)
            .build()
            .unwrap();
        let mut rc = client.get_async_connection().await.unwrap();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut rc).await.unwrap();
        let mut set = vec![];
        for (i, k) in names.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
            set.extend([k.clone(), format!("v{i}")]);
        }
        let _: () = redis::cmd("MSET")
            .arg(&set)
            .query_async(&mut rc)
            .await
            .unwrap();

        let ours = run_split(&topo, &mget, proto).await;
        let theirs: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&asked)
            .query_async(&mut rc)
            .await
            .unwrap();
        let Frame::Array(items) = &ours else {
            panic!("MGET: {ours:?}");
        };
        let null = if proto == 3 {
            Frame::Null
        } else {
            Frame::NullBulk
        };
        let values: Vec<Option<Vec<u8>>> = items
            .iter()
            .map(|f| match f {
                Frame::Bulk(b) => Some(b.to_vec()),
                f if *f == null => None,
                other => panic!("RESP{proto} MGET element {other:?}"),
            })
            .collect();
        assert_eq!(values, theirs, "RESP{proto} MGET");

        for name in ["EXISTS", "TOUCH"] {
            let ours = run_split(&topo, &split_of(&line(name, &asked)), proto).await;
            let theirs: i64 = redis::cmd(name)
                .arg(&asked)
                .query_async(&mut rc)
                .await
                .unwrap();
            assert_eq!(ours, Frame::Integer(theirs), "RESP{proto} {name}");
        }
        for name in ["DEL", "UNLINK"] {
            let ours = run_split(&topo, &split_of(&line(name, &asked)), proto).await;
            let _: () = redis::cmd("MSET")
                .arg(&set)
                .query_async(&mut rc)
                .await
                .unwrap();
            let theirs: i64 = redis::cmd(name)
                .arg(&asked)
                .query_async(&mut rc)
                .await
                .unwrap();
            assert_eq!(ours, Frame::Integer(theirs), "RESP{proto} {name}");
            let left: i64 = redis::cmd("EXISTS")
                .arg(&names)
                .query_async(&mut rc)
                .await
                .unwrap();
            assert_eq!(left, 0);
            let _: () = redis::cmd("MSET")
                .arg(&set)
                .query_async(&mut rc)
                .await
                .unwrap();
        }

        let pairs: Vec<String> = names
            .iter()
            .flat_map(|k| [k.clone(), format!("new{k}")])
            .collect();
        let ours = run_split(&topo, &split_of(&line("MSET", &pairs)), proto).await;
        assert_eq!(ours, Frame::simple("OK"));
        let now: Vec<String> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut rc)
            .await
            .unwrap();
        let want: Vec<String> = names.iter().map(|k| format!("new{k}")).collect();
        assert_eq!(now, want, "RESP{proto} MSET");
    }
}

/// Sends one command to `addr` and returns the reply's bytes.
async fn on(addr: &str, args: &[&str]) -> Bytes {
    RawConn::connect(addr).await.cmd(args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_during_and_after_a_slot_migration_update_the_map() {
    let cluster = Cluster::start();
    let (mut topo, _, _) = discover(&cluster.addrs()[..1], &settings()).await.unwrap();
    let slot = key_slot(b"foo");
    let src = topo.master(slot).unwrap().clone();
    let dest = topo
        .shards()
        .map(|s| s.master.clone())
        .find(|m| *m != src)
        .unwrap();
    let (src_addr, dest_addr) = (src.addr(), dest.addr());
    assert_eq!(&on(&src_addr, &["SET", "foo", "bar"]).await[..], b"+OK\r\n");
    let s = slot.to_string();

    // Migrating: a key not on the source yet is ASKed to the target; a multi-key read whose
    // keys are split between the two gets TRYAGAIN.
    let ok = |b: Bytes| assert_eq!(&b[..], b"+OK\r\n", "{b:?}");
    ok(on(
        &dest_addr,
        &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src.id],
    )
    .await);
    ok(on(
        &src_addr,
        &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dest.id],
    )
    .await);
    let ask = on(&src_addr, &["GET", "{foo}missing"]).await;
    let Some(ClusterError::Ask { slot: asked, addr }) = ClusterError::from_reply(&ask) else {
        panic!("not ASK: {ask:?}");
    };
    assert_eq!((asked, addr.resolve(&src.host)), (slot, dest_addr.clone()));
    let mut target = RawConn::connect(&dest_addr).await;
    let replies = target
        .pipeline(&[vec!["ASKING"], vec!["GET", "{foo}missing"]])
        .await;
    assert_eq!(replies, [&b"+OK\r\n"[..], b"$-1\r\n"]);
    let busy = on(&src_addr, &["MGET", "foo", "{foo}missing"]).await;
    assert_eq!(
        ClusterError::from_reply(&busy),
        Some(ClusterError::TryAgain),
        "{busy:?}"
    );

    // Migrated: the old owner answers MOVED, which points the stale map at the new owner.
    let port = dest.port.to_string();
    let migrate = ["MIGRATE", &dest.host, &port, "", "0", "5000", "KEYS", "foo"];
    ok(on(&src_addr, &migrate).await);
    for addr in [&dest_addr, &src_addr] {
        ok(on(addr, &["CLUSTER", "SETSLOT", &s, "NODE", &dest.id]).await);
    }
    let moved = on(&src_addr, &["GET", "foo"]).await;
    let Some(ClusterError::Moved { slot: m, addr }) = ClusterError::from_reply(&moved) else {
        panic!("not MOVED: {moved:?}");
    };
    assert_eq!(m, slot);
    assert!(topo.apply_moved(m, &addr, &src.host));
    let routed = topo.master(slot).unwrap().addr();
    assert_eq!(routed, dest_addr);
    assert_eq!(&on(&routed, &["GET", "foo"]).await[..], b"$3\r\nbar\r\n");

    // Once every node agrees, the updated map is what discovery finds afresh.
    let agreed = poll_until(
        Duration::from_secs(30),
        "nodes to agree on the move",
        || {
            let views: Vec<SlotsView> = cluster.addrs().iter().map(|a| slots_view(a)).collect();
            views
                .iter()
                .all(|v| *v == views[0])
                .then(|| views[0].clone())
        },
    );
    let (fresh, _, _) = discover(&cluster.addrs()[..1], &settings()).await.unwrap();
    assert_eq!(fresh.ranges(), topo.ranges());
    assert_eq!(view(&fresh), agreed);

    // A slot a node no longer serves: CLUSTERDOWN.
    ok(on(&dest_addr, &["CLUSTER", "DELSLOTS", &s]).await);
    let down = on(&dest_addr, &["GET", "foo"]).await;
    assert!(
        matches!(
            ClusterError::from_reply(&down),
            Some(ClusterError::ClusterDown(_))
        ),
        "{down:?}"
    );
}
