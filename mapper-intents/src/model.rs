//! The version-neutral model: workload identities, intent targets, observed edges and one
//! `ClientIntents` document independent of its API version.

use serde::{Deserialize, Serialize};

pub use mapper_model::{API_SERVER_NAME, API_SERVER_NAMESPACE, Workload};

/// The workload kind the operator gives to a Kubernetes Service target.
pub const SERVICE_KIND: &str = "Service";

/// One HTTP resource of an `http` intent (a path and the methods allowed on it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HttpResource {
    /// URL path, e.g. `/api/v1/transactions`.
    pub path: String,
    /// HTTP methods (`GET`, `POST`, …).
    #[serde(default)]
    pub methods: Vec<String>,
}

/// A workload target. `namespace: None` means "the client's namespace", which is how a
/// target name without `.<namespace>` reads in every ClientIntents version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadTarget {
    /// Server workload name.
    pub name: String,
    /// Server namespace; `None` = same as the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Server kind; `None` when not known or not expressible (v1alpha2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// HTTP resources when the intent is restricted to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpResource>,
}

/// A Kubernetes Service target (the operator resolves it to the pods its selector selects).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceTarget {
    /// Service name.
    pub name: String,
    /// Service namespace; `None` = same as the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// HTTP resources when the intent is restricted to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpResource>,
}

/// Traffic leaving the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Internet {
    /// DNS names (may start with `*.`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// IP addresses or CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Destination ports; empty = any port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

/// Target kinds this crate carries through without interpreting them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherKind {
    /// `kafka{name, topics}` (v1: `type: kafka`).
    Kafka,
    /// `sql{name, privileges}` (v1: `type: database`).
    Sql,
    /// `aws{arn, actions}`.
    Aws,
    /// `gcp{resource, permissions}`.
    Gcp,
    /// `azure{scope, roles, keyVaultPolicy, …}`.
    Azure,
}

impl OtherKind {
    /// Every kind, in the order the operator's v2 `Target` declares them.
    pub const ALL: [OtherKind; 5] =
        [OtherKind::Kafka, OtherKind::Sql, OtherKind::Aws, OtherKind::Gcp, OtherKind::Azure];

    /// The key of this kind in a v2 target (`kafka`, `sql`, …).
    pub fn key(self) -> &'static str {
        match self {
            OtherKind::Kafka => "kafka",
            OtherKind::Sql => "sql",
            OtherKind::Aws => "aws",
            OtherKind::Gcp => "gcp",
            OtherKind::Azure => "azure",
        }
    }
}

/// A target kind that is not modelled here, kept as its v2 body so that nothing is lost when a
/// document is parsed, converted and rendered again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherTarget {
    /// Which kind of target this is.
    pub kind: OtherKind,
    /// The body as a v2 target carries it (e.g. `{name: kafka.kafka, topics: [...]}`), as the
    /// JSON value the API server stores (its keys are written back sorted, as `kubectl get`
    /// prints them).
    pub body: serde_json::Value,
}

/// What a client intends to reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// A workload (Deployment, StatefulSet, …) in the cluster.
    Workload(WorkloadTarget),
    /// A Kubernetes Service.
    Service(ServiceTarget),
    /// The Kubernetes API server (the `kubernetes` Service in `default`).
    ///
    /// Always written as a *Service* target: `svc:kubernetes.default` in v1alpha2/v1alpha3/v1beta1
    /// and `service: {name: kubernetes.default}` in v2 — `svc:kubernetes` and `service: {name:
    /// kubernetes}` in a document of `default`, as the Otterize CLI writes it. The operator
    /// recognises the API server only among Service targets (`IsTargetServerKubernetesService`
    /// and then `IsTargetTheKubernetesAPIServer`), and its own v2 → v1alpha3 conversion writes
    /// `svc:kubernetes.default`; a bare `kubernetes.default` would name a workload called
    /// `kubernetes`, which does not exist. Reading accepts every spelling that resolves to it.
    ApiServer,
    /// Destinations outside the cluster.
    Internet(Internet),
    /// Kafka, SQL and cloud targets, carried opaquely.
    Other(OtherTarget),
}

impl Target {
    /// A workload target with a namespace and an optional kind.
    pub fn workload(name: &str, namespace: Option<&str>, kind: Option<&str>) -> Self {
        Target::Workload(WorkloadTarget {
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            kind: kind.map(str::to_owned),
            http: Vec::new(),
        })
    }

    /// A Service target.
    pub fn service(name: &str, namespace: Option<&str>) -> Self {
        Target::Service(ServiceTarget {
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            http: Vec::new(),
        })
    }

    /// The server's name and namespace as the operator reads them (`internet` and the kind key
    /// for targets outside the cluster); `client_namespace` fills in a missing namespace.
    pub fn server_name_and_namespace(&self, client_namespace: &str) -> (String, String) {
        let resolve = |ns: &Option<String>| ns.clone().unwrap_or_else(|| client_namespace.to_owned());
        match self {
            Target::Workload(w) => (w.name.clone(), resolve(&w.namespace)),
            Target::Service(s) => (s.name.clone(), resolve(&s.namespace)),
            Target::ApiServer => (API_SERVER_NAME.to_owned(), API_SERVER_NAMESPACE.to_owned()),
            Target::Internet(_) => ("internet".to_owned(), String::new()),
            Target::Other(o) => (o.kind.key().to_owned(), String::new()),
        }
    }

    /// The same target with an explicit namespace equal to `client_namespace` dropped, so that
    /// `ledger.team1` and `ledger` compare equal inside a document of `team1`.
    pub fn normalized(&self, client_namespace: Option<&str>) -> Target {
        let drop_same = |ns: &Option<String>| match (ns, client_namespace) {
            (Some(ns), Some(client)) if ns == client => None,
            _ => ns.clone(),
        };
        match self {
            Target::Workload(w) => Target::Workload(WorkloadTarget { namespace: drop_same(&w.namespace), ..w.clone() }),
            Target::Service(s) => Target::Service(ServiceTarget { namespace: drop_same(&s.namespace), ..s.clone() }),
            other => other.clone(),
        }
    }
}

/// One `ClientIntents` object, whatever its API version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientIntentsDoc {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`; `None` when the document leaves it to `kubectl apply -n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The client workload's name (`spec.service.name` / `spec.workload.name`).
    pub client_name: String,
    /// The client workload's kind (`spec.service.kind` / `spec.workload.kind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_kind: Option<String>,
    /// What the client intends to reach, in document order.
    pub targets: Vec<Target>,
}

impl ClientIntentsDoc {
    /// The client as a [`Workload`]; `default_namespace` stands in for a missing namespace.
    pub fn client(&self, default_namespace: &str) -> Workload {
        Workload::with_kind(
            self.client_name.as_str(),
            self.namespace.as_deref().unwrap_or(default_namespace),
            self.client_kind.as_deref(),
        )
    }

    /// The same document with every target [normalized](Target::normalized) and exact duplicate
    /// targets removed (first occurrence kept) — the form to compare documents in.
    pub fn normalized(&self) -> ClientIntentsDoc {
        let mut targets: Vec<Target> = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let target = target.normalized(self.namespace.as_deref());
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        ClientIntentsDoc { targets, ..self.clone() }
    }
}

/// Transport protocol of an observed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

/// A server port seen on an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Port {
    /// Port number.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: Protocol,
}

/// A Kubernetes Service by name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceName {
    /// Service name.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
}

/// Namespace of the cluster DNS Service (`kube-dns`, served by CoreDNS).
pub const CLUSTER_DNS_NAMESPACE: &str = "kube-system";
/// Names the cluster DNS Service goes by in `kube-system`.
pub const CLUSTER_DNS_SERVICES: &[&str] = &["kube-dns", "coredns"];

impl Edge {
    /// Whether this is a call to the cluster DNS: only port 53, to a server in `kube-system`
    /// or through the `kube-dns` (or `coredns`) Service there. Every pod resolving names
    /// makes one, the operator never blocks them, and Otterize leaves them out of exports.
    pub fn is_cluster_dns(&self) -> bool {
        if self.ports.is_empty() || self.ports.iter().any(|p| p.port != 53) {
            return false;
        }
        let through_dns_service = self
            .via_services
            .iter()
            .any(|s| s.namespace == CLUSTER_DNS_NAMESPACE && CLUSTER_DNS_SERVICES.contains(&s.name.as_str()));
        let server_namespace = match &self.server {
            Target::Workload(w) => w.namespace.as_deref(),
            Target::Service(s) => s.namespace.as_deref(),
            _ => None,
        }
        .unwrap_or(&self.client.namespace);
        through_dns_service
            || (server_namespace == CLUSTER_DNS_NAMESPACE && !matches!(self.server, Target::Internet(_)))
    }
}

/// `8080/TCP`.
impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        };
        write!(f, "{}/{protocol}", self.port)
    }
}

/// One observed (client, server) pair as mapper-server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// The client workload.
    pub client: Workload,
    /// The server side; a namespace of `None` means the client's namespace.
    pub server: Target,
    /// Server ports seen, with their protocol.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Connections (or datagrams) that were established.
    #[serde(default)]
    pub established: u64,
    /// Connection attempts that failed.
    #[serde(default)]
    pub failed: u64,
    /// First time seen, unix milliseconds.
    #[serde(default)]
    pub first_seen_ms: i64,
    /// Last time seen, unix milliseconds.
    #[serde(default)]
    pub last_seen_ms: i64,
    /// Services whose ClusterIP the client dialled to reach the server (empty when it dialled
    /// pod IPs directly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via_services: Vec<ServiceName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_serialize_as_plain_tagged_json() {
        let edge = Edge {
            client: Workload::new("api", "team1", "Deployment"),
            server: Target::workload("ledger", Some("team3"), Some("StatefulSet")),
            ports: vec![Port { port: 53, protocol: Protocol::Udp }],
            established: 2,
            failed: 1,
            first_seen_ms: 10,
            last_seen_ms: 20,
            via_services: Vec::new(),
        };
        let json = serde_json::to_string(&edge).unwrap_or_else(|e| panic!("serialize: {e}"));
        assert_eq!(
            json,
            r#"{"client":{"name":"api","namespace":"team1","kind":"Deployment"},"server":{"type":"workload","name":"ledger","namespace":"team3","kind":"StatefulSet"},"ports":[{"port":53,"protocol":"UDP"}],"established":2,"failed":1,"first_seen_ms":10,"last_seen_ms":20}"#
        );
        let back: Edge = serde_json::from_str(&json).unwrap_or_else(|e| panic!("deserialize: {e}"));
        assert_eq!(back, edge);
        let api: Target = serde_json::from_str(r#"{"type":"api_server"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(api, Target::ApiServer);
    }

    #[test]
    fn normalizing_drops_the_own_namespace_and_duplicates() {
        let doc = ClientIntentsDoc {
            name: "c".to_owned(),
            namespace: Some("team1".to_owned()),
            client_name: "c".to_owned(),
            client_kind: None,
            targets: vec![
                Target::workload("ledger", Some("team1"), None),
                Target::workload("ledger", None, None),
                Target::service("s", Some("team2")),
            ],
        };
        let normalized = doc.normalized();
        assert_eq!(normalized.targets, [Target::workload("ledger", None, None), Target::service("s", Some("team2"))]);
        assert_eq!(doc.client("x"), Workload::without_kind("c", "team1"));
        let (name, ns) = Target::ApiServer.server_name_and_namespace("team1");
        assert_eq!((name.as_str(), ns.as_str()), ("kubernetes", "default"));
    }
}
