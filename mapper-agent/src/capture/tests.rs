//! The drain rounds over [`FakeMaps`]: which buffer a drain reads, what a clear deletes,
//! and that no failure loses an entry.

use std::{collections::HashSet, time::Duration};

use super::{
    fake::{FakeMaps, Op},
    *,
};

fn key(port: u16) -> FlowKey {
    FlowKey { direction: 1, protocol: 6, family: 2, dst_port: port, ..Default::default() }
}

fn capture(maps: FakeMaps) -> Capture<FakeMaps> {
    Capture::over(maps, 8)
}

fn ports(drained: &Drained) -> Vec<(u16, u64)> {
    let mut p: Vec<(u16, u64)> = drained.flows.iter().map(|(k, v)| (k.dst_port, v.established)).collect();
    p.sort_unstable();
    p
}

fn sorted(mut entries: Vec<(FlowKey, u64)>) -> Vec<(u16, u64)> {
    let mut p: Vec<(u16, u64)> = entries.drain(..).map(|(k, n)| (k.dst_port, n)).collect();
    p.sort_unstable();
    p
}

#[test]
fn a_drain_flips_to_the_other_buffer_and_reads_the_old_one() {
    let mut c = capture(FakeMaps::default());
    c.maps().record(key(80), 2);
    c.maps().record(key(443), 1);
    let d = c.drain(Duration::ZERO).expect("drain");
    assert_eq!(d.buffer, 0);
    assert_eq!(c.maps().active, 1, "the programs write to the other buffer now");
    assert_eq!(ports(&d), [(80, 2), (443, 1)]);
    c.clear(&d).expect("clear");
    c.maps().record(key(80), 5);
    let d = c.drain(Duration::ZERO).expect("second drain");
    assert_eq!((d.buffer, c.maps().active), (1, 0), "and back");
    assert_eq!(ports(&d), [(80, 5)]);
}

#[test]
fn entries_are_deleted_only_by_the_clear_after_they_are_taken() {
    let mut c = capture(FakeMaps::default());
    c.maps().record(key(80), 1);
    c.maps().record(key(81), 1);
    let d = c.drain(Duration::ZERO).expect("drain");
    assert_eq!(sorted(c.maps().entries(0)), [(80, 1), (81, 1)], "a drain reads, it does not delete");
    assert_eq!(c.maps().occupancy[0], 2);
    // Programs still write meanwhile: to the new buffer, which the clear does not touch.
    c.maps().record(key(80), 4);
    c.maps().record(key(82), 1);
    c.clear(&d).expect("clear");
    assert!(c.maps().entries(0).is_empty(), "the drained buffer is emptied");
    assert_eq!(c.maps().occupancy, [0, 2], "its count restarts, the active one's stays");
    assert_eq!(sorted(c.maps().entries(1)), [(80, 4), (82, 1)]);
    assert_eq!(ports(&c.drain(Duration::ZERO).expect("drain")), [(80, 4), (82, 1)]);
}

#[test]
fn a_drain_never_cleared_is_read_again() {
    // The caller could not hand the flows on (a spool write failed): no clear. Two flips
    // later the same entries come back, with what the programs added meanwhile.
    let mut c = capture(FakeMaps::default());
    c.maps().record(key(80), 3);
    let _kept = c.drain(Duration::ZERO).expect("drain");
    let d = c.drain(Duration::ZERO).expect("drain of the other buffer");
    assert!(d.flows.is_empty());
    c.clear(&d).expect("clear of nothing");
    c.maps().record(key(80), 1);
    let d = c.drain(Duration::ZERO).expect("third drain");
    assert_eq!(ports(&d), [(80, 4)], "nothing lost, nothing counted twice");
}

#[test]
fn a_round_with_nothing_pending_flips_and_clears_nothing() {
    let mut c = capture(FakeMaps::default());
    let d = c.drain(Duration::ZERO).expect("drain");
    assert!(d.flows.is_empty());
    assert_eq!((d.buffer, c.maps().active), (0, 1));
    c.clear(&d).expect("clear");
    assert_eq!(c.maps().occupancy, [0, 0]);
}

#[test]
fn an_error_in_the_middle_of_a_drain_loses_nothing() {
    let mut maps = FakeMaps::default();
    for port in 1..=5 {
        maps.record(key(port), u64::from(port));
    }
    // The third lookup fails.
    maps.fail = Some((Op::Get, 2));
    let mut c = capture(maps);
    let e = c.drain(Duration::ZERO).expect_err("the lookup error is the drain's");
    assert!(matches!(e, CaptureError::Map { name: "flows_a", .. }), "{e:?}");
    assert_eq!(c.maps().entries(0).len(), 5, "every entry stays in the kernel");
    c.maps().fail = None;
    // The next drain reads the other buffer; the one after, these five again.
    let d = c.drain(Duration::ZERO).expect("drain");
    assert_eq!(d.buffer, 1);
    c.clear(&d).expect("clear");
    let d = c.drain(Duration::ZERO).expect("drain");
    assert_eq!(ports(&d), [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
}

#[test]
fn a_drain_that_cannot_flip_reads_nothing() {
    let mut maps = FakeMaps::default();
    maps.record(key(80), 1);
    maps.fail = Some((Op::SetActive, 0));
    let mut c = capture(maps);
    assert!(matches!(c.drain(Duration::ZERO), Err(CaptureError::Map { name: "state", .. })));
    assert_eq!(c.maps().active, 0, "the programs still write to the same buffer");
    assert_eq!(c.maps().entries(0).len(), 1);
}

#[test]
fn a_failed_clear_keeps_the_occupancy_and_what_it_did_not_delete() {
    let mut maps = FakeMaps::default();
    for port in 1..=3 {
        maps.record(key(port), 1);
    }
    let mut c = capture(maps);
    let d = c.drain(Duration::ZERO).expect("drain");
    c.maps().fail = Some((Op::Remove, 1));
    assert!(matches!(c.clear(&d), Err(CaptureError::Map { name: "flows_a", .. })));
    assert_eq!(c.maps().entries(0).len(), 2, "only the first delete happened");
    assert_eq!(c.maps().occupancy[0], 3, "the count is reset only once the buffer is empty");
}

#[test]
fn occupancy_is_the_active_buffer_s() {
    let mut c = capture(FakeMaps::default());
    c.maps().record(key(1), 1);
    c.maps().record(key(2), 1);
    assert_eq!(c.occupancy().expect("occupancy"), 2);
    let d = c.drain(Duration::ZERO).expect("drain");
    assert_eq!(c.occupancy().expect("occupancy"), 0, "the new buffer is empty");
    c.maps().record(key(1), 1);
    assert_eq!(c.occupancy().expect("occupancy"), 1);
    c.clear(&d).expect("clear");
    assert_eq!(c.occupancy().expect("occupancy"), 1);
}

#[test]
fn kernel_stats_cover_every_counter() {
    let mut maps = FakeMaps::default();
    maps.stats.insert(Stat::FlowMapFull as u32, 7);
    let c = capture(maps);
    let stats = c.kernel_stats().expect("stats");
    assert_eq!(stats.len(), Stat::ALL.len());
    assert!(stats.contains(&(Stat::FlowMapFull, 7)) && stats.contains(&(Stat::DnsTruncated, 0)));
}

#[test]
fn leftovers_are_removed_from_the_idle_buffer_only_when_they_match() {
    let mut maps = FakeMaps::default();
    maps.record(key(80), 2);
    maps.record(key(81), 1);
    maps.active = 1;
    maps.record(key(80), 2);
    let spooled: HashSet<u64> = [key(80), key(81)]
        .iter()
        .map(|k| fingerprint(k, &FlowValue { established: if k.dst_port == 80 { 2 } else { 9 }, ..Default::default() }))
        .collect();
    let mut c = capture(maps);
    assert_eq!(c.remove_spooled(&spooled).expect("remove"), 1, "81 changed since it was spooled");
    assert_eq!(sorted(c.maps().entries(0)), [(81, 1)]);
    assert_eq!(c.maps().occupancy[0], 1, "the idle buffer's count is what it still holds");
    assert_eq!(sorted(c.maps().entries(1)), [(80, 2)], "the active buffer is not touched");
    assert_eq!(c.remove_spooled(&HashSet::new()).expect("nothing spooled"), 0);
}

#[test]
fn an_entry_gone_before_the_clear_does_not_fail_it() {
    let mut c = capture(FakeMaps::default());
    c.maps().record(key(80), 1);
    c.maps().record(key(81), 1);
    let d = c.drain(Duration::ZERO).expect("drain");
    // The LRU evicts one between the drain and the clear: deleting it again is no error.
    c.maps().flows[0].remove(&key(80));
    c.clear(&d).expect("a clear over an evicted entry");
    assert!(c.maps().entries(0).is_empty());
}
