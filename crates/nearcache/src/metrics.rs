//! Process-wide counters, exposed in Prometheus text format on the admin port.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The proxy's metrics. Cheap to update from any task (atomics).
pub struct Metrics {
    registry: Registry,
    /// Commands received from clients.
    pub commands: Counter,
    /// Client connections accepted.
    pub connections: Counter,
    /// Client connections open now.
    pub clients: Gauge,
    /// Sessions holding a dedicated upstream connection now.
    pub pinned: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            commands: Counter::default(),
            connections: Counter::default(),
            clients: Gauge::default(),
            pinned: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "nearcache_commands",
            "Commands received from clients",
            m.commands.clone(),
        );
        registry.register(
            "nearcache_client_connections",
            "Client connections accepted",
            m.connections.clone(),
        );
        registry.register(
            "nearcache_connected_clients",
            "Client connections open now",
            m.clients.clone(),
        );
        registry.register(
            "nearcache_pinned_sessions",
            "Client sessions holding a dedicated upstream connection",
            m.pinned.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The metrics in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
