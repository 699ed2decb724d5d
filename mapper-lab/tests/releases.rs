//! The inventory `mapper-lab up` writes for a scenario with `releases:`: Helm's annotations and
//! label on each released workload's top owner (a bare pod on itself), nothing on the rest, and
//! mapper-server's cluster state reading those releases back. No namespaces are made: the lab's
//! state is built by hand, as `up` would leave it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use mapper_cluster::{Inventory, Release, ResolveOptions, Workload};
use mapper_lab::inventory::{self, owner_chain};
use mapper_lab::lab::{LabPod, LabState};
use mapper_lab::scenario::Scenario;
use serde_json::Value;

const SCENARIO: &str = "
workloads:
  - {name: api, namespace: shop, kind: Deployment, replicas: 2, ports: [8080]}
  - {name: report, namespace: shop, kind: CronJob}
  - {name: cache, namespace: shop, kind: StatefulSet, ports: [6379]}
  - {name: debug, namespace: tools, kind: Pod}
  - {name: plain, namespace: shop, kind: DaemonSet}
releases:
  - {name: storefront, namespace: platform, workloads: [api.shop, report.shop, cache.shop]}
  - {name: debug, namespace: tools, workloads: [debug.tools]}
";

/// The lab's state with every workload's pods at 10.244.100.N, as `up` would leave it.
fn state(scenario: &Scenario) -> LabState {
    let mut pods = Vec::new();
    for w in &scenario.workloads {
        let (names, _, _) = owner_chain(w, 0, &mut Vec::new());
        for name in names {
            let host = u8::try_from(pods.len() + 2).expect("few pods");
            pods.push(LabPod {
                uid: format!("uid-{}-{name}", w.namespace),
                name,
                namespace: w.namespace.clone(),
                workload: w.name.clone(),
                netns: format!("mlab-test-{host}"),
                ip: Ipv4Addr::new(10, 244, 100, host),
                ipv6: None,
                cgroup: PathBuf::from("/nonexistent"),
                host_network: false,
                created: "2026-01-01T00:00:00Z".into(),
                revision: 0,
                probes: Vec::new(),
                finished: None,
            });
        }
    }
    LabState {
        node_netns: "mlab-node".into(),
        node_ip: Ipv4Addr::new(10, 244, 100, 1),
        node_ipv6: None,
        cgroup_base: PathBuf::from("/nonexistent"),
        pods,
        services: Vec::new(),
        round: 1,
        deleted: Vec::new(),
        free_hosts: Vec::new(),
        next_host: 100,
    }
}

#[test]
fn released_workloads_top_owners_carry_helm_s_annotations_and_label() {
    let scenario = Scenario::parse(SCENARIO).unwrap_or_else(|e| panic!("scenario: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    inventory::write(&scenario, &state(&scenario), &mapper_lab::lab::service_defs(&scenario), dir.path())
        .unwrap_or_else(|e| panic!("write the inventory: {e}"));
    let path = dir.path().join("inventory.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let list: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("inventory YAML: {e}"));
    let items = list["items"].as_array().cloned().unwrap_or_default();

    let stamped: Vec<String> = items
        .iter()
        .filter(|o| o["metadata"]["annotations"]["meta.helm.sh/release-name"].is_string())
        .map(|o| {
            let m = &o["metadata"];
            assert_eq!(m["labels"]["app.kubernetes.io/managed-by"], "Helm", "{o}");
            format!(
                "{} {}.{} → {}.{}",
                o["kind"].as_str().unwrap_or_default(),
                m["name"].as_str().unwrap_or_default(),
                m["namespace"].as_str().unwrap_or_default(),
                m["annotations"]["meta.helm.sh/release-name"].as_str().unwrap_or_default(),
                m["annotations"]["meta.helm.sh/release-namespace"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        stamped,
        [
            "Deployment api.shop → storefront.platform",
            "CronJob report.shop → storefront.platform",
            "StatefulSet cache.shop → storefront.platform",
            "Pod debug.tools → debug.tools",
        ],
        "only the top of each released workload's chain"
    );
    let managed = items.iter().filter(|o| o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm").count();
    assert_eq!(managed, stamped.len(), "the label goes with the annotations");

    // mapper-server's cluster state, on that inventory, puts each workload in its release.
    let inventory = Inventory::load(vec![path], ResolveOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let snap = inventory.snapshot();
    let storefront = Some(Release::new("storefront", "platform"));
    for (name, ns, kind, release) in [
        ("api", "shop", "Deployment", storefront.clone()),
        ("report", "shop", "CronJob", storefront.clone()),
        ("cache", "shop", "StatefulSet", storefront),
        ("debug", "tools", "Pod", Some(Release::new("debug", "tools"))),
        ("plain", "shop", "DaemonSet", None),
        ("coredns", "kube-system", "Deployment", None),
    ] {
        let w = Workload::new(name, ns, kind);
        assert!(snap.labels_of(&w).is_some(), "{w} is in the cluster state");
        assert_eq!(snap.release_of(&w), release.as_ref(), "{w}");
    }
}
