//! The server's edges as plain values ([`ObservedEdge`]), the query flags `export`, `list` and
//! `visualize` share ([`QueryArgs`]), and the conversion into [`mapper_intents::Edge`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use mapper_intents::{Internet, Port, Protocol, ServiceName, Target, Workload};
use mapper_proto::v1 as pb;
use serde::Serialize;

pub use mapper_model::{Peer, Release};

use crate::connect::{ConnectError, EdgePages, Mapper};

/// An end of an edge as the CLI shows it: the peer, with the DNS names clients resolved to its
/// address (an outside server's; empty otherwise) and the Helm release its workload belongs to.
///
/// Written as `list` names it (`ledger in namespace team3`), and in JSON as
/// `{"type": "workload", "name", "namespace", "kind", "release": {"name", "namespace"}}`,
/// `{"type": "external", "ip", "dns_names"}`, … (`kind`, `release` and `dns_names` left out when
/// unknown or empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerView {
    /// The peer.
    pub peer: Peer,
    /// DNS names clients resolved to its address, sorted and distinct.
    pub dns_names: Vec<String>,
    /// The Helm release of its workload, as mapper-server's cluster state says now.
    pub release: Option<Release>,
}

impl PeerView {
    /// A peer with no DNS names and no release.
    pub fn of(peer: &Peer) -> Self {
        Self { peer: peer.clone(), dns_names: Vec::new(), release: None }
    }
}

/// How `list -o json` writes a peer.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PeerJson<'a> {
    Workload {
        name: &'a str,
        namespace: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        release: Option<&'a Release>,
    },
    Service {
        name: &'a str,
        namespace: &'a str,
    },
    ApiServer,
    External {
        ip: IpAddr,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        dns_names: &'a [String],
    },
    Unresolved {
        ip: IpAddr,
        reason: &'static str,
    },
    Node {
        name: &'a str,
    },
}

impl Serialize for PeerView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let json = match &self.peer {
            Peer::Workload(w) => PeerJson::Workload {
                name: &w.name,
                namespace: &w.namespace,
                kind: w.kind(),
                release: self.release.as_ref(),
            },
            Peer::Service { name, namespace } => PeerJson::Service { name, namespace },
            Peer::ApiServer => PeerJson::ApiServer,
            Peer::External { ip } => PeerJson::External { ip: *ip, dns_names: &self.dns_names },
            Peer::Unresolved { ip, reason } => PeerJson::Unresolved { ip: *ip, reason: reason.as_str() },
            Peer::Node { name } => PeerJson::Node { name },
        };
        json.serialize(s)
    }
}

/// How `list` names a peer: `ledger in namespace team3`.
impl fmt::Display for PeerView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.peer {
            Peer::Workload(w) => write!(f, "{} in namespace {}", w.name, w.namespace),
            Peer::Service { name, namespace } => write!(f, "Service {name} in namespace {namespace}"),
            Peer::ApiServer => f.write_str("the Kubernetes API server, kubernetes.default"),
            Peer::External { ip } if self.dns_names.is_empty() => write!(f, "{ip}, outside the cluster"),
            Peer::External { ip } => write!(f, "{} at {ip}, outside the cluster", self.dns_names.join(", ")),
            Peer::Unresolved { ip, reason } => write!(f, "{ip}, unresolved: {reason}"),
            Peer::Node { name } => write!(f, "node {name} (a node process, no pod)"),
        }
    }
}

/// Ports as `8080/TCP, 53/UDP`.
pub fn ports_text(ports: &[Port]) -> String {
    ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// One (client, server) pair the server has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedEdge {
    /// The client.
    pub client: Peer,
    /// The server.
    pub server: Peer,
    /// DNS names clients resolved to the server's address (an outside server's), sorted and
    /// distinct.
    pub dns_names: Vec<String>,
    /// Server ports seen, sorted.
    pub ports: Vec<Port>,
    /// Connections (or datagrams) established.
    pub established: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    /// First seen, Unix milliseconds.
    pub first_seen_ms: i64,
    /// Last seen, Unix milliseconds.
    pub last_seen_ms: i64,
    /// The client's node agent saw it.
    pub seen_by_client: bool,
    /// The server's node agent saw it.
    pub seen_by_server: bool,
    /// Services whose ClusterIP the client dialled to reach the server, sorted.
    pub via_services: Vec<ServiceName>,
    /// The Helm release the client workload belongs to (mapper-server's cluster state, now).
    pub client_release: Option<Release>,
    /// The Helm release the server workload belongs to.
    pub server_release: Option<Release>,
    /// The client workload's pods' labels of the keys the request asked for
    /// (`--distinct-by-label`), sorted by key.
    pub client_labels: Vec<(String, String)>,
}

/// An edge from the server that does not fit the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mapper-server sent an invalid edge: edges[{index}].{field}: {problem}")]
pub struct EdgeError {
    /// Index in the answer.
    pub index: usize,
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn peer(p: Option<&pb::Peer>) -> Result<Peer, String> {
    Peer::try_from(p.unwrap_or(&pb::Peer { peer: None })).map_err(|e| e.to_string())
}

impl ObservedEdge {
    /// Reads edge number `index` of a ListEdges answer.
    pub fn from_pb(index: usize, edge: &pb::Edge) -> Result<Self, EdgeError> {
        let bad = |field: &'static str| move |problem: String| EdgeError { index, field, problem };
        let mut ports = Vec::with_capacity(edge.ports.len());
        for p in &edge.ports {
            let port = u16::try_from(p.port).map_err(|_| bad("ports")(format!("{} is not a port", p.port)))?;
            let protocol = match pb::Protocol::try_from(p.protocol) {
                Ok(pb::Protocol::Udp) => Protocol::Udp,
                _ => Protocol::Tcp,
            };
            ports.push(Port { port, protocol });
        }
        ports.sort();
        ports.dedup();
        let mut via_services: Vec<ServiceName> = edge
            .via_services
            .iter()
            .map(|s| ServiceName { name: s.name.clone(), namespace: s.namespace.clone() })
            .collect();
        via_services.sort();
        via_services.dedup();
        let mut dns_names = edge.server.as_ref().map(|p| p.dns_names().to_vec()).unwrap_or_default();
        dns_names.sort();
        dns_names.dedup();
        Ok(Self {
            client: peer(edge.client.as_ref()).map_err(bad("client"))?,
            server: peer(edge.server.as_ref()).map_err(bad("server"))?,
            dns_names,
            ports,
            established: edge.established,
            failed: edge.failed,
            first_seen_ms: edge.first_seen_ms,
            last_seen_ms: edge.last_seen_ms,
            seen_by_client: edge.seen_by_client,
            seen_by_server: edge.seen_by_server,
            via_services,
            client_release: edge.client.as_ref().and_then(pb::Peer::release),
            server_release: edge.server.as_ref().and_then(pb::Peer::release),
            client_labels: match edge.client.as_ref().and_then(|c| c.peer.as_ref()) {
                Some(pb::peer::Peer::Workload(w)) => {
                    w.labels.iter().map(|l| (l.key.clone(), l.value.clone())).collect()
                }
                _ => Vec::new(),
            },
        })
    }

    /// The edge in mapper-intents' terms: `None` when the client is not a workload or the server
    /// is unresolved (neither can be written as an intent).
    pub fn to_intents_edge(&self) -> Option<mapper_intents::Edge> {
        let Peer::Workload(client) = &self.client else { return None };
        let server = match &self.server {
            Peer::Workload(w) => Target::workload(&w.name, Some(&w.namespace), w.kind()),
            Peer::Service { name, namespace } => Target::service(name, Some(namespace)),
            Peer::ApiServer => Target::ApiServer,
            Peer::External { ip } => Target::Internet(Internet {
                domains: self.dns_names.clone(),
                ips: vec![ip.to_string()],
                ports: Vec::new(),
            }),
            Peer::Unresolved { .. } | Peer::Node { .. } => return None,
        };
        Some(mapper_intents::Edge {
            client: client.clone(),
            server,
            ports: self.ports.clone(),
            established: self.established,
            failed: self.failed,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            via_services: self.via_services.clone(),
        })
    }

    /// Whether a peer of this edge is named in `--exclude-services`.
    fn touches(&self, excluded: &[String]) -> bool {
        let named = |p: &Peer| match p {
            Peer::Workload(Workload { name, namespace, .. }) | Peer::Service { name, namespace } => {
                excluded.iter().any(|e| **e == **name || *e == format!("{name}.{namespace}"))
            }
            Peer::ApiServer => excluded.iter().any(|e| e == "kubernetes" || e == "kubernetes.default"),
            Peer::External { .. } | Peer::Unresolved { .. } | Peer::Node { .. } => false,
        };
        named(&self.client) || named(&self.server)
    }
}

/// `--server NAME.NAMESPACE`.
fn parse_server(s: &str) -> Result<String, String> {
    match s.split_once('.') {
        Some((name, ns)) if !name.is_empty() && !ns.is_empty() && !ns.contains('.') => Ok(s.to_owned()),
        _ => Err("expected NAME.NAMESPACE, e.g. ledger.team3".to_owned()),
    }
}

/// One `--exclude-labels`: a label with its value, or a key alone (any value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelFilter {
    /// `KEY=VALUE`: pods carrying the label with this value.
    Pair(pb::LabelPair),
    /// `KEY`: pods carrying the label, whatever its value.
    Key(String),
}

/// `--exclude-labels KEY=VALUE` or `KEY`; the key as Kubernetes allows it (an optional
/// DNS-subdomain prefix and `/`, then a name of at most 63 characters).
fn parse_label(s: &str) -> Result<LabelFilter, String> {
    let (key, value) = match s.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (s, None),
    };
    if let Err(problem) = mapper_intents::names::check_label_key(key) {
        return Err(format!("{key:?} is not a label key: {problem} (expected KEY=VALUE or KEY, e.g. app=debug)"));
    }
    Ok(match value {
        Some(value) => LabelFilter::Pair(pb::LabelPair { key: key.to_owned(), value: value.to_owned() }),
        None => LabelFilter::Key(key.to_owned()),
    })
}

/// `--distinct-by-label KEY`.
fn parse_label_key(s: &str) -> Result<String, String> {
    mapper_intents::names::check_label_key(s).map(|()| s.to_owned()).map_err(|p| format!("not a label key: {p}"))
}

/// Which edges to ask for (shared by `export`, `list` and `visualize`).
#[derive(Debug, Clone, Default, Args)]
pub struct QueryArgs {
    /// Only clients in these namespaces (repeatable, or comma-separated).
    #[arg(
        short = 'n',
        long = "namespaces",
        visible_alias = "namespace",
        value_delimiter = ',',
        value_name = "NAMESPACE"
    )]
    pub namespaces: Vec<String>,
    /// Only the clients of this server, with all their calls (as otterize-cli: each client's
    /// whole ClientIntents, so that applying one does not drop its other calls).
    #[arg(long, conflicts_with = "namespaces", value_parser = parse_server, value_name = "NAME.NAMESPACE")]
    pub server: Option<String>,
    /// Only traffic seen within this long before now (humantime: 30m, 2h, 7d).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Leave out these workloads, as clients and as servers: NAME (any namespace) or
    /// NAME.NAMESPACE (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAME[.NAMESPACE]")]
    pub exclude_services: Vec<String>,
    /// Leave out traffic from or to workloads whose pods carry this label: KEY=VALUE, or KEY
    /// alone for any value (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_label, value_name = "KEY[=VALUE]")]
    pub exclude_labels: Vec<LabelFilter>,
    /// One client per name and value of this pod label, across namespaces (otterize-cli's
    /// --distinct-by-label): clients of one name whose pods carry the same value (or none) are
    /// merged into one, in the first of their namespaces (by name), with the calls of all.
    #[arg(long, value_parser = parse_label_key, value_name = "KEY")]
    pub distinct_by_label: Option<String>,
    /// A server reached through a Service's ClusterIP is named by that Service (`service:
    /// {name: ledger}`, v1 `svc:ledger`) instead of by its workload (otterize-cli's
    /// --as-kubernetes-service); servers called at pod IPs keep their workload.
    #[arg(long)]
    pub as_kubernetes_service: bool,
}

/// Why the edges could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server could not be asked.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server's answer does not fit the protocol.
    #[error(transparent)]
    Edge(#[from] EdgeError),
}

/// A time as Unix milliseconds, the unit of the server's timestamps.
pub fn unix_ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}

/// `since` before `now`, as Unix milliseconds (the epoch when `since` reaches back further).
pub fn unix_ms_before(now: SystemTime, since: Duration) -> i64 {
    unix_ms(now.checked_sub(since).unwrap_or(UNIX_EPOCH))
}

/// A server timestamp (Unix milliseconds) as a time (the epoch when negative, far in the
/// future when beyond what the system's clock can hold).
pub fn time_of(ms: i64) -> SystemTime {
    let after = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    UNIX_EPOCH.checked_add(after).unwrap_or(UNIX_EPOCH + Duration::from_secs(YEAR_10000_S))
}

/// 10000-01-01T00:00:00Z in Unix seconds: RFC 3339 has four-digit years.
const YEAR_10000_S: u64 = 253_402_300_800;

/// A server timestamp as RFC 3339 (`2027-01-15T08:00:00Z`, with milliseconds when `millis`), or
/// its number of Unix milliseconds when RFC 3339 cannot write it (before 1970 or from year
/// 10000 on): any value the server holds is printed.
pub fn timestamp_text(ms: i64, millis: bool) -> String {
    match u64::try_from(ms) {
        Ok(m) if m / 1000 < YEAR_10000_S => {
            let t = time_of(ms);
            if millis {
                humantime::format_rfc3339_millis(t).to_string()
            } else {
                humantime::format_rfc3339_seconds(t).to_string()
            }
        }
        _ => format!("{ms} ms since the Unix epoch"),
    }
}

/// Edges as StreamEdges sends them, sorted by (client, server), read a page at a time, with
/// `--exclude-services` left out.
#[derive(Debug)]
pub struct EdgeStream {
    pages: EdgePages,
    page: std::vec::IntoIter<pb::Edge>,
    index: usize,
    exclude_services: Vec<String>,
    peeked: Option<ObservedEdge>,
}

impl EdgeStream {
    /// Starts the stream for `request`.
    pub async fn start(
        mapper: &mut Mapper,
        request: pb::ListEdgesRequest,
        exclude_services: Vec<String>,
    ) -> Result<Self, FetchError> {
        let health = mapper.health().await?;
        if !health.ready {
            eprintln!(
                "warning: mapper-server at {} has not synced the cluster state yet; the map may be incomplete",
                mapper.address()
            );
        }
        let pages = mapper.stream_edges(request).await?;
        Ok(Self::of_pages(pages, exclude_services))
    }

    /// The stream of pages already asked for.
    fn of_pages(pages: EdgePages, exclude_services: Vec<String>) -> Self {
        Self { pages, page: Vec::new().into_iter(), index: 0, exclude_services, peeked: None }
    }

    /// The next edge; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<ObservedEdge>, FetchError> {
        if let Some(edge) = self.peeked.take() {
            return Ok(Some(edge));
        }
        loop {
            for edge in self.page.by_ref() {
                let edge = ObservedEdge::from_pb(self.index, &edge)?;
                self.index += 1;
                if !edge.touches(&self.exclude_services) {
                    return Ok(Some(edge));
                }
            }
            match self.pages.next().await? {
                Some(page) => self.page = page.into_iter(),
                None => return Ok(None),
            }
        }
    }

    /// The next run of edges that `same` puts together (compared with the run's first edge),
    /// e.g. the edges of one client; `None` at the end.
    pub async fn next_run(
        &mut self,
        same: impl Fn(&ObservedEdge, &ObservedEdge) -> bool,
    ) -> Result<Option<Vec<ObservedEdge>>, FetchError> {
        let Some(first) = self.next().await? else { return Ok(None) };
        let mut run = vec![first];
        while let Some(edge) = self.next().await? {
            if !same(&run[0], &edge) {
                self.peeked = Some(edge);
                break;
            }
            run.push(edge);
        }
        Ok(Some(run))
    }

    /// Every remaining edge.
    pub async fn collect(mut self) -> Result<Vec<ObservedEdge>, FetchError> {
        let mut out = Vec::new();
        while let Some(edge) = self.next().await? {
            out.push(edge);
        }
        Ok(out)
    }
}

impl QueryArgs {
    /// The request for these flags at `now`, with edges of node processes (the kubelet's
    /// probes, node daemons) when `include_nodes`.
    pub fn request(&self, now: SystemTime, include_unresolved: bool, include_nodes: bool) -> pb::ListEdgesRequest {
        let since_ms = self.since.map_or(0, |since| unix_ms_before(now, since).max(1));
        pb::ListEdgesRequest {
            client_namespaces: self.namespaces.clone(),
            server: self.server.clone().unwrap_or_default(),
            since_ms,
            exclude_labels: self
                .exclude_labels
                .iter()
                .filter_map(|l| match l {
                    LabelFilter::Pair(pair) => Some(pair.clone()),
                    LabelFilter::Key(_) => None,
                })
                .collect(),
            exclude_label_keys: self
                .exclude_labels
                .iter()
                .filter_map(|l| match l {
                    LabelFilter::Key(key) => Some(key.clone()),
                    LabelFilter::Pair(_) => None,
                })
                .collect(),
            include_labels: self.distinct_by_label.iter().cloned().collect(),
            include_unresolved,
            include_nodes,
            client_workloads: Vec::new(),
        }
    }

    /// Starts streaming the edges (see [`QueryArgs::fetch`]).
    pub async fn stream(
        &self,
        mapper: &mut Mapper,
        include_unresolved: bool,
        include_nodes: bool,
    ) -> Result<EdgeStream, FetchError> {
        let mut request = self.request(SystemTime::now(), include_unresolved, include_nodes);
        if self.server.is_some() {
            // otterize-cli exports the whole ClientIntents of each client of --server: first the
            // clients, then all their edges. (No client: the server filter stays, and finds none.)
            let mut calls = EdgeStream::start(mapper, request.clone(), self.exclude_services.clone()).await?;
            let mut clients = BTreeSet::new();
            while let Some(edge) = calls.next().await? {
                if let Peer::Workload(w) = &edge.client {
                    clients.insert(format!("{}.{}", w.name, w.namespace));
                }
            }
            if !clients.is_empty() {
                request.server = String::new();
                request.client_workloads = clients.into_iter().collect();
            }
            let pages = mapper.stream_edges(request).await?;
            return Ok(EdgeStream::of_pages(pages, self.exclude_services.clone()));
        }
        EdgeStream::start(mapper, request, self.exclude_services.clone()).await
    }

    /// Fetches the edges, leaving out `--exclude-services`. Warns on stderr when the server
    /// has not synced the cluster state yet (the map may then lack recent workloads).
    pub async fn fetch(
        &self,
        mapper: &mut Mapper,
        include_unresolved: bool,
        include_nodes: bool,
    ) -> Result<Vec<ObservedEdge>, FetchError> {
        self.stream(mapper, include_unresolved, include_nodes).await?.collect().await
    }
}

/// Whether two edges have clients of the same workload name, whatever their namespaces: the
/// runs `--distinct-by-label` merges (the server sends edges sorted by client name first).
pub fn same_client_name(a: &ObservedEdge, b: &ObservedEdge) -> bool {
    match (&a.client, &b.client) {
        (Peer::Workload(a), Peer::Workload(b)) => a.name == b.name,
        (a, b) => a == b,
    }
}

/// Whether two edges have the same client.
pub fn same_client(a: &ObservedEdge, b: &ObservedEdge) -> bool {
    a.client == b.client
}

impl QueryArgs {
    /// How to cut the edge stream into runs for [`QueryArgs::view`]: by client, or with
    /// `--distinct-by-label` by client name.
    pub fn run_grouping(&self) -> fn(&ObservedEdge, &ObservedEdge) -> bool {
        if self.distinct_by_label.is_some() { same_client_name } else { same_client }
    }
}

/// The value `--distinct-by-label` groups a client with no such label under, as otterize-cli.
pub const NO_LABEL_VALUE: &str = "no_value";

/// The value of label `key` of each client workload of `edges` ([`NO_LABEL_VALUE`] when its
/// pods carry none).
pub fn client_label_values(edges: &[ObservedEdge], key: &str) -> HashMap<Workload, String> {
    let mut values = HashMap::new();
    for edge in edges {
        if let Peer::Workload(client) = &edge.client {
            let value = edge.client_labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            let slot = values.entry(client.clone()).or_insert_with(|| NO_LABEL_VALUE.to_owned());
            if let Some(value) = value {
                *slot = value;
            }
        }
    }
    values
}

impl QueryArgs {
    /// The edges with `--as-kubernetes-service` applied: a workload server reached through
    /// Services' ClusterIPs becomes one edge to each of those Services.
    pub fn as_services(&self, edges: Vec<ObservedEdge>) -> Vec<ObservedEdge> {
        if !self.as_kubernetes_service {
            return edges;
        }
        let mut out = Vec::with_capacity(edges.len());
        for edge in edges {
            if !matches!(edge.server, Peer::Workload(_)) || edge.via_services.is_empty() {
                out.push(edge);
                continue;
            }
            for service in &edge.via_services {
                let server =
                    Peer::Service { name: service.name.as_str().into(), namespace: service.namespace.as_str().into() };
                out.push(ObservedEdge { server, server_release: None, ..edge.clone() });
            }
        }
        out
    }

    /// The edges as `list` and `visualize` show them: [`QueryArgs::as_services`], and with
    /// `--distinct-by-label` the clients of one name and label value merged into the first of
    /// their namespaces (by name), edges to one server from merged clients added up.
    pub fn view(&self, edges: Vec<ObservedEdge>) -> Vec<ObservedEdge> {
        let edges = self.as_services(edges);
        let Some(key) = &self.distinct_by_label else { return edges };
        let values = client_label_values(&edges, key);
        let mut first: HashMap<(&str, Option<&str>, &str), &str> = HashMap::new();
        for (client, value) in &values {
            let slot = first.entry((&client.name, client.kind(), value.as_str())).or_insert(&client.namespace);
            if *client.namespace < **slot {
                *slot = &client.namespace;
            }
        }
        let merged_client = |client: &Peer| -> Peer {
            let Peer::Workload(w) = client else { return client.clone() };
            let Some(value) = values.get(w) else { return client.clone() };
            match first.get(&(&*w.name, w.kind(), value.as_str())) {
                Some(namespace) => Peer::Workload(Workload::with_kind(&*w.name, *namespace, w.kind())),
                None => client.clone(),
            }
        };
        let mut merged: BTreeMap<(Peer, Peer), ObservedEdge> = BTreeMap::new();
        for edge in &edges {
            let client = merged_client(&edge.client);
            match merged.entry((client.clone(), edge.server.clone())) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(ObservedEdge { client, ..edge.clone() });
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => {
                    let e = slot.get_mut();
                    e.established = e.established.saturating_add(edge.established);
                    e.failed = e.failed.saturating_add(edge.failed);
                    e.first_seen_ms = e.first_seen_ms.min(edge.first_seen_ms);
                    e.last_seen_ms = e.last_seen_ms.max(edge.last_seen_ms);
                    e.seen_by_client |= edge.seen_by_client;
                    e.seen_by_server |= edge.seen_by_server;
                    e.ports.extend(edge.ports.iter().copied());
                    e.ports.sort();
                    e.ports.dedup();
                    e.dns_names.extend(edge.dns_names.iter().cloned());
                    e.dns_names.sort();
                    e.dns_names.dedup();
                    e.via_services.extend(edge.via_services.iter().cloned());
                    e.via_services.sort();
                    e.via_services.dedup();
                }
            }
        }
        merged.into_values().collect()
    }
}

#[cfg(test)]
mod tests;
