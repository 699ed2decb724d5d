//! `mapper audit` and `mapper export --declared` against a real mapper-server holding the seed
//! traffic: transaction-service.team1 and some-other-transaction-service.team2 call
//! ledger.team3 through its ClusterIP.

mod support;

use serde_json::Value;
use support::{Server, mapper, ok, stderr, stdout};

/// transaction-service's chart after the edit: it declares telemetry, and lost ledger.
const CHART: &str = "\
# Source: transaction-service/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: transaction-service
  namespace: team1
spec:
  selector: {matchLabels: {app: transaction-service}}
  template:
    metadata: {labels: {app: transaction-service}}
    spec: {containers: [{name: app, image: lab}]}
---
# Source: transaction-service/templates/clientintents.yaml
apiVersion: k8s.otterize.com/v1alpha2
kind: ClientIntents
metadata:
  name: transaction-service
  namespace: team1
spec:
  service:
    name: transaction-service
  calls:
    - name: telemetry.team4
";

/// The other client declares the Service it dials, v2beta1 style.
const OTHER: &str = "\
apiVersion: k8s.otterize.com/v2beta1
kind: ClientIntents
metadata:
  name: some-other-transaction-service
  namespace: team2
spec:
  workload:
    name: some-other-transaction-service
  targets:
    - service:
        name: ledger.team3
";

fn server() -> Server {
    let server = Server::start(None);
    support::seed(&server);
    server
}

fn audit(server: &Server, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    mapper(&[&["--mapper-url", &server.url, "audit"], args].concat(), stdin)
}

#[test]
fn the_story_missing_ledger_is_reported_and_fails_the_run() {
    let server = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let chart = dir.path().join("charts/transaction-service");
    std::fs::create_dir_all(chart.join("templates")).expect("mkdir");
    support::write(&chart, "templates/rendered.yaml", CHART);
    support::write(&chart, "Chart.yaml", "apiVersion: v2\nname: transaction-service\nversion: 0.1.0\n");
    let out = audit(&server, &["--declared", chart.to_str().expect("utf8")], None);
    assert_eq!(out.status.code(), Some(3), "missing calls fail the run: {}", stderr(&out));
    let table = stdout(&out);
    let first = table.lines().next().expect("a header line");
    assert!(first.starts_with("transaction-service.team1 (Deployment) — declared in "), "{table}");
    assert!(first.ends_with("templates/rendered.yaml: document 2"), "{table}");
    let missing = table.lines().find(|l| l.trim_start().starts_with("MISSING")).expect("a missing line");
    assert!(missing.contains("ledger.team3 (Deployment)"), "{missing}");
    assert!(missing.contains("8080/TCP") && missing.contains("5 connections") && missing.contains("last seen 20"));
    assert!(missing.contains("(blocked once enforced)"), "{missing}");
    let unused = table.lines().find(|l| l.trim_start().starts_with("UNUSED")).expect("an unused line");
    assert!(unused.contains("telemetry.team4") && unused.contains("never seen"), "{unused}");
    assert!(!table.contains("some-other-transaction-service"), "team2 is not in the declared namespaces:\n{table}");
    assert!(!table.contains('\x1b'), "no colour when stdout is not a terminal");
    assert!(stderr(&out).contains("1 missing call (blocked once enforced)"), "{}", stderr(&out));
    assert!(stderr(&out).contains("(--fail-on missing)"), "{}", stderr(&out));

    // --fail-on none reports the same and passes; --fail-on unused fails on telemetry.
    let out = audit(&server, &["--declared", chart.to_str().expect("utf8"), "--fail-on", "none"], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), table);
    let fixed =
        CHART.replace("    - name: telemetry.team4\n", "    - name: telemetry.team4\n    - name: ledger.team3\n");
    let out = audit(&server, &["--declared", "-"], Some(&fixed));
    assert_eq!(out.status.code(), Some(0), "ledger declared again: nothing missing: {}", stdout(&out));
    let out = audit(&server, &["--declared", "-", "--fail-on", "unused"], Some(&fixed));
    assert_eq!(out.status.code(), Some(3), "telemetry is declared and unused");
}

#[test]
fn service_targets_json_and_markdown() {
    let server = server();
    let both = format!("{CHART}---\n{OTHER}");
    let out = audit(&server, &["--declared", "-", "--format", "json"], Some(&both));
    assert_eq!(out.status.code(), Some(3));
    let json: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(json["apiVersion"], "mapper.audit/v1");
    assert_eq!(json["summary"]["clients"], 2);
    assert_eq!(json["summary"]["missing"], 1);
    assert_eq!(json["summary"]["covered"], 1);
    let client = |name: &str| {
        json["clients"].as_array().expect("clients").iter().find(|c| c["client"]["name"] == name).cloned().expect(name)
    };
    let other = client("some-other-transaction-service");
    assert_eq!(other["client"]["name"], "some-other-transaction-service");
    // The Service target is covered by the calls through ledger's ClusterIP.
    assert_eq!(other["covered"][0]["target"], "svc:ledger.team3");
    assert_eq!(other["covered"][0]["established"], 3);
    assert_eq!(other["missing"], Value::Array(Vec::new()));
    let ts = client("transaction-service");
    assert_eq!(ts["missing"][0]["target"], "ledger.team3");
    assert_eq!(ts["missing"][0]["via_services"][0], "ledger.team3");
    assert_eq!(ts["unused"][0]["last_seen"], Value::Null);

    let out = audit(
        &server,
        &["--declared", "-", "--format", "markdown", "--workload", "transaction-service.team1"],
        Some(&both),
    );
    let md = stdout(&out);
    assert!(md.starts_with("### mapper audit: 1 missing call, 1 unused target, 0 covered targets\n"), "{md}");
    assert!(
        md.contains("| ❌ missing | `transaction-service.team1` | `ledger.team3 (Deployment)` | 8080/TCP |"),
        "{md}"
    );
    assert!(!md.contains("some-other"), "--workload limits the clients: {md}");
}

#[test]
fn bad_declared_input_names_the_place_and_reports_nothing() {
    let server = server();
    let cases = [
        ("calls: [\n", "<stdin>: document 1: malformed YAML"),
        (
            "apiVersion: k8s.otterize.com/v9\nkind: ClientIntents\nmetadata: {name: a, namespace: b}\n",
            "<stdin>: document 1: apiVersion: unknown ClientIntents apiVersion `k8s.otterize.com/v9`",
        ),
        (
            &format!("{OTHER}---\n{}", OTHER.replace("        name: ledger.team3\n", "        namespace: x\n")),
            "<stdin>: document 2: spec.targets[0].service",
        ),
        (
            "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata: {name: a}\nspec: {service: {name: a}}\n",
            "ClientIntents a has no metadata.namespace; give the namespace it is applied to with exactly one -n",
        ),
    ];
    for (input, message) in cases {
        let out = audit(&server, &["--declared", "-"], Some(input));
        assert_eq!(out.status.code(), Some(1), "{input}");
        assert_eq!(stdout(&out), "", "nothing is half-reported");
        assert!(stderr(&out).contains(message), "expected `{message}` in: {}", stderr(&out));
    }
    // A namespace-less document is read in the one -n given.
    let out = audit(&server, &["--declared", "-", "-n", "team1"], Some(&CHART.replace("  namespace: team1\n", "")));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // An unrendered template gets a hint.
    let out = audit(
        &server,
        &["--declared", "-"],
        Some("{{- if .Values.intents }}\napiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\n{{- end }}\n"),
    );
    assert!(stderr(&out).contains("unrendered Helm template"), "{}", stderr(&out));
    // Neither side given is a usage error.
    assert_eq!(audit(&server, &[], None).status.code(), Some(2));
}

#[test]
fn export_declared_adds_what_is_missing_in_the_declared_version() {
    let server = server();
    let out = mapper(&["--mapper-url", &server.url, "export", "--declared", "-", "-n", "team1"], Some(CHART));
    let yaml = ok(&out);
    assert_eq!(
        yaml,
        "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata:\n  name: transaction-service\n  \
         namespace: team1\nspec:\n  service:\n    name: transaction-service\n  calls:\n    - name: telemetry.team4\n    \
         - name: ledger.team3\n"
    );
    assert!(stderr(&out).contains("transaction-service.team1: adding ledger.team3"), "{}", stderr(&out));
    // The amended file passes the audit.
    let out = audit(&server, &["--declared", "-", "--fail-on", "missing"], Some(&yaml));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Nothing missing: nothing written.
    let out = mapper(&["--mapper-url", &server.url, "export", "--declared", "-", "-n", "team1"], Some(&yaml));
    assert_eq!(ok(&out), "");
    assert!(stderr(&out).contains("Nothing to add"), "{}", stderr(&out));
}
