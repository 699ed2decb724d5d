use super::*;
use crate::model::OtherTarget;
use crate::policy::service::SVC_NETWORK_POLICY_LABEL;

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
    let namespaces: Vec<&str> = policy
        .ingress
        .iter()
        .filter_map(|r| r.from[0].namespace_labels.get(K8S_NAMESPACE_LABEL))
        .map(String::as_str)
        .collect();
    assert_eq!(namespaces, ["team1", "team2"]);
    let by_workload = labels_by_workload(&set.pod_labels);
    let ledger = &by_workload[&Workload::new("ledger", "team3", "Deployment")];
    assert_eq!(ledger.get(SERVICE_LABEL).map(String::as_str), Some("ledger-team3-40d1db"));
    assert_eq!(ledger.get(OWNER_KIND_LABEL).map(String::as_str), Some("Deployment"));
    let client = &by_workload[&Workload::new("transaction-service", "team1", "Deployment")];
    assert_eq!(client.get("intents.otterize.com/access-ledger-team3-deplo-fd1e86").map(String::as_str), Some("true"));
}

#[test]
fn kafka_gets_a_policy_but_not_the_api_server_internet_or_cloud() {
    let kafka = Target::Other(OtherTarget {
        kind: OtherKind::Kafka,
        body: crate::stream::from_str("name: kafka.kafka-ns\ntopics: []\n").unwrap_or_else(|e| panic!("{e}")),
    });
    let aws = Target::Other(OtherTarget {
        kind: OtherKind::Aws,
        body: crate::stream::from_str("arn: arn:aws:s3:::b\n").unwrap_or_else(|e| panic!("{e}")),
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
    assert_eq!(names, [("kafka-ns", "access-to-kafka-from-team1")]);
    assert_eq!(set.policies[0].pod_selector.get(SERVER_LABEL).map(String::as_str), Some("kafka-kafka-ns-c910b0"));
    // Without the Services, a Service target's policy cannot be shown: a note says so.
    assert_eq!(set.notes, [PolicyNote::ServiceUnknown { namespace: "team1".to_owned(), name: "legacy-db".to_owned() }]);
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
    let text = render_policies_yaml(&set.policies).unwrap_or_else(|e| panic!("{e}"));
    let docs: Vec<serde_json::Value> = crate::stream::documents(&text)
        .map(|d| d.map(|(_, value)| value).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}")))
        .collect();
    let expected: Vec<serde_json::Value> =
        set.policies.iter().map(|p| serde_json::to_value(p.object()).expect("a policy serializes")).collect();
    assert_eq!(docs, expected);
}

fn reports_service() -> ClusterService {
    ClusterService {
        name: "reports".to_owned(),
        namespace: "team1".to_owned(),
        uid: Some("u-reports".to_owned()),
        selector: Some(BTreeMap::from([("app".to_owned(), "reports".to_owned())])),
        ports: vec![
            ServicePort { port: 80, target_port: Some(PortValue::Number(8080)), protocol: Some("TCP".to_owned()) },
            ServicePort {
                port: 9090,
                target_port: Some(PortValue::Name("metrics".to_owned())),
                protocol: Some("TCP".to_owned()),
            },
        ],
    }
}

fn services(list: Vec<ClusterService>) -> Option<BTreeMap<(String, String), ClusterService>> {
    Some(list.into_iter().map(|s| ((s.namespace.clone(), s.name.clone()), s)).collect())
}

fn service_clients() -> Vec<ClientIntentsDoc> {
    vec![
        doc("api", Some("team1"), Some("Deployment"), vec![Target::service("reports", None)]),
        doc("web", Some("team2"), Some("Deployment"), vec![Target::service("reports", Some("team1"))]),
    ]
}

// Identities computed independently:
//   python3 -c 'import hashlib; print(hashlib.md5(b"reports-team1-Service").hexdigest()[:6])'  → 09cf50
//   python3 -c 'import hashlib; print(hashlib.md5(b"reports-team1").hexdigest()[:6])'          → 8ff684
#[test]
fn a_service_target_is_selected_by_the_services_selector_on_its_target_ports() {
    let opts = PolicyOptions {
        layout: PolicyLayout::Current,
        services: services(vec![reports_service()]),
        ..Default::default()
    };
    let set = network_policies(&service_clients(), &opts);
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
      uid: u-reports
spec:
  podSelector:
    matchLabels:
      app: reports
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
        - port: metrics
          protocol: TCP
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: team2
          podSelector:
            matchLabels:
              intents.otterize.com/svc-access-reports-team1-servi-09cf50: \"true\"
      ports:
        - port: 8080
          protocol: TCP
        - port: metrics
          protocol: TCP
  policyTypes:
    - Ingress
";
    assert_eq!(render_policies_yaml(&set.policies).unwrap_or_else(|e| panic!("{e}")), expected);
    let access = "intents.otterize.com/svc-access-reports-team1-servi-09cf50";
    assert_eq!(
        set.pod_labels,
        [
            label("api", "team1", Some("Deployment"), LabelRole::Client, access, "true"),
            label("web", "team2", Some("Deployment"), LabelRole::Client, access, "true"),
        ],
        "the server's pods need no label: the Service's selector picks them"
    );
    assert_eq!(set.notes, []);
    assert_eq!(set.problems, []);
}

#[test]
fn the_legacy_layout_gives_a_service_one_policy_per_client_namespace_with_numeric_ports() {
    let opts = PolicyOptions { services: services(vec![reports_service()]), ..Default::default() };
    let set = network_policies(&service_clients(), &opts);
    let names: Vec<&str> = set.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["svc-access-to-reports-from-team1", "svc-access-to-reports-from-team2"]);
    let policy = &set.policies[1];
    assert_eq!(
        policy.labels,
        BTreeMap::from([(SVC_NETWORK_POLICY_LABEL.to_owned(), "reports-team1-8ff684".to_owned())])
    );
    let rule = &policy.ingress[0];
    assert_eq!(rule.ports, [PolicyPort { port: PortValue::Number(8080), protocol: Some("TCP".to_owned()) }]);
    assert_eq!(rule.from[0].namespace_labels.get(K8S_NAMESPACE_LABEL).map(String::as_str), Some("team2"));
    assert_eq!(
        rule.from[0].pod_labels,
        BTreeMap::from([("intents.otterize.com/svc-access-reports-team1-8ff684".to_owned(), "true".to_owned())])
    );
    assert_eq!(policy.owner.as_ref().map(|o| o.uid.as_str()), Some("u-reports"));
    assert_eq!(
        set.notes,
        [PolicyNote::NamedTargetPortSkipped {
            namespace: "team1".to_owned(),
            name: "reports".to_owned(),
            port: "metrics".to_owned()
        }]
    );
}

#[test]
fn a_missing_service_or_one_without_selector_gets_no_policy_and_a_note() {
    let bare = ClusterService { selector: None, uid: None, ..reports_service() };
    for layout in [PolicyLayout::Legacy, PolicyLayout::Current] {
        let opts = PolicyOptions { layout, services: services(vec![bare.clone()]), ..Default::default() };
        let set = network_policies(&service_clients(), &opts);
        assert_eq!(set.policies, [], "{layout:?}");
        let note = PolicyNote::ServiceWithoutSelector { namespace: "team1".to_owned(), name: "reports".to_owned() };
        assert_eq!(set.notes, [note], "{layout:?}");
        let opts = PolicyOptions { layout, services: services(Vec::new()), ..Default::default() };
        let set = network_policies(&service_clients(), &opts);
        assert_eq!(set.policies, []);
        let note = PolicyNote::ServiceNotFound { namespace: "team1".to_owned(), name: "reports".to_owned() };
        assert!(note.to_string().contains("is not in the cluster"), "{note}");
        assert_eq!(set.notes, [note]);
    }
    // Without a uid the ownerReference is left out, and said so.
    let no_uid = ClusterService { uid: None, ..reports_service() };
    let opts = PolicyOptions { layout: PolicyLayout::Current, services: services(vec![no_uid]), ..Default::default() };
    let set = network_policies(&service_clients(), &opts);
    assert_eq!(set.policies[0].owner, None);
    assert_eq!(
        set.notes,
        [PolicyNote::ServiceWithoutUid { namespace: "team1".to_owned(), name: "reports".to_owned() }]
    );
}

// python3 -c 'import hashlib; print(hashlib.md5(b"kube-dns-kube-system-Service").hexdigest()[:6])'   → eadb51
// python3 -c 'import hashlib; print(hashlib.md5(b"coredns-kube-system-Deployment").hexdigest()[:6])' → 540852
#[test]
fn dns_servers_get_the_operators_rule_for_port_53_from_anywhere() {
    let kube_dns = ClusterService {
        name: "kube-dns".to_owned(),
        namespace: "kube-system".to_owned(),
        uid: Some("u-dns".to_owned()),
        selector: Some(BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())])),
        ports: vec![
            ServicePort { port: 53, target_port: Some(PortValue::Number(53)), protocol: Some("UDP".to_owned()) },
            ServicePort { port: 53, target_port: None, protocol: Some("TCP".to_owned()) },
        ],
    };
    let docs = [doc(
        "api",
        Some("team1"),
        Some("Deployment"),
        vec![
            Target::service("kube-dns", Some("kube-system")),
            Target::workload("coredns", Some("kube-system"), Some("Deployment")),
        ],
    )];
    let opts =
        PolicyOptions { layout: PolicyLayout::Current, services: services(vec![kube_dns]), ..Default::default() };
    let set = network_policies(&docs, &opts);
    let names: Vec<&str> = set.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["coredns-deployment-access", "kube-dns-service-access"]);
    let dns = |protocol: &str| PolicyPort { port: PortValue::Number(53), protocol: Some(protocol.to_owned()) };
    let anywhere = IngressRule { from: Vec::new(), ports: vec![dns("UDP"), dns("TCP")] };
    for policy in &set.policies {
        assert_eq!(policy.ingress.len(), 2, "{}", policy.name);
        assert_eq!(policy.ingress[1], anywhere, "{}: the DNS rule comes last", policy.name);
    }
    let text = render_policies_yaml(&set.policies[..1]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains(
            "    - ports:\n        - port: 53\n          protocol: UDP\n        - port: 53\n          protocol: TCP\n  \
             policyTypes:\n"
        ),
        "{text}"
    );
    // The legacy operator had no such rule: a note says its policy blocks DNS.
    let set = network_policies(&docs[..], &PolicyOptions { services: opts.services.clone(), ..Default::default() });
    assert!(set.policies.iter().all(|p| p.ingress.iter().all(|r| !r.from.is_empty())));
    assert!(set.notes.iter().any(|n| matches!(n, PolicyNote::LegacyDnsBlocked { name, .. } if name == "coredns")));
    assert!(set.notes.iter().any(|n| matches!(n, PolicyNote::LegacyDnsBlocked { name, .. } if name == "kube-dns")));
    // A server in kube-system not named *dns, or named *dns elsewhere, gets no DNS rule.
    assert!(!is_dns_server("metrics-server", "kube-system") && !is_dns_server("coredns", "dns"));
}

#[test]
fn the_api_server_gets_no_policy_whatever_the_targets_kind() {
    let http = vec![crate::model::HttpResource { path: "/api".to_owned(), methods: Vec::new() }];
    let docs = [doc(
        "op",
        Some("platform"),
        Some("Deployment"),
        vec![
            Target::ApiServer,
            Target::workload("kubernetes", Some("default"), Some("Deployment")),
            Target::Service(crate::model::ServiceTarget {
                name: "kubernetes".to_owned(),
                namespace: Some("default".to_owned()),
                http,
            }),
        ],
    )];
    for layout in [PolicyLayout::Legacy, PolicyLayout::Current] {
        let opts = PolicyOptions { layout, services: services(Vec::new()), ..Default::default() };
        let set = network_policies(&docs, &opts);
        assert_eq!((set.policies.len(), set.notes.len(), set.pod_labels.len()), (0, 0, 0), "{layout:?}");
    }
    // A client in default calling `kubernetes` calls the API server too.
    let in_default = [doc("op", Some("default"), None, vec![Target::workload("kubernetes", None, None)])];
    assert_eq!(network_policies(&in_default, &PolicyOptions::default()).policies, []);
}

#[test]
fn names_and_labels_the_api_server_refuses_are_problems_naming_the_document() {
    let docs = [doc(
        "api",
        Some("team1"),
        Some("Deployment"),
        vec![
            Target::workload("svc:ledger", Some("team3"), None),
            Target::workload("Ledger", Some("team3"), Some("Deployment")),
        ],
    )];
    let opts = PolicyOptions { layout: PolicyLayout::Current, ..Default::default() };
    let set = network_policies(&docs, &opts);
    let refused: Vec<(&str, &str, &str)> =
        set.problems.iter().map(|p| (p.target.as_str(), p.field, p.value.as_str())).collect();
    assert_eq!(
        refused,
        [
            ("Ledger.team3", "metadata.name", "Ledger-deployment-access"),
            ("svc:ledger.team3", "a label key", "intents.otterize.com/access-svc:ledger-team3-60126a"),
            ("svc:ledger.team3", "a label value", "svc:ledger-team3-60126a"),
            ("svc:ledger.team3", "metadata.name", "svc:ledger-access"),
        ]
    );
    let message = set.problems[3].to_string();
    assert!(
        message.starts_with(
            "ClientIntents of api in namespace team1 (target svc:ledger.team3): the operator's NetworkPolicy \
             team3/svc:ledger-access would have metadata.name \"svc:ledger-access\", which the API server refuses: it \
             holds ':'"
        ),
        "{message}"
    );
    assert_eq!(network_policies(&seed(), &opts).problems, [], "valid names give no problems");
}
