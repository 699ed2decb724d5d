//! `mapper export` against a real mapper-server: golden files for every version and format,
//! the seed byte for byte (docs/formats.md, "Golden files"), `--output-type dir`, and the filters.

mod support;

use mapper_proto::v1 as pb;
use support::{Server, assert_golden, intents_golden, ok, stderr};

fn seeded() -> Server {
    let server = Server::start(None);
    support::seed(&server);
    server
}

#[test]
fn the_seed_as_v1alpha2_is_byte_identical_to_otterize_md() {
    let server = seeded();
    let out = server.mapper(&["export", "-n", "team1", "-n", "team2", "--output-version", "v1alpha2"]);
    assert_eq!(ok(&out), intents_golden("seed_v1alpha2.yaml"));
    // Comma-separated namespaces are the same filter.
    let out = server.mapper(&["export", "--namespaces", "team1,team2", "--output-version", "v1alpha2"]);
    assert_eq!(ok(&out), intents_golden("seed_v1alpha2.yaml"));
}

#[test]
fn the_seed_in_every_version_and_alias() {
    let server = seeded();
    for (flag, golden) in [
        ("v1alpha3", "seed_v1alpha3.yaml"),
        ("v1", "seed_v1alpha3.yaml"),
        ("v1beta1", "seed_v1beta1.yaml"),
        ("v2alpha1", "seed_v2alpha1.yaml"),
        ("v2beta1", "seed_v2beta1.yaml"),
        ("v2", "seed_v2beta1.yaml"),
    ] {
        let out = server.mapper(&["export", "--output-version", flag]);
        assert_eq!(ok(&out), intents_golden(golden), "--output-version {flag}");
    }
    // v2beta1 is the default.
    assert_eq!(ok(&server.mapper(&["export"])), intents_golden("seed_v2beta1.yaml"));
}

#[test]
fn the_seed_as_json() {
    let server = seeded();
    assert_eq!(ok(&server.mapper(&["export", "--format", "json"])), intents_golden("seed_v2beta1.json"));
}

#[test]
fn kinds_services_api_server_and_internet_as_v2beta1_and_older_versions() {
    let server = Server::start(None);
    support::kinds(&server);
    assert_golden("kinds_v2beta1.yaml", &ok(&server.mapper(&["export"])));
    assert_golden("kinds_v1alpha3.yaml", &ok(&server.mapper(&["export", "--output-version", "v1alpha3"])));
    assert_golden("kinds_v2beta1.json", &ok(&server.mapper(&["export", "--format", "json"])));
    // v1alpha2 cannot express internet targets: they are left out, with a warning.
    let out = server.mapper(&["export", "--output-version", "v1alpha2"]);
    assert_golden("kinds_v1alpha2.yaml", &ok(&out));
    assert!(stderr(&out).contains("left out 1 internet target(s): v1alpha2 cannot express them"), "{}", stderr(&out));
    let out = server.mapper(&["export", "--exclude-internet"]);
    assert!(!ok(&out).contains("internet"));
}

#[test]
fn output_type_dir_writes_one_file_per_client() {
    let server = Server::start(None);
    support::seed(&server);
    support::kinds(&server);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let target = dir.path().join("intents");
    let out = server.mapper(&["export", "-o", target.to_str().unwrap_or_default(), "--output-type", "dir"]);
    ok(&out);
    assert!(stderr(&out).contains("Wrote 5 ClientIntents files to"), "{}", stderr(&out));
    let mut names: Vec<String> = std::fs::read_dir(&target)
        .unwrap_or_else(|e| panic!("read_dir: {e}"))
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api.team1.yaml",
            "cache.team2.yaml",
            "nightly-report.team1.yaml",
            "some-other-transaction-service.team2.yaml",
            "transaction-service.team1.yaml",
        ]
    );
    let one = std::fs::read_to_string(target.join("transaction-service.team1.yaml")).unwrap_or_default();
    assert!(one.starts_with("apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\n") && !one.contains("---"));

    // A single file with -o.
    let file = dir.path().join("all.yaml");
    ok(&server.mapper(&["export", "-o", file.to_str().unwrap_or_default()]));
    assert_eq!(std::fs::read_to_string(&file).unwrap_or_default().matches("kind: ClientIntents").count(), 5);
}

#[test]
fn filters_by_server_services_labels_and_time() {
    let server = Server::start(None);
    support::seed(&server);
    support::kinds(&server);
    support::extras(&server);
    let clients = |args: &[&str]| -> Vec<String> {
        let text = ok(&server.mapper(&[&["export", "--output-version", "v1alpha2"], args].concat()));
        text.lines().filter_map(|l| l.strip_prefix("  name: ").map(str::to_owned)).collect()
    };
    assert_eq!(
        clients(&["--server", "ledger.team3"]),
        ["cache", "debug-shell", "some-other-transaction-service", "transaction-service"]
    );
    assert_eq!(
        clients(&["--server", "ledger.team3", "--exclude-labels", "mapper-test/ignore=true"]),
        ["cache", "some-other-transaction-service", "transaction-service"]
    );
    // A bare key leaves out the pods carrying the label whatever its value, as otterize-cli.
    assert_eq!(
        clients(&["--server", "ledger.team3", "--exclude-labels", "mapper-test/ignore"]),
        ["cache", "some-other-transaction-service", "transaction-service"]
    );
    // --server exports each of its clients' whole ClientIntents, as otterize-cli does: applied
    // over the full document of the same name, a partial one would drop the other calls.
    let api = ok(&server.mapper(&["export", "--server", "cache.team2"]));
    assert_eq!(api.matches("kind: ClientIntents").count(), 1, "{api}");
    for call in ["name: cache.team2", "name: legacy-db", "name: kubernetes.default", "some-other-transaction-service"] {
        assert!(api.contains(call), "{call} missing from {api}");
    }
    assert_eq!(api, ok(&server.mapper(&["export", "-n", "team1"])).split("---\n").next().unwrap_or_default());
    assert_eq!(
        clients(&["--exclude-services", "ledger,cache"]),
        ["api", "nightly-report"],
        "clients and servers named in --exclude-services are left out"
    );
    // The api → some-other-transaction-service edge was last seen two days ago.
    let all = ok(&server.mapper(&["export", "-n", "team1"]));
    assert!(all.contains("some-other-transaction-service.team2"), "{all}");
    let recent = ok(&server.mapper(&["export", "-n", "team1", "--since", "1h"]));
    assert!(!recent.contains("some-other-transaction-service.team2"), "{recent}");
}

#[test]
fn no_edges_is_an_empty_export_and_a_note() {
    let server = Server::start(None);
    let out = server.mapper(&["export"]);
    assert_eq!(ok(&out), "");
    assert!(stderr(&out).contains("No connections found."));
}

#[test]
fn calls_that_never_succeeded_are_exported_only_when_asked_for() {
    let server = seeded();
    let failed = pb::Flow {
        count: 0,
        failed: 3,
        ..support::connect(support::TRANSACTION, [10, 244, 1, 2], ([10, 244, 2, 5], 6379), None, 0)
    };
    server.ingest(vec![failed], Vec::new());
    let plain = ok(&server.mapper(&["export", "-n", "team1", "--output-version", "v1alpha2"]));
    let with_failed =
        ok(&server.mapper(&["export", "-n", "team1", "--output-version", "v1alpha2", "--include-failed"]));
    let targets = |yaml: &str| yaml.lines().filter(|l| l.trim_start().starts_with("- name:")).count();
    assert_eq!(targets(&plain), 1, "only the call that succeeded:\n{plain}");
    assert_eq!(targets(&with_failed), 2, "--include-failed adds the failed call:\n{with_failed}");
    // list still shows it, as failed.
    let list = ok(&server.mapper(&["list", "-n", "team1"]));
    assert!(list.contains("all 3 attempts failed"), "{list}");
}

#[test]
fn as_kubernetes_service_names_the_service_dialled() {
    let server = seeded();
    let out = ok(&server.mapper(&["export", "-n", "team1", "--as-kubernetes-service"]));
    assert!(out.contains("    - service:\n        name: ledger.team3\n"), "{out}");
    let v1 = ok(&server.mapper(&["export", "-n", "team1", "--as-kubernetes-service", "--output-version", "v1alpha2"]));
    assert!(v1.contains("    - name: svc:ledger.team3\n"), "{v1}");
    let list = ok(&server.mapper(&["list", "-n", "team1", "--as-kubernetes-service"]));
    assert!(list.contains("Service ledger in namespace team3"), "{list}");
}

#[test]
fn distinct_by_label_asks_the_server_for_the_label() {
    let server = Server::start(None);
    support::seed(&server);
    support::kinds(&server);
    // Only cache's pods carry `app`; every client has a name of its own, so nothing merges.
    let plain = ok(&server.mapper(&["export"]));
    assert_eq!(ok(&server.mapper(&["export", "--distinct-by-label", "app"])), plain);
    let list = ok(&server.mapper(&["list", "--distinct-by-label", "app"]));
    assert_eq!(list, ok(&server.mapper(&["list"])));
}

/// What `otterize mapper export --format json` writes (a bare array) is read by --declared and
/// by audit as the List it stands for.
#[test]
fn otterize_clis_json_export_is_read_as_declared() {
    let server = seeded();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otterize/export.json");
    let out = server.mapper(&["export", "--declared", fixture]);
    assert_eq!(ok(&out), "");
    let err = stderr(&out);
    assert!(err.contains("Read 2 declared ClientIntents from 1 file"), "{err}");
    assert!(err.contains("Nothing to add: every observed call is declared."), "{err}");
    let audit = ok(&server.mapper(&["audit", "--declared", fixture]));
    assert!(audit.contains("transaction-service"), "{audit}");
}
