//! A full file system: writes fail with ENOSPC, the store says so and is
//! unhealthy, and it takes writes again by itself once there is room.
//! Needs root (a 2 MiB tmpfs is mounted); skipped otherwise, unless
//! `MAPPER_REQUIRE_BPF=1` (CI), where a skip is a failure.

use std::process::Command;

use super::*;

fn why_not_root() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    (euid != Some("0")).then(|| format!("not root (effective uid {})", euid.unwrap_or("unknown")))
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("MAPPER_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: needs root but {reason} (MAPPER_REQUIRE_BPF=1)");
    }
    eprintln!("SKIPPED {test}: {reason} (set MAPPER_REQUIRE_BPF=1 to make this a failure)");
}

/// Fills the file system at `dir` with `filler` until it refuses more.
fn fill(filler: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(filler).expect("create the filler");
    let block = vec![0xa5u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_is_reported_and_recovered_from_without_a_restart() {
    const TEST: &str = "a_full_disk_is_reported_and_recovered_from_without_a_restart";
    if let Some(reason) = why_not_root() {
        return skip_or_fail(TEST, &reason);
    }
    let fs = match Tmpfs::mount("2m") {
        Ok(fs) => fs,
        Err(reason) => return skip_or_fail(TEST, &reason),
    };
    let data = fs.0.path().join("data");
    let filler = fs.0.path().join("filler");
    let s = EdgeStore::open(&data).expect("open");
    let b = ab("n", "b");
    let batch = |i: usize| -> Vec<Observation> {
        (0..50).map(|j| obs(&format!("c{i}-{j}-{}", "x".repeat(100)), "ledger", Side::Client, 1, 10)).collect()
    };
    s.apply(&b, 1, &batch(1)).expect("a write with room");
    assert!(s.is_healthy());
    fill(&filler);
    // Writes fail now (the file may still have a little free room inside: a few may pass).
    let mut failure = None;
    let mut seq = 2;
    for _ in 0..200 {
        match s.apply(&b, seq, &batch(seq as usize)) {
            Ok(_) => seq += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("no write failed on a full file system");
    let text = error_chain(&failure);
    eprintln!("the failed write: {text}");
    assert!(text.contains("No space left on device"), "the cause is not named: {text}");
    assert!(!s.is_healthy(), "a failed write must make the store unhealthy");
    let errors = s.write_errors();
    assert!(errors >= 1);
    let applied_before: Vec<_> = {
        let mut e = s.edges();
        e.sort_by(|a, b| a.0.cmp(&b.0));
        e
    };
    assert!(s.apply(&b, seq, &batch(seq as usize)).is_err(), "still full: still failing");
    assert!(!s.is_healthy());
    std::fs::remove_file(&filler).expect("free the space");
    assert_eq!(
        s.apply(&b, seq, &batch(seq as usize)).expect("room again: the same batch is taken without a restart"),
        Applied::New,
        "the batch that failed was never applied"
    );
    assert!(s.is_healthy(), "healthy again after a write succeeded");
    assert_eq!(s.apply(&b, seq, &batch(seq as usize)).expect("resend"), Applied::Duplicate);
    assert_eq!(s.len(), applied_before.len() + 50, "memory holds what was committed before, plus the new batch");
    let in_memory = {
        let mut e = s.edges();
        e.sort_by(|a, b| a.0.cmp(&b.0));
        e
    };
    drop(s);
    let reopened = EdgeStore::open(&data).expect("reopen");
    let mut on_disk = reopened.edges();
    on_disk.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(on_disk == in_memory, "memory and file differ after the recovery");
}
