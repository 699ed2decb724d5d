//! Ingest: validate a batch, resolve each flow's two ends to workloads, and
//! apply the batch to the store durably before acknowledging it.

use std::{net::IpAddr, sync::Arc};

use mapper_cluster::{ClusterHandle, End, Evidence, Peer, Snapshot};
use mapper_proto::v1::{self as pb, ingest_server::Ingest};
use tonic::{Request, Response, Status};
use tracing::{Instrument, debug, info_span, warn};

use crate::errors::CallError;
use crate::{
    commit::Committer,
    dns::DnsCache,
    metrics::Metrics,
    store::{Applied, Builder, EdgeStore, Item, Observations, Proto, Side},
};
use mapper_cluster::error_chain;

/// How long after a flow was seen its batch may wait for the cluster state to catch up.
pub const MAX_RESOLVE_WAIT_MS: i64 = 5_000;

/// Most flows one batch may carry.
pub const MAX_FLOWS_PER_BATCH: usize = 100_000;

/// Most DNS answers one batch may carry (the agent keeps at most as many for its next report).
pub const MAX_DNS_PER_BATCH: usize = 10_000;

/// Most addresses one DNS answer may carry.
pub const MAX_ADDRESSES_PER_ANSWER: usize = 64;

/// Most addresses all the DNS answers of one batch may carry together.
pub const MAX_DNS_ADDRESSES_PER_BATCH: usize = 20_000;

/// The earliest time a flow or DNS answer may carry: 2000-01-01T00:00:00Z. Anything before is
/// no clock reading of a running node; a batch spooled by an agent cut off for days or weeks is
/// still well after it (and retention removes its edges when they are past it).
pub const EARLIEST_MS: i64 = 946_684_800_000;

/// How far ahead of the server's clock a time may be (a node's clock a little fast).
pub const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// Longest node name (a DNS subdomain, as Kubernetes allows).
pub const MAX_NODE_LEN: usize = 253;
/// Longest boot id (the agent sends a UUID, 36 bytes).
pub const MAX_BOOT_ID_LEN: usize = 128;
/// Longest pod UID (a UUID, 36 bytes).
pub const MAX_POD_UID_LEN: usize = 128;
/// Longest container id (64 hex digits, with a runtime prefix at most).
pub const MAX_CONTAINER_ID_LEN: usize = 128;
/// Longest process name (the kernel keeps 16 bytes of it).
pub const MAX_COMM_LEN: usize = 64;
/// Longest DNS name (RFC 1035: 253 bytes in text form without the trailing dot).
pub const MAX_DNS_NAME_LEN: usize = 253;

/// Encoded size of the largest batch [`check_batch`] accepts: every string at its limit, every
/// number at its widest, as many flows and DNS answers as allowed. The server refuses larger
/// requests before decoding them.
pub const MAX_BATCH_BYTES: usize = {
    // A field's tag (1 byte for fields 1-15, 2 for 16-22) and its length prefix.
    const fn bytes(tag: usize, len: usize) -> usize {
        tag + varint(len) + len
    }
    const fn varint(v: usize) -> usize {
        let mut n = 1;
        let mut v = v >> 7;
        while v > 0 {
            n += 1;
            v >>= 7;
        }
        n
    }
    const U64: usize = 10;
    let flow = 2 * (1 + 1)                                  // direction, protocol
        + 3 * bytes(1, 16)                                  // src, dst, original_dst
        + 2 * (1 + 3)                                       // dst_port, original_dst_port
        + 2 * (1 + U64)                                     // count, failed
        + (1 + 5)                                           // netns
        + (1 + U64)                                         // cgroup_id
        + bytes(1, MAX_POD_UID_LEN) + bytes(1, MAX_CONTAINER_ID_LEN) + bytes(1, MAX_COMM_LEN)
        + 2 * (1 + U64)                                     // first_seen_ms, last_seen_ms
        + 2 * (1 + 1) + 3 * (2 + 1)                         // the five booleans
        + bytes(2, MAX_POD_UID_LEN); // peer_pod_uid
    let address = bytes(1, MAX_DNS_NAME_LEN) + bytes(1, 16) + (1 + 5);
    let answer = bytes(1, MAX_DNS_NAME_LEN) + bytes(1, 16) + bytes(1, MAX_POD_UID_LEN) + (1 + U64);
    bytes(1, MAX_NODE_LEN)
        + bytes(1, MAX_BOOT_ID_LEN)
        + (1 + U64)
        + MAX_FLOWS_PER_BATCH * bytes(1, flow)
        // Each answer's own tag and length (up to 3 bytes each), then its addresses.
        + MAX_DNS_PER_BATCH * (1 + 3 + answer)
        + MAX_DNS_ADDRESSES_PER_BATCH * bytes(1, address)
};

/// A request field that is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field}: {len} bytes, at most {max}")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("sequence must start at 1")]
    ZeroSequence,
    #[error("{count} flows in one batch: at most {max}")]
    TooManyFlows { count: usize, max: usize },
    #[error("{count} DNS answers in one batch: at most {max}")]
    TooManyDnsAnswers { count: usize, max: usize },
    #[error("{count} DNS answer addresses in one batch: at most {max}")]
    TooManyDnsAddresses { count: usize, max: usize },
    #[error("flows[{index}].{field}: {problem}")]
    Flow { index: usize, field: &'static str, problem: String },
    #[error("dns[{index}].{field}: {problem}")]
    Dns { index: usize, field: String, problem: String },
}

pub use mapper_proto::addr::{from_bytes as ip_from_bytes, to_bytes as ip_to_bytes};

fn port(index: usize, field: &'static str, p: u32) -> Result<u16, BatchError> {
    u16::try_from(p).map_err(|_| BatchError::Flow { index, field, problem: format!("{p} is not a port") })
}

/// Why `t` (Unix ms) is no time a node could have seen something at, `now_ms` being the server's clock.
fn bad_time(t: i64, now_ms: i64) -> Option<String> {
    if t < 0 {
        Some(format!("{t} is negative"))
    } else if t < EARLIEST_MS {
        Some(format!("{t} is before 2000-01-01 (Unix milliseconds expected)"))
    } else if t > now_ms.saturating_add(MAX_AHEAD_MS) {
        Some(format!(
            "{t} is {} s ahead of the server's clock (at most {} s)",
            (t - now_ms) / 1000,
            MAX_AHEAD_MS / 1000
        ))
    } else {
        None
    }
}

/// Why `s` is too long for `field`.
fn too_long(s: &str, max: usize) -> Option<String> {
    (s.len() > max).then(|| format!("{} bytes, at most {max}", s.len()))
}

/// A flow after validation, its ends seen from the reporting agent: the local
/// end (the source of a connect, the destination of an accept) and the far end,
/// whose address is always known.
#[derive(Debug, Clone)]
pub struct Checked<'a> {
    side: Side,
    proto: Proto,
    local: Option<IpAddr>,
    remote: IpAddr,
    dst_port: u16,
    orig: Option<(IpAddr, u16)>,
    flow: &'a pb::Flow,
}

fn check_flow(index: usize, f: &pb::Flow, now_ms: i64) -> Result<Checked<'_>, BatchError> {
    let bad = |field: &'static str, problem: String| BatchError::Flow { index, field, problem };
    let side = match pb::Direction::try_from(f.direction) {
        Ok(pb::Direction::Connect | pb::Direction::Udp) => Side::Client,
        Ok(pb::Direction::Accept) => Side::Server,
        _ => return Err(bad("direction", format!("{} is not connect, accept or udp", f.direction))),
    };
    let proto = match pb::Protocol::try_from(f.protocol) {
        Ok(pb::Protocol::Tcp) => Proto::Tcp,
        Ok(pb::Protocol::Udp) => Proto::Udp,
        _ => return Err(bad("protocol", format!("{} is not tcp or udp", f.protocol))),
    };
    let src = ip_from_bytes(&f.src_ip).map_err(|p| bad("src_ip", p))?;
    let dst = ip_from_bytes(&f.dst_ip).map_err(|p| bad("dst_ip", p))?;
    let orig_ip = ip_from_bytes(&f.original_dst_ip).map_err(|p| bad("original_dst_ip", p))?;
    let dst_port = port(index, "dst_port", f.dst_port)?;
    let orig_port = port(index, "original_dst_port", f.original_dst_port)?;
    for (field, s, max) in [
        ("pod_uid", &f.pod_uid, MAX_POD_UID_LEN),
        ("peer_pod_uid", &f.peer_pod_uid, MAX_POD_UID_LEN),
        ("container_id", &f.container_id, MAX_CONTAINER_ID_LEN),
        ("comm", &f.comm, MAX_COMM_LEN),
    ] {
        if let Some(p) = too_long(s, max) {
            return Err(bad(field, p));
        }
    }
    for (field, t) in [("first_seen_ms", f.first_seen_ms), ("last_seen_ms", f.last_seen_ms)] {
        if let Some(p) = bad_time(t, now_ms) {
            return Err(bad(field, p));
        }
    }
    let (local, remote) = match side {
        Side::Client => match dst {
            Some(dst) => (src, dst),
            None => return Err(bad("dst_ip", "missing".into())),
        },
        // The server end's own address may be unknown (a UDP socket bound to every
        // address answering): it is named by the agent's evidence then.
        Side::Server => match src {
            Some(src) => (dst, src),
            None => return Err(bad("src_ip", "missing on an accepted connection".into())),
        },
    };
    if f.last_seen_ms < f.first_seen_ms {
        return Err(bad("last_seen_ms", "earlier than first_seen_ms".into()));
    }
    Ok(Checked { side, proto, local, remote, dst_port, orig: orig_ip.map(|ip| (ip, orig_port)), flow: f })
}

impl Checked<'_> {
    /// Whether the far end is a loopback address (`127.0.0.0/8` or `::1`; an IPv4-mapped IPv6
    /// address was made IPv4 when the flow was decoded): the traffic never left the network namespace it was made in (a sidecar calling
    /// its pod's other container, a node daemon calling another on the node's `localhost`).
    /// That is no call between workloads: no NetworkPolicy applies to it and no ClientIntents
    /// can express it, so it is not an edge (docs/identity.md, "Loopback").
    fn over_loopback(&self) -> bool {
        self.remote.is_loopback()
    }
}

fn check_dns(index: usize, d: &pb::DnsAnswer, now_ms: i64) -> Result<(), BatchError> {
    let bad = |field: String, problem: String| BatchError::Dns { index, field, problem };
    if let Some(p) = too_long(&d.query, MAX_DNS_NAME_LEN) {
        return Err(bad("query".into(), p));
    }
    if let Some(p) = too_long(&d.pod_uid, MAX_POD_UID_LEN) {
        return Err(bad("pod_uid".into(), p));
    }
    if let Some(p) = bad_time(d.ts_ms, now_ms) {
        return Err(bad("ts_ms".into(), p));
    }
    ip_from_bytes(&d.client_ip).map_err(|p| bad("client_ip".into(), p))?;
    if d.answers.len() > MAX_ADDRESSES_PER_ANSWER {
        return Err(bad(
            "answers".into(),
            format!("{} addresses in one answer, at most {MAX_ADDRESSES_PER_ANSWER}", d.answers.len()),
        ));
    }
    for (i, a) in d.answers.iter().enumerate() {
        if let Some(p) = too_long(&a.name, MAX_DNS_NAME_LEN) {
            return Err(bad(format!("answers[{i}].name"), p));
        }
        ip_from_bytes(&a.ip).map_err(|p| bad(format!("answers[{i}].ip"), p))?;
    }
    Ok(())
}

/// Validates a whole batch against the server's clock `now_ms` (Unix ms); nothing is applied
/// unless every flow and DNS answer is valid. Pure: no I/O, no state.
pub fn check_batch(req: &pb::ReportRequest, now_ms: i64) -> Result<Vec<Checked<'_>>, BatchError> {
    if req.node.is_empty() {
        return Err(BatchError::Empty { field: "node" });
    }
    if req.boot_id.is_empty() {
        return Err(BatchError::Empty { field: "boot_id" });
    }
    for (field, s, max) in [("node", &req.node, MAX_NODE_LEN), ("boot_id", &req.boot_id, MAX_BOOT_ID_LEN)] {
        if s.len() > max {
            return Err(BatchError::TooLong { field, len: s.len(), max });
        }
    }
    if req.sequence == 0 {
        return Err(BatchError::ZeroSequence);
    }
    if req.flows.len() > MAX_FLOWS_PER_BATCH {
        return Err(BatchError::TooManyFlows { count: req.flows.len(), max: MAX_FLOWS_PER_BATCH });
    }
    if req.dns.len() > MAX_DNS_PER_BATCH {
        return Err(BatchError::TooManyDnsAnswers { count: req.dns.len(), max: MAX_DNS_PER_BATCH });
    }
    let addresses: usize = req.dns.iter().map(|d| d.answers.len()).sum();
    if addresses > MAX_DNS_ADDRESSES_PER_BATCH {
        return Err(BatchError::TooManyDnsAddresses { count: addresses, max: MAX_DNS_ADDRESSES_PER_BATCH });
    }
    for (i, d) in req.dns.iter().enumerate() {
        check_dns(i, d, now_ms)?;
    }
    req.flows.iter().enumerate().map(|(i, f)| check_flow(i, f, now_ms)).collect()
}

/// Resolves one flow's ends: the local end by the agent's evidence (pod UID
/// over IP), the far end by address at the flow's time. A connection to a
/// ClusterIP resolves through the pod conntrack sent it to when that is
/// known, else through the Service.
///
/// A node process that is no pod (the agent found its cgroup, in the node's network
/// namespace, outside every pod) is the node itself. When the far end is on the reporting
/// node too, the kernel named its cgroup, and that evidence wins over its address (two
/// hostNetwork pods share the node's IP).
fn resolve<'s>(snap: &'s Snapshot, node: &Arc<str>, c: &Checked<'_>) -> (End<'s>, End<'s>) {
    let at = c.flow.last_seen_ms;
    let f = c.flow;
    let as_node = || End::Peer(Peer::Node { name: node.clone() });
    // The API server's endpoint (a node process in most clusters) serving is the API server.
    let api_server_end = c.side == Side::Server && c.local.is_some_and(|ip| snap.is_api_server(ip, c.dst_port));
    let local = if api_server_end {
        End::Peer(Peer::ApiServer)
    } else if f.node_process {
        as_node()
    } else {
        let pod_uid = (!f.pod_uid.is_empty()).then_some(f.pod_uid.as_str());
        snap.resolve_local_end(&Evidence { ip: c.local, pod_uid, host_network: f.host_network, at_ms: at })
    };
    let peer = if !f.peer_on_node {
        None
    } else if f.peer_node_process {
        Some(as_node())
    } else if f.peer_pod_uid.is_empty() {
        None
    } else {
        let ev = Evidence {
            ip: Some(c.remote),
            pod_uid: Some(f.peer_pod_uid.as_str()),
            host_network: f.peer_host_network,
            at_ms: at,
        };
        Some(snap.resolve_local_end(&ev)).filter(End::is_workload)
    };
    match c.side {
        Side::Client => {
            let server = match peer {
                Some(p) => p,
                None => {
                    let by_address = snap.resolve_remote_end(c.remote, c.dst_port, at);
                    match c.orig {
                        _ if by_address.is_workload() || matches!(by_address, End::Peer(Peer::ApiServer)) => by_address,
                        Some((ip, port)) => snap.resolve_remote_end(ip, port, at),
                        None => by_address,
                    }
                }
            };
            (local, server)
        }
        Side::Server => {
            let client = peer.unwrap_or_else(|| snap.resolve_remote_end(c.remote, 0, at));
            (client, local)
        }
    }
}

/// The Ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    pub store: Arc<EdgeStore>,
    pub committer: Committer,
    pub cluster: ClusterHandle,
    pub metrics: Arc<Metrics>,
    pub dns: Arc<DnsCache>,
}

/// A batch validated and resolved, ready for the writer.
struct Prepared {
    observations: Observations,
    /// Flows that make observations (loopback flows left out).
    flows: usize,
    /// Ends of those flows that did not resolve.
    unresolved: u64,
}

/// Flows, DNS answers and their addresses up to which a batch is validated and resolved on
/// the async worker that has it (validation, resolution and coalescing take about half a
/// microsecond a flow here: a fraction of a millisecond); a larger batch is worked on in
/// tokio's blocking pool, so that it holds no worker for longer than that.
const RESOLVE_INLINE_ITEMS: usize = 1_000;

impl IngestService {
    /// Validates, resolves and applies one batch: the answer comes once it is durable.
    ///
    /// Once received, a batch is worked on to the end whether or not its caller still waits (a
    /// call cancelled by its deadline or its peer): it is a task of its own, which holds the
    /// call's `turn` (its place among the reports in progress and the room for its bytes) until
    /// the batch is applied or refused. So a batch that the writer will apply is counted in the
    /// metrics, and the batches cancelled calls leave behind stay within the bounds on reports
    /// in progress.
    pub async fn report(
        &self,
        req: pb::ReportRequest,
        turn: Option<crate::admission::Turn>,
    ) -> Result<pb::ReportResponse, CallError> {
        let this = self.clone();
        let work = async move {
            let answer = this.work(req).await;
            drop(turn);
            answer
        };
        tokio::spawn(work.instrument(tracing::Span::current())).await.map_err(CallError::task("ingest"))?
    }

    async fn work(&self, req: pb::ReportRequest) -> Result<pb::ReportResponse, CallError> {
        let items = req.flows.len() + req.dns.iter().map(|d| 1 + d.answers.len()).sum::<usize>();
        let (req, prepared) = if items <= RESOLVE_INLINE_ITEMS {
            let prepared = self.prepare(&req);
            (req, prepared)
        } else {
            let (this, span) = (self.clone(), tracing::Span::current());
            tokio::task::spawn_blocking(move || {
                let prepared = span.in_scope(|| this.prepare(&req));
                (req, prepared)
            })
            .await
            .map_err(CallError::task("ingest"))?
        };
        let Prepared { observations, flows, unresolved } = prepared?;
        let agent = crate::store::AgentBoot::new(&req.node, &req.boot_id);
        let applied = self.commit(agent, req.sequence, observations, flows).await?;
        Ok(pb::ReportResponse {
            duplicate: applied == Applied::Duplicate,
            flows_applied: if applied == Applied::New { flows as u64 } else { 0 },
            flows_unresolved: unresolved,
        })
    }

    /// Applies a prepared batch of `flows` flows durably, and counts it.
    async fn commit(
        &self,
        agent: crate::store::AgentBoot,
        sequence: u64,
        observations: Observations,
        flows: usize,
    ) -> Result<Applied, CallError> {
        let applied = self.committer.apply(agent.clone(), sequence, observations).await.map_err(|e| {
            warn!(error = %error_chain(&e), "cannot store a batch");
            CallError::Store(e)
        })?;
        match applied {
            Applied::New => {
                self.metrics.batches.get_or_create(&[("result", "applied")]).inc();
                self.metrics.flows_ingested.inc_by(flows as u64);
            }
            Applied::Duplicate => {
                self.metrics.batches.get_or_create(&[("result", "duplicate")]).inc();
                debug!(%agent, sequence, "duplicate batch acknowledged again");
            }
        }
        self.metrics.edges.set(self.store.len() as i64);
        Ok(applied)
    }

    /// Validates and resolves one batch into what the writer applies.
    fn prepare(&self, req: &pb::ReportRequest) -> Result<Prepared, CallError> {
        let now = crate::server::now_ms();
        let checked = check_batch(req, now).map_err(|e| {
            self.metrics.batches_rejected.inc();
            CallError::InvalidBatch {
                sequence: req.sequence,
                node: req.node.clone(),
                boot_id: req.boot_id.clone(),
                source: e,
            }
        })?;
        if !self.cluster.is_ready() {
            return Err(CallError::NotSynced);
        }
        // A flow newer than what the cluster state is known to hold may involve a pod it does
        // not have yet (created, or given a freed IP, since): the agent retries in a moment.
        // Bounded, so a skewed clock or a stalled source delays flows, never loses them.
        // A flow stamped ahead of the server's clock (a skewed node) is not waited for.
        let synced_at = self.cluster.synced_at_ms();
        let newest = req.flows.iter().map(|f| f.last_seen_ms).filter(|t| *t <= now).max().unwrap_or(i64::MIN);
        if newest > synced_at && now < newest.saturating_add(MAX_RESOLVE_WAIT_MS) {
            self.metrics.batches.get_or_create(&[("result", "deferred")]).inc();
            return Err(CallError::StateBehind { behind_ms: newest - synced_at });
        }
        for d in &req.dns {
            self.dns.record(d, now);
        }
        let snap = self.cluster.snapshot();
        let node: Arc<str> = req.node.as_str().into();
        let mut unresolved = 0u64;
        let mut batch = Builder::default();
        batch.reserve(checked.len());
        let mut flows = 0;
        for c in checked.iter().filter(|c| !c.over_loopback()) {
            flows += 1;
            let (client, server) = resolve(&snap, &node, c);
            for reason in [client.unresolved_reason(), server.unresolved_reason()].into_iter().flatten() {
                unresolved += 1;
                self.metrics.flows_unresolved.get_or_create(&[("reason", reason.as_str())]).inc();
                self.metrics.unresolved_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let dns_names = match &server {
                End::Peer(Peer::External { ip }) => self.dns.names(*ip, now),
                _ => Vec::new(),
            };
            // The address the client dialled: before DNAT when the kernel saw the
            // translation (TCP), else the destination itself (UDP is recorded as sent).
            // A call to a ClusterIP whose translation the kernel did not see is counted on
            // the port the pods serve, as the server end counts it.
            let (dialled, port) = match (c.side, c.orig) {
                (Side::Client, Some((ip, _))) => (Some(ip), c.dst_port),
                (Side::Client, None) => (Some(c.remote), snap.target_port(c.remote, c.dst_port).unwrap_or(c.dst_port)),
                (Side::Server, _) => (None, c.dst_port),
            };
            let via_service = dialled
                .and_then(|ip| snap.service_at(ip))
                .map(|(name, namespace)| batch.shared_service(namespace, name));
            let item = Item {
                client: batch.end(client),
                server: batch.end(server),
                side: c.side,
                port,
                proto: c.proto,
                established: c.flow.count,
                failed: c.flow.failed,
                first_seen_ms: c.flow.first_seen_ms,
                last_seen_ms: c.flow.last_seen_ms,
                dns_names,
                via_service,
            };
            batch.push(item);
        }
        let loopback = checked.len() - flows;
        if loopback > 0 {
            self.metrics.flows_ignored.get_or_create(&[("reason", "loopback")]).inc_by(loopback as u64);
        }
        // One observation per edge (and side, port, Service) of the batch: the one writer
        // handles each once, here, before it is handed over.
        let observations = batch.finish().coalesce();
        Ok(Prepared { observations, flows, unresolved })
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn report(&self, request: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        let turn = request.extensions().get::<crate::admission::Turn>().cloned();
        let req = request.into_inner();
        let span = info_span!("report", node = %req.node, sequence = req.sequence, flows = req.flows.len());
        let resp = IngestService::report(self, req, turn).instrument(span).await?;
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn flow() -> pb::Flow {
        pb::Flow {
            direction: pb::Direction::Connect as i32,
            protocol: pb::Protocol::Tcp as i32,
            src_ip: vec![10, 0, 0, 2],
            dst_ip: vec![10, 0, 0, 3],
            dst_port: 8080,
            count: 1,
            first_seen_ms: NOW,
            last_seen_ms: NOW,
            ..Default::default()
        }
    }

    fn batch(flows: Vec<pb::Flow>) -> pb::ReportRequest {
        pb::ReportRequest { node: "n1".into(), boot_id: "b".into(), sequence: 1, flows, dns: vec![] }
    }

    #[test]
    fn rejects_bad_batches_naming_the_field() {
        let mut f = flow();
        f.dst_ip = vec![1, 2, 3];
        let e = check_batch(&batch(vec![flow(), f]), NOW).expect_err("3-byte address accepted");
        assert_eq!(e.to_string(), "flows[1].dst_ip: 3 bytes is not an IPv4 (4) or IPv6 (16) address");
        let mut f = flow();
        f.dst_port = 70000;
        assert_eq!(
            check_batch(&batch(vec![f]), NOW).expect_err("port").to_string(),
            "flows[0].dst_port: 70000 is not a port"
        );
        let mut f = flow();
        f.direction = 9;
        assert!(check_batch(&batch(vec![f]), NOW).expect_err("direction").to_string().contains("flows[0].direction"));
        let mut b = batch(vec![]);
        b.node.clear();
        assert_eq!(check_batch(&b, NOW).expect_err("node"), BatchError::Empty { field: "node" });
        let mut b = batch(vec![]);
        b.sequence = 0;
        assert_eq!(check_batch(&b, NOW).expect_err("seq"), BatchError::ZeroSequence);
        let b = batch(vec![flow(); MAX_FLOWS_PER_BATCH + 1]);
        assert!(matches!(check_batch(&b, NOW), Err(BatchError::TooManyFlows { .. })));
    }

    #[test]
    fn times_outside_the_window_are_refused_naming_the_field() {
        let at = |first: i64, last: i64| pb::Flow { first_seen_ms: first, last_seen_ms: last, ..flow() };
        let err = |f: pb::Flow| check_batch(&batch(vec![flow(), f]), NOW).expect_err("refused").to_string();
        assert_eq!(err(at(-5, NOW)), "flows[1].first_seen_ms: -5 is negative");
        assert!(err(at(0, NOW)).starts_with("flows[1].first_seen_ms: 0 is before 2000-01-01"));
        // Year 10000.
        let e = err(at(NOW, 253_402_300_800_000));
        assert!(e.starts_with("flows[1].last_seen_ms: 253402300800000 is ") && e.contains("ahead"), "{e}");
        assert!(err(at(NOW, NOW + MAX_AHEAD_MS + 1)).starts_with("flows[1].last_seen_ms"));
        assert!(err(at(NOW, i64::MAX)).starts_with("flows[1].last_seen_ms"));
        // A batch spooled for weeks, and a clock a little fast, are fine.
        let month = 30 * 24 * 3600 * 1000;
        check_batch(&batch(vec![at(NOW - month, NOW - month + 1), at(NOW, NOW + MAX_AHEAD_MS)]), NOW)
            .expect("in window");
        let dns = |ts_ms| pb::DnsAnswer { query: "a.example.com".into(), ts_ms, ..Default::default() };
        let b = pb::ReportRequest { dns: vec![dns(NOW), dns(-1)], ..batch(vec![]) };
        assert_eq!(check_batch(&b, NOW).expect_err("dns ts").to_string(), "dns[1].ts_ms: -1 is negative");
    }

    #[test]
    fn strings_past_their_limits_are_refused_naming_the_field() {
        let long = |n: usize| "x".repeat(n);
        let err = |f: pb::Flow| check_batch(&batch(vec![f]), NOW).expect_err("refused").to_string();
        assert_eq!(err(pb::Flow { pod_uid: long(129), ..flow() }), "flows[0].pod_uid: 129 bytes, at most 128");
        assert_eq!(
            err(pb::Flow { peer_pod_uid: long(200), ..flow() }),
            "flows[0].peer_pod_uid: 200 bytes, at most 128"
        );
        assert_eq!(
            err(pb::Flow { container_id: long(129), ..flow() }),
            "flows[0].container_id: 129 bytes, at most 128"
        );
        assert_eq!(err(pb::Flow { comm: long(65), ..flow() }), "flows[0].comm: 65 bytes, at most 64");
        let b = pb::ReportRequest { node: long(254), ..batch(vec![]) };
        assert_eq!(check_batch(&b, NOW).expect_err("node").to_string(), "node: 254 bytes, at most 253");
        let b = pb::ReportRequest { boot_id: long(129), ..batch(vec![]) };
        assert_eq!(check_batch(&b, NOW).expect_err("boot").to_string(), "boot_id: 129 bytes, at most 128");
        let answer = |query: String, name: String| pb::DnsAnswer {
            query,
            answers: vec![pb::DnsAddress { name, ip: vec![192, 0, 2, 1], ttl: 30 }],
            ts_ms: NOW,
            ..Default::default()
        };
        let b = pb::ReportRequest { dns: vec![answer(long(254), long(3))], ..batch(vec![]) };
        assert_eq!(check_batch(&b, NOW).expect_err("query").to_string(), "dns[0].query: 254 bytes, at most 253");
        let b =
            pb::ReportRequest { dns: vec![answer(long(3), long(253)), answer(long(3), long(254))], ..batch(vec![]) };
        assert_eq!(
            check_batch(&b, NOW).expect_err("name").to_string(),
            "dns[1].answers[0].name: 254 bytes, at most 253"
        );
        let many = pb::DnsAnswer {
            answers: vec![answer(long(3), long(3)).answers[0].clone(); 65],
            ..answer(long(3), long(3))
        };
        let b = pb::ReportRequest { dns: vec![many], ..batch(vec![]) };
        assert!(check_batch(&b, NOW).expect_err("answers").to_string().starts_with("dns[0].answers: 65 addresses"));
        let b = pb::ReportRequest { dns: vec![answer(long(3), long(3)); MAX_DNS_PER_BATCH + 1], ..batch(vec![]) };
        assert!(matches!(check_batch(&b, NOW), Err(BatchError::TooManyDnsAnswers { .. })));
    }

    /// The largest batch the checks accept, every field at its widest.
    fn largest_valid_batch() -> pb::ReportRequest {
        let s = |n: usize| "x".repeat(n);
        let f = pb::Flow {
            direction: pb::Direction::Udp as i32,
            protocol: pb::Protocol::Udp as i32,
            src_ip: vec![0xff; 16],
            dst_ip: vec![0xff; 16],
            dst_port: 65_535,
            original_dst_ip: vec![0xff; 16],
            original_dst_port: 65_535,
            count: u64::MAX,
            failed: u64::MAX,
            netns: u32::MAX,
            cgroup_id: u64::MAX,
            pod_uid: s(MAX_POD_UID_LEN),
            container_id: s(MAX_CONTAINER_ID_LEN),
            comm: s(MAX_COMM_LEN),
            first_seen_ms: NOW + MAX_AHEAD_MS,
            last_seen_ms: NOW + MAX_AHEAD_MS,
            host_network: true,
            node_process: true,
            peer_on_node: true,
            peer_pod_uid: s(MAX_POD_UID_LEN),
            peer_host_network: true,
            peer_node_process: true,
        };
        let per_answer = MAX_DNS_ADDRESSES_PER_BATCH / MAX_DNS_PER_BATCH;
        let d = pb::DnsAnswer {
            query: s(MAX_DNS_NAME_LEN),
            answers: vec![pb::DnsAddress { name: s(MAX_DNS_NAME_LEN), ip: vec![0xff; 16], ttl: u32::MAX }; per_answer],
            client_ip: vec![0xff; 16],
            pod_uid: s(MAX_POD_UID_LEN),
            ts_ms: NOW + MAX_AHEAD_MS,
        };
        pb::ReportRequest {
            node: s(MAX_NODE_LEN),
            boot_id: s(MAX_BOOT_ID_LEN),
            sequence: u64::MAX,
            flows: vec![f; MAX_FLOWS_PER_BATCH],
            dns: vec![d; MAX_DNS_PER_BATCH],
        }
    }

    #[test]
    fn the_agent_fits_its_dns_answers_to_these_bounds() {
        use mapper_report as agent;
        assert_eq!(agent::SERVER_MAX_DNS_NAME_LEN, MAX_DNS_NAME_LEN);
        assert_eq!(agent::SERVER_MAX_FLOWS_PER_BATCH, MAX_FLOWS_PER_BATCH);
        assert_eq!(agent::SERVER_MAX_ADDRESSES_PER_ANSWER, MAX_ADDRESSES_PER_ANSWER);
        assert_eq!(agent::SERVER_MAX_DNS_ADDRESSES_PER_BATCH, MAX_DNS_ADDRESSES_PER_BATCH);
        assert_eq!(agent::SERVER_MAX_DNS_PER_BATCH, MAX_DNS_PER_BATCH);
    }

    #[test]
    fn the_largest_valid_batch_fits_the_request_limit() {
        use prost::Message;
        let b = largest_valid_batch();
        check_batch(&b, NOW).expect("the largest batch is valid");
        let len = b.encoded_len();
        assert!(len <= MAX_BATCH_BYTES, "{len} bytes > {MAX_BATCH_BYTES}");
        // The bound is the batch, not a round number far above it.
        assert!(MAX_BATCH_BYTES - len < MAX_BATCH_BYTES / 100, "{len} bytes, limit {MAX_BATCH_BYTES}");
    }

    #[test]
    fn the_far_end_needs_an_address_the_local_end_may_lack() {
        let mut f = flow();
        f.dst_ip.clear();
        let e = check_batch(&batch(vec![f]), NOW).expect_err("no destination");
        assert_eq!(e.to_string(), "flows[0].dst_ip: missing");
        let mut f = flow();
        f.direction = pb::Direction::Accept as i32;
        f.src_ip.clear();
        let e = check_batch(&batch(vec![f]), NOW).expect_err("accept without a source");
        assert_eq!(e.to_string(), "flows[0].src_ip: missing on an accepted connection");
        let (src, dst) = ("10.0.0.2".parse().expect("ip"), "10.0.0.3".parse().expect("ip"));
        let mut f = flow();
        f.src_ip.clear();
        let b = batch(vec![f]);
        let c = check_batch(&b, NOW).expect("a connect without a source address");
        assert_eq!((c[0].local, c[0].remote), (None, dst));
        let mut f = flow();
        f.direction = pb::Direction::Accept as i32;
        let b = batch(vec![f]);
        let c = check_batch(&b, NOW).expect("accept");
        assert_eq!((c[0].local, c[0].remote), (Some(dst), src));
    }

    #[test]
    fn loopback_traffic_is_told_apart_from_calls_between_workloads() {
        let over = |direction: pb::Direction, src: Vec<u8>, dst: Vec<u8>| {
            let b = batch(vec![pb::Flow { direction: direction as i32, src_ip: src, dst_ip: dst, ..flow() }]);
            check_batch(&b, NOW).expect("valid")[0].over_loopback()
        };
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().expect("ip").octets().to_vec();
        assert!(over(pb::Direction::Connect, vec![127, 0, 0, 1], vec![127, 0, 0, 1]));
        assert!(over(pb::Direction::Connect, vec![10, 0, 0, 2], vec![127, 0, 0, 53]), "all of 127/8");
        assert!(over(pb::Direction::Accept, v6("::1"), v6("::1")));
        assert!(over(pb::Direction::Udp, v6("::ffff:10.0.0.2"), v6("::ffff:127.0.0.1")), "mapped into IPv6");
        assert!(!over(pb::Direction::Connect, vec![10, 0, 0, 2], vec![10, 0, 0, 2]), "a pod calling its own IP");
        assert!(!over(pb::Direction::Accept, vec![10, 0, 0, 2], vec![10, 0, 0, 3]));
    }

    #[test]
    fn a_server_end_may_lack_its_own_address() {
        let mut f = flow();
        f.direction = pb::Direction::Accept as i32;
        f.protocol = pb::Protocol::Udp as i32;
        f.dst_ip.clear();
        let b = batch(vec![f]);
        let c = check_batch(&b, NOW).expect("a UDP reply from a socket bound to every address");
        assert_eq!((c[0].local, c[0].remote), (None, "10.0.0.2".parse().expect("ip")));
    }

    const HOST_PODS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: node-agent-x1, namespace: ops, uid: 00000000-0000-4000-8000-00000000000a, creationTimestamp: "2025-01-01T00:00:00Z"}
spec: {hostNetwork: true, nodeName: node-1, containers: [{name: a, image: a}]}
status: {phase: Running, podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}], startTime: "2025-01-01T00:00:00Z"}
---
apiVersion: v1
kind: Pod
metadata: {name: node-metrics-x1, namespace: ops, uid: 00000000-0000-4000-8000-00000000000b, creationTimestamp: "2025-01-01T00:00:00Z"}
spec: {hostNetwork: true, nodeName: node-1, containers: [{name: m, image: m}]}
status: {phase: Running, podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}], startTime: "2025-01-01T00:00:00Z"}
"#;

    #[test]
    fn ends_on_one_node_resolve_by_the_kernel_s_evidence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("inventory.yaml");
        std::fs::write(&path, HOST_PODS).expect("write inventory");
        let now = NOW;
        let inv = mapper_cluster::Inventory::load_at(vec![path], mapper_cluster::ResolveOptions::default(), now)
            .expect("inventory");
        let snap = inv.snapshot();
        let (agent_uid, metrics_uid) = ("00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b");
        let node_ip = vec![10, 0, 0, 1];
        let host_flow = |direction: pb::Direction, local: &str, peer: &str| pb::Flow {
            direction: direction as i32,
            src_ip: node_ip.clone(),
            dst_ip: node_ip.clone(),
            dst_port: 9100,
            pod_uid: local.to_owned(),
            host_network: true,
            peer_on_node: true,
            peer_pod_uid: peer.to_owned(),
            peer_host_network: true,
            first_seen_ms: now,
            last_seen_ms: now,
            ..flow()
        };
        let name = |p: &Peer| match p {
            Peer::Workload(w) => w.name.to_string(),
            Peer::Node { name } => format!("node {name}"),
            other => format!("{other:?}"),
        };
        let key_of = |f: pb::Flow| {
            let b = batch(vec![f]);
            let c = check_batch(&b, NOW).expect("valid");
            let (client, server) = resolve(&snap, &"node-1".into(), &c[0]);
            (name(&client.into_peer()), name(&server.into_peer()))
        };
        let want = ("node-agent-x1".to_owned(), "node-metrics-x1".to_owned());
        assert_eq!(key_of(host_flow(pb::Direction::Connect, agent_uid, metrics_uid)), want, "connect side");
        assert_eq!(key_of(host_flow(pb::Direction::Accept, metrics_uid, agent_uid)), want, "accept side");
        // Without the kernel's evidence the shared node address cannot tell them apart.
        let blind = pb::Flow {
            peer_on_node: false,
            peer_pod_uid: String::new(),
            ..host_flow(pb::Direction::Connect, agent_uid, "")
        };
        assert!(key_of(blind).1.contains("NodeIp"), "guessed from a shared node address");
        // The kubelet probing a pod: a node process, the node itself on both sides.
        let probe = pb::Flow {
            node_process: true,
            pod_uid: String::new(),
            peer_on_node: false,
            ..host_flow(pb::Direction::Connect, "", "")
        };
        assert_eq!(key_of(probe).0, "node node-1");
        let probed = pb::Flow {
            peer_node_process: true,
            peer_pod_uid: String::new(),
            ..host_flow(pb::Direction::Accept, metrics_uid, "")
        };
        assert_eq!(key_of(probed), ("node node-1".to_owned(), "node-metrics-x1".to_owned()));
    }

    /// A call given up once its batch is received (its deadline passed, or its peer went away)
    /// still has the batch applied and counted, whether the batch was worked on inline or in
    /// the blocking pool: the work is a task of its own, not part of the call's future.
    #[tokio::test]
    async fn a_cancelled_call_s_batch_is_still_applied_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(EdgeStore::open(dir.path()).expect("store"));
        let service = IngestService {
            committer: Committer::start(store.clone()),
            store: store.clone(),
            cluster: ClusterHandle::fixed(Arc::new(Snapshot::default())),
            metrics: Arc::new(Metrics::default()),
            dns: Arc::new(DnsCache::default()),
        };
        let now = crate::server::now_ms();
        let sizes = [3, RESOLVE_INLINE_ITEMS + 1];
        for (sequence, n) in (1..).zip(sizes) {
            let f = pb::Flow { first_seen_ms: now, last_seen_ms: now, ..flow() };
            let req = pb::ReportRequest { sequence, ..batch(vec![f; n]) };
            // Polled once, which hands the batch over, then dropped: a test runtime has one
            // thread, so nothing of the work has run by then.
            let call = service.report(req, None);
            let gave_up = tokio::time::timeout(std::time::Duration::ZERO, call).await;
            assert!(gave_up.is_err(), "batch {sequence} was answered within the call's first poll");
        }
        let want = sizes.iter().sum::<usize>() as u64;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while service.metrics.flows_ingested.get() < want {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {want} flows counted",
                service.metrics.flows_ingested.get()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(service.metrics.flows_ingested.get(), want);
        assert_eq!(service.metrics.batches.get_or_create(&[("result", "applied")]).get(), 2);
        assert_eq!(store.len(), 1, "every flow is the same call");
        let (_, edge) = store.edges().into_iter().next().expect("the batches' edge");
        assert_eq!(edge.client_established, want);
    }
}
