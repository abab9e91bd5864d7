//! The admin HTTP port: `/metrics` in Prometheus text format, and a landing page.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tracing::warn;

use crate::metrics::Metrics;

/// Binds the admin listener and serves it until `stop` turns true.
pub async fn start(
    addr: &str,
    metrics: Arc<Metrics>,
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
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
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
