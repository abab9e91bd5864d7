//! nearcache: a Redis proxy whose purpose is a server-assisted client-side cache.
//!
//! The layout follows the request path (see docs/architecture.md):
//! - [`session`]: one task pair per client (reader routes commands, writer replies in order);
//! - [`command`]: the synchronous command table deciding how each command is routed;
//! - [`upstream`]: connections to Redis as active objects, and the pool that owns them;
//! - [`admin`], [`metrics`]: the HTTP admin port and what it exposes.

pub mod admin;
mod bufs;
pub mod cachelayer;
mod clock;
pub mod command;
pub mod config;

pub mod obs;
pub mod reply;
pub mod session;
mod stop;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use cachelayer::CacheLayer;
pub use config::Config;
use obs::metrics::Metrics;
use session::Context;
use upstream::{Limits, Pool, Settings, Tracking, TrackingMode, TrackingSink};

/// A running proxy. Dropping it leaves the proxy running; call [`Running::shutdown`].
pub struct Running {
    /// Where clients connect (the bound port when the config asked for port 0).
    pub listen_addr: SocketAddr,
    /// Where the admin HTTP server listens, if enabled.
    pub admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    ctx: Arc<Context>,
    config: std::sync::Mutex<Config>,
}

/// Settings [`Running::reload`] applies to the running proxy; any other change needs a restart.
pub const LIVE_SETTINGS: &[&str] = &[
    "max_open_conns",
    "max_idle_conns",
    "conn_max_lifetime",
    "conn_max_idle_time",
    "pool_wait_timeout",
    "max_clients",
    "timeout",
    "client_query_buffer_limit",
    "client_output_buffer_limit",
    "shutdown_timeout",
    "slowlog_threshold_ms",
    "trace_sample",
];

impl Running {
    /// Stops accepting, then gives client sessions up to `shutdown_timeout` to receive the
    /// replies to what they already sent; the admin server stops too. Sessions still open after
    /// that (a client blocked for ever, say) are left to end with the process.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.ctx.stop.raise();
        let _ = self.accept.await;
        // Sessions give up waiting at the same timeout; a little more lets them close.
        let limit = self.ctx.clients.shutdown_timeout() + Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + limit;
        while self.ctx.metrics.clients.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.ctx.metrics.clients.get();
        if left > 0 {
            warn!(
                clients = left,
                "shutdown timeout reached with clients still waiting"
            );
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a new configuration: the [`LIVE_SETTINGS`] take effect now (the output limit
    /// for clients that connect from now on); other changes are logged as needing a restart.
    pub fn reload(&self, new: Config) -> anyhow::Result<()> {
        new.validate()?;
        let limits = pool_limits(&new)?;
        let clients = client_limits(&new)?;
        let old = self.config();
        let restart: Vec<String> = config::changed_settings(&old, &new)?
            .into_iter()
            .filter(|name| !LIVE_SETTINGS.contains(&name.as_str()))
            .collect();
        self.ctx.pool.set_limits(limits);
        self.ctx.clients.update_from(&clients);
        let slowlog = &self.ctx.metrics.live.slowlog_threshold_ms;
        slowlog.store(
            new.slowlog_threshold_ms,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.ctx.metrics.tracer.set_sample_every(new.trace_sample);
        if !restart.is_empty() {
            warn!(settings = ?restart, "changed settings need a restart to take effect");
        }
        info!("configuration reloaded");
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }
}

/// Binds the listeners and starts serving. Must be called inside a tokio runtime.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    config.validate()?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let listen_addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::default());
    let max_memory = config::parse_size(&config.max_memory)?;
    obs_settings(&config, &metrics, max_memory).await;
    let cache = (max_memory > 0).then(|| {
        let policy = config.eviction.parse().unwrap_or_default();
        // In BCAST mode only keys under the tracking prefixes get invalidations.
        let include = match (
            &config.tracking[..],
            config.cache_include_prefixes.is_empty(),
        ) {
            ("bcast", true) => &config.tracking_prefixes,
            _ => &config.cache_include_prefixes,
        };
        let rules = cachelayer::CacheRules::new(
            &config.cache_allow_commands,
            &config.cache_deny_commands,
            include,
            &config.cache_exclude_prefixes,
        );
        Arc::new(CacheLayer::new(
            max_memory,
            policy,
            config.cache_ttl_ms,
            rules,
            metrics.clone(),
        ))
    });
    let tracking = cache.clone().map(|c| {
        Arc::new(Tracking::new(
            tracking_mode(&config),
            c as Arc<dyn TrackingSink>,
        ))
    });
    let pool = Pool::new(
        Settings {
            addr: config.upstream.clone(),
            shared_conns: config.upstream_conns,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            upstream_timeout: config::parse_duration(&config.upstream_timeout)?,
            username: config.upstream_user.clone(),
            password: config.upstream_password.clone(),
            limits: pool_limits(&config)?,
        },
        tracking,
    );
    let ctx = Arc::new(Context {
        pool: pool.clone(),
        metrics: metrics.clone(),
        limits: resp::Limits::default(),
        clients: client_limits(&config)?,
        cache: cache.clone(),
        stop: Default::default(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let admin_addr = match &config.admin_listen {
        Some(addr) => Some(obs::http::start(addr, metrics, cache, pool, stop_rx.clone()).await?),
        None => None,
    };
    info!(listen = %listen_addr, upstream = %config.upstream, admin = ?admin_addr, "nearcache started");
    let accept = tokio::spawn(accept_loop(listener, ctx.clone(), stop_rx));
    Ok(Running {
        listen_addr,
        admin_addr,
        stop,
        accept,
        ctx,
        config: std::sync::Mutex::new(config),
    })
}

/// The per-client limits a configuration asks for.
fn client_limits(config: &Config) -> anyhow::Result<session::ClientLimits> {
    Ok(session::ClientLimits::new(
        config.max_clients,
        (config.timeout > 0).then(|| Duration::from_secs(config.timeout)),
        usize::try_from(config::parse_size(&config.client_query_buffer_limit)?)?,
        usize::try_from(config::parse_size(&config.client_output_buffer_limit)?)?,
        config::parse_duration(&config.shutdown_timeout)?.unwrap_or_default(),
    ))
}

/// The pool limits a configuration asks for.
pub fn pool_limits(config: &Config) -> anyhow::Result<Limits> {
    Ok(Limits {
        max_open: config.max_open_conns,
        max_idle: config.max_idle_conns,
        max_lifetime: config::parse_duration(&config.conn_max_lifetime)?,
        max_idle_time: config::parse_duration(&config.conn_max_idle_time)?,
        wait_timeout: config::parse_duration(&config.pool_wait_timeout)?.unwrap_or_default(),
    })
}

/// Applies the observability settings: the slow log, trace sampling, heap profiling.
async fn obs_settings(config: &Config, metrics: &Metrics, max_memory: u64) {
    use std::sync::atomic::Ordering;
    metrics.set_max_memory(max_memory);
    let slowlog = &metrics.live.slowlog_threshold_ms;
    slowlog.store(config.slowlog_threshold_ms, Ordering::Relaxed);
    metrics.tracer.set_sample_every(config.trace_sample);
    // Only the binary runs on jemalloc with the profiler; elsewhere there is nothing to switch.
    let state = obs::profile::heap_profiling_state().await;
    if state.is_some_and(|on| on != config.heap_profiling) {
        if let Err(e) = obs::profile::set_heap_profiling(config.heap_profiling).await {
            warn!(error = %e, "cannot switch heap profiling");
        }
    }
}

fn tracking_mode(config: &Config) -> TrackingMode {
    match config.tracking.as_str() {
        "bcast" => TrackingMode::Bcast(
            config
                .tracking_prefixes
                .iter()
                .map(|p| bytes::Bytes::from(p.clone()))
                .collect(),
        ),
        _ => TrackingMode::Default,
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _peer))
                if ctx.metrics.clients.get() as usize >= ctx.clients.max_clients() =>
            {
                tokio::spawn(session::refuse(stream, "ERR max number of clients reached"));
            }
            Ok((stream, _peer)) => {
                // Counted here, not in the task, so a burst of accepts cannot overshoot.
                ctx.metrics.connections.inc();
                ctx.metrics.clients.inc();
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    session::serve_client(stream, ctx.clone()).await;
                    ctx.metrics.clients.dec();
                });
            }
            Err(e) => {
                // Out of descriptors and the like: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
