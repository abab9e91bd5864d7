//! One proxy instance: building it from a configuration (cache, tracking, pool, metrics, admin
//! port), accepting clients, and stopping.
//!
//! Owns the listeners and the instance's shared state ([`Context`]). Everything a proxy keeps is
//! reachable from here and nothing is process-wide, so two proxies in one process (tests) are
//! apart. Never handles a client's commands (the session does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cachelayer::{CacheLayer, CacheRules};
use crate::cluster::nodes::Nodes;
use crate::config::live::ClientLimits;
use crate::config::values::{ClientAuth, ReadFrom, TrackingKind};
use crate::config::{Config, Setting};
use crate::control::{pool_limits, Control};
use crate::obs::health::Readiness;
use crate::obs::metrics::Metrics;
use crate::obs::{self, LogControl};
use crate::session::{self, AuthGate, Context};
use crate::socket::{ClientStream, Listener};
use crate::tls::ServerTls;
use crate::upstream::{Pool, Settings, Tracking, TrackingMode, TrackingSink};
use crate::workers::Workers;

/// A running proxy. Dropping it leaves the proxy running (its session threads until the
/// calling runtime drops the accept loop too); call [`Running::shutdown`].
pub struct Running {
    /// Where plain-TCP clients connect (the bound port when the config asked for port 0), if
    /// anywhere (`listen = none`).
    pub listen_addr: Option<SocketAddr>,
    /// Where TLS clients connect (`tls_listen`), if anywhere.
    pub tls_addr: Option<SocketAddr>,
    /// The Unix socket clients may connect to as well, if any.
    pub unix_path: Option<PathBuf>,
    /// Where the admin HTTP server listens, if enabled.
    pub admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    accept: Vec<JoinHandle<()>>,
    ctx: Arc<Context>,
    workers: Arc<Workers>,
}

impl Running {
    /// Stops accepting, then gives client sessions up to `shutdown_timeout` to receive the
    /// replies to what they already sent; the admin server stops too. Sessions still open after
    /// that (a client blocked for ever, say) are dropped with their thread, or, on the calling
    /// runtime, left to end with the process.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.ctx.stop.raise();
        for accept in self.accept {
            let _ = accept.await;
        }
        // As redis-server does: the socket file goes with the listener.
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
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
        // The session threads end with the last holder of `workers` (the accept loop is done).
        drop(self.workers);
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.ctx.control.config()
    }

    /// Applies a new configuration: the live settings take effect now; the others are logged
    /// as needing a restart, and returned.
    pub async fn reload(&self, new: Config) -> Result<Vec<&'static Setting>, String> {
        self.ctx.control.reload(new).await
    }
}

/// Binds the listeners and starts serving. Must be called inside a tokio runtime.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with(config, None).await
}

/// [`start`], with the log filter changeable through `log` (the binary's subscriber).
pub async fn start_with(config: Config, log: Option<LogControl>) -> anyhow::Result<Running> {
    config.validate().map_err(anyhow::Error::msg)?;
    let listener = match &config.listen {
        Some(addr) => {
            let addr = addr.as_str();
            Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?,
            )
        }
        None => None,
    };
    let listen_addr = match &listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let tls = match &config.tls_listen {
        Some(addr) => {
            let server_tls = Arc::new(ServerTls::load(&config).map_err(anyhow::Error::msg)?);
            let addr = addr.as_str();
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for TLS on {addr}"))?;
            Some((l, server_tls))
        }
        None => None,
    };
    let tls_addr = match &tls {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    let upstream_tls = crate::tls::Upstream::from_config(&config)
        .map_err(|e| anyhow::anyhow!("upstream TLS: {e}"))?;
    let unix_path = config.unixsocket.as_ref().map(|p| p.0.clone());
    let unix = match &unix_path {
        Some(path) => Some(
            Listener::bind_unix(path, config.unixsocketperm.0)
                .with_context(|| format!("cannot listen on unix socket {}", path.display()))?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let max_memory = config.max_memory.0;
    metrics.set_max_memory(max_memory);
    let cache = (max_memory > 0).then(|| Arc::new(cache_layer(&config, metrics.clone())));
    let tracking = cache.clone().map(|c| {
        Arc::new(Tracking::new(
            tracking_mode(&config),
            c as Arc<dyn TrackingSink>,
        ))
    });
    let workers = Arc::new(Workers::start(
        session_threads(config.threads),
        config.thread_placement,
    )?);
    let settings = upstream_settings(&config, upstream_tls, workers.homes());
    let (pool, tracking, cluster) = if config.cluster {
        let sink = cache
            .clone()
            .map(|c| (tracking_mode(&config), c as Arc<dyn TrackingSink>));
        let replicas = config.read_from == ReadFrom::Replica;
        let nodes = Nodes::start(config.upstream.seeds(), settings, sink, replicas).await?;
        let Some((_, pool)) = nodes.any() else {
            anyhow::bail!("the cluster serves no slot");
        };
        // Readiness looks at the first master's pool; each node's tracking is its pool's.
        (pool, None, Some(nodes))
    } else {
        (Pool::new(settings, tracking.clone()), tracking, None)
    };
    let clients = Arc::new(ClientLimits::new(&config));
    let control = Arc::new(Control::new(
        config.clone(),
        pool.clone(),
        metrics.clone(),
        clients.clone(),
        log,
        tls.as_ref().map(|(_, t)| t.clone()),
    ));
    if let Some(nodes) = &cluster {
        control.set_cluster(nodes.clone());
    }
    control.start().await;
    let gate = auth_gate(&config, &pool).await;
    let ctx = Arc::new(Context {
        pool: pool.clone(),
        metrics: metrics.clone(),
        limits: resp::Limits::default(),
        clients,
        control,
        cache: cache.clone(),
        stop: Default::default(),
        registry: Default::default(),
        gate,
        cluster,
    });
    let (stop, stop_rx) = watch::channel(false);
    let admin_addr = match &config.admin_listen {
        Some(addr) => {
            let addr = addr.as_str();
            let ready = Readiness {
                pool,
                tracking,
                stopping: stop_rx.clone(),
                cluster: ctx.cluster.clone(),
            };
            let token = config.admin_token.as_ref().map(|t| t.0.as_str());
            Some(obs::http::start(addr, token, metrics, cache, ready).await?)
        }
        None => None,
    };
    info!(listen = ?listen_addr, tls_listen = ?tls_addr, unixsocket = ?unix_path, upstream = %config.upstream, admin = ?admin_addr, "nearcache started");
    let mut accept = Vec::new();
    if let Some(l) = listener {
        accept.push(tokio::spawn(accept_loop(
            Listener::Tcp(l, config.tcp_keepalive),
            ctx.clone(),
            workers.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some((l, server_tls)) = tls {
        accept.push(tokio::spawn(accept_loop(
            Listener::Tls(l, config.tcp_keepalive, server_tls),
            ctx.clone(),
            workers.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(unix) = unix {
        accept.push(tokio::spawn(accept_loop(
            unix,
            ctx.clone(),
            workers.clone(),
            stop_rx,
        )));
    }
    Ok(Running {
        listen_addr,
        tls_addr,
        unix_path,
        admin_addr,
        stop,
        accept,
        ctx,
        workers,
    })
}

/// How clients authenticate (docs/security.md).
async fn auth_gate(config: &Config, pool: &Pool) -> AuthGate {
    match (config.client_auth, &config.requirepass) {
        (ClientAuth::Password, Some(pass)) => AuthGate::Password(pass.0.as_str().into()),
        (ClientAuth::Passthrough, _) => {
            AuthGate::Passthrough(pool.watch_acl(config.acl_check_interval).await)
        }
        _ => {
            warn!(
                user = pool.user(),
                "client_auth = none: clients are not authenticated, and every client acts \
                 upstream as the proxy's user"
            );
            AuthGate::None
        }
    }
}

/// The tracking cache a configuration asks for.
fn cache_layer(config: &Config, metrics: Arc<Metrics>) -> CacheLayer {
    // In BCAST mode only keys under the tracking prefixes get invalidations.
    let include = match config.tracking {
        TrackingKind::Bcast if config.cache_include_prefixes.0.is_empty() => {
            &config.tracking_prefixes.0
        }
        _ => &config.cache_include_prefixes.0,
    };
    let rules = CacheRules::new(
        &config.cache_allow_commands.0,
        &config.cache_deny_commands.0,
        include,
        &config.cache_exclude_prefixes.0,
    );
    let ttl_ms = u64::try_from(config.cache_ttl.as_millis()).unwrap_or(u64::MAX);
    CacheLayer::new(
        config.max_memory.0,
        config.mrc_sample_keys,
        config.eviction,
        ttl_ms,
        rules,
        metrics,
    )
}

fn upstream_settings(
    config: &Config,
    tls: Option<crate::tls::Upstream>,
    homes: crate::upstream::Homes,
) -> Settings {
    Settings {
        addr: config.upstream.as_str().to_string(),
        shared_conns: config.upstream_conns,
        connect_timeout: config.connect_timeout,
        upstream_timeout: config.upstream_timeout,
        username: config.upstream_user.as_ref().map(|u| u.0.clone()),
        password: config.upstream_password.as_ref().map(|p| p.0.clone()),
        tracking_health: config.tracking_health_interval,
        tcp_keepalive: config.tcp_keepalive,
        tls,
        readonly: false,
        limits: pool_limits(config),
        homes,
    }
}

fn tracking_mode(config: &Config) -> TrackingMode {
    match config.tracking {
        TrackingKind::Bcast => TrackingMode::Bcast(
            config
                .tracking_prefixes
                .0
                .iter()
                .map(|p| bytes::Bytes::from(p.clone()))
                .collect(),
        ),
        TrackingKind::Default => TrackingMode::Default,
    }
}

/// One client in `clients`, from its accept until the value is dropped.
struct Counted(Arc<Context>);

impl Counted {
    fn new(ctx: Arc<Context>) -> Self {
        ctx.metrics.clients.inc();
        Counted(ctx)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.metrics.clients.dec();
    }
}

/// The `threads` setting as a count: 0 means one per core.
fn session_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

async fn accept_loop(
    listener: Listener,
    ctx: Arc<Context>,
    workers: Arc<Workers>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        // A TLS client's handshake is done where it is served, after its move to its thread.
        let tls = listener.tls();
        match accepted {
            Ok(stream) if ctx.metrics.clients.get() as usize >= ctx.clients.max_clients() => {
                tokio::spawn(async move {
                    if let Some(stream) = start_tls(stream, tls).await {
                        session::refuse(stream, "ERR max number of clients reached").await;
                    }
                });
            }
            Ok(stream) => {
                // Counted here, not in the task, so a burst of accepts cannot overshoot; the
                // count goes with the closure, also if the client never reaches its thread.
                ctx.metrics.connections.inc();
                let counted = Counted::new(ctx.clone());
                workers.spawn(stream, |stream| async move {
                    if let Some(stream) = start_tls(stream, tls).await {
                        session::serve_client(stream, counted.0.clone()).await;
                    }
                    drop(counted);
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

/// The client ready to serve: after its TLS handshake when `tls` is given. A failed handshake
/// (no certificate where one is required, a plain-text client, a timeout) is logged and the
/// client dropped.
async fn start_tls(
    stream: ClientStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Option<ClientStream> {
    let Some(acceptor) = tls else {
        return Some(stream);
    };
    let peer = stream.addrs().0;
    match stream.start_tls(acceptor).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            info!(client = %peer, error = %e, "TLS handshake failed; client dropped");
            None
        }
    }
}
