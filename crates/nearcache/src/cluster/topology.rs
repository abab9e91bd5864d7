//! The slot map: for each of the 16384 slots, the shard that serves it (a master and its
//! replicas), each node with its id, address and health.
//!
//! Owns the map and its updates (`MOVED`). Built by `cluster::parse` from a node's
//! `CLUSTER SHARDS` or `CLUSTER SLOTS` reply. Plain data: never opens a connection, never
//! panics on what a node said.

use super::redirect::NodeAddr;
use super::slot::SLOTS;

/// A node's health as `CLUSTER SHARDS` reports it (`CLUSTER SLOTS` lists only nodes it
/// considers usable, which read as [`Health::Online`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    Online,
    Loading,
    Failed,
    /// A word this version does not know, or a node learnt from a `MOVED` only.
    Unknown,
}

impl Health {
    pub fn parse(word: &[u8]) -> Health {
        match word {
            b"online" => Health::Online,
            b"loading" => Health::Loading,
            b"fail" | b"failed" => Health::Failed,
            _ => Health::Unknown,
        }
    }
}

/// One cluster node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node {
    /// The 40-character node id; empty for a node learnt from a `MOVED` only.
    pub id: String,
    /// The address clients should use (the node's preferred endpoint).
    pub host: String,
    pub port: u16,
    pub health: Health,
}

impl Node {
    /// `host:port`, IPv6 hosts in brackets.
    pub fn addr(&self) -> String {
        NodeAddr {
            host: self.host.clone(),
            port: self.port,
        }
        .resolve("")
    }
}

/// A master and its replicas: what serves a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub master: Node,
    pub replicas: Vec<Node>,
}

/// Index of a shard in [`Topology::shards`].
pub type ShardId = u16;
const UNASSIGNED: ShardId = ShardId::MAX;

/// The cluster as one node described it, updated by redirects since.
#[derive(Clone, PartialEq, Eq)]
pub struct Topology {
    shards: Vec<Shard>,
    /// The shard of each slot, [`UNASSIGNED`] when no node serves it.
    slots: Box<[ShardId]>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("ranges", &self.ranges())
            .field("shards", &self.shards)
            .finish()
    }
}

/// Why a description of the cluster could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError(pub String);

impl std::fmt::Display for TopologyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad cluster topology: {}", self.0)
    }
}

impl std::error::Error for TopologyError {}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            shards: Vec::new(),
            slots: vec![UNASSIGNED; SLOTS].into_boxed_slice(),
        }
    }
}

impl Topology {
    /// Adds a shard serving the inclusive slot `ranges`. A slot already served by another
    /// shard, or a range out of bounds, is an error: one description never says that.
    pub fn add_shard(&mut self, shard: Shard, ranges: &[(u16, u16)]) -> Result<(), TopologyError> {
        let id = self.shard_of_master(&shard.master).unwrap_or_else(|| {
            self.shards.push(shard.clone());
            (self.shards.len() - 1) as ShardId
        });
        if self.shards.len() >= usize::from(UNASSIGNED) {
            return Err(TopologyError("too many shards".into()));
        }
        for &(start, end) in ranges {
            if start > end || usize::from(end) >= SLOTS {
                return Err(TopologyError(format!("bad slot range {start}-{end}")));
            }
            for slot in start..=end {
                let old = self.slots[usize::from(slot)];
                if old != UNASSIGNED && old != id {
                    return Err(TopologyError(format!("slot {slot} is served twice")));
                }
                self.slots[usize::from(slot)] = id;
            }
        }
        Ok(())
    }

    fn shard_of_master(&self, master: &Node) -> Option<ShardId> {
        self.shards
            .iter()
            .position(|s| s.master.host == master.host && s.master.port == master.port)
            .map(|i| i as ShardId)
    }

    /// The shard serving `slot`, if any.
    pub fn shard(&self, slot: u16) -> Option<&Shard> {
        let id = *self.slots.get(usize::from(slot))?;
        self.shards.get(usize::from(id))
    }

    /// The master serving `slot`, if any.
    pub fn master(&self, slot: u16) -> Option<&Node> {
        self.shard(slot).map(|s| &s.master)
    }

    /// The `host:port` of every node (master, then replicas) of each shard of this map that
    /// serves a slot `next` gives to another master or to none: the nodes whose tracking may no
    /// longer see all the writes to what they filled.
    pub fn nodes_losing_slots(&self, next: &Topology) -> Vec<String> {
        let mut losing: Vec<ShardId> = Vec::new();
        for slot in 0..SLOTS as u16 {
            let Some(was) = self.master(slot) else {
                continue;
            };
            let kept = next
                .master(slot)
                .is_some_and(|m| m.host == was.host && m.port == was.port);
            let id = self.slots[usize::from(slot)];
            if !kept && !losing.contains(&id) {
                losing.push(id);
            }
        }
        losing
            .into_iter()
            .flat_map(|id| self.shard_nodes(&self.shards[usize::from(id)]))
            .collect()
    }

    /// The `host:port` of the master of `slot` and of its replicas, if any node serves it.
    pub fn slot_nodes(&self, slot: u16) -> Vec<String> {
        self.shard(slot)
            .map(|s| self.shard_nodes(s))
            .unwrap_or_default()
    }

    fn shard_nodes(&self, shard: &Shard) -> Vec<String> {
        std::iter::once(&shard.master)
            .chain(&shard.replicas)
            .map(Node::addr)
            .collect()
    }

    /// The `host:port` of one of `slot`'s replicas the map says is online, the same for a slot
    /// while the map holds (slots spread the reads over the replicas); `None` if it has none.
    pub fn replica(&self, slot: u16) -> Option<String> {
        let up: Vec<&Node> = self
            .shard(slot)?
            .replicas
            .iter()
            .filter(|n| n.health == Health::Online)
            .collect();
        (!up.is_empty()).then(|| up[usize::from(slot) % up.len()].addr())
    }

    /// The `host:port` of every replica of a serving shard.
    pub fn replicas(&self) -> Vec<String> {
        self.shards()
            .flat_map(|s| s.replicas.iter().map(Node::addr))
            .collect()
    }

    /// Every shard that serves at least one slot, in the order they were added.
    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards
            .iter()
            .enumerate()
            .filter(|(i, _)| self.slots.contains(&(*i as ShardId)))
            .map(|(_, s)| s)
    }

    /// Every node of a serving shard, masters and replicas.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.shards()
            .flat_map(|s| std::iter::once(&s.master).chain(s.replicas.iter()))
    }

    /// How many slots no node serves.
    pub fn unassigned(&self) -> usize {
        self.slots.iter().filter(|&&s| s == UNASSIGNED).count()
    }

    /// The map as inclusive ranges of consecutive slots with one master: `(start, end, addr)`.
    pub fn ranges(&self) -> Vec<(u16, u16, String)> {
        let mut out: Vec<(u16, u16, String)> = Vec::new();
        for slot in 0..SLOTS as u16 {
            let Some(master) = self.master(slot) else {
                continue;
            };
            let addr = master.addr();
            match out.last_mut() {
                Some((_, end, a)) if *end + 1 == slot && *a == addr => *end = slot,
                _ => out.push((slot, slot, addr)),
            }
        }
        out
    }

    /// Applies `MOVED slot addr`: the slot is now served by the node at `addr` (`origin` is the
    /// host of the node that replied, for an address without one). The node becomes the master
    /// of its own shard if it was a replica (a failover) or unknown (a new node). Returns
    /// whether the map changed.
    pub fn apply_moved(&mut self, slot: u16, addr: &NodeAddr, origin: &str) -> bool {
        if usize::from(slot) >= SLOTS {
            return false;
        }
        let target = addr.resolve(origin);
        if self.master(slot).is_some_and(|m| m.addr() == target) {
            return false;
        }
        let id = match self.shards.iter().position(|s| s.master.addr() == target) {
            Some(i) => i as ShardId,
            None if self.shards.len() + 1 >= usize::from(UNASSIGNED) => return false,
            None => {
                let known = self
                    .shards
                    .iter()
                    .flat_map(|s| s.replicas.iter())
                    .find(|n| n.addr() == target);
                let master = known.cloned().unwrap_or_else(|| {
                    let parsed = NodeAddr::parse(&target);
                    Node {
                        id: String::new(),
                        host: parsed.as_ref().map_or(target.clone(), |a| a.host.clone()),
                        port: parsed.map_or(addr.port, |a| a.port),
                        health: Health::Unknown,
                    }
                });
                self.shards.push(Shard {
                    master,
                    replicas: Vec::new(),
                });
                (self.shards.len() - 1) as ShardId
            }
        };
        self.slots[usize::from(slot)] = id;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> Node {
        Node {
            id: format!("{port:040}"),
            host: "127.0.0.1".into(),
            port,
            health: Health::Online,
        }
    }

    fn three() -> Topology {
        let mut t = Topology::default();
        for (i, (start, end)) in [(0, 5460), (5461, 10922), (10923, 16383)]
            .iter()
            .enumerate()
        {
            let shard = Shard {
                master: node(7000 + i as u16),
                replicas: vec![node(7003 + i as u16)],
            };
            t.add_shard(shard, &[(*start, *end)]).unwrap();
        }
        t
    }

    #[test]
    fn every_slot_has_its_master() {
        let t = three();
        assert_eq!(t.unassigned(), 0);
        assert_eq!(t.master(0).unwrap().port, 7000);
        assert_eq!(t.master(5461).unwrap().port, 7001);
        assert_eq!(t.master(16383).unwrap().port, 7002);
        assert_eq!(t.shard(16383).unwrap().replicas[0].port, 7005);
        assert_eq!(t.master(16384), None);
        assert_eq!(t.nodes().count(), 6);
    }

    #[test]
    fn the_masters_losing_a_slot_are_named() {
        let t = three();
        assert!(t.nodes_losing_slots(&three()).is_empty());
        // 7000 gives slot 10 to 7001; 7002 fails over to its replica 7005.
        let mut next = Topology::default();
        let shards = [
            (7000, 7003, vec![(0, 9), (11, 5460)]),
            (7001, 7004, vec![(10, 10), (5461, 10922)]),
            (7005, 7002, vec![(10923, 16383)]),
        ];
        for (master, replica, ranges) in shards {
            let shard = Shard {
                master: node(master),
                replicas: vec![node(replica)],
            };
            next.add_shard(shard, &ranges).unwrap();
        }
        assert_eq!(
            t.nodes_losing_slots(&next),
            [
                "127.0.0.1:7000",
                "127.0.0.1:7003",
                "127.0.0.1:7002",
                "127.0.0.1:7005"
            ]
        );
        // A slot nobody serves any more is lost too; a newly served one is not.
        let mut fewer = three();
        fewer.slots[0] = UNASSIGNED;
        assert_eq!(
            t.nodes_losing_slots(&fewer),
            ["127.0.0.1:7000", "127.0.0.1:7003"]
        );
        assert!(fewer.nodes_losing_slots(&t).is_empty());
        assert_eq!(t.slot_nodes(6000), ["127.0.0.1:7001", "127.0.0.1:7004"]);
        assert_eq!(t.replica(6000).as_deref(), Some("127.0.0.1:7004"));
        assert_eq!(t.replicas().len(), 3);
        let mut down = three();
        down.shards[1].replicas[0].health = Health::Failed;
        assert_eq!(down.replica(6000), None, "no replica online");
    }

    #[test]
    fn overlapping_or_out_of_range_slots_are_errors() {
        let mut t = three();
        let shard = Shard {
            master: node(7009),
            replicas: vec![],
        };
        assert!(t.add_shard(shard.clone(), &[(10, 20)]).is_err());
        assert!(t.add_shard(shard.clone(), &[(20, 10)]).is_err());
        assert!(Topology::default().add_shard(shard, &[(0, 16384)]).is_err());
    }

    #[test]
    fn moved_points_a_slot_at_a_known_master_a_promoted_replica_or_a_new_node() {
        let mut t = three();
        let to = |host: &str, port| NodeAddr {
            host: host.into(),
            port,
        };
        assert!(
            !t.apply_moved(0, &to("127.0.0.1", 7000), ""),
            "already there"
        );
        assert!(t.apply_moved(0, &to("127.0.0.1", 7001), ""));
        assert_eq!(t.master(0).unwrap().port, 7001);
        assert_eq!(t.master(1).unwrap().port, 7000, "only the moved slot moves");
        // A replica promoted by a failover keeps its id.
        assert!(t.apply_moved(1, &to("127.0.0.1", 7003), ""));
        assert_eq!(t.master(1).unwrap().id, node(7003).id);
        // An unknown node, with the replying node's host.
        assert!(t.apply_moved(2, &to("", 7010), "10.0.0.5"));
        assert_eq!(t.master(2).unwrap().addr(), "10.0.0.5:7010");
        assert_eq!(t.master(2).unwrap().health, Health::Unknown);
        assert!(!t.apply_moved(16384, &to("127.0.0.1", 7000), ""));
        assert_eq!(t.ranges()[0], (0, 0, "127.0.0.1:7001".to_string()));
    }
}
