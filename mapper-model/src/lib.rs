//! mapper's identity model, the one every component speaks: a [`Workload`] (what the Otterize
//! operator calls a service: the top owner of a pod, its namespace and kind) and a [`Peer`], what
//! one end of a flow resolved to. The cluster state resolves addresses into these, the server keys
//! its edges by them, the ClientIntents model names clients with them, and the CLI reads them back
//! from the wire (`mapper-proto` converts to and from its messages). The rules that produce them
//! are in `docs/identity.md`. A workload's Helm [`Release`] travels beside it, never in it.
//!
//! Names are `Arc<str>`: a workload's name is shared by every edge that names it and by the
//! cluster state it came from, so cloning a peer copies no text.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Name of the Kubernetes API server's Service (`kubernetes.default`).
pub const API_SERVER_NAME: &str = "kubernetes";
/// Namespace of the Kubernetes API server's Service.
pub const API_SERVER_NAMESPACE: &str = "default";

/// A workload identity as the Otterize operator forms it (see docs/identity.md, "Workloads").
///
/// `kind` is the kind of the top of the owner chain: `Deployment`, `StatefulSet`, `DaemonSet`,
/// `CronJob`, `Job`, `ReplicaSet`, `Pod`, or a CRD kind like `Rollout`; `None` when unknown (a
/// ClientIntents document that names its client without a kind; the operator then uses the
/// kind-less identity). A name taken from the owner chain has its dots replaced by underscores,
/// as the operator does; a name from the workload-name annotation is used as written.
///
/// Serialized as `{"name", "namespace", "kind"}`; in a human-readable format (JSON) `kind` is left
/// out when unknown, in a binary one (the server's store) it is always there, as an option. An
/// empty `kind` reads as unknown.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub struct Workload {
    /// Workload name (`metadata.name` of the top owner, or the annotation's value).
    pub name: Arc<str>,
    /// Namespace the workload runs in.
    pub namespace: Arc<str>,
    /// Owner kind; `None` when unknown.
    #[serde(default, deserialize_with = "kind_or_empty")]
    pub kind: Option<Arc<str>>,
}

impl Serialize for Workload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A binary format has no field names: every field is written, or it cannot be read back.
        let skip_kind = s.is_human_readable() && self.kind.is_none();
        let mut out = s.serialize_struct("Workload", if skip_kind { 2 } else { 3 })?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("namespace", &self.namespace)?;
        if skip_kind {
            out.skip_field("kind")?;
        } else {
            out.serialize_field("kind", &self.kind)?;
        }
        out.end()
    }
}

/// An absent, null or empty `kind` is an unknown kind.
fn kind_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    // Owned: a borrowed str cannot be read from every input (escaped JSON, a Value).
    let kind: Option<Arc<str>> = Option::deserialize(d)?;
    Ok(kind.filter(|k| !k.is_empty()))
}

/// An unknown kind: none, or empty (the same rule as [`kind_or_empty`] when reading).
fn known_kind(kind: Option<&str>) -> Option<Arc<str>> {
    kind.filter(|k| !k.is_empty()).map(Arc::from)
}

impl Workload {
    /// A workload of a known kind (an empty `kind` is unknown).
    pub fn new(name: impl Into<Arc<str>>, namespace: impl Into<Arc<str>>, kind: impl Into<Arc<str>>) -> Self {
        let kind: Arc<str> = kind.into();
        Self { name: name.into(), namespace: namespace.into(), kind: (!kind.is_empty()).then_some(kind) }
    }

    /// A workload whose kind may be unknown (`None`, or empty).
    pub fn with_kind(name: impl Into<Arc<str>>, namespace: impl Into<Arc<str>>, kind: Option<&str>) -> Self {
        Self { name: name.into(), namespace: namespace.into(), kind: known_kind(kind) }
    }

    /// A workload whose kind is unknown.
    pub fn without_kind(name: impl Into<Arc<str>>, namespace: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), namespace: namespace.into(), kind: None }
    }

    /// The kind, `None` when unknown.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }
}

/// `name.namespace (Kind)`, or `name.namespace` when the kind is unknown.
impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)?;
        match &self.kind {
            Some(kind) => write!(f, " ({kind})"),
            None => Ok(()),
        }
    }
}

/// The annotation Helm puts on every object it applies, naming the release.
pub const HELM_RELEASE_NAME_ANNOTATION: &str = "meta.helm.sh/release-name";
/// The annotation Helm puts on every object it applies, naming the release's namespace.
pub const HELM_RELEASE_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";

/// The Helm release a workload belongs to: named by the annotations
/// [`HELM_RELEASE_NAME_ANNOTATION`] and [`HELM_RELEASE_NAMESPACE_ANNOTATION`] on the top object
/// of its owner chain (see docs/identity.md, "Helm releases").
///
/// Not part of a workload's identity: a workload adopted into a release, or moved from one to
/// another, keeps its edges. Serialized as `{"name", "namespace"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Release {
    /// The release's name (`helm install NAME`).
    pub name: Arc<str>,
    /// The namespace the release was installed into (`helm install -n NAMESPACE`).
    pub namespace: Arc<str>,
}

impl Release {
    /// A release.
    pub fn new(name: impl Into<Arc<str>>, namespace: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), namespace: namespace.into() }
    }

    /// The release an object's annotations name: `meta.helm.sh/release-name`, in the namespace
    /// `meta.helm.sh/release-namespace` names, or `object_namespace` when that annotation is
    /// missing or empty (Helm 3 always writes both). `None` without a non-empty release name.
    pub fn from_annotations<'a>(mut get: impl FnMut(&str) -> Option<&'a str>, object_namespace: &str) -> Option<Self> {
        let name = get(HELM_RELEASE_NAME_ANNOTATION).filter(|n| !n.is_empty())?;
        let namespace = get(HELM_RELEASE_NAMESPACE_ANNOTATION).filter(|n| !n.is_empty()).unwrap_or(object_namespace);
        Some(Self::new(name, namespace))
    }
}

/// `name.namespace`.
impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

/// What one end of a flow resolved to.
///
/// The order of the variants is the order of sorted edges: workloads first, then Services, the API
/// server, outside addresses, unattributed ones and node processes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Peer {
    /// A workload (Deployment, StatefulSet, CronJob, …).
    Workload(Workload),
    /// A Service with no pods behind it (or whose pods are unknown).
    Service {
        /// Its name.
        name: Arc<str>,
        /// Its namespace.
        namespace: Arc<str>,
    },
    /// The Kubernetes API server (the `kubernetes` Service in `default`, its ClusterIP, or its
    /// endpoints).
    ApiServer,
    /// An address outside the cluster (not a pod, node or Service IP, not in a cluster range).
    External {
        /// The address.
        ip: IpAddr,
    },
    /// In the cluster but not attributable.
    Unresolved {
        /// The address.
        ip: IpAddr,
        /// Why it could not be attributed.
        reason: UnresolvedReason,
    },
    /// A process of a node that is no pod (the kubelet's probes, node daemons), known from the
    /// agent's cgroup evidence: kept in the map, never a ClientIntents client.
    Node {
        /// The node's name.
        name: Arc<str>,
    },
}

impl Peer {
    /// The workload, when this end resolved to one.
    pub fn workload(&self) -> Option<&Workload> {
        match self {
            Peer::Workload(w) => Some(w),
            _ => None,
        }
    }

    /// The namespace the peer belongs to: a workload's or a Service's.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Peer::Workload(w) => Some(&w.namespace),
            Peer::Service { namespace, .. } => Some(namespace),
            Peer::ApiServer | Peer::External { .. } | Peer::Unresolved { .. } | Peer::Node { .. } => None,
        }
    }

    /// The peer's own name: a workload's, Service's or node's name, `kubernetes` for the API
    /// server, the address otherwise.
    pub fn name(&self) -> String {
        match self {
            Peer::Workload(w) => w.name.to_string(),
            Peer::Service { name, .. } | Peer::Node { name } => name.to_string(),
            Peer::ApiServer => API_SERVER_NAME.to_owned(),
            Peer::External { ip } | Peer::Unresolved { ip, .. } => ip.to_string(),
        }
    }

    /// Whether the end was attributed (everything but [`Peer::Unresolved`]).
    pub fn is_resolved(&self) -> bool {
        !matches!(self, Peer::Unresolved { .. })
    }
}

/// Why an in-cluster address could not be attributed. [`UnresolvedReason::as_str`] is its stable
/// label, on the wire and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UnresolvedReason {
    /// A node's IP (also what hostNetwork pods use) with no pod evidence from the agent.
    NodeIp,
    /// A pod IP, but no pod held it at the flow's time (within the tolerance).
    NoPodAtTime,
    /// The agent named a pod UID nobody knows, and the address cannot stand in for it
    /// (a host-network end, or no address).
    UnknownPodUid,
    /// An address inside a cluster range that no pod, node or Service is known to use.
    UnknownClusterIp,
    /// The agent had neither a pod UID nor an address for this end.
    NoEvidence,
    /// A label this build does not know (sent by a newer mapper-server); never produced here.
    Other,
}

impl UnresolvedReason {
    /// Every reason this build produces.
    pub const ALL: [UnresolvedReason; 5] = [
        UnresolvedReason::NodeIp,
        UnresolvedReason::NoPodAtTime,
        UnresolvedReason::UnknownPodUid,
        UnresolvedReason::UnknownClusterIp,
        UnresolvedReason::NoEvidence,
    ];

    /// A stable, snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            UnresolvedReason::NodeIp => "node_ip",
            UnresolvedReason::NoPodAtTime => "no_pod_at_time",
            UnresolvedReason::UnknownPodUid => "unknown_pod_uid",
            UnresolvedReason::UnknownClusterIp => "unknown_cluster_ip",
            UnresolvedReason::NoEvidence => "no_evidence",
            UnresolvedReason::Other => "other",
        }
    }

    /// The reason a label names; [`UnresolvedReason::Other`] for one this build does not know.
    pub fn from_label(label: &str) -> Self {
        Self::ALL.into_iter().find(|r| r.as_str() == label).unwrap_or(UnresolvedReason::Other)
    }
}

impl fmt::Display for UnresolvedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_serializes_without_an_unknown_kind_and_reads_an_empty_one_as_unknown() {
        let known = Workload::new("api", "team1", "Deployment");
        let json = serde_json::to_string(&known).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json, r#"{"name":"api","namespace":"team1","kind":"Deployment"}"#);
        let unknown = Workload::without_kind("api", "team1");
        assert_eq!(
            serde_json::to_string(&unknown).unwrap_or_else(|e| panic!("{e}")),
            r#"{"name":"api","namespace":"team1"}"#
        );
        for text in [r#"{"name":"api","namespace":"team1","kind":""}"#, r#"{"name":"api","namespace":"team1"}"#] {
            let back: Workload = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(back, unknown, "{text}");
        }
        assert_eq!(Workload::new("api", "team1", ""), unknown, "an empty kind is unknown");
        assert_eq!(Workload::with_kind("api", "team1", Some("")), unknown);
        assert_eq!(Workload::with_kind("api", "team1", None), unknown);
        assert_eq!(Workload::with_kind("api", "team1", Some("Deployment")), known);
        for w in [&known, &unknown] {
            let bytes = postcard::to_allocvec(w).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(postcard::from_bytes::<Workload>(&bytes).ok().as_ref(), Some(w), "binary round trip");
        }
        assert_eq!(known.to_string(), "api.team1 (Deployment)");
        assert_eq!(unknown.to_string(), "api.team1");
    }

    #[test]
    fn peers_keep_the_stored_form() {
        // The server's store keys edges by this form: it must not change.
        let peers = [
            (
                Peer::Workload(Workload::new("a", "b", "Pod")),
                r#"{"Workload":{"name":"a","namespace":"b","kind":"Pod"}}"#,
            ),
            (Peer::Service { name: "s".into(), namespace: "n".into() }, r#"{"Service":{"name":"s","namespace":"n"}}"#),
            (Peer::ApiServer, r#""ApiServer""#),
            (Peer::External { ip: IpAddr::from([1, 2, 3, 4]) }, r#"{"External":{"ip":"1.2.3.4"}}"#),
            (
                Peer::Unresolved { ip: IpAddr::from([10, 0, 0, 1]), reason: UnresolvedReason::NoPodAtTime },
                r#"{"Unresolved":{"ip":"10.0.0.1","reason":"NoPodAtTime"}}"#,
            ),
            (Peer::Node { name: "node-1".into() }, r#"{"Node":{"name":"node-1"}}"#),
        ];
        for (peer, text) in peers {
            assert_eq!(serde_json::to_string(&peer).unwrap_or_else(|e| panic!("{e}")), text);
            let back: Peer = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(back, peer);
        }
    }

    #[test]
    fn a_release_is_read_from_helm_annotations_with_the_object_namespace_as_fallback() {
        fn annotations<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl FnMut(&str) -> Option<&'a str> {
            move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        }
        let both = [(HELM_RELEASE_NAME_ANNOTATION, "payments"), (HELM_RELEASE_NAMESPACE_ANNOTATION, "platform")];
        assert_eq!(Release::from_annotations(annotations(&both), "team1"), Some(Release::new("payments", "platform")));
        let name_only = [(HELM_RELEASE_NAME_ANNOTATION, "payments")];
        assert_eq!(
            Release::from_annotations(annotations(&name_only), "team1"),
            Some(Release::new("payments", "team1"))
        );
        let empty_ns = [(HELM_RELEASE_NAME_ANNOTATION, "payments"), (HELM_RELEASE_NAMESPACE_ANNOTATION, "")];
        assert_eq!(Release::from_annotations(annotations(&empty_ns), "team1"), Some(Release::new("payments", "team1")));
        let no_name = [(HELM_RELEASE_NAME_ANNOTATION, ""), (HELM_RELEASE_NAMESPACE_ANNOTATION, "platform")];
        assert_eq!(Release::from_annotations(annotations(&no_name), "team1"), None);
        assert_eq!(Release::from_annotations(annotations(&[]), "team1"), None);
        assert_eq!(Release::new("payments", "platform").to_string(), "payments.platform");
        let json = serde_json::to_string(&Release::new("a", "b")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json, r#"{"name":"a","namespace":"b"}"#);
    }

    #[test]
    fn reasons_round_trip_through_their_labels() {
        for reason in UnresolvedReason::ALL {
            assert_eq!(UnresolvedReason::from_label(reason.as_str()), reason);
        }
        assert_eq!(UnresolvedReason::from_label("something_new"), UnresolvedReason::Other);
    }

    #[test]
    fn peers_sort_workloads_first_and_name_themselves() {
        let w = Peer::Workload(Workload::new("z", "n", "Pod"));
        let s = Peer::Service { name: "a".into(), namespace: "n".into() };
        assert!(w < s && s < Peer::ApiServer);
        assert_eq!(w.namespace(), Some("n"));
        assert_eq!(Peer::ApiServer.name(), "kubernetes");
        assert!(!Peer::Unresolved { ip: IpAddr::from([10, 0, 0, 1]), reason: UnresolvedReason::NodeIp }.is_resolved());
    }
}
