//! `mapper audit` with NetworkPolicies: declared in a file, and in a Helm release's revision
//! (the rollback preview), evaluated against a real mapper-server's observed calls, with the
//! labels from an `--inventory` (the test cluster's objects) or from a fake Kubernetes API
//! serving the same objects.

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

/// The fake Kubernetes API (mapper-cluster's, the real list/watch protocol) serving the test
/// cluster's objects (`tests/fixtures/cluster.yaml`), with a kubeconfig pointing at it.
struct FakeCluster {
    _api: mapper_cluster::fake_api::FakeApi,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    kubeconfig: String,
}

fn fake_cluster() -> FakeCluster {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let api = runtime.block_on(mapper_cluster::fake_api::FakeApi::start());
    let list: Value =
        mapper_intents::stream::from_str(&std::fs::read_to_string(FIXTURE).expect("fixture")).expect("fixture YAML");
    for (path, kind) in [
        ("/api/v1/namespaces", "NamespaceList"),
        ("/api/v1/pods", "PodList"),
        ("/api/v1/services", "ServiceList"),
        ("/api/v1/nodes", "NodeList"),
        ("/apis/apps/v1/replicasets", "ReplicaSetList"),
        ("/apis/batch/v1/jobs", "JobList"),
        ("/apis/discovery.k8s.io/v1/endpointslices", "EndpointSliceList"),
    ] {
        let version = path.strip_prefix("/apis/").and_then(|p| p.rsplit_once('/')).map_or("v1", |(v, _)| v);
        api.collection(path, version, kind);
    }
    for ns in ["team1", "team2", "team3"] {
        api.collection(&format!("/api/v1/namespaces/{ns}/pods"), "v1", "PodList");
    }
    for item in list["items"].as_array().expect("items") {
        let ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        match item["kind"].as_str().unwrap_or_default() {
            "Namespace" => api.apply("/api/v1/namespaces", item.clone()),
            "Pod" => {
                api.apply("/api/v1/pods", item.clone());
                api.apply(&format!("/api/v1/namespaces/{ns}/pods"), item.clone());
            }
            "Service" => api.apply("/api/v1/services", item.clone()),
            "ReplicaSet" => api.apply("/apis/apps/v1/replicasets", item.clone()),
            "Job" => api.apply("/apis/batch/v1/jobs", item.clone()),
            "CronJob" => api.on_get(
                &format!("/apis/batch/v1/namespaces/{ns}/cronjobs/{name}"),
                mapper_cluster::fake_api::StatusCode::OK,
                item.clone(),
            ),
            "EndpointSlice" => api.apply("/apis/discovery.k8s.io/v1/endpointslices", item.clone()),
            // Owners above ReplicaSets and Jobs are fetched one by one.
            kind @ ("Deployment" | "StatefulSet" | "DaemonSet") => api.on_get(
                &format!("/apis/apps/v1/namespaces/{ns}/{}s/{name}", kind.to_lowercase()),
                mapper_cluster::fake_api::StatusCode::OK,
                item.clone(),
            ),
            other => panic!("the fixture has a {other}: serve it"),
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = support::fake_kubeconfig(dir.path(), api.addr);
    FakeCluster { _api: api, _runtime: runtime, _dir: dir, kubeconfig }
}

#[test]
fn without_an_inventory_the_labels_come_from_the_cluster() {
    let server = Server::start(None);
    support::seed(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = support::write(dir.path(), "ledger-policy.yaml", LEDGER_POLICY);
    let cluster = fake_cluster();
    let out = server.mapper(&["--kubeconfig", &cluster.kubeconfig, "audit", "--declared", &file, "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("\nRead pod and namespace labels from the cluster\n"), "{}", stderr(&out));
    let policies = &json_of(&out)["network_policies"];
    assert_eq!(
        (&policies["admitted"], &policies["unknown"]),
        (&serde_json::json!(1), &serde_json::json!([])),
        "{policies:#}"
    );
    assert_eq!(policies["denied"][0]["client"], "transaction-service.team1", "{policies:#}");

    // No cluster: every label unknown, and a warning says why.
    let out = server.mapper(&["--kubeconfig", "/nonexistent/kubeconfig", "audit", "--declared", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: NetworkPolicies: labels unknown (give --inventory, or a cluster): "),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("0 denied, 2 unknown"), "{}", stdout(&out));
}
