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

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::Hasher,
};

use mapper_proto::v1 as pb;
use mapper_report::SERVER_MAX_FLOWS_PER_BATCH;
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
    /// The report that sends this batch under the identity it was drained with.
    pub fn request(&self) -> pb::ReportRequest {
        pb::ReportRequest {
            node: self.node.clone(),
            boot_id: self.boot_id.clone(),
            sequence: self.sequence,
            flows: self.flows.clone(),
            dns: self.dns.clone(),
        }
    }

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

    /// Writes the batch to `spool` (its flows are moved into the record for
    /// the write and back, not copied) and returns the bytes written.
    fn write_to(&mut self, spool: &Spool) -> Result<u64, SpoolError> {
        use std::mem::take;
        let record = Record {
            report: Some(pb::ReportRequest {
                node: take(&mut self.node),
                boot_id: take(&mut self.boot_id),
                sequence: self.sequence,
                flows: take(&mut self.flows),
                dns: take(&mut self.dns),
            }),
            created_ms: self.created_ms,
            kernel: take(&mut self.kernel),
            covers: take(&mut self.covers),
        };
        let written = spool.write(&record);
        let Record { report, kernel, covers, .. } = record;
        let report = report.unwrap_or_default();
        (self.node, self.boot_id, self.flows, self.dns) = (report.node, report.boot_id, report.flows, report.dns);
        (self.kernel, self.covers) = (kernel, covers);
        let bytes = written?;
        self.bytes = bytes;
        Ok(bytes)
    }

    /// (boot id, sequence) of every batch whose file this one makes redundant.
    fn covered(&self) -> impl Iterator<Item = (&str, u64)> {
        self.covers.iter().flat_map(|c| (c.first..=c.last).map(move |s| (c.boot_id.as_str(), s)))
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

/// What makes two flows the same flow, without copying any of it to the heap:
/// addresses as fixed arrays, the pod UID by its hash (the cgroup id beside it
/// already tells pods apart; the hash only has to agree with it).
#[derive(PartialEq, Eq, Hash)]
struct FlowKey {
    kind: (i32, i32, u32, u32, u32, bool),
    addrs: [[u8; 16]; 3],
    lens: [u8; 3],
    cgroup_id: u64,
    pod_uid: u64,
    /// What is known of the other end when it is on this node too.
    peer: (u64, bool, bool),
}

fn addr(b: &[u8]) -> ([u8; 16], u8) {
    let mut a = [0u8; 16];
    let n = b.len().min(16);
    a[..n].copy_from_slice(&b[..n]);
    (a, b.len() as u8)
}

/// FNV-1a of a pod UID (all [`FlowKey`] needs: a stable hash of a short string).
fn hash(s: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

fn key(f: &pb::Flow) -> FlowKey {
    let (src, dst, orig) = (addr(&f.src_ip), addr(&f.dst_ip), addr(&f.original_dst_ip));
    FlowKey {
        kind: (f.direction, f.protocol, f.dst_port, f.original_dst_port, f.netns, f.host_network),
        addrs: [src.0, dst.0, orig.0],
        lens: [src.1, dst.1, orig.1],
        cgroup_id: f.cgroup_id,
        pod_uid: hash(&f.pod_uid),
        peer: (hash(&f.peer_pod_uid), f.peer_on_node, f.peer_node_process),
    }
}

/// Merges `flows` by key, in order of first appearance: counts add up, times widen.
pub fn merge_flows(flows: impl IntoIterator<Item = pb::Flow>) -> Vec<pb::Flow> {
    let flows = flows.into_iter();
    let mut at: HashMap<FlowKey, usize> = HashMap::with_capacity(flows.size_hint().0);
    let mut out: Vec<pb::Flow> = Vec::with_capacity(flows.size_hint().0);
    for f in flows {
        match at.entry(key(&f)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let m = &mut out[*e.get()];
                m.count = m.count.saturating_add(f.count);
                m.failed = m.failed.saturating_add(f.failed);
                m.first_seen_ms = m.first_seen_ms.min(f.first_seen_ms);
                m.last_seen_ms = m.last_seen_ms.max(f.last_seen_ms);
                if !f.comm.is_empty() {
                    m.comm = f.comm;
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(f);
            }
        }
    }
    out
}

/// An iterator that knows how many items it yields at most (for pre-sizing).
struct Sized<I>(I, usize);

impl<I: Iterator> Iterator for Sized<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
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
        p
    }

    /// Merges unsent batches if what was loaded is past the bound. Call after
    /// the kernel has been reconciled with [`Self::kernel_fingerprints`] (a
    /// merge keeps only the newest batch's fingerprints).
    pub fn enforce_bound(&mut self) {
        if self.flows() > self.max_flows {
            self.compact();
        }
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
    ///
    /// A round of more flows than the server takes in one batch is queued as several batches
    /// (the last carries the fingerprints), all or none: should one not reach the spool, those
    /// queued before it are taken back.
    pub fn push(
        &mut self,
        mut flows: Vec<pb::Flow>,
        dns: Vec<pb::DnsAnswer>,
        kernel: Vec<u64>,
    ) -> Result<(), SpoolError> {
        let before = self.batches.len();
        let mut result = Ok(());
        while flows.len() > SERVER_MAX_FLOWS_PER_BATCH && result.is_ok() {
            let rest = flows.split_off(SERVER_MAX_FLOWS_PER_BATCH);
            result = self.push_one(std::mem::replace(&mut flows, rest), Vec::new(), Vec::new());
        }
        let result = result.and_then(|()| self.push_one(flows, dns, kernel));
        if result.is_err() {
            while self.batches.len() > before {
                let Some(b) = self.batches.pop_back() else { break };
                if let Some(spool) = &self.spool {
                    spool.remove(&b.boot_id, b.sequence);
                }
                self.bytes = self.bytes.saturating_sub(b.bytes);
                self.next_sequence = b.sequence;
            }
        }
        result
    }

    fn push_one(&mut self, flows: Vec<pb::Flow>, dns: Vec<pb::DnsAnswer>, kernel: Vec<u64>) -> Result<(), SpoolError> {
        if flows.is_empty() && dns.is_empty() {
            return Ok(());
        }
        let mut batch = Batch { kernel, ..Batch::new(&self.node, &self.boot_id, self.next_sequence, flows, dns) };
        if let Some(spool) = &self.spool {
            batch.write_to(spool).inspect_err(|_| self.write_errors += 1)?;
        }
        self.next_sequence += 1;
        self.bytes += batch.bytes;
        self.batches.push_back(batch);
        self.enforce_bound();
        Ok(())
    }

    /// Merges every unsent batch into one, under the identity of the first
    /// (never sent, so nothing of it is on the server yet), at its place. The
    /// parts are moved, not copied; should the merged batch not reach the
    /// spool, they are read back from their files, which still hold them.
    fn compact(&mut self) {
        let unsent = self.batches.iter().filter(|b| !b.sent).count();
        let Some(first) = self.batches.iter().find(|b| !b.sent) else { return };
        if unsent < 2 && first.flows.len() <= self.max_flows.min(SERVER_MAX_FLOWS_PER_BATCH) {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.batches.len() - unsent + 1);
        let mut parts = Vec::with_capacity(unsent);
        let mut at = 0;
        for b in std::mem::take(&mut self.batches) {
            if b.sent {
                kept.push_back(b);
            } else {
                if parts.is_empty() {
                    at = kept.len();
                }
                parts.push(b);
            }
        }
        let ids: Vec<(String, u64, bool)> = parts.iter().map(|b| (b.boot_id.clone(), b.sequence, b.resumed)).collect();
        let mut covers: Vec<Covered> = Vec::new();
        let mut dns: Vec<pb::DnsAnswer> = Vec::new();
        for (n, b) in parts.iter_mut().enumerate() {
            covers.append(&mut b.covers);
            if n > 0 {
                covers.push(Covered { boot_id: b.boot_id.clone(), first: b.sequence, last: b.sequence });
            }
            dns.append(&mut b.dns);
        }
        let template = Batch {
            kernel: parts.last_mut().map(|b| std::mem::take(&mut b.kernel)).unwrap_or_default(),
            covers: normalize(covers),
            resumed: parts[0].resumed,
            created_ms: parts[0].created_ms,
            ..Batch::new(&parts[0].node, &parts[0].boot_id, parts[0].sequence, Vec::new(), Vec::new())
        };
        let total: usize = parts.iter().map(|b| b.flows.len()).sum();
        let mut flows = merge_flows(Sized(parts.into_iter().flat_map(|b| b.flows), total));
        // The bound is on the distinct flows of the merged batch; the batches
        // that may be on the server already (one in flight, and the first of
        // each earlier boot) come on top of it. More distinct flows than that:
        // the ones with the fewest connections go (counted).
        // One batch never holds more than the server takes in one.
        let keep = self.max_flows.min(SERVER_MAX_FLOWS_PER_BATCH);
        let mut dropped = 0;
        if flows.len() > keep {
            dropped = (flows.len() - keep) as u64;
            flows.sort_by_key(|f| std::cmp::Reverse(f.count.saturating_add(f.failed)));
            flows.truncate(keep);
        }
        dns.truncate(MAX_PENDING_DNS);
        let mut merged = Batch { flows, dns, ..template };
        if let Some(spool) = &self.spool {
            // The merged batch replaces its first batch's file atomically; the
            // others' files go after (and its `covers` name them, should a
            // crash come between).
            if let Err(e) = merged.write_to(spool) {
                self.write_errors += 1;
                match ids.iter().map(|(boot, seq, _)| spool.read(boot, *seq)).collect::<Result<Vec<_>, _>>() {
                    Ok(loaded) => {
                        warn!(error = %e, "cannot write a merged batch to the spool; keeping the batches unmerged");
                        let parts = loaded
                            .into_iter()
                            .zip(&ids)
                            .map(|(l, (_, _, resumed))| Batch { resumed: *resumed, ..Batch::from_loaded(l) });
                        for (n, b) in parts.enumerate() {
                            kept.insert(at + n, b);
                        }
                        self.batches = kept;
                        return;
                    }
                    Err(read) => {
                        // Kept merged in memory only: the spool still holds the parts,
                        // each counted once if this agent dies before sending it.
                        warn!(error = %e, read_error = %read, "cannot write a merged batch to the spool nor read its parts back; keeping it in memory");
                    }
                }
            } else {
                for (boot, seq, _) in &ids[1..] {
                    spool.remove(boot, *seq);
                }
            }
        }
        self.merges += 1;
        self.merged_batches += (ids.len() - 1) as u64;
        self.dropped += dropped;
        kept.insert(at, merged);
        self.batches = kept;
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
                // Normally gone already; left by a crash, or by a merge that
                // never reached the disk.
                for (boot, seq) in b.covered() {
                    spool.remove(boot, seq);
                }
            }
            self.bytes = self.bytes.saturating_sub(b.bytes);
        }
    }
}

#[cfg(test)]
mod tests;
