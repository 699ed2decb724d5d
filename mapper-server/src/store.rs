//! The edge store: one edge per (client, server) with ports, counts per
//! observing side and first/last seen, in memory (dashmap, for queries) and in
//! redb on disk (for restarts).
//!
//! A batch is applied in one redb write transaction that also records the
//! batch's (node, boot id) → sequence; the transaction commits (fsync) before
//! the caller acknowledges. A resent batch finds its sequence recorded and
//! changes nothing. Batches are applied one at a time (a mutex), so the
//! in-memory map is updated in commit order.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use dashmap::DashMap;
use mapper_cluster::Peer;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// redb's page cache: the in-memory map answers every read, so the cache only serves writes
/// (the B-tree pages a batch touches). redb's default (1 GiB) would grow with the store.
const CACHE_BYTES: usize = 32 << 20;

const EDGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("edges");
const AGENTS: TableDefinition<&str, u64> = TableDefinition::new("agents");

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The ports of an edge, sorted and distinct: most edges have one or two, kept inline.
pub type Ports = SmallVec<[(u16, Proto); 4]>;

/// A Service as (namespace, name), the names shared with every other edge that names it.
pub type ServiceName = (Arc<str>, Arc<str>);

/// What is known of an edge. Each side's agent counts the same connections,
/// so the sides are kept apart and the edge's count is the larger of the two.
///
/// The lists are small sorted vectors rather than sets (an edge has a port or two and dials
/// one Service), and names are shared (`Arc<str>`) across edges. On disk each list is a JSON
/// array, as the sets were, so records written before read the same.
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
    pub dns_names: Vec<Arc<str>>,
    /// Services (namespace, name) whose ClusterIP clients dialled to reach the server: sorted,
    /// distinct.
    #[serde(default)]
    pub via_services: SmallVec<[ServiceName; 1]>,
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

    /// Adds one observation; names are taken from (and added to) `names`.
    fn add(&mut self, obs: &Observation, names: &mut Names) {
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
        let port = (obs.port, obs.proto);
        if let Err(at) = self.ports.binary_search(&port) {
            self.ports.insert(at, port);
        }
        if self.first_seen_ms == 0 || obs.first_seen_ms < self.first_seen_ms {
            self.first_seen_ms = obs.first_seen_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(obs.last_seen_ms);
        for name in &obs.dns_names {
            if self.dns_names.len() >= MAX_DNS_NAMES_PER_EDGE {
                break;
            }
            if let Err(at) = self.dns_names.binary_search_by(|n| (**n).cmp(name.as_str())) {
                self.dns_names.insert(at, names.intern(name));
            }
        }
        if let Some((namespace, name)) = &obs.via_service {
            let found = self.via_services.binary_search_by(|(ns, n)| (&**ns, &**n).cmp(&(namespace, name)));
            if let Err(at) = found {
                self.via_services.insert(at, (names.intern(namespace), names.intern(name)));
            }
        }
    }

    /// Shares this state's names with every other edge's (after a read from disk).
    fn share_names(&mut self, names: &mut Names) {
        for n in &mut self.dns_names {
            *n = names.intern(n);
        }
        for (ns, name) in &mut self.via_services {
            *ns = names.intern(ns);
            *name = names.intern(name);
        }
    }
}

/// The names (DNS names, Service namespaces and names) edges share: one copy of each.
#[derive(Debug, Default)]
pub(crate) struct Names {
    set: HashSet<Arc<str>>,
}

impl Names {
    /// The shared copy of `name`.
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.set.get(name) {
            return known.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.set.insert(shared.clone());
        shared
    }

    /// Forgets names no edge holds any more.
    fn prune(&mut self) {
        self.set.retain(|n| Arc::strong_count(n) > 1);
        self.set.shrink_to_fit();
    }
}

impl EdgeState {
    /// Adds what another edge knows to this one: counts per side, ports, times and names
    /// (already shared: both edges are the store's).
    pub fn merge(&mut self, other: &EdgeState) {
        self.client_established = self.client_established.saturating_add(other.client_established);
        self.client_failed = self.client_failed.saturating_add(other.client_failed);
        self.server_established = self.server_established.saturating_add(other.server_established);
        self.server_failed = self.server_failed.saturating_add(other.server_failed);
        for p in &other.ports {
            if let Err(at) = self.ports.binary_search(p) {
                self.ports.insert(at, *p);
            }
        }
        if self.first_seen_ms == 0 || (other.first_seen_ms != 0 && other.first_seen_ms < self.first_seen_ms) {
            self.first_seen_ms = other.first_seen_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        for name in &other.dns_names {
            if self.dns_names.len() >= MAX_DNS_NAMES_PER_EDGE {
                break;
            }
            if let Err(at) = self.dns_names.binary_search(name) {
                self.dns_names.insert(at, name.clone());
            }
        }
        for service in &other.via_services {
            if let Err(at) = self.via_services.binary_search(service) {
                self.via_services.insert(at, service.clone());
            }
        }
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
    pub via_service: Option<(String, String)>,
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
    #[error("cannot open the store {path} (another mapper-server using it?)")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("store transaction failed")]
    Transaction(#[from] redb::TransactionError),
    #[error("store table failed")]
    Table(#[from] redb::TableError),
    #[error("store read or write failed")]
    Storage(#[from] redb::StorageError),
    #[error("store commit failed")]
    Commit(#[from] redb::CommitError),

    #[error("corrupt record in the store")]
    Corrupt(#[source] serde_json::Error),
}

/// One agent batch, resolved, as the store applies it.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The sender's boot: node and boot id.
    pub agent: &'a str,
    pub sequence: u64,
    pub observations: &'a [Observation],
}

/// Whether a batch was applied or had been already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    Duplicate,
}

/// The edge store.
#[derive(Debug)]
pub struct EdgeStore {
    db: Database,
    edges: DashMap<EdgeKey, EdgeState>,
    /// Held while writing; the names the edges share.
    write: Mutex<Names>,
    path: PathBuf,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl EdgeStore {
    /// Opens (or creates) `<data_dir>/edges.redb` and loads every edge.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir { path: data_dir.into(), source })?;
        let path = data_dir.join("edges.redb");
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let txn = db.begin_write()?;
        {
            txn.open_table(EDGES)?;
            txn.open_table(AGENTS)?;
        }
        txn.commit()?;
        let edges = DashMap::new();
        let mut names = Names::default();
        {
            let read = db.begin_read()?;
            let table = read.open_table(EDGES)?;
            for row in table.iter()? {
                let (k, v) = row?;
                let key: EdgeKey = serde_json::from_slice(k.value()).map_err(StoreError::Corrupt)?;
                let mut state: EdgeState = serde_json::from_slice(v.value()).map_err(StoreError::Corrupt)?;
                state.share_names(&mut names);
                edges.insert(key, state);
            }
        }
        Ok(Self { db, edges, write: Mutex::new(names), path })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies a batch durably, unless (agent, sequence) was applied already.
    /// `agent` identifies the sender's boot (node and boot id).
    pub fn apply(&self, agent: &str, sequence: u64, observations: &[Observation]) -> Result<Applied, StoreError> {
        let batch = Batch { agent, sequence, observations };
        Ok(self.apply_group(std::slice::from_ref(&batch))?.pop().unwrap_or(Applied::Duplicate))
    }

    /// Applies several batches in one transaction (one fsync for all: group
    /// commit), each unless its (agent, sequence) was applied already — also
    /// earlier in the same group. Either every batch is durable or none is.
    pub fn apply_group(&self, batches: &[Batch<'_>]) -> Result<Vec<Applied>, StoreError> {
        let mut names = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write()?;
        let mut results = Vec::with_capacity(batches.len());
        let mut merged: std::collections::HashMap<&EdgeKey, EdgeState> = std::collections::HashMap::new();
        {
            let mut agents = txn.open_table(AGENTS)?;
            for b in batches {
                let last = agents.get(b.agent)?.map(|v| v.value()).unwrap_or(0);
                if b.sequence <= last {
                    results.push(Applied::Duplicate);
                    continue;
                }
                agents.insert(b.agent, b.sequence)?;
                for obs in b.observations {
                    merged
                        .entry(&obs.key)
                        .or_insert_with(|| self.edges.get(&obs.key).map(|e| e.clone()).unwrap_or_default())
                        .add(obs, &mut names);
                }
                results.push(Applied::New);
            }
            if !merged.is_empty() {
                let mut table = txn.open_table(EDGES)?;
                for (key, state) in &merged {
                    table.insert(encode(key).as_slice(), encode(state).as_slice())?;
                }
            }
        }
        if results.iter().all(|r| *r == Applied::Duplicate) {
            // Nothing to make durable.
            txn.abort()?;
            return Ok(results);
        }
        txn.commit()?;
        for (k, v) in merged {
            self.edges.insert(k.clone(), v);
        }
        Ok(results)
    }

    /// Every edge (a copy).
    pub fn edges(&self) -> Vec<(EdgeKey, EdgeState)> {
        self.edges_where(|_, _| true)
    }

    /// Copies of the edges `keep` accepts (the others are not copied).
    pub fn edges_where(&self, keep: impl Fn(&EdgeKey, &EdgeState) -> bool) -> Vec<(EdgeKey, EdgeState)> {
        self.edges.iter().filter(|e| keep(e.key(), e.value())).map(|e| (e.key().clone(), e.value().clone())).collect()
    }

    /// Number of edges.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// Whether there is no edge.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Forgets every edge (agents' sequences are kept: resends still dedupe).
    pub fn reset(&self) -> Result<usize, StoreError> {
        let mut guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write()?;
        txn.delete_table(EDGES)?;
        txn.open_table(EDGES)?;
        txn.commit()?;
        let n = self.edges.len();
        self.edges.clear();
        self.edges.shrink_to_fit();
        guard.prune();
        Ok(n)
    }

    /// Moves edges to new keys in one transaction: each `(from, to)` folds the edge at `from`
    /// into the one at `to` (made when there is none). An edge that is gone by then (expired,
    /// reset) is skipped. Returns how many edges moved.
    pub fn rekey(&self, moves: &[(EdgeKey, EdgeKey)]) -> Result<usize, StoreError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut merged: std::collections::HashMap<&EdgeKey, EdgeState> = std::collections::HashMap::new();
        let mut removed: Vec<&EdgeKey> = Vec::new();
        for (from, to) in moves.iter().filter(|(from, to)| from != to) {
            let Some(old) = self.edges.get(from).map(|e| e.clone()) else { continue };
            if removed.contains(&from) {
                continue;
            }
            merged.entry(to).or_insert_with(|| self.edges.get(to).map(|e| e.clone()).unwrap_or_default()).merge(&old);
            removed.push(from);
        }
        if removed.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(EDGES)?;
            for key in &removed {
                table.remove(encode(*key).as_slice())?;
            }
            for (key, state) in &merged {
                table.insert(encode(*key).as_slice(), encode(state).as_slice())?;
            }
        }
        txn.commit()?;
        for key in &removed {
            self.edges.remove(*key);
        }
        for (key, state) in merged {
            self.edges.insert(key.clone(), state);
        }
        Ok(removed.len())
    }

    /// Removes edges last seen before `cutoff_ms`; returns how many.
    pub fn expire(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let mut names = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let old: Vec<EdgeKey> =
            self.edges.iter().filter(|e| e.value().last_seen_ms < cutoff_ms).map(|e| e.key().clone()).collect();
        if old.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(EDGES)?;
            for k in &old {
                table.remove(encode(k).as_slice())?;
            }
        }
        txn.commit()?;
        for k in &old {
            self.edges.remove(k);
        }
        self.edges.shrink_to_fit();
        names.prune();
        Ok(old.len())
    }
}

#[cfg(test)]
mod tests;
