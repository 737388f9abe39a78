//! The engine's HTTP side: `/metrics` (Prometheus text), `/health` (the process is up),
//! `/ready` (models loaded, a backend usable, not draining), and the `/v1/stream`
//! WebSocket (docs/stream.md). Loopback by default.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::call::Services;

/// The routes, over shared services.
pub fn router(services: Arc<Services>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/v1/stream", get(crate::stream::upgrade))
        .with_state(services)
}

async fn metrics(State(services): State<Arc<Services>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        services.metrics.render(),
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(services): State<Arc<Services>>) -> impl IntoResponse {
    if services.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if services.is_full() {
        (StatusCode::SERVICE_UNAVAILABLE, "full\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Serves the routes on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    services: Arc<Services>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(services))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the HTTP listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
