//! The `nearcache` binary: parse flags, set up logging, raise the open-file limit, run until
//! SIGINT or SIGTERM; SIGHUP re-reads the configuration file and applies what can change live.
//! `--check-config` checks and prints the configuration instead; `nearcache heap-diff OLD NEW`
//! compares two heap profiles (see obs::heapdiff); `nearcache capture` and `nearcache simulate`
//! are the offline tools (see capture, simulate). Tells systemd (`Type=notify`) when it is
//! ready, reloading and stopping.
//!
//! Owns the process: the allocator, the log subscriber, resource limits, the runtime, the
//! signals. Never holds proxy state of its own; everything lives in the instance
//! `nearcache::start_with` returns.

use std::io::{IsTerminal as _, Write};

use anyhow::Context as _;
use sd_notify::NotifyState;

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
/// in and sampling from the start, one sample per 2^19 bytes (512 KiB) allocated on average:
/// its cost follows the bytes allocated (under 1% of a 64 B miss's instructions, about 5% of a
/// 4 KB miss's: docs/performance.md, "Heap profiling"), little enough to leave on where memory
/// must be explainable. `--heap-profiling false` pauses it (`prof.active`).
/// Freed pages go back to the OS over about a second (`dirty_decay_ms:1000`), not over
/// jemalloc's default 10 s nor at once. Sooner bounds how long a cache turnover (many small
/// entries giving way to fewer large ones) keeps resident memory above the cap; at once, every
/// large buffer freed (a 100 KB request or reply) was purged and the next one faulted in
/// fresh zeroed pages, which doubled the proxy's CPU per 100 KB SET at pipeline 16
/// (docs/performance.md, "Freed pages").
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf =
    MallocConf(c"prof:true,prof_active:true,lg_prof_sample:19,dirty_decay_ms:1000".as_ptr());

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
    if args.check_config {
        for w in warnings {
            eprintln!("nearcache: warning: {w}");
        }
        print!("{}", config.to_toml());
        eprintln!("nearcache: configuration OK");
        return Ok(());
    }
    let log = init_logging(&config)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    raise_fd_limit(&config);
    // The main thread's runtime runs the accept loop, the admin port and the invalidation
    // connection, and its share of the client sessions; `server` starts the other session
    // threads, each a single-threaded runtime too (see `workers`).
    let mut rt = tokio::runtime::Builder::new_current_thread();
    rt.enable_all().build()?.block_on(run(config, args, log))
}

/// Logs to stderr, or appended to `log_file`, (text or JSON) through a filter that SIGHUP and
/// `NEARCACHE CONFIG SET log-level` can change; `RUST_LOG`, when set, wins over `log_level` at
/// start. Colour codes only on a terminal: a journal, a file or a pipe gets plain text.
fn init_logging(config: &Config) -> anyhow::Result<LogControl> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level.0))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let (writer, ansi) = match &config.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path.0)
                .with_context(|| format!("--log-file: cannot open {}", path.0.display()))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let fmt = if config.log_json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .init();
    Ok(LogControl::new(move |text: &str| {
        let f = EnvFilter::try_new(text).map_err(|e| format!("invalid log filter: {e}"))?;
        handle.reload(f).map_err(|e| e.to_string())
    }))
}

/// Descriptors kept beyond the clients' and their upstream connections': listeners, the
/// admin port and its scrapes, the log file, the shared and invalidation connections
/// (redis-server keeps 32 too).
const RESERVED_FDS: u64 = 32;

/// The open-file limit `config` needs: a descriptor per client, one per upstream connection
/// (at most `max_open_conns`, or one per client when that is unlimited), and [`RESERVED_FDS`].
fn fds_wanted(config: &Config) -> u64 {
    let clients = config.max_clients as u64;
    let upstream = match config.max_open_conns {
        0 => clients,
        n => n as u64,
    };
    clients + upstream + RESERVED_FDS
}

/// Raises the soft `RLIMIT_NOFILE` toward [`fds_wanted`], as redis-server does for its
/// `maxclients`: within the hard limit, or beyond it where the process may (root,
/// CAP_SYS_RESOURCE); never lowers it. Logs what it obtained, and warns when that is short.
fn raise_fd_limit(config: &Config) {
    use rlimit::Resource;
    let wanted = fds_wanted(config);
    let Ok((soft, hard)) = rlimit::getrlimit(Resource::NOFILE) else {
        tracing::warn!("cannot read the open file limit (RLIMIT_NOFILE)");
        return;
    };
    if soft >= wanted {
        tracing::info!(limit = soft, wanted, "open file limit");
        return;
    }
    let raised = if wanted <= hard {
        rlimit::setrlimit(Resource::NOFILE, wanted, hard).is_ok()
    } else {
        rlimit::setrlimit(Resource::NOFILE, wanted, wanted).is_ok()
    };
    let obtained = match raised {
        true => wanted,
        false if rlimit::setrlimit(Resource::NOFILE, hard, hard).is_ok() => hard,
        false => soft,
    };
    if obtained >= wanted {
        tracing::info!(
            limit = obtained,
            was = soft,
            wanted,
            "open file limit raised"
        );
    } else {
        tracing::warn!(
            limit = obtained,
            wanted,
            max_clients = config.max_clients,
            "open file limit below what max_clients needs; raise the hard limit (LimitNOFILE=)"
        );
    }
}

async fn run(config: Config, args: config::Args, log: LogControl) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let running = nearcache::start_with(config, Some(log)).await?;
    // Handlers in place before the proxy says it is ready: a signal sent right after (by
    // systemd, a test, a script) must not meet the default action, which kills the process.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let admin = running
        .admin_addr
        .map_or_else(|| "none".to_string(), |a| a.to_string());
    // Scripts and tests wait for this line to learn the bound ports.
    let tls = running
        .tls_addr
        .map_or_else(String::new, |a| format!(" tls={a}"));
    let mut stdout = std::io::stdout();
    let listen = running
        .listen_addr
        .map_or_else(|| "none".to_string(), |a| a.to_string());
    writeln!(stdout, "nearcache ready listen={listen} admin={admin}{tls}")?;
    stdout.flush()?;
    notify(&[NotifyState::Ready]);
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => reload(&running, &args).await,
        }
    }
    tracing::info!("shutting down");
    notify(&[NotifyState::Stopping]);
    running.shutdown().await;
    Ok(())
}

/// Tells systemd (`Type=notify`) how the service is; nothing when not run by systemd.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// SIGHUP: reads the file, the environment (as at start) and the flags again and applies what
/// can change live.
async fn reload(running: &nearcache::Running, args: &config::Args) {
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        notify(&[NotifyState::Reloading, now]);
    }
    reread(running, args).await;
    notify(&[NotifyState::Ready]);
}

async fn reread(running: &nearcache::Running, args: &config::Args) {
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
