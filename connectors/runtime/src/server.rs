//! The health and metrics server every connector runs: `/healthz` (the process is alive),
//! `/readyz` (both sides connected) and `/metrics` (Prometheus text).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};

use crate::{shutdown::Shutdown, telemetry::Metrics};

/// Readiness of the two sides of a connector.
#[derive(Debug, Default)]
pub struct Health {
    hub: AtomicBool,
    upstream: AtomicBool,
}

impl Health {
    pub fn set_hub(&self, ready: bool) {
        self.hub.store(ready, Ordering::Relaxed);
    }

    /// The outside system's side: connected (sources) or reachable (sinks).
    pub fn set_upstream(&self, ready: bool) {
        self.upstream.store(ready, Ordering::Relaxed);
    }

    /// Whether the hub side is up (its last write or read went through).
    pub fn is_hub(&self) -> bool {
        self.hub.load(Ordering::Relaxed)
    }

    /// Whether the outside system's side says it is ready.
    pub fn is_upstream(&self) -> bool {
        self.upstream.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        self.hub.load(Ordering::Relaxed) && self.upstream.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// Binds `addr` and serves until `shutdown`. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics });
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "Health server stopped.");
        }
    });
    Ok((bound, task))
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let hub = s.health.hub.load(Ordering::Relaxed);
    let up = s.health.upstream.load(Ordering::Relaxed);
    s.metrics.up.set(i64::from(hub && up));
    match (hub, up) {
        (true, true) => (StatusCode::OK, "ready\n".to_string()),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: hub {}, upstream {}\n", word(hub), word(up)),
        ),
    }
}

fn word(ok: bool) -> &'static str {
    if ok { "connected" } else { "not connected" }
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    s.metrics.up.set(i64::from(s.health.is_ready()));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}
