//! What a flow end resolves to ([`Peer`], [`Workload`]), what the agent knows of it
//! ([`Evidence`]), and the knobs of resolution ([`ResolveOptions`]).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// The annotation that names a pod's workload, as the Otterize operator reads it.
pub const WORKLOAD_NAME_ANNOTATION: &str = "intents.otterize.com/workload-name";
/// The older annotation with the same meaning, still honoured by the operator.
pub const SERVICE_NAME_ANNOTATION: &str = "intents.otterize.com/service-name";

/// A workload identity as the Otterize operator forms it.
///
/// `kind` is the kind of the top of the owner chain: "Deployment", "StatefulSet", "DaemonSet",
/// "CronJob", "Job", "ReplicaSet", "Pod", or a CRD kind like "Rollout". A name taken from the
/// owner chain has its dots replaced by underscores, as the operator does; a name from the
/// workload-name annotation is used as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub kind: String,
}

impl Workload {
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, kind: impl Into<String>) -> Self {
        Self { name: name.into(), namespace: namespace.into(), kind: kind.into() }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} ({})", self.name, self.namespace, self.kind)
    }
}

/// What one end of a flow resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Peer {
    Workload(Workload),
    /// A Service with no pods behind it (or whose pods are unknown).
    Service {
        name: String,
        namespace: String,
    },
    /// The Kubernetes API server (the `kubernetes` Service in `default`, its ClusterIP, or its
    /// endpoints).
    ApiServer,
    /// An address outside the cluster (not a pod, node, or service IP, not in a configured
    /// cluster CIDR).
    External {
        ip: IpAddr,
    },
    /// In the cluster but not attributable.
    Unresolved {
        ip: IpAddr,
        reason: UnresolvedReason,
    },
    /// A process of a node that is no pod (the kubelet's probes, node daemons), known from the
    /// agent's cgroup evidence: kept in the map, never a ClientIntents client.
    Node {
        name: String,
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
}

/// Why an in-cluster address could not be attributed. [`UnresolvedReason::as_str`] is a stable
/// label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum UnresolvedReason {
    /// A node's IP (also what hostNetwork pods use) with no pod evidence from the agent.
    NodeIp,
    /// A pod IP, but no pod held it at the flow's time (within the tolerance).
    NoPodAtTime,
    /// The agent named a pod UID nobody knows, and the address cannot stand in for it
    /// (a host-network end, or no address).
    UnknownPodUid,
    /// An address inside a configured cluster CIDR that no pod, node or Service is known to use.
    UnknownClusterIp,
    /// The agent had neither a pod UID nor an address for this end.
    NoEvidence,
}

impl UnresolvedReason {
    /// A stable, snake_case label (for metrics and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            UnresolvedReason::NodeIp => "node_ip",
            UnresolvedReason::NoPodAtTime => "no_pod_at_time",
            UnresolvedReason::UnknownPodUid => "unknown_pod_uid",
            UnresolvedReason::UnknownClusterIp => "unknown_cluster_ip",
            UnresolvedReason::NoEvidence => "no_evidence",
        }
    }
}

impl fmt::Display for UnresolvedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the agent knows of one end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence<'a> {
    /// The end's address, as the agent saw it.
    pub ip: Option<IpAddr>,
    /// The pod UID from cgroup evidence, when the agent found one.
    pub pod_uid: Option<&'a str>,
    /// The end lives in the node's network namespace.
    pub host_network: bool,
    /// When the flow was seen (Unix milliseconds).
    pub at_ms: i64,
}

/// How flow ends are resolved; shared by both cluster sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// The pod annotation that names a workload (default
    /// `intents.otterize.com/workload-name`); `intents.otterize.com/service-name` is honoured
    /// after it.
    pub workload_name_annotation: String,
    /// Address ranges that belong to the cluster (pod and service CIDRs): an unknown address in
    /// them is [`UnresolvedReason::UnknownClusterIp`] rather than [`Peer::External`].
    pub cluster_cidrs: Vec<IpNet>,
    /// How long a deleted pod's identity and IP history are kept for late flows (default 1h).
    pub deleted_pod_retention: Duration,
    /// How far outside a pod's IP interval a flow may be stamped and still map to that pod, when
    /// no other pod held the IP then (default 5s).
    pub ip_time_tolerance: Duration,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            workload_name_annotation: WORKLOAD_NAME_ANNOTATION.to_owned(),
            cluster_cidrs: Vec::new(),
            deleted_pod_retention: Duration::from_secs(3600),
            ip_time_tolerance: Duration::from_secs(5),
        }
    }
}

impl ResolveOptions {
    /// The annotations that name a workload, in order of precedence.
    pub(crate) fn name_annotations(&self) -> [&str; 2] {
        [self.workload_name_annotation.as_str(), SERVICE_NAME_ANNOTATION]
    }
}

/// Milliseconds in a duration, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(duration_ms).unwrap_or(0)
}
