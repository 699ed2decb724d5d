//! The ingress NetworkPolicies the Otterize intents operator builds from ClientIntents, and the
//! pod labels they select on.
//!
//! Two layouts:
//! - [`PolicyLayout::Legacy`] (docs/formats.md, "NetworkPolicies"; byte for byte): one policy per (server, client
//!   namespace) in the server's namespace, `access-to-<server>-from-<clientns>`, namespaces
//!   selected by `intents.otterize.com/namespace-name`, server pods by
//!   `intents.otterize.com/server: <serverId>`, identities without kind.
//! - [`PolicyLayout::Current`] (newer operator releases): one policy per server,
//!   `<server>[-<kind>]-access`, one ingress rule per client namespace selected by
//!   `kubernetes.io/metadata.name`, server pods by `intents.otterize.com/service`
//!   (plus `intents.otterize.com/owner-kind` when the kind is known), identities with kind.
//!
//! Only targets inside the cluster get a policy: workloads, Services and Kafka servers. The API
//! server (`kubernetes.default`, whatever the target's kind), internet and cloud targets do not
//! (the operator handles them with egress rules).
//!
//! A Service target (`svc:reports`, `kind: Service`, `service:`) is resolved by the operator
//! through the Service object ([`service`]): its own selector picks the pods, its targetPorts
//! are the allowed ports, and the policy is owned by the Service. The Services come from the
//! caller ([`PolicyOptions::services`]); without them such a policy cannot be shown exactly,
//! and [`PolicySet::notes`] says so. In the current layout a DNS server (a server named `*dns`
//! in `kube-system`) also gets the operator's rule admitting UDP and TCP 53 from anywhere.
//!
//! Every object name, label key and label value is checked against what the API server
//! accepts ([`crate::names`]); what would be refused is in [`PolicySet::problems`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::identity::{formatted_identity, rfc1123_name_with_kind, workload_identity};
use crate::model::{API_SERVER_NAME, API_SERVER_NAMESPACE, ClientIntentsDoc, OtherKind, Target, Workload};
use crate::yaml;

pub mod service;

pub use service::{ClusterService, PortValue, ServicePort};

/// Label the operator puts on every policy it owns.
pub const NETWORK_POLICY_LABEL: &str = "intents.otterize.com/network-policy";
/// Server pod label (legacy layout).
pub const SERVER_LABEL: &str = "intents.otterize.com/server";
/// Server pod label (current layout).
pub const SERVICE_LABEL: &str = "intents.otterize.com/service";
/// Owner-kind pod label (current layout, when the kind is known).
pub const OWNER_KIND_LABEL: &str = "intents.otterize.com/owner-kind";
/// Namespace label the legacy operator puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "intents.otterize.com/namespace-name";
/// The namespace label Kubernetes sets itself.
pub const K8S_NAMESPACE_LABEL: &str = "kubernetes.io/metadata.name";

/// Which operator generation's policies to produce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PolicyLayout {
    /// `access-to-<server>-from-<clientns>`, per client namespace (docs/formats.md, "NetworkPolicies").
    #[default]
    Legacy,
    /// `<server>-access`, one per server.
    Current,
}

/// How to build policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOptions {
    /// Layout to produce.
    pub layout: PolicyLayout,
    /// Namespace of documents that have none (`kubectl apply` would use the context's).
    pub default_namespace: String,
    /// The cluster's Services by (namespace, name), which Service targets are resolved
    /// through; `None` when they were not read (Service targets then get no policy, and a note).
    pub services: Option<BTreeMap<(String, String), ClusterService>>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self { layout: PolicyLayout::Legacy, default_namespace: "default".to_owned(), services: None }
    }
}

/// A peer of an ingress rule: pods in the namespaces `namespace_labels` selects carrying
/// `pod_labels`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressFrom {
    /// The namespace selector's labels.
    pub namespace_labels: BTreeMap<String, String>,
    /// The pod selector's labels.
    pub pod_labels: BTreeMap<String, String>,
}

/// A port of an ingress rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyPort {
    /// The port number or name.
    pub port: PortValue,
    /// `TCP`, `UDP` or `SCTP`; `None` leaves it to the API server (TCP).
    pub protocol: Option<String>,
}

/// One ingress rule: traffic from `from` (anywhere when empty) to `ports` (any when empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressRule {
    /// The peers admitted; empty admits every source.
    pub from: Vec<IngressFrom>,
    /// The ports admitted; empty admits every port.
    pub ports: Vec<PolicyPort>,
}

impl IngressRule {
    /// A rule admitting one peer on any port.
    pub fn from_peer(peer: IngressFrom) -> Self {
        Self { from: vec![peer], ports: Vec::new() }
    }
}

/// The object a policy belongs to (`metadata.ownerReferences`): the Service of a Service
/// target, so that deleting the Service deletes its policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerReference {
    /// `v1`.
    pub api_version: String,
    /// `Service`.
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// The owner's UID.
    pub uid: String,
}

/// An ingress-only `networking.k8s.io/v1` NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (the server's).
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.ownerReferences` (a Service target's Service).
    pub owner: Option<OwnerReference>,
    /// `spec.podSelector.matchLabels` (the server's pods).
    pub pod_selector: BTreeMap<String, String>,
    /// `spec.ingress`, one rule per entry.
    pub ingress: Vec<IngressRule>,
}

/// Which side of a policy a pod label is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelRole {
    /// The server's pods, selected by the policy's `podSelector`.
    Server,
    /// A client's pods, admitted by the policy's ingress rule.
    Client,
}

/// A label a workload's pods must carry (the operator's pod webhook adds these).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodLabel {
    /// The workload whose pods carry it.
    pub workload: Workload,
    /// Server or client side.
    pub role: LabelRole,
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

impl PodLabel {
    fn server(workload: &Workload, key: &str, value: &str) -> Self {
        Self { workload: workload.clone(), role: LabelRole::Server, key: key.to_owned(), value: value.to_owned() }
    }

    fn client(workload: &Workload, key: &str) -> Self {
        Self { workload: workload.clone(), role: LabelRole::Client, key: key.to_owned(), value: "true".to_owned() }
    }
}

/// Every workload's labels as one map (a workload that is both client and server gets both).
pub fn labels_by_workload(labels: &[PodLabel]) -> BTreeMap<Workload, BTreeMap<String, String>> {
    let mut out: BTreeMap<Workload, BTreeMap<String, String>> = BTreeMap::new();
    for label in labels {
        out.entry(label.workload.clone()).or_default().insert(label.key.clone(), label.value.clone());
    }
    out
}

/// Policies plus the labels they rely on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// Policies sorted by (namespace, name).
    pub policies: Vec<NetworkPolicy>,
    /// Labels pods must carry for the policies to admit the intended traffic, sorted.
    pub pod_labels: Vec<PodLabel>,
    /// What the policies shown may differ in from the operator's, or leave out, and why.
    pub notes: Vec<PolicyNote>,
    /// Names and labels the API server would refuse: the operator could not create these
    /// policies (or the pods could not carry these labels).
    pub problems: Vec<NameProblem>,
}

/// A reason the policies shown are not exactly the operator's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum PolicyNote {
    /// Service targets were given but no Services to resolve them.
    #[error(
        "Service {namespace}/{name}: its policy cannot be shown exactly without the Service (the operator selects the \
         pods with its selector and allows its targetPorts): read the Services with --inventory FILE or --cluster"
    )]
    ServiceUnknown {
        /// The Service's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The Service a target names is not in the cluster (or the inventory).
    #[error("Service {namespace}/{name} is not in the cluster: the operator builds no policy for it until it exists")]
    ServiceNotFound {
        /// The Service's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The Service has no selector (its endpoints are managed by hand).
    #[error(
        "Service {namespace}/{name} has no selector: the operator builds no policy for it and reports an error \
         (\"service {namespace}/{name} has no selector\")"
    )]
    ServiceWithoutSelector {
        /// The Service's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The legacy operator skips named targetPorts.
    #[error("Service {namespace}/{name}: the legacy operator leaves out its named targetPort {port:?}")]
    NamedTargetPortSkipped {
        /// The Service's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The targetPort's name.
        port: String,
    },
    /// The Service's UID is unknown, so the ownerReference the operator sets is left out.
    #[error(
        "Service {namespace}/{name}: its uid is unknown, so the ownerReference the operator sets on its policies is \
         left out"
    )]
    ServiceWithoutUid {
        /// The Service's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The legacy layout's policy on a DNS server has no rule for DNS.
    #[error(
        "{namespace}/{name} is a DNS server: the legacy operator's policy admits only its intended clients and blocks \
         DNS for every other pod (current operators add a rule for UDP and TCP 53 from anywhere: --layout current)"
    )]
    LegacyDnsBlocked {
        /// The server's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// A name or label the API server would refuse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error(
    "ClientIntents of {client} in namespace {client_namespace} (target {target}): the operator's NetworkPolicy \
     {policy_namespace}/{policy} would have {field} {value:?}, which the API server refuses: {problem}"
)]
pub struct NameProblem {
    /// The client whose document names the target.
    pub client: String,
    /// The client's namespace.
    pub client_namespace: String,
    /// The target as written (`svc:ledger`, `Ledger.team3`).
    pub target: String,
    /// The policy's name (as it would be).
    pub policy: String,
    /// The policy's namespace.
    pub policy_namespace: String,
    /// What holds the bad value (`metadata.name`, `a label value`, `a label key`).
    pub field: &'static str,
    /// The value.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

/// What a target's policy protects: a workload's pods, or a Service's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Server {
    /// A workload (or a Kafka server), selected by the operator's labels.
    Workload(Workload),
    /// A Service, selected by its own selector (name, namespace).
    Service(String, String),
}

/// The server a target stands for, if it gets an ingress policy: none for the API server
/// (the operator builds none, whichever kind the target gives it), internet and cloud targets.
fn policy_server(target: &Target, client_namespace: &str) -> Option<Server> {
    let (name, namespace, kind, service) = match target {
        Target::Workload(w) => (w.name.clone(), w.namespace.clone(), w.kind.clone(), false),
        Target::Service(s) => (s.name.clone(), s.namespace.clone(), None, true),
        Target::Other(o) if o.kind == OtherKind::Kafka => {
            let written = o.body.get("name").and_then(serde_json::Value::as_str)?;
            let (name, namespace) = written.split_once('.').map_or((written, None), |(n, ns)| (n, Some(ns)));
            (name.to_owned(), namespace.map(str::to_owned), None, false)
        }
        Target::ApiServer | Target::Internet(_) | Target::Other(_) => return None,
    };
    let namespace = namespace.unwrap_or_else(|| client_namespace.to_owned());
    if name == API_SERVER_NAME && namespace == API_SERVER_NAMESPACE {
        return None;
    }
    Some(if service {
        Server::Service(name, namespace)
    } else {
        Server::Workload(Workload::with_kind(name, namespace, kind.as_deref()))
    })
}

/// Whether the operator treats a server as the cluster's DNS (its DNS auto-allow builder):
/// a name ending in `dns` in `kube-system`.
pub fn is_dns_server(name: &str, namespace: &str) -> bool {
    name.ends_with("dns") && namespace == crate::model::CLUSTER_DNS_NAMESPACE
}

/// The current operator's extra rule on a DNS server's policy: UDP and TCP 53 from anywhere.
fn dns_rule() -> IngressRule {
    let port = |protocol: &str| PolicyPort { port: PortValue::Number(53), protocol: Some(protocol.to_owned()) };
    IngressRule { from: Vec::new(), ports: vec![port("UDP"), port("TCP")] }
}

/// How a target is written, for messages: `ledger.team3`, `svc:reports`.
fn target_text(target: &Target) -> String {
    let join = |name: &str, ns: &Option<String>| match ns {
        Some(ns) => format!("{name}.{ns}"),
        None => name.to_owned(),
    };
    match target {
        Target::Workload(w) => join(&w.name, &w.namespace),
        Target::Service(s) => format!("svc:{}", join(&s.name, &s.namespace)),
        Target::Other(o) => o.body.get("name").and_then(serde_json::Value::as_str).unwrap_or(o.kind.key()).to_owned(),
        Target::ApiServer => "kubernetes.default".to_owned(),
        Target::Internet(_) => "internet".to_owned(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Where a server was first named: the client and the target as written.
#[derive(Debug, Clone)]
struct Origin {
    client: Workload,
    target: String,
}

/// Builds the ingress policies and pod labels the operator would produce for `docs`, with the
/// notes on what may differ and the names the API server would refuse.
pub fn network_policies(docs: &[ClientIntentsDoc], opts: &PolicyOptions) -> PolicySet {
    // server → client workloads reaching it, and where it was first named.
    let mut servers: BTreeMap<Server, (BTreeSet<Workload>, Origin)> = BTreeMap::new();
    for doc in docs {
        let client = doc.client(&opts.default_namespace);
        for target in &doc.targets {
            if let Some(mut server) = policy_server(target, &client.namespace) {
                if let (Server::Workload(w), PolicyLayout::Legacy) = (&mut server, opts.layout) {
                    w.kind = None; // legacy identities have no kind
                }
                let origin = Origin { client: client.clone(), target: target_text(target) };
                servers.entry(server).or_insert_with(|| (BTreeSet::new(), origin)).0.insert(client.clone());
            }
        }
    }
    let mut set = PolicySet::default();
    for (server, (clients, origin)) in &servers {
        let first = set.policies.len();
        match (server, opts.layout) {
            (Server::Workload(w), PolicyLayout::Legacy) => legacy(w, clients, &mut set),
            (Server::Workload(w), PolicyLayout::Current) => current(w, clients, &mut set),
            (Server::Service(name, namespace), layout) => {
                service::service_policies(name, namespace, clients, layout, opts.services.as_ref(), &mut set)
            }
        }
        for policy in &set.policies[first..] {
            let problems = check_policy(policy, origin);
            set.problems.extend(problems);
        }
    }
    set.policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    set.pod_labels.sort();
    set.pod_labels.dedup();
    set.notes.sort();
    set.notes.dedup();
    set.problems.sort();
    set.problems.dedup();
    set
}

fn problem_of(
    origin: &Origin,
    policies: &[NetworkPolicy],
    field: &'static str,
    value: &str,
    problem: String,
) -> NameProblem {
    let (policy, policy_namespace) =
        policies.first().map(|p| (p.name.clone(), p.namespace.clone())).unwrap_or_default();
    NameProblem {
        client: origin.client.name.to_string(),
        client_namespace: origin.client.namespace.to_string(),
        target: origin.target.clone(),
        policy,
        policy_namespace,
        field,
        value: value.to_owned(),
        problem,
    }
}

/// The names and labels of `policy` the API server would refuse.
fn check_policy(policy: &NetworkPolicy, origin: &Origin) -> Vec<NameProblem> {
    let mut problems = Vec::new();
    let one = std::slice::from_ref(policy);
    if let Err(p) = crate::names::check_dns1123_subdomain(&policy.name) {
        problems.push(problem_of(origin, one, "metadata.name", &policy.name, p));
    }
    let peers = policy.ingress.iter().flat_map(|r| &r.from);
    let maps = [&policy.labels, &policy.pod_selector]
        .into_iter()
        .chain(peers.flat_map(|p| [&p.namespace_labels, &p.pod_labels]));
    for map in maps {
        for (key, value) in map {
            if let Err(p) = crate::names::check_label_key(key) {
                problems.push(problem_of(origin, one, "a label key", key, p));
            }
            if let Err(p) = crate::names::check_label_value(value) {
                problems.push(problem_of(origin, one, "a label value", value, p));
            }
        }
    }
    problems
}

fn legacy(server: &Workload, clients: &BTreeSet<Workload>, set: &mut PolicySet) {
    let id = formatted_identity(&server.name, &server.namespace);
    let access = format!("intents.otterize.com/access-{id}");
    set.pod_labels.push(PodLabel::server(server, SERVER_LABEL, &id));
    let namespaces: BTreeSet<&str> = clients.iter().map(|c| &*c.namespace).collect();
    for ns in namespaces {
        set.policies.push(NetworkPolicy {
            name: format!("access-to-{}-from-{ns}", server.name),
            namespace: server.namespace.to_string(),
            labels: labels(&[(NETWORK_POLICY_LABEL, &id)]),
            owner: None,
            pod_selector: labels(&[(SERVER_LABEL, &id)]),
            ingress: vec![IngressRule::from_peer(IngressFrom {
                namespace_labels: labels(&[(NAMESPACE_NAME_LABEL, ns)]),
                pod_labels: labels(&[(&access, "true")]),
            })],
        });
    }
    if is_dns_server(&server.name, &server.namespace) {
        set.notes.push(PolicyNote::LegacyDnsBlocked {
            namespace: server.namespace.to_string(),
            name: server.name.to_string(),
        });
    }
    for client in clients {
        set.pod_labels.push(PodLabel::client(client, &access));
    }
}

fn current(server: &Workload, clients: &BTreeSet<Workload>, set: &mut PolicySet) {
    let id = workload_identity(server);
    let plain_id = formatted_identity(&server.name, &server.namespace);
    let access = format!("intents.otterize.com/access-{id}");
    let mut selector = labels(&[(SERVICE_LABEL, &plain_id)]);
    if let Some(kind) = &server.kind {
        selector.insert(OWNER_KIND_LABEL.to_owned(), kind.to_string());
    }
    for (key, value) in &selector {
        set.pod_labels.push(PodLabel::server(server, key, value));
    }
    let namespaces: BTreeSet<&str> = clients.iter().map(|c| &*c.namespace).collect();
    let mut ingress: Vec<IngressRule> = namespaces
        .into_iter()
        .map(|ns| {
            IngressRule::from_peer(IngressFrom {
                namespace_labels: labels(&[(K8S_NAMESPACE_LABEL, ns)]),
                pod_labels: labels(&[(&access, "true")]),
            })
        })
        .collect();
    if is_dns_server(&server.name, &server.namespace) {
        ingress.push(dns_rule());
    }
    set.policies.push(NetworkPolicy {
        name: format!("{}-access", rfc1123_name_with_kind(server)),
        namespace: server.namespace.to_string(),
        labels: labels(&[(NETWORK_POLICY_LABEL, &id)]),
        owner: None,
        pod_selector: selector,
        ingress,
    });
    for client in clients {
        set.pod_labels.push(PodLabel::client(client, &access));
    }
}

/// A NetworkPolicy as the API object, its fields in the order `kubectl` prints them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Object<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    spec: Spec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    name: &'a str,
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_references: Option<[OwnerRef<'a>; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OwnerRef<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec<'a> {
    pod_selector: Selector<'a>,
    ingress: Vec<Rule<'a>>,
    policy_types: [&'static str; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector<'a> {
    match_labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Rule<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    from: Vec<Peer<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Port<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Peer<'a> {
    namespace_selector: Selector<'a>,
    pod_selector: Selector<'a>,
}

#[derive(Serialize)]
struct Port<'a> {
    port: PortOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'a str>,
}

/// IntOrString: a number or a name.
#[derive(Serialize)]
#[serde(untagged)]
enum PortOut<'a> {
    Number(i32),
    Name(&'a str),
}

impl NetworkPolicy {
    fn object(&self) -> Object<'_> {
        let ingress = self
            .ingress
            .iter()
            .map(|rule| Rule {
                from: rule
                    .from
                    .iter()
                    .map(|peer| Peer {
                        namespace_selector: Selector { match_labels: &peer.namespace_labels },
                        pod_selector: Selector { match_labels: &peer.pod_labels },
                    })
                    .collect(),
                ports: rule
                    .ports
                    .iter()
                    .map(|p| Port {
                        port: match &p.port {
                            PortValue::Number(n) => PortOut::Number(*n),
                            PortValue::Name(name) => PortOut::Name(name),
                        },
                        protocol: p.protocol.as_deref(),
                    })
                    .collect(),
            })
            .collect();
        let owner_references = self.owner.as_ref().map(|owner| {
            [OwnerRef { api_version: &owner.api_version, kind: &owner.kind, name: &owner.name, uid: &owner.uid }]
        });
        Object {
            api_version: "networking.k8s.io/v1",
            kind: "NetworkPolicy",
            metadata: Metadata { name: &self.name, namespace: &self.namespace, labels: &self.labels, owner_references },
            spec: Spec {
                pod_selector: Selector { match_labels: &self.pod_selector },
                ingress,
                policy_types: ["Ingress"],
            },
        }
    }
}

/// Renders policies as multi-document YAML separated by `---`, in the operator's layout (see
/// docs/formats.md, "NetworkPolicies").
pub fn render_policies_yaml(policies: &[NetworkPolicy]) -> Result<String, yaml::WriteError> {
    let objects: Vec<Object<'_>> = policies.iter().map(NetworkPolicy::object).collect();
    yaml::to_yaml_stream(&objects)
}

#[cfg(test)]
mod tests;
