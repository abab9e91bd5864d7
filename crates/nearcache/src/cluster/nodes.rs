//! The cluster as the proxy's upstream: the slot map in force, and one [`Pool`] per master
//! (its shared connections and, with caching, its own invalidation connection, every node's
//! feeding the one cache through the same [`TrackingSink`]).
//!
//! Owns which node serves a slot now, the nodes' pools, and the map's refreshes: on `MOVED`
//! (the map is patched at once, then read again), on a node that cannot be reached, and
//! periodically. Each node's pool (a master's, or a replica's read from) tracks in a scope of
//! its own (the top bits of its connections' cache tags): when a shard stops serving a slot,
//! what its nodes filled is dropped ([`TrackingSink::slots_moved`]) before the new owner can
//! serve a read, and losing a node's invalidation connection drops what it filled and nothing
//! else. Never holds a lock across an `.await`; never reads a client's command (`split` does)
//! and never touches a session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tracing::{info, warn};

use super::discover::{discover, DiscoverError};
use super::redirect::NodeAddr;
use super::topology::{Node, Topology};
use crate::upstream::{Limits, Pool, Settings, Tracking, TrackingMode, TrackingSink};

/// How often the map is read again when nothing asked for it: the longest a change no client
/// command ran into (a failover of a node nobody reads, a new node) goes unseen. Shorter costs
/// a `CLUSTER SHARDS` (and a connection) that often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The cluster's nodes and where each slot goes.
pub struct Nodes {
    topo: Mutex<Topology>,
    /// The pool of every master, by `host:port`; a refresh closes those of nodes that serve no
    /// slot any more.
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    /// With `read_from = replica`: the pool of every replica read from (its connections sent
    /// `READONLY`), by `host:port`; a refresh closes those of nodes no longer replicas.
    replica_pools: Mutex<HashMap<String, Arc<Pool>>>,
    /// Cacheable reads that miss go to a replica of their slot.
    read_replicas: bool,
    /// The pool settings every node's pool starts from (its `addr` replaced).
    settings: Settings,
    /// The pool limits in force (live settings), for pools opened from now on.
    limits: Mutex<Limits>,
    /// With caching: how nodes track, and the cache their invalidations go to.
    tracking: Option<(TrackingMode, Arc<dyn TrackingSink>)>,
    seeds: Vec<String>,
    /// Pools opened so far: the next pool's scope.
    scopes: AtomicU16,
    /// A refresh is running: another request for one is dropped.
    refreshing: AtomicBool,
    /// Maps read since the start (the first one included).
    pub refreshes: AtomicU64,
    /// `MOVED` replies that changed the map.
    pub moves: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Nodes {
    /// Learns the cluster from the first seed that describes it, opens a pool per master, and
    /// starts the periodic refresh. Must run inside a tokio runtime.
    pub async fn start(
        seeds: Vec<String>,
        settings: Settings,
        tracking: Option<(TrackingMode, Arc<dyn TrackingSink>)>,
        read_replicas: bool,
    ) -> Result<Arc<Nodes>, DiscoverError> {
        let (topo, seed, source) = discover(&seeds, &settings).await?;
        info!(%seed, ?source, slots = ?topo.ranges(), "cluster topology learnt");
        let nodes = Arc::new(Nodes {
            topo: Mutex::new(Topology::default()),
            pools: Mutex::default(),
            replica_pools: Mutex::default(),
            read_replicas,
            limits: Mutex::new(settings.limits.clone()),
            settings,
            tracking,
            seeds,
            scopes: AtomicU16::new(0),
            refreshing: AtomicBool::new(false),
            refreshes: AtomicU64::new(1),
            moves: AtomicU64::new(0),
        });
        for addr in masters_of(&topo) {
            nodes.pool_at(&addr);
        }
        *lock(&nodes.topo) = topo;
        tokio::spawn(periodic(Arc::downgrade(&nodes)));
        Ok(nodes)
    }

    /// The pool of the master at `addr`, opened now if there is none yet.
    pub fn pool_at(&self, addr: &str) -> Arc<Pool> {
        self.pool_in(&self.pools, addr, false)
    }

    fn pool_in(
        &self,
        pools: &Mutex<HashMap<String, Arc<Pool>>>,
        addr: &str,
        readonly: bool,
    ) -> Arc<Pool> {
        // Opened under the lock (it only spawns its connections' tasks, never waits): two
        // sessions meeting a new node at once must not open two pools, the second of which
        // would keep its connections and invalidation connection open unused.
        let mut pools = lock(pools);
        if let Some(p) = pools.get(addr) {
            return p.clone();
        }
        let fresh = self.open(addr, readonly);
        pools.insert(addr.to_string(), fresh.clone());
        fresh
    }

    fn open(&self, addr: &str, readonly: bool) -> Arc<Pool> {
        info!(node = addr, readonly, "opening a pool to a cluster node");
        let settings = Settings {
            addr: addr.to_string(),
            limits: lock(&self.limits).clone(),
            readonly,
            ..self.settings.clone()
        };
        // Scopes 1 to 0xfffe (0 is one Redis's, 0xffff BCAST's); after 65,534 pools two may
        // share one, and losing either then drops both's entries: more, never less.
        let n = self.scopes.fetch_add(1, Ordering::Relaxed);
        let scope = 1 + n % 0xfffe;
        let tracking = self.tracking.as_ref().map(|(mode, sink)| {
            Arc::new(Tracking::scoped(mode.clone(), sink.clone(), Some(scope)))
        });
        Pool::new(settings, tracking)
    }

    /// Where a cacheable read of `slot` that missed goes: with `read_from = replica`, the
    /// replica [`Topology::replica`] picks (its pool opened now if there is none yet), else,
    /// or if the slot has no replica online, the slot's master.
    pub fn reader_for_slot(&self, slot: u16) -> Option<(String, Arc<Pool>)> {
        if self.read_replicas {
            let replica = lock(&self.topo).replica(slot);
            if let Some(addr) = replica {
                let pool = self.pool_in(&self.replica_pools, &addr, true);
                return Some((addr, pool));
            }
        }
        self.for_slot(slot)
    }

    /// Drops what the nodes at `addrs` (a shard's master and replicas) filled: the shard
    /// stopped serving some of its slots.
    fn slots_left(&self, addrs: &[String]) {
        let Some((_, sink)) = &self.tracking else {
            return;
        };
        for addr in addrs {
            for pools in [&self.pools, &self.replica_pools] {
                let pool = lock(pools).get(addr).cloned();
                // No pool: nothing was filled through that node.
                if let Some(scope) = pool.and_then(|p| p.tracking().and_then(|t| t.scope)) {
                    info!(node = %addr, "its shard stopped serving slots; dropping what it filled");
                    sink.slots_moved(scope);
                }
            }
        }
    }

    /// New pool limits (a configuration reload), for every node's pool.
    pub fn set_limits(&self, limits: Limits) {
        *lock(&self.limits) = limits.clone();
        let pools: Vec<Arc<Pool>> = [&self.pools, &self.replica_pools]
            .into_iter()
            .flat_map(|p| lock(p).values().cloned().collect::<Vec<_>>())
            .collect();
        for pool in pools {
            pool.set_limits(limits.clone());
        }
    }

    /// The master of `slot` and its pool, if any node serves the slot.
    pub fn for_slot(&self, slot: u16) -> Option<(String, Arc<Pool>)> {
        let addr = lock(&self.topo).master(slot).map(Node::addr)?;
        let pool = self.pool_at(&addr);
        Some((addr, pool))
    }

    /// Every master serving a slot, with its pool, in the map's order.
    pub fn masters(&self) -> Vec<(String, Arc<Pool>)> {
        let addrs = masters_of(&lock(&self.topo));
        addrs
            .into_iter()
            .map(|a| {
                let p = self.pool_at(&a);
                (a, p)
            })
            .collect()
    }

    /// Whether `addr` is a replica read from (`read_from = replica`).
    pub fn is_replica(&self, addr: &str) -> bool {
        self.read_replicas && lock(&self.replica_pools).contains_key(addr)
    }

    /// Every pool open: each master's (as [`Nodes::masters`]), then each replica's read from.
    pub fn pools(&self) -> Vec<(String, Arc<Pool>)> {
        let mut all = self.masters();
        let mut replicas: Vec<(String, Arc<Pool>)> = lock(&self.replica_pools)
            .iter()
            .map(|(a, p)| (a.clone(), p.clone()))
            .collect();
        replicas.sort_by(|a, b| a.0.cmp(&b.0));
        all.extend(replicas);
        all
    }

    /// Any master (the first), for a command any node answers.
    pub fn any(&self) -> Option<(String, Arc<Pool>)> {
        self.masters().into_iter().next()
    }

    /// A copy of the map in force.
    pub fn topology(&self) -> Topology {
        lock(&self.topo).clone()
    }

    /// `MOVED slot addr` from the node at `from`: the map points `slot` at `addr` now; if that
    /// changed it, what the old owner filled is dropped (its tracking may not see the slot's
    /// writes any more) and the whole map is read again soon. Returns the node to send to.
    pub fn moved(self: &Arc<Self>, slot: u16, addr: &NodeAddr, from: &str) -> String {
        let origin = NodeAddr::parse(from).map(|a| a.host).unwrap_or_default();
        let (changed, was) = {
            let mut topo = lock(&self.topo);
            let was = topo.slot_nodes(slot);
            (topo.apply_moved(slot, addr, &origin), was)
        };
        if changed {
            self.moves.fetch_add(1, Ordering::Relaxed);
            self.slots_left(&was);
            self.refresh_soon();
        }
        addr.resolve(&origin)
    }

    /// Reads the map again in the background, unless a refresh is running already.
    pub fn refresh_soon(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let nodes = self.clone();
        tokio::spawn(async move {
            nodes.refresh().await;
            nodes.refreshing.store(false, Ordering::Release);
        });
    }

    /// Reads the map from the seeds or the masters known now, opens pools for new masters,
    /// and puts it in force. A master that lost a slot has what it filled dropped.
    pub async fn refresh(&self) {
        let mut ask: Vec<String> = masters_of(&lock(&self.topo));
        for seed in &self.seeds {
            if !ask.contains(seed) {
                ask.push(seed.clone());
            }
        }
        let topo = match discover(&ask, &self.settings).await {
            Ok((topo, _, _)) => topo,
            Err(e) => {
                warn!(%e, "cluster topology refresh failed; keeping the map in force");
                return;
            }
        };
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let masters = masters_of(&topo);
        for addr in &masters {
            self.pool_at(addr);
        }
        let losing = {
            let mut now = lock(&self.topo);
            let losing = now.nodes_losing_slots(&topo);
            *now = topo;
            losing
        };
        if !losing.is_empty() {
            info!(slots = ?self.topology().ranges(), "cluster topology changed");
            self.slots_left(&losing);
        }
        // Nodes that serve no slot any more (left, failed, demoted to replicas), and replicas
        // read from that are replicas no more (left, promoted).
        let replicas = self.topology().replicas();
        let gone: Vec<(String, Arc<Pool>)> =
            [(&self.pools, &masters), (&self.replica_pools, &replicas)]
                .into_iter()
                .flat_map(|(pools, keep)| {
                    let mut pools = lock(pools);
                    let addrs: Vec<String> = pools
                        .keys()
                        .filter(|a| !keep.contains(a))
                        .cloned()
                        .collect();
                    addrs
                        .into_iter()
                        .filter_map(|a| pools.remove(&a).map(|p| (a, p)))
                        .collect::<Vec<_>>()
                })
                .collect();
        for (addr, pool) in gone {
            info!(node = %addr, "closing the pool of a node that serves no slot");
            pool.close();
        }
    }
}

impl Nodes {
    /// The `# Cluster` section of `NEARCACHE INFO`: the map's figures, then each master's
    /// slots and pool figures.
    pub fn info(&self) -> String {
        use std::fmt::Write as _;
        let topo = self.topology();
        let mut slots: Vec<(String, usize)> = Vec::new();
        for (start, end, addr) in topo.ranges() {
            let n = usize::from(end - start) + 1;
            match slots.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, total)) => *total += n,
                None => slots.push((addr, n)),
            }
        }
        let mut w = String::from("\r\n# Cluster\r\n");
        let _ = writeln!(w, "cluster_masters:{}\r", slots.len());
        let _ = writeln!(w, "cluster_slots_unserved:{}\r", topo.unassigned());
        let _ = writeln!(
            w,
            "cluster_refreshes:{}\r",
            self.refreshes.load(Ordering::Relaxed)
        );
        let _ = writeln!(w, "cluster_moves:{}\r", self.moves.load(Ordering::Relaxed));
        for (i, (addr, n)) in slots.iter().enumerate() {
            let st = self.pool_at(addr).stats();
            let _ = writeln!(
                w,
                "cluster_master{i}:addr={addr},slots={n},open={},in_use={},idle={},\
                 reconnects={}\r",
                st.open, st.in_use, st.idle, st.reconnects
            );
        }
        w
    }
}

/// The `host:port` of each master serving a slot.
fn masters_of(topo: &Topology) -> Vec<String> {
    topo.shards().map(|s| s.master.addr()).collect()
}

/// Reads the map every [`REFRESH_EVERY`]; ends when the nodes are dropped.
async fn periodic(nodes: Weak<Nodes>) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(nodes) = nodes.upgrade() else {
            return;
        };
        nodes.refresh_soon();
    }
}
