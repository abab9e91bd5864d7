//! Observability: the metrics registry, per-command figures, the slow log, heap and CPU
//! profiles, sampled request traces, the dashboard, and the admin HTTP port that serves them.
//!
//! What runs per request is atomics only (see [`stats`] and [`trace::Tracer::sample`]);
//! everything else runs when an operator asks (a scrape, a profile, a capture). Nothing here
//! may panic on input from a client or an HTTP request, and nothing here keeps state outside
//! the proxy instance it belongs to (the profilers aside: jemalloc's heap profiler and the
//! SIGPROF CPU profiler exist once per process).

pub mod dashboard;
pub mod expose;
pub mod health;
pub mod heapdiff;
pub mod http;
pub mod metrics;
mod pool_figures;
pub mod process;
pub mod profile;
pub mod stats;
pub mod trace;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::command::CommandId;
use stats::{Outcome, Stamp};
use trace::Tracer;

/// Changes the log filter of the running process: the binary makes one from its subscriber's
/// reload handle and gives it to the proxy it starts (`NEARCACHE CONFIG SET log-level`, SIGHUP).
pub struct LogControl(Box<Reload>);

type Reload = dyn Fn(&str) -> Result<(), String> + Send + Sync;

impl LogControl {
    pub fn new(reload: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) -> Self {
        LogControl(Box::new(reload))
    }

    /// Puts `filter` in force.
    pub fn reload(&self, filter: &str) -> Result<(), String> {
        (self.0)(filter)
    }
}

/// Settings an operator may change while the proxy runs.
#[derive(Debug, Default)]
pub struct Live {
    /// Upstream commands slower than this are logged at WARN; 0 turns the slow log off.
    pub slowlog_threshold_ms: AtomicU64,
}

/// The process's resident set size in bytes, from `/proc/self/statm` (0 where unavailable).
pub fn rss_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // The page size is 4 KiB on every platform this proxy is built for except some arm64
    // kernels; AT_PAGESZ from the aux vector would be exact but needs libc.
    static SIZE: OnceLock<u64> = OnceLock::new();
    *SIZE.get_or_init(|| {
        std::fs::read_to_string("/proc/self/smaps")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("KernelPageSize:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(4096, |kb| kb * 1024)
    })
}

/// Opens a command's stamp: which command, when it arrived (`start`: when the read that
/// brought it returned, one clock reading for a whole pipeline), and whether a capture samples
/// it.
#[inline]
pub fn begin(
    tracer: &Arc<Tracer>,
    command: CommandId,
    read_at: Option<Instant>,
    start: Instant,
) -> Stamp {
    let trace = tracer
        .sample()
        .then(|| trace::RequestTrace::start(tracer, crate::command::name_of(command), read_at));
    Stamp {
        command,
        outcome: Outcome::Forwarded,
        start,
        timed: true,
        trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_rss() {
        assert!(rss_bytes() > 0);
    }
}
