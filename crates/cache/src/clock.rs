//! A tiny monotonic millisecond clock for callers; the cache itself never reads time.

use std::time::Instant;

/// Deadline meaning "never expires".
pub const NEVER: u64 = u64::MAX;

/// Milliseconds since the clock was created, for `now` / `expires_at` arguments.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock starting at 0 now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Milliseconds elapsed since `new`.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}
