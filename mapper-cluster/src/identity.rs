//! What a flow end resolves to ([`Peer`], [`Workload`], from mapper-model), what the agent knows
//! of it ([`Evidence`]), and the knobs of resolution ([`ResolveOptions`]).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// The annotation that names a pod's workload, as the Otterize operator reads it.
pub const WORKLOAD_NAME_ANNOTATION: &str = "intents.otterize.com/workload-name";
/// The older annotation with the same meaning, still honoured by the operator.
pub const SERVICE_NAME_ANNOTATION: &str = "intents.otterize.com/service-name";

pub use mapper_model::{
    HELM_RELEASE_NAME_ANNOTATION, HELM_RELEASE_NAMESPACE_ANNOTATION, Peer, Release, UnresolvedReason, Workload,
};

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
