//! The store against real damaged, empty, locked and full files.

use super::*;

fn open_err(dir: &Path) -> StoreError {
    match EdgeStore::open(dir) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn an_empty_file_is_an_error_and_can_be_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edges.redb");
    std::fs::write(&path, b"").expect("write");
    let e = open_err(dir.path());
    let text = error_chain(&e);
    assert!(matches!(e, StoreError::EmptyFile { .. }), "{text}");
    assert!(text.contains(&path.display().to_string()) && text.contains("--move-corrupt-store"), "{text}");
    let s = EdgeStore::open_with(dir.path(), OpenOptions { move_corrupt: true }).expect("moved aside");
    assert!(s.is_empty());
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("edges.redb.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the empty file is kept beside: {aside:?}");
}

#[test]
fn a_store_in_use_says_so_and_only_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = EdgeStore::open(dir.path()).expect("open");
    first.apply(&ab("n", "b"), 1, &[obs("a", "ledger", Side::Client, 1, 10)]).expect("apply");
    let e = open_err(dir.path());
    let text = error_chain(&e);
    assert!(matches!(e, StoreError::Locked { .. }), "{text}");
    assert!(text.contains("another mapper-server") && text.contains("edges.redb"), "{text}");
    // The first is not disturbed.
    first.apply(&ab("n", "b"), 2, &[obs("a", "ledger", Side::Client, 1, 10)]).expect("apply");
    assert_eq!(first.edges()[0].1.client_established, 2);
}

/// A store of `n` edges, closed cleanly (`crash` false) or copied while open, as a crash leaves it.
fn image(n: usize, crash: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    for (i, chunk) in many(n, 10).chunks(500).enumerate() {
        s.apply(&ab("n", "b"), i as u64 + 1, chunk).expect("apply");
    }
    if crash {
        return std::fs::read(s.path()).expect("read");
    }
    let path = s.path().to_owned();
    drop(s);
    std::fs::read(path).expect("read")
}

/// Damages `image` at each of several offsets; every open that fails must leave the
/// file as it was and name it; returns how many failed.
fn damage_each(image: &[u8], what: &str) -> usize {
    let page = 4096;
    let pages = image.len() / page;
    let mut failed = 0;
    let mut opened = 0;
    let offsets: Vec<usize> = (0..pages).step_by((pages / 24).max(1)).map(|p| p * page + 64).collect();
    for off in &offsets {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("edges.redb");
        let mut bytes = image.to_vec();
        for b in &mut bytes[*off..(*off + 512).min(image.len())] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).expect("write");
        match EdgeStore::open(dir.path()) {
            Ok(s) => {
                opened += 1;
                drop(s);
            }
            Err(e) => {
                failed += 1;
                let text = error_chain(&e);
                assert!(text.contains(&path.display().to_string()), "{what} at {off}: the file is not named: {text}");
                assert!(!text.contains("another mapper-server"), "{what} at {off}: not a lock: {text}");
                assert!(text.contains("--move-corrupt-store") || matches!(e, StoreError::Read { .. }), "{text}");
                let after = std::fs::read(&path).expect("read");
                assert!(after == bytes, "{what} at {off}: the failed open changed the file ({text})");
                // And it fails the same way again: the failed open made nothing worse.
                let again = error_chain(&open_err(dir.path()));
                assert_eq!(again, text, "{what} at {off}: a second open fails differently");
                let s = EdgeStore::open_with(dir.path(), OpenOptions { move_corrupt: true }).expect("moved aside");
                assert!(s.is_empty(), "{what} at {off}: starts empty after moving the file aside");
            }
        }
    }
    eprintln!("{what}: {} offsets, {failed} refused, {opened} opened", offsets.len());
    failed
}

#[test]
fn a_damaged_store_is_refused_and_left_as_it_was() {
    let clean = image(3000, false);
    assert!(damage_each(&clean, "closed cleanly") > 0, "no damage was noticed: the test proves nothing");
    let crashed = image(3000, true);
    assert!(damage_each(&crashed, "crashed") > 0, "no damage was noticed: the test proves nothing");
}
