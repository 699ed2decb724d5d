//! Giving a mostly free file's space back without holding ingest.
//!
//! redb's own `compact()` needs the database to itself (no transaction may run meanwhile), so
//! every batch would wait for the whole of it. Instead the live data is copied to a new file
//! (`edges.redb.compacting`) while batches keep landing in the old one:
//!
//! 1. From the moment the copy starts, every write notes the keys it changes (edges and agent
//!    boots) in a [`Delta`].
//! 2. Both tables are read from the old file in chunks of [`COPY_CHUNK`] rows, each under the
//!    writer lock for the time of the read only, and written to the new file without it (its
//!    commits are not fsynced: only the last one is).
//! 3. The keys changed meanwhile are copied again the same way, in rounds, until few are left.
//! 4. The copy is made durable (an fsync of most of its bytes), batches still landing.
//! 5. Under the writer lock, once: the last changed keys are copied, the new file is committed
//!    durably, renamed over `edges.redb` and its directory synced, and the store writes to it
//!    from then on. Only this step holds batches, for the last few keys and two small fsyncs.
//!
//! A key read before its last change is read again after it (it is in the delta), and one
//! removed meanwhile is removed from the copy, so the new file holds what the old one holds at
//! the switch. A crash before the rename leaves the old file as it was and a partial copy,
//! removed at the next open; after the rename the new file is complete and durable. Any write
//! that fails, a reset, or a failure of the copy abandons the compaction; the old file stays.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use redb::{Database, Durability, ReadableDatabase};
use tracing::{info, warn};

use super::{BOOTS, CACHE_BYTES, COMPACT_LIVE_FRACTION, COMPACT_MIN_FILE_BYTES, EDGES, EdgeStore, StoreError};

/// Rows read from the old file under one hold of the writer lock.
pub(super) const COPY_CHUNK: usize = 2_000;
/// Rounds of copying changed keys again before the last step copies what is left regardless.
const MAX_ROUNDS: usize = 8;

/// An edge row as stored (postcard key and state).
type EdgeRow = (Vec<u8>, Vec<u8>);
/// A boot's key, (node, boot id).
type BootKey = (String, String);
/// A boot row as stored (its JSON record).
type BootRow = (BootKey, Vec<u8>);

/// The keys written or removed since a compaction's copy started.
#[derive(Debug, Default)]
pub(super) struct Delta {
    edges: foldhash::HashSet<Vec<u8>>,
    boots: foldhash::HashSet<BootKey>,
}

impl Delta {
    fn len(&self) -> usize {
        self.edges.len() + self.boots.len()
    }
}

/// What a write tells a compaction in progress: the keys it changes (nothing is kept when no
/// compaction runs).
#[derive(Debug)]
pub(super) struct Tracker<'a>(pub(super) &'a mut Option<Delta>);

impl Tracker<'_> {
    /// An edge row written or removed, by its stored key.
    pub(super) fn edge(&mut self, key: &[u8]) {
        if let Some(d) = self.0 {
            d.edges.insert(key.to_vec());
        }
    }

    /// A boot row written or removed.
    pub(super) fn boot(&mut self, node: &str, boot_id: &str) {
        if let Some(d) = self.0 {
            d.boots.insert((node.to_owned(), boot_id.to_owned()));
        }
    }

    /// The change cannot be followed key by key (a whole table replaced): the compaction is
    /// given up.
    pub(super) fn abandon(&mut self) {
        *self.0 = None;
    }
}

/// Where the copy is made: beside the store, so that the rename replaces it atomically.
pub(super) fn compacting_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".compacting");
    PathBuf::from(name)
}

/// Removes a copy a compaction left behind (the process ended before the switch).
pub(super) fn remove_leftover(path: &Path) {
    let tmp = compacting_path(path);
    match std::fs::remove_file(&tmp) {
        Ok(()) => info!(path = %tmp.display(), "removed the partial copy of an unfinished compaction"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %tmp.display(), error = %e, "cannot remove the partial copy of an unfinished compaction")
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Rows copied while batches kept landing (the first copy and the rounds after it).
    pub rows_copied: usize,
    /// Rows copied at the switch, under the writer lock.
    pub rows_at_switch: usize,
    /// How long the switch held the writer (batches waited), in microseconds.
    pub held_us: u64,
}

/// Why a compaction stopped before the switch (the old file is still the store).
#[derive(Debug)]
pub(super) enum Stop {
    /// A write failed or a reset replaced the edges meanwhile: nothing to report.
    Abandoned,
    Failed(redb::Error),
}

macro_rules! stop_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Stop {
            fn from(e: $t) -> Self {
                Stop::Failed(e.into())
            }
        }
    )*};
}
stop_from!(
    std::io::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// A transaction on the copy: not fsynced (the last commit of the copy is).
fn copy_txn(new: &Database) -> Result<redb::WriteTransaction, Stop> {
    let mut txn = new.begin_write()?;
    txn.set_durability(Durability::None)?;
    Ok(txn)
}

fn write_edges(new: &Database, rows: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), Stop> {
    let txn = copy_txn(new)?;
    {
        let mut t = txn.open_table(EDGES)?;
        for (k, v) in rows {
            match v {
                Some(v) => t.insert(k.as_slice(), v.as_slice())?,
                None => t.remove(k.as_slice())?,
            };
        }
    }
    txn.commit()?;
    Ok(())
}

fn write_boots(new: &Database, rows: &[(BootKey, Option<Vec<u8>>)]) -> Result<(), Stop> {
    let txn = copy_txn(new)?;
    {
        let mut t = txn.open_table(BOOTS)?;
        for ((node, boot), v) in rows {
            match v {
                Some(v) => t.insert((node.as_str(), boot.as_str()), v.as_slice())?,
                None => t.remove((node.as_str(), boot.as_str()))?,
            };
        }
    }
    txn.commit()?;
    Ok(())
}

/// The next rows of EDGES after `after`, at most [`COPY_CHUNK`].
/// A read of the old file made under the writer lock.
type LockedRead<'a> = dyn FnMut(&Database) -> Result<(), Stop> + 'a;
/// Rows read from a table: key, value.
type Rows<K> = Vec<(K, Vec<u8>)>;
/// Rows to write: key, value (`None`: remove).
type Changes<K> = [(K, Option<Vec<u8>>)];

/// Copies one table to `new` in chunks of [`COPY_CHUNK`] rows, each read from the old file
/// under the writer lock (`under_lock`) and written without it, `between` running after each;
/// returns the rows copied.
fn copy_table<K: Clone, Q: ?Sized>(
    under_lock: &dyn Fn(&mut LockedRead<'_>) -> Result<(), Stop>,
    new: &Database,
    read: fn(&Database, Option<&Q>) -> Result<Rows<K>, Stop>,
    write: fn(&Database, &Changes<K>) -> Result<(), Stop>,
    borrow: fn(&K) -> &Q,
    between: &mut dyn FnMut(&EdgeStore),
    store: &EdgeStore,
) -> Result<usize, Stop> {
    let mut copied = 0usize;
    let mut after: Option<K> = None;
    loop {
        let mut rows = Vec::new();
        under_lock(&mut |db| {
            rows = read(db, after.as_ref().map(borrow))?;
            Ok(())
        })?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        let full = rows.len() == COPY_CHUNK;
        copied += rows.len();
        let rows: Vec<_> = rows.into_iter().map(|(k, v)| (k, Some(v))).collect();
        write(new, &rows)?;
        between(store);
        if !full {
            break;
        }
    }
    Ok(copied)
}

fn read_edges(db: &Database, after: Option<&[u8]>) -> Result<Vec<EdgeRow>, Stop> {
    let read = db.begin_read()?;
    let t = read.open_table(EDGES)?;
    let range = match after {
        Some(k) => t.range::<&[u8]>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))?,
        None => t.range::<&[u8]>(..)?,
    };
    let mut rows = Vec::with_capacity(COPY_CHUNK);
    for row in range.take(COPY_CHUNK) {
        let (k, v) = row?;
        rows.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(rows)
}

/// The next rows of BOOTS after `after`, at most [`COPY_CHUNK`].
fn read_boots(db: &Database, after: Option<&BootKey>) -> Result<Vec<BootRow>, Stop> {
    let read = db.begin_read()?;
    let t = read.open_table(BOOTS)?;
    let range = match after {
        Some((n, b)) => {
            t.range::<(&str, &str)>((std::ops::Bound::Excluded((n.as_str(), b.as_str())), std::ops::Bound::Unbounded))?
        }
        None => t.range::<(&str, &str)>(..)?,
    };
    let mut rows = Vec::with_capacity(COPY_CHUNK);
    for row in range.take(COPY_CHUNK) {
        let (k, v) = row?;
        let (node, boot) = k.value();
        rows.push(((node.to_owned(), boot.to_owned()), v.value().to_vec()));
    }
    Ok(rows)
}

/// The current rows (or their absence) of the given keys.
#[allow(clippy::type_complexity)]
fn read_keys(
    db: &Database,
    edges: &[Vec<u8>],
    boots: &[BootKey],
) -> Result<(Vec<(Vec<u8>, Option<Vec<u8>>)>, Vec<(BootKey, Option<Vec<u8>>)>), Stop> {
    let read = db.begin_read()?;
    let (te, tb) = (read.open_table(EDGES)?, read.open_table(BOOTS)?);
    let mut e = Vec::with_capacity(edges.len());
    for k in edges {
        e.push((k.clone(), te.get(k.as_slice())?.map(|v| v.value().to_vec())));
    }
    let mut b = Vec::with_capacity(boots.len());
    for k in boots {
        b.push((k.clone(), tb.get((k.0.as_str(), k.1.as_str()))?.map(|v| v.value().to_vec())));
    }
    Ok((e, b))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

impl EdgeStore {
    /// Compacts the file when it is larger than 8 MiB and less than a quarter of it is live
    /// data, copying the live data to a new file while batches keep landing (see the module
    /// doc); batches wait only for the switch at its end. Returns what it did, `None` when it
    /// did not compact. A failure leaves the store as it was (its file, its health).
    pub fn compact_if_sparse(&self) -> Result<Option<Compacted>, StoreError> {
        let file = self.file_bytes();
        if file < COMPACT_MIN_FILE_BYTES {
            return Ok(None);
        }
        let live = self.write(Vec::new, |db, _, _| {
            let txn = db.begin_write()?;
            let stats = txn.stats()?;
            txn.abort()?;
            Ok(stats.stored_bytes() + stats.metadata_bytes())
        })?;
        if live as f64 >= file as f64 * COMPACT_LIVE_FRACTION {
            return Ok(None);
        }
        let tmp = compacting_path(&self.path);
        let started = Instant::now();
        let outcome = self.copy_and_switch(&tmp, &mut |_| {});
        // `Ok(None)`: not started (the store is failing, or another compaction runs): nothing
        // of this call's to undo.
        if outcome.is_err() {
            self.lock_writer().compacting = None;
            let _ = std::fs::remove_file(&tmp);
        }
        match outcome {
            Ok(Some(c)) => {
                let after = self.file_bytes();
                let ms = started.elapsed().as_millis() as u64;
                info!(
                    before = file,
                    after,
                    live,
                    ms,
                    rows = c.rows_copied + c.rows_at_switch,
                    rows_at_switch = c.rows_at_switch,
                    writes_held_us = c.held_us,
                    "store compacted"
                );
                Ok(Some(c))
            }
            Ok(None) => {
                info!("compaction not started: the store is failing, or another compaction is running");
                Ok(None)
            }
            Err(Stop::Abandoned) => {
                info!("compaction given up: the store changed as a whole meanwhile; the next sweep tries again");
                Ok(None)
            }
            Err(Stop::Failed(source)) => Err(StoreError::Compact { path: tmp, source }),
        }
    }

    /// Copies the live data to `tmp` and switches to it; `None` when the store could not start
    /// a copy (a failed write pending). `between` runs after each chunk, the writer free (the
    /// tests write there).
    pub(super) fn copy_and_switch(
        &self,
        tmp: &Path,
        between: &mut dyn FnMut(&EdgeStore),
    ) -> Result<Option<Compacted>, Stop> {
        // Claimed before the copy's file is touched: a second compaction (another sweep)
        // returns here and leaves this one's file alone.
        {
            let mut w = self.lock_writer();
            if w.failed || w.db.is_none() || w.compacting.is_some() {
                return Ok(None);
            }
            w.compacting = Some(Delta::default());
        }
        match std::fs::remove_file(tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let new = Database::builder().set_cache_size(CACHE_BYTES).create(tmp)?;
        // Reads the old file under the writer lock (no batch changes it meanwhile).
        let under_lock = |read: &mut LockedRead<'_>| -> Result<(), Stop> {
            let w = self.lock_writer();
            match (&w.db, &w.compacting) {
                (Some(db), Some(_)) if !w.failed => read(db),
                _ => Err(Stop::Abandoned),
            }
        };
        let mut copied = copy_table(&under_lock, &new, read_edges, write_edges, |k| k.as_slice(), between, self)?;
        copied += copy_table(&under_lock, &new, read_boots, write_boots, |k| k, between, self)?;
        // What changed meanwhile, again, while it is more than a chunk.
        for _ in 0..MAX_ROUNDS {
            let delta = {
                let mut w = self.lock_writer();
                match &mut w.compacting {
                    Some(d) if d.len() > COPY_CHUNK => std::mem::take(d),
                    Some(_) => break,
                    None => return Err(Stop::Abandoned),
                }
            };
            let edges: Vec<Vec<u8>> = delta.edges.into_iter().collect();
            let boots: Vec<BootKey> = delta.boots.into_iter().collect();
            for chunk in edges.chunks(COPY_CHUNK) {
                let mut rows = Vec::new();
                under_lock(&mut |db| {
                    rows = read_keys(db, chunk, &[])?.0;
                    Ok(())
                })?;
                copied += rows.len();
                write_edges(&new, &rows)?;
                between(self);
            }
            for chunk in boots.chunks(COPY_CHUNK) {
                let mut rows = Vec::new();
                under_lock(&mut |db| {
                    rows = read_keys(db, &[], chunk)?.1;
                    Ok(())
                })?;
                copied += rows.len();
                write_boots(&new, &rows)?;
                between(self);
            }
        }
        // The copy is made durable before the switch, batches landing meanwhile: an empty
        // durable commit writes out every earlier one (most of the copy's bytes), so the switch
        // has only the last keys to write and sync.
        new.begin_write()?.commit()?;
        between(self);
        // The switch: batches wait from here.
        let mut guard = self.lock_writer();
        let held = Instant::now();
        let w = &mut *guard;
        let (Some(db), Some(delta), false) = (&w.db, w.compacting.take(), w.failed) else {
            return Err(Stop::Abandoned);
        };
        let edges: Vec<Vec<u8>> = delta.edges.into_iter().collect();
        let boots: Vec<BootKey> = delta.boots.into_iter().collect();
        let (edges, boots) = read_keys(db, &edges, &boots)?;
        let at_switch = edges.len() + boots.len();
        {
            // The last commit of the copy is durable, and makes every earlier one durable.
            let txn = new.begin_write()?;
            {
                let mut t = txn.open_table(EDGES)?;
                for (k, v) in &edges {
                    match v {
                        Some(v) => t.insert(k.as_slice(), v.as_slice())?,
                        None => t.remove(k.as_slice())?,
                    };
                }
                let mut t = txn.open_table(BOOTS)?;
                for ((node, boot), v) in &boots {
                    match v {
                        Some(v) => t.insert((node.as_str(), boot.as_str()), v.as_slice())?,
                        None => t.remove((node.as_str(), boot.as_str()))?,
                    };
                }
            }
            txn.commit()?;
        }
        std::fs::rename(tmp, &self.path)?;
        // From the rename on, the path names the new file: the store writes there, whatever
        // follows (writing to the old one would write to a file no open finds again).
        let old = w.db.replace(new);
        if let Err(e) = sync_dir(&self.path) {
            // The rename may not survive a crash: the store is unhealthy until a write
            // (reopening the file first) succeeds.
            w.failed = true;
            let e = StoreError::SyncDir { path: self.path.clone(), source: e };
            self.failed(&e);
        }
        let held_us = held.elapsed().as_micros() as u64;
        drop(guard);
        // Closing the old file (it writes its header) holds nothing.
        drop(old);
        Ok(Some(Compacted { rows_copied: copied, rows_at_switch: at_switch, held_us }))
    }
}
