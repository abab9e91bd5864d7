//! Configuration: a TOML file (`--config`) and command-line flags with the same names; flags win.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Parser;
use serde::{Deserialize, Serialize};

/// The proxy's settings. Every field has a documented default.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address clients connect to. Default `127.0.0.1:6380`.
    pub listen: String,
    /// Redis to forward to, `host:port`. Default `127.0.0.1:6379`.
    pub upstream: String,
    /// Admin HTTP address (`/metrics`); `None` disables it. Default `127.0.0.1:9121`.
    pub admin_listen: Option<String>,
    /// Shared (multiplexed) upstream connections per protocol version. Default 2.
    pub upstream_conns: usize,
    /// Most upstream data connections open at once, shared and dedicated together (the
    /// invalidation connection is not counted); 0 means no limit. Default 64.
    pub max_open_conns: usize,
    /// Idle dedicated connections kept for reuse. Default 8.
    pub max_idle_conns: usize,
    /// Age at which a connection is closed (dedicated) or replaced (shared); `0` never.
    /// Durations read like `90s`, `30m`, `1h`. Default `0`.
    pub conn_max_lifetime: String,
    /// An idle dedicated connection unused this long is closed; `0` never. Default `5m`.
    pub conn_max_idle_time: String,
    /// How long a session waits for a dedicated connection when `max_open_conns` are open.
    /// Default `2s`.
    pub pool_wait_timeout: String,
    /// A request Redis has not answered after this long fails, and its connection is replaced
    /// (blocking commands and pub/sub are exempt); `0` waits for ever. Default `10s`.
    pub upstream_timeout: String,
    /// Close a client whose unparsed input exceeds this (Redis's client-query-buffer-limit).
    /// Default `1gb`.
    pub client_query_buffer_limit: String,
    /// Close a client whose replies waiting to be written exceed this (Redis's
    /// client-output-buffer-limit for normal clients). Default `256mb`.
    pub client_output_buffer_limit: String,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default `5s`.
    pub shutdown_timeout: String,
    /// Timeout for connecting to Redis and completing the handshake, in ms. Default 1000.
    pub connect_timeout_ms: u64,
    /// Username for upstream AUTH (ACL user). Default none (`default`).
    pub upstream_user: Option<String>,
    /// Password for upstream AUTH. Default none.
    pub upstream_password: Option<String>,
    /// Log filter (`info`, `debug`, `nearcache=trace`, ...); `RUST_LOG` overrides. Default `info`.
    pub log_level: String,
    /// Log as JSON lines instead of text. Default false.
    pub log_json: bool,
    /// Tokio worker threads; 0 means one per core, 1 runs everything on tokio's current-thread
    /// scheduler. Default 0.
    pub threads: usize,
    /// Most clients connected at once; more get Redis's `max number of clients` error.
    /// Default 10000, as in Redis.
    pub max_clients: usize,
    /// Memory cap of the cache, Redis-style (`64mb`, `10gb`, `1000000`); `0` turns caching off.
    /// Default `64mb`.
    pub max_memory: String,
    /// Eviction policy: `lru`, `lfu`, `w-tinylfu`, `s3fifo`, `sieve`, `adaptive`.
    /// Default `adaptive` (see docs/cache.md for the measurements behind it).
    pub eviction: String,
    /// Longest life of any cached entry, in ms, whatever the key's TTL. Default 300000 (5 min).
    pub cache_ttl_ms: u64,
    /// How Redis tells the proxy what changed: `default` (Redis tracks the keys each shared
    /// connection reads) or `bcast` (every change under `tracking_prefixes`). Default `default`.
    pub tracking: String,
    /// BCAST prefixes; only keys under them are cached in `bcast` mode (empty: all keys).
    pub tracking_prefixes: Vec<String>,
    /// Only these cacheable commands are cached (empty: all of them). Default empty.
    pub cache_allow_commands: Vec<String>,
    /// These commands are never cached. Default empty.
    pub cache_deny_commands: Vec<String>,
    /// Only keys with one of these prefixes are cached (empty: all keys). Default empty.
    pub cache_include_prefixes: Vec<String>,
    /// Keys with one of these prefixes are never cached. Default empty.
    pub cache_exclude_prefixes: Vec<String>,
    /// Close a client idle this many seconds (0 = never), as Redis's `timeout`. Clients that
    /// wait on a blocking command or are subscribed are never idle. Default 0.
    pub timeout: u64,
    /// Log a warning for every command sent to Redis whose reply took at least this many ms
    /// (0 = off). Changeable live with `NEARCACHE CONFIG SET slowlog-threshold-ms`. Default 0.
    pub slowlog_threshold_ms: u64,
    /// jemalloc's sampling heap profiler (one sample per 512 KiB allocated) behind
    /// `/debug/pprof/heap`. Default true.
    pub heap_profiling: bool,
    /// During a `/debug/trace` capture, trace one request in this many. Default 100.
    pub trace_sample: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:6380".into(),
            upstream: "127.0.0.1:6379".into(),
            admin_listen: Some("127.0.0.1:9121".into()),
            upstream_conns: 2,
            max_open_conns: 64,
            max_idle_conns: 8,
            conn_max_lifetime: "0".into(),
            conn_max_idle_time: "5m".into(),
            pool_wait_timeout: "2s".into(),
            upstream_timeout: "10s".into(),
            client_query_buffer_limit: "1gb".into(),
            client_output_buffer_limit: "256mb".into(),
            shutdown_timeout: "5s".into(),
            connect_timeout_ms: 1000,
            upstream_user: None,
            upstream_password: None,
            log_level: "info".into(),
            log_json: false,
            threads: 0,
            max_clients: 10_000,
            timeout: 0,
            max_memory: "64mb".into(),
            eviction: "adaptive".into(),
            cache_ttl_ms: 300_000,
            tracking: "default".into(),
            tracking_prefixes: Vec::new(),
            cache_allow_commands: Vec::new(),
            cache_deny_commands: Vec::new(),
            cache_include_prefixes: Vec::new(),
            cache_exclude_prefixes: Vec::new(),
            slowlog_threshold_ms: 0,
            heap_profiling: true,
            trace_sample: 100,
        }
    }
}

impl Config {
    /// Rejects settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.upstream_conns == 0 {
            bail!("upstream_conns must be at least 1");
        }
        if self.connect_timeout_ms == 0 {
            bail!("connect_timeout_ms must be at least 1");
        }
        parse_size(&self.max_memory)?;
        for (name, v) in [
            ("conn_max_lifetime", &self.conn_max_lifetime),
            ("conn_max_idle_time", &self.conn_max_idle_time),
            ("pool_wait_timeout", &self.pool_wait_timeout),
            ("upstream_timeout", &self.upstream_timeout),
            ("shutdown_timeout", &self.shutdown_timeout),
        ] {
            parse_duration(v).with_context(|| format!("{name}: bad duration {v:?}"))?;
        }
        for (name, v) in [
            ("client_query_buffer_limit", &self.client_query_buffer_limit),
            (
                "client_output_buffer_limit",
                &self.client_output_buffer_limit,
            ),
        ] {
            if parse_size(v)? == 0 {
                bail!("{name} must be more than 0");
            }
        }
        if self.max_open_conns != 0 && self.max_open_conns <= 2 * self.upstream_conns {
            bail!(
                "max_open_conns ({}) must leave room for dedicated connections beyond the {} \
                 shared ones (2 x upstream_conns), or be 0 for no limit",
                self.max_open_conns,
                2 * self.upstream_conns
            );
        }
        self.eviction
            .parse::<cache::PolicyKind>()
            .map_err(|e| anyhow::anyhow!("eviction: {e}"))?;
        match self.tracking.as_str() {
            "default" if !self.tracking_prefixes.is_empty() => {
                bail!("tracking_prefixes needs tracking = \"bcast\"")
            }
            "default" | "bcast" => {}
            other => bail!("tracking must be \"default\" or \"bcast\", not {other:?}"),
        }
        if self.tracking == "bcast" && !self.tracking_prefixes.is_empty() {
            for inc in &self.cache_include_prefixes {
                if !self
                    .tracking_prefixes
                    .iter()
                    .any(|p| inc.starts_with(p.as_str()))
                {
                    bail!("cache_include_prefixes entry {inc:?} is outside every tracking prefix");
                }
            }
        }
        if self.cache_ttl_ms == 0 {
            bail!("cache_ttl_ms must be at least 1");
        }
        if self.max_clients == 0 {
            bail!("max_clients must be at least 1");
        }
        if self.upstream.is_empty() {
            bail!("upstream must be host:port");
        }
        if self.upstream_user.is_some() && self.upstream_password.is_none() {
            bail!("upstream_user needs upstream_password");
        }
        if self.trace_sample == 0 {
            bail!("trace_sample must be at least 1");
        }
        Ok(())
    }

    /// Builds the configuration from the command line: the `--config` file, then flags on top.
    pub fn from_args(args: Args) -> anyhow::Result<Config> {
        let mut cfg = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?
            }
            None => Config::default(),
        };
        args.apply(&mut cfg);
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The names of the settings whose values differ between `a` and `b`.
pub fn changed_settings(a: &Config, b: &Config) -> anyhow::Result<Vec<String>> {
    let (toml::Value::Table(a), toml::Value::Table(b)) =
        (toml::Value::try_from(a)?, toml::Value::try_from(b)?)
    else {
        bail!("configuration is not a table");
    };
    let mut names: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Parses a duration such as `250ms`, `90s`, `30m` or `1h`; `0` means none (`Ok(None)`).
pub fn parse_duration(text: &str) -> anyhow::Result<Option<std::time::Duration>> {
    let t = text.trim();
    if t == "0" || t.is_empty() {
        return Ok(None);
    }
    let d = humantime::parse_duration(t)?;
    Ok((!d.is_zero()).then_some(d))
}

/// Parses a size as Redis does in its config: a plain number of bytes, or with a unit, where
/// `k`/`m`/`g` are powers of 1000 and `kb`/`mb`/`gb` powers of 1024 (case-insensitive).
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {text:?}: expected e.g. 64mb, 10gb or bytes"))?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => bail!("invalid size {text:?}: unknown unit {unit:?} (use k, kb, m, mb, g, gb)"),
    };
    n.checked_mul(mul)
        .ok_or_else(|| anyhow::anyhow!("size {text:?} is too large"))
}

/// Command-line flags. Each overrides the config file's setting of the same name.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "nearcache",
    version,
    about = "A Redis proxy with a tracking client-side cache",
    after_help = "Also: nearcache heap-diff OLD.pb.gz NEW.pb.gz (see nearcache heap-diff --help)"
)]
pub struct Args {
    /// TOML file with the same settings as the flags (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to accept clients on.
    #[arg(long)]
    pub listen: Option<String>,
    /// Redis address, host:port.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Admin HTTP address serving /metrics.
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Disable the admin HTTP port.
    #[arg(long)]
    pub no_admin: bool,
    /// Shared upstream connections per protocol version.
    #[arg(long)]
    pub upstream_conns: Option<usize>,
    /// Most upstream data connections open at once (shared + dedicated); 0 for no limit.
    #[arg(long)]
    pub max_open_conns: Option<usize>,
    /// Idle dedicated connections kept for reuse.
    #[arg(long)]
    pub max_idle_conns: Option<usize>,
    /// Close (dedicated) or replace (shared) connections at this age, e.g. `30m`; `0` never.
    #[arg(long)]
    pub conn_max_lifetime: Option<String>,
    /// Close idle dedicated connections unused this long; `0` never.
    #[arg(long)]
    pub conn_max_idle_time: Option<String>,
    /// Longest wait for a dedicated connection when max-open-conns are open.
    #[arg(long)]
    pub pool_wait_timeout: Option<String>,
    /// Fail requests Redis has not answered after this long; `0` waits for ever.
    #[arg(long)]
    pub upstream_timeout: Option<String>,
    /// Close clients whose unparsed input exceeds this size.
    #[arg(long)]
    pub client_query_buffer_limit: Option<String>,
    /// Close clients whose unwritten replies exceed this size.
    #[arg(long)]
    pub client_output_buffer_limit: Option<String>,
    /// How long in-flight requests may take to finish on shutdown.
    #[arg(long)]
    pub shutdown_timeout: Option<String>,
    /// Upstream connect + handshake timeout in milliseconds.
    #[arg(long)]
    pub connect_timeout_ms: Option<u64>,
    /// ACL user for upstream connections.
    #[arg(long)]
    pub upstream_user: Option<String>,
    /// Password for upstream connections (or env NEARCACHE_UPSTREAM_PASSWORD).
    #[arg(long, env = "NEARCACHE_UPSTREAM_PASSWORD", hide_env_values = true)]
    pub upstream_password: Option<String>,
    /// Log filter, e.g. info or nearcache=debug.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Worker threads (0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Most clients connected at once.
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// Close clients idle this many seconds (0 = never).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Cache memory cap (64mb, 10gb, bytes); 0 disables caching.
    #[arg(long)]
    pub max_memory: Option<String>,
    /// Eviction policy: lru, lfu, w-tinylfu, s3fifo, sieve, adaptive.
    #[arg(long)]
    pub eviction: Option<String>,
    /// Longest life of a cached entry in ms.
    #[arg(long)]
    pub cache_ttl_ms: Option<u64>,
    /// Tracking mode: default or bcast.
    #[arg(long)]
    pub tracking: Option<String>,
    /// BCAST prefixes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tracking_prefixes: Option<Vec<String>>,
    /// Cache only these commands (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cache_allow_commands: Option<Vec<String>>,
    /// Never cache these commands (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cache_deny_commands: Option<Vec<String>>,
    /// Cache only keys with these prefixes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cache_include_prefixes: Option<Vec<String>>,
    /// Never cache keys with these prefixes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cache_exclude_prefixes: Option<Vec<String>>,
    /// Warn about commands sent to Redis slower than this many ms (0 = off).
    #[arg(long)]
    pub slowlog_threshold_ms: Option<u64>,
    /// jemalloc heap profiling behind /debug/pprof/heap: true or false.
    #[arg(long)]
    pub heap_profiling: Option<bool>,
    /// Trace one request in this many during a /debug/trace capture.
    #[arg(long)]
    pub trace_sample: Option<u64>,
}

impl Args {
    fn apply(self, cfg: &mut Config) {
        fn set<T>(dst: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *dst = v;
            }
        }
        set(&mut cfg.listen, self.listen);
        set(&mut cfg.upstream, self.upstream);
        if self.admin_listen.is_some() {
            cfg.admin_listen = self.admin_listen;
        }
        if self.no_admin {
            cfg.admin_listen = None;
        }
        set(&mut cfg.upstream_conns, self.upstream_conns);
        set(&mut cfg.max_open_conns, self.max_open_conns);
        set(&mut cfg.max_idle_conns, self.max_idle_conns);
        set(&mut cfg.conn_max_lifetime, self.conn_max_lifetime);
        set(&mut cfg.conn_max_idle_time, self.conn_max_idle_time);
        set(&mut cfg.pool_wait_timeout, self.pool_wait_timeout);
        set(&mut cfg.upstream_timeout, self.upstream_timeout);
        set(
            &mut cfg.client_query_buffer_limit,
            self.client_query_buffer_limit,
        );
        set(
            &mut cfg.client_output_buffer_limit,
            self.client_output_buffer_limit,
        );
        set(&mut cfg.shutdown_timeout, self.shutdown_timeout);
        set(&mut cfg.connect_timeout_ms, self.connect_timeout_ms);
        if self.upstream_user.is_some() {
            cfg.upstream_user = self.upstream_user;
        }
        if self.upstream_password.is_some() {
            cfg.upstream_password = self.upstream_password;
        }
        set(&mut cfg.log_level, self.log_level);
        cfg.log_json |= self.log_json;
        set(&mut cfg.threads, self.threads);
        set(&mut cfg.max_clients, self.max_clients);
        set(&mut cfg.timeout, self.timeout);
        set(&mut cfg.max_memory, self.max_memory);
        set(&mut cfg.eviction, self.eviction);
        set(&mut cfg.cache_ttl_ms, self.cache_ttl_ms);
        set(&mut cfg.tracking, self.tracking);
        set(&mut cfg.tracking_prefixes, self.tracking_prefixes);
        set(&mut cfg.cache_allow_commands, self.cache_allow_commands);
        set(&mut cfg.cache_deny_commands, self.cache_deny_commands);
        set(&mut cfg.cache_include_prefixes, self.cache_include_prefixes);
        set(&mut cfg.cache_exclude_prefixes, self.cache_exclude_prefixes);
        set(&mut cfg.slowlog_threshold_ms, self.slowlog_threshold_ms);
        set(&mut cfg.heap_profiling, self.heap_profiling);
        set(&mut cfg.trace_sample, self.trace_sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("nearcache-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:7000\"\nupstream_conns = 4\n").unwrap();
        let args = Args::parse_from([
            "nearcache",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
        ]);
        let cfg = Config::from_args(args).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:1");
        assert_eq!(cfg.upstream_conns, 4);
        assert_eq!(cfg.upstream, "127.0.0.1:6379");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_sizes_like_redis() {
        assert_eq!(parse_size("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1k").unwrap(), 1000);
        assert_eq!(parse_size("12345").unwrap(), 12345);
        assert!(parse_size("12xb").is_err());
        assert!(parse_size("mb").is_err());
        assert!(parse_size("99999999999gb").is_err());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        let cfg = Config {
            upstream_conns: 0,
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
    }
}
