//! `NEARCACHE ...` on the RESP port, so redis-cli users need no HTTP:
//! - `NEARCACHE INFO`: proxy, memory, cache, pool and command figures as INFO-like lines;
//! - `NEARCACHE FLUSH`: empties the proxy's cache (never Redis);
//! - `NEARCACHE CONFIG GET <pattern>` / `NEARCACHE CONFIG SET <name> <value>`: live settings.
//!
//! Every malformed request gets an error reply; nothing here panics on client input.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};

use crate::cachelayer::CacheLayer;
use crate::obs::metrics::{FlushReason, Metrics};
use crate::obs::profile;
use crate::obs::stats::Outcome;
use crate::reply;
use crate::upstream::PoolStats;

/// Settings `CONFIG GET` knows, in the order it lists them.
const SETTINGS: &[&str] = &[
    "slowlog-threshold-ms",
    "log-level",
    "trace-sample",
    "heap-profiling",
    "max-memory",
];

/// Answers one `NEARCACHE` command (`args[0]` is `NEARCACHE`).
pub async fn answer(
    args: &[Bytes],
    proto: u8,
    metrics: &Metrics,
    cache: Option<&CacheLayer>,
    pool: &PoolStats,
) -> Bytes {
    let sub = args.get(1).map(|a| a.to_ascii_uppercase());
    match (sub.as_deref(), args.len()) {
        (Some(b"INFO"), 2) => bulk(&info(metrics, cache, pool).await),
        (Some(b"FLUSH"), 2) => {
            if let Some(c) = cache {
                c.flush(FlushReason::Admin);
            }
            reply::simple("OK")
        }
        (Some(b"CONFIG"), _) => config(&args[2..], proto, metrics).await,
        (Some(b"HELP"), 2) => help(),
        _ => reply::error(
            "ERR nearcache: unknown subcommand or wrong number of arguments; try NEARCACHE HELP",
        ),
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

async fn config(args: &[Bytes], proto: u8, metrics: &Metrics) -> Bytes {
    let sub = args.first().map(|a| a.to_ascii_uppercase());
    match (sub.as_deref(), args.len()) {
        (Some(b"GET"), 2) => {
            let pattern = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
            let mut pairs = Vec::new();
            for name in SETTINGS {
                if glob(pattern.as_bytes(), name.as_bytes()) {
                    if let Some(v) = get(name, metrics).await {
                        pairs.push((*name, v));
                    }
                }
            }
            pairs_reply(&pairs, proto)
        }
        (Some(b"SET"), 3) => {
            let name = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
            let value = String::from_utf8_lossy(&args[2]).into_owned();
            match set(&name, value.trim(), metrics).await {
                Ok(()) => reply::simple("OK"),
                Err(e) => reply::error(&format!("ERR nearcache: {e}")),
            }
        }
        _ => reply::error(
            "ERR nearcache: use NEARCACHE CONFIG GET <pattern> or NEARCACHE CONFIG SET <name> <value>",
        ),
    }
}

async fn get(name: &str, metrics: &Metrics) -> Option<String> {
    Some(match name {
        "slowlog-threshold-ms" => metrics
            .live
            .slowlog_threshold_ms
            .load(Ordering::Relaxed)
            .to_string(),
        "log-level" => crate::obs::log_level().unwrap_or_else(|| "n/a".into()),
        "trace-sample" => metrics.tracer.sample_every().to_string(),
        "heap-profiling" => match profile::heap_profiling_state().await {
            Some(true) => "true".into(),
            Some(false) => "false".into(),
            None => "unavailable".into(),
        },
        "max-memory" => metrics.max_memory().to_string(),
        _ => return None,
    })
}

async fn set(name: &str, value: &str, metrics: &Metrics) -> Result<(), String> {
    match name {
        "slowlog-threshold-ms" => {
            let ms: u64 = value.parse().map_err(|_| {
                format!("slowlog-threshold-ms must be a number of ms, not {value:?}")
            })?;
            metrics
                .live
                .slowlog_threshold_ms
                .store(ms, Ordering::Relaxed);
            Ok(())
        }
        "log-level" => crate::obs::set_log_level(value),
        "trace-sample" => {
            let k: u64 = value.parse().ok().filter(|k| *k >= 1).ok_or_else(|| {
                format!("trace-sample must be a whole number >= 1, not {value:?}")
            })?;
            metrics.tracer.set_sample_every(k);
            Ok(())
        }
        "heap-profiling" => {
            let on = match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => {
                    return Err(format!(
                        "heap-profiling must be true or false, not {value:?}"
                    ))
                }
            };
            profile::set_heap_profiling(on)
                .await
                .map_err(|e| e.to_string())
        }
        "max-memory" => Err("max-memory cannot change while the proxy runs".into()),
        _ => Err(format!(
            "unknown setting {name:?}; settable: slowlog-threshold-ms, log-level, trace-sample, \
             heap-profiling"
        )),
    }
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

fn pairs_reply(pairs: &[(&str, String)], proto: u8) -> Bytes {
    let mut out = BytesMut::new();
    if proto >= 3 {
        let _ = write!(Writer(&mut out), "%{}\r\n", pairs.len());
    } else {
        let _ = write!(Writer(&mut out), "*{}\r\n", pairs.len() * 2);
    }
    for (k, v) in pairs {
        out.put_slice(&bulk(k));
        out.put_slice(&bulk(v));
    }
    out.freeze()
}

fn bulk(s: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(s.len() + 16);
    let _ = write!(Writer(&mut out), "${}\r\n", s.len());
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
    out.freeze()
}

struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
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
            let _ = writeln!(
                w,
                "collapsed_misses:{}\r",
                c.collapsed.load(Ordering::Relaxed)
            );
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

    /// The answer to one command line, with no cache and an empty pool.
    async fn ask(line: &str, proto: u8, m: &Metrics) -> Bytes {
        answer(&cmd(line), proto, m, None, &PoolStats::default()).await
    }

    #[test]
    fn globs_like_config_get() {
        assert!(glob(b"*", b"log-level"));
        assert!(glob(b"slow*", b"slowlog-threshold-ms"));
        assert!(glob(b"log-leve?", b"log-level"));
        assert!(!glob(b"log", b"log-level"));
    }

    #[tokio::test]
    async fn config_set_and_get_round_trip() {
        let m = Metrics::default();
        let r = ask("nearcache config set slowlog-threshold-ms 25", 2, &m).await;
        assert_eq!(&r[..], b"+OK\r\n");
        let r = ask("NEARCACHE CONFIG GET slowlog*", 2, &m).await;
        assert_eq!(&r[..], b"*2\r\n$20\r\nslowlog-threshold-ms\r\n$2\r\n25\r\n");
        let r = ask("NEARCACHE CONFIG GET slowlog*", 3, &m).await;
        assert!(r.starts_with(b"%1\r\n"));
    }

    #[tokio::test]
    async fn bad_input_gets_error_replies() {
        let m = Metrics::default();
        for c in [
            "NEARCACHE",
            "NEARCACHE BOGUS",
            "NEARCACHE INFO extra",
            "NEARCACHE CONFIG",
            "NEARCACHE CONFIG SET nosuch 1",
            "NEARCACHE CONFIG SET slowlog-threshold-ms -3",
            "NEARCACHE CONFIG SET trace-sample 0",
            "NEARCACHE CONFIG SET max-memory 1gb",
            "NEARCACHE CONFIG GET",
        ] {
            let r = ask(c, 2, &m).await;
            assert!(r.starts_with(b"-ERR"), "{c}: {r:?}");
        }
    }

    #[tokio::test]
    async fn info_is_a_bulk_string_of_fields() {
        let m = Metrics::default();
        let r = ask("NEARCACHE INFO", 2, &m).await;
        let text = String::from_utf8_lossy(&r);
        assert!(text.starts_with('$'));
        assert!(text.contains("used_memory_rss:"));
        assert!(text.contains("cache_enabled:0"));
        assert!(text.contains("pool_in_use_connections:"));
    }
}
