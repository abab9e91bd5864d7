//! Where a command without keys goes in a cluster, and how the replies of a fan-out are
//! merged: one table, from Redis's own command tips (`request_policy`, `response_policy`) with
//! the proxy's exceptions written out in [`EXCEPTIONS`].
//!
//! Owns the classification only; never sends anything and never merges bytes (that is
//! `merge`'s). docs/cluster.md lists the outcome per command.

use bytes::Bytes;

use crate::command::{CommandSpec, Route};

/// How the replies of every node a command was sent to make the client's reply (Redis's
/// `response_policy` tips).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `agg_sum`: integers added (DBSIZE, and the split DEL/EXISTS/...).
    Sum,
    /// `agg_min`: the smallest integer (WAIT).
    Min,
    /// `all_succeeded`: the first error if any node failed, else the first reply (FLUSHALL).
    AllOk,
    /// `one_succeeded`: the first reply that is not an error, else the first error.
    OneOk,
    /// `agg_logical_and`: arrays of 0/1 combined element by element (SCRIPT EXISTS).
    And,
    /// Arrays concatenated in node order (KEYS: Redis gives no order either).
    Concat,
    /// The first reply that is not a null (RANDOMKEY), else a null.
    FirstNonNull,
}

/// Where a keyless command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyless {
    /// Answered by the proxy (PING, QUIT, RESET, SELECT 0, NEARCACHE, CLIENT ...).
    Local,
    /// Any master will do (PUBLISH, ECHO, TIME, SWAPDB's refusal, ...).
    AnyNode,
    /// Every master, replies merged (`request_policy:all_shards`).
    Masters(Merge),
    /// Every node, replicas included (`request_policy:all_nodes`).
    AllNodes(Merge),
    /// The node of the slot of the command's channels (SPUBLISH, SSUBSCRIBE): the channel
    /// positions are those Redis's key specifications mark `not_key`.
    ChannelSlot,
    /// Refused by the proxy with this error, as a cluster node refuses it.
    Refuse(&'static str),
    /// `SCAN`: one master after the other, the cursor naming the master (`scan.rs`).
    Scan,
    /// Needs more than a node choice, and is not routed yet (docs/cluster.md, "Not yet wired").
    NotYet(&'static str),
}

const PROXY_ANSWER: &str = "the proxy's own answer about the cluster";
const NO_MERGE: &str = "Redis gives no rule to merge every node's reply";

/// The proxy's exceptions to what Redis's tips say, by full name (`NAME` or `NAME|SUB`).
pub const EXCEPTIONS: &[(&str, Keyless)] = &[
    // all_shards/all_succeeded in Redis's tips; a proxy answers it itself.
    ("PING", Keyless::Local),
    ("ECHO", Keyless::Local),
    ("KEYS", Keyless::Masters(Merge::Concat)),
    ("RANDOMKEY", Keyless::Masters(Merge::FirstNonNull)),
    ("SCAN", Keyless::Scan),
    // Outside a transaction (`session/node_tx.rs` has the rest): Redis's own error, or
    // UNWATCH's `+OK`.
    ("EXEC", Keyless::AnyNode),
    ("DISCARD", Keyless::AnyNode),
    ("UNWATCH", Keyless::AnyNode),
    // all_shards/special in Redis's tips: the first master's, its `# Clients` the proxy's and
    // `cluster_enabled:0` (the proxy stands for one Redis without cluster support).
    ("INFO", Keyless::AnyNode),
    ("CLUSTER|KEYSLOT", Keyless::AnyNode),
    // No tips: the settings are meant to be the same on every master, and a change made
    // through the proxy is made on each (CONFIG SET's own tips say all_nodes).
    ("CONFIG|GET", Keyless::AnyNode),
    ("CONFIG|RESETSTAT", Keyless::Masters(Merge::AllOk)),
    ("CONFIG|REWRITE", Keyless::Masters(Merge::AllOk)),
];

/// What a Redis without cluster support answers to `CLUSTER ...`: what the proxy answers for
/// every subcommand but `KEYSLOT` (clients of the proxy see one Redis; a cluster-aware client
/// must be pointed at the nodes themselves).
pub const NO_CLUSTER: &str = "ERR This instance has cluster support disabled";

/// Redis Cluster's own reply to `SELECT n` for n other than 0.
pub const SELECT_REFUSED: &str = "ERR SELECT is not allowed in cluster mode";

/// Where `spec` (called as `args`, with no keys) goes.
pub fn classify(spec: &CommandSpec, args: &[Bytes]) -> Keyless {
    match spec.route(args) {
        Route::Local(_) => return Keyless::Local,
        Route::Session if spec.special == crate::command::Special::Select => {
            return Keyless::Refuse(SELECT_REFUSED)
        }
        _ => {}
    }
    let full = spec.full_name();
    if let Some((_, k)) = EXCEPTIONS.iter().find(|(n, _)| *n == full) {
        return *k;
    }
    // Every other CLUSTER subcommand is about the node it reaches (its slots, its keys, its
    // view), which the proxy hides.
    if full.starts_with("CLUSTER") {
        return Keyless::Refuse(NO_CLUSTER);
    }
    let Some(redis) = spec.redis else {
        return Keyless::AnyNode;
    };
    if redis
        .key_specs
        .iter()
        .any(|k| k.flags & crate::command::redis::key_flag::NOT_KEY != 0)
    {
        return Keyless::ChannelSlot;
    }
    let tip = |prefix: &str| {
        redis
            .tips
            .iter()
            .find_map(|t| t.strip_prefix(prefix))
            .unwrap_or("")
    };
    let merge = match tip("response_policy:") {
        "agg_sum" => Merge::Sum,
        "agg_min" => Merge::Min,
        "all_succeeded" => Merge::AllOk,
        "one_succeeded" => Merge::OneOk,
        "agg_logical_and" => Merge::And,
        "special" => return Keyless::NotYet(PROXY_ANSWER),
        _ if tip("request_policy:").is_empty() => return Keyless::AnyNode,
        _ => return Keyless::NotYet(NO_MERGE),
    };
    match tip("request_policy:") {
        "all_shards" => Keyless::Masters(merge),
        "all_nodes" => Keyless::AllNodes(merge),
        _ => Keyless::AnyNode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{cmd, lookup};

    fn of(line: &str) -> Keyless {
        let args = cmd(line);
        classify(lookup(&args[0]).resolve(&args), &args)
    }

    #[test]
    fn the_issue_s_examples() {
        assert_eq!(of("PING"), Keyless::Local);
        assert_eq!(of("DBSIZE"), Keyless::Masters(Merge::Sum));
        assert_eq!(of("FLUSHALL"), Keyless::Masters(Merge::AllOk));
        assert_eq!(of("FLUSHDB ASYNC"), Keyless::Masters(Merge::AllOk));
        assert_eq!(of("KEYS *"), Keyless::Masters(Merge::Concat));
        assert_eq!(of("PUBLISH ch msg"), Keyless::AnyNode);
        assert_eq!(of("SUBSCRIBE ch"), Keyless::AnyNode);
        assert_eq!(of("SPUBLISH ch msg"), Keyless::ChannelSlot);
        assert_eq!(of("SSUBSCRIBE a b"), Keyless::ChannelSlot);
        assert_eq!(of("SELECT 0"), Keyless::Local);
        assert_eq!(of("SELECT 3"), Keyless::Refuse(SELECT_REFUSED));
        assert!(matches!(of("SCAN 0"), Keyless::Scan));
        assert_eq!(of("INFO"), Keyless::AnyNode);
        assert_eq!(of("INFO keyspace"), Keyless::AnyNode);
        for cluster in [
            "CLUSTER SLOTS",
            "CLUSTER SHARDS",
            "CLUSTER INFO",
            "CLUSTER NODES",
        ] {
            assert_eq!(of(cluster), Keyless::Refuse(NO_CLUSTER), "{cluster}");
        }
        assert_eq!(of("CLUSTER COUNTKEYSINSLOT 1"), Keyless::Refuse(NO_CLUSTER));
        assert_eq!(of("CLUSTER KEYSLOT foo"), Keyless::AnyNode);
        assert_eq!(of("CONFIG GET maxmemory"), Keyless::AnyNode);
        assert_eq!(
            of("CONFIG SET maxmemory 0"),
            Keyless::AllNodes(Merge::AllOk)
        );
        assert_eq!(of("CONFIG RESETSTAT"), Keyless::Masters(Merge::AllOk));
        assert_eq!(of("EXEC"), Keyless::AnyNode);
    }

    #[test]
    fn tips_decide_the_rest() {
        assert_eq!(of("WAIT 1 0"), Keyless::Masters(Merge::Min));
        assert_eq!(of("SCRIPT EXISTS abc"), Keyless::Masters(Merge::And));
        assert_eq!(of("SCRIPT LOAD x"), Keyless::AllNodes(Merge::AllOk));
        assert_eq!(of("SCRIPT KILL"), Keyless::Masters(Merge::OneOk));
        assert_eq!(of("FUNCTION FLUSH"), Keyless::Masters(Merge::AllOk));
        assert_eq!(of("RANDOMKEY"), Keyless::Masters(Merge::FirstNonNull));
        assert_eq!(of("TIME"), Keyless::AnyNode);
        assert_eq!(of("EVAL x 0"), Keyless::AnyNode);
        assert_eq!(of("NOSUCHCOMMAND a"), Keyless::AnyNode);
        assert!(matches!(of("MEMORY STATS"), Keyless::NotYet(_)));
        assert!(matches!(of("SLOWLOG GET"), Keyless::NotYet(_)));
        assert_eq!(of("SLOWLOG LEN"), Keyless::AllNodes(Merge::Sum));
        assert_eq!(of("SCRIPT FLUSH"), Keyless::AllNodes(Merge::AllOk));
        assert_eq!(of("MEMORY PURGE"), Keyless::Masters(Merge::AllOk));
    }
}
