//! The cluster read from the Kubernetes API: reflectors on Pods, Services, EndpointSlices,
//! ReplicaSets, Jobs and Nodes (all namespaces), trimmed to what resolution reads; other owner kinds
//! by cached GETs; the pod IP history built from the watch events as they arrive.

mod owners;
mod pods;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Node, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus,
    Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::identity::{ResolveOptions, duration_ms, now_ms};
use crate::model::{ClusterObjects, Interner, PodRecord, RELEASE_ANNOTATIONS, ServiceRecord, SliceRecord};
use crate::snapshot::{ClusterHandle, Snapshot};
use owners::{OwnerCache, OwnerTtls};
use pods::PodTracker;

/// Timing of the API source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSourceConfig {
    /// How long after a change the snapshot is rebuilt (changes within it are batched).
    pub debounce: Duration,
    /// How long a fetched owner object is trusted before it is fetched again.
    pub owner_cache_ttl: Duration,
    /// How long an owner that answered 403 or 404 is left alone.
    pub owner_failure_ttl: Duration,
    /// How long before an owner GET that failed otherwise (network, 5xx) is retried.
    pub owner_retry: Duration,
}

impl Default for KubeSourceConfig {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            owner_cache_ttl: Duration::from_secs(600),
            owner_failure_ttl: Duration::from_secs(300),
            owner_retry: Duration::from_secs(15),
        }
    }
}

/// The cluster from the Kubernetes API. [`KubeSource::spawn`] starts the reflectors and returns
/// the handle; the handle is ready once every reflector has listed and a snapshot is built.
pub struct KubeSource {
    client: Client,
    options: ResolveOptions,
    config: KubeSourceConfig,
}

/// One item of the merged watch streams: pod events carry the pod (for the IP history); the
/// other kinds only say that their store changed.
enum Change {
    Pod(Box<watcher::Event<Pod>>),
    Other,
}

type Changes = BoxStream<'static, Result<Change, (&'static str, watcher::Error)>>;

/// Drop what no resolution reads: managed fields and all annotations but `keep`.
fn trim_meta(meta: &mut ObjectMeta, keep: &[String]) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| keep.contains(k));
    }
    if meta.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        meta.annotations = None;
    }
}

/// The annotations an object is trimmed to: `keep`, and the Helm release's when the object has
/// no owner (it can then be the top of an owner chain; an owned one never is, its owner is read).
fn kept_annotations(meta: &ObjectMeta, keep: &[String]) -> Vec<String> {
    let mut kept = keep.to_vec();
    if meta.owner_references.as_ref().is_none_or(Vec::is_empty) {
        kept.extend(RELEASE_ANNOTATIONS.map(str::to_owned));
    }
    kept
}

/// An owner object in a reflector (ReplicaSet, Job) reduced to its metadata, and of its
/// annotations only the Helm release's when it has no owner of its own.
fn trim_owner(meta: &mut ObjectMeta) {
    let kept = kept_annotations(meta, &[]);
    trim_meta(meta, &kept);
}

/// A pod reduced to identity, owners, labels, hostNetwork and its addresses (and the Helm
/// release's annotations when it has no owner).
fn trim_pod(pod: &mut Pod, keep: &[String]) {
    let kept = kept_annotations(&pod.metadata, keep);
    trim_meta(&mut pod.metadata, &kept);
    if let Some(spec) = pod.spec.as_mut() {
        *spec = PodSpec { host_network: spec.host_network, node_name: spec.node_name.take(), ..PodSpec::default() };
    }
    if let Some(status) = pod.status.as_mut() {
        *status = PodStatus {
            pod_ip: status.pod_ip.take(),
            pod_ips: status.pod_ips.take(),
            host_ip: status.host_ip.take(),
            host_ips: status.host_ips.take(),
            phase: status.phase.take(),
            // When the pod started holding its IP: the start of its IP history at first sight.
            start_time: status.start_time.take(),
            // When a finished pod's containers ended: when it stopped holding its IP.
            container_statuses: status.container_statuses.take().map(|statuses| {
                statuses
                    .into_iter()
                    .filter_map(|c| Some(finished_only(c.name, c.state?.terminated?.finished_at?)))
                    .collect()
            }),
            ..PodStatus::default()
        };
    }
}

/// A Node reduced to its pod ranges and addresses.
fn trim_node(node: &mut Node) {
    trim_meta(&mut node.metadata, &[]);
    node.metadata.labels = None;
    if let Some(spec) = node.spec.as_mut() {
        *spec = NodeSpec { pod_cidr: spec.pod_cidr.take(), pod_cidrs: spec.pod_cidrs.take(), ..NodeSpec::default() };
    }
    if let Some(status) = node.status.as_mut() {
        *status = NodeStatus { addresses: status.addresses.take(), ..NodeStatus::default() };
    }
}

/// A container status holding nothing but when the container terminated.
fn finished_only(name: String, finished_at: Time) -> ContainerStatus {
    let terminated = ContainerStateTerminated { finished_at: Some(finished_at), ..ContainerStateTerminated::default() };
    let state = ContainerState { terminated: Some(terminated), ..ContainerState::default() };
    ContainerStatus { name, state: Some(state), ..ContainerStatus::default() }
}

/// A reflector for `K` with every object passed through `trim`, as a stream of [`Change`]s.
fn reflect<K>(
    client: &Client,
    kind: &'static str,
    trim: impl FnMut(&mut K) + Send + 'static,
    to_change: fn(watcher::Event<K>) -> Change,
) -> (Store<K>, Changes)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .map(move |event| event.map(to_change).map_err(|e| (kind, e)))
        .boxed();
    (reader, stream)
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("options", &self.options)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubeSource {
    pub fn new(client: Client, options: ResolveOptions) -> Self {
        Self { client, options, config: KubeSourceConfig::default() }
    }

    pub fn with_config(mut self, config: KubeSourceConfig) -> Self {
        self.config = config;
        self
    }

    /// Start watching; call from within a Tokio runtime. The task runs until aborted.
    pub fn spawn(self) -> (ClusterHandle, JoinHandle<()>) {
        let handle = ClusterHandle::new();
        let task = tokio::spawn(self.run(handle.clone()));
        (handle, task)
    }

    async fn run(self, handle: ClusterHandle) {
        let keep: Vec<String> = self.options.name_annotations().iter().map(|s| (*s).to_owned()).collect();
        let (stores, mut changes) = reflectors(&self.client, &keep);
        let all_ready = stores.wait_until_ready().fuse();
        tokio::pin!(all_ready);

        let ttls = OwnerTtls {
            found: self.config.owner_cache_ttl,
            unreadable: self.config.owner_failure_ttl,
            retry: self.config.owner_retry,
        };
        let mut owners = OwnerCache::new(self.client.clone(), ttls, vec![("apps", "ReplicaSet"), ("batch", "Job")]);
        let mut tracker = PodTracker::new(&keep);
        let retention_ms = duration_ms(self.options.deleted_pod_retention);
        let mut ready = false;
        let mut rebuild_at: Option<Instant> = None;
        let mut expiry = tokio::time::interval(Duration::from_secs(60));
        loop {
            let deadline = rebuild_at.unwrap_or_else(Instant::now);
            tokio::select! {
                change = changes.next() => match change {
                    Some(Ok(change)) => {
                        if let Change::Pod(event) = change {
                            tracker.apply(*event, &handle.snapshot(), now_ms());
                        }
                        rebuild_at.get_or_insert_with(|| Instant::now() + self.config.debounce);
                    }
                    Some(Err((kind, e))) => {
                        tracing::warn!(kind, error = %crate::error_chain(&e), "watch failed; retrying");
                    }
                    None => {
                        tracing::error!("every watch stream ended; the cluster view is frozen");
                        return;
                    }
                },
                Ok(()) = &mut all_ready, if !ready => {
                    tracing::info!("every reflector has listed; cluster view ready");
                    ready = true;
                    rebuild_at = Some(Instant::now());
                }
                _ = expiry.tick() => {
                    owners.sweep();
                    if tracker.history.next_expiry(retention_ms).is_some_and(|t| t < now_ms()) {
                        rebuild_at.get_or_insert_with(Instant::now);
                    }
                }
                () = tokio::time::sleep_until(deadline), if ready && rebuild_at.is_some() => {
                    rebuild_at = None;
                    let snapshot = build(&stores, &mut tracker, &mut owners, &self.options).await;
                    handle.publish(Arc::new(snapshot), true);
                }
            }
        }
    }
}

/// The reflectors, each trimming what it stores, and their changes merged into one stream.
fn reflectors(client: &Client, keep: &[String]) -> (Stores, futures::stream::SelectAll<Changes>) {
    let keep = keep.to_vec();
    let (pods, pod_changes) =
        reflect(client, "Pod", move |p: &mut Pod| trim_pod(p, &keep), |e| Change::Pod(Box::new(e)));
    let (services, service_changes) =
        reflect(client, "Service", |s: &mut Service| trim_meta(&mut s.metadata, &[]), |_| Change::Other);
    let (slices, slice_changes) =
        reflect(client, "EndpointSlice", |s: &mut EndpointSlice| trim_meta(&mut s.metadata, &[]), |_| Change::Other);
    let trim_rs = |r: &mut ReplicaSet| {
        trim_owner(&mut r.metadata);
        r.spec = None;
        r.status = None;
    };
    let (replicasets, rs_changes) = reflect(client, "ReplicaSet", trim_rs, |_| Change::Other);
    let trim_job = |j: &mut Job| {
        trim_owner(&mut j.metadata);
        j.spec = None;
        j.status = None;
    };
    let (jobs, job_changes) = reflect(client, "Job", trim_job, |_| Change::Other);
    let (nodes, node_changes) = reflect(client, "Node", trim_node, |_| Change::Other);
    let changes = futures::stream::select_all([
        pod_changes,
        service_changes,
        slice_changes,
        rs_changes,
        job_changes,
        node_changes,
    ]);
    (Stores { pods, services, slices, replicasets, jobs, nodes }, changes)
}

#[derive(Debug)]
struct Stores {
    pods: Store<Pod>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    replicasets: Store<ReplicaSet>,
    jobs: Store<Job>,
    /// Not waited for: without the right to list Nodes the cluster view is still complete,
    /// only its pod ranges must then be given as flags.
    nodes: Store<Node>,
}

impl Stores {
    async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.pods.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        self.replicasets.wait_until_ready().await?;
        self.jobs.wait_until_ready().await
    }
}

/// A snapshot from the stores' current contents, the pod history and the owners reachable.
async fn build(stores: &Stores, tracker: &mut PodTracker, owners: &mut OwnerCache, opts: &ResolveOptions) -> Snapshot {
    let now = now_ms();
    tracker.history.expire(now, duration_ms(opts.deleted_pod_retention));
    let mut strings = Interner::default();
    let mut objects = ClusterObjects {
        pods: stores.pods.state().iter().map(|p| PodRecord::from_pod(p, tracker.keep(), &mut strings)).collect(),
        services: stores.services.state().iter().map(|s| ServiceRecord::from_service(s)).collect(),
        slices: stores.slices.state().iter().filter_map(|s| SliceRecord::from_slice(s)).collect(),
        strings,
        ..ClusterObjects::default()
    };
    for rs in stores.replicasets.state() {
        objects.add_owner_of("apps/v1", "ReplicaSet", &rs.metadata);
    }
    for job in stores.jobs.state() {
        objects.add_owner_of("batch/v1", "Job", &job.metadata);
    }
    for node in stores.nodes.state() {
        if let Ok(data) = serde_json::to_value(&*node) {
            objects.add_node_addresses(&data);
        }
    }
    owners.complete(&mut objects, tracker.history.retained.values().map(|r| &r.record)).await;
    Snapshot::build(&objects, &tracker.history, opts, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_only_what_resolution_reads() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "p"},
                "annotations": {"intents.otterize.com/workload-name": "named", "big/annotation": "x"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {"containers": [{"name": "main", "image": "example/app", "env": [{"name": "A", "value": "b"}]}],
                     "hostNetwork": true, "nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "hostIP": "192.168.0.1",
                       "startTime": "2025-06-01T00:00:00Z", "qosClass": "BestEffort",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("test pod deserialises");
        trim_pod(&mut pod, &["intents.otterize.com/workload-name".to_owned()]);
        let meta = &pod.metadata;
        assert!(meta.managed_fields.is_none(), "managedFields dropped");
        let annotations = meta.annotations.as_ref().expect("the workload-name annotation is kept");
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["intents.otterize.com/workload-name"], "others dropped");
        assert_eq!(meta.labels.as_ref().and_then(|l| l.get("app")).map(String::as_str), Some("p"), "labels kept");
        let spec = pod.spec.as_ref().expect("spec");
        assert!(spec.containers.is_empty(), "container specs dropped");
        assert_eq!((spec.host_network, spec.node_name.as_deref()), (Some(true), Some("node-1")));
        let status = pod.status.as_ref().expect("status");
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(status.host_ip.as_deref(), Some("192.168.0.1"));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.start_time.is_some(), "startTime kept: it starts the IP history");
        assert!(status.conditions.is_none() && status.qos_class.is_none(), "the rest of the status dropped");
        assert!(status.container_statuses.is_none(), "no container status to keep");
    }

    /// Helm's annotations are kept where they can name a workload's release: on objects with
    /// no owner (the top of a chain), not on what an owner made.
    #[test]
    fn trimming_keeps_the_release_annotations_of_objects_without_an_owner() {
        let helm = serde_json::json!({"meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "platform",
                                      "helm.sh/chart": "shop-1.0.0"});
        let meta = |owned: bool| {
            let mut meta = serde_json::json!({"name": "x", "namespace": "ns", "annotations": helm});
            if owned {
                meta["ownerReferences"] = serde_json::json!([{"apiVersion": "apps/v1", "kind": "Deployment",
                                                               "name": "x", "uid": "u", "controller": true}]);
            }
            meta
        };
        for owned in [false, true] {
            let mut rs: ReplicaSet = serde_json::from_value(serde_json::json!({"metadata": meta(owned)}))
                .expect("test ReplicaSet deserialises");
            trim_owner(&mut rs.metadata);
            let mut pod: Pod =
                serde_json::from_value(serde_json::json!({"metadata": meta(owned)})).expect("test pod deserialises");
            trim_pod(&mut pod, &[]);
            for (what, meta) in [("ReplicaSet", &rs.metadata), ("pod", &pod.metadata)] {
                let kept: Vec<&String> = meta.annotations.iter().flatten().map(|(k, _)| k).collect();
                if owned {
                    assert!(kept.is_empty(), "an owned {what} keeps none: {kept:?}");
                } else {
                    assert_eq!(kept, RELEASE_ANNOTATIONS, "a {what} without an owner keeps the release's");
                }
            }
            let record = PodRecord::from_pod(&pod, &[] as &[&str], &mut crate::model::Interner::default());
            let release = (!owned).then(|| mapper_model::Release::new("shop", "platform"));
            assert_eq!(record.own_release(), release, "owned: {owned}");
        }
    }

    /// A finished pod releases its IP when its containers ended, not when the watch saw it.
    #[test]
    fn trimming_keeps_when_a_finished_pods_containers_ended() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "job-x", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": "main", "image": "example/app"}]},
            "status": {"phase": "Succeeded", "podIP": "10.0.0.7",
                       "containerStatuses": [
                           {"name": "main", "image": "example/app", "imageID": "sha", "ready": false,
                            "restartCount": 0, "containerID": "containerd://abc",
                            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                      "startedAt": "2025-06-01T00:00:00Z", "finishedAt": "2025-06-01T00:01:00Z"}}},
                           {"name": "side", "image": "example/side", "imageID": "sha", "ready": true,
                            "restartCount": 0, "state": {"running": {"startedAt": "2025-06-01T00:00:00Z"}}}]}
        }))
        .expect("test pod deserialises");
        let before = PodRecord::from_pod(&pod, &[] as &[&str], &mut crate::model::Interner::default()).finished_ms;
        trim_pod(&mut pod, &[]);
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).expect("statuses");
        assert_eq!(statuses.len(), 1, "only the terminated container is kept");
        assert!(statuses[0].image.is_empty() && statuses[0].container_id.is_none(), "and only its end time");
        let after = PodRecord::from_pod(&pod, &[] as &[&str], &mut crate::model::Interner::default()).finished_ms;
        assert_eq!(after, before);
        assert_eq!(after, Some(1_748_736_060_000), "2025-06-01T00:01:00Z");
    }
}
