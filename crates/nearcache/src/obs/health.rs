//! Readiness, as a Kubernetes readiness probe (`/readyz`) asks it: the proxy is listening and not
//! shutting down, Redis is reachable on a shared connection of each protocol, and, when it
//! caches, the invalidation connection is up, so that what the cache holds and fills is
//! protected by tracking. With a cluster upstream, all of that for every master.
//!
//! Reads the state the upstream side already keeps (each connection's `is_up`, the tracking
//! redirect that the invalidation connection sets and clears); never keeps a state of its own
//! and never opens a connection to find out.

use std::sync::Arc;

use tokio::sync::watch;

use crate::upstream::{Pool, Tracking};

/// What `/readyz` reads.
#[derive(Clone)]
pub struct Readiness {
    pub pool: Arc<Pool>,
    /// The tracking state; `None` when caching is off (`max_memory = 0`).
    pub tracking: Option<Arc<Tracking>>,
    /// Turns true when the proxy begins to shut down.
    pub stopping: watch::Receiver<bool>,
    /// With `cluster = true`: every master's pool and tracking are checked instead.
    pub cluster: Option<Arc<crate::cluster::nodes::Nodes>>,
}

impl Readiness {
    /// `Ok` when ready; otherwise every reason it is not, one line each.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if *self.stopping.borrow() {
            why.push("shutting down".to_string());
        }
        let upstreams = match &self.cluster {
            Some(nodes) => nodes
                .masters()
                .into_iter()
                .map(|(_, pool)| {
                    let tracking = pool.tracking().cloned();
                    (pool, tracking)
                })
                .collect(),
            None => vec![(self.pool.clone(), self.tracking.clone())],
        };
        for (pool, tracking) in upstreams {
            for proto in [2, 3] {
                if !pool.shared(proto).is_up() {
                    why.push(format!(
                        "no RESP{proto} connection to upstream {} is up",
                        pool.addr()
                    ));
                }
            }
            if tracking.is_some_and(|t| t.redirect().is_none()) {
                why.push(format!(
                    "the invalidation connection to {} is down: the cache is flushed and not \
                     filled",
                    pool.addr()
                ));
            }
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why)
        }
    }
}
