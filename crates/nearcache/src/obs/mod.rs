//! Observability: the metrics registry, per-command figures, the slow log, heap and CPU
//! profiles, sampled request traces, the dashboard, and the admin HTTP port that serves them.
//!
//! What runs per request is atomics only (see [`stats`] and [`trace::Tracer::sample`]); everything else
//! runs when an operator asks (a scrape, a profile, a capture). Nothing here may panic on input
//! from a client or an HTTP request.

pub mod dashboard;
pub mod heapdiff;
pub mod http;
pub mod metrics;
pub mod profile;
pub mod stats;
pub mod trace;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::command::CommandId;
use stats::{Outcome, Stamp};
use trace::Tracer;

/// Changes the log filter of the running process (installed by the binary).
pub type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static LOG_RELOADER: OnceLock<LogReloader> = OnceLock::new();
static LOG_LEVEL: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Lets `NEARCACHE CONFIG SET log-level` change the filter; `initial` is the filter in force.
pub fn set_log_reloader(initial: &str, reload: LogReloader) {
    *LOG_LEVEL.lock().unwrap_or_else(|p| p.into_inner()) = initial.to_string();
    let _ = LOG_RELOADER.set(reload);
}

/// The log filter in force, if the binary installed a reloader.
pub fn log_level() -> Option<String> {
    LOG_RELOADER.get()?;
    Some(LOG_LEVEL.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

/// Sets the log filter; an error when it does not parse or the process cannot change it.
pub fn set_log_level(filter: &str) -> Result<(), String> {
    let reload = LOG_RELOADER
        .get()
        .ok_or("log-level cannot change in this process (no reloadable logger)")?;
    reload(filter)?;
    *LOG_LEVEL.lock().unwrap_or_else(|p| p.into_inner()) = filter.to_string();
    Ok(())
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

    #[test]
    fn log_level_needs_a_reloader() {
        assert!(log_level().is_none());
        assert!(set_log_level("debug").is_err());
    }
}
