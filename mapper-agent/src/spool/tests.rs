use super::*;

fn record(boot: &str, seq: u64) -> Record {
    Record {
        report: Some(pb::ReportRequest {
            node: "n1".into(),
            boot_id: boot.into(),
            sequence: seq,
            flows: vec![pb::Flow { dst_port: 80, count: 3, ..Default::default() }],
            dns: vec![],
        }),
        created_ms: 7,
        kernel: vec![1, 2],
        covers: vec![Covered { boot_id: boot.into(), first: seq + 1, last: seq + 4 }],
    }
}

#[test]
fn records_round_trip_and_damage_is_named() {
    let r = record("b-1", 5);
    let bytes = encode(&r);
    assert_eq!(decode(&bytes), Ok(r.clone()));
    assert!(r.covers("b-1", 7) && !r.covers("b-1", 5) && !r.covers("b-2", 7));
    assert_eq!(decode(&bytes[..10]), Err(BadFile::Short));
    assert!(matches!(decode(&bytes[..bytes.len() - 1]), Err(BadFile::Length { .. })));
    let mut flipped = bytes.clone();
    flipped[HEADER + 2] ^= 1;
    assert_eq!(decode(&flipped), Err(BadFile::Checksum));
    let mut magic = bytes;
    magic[0] = b'X';
    assert_eq!(decode(&magic), Err(BadFile::Magic));
    let mut no_node = record("b-1", 5);
    no_node.report.as_mut().expect("report").node.clear();
    assert_eq!(decode(&encode(&no_node)), Err(BadFile::Content("no node name")));
}

#[test]
fn a_file_under_another_batch_name_is_set_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(file_name("b-1", 9)), encode(&record("b-1", 5))).expect("write");
    let (_s, r) = Spool::open(dir.path(), Duration::ZERO).expect("open");
    assert_eq!((r.batches.len(), r.corrupt), (0, 1));
}

#[test]
fn one_spool_one_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = Spool::open(dir.path(), Duration::ZERO).expect("open");
    let e = Spool::open(dir.path(), Duration::from_millis(200)).expect_err("second agent on the same spool");
    assert!(matches!(e, SpoolError::Locked { .. }), "{e}");
    assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
    drop(first);
    Spool::open(dir.path(), Duration::ZERO).expect("free again once the first is gone");
}

#[test]
fn writes_replace_atomically_and_removal_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _) = Spool::open(dir.path(), Duration::ZERO).expect("open");
    let n = s.write(&record("b-1", 1)).expect("write");
    let mut bigger = record("b-1", 1);
    bigger.kernel = vec![0; 100];
    let m = s.write(&bigger).expect("rewrite");
    assert!(m > n);
    let bad = record("../x", 1);
    assert!(matches!(s.write(&bad), Err(SpoolError::BadBootId { .. })));
    s.remove("b-1", 1);
    s.remove("b-1", 1);
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("lock")]);
}

#[test]
fn the_checksum_is_fnv1a_as_earlier_agents_wrote_it() {
    // Published FNV-1a 64 test vectors: a spool written by an earlier agent must still check.
    assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(checksum(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(checksum(b"foobar"), 0x8594_4171_f739_67e8);
}
