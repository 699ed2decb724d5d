//! A whole drain round (drain, attribute, spool, then delete) over fake kernel maps: what
//! reaches the resend buffer, and that flows leave the kernel only once they are spooled.

use std::time::Duration;

use mapper_ebpf_common::FlowKey;
use mapper_proto::v1 as pb;

use super::*;
use crate::{
    capture::fake::{FakeMaps, Op},
    spool::Spool,
};

fn key(port: u16) -> FlowKey {
    let mut k = FlowKey { direction: 1, protocol: 6, family: 2, dst_port: port, netns: 7, ..Default::default() };
    k.src_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
    k.dst_addr[..4].copy_from_slice(&[10, 0, 0, 3]);
    k
}

fn drainer(maps: FakeMaps, pending: Option<Pending>) -> Drainer<FakeMaps> {
    Drainer {
        node: "n1".into(),
        capture: Capture::over(maps, 8),
        cgroups: Arc::new(Mutex::new(CgroupResolver::new("/nonexistent/cgroup"))),
        metrics: Arc::new(Metrics::default()),
        output: Output::None,
        kernel_seen: Vec::new(),
        pending: pending.map(|p| Arc::new(Mutex::new(p))),
        wake: None,
        dns_out: Arc::new(Mutex::new(Vec::new())),
        host_netns: None,
        crash_after_spool: false,
        local_servers: crate::flow::LocalServers::default(),
    }
}

fn pending(d: &Drainer<FakeMaps>) -> std::sync::MutexGuard<'_, Pending> {
    d.pending.as_ref().expect("reporting").lock().expect("pending")
}

fn answer() -> pb::DnsAnswer {
    pb::DnsAnswer { query: "example.com".into(), ..Default::default() }
}

#[test]
fn a_round_spools_the_drained_flows_then_deletes_them() {
    let mut maps = FakeMaps::default();
    maps.record(key(80), 3);
    maps.record(key(443), 1);
    let mut d = drainer(maps, Some(Pending::new("n1", "boot-1", 1_000)));
    d.dns_out.lock().expect("dns").push(answer());
    assert_eq!(d.round().expect("round"), 2);
    {
        let mut p = pending(&d);
        assert_eq!((p.len(), p.flows()), (1, 2));
        let b = p.front_mut().expect("a batch");
        let mut counts: Vec<(u32, u64)> = b.flows.iter().map(|f| (f.dst_port, f.count)).collect();
        counts.sort_unstable();
        assert_eq!(counts, [(80, 3), (443, 1)]);
        assert_eq!(b.dns, [answer()], "the DNS answers waiting go with the round");
    }
    assert!(d.dns_out.lock().expect("dns").is_empty());
    assert!(d.capture.maps().counts(0).is_empty(), "spooled, so deleted from the kernel");
    assert_eq!(d.metrics.drains.get(), 1);
    assert_eq!(d.metrics.flows_drained.get_or_create(&[("direction", "connect")]).get(), 2);
}

#[test]
fn a_round_whose_spool_write_fails_leaves_its_flows_in_the_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, _) = Spool::open(dir.path(), Duration::from_secs(1)).expect("spool");
    // A boot id the spool refuses to name a file after: every write fails.
    let p = Pending::with_spool("n1", "bad/boot", 1_000, spool, Vec::new());
    let mut maps = FakeMaps::default();
    maps.record(key(80), 3);
    let mut d = drainer(maps, Some(p));
    d.dns_out.lock().expect("dns").push(answer());
    assert!(matches!(d.round(), Err(AgentError::Spool(_))));
    assert_eq!(d.capture.maps().counts(0).len(), 1, "not on disk, so still in the kernel");
    assert!(pending(&d).is_empty());
    assert_eq!(*d.dns_out.lock().expect("dns"), [answer()], "the DNS answers go back in line");
    assert_eq!(d.metrics.drains.get(), 0);
}

#[test]
fn a_round_with_nothing_drained_queues_nothing() {
    let mut d = drainer(FakeMaps::default(), Some(Pending::new("n1", "boot-1", 1_000)));
    assert_eq!(d.round().expect("round"), 0);
    assert!(pending(&d).is_empty(), "no empty batch");
    assert_eq!(d.capture.maps().active, 0, "nothing recorded: no flip, no read");
    assert_eq!(d.metrics.drains.get(), 1);
    d.dns_out.lock().expect("dns").push(answer());
    assert_eq!(d.round().expect("round"), 0);
    assert_eq!(pending(&d).len(), 1, "the DNS answers waiting go all the same");
}

#[test]
fn a_failed_drain_keeps_every_flow_for_a_later_round() {
    let mut maps = FakeMaps::default();
    maps.record(key(80), 3);
    maps.fail = Some((Op::Entries, 0));
    let mut d = drainer(maps, None);
    assert!(matches!(d.round(), Err(AgentError::Capture(_))));
    d.capture.maps().fail = None;
    // The failed round flipped the buffers: the next one reads the other, the one after this.
    assert_eq!(d.round().expect("round"), 0);
    assert_eq!(d.round().expect("round"), 1);
    assert!(d.capture.maps().counts(0).is_empty());
}
