//! Per-command figures: counts by command name and outcome, and latency histograms by outcome.
//!
//! The hot path touches only atomics: a command is counted under its [`CommandId`], its place in
//! the command table, so the label set stays bounded whatever clients send; names outside the
//! table are counted as `OTHER`. The registry reads the atomics at scrape time through a
//! [`Collector`], nothing is copied per request.
//! Never allocates or locks on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use crate::command::{self, CommandId};
use crate::obs::trace::Phase;

/// How a command was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// From the proxy's cache.
    Hit = 0,
    /// A cacheable read that went to Redis.
    Miss = 1,
    /// Sent to Redis as it is (not cacheable).
    Forwarded = 2,
    /// Answered with an error reply (Redis's or the proxy's).
    Error = 3,
    /// Answered by the proxy itself (QUIT, NEARCACHE, ...).
    Local = 4,
}

const OUTCOMES: [&str; 5] = ["hit", "miss", "forwarded", "error", "local"];

/// Upper bounds of the latency buckets, in seconds (the last bucket is `+Inf`).
pub const BOUNDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// A latency histogram of atomics.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS.partition_point(|b| *b < secs);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    fn counts(&self) -> [u64; BOUNDS.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

/// Counts by command and outcome, latency by outcome.
pub struct CommandStats {
    counts: Box<[[AtomicU64; 5]]>,
    latency: [Histogram; 5],
}

impl std::fmt::Debug for CommandStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommandStats")
    }
}

impl Default for CommandStats {
    fn default() -> Self {
        // One row per command of the table, and one for `OTHER`.
        CommandStats {
            counts: (0..=command::count()).map(|_| Default::default()).collect(),
            latency: Default::default(),
        }
    }
}

impl CommandStats {
    /// Counts one answered command.
    pub fn record(&self, id: CommandId, outcome: Outcome, took: Option<Duration>) {
        let o = outcome as usize;
        self.row(id)[o].fetch_add(1, Ordering::Relaxed);
        if let Some(took) = took {
            self.latency[o].observe(took);
        }
    }

    /// The counts of a command: its own row, or the last (`OTHER`).
    fn row(&self, id: CommandId) -> &[AtomicU64; 5] {
        let last = self.counts.len() - 1;
        &self.counts[usize::from(id).min(last)]
    }

    /// Answered commands by outcome, summed over names.
    pub fn by_outcome(&self) -> [u64; 5] {
        std::array::from_fn(|o| {
            self.counts
                .iter()
                .map(|row| row[o].load(Ordering::Relaxed))
                .sum()
        })
    }

    /// The latency below which `q` (0..1) of the commands answered so far fell, in seconds,
    /// from the merged histogram (the bucket's upper bound); `None` before any command.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        let mut merged = [0u64; BOUNDS.len() + 1];
        for h in &self.latency {
            for (m, c) in merged.iter_mut().zip(h.counts()) {
                *m += c;
            }
        }
        quantile(&merged, q)
    }

    /// The merged bucket counts (non-cumulative), for rate-based quantiles.
    pub fn merged_buckets(&self) -> Vec<u64> {
        let mut merged = vec![0u64; BOUNDS.len() + 1];
        for h in &self.latency {
            for (m, c) in merged.iter_mut().zip(h.counts()) {
                *m += c;
            }
        }
        merged
    }

    /// Commands answered per name, for `NEARCACHE INFO` (names with a count only).
    pub fn per_name(&self) -> Vec<(&'static str, [u64; 5])> {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(i, row)| {
                let counts: [u64; 5] = std::array::from_fn(|o| row[o].load(Ordering::Relaxed));
                (counts.iter().sum::<u64>() > 0).then(|| (row_name(i), counts))
            })
            .collect()
    }
}

/// The label of a row of counts.
fn row_name(i: usize) -> &'static str {
    command::name_of(CommandId::try_from(i).unwrap_or(CommandId::MAX))
}

/// The upper bound (seconds) of the bucket holding quantile `q` of `counts` (`BOUNDS` order).
pub fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(BOUNDS.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    Some(f64::INFINITY)
}

impl Collector for CommandStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "nearcache_commands_by_outcome",
            "Commands answered, by command name (unknown names: OTHER) and outcome",
            None,
            MetricType::Counter,
        )?;
        for (i, row) in self.counts.iter().enumerate() {
            for (o, outcome) in OUTCOMES.iter().enumerate() {
                let n = row[o].load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let labels = [("command", row_name(i)), ("outcome", outcome)];
                let metric = family.encode_family(&labels)?;
                ConstCounter::new(n).encode(metric)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "nearcache_command_duration_seconds",
            "Time from a command's arrival to its reply being ready for the client, by outcome",
            None,
            MetricType::Histogram,
        )?;
        for (o, outcome) in OUTCOMES.iter().enumerate() {
            let h = &self.latency[o];
            let counts = h.counts();
            let count: u64 = counts.iter().sum();
            let buckets: Vec<(f64, u64)> = BOUNDS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(counts)
                .collect();
            let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let labels = [("outcome", *outcome)];
            family
                .encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
        }
        Ok(())
    }
}

/// A command's arrival, carried with it until its reply is ready.
#[derive(Debug)]
pub struct Stamp {
    pub command: CommandId,
    pub outcome: Outcome,
    pub start: Instant,
    /// False when the reply is not one-to-one with the command (relayed): counted, not timed.
    pub timed: bool,
    /// The sampled request's trace spans, when a trace capture picked it.
    pub trace: Option<Box<crate::obs::trace::RequestTrace>>,
}

/// What the session notes on the command it is handling (a no-op without a stamp).
pub trait StampExt {
    /// How the command is being answered.
    fn mark(&mut self, outcome: Outcome);
    /// The command went to Redis: its `upstream` phase starts (when sampled).
    fn sent_upstream(&mut self);
    /// The command's replies are relayed, not matched one-to-one: count it, do not time it.
    fn untimed(&mut self);
    /// A phase to hold while it lasts (when sampled).
    fn phase(&self, name: &'static str) -> Option<Phase>;
}

impl StampExt for Option<Stamp> {
    fn mark(&mut self, outcome: Outcome) {
        if let Some(s) = self {
            s.outcome = outcome;
        }
    }

    fn sent_upstream(&mut self) {
        if let Some(t) = self.as_mut().and_then(|s| s.trace.as_mut()) {
            t.upstream = Some(t.phase("upstream"));
        }
    }

    fn untimed(&mut self) {
        if let Some(s) = self {
            s.timed = false;
        }
    }

    fn phase(&self, name: &'static str) -> Option<Phase> {
        self.as_ref()?.trace.as_ref().map(|t| t.phase(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &[u8]) -> CommandId {
        command::lookup(name).id
    }

    #[test]
    fn unknown_names_are_counted_as_other() {
        let s = CommandStats::default();
        for name in [
            &b"get"[..],
            b"ZsCoRe",
            b"NOSUCHCOMMAND",
            b"\xff\x00",
            b"get",
        ] {
            s.record(id(name), Outcome::Forwarded, None);
        }
        let names: Vec<_> = s.per_name().into_iter().map(|(n, c)| (n, c[2])).collect();
        assert_eq!(names, vec![("GET", 2), ("ZSCORE", 1), ("OTHER", 2)]);
    }

    #[test]
    fn histogram_quantiles_come_from_bucket_bounds() {
        let s = CommandStats::default();
        assert_eq!(s.quantile_upper_bound(0.99), None);
        for _ in 0..99 {
            s.record(id(b"GET"), Outcome::Hit, Some(Duration::from_micros(30)));
        }
        s.record(id(b"GET"), Outcome::Miss, Some(Duration::from_millis(3)));
        assert_eq!(s.quantile_upper_bound(0.5), Some(0.000_05));
        assert_eq!(s.quantile_upper_bound(1.0), Some(0.005));
        assert_eq!(s.by_outcome(), [99, 1, 0, 0, 0]);
    }
}
