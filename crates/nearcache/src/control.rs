//! The configuration in force, and changing it while the proxy runs: SIGHUP's reload and
//! `NEARCACHE CONFIG SET` both come here, so a setting changes the same way whichever asks.
//!
//! Owns the current [`Config`] and applying its live settings to the pool, the client limits,
//! the slow log, the tracer, the log filter, the heap profiler and the TLS listener's
//! certificates (read again at every reload: files replaced in place keep their names). Never
//! applies a setting that needs a restart: those are reported, and keep their old value until
//! one.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tracing::{error, info, warn};

use crate::config::live::ClientLimits;
use crate::config::{changed_settings, Config, Setting};
use crate::obs::metrics::Metrics;
use crate::obs::{profile, LogControl};
use crate::tls::ServerTls;
use crate::upstream::{Limits, Pool};

/// The running proxy's configuration and what applies it.
pub struct Control {
    config: Mutex<Config>,
    pool: Arc<Pool>,
    /// With `cluster = true`: every node's pool takes the pool limits.
    cluster: std::sync::OnceLock<Arc<crate::cluster::nodes::Nodes>>,
    metrics: Arc<Metrics>,
    clients: Arc<ClientLimits>,
    log: Option<LogControl>,
    /// The TLS listener's configuration, if there is a TLS listener.
    tls: Option<Arc<ServerTls>>,
    /// Serialises changes: one is applied (and may await the heap profiler) at a time.
    applying: tokio::sync::Mutex<()>,
}

impl Control {
    pub fn new(
        config: Config,
        pool: Arc<Pool>,
        metrics: Arc<Metrics>,
        clients: Arc<ClientLimits>,
        log: Option<LogControl>,
        tls: Option<Arc<ServerTls>>,
    ) -> Self {
        Control {
            config: Mutex::new(config),
            pool,
            cluster: std::sync::OnceLock::new(),
            metrics,
            clients,
            log,
            tls,
            applying: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The cluster's nodes, with `cluster = true`.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::nodes::Nodes>> {
        self.cluster.get()
    }

    /// The cluster's nodes, whose pools take the live pool limits from now on.
    pub fn set_cluster(&self, nodes: Arc<crate::cluster::nodes::Nodes>) {
        let _ = self.cluster.set(nodes);
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Applies the observability settings at start (the slow log, trace sampling, the heap
    /// profiler's state); the rest were applied as the proxy was built.
    pub async fn start(&self) {
        let config = self.config();
        self.apply_obs(&config);
        // Only the binary runs on jemalloc with the profiler; elsewhere there is nothing to
        // switch, and the default (on) is no error.
        if profile::heap_profiling_state().await.is_some() {
            if let Err(e) = self.heap_profiling(config.heap_profiling).await {
                warn!(error = %e, "cannot switch heap profiling");
            }
        }
    }

    /// Applies a new configuration: its live settings take effect now (the output limit for
    /// clients that connect from now on). Returns the settings that changed but need a
    /// restart, which keep their old value.
    pub async fn reload(&self, new: Config) -> Result<Vec<&'static Setting>, String> {
        new.validate()?;
        let _one = self.applying.lock().await;
        let old = self.config();
        let changed = changed_settings(&old, &new);
        let (live, restart): (Vec<_>, Vec<_>) = changed.into_iter().partition(|s| s.live);
        let mut applied = old.clone();
        for s in &live {
            s.copy(&mut applied, &new);
        }
        // The new live values beside the old restart-only ones must still work together.
        applied
            .validate()
            .map_err(|why| format!("{why} (with the settings in force until a restart)"))?;
        let mut live = live;
        if let Some(tls) = &self.tls {
            if let Err(why) = tls.reload(&applied) {
                error!(error = %why, "TLS certificates not reloaded; the ones in force stay");
                let tls_setting = |s: &Setting| s.name.starts_with("tls_");
                for s in live.iter().filter(|s| tls_setting(s)) {
                    s.copy(&mut applied, &old);
                }
                live.retain(|s| !tls_setting(s));
            }
        }
        self.apply(&applied, &live).await?;
        if !restart.is_empty() {
            let names: Vec<&str> = restart.iter().map(|s| s.name).collect();
            warn!(settings = ?names, "changed settings need a restart to take effect");
        }
        Ok(restart)
    }

    /// `NEARCACHE CONFIG SET name value`: a live setting changes now; any other is refused.
    pub async fn set(&self, name: &str, value: &str) -> Result<(), String> {
        let _one = self.applying.lock().await;
        // Checked before the value is read: a restart-only name (a secret's `_file` among them)
        // must not make the proxy open a file a client named.
        let setting = Setting::find(name).ok_or_else(|| format!("{name}: unknown setting"))?;
        if !setting.live {
            return Err(format!(
                "{name}: cannot change while the proxy runs (restart with the new value)"
            ));
        }
        let mut new = self.config();
        let warning = new
            .set(name, value)
            .map_err(|why| format!("{name}: {why}"))?;
        new.validate().map_err(|why| format!("{name}: {why}"))?;
        if let Some(tls) = self
            .tls
            .as_ref()
            .filter(|_| setting.name.starts_with("tls_"))
        {
            tls.reload(&new).map_err(|why| format!("{name}: {why}"))?;
        }
        if let Some(w) = warning {
            warn!("{w}");
        }
        self.apply(&new, &[setting]).await
    }

    /// Puts `new` in force, having applied the `changed` live settings.
    async fn apply(&self, new: &Config, changed: &[&'static Setting]) -> Result<(), String> {
        let has = |name: &str| changed.iter().any(|s| s.name == name);
        if has("log_level") {
            let log = self
                .log
                .as_ref()
                .ok_or("log_level cannot change in this process (no reloadable logger)")?;
            log.reload(&new.log_level.0)?;
        }
        if has("heap_profiling") {
            self.heap_profiling(new.heap_profiling)
                .await
                .map_err(|e| format!("heap_profiling: {e}"))?;
        }
        match self.cluster.get() {
            Some(nodes) => nodes.set_limits(pool_limits(new)),
            None => self.pool.set_limits(pool_limits(new)),
        }
        self.clients.update(new);
        self.apply_obs(new);
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = new.clone();
        if !changed.is_empty() {
            let names: Vec<&str> = changed.iter().map(|s| s.name).collect();
            info!(settings = ?names, "configuration changed");
        }
        Ok(())
    }

    fn apply_obs(&self, config: &Config) {
        let slowlog = config
            .slowlog_threshold
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let live = &self.metrics.live.slowlog_threshold_ms;
        live.store(slowlog, Ordering::Relaxed);
        self.metrics.tracer.set_sample_every(config.trace_sample);
    }

    /// Switches the heap profiler, where this process has one; elsewhere there is nothing to
    /// switch and asking for it on is an error.
    async fn heap_profiling(&self, on: bool) -> Result<(), profile::ProfileError> {
        match profile::heap_profiling_state().await {
            Some(state) if state != on => profile::set_heap_profiling(on).await,
            Some(_) => Ok(()),
            None if on => Err(profile::ProfileError::Unavailable(
                "not running on jemalloc with profiling".into(),
            )),
            None => Ok(()),
        }
    }
}

/// The pool limits a configuration asks for.
pub fn pool_limits(config: &Config) -> Limits {
    Limits {
        max_open: config.max_open_conns,
        max_idle: config.max_idle_conns,
        max_lifetime: config.conn_max_lifetime,
        max_idle_time: config.conn_max_idle_time,
        wait_timeout: config.pool_wait_timeout,
    }
}
