//! Prometheus metrics and `/metrics`, `/healthz`, `/readyz`.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use mapper_cluster::ClusterHandle;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tracing::info;

type Label = [(&'static str, &'static str); 1];

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Batches by result (applied, duplicate).
    pub batches: Family<Label, Counter>,
    /// Batches rejected as invalid.
    pub batches_rejected: Counter,
    /// Flows applied to edges.
    pub flows_ingested: Counter,
    /// Flow ends that could not be attributed, by reason.
    pub flows_unresolved: Family<Label, Counter>,
    /// Edges in the store.
    pub edges: Gauge,
    /// Edges removed by retention.
    pub edges_expired: Counter,
    /// Flow ends that could not be attributed, all reasons (for Health).
    pub unresolved_total: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut r = Registry::with_prefix("mapper_server");
        r.register("batches", "Batches received, by result", self.batches.clone());
        r.register("batches_rejected", "Batches rejected as invalid", self.batches_rejected.clone());
        r.register("flows_ingested", "Flows applied to edges", self.flows_ingested.clone());
        r.register(
            "flows_unresolved",
            "Flow ends that could not be attributed, by reason",
            self.flows_unresolved.clone(),
        );
        r.register("edges", "Edges in the store", self.edges.clone());
        r.register("edges_expired", "Edges removed by retention", self.edges_expired.clone());
        let mut out = String::new();
        let _ = encode(&mut out, &r);
        out
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    cluster: ClusterHandle,
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
}

async fn ready(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.cluster.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "cluster state not synced yet")
    }
}

/// Serves the endpoints on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    cluster: ClusterHandle,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let app = Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, cluster });
    info!(addr = ?addr, "metrics listening");
    axum::serve(listener, app).await
}
