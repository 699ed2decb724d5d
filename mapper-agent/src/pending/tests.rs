use std::time::Duration;

use super::*;
use crate::spool::{self, Spool};

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

/// Total count of the flows to `port` over every batch waiting.
fn count(p: &Pending, port: u32) -> u64 {
    p.batches.iter().flat_map(|b| &b.flows).filter(|f| f.dst_port == port).map(|f| f.count).sum()
}

fn open(dir: &std::path::Path) -> (Spool, spool::LoadReport) {
    Spool::open(dir, Duration::from_secs(1)).expect("open spool")
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".batch"))
        .collect();
    v.sort();
    v
}

#[test]
fn bound_merges_unsent_batches_without_losing_counts() {
    let mut p = Pending::new("n1", "boot", 4);
    p.push(vec![flow(80, 1), flow(81, 1)], vec![], vec![]).expect("push");
    p.front_mut().expect("front").sent = true; // in flight: must not be merged
    p.push(vec![flow(80, 2)], vec![], vec![]).expect("push");
    p.push(vec![flow(80, 3), flow(82, 1)], vec![], vec![]).expect("push");
    assert_eq!(p.len(), 2, "unsent batches merged into one");
    assert_eq!((p.merges, p.merged_batches), (1, 1));
    let merged = &p.batches[1];
    assert_eq!(merged.sequence, 2, "merged batch keeps the first unsent sequence");
    assert_eq!(merged.covers, vec![Covered { boot_id: "boot".into(), first: 3, last: 3 }]);
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
    let mut p = Pending::new("n1", "boot", 2);
    p.push((0..5).map(|i| flow(i, u64::from(i) + 1)).collect(), vec![], vec![]).expect("push");
    assert_eq!(p.flows(), 2);
    assert_eq!(p.dropped, 3);
    assert_eq!((count(&p, 4), count(&p, 3)), (5, 4), "the flows with the most connections are kept");
}

/// Distinct flows: one per port and address.
fn many(n: usize) -> Vec<pb::Flow> {
    (0..n).map(|i| pb::Flow { dst_ip: (i as u32).to_be_bytes().to_vec(), ..flow(80, 1) }).collect()
}

#[test]
fn no_batch_holds_more_flows_than_the_server_takes() {
    let max = SERVER_MAX_FLOWS_PER_BATCH;
    // One round larger than a batch: several batches, in order, the fingerprints on the last.
    let mut p = Pending::new("n1", "boot", 10 * max);
    p.push(many(2 * max + 5), vec![], vec![7]).expect("push");
    let sizes: Vec<(u64, usize, usize)> =
        p.batches.iter().map(|b| (b.sequence, b.flows.len(), b.kernel.len())).collect();
    assert_eq!(sizes, [(1, max, 0), (2, max, 0), (3, 5, 1)]);
    // Merged past the bound: one batch the server takes, the rest counted as dropped.
    let mut p = Pending::new("n1", "boot", max + 5);
    p.push(many(max), vec![], vec![]).expect("push");
    p.push(many(max + 10).split_off(max - 10), vec![], vec![]).expect("push");
    assert_eq!(p.len(), 1, "merged");
    assert_eq!(p.flows(), max);
    assert_eq!(p.dropped, 10, "{} distinct flows, {max} kept", max + 10);
}

#[test]
fn a_round_split_in_batches_is_queued_whole_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, r) = open(dir.path());
    let mut p = Pending::with_spool("n1", "boot-a", usize::MAX, s, r.batches);
    // The second part would be written through this temporary name: make it unwritable.
    std::fs::create_dir(dir.path().join(format!(".tmp.{}", spool::file_name("boot-a", 2)))).expect("block");
    assert!(p.push(many(SERVER_MAX_FLOWS_PER_BATCH + 1), vec![], vec![1]).is_err());
    assert_eq!((p.len(), p.bytes()), (0, 0), "the first part taken back");
    assert!(files(dir.path()).is_empty(), "and its file: {:?}", files(dir.path()));
    p.push(vec![flow(80, 1)], vec![], vec![]).expect("push");
    assert_eq!(p.front_mut().map(|b| b.sequence), Some(1), "its sequence reused");
}

#[test]
fn spooled_batches_outlive_the_buffer_and_come_back_with_their_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (s, r) = open(dir.path());
        assert!(r.batches.is_empty());
        let mut p = Pending::with_spool("n1", "boot-a", 100, s, r.batches);
        p.push(vec![flow(80, 1)], vec![], vec![11]).expect("push");
        p.push(vec![flow(80, 2)], vec![], vec![12]).expect("push");
        p.push(vec![flow(81, 4)], vec![], vec![13]).expect("push");
        assert_eq!(files(dir.path()).len(), 3, "one file per batch");
        assert!(p.bytes() > 0);
        p.acked();
        assert_eq!(files(dir.path()).len(), 2, "acknowledged: removed from the spool");
        // The agent dies here (the buffer is dropped, the lock released).
    }
    let (s, r) = open(dir.path());
    let ids: Vec<(String, u64)> = r.batches.iter().map(|l| spool::id(&l.record)).collect();
    assert_eq!(ids, vec![("boot-a".to_string(), 2), ("boot-a".to_string(), 3)], "original identities, in order");
    let mut p = Pending::with_spool("n1", "boot-b", 100, s, r.batches);
    assert_eq!(p.kernel_fingerprints(), [12, 13].into_iter().collect());
    assert!(p.batches[0].sent && p.batches[0].resumed, "an earlier boot's first batch may have been in flight");
    assert!(!p.batches[1].sent, "the ones after it were never sent");
    assert_eq!((count(&p, 80), count(&p, 81)), (2, 4));
    p.push(vec![flow(80, 5)], vec![], vec![]).expect("push");
    let last = p.batches.back().expect("new batch");
    assert_eq!((last.boot_id.as_str(), last.sequence), ("boot-b", 1), "new batches under the new boot id");
}

#[test]
fn a_full_spool_merges_unsent_batches_across_restarts_and_loses_no_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (s, r) = open(dir.path());
        let mut p = Pending::with_spool("n1", "boot-a", 3, s, r.batches);
        for i in 0..10 {
            p.push(vec![flow(80, 1), flow(81 + (i % 2), 1)], vec![], vec![]).expect("push");
        }
        // Nothing ever sent: every batch merged into the first.
        assert_eq!(p.len(), 1);
        assert!(p.merges >= 4 && p.merged_batches == 9, "merges {} merged {}", p.merges, p.merged_batches);
        assert_eq!((count(&p, 80), count(&p, 81), count(&p, 82)), (10, 5, 5));
        assert_eq!(p.dropped, 0);
        assert_eq!(files(dir.path()), vec![spool::file_name("boot-a", 1)], "the merged batch replaced the others");
    }
    // A second agent: boot-a's batch may have been in flight, so it stays as it is;
    // the new agent's batches merge among themselves.
    let (s, r) = open(dir.path());
    let mut p = Pending::with_spool("n1", "boot-b", 4, s, r.batches);
    for _ in 0..6 {
        p.push(vec![flow(80, 1), flow(83, 2)], vec![], vec![]).expect("push");
    }
    assert_eq!(p.len(), 2);
    assert_eq!(p.batches[0].flows.len(), 3, "the possibly-sent batch is never merged");
    assert_eq!((count(&p, 80), count(&p, 83)), (16, 12));
    drop(p);
    let (_, r) = open(dir.path());
    let total: u64 = r
        .batches
        .iter()
        .flat_map(|l| &l.record.report.as_ref().expect("report").flows)
        .filter(|f| f.dst_port == 80)
        .map(|f| f.count)
        .sum();
    assert_eq!(total, 16, "the spool on disk holds every count");
}

#[test]
fn a_crash_between_a_merge_and_removing_its_parts_counts_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, r) = open(dir.path());
    let mut p = Pending::with_spool("n1", "boot-a", 100, s, r.batches);
    p.push(vec![flow(80, 1)], vec![], vec![]).expect("push");
    p.push(vec![flow(80, 2)], vec![], vec![]).expect("push");
    let second = std::fs::read(dir.path().join(spool::file_name("boot-a", 2))).expect("read");
    p.max_flows = 1;
    p.compact();
    assert_eq!(p.len(), 1);
    drop(p);
    // As if the agent died before removing batch 2's file.
    std::fs::write(dir.path().join(spool::file_name("boot-a", 2)), second).expect("restore");
    let (_, r) = open(dir.path());
    assert_eq!(r.superseded, 1, "{r:?}");
    assert_eq!(r.batches.len(), 1);
    assert_eq!(files(dir.path()), vec![spool::file_name("boot-a", 1)]);
}

#[test]
fn corrupt_and_unfinished_files_are_set_aside_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (s, r) = open(dir.path());
        let mut p = Pending::with_spool("n1", "boot-a", 100, s, r.batches);
        p.push(vec![flow(80, 1)], vec![], vec![]).expect("push");
        p.push(vec![flow(80, 2)], vec![], vec![]).expect("push");
    }
    let one = dir.path().join(spool::file_name("boot-a", 1));
    let mut bytes = std::fs::read(&one).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&one, &bytes).expect("flip a bit");
    std::fs::write(dir.path().join(".tmp.boot-a.00000000000000000003.batch"), b"half").expect("temp");
    std::fs::write(dir.path().join(spool::file_name("boot-a", 4)), b"MAPSPL01").expect("short");
    let (_, r) = open(dir.path());
    assert_eq!((r.corrupt, r.partial), (2, 1), "{r:?}");
    assert_eq!(r.batches.len(), 1);
    assert_eq!(spool::id(&r.batches[0].record), ("boot-a".to_string(), 2));
    assert!(dir.path().join("corrupt").join(spool::file_name("boot-a", 1)).exists(), "moved aside");
    assert_eq!(files(dir.path()), vec![spool::file_name("boot-a", 2)]);
}

#[test]
fn a_batch_of_another_node_name_is_resent_as_that_node_and_never_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (s, r) = open(dir.path());
        let mut p = Pending::with_spool("old-name", "boot-a", 100, s, r.batches);
        p.push(vec![flow(80, 1)], vec![], vec![]).expect("push");
        p.push(vec![flow(80, 2)], vec![], vec![]).expect("push");
    }
    let (s, r) = open(dir.path());
    let mut p = Pending::with_spool("new-name", "boot-b", 2, s, r.batches);
    assert!(p.batches.iter().all(|b| b.node == "old-name" && b.sent));
    p.push(vec![flow(81, 1)], vec![], vec![]).expect("push");
    p.push(vec![flow(81, 1)], vec![], vec![]).expect("push");
    assert_eq!(p.len(), 3, "only the new node's batches merge");
    assert_eq!(p.batches[2].node, "new-name");
    assert_eq!(count(&p, 81), 2);
}

/// A flow as a busy node reports it: pod to a Service, pod UID, container id, process name.
fn realistic(i: u32) -> pb::Flow {
    pb::Flow {
        direction: pb::Direction::Connect as i32,
        protocol: pb::Protocol::Tcp as i32,
        src_ip: vec![10, 244, (i >> 8) as u8, i as u8],
        dst_ip: vec![10, 244, 200, (i % 250) as u8],
        dst_port: 8080,
        original_dst_ip: vec![10, 96, 0, 10],
        original_dst_port: 80,
        count: 1234,
        failed: 3,
        netns: 4_026_532_246,
        cgroup_id: 22_480 + u64::from(i),
        pod_uid: format!("1fa34f9c-5c2e-4d0b-9f0e-{i:012x}"),
        container_id: format!("{i:064x}"),
        comm: "transaction-svc".into(),
        first_seen_ms: 1_795_679_181_355,
        last_seen_ms: 1_795_679_189_355,
        host_network: false,
        ..Default::default()
    }
}

/// The same, to a pod on the same node (whose end the agent names too).
fn realistic_same_node(i: u32) -> pb::Flow {
    pb::Flow { peer_on_node: true, peer_pod_uid: format!("7c1d2e3f-5c2e-4d0b-9f0e-{i:012x}"), ..realistic(i) }
}

/// The figure values.yaml and the README size the spool with: bytes per
/// spooled flow, kernel fingerprint included, in a full (merged) batch.
const BYTES_PER_SPOOLED_FLOW: u64 = 200;

#[test]
fn a_spooled_flow_takes_the_documented_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, r) = open(dir.path());
    let mut p = Pending::with_spool("ip-10-0-12-34.eu-west-1.compute.internal", "boot-a", 20_000, s, r.batches);
    const N: u32 = 10_000;
    p.push((0..N).map(realistic).collect(), vec![], (0..u64::from(N)).collect()).expect("push");
    let per_flow = p.bytes() as f64 / f64::from(N);
    let before = p.bytes();
    p.push((N..2 * N).map(realistic_same_node).collect(), vec![], (0..u64::from(N)).collect()).expect("push");
    let same_node = (p.bytes() - before) as f64 / f64::from(N);
    eprintln!("{N} realistic flows spooled: {per_flow:.1} bytes per flow to another node, {same_node:.1} to this node");
    assert!(
        per_flow <= BYTES_PER_SPOOLED_FLOW as f64,
        "{per_flow} bytes per spooled flow: update values.yaml and the README"
    );
    assert!(same_node <= BYTES_PER_SPOOLED_FLOW as f64 + 50.0, "{same_node} bytes per same-node flow");
}

#[test]
fn a_merge_that_cannot_be_written_keeps_the_batches_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, r) = open(dir.path());
    let mut p = Pending::with_spool("n1", "boot-a", 100, s, r.batches);
    p.push(vec![flow(80, 1)], vec![], vec![]).expect("push");
    p.push(vec![flow(80, 2), flow(81, 1)], vec![], vec![]).expect("push");
    // The merged batch would be written through this temporary name: make it unwritable.
    std::fs::create_dir(dir.path().join(format!(".tmp.{}", spool::file_name("boot-a", 1)))).expect("block");
    p.max_flows = 1;
    p.compact();
    assert_eq!((p.len(), p.merges, p.write_errors), (2, 0, 1), "nothing merged");
    assert_eq!((count(&p, 80), count(&p, 81)), (3, 1));
    assert_eq!(files(dir.path()).len(), 2, "both files kept");
    p.acked();
    p.acked();
    assert!(files(dir.path()).is_empty());
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

/// The memory a full spool costs (run alone: `cargo test -p mapper-agent --lib
/// full_spool_memory -- --ignored --nocapture`): 200 000 distinct flows, then
/// drains that each merge into them.
#[test]
#[ignore = "a measurement, run by hand"]
fn full_spool_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, r) = open(dir.path());
    let before = vm_hwm_kib();
    let bound = std::env::var("BOUND").ok().and_then(|b| b.parse().ok()).unwrap_or(200_000);
    let mut p = Pending::with_spool("node", "boot-a", bound, s, r.batches);
    for round in 0..14u32 {
        let flows = (0..20_000u32).map(|i| realistic(round % 10 * 20_000 + i)).collect();
        p.push(flows, vec![], vec![]).expect("push");
    }
    eprintln!(
        "{} flows pending ({} merges, {} dropped), {} bytes spooled; peak RSS grew by {} MiB",
        p.flows(),
        p.merges,
        p.dropped,
        p.bytes(),
        (vm_hwm_kib() - before) / 1024
    );
}

#[test]
fn a_spool_loaded_past_a_lowered_bound_is_merged_after_the_kernel_is_reconciled() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (s, r) = open(dir.path());
        let mut p = Pending::with_spool("n1", "boot-a", 100, s, r.batches);
        for i in 0..4 {
            p.push(vec![flow(80, 1), flow(90 + i, 1)], vec![], vec![u64::from(i)]).expect("push");
        }
    }
    let (s, r) = open(dir.path());
    let mut p = Pending::with_spool("n1", "boot-b", 5, s, r.batches);
    assert_eq!(p.kernel_fingerprints(), (0..4).collect(), "every drain's fingerprints before the merge");
    p.enforce_bound();
    assert_eq!(p.len(), 2, "boot-a's first batch (maybe sent) and the rest merged");
    assert_eq!((count(&p, 80), count(&p, 93)), (4, 1));
    assert_eq!(p.dropped, 0);
}
