//! A Service's ClusterIP resolved through its EndpointSlices: the slices of the dialled port,
//! the majority workload, ties, and endpoints found by address at the flow's time.

use super::*;
use crate::identity::WORKLOAD_NAME_ANNOTATION;
use crate::model::{EndpointRecord, ServiceRecord};

const NS: &str = "shop";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("test IP {s}: {e}"))
}

/// A running pod of workload `workload` (named by the annotation) holding `addr` from `from_ms`.
fn pod(uid: &str, workload: &str, addr: &str, from_ms: i64) -> PodRecord {
    PodRecord {
        uid: uid.into(),
        name: format!("pod-{uid}").into(),
        namespace: NS.into(),
        labels: Box::default(),
        annotations: Box::new([(WORKLOAD_NAME_ANNOTATION.into(), workload.into())]),
        owner: None,
        ips: Box::new([ip(addr)]),
        host_ips: Arc::from([]),
        host_network: false,
        completed: false,
        created_ms: Some(from_ms),
        started_ms: Some(from_ms),
        deletion_ms: None,
        finished_ms: None,
    }
}

/// A ready endpoint naming its pod by UID, or (`uid` None) only by address.
fn endpoint(addr: &str, uid: Option<&str>) -> EndpointRecord {
    EndpointRecord { addresses: vec![ip(addr)], ready: true, pod_uid: uid.map(str::to_owned), pod_name: None }
}

fn slice(port_name: Option<&str>, endpoints: Vec<EndpointRecord>) -> SliceRecord {
    SliceRecord {
        namespace: NS.to_owned(),
        service: "multi".to_owned(),
        ports: vec![(port_name.map(str::to_owned), Some(8000))],
        endpoints,
    }
}

fn workload(name: &str) -> Peer {
    Peer::Workload(Workload::new(name, NS, "Pod"))
}

const CLUSTER_IP: &str = "10.96.0.50";

/// Service `multi` (ports web: 80 and metrics: 9090) with `slices`; `pods` first seen at `now_ms`
/// (each holding its IP since its start).
fn snapshot(pods: &[PodRecord], slices: Vec<SliceRecord>, now_ms: i64) -> Snapshot {
    let mut history = PodHistory::default();
    for p in pods {
        history.observe(p, now_ms);
    }
    let objects = ClusterObjects {
        pods: pods.to_vec(),
        services: vec![ServiceRecord {
            name: "multi".to_owned(),
            namespace: NS.to_owned(),
            cluster_ips: vec![ip(CLUSTER_IP)],
            ports: vec![(80, Some("web".to_owned())), (9090, Some("metrics".to_owned()))],
        }],
        slices,
        ..ClusterObjects::default()
    };
    Snapshot::build(&objects, &history, &ResolveOptions::default(), now_ms)
}

#[test]
fn each_port_resolves_through_the_slices_serving_it() {
    let pods = [
        pod("a1", "alpha", "10.0.0.1", 0),
        pod("a2", "alpha", "10.0.0.2", 0),
        pod("b1", "beta", "10.0.0.3", 0),
        pod("b2", "beta", "10.0.0.4", 0),
    ];
    let slices = vec![
        slice(Some("metrics"), vec![endpoint("10.0.0.3", Some("b1")), endpoint("10.0.0.4", Some("b2"))]),
        slice(Some("web"), vec![endpoint("10.0.0.1", Some("a1")), endpoint("10.0.0.2", Some("a2"))]),
    ];
    let snap = snapshot(&pods, slices, 1_000);
    assert_eq!(snap.resolve_remote(ip(CLUSTER_IP), 80, 1_000), workload("alpha"), "web → the web slice");
    assert_eq!(snap.resolve_remote(ip(CLUSTER_IP), 9090, 1_000), workload("beta"), "metrics → the metrics slice");
    assert_eq!(snap.target_port(ip(CLUSTER_IP), 80), Some(8000), "the web port's targetPort, from its slice");
    assert_eq!(snap.target_port(ip(CLUSTER_IP), 1234), None, "not a port of the Service");
    assert_eq!(snap.target_port(ip("10.0.0.1"), 80), None, "not a ClusterIP");
    assert_eq!(
        snap.resolve_remote(ip(CLUSTER_IP), 1234, 1_000),
        Peer::Service { name: "multi".into(), namespace: NS.into() },
        "a port the Service does not declare reaches no pod: the call is to the Service"
    );
}

#[test]
fn the_workload_with_most_endpoints_wins() {
    let pods = [pod("a1", "alpha", "10.0.0.1", 0), pod("b1", "beta", "10.0.0.3", 0), pod("b2", "beta", "10.0.0.4", 0)];
    let endpoints =
        vec![endpoint("10.0.0.1", Some("a1")), endpoint("10.0.0.3", Some("b1")), endpoint("10.0.0.4", Some("b2"))];
    let snap = snapshot(&pods, vec![slice(Some("web"), endpoints)], 1_000);
    assert_eq!(snap.resolve_remote(ip(CLUSTER_IP), 80, 1_000), workload("beta"));
}

#[test]
fn endpoints_without_a_pod_are_looked_up_at_the_flows_time() {
    // 10.0.0.9 was `old`'s from 1 000, then `new`'s from 5 000; the slice names no pod.
    let pods = [pod("old", "old", "10.0.0.9", 1_000), pod("new", "new", "10.0.0.9", 5_000)];
    let snap = snapshot(&pods, vec![slice(Some("web"), vec![endpoint("10.0.0.9", None)])], 6_000);
    assert_eq!(snap.resolve_remote(ip(CLUSTER_IP), 80, 2_000), workload("old"), "before the IP changed hands");
    assert_eq!(snap.resolve_remote(ip(CLUSTER_IP), 80, 5_500), workload("new"), "after");
}
