//! A batch's observations as the store's one writer takes them: each distinct end (peer) and
//! each distinct Service dialled once, in the batch's own tables, the observations naming them
//! by their place there.
//!
//! A batch of a few hundred flows names a few dozen ends (a node's pods and the workloads they
//! call). Resolving a flow borrows its ends from the cluster snapshot, and the batch keeps one
//! copy of each: no per-flow copy of a workload's names, so the threads resolving flows take no
//! reference on names they all share (a reference count written by two cores at once is a
//! cache line passed between them, for every flow). Observations are told apart by numbers,
//! not names, when the batch is coalesced, and the writer turns each end of a batch into the
//! store's shared copy once, then finds an observation's edge by the two shared ends' addresses.

use std::{collections::hash_map::Entry, sync::Arc};

use foldhash::HashMap;
use mapper_cluster::{End, Peer, Workload};

use super::{EdgeKey, Observation, Proto, ServiceName, Side};

/// One observation of a batch, its ends and the Service dialled named by their place in the
/// batch's tables ([`Observations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) client: u32,
    pub(crate) server: u32,
    pub(crate) side: Side,
    pub(crate) port: u16,
    pub(crate) proto: Proto,
    pub(crate) established: u64,
    pub(crate) failed: u64,
    pub(crate) first_seen_ms: i64,
    pub(crate) last_seen_ms: i64,
    pub(crate) dns_names: Vec<String>,
    /// The Service whose ClusterIP the client dialled, if it dialled one.
    pub(crate) via_service: Option<u32>,
}

impl Item {
    /// What makes two observations of one batch one for the edge they change: the same ends,
    /// side, port and Service dialled (the rest is summed, widened or joined).
    fn identity(&self) -> (u32, u32, Side, u16, Proto, Option<u32>) {
        (self.client, self.server, self.side, self.port, self.proto, self.via_service)
    }

    /// Adds `other` (of the same identity, later, its DNS names among this one's) to this one,
    /// as [`super::EdgeState::add`] would add the two in turn: counts summed (saturating),
    /// times widened. Its names change nothing: the edge was offered each of them before.
    fn absorb(&mut self, other: &Item) {
        self.established = self.established.saturating_add(other.established);
        self.failed = self.failed.saturating_add(other.failed);
        // As `EdgeState::add` takes a first time (ingest's times are never 0).
        if self.first_seen_ms == 0 || other.first_seen_ms < self.first_seen_ms {
            self.first_seen_ms = other.first_seen_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
    }
}

/// The observations of one batch, with the tables of the ends and Services they name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    pub(super) ends: Vec<Peer>,
    pub(super) services: Vec<ServiceName>,
    pub(super) items: Vec<Item>,
}

impl Observations {
    /// The observations as a batch of the writer's (nothing coalesced).
    pub fn new(observations: Vec<Observation>) -> Self {
        let mut b = Builder::default();
        for o in observations {
            let client = b.peer(o.key.client);
            let server = b.peer(o.key.server);
            let via_service = o.via_service.map(|s| b.service(s));
            b.push(Item {
                client,
                server,
                side: o.side,
                port: o.port,
                proto: o.proto,
                established: o.established,
                failed: o.failed,
                first_seen_ms: o.first_seen_ms,
                last_seen_ms: o.last_seen_ms,
                dns_names: o.dns_names,
                via_service,
            });
        }
        b.finish()
    }

    /// How many observations.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The edge each observation changes, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = EdgeKey> + '_ {
        self.items.iter().map(|i| EdgeKey {
            client: self.ends[i.client as usize].clone(),
            server: self.ends[i.server as usize].clone(),
        })
    }

    /// The Service `item` dialled.
    pub(super) fn via(&self, item: &Item) -> Option<&ServiceName> {
        item.via_service.map(|s| &self.services[s as usize])
    }

    /// The observations with those of the same edge, side, port and Service dialled made one
    /// (at the place the first came), so the store's one writer handles each edge of a batch
    /// once rather than once per flow: many flows of a node (pods of one workload, to pods of
    /// another) land on the same edge. An observation naming a DNS name the first did not name
    /// stays apart, in its place: an edge keeps the names it has room for in the order they
    /// came. Applying the result changes the store exactly as applying the batch does.
    ///
    /// Done in place (the observations kept are moved down over those absorbed), and not at
    /// all when no two observations share an identity. Ends are told apart by their place in
    /// the batch's table: two places holding equal ends (which [`Builder`] avoids but does not
    /// promise) are only left apart here, and the writer adds both to their one edge.
    pub fn coalesce(mut self) -> Self {
        let items = &mut self.items;
        if items.len() < 2 {
            return self;
        }
        // The first observation of each identity (its index), for every observation.
        let leaders: Vec<usize> = {
            let mut first: HashMap<_, usize> = HashMap::default();
            first.reserve(items.len());
            items.iter().enumerate().map(|(i, o)| *first.entry(o.identity()).or_insert(i)).collect()
        };
        let Some(start) = leaders.iter().enumerate().position(|(i, l)| *l != i) else {
            return self;
        };
        // `slot[i]`: where the leader `i` is kept. Below `start` every observation is a leader,
        // in its place; from there on, the observations kept are moved down to `kept`, and the
        // slots between `kept` and `i` hold only observations already absorbed.
        let mut slot: Vec<usize> = (0..items.len()).collect();
        let mut kept = start;
        for i in start..items.len() {
            let leader = leaders[i];
            let absorbed = leader != i && {
                let into = slot[leader];
                let (before, rest) = items.split_at_mut(i);
                let (o, into) = (&rest[0], &mut before[into]);
                let all_named = o.dns_names.iter().all(|n| into.dns_names.contains(n));
                if all_named {
                    into.absorb(o);
                }
                all_named
            };
            if !absorbed {
                slot[i] = kept;
                items.swap(kept, i);
                kept += 1;
            }
        }
        items.truncate(kept);
        self
    }
}

/// Makes a batch's [`Observations`], keeping each distinct end and Service once: a workload
/// borrowed from the snapshot `'a` by its address there (no names read or copied), any other
/// end and Service by its content.
#[derive(Debug, Default)]
pub(crate) struct Builder<'a> {
    batch: Observations,
    /// A snapshot workload's address → its place in `ends`.
    workloads: HashMap<usize, u32>,
    peers: HashMap<Peer, u32>,
    /// A snapshot Service's names' addresses → its place in `services`.
    shared_services: HashMap<(usize, usize), u32>,
    services: HashMap<ServiceName, u32>,
    snapshot: std::marker::PhantomData<&'a Workload>,
}

/// The place in `table` of what `key` names, made by `make` and added the first time `key`
/// is met (`index`: each key met so far → its place). A batch holds at most
/// `ingest::MAX_FLOWS_PER_BATCH` flows, so far fewer than `u32::MAX` entries.
fn place<K: std::hash::Hash + Eq, V>(
    index: &mut HashMap<K, u32>,
    table: &mut Vec<V>,
    key: K,
    make: impl FnOnce(&K) -> V,
) -> u32 {
    match index.entry(key) {
        Entry::Occupied(o) => *o.get(),
        Entry::Vacant(v) => {
            let at = u32::try_from(table.len()).unwrap_or(u32::MAX);
            table.push(make(v.key()));
            *v.insert(at)
        }
    }
}

/// The address of what an `Arc` points to (for telling shared copies apart).
fn address<T: ?Sized>(shared: &Arc<T>) -> usize {
    Arc::as_ptr(shared).cast::<u8>() as usize
}

impl<'a> Builder<'a> {
    /// The place of `end` in the batch's table of ends.
    pub(crate) fn end(&mut self, end: End<'a>) -> u32 {
        match end {
            End::Workload(w) => {
                let at = std::ptr::from_ref(w) as usize;
                place(&mut self.workloads, &mut self.batch.ends, at, |_| Peer::Workload(w.clone()))
            }
            End::Peer(p) => self.peer(p),
        }
    }

    /// The place of `peer` in the batch's table of ends.
    pub(crate) fn peer(&mut self, peer: Peer) -> u32 {
        place(&mut self.peers, &mut self.batch.ends, peer, Peer::clone)
    }

    /// The place of the Service (namespace, name) whose names the snapshot `'a` holds.
    pub(crate) fn shared_service(&mut self, namespace: &'a Arc<str>, name: &'a Arc<str>) -> u32 {
        let names = (address(namespace), address(name));
        place(&mut self.shared_services, &mut self.batch.services, names, |_| (namespace.clone(), name.clone()))
    }

    /// The place of the Service (namespace, name).
    fn service(&mut self, service: ServiceName) -> u32 {
        place(&mut self.services, &mut self.batch.services, service, ServiceName::clone)
    }

    /// Adds an observation whose ends and Service came from this builder.
    pub(crate) fn push(&mut self, item: Item) {
        self.batch.items.push(item);
    }

    /// Room for `n` more observations.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.batch.items.reserve(n);
    }

    /// The observations pushed.
    pub(crate) fn finish(self) -> Observations {
        self.batch
    }
}
