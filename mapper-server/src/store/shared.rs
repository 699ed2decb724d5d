//! What edges share in memory: one copy of each name, of each end (peer) and of each list of
//! ports, DNS names and Services, however many edges hold it. A million edges between a few
//! thousand workloads hold a few thousand ends and a handful of port lists, so an edge in the
//! map is two pointers for its key and a few for its lists, next to its counts and times.

use std::{hash::Hash, sync::Arc};

use foldhash::HashSet;

use mapper_cluster::Peer;
use serde::Serialize;

use super::{EdgeKey, Proto, ServiceName};

/// An edge's key as the store's map holds it: both ends shared with every other edge naming
/// them. Ordered, compared and written exactly as [`EdgeKey`] is (client, then server, by
/// content; the same postcard bytes), so the map's order is the key order queries page by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct StoredKey {
    pub client: Arc<Peer>,
    pub server: Arc<Peer>,
}

impl Ord for StoredKey {
    /// By content, an end shared by both keys (one copy: the same address) equal at once: a
    /// search of the map passes many keys of the same client, whose names are not compared.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn end(a: &Arc<Peer>, b: &Arc<Peer>) -> std::cmp::Ordering {
            if Arc::ptr_eq(a, b) { std::cmp::Ordering::Equal } else { a.cmp(b) }
        }
        end(&self.client, &other.client).then_with(|| end(&self.server, &other.server))
    }
}

impl PartialOrd for StoredKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl StoredKey {
    /// A key to search the map with (its ends not shared: made for one search).
    pub fn probe(key: &EdgeKey) -> Self {
        Self { client: Arc::new(key.client.clone()), server: Arc::new(key.server.clone()) }
    }

    /// The key as the rest of the server uses it (the names stay shared).
    pub fn to_key(&self) -> EdgeKey {
        EdgeKey { client: (*self.client).clone(), server: (*self.server).clone() }
    }
}

/// The shared copies (held by the store's writer, which looks up each new edge's ends here;
/// foldhash: a fraction of SipHash's cost, and seeded per process as SipHash is, so a peer
/// cannot choose names or addresses that collide).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    names: HashSet<Arc<str>>,
    peers: HashSet<Arc<Peer>>,
    ports: HashSet<Arc<[(u16, Proto)]>>,
    dns_names: HashSet<Arc<[Arc<str>]>>,
    services: HashSet<Arc<[ServiceName]>>,
}

/// The copy of `v` in `set`, made by `make` and added when there is none.
fn one_copy<T: ?Sized + Eq + Hash>(set: &mut HashSet<Arc<T>>, v: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
    if let Some(known) = set.get(v) {
        return known.clone();
    }
    let new = make();
    set.insert(new.clone());
    new
}

/// Keeps what some edge still holds (the set's own reference aside).
fn retain_held<T: ?Sized + Eq + Hash>(set: &mut HashSet<Arc<T>>) {
    set.retain(|v| Arc::strong_count(v) > 1);
    set.shrink_to_fit();
}

impl Shared {
    /// The shared copy of `name`.
    pub(crate) fn name(&mut self, name: &str) -> Arc<str> {
        one_copy(&mut self.names, name, || Arc::from(name))
    }

    /// The shared copy of `peer` (its names shared too).
    pub(crate) fn peer(&mut self, peer: &Peer) -> Arc<Peer> {
        if let Some(known) = self.peers.get(peer) {
            return known.clone();
        }
        let mut p = peer.clone();
        match &mut p {
            Peer::Workload(w) => {
                w.name = self.name(&w.name);
                w.namespace = self.name(&w.namespace);
                if let Some(kind) = &mut w.kind {
                    *kind = self.name(kind);
                }
            }
            Peer::Service { name, namespace } => {
                *name = self.name(name);
                *namespace = self.name(namespace);
            }
            Peer::Node { name } => *name = self.name(name),
            Peer::ApiServer | Peer::External { .. } | Peer::Unresolved { .. } => {}
        }
        let p = Arc::new(p);
        self.peers.insert(p.clone());
        p
    }

    /// `key` with shared ends.
    pub(crate) fn key(&mut self, key: &EdgeKey) -> StoredKey {
        StoredKey { client: self.peer(&key.client), server: self.peer(&key.server) }
    }

    /// The shared copy of a list of ports.
    pub(crate) fn ports(&mut self, ports: &[(u16, Proto)]) -> Arc<[(u16, Proto)]> {
        one_copy(&mut self.ports, ports, || ports.into())
    }

    /// The shared copy of a list of DNS names (the names shared too).
    pub(crate) fn dns_names(&mut self, names: &[Arc<str>]) -> Arc<[Arc<str>]> {
        if let Some(known) = self.dns_names.get(names) {
            return known.clone();
        }
        let list: Arc<[Arc<str>]> = names.iter().map(|n| self.name(n)).collect();
        self.dns_names.insert(list.clone());
        list
    }

    /// The shared copy of a list of Services (the names shared too).
    pub(crate) fn services(&mut self, services: &[ServiceName]) -> Arc<[ServiceName]> {
        if let Some(known) = self.services.get(services) {
            return known.clone();
        }
        let list: Arc<[ServiceName]> = services.iter().map(|(ns, n)| (self.name(ns), self.name(n))).collect();
        self.services.insert(list.clone());
        list
    }

    /// Forgets what no edge holds any more.
    pub(crate) fn prune(&mut self) {
        // Ends and lists first: they hold names.
        retain_held(&mut self.peers);
        retain_held(&mut self.ports);
        retain_held(&mut self.dns_names);
        retain_held(&mut self.services);
        retain_held(&mut self.names);
    }

    /// How many distinct ends, port lists and names are held (for tests and logs).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (self.peers.len(), self.ports.len(), self.names.len())
    }
}
