//! Heap and CPU profiles in pprof's format (gzipped protobuf), for `go tool pprof` and
//! `nearcache heap-diff`.
//!
//! The heap profile is jemalloc's own sampling profiler: the binary enables it through
//! `malloc_conf` (one sample per 512 KiB allocated on average, cheap enough to stay on in
//! production) and `--heap-profiling false` pauses it. A process whose allocator is not
//! jemalloc with profiling (the in-process tests) gets [`ProfileError::Unavailable`].
//! The CPU profile samples stacks on SIGPROF for the asked number of seconds, one capture at
//! a time.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pprof::protos::Message as _;

/// Why no profile came back.
#[derive(Debug)]
pub enum ProfileError {
    /// This process cannot produce the profile (e.g. not running on jemalloc with profiling).
    Unavailable(String),
    /// Another CPU profile is being captured.
    Busy,
    /// The profiler failed.
    Failed(String),
}

impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileError::Unavailable(why) => write!(f, "profile unavailable: {why}"),
            ProfileError::Busy => {
                f.write_str("a CPU profile is already being captured; retry later")
            }
            ProfileError::Failed(why) => write!(f, "profiling failed: {why}"),
        }
    }
}

/// Whether jemalloc's heap profiler exists in this process and is sampling now.
pub async fn heap_profiling_state() -> Option<bool> {
    #[cfg(not(target_env = "msvc"))]
    {
        let ctl = jemalloc_pprof::PROF_CTL.as_ref()?;
        Some(ctl.lock().await.activated())
    }
    #[cfg(target_env = "msvc")]
    None
}

/// Switches heap sampling on or off (`prof.active`); an error if the profiler is absent.
pub async fn set_heap_profiling(on: bool) -> Result<(), ProfileError> {
    #[cfg(not(target_env = "msvc"))]
    {
        let ctl = jemalloc_pprof::PROF_CTL.as_ref().ok_or_else(not_jemalloc)?;
        let mut ctl = ctl.lock().await;
        let r = if on { ctl.activate() } else { ctl.deactivate() };
        r.map_err(|e| ProfileError::Failed(e.to_string()))
    }
    #[cfg(target_env = "msvc")]
    Err(not_jemalloc())
}

fn not_jemalloc() -> ProfileError {
    ProfileError::Unavailable(
        "jemalloc heap profiling is not enabled in this process (the nearcache binary enables \
         it; in-process embedders and tests run without it)"
            .into(),
    )
}

/// The live heap as a gzipped pprof profile (`inuse_space` in bytes, symbolised).
pub async fn heap_pprof() -> Result<Vec<u8>, ProfileError> {
    #[cfg(not(target_env = "msvc"))]
    {
        let ctl = jemalloc_pprof::PROF_CTL.as_ref().ok_or_else(not_jemalloc)?;
        let mut guard = ctl.clone().lock_owned().await;
        if !guard.activated() {
            return Err(ProfileError::Unavailable(
                "heap profiling is switched off (--heap-profiling false); turn it on with \
                 NEARCACHE CONFIG SET heap-profiling true"
                    .into(),
            ));
        }
        // Dumping writes a file and symbolises every sampled stack: keep it off the workers.
        tokio::task::spawn_blocking(move || guard.dump_pprof())
            .await
            .map_err(|e| ProfileError::Failed(e.to_string()))?
            .map_err(|e| ProfileError::Failed(format!("{e:#}")))
    }
    #[cfg(target_env = "msvc")]
    Err(not_jemalloc())
}

static CPU_BUSY: AtomicBool = AtomicBool::new(false);

/// What a CPU capture returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuFormat {
    /// Gzipped pprof protobuf.
    Pprof,
    /// A flamegraph SVG.
    Flamegraph,
}

/// Longest CPU capture accepted, in seconds.
pub const MAX_CPU_SECONDS: u64 = 60;
/// Stack samples per second during a CPU capture.
const CPU_FREQUENCY: i32 = 99;

/// Samples the CPU for `seconds` (1..=[`MAX_CPU_SECONDS`]); one capture at a time.
pub async fn cpu_profile(seconds: u64, format: CpuFormat) -> Result<Vec<u8>, ProfileError> {
    if CPU_BUSY.swap(true, Ordering::AcqRel) {
        return Err(ProfileError::Busy);
    }
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            CPU_BUSY.store(false, Ordering::Release);
        }
    }
    let _release = Release;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(CPU_FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| ProfileError::Failed(e.to_string()))?;
    tokio::time::sleep(Duration::from_secs(seconds.clamp(1, MAX_CPU_SECONDS))).await;
    // Building the report symbolises the stacks: off the workers.
    tokio::task::spawn_blocking(move || {
        let report = guard
            .report()
            .build()
            .map_err(|e| ProfileError::Failed(e.to_string()))?;
        drop(guard);
        match format {
            CpuFormat::Flamegraph => {
                let mut svg = Vec::new();
                report
                    .flamegraph(&mut svg)
                    .map_err(|e| ProfileError::Failed(e.to_string()))?;
                Ok(svg)
            }
            CpuFormat::Pprof => {
                let profile = report
                    .pprof()
                    .map_err(|e| ProfileError::Failed(e.to_string()))?;
                gzip(&profile.encode_to_vec()).map_err(|e| ProfileError::Failed(e.to_string()))
            }
        }
    })
    .await
    .map_err(|e| ProfileError::Failed(e.to_string()))?
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes)?;
    gz.finish()
}
