//! `NEARCACHE ...` on the RESP port, so redis-cli users need no HTTP:
//! - `NEARCACHE INFO`: proxy, memory, cache, pool and command figures as INFO-like lines;
//! - `NEARCACHE FLUSH`: empties the proxy's cache (never Redis);
//! - `NEARCACHE CONFIG GET <pattern>` / `NEARCACHE CONFIG SET <name> <value>`: the settings,
//!   by their dashed names; live ones change at once (through `control.rs`, as SIGHUP does).
//!
//! Every malformed request gets an error reply; nothing here panics on client input. Never
//! shows a secret.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

use crate::cachelayer::{CacheLayer, MRC_MULTIPLES};
use crate::config::{Config, SETTINGS};
use crate::control::Control;
use crate::obs::metrics::{Bypass, FlushReason, Metrics};
use crate::obs::profile;
use crate::obs::stats::Outcome;
use crate::reply;
use crate::upstream::PoolStats;

/// A `NEARCACHE` request, as read from its arguments.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Info,
    Flush,
    Help,
    ConfigGet(String),
    ConfigSet(String, String),
    /// Malformed: the error to reply with.
    Bad(&'static str),
}

fn read(args: &[Bytes]) -> Request {
    let upper = |i: usize| args.get(i).map(|a| a.to_ascii_uppercase());
    let text = |i: usize| String::from_utf8_lossy(&args[i]).into_owned();
    match (upper(1).as_deref(), upper(2).as_deref(), args.len()) {
        (Some(b"INFO"), _, 2) => Request::Info,
        (Some(b"FLUSH"), _, 2) => Request::Flush,
        (Some(b"HELP"), _, 2) => Request::Help,
        (Some(b"CONFIG"), Some(b"GET"), 4) => Request::ConfigGet(text(3).to_ascii_lowercase()),
        (Some(b"CONFIG"), Some(b"SET"), 5) => {
            Request::ConfigSet(text(3), text(4).trim().to_string())
        }
        (Some(b"CONFIG"), ..) => Request::Bad(
            "ERR nearcache: use NEARCACHE CONFIG GET <pattern> or NEARCACHE CONFIG SET <name> <value>",
        ),
        _ => Request::Bad(
            "ERR nearcache: unknown subcommand or wrong number of arguments; try NEARCACHE HELP",
        ),
    }
}

/// The `nearcache|sub` name of a request that changes the proxy (`FLUSH`, `CONFIG SET`), which
/// only an administrator may send; `None` for the others (figures, settings' values, help).
pub fn changes_proxy(args: &[Bytes]) -> Option<&'static str> {
    match read(args) {
        Request::Flush => Some("nearcache|flush"),
        Request::ConfigSet(..) => Some("nearcache|config|set"),
        _ => None,
    }
}

/// Answers one `NEARCACHE` command (`args[0]` is `NEARCACHE`).
pub async fn answer(
    args: &[Bytes],
    proto: u8,
    control: &Control,
    cache: Option<&CacheLayer>,
) -> Bytes {
    match read(args) {
        Request::Info => {
            let mut text = info(control.metrics(), cache, &control.pool().stats()).await;
            if let Some(nodes) = control.cluster() {
                text.push_str(&nodes.info());
            }
            reply::bulk(text.as_bytes())
        }
        Request::Flush => {
            if let Some(c) = cache {
                c.flush(FlushReason::Admin);
            }
            reply::simple("OK")
        }
        Request::Help => help(),
        Request::ConfigGet(pattern) => pairs_reply(&config_get(&pattern, &control.config()), proto),
        Request::ConfigSet(name, value) => match control.set(&name, &value).await {
            Ok(()) => reply::simple("OK"),
            Err(e) => reply::error(&format!("ERR nearcache: {e}")),
        },
        Request::Bad(msg) => reply::error(msg),
    }
}

fn help() -> Bytes {
    let lines = [
        "NEARCACHE INFO -- proxy, memory, cache, pool and command figures",
        "NEARCACHE FLUSH -- empty the proxy's cache (Redis is not touched)",
        "NEARCACHE CONFIG GET <pattern> -- settings matching a glob (* for all)",
        "NEARCACHE CONFIG SET <name> <value> -- change a live setting",
    ];
    let mut out = BytesMut::new();
    let _ = write!(Writer(&mut out), "*{}\r\n", lines.len());
    for l in lines {
        let _ = write!(Writer(&mut out), "+{l}\r\n");
    }
    out.freeze()
}

/// The settings whose dashed names match `pattern`, with their values (secrets masked).
fn config_get(pattern: &str, config: &Config) -> Vec<(String, String)> {
    SETTINGS
        .iter()
        .map(|s| (s.dashed(), s))
        .filter(|(name, _)| glob(pattern.as_bytes(), name.as_bytes()))
        .map(|(name, s)| (name, s.show(config)))
        .collect()
}

/// Glob match with `*` and `?`, as CONFIG GET patterns.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

fn pairs_reply(pairs: &[(String, String)], proto: u8) -> Bytes {
    let mut out = BytesMut::new();
    if proto >= 3 {
        let _ = write!(Writer(&mut out), "%{}\r\n", pairs.len());
    } else {
        let _ = write!(Writer(&mut out), "*{}\r\n", pairs.len() * 2);
    }
    for (k, v) in pairs {
        out.put_slice(&reply::bulk(k.as_bytes()));
        out.put_slice(&reply::bulk(v.as_bytes()));
    }
    out.freeze()
}

struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// The sampled miss-ratio curve: its sample, and the estimated LRU hit ratio at each of
/// [`MRC_MULTIPLES`] of the cache's size (`mrc_hit_ratio_<multiple>x`, absent before any).
fn mrc_lines(w: &mut String, c: &CacheLayer) {
    let sample = c.mrc_summary();
    let _ = writeln!(w, "mrc_sampled_keys:{}\r", sample.keys);
    let _ = writeln!(w, "mrc_sample_max_keys:{}\r", sample.max_keys);
    let _ = writeln!(w, "mrc_sample_rate:{:.6}\r", sample.rate);
    let _ = writeln!(w, "mrc_sampled_lookups:{:.0}\r", sample.lookups);
    let max = c.stats().max_bytes as f64;
    let sizes: Vec<u64> = MRC_MULTIPLES.iter().map(|m| (m * max) as u64).collect();
    for (m, r) in MRC_MULTIPLES
        .iter()
        .zip(c.mrc_curve(&sizes).unwrap_or_default())
    {
        let _ = writeln!(w, "mrc_hit_ratio_{m}x:{r:.4}\r");
    }
}

/// The `NEARCACHE INFO` text.
pub async fn info(metrics: &Metrics, cache: Option<&CacheLayer>, pool: &PoolStats) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Proxy\r");
    let _ = writeln!(w, "nearcache_version:{}\r", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(w, "process_id:{}\r", std::process::id());
    let _ = writeln!(
        w,
        "uptime_in_seconds:{}\r",
        metrics.started.elapsed().as_secs()
    );
    let _ = writeln!(w, "connected_clients:{}\r", metrics.clients.get());
    let _ = writeln!(
        w,
        "total_connections_received:{}\r",
        metrics.connections.get()
    );
    let _ = writeln!(w, "total_commands_processed:{}\r", metrics.commands.get());
    let _ = writeln!(w, "pinned_sessions:{}\r", metrics.pinned.get());
    let _ = writeln!(w, "client_bytes_received:{}\r", metrics.bytes_in.get());
    let _ = writeln!(w, "client_bytes_sent:{}\r", metrics.bytes_out.get());
    let _ = writeln!(w, "\r\n# Memory\r");
    let rss = crate::obs::rss_bytes();
    let _ = writeln!(w, "used_memory_rss:{rss}\r");
    let _ = writeln!(w, "maxmemory:{}\r", metrics.max_memory());
    let heap = match profile::heap_profiling_state().await {
        Some(true) => "on",
        Some(false) => "off",
        None => "unavailable",
    };
    let _ = writeln!(w, "heap_profiling:{heap}\r");
    let _ = writeln!(w, "\r\n# Cache\r");
    match cache {
        Some(c) => {
            let st = c.stats();
            let lookups = st.hits + st.misses;
            let ratio = if lookups == 0 {
                0.0
            } else {
                st.hits as f64 / lookups as f64
            };
            let _ = writeln!(w, "cache_enabled:1\r");
            let _ = writeln!(w, "cache_bytes:{}\r", st.bytes);
            let _ = writeln!(w, "cache_max_bytes:{}\r", st.max_bytes);
            let _ = writeln!(w, "cache_entries:{}\r", st.entries);
            let _ = writeln!(w, "cache_hits:{}\r", st.hits);
            let _ = writeln!(w, "cache_misses:{}\r", st.misses);
            let _ = writeln!(w, "cache_hit_ratio:{ratio:.4}\r");
            let _ = writeln!(w, "cache_evictions:{}\r", st.evictions);
            let _ = writeln!(w, "cache_expirations:{}\r", st.expirations);
            let _ = writeln!(
                w,
                "invalidated_keys:{}\r",
                c.invalidated_keys.load(Ordering::Relaxed)
            );
            let _ = writeln!(w, "collapsed_misses:{}\r", c.collapsed());
            // Misses that sent no PTTL, their key known to have no expiry (cachelayer/untimed.rs).
            let skipped = c.pttl_skipped.load(Ordering::Relaxed);
            let _ = writeln!(w, "pttl_skipped:{skipped}\r");
            let _ = writeln!(w, "untimed_table_bytes:{}\r", c.untimed_bytes());
            // Reads that did not look the cache up; a too-large one was a miss first.
            let mut bypassed = 0;
            for reason in Bypass::ALL {
                let n = metrics.bypassed(reason);
                let _ = writeln!(w, "cache_bypass_{}:{n}\r", reason.label());
                if reason != Bypass::TooLarge {
                    bypassed += n;
                }
            }
            let reads = lookups + bypassed;
            let offload = if reads == 0 {
                0.0
            } else {
                st.hits as f64 / reads as f64
            };
            let _ = writeln!(w, "cache_offload_ratio:{offload:.4}\r");
            mrc_lines(w, c);
        }
        None => {
            let _ = writeln!(w, "cache_enabled:0\r");
        }
    }
    let _ = writeln!(w, "\r\n# Pool\r");
    let _ = writeln!(w, "pool_max_open_connections:{}\r", pool.max_open);
    let _ = writeln!(w, "pool_open_connections:{}\r", pool.open);
    let _ = writeln!(w, "pool_in_use_connections:{}\r", pool.in_use);
    let _ = writeln!(w, "pool_idle_connections:{}\r", pool.idle);
    let _ = writeln!(w, "pool_wait_count:{}\r", pool.wait_count);
    let wait_ms = pool.wait_duration.as_millis();
    let _ = writeln!(w, "pool_wait_duration_ms:{wait_ms}\r");
    let _ = writeln!(w, "upstream_reconnects:{}\r", pool.reconnects);
    let _ = writeln!(w, "upstream_errors:{}\r", metrics.upstream_error_count());
    let _ = writeln!(w, "\r\n# Latency\r");
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        let v = metrics
            .cmd
            .quantile_upper_bound(q)
            .map_or_else(|| "n/a".to_string(), |s| format!("{:.3}", s * 1000.0));
        let _ = writeln!(w, "latency_{name}_le_ms:{v}\r");
    }
    let _ = writeln!(w, "\r\n# Commandstats\r");
    let outcomes = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Forwarded,
        Outcome::Error,
        Outcome::Local,
    ];
    for (name, counts) in metrics.cmd.per_name() {
        let _ = write!(w, "cmd_{}:", name.to_ascii_lowercase());
        for (i, o) in outcomes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(w, "{sep}{}={}", outcome_name(*o), counts[*o as usize]);
        }
        let _ = writeln!(w, "\r");
    }
    s
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Hit => "hit",
        Outcome::Miss => "miss",
        Outcome::Forwarded => "forwarded",
        Outcome::Error => "error",
        Outcome::Local => "local",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Vec<Bytes> {
        s.split_whitespace()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn globs_like_config_get() {
        assert!(glob(b"*", b"log-level"));
        assert!(glob(b"slow*", b"slowlog-threshold"));
        assert!(glob(b"log-leve?", b"log-level"));
        assert!(!glob(b"log", b"log-level"));
    }

    #[test]
    fn reads_requests_and_refuses_malformed_ones() {
        assert_eq!(read(&cmd("nearcache info")), Request::Info);
        assert_eq!(read(&cmd("NEARCACHE flush")), Request::Flush);
        assert_eq!(
            read(&cmd("NEARCACHE CONFIG GET Slow*")),
            Request::ConfigGet("slow*".into())
        );
        assert_eq!(
            read(&cmd("nearcache config set max-clients 5")),
            Request::ConfigSet("max-clients".into(), "5".into())
        );
        for c in [
            "NEARCACHE",
            "NEARCACHE BOGUS",
            "NEARCACHE INFO extra",
            "NEARCACHE CONFIG",
            "NEARCACHE CONFIG GET",
            "NEARCACHE CONFIG SET x",
        ] {
            assert!(matches!(read(&cmd(c)), Request::Bad(_)), "{c}");
        }
    }

    #[test]
    fn config_get_lists_settings_by_dashed_name_with_secrets_masked() {
        let mut config = Config::default();
        config.set("slowlog-threshold", "25ms").unwrap();
        config.set("upstream-password", "hunter2").unwrap();
        let pairs = config_get("slowlog*", &config);
        assert_eq!(
            pairs,
            [("slowlog-threshold".to_string(), "25ms".to_string())]
        );
        assert_eq!(
            &pairs_reply(&pairs, 2)[..],
            b"*2\r\n$17\r\nslowlog-threshold\r\n$4\r\n25ms\r\n"
        );
        assert!(pairs_reply(&pairs, 3).starts_with(b"%1\r\n"));
        let all = config_get("*", &config);
        assert_eq!(all.len(), SETTINGS.len());
        assert!(all.contains(&("upstream-password".into(), "********".into())));
    }

    #[tokio::test]
    async fn info_is_a_bulk_string_of_fields() {
        let text = info(&Metrics::default(), None, &PoolStats::default()).await;
        assert!(text.contains("used_memory_rss:"));
        assert!(text.contains("cache_enabled:0"));
        assert!(text.contains("pool_in_use_connections:"));
    }
}
