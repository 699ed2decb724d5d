//! Prometheus metrics, served with the health endpoints by `mapper-telemetry`.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

type Label = [(&'static str, &'static str); 1];

/// Every metric the agent exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Flows drained from the kernel, by direction.
    pub flows_drained: Family<Label, Counter>,
    /// Connections (UDP: datagrams) in drained flows, by direction and outcome.
    pub connections: Family<[(&'static str, &'static str); 2], Counter>,
    /// What the kernel could not record, by cause (mirrors its pinned counters).
    pub kernel_drops: Family<Label, Counter>,
    /// Entries in the flow buffer being written.
    pub flow_map_entries: Gauge,
    /// Logical capacity of one flow buffer.
    pub flow_map_capacity: Gauge,
    /// DNS answers parsed.
    pub dns_answers: Counter,
    /// DNS payloads skipped, by reason (malformed and truncated are parse errors).
    pub dns_skipped: Family<Label, Counter>,
    /// Drains completed (flows handed on and removed from the kernel).
    pub drains: Counter,
    /// Drains that failed.
    pub drain_errors: Counter,
    /// Batches waiting for the server's acknowledgement.
    pub pending_batches: Gauge,
    /// Flows in those batches.
    pub pending_flows: Gauge,
    /// Batches sent again (after a failure or a lost acknowledgement).
    pub resends: Counter,
    /// Batches acknowledged.
    pub batches_acked: Counter,
    /// Batches the server refused as invalid (set aside in the spool's `rejected/`), by gRPC code.
    pub batches_rejected: Family<Label, Counter>,
    /// Rejected batches that could not be written to `rejected/` (dropped).
    pub rejected_write_errors: Counter,
    /// Times unsent batches were merged to stay within the buffer bound.
    pub merges: Counter,
    /// Flows dropped because even merged they exceeded the bound.
    pub flows_dropped: Counter,
    /// 1 when this agent resumed programs a previous agent left attached.
    pub resumed: Gauge,
    /// Batches in the spool (on disk until acknowledged).
    pub spool_batches: Gauge,
    /// Bytes of those batches' files.
    pub spool_bytes: Gauge,
    /// Batches found in the spool at start (left by an earlier agent).
    pub spool_loaded_batches: Counter,
    /// Batches an earlier agent left in the spool, sent by this one.
    pub spool_resent_batches: Counter,
    /// Batches merged into another because the spool was full.
    pub spool_merged_batches: Counter,
    /// Spool files that did not read back, moved to `corrupt/`.
    pub spool_corrupt_files: Counter,
    /// Spool writes that failed (those flows stayed in the kernel for the next drain).
    pub spool_write_errors: Counter,
    /// Kernel entries already in the spool that an earlier agent had not yet
    /// deleted when it stopped, deleted at start instead of being counted again.
    pub spool_kernel_leftovers: Counter,
    ready: AtomicBool,
}

impl Metrics {
    /// Marks the agent ready (programs attached).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the agent not ready (stopping).
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::Release);
    }
}

impl mapper_telemetry::Health for Metrics {
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("mapper_agent");
        r.register("flows_drained", "Flows drained from the kernel", self.flows_drained.clone());
        r.register("connections", "Connections (UDP: datagrams) in drained flows", self.connections.clone());
        r.register("kernel_drops", "Events the kernel could not record, by cause", self.kernel_drops.clone());
        r.register("flow_map_entries", "Entries in the flow buffer being written", self.flow_map_entries.clone());
        r.register("flow_map_capacity", "Capacity of one flow buffer", self.flow_map_capacity.clone());
        r.register("dns_answers", "DNS answers parsed", self.dns_answers.clone());
        r.register("dns_skipped", "DNS payloads skipped, by reason", self.dns_skipped.clone());
        r.register("drains", "Drains of the flow map completed", self.drains.clone());
        r.register("drain_errors", "Drains of the flow map that failed", self.drain_errors.clone());
        r.register("pending_batches", "Batches waiting for the server's acknowledgement", self.pending_batches.clone());
        r.register("pending_flows", "Flows waiting for the server's acknowledgement", self.pending_flows.clone());
        r.register("resends", "Batches sent again", self.resends.clone());
        r.register("batches_acked", "Batches acknowledged by the server", self.batches_acked.clone());
        r.register(
            "batches_rejected",
            "Batches the server refused as invalid, set aside in the spool's rejected/, by gRPC code",
            self.batches_rejected.clone(),
        );
        r.register(
            "rejected_write_errors",
            "Rejected batches that could not be set aside (dropped)",
            self.rejected_write_errors.clone(),
        );
        r.register("merges", "Merges of unsent batches to stay within the buffer bound", self.merges.clone());
        r.register(
            "flows_dropped",
            "Flows dropped because even merged they exceeded the bound",
            self.flows_dropped.clone(),
        );
        r.register("resumed", "1 when programs left attached by a previous agent were resumed", self.resumed.clone());
        r.register(
            "spool_batches",
            "Batches in the spool until the server acknowledges them",
            self.spool_batches.clone(),
        );
        r.register("spool_bytes", "Bytes of the spooled batches' files", self.spool_bytes.clone());
        r.register(
            "spool_loaded_batches",
            "Batches an earlier agent left in the spool, found at start",
            self.spool_loaded_batches.clone(),
        );
        r.register(
            "spool_resent_batches",
            "Batches an earlier agent left in the spool, sent by this agent",
            self.spool_resent_batches.clone(),
        );
        r.register(
            "spool_merged_batches",
            "Unsent batches merged into another because the spool was full",
            self.spool_merged_batches.clone(),
        );
        r.register(
            "spool_corrupt_files",
            "Spool files that did not read back, moved aside",
            self.spool_corrupt_files.clone(),
        );
        r.register(
            "spool_write_errors",
            "Spool writes that failed (the flows stayed in the kernel)",
            self.spool_write_errors.clone(),
        );
        r.register(
            "spool_kernel_leftovers",
            "Kernel entries already spooled by an earlier agent, deleted at start rather than counted again",
            self.spool_kernel_leftovers.clone(),
        );
        r
    }

    fn readiness(&self) -> Result<(), &'static str> {
        if self.ready.load(Ordering::Acquire) { Ok(()) } else { Err("programs not attached yet, or stopping") }
    }
}
