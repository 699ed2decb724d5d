//! Helm releases read from the cluster: a fake Kubernetes API (mapper-cluster's, speaking the
//! real list protocol) serves Helm's release records — Secrets of the default driver,
//! ConfigMaps of the ConfigMap driver — built from manifests real helm rendered
//! (`tests/fixtures/helm/render.sh`), and a real mapper-server serves the observed side.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use mapper_cluster::fake_api::FakeApi;
use mapper_intents::helm::{encode_release, record_name};
use serde_json::{Value, json};
use support::{Server, mapper, stderr, stdout};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/helm")
}

fn manifest(revision: u32) -> String {
    let path = fixtures().join(format!("revision-{revision}.yaml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The release JSON Helm stores for `revision` of the payments release.
fn release_json(name: &str, revision: u32, status: &str, manifest: &str) -> Value {
    json!({
        "name": name,
        "namespace": "team1",
        "version": revision,
        "info": {"first_deployed": "2026-11-01T09:00:00Z", "last_deployed": format!("2026-11-{:02}T10:00:00Z", 27 + revision),
                 "status": status, "description": "Upgrade complete"},
        "chart": {"metadata": {"name": "payments", "version": "1.2.0", "apiVersion": "v2"}},
        "config": {},
        "manifest": manifest,
    })
}

fn labels(name: &str, revision: u32, status: &str) -> Value {
    json!({"owner": "helm", "name": name, "version": revision.to_string(), "status": status})
}

/// A record Secret as the API serves it: `data.release` is base64 (the API's) of Helm's text.
fn secret(name: &str, revision: u32, status: &str, helm_text: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": record_name(name, revision), "namespace": "team1", "labels": labels(name, revision, status)},
        "data": {"release": base64::engine::general_purpose::STANDARD.encode(helm_text)},
    })
}

struct Cluster {
    api: FakeApi,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    kubeconfig: String,
}

/// The fake API with the payments release (revisions 1 and 2 superseded, 3 deployed) in
/// Secrets, `legacy` in ConfigMaps (uncompressed, as before Helm gzipped), and `broken`, a
/// record that is not base64.
fn cluster() -> Cluster {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let api = runtime.block_on(FakeApi::start());
    api.collection("/api/v1/namespaces/team1/secrets", "v1", "SecretList");
    api.collection("/api/v1/namespaces/team1/configmaps", "v1", "ConfigMapList");
    for (revision, status) in [(1, "superseded"), (2, "superseded"), (3, "deployed")] {
        let json = release_json("payments", revision, status, &manifest(revision));
        let text = encode_release(json.to_string().as_bytes());
        api.apply("/api/v1/namespaces/team1/secrets", secret("payments", revision, status, &text));
    }
    // shrink: revision 2 (deployed) drops ledger, which transaction-service still calls.
    for (revision, status) in [(1, "superseded"), (2, "deployed")] {
        let json = release_json("shrink", revision, status, &manifest(revision));
        let text = encode_release(json.to_string().as_bytes());
        api.apply("/api/v1/namespaces/team1/secrets", secret("shrink", revision, status, &text));
    }
    // Another release's record and an unrelated Secret, which the label selector (ignored by
    // the fake) would leave out: mapper must too.
    let other = encode_release(release_json("other", 1, "deployed", "").to_string().as_bytes());
    api.apply("/api/v1/namespaces/team1/secrets", secret("other", 1, "deployed", &other));
    api.apply(
        "/api/v1/namespaces/team1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "payments-tls", "namespace": "team1", "labels": {"owner": "helm", "name": "payments"}},
               "data": {"release": "bm90IGEgcmVsZWFzZQ=="}}),
    );
    api.apply("/api/v1/namespaces/team1/secrets", secret("broken", 1, "deployed", "%%% not base64"));
    let plain = base64::engine::general_purpose::STANDARD
        .encode(release_json("legacy", 1, "deployed", &manifest(2)).to_string());
    api.apply(
        "/api/v1/namespaces/team1/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": record_name("legacy", 1), "namespace": "team1", "labels": labels("legacy", 1, "deployed")},
               "data": {"release": plain}}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = support::fake_kubeconfig(dir.path(), api.addr);
    Cluster { api, _runtime: runtime, _dir: dir, kubeconfig }
}

fn audit(cluster: &Cluster, server: &Server, extra: &[&str]) -> std::process::Output {
    let args = [&["--kubeconfig", &cluster.kubeconfig, "--mapper-url", &server.url, "audit"], extra].concat();
    mapper(&args, None)
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn audit_reads_the_deployed_revision_of_a_release() {
    let server = Server::start(None);
    support::seed(&server);
    let cluster = cluster();
    let out = audit(&cluster, &server, &["--helm-release", "payments", "-n", "team1", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // This fake API serves no Namespaces: the policy's labels are unknown, and a warning says why.
    assert_eq!(
        stderr(&out),
        "Read 1 declared ClientIntents and 1 NetworkPolicies from release team1/payments revision 3 (chart payments \
         1.2.0, deployed, 2026-11-30T10:00:00Z)\nwarning: NetworkPolicies: labels unknown (give --inventory, or a \
         cluster): cannot list namespaces: /api/v1/namespaces not found\n"
    );
    let json = json_of(&out);
    let ts = &json["clients"][0];
    assert_eq!(ts["client"]["name"], "transaction-service", "{json:#}");
    assert_eq!(ts["declared_in"][0], "release team1/payments revision 3: payments/templates/intents.yaml: document 1");
    assert_eq!(ts["covered"][0]["target"], "ledger.team3");
    assert_eq!(ts["unused"][0]["target"], "telemetry.team4");
    assert_eq!(json["summary"]["missing"], 0);
    assert!(cluster.api.requests("/api/v1/namespaces/team1/secrets") >= 1);
}

#[test]
fn audit_of_an_older_revision_shows_what_a_rollback_would_block() {
    let server = Server::start(None);
    support::seed(&server);
    let cluster = cluster();
    // No -n: the kubeconfig context's namespace (team1).
    let out = audit(&cluster, &server, &["--helm-release", "payments", "--revision", "2", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let json = json_of(&out);
    let ts = &json["clients"][0];
    assert_eq!(ts["declared_in"][0], "release team1/payments revision 2: payments/templates/intents.yaml: document 1");
    assert_eq!(ts["missing"][0]["target"], "ledger.team3", "{json:#}");
    assert_eq!(
        stderr(&out).lines().last(),
        Some(
            "error: audit: 1 missing call (blocked once enforced), 1 target declared but not observed (--fail-on missing)"
        )
    );
}

#[test]
fn the_configmap_driver_and_uncompressed_records_are_read() {
    let server = Server::start(None);
    support::seed(&server);
    let cluster = cluster();
    let out = audit(&cluster, &server, &["--helm-release", "legacy", "-n", "team1", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json_of(&out)["clients"][0]["missing"][0]["target"], "ledger.team3");
    assert!(cluster.api.requests("/api/v1/namespaces/team1/configmaps") >= 1);
}

#[test]
fn release_errors_name_the_release_and_record() {
    let server = Server::start(None);
    let cluster = cluster();
    let cases: [(&[&str], String); 4] = [
        (
            &["--helm-release", "broken"],
            "error: secret team1/sh.helm.release.v1.broken.v1: data.release is not base64 (Helm writes base64 of the \
             gzipped release JSON): Invalid symbol 37, offset 0.\n"
                .to_owned(),
        ),
        (
            &["--helm-release", "missing", "-n", "team1"],
            "error: Helm release missing not found in namespace team1 (no Secret or ConfigMap labelled \
             owner=helm,name=missing; give the release's namespace with -n)\n"
                .to_owned(),
        ),
        (
            &["--helm-release", "payments", "--revision", "9"],
            "error: Helm release team1/payments has no revision 9 (revisions kept: 1, 2, 3)\n".to_owned(),
        ),
        (
            &["--helm-release", "payments", "-n", "team2"],
            "error: cannot read Helm release payments: listing secrets in namespace team2: \
             /api/v1/namespaces/team2/secrets not found\n"
                .to_owned(),
        ),
    ];
    for (args, expected) in cases {
        let out = audit(&cluster, &server, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), expected, "{args:?}");
    }
}

#[test]
fn a_rollback_preview_evaluates_the_revisions_network_policies() {
    let server = Server::start(None);
    support::seed(&server);
    // Into transaction-service (team1) on 8080, which its pod names http: from team2 and team1.
    server.ingest(
        vec![
            support::connect(support::OTHER_TRANSACTION, [10, 244, 2, 2], ([10, 244, 1, 2], 8080), None, 2),
            support::connect(support::API, [10, 244, 1, 8], ([10, 244, 1, 2], 8080), None, 1),
        ],
        Vec::new(),
    );
    let cluster = cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = std::fs::read_to_string(support::FIXTURE).expect("fixture");
    let inventory = support::write(
        dir.path(),
        "inventory.yaml",
        &fixture.replacen(
            "  spec: {containers: [{name: app, image: lab}], nodeName: node-1}",
            "  spec: {containers: [{name: app, image: lab, ports: [{name: http, containerPort: 8080}]}], nodeName: \
             node-1}",
            1,
        ),
    );
    let out = audit(
        &cluster,
        &server,
        &["--helm-release", "payments", "--revision", "3", "--inventory", &inventory, "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .starts_with("Read 1 declared ClientIntents and 1 NetworkPolicies from release team1/payments revision 3")
    );
    let json = json_of(&out);
    let policies = &json["network_policies"];
    assert_eq!(
        policies["policies"][0],
        json!({"name": "team1/transaction-service-ingress",
               "source": "release team1/payments revision 3: payments/templates/networkpolicy.yaml: document 1"}),
        "{json:#}"
    );
    // team2's call is admitted (namespace and named port); the team1 caller is denied.
    assert_eq!(policies["admitted"], 1);
    assert_eq!(policies["denied"][0]["client"], "api.team1");
    assert_eq!(policies["denied"][0]["server"], "transaction-service.team1");
    // Revision 2 has no NetworkPolicy: nothing to evaluate.
    let out = audit(&cluster, &server, &["--helm-release", "payments", "--revision", "2", "--format", "json"]);
    assert_eq!(json_of(&out).get("network_policies"), None);
}

fn helm_history(cluster: &Cluster, server: &Server, extra: &[&str]) -> std::process::Output {
    let args = [&["--kubeconfig", &cluster.kubeconfig, "--mapper-url", &server.url, "helm", "history"], extra].concat();
    mapper(&args, None)
}

#[test]
fn history_shows_each_revisions_changes_and_what_removed_calls_would_block() {
    let server = Server::start(None);
    support::seed(&server);
    let cluster = cluster();
    // payments: ledger removed in 2, declared again in 3: nothing blocked.
    let out = helm_history(&cluster, &server, &["payments", "-n", "team1", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = json_of(&out);
    assert_eq!(json["apiVersion"], "mapper.helm-history/v1");
    assert_eq!(json["summary"], json!({"revisions": 3, "blocked": 0}));
    let revisions = json["revisions"].as_array().expect("revisions");
    assert_eq!(revisions[0]["added"].as_array().map(Vec::len), Some(2), "{json:#}");
    assert_eq!(revisions[0]["last_deployed"], "2026-11-28T10:00:00Z");
    let removed = &revisions[1]["removed"][0];
    assert_eq!((&removed["target"], &removed["declared_again_in"]), (&json!("ledger.team3"), &json!(3)));
    assert!(removed["last_used"].is_string(), "{json:#}");
    assert_eq!(revisions[2]["added"][0]["target"], "ledger.team3");
    assert_eq!(revisions[2]["status"], "deployed");

    // shrink: the deployed revision drops a call still in use.
    let out = helm_history(&cluster, &server, &["shrink"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Helm release team1/shrink: 2 revisions kept\n"), "{text}");
    let line = text.lines().find(|l| l.contains("removed")).unwrap_or_else(|| panic!("no removal: {text}"));
    assert!(
        line.starts_with(
            "  revision 2 (2026-11-29) removed ledger.team3 from transaction-service.team1; transaction-service still \
             called it "
        ) && line.ends_with(": blocked once enforced"),
        "{line}"
    );
    assert_eq!(
        stderr(&out),
        "error: helm history: 1 removed call still in use (blocked once enforced) (--fail-on blocked)\n"
    );
    let out = helm_history(&cluster, &server, &["shrink", "-o", "markdown", "--fail-on", "none"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("| removed | `transaction-service.team1` | `ledger.team3` | **blocked once enforced**")
    );
    let out = helm_history(&cluster, &server, &["broken"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: secret team1/sh.helm.release.v1.broken.v1: data.release is not base64"));
}

/// The helm binary: `MAPPER_HELM` (scripts/lib.sh ensure_helm), else `helm` on PATH.
fn helm() -> Option<String> {
    let candidate = std::env::var("MAPPER_HELM").unwrap_or_else(|_| "helm".to_owned());
    let works = Command::new(&candidate).arg("version").output().is_ok_and(|o| o.status.success());
    works.then_some(candidate)
}

#[test]
fn the_fixture_manifests_are_what_helm_renders() {
    let Some(helm) = helm() else {
        let reason = "no helm (MAPPER_HELM unset and no helm on PATH; scripts/lib.sh ensure_helm installs it)";
        if std::env::var("MAPPER_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("the_fixture_manifests_are_what_helm_renders: {reason} (MAPPER_REQUIRE_BPF=1)");
        }
        eprintln!("SKIPPED the_fixture_manifests_are_what_helm_renders: {reason}");
        return;
    };
    let chart = fixtures().join("payments");
    let render = |set: &[&str]| {
        let out = Command::new(&helm)
            .args(["template", "payments"])
            .arg(&chart)
            .args(["-n", "team1"])
            .args(set)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {helm}: {e}"));
        assert!(out.status.success(), "helm template failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("helm output: {e}"))
    };
    // The same commands as tests/fixtures/helm/render.sh.
    assert_eq!(render(&[]), manifest(1), "revision-1.yaml is stale: run tests/fixtures/helm/render.sh");
    assert_eq!(render(&["--set", "calls={telemetry.team4}"]), manifest(2), "revision-2.yaml is stale");
    assert_eq!(
        render(&["--set", "calls={ledger.team3,telemetry.team4}", "--set", "networkPolicy=true"]),
        manifest(3),
        "revision-3.yaml is stale"
    );
}

/// The records as `kubectl get secrets,configmaps -A -o yaml` prints them, in a file.
fn records_file(dir: &Path) -> String {
    let mut items = Vec::new();
    for (revision, status) in [(1, "superseded"), (2, "deployed")] {
        let text = encode_release(release_json("shrink", revision, status, &manifest(revision)).to_string().as_bytes());
        items.push(secret("shrink", revision, status, &text));
    }
    let plain = base64::engine::general_purpose::STANDARD
        .encode(release_json("legacy", 1, "deployed", &manifest(2)).to_string());
    items.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": record_name("legacy", 1), "namespace": "team1", "labels": labels("legacy", 1, "deployed")},
        "data": {"release": plain}}));
    // The same release name in two namespaces.
    let mut json = release_json("twin", 1, "deployed", "");
    items.push(secret("twin", 1, "deployed", &encode_release(json.to_string().as_bytes())));
    json["namespace"] = json!("team9");
    let mut twin = secret("twin", 1, "deployed", &encode_release(json.to_string().as_bytes()));
    twin["metadata"]["namespace"] = json!("team9");
    items.push(twin);
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let pod = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team1}\n";
    support::write(
        dir,
        "records.yaml",
        &format!("{pod}---\n{}", mapper_intents::yaml::to_yaml_string(&list).expect("yaml")),
    )
}

#[test]
fn release_records_can_come_from_a_file_instead_of_the_cluster() {
    let server = Server::start(None);
    support::seed(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = records_file(dir.path());
    // No cluster at all: a kubeconfig that does not exist would fail any kube access.
    let run = |args: &[&str]| {
        let args = [&["--kubeconfig", "/nonexistent/kubeconfig", "--mapper-url", &server.url], args].concat();
        mapper(&args, None)
    };
    let out = run(&["helm", "history", "shrink", "--release-records", &file]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Helm release team1/shrink: 2 revisions kept\n"), "{text}");
    assert!(text.contains("  revision 2 (2026-11-29) removed ledger.team3 from transaction-service.team1;"), "{text}");
    // The ConfigMap driver's uncompressed record, through audit.
    let out = run(&["audit", "--helm-release", "legacy", "--release-records", &file, "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json_of(&out)["clients"][0]["missing"][0]["target"], "ledger.team3");
    // A release the file does not hold, one in two namespaces, and -n choosing between them.
    let out = run(&["helm", "history", "absent", "--release-records", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: Helm release absent not found in --release-records {file} (no Secret or ConfigMap \
             sh.helm.release.v1.absent.v<N> labelled owner=helm,name=absent)\n"
        )
    );
    let out = run(&["helm", "history", "twin", "--release-records", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        stderr(&out),
        "error: Helm release twin has records in namespaces team1, team9 of --release-records; choose one with -n\n"
    );
    let out = run(&["helm", "history", "twin", "-n", "team9", "--release-records", &file, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_of(&out)["release"]["namespace"], "team9", "{}", stdout(&out));
}
