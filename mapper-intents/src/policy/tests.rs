use super::*;
use crate::model::OtherTarget;

fn doc(name: &str, namespace: Option<&str>, kind: Option<&str>, targets: Vec<Target>) -> ClientIntentsDoc {
    ClientIntentsDoc {
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        client_name: name.to_owned(),
        client_kind: kind.map(str::to_owned),
        targets,
    }
}

fn seed() -> Vec<ClientIntentsDoc> {
    let ledger = || vec![Target::workload("ledger", Some("team3"), Some("Deployment"))];
    vec![
        doc("some-other-transaction-service", Some("team2"), Some("Deployment"), ledger()),
        doc("transaction-service", Some("team1"), Some("Deployment"), ledger()),
    ]
}

fn label(name: &str, ns: &str, kind: Option<&str>, role: LabelRole, key: &str, value: &str) -> PodLabel {
    let workload = Workload::with_kind(name, ns, kind);
    PodLabel { workload, role, key: key.to_owned(), value: value.to_owned() }
}

// Identities computed independently:
//   python3 -c 'import hashlib; print(hashlib.md5(b"ledger-team3").hexdigest()[:6])'             → 40d1db
//   python3 -c 'import hashlib; print(hashlib.md5(b"ledger-team3-Deployment").hexdigest()[:6])'  → fd1e86
//   python3 -c 'import hashlib; print(hashlib.md5(b"kafka-kafka-ns").hexdigest()[:6])'           → c910b0
#[test]
fn legacy_layout_one_policy_per_server_and_client_namespace() {
    let set = network_policies(&seed(), &PolicyOptions::default());
    let names: Vec<(&str, &str)> = set.policies.iter().map(|p| (p.namespace.as_str(), p.name.as_str())).collect();
    assert_eq!(names, [("team3", "access-to-ledger-from-team1"), ("team3", "access-to-ledger-from-team2")]);
    let access = "intents.otterize.com/access-ledger-team3-40d1db";
    assert_eq!(
        set.pod_labels,
        [
            label("ledger", "team3", None, LabelRole::Server, SERVER_LABEL, "ledger-team3-40d1db"),
            label("some-other-transaction-service", "team2", Some("Deployment"), LabelRole::Client, access, "true"),
            label("transaction-service", "team1", Some("Deployment"), LabelRole::Client, access, "true"),
        ]
    );
}

#[test]
fn current_layout_one_policy_per_server_with_a_rule_per_namespace() {
    let opts = PolicyOptions { layout: PolicyLayout::Current, ..PolicyOptions::default() };
    let set = network_policies(&seed(), &opts);
    assert_eq!(set.policies.len(), 1);
    let policy = &set.policies[0];
    assert_eq!((policy.name.as_str(), policy.namespace.as_str()), ("ledger-deployment-access", "team3"));
    assert_eq!(policy.labels.get(NETWORK_POLICY_LABEL).map(String::as_str), Some("ledger-team3-deplo-fd1e86"));
    let namespaces: Vec<&str> =
        policy.ingress.iter().filter_map(|r| r.namespace_labels.get(K8S_NAMESPACE_LABEL)).map(String::as_str).collect();
    assert_eq!(namespaces, ["team1", "team2"]);
    let by_workload = labels_by_workload(&set.pod_labels);
    let ledger = &by_workload[&Workload::new("ledger", "team3", "Deployment")];
    assert_eq!(ledger.get(SERVICE_LABEL).map(String::as_str), Some("ledger-team3-40d1db"));
    assert_eq!(ledger.get(OWNER_KIND_LABEL).map(String::as_str), Some("Deployment"));
    let client = &by_workload[&Workload::new("transaction-service", "team1", "Deployment")];
    assert_eq!(client.get("intents.otterize.com/access-ledger-team3-deplo-fd1e86").map(String::as_str), Some("true"));
}

#[test]
fn services_and_kafka_get_policies_but_not_the_api_server_internet_or_cloud() {
    let kafka = Target::Other(OtherTarget {
        kind: OtherKind::Kafka,
        body: serde_yaml::from_str("name: kafka.kafka-ns\ntopics: []\n").unwrap_or_else(|e| panic!("{e}")),
    });
    let aws = Target::Other(OtherTarget {
        kind: OtherKind::Aws,
        body: serde_yaml::from_str("arn: arn:aws:s3:::b\n").unwrap_or_else(|e| panic!("{e}")),
    });
    let targets = vec![
        Target::service("legacy-db", None),
        kafka,
        aws,
        Target::ApiServer,
        Target::Internet(crate::model::Internet::default()),
    ];
    let set = network_policies(&[doc("c", Some("team1"), None, targets)], &PolicyOptions::default());
    let names: Vec<(&str, &str)> = set.policies.iter().map(|p| (p.namespace.as_str(), p.name.as_str())).collect();
    assert_eq!(names, [("kafka-ns", "access-to-kafka-from-team1"), ("team1", "access-to-legacy-db-from-team1")]);
    assert_eq!(set.policies[0].pod_selector.get(SERVER_LABEL).map(String::as_str), Some("kafka-kafka-ns-c910b0"));
}

#[test]
fn documents_without_namespace_use_the_default_namespace() {
    let docs = [doc("c", None, None, vec![Target::workload("s", None, None)])];
    let opts = PolicyOptions { default_namespace: "shop".to_owned(), ..PolicyOptions::default() };
    let set = network_policies(&docs, &opts);
    assert_eq!((set.policies[0].namespace.as_str(), set.policies[0].name.as_str()), ("shop", "access-to-s-from-shop"));
}

#[test]
fn legacy_layout_merges_servers_that_differ_only_in_kind() {
    let docs = [doc(
        "c",
        Some("team1"),
        None,
        vec![Target::workload("s", None, Some("Deployment")), Target::workload("s", None, Some("StatefulSet"))],
    )];
    assert_eq!(network_policies(&docs, &PolicyOptions::default()).policies.len(), 1);
    let opts = PolicyOptions { layout: PolicyLayout::Current, ..PolicyOptions::default() };
    let names: Vec<String> = network_policies(&docs, &opts).policies.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["s-deployment-access", "s-statefulset-access"]);
}

#[test]
fn rendered_policy_reads_back_as_the_same_tree() {
    let set = network_policies(&seed(), &PolicyOptions::default());
    let text = render_policies_yaml(&set.policies);
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}")))
        .collect();
    let expected: Vec<Value> = set.policies.iter().map(NetworkPolicy::to_value).collect();
    assert_eq!(docs, expected);
}
