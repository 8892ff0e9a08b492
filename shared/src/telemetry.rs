//! Metrics over HTTP: `GET /metrics` in Prometheus text format, for the coordinator and
//! for workers (`--metrics-listen`). The metrics themselves are `prometheus` crate types
//! kept by each side; this serves a registry of them, plus the process's own CPU time,
//! memory and open files.

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Brings gauges up to date just before a scrape (e.g. counts read from the database).
pub type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A registry with the process collector (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, …) already in it.
pub fn registry() -> Registry {
    let registry = Registry::new();
    // Only fails when registered twice, which a fresh registry rules out.
    let _ = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    registry
}

/// Serves `GET /metrics` on `listener` until `stop` completes.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Registry,
    refresh: Option<Refresh>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scrape = move || {
        let registry = registry.clone();
        let refresh = refresh.clone();
        async move {
            if let Some(refresh) = refresh {
                refresh().await;
            }
            let mut body = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => (
                    axum::http::StatusCode::OK,
                    [(CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    body,
                ),
                Err(e) => (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    [(CONTENT_TYPE, "text/plain")],
                    format!("encoding metrics: {e}").into_bytes(),
                ),
            }
        }
    };
    let app = axum::Router::new().route("/metrics", get(scrape));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// Binds `addr` for [`serve_metrics`], naming the address in the error.
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding the metrics address {addr}: {e}"))
}
