//! The parts of Kubernetes objects that resolution reads, as both sources (inventory files and
//! the API) hand them over: pods, Services, EndpointSlices, owner objects and node addresses.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use mapper_model::{HELM_RELEASE_NAME_ANNOTATION, HELM_RELEASE_NAMESPACE_ANNOTATION, Release};

/// The label an EndpointSlice carries naming its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The API group of an `apiVersion` ("apps/v1" → "apps", "v1" → "").
pub(crate) fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// One shared copy of each value of a kind: copies no one holds any more are dropped when the
/// set has doubled since the last look, so it stays within twice what its holders use.
#[derive(Debug)]
struct Shared<T: ?Sized> {
    set: HashSet<Arc<T>>,
    /// The size at which copies held only here are dropped.
    prune_at: usize,
}

impl<T: ?Sized> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self { set: self.set.clone(), prune_at: self.prune_at }
    }
}

impl<T: ?Sized> Default for Shared<T> {
    fn default() -> Self {
        Self { set: HashSet::new(), prune_at: 0 }
    }
}

impl<T: ?Sized + std::hash::Hash + Eq> Shared<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    fn get(&mut self, value: &T) -> Arc<T> {
        if let Some(shared) = self.set.get(value) {
            return shared.clone();
        }
        if self.set.len() >= self.prune_at {
            self.set.retain(|shared| Arc::strong_count(shared) > 1);
            self.prune_at = (self.set.len() * 2).max(1024);
        }
        let shared = Arc::<T>::from(value);
        self.set.insert(shared.clone());
        shared
    }
}

/// One shared copy of each string the records of many pods repeat (namespaces, label keys
/// and values, owner references: the replicas of a workload, and the workloads of a
/// namespace, hold the same few) and of each node's address list (which each of its pods
/// holds).
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    strings: Shared<str>,
    addresses: Shared<[IpAddr]>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        self.strings.get(s)
    }

    /// The shared copy of an address list.
    pub fn addresses(&mut self, ips: &[IpAddr]) -> Arc<[IpAddr]> {
        self.addresses.get(ips)
    }
}

/// A reference from an object to its (controller) owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct OwnerRef {
    pub api_version: Arc<str>,
    pub kind: Arc<str>,
    pub name: Arc<str>,
}

impl OwnerRef {
    /// The controller reference of an object; the first reference when none is marked
    /// controller (the operator walks the first one).
    pub fn controller_of(refs: Option<&Vec<OwnerReference>>, strings: &mut Interner) -> Option<Self> {
        let refs = refs?;
        let chosen = refs.iter().find(|r| r.controller == Some(true)).or_else(|| refs.first())?;
        Some(Self {
            api_version: strings.get(&chosen.api_version),
            kind: strings.get(&chosen.kind),
            name: strings.get(&chosen.name),
        })
    }

    pub fn key(&self, namespace: &str) -> OwnerKey {
        OwnerKey {
            namespace: namespace.to_owned(),
            group: api_group(&self.api_version).to_owned(),
            kind: self.kind.to_string(),
            name: self.name.to_string(),
        }
    }
}

/// Where an owner object lives: its namespace, API group (not version), kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OwnerKey {
    pub namespace: String,
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// The annotations that name an object's Helm release.
pub(crate) const RELEASE_ANNOTATIONS: [&str; 2] = [HELM_RELEASE_NAME_ANNOTATION, HELM_RELEASE_NAMESPACE_ANNOTATION];

/// The Helm release an object's annotations name, when the object has no owner: only the top of
/// an owner chain is asked (a chain that stops at an unreadable owner names no release, in both
/// sources alike; an owned object's copy of its owner's annotations is not the owner's word).
pub(crate) fn release_of(meta: &ObjectMeta, namespace: &str) -> Option<Release> {
    if meta.owner_references.as_ref().is_some_and(|refs| !refs.is_empty()) {
        return None;
    }
    let annotations = meta.annotations.as_ref()?;
    Release::from_annotations(|k| annotations.get(k).map(String::as_str), namespace)
}

/// An object that can appear in an owner chain: its kind, name, its own controller, and the
/// Helm release it belongs to (what a workload whose chain tops out here belongs to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerRecord {
    pub key: OwnerKey,
    pub owner: Option<OwnerRef>,
    /// Interned when added to [`ClusterObjects`]: the owners of one release share its names.
    pub release: Option<Release>,
}

impl OwnerRecord {
    pub fn from_meta(api_version: &str, kind: &str, meta: &ObjectMeta, strings: &mut Interner) -> Self {
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let release = release_of(meta, &namespace);
        Self {
            release,
            key: OwnerKey {
                namespace,
                group: api_group(api_version).to_owned(),
                kind: kind.to_owned(),
                name: meta.name.clone().unwrap_or_default(),
            },
            owner: OwnerRef::controller_of(meta.owner_references.as_ref(), strings),
        }
    }
}

/// The pod fields resolution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodRecord {
    /// Shared with the IP history and the snapshots' index (a cluster holds a copy per pod).
    pub uid: Arc<str>,
    pub name: Box<str>,
    /// Shared with the other pods' records ([`Interner`]), as are the labels and the owner.
    pub namespace: Arc<str>,
    /// (key, value), sorted by key: a slice rather than a map, as a cluster holds one per pod
    /// (a map's smallest node of strings is half a kilobyte).
    pub labels: Box<[(Arc<str>, Arc<str>)]>,
    /// Only the workload-name annotations, and the Helm release's when the pod has no owner
    /// (it is then the top of its own chain); (key, value), sorted by key.
    pub annotations: Box<[(Box<str>, Box<str>)]>,
    pub owner: Option<OwnerRef>,
    pub ips: Box<[IpAddr]>,
    /// Shared with the other pods of the node ([`Interner::addresses`]).
    pub host_ips: Arc<[IpAddr]>,
    pub host_network: bool,
    /// The phase is `Succeeded` or `Failed`: the pod ran to completion.
    pub completed: bool,
    pub created_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub deletion_ms: Option<i64>,
    /// When the last container terminated, for a pod that has finished.
    pub finished_ms: Option<i64>,
}

fn time_ms(t: Option<&Time>) -> Option<i64> {
    t.map(|t| t.0.as_millisecond())
}

fn parse_ips<'a>(ips: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips.into_iter().filter_map(|s| s.parse().ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

impl PodRecord {
    /// The record of a pod; `name_annotations` are the annotations kept (all others dropped).
    pub fn from_pod(pod: &Pod, name_annotations: &[impl AsRef<str>], strings: &mut Interner) -> Self {
        let meta = &pod.metadata;
        let name: Box<str> = meta.name.as_deref().unwrap_or_default().into();
        let namespace = strings.get(meta.namespace.as_deref().unwrap_or("default"));
        let status = pod.status.as_ref();
        let pod_ips = status.and_then(|s| s.pod_ips.as_ref());
        let ips = parse_ips(
            status
                .and_then(|s| s.pod_ip.as_deref())
                .into_iter()
                .chain(pod_ips.into_iter().flatten().map(|p| p.ip.as_str())),
        );
        let host_ips = parse_ips(
            status
                .and_then(|s| s.host_ip.as_deref())
                .into_iter()
                .chain(status.and_then(|s| s.host_ips.as_ref()).into_iter().flatten().map(|h| h.ip.as_str())),
        );
        let owner = OwnerRef::controller_of(meta.owner_references.as_ref(), strings);
        let annotations = meta
            .annotations
            .iter()
            .flatten()
            .filter(|(k, _)| {
                name_annotations.iter().any(|a| a.as_ref() == k.as_str())
                    || (owner.is_none() && RELEASE_ANNOTATIONS.contains(&k.as_str()))
            })
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect();
        let finished_ms = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
            .map(|t| t.0.as_millisecond())
            .max();
        Self {
            uid: meta.uid.as_deref().map_or_else(|| format!("{namespace}/{name}").into(), Into::into),
            labels: meta.labels.iter().flatten().map(|(k, v)| (strings.get(k), strings.get(v))).collect(),
            annotations,
            owner,
            ips: ips.into(),
            host_ips: strings.addresses(&host_ips),
            host_network: pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false),
            completed: matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")),
            created_ms: time_ms(meta.creation_timestamp.as_ref()),
            started_ms: time_ms(status.and_then(|s| s.start_time.as_ref())),
            deletion_ms: time_ms(meta.deletion_timestamp.as_ref()),
            finished_ms,
            name,
            namespace,
        }
    }

    /// The Helm release of a pod that is its own workload (no owner), from its annotations.
    pub fn own_release(&self) -> Option<Release> {
        if self.owner.is_some() {
            return None;
        }
        Release::from_annotations(|k| self.annotation(k), &self.namespace)
    }

    /// The value of a kept annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }

    /// A pod that has run to completion no longer holds its IP.
    pub fn finished(&self) -> bool {
        self.completed
    }

    /// The IPs that identify this pod: none for hostNetwork pods, which share the node's.
    pub fn own_ips(&self) -> &[IpAddr] {
        if self.host_network { &[] } else { &self.ips }
    }

    /// When the pod started holding its IP, as well as the object tells.
    pub fn start_ms(&self) -> Option<i64> {
        self.started_ms.or(self.created_ms)
    }
}

/// The Service fields resolution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceRecord {
    pub name: String,
    pub namespace: String,
    /// ClusterIPs; empty for headless and ExternalName Services.
    pub cluster_ips: Vec<IpAddr>,
    /// (port, port name).
    pub ports: Vec<(u16, Option<String>)>,
}

impl ServiceRecord {
    pub fn from_service(svc: &Service) -> Self {
        let spec = svc.spec.as_ref();
        let cluster_ips = parse_ips(
            spec.and_then(|s| s.cluster_ip.as_deref())
                .into_iter()
                .chain(spec.and_then(|s| s.cluster_ips.as_ref()).into_iter().flatten().map(String::as_str)),
        );
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| Some((u16::try_from(p.port).ok()?, p.name.clone())))
            .collect();
        Self {
            name: svc.metadata.name.clone().unwrap_or_default(),
            namespace: svc.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned()),
            cluster_ips,
            ports,
        }
    }
}

/// One endpoint of a slice: its addresses, readiness and the pod behind it when named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointRecord {
    pub addresses: Vec<IpAddr>,
    /// A missing condition means ready, as the API documents.
    pub ready: bool,
    pub pod_uid: Option<String>,
    pub pod_name: Option<String>,
}

/// The EndpointSlice fields resolution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SliceRecord {
    pub namespace: String,
    /// The Service named by the `kubernetes.io/service-name` label.
    pub service: String,
    /// (port name, port number) of the endpoints.
    pub ports: Vec<(Option<String>, Option<u16>)>,
    pub endpoints: Vec<EndpointRecord>,
}

impl SliceRecord {
    /// The record of a slice; None for a slice that names no Service.
    pub fn from_slice(slice: &EndpointSlice) -> Option<Self> {
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.clone();
        let endpoints = slice
            .endpoints
            .iter()
            .map(|e| {
                let pod_ref = e.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod"));
                EndpointRecord {
                    addresses: parse_ips(e.addresses.iter().map(String::as_str)),
                    ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                    pod_uid: pod_ref.and_then(|r| r.uid.clone()),
                    pod_name: pod_ref.and_then(|r| r.name.clone()),
                }
            })
            .collect();
        let ports = slice
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.port.and_then(|n| u16::try_from(n).ok())))
            .collect();
        Some(Self {
            namespace: slice.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned()),
            service,
            ports,
            endpoints,
        })
    }
}

/// Every object a snapshot is built from, whichever source it came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterObjects {
    pub pods: Vec<PodRecord>,
    pub services: Vec<ServiceRecord>,
    pub slices: Vec<SliceRecord>,
    pub owners: HashMap<OwnerKey, OwnerRecord>,
    /// Node addresses known directly (Node objects); pods' host IPs are added when building.
    pub node_ips: HashSet<IpAddr>,
    /// Address ranges the cluster says are its own: Nodes' `spec.podCIDRs` and ServiceCIDR
    /// objects' `spec.cidrs`.
    pub cidrs: Vec<IpNet>,
    /// Every release the owners name, once: what their records share.
    pub releases: HashSet<Release>,
    /// The strings the records share.
    pub strings: Interner,
}

impl ClusterObjects {
    /// Adds the owner record of an object (`apps/v1`, `ReplicaSet`, its metadata).
    pub fn add_owner_of(&mut self, api_version: &str, kind: &str, meta: &ObjectMeta) {
        let record = OwnerRecord::from_meta(api_version, kind, meta, &mut self.strings);
        self.add_owner(record);
    }

    pub fn add_owner(&mut self, mut record: OwnerRecord) {
        record.release = record.release.map(|r| self.intern(r));
        self.owners.insert(record.key.clone(), record);
    }

    /// The one copy of `release` these objects hold.
    pub fn intern(&mut self, release: Release) -> Release {
        match self.releases.get(&release) {
            Some(known) => known.clone(),
            None => {
                self.releases.insert(release.clone());
                release
            }
        }
    }

    /// What a Node object tells: its addresses (`status.addresses` of type
    /// InternalIP/ExternalIP) and the pod ranges assigned to it (`spec.podCIDR(s)`).
    pub fn add_node_addresses(&mut self, data: &serde_json::Value) {
        let pod_cidr = data.pointer("/spec/podCIDR").and_then(|c| c.as_str());
        let pod_cidrs = data.pointer("/spec/podCIDRs").and_then(|c| c.as_array());
        self.add_cidrs(pod_cidr.into_iter().chain(pod_cidrs.into_iter().flatten().filter_map(|c| c.as_str())));
        let addresses = data.pointer("/status/addresses").and_then(|a| a.as_array());
        for address in addresses.into_iter().flatten() {
            let kind = address.get("type").and_then(|t| t.as_str());
            if matches!(kind, Some("InternalIP" | "ExternalIP"))
                && let Some(ip) = address.get("address").and_then(|a| a.as_str()).and_then(|a| a.parse().ok())
            {
                self.node_ips.insert(ip);
            }
        }
    }

    /// The ranges of a ServiceCIDR object (`networking.k8s.io/v1`, `spec.cidrs`).
    pub fn add_service_cidrs(&mut self, data: &serde_json::Value) {
        let cidrs = data.pointer("/spec/cidrs").and_then(|c| c.as_array());
        self.add_cidrs(cidrs.into_iter().flatten().filter_map(|c| c.as_str()));
    }

    /// Adds ranges written as CIDRs, once each; a string that is not a CIDR is skipped.
    pub fn add_cidrs<'a>(&mut self, cidrs: impl IntoIterator<Item = &'a str>) {
        for net in cidrs.into_iter().filter_map(|c| c.parse::<IpNet>().ok()).map(|n| n.trunc()) {
            if !self.cidrs.contains(&net) {
                self.cidrs.push(net);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interner_shares_copies_and_drops_those_no_record_holds() {
        let mut strings = Interner::default();
        let a = strings.get("app.kubernetes.io/name");
        let b = strings.get("app.kubernetes.io/name");
        assert!(Arc::ptr_eq(&a, &b), "one copy");
        // Churn: names nothing holds any more do not pile up.
        for i in 0..100_000 {
            drop(strings.get(&format!("pod-template-hash-{i}")));
        }
        assert!(strings.strings.set.len() <= 2048, "{} copies kept", strings.strings.set.len());
        assert!(Arc::ptr_eq(&a, &strings.get("app.kubernetes.io/name")), "a held copy stays shared");
        let node: [IpAddr; 1] = [IpAddr::from([10, 0, 0, 1])];
        assert!(Arc::ptr_eq(&strings.addresses(&node), &strings.addresses(&node)), "one copy of a node's addresses");
    }
}
