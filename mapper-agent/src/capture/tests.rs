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
    assert_eq!(sorted(c.maps().counts(0)), [(80, 1), (81, 1)], "a drain reads, it does not delete");
    assert_eq!(c.maps().occupancy[0], 2);
    // Programs still write meanwhile: to the new buffer, which the clear does not touch.
    c.maps().record(key(80), 4);
    c.maps().record(key(82), 1);
    c.clear(&d).expect("clear");
    assert!(c.maps().counts(0).is_empty(), "the drained buffer is emptied");
    assert_eq!(c.maps().occupancy, [0, 2], "its count restarts, the active one's stays");
    assert_eq!(sorted(c.maps().counts(1)), [(80, 4), (82, 1)]);
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
fn a_failed_read_loses_nothing() {
    let mut maps = FakeMaps::default();
    for port in 1..=5 {
        maps.record(key(port), u64::from(port));
    }
    maps.fail = Some((Op::Entries, 0));
    let mut c = capture(maps);
    let e = c.drain(Duration::ZERO).expect_err("the lookup error is the drain's");
    assert!(matches!(e, CaptureError::Map { name: "flows_a", .. }), "{e:?}");
    assert_eq!(c.maps().counts(0).len(), 5, "every entry stays in the kernel");
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
    assert_eq!(c.maps().counts(0).len(), 1);
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
    assert_eq!(c.maps().counts(0).len(), 2, "only the first delete happened");
    assert_eq!(c.maps().occupancy[0], 2, "the programs count against what is left");
}

/// Every count handed on by `drains`, per port.
fn handed_on(drains: &[&Drained]) -> Vec<(u16, u64)> {
    let mut total: std::collections::BTreeMap<u16, u64> = Default::default();
    for d in drains {
        for (k, v) in &d.flows {
            assert!(v.established > 0 || v.failed > 0, "an entry with nothing new is not handed on");
            *total.entry(k.dst_port).or_default() += v.established;
        }
    }
    total.into_iter().collect()
}

#[test]
fn a_partial_clear_counts_nothing_twice() {
    let mut maps = FakeMaps::default();
    maps.record(key(1), 3);
    maps.record(key(2), 2);
    maps.record(key(3), 1);
    let mut c = capture(maps);
    let first = c.drain(Duration::ZERO).expect("drain");
    // Every delete but the first fails (not ENOENT): two entries, counts and all, stay.
    c.maps().fail = Some((Op::Remove, 1));
    assert!(c.clear(&first).is_err());
    c.maps().fail = None;
    assert_eq!(c.maps().counts(0).len(), 2);
    // The programs write to the other buffer, then to this one again, adding to what is left.
    c.maps().record(key(1), 1);
    let second = c.drain(Duration::ZERO).expect("drain of the other buffer");
    c.clear(&second).expect("clear");
    c.maps().record(key(2), 5);
    c.maps().record(key(4), 1);
    let third = c.drain(Duration::ZERO).expect("drain of the buffer left uncleared");
    assert_eq!(third.read.len(), c.maps().counts(0).len(), "every entry is read, to be deleted");
    // Not handed on (the spool failed): the next read of this buffer subtracts the same.
    let again = c.drain(Duration::ZERO).expect("drain of the other buffer");
    c.clear(&again).expect("clear");
    let fourth = c.drain(Duration::ZERO).expect("the same buffer again");
    assert_eq!(handed_on(&[&third]), handed_on(&[&fourth]));
    c.clear(&fourth).expect("clear");
    assert!(c.maps().counts(0).is_empty(), "entries with nothing new are deleted too");
    assert_eq!(c.maps().occupancy, [0, 0]);
    assert_eq!(
        handed_on(&[&first, &second, &fourth]),
        [(1, 4), (2, 7), (3, 1), (4, 1)],
        "each connection counted once"
    );
    // The baseline is gone with the entries: a later count of the same key is whole.
    let empty = c.drain(Duration::ZERO).expect("drain of the other buffer");
    c.clear(&empty).expect("clear");
    c.maps().record(key(3), 2);
    let fifth = c.drain(Duration::ZERO).expect("drain");
    assert_eq!(fifth.buffer, 0);
    assert_eq!(handed_on(&[&fifth]), [(3, 2)]);
}

#[test]
fn an_entry_left_by_a_partial_clear_then_evicted_is_new_when_it_comes_back() {
    let mut maps = FakeMaps::default();
    maps.record(key(1), 3);
    let mut c = capture(maps);
    let first = c.drain(Duration::ZERO).expect("drain");
    c.maps().fail = Some((Op::Remove, 0));
    assert!(c.clear(&first).is_err());
    c.maps().fail = None;
    let other = c.drain(Duration::ZERO).expect("drain");
    c.clear(&other).expect("clear");
    // The LRU evicts the entry left behind; a new connection inserts it again, counting 1.
    c.maps().flows[0].remove(&key(1));
    c.maps().record(key(1), 1);
    let d = c.drain(Duration::ZERO).expect("drain");
    assert_eq!(handed_on(&[&d]), [(1, 1)], "a new entry is not the one reported before");
    c.clear(&d).expect("clear");
}

#[test]
fn a_drain_with_nothing_recorded_is_known_without_reading() {
    let mut c = capture(FakeMaps::default());
    assert!(c.nothing_recorded().expect("occupancy"));
    c.maps().record(key(1), 1);
    assert!(!c.nothing_recorded().expect("occupancy"));
    let d = c.drain(Duration::ZERO).expect("drain");
    assert!(!c.nothing_recorded().expect("occupancy"), "read but not yet cleared");
    c.clear(&d).expect("clear");
    assert!(c.nothing_recorded().expect("occupancy"));
    c.maps().fail = Some((Op::Occupancy, 0));
    assert!(c.nothing_recorded().is_err());
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
    // As a drain read them, but 81 with another count.
    let spooled: HashSet<u64> = [key(80), key(81)]
        .iter()
        .map(|k| {
            let mut v = maps.flows[0][k];
            if k.dst_port == 81 {
                v.established = 9;
            }
            fingerprint(k, &v)
        })
        .collect();
    let mut c = capture(maps);
    assert_eq!(c.remove_spooled(&spooled).expect("remove"), 1, "81 changed since it was spooled");
    assert_eq!(sorted(c.maps().counts(0)), [(81, 1)]);
    assert_eq!(c.maps().occupancy[0], 1, "the idle buffer's count is what it still holds");
    assert_eq!(sorted(c.maps().counts(1)), [(80, 2)], "the active buffer is not touched");
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
    assert!(c.maps().counts(0).is_empty());
}
