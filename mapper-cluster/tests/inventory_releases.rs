//! Helm releases from an inventory file: the annotations on the top object of each owner chain
//! (Deployment, CronJob, a bare pod), not on what it owns; a chain cut short names none; a
//! reload that moves a workload to another release keeps the workload.

use std::path::Path;

use mapper_cluster::{Inventory, Release, ResolveOptions, Snapshot, Workload};

/// 2025-06-01T12:00:00Z.
const T0: i64 = 1_748_779_200_000;

/// A pod in `shop` at `ip`, owned by `owner` (kind, name) when given, with `annotations`.
fn pod(name: &str, ip: &str, owner: Option<(&str, &str, &str)>, annotations: &str) -> String {
    let owner = owner.map_or(String::new(), |(api_version, kind, owner)| {
        format!(
            "  ownerReferences: [{{apiVersion: {api_version}, kind: {kind}, name: {owner}, uid: u-{owner}, controller: true}}]\n"
        )
    });
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  uid: uid-{name}\n  annotations: {annotations}\n{owner}\
         spec:\n  containers: [{{name: main, image: x}}]\nstatus:\n  phase: Running\n  podIP: {ip}\n  startTime: \"2025-06-01T11:00:00Z\"\n"
    )
}

/// An object of `kind` in `shop` with Helm's annotations for `release` (none when empty) and
/// an owner when given.
fn object(api_version: &str, kind: &str, name: &str, release: &str, owner: Option<(&str, &str)>) -> String {
    let annotations = if release.is_empty() {
        "{}".to_owned()
    } else {
        format!("{{meta.helm.sh/release-name: {release}, meta.helm.sh/release-namespace: platform}}")
    };
    let owner = owner.map_or(String::new(), |(kind, owner)| {
        format!("  ownerReferences: [{{apiVersion: apps/v1, kind: {kind}, name: {owner}, uid: u-{owner}, controller: true}}]\n")
    });
    format!(
        "apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: shop\n  uid: u-{name}\n  \
         labels: {{app.kubernetes.io/managed-by: Helm}}\n  annotations: {annotations}\n{owner}"
    )
}

/// The inventory: release `payments` holds Deployment `api` (its ReplicaSet carries another
/// release's annotations) and CronJob `report` (→ Job → pod); bare pod `smoke` names release
/// `tools` in its own namespace; a ReplicaSet whose Deployment is missing, annotated; a pod
/// named by the workload-name annotation whose chain tops out at `api`.
fn inventory(api_release: &str) -> String {
    [
        object("apps/v1", "Deployment", "api", api_release, None),
        object("apps/v1", "ReplicaSet", "api-5f", "elsewhere", Some(("Deployment", "api"))),
        pod("api-5f-aaaaa", "10.244.1.1", Some(("apps/v1", "ReplicaSet", "api-5f")), "{}"),
        pod(
            "api-5f-bbbbb",
            "10.244.1.2",
            Some(("apps/v1", "ReplicaSet", "api-5f")),
            "{intents.otterize.com/workload-name: api-canary}",
        ),
        object("batch/v1", "CronJob", "report", "payments", None),
        object("batch/v1", "Job", "report-28000000", "", Some(("CronJob", "report")))
            .replace("apiVersion: apps/v1, kind: CronJob", "apiVersion: batch/v1, kind: CronJob"),
        pod("report-28000000-x", "10.244.1.3", Some(("batch/v1", "Job", "report-28000000")), "{}"),
        pod("smoke", "10.244.1.4", None, "{meta.helm.sh/release-name: tools}"),
        object("apps/v1", "ReplicaSet", "orphan-7c", "payments", Some(("Deployment", "orphan"))),
        pod("orphan-7c-ccccc", "10.244.1.5", Some(("apps/v1", "ReplicaSet", "orphan-7c")), "{}"),
    ]
    .join("---\n")
}

fn load(dir: &Path, api_release: &str) -> Inventory {
    std::fs::write(dir.join("cluster.yaml"), inventory(api_release)).expect("write the inventory");
    Inventory::load_at(vec![dir.to_path_buf()], ResolveOptions::default(), T0)
        .unwrap_or_else(|e| panic!("the inventory must load: {e:?}"))
}

fn release(snap: &Snapshot, name: &str, kind: &str) -> Option<Release> {
    let workload = Workload::new(name, "shop", kind);
    assert!(snap.labels_of(&workload).is_some(), "{workload} is a known workload");
    snap.release_of(&workload).cloned()
}

#[test]
fn the_top_owner_names_the_release() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let snap = load(dir.path(), "payments").snapshot();
    let payments = Some(Release::new("payments", "platform"));
    assert_eq!(release(&snap, "api", "Deployment"), payments, "the Deployment's, not its ReplicaSet's");
    assert_eq!(release(&snap, "api-canary", "Deployment"), payments, "a named workload's chain still counts");
    assert_eq!(release(&snap, "report", "CronJob"), payments, "Job → CronJob");
    assert_eq!(release(&snap, "smoke", "Pod"), Some(Release::new("tools", "shop")), "a bare pod, its namespace");
    assert_eq!(release(&snap, "orphan-7c", "ReplicaSet"), None, "a chain cut short names none");
    assert_eq!(snap.release_of(&Workload::new("nobody", "shop", "Deployment")), None);
    assert_eq!(snap.release_of_pod("uid-report-28000000-x"), payments);
    let (api, report) = (Workload::new("api", "shop", "Deployment"), Workload::new("report", "shop", "CronJob"));
    let names = |w: &Workload| snap.release_of(w).map(|r| r.name.clone()).expect("a release");
    assert!(std::sync::Arc::ptr_eq(&names(&api), &names(&report)), "one release, one copy of its name");
}

#[test]
fn a_reload_moves_a_workload_to_its_new_release_and_keeps_the_workload() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut source = load(dir.path(), "");
    let api = Workload::new("api", "shop", "Deployment");
    assert_eq!(source.snapshot().release_of(&api), None, "not yet in a release");
    std::fs::write(dir.path().join("cluster.yaml"), inventory("adopted")).expect("rewrite the inventory");
    let snap = source.reload_at(T0 + 1_000).unwrap_or_else(|e| panic!("reload: {e:?}"));
    assert_eq!(snap.release_of(&api), Some(&Release::new("adopted", "platform")));
    assert_eq!(snap.workload_of_pod("uid-api-5f-aaaaa"), Some(api), "the same workload");
}
