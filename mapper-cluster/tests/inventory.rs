//! Resolution against the fixture inventory in `tests/fixtures/cluster` (a small cluster as
//! `kubectl get -o yaml` prints it): every identity rule, every kind of address.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mapper_cluster::{Evidence, Inventory, Peer, ResolveOptions, Snapshot, UnresolvedReason, Workload};

/// 2025-06-01T12:00:00Z, when the fixture is "loaded".
const T0: i64 = 1_748_779_200_000;
const MINUTE: i64 = 60_000;

fn uid(n: &str) -> String {
    format!("c0ffee00-0000-4000-8000-0000000000{n}")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("test IP {s}: {e}"))
}

fn w(name: &str, namespace: &str, kind: &str) -> Workload {
    Workload::new(name, namespace, kind)
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cluster")
}

fn load(options: ResolveOptions) -> Arc<Snapshot> {
    let inventory = Inventory::load_at(vec![fixture()], options, T0)
        .unwrap_or_else(|e| panic!("the fixture inventory must load: {e:?}"));
    inventory.snapshot()
}

fn snapshot() -> Arc<Snapshot> {
    let cidrs = ["10.244.0.0/16", "10.96.0.0/12"].iter().map(|c| c.parse().expect("CIDR")).collect();
    load(ResolveOptions { cluster_cidrs: cidrs, ..ResolveOptions::default() })
}

fn remote(snap: &Snapshot, addr: &str, port: u16, at: i64) -> Peer {
    snap.resolve_remote(ip(addr), port, at)
}

fn unresolved(addr: &str, reason: UnresolvedReason) -> Peer {
    Peer::Unresolved { ip: ip(addr), reason }
}

#[test]
fn owner_chains_resolve_to_the_operator_identity() {
    let snap = snapshot();
    let cases = [
        ("01", w("checkout", "shop", "Deployment"), "ReplicaSet with pod-template-hash → Deployment"),
        ("02", w("checkout", "shop", "Deployment"), "second replica, same workload"),
        ("03", w("ledger", "shop", "StatefulSet"), "StatefulSet"),
        ("05", w("log-agent_v2", "ops", "DaemonSet"), "DaemonSet, dots become underscores"),
        ("06", w("nightly-report", "batch", "CronJob"), "Job → CronJob"),
        ("07", w("debug-shell", "shop", "Pod"), "a pod with no owner is its own workload"),
        ("08", w("storefront", "shop", "Deployment"), "workload-name annotation names it"),
        ("09", w("legacy", "shop", "Pod"), "the older service-name annotation too"),
        ("10", w("orphan-api-6b7c8d9e0f", "shop", "ReplicaSet"), "unreadable Deployment: stop at the ReplicaSet"),
        ("11", w("node-exporter", "ops", "DaemonSet"), "hostNetwork pod, by its UID"),
        ("12", w("queue-worker", "batch", "Deployment"), "terminating pod"),
        ("13", w("import-once", "batch", "Job"), "a Job with no CronJob"),
        ("14", w("payments", "shop", "Rollout"), "CRD owner: Rollout → ReplicaSet → Pod"),
    ];
    for (n, expected, why) in cases {
        assert_eq!(snap.workload_of_pod(&uid(n)).as_ref(), Some(&expected), "pod {n}: {why}");
    }
    assert_eq!(snap.workload_of_pod("no-such-uid"), None, "an unknown pod has no workload");
}

#[test]
fn a_configured_annotation_name_replaces_the_default() {
    let options = ResolveOptions { workload_name_annotation: "example.com/app".into(), ..ResolveOptions::default() };
    let snap = load(options);
    assert_eq!(
        snap.workload_of_pod(&uid("08")),
        Some(w("web-frontend", "shop", "Deployment")),
        "with another annotation configured, intents.otterize.com/workload-name is not read"
    );
    assert_eq!(snap.workload_of_pod(&uid("09")), Some(w("legacy", "shop", "Pod")), "service-name still is");
}

#[test]
fn pod_ips_resolve_to_the_workload_holding_them() {
    let snap = snapshot();
    let cases = [
        ("10.244.1.10", w("checkout", "shop", "Deployment")),
        ("10.244.2.11", w("checkout", "shop", "Deployment")),
        ("10.244.1.30", w("log-agent_v2", "ops", "DaemonSet")),
        ("10.244.2.40", w("nightly-report", "batch", "CronJob")),
        ("10.244.1.50", w("debug-shell", "shop", "Pod")),
        ("10.244.1.60", w("storefront", "shop", "Deployment")),
        ("10.244.1.80", w("orphan-api-6b7c8d9e0f", "shop", "ReplicaSet")),
        ("10.244.2.70", w("payments", "shop", "Rollout")),
    ];
    for (addr, expected) in cases {
        assert_eq!(remote(&snap, addr, 8080, T0), Peer::Workload(expected), "pod IP {addr}");
    }
}

#[test]
fn services_resolve_through_their_endpoint_slices() {
    let snap = snapshot();
    assert_eq!(
        remote(&snap, "10.96.10.10", 80, T0),
        Peer::Workload(w("checkout", "shop", "Deployment")),
        "ClusterIP → the Deployment behind the Service"
    );
    assert_eq!(
        remote(&snap, "10.244.1.20", 5432, T0),
        Peer::Workload(w("ledger", "shop", "StatefulSet")),
        "headless Service: clients dial the pod IPs"
    );
    assert_eq!(remote(&snap, "10.244.2.21", 5432, T0), Peer::Workload(w("ledger", "shop", "StatefulSet")));
    assert_eq!(
        remote(&snap, "10.96.10.99", 8080, T0),
        Peer::Service { name: "unused".into(), namespace: "shop".into() },
        "a Service with no pods stays a Service"
    );
    assert_eq!(
        remote(&snap, "10.96.20.20", 80, T0),
        Peer::Service { name: "report-api".into(), namespace: "batch".into() },
        "a Service with no ready endpoints stays a Service"
    );
    assert_eq!(
        remote(&snap, "10.96.10.60", 80, T0),
        Peer::Workload(w("storefront", "shop", "Deployment")),
        "endpoints without targetRef are found by IP history"
    );
}

#[test]
fn the_api_server_by_cluster_ip_and_endpoints() {
    let snap = snapshot();
    assert_eq!(remote(&snap, "10.96.0.1", 443, T0), Peer::ApiServer, "the kubernetes Service's ClusterIP");
    assert_eq!(remote(&snap, "172.18.0.2", 6443, T0), Peer::ApiServer, "its endpoint, on its port");
    assert_eq!(
        remote(&snap, "172.18.0.2", 10250, T0),
        unresolved("172.18.0.2", UnresolvedReason::NodeIp),
        "the same node on another port (the kubelet) is a node IP"
    );
}

#[test]
fn host_network_pods_are_never_resolved_by_address() {
    let snap = snapshot();
    assert_eq!(
        remote(&snap, "172.18.0.3", 9100, T0),
        unresolved("172.18.0.3", UnresolvedReason::NodeIp),
        "node-exporter's address is the node's: not attributable"
    );
    let node_exporter = uid("11");
    let by_uid = Evidence { ip: Some(ip("172.18.0.3")), pod_uid: Some(&node_exporter), host_network: true, at_ms: T0 };
    assert_eq!(snap.resolve_local(&by_uid), Peer::Workload(w("node-exporter", "ops", "DaemonSet")), "cgroup evidence");
    let no_uid = Evidence { pod_uid: None, ..by_uid };
    assert_eq!(snap.resolve_local(&no_uid), unresolved("172.18.0.3", UnresolvedReason::NodeIp), "no guessing");
    let unknown = Evidence { pod_uid: Some("not-a-known-pod"), ..by_uid };
    assert_eq!(snap.resolve_local(&unknown), unresolved("172.18.0.3", UnresolvedReason::UnknownPodUid));
    assert_eq!(
        remote(&snap, "172.18.0.5", 22, T0),
        unresolved("172.18.0.5", UnresolvedReason::NodeIp),
        "a node with no pods is known from its Node object"
    );
}

#[test]
fn local_ends_prefer_the_pod_uid_over_the_address() {
    let snap = snapshot();
    let checkout = uid("01");
    // The address is debug-shell's, but the cgroup says checkout: the UID wins.
    let ev = Evidence { ip: Some(ip("10.244.1.50")), pod_uid: Some(&checkout), host_network: false, at_ms: T0 };
    assert_eq!(snap.resolve_local(&ev), Peer::Workload(w("checkout", "shop", "Deployment")));
    let by_ip = Evidence { pod_uid: None, ..ev };
    assert_eq!(snap.resolve_local(&by_ip), Peer::Workload(w("debug-shell", "shop", "Pod")), "no UID: by address");
    let unknown_uid = Evidence { pod_uid: Some("not-a-known-pod"), ..ev };
    assert_eq!(snap.resolve_local(&unknown_uid), Peer::Workload(w("debug-shell", "shop", "Pod")), "unknown UID");
    let nothing = Evidence { ip: None, pod_uid: None, host_network: false, at_ms: T0 };
    assert!(
        matches!(snap.resolve_local(&nothing), Peer::Unresolved { reason: UnresolvedReason::NoEvidence, .. }),
        "no evidence at all"
    );
}

#[test]
fn outside_addresses_are_external_unless_in_a_cluster_cidr() {
    let snap = snapshot();
    assert_eq!(remote(&snap, "8.8.8.8", 53, T0), Peer::External { ip: ip("8.8.8.8") });
    assert_eq!(remote(&snap, "2001:db8::1", 443, T0), Peer::External { ip: ip("2001:db8::1") });
    assert_eq!(
        remote(&snap, "10.244.3.3", 80, T0),
        unresolved("10.244.3.3", UnresolvedReason::UnknownClusterIp),
        "an unknown pod-CIDR address is in the cluster, not outside"
    );
    let without_cidrs = load(ResolveOptions::default());
    assert_eq!(remote(&without_cidrs, "10.244.3.3", 80, T0), Peer::External { ip: ip("10.244.3.3") });
}

/// Without flags, the ranges come from the cluster: a Node's podCIDR, and the smallest range
/// holding the Services' ClusterIPs (10.96.0.1 … 10.96.20.20: 10.96.0.0/19).
#[test]
fn the_cluster_states_its_ranges() {
    let snap = load(ResolveOptions::default());
    let ranges: Vec<String> = snap.cluster_ranges().iter().map(ToString::to_string).collect();
    assert_eq!(ranges, ["10.96.0.0/19", "10.244.0.0/24"]);
    for (addr, why) in [("10.244.0.9", "the control plane's podCIDR"), ("10.96.31.200", "among the ClusterIPs")] {
        assert_eq!(remote(&snap, addr, 80, T0), unresolved(addr, UnresolvedReason::UnknownClusterIp), "{why}");
    }
    for addr in ["10.96.32.1", "10.244.1.255", "8.8.8.8"] {
        assert_eq!(remote(&snap, addr, 80, T0), Peer::External { ip: ip(addr) }, "{addr} is in no range");
    }
    // A flag's range holds the learned one: it is not listed twice.
    let flagged =
        load(ResolveOptions { cluster_cidrs: vec!["10.96.0.0/12".parse().expect("CIDR")], ..Default::default() });
    let ranges: Vec<String> = flagged.cluster_ranges().iter().map(ToString::to_string).collect();
    assert_eq!(ranges, ["10.96.0.0/12", "10.244.0.0/24"]);
}

/// ServiceCIDR objects (networking.k8s.io/v1) and a Node's podCIDRs of both families; a
/// ClusterIP further than a /12 from the others is a range of its own.
#[test]
fn service_cidr_objects_and_dual_stack_pod_ranges() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("cluster.yaml");
    std::fs::write(
        &path,
        r#"
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [10.100.0.0/16, "fd00:96::/108"]}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.1.2.0/24, podCIDRs: [10.1.2.0/24, "fd00:244:2::/64"]}
---
apiVersion: v1
kind: Service
metadata: {name: far, namespace: default}
spec: {clusterIP: 172.20.0.5, ports: [{port: 80}]}
"#,
    )
    .expect("write the inventory");
    let snap = Inventory::load_at(vec![path], ResolveOptions::default(), T0).expect("loads").snapshot();
    let ranges: Vec<String> = snap.cluster_ranges().iter().map(ToString::to_string).collect();
    assert_eq!(ranges, ["10.1.2.0/24", "10.100.0.0/16", "172.20.0.5/32", "fd00:96::/108", "fd00:244:2::/64"]);
    for addr in ["10.100.9.9", "fd00:96::77", "fd00:244:2::9", "10.1.2.200"] {
        assert_eq!(remote(&snap, addr, 80, T0), unresolved(addr, UnresolvedReason::UnknownClusterIp), "{addr}");
    }
}

#[test]
fn a_reused_ip_maps_each_flow_to_the_pod_holding_it_then() {
    let snap = snapshot();
    // queue-worker (09:00, terminating, deadline 11:30) then import-once (from 11:50) on 10.244.2.90.
    let queue_worker = Peer::Workload(w("queue-worker", "batch", "Deployment"));
    let import_once = Peer::Workload(w("import-once", "batch", "Job"));
    assert_eq!(remote(&snap, "10.244.2.90", 80, T0 - 120 * MINUTE), queue_worker, "10:00: the first holder");
    assert_eq!(
        remote(&snap, "10.244.2.90", 80, T0 - 20 * MINUTE),
        unresolved("10.244.2.90", UnresolvedReason::NoPodAtTime),
        "11:40: the first holder was gone by its deletion deadline, the next not yet there"
    );
    assert_eq!(remote(&snap, "10.244.2.90", 80, T0 - 5 * MINUTE), import_once, "11:55: the second holder");
    assert_eq!(
        remote(&snap, "10.244.2.90", 80, T0 - 10 * MINUTE - 2_000),
        import_once,
        "a flow stamped 2s before the pod's start still maps to it (tolerance)"
    );
    assert_eq!(
        remote(&snap, "10.244.1.10", 80, T0 - 3 * 24 * 60 * MINUTE),
        unresolved("10.244.1.10", UnresolvedReason::NoPodAtTime),
        "before checkout's pod started, nobody held its IP"
    );
}

#[test]
fn labels_are_the_union_over_a_workloads_pods() {
    let snap = snapshot();
    let labels = snap.labels_of(&w("checkout", "shop", "Deployment")).expect("checkout has labels");
    assert_eq!(labels.get("app").map(String::as_str), Some("checkout"));
    assert_eq!(labels.get("tier").map(String::as_str), Some("payments"), "from the second replica only");
    assert_eq!(snap.labels_of(&w("checkout", "shop", "StatefulSet")), None, "kind is part of the identity");
}
