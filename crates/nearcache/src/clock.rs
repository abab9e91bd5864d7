//! The cache's clock: milliseconds on the kernel's coarse monotonic clock.
//!
//! Every lookup compares an entry's deadline with the time, so an MGET of ten keys reads the
//! clock ten times. The coarse clock is a plain memory read (no TSC read, no scaling), at the
//! price of lagging real time by up to its resolution (one kernel tick, 1-10 ms). Deadlines
//! are therefore set that much early ([`Clock::deadline`]), so an entry is never served after
//! the moment a precise clock would have expired it.

/// Milliseconds since the clock was made, from `CLOCK_MONOTONIC_COARSE`. Counting from the
/// process's start rather than the machine's keeps readings small: the cache stores deadlines
/// in 32 bits, exact for the first 24.8 days.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// How far the clock may lag behind real time, in milliseconds (rounded up).
    lag_ms: u64,
    /// The coarse clock's reading when this clock was made.
    start_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        let mut res = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_getres only writes the timespec it is given, which outlives the call.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } == 0;
        let res_ns = if ok {
            res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64
        } else {
            // Not expected on Linux; assume the slowest common tick (100 Hz).
            10_000_000
        };
        Self {
            lag_ms: res_ns.div_ceil(1_000_000),
            start_ms: coarse_ms(),
        }
    }

    /// The time now, in milliseconds; may lag real time by up to the clock's resolution.
    pub fn now(&self) -> u64 {
        coarse_ms().saturating_sub(self.start_ms)
    }

    /// The deadline of something that lives `life_ms` from `start` (a reading of [`Clock::now`]),
    /// moved early by the clock's lag (and the millisecond rounding of `now`) so that a reading
    /// taken later, however stale, reaches it no later than real time does.
    pub fn deadline(&self, start: u64, life_ms: u64) -> u64 {
        start
            .saturating_add(life_ms)
            .saturating_sub(self.lag_ms + 1)
    }
}

/// The coarse monotonic clock, in milliseconds.
fn coarse_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_forward_and_sets_deadlines_early() {
        let c = Clock::new();
        assert!(c.lag_ms >= 1 && c.lag_ms <= 1000, "lag {}", c.lag_ms);
        let a = c.now();
        assert!(a < 1000, "counts from its creation: {a}");
        std::thread::sleep(std::time::Duration::from_millis(c.lag_ms * 3 + 5));
        assert!(c.now() > a);
        assert_eq!(c.deadline(1000, 500), 1500 - c.lag_ms - 1);
        assert_eq!(c.deadline(0, 0), 0);
    }
}
