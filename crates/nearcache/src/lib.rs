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
pub mod command;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod reply;
pub mod session;
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
use metrics::Metrics;
use session::Context;
use upstream::{Limits, Pool, PoolConfig, Tracking, TrackingMode, TrackingSink};

/// A running proxy. Dropping it leaves the proxy running; call [`Running::shutdown`].
pub struct Running {
    /// Where clients connect (the bound port when the config asked for port 0).
    pub listen_addr: SocketAddr,
    /// Where the admin HTTP server listens, if enabled.
    pub admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, closes client sessions and the admin server.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
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
        let rules = keys::CacheRules::new(
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
        PoolConfig {
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
        idle_timeout: (config.timeout > 0).then(|| Duration::from_secs(config.timeout)),
        cache: cache.clone(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let admin_addr = match &config.admin_listen {
        Some(addr) => Some(admin::start(addr, metrics, cache, pool, stop_rx.clone()).await?),
        None => None,
    };
    info!(listen = %listen_addr, upstream = %config.upstream, admin = ?admin_addr, "nearcache started");
    let accept = tokio::spawn(accept_loop(listener, ctx, config.max_clients, stop_rx));
    Ok(Running {
        listen_addr,
        admin_addr,
        stop,
        accept,
    })
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

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Context>,
    max_clients: usize,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _peer)) if ctx.metrics.clients.get() as usize >= max_clients => {
                tokio::spawn(session::refuse(stream, "ERR max number of clients reached"));
            }
            Ok((stream, _peer)) => {
                // Counted here, not in the task, so a burst of accepts cannot overshoot.
                ctx.metrics.connections.inc();
                ctx.metrics.clients.inc();
                let ctx = ctx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    session::serve_client(stream, ctx.clone(), stop).await;
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
