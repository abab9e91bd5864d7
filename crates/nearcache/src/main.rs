//! The `nearcache` binary: parse flags, set up logging, run until SIGINT or SIGTERM; SIGHUP
//! re-reads the configuration file and applies what can change live.

use std::io::Write;

use clap::Parser;
use nearcache::config::{Args, Config};
use tracing_subscriber::EnvFilter;

// jemalloc returns freed memory to the OS on its own schedule and keeps per-thread caches small,
// so the process stays near the cache's cap whatever the number of worker threads (glibc's
// per-thread arenas held tens of MB more on many-core machines).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::from_args(args.clone())?;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if config.threads > 0 {
        rt.worker_threads(config.threads);
    }
    rt.enable_all().build()?.block_on(run(config, args))
}

async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let running = nearcache::start(config).await?;
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
            _ = hangup.recv() => match Config::from_args(args.clone()) {
                Ok(new) => {
                    if let Err(e) = running.reload(new) {
                        tracing::error!(error = %e, "configuration reload refused");
                    }
                }
                Err(e) => tracing::error!(error = %e, "configuration reload failed"),
            },
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
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
