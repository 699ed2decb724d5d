//! The edge store: one edge per (client, server) with ports, counts per
//! observing side and first/last seen, in memory (an ordered map under a
//! read-write lock, for queries) and in redb on disk (for restarts).
//!
//! A batch is applied in one redb write transaction that also records the
//! batch's (node, boot id) → sequence; the transaction commits (fsync) before
//! the caller acknowledges. A resent batch finds its sequence recorded and
//! changes nothing. Batches are applied one at a time (a mutex), so the
//! in-memory map is updated in commit order.
//!
//! Queries read the map in pages ([`EdgeStore::scan`]): each page is a range
//! after the last key of the previous one, taken under a short read lock, so a
//! query of the whole map never holds the writer off for long and never copies
//! the whole map.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use mapper_cluster::Peer;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const EDGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("edges");
const AGENTS: TableDefinition<&str, u64> = TableDefinition::new("agents");

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// What is known of an edge. Each side's agent counts the same connections,
/// so the sides are kept apart and the edge's count is the larger of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeState {
    pub ports: BTreeSet<(u16, Proto)>,
    pub client_established: u64,
    pub client_failed: u64,
    pub server_established: u64,
    pub server_failed: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// DNS names clients resolved to the server's address (external servers).
    #[serde(default)]
    pub dns_names: BTreeSet<String>,
    /// Services (namespace, name) whose ClusterIP clients dialled to reach the server.
    #[serde(default)]
    pub via_services: BTreeSet<(String, String)>,
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

    fn add(&mut self, obs: &Observation) {
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
        self.ports.insert((obs.port, obs.proto));
        if self.first_seen_ms == 0 || obs.first_seen_ms < self.first_seen_ms {
            self.first_seen_ms = obs.first_seen_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(obs.last_seen_ms);
        self.dns_names.extend(obs.dns_names.iter().cloned());
        self.via_services.extend(obs.via_service.iter().cloned());
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
    edges: RwLock<BTreeMap<EdgeKey, EdgeState>>,
    write: Mutex<()>,
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
        let db = Database::create(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let txn = db.begin_write()?;
        {
            txn.open_table(EDGES)?;
            txn.open_table(AGENTS)?;
        }
        txn.commit()?;
        let mut edges = BTreeMap::new();
        {
            let read = db.begin_read()?;
            let table = read.open_table(EDGES)?;
            for row in table.iter()? {
                let (k, v) = row?;
                let key: EdgeKey = serde_json::from_slice(k.value()).map_err(StoreError::Corrupt)?;
                let state: EdgeState = serde_json::from_slice(v.value()).map_err(StoreError::Corrupt)?;
                edges.insert(key, state);
            }
        }
        Ok(Self { db, edges: RwLock::new(edges), write: Mutex::new(()), path })
    }

    /// The map, for reading (a panicked writer left it consistent: it only inserts committed
    /// edges).
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<EdgeKey, EdgeState>> {
        self.edges.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> RwLockWriteGuard<'_, BTreeMap<EdgeKey, EdgeState>> {
        self.edges.write().unwrap_or_else(|p| p.into_inner())
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
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
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
                let map = self.read();
                for obs in b.observations {
                    merged.entry(&obs.key).or_insert_with(|| map.get(&obs.key).cloned().unwrap_or_default()).add(obs);
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
        let mut map = self.write_map();
        for (k, v) in merged {
            map.insert(k.clone(), v);
        }
        Ok(results)
    }

    /// Every edge (a copy).
    pub fn edges(&self) -> Vec<(EdgeKey, EdgeState)> {
        self.edges_where(|_, _| true)
    }

    /// Copies of the edges `keep` accepts (the others are not copied).
    pub fn edges_where(&self, keep: impl Fn(&EdgeKey, &EdgeState) -> bool) -> Vec<(EdgeKey, EdgeState)> {
        self.read().iter().filter(|(k, s)| keep(k, s)).map(|(k, s)| (k.clone(), s.clone())).collect()
    }

    /// One page of a scan in key order: visits at most `max` edges after `after` (from the
    /// first when `None`) under one read lock, stopping early when `visit` returns false.
    /// Returns the last key visited, to pass as `after` for the next page; `None` when no edge
    /// was left.
    pub fn scan(
        &self,
        after: Option<&EdgeKey>,
        max: usize,
        mut visit: impl FnMut(&EdgeKey, &EdgeState) -> bool,
    ) -> Option<EdgeKey> {
        let map = self.read();
        let range = match after {
            Some(k) => map.range::<EdgeKey, _>((Bound::Excluded(k), Bound::Unbounded)),
            None => map.range::<EdgeKey, _>(..),
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

    /// Number of edges.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there is no edge.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Forgets every edge (agents' sequences are kept: resends still dedupe).
    pub fn reset(&self) -> Result<usize, StoreError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write()?;
        txn.delete_table(EDGES)?;
        txn.open_table(EDGES)?;
        txn.commit()?;
        let mut map = self.write_map();
        let n = map.len();
        map.clear();
        Ok(n)
    }

    /// Removes edges last seen before `cutoff_ms`; returns how many.
    pub fn expire(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let old: Vec<EdgeKey> =
            self.read().iter().filter(|(_, s)| s.last_seen_ms < cutoff_ms).map(|(k, _)| k.clone()).collect();
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
        let mut map = self.write_map();
        for k in &old {
            map.remove(k);
        }
        Ok(old.len())
    }
}

#[cfg(test)]
mod tests;
