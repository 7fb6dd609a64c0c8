//! The operator's Prometheus metrics and its /healthz and /metrics server.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, http::header, routing::get};
use prometheus_client::{encoding::text::encode, metrics::counter::Counter, registry::Registry};

/// Counters of the reconciler.
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("runnel_operator");
        let reconciles = Counter::default();
        let failures = Counter::default();
        registry.register(
            "reconciles",
            "Connector reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Connector reconciles that failed and were retried",
            failures.clone(),
        );
        Metrics {
            reconciles,
            failures,
            registry,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves /healthz and /metrics on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "The health server stopped.");
        }
    });
    Ok(bound)
}
