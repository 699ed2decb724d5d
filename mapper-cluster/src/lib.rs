//! `mapper-cluster`: the cluster state the central mapper resolves flows against, and the
//! resolution itself.
//!
//! Two sources publish the same thing — an immutable [`Snapshot`] behind a [`ClusterHandle`],
//! swapped atomically when the cluster changes:
//! - [`Inventory`] / [`watch_inventory`]: files or directories of Kubernetes objects as
//!   `kubectl get -o yaml` prints them (multi-document YAML, `kind: List`, JSON), reloaded when
//!   they change; for running without an API server.
//! - [`KubeSource`]: kube-runtime reflectors on Pods, Services, EndpointSlices, ReplicaSets,
//!   Jobs and Nodes, plus cached GETs of any other owner kind met in an owner chain.
//!
//! A snapshot resolves each end of a flow to a [`Peer`] following the Otterize operator's
//! identity rules: the workload-name annotation, else the pod's owner chain walked to the top
//! (stopping at the last owner that could be read); a Service ClusterIP resolves to the
//! workload behind it; pod IPs resolve through an IP history, so a reused IP never merges two
//! workloads; hostNetwork pods are never resolved by address. A workload's Helm [`Release`] is
//! what the top object of its owner chain names ([`Snapshot::release_of`]).
//!
//! ```
//! use mapper_cluster::{Evidence, Peer, ResolveOptions, Snapshot};
//!
//! let snapshot = Snapshot::default(); // an empty cluster
//! let ip = "203.0.113.7".parse().expect("an IP");
//! assert_eq!(snapshot.resolve_remote(ip, 443, 0), Peer::External { ip });
//! let local = Evidence { ip: Some(ip), pod_uid: None, host_network: true, at_ms: 0 };
//! assert!(matches!(snapshot.resolve_local(&local), Peer::Unresolved { .. }));
//! # let _ = ResolveOptions::default();
//! ```

#![forbid(unsafe_code)]

mod history;
mod identity;
mod inventory;
mod kube_source;
mod model;
mod snapshot;

/// A fake Kubernetes API server for tests (feature `test-support`).
#[cfg(feature = "test-support")]
pub mod fake_api;

pub use identity::{
    Evidence, HELM_RELEASE_NAME_ANNOTATION, HELM_RELEASE_NAMESPACE_ANNOTATION, Peer, Release, ResolveOptions,
    SERVICE_NAME_ANNOTATION, UnresolvedReason, WORKLOAD_NAME_ANNOTATION, Workload,
};
pub use inventory::{
    DEFAULT_POLL_INTERVAL, Inventory, InventoryError, InventoryWarning, Location, check_inventory_text, watch_inventory,
};
pub use ipnet::IpNet;
pub use kube_source::{KubeSource, KubeSourceConfig};
pub use snapshot::{ClusterHandle, End, Snapshot};

/// An error and its sources, joined with ": " (for logs, where only one field is shown): the
/// one joiner, in mapper-intents, re-exported for mapper-cluster's users (mapper-server).
pub use mapper_intents::error_chain;
