//! Heap and CPU profiles in pprof's format (gzipped protobuf), for `go tool pprof` and
//! `nearcache heap-diff`.
//!
//! The heap profile is jemalloc's own sampling profiler: the binary enables it through
//! `malloc_conf` (one sample per 512 KiB allocated on average, cheap enough to stay on in
//! production) and `--heap-profiling false` pauses it. A process whose allocator is not
//! jemalloc with profiling (the in-process tests) gets [`ProfileError::Unavailable`].
//! The CPU profile samples stacks on SIGPROF for the asked number of seconds, one capture at
//! a time.
//! Never profiles unasked, and never labels a sample with a key or a value.

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
        tokio::task::spawn_blocking(move || {
            let raw = guard.dump_pprof();
            drop(guard);
            forget_symbols();
            let raw = raw.map_err(|e| ProfileError::Failed(format!("{e:#}")))?;
            strip_allocator_frames(&raw).map_err(|e| ProfileError::Failed(format!("{e:#}")))
        })
        .await
        .map_err(|e| ProfileError::Failed(e.to_string()))?
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
        forget_symbols();
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

/// Symbolising parses the binary's debug info into a process-wide cache; drop it, so that a
/// profile does not leave tens of MB behind (the next one parses again).
fn forget_symbols() {
    backtrace::clear_symbol_cache();
}

/// Frames of jemalloc and of Rust's global-allocator glue, matched at the start of the name.
const ALLOCATOR_FRAMES: &[&str] = &[
    "_rjem_",
    "je_",
    "prof_",
    "imalloc",
    "ialloc",
    "iralloc",
    "do_rallocx",
    "rallocx",
    "mallocx",
    "malloc_default",
    "arena_",
    "tcache_",
    "__rust_alloc",
    "__rust_realloc",
    "__rg_",
    "__rdl_",
    "tikv_jemallocator",
    "tikv_jemalloc_sys",
];

/// Removes the allocator's own frames from the leaf end of every stack, so that tools that
/// charge a sample to its leaf (`go tool pprof -top`) charge the code that allocated rather
/// than jemalloc's backtrace function. Frames not symbolised at the leaf end are the
/// allocator's too (every frame of ours has symbols).
fn strip_allocator_frames(gz: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::collections::{HashMap, HashSet};
    let mut p = super::heapdiff::decode(gz)?;
    let names: HashMap<u64, &str> = p
        .function
        .iter()
        .map(|f| {
            let name = p
                .string_table
                .get(f.name as usize)
                .map_or("", String::as_str);
            (f.id, name)
        })
        .collect();
    let allocator: HashSet<u64> = p
        .location
        .iter()
        .filter(|l| {
            l.line.iter().all(|line| {
                let name = names.get(&line.function_id).copied().unwrap_or("");
                let name = name.trim_start_matches('<');
                ALLOCATOR_FRAMES.iter().any(|f| name.starts_with(f))
                    || matches!(name, "malloc" | "calloc" | "realloc")
            })
        })
        .map(|l| l.id)
        .collect();
    for s in &mut p.sample {
        let keep_from = s
            .location_id
            .iter()
            .position(|id| !allocator.contains(id))
            .unwrap_or(0);
        s.location_id.drain(..keep_from);
    }
    Ok(gzip(&p.encode_to_vec())?)
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes)?;
    gz.finish()
}
