use std::net::IpAddr;

use mapper_cluster::{Inventory, ResolveOptions, Workload};

use super::*;
use crate::store::{Observation, Proto, Side};

const NOW: i64 = 1_800_000_000_000;

const NODE: &str = "apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
";

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: late-api, namespace: team3, uid: 77777777-0000-4000-8000-000000000001, creationTimestamp: \"2026-01-01T00:00:00Z\"}
spec: {containers: [{name: app, image: lab}], nodeName: node-1}
status: {phase: Running, podIP: 10.244.1.77, podIPs: [{ip: 10.244.1.77}], startTime: \"2026-01-01T00:00:00Z\"}
";

fn snapshot(yaml: &str) -> Arc<Snapshot> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inventory.yaml");
    std::fs::write(&path, yaml).expect("write inventory");
    Inventory::load_at(vec![path], ResolveOptions::default(), NOW).expect("inventory").snapshot()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

fn client() -> Peer {
    Peer::Workload(Workload::new("web", "team1", "Deployment"))
}

fn late() -> Peer {
    Peer::Workload(Workload::new("late-api", "team3", "Pod"))
}

fn obs(server: Peer, side: Side, n: u64, at: i64) -> Observation {
    let via_service = Some(("team3".into(), "api".into()));
    Observation { via_service, ..Observation::tcp(EdgeKey { client: client(), server }, side, 9000, n, at) }
}

fn held(addr: &str) -> Peer {
    Peer::Unresolved { ip: ip(addr), reason: UnresolvedReason::UnknownClusterIp }
}

#[test]
fn held_edges_move_to_the_pod_once_it_is_known_and_stay_moved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EdgeStore::open(dir.path()).expect("open");
    let observations = [
        obs(held("10.244.1.77"), Side::Client, 4, NOW - 1_000),
        // The same pod already known from its own agent's side: the counts are folded in.
        obs(late(), Side::Server, 3, NOW - 2_000),
        // Last seen before the hold window: left alone.
        obs(held("10.244.1.88"), Side::Client, 1, NOW - 3_600_000),
    ];
    store.apply(&crate::store::AgentBoot::new("n1", "b1"), 1, &observations).expect("apply");

    assert_eq!(sweep(&store, &snapshot(NODE), NOW - 600_000).expect("sweep"), 0, "no pod there yet");
    let with_pod = snapshot(&format!("{NODE}---\n{POD}"));
    assert_eq!(sweep(&store, &with_pod, NOW - 600_000).expect("sweep"), 1);

    let check = |store: &EdgeStore| {
        let mut edges = store.edges();
        edges.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(edges.len(), 2, "{edges:?}");
        let (key, state) = &edges[0];
        assert_eq!(key.server, late());
        assert_eq!((state.client_established, state.server_established), (4, 3), "both sides kept apart");
        assert_eq!((state.first_seen_ms, state.last_seen_ms), (NOW - 2_000, NOW - 1_000));
        assert_eq!(state.via_services().collect::<Vec<_>>(), [("team3", "api")]);
        assert_eq!(edges[1].0.server, held("10.244.1.88"), "outside the hold window");
    };
    check(&store);
    drop(store);
    check(&EdgeStore::open(dir.path()).expect("reopen"));
}

#[test]
fn only_ends_nobody_held_are_looked_at_again() {
    let snap = snapshot(&format!("{NODE}---\n{POD}"));
    let state = EdgeState { last_seen_ms: NOW, ports: [(9000, Proto::Tcp)].as_slice().into(), ..Default::default() };
    let external = EdgeKey { client: client(), server: Peer::External { ip: ip("10.244.1.77") } };
    assert_eq!(reresolve(&snap, &external, &state), None, "an external end stays external");
    let node = Peer::Unresolved { ip: ip("10.244.1.77"), reason: UnresolvedReason::NodeIp };
    let key = EdgeKey { client: client(), server: node };
    assert_eq!(reresolve(&snap, &key, &state), None, "a node address is not a late pod");
    let key = EdgeKey { client: held("10.244.1.77"), server: client() };
    assert_eq!(reresolve(&snap, &key, &state), Some(EdgeKey { client: late(), server: client() }), "client ends too");
    let key = EdgeKey { client: client(), server: held("10.244.9.9") };
    assert_eq!(reresolve(&snap, &key, &state), None, "still nobody there");
}
