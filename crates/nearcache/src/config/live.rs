//! The limits on each client that sessions read while the proxy runs, and that a
//! configuration reload or `NEARCACHE CONFIG SET` changes under them.
//!
//! Owns atomics only: reading a limit costs a relaxed load, and nothing here ever locks.
//! Never decides a limit: `control.rs` puts the configuration's values here.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::Config;

/// Limits on each client, changeable while running.
pub struct ClientLimits {
    /// Most clients connected at once.
    max_clients: AtomicUsize,
    /// Close clients idle this long, in ms (Redis's `timeout`); 0 never does.
    idle_timeout_ms: AtomicU64,
    /// How long a shutdown waits for replies to requests already sent, in ms.
    shutdown_timeout_ms: AtomicU64,
    /// Close a client whose unparsed input grows beyond this.
    query_buffer: AtomicUsize,
    /// Close a client once more than this many bytes of replies wait for it.
    output_buffer: AtomicUsize,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ClientLimits {
    /// The limits `config` asks for.
    pub fn new(config: &Config) -> Self {
        let limits = ClientLimits {
            max_clients: AtomicUsize::new(0),
            idle_timeout_ms: AtomicU64::new(0),
            shutdown_timeout_ms: AtomicU64::new(0),
            query_buffer: AtomicUsize::new(0),
            output_buffer: AtomicUsize::new(0),
        };
        limits.update(config);
        limits
    }

    /// Takes every limit from `config`.
    pub fn update(&self, config: &Config) {
        let set = |a: &AtomicUsize, v: usize| a.store(v, Ordering::Relaxed);
        set(&self.max_clients, config.max_clients);
        set(&self.query_buffer, config.client_query_buffer_limit.bytes());
        set(
            &self.output_buffer,
            config.client_output_buffer_limit.bytes(),
        );
        let idle = config.timeout.map_or(0, ms);
        self.idle_timeout_ms.store(idle, Ordering::Relaxed);
        let shutdown = ms(config.shutdown_timeout);
        self.shutdown_timeout_ms.store(shutdown, Ordering::Relaxed);
    }

    pub fn max_clients(&self) -> usize {
        self.max_clients.load(Ordering::Relaxed)
    }

    /// How long a client may stay idle, if there is a limit.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms.load(Ordering::Relaxed))
    }

    pub fn query_buffer(&self) -> usize {
        self.query_buffer.load(Ordering::Relaxed)
    }

    pub fn output_buffer(&self) -> usize {
        self.output_buffer.load(Ordering::Relaxed)
    }
}
