//! `mapper policy`: the NetworkPolicies of the seed export equal the reference ones (docs/formats.md,
//! "Golden files"), whatever version the intents are in; input errors name the file, the document
//! and the field.

mod support;

use support::{Server, intents_golden, mapper, ok, stderr, write};

/// The labels comment `mapper policy` appends for the seed.
const SEED_LABELS: &str = "\
# Pod labels these policies select on (the intents operator's webhook sets them):
#   ledger in namespace team3:
#     intents.otterize.com/server: ledger-team3-40d1db
#   some-other-transaction-service in namespace team2:
#     intents.otterize.com/access-ledger-team3-40d1db: \"true\"
#   transaction-service in namespace team1:
#     intents.otterize.com/access-ledger-team3-40d1db: \"true\"
";

#[test]
fn policies_of_the_seed_export_match_otterize_md_in_every_version() {
    let server = Server::start(None);
    support::seed(&server);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let expected = format!("{}{SEED_LABELS}", intents_golden("policies_seed_legacy.yaml"));
    for version in ["v1alpha2", "v1alpha3", "v1beta1", "v2alpha1", "v2beta1"] {
        let export = ok(&server.mapper(&["export", "-n", "team1", "-n", "team2", "--output-version", version]));
        let file = write(dir.path(), &format!("{version}.yaml"), &export);
        let text = ok(&mapper(&["policy", "-f", &file], None));
        assert_eq!(text, expected, "policies from {version}");
        // The first policy is Otterize's documented example, byte for byte (docs/formats.md, "Golden files").
        let first = text.split("---\n").next().unwrap_or_default();
        assert_eq!(first, intents_golden("policy_ledger_from_team1.yaml"));
    }
    // JSON, from stdin.
    let json = ok(&server.mapper(&["export", "--format", "json"]));
    assert_eq!(ok(&mapper(&["policy", "-f", "-"], Some(&json))), expected);
    // A directory, in the newer operator layout.
    ok(&server.mapper(&["export", "-o", dir.path().join("out").to_str().unwrap_or_default(), "--output-type", "dir"]));
    let current = ok(&mapper(
        &["policy", "-f", dir.path().join("out").to_str().unwrap_or_default(), "--layout", "current"],
        None,
    ));
    assert!(current.starts_with(&intents_golden("policies_seed_current.yaml")), "{current}");
}

#[test]
fn bad_input_files_name_the_file_document_and_field() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let good = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: a, namespace: n}\n\
                spec:\n  workload: {name: a}\n  targets:\n    - kubernetes: {name: b}\n";
    let cases = [
        (
            "two-kinds.yaml",
            format!("{good}---\napiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {{name: c}}\nspec:\n  workload: {{name: c}}\n  targets:\n    - kubernetes: {{name: b}}\n      service: {{name: b}}\n"),
            "two-kinds.yaml: document 2: spec.targets[0]: both kubernetes and service are set",
        ),
        (
            "version.yaml",
            "apiVersion: k8s.otterize.com/v3\nkind: ClientIntents\nmetadata: {name: a}\nspec: {}\n".to_owned(),
            "version.yaml: document 1: apiVersion: unknown ClientIntents apiVersion `k8s.otterize.com/v3`",
        ),
        (
            "no-name.yaml",
            "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata: {name: a}\nspec:\n  service: {name: a}\n  calls:\n    - {type: http}\n".to_owned(),
            "no-name.yaml: document 1: spec.calls[0].name: missing or empty",
        ),
        ("malformed.yaml", format!("{good}---\nkind: ClientIntents\nmetadata: [\n"), "malformed.yaml: document 2: malformed YAML at line "),
    ];
    for (name, text, expected) in cases {
        let path = write(dir.path(), name, &text);
        let out = mapper(&["policy", "-f", &path], None);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with(&format!("error: {}", path.replace(name, ""))), "{err}");
        assert!(err.contains(expected), "{name}: expected {expected:?} in {err:?}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(support::stdout(&out).is_empty(), "nothing printed on error");
    }
    let missing = dir.path().join("missing.yaml");
    let out = mapper(&["policy", "-f", missing.to_str().unwrap_or_default()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with(&format!("error: cannot read {}: ", missing.display())), "{}", stderr(&out));
}

#[test]
fn intents_without_cluster_targets_give_no_policy() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = write(
        dir.path(),
        "internet.yaml",
        "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: a, namespace: n}\n\
         spec:\n  workload: {name: a}\n  targets:\n    - internet: {domains: [example.com]}\n",
    );
    let out = mapper(&["policy", "-f", &path], None);
    assert_eq!(ok(&out), "");
    assert!(stderr(&out).contains("No NetworkPolicies"), "{}", stderr(&out));
}

/// `otterize mapper export --format json` writes a bare array: read as the List it stands for.
#[test]
fn otterize_clis_json_export_is_read() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otterize/export.json");
    let text = ok(&mapper(&["policy", "-f", fixture], None));
    assert_eq!(text, format!("{}{SEED_LABELS}", intents_golden("policies_seed_legacy.yaml")));
}

const REPORTS_CLIENT: &str = "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\n\
    metadata: {name: api, namespace: team1}\nspec:\n  service: {name: api}\n  calls:\n    - name: svc:reports\n";

const REPORTS_SERVICE: &str = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  \
    metadata: {name: reports, namespace: team1, uid: 5e1f0c3a-0000-0000-0000-000000000001}\n  spec:\n    \
    selector: {app: reports, tier: web}\n    ports:\n    - {name: http, port: 80, targetPort: 8080, protocol: TCP}\n";

#[test]
fn a_service_target_is_resolved_through_the_inventorys_service() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let intents = write(dir.path(), "intents.yaml", REPORTS_CLIENT);
    let inventory = write(dir.path(), "services.yaml", REPORTS_SERVICE);
    let out = mapper(&["policy", "-f", &intents, "--layout", "current", "--inventory", &inventory], None);
    let expected = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: reports-service-access
  namespace: team1
  labels:
    intents.otterize.com/network-policy: reports-team1-servi-09cf50
  ownerReferences:
    - apiVersion: v1
      kind: Service
      name: reports
      uid: 5e1f0c3a-0000-0000-0000-000000000001
spec:
  podSelector:
    matchLabels:
      app: reports
      tier: web
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: team1
          podSelector:
            matchLabels:
              intents.otterize.com/svc-access-reports-team1-servi-09cf50: \"true\"
      ports:
        - port: 8080
          protocol: TCP
  policyTypes:
    - Ingress
# Pod labels these policies select on (the intents operator's webhook sets them):
#   api in namespace team1:
#     intents.otterize.com/svc-access-reports-team1-servi-09cf50: \"true\"
";
    assert_eq!(ok(&out), expected);
    let legacy = ok(&mapper(&["policy", "-f", &intents, "--inventory", &inventory], None));
    assert!(legacy.starts_with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: svc-access-to-reports-from-team1\n"), "{legacy}");
    assert!(legacy.contains("    intents.otterize.com/svc-network-policy: reports-team1-8ff684\n"), "{legacy}");

    // Without the Services: no policy, and a warning saying why and what to give.
    let out = mapper(&["policy", "-f", &intents], None);
    assert_eq!(ok(&out), "");
    assert!(
        stderr(&out).contains(
            "warning: Service team1/reports: its policy cannot be shown exactly without the Service (the operator \
             selects the pods with its selector and allows its targetPorts): read the Services with --inventory FILE \
             or --cluster"
        ),
        "{}",
        stderr(&out)
    );
    // A Service the inventory does not hold: the operator builds none.
    let other = write(dir.path(), "other.yaml", &REPORTS_SERVICE.replace("name: reports", "name: other"));
    let out = mapper(&["policy", "-f", &intents, "--inventory", &other], None);
    assert_eq!(ok(&out), "");
    assert!(stderr(&out).contains("warning: Service team1/reports is not in the cluster"), "{}", stderr(&out));
}

#[test]
fn names_the_api_server_refuses_are_an_error_naming_the_intents() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = write(
        dir.path(),
        "upper.yaml",
        "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: a, namespace: team1}\n\
         spec:\n  workload: {name: a}\n  targets:\n    - kubernetes: {name: Ledger}\n",
    );
    for layout in ["legacy", "current"] {
        let out = mapper(&["policy", "-f", &path, "--layout", layout], None);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(
                "\nerror: the operator could not create these NetworkPolicies: ClientIntents of a in namespace team1 \
                 (target Ledger): the operator's NetworkPolicy team1/"
            ),
            "{err}"
        );
        assert!(err.contains("which the API server refuses: it holds 'L'"), "{err}");
        assert!(support::stdout(&out).is_empty());
    }
}

#[test]
fn the_api_server_and_dns_servers_as_the_operator_builds_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = write(
        dir.path(),
        "op.yaml",
        "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: op, namespace: default}\n\
         spec:\n  workload: {name: op}\n  targets:\n    - service: {name: kubernetes}\n    \
         - kubernetes: {name: coredns.kube-system, kind: Deployment}\n",
    );
    let current = ok(&mapper(&["policy", "-f", &path, "--layout", "current"], None));
    assert!(
        current.starts_with(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: coredns-deployment-access\n"
        ),
        "{current}"
    );
    assert_eq!(current.matches("kind: NetworkPolicy").count(), 1, "no policy for the API server: {current}");
    assert!(
        current.contains(
            "    - ports:\n        - port: 53\n          protocol: UDP\n        - port: 53\n          protocol: TCP\n"
        ),
        "{current}"
    );
    let out = mapper(&["policy", "-f", &path], None);
    assert!(!ok(&out).contains("port: 53"));
    assert!(
        stderr(&out).contains("warning: kube-system/coredns is a DNS server: the legacy operator's policy"),
        "{}",
        stderr(&out)
    );
}

/// `--cluster` lists the Services of the namespaces the Service targets name through the
/// kubeconfig, and gives the same policy as the inventory; an unreachable API is one clear line.
#[test]
fn the_services_can_come_from_the_cluster() {
    use mapper_cluster::fake_api::FakeApi;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let api = runtime.block_on(FakeApi::start());
    api.collection("/api/v1/namespaces/team1/services", "v1", "ServiceList");
    api.apply(
        "/api/v1/namespaces/team1/services",
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reports", "namespace": "team1", "uid": "5e1f0c3a-0000-0000-0000-000000000001"},
            "spec": {"selector": {"app": "reports", "tier": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let kubeconfig = |addr: &str| {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster: {{server: \
             \"http://{addr}\"}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\nusers:\n- name: \
             fake\n  user: {{token: abc}}\n"
        )
    };
    let config = write(dir.path(), "kubeconfig", &kubeconfig(&api.addr.to_string()));
    let intents = write(dir.path(), "intents.yaml", REPORTS_CLIENT);
    let inventory = write(dir.path(), "services.yaml", REPORTS_SERVICE);
    let from_cluster =
        ok(&mapper(&["--kubeconfig", &config, "policy", "-f", &intents, "--layout", "current", "--cluster"], None));
    let from_files = ok(&mapper(&["policy", "-f", &intents, "--layout", "current", "--inventory", &inventory], None));
    assert_eq!(from_cluster, from_files);
    assert!(from_cluster.contains("name: reports-service-access"), "{from_cluster}");
    assert_eq!(api.requests("/api/v1/namespaces/team1/services"), 1, "one listing, of the target's namespace");

    let down = write(dir.path(), "down", &kubeconfig("127.0.0.1:9"));
    let out = mapper(&["--kubeconfig", &down, "policy", "-f", &intents, "--cluster"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "error: cannot read the Services from the cluster: listing Services in namespace team1 (connection refused)"
        ),
        "{}",
        stderr(&out)
    );
}
