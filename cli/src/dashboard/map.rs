//! The map as the page draws it: one node per peer (workload, Service, the API server, an
//! outside address, an unresolved address, a node process) and one edge per (client, server)
//! pair mapper-server keeps, with the ids the page and the audit overlay share.

use std::collections::BTreeMap;
use std::hash::Hasher;

use mapper_intents::{Target, Workload};
use serde::Serialize;

use crate::edges::{ObservedEdge, Peer, Release};

/// The id of a peer's node: `w/<namespace>/<name>/<kind>` (`-` for no kind), `s/<namespace>/<name>`,
/// `api`, `x/<ip>`, `u/<ip>`, `n/<node>`.
pub fn peer_id(peer: &Peer) -> String {
    match peer {
        Peer::Workload(w) => workload_id(w),
        Peer::Service { name, namespace } => format!("s/{namespace}/{name}"),
        Peer::ApiServer => "api".to_owned(),
        Peer::External { ip } => format!("x/{ip}"),
        Peer::Unresolved { ip, .. } => format!("u/{ip}"),
        Peer::Node { name } => format!("n/{name}"),
    }
}

/// The id of a workload's node.
pub fn workload_id(w: &Workload) -> String {
    format!("w/{}/{}/{}", w.namespace, w.name, w.kind().unwrap_or("-"))
}

/// The id of an edge: its ends' ids.
pub fn edge_id(client: &str, server: &str) -> String {
    format!("{client}|{server}")
}

/// The node of an observed call's server, as the audit names it (a target converted from an
/// observed edge by [`ObservedEdge::to_intents_edge`]).
pub fn target_id(client: &Workload, target: &Target) -> Option<String> {
    match target {
        Target::Workload(w) => Some(format!(
            "w/{}/{}/{}",
            w.namespace.as_deref().unwrap_or(&client.namespace),
            w.name,
            w.kind.as_deref().unwrap_or("-")
        )),
        Target::Service(s) => Some(format!("s/{}/{}", s.namespace.as_deref().unwrap_or(&client.namespace), s.name)),
        Target::ApiServer => Some("api".to_owned()),
        Target::Internet(i) if i.ips.len() == 1 => i.ips.first().map(|ip| format!("x/{ip}")),
        Target::Internet(_) | Target::Other(_) => None,
    }
}

/// A node of the map.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// [`peer_id`].
    pub id: String,
    /// `workload`, `service`, `api`, `external`, `unresolved`, `node`.
    #[serde(rename = "type")]
    pub kind_of_peer: &'static str,
    /// The workload's, Service's, node's name, or the address.
    pub name: String,
    /// The namespace of a workload or Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The workload's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The workload's Helm release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// DNS names clients resolved to an outside address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// Why an address is unresolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// An edge of the map.
#[derive(Debug, Clone, Serialize)]
pub struct MapEdge {
    /// [`edge_id`].
    pub id: String,
    /// The client's node.
    pub source: String,
    /// The server's node.
    pub target: String,
    /// `8080/TCP`, sorted.
    pub ports: Vec<String>,
    /// Connections (or datagrams) established.
    pub established: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Unix milliseconds.
    pub first_seen_ms: i64,
    /// Unix milliseconds.
    pub last_seen_ms: i64,
    /// Services whose ClusterIP the client dialled, `name.namespace`.
    pub via_services: Vec<String>,
    /// Seen by the client's node agent.
    pub seen_by_client: bool,
    /// Seen by the server's node agent.
    pub seen_by_server: bool,
}

/// The whole map.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MapView {
    /// Sorted by id.
    pub nodes: Vec<Node>,
    /// In the server's (client, server) order.
    pub edges: Vec<MapEdge>,
}

fn node(peer: &Peer, release: Option<&Release>) -> Node {
    let mut n = Node {
        id: peer_id(peer),
        kind_of_peer: "workload",
        name: String::new(),
        namespace: None,
        kind: None,
        release: None,
        dns_names: Vec::new(),
        reason: None,
    };
    match peer {
        Peer::Workload(w) => {
            n.name = w.name.to_string();
            n.namespace = Some(w.namespace.to_string());
            n.kind = w.kind().map(str::to_owned);
            n.release = release.cloned();
        }
        Peer::Service { name, namespace } => {
            n.kind_of_peer = "service";
            n.name = name.to_string();
            n.namespace = Some(namespace.to_string());
        }
        Peer::ApiServer => {
            n.kind_of_peer = "api";
            n.name = "kubernetes.default".to_owned();
        }
        Peer::External { ip } => {
            n.kind_of_peer = "external";
            n.name = ip.to_string();
        }
        Peer::Unresolved { ip, reason } => {
            n.kind_of_peer = "unresolved";
            n.name = ip.to_string();
            n.reason = Some(reason.as_str());
        }
        Peer::Node { name } => {
            n.kind_of_peer = "node";
            n.name = name.to_string();
        }
    }
    n
}

impl MapView {
    /// The map of `edges`.
    pub fn of(edges: &[ObservedEdge]) -> Self {
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut out = Vec::with_capacity(edges.len());
        for e in edges {
            let client = node(&e.client, e.client_release.as_ref());
            let server = node(&e.server, e.server_release.as_ref());
            let (source, target) = (client.id.clone(), server.id.clone());
            let entry = nodes.entry(client.id.clone()).or_insert(client);
            if entry.release.is_none() {
                entry.release = e.client_release.clone();
            }
            let entry = nodes.entry(server.id.clone()).or_insert(server);
            if entry.release.is_none() {
                entry.release = e.server_release.clone();
            }
            for name in &e.dns_names {
                if !entry.dns_names.contains(name) {
                    entry.dns_names.push(name.clone());
                }
            }
            out.push(MapEdge {
                id: edge_id(&source, &target),
                source,
                target,
                ports: e.ports.iter().map(ToString::to_string).collect(),
                established: e.established,
                failed: e.failed,
                first_seen_ms: e.first_seen_ms,
                last_seen_ms: e.last_seen_ms,
                via_services: e.via_services.iter().map(|s| format!("{}.{}", s.name, s.namespace)).collect(),
                seen_by_client: e.seen_by_client,
                seen_by_server: e.seen_by_server,
            });
        }
        for n in nodes.values_mut() {
            n.dns_names.sort();
        }
        Self { nodes: nodes.into_values().collect(), edges: out }
    }

    /// A fingerprint of the map (FNV-1a of its JSON): the page redraws only when it changes.
    pub fn version(json: &[u8]) -> String {
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(json);
        format!("{:016x}", hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use mapper_intents::{Port, Protocol, ServiceName};

    use super::*;

    fn edge(client: Peer, server: Peer) -> ObservedEdge {
        ObservedEdge {
            client,
            server,
            dns_names: Vec::new(),
            client_labels: Vec::new(),
            ports: vec![Port { port: 8080, protocol: Protocol::Tcp }],
            established: 5,
            failed: 1,
            first_seen_ms: 1,
            last_seen_ms: 2,
            seen_by_client: true,
            seen_by_server: false,
            via_services: vec![ServiceName { name: "ledger".into(), namespace: "team3".into() }],
            client_release: Some(Release::new("payments", "team1")),
            server_release: None,
        }
    }

    #[test]
    fn peers_become_nodes_once_and_edges_name_them() {
        let ts = Peer::Workload(Workload::new("transaction-service", "team1", "Deployment"));
        let ledger = Peer::Workload(Workload::new("ledger", "team3", "Deployment"));
        let out = Peer::External { ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)) };
        let mut second = edge(ts.clone(), out);
        second.dns_names = vec!["api.example.com".into()];
        let map = MapView::of(&[edge(ts, ledger), second]);
        let ids: Vec<&str> = map.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            ["w/team1/transaction-service/Deployment", "w/team3/ledger/Deployment", "x/203.0.113.7"],
            "{map:?}"
        );
        assert_eq!(map.nodes[0].release, Some(Release::new("payments", "team1")));
        assert_eq!(map.nodes[2].dns_names, ["api.example.com"]);
        assert_eq!(map.edges[0].id, "w/team1/transaction-service/Deployment|w/team3/ledger/Deployment");
        assert_eq!(map.edges[0].ports, ["8080/TCP"]);
        assert_eq!(map.edges[0].via_services, ["ledger.team3"]);
    }

    #[test]
    fn audit_targets_name_the_nodes_of_the_edges_they_came_from() {
        let client = Workload::new("transaction-service", "team1", "Deployment");
        let ledger = Peer::Workload(Workload::new("ledger", "team3", "Deployment"));
        let observed = edge(Peer::Workload(client.clone()), ledger.clone());
        let converted = observed.to_intents_edge().unwrap_or_else(|| panic!("an intents edge"));
        assert_eq!(target_id(&client, &converted.server), Some(peer_id(&ledger)));
        let svc = Peer::Service { name: "reports".into(), namespace: "team1".into() };
        let converted = edge(Peer::Workload(client.clone()), svc.clone()).to_intents_edge();
        assert_eq!(converted.and_then(|e| target_id(&client, &e.server)), Some(peer_id(&svc)));
        let out = Peer::External { ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)) };
        let converted = edge(Peer::Workload(client.clone()), out.clone()).to_intents_edge();
        assert_eq!(converted.and_then(|e| target_id(&client, &e.server)), Some(peer_id(&out)));
        assert_eq!(target_id(&client, &Target::ApiServer), Some(peer_id(&Peer::ApiServer)));
    }
}
