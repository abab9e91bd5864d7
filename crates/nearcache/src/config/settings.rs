//! Every setting, defined once: its name (which is also its file key; the flag and the
//! `NEARCACHE CONFIG` name are the same words with dashes), its type, its default, whether it
//! changes while the proxy runs, and its documentation; and the names older versions used.
//!
//! Owns the list and [`Setting`], each setting's handle. Never parses text itself (each type
//! does, in [`super::values`]) nor checks how settings relate (that is `Config::validate`).

use std::time::Duration;

use cache::PolicyKind;

use super::lists::*;
use super::tls::*;
use super::values::*;

/// Declares the settings: the [`Config`] struct with one typed field each, its defaults, and
/// [`SETTINGS`], which reads and writes each field as text or TOML.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $name:ident: $ty:ty = $default:literal, $when:ident; )*) => {
        /// The proxy's settings, each typed; see [`SETTINGS`] for their names and defaults.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config {
                    $( $name: <$ty as Value>::parse($default)
                        .expect(concat!("the default of ", stringify!($name), " parses")), )*
                }
            }
        }

        /// Every setting, in the order `--help` lists them.
        pub static SETTINGS: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                doc: concat!($($doc, "\n"),*),
                default: $default,
                live: settings!(@live $when),
                kind: <$ty as Value>::KIND,
                bad: <$ty as Value>::BAD,
                secret: <$ty as Value>::SECRET,
                bare_flag: <$ty as Value>::BARE_FLAG,
                show: |c| c.$name.show(),
                copy: |dst, src| dst.$name = src.$name.clone(),
                parse: |c, text| {
                    c.$name = Value::parse(text)?;
                    Ok(())
                },
                from_toml: |c, value| {
                    c.$name = Value::from_toml(value)?;
                    Ok(())
                },
            },
        )*];
    };
    (@live live) => { true };
    (@live restart) => { false };
}

settings! {
    /// Address clients connect to; `none`: no plain-TCP listener (clients come over
    /// tls_listen or unixsocket only, as Redis's `port 0`).
    listen: Option<Address> = "127.0.0.1:6380", restart;
    /// Redis to forward to, `host:port`; `rediss://host:port` means the same as upstream_tls.
    /// With cluster, seed nodes: `host:port,host:port`.
    upstream: Upstream = "127.0.0.1:6379", restart;
    /// The upstream is a Redis Cluster (docs/cluster.md): its slots are learnt from the seeds
    /// in upstream, and each command goes to the master of its keys' slot.
    cluster: bool = "false", restart;
    /// With cluster: where cacheable reads that miss go, `master` or `replica` (one of the
    /// slot's replicas, its tracking protecting what it filled; stale by up to the
    /// replication lag, docs/cluster.md).
    read_from: ReadFrom = "master", restart;
    /// Also listen on this Unix socket (Redis's unixsocket); empty: none.
    unixsocket: Option<FilePath> = "", restart;
    /// Permissions of the Unix socket, in octal (Redis's unixsocketperm); 0 leaves the umask's.
    unixsocketperm: FileMode = "0", restart;
    /// Admin HTTP address (`/metrics`, `/healthz`, `/readyz`, profiles, dashboard); `none`
    /// disables it. 8380: beside the proxy's 6380, clear of Prometheus's exporter ports.
    admin_listen: Option<Address> = "127.0.0.1:8380", restart;
    /// Bearer token the admin HTTP port asks for on every path but `/healthz`
    /// (`Authorization: Bearer TOKEN`); required when admin_listen is not a loopback address.
    admin_token: Option<Secret> = "", restart;
    /// Also listen for TLS clients on this address (Redis's tls-port); `none`: no TLS listener.
    tls_listen: Option<Address> = "none", restart;
    /// Certificate chain (PEM) the TLS listener presents (Redis's tls-cert-file). Read again on
    /// SIGHUP: new handshakes get the new one, connected clients keep theirs.
    tls_cert_file: Option<FilePath> = "", live;
    /// Private key (PEM) of tls_cert_file (Redis's tls-key-file); read again on SIGHUP.
    tls_key_file: Option<FilePath> = "", live;
    /// CA certificates (PEM) client certificates must be signed by (Redis's tls-ca-cert-file);
    /// read again on SIGHUP.
    tls_ca_cert_file: Option<FilePath> = "", live;
    /// Whether TLS clients must present a certificate signed by tls_ca_cert_file (mutual TLS;
    /// Redis's tls-auth-clients): `yes`, `no`, or `optional` (checked only if one is sent).
    tls_auth_clients: TlsAuthClients = "yes", live;
    /// Connect to Redis over TLS (every upstream connection: shared, dedicated, invalidation).
    upstream_tls: bool = "false", restart;
    /// CA certificates (PEM) Redis's certificate must be signed by; empty: the system's.
    upstream_tls_ca_cert_file: Option<FilePath> = "", restart;
    /// Client certificate (PEM) presented to Redis, for a Redis with tls-auth-clients; empty:
    /// none.
    upstream_tls_cert_file: Option<FilePath> = "", restart;
    /// Private key (PEM) of upstream_tls_cert_file.
    upstream_tls_key_file: Option<FilePath> = "", restart;
    /// The name Redis's certificate is checked against; empty: the host of `upstream`.
    upstream_tls_server_name: Option<ServerName> = "", restart;
    /// Shared (multiplexed) upstream connections per protocol version.
    upstream_conns: usize = "2", restart;
    /// Most upstream data connections open at once, shared and dedicated together (the
    /// invalidation connection is not counted); 0 means no limit.
    max_open_conns: usize = "64", live;
    /// Idle dedicated connections kept for reuse.
    max_idle_conns: usize = "8", live;
    /// Age at which a connection is closed (dedicated) or replaced (shared); 0 never.
    conn_max_lifetime: Option<Duration> = "0", live;
    /// An idle dedicated connection unused this long is closed; 0 never.
    conn_max_idle_time: Option<Duration> = "5m", live;
    /// How long a session waits for a dedicated connection when max_open_conns are open.
    pool_wait_timeout: Duration = "2s", live;
    /// A request Redis has not answered after this long fails, and its connection is replaced
    /// (blocking commands and pub/sub are exempt); 0 waits for ever.
    upstream_timeout: Option<Duration> = "10s", restart;
    /// Timeout for connecting to Redis and completing the handshake.
    connect_timeout: Duration = "1s", restart;
    /// TCP keepalive on client and upstream sockets: idle time before the first probe (Redis's
    /// tcp-keepalive); 0 turns it off.
    tcp_keepalive: Option<Duration> = "300s", restart;
    /// ACL user for upstream connections (`default` when unset).
    upstream_user: Option<UserName> = "", restart;
    /// Password for upstream connections (NEARCACHE_UPSTREAM_PASSWORD in the environment keeps it
    /// off the command line).
    upstream_password: Option<Secret> = "", restart;
    /// How clients authenticate: `passthrough` (as Redis would: AUTH is checked upstream and a
    /// client acts as its own ACL user), `password` (with requirepass; the proxy acts as its
    /// upstream user) or `none` (nobody does; every client acts as the upstream user).
    client_auth: ClientAuth = "passthrough", restart;
    /// The password clients give in `client_auth = "password"` mode (NEARCACHE_REQUIREPASS in
    /// the environment keeps it off the command line).
    requirepass: Option<Secret> = "", restart;
    /// How often Redis's users are checked in passthrough mode (`ACL LIST`, and whether a client
    /// that does not authenticate may act): the longest an ACL change made on Redis directly
    /// goes unseen (one going through the proxy is seen at once).
    acl_check_interval: Duration = "1s", restart;
    /// ACL users who may change the proxy (`NEARCACHE FLUSH`, `NEARCACHE CONFIG SET`) in
    /// passthrough mode, beside those Redis lets run `CONFIG SET`.
    admin_users: UserNames = "", live;
    /// Close a client whose unparsed input exceeds this (Redis's client-query-buffer-limit).
    client_query_buffer_limit: ByteSize = "1gb", live;
    /// Close a client whose replies waiting to be written exceed this (Redis's
    /// client-output-buffer-limit for normal clients); applies to clients that connect later.
    client_output_buffer_limit: ByteSize = "256mb", live;
    /// Most clients connected at once; more get Redis's `max number of clients` error.
    max_clients: usize = "10000", live;
    /// Close a client idle this long (Redis's `timeout`); clients waiting on a blocking command
    /// or subscribed are never idle. 0 never.
    timeout: Option<Duration> = "0", live;
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    shutdown_timeout: Duration = "5s", live;
    /// Memory cap of the cache, Redis-style (`64mb`, `10gb`, bytes); 0 turns caching off.
    max_memory: ByteSize = "64mb", restart;
    /// Eviction policy: lru, lfu, w-tinylfu, s3fifo, sieve, adaptive, reuse-tinylfu
    /// (docs/cache.md).
    eviction: PolicyKind = "reuse-tinylfu", restart;
    /// Most keys the online miss-ratio curve samples (`nearcache_cache_mrc_hit_ratio`); fewer
    /// when half of one percent of max_memory would not hold them (docs/capture.md), and none
    /// (no curve) with 0 or below about 1.6 MB.
    mrc_sample_keys: usize = "4096", restart;
    /// Longest life of any cached entry, whatever the key's TTL.
    cache_ttl: Duration = "5m", restart;
    /// How Redis tells the proxy what changed: `default` (Redis tracks the keys each shared
    /// connection reads) or `bcast` (every change under tracking_prefixes).
    tracking: TrackingKind = "default", restart;
    /// BCAST prefixes; only keys under them are cached in `bcast` mode (empty: all keys).
    tracking_prefixes: Prefixes = "", restart;
    /// How often the invalidation connection must show it is alive: a PING is sent this often
    /// (TCP keepalive probes too), and when nothing has come back from it for one interval after
    /// a PING (about two since its last sign of life) it counts as lost: the cache is flushed
    /// and fills stop until a new one is up. 0 turns the check off.
    tracking_health_interval: Option<Duration> = "1s", restart;
    /// Only these cacheable commands are cached (empty: all of them).
    cache_allow_commands: CacheableCommands = "", restart;
    /// These commands are never cached.
    cache_deny_commands: CacheableCommands = "", restart;
    /// Only keys with one of these prefixes are cached (empty: all keys).
    cache_include_prefixes: Prefixes = "", restart;
    /// Keys with one of these prefixes are never cached.
    cache_exclude_prefixes: Prefixes = "", restart;
    /// Log filter (`info`, `debug`, `nearcache=trace`, ...); RUST_LOG overrides it at start.
    log_level: LogFilter = "info", live;
    /// Log as JSON lines instead of text.
    log_json: bool = "false", restart;
    /// Append logs to this file instead of writing them to stderr; empty: stderr.
    log_file: Option<FilePath> = "", restart;
    /// Log a warning for every command sent to Redis whose reply took at least this long;
    /// 0 is off.
    slowlog_threshold: Option<Duration> = "0", live;
    /// jemalloc's sampling heap profiler (one sample per 512 KiB allocated) behind
    /// /debug/pprof/heap.
    heap_profiling: bool = "true", live;
    /// During a /debug/trace capture, trace one request in this many.
    trace_sample: u64 = "100", live;
    /// Threads running client sessions, each a single-threaded runtime that keeps its clients
    /// for life (the first also runs the accept loop and the admin port); 0 means one per core.
    threads: usize = "0", restart;
    /// Which thread serves a client: `host` keeps every connection from one address on one
    /// thread, so what a host sends on several connections reaches Redis in the order the proxy
    /// reads it (as with one thread); `connection` takes threads in turn, spreading one host's
    /// load, and clients on different threads race.
    thread_placement: Placement = "host", restart;
}

/// One setting: what it is called, its type and default, and how to read and write it.
pub struct Setting {
    /// snake_case: the file key. The flag and `NEARCACHE CONFIG` name use dashes.
    pub name: &'static str,
    pub doc: &'static str,
    /// The default, as text.
    pub default: &'static str,
    /// Takes effect while the proxy runs (SIGHUP, `NEARCACHE CONFIG SET`).
    pub live: bool,
    /// The type, for `--help`.
    pub kind: &'static str,
    /// A value the type refuses (for tests).
    pub bad: &'static str,
    /// Never shown or logged.
    pub secret: bool,
    /// A flag without a value means `true`.
    pub bare_flag: bool,
    pub(super) show: fn(&Config) -> String,
    pub(super) copy: fn(&mut Config, &Config),
    pub(super) parse: fn(&mut Config, &str) -> Result<(), String>,
    pub(super) from_toml: fn(&mut Config, &toml::Value) -> Result<(), String>,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Setting {
    /// The setting called `name` in any of its spellings (dashes or underscores, any case,
    /// the names of older versions).
    pub fn find(name: &str) -> Option<&'static Setting> {
        let snake = snake(name);
        let now = old_spelling(&snake).map_or(snake.as_str(), |&(_, new, _)| new);
        SETTINGS.iter().find(|s| s.name == now)
    }

    /// Gives `dst` the value `src` has.
    pub fn copy(&self, dst: &mut Config, src: &Config) {
        (self.copy)(dst, src)
    }

    /// The name with dashes: the flag without its `--`, the `NEARCACHE CONFIG` name.
    pub fn dashed(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The value in `config` as text; `********` for a secret that is set.
    pub fn show(&self, config: &Config) -> String {
        let text = (self.show)(config);
        if self.secret && !text.is_empty() {
            "********".into()
        } else {
            text
        }
    }
}

/// Settings as older versions spelled them: the old name, the setting it is now, and the unit
/// of a bare number (`connect_timeout_ms = 500` is `connect_timeout = "500ms"`). Still read,
/// with a warning that says how to write them now.
const LEGACY: &[(&str, &str, &str)] = &[
    ("connect_timeout_ms", "connect_timeout", "ms"),
    ("cache_ttl_ms", "cache_ttl", "ms"),
    ("slowlog_threshold_ms", "slowlog_threshold", "ms"),
    ("timeout", "timeout", "s"),
];

/// A name in its file spelling: underscores, lower case.
fn snake(name: &str) -> String {
    name.trim().replace('-', "_").to_ascii_lowercase()
}

/// The [`LEGACY`] entry of an old name (in its file spelling).
fn old_spelling(snake: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    LEGACY.iter().find(|(old, ..)| *old == snake)
}

/// Old names that are not a setting's name too: each is a hidden flag of its own.
pub(super) fn renamed() -> impl Iterator<Item = &'static str> {
    LEGACY
        .iter()
        .filter(|(old, new, _)| old != new)
        .map(|(old, ..)| *old)
}

/// A setting spelled as before: the setting, the value in today's style, and the warning.
pub(super) fn legacy(name: &str, value: &str) -> Option<(&'static Setting, String, String)> {
    let &(old, new, unit) = old_spelling(&snake(name))?;
    let bare = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && value != "0";
    if old == new && !bare {
        return None;
    }
    let setting = Setting::find(new)?;
    let now = if bare {
        format!("{value}{unit}")
    } else {
        value.to_string()
    };
    let warning = format!("{name} = {value} is deprecated: write {new} = {now:?}");
    Some((setting, now, warning))
}
