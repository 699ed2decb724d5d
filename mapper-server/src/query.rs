//! The Query service: edges for the CLI, filtered; reset; health.

use std::sync::Arc;

use mapper_cluster::{ClusterHandle, Peer, Snapshot};
use mapper_proto::v1::{self as pb, query_server::Query};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::{
    ingest::ip_to_bytes,
    store::{EdgeKey, EdgeState, EdgeStore, Proto},
};

/// A peer on the wire.
pub fn peer_to_pb(p: &Peer, dns_names: &[String]) -> pb::Peer {
    use pb::peer::Peer as P;
    let peer = match p {
        Peer::Workload(w) => {
            P::Workload(pb::Workload { name: w.name.clone(), namespace: w.namespace.clone(), kind: w.kind.clone() })
        }
        Peer::Service { name, namespace } => {
            P::Service(pb::ServiceRef { name: name.clone(), namespace: namespace.clone() })
        }
        Peer::ApiServer => P::ApiServer(pb::ApiServer {}),
        Peer::External { ip } => P::External(pb::External { ip: ip_to_bytes(*ip), dns_names: dns_names.to_vec() }),
        Peer::Unresolved { ip, reason } => {
            P::Unresolved(pb::Unresolved { ip: ip_to_bytes(*ip), reason: reason.as_str().to_string() })
        }
        Peer::Node { name } => P::Node(pb::Node { name: name.clone() }),
    };
    pb::Peer { peer: Some(peer) }
}

/// An edge on the wire.
pub fn edge_to_pb(k: &EdgeKey, s: &EdgeState) -> pb::Edge {
    let names: Vec<String> = s.dns_names().map(str::to_owned).collect();
    pb::Edge {
        client: Some(peer_to_pb(&k.client, &[])),
        server: Some(peer_to_pb(&k.server, &names)),
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

/// What `ListEdges` asked for, checked.
#[derive(Debug, Default)]
pub struct EdgeFilter {
    pub client_namespaces: Vec<String>,
    pub server: Option<(String, String)>,
    pub since_ms: i64,
    pub exclude_labels: Vec<(String, String)>,
    pub include_unresolved: bool,
    /// Edges with a node end (a node process that is no pod) are left out unless asked for.
    pub include_nodes: bool,
}

impl EdgeFilter {
    /// Validates a request.
    pub fn from_request(r: &pb::ListEdgesRequest) -> Result<Self, Status> {
        let server = if r.server.is_empty() {
            None
        } else {
            let (name, ns) = r
                .server
                .split_once('.')
                .filter(|(n, ns)| !n.is_empty() && !ns.is_empty() && !ns.contains('.'))
                .ok_or_else(|| Status::invalid_argument(format!("server {:?}: expected NAME.NAMESPACE", r.server)))?;
            Some((name.to_string(), ns.to_string()))
        };
        for l in &r.exclude_labels {
            if l.key.is_empty() {
                return Err(Status::invalid_argument("exclude_labels: a label with an empty key"));
            }
        }
        Ok(Self {
            client_namespaces: r.client_namespaces.clone(),
            server,
            since_ms: r.since_ms,
            exclude_labels: r.exclude_labels.iter().map(|l| (l.key.clone(), l.value.clone())).collect(),
            include_unresolved: r.include_unresolved,
            include_nodes: r.include_nodes,
        })
    }

    fn labelled(&self, snap: &Snapshot, p: &Peer) -> bool {
        let Peer::Workload(w) = p else { return false };
        let Some(labels) = snap.labels_of(w) else { return false };
        self.exclude_labels.iter().any(|(k, v)| labels.get(k) == Some(v))
    }

    /// Whether an edge passes the filter.
    pub fn matches(&self, snap: &Snapshot, k: &EdgeKey, s: &EdgeState) -> bool {
        if s.last_seen_ms < self.since_ms {
            return false;
        }
        let node = |p: &Peer| matches!(p, Peer::Node { .. });
        if (node(&k.client) || node(&k.server)) && !self.include_nodes {
            return false;
        }
        let server_resolved =
            matches!(k.server, Peer::Workload(_) | Peer::Service { .. } | Peer::ApiServer | Peer::Node { .. });
        let both_resolved = matches!(k.client, Peer::Workload(_) | Peer::Node { .. }) && server_resolved;
        if !(self.include_unresolved || both_resolved) {
            return false;
        }
        if !self.client_namespaces.is_empty() {
            let Peer::Workload(c) = &k.client else { return false };
            if !self.client_namespaces.iter().any(|n| n == &c.namespace) {
                return false;
            }
        }
        if let Some((name, ns)) = &self.server {
            let hit = match &k.server {
                Peer::Workload(w) => &w.name == name && &w.namespace == ns,
                Peer::Service { name: n, namespace: s } => n == name && s == ns,
                Peer::ApiServer => name == "kubernetes" && ns == "default",
                _ => false,
            };
            if !hit {
                return false;
            }
        }
        !(self.labelled(snap, &k.client) || self.labelled(snap, &k.server))
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
    async fn list_edges(
        &self,
        request: Request<pb::ListEdgesRequest>,
    ) -> Result<Response<pb::ListEdgesResponse>, Status> {
        let filter = EdgeFilter::from_request(request.get_ref())?;
        let snap = self.cluster.snapshot();
        let mut edges: Vec<(EdgeKey, EdgeState)> = self.store.edges_where(|k, s| filter.matches(&snap, k, s));
        edges.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Response::new(pb::ListEdgesResponse { edges: edges.iter().map(|(k, s)| edge_to_pb(k, s)).collect() }))
    }

    async fn reset(&self, _request: Request<pb::ResetRequest>) -> Result<Response<pb::ResetResponse>, Status> {
        let store = self.store.clone();
        let removed = tokio::task::spawn_blocking(move || store.reset())
            .await
            .map_err(|e| Status::internal(format!("reset task failed: {e}")))?
            .map_err(|e| Status::internal(format!("cannot reset the store: {e}")))?;
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
