//! A real Redis Cluster for tests: 6 `redis-server --cluster-enabled yes` on OS-chosen ports
//! (client and bus ports both picked free: the bus port is set with `--cluster-port`), joined
//! by `redis-cli --cluster create --cluster-replicas 1`: 3 masters with a replica each.
//!
//! [`Cluster::start`] returns once every node says `cluster_state:ok` and every node's
//! `CLUSTER SLOTS` is the same, with a replica listed for each master. Every server is killed on
//! drop (each is a [`RedisServer`] guard). Faults for tests to inject: [`Cluster::kill_node`]
//! (SIGKILL), [`reshard`] (`redis-cli --cluster reshard`), and [`wait_agreed`] for the nodes left
//! to settle after them.

use std::time::Duration;

use resp::Frame;

use super::{free_port, poll_until, redis_cmd_blocking, run_tool, to_frame, RedisServer};

/// How long the cluster may take to form and agree.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// One node as `CLUSTER SLOTS` lists it: host, port, id.
pub type SlotNode = (String, u16, String);

/// `CLUSTER SLOTS` read into sorted ranges: `(start, end, master, replicas sorted)`.
pub type SlotsView = Vec<(u16, u16, SlotNode, Vec<SlotNode>)>;

/// Six cluster nodes: 3 masters, 3 replicas.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<RedisServer> = (0..6).map(|_| start_node()).collect();
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(nodes.iter().map(|n| n.addr()));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_tool("redis-cli", &args, None, FORM_TIMEOUT);
        assert!(
            out.status.success() && out.stdout.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed: {}{}",
            out.stdout,
            out.stderr
        );
        let cluster = Cluster { nodes };
        cluster.wait_settled();
        cluster
    }

    /// Every node's `host:port`.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr()).collect()
    }

    /// Every node as a `redis://` URL, for redis-rs's cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.addrs()
            .iter()
            .map(|a| format!("redis://{a}"))
            .collect()
    }

    /// Waits until every node reports `cluster_state:ok` and the same `CLUSTER SLOTS`, with a
    /// replica for each of the 3 masters.
    pub fn wait_settled(&self) -> SlotsView {
        poll_until(FORM_TIMEOUT, "the cluster to agree", || {
            let ok = self.addrs().iter().all(|a| {
                let info = redis_cmd_blocking(a, &[b"CLUSTER", b"INFO"]);
                String::from_utf8_lossy(&info).contains("cluster_state:ok")
            });
            if !ok {
                return None;
            }
            let views: Vec<SlotsView> = self.addrs().iter().map(|a| slots_view(a)).collect();
            let first = views[0].clone();
            let complete = first.len() == 3 && first.iter().all(|r| r.3.len() == 1);
            (complete && views.iter().all(|v| *v == first)).then_some(first)
        })
    }

    /// SIGKILLs the node at `addr` and reaps it: no process is listening there when this returns.
    pub fn kill_node(&mut self, addr: &str) {
        let node = self.nodes.iter_mut().find(|n| n.addr() == addr);
        node.unwrap_or_else(|| panic!("no node at {addr}")).kill();
    }

    /// The address and node id of each master, in the order of their first slot.
    pub fn masters(&self) -> Vec<(String, String)> {
        slots_view(&self.nodes[0].addr())
            .into_iter()
            .map(|(_, _, (host, port, id), _)| (format!("{host}:{port}"), id))
            .collect()
    }

    /// The `host:port` of the master serving `slot`, by the cluster's own `CLUSTER SLOTS`.
    pub fn owner_of_slot(&self, slot: u16) -> String {
        slots_view(&self.nodes[0].addr())
            .into_iter()
            .find(|(start, end, _, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, (host, port, _), _)| format!("{host}:{port}"))
            .expect("every slot served")
    }
}

/// Moves `slots` slots from master `from` to master `to` (node ids) with `redis-cli --cluster
/// reshard`, asked of the node at `seed`. Blocking (run it off the async workers); panics with
/// redis-cli's output if it fails.
pub fn reshard(seed: &str, from: &str, to: &str, slots: u32) {
    let slots = slots.to_string();
    let args = [
        "--cluster",
        "reshard",
        seed,
        "--cluster-from",
        from,
        "--cluster-to",
        to,
        "--cluster-slots",
        &slots,
        "--cluster-yes",
    ];
    let out = run_tool("redis-cli", &args, None, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "redis-cli --cluster reshard: {}{}",
        out.stdout,
        out.stderr
    );
}

/// Waits until every node at `addrs` (the ones still running) says `cluster_state:ok` and they
/// all return the same `CLUSTER SLOTS`, with 3 masters covering every slot; returns it. Unlike
/// [`Cluster::wait_settled`] a master may have no replica (after a failover). Blocking.
pub fn wait_agreed(addrs: &[String], limit: Duration) -> SlotsView {
    poll_until(limit, "the nodes left to agree", || {
        let ok = addrs.iter().all(|a| {
            let info = redis_cmd_blocking(a, &[b"CLUSTER", b"INFO"]);
            String::from_utf8_lossy(&info).contains("cluster_state:ok")
        });
        if !ok {
            return None;
        }
        let views: Vec<SlotsView> = addrs.iter().map(|a| slots_view(a)).collect();
        let first = views[0].clone();
        let covered: u32 = first.iter().map(|r| u32::from(r.1 - r.0) + 1).sum();
        let mut masters: Vec<&SlotNode> = first.iter().map(|r| &r.2).collect();
        masters.sort();
        masters.dedup();
        let complete = covered == 16384 && masters.len() == 3;
        (complete && views.iter().all(|v| *v == first)).then_some(first)
    })
}

/// Starts one cluster-enabled node on free client and bus ports (retrying on a port race).
fn start_node() -> RedisServer {
    let mut errors = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        let bus = free_port();
        if bus == port {
            continue;
        }
        let bus = bus.to_string();
        let extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus,
            "--cluster-node-timeout",
            "5000",
        ];
        match RedisServer::start_on_port(port, &extra) {
            Ok(s) => return s,
            Err(e) => errors.push(e),
        }
    }
    panic!("could not start a cluster node: {errors:#?}");
}

/// `CLUSTER SLOTS` of the node at `addr`, read by the test's own code (not the proxy's parser).
pub fn slots_view(addr: &str) -> SlotsView {
    let reply = to_frame(&redis_cmd_blocking(addr, &[b"CLUSTER", b"SLOTS"]));
    let Frame::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS from {addr}: {reply:?}");
    };
    let int = |f: &Frame| match f {
        Frame::Integer(i) => *i,
        other => panic!("not an integer: {other:?}"),
    };
    let text = |f: &Frame| String::from_utf8_lossy(f.as_bytes().expect("a string")).into_owned();
    let node = |f: &Frame| match f {
        Frame::Array(n) => (text(&n[0]), int(&n[1]) as u16, text(&n[2])),
        other => panic!("not a node: {other:?}"),
    };
    let mut view: SlotsView = ranges
        .iter()
        .map(|r| match r {
            Frame::Array(r) => {
                let mut replicas: Vec<SlotNode> = r[3..].iter().map(node).collect();
                replicas.sort();
                (int(&r[0]) as u16, int(&r[1]) as u16, node(&r[2]), replicas)
            }
            other => panic!("not a range: {other:?}"),
        })
        .collect();
    view.sort();
    view
}
