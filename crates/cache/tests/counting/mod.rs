//! A counting global allocator for the tests that compare what the cache reports with what it
//! allocates. A test binary that uses it must run one test function only, so that no other
//! test thread allocates while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts live heap bytes, each allocation rounded like a typical malloc (8-byte header,
/// 16-byte granules, 32-byte minimum).
pub struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static CALLS: AtomicI64 = AtomicI64::new(0);

fn charged(size: usize) -> i64 {
    ((size + 8 + 15) & !15).max(32) as i64
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(charged(layout.size()), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(charged(layout.size()), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(
            charged(new_size) - charged(layout.size()),
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap bytes, as counted.
#[allow(dead_code)]
pub fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// Allocations and reallocations so far.
#[allow(dead_code)]
pub fn calls() -> i64 {
    CALLS.load(Ordering::Relaxed)
}
