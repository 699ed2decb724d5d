//! Inventory loads over time: reloads (an IP reused across two loads, deleted pods kept for
//! late flows), errors that name the file and document and change nothing, and the watcher
//! that reloads on change.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mapper_cluster::{Inventory, InventoryError, Peer, ResolveOptions, UnresolvedReason, Workload, watch_inventory};

const T0: i64 = 1_748_779_200_000; // 2025-06-01T12:00:00Z
const HOUR: i64 = 3_600_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("test IP {s}: {e}"))
}

/// A pod of Deployment `name` (through ReplicaSet `name-abc`), or a bare pod when `owned` is false.
fn pod_yaml(name: &str, uid: &str, addr: &str, start: &str, owned: bool) -> String {
    let owner = if owned {
        format!(
            "  ownerReferences:\n  - apiVersion: apps/v1\n    controller: true\n    kind: ReplicaSet\n    name: {name}-abc\n    uid: rs-{uid}\n"
        )
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-abc-x1\n  namespace: demo\n  uid: {uid}\n  labels:\n    app: {name}\n{owner}\
         spec:\n  containers:\n  - name: main\n    image: example/{name}\nstatus:\n  phase: Running\n  podIP: {addr}\n  startTime: \"{start}\"\n"
    )
}

fn owners_yaml(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}-abc\n  namespace: demo\n  ownerReferences:\n  - apiVersion: apps/v1\n    \
         controller: true\n    kind: Deployment\n    name: {name}\n    uid: d-{name}\nspec:\n  selector: {{}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: demo\nspec:\n  selector: {{}}\n  template: {{}}\n"
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn deployment(name: &str) -> Peer {
    Peer::Workload(Workload::new(name, "demo", "Deployment"))
}

#[test]
fn an_ip_reused_between_two_loads_keeps_both_holders_apart() {
    let dir = tempdir();
    let pods = dir.path().join("pods.yaml");
    write(&dir.path().join("owners.yaml"), &format!("{}---\n{}", owners_yaml("alpha"), owners_yaml("beta")));
    write(&pods, &pod_yaml("alpha", "uid-alpha", "10.1.0.7", "2025-06-01T10:00:00Z", true));
    let options = ResolveOptions::default();
    let mut inventory = Inventory::load_at(vec![dir.path().to_owned()], options, T0).expect("first load");

    // An hour later alpha is gone and beta (started 12:30) holds its IP.
    write(&pods, &pod_yaml("beta", "uid-beta", "10.1.0.7", "2025-06-01T12:30:00Z", true));
    let snap = inventory.reload_at(T0 + HOUR).expect("second load");
    assert_eq!(snap.resolve_remote(ip("10.1.0.7"), 80, T0 - HOUR / 2), deployment("alpha"), "11:30: alpha held it");
    assert_eq!(snap.resolve_remote(ip("10.1.0.7"), 80, T0 + HOUR), deployment("beta"), "13:00: beta holds it");
    assert_eq!(
        snap.workload_of_pod("uid-alpha"),
        Some(Workload::new("alpha", "demo", "Deployment")),
        "a deleted pod's identity is kept for late flows"
    );

    // Past the retention period the deleted pod is forgotten.
    let later = inventory.reload_at(T0 + 3 * HOUR).expect("third load");
    assert_eq!(later.workload_of_pod("uid-alpha"), None, "forgotten after the retention period");
    assert_eq!(
        later.resolve_remote(ip("10.1.0.7"), 80, T0 - HOUR / 2),
        Peer::Unresolved { ip: ip("10.1.0.7"), reason: UnresolvedReason::NoPodAtTime },
        "its interval too"
    );
    assert_eq!(later.resolve_remote(ip("10.1.0.7"), 80, T0 + 3 * HOUR), deployment("beta"));
}

#[test]
fn malformed_yaml_names_the_file_and_document_and_changes_nothing() {
    let dir = tempdir();
    let good = pod_yaml("alpha", "uid-alpha", "10.1.0.7", "2025-06-01T10:00:00Z", false);
    write(&dir.path().join("a.yaml"), &good);
    let mut inventory = Inventory::load_at(vec![dir.path().to_owned()], ResolveOptions::default(), T0).expect("loads");
    let before = inventory.snapshot();

    let broken = dir.path().join("b.yaml");
    let bad_doc = "apiVersion: v1\nkind: Pod\nmetadata: {name: x, labels: [unclosed\n";
    write(
        &broken,
        &format!(
            "{good}---\n{}---\n{bad_doc}",
            pod_yaml("beta", "uid-beta", "10.1.0.8", "2025-06-01T10:00:00Z", false)
        ),
    );
    let err = inventory.reload_at(T0 + 1_000).expect_err("a corrupt file fails the load");
    match &err {
        InventoryError::Yaml { path, document, .. } => {
            assert_eq!(path, &broken, "the error names the file");
            assert_eq!(*document, 3, "and the document (1-based)");
        }
        other => panic!("expected a YAML error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("b.yaml") && message.contains("document 3"), "message says where: {message}");
    assert!(Arc::ptr_eq(&before, &inventory.snapshot()), "the previous snapshot stays current");
    assert_eq!(inventory.snapshot().workload_of_pod("uid-beta"), None, "nothing from the corrupt load leaks in");
}

#[test]
fn invalid_objects_are_named_by_place_kind_and_name() {
    let dir = tempdir();
    let path = dir.path().join("list.json");
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": {"containers": 5}}
    ]}"#;
    write(&path, list);
    let err = Inventory::load(vec![path.clone()], ResolveOptions::default()).expect_err("invalid pod");
    match &err {
        InventoryError::InvalidObject { at, kind, name, .. } => {
            assert_eq!((at.path.as_path(), at.document, at.item), (path.as_path(), 1, Some(1)));
            assert_eq!((kind.as_str(), name.as_str()), ("Pod", "bad"));
        }
        other => panic!("expected an invalid-object error, got {other:?}"),
    }
    assert!(err.to_string().contains("document 1, items[1]: invalid Pod \"bad\""), "message: {err}");

    write(&path, r#"{"apiVersion": "v1", "metadata": {"name": "no-kind"}}"#);
    let err = Inventory::load(vec![path.clone()], ResolveOptions::default()).expect_err("missing kind");
    assert!(matches!(err, InventoryError::MissingField { field: "kind", .. }), "got {err:?}");

    let missing: PathBuf = dir.path().join("does-not-exist");
    let err = Inventory::load(vec![missing.clone()], ResolveOptions::default()).expect_err("missing path");
    assert!(matches!(&err, InventoryError::Read { path, .. } if path == &missing), "got {err:?}");
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn the_watcher_reloads_on_change_and_keeps_the_last_good_state() {
    let dir = tempdir();
    let pods = dir.path().join("pods.yaml");
    write(&pods, &pod_yaml("alpha", "uid-alpha", "10.1.0.7", "2025-06-01T10:00:00Z", false));
    let (handle, task) =
        watch_inventory(vec![dir.path().to_owned()], ResolveOptions::default(), Duration::from_millis(20))
            .expect("initial load");
    assert!(handle.is_ready(), "ready once the first load succeeded");
    assert!(handle.snapshot().workload_of_pod("uid-alpha").is_some());

    write(&dir.path().join("more.yml"), &pod_yaml("beta", "uid-beta", "10.1.0.8", "2025-06-01T10:00:00Z", false));
    eventually("a new file is picked up", || handle.snapshot().workload_of_pod("uid-beta").is_some()).await;

    // Every look that finds the files current moves the time the state is known to hold.
    let synced = handle.synced_at_ms();
    assert!(synced > T0 && synced < i64::MAX, "an inventory is current as of its last look: {synced}");
    eventually("a later look", || handle.synced_at_ms() > synced).await;

    let good = handle.snapshot();
    write(&pods, "apiVersion: v1\nkind: Pod\nmetadata: [broken\n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(Arc::ptr_eq(&good, &handle.snapshot()), "a failed reload keeps the previous snapshot");
    assert!(handle.is_ready(), "and readiness");
    let stale = handle.synced_at_ms();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handle.synced_at_ms(), stale, "a failed reload does not claim the state is current");

    write(&pods, &pod_yaml("gamma", "uid-gamma", "10.1.0.9", "2025-06-01T10:00:00Z", false));
    eventually("the fixed file is loaded", || handle.snapshot().workload_of_pod("uid-gamma").is_some()).await;
    let snap = handle.snapshot();
    assert!(snap.workload_of_pod("uid-alpha").is_some(), "alpha, gone from the files, is retained for late flows");
    task.abort();
}
