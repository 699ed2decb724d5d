//! The spool: batches drained from the kernel, kept on the node's disk until
//! mapper-server has acknowledged them, so they outlive the agent process.
//!
//! One file per batch, `<boot id>.<sequence>.batch`, holding the batch exactly
//! as it is sent (node, boot id, sequence, flows, DNS answers) with a small
//! header (magic, length, checksum). A batch is written to a temporary name,
//! fsynced, renamed into place and the directory fsynced *before* its flows
//! are deleted from the kernel maps; its file is removed once the server has
//! acknowledged it. A restarted agent loads every file it finds and resends it
//! under its original (node, boot id, sequence), so the server's deduplication
//! keeps counts exact whichever agent sends it.
//!
//! - A temporary file is a write that never completed: its flows were never
//!   deleted from the kernel, so it is removed.
//! - A file that does not read back (bad header, checksum or content) is moved
//!   to `corrupt/` and counted, never a reason to stop.
//! - A merged batch (see [`crate::pending::Pending`]) replaces the file of its
//!   first batch and lists the batches it took in (`covers`); files it covers
//!   that a crash left behind are removed when the spool is loaded.
//! - Each batch lists fingerprints of the kernel entries it was drained from:
//!   an agent killed between writing a batch and deleting its flows from the
//!   kernel leaves them in the buffer nothing writes to, and the next agent
//!   deletes exactly those entries instead of counting them twice.
//! - A lock file (`flock`) keeps two agents from sharing one spool.

use std::{
    fs::{self, File, OpenOptions},
    hash::Hasher,
    io::{self, Write},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use mapper_proto::v1 as pb;
use prost::Message;
use tracing::{info, warn};

const MAGIC: &[u8; 8] = b"MAPSPL01";
const HEADER: usize = 24;
const SUFFIX: &str = ".batch";
const TEMP_PREFIX: &str = ".tmp.";
const CORRUPT_DIR: &str = "corrupt";
const LOCK_FILE: &str = "lock";

/// Batches of one boot id that a merged batch took in: sequences `first..=last`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Covered {
    #[prost(string, tag = "1")]
    pub boot_id: String,
    #[prost(uint64, tag = "2")]
    pub first: u64,
    #[prost(uint64, tag = "3")]
    pub last: u64,
}

/// One spooled batch, as its file holds it (prost-encoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// The batch exactly as it is sent: node, boot id, sequence, flows, DNS answers.
    #[prost(message, optional, tag = "1")]
    pub report: Option<pb::ReportRequest>,
    /// When the batch was first written (Unix ms): the order of boots on reload.
    #[prost(int64, tag = "2")]
    pub created_ms: i64,
    /// Fingerprints of the kernel entries the newest drain in this batch read.
    #[prost(fixed64, repeated, tag = "3")]
    pub kernel: Vec<u64>,
    /// Other batches merged into this one.
    #[prost(message, repeated, tag = "4")]
    pub covers: Vec<Covered>,
}

impl Record {
    /// Whether this record took in batch (`boot_id`, `sequence`).
    pub fn covers(&self, boot_id: &str, sequence: u64) -> bool {
        self.covers.iter().any(|c| c.boot_id == boot_id && (c.first..=c.last).contains(&sequence))
    }
}

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create the spool directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool {path} is locked by another mapper-agent (lock file says: {holder}); waited {waited:?}")]
    Locked { path: PathBuf, holder: String, waited: Duration },
    #[error("cannot write spool file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the spool directory {path}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read spool file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool file {path} is unreadable")]
    Bad {
        path: PathBuf,
        #[source]
        problem: BadFile,
    },
    #[error("batch has a boot id {boot_id:?} that cannot name a file")]
    BadBootId { boot_id: String },
}

/// Why one spool file was set aside.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadFile {
    #[error("shorter than its header")]
    Short,
    #[error("not a spool file (bad magic)")]
    Magic,
    #[error("header says {expected} bytes of content, file has {found}")]
    Length { expected: u64, found: u64 },
    #[error("checksum mismatch")]
    Checksum,
    #[error("content does not decode: {0}")]
    Decode(String),
    #[error("content is not a batch: {0}")]
    Content(&'static str),
    #[error("file name does not match its batch {expected}")]
    Name { expected: String },
}

/// A batch read back from the spool.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub record: Record,
    pub bytes: u64,
}

/// What loading the spool found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Batches to resend, in the order to send them.
    pub batches: Vec<Loaded>,
    /// Files moved to `corrupt/`.
    pub corrupt: u64,
    /// Unfinished writes removed (their flows had stayed in the kernel).
    pub partial: u64,
    /// Files removed because a merged batch already holds them.
    pub superseded: u64,
}

/// A record's checksum: 64-bit FNV-1a of its bytes, stable across versions (the spool
/// outlives the agent that wrote it).
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

fn valid_boot_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The file name of batch (`boot_id`, `sequence`).
pub fn file_name(boot_id: &str, sequence: u64) -> String {
    format!("{boot_id}.{sequence:020}{SUFFIX}")
}

/// Encodes a record with its header.
pub fn encode(record: &Record) -> Vec<u8> {
    let len = record.encoded_len();
    let mut out = Vec::with_capacity(HEADER + len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    // Encoding into a Vec with room reserved cannot fail.
    let _ = record.encode(&mut out);
    let sum = checksum(&out[HEADER..]);
    out[16..HEADER].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Decodes and checks a file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Record, BadFile> {
    if bytes.len() < HEADER {
        return Err(BadFile::Short);
    }
    if &bytes[..8] != MAGIC {
        return Err(BadFile::Magic);
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let (len, sum) = (word(8), word(16));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(BadFile::Length { expected: len, found: payload.len() as u64 });
    }
    if checksum(payload) != sum {
        return Err(BadFile::Checksum);
    }
    let record = Record::decode(payload).map_err(|e| BadFile::Decode(e.to_string()))?;
    let Some(report) = &record.report else { return Err(BadFile::Content("no batch")) };
    if report.node.is_empty() {
        return Err(BadFile::Content("no node name"));
    }
    if !valid_boot_id(&report.boot_id) {
        return Err(BadFile::Content("no usable boot id"));
    }
    if report.sequence == 0 {
        return Err(BadFile::Content("sequence 0"));
    }
    Ok(record)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Per boot id, the sequence ranges merged batches took in, and which batch took them.
type Covering = std::collections::HashMap<String, Vec<(u64, u64, (String, u64))>>;

/// An open, locked spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    _lock: File,
}

impl Spool {
    /// Opens (creating) `dir`, takes its lock (waiting up to `lock_wait` for an
    /// agent still shutting down), and loads every batch it holds.
    pub fn open(dir: &Path, lock_wait: Duration) -> Result<(Self, LoadReport), SpoolError> {
        fs::create_dir_all(dir).map_err(|source| SpoolError::Create { path: dir.into(), source })?;
        let lock_path = dir.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| SpoolError::Create { path: lock_path.clone(), source })?;
        let start = Instant::now();
        loop {
            // SAFETY: flock(2) on a file descriptor this function owns.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            if start.elapsed() >= lock_wait {
                let holder = fs::read_to_string(&lock_path).unwrap_or_default().trim().to_string();
                return Err(SpoolError::Locked { path: dir.into(), holder, waited: start.elapsed() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Who holds it, for the message another agent would print.
        let _ = lock.set_len(0).and_then(|()| writeln!(lock, "pid {}", std::process::id()));
        let spool = Self { dir: dir.into(), _lock: lock };
        let report = spool.load()?;
        Ok((spool, report))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn set_aside(&self, path: &Path, why: &BadFile) {
        let corrupt = self.dir.join(CORRUPT_DIR);
        let to = corrupt.join(path.file_name().unwrap_or_default());
        let moved = fs::create_dir_all(&corrupt).and_then(|()| fs::rename(path, &to));
        match moved {
            Ok(()) => {
                warn!(file = %path.display(), moved_to = %to.display(), error = %why, "spool file unreadable: moved aside, its flows are not resent")
            }
            Err(e) => {
                warn!(file = %path.display(), error = %why, move_error = %e, "spool file unreadable and cannot be moved aside: ignored")
            }
        }
    }

    fn load(&self) -> Result<LoadReport, SpoolError> {
        let mut report = LoadReport::default();
        let entries = fs::read_dir(&self.dir).map_err(|source| SpoolError::List { path: self.dir.clone(), source })?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            if name.starts_with(TEMP_PREFIX) {
                report.partial += 1;
                warn!(file = %path.display(), "unfinished spool write (the agent stopped while writing it): removed; its flows stayed in the kernel");
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(SUFFIX) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let checked = fs::read(&path).map_err(|e| BadFile::Decode(e.to_string())).and_then(|b| {
                let record = decode(&b)?;
                let r = record.report.as_ref().map_or((String::new(), 0), |r| (r.boot_id.clone(), r.sequence));
                let expected = file_name(&r.0, r.1);
                if expected != name {
                    return Err(BadFile::Name { expected });
                }
                Ok(Loaded { record, bytes: b.len() as u64 })
            });
            match checked {
                Ok(l) => found.push(l),
                Err(why) => {
                    report.corrupt += 1;
                    self.set_aside(&path, &why);
                }
            }
        }
        // Files a merged batch took in (a crash between the merge and their removal).
        let mut covers: Covering = std::collections::HashMap::new();
        for l in &found {
            for c in &l.record.covers {
                covers.entry(c.boot_id.clone()).or_default().push((c.first, c.last, id(&l.record)));
            }
        }
        let mut keep = found;
        keep.retain(|l| {
            let (boot, seq) = id(&l.record);
            let covered = covers
                .get(&boot)
                .is_some_and(|r| r.iter().any(|(a, b, by)| (*a..=*b).contains(&seq) && (by.0 != boot || by.1 != seq)));
            if covered {
                report.superseded += 1;
                self.remove(&boot, seq);
            }
            !covered
        });
        // Send order: boots by their first batch's time, each boot's batches by sequence.
        let mut first_seen: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for l in &keep {
            let (boot, _) = id(&l.record);
            let t = first_seen.entry(boot).or_insert(i64::MAX);
            *t = (*t).min(l.record.created_ms);
        }
        let mut keyed: Vec<(i64, String, u64, Loaded)> = keep
            .into_iter()
            .map(|l| {
                let (boot, seq) = id(&l.record);
                (first_seen.get(&boot).copied().unwrap_or(0), boot, seq, l)
            })
            .collect();
        keyed.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        report.batches = keyed.into_iter().map(|(_, _, _, l)| l).collect();
        if !report.batches.is_empty() || report.corrupt > 0 || report.partial > 0 {
            info!(
                dir = %self.dir.display(),
                batches = report.batches.len(),
                flows = report.batches.iter().map(|l| l.record.report.as_ref().map_or(0, |r| r.flows.len())).sum::<usize>(),
                corrupt = report.corrupt,
                partial = report.partial,
                superseded = report.superseded,
                "spool loaded: resending what a previous agent left"
            );
        }
        Ok(report)
    }

    /// Writes a record durably: temporary file, fsync, rename, fsync of the
    /// directory. Returns the bytes written. A record with the same identity
    /// is replaced atomically.
    pub fn write(&self, record: &Record) -> Result<u64, SpoolError> {
        let (boot, seq) = id(record);
        if !valid_boot_id(&boot) {
            return Err(SpoolError::BadBootId { boot_id: boot });
        }
        let name = file_name(&boot, seq);
        let path = self.dir.join(&name);
        let temp = self.dir.join(format!("{TEMP_PREFIX}{name}"));
        let bytes = encode(record);
        let werr = |p: &Path| {
            let p = p.to_path_buf();
            move |source| SpoolError::Write { path: p, source }
        };
        let written = (|| {
            let mut f = File::create(&temp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(werr(&temp)(e));
        }
        if let Err(e) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(werr(&path)(e));
        }
        // Renamed, the batch is in the spool for every later reader; were this
        // fsync to fail, only a power cut could still lose it — and with it the
        // node's kernel maps, which are gone in a power cut anyway. Reporting an
        // error here would have the caller keep the flows in the kernel too, and
        // count them twice.
        if let Err(e) = sync_dir(&self.dir) {
            warn!(dir = %self.dir.display(), error = %e, "cannot fsync the spool directory; the batch is written but may not survive a power cut");
        }
        Ok(bytes.len() as u64)
    }

    /// Reads batch (`boot_id`, `sequence`) back.
    pub fn read(&self, boot_id: &str, sequence: u64) -> Result<Loaded, SpoolError> {
        let path = self.dir.join(file_name(boot_id, sequence));
        let bytes = fs::read(&path).map_err(|source| SpoolError::Read { path: path.clone(), source })?;
        let record = decode(&bytes).map_err(|problem| SpoolError::Bad { path, problem })?;
        Ok(Loaded { record, bytes: bytes.len() as u64 })
    }

    /// Removes batch (`boot_id`, `sequence`): acknowledged, or merged into
    /// another. Needs no fsync: a removal lost in a power cut means a resend,
    /// which the server recognises, or a batch another one covers.
    pub fn remove(&self, boot_id: &str, sequence: u64) {
        let path = self.dir.join(file_name(boot_id, sequence));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(file = %path.display(), error = %e, "cannot remove an acknowledged spool file; it will be resent and recognised as a duplicate")
            }
        }
    }
}

/// (boot id, sequence) of a record.
pub fn id(r: &Record) -> (String, u64) {
    r.report.as_ref().map_or((String::new(), 0), |r| (r.boot_id.clone(), r.sequence))
}

#[cfg(test)]
mod tests;
