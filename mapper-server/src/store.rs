//! The edge store: one edge per (client, server) with ports, counts per
//! observing side and first/last seen, in memory (an ordered map under a
//! read-write lock, for queries) and in redb on disk (for restarts).
//!
//! A batch is applied in one redb write transaction that also records, under
//! the batch's (node, boot id), that its sequence was applied (see [`boots`]);
//! the transaction commits (fsync) before the caller acknowledges. A resent
//! batch finds its sequence recorded and changes nothing. Batches are applied
//! one at a time (a mutex), so the in-memory map is updated in commit order.
//!
//! A failed write (a full disk…) marks the store unhealthy and its cause is
//! logged; redb refuses every later transaction of a database whose write
//! failed, so the next write reopens the file first, and the store is healthy
//! again once a write succeeds. Retention removes edges in chunks, releasing
//! the writer between them, and compacts the file when most of it is free,
//! copying it while batches keep landing (see [`compact`]).

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use mapper_cluster::Peer;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

mod batch;
pub mod boots;
mod compact;
mod open;
mod shared;

pub use batch::Observations;
pub(crate) use batch::{Builder, Item};
pub use boots::AgentBoot;
use boots::BootRecord;
pub use compact::Compacted;
use shared::Shared;
pub use shared::StoredKey;

/// redb's page cache: the in-memory map answers every read, so the cache only serves writes
/// (the B-tree pages a batch touches). redb's default (1 GiB) would grow with the store.
const CACHE_BYTES: usize = 32 << 20;

/// [`EdgeKey`] → [`EdgeState`], both in postcard (see [`edge_bytes`]).
const EDGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("edges.2");
/// Earlier stores: the same records in JSON; migrated to [`EDGES`] on open.
const EDGES_JSON_V1: TableDefinition<&[u8], &[u8]> = TableDefinition::new("edges");
/// (node, boot id) → [`BootRecord`] (JSON).
const BOOTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("boots");
/// Earlier stores: `node/boot_id` → highest sequence; migrated to [`BOOTS`] on open.
const AGENTS_V1: TableDefinition<&str, u64> = TableDefinition::new("agents");

/// Most edges one retention transaction removes (the writer is released between chunks).
pub const EXPIRE_CHUNK: usize = 5_000;
/// The file is compacted after a sweep when it is larger than this…
const COMPACT_MIN_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// …and its live data is less than this fraction of it.
const COMPACT_LIVE_FRACTION: f64 = 0.25;

/// The DNS names an edge keeps at most; names met after that are not kept (the edge's
/// addresses and counts still are).
pub const MAX_DNS_NAMES_PER_EDGE: usize = crate::dns::MAX_NAMES_PER_ADDRESS;

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Which agent saw a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client's agent (connect, UDP send).
    Client,
    /// The server's agent (accept).
    Server,
}

/// An edge's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EdgeKey {
    pub client: Peer,
    pub server: Peer,
}

/// The ports of an edge, sorted and distinct (one list shared by every edge with those ports).
pub type Ports = Arc<[(u16, Proto)]>;

/// A Service as (namespace, name), the names shared with every other edge that names it.
pub type ServiceName = (Arc<str>, Arc<str>);

/// What is known of an edge. Each side's agent counts the same connections,
/// so the sides are kept apart and the edge's count is the larger of the two.
///
/// The lists are sorted slices rather than sets (an edge has a port or two and dials one
/// Service), each list and each name shared by every edge in the store that holds the same
/// (see [`shared`]); a list changes by being replaced. On disk each list is a sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeState {
    /// (port, protocol), sorted, distinct.
    pub ports: Ports,
    pub client_established: u64,
    pub client_failed: u64,
    pub server_established: u64,
    pub server_failed: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// DNS names clients resolved to the server's address (external servers): sorted,
    /// distinct, at most [`MAX_DNS_NAMES_PER_EDGE`].
    #[serde(default)]
    pub dns_names: Arc<[Arc<str>]>,
    /// Services (namespace, name) whose ClusterIP clients dialled to reach the server: sorted,
    /// distinct.
    #[serde(default)]
    pub via_services: Arc<[ServiceName]>,
}

impl EdgeState {
    /// Connections established, as the better-placed side counted them.
    pub fn established(&self) -> u64 {
        self.client_established.max(self.server_established)
    }

    /// Connection attempts that failed (only the client sees most of these).
    pub fn failed(&self) -> u64 {
        self.client_failed.max(self.server_failed)
    }

    pub fn seen_by_client(&self) -> bool {
        self.client_established + self.client_failed > 0
    }

    pub fn seen_by_server(&self) -> bool {
        self.server_established + self.server_failed > 0
    }

    /// The DNS names, sorted.
    pub fn dns_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.dns_names.iter().map(|n| &**n)
    }

    /// The Services dialled, as (namespace, name), sorted.
    pub fn via_services(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.via_services.iter().map(|(ns, name)| (&**ns, &**name))
    }

    /// Adds one observation, which dialled `via_service`; lists and names are taken from (and
    /// added to) `shared`.
    fn add(&mut self, obs: &Item, via_service: Option<&ServiceName>, shared: &mut Shared) {
        match obs.side {
            Side::Client => {
                // Saturating: one hostile or broken report must not wrap an edge's count.
                self.client_established = self.client_established.saturating_add(obs.established);
                self.client_failed = self.client_failed.saturating_add(obs.failed);
            }
            Side::Server => {
                self.server_established = self.server_established.saturating_add(obs.established);
                self.server_failed = self.server_failed.saturating_add(obs.failed);
            }
        }
        if let Err(at) = self.ports.binary_search(&(obs.port, obs.proto)) {
            let mut ports = self.ports.to_vec();
            ports.insert(at, (obs.port, obs.proto));
            self.ports = shared.ports(&ports);
        }
        if self.first_seen_ms == 0 || obs.first_seen_ms < self.first_seen_ms {
            self.first_seen_ms = obs.first_seen_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(obs.last_seen_ms);
        let mut names: Option<Vec<Arc<str>>> = None;
        for name in &obs.dns_names {
            let known = names.as_deref().unwrap_or(&self.dns_names);
            if known.len() >= MAX_DNS_NAMES_PER_EDGE {
                break;
            }
            if let Err(at) = known.binary_search_by(|n| (**n).cmp(name.as_str())) {
                names.get_or_insert_with(|| self.dns_names.to_vec()).insert(at, name.as_str().into());
            }
        }
        if let Some(names) = names {
            self.dns_names = shared.dns_names(&names);
        }
        if let Some((namespace, name)) = via_service {
            let found = self.via_services.binary_search_by(|(ns, n)| (&**ns, &**n).cmp(&(&**namespace, &**name)));
            if let Err(at) = found {
                let mut services = self.via_services.to_vec();
                services.insert(at, (namespace.clone(), name.clone()));
                self.via_services = shared.services(&services);
            }
        }
    }

    /// Shares this state's lists and names with every other edge's (after a read from disk).
    fn share(&mut self, shared: &mut Shared) {
        self.ports = shared.ports(&self.ports);
        self.dns_names = shared.dns_names(&self.dns_names);
        self.via_services = shared.services(&self.via_services);
    }
}

impl EdgeState {
    /// Adds what another edge of the store knows to this one: counts per side, ports, times
    /// and names.
    fn merge(&mut self, other: &EdgeState, shared: &mut Shared) {
        self.client_established = self.client_established.saturating_add(other.client_established);
        self.client_failed = self.client_failed.saturating_add(other.client_failed);
        self.server_established = self.server_established.saturating_add(other.server_established);
        self.server_failed = self.server_failed.saturating_add(other.server_failed);
        if self.first_seen_ms == 0 || (other.first_seen_ms != 0 && other.first_seen_ms < self.first_seen_ms) {
            self.first_seen_ms = other.first_seen_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        let mut ports = self.ports.to_vec();
        ports.extend(other.ports.iter().copied());
        ports.sort_unstable();
        ports.dedup();
        self.ports = shared.ports(&ports);
        // This edge's names are kept; the other's are added while there is room.
        let mut names = self.dns_names.to_vec();
        for name in other.dns_names.iter() {
            if names.len() >= MAX_DNS_NAMES_PER_EDGE {
                break;
            }
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names.sort_unstable();
        self.dns_names = shared.dns_names(&names);
        let mut services = self.via_services.to_vec();
        services.extend(other.via_services.iter().cloned());
        services.sort_unstable();
        services.dedup();
        self.via_services = shared.services(&services);
    }
}

/// One resolved flow, ready to be added to an edge.
#[derive(Debug, Clone)]
pub struct Observation {
    pub key: EdgeKey,
    pub side: Side,
    pub port: u16,
    pub proto: Proto,
    pub established: u64,
    pub failed: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub dns_names: Vec<String>,
    /// The Service (namespace, name) whose ClusterIP the client dialled, if it dialled one.
    /// (Names shared with the cluster state: a flow copies no text.)
    pub via_service: Option<(Arc<str>, Arc<str>)>,
}

impl Observation {
    /// `n` TCP connections to `port` of `key`'s server, seen once at `at`, by `side`'s agent,
    /// with no DNS names and no Service dialled (the tests' and benchmarks' observation).
    pub fn tcp(key: EdgeKey, side: Side, port: u16, n: u64, at: i64) -> Self {
        Observation {
            key,
            side,
            port,
            proto: Proto::Tcp,
            established: n,
            failed: 0,
            first_seen_ms: at,
            last_seen_ms: at,
            dns_names: Vec::new(),
            via_service: None,
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store {path} is in use by another process (another mapper-server using the same data directory?)")]
    Locked { path: PathBuf },
    #[error("cannot read the store {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the store {path} is an empty file (0 bytes), not a store: remove it, or start with --move-corrupt-store to \
         move it aside and start with an empty map"
    )]
    EmptyFile { path: PathBuf },
    #[error(
        "the store {path} is damaged; it was left as it was. Start with --move-corrupt-store to move it aside \
         (keeping it for inspection) and start with an empty map"
    )]
    Damaged {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error(
        "the store {path} is damaged (reading it crashed the storage library: {message}); it was left as it was. \
         Start with --move-corrupt-store to move it aside and start with an empty map"
    )]
    Panicked { path: PathBuf, message: String },
    #[error(
        "a record in the store {path} cannot be read; start with --move-corrupt-store to move the store aside and \
         start with an empty map"
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: RecordError,
    },
    #[error("cannot move the damaged store {path} aside to {to}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reopen the store {path} after a failed write")]
    Reopen {
        path: PathBuf,
        #[source]
        source: Box<StoreError>,
    },
    #[error("the store {path} is not open (an earlier reopen failed)")]
    NotOpen { path: PathBuf },
    #[error("store transaction failed")]
    Transaction(#[from] redb::TransactionError),
    #[error("store table failed")]
    Table(#[from] redb::TableError),
    #[error("store read or write failed")]
    Storage(#[from] redb::StorageError),
    #[error("store commit failed")]
    Commit(#[from] redb::CommitError),
    #[error("cannot compact the store into {path} (the store itself is as it was)")]
    Compact {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("cannot sync the directory of {path} after replacing it with its compacted copy")]
    SyncDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a stored agent boot record cannot be read")]
    BootRecord(#[source] serde_json::Error),
}

/// An error and its sources in one line (the one joiner of the workspace).
pub use mapper_cluster::error_chain;

/// One agent batch, resolved, as the store applies it.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The sender's boot.
    pub agent: &'a AgentBoot,
    pub sequence: u64,
    pub observations: &'a Observations,
}

/// Whether a batch was applied or had been already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    Duplicate,
}

/// How the store is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// A damaged or empty store file is renamed aside (`edges.redb.corrupt-<unix seconds>`) and
    /// an empty store started, instead of refusing to start.
    pub move_corrupt: bool,
}

/// The writer's side: the database (absent after a failed reopen) and the
/// edges whose in-memory copy may differ from the file after a failed write.
#[derive(Debug)]
struct Writer {
    db: Option<Database>,
    /// A write failed: reopen before the next one.
    failed: bool,
    /// Keys a failed transaction was changing; read again from the file after the reopen.
    unsure: Vec<EdgeKey>,
    /// The names, ends and lists the edges share.
    shared: Shared,
    /// While a compaction copies the file: the keys written since it started.
    compacting: Option<compact::Delta>,
}

/// The edge store.
#[derive(Debug)]
pub struct EdgeStore {
    edges: RwLock<BTreeMap<StoredKey, EdgeState>>,
    /// How many edges the map holds, as of its last change: read without the map's lock (an
    /// async caller asking must not wait behind the writer, itself behind a long query).
    count: AtomicUsize,
    writer: Mutex<Writer>,
    path: PathBuf,
    healthy: AtomicBool,
    write_errors: AtomicU64,
}

/// A boot record (JSON: few and small).
fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// An edge's key or state as stored: postcard, serde's compact binary format (varints, no
/// field names), under half the bytes of the JSON the store wrote before (a test checks).
fn edge_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    // Every sequence here has a length and every type a serde form: this cannot fail.
    postcard::to_allocvec(v).unwrap_or_default()
}

/// [`edge_bytes`] into `buf` (cleared first), reusing its allocation.
fn edge_bytes_into<T: Serialize>(v: &T, buf: &mut Vec<u8>) {
    buf.clear();
    // As in `edge_bytes`, this cannot fail; were it to, the row would be empty, as there.
    if let Ok(bytes) = postcard::to_extend(v, std::mem::take(buf)) {
        *buf = bytes;
    }
}

/// An edge's key or state as stored.
fn read_edge<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, RecordError> {
    postcard::from_bytes(bytes).map_err(RecordError::Binary)
}

/// Why a stored record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// An edge record (postcard).
    #[error(transparent)]
    Binary(postcard::Error),
    /// A boot record, or an edge record of an earlier store (JSON).
    #[error(transparent)]
    Json(serde_json::Error),
}

/// The map, for changing: its edge count is updated when the change is done.
struct MapWriter<'a> {
    map: RwLockWriteGuard<'a, BTreeMap<StoredKey, EdgeState>>,
    count: &'a AtomicUsize,
}

impl std::ops::Deref for MapWriter<'_> {
    type Target = BTreeMap<StoredKey, EdgeState>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for MapWriter<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Drop for MapWriter<'_> {
    fn drop(&mut self) {
        self.count.store(self.map.len(), Ordering::Relaxed);
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl EdgeStore {
    /// Opens (or creates) `<data_dir>/edges.redb` and loads every edge.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, OpenOptions::default())
    }

    /// Opens (or creates) `<data_dir>/edges.redb` and loads every edge. A failed open leaves
    /// the file as it was; with `move_corrupt`, a damaged one is moved aside instead.
    pub fn open_with(data_dir: &Path, opts: OpenOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir { path: data_dir.into(), source })?;
        let path = data_dir.join("edges.redb");
        compact::remove_leftover(&path);
        let mut shared = Shared::default();
        let (db, edges) = match open::open_file(&path, wall_ms(), Some(&mut shared)) {
            Ok(l) => l,
            Err(
                e @ (StoreError::Damaged { .. }
                | StoreError::Panicked { .. }
                | StoreError::Corrupt { .. }
                | StoreError::EmptyFile { .. }),
            ) if opts.move_corrupt => {
                let to = open::move_aside(&path, wall_ms())?;
                error!(
                    path = %path.display(),
                    moved_to = %to.display(),
                    error = %error_chain(&e),
                    "THE STORE WAS DAMAGED: moved aside, starting with an EMPTY map (--move-corrupt-store)"
                );
                open::open_file(&path, wall_ms(), Some(&mut shared))?
            }
            Err(e) => return Err(e),
        };
        let count = AtomicUsize::new(edges.len());
        let edges = RwLock::new(edges);
        Ok(Self {
            edges,
            count,
            writer: Mutex::new(Writer { db: Some(db), failed: false, unsure: Vec::new(), shared, compacting: None }),
            path,
            healthy: AtomicBool::new(true),
            write_errors: AtomicU64::new(0),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False from a failed write until a write succeeds again.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Writes (transactions, reopens) that failed since the start.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Runs one write under the writer lock: reopens the database first if an
    /// earlier write failed, and records a failure of this one. `touches` are
    /// the edges the write changes in memory once it has committed.
    fn write<T>(
        &self,
        touches: impl FnOnce() -> Vec<EdgeKey>,
        f: impl FnOnce(&mut Database, &mut Shared, &mut compact::Tracker<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut w = self.lock_writer();
        if let Err(e) = self.recover(&mut w) {
            w.compacting = None;
            self.failed(&e);
            return Err(e);
        }
        let Writer { db, shared, compacting, .. } = &mut *w;
        let Some(db) = db.as_mut() else {
            return Err(StoreError::NotOpen { path: self.path.clone() });
        };
        match f(db, shared, &mut compact::Tracker(compacting)) {
            Ok(v) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    info!(path = %self.path.display(), "the store accepts writes again");
                }
                Ok(v)
            }
            Err(e) => {
                w.failed = true;
                // The file is reopened before the next write: a compaction's copy is given up.
                w.compacting = None;
                w.unsure.extend(touches());
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// The writer (a panicked holder left it consistent: the map only takes committed edges).
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self, e: &StoreError) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        self.healthy.store(false, Ordering::Relaxed);
        error!(path = %self.path.display(), error = %error_chain(e), "a store write failed: not ready until a write succeeds");
    }

    /// After a failed write: drop the database (redb fails every later
    /// transaction of it), open the file again (redb repairs it), and read the
    /// edges the failed transaction was changing back from the file, so memory
    /// holds what was committed.
    fn recover(&self, w: &mut MutexGuard<'_, Writer>) -> Result<(), StoreError> {
        if !w.failed {
            return Ok(());
        }
        w.db = None;
        let (db, _) =
            reopen(&self.path).map_err(|e| StoreError::Reopen { path: self.path.clone(), source: Box::new(e) })?;
        {
            let read = redb::ReadableDatabase::begin_read(&db)?;
            let table = read.open_table(EDGES)?;
            for key in std::mem::take(&mut w.unsure) {
                match table.get(edge_bytes(&key).as_slice())? {
                    Some(v) => {
                        let mut state: EdgeState = read_edge(v.value())
                            .map_err(|source| StoreError::Corrupt { path: self.path.clone(), source })?;
                        state.share(&mut w.shared);
                        let key = w.shared.key(&key);
                        self.write_map().insert(key, state);
                    }
                    None => {
                        self.write_map().remove(&StoredKey::probe(&key));
                    }
                }
            }
        }
        warn!(path = %self.path.display(), "store reopened after a failed write");
        w.db = Some(db);
        w.failed = false;
        Ok(())
    }

    /// Applies a batch durably, unless (agent, sequence) was applied already.
    pub fn apply(&self, agent: &AgentBoot, sequence: u64, observations: &[Observation]) -> Result<Applied, StoreError> {
        let observations = Observations::new(observations.to_vec());
        let batch = Batch { agent, sequence, observations: &observations };
        Ok(self.apply_group(std::slice::from_ref(&batch))?.pop().unwrap_or(Applied::Duplicate))
    }

    /// Applies several batches in one transaction (one fsync for all: group
    /// commit), each unless its (agent, sequence) was applied already — also
    /// earlier in the same group. Either every batch is durable or none is.
    pub fn apply_group(&self, batches: &[Batch<'_>]) -> Result<Vec<Applied>, StoreError> {
        let now = wall_ms();
        let touched = || batches.iter().flat_map(|b| b.observations.keys()).collect();
        self.write(touched, |db, shared, tracker| {
            let txn = db.begin_write()?;
            let mut results = Vec::with_capacity(batches.len());
            // Each edge the group changes, by the addresses of its two shared ends (one copy of
            // each distinct end: equal addresses, equal ends): its key in the map and its new
            // state. Sized for the group at once: it is never rehashed while it fills.
            let mut merged: foldhash::HashMap<(usize, usize), (StoredKey, EdgeState)> = foldhash::HashMap::default();
            merged.reserve(batches.iter().map(|b| b.observations.len()).sum());
            {
                let mut table = txn.open_table(BOOTS)?;
                let mut records: HashMap<&AgentBoot, BootRecord> = HashMap::new();
                // One read lock for the group's lookups (only this thread changes the map).
                let known = self.read();
                for b in batches {
                    let record = match records.entry(b.agent) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            let stored = match table.get(open::boot_key(b.agent))? {
                                Some(r) => serde_json::from_slice(r.value()).map_err(StoreError::BootRecord)?,
                                None => BootRecord::default(),
                            };
                            v.insert(stored)
                        }
                    };
                    record.last_seen_ms = now;
                    if record.applied(b.sequence) {
                        results.push(Applied::Duplicate);
                        continue;
                    }
                    record.record(b.sequence);
                    // The batch's ends, each once (a few dozen for a few hundred flows). The
                    // keys made from them hold them until the group is done, so no address in
                    // `merged` is reused meanwhile.
                    let ends: Vec<Arc<Peer>> = b.observations.ends.iter().map(|p| shared.peer(p)).collect();
                    for obs in &b.observations.items {
                        let (client, server) = (&ends[obs.client as usize], &ends[obs.server as usize]);
                        let ends_at = (Arc::as_ptr(client) as usize, Arc::as_ptr(server) as usize);
                        let (_, state) = merged.entry(ends_at).or_insert_with(|| {
                            let key = StoredKey { client: client.clone(), server: server.clone() };
                            let state = known.get(&key).cloned().unwrap_or_default();
                            (key, state)
                        });
                        state.add(obs, b.observations.via(obs), shared);
                    }
                    results.push(Applied::New);
                }
                drop(known);
                if results.iter().all(|r| *r == Applied::Duplicate) {
                    // Nothing to make durable (the boots' last-seen times are not worth an fsync).
                    drop(table);
                    txn.abort()?;
                    return Ok(results);
                }
                for (agent, record) in &records {
                    table.insert(open::boot_key(agent), encode(record).as_slice())?;
                    tracker.boot(&agent.node, &agent.boot_id);
                }
                let mut edges = txn.open_table(EDGES)?;
                // Two buffers for every row: no allocation per edge.
                let (mut key_bytes, mut state_bytes) = (Vec::with_capacity(256), Vec::with_capacity(256));
                for (key, state) in merged.values() {
                    edge_bytes_into(key, &mut key_bytes);
                    edge_bytes_into(state, &mut state_bytes);
                    edges.insert(key_bytes.as_slice(), state_bytes.as_slice())?;
                    tracker.edge(&key_bytes);
                }
            }
            txn.commit()?;
            let mut map = self.write_map();
            for (key, state) in merged.into_values() {
                map.insert(key, state);
            }
            Ok(results)
        })
    }

    /// Every edge (a copy).
    pub fn edges(&self) -> Vec<(EdgeKey, EdgeState)> {
        self.edges_where(|_, _| true)
    }

    /// Copies of the edges `keep` accepts (the others are not copied).
    pub fn edges_where(&self, keep: impl Fn(&StoredKey, &EdgeState) -> bool) -> Vec<(EdgeKey, EdgeState)> {
        self.read().iter().filter(|(k, s)| keep(k, s)).map(|(k, s)| (k.to_key(), s.clone())).collect()
    }

    /// The map, for reading (a panicked writer left it consistent: it only inserts committed
    /// edges).
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<StoredKey, EdgeState>> {
        self.edges.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> MapWriter<'_> {
        MapWriter { map: self.edges.write().unwrap_or_else(|p| p.into_inner()), count: &self.count }
    }

    /// One page of a scan in key order: visits at most `max` edges after `after` (from the
    /// first when `None`) under one read lock, stopping early when `visit` returns false.
    /// Returns the last key visited, to pass as `after` for the next page; `None` when no edge
    /// was left.
    pub fn scan(
        &self,
        after: Option<&StoredKey>,
        max: usize,
        mut visit: impl FnMut(&StoredKey, &EdgeState) -> bool,
    ) -> Option<StoredKey> {
        let map = self.read();
        let range = match after {
            Some(k) => map.range::<StoredKey, _>((Bound::Excluded(k), Bound::Unbounded)),
            None => map.range::<StoredKey, _>(..),
        };
        let mut last = None;
        for (k, s) in range.take(max.max(1)) {
            last = Some(k);
            if !visit(k, s) {
                break;
            }
        }
        last.cloned()
    }

    /// Number of edges (without taking the map's lock).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether there is no edge.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every edge (agents' sequences are kept: resends still dedupe).
    pub fn reset(&self) -> Result<usize, StoreError> {
        let all = || self.read().keys().map(StoredKey::to_key).collect();
        self.write(all, |db, shared, tracker| {
            // Every edge at once: a compaction copying them starts again at the next sweep.
            tracker.abandon();
            let txn = db.begin_write()?;
            txn.delete_table(EDGES)?;
            txn.open_table(EDGES)?;
            txn.commit()?;
            let mut map = self.write_map();
            let n = map.len();
            map.clear();
            shared.prune();
            Ok(n)
        })
    }

    /// Moves edges to new keys in one transaction: each `(from, to)` folds the edge at `from`
    /// into the one at `to` (made when there is none). An edge that is gone by then (expired,
    /// reset) is skipped. Returns how many edges moved.
    pub fn rekey(&self, moves: &[(EdgeKey, EdgeKey)]) -> Result<usize, StoreError> {
        let touched = || moves.iter().flat_map(|(from, to)| [from.clone(), to.clone()]).collect();
        self.write(touched, |db, shared, tracker| {
            let mut merged: HashMap<&EdgeKey, (StoredKey, EdgeState)> = HashMap::new();
            let mut removed: HashMap<&EdgeKey, StoredKey> = HashMap::new();
            for (from, to) in moves.iter().filter(|(from, to)| from != to) {
                if removed.contains_key(from) {
                    continue;
                }
                let from_key = StoredKey::probe(from);
                let Some(old) = self.read().get(&from_key).cloned() else { continue };
                let (_, state) = merged.entry(to).or_insert_with(|| {
                    let key = shared.key(to);
                    let state = self.read().get(&key).cloned().unwrap_or_default();
                    (key, state)
                });
                state.merge(&old, shared);
                removed.insert(from, from_key);
            }
            if removed.is_empty() {
                return Ok(0);
            }
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(EDGES)?;
                for key in removed.values() {
                    let key = edge_bytes(key);
                    table.remove(key.as_slice())?;
                    tracker.edge(&key);
                }
                for (key, state) in merged.values() {
                    let key = edge_bytes(key);
                    table.insert(key.as_slice(), edge_bytes(state).as_slice())?;
                    tracker.edge(&key);
                }
            }
            txn.commit()?;
            let mut map = self.write_map();
            for key in removed.values() {
                map.remove(key);
            }
            for (key, state) in merged.into_values() {
                map.insert(key, state);
            }
            Ok(removed.len())
        })
    }

    /// Removes edges last seen before `cutoff_ms`; returns how many. Removes
    /// at most [`EXPIRE_CHUNK`] per transaction and lets batches in between, so
    /// a large sweep never holds ingest for long; then compacts the file if
    /// most of it is free space.
    pub fn expire(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let removed = self.remove_expired(cutoff_ms)?;
        if removed > 0 {
            self.compact_if_sparse()?;
        }
        Ok(removed)
    }

    /// The sweep of [`EdgeStore::expire`] without the compaction after it: removes edges last
    /// seen before `cutoff_ms` in transactions of at most [`EXPIRE_CHUNK`], letting batches in
    /// between; returns how many.
    pub fn remove_expired(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let old: Vec<StoredKey> =
            self.read().iter().filter(|(_, s)| s.last_seen_ms < cutoff_ms).map(|(k, _)| k.clone()).collect();
        let mut removed = 0;
        for chunk in old.chunks(EXPIRE_CHUNK) {
            removed += self.write(
                || chunk.iter().map(StoredKey::to_key).collect(),
                |db, _, tracker| {
                    // Seen again since the scan: kept (one read lock for the chunk; the writer
                    // lock held here keeps it true until the removal).
                    let still: Vec<&StoredKey> = {
                        let map = self.read();
                        chunk.iter().filter(|k| map.get(*k).is_some_and(|e| e.last_seen_ms < cutoff_ms)).collect()
                    };
                    let txn = db.begin_write()?;
                    {
                        let mut table = txn.open_table(EDGES)?;
                        for k in &still {
                            let k = edge_bytes(*k);
                            table.remove(k.as_slice())?;
                            tracker.edge(&k);
                        }
                    }
                    txn.commit()?;
                    let mut map = self.write_map();
                    for k in &still {
                        map.remove(*k);
                    }
                    Ok(still.len())
                },
            )?;
            // The writer lock is not fair: step aside so a waiting batch gets it before the next chunk.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The keys removed hold their ends until dropped.
        drop(old);
        if removed > 0 {
            self.lock_writer().shared.prune();
        }
        Ok(removed)
    }

    /// The store file's size in bytes.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Forgets agent boots last heard from before `cutoff_ms`, and the oldest
    /// beyond `max_boots`; returns how many. (A forgotten boot's resent batch
    /// would be applied again: keep the cutoff well beyond how long an agent
    /// keeps batches spooled.)
    pub fn prune_boots(&self, cutoff_ms: i64, max_boots: usize) -> Result<usize, StoreError> {
        self.write(Vec::new, |db, _, tracker| {
            let txn = db.begin_write()?;
            let removed = {
                let mut table = txn.open_table(BOOTS)?;
                let mut seen: Vec<(i64, String, String)> = Vec::new();
                for row in table.iter()? {
                    let (k, v) = row?;
                    let r: BootRecord = serde_json::from_slice(v.value()).map_err(StoreError::BootRecord)?;
                    let (node, boot) = k.value();
                    seen.push((r.last_seen_ms, node.to_owned(), boot.to_owned()));
                }
                seen.sort_unstable();
                let over = seen.len().saturating_sub(max_boots);
                let gone: Vec<_> =
                    seen.iter().enumerate().filter(|(i, s)| *i < over || s.0 < cutoff_ms).map(|(_, s)| s).collect();
                for (_, node, boot) in &gone {
                    table.remove((node.as_str(), boot.as_str()))?;
                    tracker.boot(node, boot);
                }
                gone.len()
            };
            if removed == 0 {
                txn.abort()?;
            } else {
                txn.commit()?;
            }
            Ok(removed)
        })
    }

    /// Agent boots recorded.
    pub fn boots(&self) -> Result<u64, StoreError> {
        let w = self.lock_writer();
        let Some(db) = w.db.as_ref() else { return Ok(0) };
        let read = redb::ReadableDatabase::begin_read(db)?;
        Ok(redb::ReadableTableMetadata::len(&read.open_table(BOOTS)?)?)
    }
}

fn reopen(path: &Path) -> Result<open::Loaded, StoreError> {
    // Memory already holds the edges: only the database is wanted.
    open::open_file(path, wall_ms(), None)
}

#[cfg(test)]
mod tests;
