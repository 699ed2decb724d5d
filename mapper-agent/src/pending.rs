//! The resend buffer.
//!
//! Drained flows become batches numbered by a sequence under this agent's boot
//! id. Each batch is written to the spool ([`crate::spool`]) before its flows
//! leave the kernel, and stays there and in memory until the server
//! acknowledges it (after it is durable there); a resend — after a lost
//! acknowledgement, or by the next agent after a restart — carries the
//! original (node, boot id, sequence), so it counts nothing twice on the server.
//! Batches are sent one at a time, in order. The buffer is bounded: past the
//! bound, batches not yet sent are merged into one, flows with the same key
//! adding their counts, so an unreachable server costs memory and disk in
//! proportion to distinct flows, never lost counts.

use std::collections::{HashMap, HashSet, VecDeque};

use mapper_proto::v1 as pb;
use tracing::warn;

use crate::{
    report::MAX_PENDING_DNS,
    spool::{Covered, Loaded, Record, Spool, SpoolError},
};

/// A batch waiting for its acknowledgement.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The node that recorded it (a spool left by another node name keeps its own).
    pub node: String,
    /// The boot id of the agent that drained it.
    pub boot_id: String,
    pub sequence: u64,
    pub flows: Vec<pb::Flow>,
    pub dns: Vec<pb::DnsAnswer>,
    /// Possibly sent already: its content may be applied on the server, so it
    /// is never merged with anything.
    pub sent: bool,
    /// Handed to the network by this agent at least once.
    pub attempted: bool,
    /// Left in the spool by an earlier agent.
    pub resumed: bool,
    /// When it was first written (Unix ms).
    pub created_ms: i64,
    kernel: Vec<u64>,
    covers: Vec<Covered>,
    bytes: u64,
}

impl Batch {
    /// A batch as a drain makes it (not yet sent, not spooled).
    pub fn new(node: &str, boot_id: &str, sequence: u64, flows: Vec<pb::Flow>, dns: Vec<pb::DnsAnswer>) -> Self {
        Self {
            node: node.into(),
            boot_id: boot_id.into(),
            sequence,
            flows,
            dns,
            sent: false,
            attempted: false,
            resumed: false,
            created_ms: now_ms(),
            kernel: Vec::new(),
            covers: Vec::new(),
            bytes: 0,
        }
    }

    fn record(&self) -> Record {
        Record {
            report: Some(pb::ReportRequest {
                node: self.node.clone(),
                boot_id: self.boot_id.clone(),
                sequence: self.sequence,
                flows: self.flows.clone(),
                dns: self.dns.clone(),
            }),
            created_ms: self.created_ms,
            kernel: self.kernel.clone(),
            covers: self.covers.clone(),
        }
    }

    fn from_loaded(l: Loaded) -> Self {
        let Loaded { record, bytes } = l;
        let report = record.report.unwrap_or_default();
        Self {
            node: report.node,
            boot_id: report.boot_id,
            sequence: report.sequence,
            flows: report.flows,
            dns: report.dns,
            sent: false,
            attempted: false,
            resumed: true,
            created_ms: record.created_ms,
            kernel: record.kernel,
            covers: record.covers,
            bytes,
        }
    }
}

type FlowKey = (i32, i32, Vec<u8>, Vec<u8>, u32, Vec<u8>, u32, u32, u64, String, bool);

fn key(f: &pb::Flow) -> FlowKey {
    (
        f.direction,
        f.protocol,
        f.src_ip.clone(),
        f.dst_ip.clone(),
        f.dst_port,
        f.original_dst_ip.clone(),
        f.original_dst_port,
        f.netns,
        f.cgroup_id,
        f.pod_uid.clone(),
        f.host_network,
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

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Sorts ranges per boot id and joins those that touch.
fn normalize(mut covers: Vec<Covered>) -> Vec<Covered> {
    covers.sort_by(|a, b| (&a.boot_id, a.first).cmp(&(&b.boot_id, b.first)));
    let mut out: Vec<Covered> = Vec::with_capacity(covers.len());
    for c in covers {
        match out.last_mut() {
            Some(l) if l.boot_id == c.boot_id && c.first <= l.last.saturating_add(1) => l.last = l.last.max(c.last),
            _ => out.push(c),
        }
    }
    out
}

/// The resend buffer: batches waiting for the server's acknowledgement, in
/// memory and (with a spool) on disk.
#[derive(Debug)]
pub struct Pending {
    batches: VecDeque<Batch>,
    node: String,
    boot_id: String,
    next_sequence: u64,
    max_flows: usize,
    spool: Option<Spool>,
    bytes: u64,
    /// Merges of unsent batches to stay under the bound.
    pub merges: u64,
    /// Batches taken into another by those merges.
    pub merged_batches: u64,
    /// Flows that could not be kept even after merging (more distinct flows than the bound).
    pub dropped: u64,
    /// Spool writes that failed (those flows stayed in the kernel).
    pub write_errors: u64,
}

impl Pending {
    /// An empty buffer in memory only, holding at most about `max_flows` flows.
    pub fn new(node: &str, boot_id: &str, max_flows: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            node: node.into(),
            boot_id: boot_id.into(),
            next_sequence: 1,
            max_flows: max_flows.max(1),
            spool: None,
            bytes: 0,
            merges: 0,
            merged_batches: 0,
            dropped: 0,
            write_errors: 0,
        }
    }

    /// A buffer kept in `spool`, starting with what an earlier agent left
    /// there (`loaded`, in send order). Of each earlier boot, the first batch
    /// may have been in flight when that agent stopped: it is never merged.
    pub fn with_spool(node: &str, boot_id: &str, max_flows: usize, spool: Spool, loaded: Vec<Loaded>) -> Self {
        let mut p = Self::new(node, boot_id, max_flows);
        let mut seen_boots: Vec<String> = Vec::new();
        for l in loaded {
            let mut b = Batch::from_loaded(l);
            if !seen_boots.contains(&b.boot_id) {
                seen_boots.push(b.boot_id.clone());
                b.sent = true;
            }
            if b.node != node {
                // Another node name recorded it: resent as that node, never merged.
                b.sent = true;
                warn!(spooled_node = %b.node, node, boot_id = %b.boot_id, sequence = b.sequence,
                    "spool holds a batch recorded under another node name: resending it under that name");
            }
            p.bytes += b.bytes;
            p.batches.push_back(b);
        }
        p.spool = Some(spool);
        if p.flows() > p.max_flows {
            p.compact();
        }
        p
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

    /// Bytes the waiting batches take in the spool.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The spool directory, if there is one.
    pub fn spool_dir(&self) -> Option<&std::path::Path> {
        self.spool.as_ref().map(Spool::dir)
    }

    /// Fingerprints of the kernel entries of every spooled drain (see [`crate::spool`]).
    pub fn kernel_fingerprints(&self) -> HashSet<u64> {
        self.batches.iter().flat_map(|b| b.kernel.iter().copied()).collect()
    }

    /// Queues a round's flows as a new batch — written to the spool first;
    /// on a spool error nothing is queued and the caller must leave the flows
    /// in the kernel. Unsent batches are merged when the bound is passed.
    /// `kernel` fingerprints the kernel entries the flows were drained from.
    pub fn push(&mut self, flows: Vec<pb::Flow>, dns: Vec<pb::DnsAnswer>, kernel: Vec<u64>) -> Result<(), SpoolError> {
        if flows.is_empty() && dns.is_empty() {
            return Ok(());
        }
        let mut batch = Batch { kernel, ..Batch::new(&self.node, &self.boot_id, self.next_sequence, flows, dns) };
        if let Some(spool) = &self.spool {
            batch.bytes = spool.write(&batch.record()).inspect_err(|_| self.write_errors += 1)?;
        }
        self.next_sequence += 1;
        self.bytes += batch.bytes;
        self.batches.push_back(batch);
        if self.flows() > self.max_flows {
            self.compact();
        }
        Ok(())
    }

    /// Merges every unsent batch into one, under the identity of the first
    /// (never sent, so nothing of it is on the server yet), at its place.
    fn compact(&mut self) {
        let unsent: Vec<usize> = (0..self.batches.len()).filter(|&i| !self.batches[i].sent).collect();
        let Some(&at) = unsent.first() else { return };
        if unsent.len() < 2 && self.batches[at].flows.len() <= self.max_flows {
            return;
        }
        let parts: Vec<&Batch> = unsent.iter().map(|&i| &self.batches[i]).collect();
        let first = parts[0];
        let mut covers: Vec<Covered> = Vec::new();
        let mut dns: Vec<pb::DnsAnswer> = Vec::new();
        for (n, b) in parts.iter().enumerate() {
            covers.extend(b.covers.iter().cloned());
            if n > 0 {
                covers.push(Covered { boot_id: b.boot_id.clone(), first: b.sequence, last: b.sequence });
            }
            dns.extend(b.dns.iter().cloned());
        }
        let mut flows = merge_flows(parts.iter().flat_map(|b| b.flows.iter().cloned()));
        // The bound is on the distinct flows of the merged batch; the batches
        // that may be on the server already (one in flight, and the first of
        // each earlier boot) come on top of it.
        // More distinct flows than that: the ones with the fewest connections go (counted).
        let mut dropped = 0;
        if flows.len() > self.max_flows {
            dropped = (flows.len() - self.max_flows) as u64;
            flows.sort_by_key(|f| std::cmp::Reverse(f.count + f.failed));
            flows.truncate(self.max_flows);
        }
        dns.truncate(MAX_PENDING_DNS);
        let mut merged = Batch {
            node: first.node.clone(),
            boot_id: first.boot_id.clone(),
            sequence: first.sequence,
            flows,
            dns,
            sent: false,
            attempted: false,
            resumed: first.resumed,
            created_ms: first.created_ms,
            kernel: parts.last().map(|b| b.kernel.clone()).unwrap_or_default(),
            covers: normalize(covers),
            bytes: 0,
        };
        if let Some(spool) = &self.spool {
            // The merged batch replaces its first batch's file atomically; the
            // others' files go after. Should that fail, nothing is merged.
            match spool.write(&merged.record()) {
                Ok(bytes) => merged.bytes = bytes,
                Err(e) => {
                    self.write_errors += 1;
                    warn!(error = %e, "cannot write a merged batch to the spool; keeping the batches unmerged");
                    return;
                }
            }
            for b in &parts[1..] {
                spool.remove(&b.boot_id, b.sequence);
            }
        }
        self.merges += 1;
        self.merged_batches += (parts.len() - 1) as u64;
        self.dropped += dropped;
        let mut rest = VecDeque::with_capacity(self.batches.len() - unsent.len() + 1);
        for (i, b) in std::mem::take(&mut self.batches).into_iter().enumerate() {
            if i == at {
                rest.push_back(merged.clone());
            } else if b.sent {
                rest.push_back(b);
            }
        }
        self.batches = rest;
        self.bytes = self.batches.iter().map(|b| b.bytes).sum();
    }

    /// The batch to send next.
    pub fn front_mut(&mut self) -> Option<&mut Batch> {
        self.batches.front_mut()
    }

    /// The front batch was acknowledged (or refused for good): it leaves the
    /// buffer and the spool.
    pub fn acked(&mut self) {
        if let Some(b) = self.batches.pop_front() {
            if let Some(spool) = &self.spool {
                spool.remove(&b.boot_id, b.sequence);
            }
            self.bytes = self.bytes.saturating_sub(b.bytes);
        }
    }
}

#[cfg(test)]
mod tests;
