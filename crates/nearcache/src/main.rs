//! The `nearcache` binary: parse flags, set up logging, run until SIGINT or SIGTERM; SIGHUP
//! re-reads the configuration file and applies what can change live.
//! `nearcache heap-diff OLD NEW` compares two heap profiles instead (see obs::heapdiff);
//! `nearcache capture` and `nearcache simulate` are the offline tools (see capture, simulate).
//!
//! Owns the process: the allocator, the log subscriber, the runtime, the signals. Never holds
//! proxy state of its own; everything lives in the instance `nearcache::start_with` returns.

use std::io::Write;

use clap::Parser;
use nearcache::capture::{self, CaptureArgs};
use nearcache::config::{self, Config, Loaded};
use nearcache::obs::{heapdiff, LogControl};
use nearcache::simulate::{self, SimulateArgs};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Layer as _};

// jemalloc returns freed memory to the OS on its own schedule and keeps per-thread caches small,
// so the process stays near the cache's cap whatever the number of worker threads (glibc's
// per-thread arenas held tens of MB more on many-core machines).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string pointer jemalloc reads at start-up.
#[cfg(not(target_env = "msvc"))]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer refers to an immutable static string.
#[cfg(not(target_env = "msvc"))]
unsafe impl Sync for MallocConf {}

/// jemalloc's options (its symbols carry the `_rjem_` prefix): the heap profiler is compiled
/// in and sampling from the start, one sample per 2^19 bytes (512 KiB) allocated on average,
/// which costs little enough to leave on. `--heap-profiling false` pauses it (`prof.active`).
/// Freed pages go back to the OS at once (`dirty_decay_ms:0`) instead of over jemalloc's
/// default 10 s: when the cache turns over (many small entries giving way to fewer large ones)
/// the pages they held would otherwise keep resident memory above the cap for that long. With
/// 64-byte values the proxy's CPU per miss and per SET did not change measurably.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf =
    MallocConf(c"prof:true,prof_active:true,lg_prof_sample:19,dirty_decay_ms:0".as_ptr());

fn main() -> std::process::ExitCode {
    match run_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nearcache: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main() -> anyhow::Result<()> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "heap-diff") {
        let args = heapdiff::HeapDiffArgs::parse_from(&argv[1..]);
        print!("{}", heapdiff::run(&args)?);
        return Ok(());
    }
    if argv.get(1).is_some_and(|a| a == "capture") {
        print!("{}", capture::run(&CaptureArgs::parse_from(&argv[1..]))?);
        return Ok(());
    }
    if argv.get(1).is_some_and(|a| a == "simulate") {
        print!("{}", simulate::run(&SimulateArgs::parse_from(&argv[1..]))?);
        return Ok(());
    }
    let args = config::parse_args(argv);
    let Loaded { config, warnings } = Config::load(&args)?;
    let log = init_logging(&config);
    for w in warnings {
        tracing::warn!("{w}");
    }
    // The main thread's runtime runs the accept loop, the admin port and the invalidation
    // connection, and its share of the client sessions; `server` starts the other session
    // threads, each a single-threaded runtime too (see `workers`).
    let mut rt = tokio::runtime::Builder::new_current_thread();
    rt.enable_all().build()?.block_on(run(config, args, log))
}

/// Logs to stderr (text or JSON) through a filter that SIGHUP and `NEARCACHE CONFIG SET
/// log-level` can change; `RUST_LOG`, when set, wins over `log_level` at start.
fn init_logging(config: &Config) -> LogControl {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level.0))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if config.log_json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .init();
    LogControl::new(move |text: &str| {
        let f = EnvFilter::try_new(text).map_err(|e| format!("invalid log filter: {e}"))?;
        handle.reload(f).map_err(|e| e.to_string())
    })
}

async fn run(config: Config, args: config::Args, log: LogControl) -> anyhow::Result<()> {
    let running = nearcache::start_with(config, Some(log)).await?;
    let admin = running
        .admin_addr
        .map_or_else(|| "none".to_string(), |a| a.to_string());
    // Scripts and tests wait for this line to learn the bound ports.
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "nearcache ready listen={} admin={admin}",
        running.listen_addr
    )?;
    stdout.flush()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = hangup.recv() => reload(&running, &args).await,
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// SIGHUP: reads the file and flags again and applies what can change live.
async fn reload(running: &nearcache::Running, args: &config::Args) {
    match Config::load(args) {
        Ok(Loaded { config, warnings }) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            if let Err(e) = running.reload(config).await {
                tracing::error!(error = %e, "configuration reload refused");
            }
        }
        Err(e) => tracing::error!(error = %e, "configuration reload failed"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
