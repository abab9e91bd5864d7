//! Lock and atomic types used by the cache, behind one seam.
//!
//! With the `shuttle` feature these become shuttle's instrumented types so the model-checking
//! tests can explore interleavings; otherwise they are `parking_lot`/`std` types. Nothing else in
//! the crate may name `parking_lot`, `std::sync` or `shuttle` directly: every lock and atomic goes
//! through this module, or shuttle would miss it. It holds no cache logic, only the types and
//! the counter bump.

#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic::{AtomicU64, Ordering};

/// A mutex whose `lock` returns the guard directly (no poisoning in the API).
pub(crate) struct Mutex<T> {
    #[cfg(not(feature = "shuttle"))]
    inner: parking_lot::Mutex<T>,
    #[cfg(feature = "shuttle")]
    inner: shuttle::sync::Mutex<T>,
}

#[cfg(not(feature = "shuttle"))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(feature = "shuttle")]
pub(crate) type MutexGuard<'a, T> = shuttle::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(feature = "shuttle"))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(feature = "shuttle")]
            inner: shuttle::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(feature = "shuttle"))]
        {
            self.inner.lock()
        }
        #[cfg(feature = "shuttle")]
        {
            // A panic while holding the lock already fails the test; keep going with the data.
            match self.inner.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            }
        }
    }
}

/// Increment a counter that is only written while its shard lock is held: a plain load+store is
/// enough (readers tolerate a slightly stale value) and avoids a locked read-modify-write.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}
