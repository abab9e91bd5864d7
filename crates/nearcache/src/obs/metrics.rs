//! One proxy's counters and gauges, with the process's own figures, written as OpenMetrics
//! for the admin port (which also serves them in the Prometheus text format: `expose.rs`).
//!
//! Owns the registry. What the hot path touches are atomics; figures other parts keep (the
//! cache's, the pool's) are copied in at each scrape. Never holds a lock a request waits on
//! (the scrape lock serialises scrapes only).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::obs::pool_figures::{advance, NodeFigures, PoolFigures, ReasonLabel};
use crate::obs::process::ProcessCollector;
use crate::obs::stats::CommandStats;
use crate::obs::trace::Tracer;
use crate::obs::Live;
use crate::reply::UpstreamError;
use crate::upstream::PoolStats;

/// Why the whole cache was emptied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// Redis sent the null invalidation (FLUSHALL/FLUSHDB), or one went through the proxy.
    Flushall,
    /// The invalidation connection dropped: nothing cached is protected any more.
    InvalidationConnectionLost,
    /// An operator asked (`NEARCACHE FLUSH`).
    Admin,
    /// Redis's ACL changed (`ACL LIST` differs): a user's cached replies may be ones it can
    /// no longer read.
    AclChanged,
    /// A cluster slot changed owner (`MOVED`, a refreshed map): what the old owner's tracking
    /// protected may change unseen.
    SlotMoved,
}

impl FlushReason {
    /// The `reason` label of the flush counters.
    fn label(self) -> &'static str {
        match self {
            FlushReason::Flushall => "flushall",
            FlushReason::InvalidationConnectionLost => "invalidation_connection_lost",
            FlushReason::Admin => "admin",
            FlushReason::AclChanged => "acl_changed",
            FlushReason::SlotMoved => "slot_moved",
        }
    }
}

/// Why a read the cache could have answered went to Redis without looking: counted in
/// `nearcache_cache_bypass_total{reason}`, so that hits + misses + bypasses are every
/// cacheable read, and hits over that sum is the share of reads the cache spared Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// A write of the same session to one of its keys (or to keys not known exactly) was in
    /// flight: read-your-writes.
    WriteInFlight,
    /// Inside MULTI or under WATCH, on the session's dedicated connection.
    Transaction,
    /// The session holds a dedicated connection (SELECT n, AUTH, HELLO with AUTH, RESP3
    /// tracking, a blocking call): its reads never use the cache.
    Dedicated,
    /// The cache looked the read up, but its reply was larger than an entry may be: taken out
    /// of the misses, since it would miss again every time.
    TooLarge,
    /// The operator's rules (`cache_allow`/`cache_deny`, prefixes) leave it out.
    NotCacheable,
}

impl Bypass {
    pub const ALL: [Bypass; 5] = [
        Bypass::WriteInFlight,
        Bypass::Transaction,
        Bypass::Dedicated,
        Bypass::TooLarge,
        Bypass::NotCacheable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Bypass::WriteInFlight => "write_in_flight",
            Bypass::Transaction => "transaction",
            Bypass::Dedicated => "dedicated",
            Bypass::TooLarge => "too_large",
            Bypass::NotCacheable => "not_cacheable",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabel {
    size_bytes: u64,
}

/// Figures the cache keeps itself, copied into the registry at each scrape.
#[derive(Default)]
struct CacheFigures {
    hits: Counter,
    misses: Counter,
    evictions: Counter,
    expirations: Counter,
    stale_fills: Counter,
    invalidations: Counter,
    unmatched: Counter,
    collapsed: Counter,
    bytes: Gauge,
    entries: Gauge,
    max_bytes: Gauge,
    mrc: Family<SizeLabel, Gauge<f64, AtomicU64>>,
}

/// The proxy's metrics. Cheap to update from any task (atomics).
pub struct Metrics {
    registry: Registry,
    /// Commands received from clients.
    pub commands: Counter,
    /// Client connections accepted.
    pub connections: Counter,
    /// Client connections open now.
    pub clients: Gauge,
    /// Sessions holding a dedicated upstream connection now.
    pub pinned: Gauge,
    /// Shared connections whose tracking was lost (closed, killed, redirect broken).
    pub connection_lost: Counter,
    flushes: Family<ReasonLabel, Counter>,
    node_drops: Family<ReasonLabel, Counter>,
    /// Cacheable reads that did not look the cache up, by [`Bypass`] reason (in that order).
    /// `too_large`'s is moved over from the misses at each scrape (see [`Metrics::render`]).
    bypass: [Counter; 5],
    /// Reads whose reply proved too large to cache, as counted (each was a miss first).
    too_large: AtomicU64,
    cache: CacheFigures,
    pool: PoolFigures,
    nodes: NodeFigures,
    alive_tasks: Gauge,
    /// Commands by name and outcome, latency by outcome.
    pub cmd: Arc<CommandStats>,
    /// Bytes read from and written to clients.
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// Upstream failures seen by clients, by kind.
    upstream_errors: Family<KindLabel, Counter>,
    upstream_reconnects: Counter,
    rss: Gauge,
    max_memory: AtomicU64,
    /// When the proxy started.
    pub started: Instant,
    /// Settings that change while the proxy runs.
    pub live: Live,
    /// Sampled request traces.
    pub tracer: Arc<Tracer>,
    /// Serialises scrapes so the copied counters advance exactly once per change.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::default();
        // The family's counters are kept at hand as well: looking one up takes the family's
        // lock, and a bypass is on the request path.
        let bypass = Family::<ReasonLabel, Counter>::default();
        let bypass_counters =
            Bypass::ALL.map(|b| bypass.get_or_create_owned(&ReasonLabel { reason: b.label() }));
        let m = Metrics {
            commands: Counter::default(),
            connections: Counter::default(),
            clients: Gauge::default(),
            pinned: Gauge::default(),
            connection_lost: Counter::default(),
            flushes: Family::default(),
            node_drops: Family::default(),
            bypass: bypass_counters,
            too_large: AtomicU64::new(0),
            cache: CacheFigures::default(),
            pool: PoolFigures::default(),
            nodes: NodeFigures::default(),
            alive_tasks: Gauge::default(),
            cmd: Arc::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            upstream_errors: Family::default(),
            upstream_reconnects: Counter::default(),
            rss: Gauge::default(),
            max_memory: AtomicU64::new(0),
            started: Instant::now(),
            live: Live::default(),
            tracer: Arc::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        r.register(
            "nearcache_commands",
            "Commands received from clients",
            m.commands.clone(),
        );
        r.register(
            "nearcache_client_connections",
            "Client connections accepted",
            m.connections.clone(),
        );
        r.register(
            "nearcache_connected_clients",
            "Client connections open now",
            m.clients.clone(),
        );
        r.register(
            "nearcache_pinned_sessions",
            "Client sessions holding a dedicated upstream connection",
            m.pinned.clone(),
        );
        r.register(
            "nearcache_tracking_connections_lost",
            "Shared upstream connections whose tracking was lost; their entries were dropped",
            m.connection_lost.clone(),
        );
        r.register(
            "nearcache_cache_flushes",
            "Whole-cache flushes by reason",
            m.flushes.clone(),
        );
        r.register(
            "nearcache_cache_node_drops",
            "Drops of what one cluster node protected (not the whole cache), by reason",
            m.node_drops.clone(),
        );
        r.register_collector(Box::new(m.cmd.clone()));
        r.register(
            "nearcache_client_bytes_received",
            "Bytes read from clients",
            m.bytes_in.clone(),
        );
        r.register(
            "nearcache_client_bytes_sent",
            "Bytes written to clients",
            m.bytes_out.clone(),
        );
        r.register(
            "nearcache_upstream_errors",
            "Upstream failures answered to clients, by kind",
            m.upstream_errors.clone(),
        );
        r.register(
            "nearcache_upstream_reconnects",
            "Shared upstream connections re-established after a loss",
            m.upstream_reconnects.clone(),
        );
        r.register(
            "nearcache_process_resident_memory_bytes",
            "Resident set size of the process (from /proc/self/statm)",
            m.rss.clone(),
        );
        let c = &m.cache;
        r.register(
            "nearcache_cache_hits",
            "Reads answered from the cache",
            c.hits.clone(),
        );
        r.register(
            "nearcache_cache_misses",
            "Cacheable reads not found in the cache (but for those counted as bypass too_large)",
            c.misses.clone(),
        );
        r.register(
            "nearcache_cache_bypass",
            "Cacheable reads sent to Redis without looking the cache up, by reason (per key for MGET)",
            bypass,
        );
        r.register(
            "nearcache_cache_evictions",
            "Entries evicted to stay under the memory cap",
            c.evictions.clone(),
        );
        r.register(
            "nearcache_cache_expirations",
            "Entries dropped at their TTL",
            c.expirations.clone(),
        );
        r.register(
            "nearcache_cache_stale_fills",
            "Replies not cached because an invalidation raced with the read",
            c.stale_fills.clone(),
        );
        r.register(
            "nearcache_invalidations",
            "Keys invalidated by Redis",
            c.invalidations.clone(),
        );
        r.register(
            "nearcache_invalidations_unmatched",
            "Invalidated keys that matched no entry (e.g. tracking-table-max-keys)",
            c.unmatched.clone(),
        );
        r.register(
            "nearcache_cache_collapsed_misses",
            "Misses that joined a read of the same entry already in flight",
            c.collapsed.clone(),
        );
        r.register(
            "nearcache_cache_bytes",
            "Bytes the cache accounts for",
            c.bytes.clone(),
        );
        r.register(
            "nearcache_cache_entries",
            "Entries in the cache",
            c.entries.clone(),
        );
        r.register(
            "nearcache_max_memory_bytes",
            "The cache's memory cap",
            c.max_bytes.clone(),
        );
        r.register(
            "nearcache_cache_mrc_hit_ratio",
            "Hit ratio an LRU cache of size_bytes would have, estimated from sampled lookups",
            c.mrc.clone(),
        );
        m.pool.register(&mut r);
        m.nodes.register(&mut r);
        r.register(
            "nearcache_runtime_alive_tasks",
            "Tokio tasks alive (sessions, connections, fills in flight); flat when nothing leaks",
            m.alive_tasks.clone(),
        );
        r.register_collector(Box::new(ProcessCollector));
        Metrics { registry: r, ..m }
    }
}

/// Cache figures at one moment, as the cache layer reports them.
pub struct CacheSnapshot {
    pub stats: cache::CacheStats,
    pub invalidated_keys: u64,
    pub unmatched_keys: u64,
    pub collapsed: u64,
    /// The estimated LRU hit ratio by cache size (bytes); empty before any estimate.
    pub mrc: Vec<(u64, f64)>,
}

impl Metrics {
    /// Counts `reads` cacheable reads (an MGET's keys each) that did not look the cache up.
    pub fn bypass(&self, reason: Bypass, reads: u64) {
        match reason {
            Bypass::TooLarge => {
                self.too_large.fetch_add(reads, Ordering::Relaxed);
            }
            _ => {
                self.bypass[reason as usize].inc_by(reads);
            }
        }
    }

    /// Cacheable reads that bypassed the cache for `reason` so far.
    pub fn bypassed(&self, reason: Bypass) -> u64 {
        match reason {
            Bypass::TooLarge => self.too_large.load(Ordering::Relaxed),
            _ => self.bypass[reason as usize].get(),
        }
    }

    /// Counts a whole-cache flush.
    pub fn flush(&self, reason: FlushReason) {
        let reason = reason.label();
        self.flushes.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a drop of one cluster node's entries.
    pub fn node_drop(&self, reason: FlushReason) {
        let reason = reason.label();
        self.node_drops.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts an upstream failure a client was answered with.
    pub fn upstream_error(&self, e: &UpstreamError) {
        let kind = match e {
            UpstreamError::Unavailable { .. } => "unavailable",
            UpstreamError::Lost { .. } => "lost",
            UpstreamError::Closed { .. } => "closed",
            UpstreamError::Protocol { .. } => "protocol",
            UpstreamError::Timeout { .. } => "timeout",
        };
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// Upstream failures of every kind so far.
    pub fn upstream_error_count(&self) -> u64 {
        ["unavailable", "lost", "closed", "protocol", "timeout"]
            .into_iter()
            .map(|kind| {
                self.upstream_errors
                    .get_or_create(&KindLabel { kind })
                    .get()
            })
            .sum()
    }

    /// Records the cache's memory cap (0: caching off).
    pub fn set_max_memory(&self, bytes: u64) {
        self.max_memory.store(bytes, Ordering::Relaxed);
    }

    /// The cache's memory cap (0: caching off).
    pub fn max_memory(&self) -> u64 {
        self.max_memory.load(Ordering::Relaxed)
    }

    /// The metrics in the OpenMetrics text format; `nodes`: each cluster master's pool figures
    /// (empty with one Redis), `pool` then their sum.
    pub fn render(
        &self,
        cache: Option<CacheSnapshot>,
        pool: &PoolStats,
        nodes: &[(String, PoolStats)],
    ) -> String {
        let _guard = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.pool.update(pool);
        self.nodes.update(nodes);
        advance(&self.upstream_reconnects, pool.reconnects);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.alive_tasks.set(rt.metrics().num_alive_tasks() as i64);
        }
        if let Some(s) = cache {
            let c = &self.cache;
            advance(&c.hits, s.stats.hits);
            // A read whose reply proved too large was a miss first: it is moved from the misses
            // to the bypasses, so that every read counts once. Both counters only grow, and they
            // always sum to the cache's misses: a read found too large after a scrape counted it
            // as a miss moves over only as later misses make room.
            let (misses, too_large) = (s.stats.misses, self.too_large.load(Ordering::Relaxed));
            advance(&c.misses, misses.saturating_sub(too_large));
            let moved = &self.bypass[Bypass::TooLarge as usize];
            advance(moved, misses.saturating_sub(c.misses.get()));
            advance(&c.evictions, s.stats.evictions);
            advance(&c.expirations, s.stats.expirations);
            advance(&c.stale_fills, s.stats.stale_fills);
            advance(&c.invalidations, s.invalidated_keys);
            advance(&c.unmatched, s.unmatched_keys);
            advance(&c.collapsed, s.collapsed);
            c.bytes.set(s.stats.bytes as i64);
            c.entries.set(s.stats.entries as i64);
            c.max_bytes.set(s.stats.max_bytes as i64);
            // The sizes follow the cache's: none is left over from another.
            c.mrc.clear();
            for &(size_bytes, ratio) in &s.mrc {
                c.mrc.get_or_create(&SizeLabel { size_bytes }).set(ratio);
            }
        }
        self.rss.set(crate::obs::rss_bytes() as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
