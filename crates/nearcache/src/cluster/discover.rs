//! Learning a cluster's topology from its seed nodes: the first seed that answers describes
//! the cluster with `CLUSTER SHARDS`, or with `CLUSTER SLOTS` when it refuses that (a server
//! older than Redis 7, or a user not allowed it).
//!
//! The async half of `cluster/`: it opens connections through the upstream side's own
//! handshake (`upstream::ask`: TLS and authentication live there), one at a time, and closes
//! each. Never keeps a connection and never retries a seed: refreshing is the caller's
//! business.

use bytes::{Bytes, BytesMut};
use resp::Frame;

use super::parse::{parse_shards, parse_slots};
use super::redirect::NodeAddr;
use super::topology::Topology;
use crate::upstream::{self, Settings};

/// Why no seed gave a topology: what each one said, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverError(pub Vec<(String, String)>);

impl std::fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no cluster seed given");
        }
        write!(f, "no cluster seed described the cluster:")?;
        for (seed, cause) in &self.0 {
            write!(f, " {seed}: {cause};")?;
        }
        Ok(())
    }
}

impl std::error::Error for DiscoverError {}

/// Which command gave the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Shards,
    Slots,
}

/// The topology as the first seed that answers describes it, with the seed and the command
/// that described it. `settings` are the upstream settings (credentials, timeouts); their
/// `addr` is replaced by each seed's in turn.
pub async fn discover(
    seeds: &[String],
    settings: &Settings,
) -> Result<(Topology, String, Source), DiscoverError> {
    let mut failures = Vec::new();
    for seed in seeds {
        match from_seed(seed, settings).await {
            Ok((topo, source)) => return Ok((topo, seed.clone(), source)),
            Err(cause) => failures.push((seed.clone(), cause)),
        }
    }
    Err(DiscoverError(failures))
}

/// The topology as one node describes it.
pub async fn from_seed(seed: &str, settings: &Settings) -> Result<(Topology, Source), String> {
    let cfg = Settings {
        addr: seed.to_string(),
        ..settings.clone()
    };
    let origin = NodeAddr::parse(seed).map(|a| a.host).unwrap_or_default();
    let shards = ask_one(&cfg, &["CLUSTER", "SHARDS"]).await?;
    if !shards.is_error() {
        let topo = parse_shards(&shards, &origin).map_err(|e| e.to_string())?;
        return Ok((topo, Source::Shards));
    }
    let slots = ask_one(&cfg, &["CLUSTER", "SLOTS"]).await?;
    if let Frame::Error(e) | Frame::BulkError(e) = &slots {
        return Err(format!(
            "CLUSTER SHARDS and CLUSTER SLOTS refused: {}",
            String::from_utf8_lossy(e)
        ));
    }
    let topo = parse_slots(&slots, &origin).map_err(|e| e.to_string())?;
    Ok((topo, Source::Slots))
}

/// One command's reply, parsed.
async fn ask_one(cfg: &Settings, command: &[&str]) -> Result<Frame, String> {
    let mut out = BytesMut::new();
    resp::encode_command(command, &mut out);
    let replies = upstream::ask(cfg, 2, &[out.freeze()])
        .await
        .map_err(|e| e.to_string())?;
    let reply: Bytes = replies.into_iter().next().ok_or("no reply")?;
    let mut buf = BytesMut::from(&reply[..]);
    match resp::parse_frame(&mut buf, &resp::Limits::UNBOUNDED) {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err("incomplete reply".into()),
        Err(e) => Err(format!("bad reply: {e}")),
    }
}
