//! An immutable, indexed view of the cluster at one moment ([`Snapshot`]), resolution against
//! it, and the [`ClusterHandle`] through which the current one is shared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;
use tokio::sync::watch;

use crate::history::{Holder, IpHistory, PodHistory};
use crate::identity::{Evidence, Peer, Release, ResolveOptions, UnresolvedReason, Workload, duration_ms};
use crate::model::{ClusterObjects, OwnerKey, OwnerRecord, PodRecord, SliceRecord};

/// The namespace and name of the Service whose ClusterIP and endpoints are the API server.
const API_SERVER_SERVICE: (&str, &str) = ("default", "kubernetes");
/// Owner chains longer than this are cut (they only happen with reference cycles).
const MAX_OWNER_DEPTH: usize = 16;

/// A workload's place in [`Snapshot::workloads`]: pods of one workload share one copy of it.
type WorkloadId = u32;

/// Who serves one port of a Service, worked out when the snapshot is built: the ready endpoints
/// on the slices serving that port (all the Service's slices when none does).
#[derive(Debug, Clone)]
struct Backends {
    /// How many endpoints each workload has, of those whose pod the slice names (targetRef).
    named: BTreeMap<Workload, usize>,
    /// The addresses of each endpoint whose pod the slice does not name (or names a pod this
    /// snapshot does not know): looked up in the IP history at the flow's time.
    by_address: Vec<Vec<IpAddr>>,
}

#[derive(Debug, Clone, Default)]
struct ServiceEntry {
    /// (port, port name), as the Service declares them.
    ports: Vec<(u16, Option<String>)>,
    /// The backends of each port name the Service declares, and of None (an unnamed port, or
    /// one the Service does not declare).
    backends: Vec<(Option<String>, Backends)>,
    /// (port name, port number on the pods), as the Service's EndpointSlices give them.
    target_ports: Vec<(Option<String>, u16)>,
}

/// A workload a known pod belongs to.
#[derive(Debug, Clone)]
struct WorkloadEntry {
    workload: Workload,
    /// The union of its pods' labels.
    labels: BTreeMap<String, String>,
    /// The Helm release the top of its owner chain names (shared by the release's workloads).
    release: Option<Release>,
}

/// The one copy of `release` in `known`.
fn intern(known: &mut HashSet<Release>, release: Release) -> Release {
    match known.get(&release) {
        Some(shared) => shared.clone(),
        None => {
            known.insert(release.clone());
            release
        }
    }
}

/// A Service as (namespace, name).
type ServiceKey = (Arc<str>, Arc<str>);

/// What one end of a flow resolved to, a workload borrowed from the snapshot it was resolved
/// in: resolving takes no reference on the workload's names (shared by every thread resolving
/// flows to it), and two ends borrowing the same workload are the same end.
#[derive(Debug, Clone)]
pub enum End<'a> {
    /// One of the snapshot's workloads.
    Workload(&'a Workload),
    /// Any other end (the snapshot never gives a workload this way; one made elsewhere is
    /// still a workload to [`End::is_workload`]).
    Peer(Peer),
}

impl End<'_> {
    /// The end as a [`Peer`] of its own.
    pub fn into_peer(self) -> Peer {
        match self {
            End::Workload(w) => Peer::Workload(w.clone()),
            End::Peer(p) => p,
        }
    }

    /// Whether the end is a workload.
    pub fn is_workload(&self) -> bool {
        matches!(self, End::Workload(_) | End::Peer(Peer::Workload(_)))
    }

    /// Why the end could not be attributed, when it could not.
    pub fn unresolved_reason(&self) -> Option<UnresolvedReason> {
        match self {
            End::Peer(Peer::Unresolved { reason, .. }) => Some(*reason),
            _ => None,
        }
    }
}

/// The cluster as resolution sees it at one moment. Immutable; shared as `Arc<Snapshot>`.
///
/// Its maps are looked up for every flow ingested (several times each): they hash with
/// foldhash, a fraction of SipHash's cost and seeded per process as SipHash is, so a peer
/// cannot choose addresses or UIDs that collide.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Pod UID → its workload.
    pods: foldhash::HashMap<Arc<str>, WorkloadId>,
    /// Every workload a known pod belongs to, with the union of its pods' labels and its release.
    workloads: Vec<WorkloadEntry>,
    workload_ids: foldhash::HashMap<Workload, WorkloadId>,
    /// Shared with the source's history until that changes.
    ips: Arc<IpHistory>,
    tolerance_ms: i64,
    cluster_cidrs: Vec<IpNet>,
    services_by_ip: foldhash::HashMap<IpAddr, ServiceKey>,
    services: foldhash::HashMap<ServiceKey, ServiceEntry>,
    api_server_ips: foldhash::HashSet<IpAddr>,
    /// API server endpoint address → its ports (empty: any port).
    api_server_endpoints: foldhash::HashMap<IpAddr, Vec<u16>>,
    node_ips: foldhash::HashSet<IpAddr>,
    built_at_ms: i64,
}

/// The widest range one Service CIDR can be: Kubernetes refuses a larger one (a /12 of IPv4,
/// a /108 of IPv6), so ClusterIPs further apart belong to different ranges.
const WIDEST_SERVICE_RANGE: (u8, u8) = (12, 108);

/// The address ranges that are the cluster's own: those configured, those the cluster states
/// (Nodes' pod CIDRs, ServiceCIDR objects), and the smallest range holding the ClusterIPs of
/// each widest possible Service CIDR they fall in (a new Service's ClusterIP is then in range
/// before the Service is seen, as long as the cluster's Services spread over its range).
fn cluster_ranges(opts: &ResolveOptions, objects: &ClusterObjects) -> Vec<IpNet> {
    let mut ranges: Vec<IpNet> = opts.cluster_cidrs.iter().chain(&objects.cidrs).map(IpNet::trunc).collect();
    let mut learned: BTreeMap<IpNet, IpNet> = BTreeMap::new();
    for ip in objects.services.iter().flat_map(|s| &s.cluster_ips) {
        if ranges.iter().any(|r| r.contains(ip)) {
            continue;
        }
        let widest = match ip {
            IpAddr::V4(_) => WIDEST_SERVICE_RANGE.0,
            IpAddr::V6(_) => WIDEST_SERVICE_RANGE.1,
        };
        let Ok(outer) = IpNet::new(*ip, widest).map(|n| n.trunc()) else { continue };
        let covering = match learned.get(&outer) {
            Some(net) => covering(net, *ip, widest),
            None => IpNet::from(*ip),
        };
        learned.insert(outer, covering);
    }
    ranges.extend(learned.into_values());
    ranges.sort();
    ranges.dedup();
    ranges
}

/// The smallest range, no wider than `/widest`, holding `net` and `ip`.
fn covering(net: &IpNet, ip: IpAddr, widest: u8) -> IpNet {
    let mut len = net.prefix_len();
    loop {
        let Ok(candidate) = IpNet::new(net.addr(), len).map(|n| n.trunc()) else { return *net };
        if candidate.contains(&ip) || len <= widest {
            return candidate;
        }
        len -= 1;
    }
}

/// The top of a pod's owner chain: the last owner that could be read (the pod itself when it has
/// none).
struct Top {
    kind: String,
    name: String,
    /// The Helm release the top object's annotations name.
    release: Option<Release>,
}

fn walk_owners(pod: &PodRecord, owners: &HashMap<OwnerKey, OwnerRecord>) -> Top {
    let mut top = Top { kind: "Pod".to_owned(), name: pod.name.to_string(), release: pod.own_release() };
    let mut next = pod.owner.clone();
    for _ in 0..MAX_OWNER_DEPTH {
        let Some(owner_ref) = next.take() else { break };
        match owners.get(&owner_ref.key(&pod.namespace)) {
            Some(record) => {
                top = Top {
                    kind: record.key.kind.clone(),
                    name: record.key.name.clone(),
                    release: record.release.clone(),
                };
                next = record.owner.clone();
            }
            None => {
                tracing::debug!(pod = %pod.name, namespace = %pod.namespace, owner_kind = %owner_ref.kind,
                    owner = %owner_ref.name, "owner not readable, workload is the last readable owner");
            }
        }
    }
    top
}

/// A pod's workload: the name annotation when present, else the top of its owner chain (dots in
/// the name become underscores, as the operator does). The kind is the chain's in both cases,
/// and so is the Helm release, returned beside it.
pub(crate) fn workload_of(
    pod: &PodRecord,
    owners: &HashMap<OwnerKey, OwnerRecord>,
    opts: &ResolveOptions,
) -> (Workload, Option<Release>) {
    let top = walk_owners(pod, owners);
    let annotated = opts.name_annotations().into_iter().find_map(|a| pod.annotation(a));
    let name = match annotated {
        Some(name) => name.to_owned(),
        None => top.name.replace('.', "_"),
    };
    (Workload::new(name, &*pod.namespace, top.kind), top.release)
}

impl Snapshot {
    /// Index `objects` and the carried-over `history` into a snapshot.
    pub(crate) fn build(objects: &ClusterObjects, history: &PodHistory, opts: &ResolveOptions, now_ms: i64) -> Self {
        let mut snap = Snapshot {
            ips: history.ips.clone(),
            tolerance_ms: duration_ms(opts.ip_time_tolerance),
            cluster_cidrs: cluster_ranges(opts, objects),
            node_ips: objects.node_ips.iter().copied().collect(),
            built_at_ms: now_ms,
            ..Snapshot::default()
        };
        // A deleted pod keeps the workload and release it last had (the owners may be gone too).
        let retained = history.retained.values().map(|r| {
            let (workload, release) = match &r.workload {
                Some(workload) => (workload.clone(), r.release.clone()),
                None => workload_of(&r.record, &objects.owners, opts),
            };
            (&r.record, workload, release)
        });
        let current = objects.pods.iter().map(|p| {
            let (workload, release) = workload_of(p, &objects.owners, opts);
            (p, workload, release)
        });
        // Releases are interned: every workload of one release shares its names.
        let mut releases: HashSet<Release> = objects.releases.clone();
        // Only while building: endpoints that name their pod but not its UID.
        let mut pod_by_name: HashMap<(&str, &str), &str> = HashMap::new();
        for (pod, workload, release) in retained.chain(current) {
            pod_by_name.insert((&pod.namespace, &pod.name), &pod.uid);
            let id = match snap.workload_ids.get(&workload) {
                Some(id) => *id,
                None => {
                    let id = WorkloadId::try_from(snap.workloads.len()).unwrap_or(WorkloadId::MAX);
                    snap.workload_ids.insert(workload.clone(), id);
                    snap.workloads.push(WorkloadEntry { workload, labels: BTreeMap::new(), release: None });
                    id
                }
            };
            if let Some(entry) = snap.workloads.get_mut(id as usize) {
                for (k, v) in &pod.labels {
                    if entry.labels.get(&**k).map(String::as_str) != Some(&**v) {
                        entry.labels.insert(k.to_string(), v.to_string());
                    }
                }
                // Current pods come last: a workload's release is what its current pods' owners say.
                if let Some(release) = release {
                    entry.release = Some(intern(&mut releases, release));
                }
            }
            snap.pods.insert(pod.uid.clone(), id);
        }
        snap.pods.shrink_to_fit();
        snap.workloads.shrink_to_fit();
        for pod in &objects.pods {
            snap.node_ips.extend(pod.host_ips.iter().copied());
            if pod.host_network {
                snap.node_ips.extend(pod.ips.iter().copied());
            }
        }
        let mut slices_of: HashMap<(&str, &str), Vec<&SliceRecord>> = HashMap::new();
        for slice in &objects.slices {
            if slice.namespace == API_SERVER_SERVICE.0 && slice.service == API_SERVER_SERVICE.1 {
                let ports: Vec<u16> = slice.ports.iter().filter_map(|(_, p)| *p).collect();
                for ep in &slice.endpoints {
                    for ip in &ep.addresses {
                        snap.api_server_endpoints.entry(*ip).or_default().extend(ports.iter().copied());
                    }
                }
            }
            slices_of.entry((&slice.namespace, &slice.service)).or_default().push(slice);
        }
        for svc in &objects.services {
            let key: ServiceKey = (svc.namespace.as_str().into(), svc.name.as_str().into());
            if *key.0 == *API_SERVER_SERVICE.0 && *key.1 == *API_SERVER_SERVICE.1 {
                snap.api_server_ips.extend(svc.cluster_ips.iter().copied());
            }
            for ip in &svc.cluster_ips {
                snap.services_by_ip.insert(*ip, key.clone());
            }
            let slices = slices_of.get(&(svc.namespace.as_str(), svc.name.as_str())).map_or(&[][..], Vec::as_slice);
            let mut backends: Vec<(Option<String>, Backends)> = Vec::new();
            for name in std::iter::once(None).chain(svc.ports.iter().map(|(_, name)| name.clone())) {
                if !backends.iter().any(|(known, _)| *known == name) {
                    let serving = snap.backends(&svc.namespace, slices, name.as_deref(), &pod_by_name);
                    backends.push((name, serving));
                }
            }
            let mut target_ports: Vec<(Option<String>, u16)> = slices
                .iter()
                .flat_map(|s| s.ports.iter().filter_map(|(name, p)| Some((name.clone(), (*p)?))))
                .collect();
            target_ports.sort();
            target_ports.dedup();
            snap.services.insert(key, ServiceEntry { ports: svc.ports.clone(), backends, target_ports });
        }
        snap
    }

    /// Who serves `port_name` of a Service in `namespace` with these `slices`.
    fn backends(
        &self,
        namespace: &str,
        slices: &[&SliceRecord],
        port_name: Option<&str>,
        pod_by_name: &HashMap<(&str, &str), &str>,
    ) -> Backends {
        let serving: Vec<&SliceRecord> = slices
            .iter()
            .copied()
            .filter(|s| s.ports.is_empty() || s.ports.iter().any(|(n, _)| n.as_deref() == port_name))
            .collect();
        let chosen = if serving.is_empty() { slices } else { &serving };
        let mut named: BTreeMap<&Workload, usize> = BTreeMap::new();
        let mut by_address = Vec::new();
        for ep in chosen.iter().flat_map(|s| &s.endpoints).filter(|ep| ep.ready) {
            let pod = ep.pod_uid.as_deref().and_then(|uid| self.workload_of_uid(uid)).or_else(|| {
                let uid = pod_by_name.get(&(namespace, ep.pod_name.as_deref()?))?;
                self.workload_of_uid(uid)
            });
            match pod {
                Some(workload) => *named.entry(workload).or_default() += 1,
                None if !ep.addresses.is_empty() => by_address.push(ep.addresses.clone()),
                None => {}
            }
        }
        Backends { named: named.into_iter().map(|(w, n)| (w.clone(), n)).collect(), by_address }
    }

    /// The workload of the pod with this UID.
    fn workload_of_uid(&self, uid: &str) -> Option<&Workload> {
        let id = *self.pods.get(uid)?;
        self.workloads.get(id as usize).map(|e| &e.workload)
    }

    /// When this snapshot was built (Unix milliseconds).
    pub fn built_at_ms(&self) -> i64 {
        self.built_at_ms
    }

    /// The address ranges taken as the cluster's own (configured, stated by the cluster, and
    /// learned from its ClusterIPs): an unknown address in one is unresolved, never outside.
    pub fn cluster_ranges(&self) -> &[IpNet] {
        &self.cluster_cidrs
    }

    /// How many pods (current and recently deleted) this snapshot knows.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The local end as the agent saw it: a pod UID from cgroup evidence wins over the IP;
    /// a host-network end without a pod UID is Unresolved(NodeIp) — never guessed from the IP.
    pub fn resolve_local(&self, ev: &Evidence) -> Peer {
        self.resolve_local_end(ev).into_peer()
    }

    /// [`Snapshot::resolve_local`], a workload borrowed from this snapshot rather than copied.
    pub fn resolve_local_end(&self, ev: &Evidence) -> End<'_> {
        let unresolved =
            |reason| End::Peer(Peer::Unresolved { ip: ev.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), reason });
        if let Some(uid) = ev.pod_uid {
            if let Some(workload) = self.workload_of_uid(uid) {
                return End::Workload(workload);
            }
            if ev.host_network || ev.ip.is_none() {
                return unresolved(UnresolvedReason::UnknownPodUid);
            }
        }
        if ev.host_network {
            return unresolved(UnresolvedReason::NodeIp);
        }
        match ev.ip {
            Some(ip) => self.resolve_address(ip, ev.at_ms),
            None => unresolved(UnresolvedReason::NoEvidence),
        }
    }

    /// The far end of a flow, by address at time `at_ms`: the pod that held the IP at that time,
    /// a Service ClusterIP → the workload behind the Service through its EndpointSlices (a
    /// Service with no ready endpoints → Peer::Service), the API server's ClusterIP/endpoints →
    /// ApiServer, a node IP → Unresolved(NodeIp), otherwise External.
    pub fn resolve_remote(&self, ip: IpAddr, port: u16, at_ms: i64) -> Peer {
        self.resolve_remote_end(ip, port, at_ms).into_peer()
    }

    /// [`Snapshot::resolve_remote`], a workload borrowed from this snapshot rather than copied.
    pub fn resolve_remote_end(&self, ip: IpAddr, port: u16, at_ms: i64) -> End<'_> {
        if self.is_api_server(ip, port) {
            return End::Peer(Peer::ApiServer);
        }
        if let Some(key) = self.services_by_ip.get(&ip) {
            return self.service_peer(key, port, at_ms);
        }
        self.resolve_address(ip, at_ms)
    }

    /// The port on the pods that `port` of the Service at ClusterIP `ip` leads to (its
    /// targetPort, as the EndpointSlices give it), when that is known and one number.
    pub fn target_port(&self, ip: IpAddr, port: u16) -> Option<u16> {
        let entry = self.services.get(self.services_by_ip.get(&ip)?)?;
        let (_, name) = entry.ports.iter().find(|(p, _)| *p == port)?;
        let mut targets = entry.target_ports.iter().filter(|(n, _)| n == name).map(|(_, p)| *p);
        let first = targets.next()?;
        targets.all(|p| p == first).then_some(first)
    }

    /// Whether `ip:port` is the API server: its ClusterIP, or one of its endpoints.
    pub fn is_api_server(&self, ip: IpAddr, port: u16) -> bool {
        self.api_server_ips.contains(&ip)
            || self.api_server_endpoints.get(&ip).is_some_and(|ports| ports.is_empty() || ports.contains(&port))
    }

    /// The Service whose ClusterIP `ip` is, as (name, namespace).
    pub fn service_at(&self, ip: IpAddr) -> Option<(&Arc<str>, &Arc<str>)> {
        self.services_by_ip.get(&ip).map(|key| (&key.1, &key.0))
    }

    /// The workload of a pod (current, or deleted within the retention period).
    pub fn workload_of_pod(&self, uid: &str) -> Option<Workload> {
        self.workload_of_uid(uid).cloned()
    }

    /// Pod labels of a workload (union over its known pods), for --exclude-labels filtering.
    pub fn labels_of(&self, w: &Workload) -> Option<&BTreeMap<String, String>> {
        let id = *self.workload_ids.get(w)?;
        self.workloads.get(id as usize).map(|e| &e.labels)
    }

    /// The Helm release a workload belongs to (see docs/identity.md, "Helm releases"): what the
    /// top object of its current pods' owner chain names; `None` when it names none, or the
    /// workload is not known.
    pub fn release_of(&self, w: &Workload) -> Option<&Release> {
        let id = *self.workload_ids.get(w)?;
        self.workloads.get(id as usize)?.release.as_ref()
    }

    /// The release of the workload of the pod with this UID (current, or deleted within the
    /// retention period).
    pub fn release_of_pod(&self, uid: &str) -> Option<Release> {
        let id = *self.pods.get(uid)?;
        self.workloads.get(id as usize)?.release.clone()
    }

    /// An address that is not a Service: a pod's by history, else a node's, else outside.
    fn resolve_address(&self, ip: IpAddr, at_ms: i64) -> End<'_> {
        let holder = self.ips.lookup(ip, at_ms, self.tolerance_ms);
        if let Holder::Pod(uid) = holder
            && let Some(workload) = self.workload_of_uid(uid)
        {
            return End::Workload(workload);
        }
        if self.node_ips.contains(&ip) {
            return End::Peer(Peer::Unresolved { ip, reason: UnresolvedReason::NodeIp });
        }
        if holder != Holder::Unknown {
            return End::Peer(Peer::Unresolved { ip, reason: UnresolvedReason::NoPodAtTime });
        }
        if self.cluster_cidrs.iter().any(|net| net.contains(&ip)) {
            return End::Peer(Peer::Unresolved { ip, reason: UnresolvedReason::UnknownClusterIp });
        }
        End::Peer(Peer::External { ip })
    }

    /// The workload behind a Service: the one most of its ready endpoints (on the slices serving
    /// `port`) belong to, ties to the smallest; the Service itself when none is known.
    fn service_peer(&self, key: &ServiceKey, port: u16, at_ms: i64) -> End<'_> {
        let service = || End::Peer(Peer::Service { name: key.1.clone(), namespace: key.0.clone() });
        let Some(entry) = self.services.get(key) else { return service() };
        // A port the Service does not have reaches nobody (kube-proxy rejects it): the call is
        // to the Service, not to the workload behind its other ports.
        let port_name = match entry.ports.iter().find(|(p, _)| *p == port) {
            Some((_, name)) => name.as_deref(),
            None if entry.ports.is_empty() => None,
            None => return service(),
        };
        let Some((_, backends)) = entry.backends.iter().find(|(name, _)| name.as_deref() == port_name) else {
            return service();
        };
        let named = backends.named.iter().map(|(w, n)| (w, *n));
        let best = if backends.by_address.is_empty() {
            most_endpoints(named)
        } else {
            let mut counts: BTreeMap<&Workload, usize> = named.collect();
            for addresses in &backends.by_address {
                let holder = addresses.iter().find_map(|ip| match self.ips.lookup(*ip, at_ms, self.tolerance_ms) {
                    Holder::Pod(uid) => Some(uid),
                    _ => None,
                });
                if let Some(workload) = holder.and_then(|uid| self.workload_of_uid(uid)) {
                    *counts.entry(workload).or_default() += 1;
                }
            }
            most_endpoints(counts)
        };
        best.map_or_else(service, End::Workload)
    }
}

/// The workload with the most endpoints, ties to the smallest (`counts` in workload order).
fn most_endpoints<'a>(counts: impl IntoIterator<Item = (&'a Workload, usize)>) -> Option<&'a Workload> {
    // Keeping only strictly larger counts picks the smallest on ties.
    let mut best: Option<(&Workload, usize)> = None;
    for (w, n) in counts {
        if best.is_none_or(|(_, b)| n > b) {
            best = Some((w, n));
        }
    }
    best.map(|(w, _)| w)
}

#[derive(Debug)]
struct Shared {
    current: watch::Sender<Arc<Snapshot>>,
    ready: AtomicBool,
    synced_at_ms: std::sync::atomic::AtomicI64,
}

/// A handle on the cluster state: the current [`Snapshot`] (replaced as a whole when the source
/// changes, so a reader never sees half an update) and whether the source is ready.
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    shared: Arc<Shared>,
}

impl ClusterHandle {
    /// A handle on an empty, not yet ready, cluster.
    pub(crate) fn new() -> Self {
        let (current, _) = watch::channel(Arc::new(Snapshot::default()));
        Self {
            shared: Arc::new(Shared {
                current,
                ready: AtomicBool::new(false),
                synced_at_ms: std::sync::atomic::AtomicI64::new(i64::MAX),
            }),
        }
    }

    /// A handle on a snapshot that never changes, ready at once (for tests, or a one-shot
    /// inventory load).
    pub fn fixed(snapshot: Arc<Snapshot>) -> Self {
        let handle = Self::new();
        handle.publish(snapshot, true);
        handle
    }

    /// The current snapshot: cheap (an `Arc` clone); hold it for a batch of resolutions.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.borrow().clone()
    }

    /// Whether the source has delivered a complete view (inventory loaded; every reflector
    /// listed).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The time (Unix ms) up to which the current snapshot is known to hold everything the
    /// source knew: a flow seen later may involve a pod the snapshot does not have yet.
    /// `i64::MAX` for a source that is always current (watches).
    pub fn synced_at_ms(&self) -> i64 {
        self.shared.synced_at_ms.load(Ordering::Acquire)
    }

    /// The source was found current as of `at_ms` (a look at files that started then).
    pub(crate) fn mark_synced(&self, at_ms: i64) {
        self.shared.synced_at_ms.store(at_ms, Ordering::Release);
    }

    /// A receiver that is told each time a new snapshot is published.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.current.subscribe()
    }

    /// Wait until the source is ready and a snapshot has been published.
    pub async fn wait_ready(&self) {
        let mut rx = self.subscribe();
        while !self.is_ready() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Publish a new snapshot, and readiness with it.
    pub(crate) fn publish(&self, snapshot: Arc<Snapshot>, ready: bool) {
        // Readiness first, so a waiter woken by the new snapshot sees it.
        if ready {
            self.shared.ready.store(true, Ordering::Release);
        }
        self.shared.current.send_replace(snapshot);
    }
}

#[cfg(test)]
mod tests;
