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
