//! The admin HTTP port: `/metrics` (OpenMetrics or the Prometheus text format, as the scraper's
//! `Accept` asks), the `/healthz` and `/readyz` probes, the dashboard (`/`) and its
//! `/api/stats`, heap and CPU profiles under `/debug/pprof/`, and `/debug/trace` captures.
//!
//! Every handler answers bad query strings with a 4xx text and unavailable profilers with a
//! 5xx text; none panics on a request.
//! Owns the routes; never changes the proxy's state (that is `NEARCACHE` on the RESP port).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::warn;

use crate::cachelayer::{CacheLayer, MRC_MULTIPLES};
use crate::obs::expose::{self, Format};
use crate::obs::health::Readiness;
use crate::obs::metrics::{CacheSnapshot, Metrics};
use crate::obs::profile::{self, CpuFormat, ProfileError};
use crate::obs::{dashboard, trace};
use crate::upstream::{Pool, PoolStats};

/// What the handlers read.
#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    cache: Option<Arc<CacheLayer>>,
    pool: Arc<Pool>,
    ready: Readiness,
}

impl Admin {
    /// The cache's figures, with its estimated hit ratio at these multiples of its size.
    fn snapshot(&self, multiples: &[f64]) -> Option<CacheSnapshot> {
        self.cache.as_ref().map(|c| CacheSnapshot {
            stats: c.stats(),
            invalidated_keys: c.invalidated_keys.load(Ordering::Relaxed),
            unmatched_keys: c.unmatched_keys.load(Ordering::Relaxed),
            collapsed: c.collapsed(),
            mrc: mrc_points(c, multiples),
        })
    }

    /// The pool's figures; with a cluster upstream every node's summed, and each node's.
    fn pools(&self) -> (PoolStats, Vec<(String, PoolStats)>) {
        let Some(nodes) = &self.ready.cluster else {
            return (self.pool.stats(), Vec::new());
        };
        let each: Vec<(String, PoolStats)> = nodes
            .pools()
            .into_iter()
            .map(|(addr, pool)| (addr, pool.stats()))
            .collect();
        let mut total = PoolStats::default();
        for (_, s) in &each {
            total.add(s);
        }
        (total, each)
    }
}

/// Binds the admin listener and serves it until `stop` turns true. With a `token`, every path
/// but `/healthz` needs `Authorization: Bearer <token>`.
pub async fn start(
    addr: &str,
    token: Option<&str>,
    metrics: Arc<Metrics>,
    cache: Option<Arc<CacheLayer>>,
    ready: Readiness,
) -> anyhow::Result<SocketAddr> {
    let pool = ready.pool.clone();
    let mut stop = ready.stopping.clone();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on admin address {addr}"))?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics_text))
        .route("/readyz", get(readyz))
        .route("/api/stats", get(stats))
        .route("/debug/pprof/heap", get(heap))
        .route("/debug/pprof/profile", get(cpu))
        .route("/debug/pprof/flamegraph", get(flamegraph))
        .route("/debug/trace", get(capture_trace))
        .route_layer(middleware::from_fn_with_state(
            token.map(|t| Arc::<[u8]>::from(t.as_bytes())),
            authorize,
        ))
        // Added after the layer, so that the probe a liveness check sends needs no token.
        .route("/healthz", get(healthz))
        .with_state(Admin {
            metrics,
            cache,
            pool,
            ready,
        });
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

/// Lets a request through when no token is set or it carries the token; else 401, with the
/// challenge RFC 6750 names. The comparison takes the same time wherever the first
/// difference is.
async fn authorize(
    State(token): State<Option<Arc<[u8]>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if crate::config::values::same_secret(given, &token) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"nearcache\"")],
        "this admin port needs Authorization: Bearer <admin_token>\n",
    )
        .into_response()
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        dashboard::PAGE,
    )
}

async fn metrics_text(State(a): State<Admin>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let (pool, nodes) = a.pools();
    let openmetrics = a.metrics.render(a.snapshot(&MRC_MULTIPLES), &pool, &nodes);
    let body = match format {
        Format::OpenMetrics => openmetrics,
        Format::Text004 => expose::text004(&openmetrics),
    };
    ([(header::CONTENT_TYPE, format.content_type())], body)
}

/// Liveness: the process answers HTTP. Nothing else is checked, so that a Redis outage never
/// gets the proxy restarted.
async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}

/// Readiness: 200 `ready`, or 503 with every reason it is not, one a line.
async fn readyz(State(a): State<Admin>) -> Response {
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match a.ready.check() {
        Ok(()) => (text, "ready\n").into_response(),
        Err(why) => {
            let body = format!("not ready:\n{}\n", why.join("\n"));
            (StatusCode::SERVICE_UNAVAILABLE, text, body).into_response()
        }
    }
}

async fn stats(State(a): State<Admin>) -> impl IntoResponse {
    let json = dashboard::stats_json(
        &a.metrics,
        a.snapshot(&dashboard::MRC_MULTIPLES),
        &a.pools().0,
    );
    ([(header::CONTENT_TYPE, "application/json")], json)
}

async fn heap() -> Response {
    match profile::heap_pprof().await {
        Ok(bytes) => pprof_response(bytes, "heap.pb.gz"),
        Err(e) => error_response(e),
    }
}

async fn cpu(uri: Uri) -> Response {
    let format = match query(&uri, "format") {
        None | Some("pprof" | "proto") => CpuFormat::Pprof,
        Some("svg" | "flamegraph") => CpuFormat::Flamegraph,
        Some(other) => {
            return bad_request(format!("format must be pprof or svg, not {other:?}\n"));
        }
    };
    cpu_capture(&uri, format).await
}

async fn flamegraph(uri: Uri) -> Response {
    cpu_capture(&uri, CpuFormat::Flamegraph).await
}

async fn cpu_capture(uri: &Uri, format: CpuFormat) -> Response {
    let seconds = match seconds(uri, 30, profile::MAX_CPU_SECONDS) {
        Ok(s) => s,
        Err(msg) => return bad_request(msg),
    };
    match profile::cpu_profile(seconds, format).await {
        Ok(bytes) if format == CpuFormat::Flamegraph => {
            ([(header::CONTENT_TYPE, "image/svg+xml")], bytes).into_response()
        }
        Ok(bytes) => pprof_response(bytes, "profile.pb.gz"),
        Err(e) => error_response(e),
    }
}

async fn capture_trace(State(a): State<Admin>, uri: Uri) -> Response {
    let seconds = match seconds(&uri, 5, 60) {
        Ok(s) => s,
        Err(msg) => return bad_request(msg),
    };
    match a.metrics.tracer.capture(Duration::from_secs(seconds)).await {
        Ok(json) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"nearcache-trace.json\"",
                ),
            ],
            json,
        )
            .into_response(),
        Err(trace::CaptureError::Busy) => (
            StatusCode::CONFLICT,
            "a trace capture is already running; retry later\n",
        )
            .into_response(),
    }
}

/// The `seconds` parameter, `default` when absent, within 1..=`max`.
/// The estimated LRU hit ratio at `multiples` of the cache's size (read now: the size in force),
/// as (bytes, ratio); empty before any estimate.
fn mrc_points(cache: &CacheLayer, multiples: &[f64]) -> Vec<(u64, f64)> {
    let max = cache.stats().max_bytes as f64;
    let sizes: Vec<u64> = multiples.iter().map(|m| (m * max) as u64).collect();
    cache
        .mrc_curve(&sizes)
        .map(|ratios| sizes.into_iter().zip(ratios).collect())
        .unwrap_or_default()
}

fn seconds(uri: &Uri, default: u64, max: u64) -> Result<u64, String> {
    match query(uri, "seconds") {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(s) if (1..=max).contains(&s) => Ok(s),
            _ => Err(format!(
                "seconds must be a whole number from 1 to {max}, not {v:?}\n"
            )),
        },
    }
}

/// The value of `name` in the query string (no percent-decoding: values here are plain).
fn query<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg).into_response()
}

fn pprof_response(bytes: Vec<u8>, filename: &str) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}

fn error_response(e: ProfileError) -> Response {
    let status = match e {
        ProfileError::Busy => StatusCode::CONFLICT,
        ProfileError::Unavailable(_) => StatusCode::NOT_IMPLEMENTED,
        ProfileError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, format!("{e}\n")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_parameters() {
        let uri: Uri = "/debug/pprof/profile?seconds=3&format=svg".parse().unwrap();
        assert_eq!(query(&uri, "seconds"), Some("3"));
        assert_eq!(query(&uri, "format"), Some("svg"));
        assert_eq!(query(&uri, "nope"), None);
        assert_eq!(seconds(&uri, 30, 60).unwrap(), 3);
        for bad in ["0", "61", "-1", "x", ""] {
            let uri: Uri = format!("/p?seconds={bad}").parse().unwrap();
            assert!(seconds(&uri, 30, 60).is_err(), "{bad}");
        }
    }
}
