//! Kubernetes `networking.k8s.io/v1` NetworkPolicies evaluated against observed calls, ingress
//! side, with Kubernetes semantics:
//!
//! - a policy selects the pods of its own namespace that its `podSelector` matches (`{}`: all);
//! - it restricts ingress when `policyTypes` names `Ingress`, or, with no `policyTypes`, always
//!   (Kubernetes' default: `Ingress`, plus `Egress` when egress rules are given);
//! - a pod selected by no ingress policy is open; a selected pod admits a call when any rule
//!   of any policy selecting it does (the union);
//! - a rule admits a call when one of its `from` peers matches the client (no `from`: every
//!   client) and one of its `ports` matches the port (no `ports`: every port);
//! - a peer is a `podSelector` (pods of the policy's namespace), a `namespaceSelector` (every
//!   pod of the matching namespaces), both in one peer (pods matching the first in namespaces
//!   matching the second), or an `ipBlock` (`cidr` minus `except`);
//! - a port is a number (with `endPort`, a range) or a name of the server pod's container
//!   ports, with a protocol (default TCP).
//!
//! Label selectors take `matchLabels` and `matchExpressions` (`In`, `NotIn`, `Exists`,
//! `DoesNotExist`), all of which must hold. What mapper does not know — a pod's or namespace's
//! labels, a named port's number, a pod's address for an `ipBlock` — is never guessed: the
//! verdict is then [`Verdict::Unknown`] with the reason, unless another rule admits the call
//! regardless. Egress rules are not evaluated.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::model::Protocol;

/// The API version and kind read.
pub const API_VERSION: &str = "networking.k8s.io/v1";
/// The kind read.
pub const KIND: &str = "NetworkPolicy";

/// A label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    /// Every pair must be among the labels.
    pub match_labels: BTreeMap<String, String>,
    /// Every expression must hold.
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values of `In` and `NotIn`.
    pub values: Vec<String>,
}

/// `ipBlock`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IpBlock {
    /// The block, e.g. `10.0.0.0/8`.
    pub cidr: String,
    /// Blocks inside it that are left out.
    pub except: Vec<String>,
}

/// One `from` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyPeer {
    /// Pods (of the policy's namespace, or of the namespaces `namespace_selector` matches).
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces.
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses.
    pub ip_block: Option<IpBlock>,
}

/// A port number or name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    /// A number.
    Number(u16),
    /// A container port's name.
    Name(String),
}

/// One `ports` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyPort {
    /// `TCP` (the default), `UDP` or `SCTP`.
    pub protocol: Option<String>,
    /// The port; none: every port of the protocol.
    pub port: Option<PortRef>,
    /// With a numeric `port`, the last port of the range.
    pub end_port: Option<u16>,
}

/// One ingress rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IngressRule {
    /// The clients admitted; none or empty: every client.
    pub from: Option<Vec<PolicyPeer>>,
    /// The ports; none or empty: every port.
    pub ports: Option<Vec<PolicyPort>>,
}

/// `spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicySpec {
    /// The pods the policy applies to.
    pub pod_selector: LabelSelector,
    /// Ingress rules.
    pub ingress: Vec<IngressRule>,
    /// Egress rules (only to derive the default policy types; never evaluated).
    pub egress: Option<Vec<serde_json::Value>>,
    /// `Ingress`, `Egress`.
    pub policy_types: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Meta {
    name: String,
    namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct PolicyJson {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: PolicySpec,
}

/// A NetworkPolicy and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (the caller fills in a missing one).
    pub namespace: Option<String>,
    /// `spec`.
    pub spec: PolicySpec,
    /// Where it was read (`charts/x.yaml: document 3`).
    pub source: String,
}

impl Policy {
    /// Reads a NetworkPolicy document (a YAML or JSON value, read in place); the error says
    /// what does not fit.
    pub fn from_value(value: &serde_json::Value, source: &str) -> Result<Policy, serde_json::Error> {
        let p = PolicyJson::deserialize(value)?;
        Ok(Policy { name: p.metadata.name, namespace: p.metadata.namespace, spec: p.spec, source: source.to_owned() })
    }

    /// Whether it restricts ingress.
    pub fn restricts_ingress(&self) -> bool {
        match &self.spec.policy_types {
            Some(types) => types.iter().any(|t| t == "Ingress"),
            None => true,
        }
    }

    /// Whether it restricts egress (which is not evaluated).
    pub fn restricts_egress(&self) -> bool {
        match &self.spec.policy_types {
            Some(types) => types.iter().any(|t| t == "Egress"),
            None => self.spec.egress.is_some(),
        }
    }
}

/// Three-valued truth: what mapper knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Holds.
    Yes,
    /// Does not hold.
    No,
    /// Cannot be told: why.
    Unknown(String),
}

impl Known {
    fn from_bool(b: bool) -> Known {
        if b { Known::Yes } else { Known::No }
    }

    /// Both hold (No wins over Unknown).
    fn and(self, other: impl FnOnce() -> Known) -> Known {
        match self {
            Known::No => Known::No,
            Known::Yes => other(),
            Known::Unknown(why) => match other() {
                Known::No => Known::No,
                _ => Known::Unknown(why),
            },
        }
    }

    /// Either holds (Yes wins over Unknown).
    fn or(self, other: impl FnOnce() -> Known) -> Known {
        match self {
            Known::Yes => Known::Yes,
            Known::No => other(),
            Known::Unknown(why) => match other() {
                Known::Yes => Known::Yes,
                _ => Known::Unknown(why),
            },
        }
    }
}

/// What is known of some labels: those known, and whether they are all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// The labels known.
    pub known: BTreeMap<String, String>,
    /// `known` is every label (else a key not in it may or may not be there).
    pub complete: bool,
    /// Whose labels (`pod labels of ledger.team3`), for the reason of an unknown.
    pub of: String,
}

impl Labels {
    fn has(&self, key: &str) -> Known {
        if self.known.contains_key(key) {
            Known::Yes
        } else if self.complete {
            Known::No
        } else {
            Known::Unknown(format!("{}: label {key} not known", self.of))
        }
    }

    fn value_in(&self, key: &str, values: &[String]) -> Known {
        match self.known.get(key) {
            Some(v) => Known::from_bool(values.contains(v)),
            None if self.complete => Known::No,
            None => Known::Unknown(format!("{}: label {key} not known", self.of)),
        }
    }
}

impl LabelSelector {
    /// Whether `labels` match (an empty selector matches everything, known or not).
    pub fn matches(&self, labels: &Labels) -> Known {
        let mut result = Known::Yes;
        for (key, value) in &self.match_labels {
            result = result.and(|| labels.value_in(key, std::slice::from_ref(value)));
        }
        for r in &self.match_expressions {
            let holds = match r.operator.as_str() {
                "In" => labels.value_in(&r.key, &r.values),
                "NotIn" => match labels.value_in(&r.key, &r.values) {
                    Known::Yes => Known::No,
                    Known::No => Known::Yes,
                    unknown => unknown,
                },
                "Exists" => labels.has(&r.key),
                "DoesNotExist" => match labels.has(&r.key) {
                    Known::Yes => Known::No,
                    Known::No => Known::Yes,
                    unknown => unknown,
                },
                other => Known::Unknown(format!("unknown matchExpressions operator {other}")),
            };
            result = result.and(|| holds);
        }
        result
    }
}

/// A pod side of a call, as far as mapper knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSide {
    /// The namespace.
    pub namespace: String,
    /// The pod's labels.
    pub labels: Labels,
    /// Its namespace's labels.
    pub namespace_labels: Labels,
    /// Its container ports by name: (number, protocol); `None`: not known.
    pub named_ports: Option<BTreeMap<String, (u16, Protocol)>>,
}

/// The client of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// A pod of the cluster (its address not known).
    Pod(PodSide),
    /// An address outside the cluster.
    External(IpAddr),
}

/// Whether a call is admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No ingress policy selects the server: it is open.
    Open,
    /// Admitted, by the first policy named that admits it.
    Allowed {
        /// The policy.
        policy: String,
    },
    /// Denied: the server is selected by these policies (`namespace/name`) and none admits it.
    Denied {
        /// The policies selecting the server.
        policies: Vec<String>,
    },
    /// Cannot be told: why.
    Unknown {
        /// The reason.
        reason: String,
    },
}

fn protocol_of(p: &Option<String>) -> Option<Protocol> {
    match p.as_deref().unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

fn port_matches(p: &PolicyPort, server: &PodSide, port: u16, protocol: Protocol) -> Known {
    let Some(proto) = protocol_of(&p.protocol) else { return Known::No };
    if proto != protocol {
        return Known::No;
    }
    match &p.port {
        None => Known::Yes,
        Some(PortRef::Number(n)) => match p.end_port {
            Some(end) => Known::from_bool((*n..=end).contains(&port)),
            None => Known::from_bool(*n == port),
        },
        Some(PortRef::Name(name)) => match &server.named_ports {
            Some(ports) => match ports.get(name) {
                Some((number, proto)) => Known::from_bool(*number == port && *proto == protocol),
                None => Known::No,
            },
            None => Known::Unknown(format!("named port {name}: the server's container ports are not known")),
        },
    }
}

fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse().ok()
}

fn ip_block_matches(block: &IpBlock, client: &Client) -> Known {
    let Some(net) = parse_net(&block.cidr) else {
        return Known::Unknown(format!("ipBlock cidr {} is not a CIDR", block.cidr));
    };
    match client {
        Client::External(ip) => {
            let inside = net.contains(ip) && !block.except.iter().filter_map(|e| parse_net(e)).any(|e| e.contains(ip));
            Known::from_bool(inside)
        }
        // A pod's address is not known here; only a block holding every address surely holds it.
        Client::Pod(_) if net.prefix_len() == 0 && block.except.is_empty() => Known::Yes,
        Client::Pod(_) => Known::Unknown(format!("ipBlock {}: the client pod's address is not known", block.cidr)),
    }
}

fn peer_matches(peer: &PolicyPeer, policy_namespace: &str, client: &Client) -> Known {
    if let Some(block) = &peer.ip_block {
        return ip_block_matches(block, client);
    }
    let Client::Pod(pod) = client else {
        // Selectors select pods; an outside address is none.
        return Known::No;
    };
    match (&peer.pod_selector, &peer.namespace_selector) {
        (None, None) => Known::No,
        (Some(pods), None) => Known::from_bool(pod.namespace == policy_namespace).and(|| pods.matches(&pod.labels)),
        (None, Some(namespaces)) => namespaces.matches(&pod.namespace_labels),
        (Some(pods), Some(namespaces)) => namespaces.matches(&pod.namespace_labels).and(|| pods.matches(&pod.labels)),
    }
}

fn rule_admits(
    rule: &IngressRule,
    policy_namespace: &str,
    client: &Client,
    server: &PodSide,
    port: u16,
    protocol: Protocol,
) -> Known {
    let from = match rule.from.as_deref() {
        None | Some([]) => Known::Yes,
        Some(peers) => peers.iter().fold(Known::No, |acc, p| acc.or(|| peer_matches(p, policy_namespace, client))),
    };
    from.and(|| match rule.ports.as_deref() {
        None | Some([]) => Known::Yes,
        Some(ports) => ports.iter().fold(Known::No, |acc, p| acc.or(|| port_matches(p, server, port, protocol))),
    })
}

/// Whether `policies` (each with its namespace set) admit a call from `client` to `server` on
/// `port`/`protocol`.
pub fn evaluate(policies: &[Policy], client: &Client, server: &PodSide, port: u16, protocol: Protocol) -> Verdict {
    let mut selecting = Vec::new();
    let mut unknown_selection = None;
    let mut admitted = Known::No;
    let mut admitted_by = None;
    for policy in policies.iter().filter(|p| p.restricts_ingress()) {
        let namespace = policy.namespace.as_deref().unwrap_or_default();
        if namespace != server.namespace {
            continue;
        }
        match policy.spec.pod_selector.matches(&server.labels) {
            Known::No => continue,
            Known::Unknown(why) => {
                unknown_selection.get_or_insert(why);
                continue;
            }
            Known::Yes => {}
        }
        let label = format!("{namespace}/{}", policy.name);
        let admits = policy
            .spec
            .ingress
            .iter()
            .fold(Known::No, |acc, r| acc.or(|| rule_admits(r, namespace, client, server, port, protocol)));
        if admits == Known::Yes && admitted_by.is_none() {
            admitted_by = Some(label.clone());
        }
        admitted = admitted.or(|| admits);
        selecting.push(label);
    }
    match (admitted, admitted_by) {
        (Known::Yes, Some(policy)) => Verdict::Allowed { policy },
        (Known::Yes, None) => Verdict::Unknown { reason: "no policy found admitting".to_owned() },
        (Known::Unknown(reason), _) => Verdict::Unknown { reason },
        (Known::No, _) => match unknown_selection {
            Some(reason) => Verdict::Unknown { reason },
            None if selecting.is_empty() => Verdict::Open,
            None => Verdict::Denied { policies: selecting },
        },
    }
}

#[cfg(test)]
mod tests;

/// Why the NetworkPolicies of a text could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyReadError {
    /// The text is not YAML (or is nested too deep).
    #[error(transparent)]
    Yaml(#[from] crate::parse::ParseError),
    /// A NetworkPolicy document does not fit the schema.
    #[error("{source_name}: document {document}: NetworkPolicy {name}: {error}")]
    Invalid {
        /// The file.
        source_name: String,
        /// The document, counted from 1.
        document: usize,
        /// `metadata.name`.
        name: String,
        /// What does not fit.
        #[source]
        error: serde_json::Error,
    },
}

/// Every `networking.k8s.io/v1` NetworkPolicy in a YAML or JSON text (multi-document, `List`s
/// read item by item), named `<source_name>: document N`. Other documents are skipped.
pub fn read_policies(text: &str, source_name: &str) -> Result<Vec<Policy>, PolicyReadError> {
    let mut out = Vec::new();
    crate::parse::for_each_document(text, source_name, |document, value| {
        let mut objects = vec![&value];
        if value.get("kind").and_then(serde_json::Value::as_str) == Some("List")
            && let Some(items) = value.get("items").and_then(serde_json::Value::as_array)
        {
            objects = items.iter().collect();
        }
        for object in objects {
            let is_policy = object.get("kind").and_then(serde_json::Value::as_str) == Some(KIND)
                && object.get("apiVersion").and_then(serde_json::Value::as_str) == Some(API_VERSION);
            if !is_policy {
                continue;
            }
            let name = object
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let invalid = |error| PolicyReadError::Invalid {
                source_name: source_name.to_owned(),
                document,
                name: name.clone(),
                error,
            };
            out.push(Policy::from_value(object, &format!("{source_name}: document {document}")).map_err(invalid)?);
        }
        Ok::<(), PolicyReadError>(())
    })?;
    Ok(out)
}
