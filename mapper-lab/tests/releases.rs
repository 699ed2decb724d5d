//! The inventory `mapper-lab up` writes for a scenario with `releases:`: Helm's annotations and
//! label on each released workload's top owner (a bare pod on itself), nothing on the rest, and
//! mapper-server's cluster state reading those releases back; the release Secrets of the seed's
//! revisions, read back by the CLI's reader of release records; the seed's rendered revisions
//! current with real helm. No namespaces are made: the lab's state is built by hand, as `up`
//! would leave it.

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
        // 2026-12-01T10:00:00Z
        up_at: 1_796_119_200,
    }
}

/// The inventory `up` would write for `scenario`: its directory (kept while it is used), path,
/// text and YAML.
fn written(scenario: &Scenario) -> (tempfile::TempDir, PathBuf, String, Value) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    inventory::write(scenario, &state(scenario), &mapper_lab::lab::service_defs(scenario), dir.path())
        .unwrap_or_else(|e| panic!("write the inventory: {e}"));
    let path = dir.path().join("inventory.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let list: Value = mapper_intents::stream::from_str(&text).unwrap_or_else(|e| panic!("inventory YAML: {e}"));
    (dir, path, text, list)
}

#[test]
fn released_workloads_top_owners_carry_helm_s_annotations_and_label() {
    let scenario = Scenario::parse(SCENARIO).unwrap_or_else(|e| panic!("scenario: {e}"));
    let (_dir, path, _, list) = written(&scenario);
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

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn the_seed_s_revisions_are_written_as_helm_stores_them() {
    let scenario = Scenario::load(&PathBuf::from(format!("{ROOT}/deploy/local/scenarios/seed.yaml")))
        .unwrap_or_else(|e| panic!("seed: {e}"));
    let (_dir, path, text, list) = written(&scenario);
    let secrets: Vec<&Value> =
        list["items"].as_array().into_iter().flatten().filter(|o| o["kind"] == "Secret").collect();
    let names: Vec<&str> = secrets.iter().filter_map(|s| s["metadata"]["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "sh.helm.release.v1.transaction-service.v1",
            "sh.helm.release.v1.transaction-service.v2",
            "sh.helm.release.v1.ledger.v1",
            "sh.helm.release.v1.ledger.v2",
        ]
    );
    assert_eq!(secrets[3]["type"], "helm.sh/release.v1");
    assert_eq!(
        secrets[3]["metadata"]["labels"],
        serde_json::json!({"owner": "helm", "name": "ledger", "status": "deployed", "version": "2", "modifiedAt": "1796119200"})
    );

    // The reader of release records takes them back: status, chart, dates, and the manifest
    // helm rendered, byte for byte.
    let ledger = mapper_intents::helm::records_in(&text, "inventory.yaml", "ledger").unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<String> = ledger
        .iter()
        .map(|r| {
            let at = r.last_deployed.as_deref().unwrap_or("-");
            format!("{} {} {} {} {at} {}", r.revision, r.namespace, r.status, r.chart_version, r.description)
        })
        .collect();
    assert_eq!(
        got,
        [
            "1 team3 superseded 2.1.0 2026-11-30T10:00:00Z Install complete",
            "2 team3 deployed 2.1.0 2026-12-01T10:00:00Z Upgrade complete: admits team1",
        ]
    );
    let rendered =
        std::fs::read_to_string(format!("{ROOT}/deploy/local/helm/rendered/ledger-1.yaml")).expect("rendered");
    assert_eq!(ledger[0].manifest, rendered);
    let policies = ledger[0].policies().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policies.len(), 1);
    let ts = mapper_intents::helm::records_in(&text, "inventory.yaml", "transaction-service")
        .unwrap_or_else(|e| panic!("{e}"));
    let (declared, _) = ts[1].declared().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(declared.len(), 1, "revision 2 declares transaction-service's ClientIntents");

    // mapper-server's cluster state reads the same inventory (Secrets are no owners).
    Inventory::load(vec![path], ResolveOptions::default()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_seed_s_rendered_revisions_are_what_helm_renders() {
    let helm = std::env::var("MAPPER_HELM").ok().filter(|h| !h.is_empty());
    let Some(helm) = helm else {
        let reason = "no helm (MAPPER_HELM unset; scripts/lib.sh ensure_helm installs it)";
        if std::env::var("MAPPER_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("the_seed_s_rendered_revisions_are_what_helm_renders: {reason} (MAPPER_REQUIRE_BPF=1)");
        }
        eprintln!("SKIPPED the_seed_s_rendered_revisions_are_what_helm_renders: {reason}");
        return;
    };
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let status = std::process::Command::new("bash")
        .arg("deploy/local/helm/render.sh")
        .arg(&helm)
        .arg(out.path())
        .current_dir(ROOT)
        .status()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    assert!(status.success(), "deploy/local/helm/render.sh failed");
    let committed = PathBuf::from(format!("{ROOT}/deploy/local/helm/rendered"));
    let mut names: Vec<_> =
        std::fs::read_dir(&committed).expect("rendered/").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for name in names {
        let want = std::fs::read_to_string(out.path().join(&name)).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let have = std::fs::read_to_string(committed.join(&name)).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(have, want, "{name:?} is stale: run bash deploy/local/helm/render.sh");
    }
}
