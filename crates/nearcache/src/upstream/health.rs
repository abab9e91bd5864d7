//! One log line per upstream failure cause, not one per request or per connection.
//!
//! When Redis is down, refuses connections (maxclients) or rejects our credentials, every
//! connection attempt fails the same way. The first failure with each cause during an outage is
//! logged at warn; repeats are logged at debug; the first success after failures is logged at
//! info and starts a new outage record.
//! Owns only which causes were logged; never decides whether to retry (the callers do).

use std::collections::HashSet;
use std::sync::Mutex;

use tracing::{debug, info, warn};

use crate::reply::UpstreamError;

/// Causes logged during the current outage (a handful at most: bounded anyway).
const MAX_CAUSES: usize = 64;

/// Remembers the causes logged since the last success.
#[derive(Default)]
pub struct Health {
    logged: Mutex<HashSet<String>>,
}

impl Health {
    /// Records a failed connection attempt by `who` (shared, dedicated, invalidation).
    pub fn failed(&self, who: &str, err: &UpstreamError) {
        let cause = err.to_string();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.contains(&cause) || logged.len() >= MAX_CAUSES {
            debug!(connection = who, %err, "upstream connection attempt failed again");
            return;
        }
        warn!(connection = who, %err, "cannot connect upstream");
        logged.insert(cause);
    }

    /// Records a successful connection.
    pub fn connected(&self, who: &str, addr: &str) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if !logged.is_empty() {
            logged.clear();
            info!(
                connection = who,
                upstream = addr,
                "upstream reachable again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_each_cause_until_a_success() {
        let h = Health::default();
        let e = |cause: &str| UpstreamError::Unavailable {
            addr: "a".into(),
            cause: cause.into(),
        };
        for _ in 0..3 {
            h.failed("shared", &e("refused"));
            h.failed("invalidation", &e("NOAUTH"));
        }
        assert_eq!(h.logged.lock().unwrap().len(), 2);
        h.connected("shared", "a");
        assert!(h.logged.lock().unwrap().is_empty());
    }
}
