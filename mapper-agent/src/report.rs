//! Reporting drained flows to the central mapper.
//!
//! Drained flows become batches numbered by a sequence under this agent's boot
//! id. Batches are sent one at a time, in order; a batch leaves the buffer
//! only when the server acknowledges it (after it is durable there), and a
//! resend after a lost acknowledgement counts nothing twice on the server.
//! The buffer is bounded: past the bound, batches not yet sent are merged into
//! one, flows with the same key adding their counts, so an unreachable server
//! costs memory in proportion to distinct flows, never lost counts.

use std::{collections::HashMap, collections::VecDeque, time::Duration};

use mapper_proto::v1::{self as pb, ingest_client::IngestClient};
use tonic::{Code, Request, transport::Channel};

/// A new random boot id for this agent process.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").map(|s| s.trim().to_string()).unwrap_or_else(|_| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("{:x}-{:x}", std::process::id(), t)
    })
}

/// DNS answers kept for the next report (they are hints for naming external addresses, so
/// beyond this many the oldest are the ones kept and the rest dropped).
pub const MAX_PENDING_DNS: usize = 10_000;

fn ip_bytes(ip: Option<std::net::IpAddr>) -> Vec<u8> {
    ip.map(mapper_proto::addr::to_bytes).unwrap_or_default()
}

/// A drained flow on the wire.
pub fn flow_to_pb(r: &crate::flow::FlowRecord, host_netns: Option<u32>) -> pb::Flow {
    let host_network = host_netns == Some(r.netns);
    let peer_host_network = r.peer.as_ref().is_some_and(|p| host_netns == Some(p.netns));
    pb::Flow {
        direction: match r.direction {
            "connect" => pb::Direction::Connect,
            "accept" => pb::Direction::Accept,
            _ => pb::Direction::Udp,
        } as i32,
        protocol: if r.protocol == "tcp" { pb::Protocol::Tcp } else { pb::Protocol::Udp } as i32,
        src_ip: ip_bytes(r.src_ip),
        dst_ip: ip_bytes(r.dst_ip),
        dst_port: u32::from(r.dst_port),
        original_dst_ip: ip_bytes(r.original_dst_ip),
        original_dst_port: r.original_dst_port.map_or(0, u32::from),
        count: r.count,
        failed: r.failed,
        netns: r.netns,
        cgroup_id: r.cgroup_id,
        pod_uid: r.pod_uid.clone().unwrap_or_default(),
        container_id: r.container_id.clone().unwrap_or_default(),
        comm: r.comm.clone(),
        first_seen_ms: r.first_seen,
        last_seen_ms: r.last_seen,
        host_network,
        node_process: host_network && r.cgroup_path.is_some() && r.pod_uid.is_none(),
        peer_on_node: r.peer.is_some(),
        peer_pod_uid: r.peer.as_ref().and_then(|p| p.pod_uid.clone()).unwrap_or_default(),
        peer_host_network,
        peer_node_process: peer_host_network
            && r.peer.as_ref().is_some_and(|p| p.cgroup_path.is_some() && p.pod_uid.is_none()),
    }
}

/// A DNS answer on the wire.
pub fn dns_to_pb(d: &crate::dns::DnsRecord) -> pb::DnsAnswer {
    pb::DnsAnswer {
        query: d.query.clone(),
        answers: d
            .answers
            .iter()
            .map(|a| pb::DnsAddress { name: a.name.clone(), ip: ip_bytes(Some(a.ip)), ttl: a.ttl })
            .collect(),
        client_ip: ip_bytes(d.client_ip),
        pod_uid: d.pod_uid.clone().unwrap_or_default(),
        ts_ms: d.ts,
    }
}

/// A batch waiting for its acknowledgement.
#[derive(Debug, Clone)]
pub struct Batch {
    pub sequence: u64,
    pub flows: Vec<pb::Flow>,
    pub dns: Vec<pb::DnsAnswer>,
    /// Sent at least once: its content may already be applied on the server,
    /// so it is never merged with anything.
    pub sent: bool,
}

/// The resend buffer.
#[derive(Debug)]
pub struct Pending {
    batches: VecDeque<Batch>,
    next_sequence: u64,
    max_flows: usize,
    /// Batches merged to stay under the bound.
    pub merges: u64,
    /// Flows that could not be kept even after merging (more distinct flows than the bound).
    pub dropped: u64,
}

/// What makes two flows the same flow: the address part, and what is known of each end.
type FlowKey = ((i32, i32, Vec<u8>, Vec<u8>, u32, Vec<u8>, u32), (u32, u64, String, bool, String, bool, bool));

fn key(f: &pb::Flow) -> FlowKey {
    (
        (
            f.direction,
            f.protocol,
            f.src_ip.clone(),
            f.dst_ip.clone(),
            f.dst_port,
            f.original_dst_ip.clone(),
            f.original_dst_port,
        ),
        (
            f.netns,
            f.cgroup_id,
            f.pod_uid.clone(),
            f.host_network,
            f.peer_pod_uid.clone(),
            f.peer_on_node,
            f.peer_node_process,
        ),
    )
}

/// Merges `flows` by key: counts add up, times widen.
pub fn merge_flows(flows: impl IntoIterator<Item = pb::Flow>) -> Vec<pb::Flow> {
    let mut by_key: HashMap<FlowKey, pb::Flow> = HashMap::new();
    let mut order = Vec::new();
    for f in flows {
        let k = key(&f);
        match by_key.get_mut(&k) {
            Some(m) => {
                m.count += f.count;
                m.failed += f.failed;
                m.first_seen_ms = m.first_seen_ms.min(f.first_seen_ms);
                m.last_seen_ms = m.last_seen_ms.max(f.last_seen_ms);
                if !f.comm.is_empty() {
                    m.comm = f.comm;
                }
            }
            None => {
                order.push(k.clone());
                by_key.insert(k, f);
            }
        }
    }
    order.into_iter().filter_map(|k| by_key.remove(&k)).collect()
}

impl Pending {
    /// An empty buffer holding at most about `max_flows` flows.
    pub fn new(max_flows: usize) -> Self {
        Self { batches: VecDeque::new(), next_sequence: 1, max_flows: max_flows.max(1), merges: 0, dropped: 0 }
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Flows waiting.
    pub fn flows(&self) -> usize {
        self.batches.iter().map(|b| b.flows.len()).sum()
    }

    /// Queues a round's flows as a new batch, merging unsent batches when
    /// the bound is passed.
    pub fn push(&mut self, flows: Vec<pb::Flow>, dns: Vec<pb::DnsAnswer>) {
        if flows.is_empty() && dns.is_empty() {
            return;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.batches.push_back(Batch { sequence, flows, dns, sent: false });
        if self.flows() > self.max_flows {
            self.compact();
        }
    }

    /// Merges every unsent batch into one (keeping the first's sequence, which
    /// is still above anything sent).
    fn compact(&mut self) {
        let first_unsent = self.batches.iter().position(|b| !b.sent).unwrap_or(self.batches.len());
        let unsent: Vec<Batch> = self.batches.drain(first_unsent..).collect();
        let Some(sequence) = unsent.first().map(|b| b.sequence) else { return };
        if unsent.len() > 1 {
            self.merges += 1;
        }
        let mut dns: Vec<pb::DnsAnswer> = Vec::new();
        let mut flows = merge_flows(unsent.into_iter().flat_map(|b| {
            dns.extend(b.dns);
            b.flows
        }));
        let room = self.max_flows.saturating_sub(self.flows());
        if flows.len() > room {
            self.dropped += (flows.len() - room) as u64;
            flows.truncate(room);
        }
        dns.truncate(MAX_PENDING_DNS);
        // Later sequences were handed out; the merged batch keeps the first.
        self.batches.push_back(Batch { sequence, flows, dns, sent: false });
    }

    /// The batch to send next.
    pub fn front_mut(&mut self) -> Option<&mut Batch> {
        self.batches.front_mut()
    }

    /// The front batch was acknowledged.
    pub fn acked(&mut self) {
        self.batches.pop_front();
    }
}

/// What became of one send attempt.
#[derive(Debug)]
pub enum SendOutcome {
    /// Acknowledged (possibly as a duplicate).
    Acked { duplicate: bool },
    /// The server refused the batch as invalid: retrying cannot help.
    Rejected(tonic::Status),
    /// The server could not be reached or could not take it now: retry later.
    Retry(tonic::Status),
}

/// Sends one batch.
pub async fn send(
    client: &mut IngestClient<Channel>,
    token: Option<&str>,
    node: &str,
    boot_id: &str,
    batch: &Batch,
    timeout: Duration,
) -> SendOutcome {
    let mut req = Request::new(pb::ReportRequest {
        node: node.to_string(),
        boot_id: boot_id.to_string(),
        sequence: batch.sequence,
        flows: batch.flows.clone(),
        dns: batch.dns.clone(),
    });
    req.set_timeout(timeout);
    if let Some(t) = token
        && let Ok(v) = format!("Bearer {t}").parse()
    {
        req.metadata_mut().insert("authorization", v);
    }
    match client.report(req).await {
        Ok(r) => SendOutcome::Acked { duplicate: r.get_ref().duplicate },
        Err(s) if matches!(s.code(), Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition) => {
            SendOutcome::Rejected(s)
        }
        Err(s) => SendOutcome::Retry(s),
    }
}

/// Exponential backoff between retries, 200 ms to 30 s.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { current: Duration::from_millis(200) }
    }
}

impl Backoff {
    /// The next delay (doubling, capped).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(Duration::from_secs(30));
        d
    }

    /// After a success.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(port: u32, count: u64) -> pb::Flow {
        pb::Flow {
            direction: 1,
            protocol: 1,
            dst_ip: vec![10, 0, 0, 3],
            dst_port: port,
            count,
            first_seen_ms: 5,
            last_seen_ms: 9,
            ..Default::default()
        }
    }

    #[test]
    fn bound_merges_unsent_batches_without_losing_counts() {
        let mut p = Pending::new(4);
        p.push(vec![flow(80, 1), flow(81, 1)], vec![]);
        p.front_mut().expect("front").sent = true; // in flight: must not be merged
        p.push(vec![flow(80, 2)], vec![]);
        p.push(vec![flow(80, 3), flow(82, 1)], vec![]);
        assert_eq!(p.len(), 2, "unsent batches merged into one");
        assert_eq!(p.merges, 1);
        let merged = &p.batches[1];
        assert_eq!(merged.sequence, 2, "merged batch keeps the first unsent sequence");
        let c80: u64 = merged.flows.iter().filter(|f| f.dst_port == 80).map(|f| f.count).sum();
        assert_eq!(c80, 5, "counts of the same flow add up");
        assert_eq!(p.batches[0].flows.len(), 2, "the in-flight batch is untouched");
        assert_eq!(p.dropped, 0);
        // Acknowledging in order.
        p.acked();
        assert_eq!(p.front_mut().expect("front").sequence, 2);
    }

    #[test]
    fn more_distinct_flows_than_the_bound_are_counted_as_dropped() {
        let mut p = Pending::new(2);
        p.push((0..5).map(|i| flow(i, 1)).collect(), vec![]);
        assert_eq!(p.flows(), 2);
        assert_eq!(p.dropped, 3);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        assert_eq!(b.next_delay(), Duration::from_millis(400));
        for _ in 0..20 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(200));
    }
}
