//! The Query service: edges for the CLI, filtered; reset; health.
//!
//! Edges are read from the store in key order (client, then server), a chunk at a time under
//! a short read lock ([`EdgeStore::scan`]), filtered, and sent in pages of at most
//! [`PAGE_BYTES`] encoded: `StreamEdges` never builds the whole answer, and a reader that stops
//! reading holds at most [`QUEUED_PAGES`] pages. `ListEdges` answers in one message, up to
//! [`LIST_LIMIT_BYTES`].

use std::sync::Arc;

use mapper_cluster::{ClusterHandle, Peer, Release, Snapshot};
use mapper_proto::v1::{self as pb, query_server::Query};
use prost::Message;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use crate::errors::CallError;
use crate::store::{EdgeState, EdgeStore, Proto, StoredKey};

/// The Helm release a peer's workload belongs to in `snap` (the cluster state now, not when the
/// edge was seen: the release is no part of the edge's key).
fn release_in<'a>(snap: &'a Snapshot, p: &Peer) -> Option<&'a Release> {
    snap.release_of(p.workload()?)
}

/// An edge on the wire, with its workloads' releases as `snap` knows them.
pub fn edge_to_pb(client: &Peer, server: &Peer, s: &EdgeState, snap: &Snapshot) -> pb::Edge {
    let names: Vec<String> = s.dns_names().map(str::to_owned).collect();
    pb::Edge {
        client: Some(pb::Peer::from(client).with_release(release_in(snap, client))),
        server: Some(pb::Peer::from(server).with_dns_names(names).with_release(release_in(snap, server))),
        ports: s
            .ports
            .iter()
            .map(|(port, proto)| pb::PortProtocol {
                port: u32::from(*port),
                protocol: match proto {
                    Proto::Tcp => pb::Protocol::Tcp as i32,
                    Proto::Udp => pb::Protocol::Udp as i32,
                },
            })
            .collect(),
        established: s.established(),
        failed: s.failed(),
        first_seen_ms: s.first_seen_ms,
        last_seen_ms: s.last_seen_ms,
        seen_by_client: s.seen_by_client(),
        seen_by_server: s.seen_by_server(),
        via_services: s
            .via_services()
            .map(|(namespace, name)| pb::ServiceRef { name: name.to_owned(), namespace: namespace.to_owned() })
            .collect(),
    }
}

/// Encoded bytes of edges in one page of `StreamEdges` at most (a page holds at least one
/// edge): well under gRPC's default 4 MiB receive limit.
pub const PAGE_BYTES: usize = 1 << 20;
/// The largest `ListEdges` answer, encoded: what a client with gRPC's default 4 MiB receive
/// limit can read.
pub const LIST_LIMIT_BYTES: usize = 4_000_000;
/// Pages queued for a reader that is slower than the scan.
pub const QUEUED_PAGES: usize = 2;
/// Edges visited under one read lock of the store.
const SCAN_CHUNK: usize = 2048;

/// Why a scan stopped before the end.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The reader went away.
    Gone,
    /// The answer would exceed this many bytes.
    TooLarge(usize),
}

/// Reads the edges `filter` keeps in key order, in pages of at most `page_bytes` encoded, and
/// hands each to `send` (false: stop). With `limit`, stops with [`Stop::TooLarge`] once the
/// pages sent and the current one together exceed it.
fn scan_pages(
    store: &EdgeStore,
    snap: &Snapshot,
    filter: &EdgeFilter,
    page_bytes: usize,
    limit: Option<usize>,
    mut send: impl FnMut(Vec<pb::Edge>) -> bool,
) -> Result<(), Stop> {
    let mut after: Option<StoredKey> = None;
    let mut page = Vec::new();
    let mut bytes = 0usize;
    let mut total = 0usize;
    loop {
        let mut full = false;
        let last = store.scan(after.as_ref(), SCAN_CHUNK, |k, s| {
            if filter.matches(snap, k, s) {
                let mut edge = edge_to_pb(&k.client, &k.server, s, snap);
                filter.add_labels(snap, &k.client, &k.server, &mut edge);
                let len = edge.encoded_len();
                // The field's tag, the length, the edge.
                let size = 1 + prost::length_delimiter_len(len) + len;
                bytes += size;
                total += size;
                page.push(edge);
                full = bytes >= page_bytes || limit.is_some_and(|l| total > l);
            }
            !full
        });
        if let Some(l) = limit.filter(|l| total > *l) {
            return Err(Stop::TooLarge(l));
        }
        let done = last.is_none();
        if (full || done) && !page.is_empty() {
            if !send(std::mem::take(&mut page)) {
                return Err(Stop::Gone);
            }
            bytes = 0;
        }
        if done {
            return Ok(());
        }
        after = last;
    }
}

/// What `ListEdges` and `StreamEdges` asked for, checked.
#[derive(Debug, Default)]
pub struct EdgeFilter {
    pub client_namespaces: Vec<String>,
    /// Client workloads as (name, namespace); all when empty.
    pub client_workloads: Vec<(String, String)>,
    pub server: Option<(String, String)>,
    pub since_ms: i64,
    pub exclude_labels: Vec<(String, String)>,
    /// Label keys whose presence, with any value, leaves an edge out.
    pub exclude_label_keys: Vec<String>,
    /// Label keys whose values are sent with each workload.
    pub include_labels: Vec<String>,
    pub include_unresolved: bool,
    /// Edges with a node end (a node process that is no pod) are left out unless asked for.
    pub include_nodes: bool,
}

impl EdgeFilter {
    /// Validates a request.
    pub fn from_request(r: &pb::ListEdgesRequest) -> Result<Self, CallError> {
        let name_ns = |field: &'static str, value: &str| {
            value
                .split_once('.')
                .filter(|(n, ns)| !n.is_empty() && !ns.is_empty() && !ns.contains('.'))
                .map(|(n, ns)| (n.to_string(), ns.to_string()))
                .ok_or_else(|| CallError::NotNameDotNamespace { field, value: value.to_owned() })
        };
        let server = if r.server.is_empty() { None } else { Some(name_ns("server", &r.server)?) };
        let client_workloads =
            r.client_workloads.iter().map(|w| name_ns("client_workloads", w)).collect::<Result<Vec<_>, _>>()?;
        if r.exclude_labels.iter().any(|l| l.key.is_empty()) || r.exclude_label_keys.iter().any(String::is_empty) {
            return Err(CallError::EmptyLabelKey);
        }
        Ok(Self {
            client_namespaces: r.client_namespaces.clone(),
            client_workloads,
            server,
            since_ms: r.since_ms,
            exclude_labels: r.exclude_labels.iter().map(|l| (l.key.clone(), l.value.clone())).collect(),
            exclude_label_keys: r.exclude_label_keys.clone(),
            include_labels: r.include_labels.iter().filter(|k| !k.is_empty()).cloned().collect(),
            include_unresolved: r.include_unresolved,
            include_nodes: r.include_nodes,
        })
    }

    fn labelled(&self, snap: &Snapshot, p: &Peer) -> bool {
        let Peer::Workload(w) = p else { return false };
        let Some(labels) = snap.labels_of(w) else { return false };
        self.exclude_labels.iter().any(|(k, v)| labels.get(k) == Some(v))
            || self.exclude_label_keys.iter().any(|k| labels.contains_key(k))
    }

    /// Puts on the workloads of `edge` their labels of the keys asked for.
    fn add_labels(&self, snap: &Snapshot, client: &Peer, server: &Peer, edge: &mut pb::Edge) {
        if self.include_labels.is_empty() {
            return;
        }
        let asked = |p: &Peer| -> Vec<(&str, &str)> {
            let Some(labels) = p.workload().and_then(|w| snap.labels_of(w)) else { return Vec::new() };
            self.include_labels.iter().filter_map(|k| Some((k.as_str(), labels.get(k)?.as_str()))).collect()
        };
        edge.client = edge.client.take().map(|c| c.with_labels(asked(client)));
        edge.server = edge.server.take().map(|c| c.with_labels(asked(server)));
    }

    /// Whether an edge passes the filter.
    pub fn matches(&self, snap: &Snapshot, k: &StoredKey, s: &EdgeState) -> bool {
        let (client, server): (&Peer, &Peer) = (&k.client, &k.server);
        if s.last_seen_ms < self.since_ms {
            return false;
        }
        let node = |p: &Peer| matches!(p, Peer::Node { .. });
        if (node(client) || node(server)) && !self.include_nodes {
            return false;
        }
        let server_resolved =
            matches!(server, Peer::Workload(_) | Peer::Service { .. } | Peer::ApiServer | Peer::Node { .. });
        let both_resolved = matches!(client, Peer::Workload(_) | Peer::Node { .. }) && server_resolved;
        if !(self.include_unresolved || both_resolved) {
            return false;
        }
        if !self.client_namespaces.is_empty() {
            let Peer::Workload(c) = client else { return false };
            if !self.client_namespaces.iter().any(|n| **n == *c.namespace) {
                return false;
            }
        }
        if !self.client_workloads.is_empty() {
            let Peer::Workload(c) = client else { return false };
            if !self.client_workloads.iter().any(|(n, ns)| **n == *c.name && **ns == *c.namespace) {
                return false;
            }
        }
        if let Some((name, ns)) = &self.server {
            let hit = match server {
                Peer::Workload(w) => *w.name == **name && *w.namespace == **ns,
                Peer::Service { name: n, namespace: s } => **n == **name && **s == **ns,
                Peer::ApiServer => name == "kubernetes" && ns == "default",
                _ => false,
            };
            if !hit {
                return false;
            }
        }
        !(self.labelled(snap, client) || self.labelled(snap, server))
    }
}

/// The Query service.
#[derive(Debug, Clone)]
pub struct QueryService {
    pub store: Arc<EdgeStore>,
    pub cluster: ClusterHandle,
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[tonic::async_trait]
impl Query for QueryService {
    type StreamEdgesStream = ReceiverStream<Result<pb::ListEdgesResponse, Status>>;

    async fn stream_edges(
        &self,
        request: Request<pb::ListEdgesRequest>,
    ) -> Result<Response<Self::StreamEdgesStream>, Status> {
        let filter = EdgeFilter::from_request(request.get_ref())?;
        let snap = self.cluster.snapshot();
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(QUEUED_PAGES);
        tokio::task::spawn_blocking(move || {
            let mut pages = 0usize;
            let outcome = scan_pages(&store, &snap, &filter, PAGE_BYTES, None, |edges| {
                pages += 1;
                tx.blocking_send(Ok(pb::ListEdgesResponse { edges })).is_ok()
            });
            debug!(pages, stopped = ?outcome.err(), "edges streamed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_edges(
        &self,
        request: Request<pb::ListEdgesRequest>,
    ) -> Result<Response<pb::ListEdgesResponse>, Status> {
        let filter = EdgeFilter::from_request(request.get_ref())?;
        let snap = self.cluster.snapshot();
        let store = self.store.clone();
        let edges = tokio::task::spawn_blocking(move || {
            let mut edges = Vec::new();
            scan_pages(&store, &snap, &filter, PAGE_BYTES, Some(LIST_LIMIT_BYTES), |page| {
                edges.extend(page);
                true
            })
            .map(|()| edges)
        })
        .await
        .map_err(CallError::task("list"))?;
        match edges {
            Ok(edges) => Ok(Response::new(pb::ListEdgesResponse { edges })),
            Err(Stop::TooLarge(limit)) => Err(CallError::TooLarge { limit }.into()),
            Err(Stop::Gone) => Err(CallError::Cancelled.into()),
        }
    }

    async fn reset(&self, _request: Request<pb::ResetRequest>) -> Result<Response<pb::ResetResponse>, Status> {
        let store = self.store.clone();
        let removed = tokio::task::spawn_blocking(move || store.reset())
            .await
            .map_err(CallError::task("reset"))?
            .map_err(CallError::Reset)?;
        info!(removed, "map reset");
        self.metrics.edges.set(0);
        Ok(Response::new(pb::ResetResponse { removed_edges: removed as u64 }))
    }

    async fn health(&self, _request: Request<pb::HealthRequest>) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(pb::HealthResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready: self.cluster.is_ready() && self.store.is_healthy(),
            edges: self.store.len() as u64,
            flows_unresolved: self.metrics.unresolved_total.load(std::sync::atomic::Ordering::Relaxed),
        }))
    }
}

#[cfg(test)]
mod tests {
    use mapper_cluster::Workload;

    use super::*;
    use crate::store::{EdgeKey, Observation, Proto, Side};

    fn store_of(n: usize) -> (tempfile::TempDir, EdgeStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EdgeStore::open(dir.path()).expect("open");
        let observations: Vec<Observation> = (0..n)
            .map(|i| Observation {
                key: EdgeKey {
                    client: Peer::Workload(Workload::new(
                        format!("c{}", i % 97),
                        format!("team{}", i % 3),
                        "Deployment",
                    )),
                    server: Peer::Workload(Workload::new(format!("s{i}"), "team9", "Deployment")),
                },
                side: Side::Client,
                port: 8080,
                proto: Proto::Tcp,
                established: 1,
                failed: 0,
                first_seen_ms: 1,
                last_seen_ms: 1 + i as i64,
                dns_names: vec![],
                via_service: None,
            })
            .collect();
        store.apply(&crate::store::AgentBoot::new("n", "b"), 1, &observations).expect("apply");
        (dir, store)
    }

    #[test]
    fn pages_are_bounded_sorted_and_complete() {
        let (_dir, store) = store_of(5000);
        let snap = Snapshot::default();
        let filter = EdgeFilter::default();
        let mut pages = Vec::new();
        scan_pages(&store, &snap, &filter, 10_000, None, |p| {
            pages.push(p);
            true
        })
        .expect("scan");
        let largest = pages.iter().flatten().map(|e| 2 + e.encoded_len()).max().unwrap_or(0);
        for p in &pages {
            let bytes = pb::ListEdgesResponse { edges: p.clone() }.encoded_len();
            assert!(!p.is_empty() && bytes < 10_000 + largest, "a page of {bytes} bytes");
        }
        let edges: Vec<pb::Edge> = pages.into_iter().flatten().collect();
        let expected: Vec<pb::Edge> =
            store.edges().iter().map(|(k, s)| edge_to_pb(&k.client, &k.server, s, &snap)).collect();
        assert_eq!(edges.len(), 5000);
        assert!(edges == expected, "pages differ from the map in key order");
    }

    /// The releases on the wire are the cluster state's at query time; the stored key has none.
    #[test]
    fn edges_carry_their_workloads_current_releases() {
        let (_dir, store) = store_of(3);
        let inventory_dir = tempfile::tempdir().expect("tempdir");
        // c0.team0's Deployment is in release `clients`; the servers are in no release.
        let inventory = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: c0\n  namespace: team0\n  \
                         annotations: {meta.helm.sh/release-name: clients, meta.helm.sh/release-namespace: ops}\n\
                         ---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: c0-x\n  namespace: team0\n  uid: u-c0\n  \
                         ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: c0, uid: d, controller: true}]\n\
                         spec:\n  containers: [{name: main, image: x}]\nstatus:\n  podIP: 10.244.0.9\n\
                         ---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: s0\n  namespace: team9\n  uid: u-s0\n\
                         spec:\n  containers: [{name: main, image: x}]\nstatus:\n  podIP: 10.244.0.10\n";
        std::fs::write(inventory_dir.path().join("cluster.yaml"), inventory).expect("write the inventory");
        let snap = mapper_cluster::Inventory::load(vec![inventory_dir.path().to_path_buf()], Default::default())
            .unwrap_or_else(|e| panic!("inventory: {e}"))
            .snapshot();
        let mut edges = Vec::new();
        scan_pages(&store, &snap, &EdgeFilter::default(), PAGE_BYTES, None, |p| {
            edges.extend(p);
            true
        })
        .expect("scan");
        let release = |p: &Option<pb::Peer>| p.as_ref().and_then(pb::Peer::release);
        let clients: Vec<(String, Option<Release>)> = edges
            .iter()
            .map(|e| {
                (
                    e.client.as_ref().and_then(|c| Peer::try_from(c).ok()).map(|c| c.name()).unwrap_or_default(),
                    release(&e.client),
                )
            })
            .collect();
        assert_eq!(
            clients,
            [("c0".to_owned(), Some(Release::new("clients", "ops"))), ("c1".to_owned(), None), ("c2".to_owned(), None)]
        );
        assert!(edges.iter().all(|e| release(&e.server).is_none()), "no server is in a release");
        assert!(store.edges().iter().all(|(k, _)| k.client.workload().is_some()), "keys are plain workloads");
        let (key, state) = &store.edges()[0];
        let without = edge_to_pb(&key.client, &key.server, state, &Snapshot::default());
        assert_eq!(release(&without.client), None, "a workload the cluster state does not know has none");
    }

    /// Labels asked for ride on the workloads; a bare label key leaves out every workload whose
    /// pods carry it, whatever the value.
    #[test]
    fn labels_asked_for_are_sent_and_bare_label_keys_exclude() {
        let (_dir, store) = store_of(3);
        let inventory_dir = tempfile::tempdir().expect("tempdir");
        let deployment = |name: &str, ns: &str, labels: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\n---\n\
                 apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-x\n  namespace: {ns}\n  uid: u-{name}\n  \
                 labels: {labels}\n  ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: {name}, uid: \
                 d-{name}, controller: true}}]\nspec:\n  containers: [{{name: main, image: x}}]\n---\n"
            )
        };
        let inventory = [
            deployment("c0", "team0", "{tier: web, app: c0}"),
            deployment("c1", "team1", "{tier: db}"),
            deployment("c2", "team2", "{}"),
            deployment("s1", "team9", "{debug: 'yes'}"),
        ]
        .concat();
        std::fs::write(inventory_dir.path().join("cluster.yaml"), inventory).expect("write the inventory");
        let snap = mapper_cluster::Inventory::load(vec![inventory_dir.path().to_path_buf()], Default::default())
            .unwrap_or_else(|e| panic!("inventory: {e}"))
            .snapshot();
        let scan = |request: pb::ListEdgesRequest| {
            let filter = EdgeFilter::from_request(&request).expect("valid");
            let mut edges = Vec::new();
            scan_pages(&store, &snap, &filter, PAGE_BYTES, None, |p| {
                edges.extend(p);
                true
            })
            .expect("scan");
            edges
        };
        let asked = scan(pb::ListEdgesRequest { include_labels: vec!["tier".into()], ..Default::default() });
        let tiers: Vec<Option<&str>> = asked.iter().map(|e| e.client.as_ref().and_then(|c| c.label("tier"))).collect();
        assert_eq!(tiers, [Some("web"), Some("db"), None]);
        let sent = |e: &pb::Edge| match e.client.as_ref().and_then(|c| c.peer.as_ref()) {
            Some(pb::peer::Peer::Workload(w)) => w.labels.len(),
            _ => usize::MAX,
        };
        assert_eq!(asked.iter().map(sent).collect::<Vec<_>>(), [1, 1, 0], "only the keys asked for");
        assert!(scan(pb::ListEdgesRequest::default()).iter().all(|e| sent(e) == 0), "no labels unless asked");

        let left = scan(pb::ListEdgesRequest { exclude_label_keys: vec!["tier".into()], ..Default::default() });
        let clients: Vec<String> = left
            .iter()
            .filter_map(|e| e.client.as_ref().and_then(|c| Peer::try_from(c).ok()).map(|c| c.name()))
            .collect();
        assert_eq!(clients, ["c2"], "a bare key excludes whatever the value");
        let left = scan(pb::ListEdgesRequest { exclude_label_keys: vec!["debug".into()], ..Default::default() });
        assert_eq!(left.len(), 2, "a server's label excludes its edges too");
        let empty = pb::ListEdgesRequest { exclude_label_keys: vec![String::new()], ..Default::default() };
        assert!(EdgeFilter::from_request(&empty).is_err(), "an empty key is refused");
    }

    #[test]
    fn filters_apply_while_scanning_and_limits_stop_it() {
        let (_dir, store) = store_of(5000);
        let snap = Snapshot::default();
        let request = pb::ListEdgesRequest {
            client_namespaces: vec!["team1".into()],
            client_workloads: vec!["c1.team1".into(), "c4.team1".into()],
            since_ms: 2500,
            ..Default::default()
        };
        let filter = EdgeFilter::from_request(&request).expect("valid");
        let mut got = Vec::new();
        scan_pages(&store, &snap, &filter, PAGE_BYTES, None, |p| {
            got.extend(p);
            true
        })
        .expect("scan");
        let wanted = store.edges_where(|k, s| {
            let Peer::Workload(c) = &*k.client else { return false };
            (&*c.name == "c1" || &*c.name == "c4") && &*c.namespace == "team1" && s.last_seen_ms >= 2500
        });
        assert!(!wanted.is_empty());
        assert_eq!(got, wanted.iter().map(|(k, s)| edge_to_pb(&k.client, &k.server, s, &snap)).collect::<Vec<_>>());

        let all = EdgeFilter::default();
        assert_eq!(scan_pages(&store, &snap, &all, PAGE_BYTES, Some(10_000), |_| true), Err(Stop::TooLarge(10_000)));
        let mut sent = 0;
        let gone = scan_pages(&store, &snap, &all, 1_000, None, |_| {
            sent += 1;
            false
        });
        assert_eq!((gone, sent), (Err(Stop::Gone), 1), "a reader that went away stops the scan");
        let bad = pb::ListEdgesRequest { client_workloads: vec!["c1".into()], ..Default::default() };
        let err = EdgeFilter::from_request(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "client_workloads \"c1\": expected NAME.NAMESPACE");
    }
}
