//! The upstream pools' figures on `/metrics`: the pool's (every master's summed with a cluster
//! upstream), as Go's `sql.DBStats` has them, and each cluster node's labelled with its
//! `host:port`. Copied from [`PoolStats`] at each scrape; never touches a pool itself.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::upstream::{CloseReason, PoolStats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeReasonLabel {
    node: String,
    reason: &'static str,
}

/// The upstream pool's figures, as Go's `sql.DBStats` has them, copied at each scrape.
#[derive(Default)]
pub(super) struct PoolFigures {
    max_open: Gauge,
    open: Gauge,
    in_use: Gauge,
    idle: Gauge,
    wait_count: Counter,
    wait_seconds: Counter<f64, AtomicU64>,
    closed: Family<ReasonLabel, Counter>,
}

/// With a cluster upstream: each node's pool figures (masters, and replicas read from),
/// labelled with its `host:port` (the unlabelled `nearcache_pool_*` are then every node's
/// summed). Set afresh at each scrape, so that a node gone from the map goes from the figures.
#[derive(Default)]
pub(super) struct NodeFigures {
    max_open: Family<NodeLabel, Gauge>,
    open: Family<NodeLabel, Gauge>,
    in_use: Family<NodeLabel, Gauge>,
    idle: Family<NodeLabel, Gauge>,
    wait_count: Family<NodeLabel, Counter>,
    wait_seconds: Family<NodeLabel, Counter<f64, AtomicU64>>,
    closed: Family<NodeReasonLabel, Counter>,
    reconnects: Family<NodeLabel, Counter>,
}

impl NodeFigures {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "nearcache_node_pool_max_open_connections",
            "Most connections allowed open to a cluster node (0: no limit)",
            self.max_open.clone(),
        );
        r.register(
            "nearcache_node_pool_open_connections",
            "A cluster node's upstream data connections open",
            self.open.clone(),
        );
        r.register(
            "nearcache_node_pool_in_use_connections",
            "A cluster node's connections in use",
            self.in_use.clone(),
        );
        r.register(
            "nearcache_node_pool_idle_connections",
            "A cluster node's connections open and not in use",
            self.idle.clone(),
        );
        r.register(
            "nearcache_node_pool_wait_count",
            "Times a session waited for a dedicated connection to a cluster node",
            self.wait_count.clone(),
        );
        r.register(
            "nearcache_node_pool_wait_duration_seconds",
            "Total time sessions waited for a dedicated connection to a cluster node",
            self.wait_seconds.clone(),
        );
        r.register(
            "nearcache_node_pool_closed_connections",
            "Connections to a cluster node closed by its pool, by reason",
            self.closed.clone(),
        );
        r.register(
            "nearcache_node_upstream_reconnects",
            "A cluster node's shared connections re-established after a loss",
            self.reconnects.clone(),
        );
    }

    pub(super) fn update(&self, nodes: &[(String, PoolStats)]) {
        self.max_open.clear();
        self.open.clear();
        self.in_use.clear();
        self.idle.clear();
        self.wait_count.clear();
        self.wait_seconds.clear();
        self.closed.clear();
        self.reconnects.clear();
        for (addr, s) in nodes {
            let l = NodeLabel { node: addr.clone() };
            self.max_open.get_or_create(&l).set(s.max_open as i64);
            self.open.get_or_create(&l).set(s.open as i64);
            self.in_use.get_or_create(&l).set(s.in_use as i64);
            self.idle.get_or_create(&l).set(s.idle as i64);
            advance(&self.wait_count.get_or_create(&l), s.wait_count);
            advance(&self.reconnects.get_or_create(&l), s.reconnects);
            let waited = s.wait_duration.as_secs_f64();
            self.wait_seconds.get_or_create(&l).inc_by(waited);
            for (reason, n) in CloseReason::ALL.iter().zip(s.closed) {
                let l = NodeReasonLabel {
                    node: addr.clone(),
                    reason: reason.label(),
                };
                advance(&self.closed.get_or_create(&l), n);
            }
        }
    }
}

impl PoolFigures {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "nearcache_pool_max_open_connections",
            "Most upstream data connections allowed open (0: no limit)",
            self.max_open.clone(),
        );
        r.register(
            "nearcache_pool_open_connections",
            "Upstream data connections open, shared and dedicated",
            self.open.clone(),
        );
        r.register(
            "nearcache_pool_in_use_connections",
            "Shared connections with requests in flight plus dedicated ones held by a session",
            self.in_use.clone(),
        );
        r.register(
            "nearcache_pool_idle_connections",
            "Open upstream connections not in use",
            self.idle.clone(),
        );
        r.register(
            "nearcache_pool_wait_count",
            "Times a session waited for a dedicated connection",
            self.wait_count.clone(),
        );
        r.register(
            "nearcache_pool_wait_duration_seconds",
            "Total time sessions waited for a dedicated connection",
            self.wait_seconds.clone(),
        );
        r.register(
            "nearcache_pool_closed_connections",
            "Upstream connections closed by the pool, by reason",
            self.closed.clone(),
        );
    }

    pub(super) fn update(&self, s: &PoolStats) {
        self.max_open.set(s.max_open as i64);
        self.open.set(s.open as i64);
        self.in_use.set(s.in_use as i64);
        self.idle.set(s.idle as i64);
        advance(&self.wait_count, s.wait_count);
        let waited = s.wait_duration.as_secs_f64();
        let seen = self.wait_seconds.get();
        if waited > seen {
            self.wait_seconds.inc_by(waited - seen);
        }
        for (reason, n) in CloseReason::ALL.iter().zip(s.closed) {
            let c = self.closed.get_or_create(&ReasonLabel {
                reason: reason.label(),
            });
            advance(&c, n);
        }
    }
}

/// Moves a counter copied from elsewhere up to `to` (counters never go down).
pub(super) fn advance(counter: &Counter, to: u64) {
    let now = counter.get();
    if to > now {
        counter.inc_by(to - now);
    }
}
