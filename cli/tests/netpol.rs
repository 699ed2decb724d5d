//! `mapper audit` with NetworkPolicies: declared in a file, and in a Helm release's revision
//! (the rollback preview), evaluated against a real mapper-server's observed calls, with the
//! labels from an `--inventory` (the test cluster's objects).

mod support;

use serde_json::Value;
use support::{FIXTURE, Server, connect, stderr, stdout};

/// ledger admits team2 only, on 8080.
const LEDGER_POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: ledger-ingress\n  \
                             namespace: team3\nspec:\n  podSelector:\n    matchLabels: {app: ledger}\n  ingress:\n  - \
                             from:\n    - namespaceSelector:\n        matchLabels: {kubernetes.io/metadata.name: team2}\n    \
                             ports:\n    - port: 8080\n";

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn declared_network_policies_deny_the_calls_they_do_not_admit() {
    let server = Server::start(None);
    support::seed(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = support::write(dir.path(), "ledger-policy.yaml", LEDGER_POLICY);
    let out = server.mapper(&["audit", "--declared", &file, "--inventory", FIXTURE, "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("Read 0 declared ClientIntents from 1 file and 1 NetworkPolicies\n"),
        "{}",
        stderr(&out)
    );
    let json = json_of(&out);
    let policies = &json["network_policies"];
    assert_eq!(policies["policies"][0]["name"], "team3/ledger-ingress", "{json:#}");
    assert_eq!(policies["admitted"], 1);
    assert_eq!(policies["denied"].as_array().map(Vec::len), Some(1));
    assert_eq!(policies["denied"][0]["client"], "transaction-service.team1");
    assert_eq!(policies["denied"][0]["server"], "ledger.team3");
    assert_eq!(policies["denied"][0]["selected_by"][0], "team3/ledger-ingress");
    assert_eq!(policies["egress"]["evaluated"], false);
    // Only NetworkPolicies declared: no ClientIntents audit.
    assert_eq!(json["clients"].as_array().map(Vec::len), Some(0));

    let out = server.mapper(&["audit", "--declared", &file, "--inventory", FIXTURE]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    // Only policies declared: their report alone, and the error says what they deny.
    assert!(
        text.starts_with("NetworkPolicies (1): 1 denied, 0 unknown, 1 admitted observed calls; egress rules are not evaluated\n  DENIED   transaction-service.team1 -> ledger.team3 8080/TCP  last seen "),
        "{text}"
    );
    assert!(text.contains("(selected by team3/ledger-ingress, none admits it)\n"), "{text}");
    assert!(
        stderr(&out).ends_with("\nerror: audit: 1 observed call the NetworkPolicies deny (--fail-on missing)\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn without_labels_the_verdict_is_unknown_not_guessed() {
    let server = Server::start(None);
    support::seed(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = support::write(dir.path(), "ledger-policy.yaml", LEDGER_POLICY);
    let out = server.mapper(&["audit", "--declared", &file, "--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("#### NetworkPolicies: 0 denied, 2 unknown, 0 admitted observed calls"), "{text}");
    assert!(text.contains("pod labels of ledger.team3: label app not known"), "{text}");
    // A policy without a namespace needs one -n.
    let file = support::write(dir.path(), "no-ns.yaml", &LEDGER_POLICY.replace("  namespace: team3\n", ""));
    let out = server.mapper(&["audit", "--declared", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NetworkPolicy ledger-ingress has no metadata.namespace"), "{}", stderr(&out));
    let out =
        server.mapper(&["audit", "--declared", &file, "-n", "team3", "--inventory", FIXTURE, "--fail-on", "none"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 denied"), "{}", stdout(&out));
}

#[test]
fn named_ports_resolve_through_the_inventory_pods() {
    let server = Server::start(None);
    support::seed(&server);
    // team2's client calls transaction-service (team1) on 8080, which its pod names http.
    server.ingest(
        vec![connect(support::OTHER_TRANSACTION, [10, 244, 2, 2], ([10, 244, 1, 2], 8080), None, 2)],
        Vec::new(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = std::fs::read_to_string(FIXTURE).expect("fixture");
    let with_ports = fixture.replacen(
        "  spec: {containers: [{name: app, image: lab}], nodeName: node-1}",
        "  spec: {containers: [{name: app, image: lab, ports: [{name: http, containerPort: 8080}]}], nodeName: node-1}",
        1,
    );
    assert_ne!(with_ports, fixture, "the transaction-service pod is the first with that spec");
    let inventory = support::write(dir.path(), "inventory.yaml", &with_ports);
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ts, namespace: team1}\nspec:\n  \
                  podSelector: {matchLabels: {app: transaction-service}}\n  ingress:\n  - from: [{namespaceSelector: {}}]\n    \
                  ports: [{port: http}]\n  egress: []\n";
    let file = support::write(dir.path(), "ts.yaml", policy);
    let out = server.mapper(&["audit", "--declared", &file, "--inventory", &inventory, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = json_of(&out);
    assert_eq!(json["network_policies"]["admitted"], 1, "{json:#}");
    assert_eq!(json["network_policies"]["egress"]["policies_with_egress"][0], "team1/ts");
    // The fixture's own pod has no named ports: http is no port of it, so the call is denied.
    let out = server.mapper(&["audit", "--declared", &file, "--inventory", FIXTURE, "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json_of(&out)["network_policies"]["denied"][0]["client"], "some-other-transaction-service.team2");
}
