//! The standard process metrics every Prometheus client library exports (CPU seconds, open and
//! maximum file descriptors, start time, resident and virtual memory), read from `/proc` by the
//! `procfs` crate at each scrape, and `nearcache_build_info{version,commit}`.
//!
//! Owns reading the process's own figures; never keeps them between scrapes, and a figure
//! `/proc` cannot give (another OS, a restricted container) is left out of the scrape rather
//! than reported as 0.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The commit the binary was built from (`build.rs`), `unknown` outside a git checkout.
pub const COMMIT: &str = env!("NEARCACHE_COMMIT");

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Writes the process metrics and the build info at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// The process's figures at one moment; each is `None` when `/proc` did not give it.
#[derive(Debug, Default)]
struct Figures {
    cpu_seconds: Option<f64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
    start_time_seconds: Option<i64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
}

fn figures() -> Figures {
    let Ok(me) = procfs::process::Process::myself() else {
        return Figures::default();
    };
    let mut f = Figures {
        open_fds: me.fd_count().ok().map(|n| n as i64),
        ..Figures::default()
    };
    if let Ok(limits) = me.limits() {
        f.max_fds = match limits.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(n) => i64::try_from(n).ok(),
            procfs::process::LimitValue::Unlimited => None,
        };
    }
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        if ticks > 0.0 {
            f.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
            f.start_time_seconds = procfs::boot_time_secs()
                .ok()
                .map(|boot| boot as i64 + (stat.starttime as f64 / ticks) as i64);
        }
        f.virtual_bytes = i64::try_from(stat.vsize).ok();
        f.resident_bytes = i64::try_from(stat.rss.saturating_mul(procfs::page_size())).ok();
    }
    f
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<i64>,
) -> Result<(), std::fmt::Error> {
    let Some(v) = value else { return Ok(()) };
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(metric)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = figures();
        if let Some(cpu) = f.cpu_seconds {
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(metric)?;
        }
        let e = &mut encoder;
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors",
            f.open_fds,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors",
            f.max_fds,
        )?;
        gauge(
            e,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            f.start_time_seconds,
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            f.resident_bytes,
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            f.virtual_bytes,
        )?;
        let mut family = encoder.encode_descriptor(
            "nearcache_build_info",
            "The running build: its version and the commit it was built from (value 1)",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", VERSION), ("commit", COMMIT)];
        ConstGauge::new(1_i64).encode(family.encode_family(&labels)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_figures() {
        let f = figures();
        assert!(f.cpu_seconds.is_some_and(|s| s >= 0.0));
        assert!(f.open_fds.is_some_and(|n| n > 0));
        assert!(f.max_fds.is_some_and(|n| n > 0));
        assert!(f.resident_bytes.is_some_and(|n| n > 0));
        assert!(f.virtual_bytes.unwrap_or(0) >= f.resident_bytes.unwrap_or(0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let start = f.start_time_seconds.unwrap();
        assert!(start <= now + 1 && start > now - 86_400 * 365, "{start}");
    }
}
