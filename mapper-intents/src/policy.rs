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
//! server, internet and cloud targets do not (the operator handles them with egress rules).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};

use crate::identity::{formatted_identity, rfc1123_name_with_kind, workload_identity};
use crate::model::{ClientIntentsDoc, OtherKind, Target, Workload};
use crate::yaml;

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
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self { layout: PolicyLayout::Legacy, default_namespace: "default".to_owned() }
    }
}

/// One ingress rule: pods in `namespace` carrying `pod_labels`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressFrom {
    /// The namespace selector's labels.
    pub namespace_labels: BTreeMap<String, String>,
    /// The pod selector's labels.
    pub pod_labels: BTreeMap<String, String>,
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
    /// `spec.podSelector.matchLabels` (the server's pods).
    pub pod_selector: BTreeMap<String, String>,
    /// `spec.ingress`, one rule per entry.
    pub ingress: Vec<IngressFrom>,
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
}

/// The server workload a target stands for, if it gets an ingress policy.
///
/// Limitation: the operator resolves a Service target to the pods its selector selects. This
/// library has no cluster access, so a Service target is rendered as if its pods belonged to a
/// workload of the same name and namespace without kind; check with the cluster before relying
/// on such a policy.
fn policy_server(target: &Target, client_namespace: &str) -> Option<Workload> {
    let (name, namespace, kind) = match target {
        Target::Workload(w) => (w.name.clone(), w.namespace.clone(), w.kind.clone()),
        Target::Service(s) => (s.name.clone(), s.namespace.clone(), None),
        Target::Other(o) if o.kind == OtherKind::Kafka => {
            let written = o.body.get("name").and_then(Value::as_str)?;
            let (name, namespace) = written.split_once('.').map_or((written, None), |(n, ns)| (n, Some(ns)));
            (name.to_owned(), namespace.map(str::to_owned), None)
        }
        Target::ApiServer | Target::Internet(_) | Target::Other(_) => return None,
    };
    let namespace = namespace.unwrap_or_else(|| client_namespace.to_owned());
    Some(Workload::with_kind(name, namespace, kind.as_deref()))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Builds the ingress policies and pod labels the operator would produce for `docs`.
pub fn network_policies(docs: &[ClientIntentsDoc], opts: &PolicyOptions) -> PolicySet {
    // server → client workloads reaching it.
    let mut servers: BTreeMap<Workload, BTreeSet<Workload>> = BTreeMap::new();
    for doc in docs {
        let client = doc.client(&opts.default_namespace);
        for target in &doc.targets {
            if let Some(mut server) = policy_server(target, &client.namespace) {
                if opts.layout == PolicyLayout::Legacy {
                    server.kind = None; // legacy identities have no kind
                }
                servers.entry(server).or_default().insert(client.clone());
            }
        }
    }
    let mut set = PolicySet::default();
    for (server, clients) in &servers {
        match opts.layout {
            PolicyLayout::Legacy => legacy(server, clients, &mut set),
            PolicyLayout::Current => current(server, clients, &mut set),
        }
    }
    set.policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    set.pod_labels.sort();
    set.pod_labels.dedup();
    set
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
            pod_selector: labels(&[(SERVER_LABEL, &id)]),
            ingress: vec![IngressFrom {
                namespace_labels: labels(&[(NAMESPACE_NAME_LABEL, ns)]),
                pod_labels: labels(&[(&access, "true")]),
            }],
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
    set.policies.push(NetworkPolicy {
        name: format!("{}-access", rfc1123_name_with_kind(server)),
        namespace: server.namespace.to_string(),
        labels: labels(&[(NETWORK_POLICY_LABEL, &id)]),
        pod_selector: selector,
        ingress: namespaces
            .into_iter()
            .map(|ns| IngressFrom {
                namespace_labels: labels(&[(K8S_NAMESPACE_LABEL, ns)]),
                pod_labels: labels(&[(&access, "true")]),
            })
            .collect(),
    });
    for client in clients {
        set.pod_labels.push(PodLabel::client(client, &access));
    }
}

fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Mapping(map.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))).collect())
}

fn entry(pairs: Vec<(&str, Value)>) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect::<Mapping>())
}

fn match_labels(map: &BTreeMap<String, String>) -> Value {
    entry(vec![("matchLabels", string_map(map))])
}

impl NetworkPolicy {
    /// The policy as a YAML tree, keys in the order `kubectl` prints them.
    pub fn to_value(&self) -> Value {
        let ingress = self
            .ingress
            .iter()
            .map(|rule| {
                let peer = entry(vec![
                    ("namespaceSelector", match_labels(&rule.namespace_labels)),
                    ("podSelector", match_labels(&rule.pod_labels)),
                ]);
                entry(vec![("from", Value::Sequence(vec![peer]))])
            })
            .collect();
        entry(vec![
            ("apiVersion", Value::from("networking.k8s.io/v1")),
            ("kind", Value::from("NetworkPolicy")),
            (
                "metadata",
                entry(vec![
                    ("name", Value::from(self.name.as_str())),
                    ("namespace", Value::from(self.namespace.as_str())),
                    ("labels", string_map(&self.labels)),
                ]),
            ),
            (
                "spec",
                entry(vec![
                    ("podSelector", match_labels(&self.pod_selector)),
                    ("ingress", Value::Sequence(ingress)),
                    ("policyTypes", Value::Sequence(vec![Value::from("Ingress")])),
                ]),
            ),
        ])
    }
}

/// Renders policies as multi-document YAML separated by `---`, in the operator's layout (see
/// docs/formats.md, "NetworkPolicies").
pub fn render_policies_yaml(policies: &[NetworkPolicy]) -> String {
    let values: Vec<Value> = policies.iter().map(NetworkPolicy::to_value).collect();
    yaml::to_yaml_stream(&values)
}

#[cfg(test)]
mod tests;
