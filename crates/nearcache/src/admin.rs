//! The admin HTTP port: `/metrics` in Prometheus text format, and a landing page.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tracing::warn;

use crate::cachelayer::CacheLayer;
use crate::metrics::{CacheSnapshot, Metrics};
use crate::upstream::Pool;

/// Binds the admin listener and serves it until `stop` turns true.
pub async fn start(
    addr: &str,
    metrics: Arc<Metrics>,
    cache: Option<Arc<CacheLayer>>,
    pool: Arc<Pool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on admin address {addr}"))?;
    let local = listener.local_addr()?;
    let app = Router::new().route("/", get(index)).route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            let pool = pool.clone();
            let snapshot = cache.as_ref().map(|c| CacheSnapshot {
                stats: c.stats(),
                invalidated_keys: c.invalidated_keys.load(Ordering::Relaxed),
                unmatched_keys: c.unmatched_keys.load(Ordering::Relaxed),
                collapsed: c.collapsed.load(Ordering::Relaxed),
            });
            async move {
                let content_type = "text/plain; version=0.0.4; charset=utf-8";
                (
                    [(header::CONTENT_TYPE, content_type)],
                    m.render(snapshot, &pool.stats()),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "admin server stopped");
        }
    });
    Ok(local)
}

async fn index() -> impl IntoResponse {
    "nearcache admin: see /metrics\n"
}
