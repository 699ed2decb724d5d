//! Opening the store file without making a damaged one worse.
//!
//! redb repairs a file that was not closed cleanly (after a crash) while
//! opening it, and that repair writes the file's header. On a damaged file the
//! repair fails (or redb panics) after having written, and the next start then
//! finds every root corrupt. So the beginning of the file, where redb's header
//! lives, is saved before the open and written back, with the original
//! length, when the open or the first full read fails: a failed open leaves
//! the file as it was. Panics from redb are caught and reported as corruption.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
};

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};
use tracing::{info, warn};

use super::{
    AGENTS_V1, BOOTS, EDGES, EDGES_JSON_V1, EdgeKey, EdgeState, RecordError, StoreError, StoredKey,
    boots::{AgentBoot, BootRecord},
    edge_bytes, encode, read_edge,
    shared::Shared,
};

/// How much of the file's beginning is saved before an open (redb's header
/// and the first region's header are well inside it).
const SAVED_PREFIX: u64 = 1024 * 1024;

/// The file's beginning and length, as they were before an open.
struct Saved {
    prefix: Vec<u8>,
    len: u64,
}

impl Saved {
    fn take(path: &Path) -> std::io::Result<Option<Self>> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let mut prefix = Vec::new();
        Read::by_ref(&mut f).take(SAVED_PREFIX).read_to_end(&mut prefix)?;
        Ok(Some(Self { prefix, len }))
    }

    /// Puts the file back as it was, if it changed.
    fn restore(&self, path: &Path) -> std::io::Result<bool> {
        let mut f = OpenOptions::new().read(true).write(true).open(path)?;
        let mut now = Vec::new();
        Read::by_ref(&mut f).take(SAVED_PREFIX).read_to_end(&mut now)?;
        if now == self.prefix && f.metadata()?.len() == self.len {
            return Ok(false);
        }
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&self.prefix)?;
        f.set_len(self.len)?;
        f.sync_all()?;
        Ok(true)
    }
}

/// What an open reads: the database, every edge (none when not asked to load them).
pub(super) type Loaded = (Database, BTreeMap<StoredKey, EdgeState>);

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Opens (or creates) the file at `path` and, given where the edges share their names, ends and
/// lists, reads every edge (each shares them as it is read: no second copy of the map is made);
/// on failure the file is left as it was.
pub(super) fn open_file(path: &Path, now_ms: i64, load: Option<&mut Shared>) -> Result<Loaded, StoreError> {
    let saved = Saved::take(path).map_err(|source| StoreError::Read { path: path.into(), source })?;
    if saved.as_ref().is_some_and(|s| s.len == 0) {
        return Err(StoreError::EmptyFile { path: path.into() });
    }
    let result = catch_unwind(AssertUnwindSafe(|| open_and_load(path, now_ms, load)))
        .unwrap_or_else(|p| Err(StoreError::Panicked { path: path.into(), message: panic_text(p.as_ref()) }));
    match (&result, &saved) {
        // Another process holds the file: it is theirs to write, not ours to restore.
        (Err(StoreError::Locked { .. }) | Ok(_), _) | (_, None) => {}
        (Err(_), Some(saved)) => match saved.restore(path) {
            Ok(true) => {
                warn!(path = %path.display(), "the failed open had written to the store; its first bytes and length are restored")
            }
            Ok(false) => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot restore the store's first bytes after a failed open")
            }
        },
    }
    result
}

fn open_error(path: &Path, source: redb::DatabaseError) -> StoreError {
    match source {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: path.into() },
        // A read past the end: the header names pages the file does not have.
        redb::DatabaseError::Storage(redb::StorageError::Io(source))
            if source.kind() != std::io::ErrorKind::UnexpectedEof =>
        {
            StoreError::Read { path: path.into(), source }
        }
        source => StoreError::Damaged { path: path.into(), source: source.into() },
    }
}

fn damaged(path: &Path) -> impl Fn(redb::Error) -> StoreError + '_ {
    move |source| StoreError::Damaged { path: path.into(), source }
}

fn open_and_load(path: &Path, now_ms: i64, load: Option<&mut Shared>) -> Result<Loaded, StoreError> {
    let db = Database::builder().set_cache_size(super::CACHE_BYTES).create(path).map_err(|e| open_error(path, e))?;
    let d = damaged(path);
    let corrupt = |source| StoreError::Corrupt { path: path.into(), source };
    let txn = db.begin_write().map_err(|e| d(e.into()))?;
    let (boots_migrated, edges_migrated) = {
        let mut edges = txn.open_table(EDGES).map_err(|e| d(e.into()))?;
        let mut boots = txn.open_table(BOOTS).map_err(|e| d(e.into()))?;
        let tables: Vec<String> = txn.list_tables().map_err(|e| d(e.into()))?.map(|t| t.name().to_owned()).collect();
        let mut boots_migrated = 0usize;
        if tables.iter().any(|t| t == AGENTS_V1.name()) {
            let agents = txn.open_table(AGENTS_V1).map_err(|e| d(e.into()))?;
            for row in agents.iter().map_err(|e| d(e.into()))? {
                let (k, v) = row.map_err(|e| d(e.into()))?;
                // The old key was `node/boot_id`; a Kubernetes node name has no `/`, so the
                // first one separates the two.
                let (node, boot_id) = k.value().split_once('/').unwrap_or((k.value(), ""));
                let record = BootRecord { floor: v.value(), last_seen_ms: now_ms, ..Default::default() };
                boots.insert((node, boot_id), encode(&record).as_slice()).map_err(|e| d(e.into()))?;
                boots_migrated += 1;
            }
            drop(agents);
            txn.delete_table(AGENTS_V1).map_err(|e| d(e.into()))?;
        }
        // Edges in JSON (earlier stores) are written again in postcard. Two JSON keys may
        // read as one (an unknown kind was once spelled `""`): their states are merged.
        let mut edges_migrated = 0usize;
        if tables.iter().any(|t| t == EDGES_JSON_V1.name()) {
            let mut old: BTreeMap<EdgeKey, EdgeState> = BTreeMap::new();
            // The lists of this migration's edges (only written back, never kept).
            let mut lists = Shared::default();
            let json = txn.open_table(EDGES_JSON_V1).map_err(|e| d(e.into()))?;
            for row in json.iter().map_err(|e| d(e.into()))? {
                let (k, v) = row.map_err(|e| d(e.into()))?;
                let key: EdgeKey = serde_json::from_slice(k.value()).map_err(|e| corrupt(RecordError::Json(e)))?;
                let state: EdgeState = serde_json::from_slice(v.value()).map_err(|e| corrupt(RecordError::Json(e)))?;
                match old.entry(key) {
                    Entry::Occupied(mut known) => known.get_mut().merge(&state, &mut lists),
                    Entry::Vacant(slot) => {
                        slot.insert(state);
                    }
                }
            }
            drop(json);
            for (key, state) in &old {
                edges.insert(edge_bytes(key).as_slice(), edge_bytes(state).as_slice()).map_err(|e| d(e.into()))?;
            }
            edges_migrated = old.len();
            txn.delete_table(EDGES_JSON_V1).map_err(|e| d(e.into()))?;
        }
        (boots_migrated, edges_migrated)
    };
    txn.commit().map_err(|e| d(e.into()))?;
    if boots_migrated > 0 {
        info!(path = %path.display(), boots = boots_migrated, "agent sequences migrated to (node, boot id) keys");
    }
    if edges_migrated > 0 {
        info!(path = %path.display(), edges = edges_migrated, "edges migrated from JSON to the compact encoding");
    }
    let mut edges: BTreeMap<StoredKey, EdgeState> = BTreeMap::new();
    if let Some(shared) = load {
        let read = db.begin_read().map_err(|e| d(e.into()))?;
        let table = read.open_table(EDGES).map_err(|e| d(e.into()))?;
        for row in table.iter().map_err(|e| d(e.into()))? {
            let (k, v) = row.map_err(|e| d(e.into()))?;
            let key: EdgeKey = read_edge(k.value()).map_err(corrupt)?;
            let mut state: EdgeState = read_edge(v.value()).map_err(corrupt)?;
            state.share(shared);
            edges.insert(shared.key(&key), state);
        }
        // Every boot record is read once too, so damage there is found now rather than at a write.
        let boots = read.open_table(BOOTS).map_err(|e| d(e.into()))?;
        for row in boots.iter().map_err(|e| d(e.into()))? {
            let (_, v) = row.map_err(|e| d(e.into()))?;
            serde_json::from_slice::<BootRecord>(v.value()).map_err(|e| corrupt(RecordError::Json(e)))?;
        }
    }
    Ok((db, edges))
}

/// Renames a damaged store aside (`<file>.corrupt-<unix seconds>`); returns the new name.
pub(super) fn move_aside(path: &Path, now_ms: i64) -> Result<std::path::PathBuf, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{}", now_ms / 1000));
    let to = std::path::PathBuf::from(name);
    std::fs::rename(path, &to).map_err(|source| StoreError::MoveAside { path: path.into(), to: to.clone(), source })?;
    Ok(to)
}

/// The key a boot is stored under.
pub(super) fn boot_key(b: &AgentBoot) -> (&str, &str) {
    (b.node.as_str(), b.boot_id.as_str())
}
