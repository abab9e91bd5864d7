//! Reading a node's description of the cluster into a [`Topology`]: `CLUSTER SHARDS` (Redis
//! 7) and `CLUSTER SLOTS` (older servers), in their RESP2 and RESP3 forms.
//!
//! Owns the shape of those two replies and nothing else. Whatever a node sends, the result is
//! a topology or a [`TopologyError`] saying which part was wrong: never a panic. Fields this
//! version does not know are skipped; a missing one that routing needs is an error.

use resp::Frame;

use super::topology::{Health, Node, Shard, Topology, TopologyError};

fn err<T>(what: impl Into<String>) -> Result<T, TopologyError> {
    Err(TopologyError(what.into()))
}

/// The elements of an array (or a RESP3 set).
fn items<'a>(f: &'a Frame, what: &str) -> Result<&'a [Frame], TopologyError> {
    match f {
        Frame::Array(v) | Frame::Set(v) => Ok(v),
        Frame::Error(e) | Frame::BulkError(e) => err(format!(
            "{what}: error reply {}",
            String::from_utf8_lossy(e)
        )),
        _ => err(format!("{what}: not an array")),
    }
}

/// The key/value pairs of a RESP3 map, or of a RESP2 flat array of alternating keys and values.
fn pairs<'a>(f: &'a Frame, what: &str) -> Result<Vec<(&'a [u8], &'a Frame)>, TopologyError> {
    let mut out = Vec::new();
    match f {
        Frame::Map(m) => {
            for (k, v) in m {
                out.push((text(k, what)?, v));
            }
        }
        Frame::Array(v) if v.len() % 2 == 0 => {
            for kv in v.chunks_exact(2) {
                out.push((text(&kv[0], what)?, &kv[1]));
            }
        }
        _ => return err(format!("{what}: not a map")),
    }
    Ok(out)
}

fn text<'a>(f: &'a Frame, what: &str) -> Result<&'a [u8], TopologyError> {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) => Ok(b),
        Frame::Verbatim(_) => Ok(f.as_bytes().unwrap_or_default()),
        _ => err(format!("{what}: not a string")),
    }
}

fn string(f: &Frame, what: &str) -> Result<String, TopologyError> {
    String::from_utf8(text(f, what)?.to_vec()).or_else(|_| err(format!("{what}: not UTF-8")))
}

fn int(f: &Frame, what: &str) -> Result<i64, TopologyError> {
    match f {
        Frame::Integer(i) => Ok(*i),
        // Some servers and proxies send numbers as strings.
        Frame::Bulk(b) | Frame::Simple(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or_else(|| err(format!("{what}: not a number")), Ok),
        _ => err(format!("{what}: not a number")),
    }
}

fn slot(f: &Frame, what: &str) -> Result<u16, TopologyError> {
    let n = int(f, what)?;
    u16::try_from(n)
        .ok()
        .filter(|&s| usize::from(s) < super::slot::SLOTS)
        .map_or_else(|| err(format!("{what}: slot {n} out of range")), Ok)
}

fn port(f: &Frame, what: &str) -> Result<u16, TopologyError> {
    let n = int(f, what)?;
    u16::try_from(n).map_or_else(|_| err(format!("{what}: port {n} out of range")), Ok)
}

/// The host clients should use: the endpoint, unless it is empty or `?` (unknown), where
/// `origin` (the host of the node that answered) stands in.
fn endpoint(host: String, origin: &str) -> String {
    if host.is_empty() || host == "?" {
        origin.to_string()
    } else {
        host
    }
}

/// Reads a `CLUSTER SHARDS` reply. `origin` is the host of the node that sent it, used for
/// nodes whose endpoint is unknown to it. A shard without slots (a master with none yet, or
/// a shard whose master left) is skipped, as is a shard none of whose nodes is a master.
pub fn parse_shards(reply: &Frame, origin: &str) -> Result<Topology, TopologyError> {
    let mut topo = Topology::default();
    for (i, shard) in items(reply, "CLUSTER SHARDS")?.iter().enumerate() {
        let what = format!("shard {i}");
        let mut ranges = Vec::new();
        let mut nodes = Vec::new();
        for (key, value) in pairs(shard, &what)? {
            match key {
                b"slots" => {
                    let s = items(value, &format!("{what} slots"))?;
                    if s.len() % 2 != 0 {
                        return err(format!("{what} slots: odd number of bounds"));
                    }
                    for pair in s.chunks_exact(2) {
                        ranges.push((slot(&pair[0], &what)?, slot(&pair[1], &what)?));
                    }
                }
                b"nodes" => {
                    for (j, n) in items(value, &format!("{what} nodes"))?.iter().enumerate() {
                        nodes.push(shard_node(n, &format!("{what} node {j}"), origin)?);
                    }
                }
                _ => {}
            }
        }
        if ranges.is_empty() {
            continue;
        }
        let Some(m) = nodes.iter().position(|(master, _)| *master) else {
            continue;
        };
        let (_, master) = nodes.remove(m);
        let replicas = nodes.into_iter().map(|(_, n)| n).collect();
        topo.add_shard(Shard { master, replicas }, &ranges)?;
    }
    Ok(topo)
}

/// One node of a shard, and whether it is the master.
fn shard_node(f: &Frame, what: &str, origin: &str) -> Result<(bool, Node), TopologyError> {
    let (mut id, mut ip, mut end, mut port_no, mut master, mut health) =
        (None, None, None, None, false, Health::Unknown);
    for (key, value) in pairs(f, what)? {
        match key {
            b"id" => id = Some(string(value, what)?),
            b"ip" => ip = Some(string(value, what)?),
            b"endpoint" => end = Some(string(value, what)?),
            b"port" => port_no = Some(port(value, what)?),
            b"role" => master = text(value, what)? == b"master",
            b"health" => health = Health::parse(text(value, what)?),
            _ => {}
        }
    }
    let Some(id) = id else {
        return err(format!("{what}: no id"));
    };
    // A TLS-only node has no "port"; the proxy does not speak TLS to the cluster yet.
    let Some(port) = port_no else {
        return err(format!("{what}: no port"));
    };
    let host = end.or(ip).unwrap_or_default();
    let node = Node {
        id,
        host: endpoint(host, origin),
        port,
        health,
    };
    Ok((master, node))
}

/// Reads a `CLUSTER SLOTS` reply: ranges `[start, end, master, replica...]`, each node
/// `[endpoint, port, id, ...]` (the id and what follows it are absent on old servers).
pub fn parse_slots(reply: &Frame, origin: &str) -> Result<Topology, TopologyError> {
    let mut topo = Topology::default();
    for (i, range) in items(reply, "CLUSTER SLOTS")?.iter().enumerate() {
        let what = format!("range {i}");
        let r = items(range, &what)?;
        if r.len() < 3 {
            return err(format!("{what}: fewer than 3 elements"));
        }
        let bounds = (slot(&r[0], &what)?, slot(&r[1], &what)?);
        let mut nodes = r[2..]
            .iter()
            .enumerate()
            .map(|(j, n)| slots_node(n, &format!("{what} node {j}"), origin));
        let master = nodes.next().unwrap_or_else(|| err("no master"))?;
        let replicas = nodes.collect::<Result<Vec<_>, _>>()?;
        topo.add_shard(Shard { master, replicas }, &[bounds])?;
    }
    Ok(topo)
}

fn slots_node(f: &Frame, what: &str, origin: &str) -> Result<Node, TopologyError> {
    let n = items(f, what)?;
    if n.len() < 2 {
        return err(format!("{what}: fewer than 2 elements"));
    }
    let host = match &n[0] {
        // `cluster-preferred-endpoint-type unknown-endpoint` sends a null.
        Frame::NullBulk | Frame::Null => String::new(),
        other => string(other, what)?,
    };
    let id = match n.get(2) {
        Some(f) => string(f, what)?,
        None => String::new(),
    };
    Ok(Node {
        id,
        host: endpoint(host, origin),
        port: port(&n[1], what)?,
        health: Health::Online,
    })
}

#[cfg(test)]
mod tests;
