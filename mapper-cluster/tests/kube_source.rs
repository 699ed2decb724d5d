//! The API source against a fake API server speaking the real list/watch protocol: pods added,
//! modified (IP change) and deleted; a watch restarted with 410 Gone; owners fetched by GET,
//! through discovery for a CRD, and a 403 owner stopping the walk (and not asked again); Helm
//! releases read from the top object of each owner chain.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use mapper_cluster::fake_api::FakeApi;
use mapper_cluster::{
    ClusterHandle, KubeSource, KubeSourceConfig, Peer, Release, ResolveOptions, UnresolvedReason, Workload,
};
use serde_json::{Value, json};

const PODS: &str = "/api/v1/pods";
const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const REPLICASETS: &str = "/apis/apps/v1/replicasets";
const JOBS: &str = "/apis/batch/v1/jobs";

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("test IP {s}: {e}"))
}

fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).expect("positive time"));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A pod in `shop`, owned by ReplicaSet `owner` when given.
fn pod(name: &str, uid: &str, addr: &str, owner: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": {"app": name},
                     "annotations": {"kubectl.kubernetes.io/restartedAt": "x"},
                     "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
        "spec": {"containers": [{"name": "main", "image": "example/app"}], "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": addr, "podIPs": [{"ip": addr}], "hostIP": "192.168.0.10",
                   "startTime": rfc3339(now_ms() - 60_000)}
    });
    if let Some(rs) = owner {
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": format!("uid-{rs}"), "controller": true}]);
    }
    pod
}

fn replicaset(name: &str, owner_api_version: &str, owner_kind: &str, owner: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "ownerReferences": [{"apiVersion": owner_api_version, "kind": owner_kind, "name": owner,
                                          "uid": format!("uid-{owner}"), "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": name}}}
    })
}

/// A fake cluster: Deployment `api` (readable) → ReplicaSet → pod A; Service `api` in front of
/// it; the `kubernetes` Service.
async fn cluster() -> FakeApi {
    let api = FakeApi::start().await;
    api.collection(PODS, "v1", "PodList");
    api.collection(SERVICES, "v1", "ServiceList");
    api.collection(SLICES, "discovery.k8s.io/v1", "EndpointSliceList");
    api.collection(REPLICASETS, "apps/v1", "ReplicaSetList");
    api.collection(JOBS, "batch/v1", "JobList");
    api.apply(REPLICASETS, replicaset("api-7d9c", "apps/v1", "Deployment", "api"));
    api.on_get(
        "/apis/apps/v1/namespaces/shop/deployments/api",
        StatusCode::OK,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop", "uid": "uid-api"},
               "spec": {"selector": {}, "template": {}}}),
    );
    api.apply(PODS, pod("api-7d9c-aaaaa", "pod-a", "10.1.0.5", Some("api-7d9c")));
    api.apply(
        SERVICES,
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop", "uid": "svc-api"},
        "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    api.apply(
        SERVICES,
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "uid": "svc-kubernetes"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
    );
    api.apply(SLICES, json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "api-x1", "namespace": "shop", "uid": "slice-api", "labels": {"kubernetes.io/service-name": "api"}},
        "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true},
                       "targetRef": {"kind": "Pod", "name": "api-7d9c-aaaaa", "namespace": "shop", "uid": "pod-a"}}],
        "ports": [{"port": 8080}]}));
    api
}

async fn start(api: &FakeApi) -> (ClusterHandle, tokio::task::JoinHandle<()>) {
    let options = ResolveOptions { ip_time_tolerance: Duration::from_millis(100), ..ResolveOptions::default() };
    let config = KubeSourceConfig { debounce: Duration::from_millis(20), ..KubeSourceConfig::default() };
    let (handle, task) = KubeSource::new(api.client(), options).with_config(config).spawn();
    tokio::time::timeout(Duration::from_secs(20), handle.wait_ready()).await.expect("the source becomes ready");
    (handle, task)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

fn api_workload() -> Peer {
    Peer::Workload(Workload::new("api", "shop", "Deployment"))
}

#[tokio::test]
async fn pods_added_modified_and_deleted_follow_the_watch() {
    let api = cluster().await;
    let (handle, task) = start(&api).await;
    let snap = handle.snapshot();
    assert_eq!(snap.workload_of_pod("pod-a"), Some(Workload::new("api", "shop", "Deployment")), "RS → Deployment GET");
    assert_eq!(snap.resolve_remote(ip("10.1.0.5"), 8080, now_ms()), api_workload(), "pod IP");
    assert_eq!(snap.resolve_remote(ip("10.96.0.50"), 80, now_ms()), api_workload(), "ClusterIP → endpoints");
    assert_eq!(snap.resolve_remote(ip("10.96.0.1"), 443, now_ms()), Peer::ApiServer);
    assert_eq!(
        snap.resolve_remote(ip("192.168.0.10"), 10250, now_ms()),
        Peer::Unresolved { ip: ip("192.168.0.10"), reason: UnresolvedReason::NodeIp },
        "a pod's hostIP is a node IP"
    );

    // MODIFIED: the pod's IP changes.
    let before_change = now_ms();
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.apply(PODS, pod("api-7d9c-aaaaa", "pod-a", "10.1.0.6", Some("api-7d9c")));
    eventually("the new IP resolves", || {
        handle.snapshot().resolve_remote(ip("10.1.0.6"), 80, now_ms()) == api_workload()
    })
    .await;
    let snap = handle.snapshot();
    assert_eq!(snap.resolve_remote(ip("10.1.0.5"), 80, before_change), api_workload(), "the old IP, before the change");
    assert_eq!(
        snap.resolve_remote(ip("10.1.0.5"), 80, now_ms() + 1_000),
        Peer::Unresolved { ip: ip("10.1.0.5"), reason: UnresolvedReason::NoPodAtTime },
        "the old IP, after the change"
    );

    // ADDED then DELETED: a bare pod.
    api.apply(PODS, pod("worker", "pod-b", "10.1.0.9", None));
    eventually("the added pod resolves", || handle.snapshot().workload_of_pod("pod-b").is_some()).await;
    let alive = now_ms();
    let worker = Peer::Workload(Workload::new("worker", "shop", "Pod"));
    assert_eq!(handle.snapshot().resolve_remote(ip("10.1.0.9"), 80, alive), worker);
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.delete(PODS, "shop", "worker", false);
    let gone = Peer::Unresolved { ip: ip("10.1.0.9"), reason: UnresolvedReason::NoPodAtTime };
    eventually("the deleted pod's IP is released", || {
        handle.snapshot().resolve_remote(ip("10.1.0.9"), 80, now_ms()) == gone
    })
    .await;
    let snap = handle.snapshot();
    assert_eq!(snap.resolve_remote(ip("10.1.0.9"), 80, alive), worker, "a late flow from while it lived");
    assert_eq!(snap.workload_of_pod("pod-b"), Some(Workload::new("worker", "shop", "Pod")), "deleted pod retained");
    task.abort();
}

#[tokio::test]
async fn a_restarted_watch_relists_and_releases_what_vanished_meanwhile() {
    let api = cluster().await;
    let (handle, task) = start(&api).await;
    let lists_before = api.requests(PODS);
    let held = now_ms();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While the watch is broken pod A goes and pod C comes; then the server answers 410 Gone.
    api.delete(PODS, "shop", "api-7d9c-aaaaa", true);
    api.apply_silently(PODS, pod("cache", "pod-c", "10.1.0.7", None));
    api.expire_watches(PODS);
    eventually("the relist brings pod C", || handle.snapshot().workload_of_pod("pod-c").is_some()).await;

    assert!(api.requests(PODS) >= lists_before + 2, "the pods were listed and watched again");
    let snap = handle.snapshot();
    assert_eq!(
        snap.resolve_remote(ip("10.1.0.5"), 80, now_ms() + 1_000),
        Peer::Unresolved { ip: ip("10.1.0.5"), reason: UnresolvedReason::NoPodAtTime },
        "pod A, missing from the relist, released its IP"
    );
    assert_eq!(snap.resolve_remote(ip("10.1.0.5"), 80, held), api_workload(), "but late flows still find it");
    assert_eq!(
        snap.resolve_remote(ip("10.1.0.7"), 80, now_ms()),
        Peer::Workload(Workload::new("cache", "shop", "Pod"))
    );
    task.abort();
}

#[tokio::test]
async fn owners_come_from_gets_and_a_forbidden_owner_stops_the_walk() {
    let api = cluster().await;
    // locked-55f → Deployment `locked`, which answers 403.
    api.apply(REPLICASETS, replicaset("locked-55f", "apps/v1", "Deployment", "locked"));
    let forbidden = "/apis/apps/v1/namespaces/shop/deployments/locked";
    api.on_get(
        forbidden,
        StatusCode::FORBIDDEN,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": "deployments.apps \"locked\" is forbidden"}),
    );
    api.apply(PODS, pod("locked-55f-ddddd", "pod-d", "10.1.0.20", Some("locked-55f")));
    // payments-6c7 → Argo Rollout `payments`, found through discovery.
    api.apply(REPLICASETS, replicaset("payments-6c7", "argoproj.io/v1alpha1", "Rollout", "payments"));
    api.on_get(
        "/apis/argoproj.io/v1alpha1",
        StatusCode::OK,
        json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": "argoproj.io/v1alpha1",
        "resources": [{"name": "rollouts", "singularName": "rollout", "namespaced": true, "kind": "Rollout",
                       "verbs": ["get", "list", "watch"]}]}),
    );
    api.on_get(
        "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/payments",
        StatusCode::OK,
        json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "payments", "namespace": "shop", "uid": "uid-payments"}, "spec": {}}),
    );
    api.apply(PODS, pod("payments-6c7-eeeee", "pod-e", "10.1.0.30", Some("payments-6c7")));

    let (handle, task) = start(&api).await;
    let snap = handle.snapshot();
    assert_eq!(
        snap.workload_of_pod("pod-d"),
        Some(Workload::new("locked-55f", "shop", "ReplicaSet")),
        "a 403 owner: the last readable owner is the identity"
    );
    assert_eq!(snap.workload_of_pod("pod-e"), Some(Workload::new("payments", "shop", "Rollout")), "CRD owner");
    assert_eq!(api.requests("/apis/argoproj.io/v1alpha1"), 1, "the CRD's resource was discovered once");
    assert_eq!(api.requests(forbidden), 1);

    // More changes, more rebuilds: the failure is cached, not asked again.
    api.apply(PODS, pod("locked-55f-fffff", "pod-f", "10.1.0.21", Some("locked-55f")));
    eventually("the new pod resolves", || handle.snapshot().workload_of_pod("pod-f").is_some()).await;
    assert_eq!(handle.snapshot().workload_of_pod("pod-f"), Some(Workload::new("locked-55f", "shop", "ReplicaSet")));
    assert_eq!(api.requests(forbidden), 1, "the 403 is cached");
    assert_eq!(api.requests("/apis/apps/v1/namespaces/shop/deployments/api"), 1, "found owners are cached too");
    task.abort();
}

/// The annotations and label Helm stamps on what it applies.
fn helm(release: &str, namespace: Option<&str>) -> (Value, Value) {
    let mut annotations = json!({"meta.helm.sh/release-name": release});
    if let Some(ns) = namespace {
        annotations["meta.helm.sh/release-namespace"] = json!(ns);
    }
    (annotations, json!({"app.kubernetes.io/managed-by": "Helm"}))
}

#[tokio::test]
async fn a_workload_belongs_to_the_release_its_top_owner_names() {
    let api = cluster().await;
    let (annotations, labels) = helm("storefront", Some("shop-system"));
    // Deployment `web` (read by GET) of release storefront → ReplicaSet (annotated with another
    // release: only the top of the chain counts) → pod.
    api.on_get(
        "/apis/apps/v1/namespaces/shop/deployments/web",
        StatusCode::OK,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web",
                            "annotations": annotations, "labels": labels},
               "spec": {"selector": {}, "template": {}}}),
    );
    let mut rs = replicaset("web-5f", "apps/v1", "Deployment", "web");
    rs["metadata"]["annotations"] = helm("other", Some("elsewhere")).0;
    api.apply(REPLICASETS, rs);
    api.apply(PODS, pod("web-5f-aaaaa", "pod-web", "10.1.0.40", Some("web-5f")));
    // Job `migrate` (reflected) of release storefront, without the namespace annotation: the
    // release is in the Job's namespace.
    api.apply(
        JOBS,
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "migrate", "namespace": "shop", "uid": "uid-migrate",
                            "annotations": helm("storefront", None).0, "labels": labels},
               "spec": {"template": {"spec": {"containers": []}}}}),
    );
    let mut job_pod = pod("migrate-xk2", "pod-migrate", "10.1.0.41", None);
    job_pod["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "migrate", "uid": "uid-migrate", "controller": true}]);
    api.apply(PODS, job_pod);
    // A bare pod Helm applied: its own annotations.
    let mut bare = pod("smoke-test", "pod-smoke", "10.1.0.42", None);
    bare["metadata"]["annotations"] = helm("storefront", Some("shop")).0;
    api.apply(PODS, bare);
    // A ReplicaSet whose Deployment answers 403: the chain stops at an owned object, which names
    // no release whatever it carries.
    let mut locked = replicaset("locked-55f", "apps/v1", "Deployment", "locked");
    locked["metadata"]["annotations"] = helm("storefront", Some("shop-system")).0;
    api.apply(REPLICASETS, locked);
    api.on_get(
        "/apis/apps/v1/namespaces/shop/deployments/locked",
        StatusCode::FORBIDDEN,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden",
               "code": 403, "message": "deployments.apps \"locked\" is forbidden"}),
    );
    api.apply(PODS, pod("locked-55f-ddddd", "pod-locked", "10.1.0.43", Some("locked-55f")));

    let (handle, task) = start(&api).await;
    let snap = handle.snapshot();
    let release_of = |uid: &str| {
        let workload = snap.workload_of_pod(uid).unwrap_or_else(|| panic!("pod {uid} resolves"));
        assert_eq!(snap.release_of_pod(uid).as_ref(), snap.release_of(&workload), "{uid}");
        snap.release_of(&workload).cloned()
    };
    assert_eq!(release_of("pod-web"), Some(Release::new("storefront", "shop-system")), "Deployment's annotations");
    assert_eq!(release_of("pod-migrate"), Some(Release::new("storefront", "shop")), "a Job's, in its namespace");
    assert_eq!(release_of("pod-smoke"), Some(Release::new("storefront", "shop")), "a bare pod's own");
    assert_eq!(release_of("pod-a"), None, "Deployment api carries no release");
    assert_eq!(snap.workload_of_pod("pod-locked"), Some(Workload::new("locked-55f", "shop", "ReplicaSet")));
    assert_eq!(release_of("pod-locked"), None, "a chain cut short names no release");
    let smoke = Workload::new("smoke-test", "shop", "Pod");
    let migrate = Workload::new("migrate", "shop", "Job");
    assert!(
        std::ptr::eq(
            &*snap.release_of(&smoke).expect("the bare pod's release").name,
            &*snap.release_of(&migrate).expect("migrate's release").name
        ),
        "workloads of one release share its name"
    );

    // The Job is adopted into another release: the workload (and its edges) stay, the release moves.
    api.apply(
        JOBS,
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "migrate", "namespace": "shop", "uid": "uid-migrate",
                            "annotations": helm("db", Some("shop")).0},
               "spec": {"template": {"spec": {"containers": []}}}}),
    );
    eventually("the Job's new release is seen", || {
        handle.snapshot().release_of(&migrate) == Some(&Release::new("db", "shop"))
    })
    .await;
    assert_eq!(handle.snapshot().workload_of_pod("pod-migrate"), Some(migrate));
    task.abort();
}
