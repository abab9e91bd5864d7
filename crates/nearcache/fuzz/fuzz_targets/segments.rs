//! Whatever the segments (any direction, sequence and acknowledgment numbers, flags and
//! payload, on a few connections): the capture pipeline does not panic, every payload byte is
//! delivered or counted as retransmitted, every decoded command is in the trace and reads
//! back from it. The checks are `nearcache::capture::check`, which tests/capture.rs also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = nearcache::capture::check::run_segments(data) {
        panic!("{broken}");
    }
});
