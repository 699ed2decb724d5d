use super::*;
use crate::model::{Internet, Target};

fn parse_ok(text: &str) -> Vec<ClientIntentsDoc> {
    parse_documents(text, "test.yaml").unwrap_or_else(|e| panic!("parse failed: {e}\n{text}"))
}

fn parse_err(text: &str, source: &str) -> ParseError {
    match parse_documents(text, source) {
        Ok(docs) => panic!("expected an error, parsed {docs:?} from\n{text}"),
        Err(e) => e,
    }
}

const HELM_TEMPLATE: &str = r#"---
# Source: shop/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
spec:
  replicas: 1
---
# Source: shop/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: checkout
---
# Source: shop/templates/intents.yaml
apiVersion: k8s.otterize.com/v2beta1
kind: ClientIntents
metadata:
  name: checkout
  labels:
    app.kubernetes.io/managed-by: Helm
spec:
  workload:
    name: checkout
    kind: Deployment
  targets:
    - kubernetes:
        name: ledger.team3
        kind: StatefulSet
    - service:
        name: kubernetes.default
    - internet:
        domains: [api.stripe.com]
        ports: [443]
---
# Source: shop/templates/intents-old.yaml
apiVersion: k8s.otterize.com/v1alpha2
kind: ClientIntents
metadata:
  name: old
  namespace: shop
spec:
  service:
    name: old
  calls:
    - name: svc:search
    - name: ledger.team3
      type: http
      resources:
        - path: /tx
          methods: [GET]
"#;

#[test]
fn helm_output_keeps_only_client_intents_of_any_version() {
    let docs = parse_ok(HELM_TEMPLATE);
    assert_eq!(docs.len(), 2, "Deployment and Service are skipped");
    assert_eq!(docs[0].name, "checkout");
    assert_eq!(docs[0].namespace, None, "namespace left to kubectl -n");
    assert_eq!(docs[0].client_kind.as_deref(), Some("Deployment"));
    assert_eq!(
        docs[0].targets,
        [
            Target::workload("ledger", Some("team3"), Some("StatefulSet")),
            Target::ApiServer,
            Target::Internet(Internet {
                domains: vec!["api.stripe.com".to_owned()],
                ips: Vec::new(),
                ports: vec![443]
            }),
        ]
    );
    assert_eq!(docs[1].targets[0], Target::service("search", None));
    let Target::Workload(ledger) = &docs[1].targets[1] else { panic!("expected a workload: {:?}", docs[1].targets[1]) };
    assert_eq!(
        (ledger.http[0].path.as_str(), ledger.http[0].methods.as_slice()),
        ("/tx", ["GET".to_owned()].as_slice())
    );
}

#[test]
fn lists_and_json_are_read_item_by_item() {
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        {"apiVersion": "k8s.otterize.com/v1beta1", "kind": "ClientIntents",
         "metadata": {"name": "a", "namespace": "team1"},
         "spec": {"service": {"name": "a", "kind": "Deployment"},
                  "calls": [{"name": "b", "kind": "Deployment"}, {"type": "internet", "internet": {"ips": ["10.0.0.1"]}}]}}
    ]}"#;
    let docs = parse_ok(json);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].targets[0], Target::workload("b", None, Some("Deployment")));
    let found = parse_versioned(json, "list.json").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((found[0].document, found[0].path_prefix.as_str()), (1, "items[1]."));
    assert_eq!(found[0].object.version(), IntentsVersion::V1Beta1);
}

/// `otterize mapper export --format json` prints a bare JSON array of ClientIntents, with the
/// empty `creationTimestamp` and `status` Go's encoder writes.
#[test]
fn a_bare_array_as_otterize_cli_writes_it_is_read_item_by_item() {
    let json = include_str!("../../../cli/tests/fixtures/otterize/export.json");
    let docs = parse_ok(json);
    let names: Vec<(&str, Option<&str>)> = docs.iter().map(|d| (d.name.as_str(), d.namespace.as_deref())).collect();
    assert_eq!(names, [("transaction-service", Some("team1")), ("some-other-transaction-service", Some("team2"))]);
    assert_eq!(docs[0].targets, [Target::workload("ledger", Some("team3"), Some("Deployment")), Target::ApiServer]);
    let found = parse_versioned(json, "export.json").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((found[1].document, found[1].path_prefix.as_str()), (1, "[1]."));
    // An error inside names the item.
    let bad = r#"[{"apiVersion": "k8s.otterize.com/v2beta1", "kind": "ClientIntents", "metadata": {"name": "a"},
                  "spec": {"workload": {"name": "a"}, "targets": [{}]}}]"#;
    let err = parse_err(bad, "bad.json").to_string();
    assert!(err.contains("[0].spec.targets[0]"), "{err}");
    // A sequence is read only as a whole document: inside a List it is still wrong.
    let nested = r#"{"kind": "List", "items": [[]]}"#;
    assert!(parse_err(nested, "nested.json").to_string().contains("items[0]"));
}

#[test]
fn empty_and_comment_only_input_gives_nothing() {
    assert!(parse_ok("").is_empty());
    assert!(parse_ok("# nothing here\n---\n---\n").is_empty());
}

#[test]
fn two_kinds_in_a_target_names_source_document_and_target() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: k8s.otterize.com/v2alpha1\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  workload: {name: c}\n  targets:\n    - kubernetes: {name: a}\n    - kubernetes: {name: a}\n      service: {name: a}\n";
    let err = parse_err(text, "charts/x.yaml");
    assert_eq!(err.to_string(), "charts/x.yaml: document 2: spec.targets[1]: both kubernetes and service are set");
    assert!(
        matches!(&err, ParseError::Invalid { document: 2, path, problem: Problem::TwoKinds { .. }, .. } if path == "spec.targets[1]")
    );
}

#[test]
fn unknown_version_of_client_intents_is_an_error() {
    let err = parse_err("apiVersion: k8s.otterize.com/v3\nkind: ClientIntents\nmetadata: {name: c}\n", "a.yaml");
    assert_eq!(
        err.to_string(),
        "a.yaml: document 1: apiVersion: unknown ClientIntents apiVersion `k8s.otterize.com/v3` (expected k8s.otterize.com/ followed by v1alpha2, v1alpha3, v1beta1, v2alpha1 or v2beta1)"
    );
}

#[test]
fn missing_names_are_errors_at_their_field() {
    let cases = [
        (
            "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nspec:\n  service: {name: c}\n",
            "metadata.name: missing or empty",
        ),
        (
            "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  calls: []\n",
            "spec.service.name: missing or empty",
        ),
        (
            "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  service: {name: c}\n  calls:\n    - kind: Deployment\n",
            "spec.calls[0].name: missing or empty",
        ),
        (
            "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  workload: {name: c}\n  targets:\n    - service: {}\n",
            "spec.targets[0].service.name: missing or empty",
        ),
        (
            "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  workload: {name: c}\n  targets:\n    - kubernetes: {name: ''}\n",
            "spec.targets[0].kubernetes.name: missing or empty",
        ),
        (
            "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  workload: {name: c}\n  targets:\n    - kubernetes: {name: ledger.}\n",
            "spec.targets[0].kubernetes.name: missing or empty",
        ),
    ];
    for (text, expected) in cases {
        let message = parse_err(text, "m.yaml").to_string();
        assert_eq!(message, format!("m.yaml: document 1: {expected}"), "input:\n{text}");
    }
}

#[test]
fn structure_errors_name_the_place() {
    let cases = [
        (
            "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  workload: {name: c}\n  target: []\n",
            "spec: unknown field `target`",
        ),
        (
            "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  workload: {name: c}\n  targets: {}\n",
            "spec.targets: expected a sequence, found a mapping",
        ),
        (
            "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  workload: {name: c}\n  targets:\n    - kubernetes: {name: a}\n    - {}\n",
            "spec.targets[1]: none of kubernetes",
        ),
        (
            "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  workload: {name: c}\n  targets:\n    - kubernetes: {nme: a}\n",
            "spec.targets[0].kubernetes: does not match the schema: unknown field `nme`, expected one of `name`, `kind`, `http`",
        ),
        (
            "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  service: {name: c}\n  calls:\n    - type: internet\n      internet: {ports: [70000]}\n",
            "spec.calls[0].internet: does not match the schema: invalid value: integer `70000`, expected u16",
        ),
        (
            "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  service: {name: c}\n  calls:\n    - name: x\n      type: smtp\n",
            "spec.calls[0].type: does not match the schema: unknown variant `smtp`",
        ),
        (
            "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata: {name: c}\nspec: [1]\n",
            "spec: expected a mapping, found a sequence",
        ),
        (
            "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata: {name: c}\nextra: 1\n",
            "unknown field `extra`",
        ),
        ("apiVersion: 3\nkind: ClientIntents\n", "apiVersion: expected a string, found a number"),
        (
            "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata: {name: c}\nspec:\n  service: {name: c}\n  calls:\n    - name: x\n      nmae: y\n",
            "spec.calls[0]: does not match the schema: unknown field `nmae`",
        ),
        (
            "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata: {name: [c]}\n",
            "metadata.name: does not match the schema: invalid type: sequence, expected a string",
        ),
        (
            "kind: List\nitems:\n  - apiVersion: k8s.otterize.com/v2beta1\n    kind: ClientIntents\n    metadata: {name: c}\n    spec: {workload: {}}\n",
            "items[0].spec.workload.name: missing or empty",
        ),
        ("kind: List\nitems:\n  - 3\n", "items[0]: expected a mapping, found a number"),
        ("just a string\n", "expected a mapping, found a string"),
    ];
    for (text, expected) in cases {
        let message = parse_err(text, "s.yaml").to_string();
        let expected = format!("s.yaml: document 1: {expected}");
        assert!(message.starts_with(&expected), "expected {expected:?}\n     got {message:?}\ninput:\n{text}");
    }
}

#[test]
fn malformed_yaml_names_the_document_and_position() {
    let text = "apiVersion: v1\nkind: Service\n---\napiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: [c\n";
    let err = parse_err(text, "bad.yaml");
    let ParseError::MalformedYaml { document, line, .. } = &err else { panic!("expected MalformedYaml, got {err:?}") };
    assert_eq!(*document, 2, "the error is in the second document: {err}");
    assert!(line.is_some_and(|l| l >= 6), "line points into the second document: {err}");
    let message = err.to_string();
    assert!(message.starts_with("bad.yaml: document 2: malformed YAML at line "), "message: {message}");
    assert!(std::error::Error::source(&err).is_some(), "the parser's error is kept as the source");
}

#[test]
fn duplicate_keys_are_malformed() {
    let err = parse_err("kind: ClientIntents\nkind: ClientIntents\n", "dup.yaml");
    assert!(matches!(err, ParseError::MalformedYaml { document: 1, .. }), "got {err:?}");
}

const ONE_INTENT: &str = "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata: {name: a}\n\
                          spec: {service: {name: a}, calls: [{name: b}]}\n";

#[test]
fn a_byte_order_mark_is_accepted() {
    let docs = read_documents(&format!("\u{feff}{ONE_INTENT}"), "bom.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((docs.docs.len(), docs.docs[0].document), (1, 1));
    let json = "\u{feff}{\"apiVersion\": \"k8s.otterize.com/v2beta1\", \"kind\": \"ClientIntents\", \
                \"metadata\": {\"name\": \"a\"}, \"spec\": {\"workload\": {\"name\": \"a\"}}}";
    assert_eq!(parse_ok(json).len(), 1);
}

#[test]
fn deep_nesting_is_an_error_naming_the_place() {
    let text = format!("{ONE_INTENT}---\nkind: ConfigMap\ndata:\n  x: {}\n", "[".repeat(200_000));
    let err = parse_err(&text, "deep.yaml");
    assert_eq!(err.to_string(), "deep.yaml: document 2: nested deeper than 128 levels at line 8, column 132");
    let json = "{\"a\":".repeat(100_000);
    let err = parse_err(&json, "deep.json");
    assert_eq!(err.to_string(), "deep.json: document 1: nested deeper than 128 levels at line 1, column 641");
    // Within the limit nothing changes.
    let ok = format!("{ONE_INTENT}---\nkind: ConfigMap\ndata: {}{}\n", "[".repeat(100), "]".repeat(100));
    assert_eq!(parse_ok(&ok).len(), 1);
}

#[test]
fn look_alike_kinds_are_reported_not_read() {
    let typo = |kind: &str, api: &str| {
        let text = format!(
            "apiVersion: v1\nkind: Service\n---\n{ONE_INTENT}---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: x}}\n"
        );
        read_documents(&text, "chart.yaml").unwrap_or_else(|e| panic!("{e}"))
    };
    for kind in ["ClientIntent", "clientintents", "ClientIntentss", "ClinetIntents", "ClientIntentList"] {
        let read = typo(kind, "k8s.otterize.com/v1alpha2");
        assert_eq!(read.docs.len(), 1, "{kind}");
        assert_eq!(read.skipped.len(), 1, "{kind}");
        assert_eq!(
            read.skipped[0].message("chart.yaml"),
            format!(
                "chart.yaml: document 3: kind `{kind}` (apiVersion `k8s.otterize.com/v1alpha2`) is not ClientIntents; \
                 skipped (the kind must be exactly `ClientIntents`)"
            )
        );
        // Any apiVersion: the kind alone is suspicious.
        assert_eq!(typo(kind, "v1").skipped.len(), 1, "{kind}");
    }
    // An unknown kind of the Otterize group is reported; the others it serves are not.
    assert_eq!(typo("Intents", "k8s.otterize.com/v2beta1").skipped[0].kind, "Intents");
    assert!(typo("ProtectedService", "k8s.otterize.com/v2beta1").skipped.is_empty());
    assert!(typo("Client", "v1").skipped.is_empty());
    assert!(typo("Deployment", "apps/v1").skipped.is_empty());
    // Inside a List, the item is named.
    let list =
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod}\n- {apiVersion: x/v1, kind: ClientIntent}\n";
    let read = read_documents(list, "list.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(read.skipped[0].message("list.yaml").starts_with("list.yaml: document 1: items[1]: kind `ClientIntent`"));
}

#[test]
fn a_client_intents_kind_with_an_unknown_api_version_is_an_error() {
    let err = parse_err("apiVersion: k8s.otterize.com/v3\nkind: ClientIntents\nmetadata: {name: a}\n", "x.yaml");
    assert!(
        err.to_string()
            .starts_with("x.yaml: document 1: apiVersion: unknown ClientIntents apiVersion `k8s.otterize.com/v3`"),
        "{err}"
    );
}

#[test]
fn edit_distance_counts_edits_ignoring_case() {
    assert!(edit_distance_at_most("clientintents", "ClientIntents", 0));
    assert!(edit_distance_at_most("ClientIntent", "ClientIntents", 1));
    assert!(edit_distance_at_most("ClinetIntents", "ClientIntents", 2));
    assert!(!edit_distance_at_most("ClinetIntent", "ClientIntents", 2));
    assert!(!edit_distance_at_most("", "ClientIntents", 2));
    assert!(!edit_distance_at_most(&"x".repeat(100_000), "ClientIntents", 2));
}
