//! Prometheus metrics, served with `/healthz` and `/readyz` by `mapper-telemetry`.

use std::sync::Arc;

use mapper_cluster::ClusterHandle;

use crate::store::EdgeStore;
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

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
    /// Flows accepted but not applied to any edge, by reason (`loopback`).
    pub flows_ignored: Family<Label, Counter>,
    /// Edges in the store.
    pub edges: Gauge,
    /// Edges removed by retention.
    pub edges_expired: Counter,
    /// Edges moved because an end unknown when seen was resolved by a later cluster state.
    pub edges_reresolved: Counter,
    /// Flow ends that could not be attributed, all reasons (for Health).
    pub unresolved_total: std::sync::atomic::AtomicU64,
}

impl Metrics {
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("mapper_server");
        r.register("batches", "Batches received, by result", self.batches.clone());
        r.register("batches_rejected", "Batches rejected as invalid", self.batches_rejected.clone());
        r.register("flows_ingested", "Flows applied to edges", self.flows_ingested.clone());
        r.register(
            "flows_unresolved",
            "Flow ends that could not be attributed, by reason",
            self.flows_unresolved.clone(),
        );
        r.register(
            "flows_ignored",
            "Flows accepted but applied to no edge, by reason (loopback: the traffic never left its network namespace)",
            self.flows_ignored.clone(),
        );
        r.register("edges", "Edges in the store", self.edges.clone());
        r.register("edges_expired", "Edges removed by retention", self.edges_expired.clone());
        r.register(
            "edges_reresolved",
            "Edges moved because an end unknown when seen was resolved by a later cluster state",
            self.edges_reresolved.clone(),
        );
        r
    }
}

/// What the server's HTTP endpoint reports: its metrics, and ready once the
/// cluster-state source has synced, while the store accepts writes.
#[derive(Debug)]
pub struct ServerHealth {
    pub metrics: Arc<Metrics>,
    pub cluster: ClusterHandle,
    pub store: Arc<EdgeStore>,
}

impl mapper_telemetry::Health for ServerHealth {
    fn registry(&self) -> Registry {
        let mut r = self.metrics.registry();
        // Read from the store at each scrape.
        let errors = Counter::<u64>::default();
        errors.inc_by(self.store.write_errors());
        r.register("store_write_errors", "Store writes (transactions, reopens) that failed", errors);
        let healthy = Gauge::<i64>::default();
        healthy.set(i64::from(self.store.is_healthy()));
        r.register(
            "store_healthy",
            "1 while the store accepts writes, 0 from a failed write until one succeeds",
            healthy,
        );
        r
    }

    fn readiness(&self) -> Result<(), &'static str> {
        if !self.cluster.is_ready() {
            Err("cluster state not synced yet")
        } else if !self.store.is_healthy() {
            Err("the store cannot write (see the log for the cause)")
        } else {
            Ok(())
        }
    }
}
