use serde_json::json;

use super::*;

fn labels(of: &str, pairs: &[(&str, &str)]) -> Labels {
    Labels {
        known: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        complete: true,
        of: of.to_owned(),
    }
}

fn pod(namespace: &str, pairs: &[(&str, &str)]) -> PodSide {
    PodSide {
        namespace: namespace.to_owned(),
        labels: labels("pod", pairs),
        namespace_labels: labels("namespace", &[("kubernetes.io/metadata.name", namespace), ("team", namespace)]),
        named_ports: Some([("http".to_owned(), (8080, Protocol::Tcp))].into_iter().collect()),
    }
}

fn policy(namespace: &str, name: &str, spec: serde_json::Value) -> Policy {
    let value = json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}, "spec": spec});
    Policy::from_value(&value, "test").unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ledger() -> PodSide {
    pod("team3", &[("app", "ledger"), ("tier", "db")])
}

fn client_in(namespace: &str, app: &str) -> Client {
    Client::Pod(pod(namespace, &[("app", app)]))
}

fn short(v: &Verdict) -> String {
    match v {
        Verdict::Open => "open".to_owned(),
        Verdict::Allowed { policy } => format!("allowed by {policy}"),
        Verdict::Denied { policies } => format!("denied by {}", policies.join(",")),
        Verdict::Unknown { reason } => format!("unknown: {reason}"),
    }
}

/// One case of the table: (what it shows, policies, client, port, protocol, expected verdict).
type Case = (&'static str, Vec<Policy>, Client, u16, Protocol, &'static str);

#[test]
fn ingress_semantics() {
    let only_team2 = json!({"podSelector": {"matchLabels": {"app": "ledger"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team2"}}}]}]});
    let cases: Vec<Case> = vec![
        ("no policy: open", vec![], client_in("team1", "ts"), 8080, Protocol::Tcp, "open"),
        (
            "a policy of another namespace does not select",
            vec![policy("team1", "deny", json!({"podSelector": {}}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "open",
        ),
        (
            "a policy whose podSelector misses the server does not select",
            vec![policy("team3", "deny", json!({"podSelector": {"matchLabels": {"app": "other"}}}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "open",
        ),
        (
            "empty podSelector and no rules: deny all",
            vec![policy("team3", "deny-all", json!({"podSelector": {}}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "denied by team3/deny-all",
        ),
        (
            "policyTypes Egress only: ingress open",
            vec![policy("team3", "egress", json!({"podSelector": {}, "policyTypes": ["Egress"]}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "open",
        ),
        (
            "no policyTypes with egress rules still restricts ingress",
            vec![policy("team3", "both", json!({"podSelector": {}, "egress": [{}]}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "denied by team3/both",
        ),
        (
            "a rule with no from and no ports admits all",
            vec![policy("team3", "all", json!({"podSelector": {}, "ingress": [{}]}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "allowed by team3/all",
        ),
        (
            "namespaceSelector admits team2",
            vec![policy("team3", "t2", only_team2.clone())],
            client_in("team2", "x"),
            8080,
            Protocol::Tcp,
            "allowed by team3/t2",
        ),
        (
            "namespaceSelector denies team1",
            vec![policy("team3", "t2", only_team2.clone())],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "denied by team3/t2",
        ),
        (
            "several policies: the union",
            vec![
                policy("team3", "t2", only_team2.clone()),
                policy(
                    "team3",
                    "ts",
                    json!({"podSelector": {"matchLabels": {"tier": "db"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "team1"}}, "podSelector": {"matchLabels": {"app": "ts"}}}]}]}),
                ),
            ],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "allowed by team3/ts",
        ),
        (
            "namespace and pod selectors in one peer: both must hold",
            vec![policy(
                "team3",
                "and",
                json!({"podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "team1"}}, "podSelector": {"matchLabels": {"app": "other"}}}]}]}),
            )],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "denied by team3/and",
        ),
        (
            "namespace and pod selectors as two peers: either",
            vec![policy(
                "team3",
                "or",
                json!({"podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "team1"}}}, {"podSelector": {"matchLabels": {"app": "other"}}}]}]}),
            )],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "allowed by team3/or",
        ),
        (
            "podSelector alone selects pods of the policy's namespace only",
            vec![policy(
                "team3",
                "same-ns",
                json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "ts"}}}]}]}),
            )],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "denied by team3/same-ns",
        ),
        (
            "podSelector alone admits a matching pod of the policy's namespace",
            vec![policy(
                "team3",
                "same-ns",
                json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "ts"}}}]}]}),
            )],
            client_in("team3", "ts"),
            8080,
            Protocol::Tcp,
            "allowed by team3/same-ns",
        ),
        (
            "matchExpressions In / NotIn / Exists / DoesNotExist",
            vec![policy(
                "team3",
                "expr",
                json!({"podSelector": {"matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["ledger", "x"]},
                    {"key": "tier", "operator": "NotIn", "values": ["web"]},
                    {"key": "tier", "operator": "Exists"},
                    {"key": "canary", "operator": "DoesNotExist"}]},
                "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["team2"]}]}}]}]}),
            )],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "denied by team3/expr",
        ),
        (
            "a numeric port admits that port only",
            vec![policy("team3", "p", json!({"podSelector": {}, "ingress": [{"ports": [{"port": 9090}]}]}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "denied by team3/p",
        ),
        (
            "endPort makes a range",
            vec![policy(
                "team3",
                "range",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8100}]}]}),
            )],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "allowed by team3/range",
        ),
        (
            "the protocol defaults to TCP",
            vec![policy("team3", "tcp", json!({"podSelector": {}, "ingress": [{"ports": [{"port": 53}]}]}))],
            client_in("team1", "ts"),
            53,
            Protocol::Udp,
            "denied by team3/tcp",
        ),
        (
            "a named port resolves to the container port",
            vec![policy("team3", "named", json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "allowed by team3/named",
        ),
        (
            "a named port the server does not have admits nothing",
            vec![policy("team3", "named", json!({"podSelector": {}, "ingress": [{"ports": [{"port": "grpc"}]}]}))],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "denied by team3/named",
        ),
        (
            "ipBlock admits an outside address in the block, not in except",
            vec![policy(
                "team3",
                "ip",
                json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}]}]}),
            )],
            Client::External("203.0.113.7".parse().expect("ip")),
            8080,
            Protocol::Tcp,
            "allowed by team3/ip",
        ),
        (
            "ipBlock except leaves an address out",
            vec![policy(
                "team3",
                "ip",
                json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}]}]}),
            )],
            Client::External("203.0.113.200".parse().expect("ip")),
            8080,
            Protocol::Tcp,
            "denied by team3/ip",
        ),
        (
            "selectors never match an outside address",
            vec![policy(
                "team3",
                "sel",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
            )],
            Client::External("203.0.113.7".parse().expect("ip")),
            8080,
            Protocol::Tcp,
            "denied by team3/sel",
        ),
        (
            "an empty namespaceSelector admits every pod",
            vec![policy(
                "team3",
                "sel",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
            )],
            client_in("team9", "x"),
            8080,
            Protocol::Tcp,
            "allowed by team3/sel",
        ),
        (
            "ipBlock of every address admits a pod",
            vec![policy(
                "team3",
                "any",
                json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
            )],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "allowed by team3/any",
        ),
        (
            "a narrower ipBlock and a pod client: unknown, not guessed",
            vec![policy(
                "team3",
                "ip",
                json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
            )],
            client_in("team1", "ts"),
            8080,
            Protocol::Tcp,
            "unknown: ipBlock 10.0.0.0/8: the client pod's address is not known",
        ),
    ];
    for (case, policies, client, port, protocol, expected) in cases {
        let verdict = evaluate(&policies, &client, &ledger(), port, protocol);
        assert_eq!(short(&verdict), expected, "{case}");
    }
}

#[test]
fn unknown_labels_are_said_not_guessed() {
    let mut client = pod("team1", &[("app", "ts")]);
    client.namespace_labels = Labels {
        known: [("kubernetes.io/metadata.name".to_owned(), "team1".to_owned())].into_iter().collect(),
        complete: false,
        of: "labels of namespace team1".to_owned(),
    };
    let by_team = policy(
        "team3",
        "t",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "team1"}}}]}]}),
    );
    let verdict =
        evaluate(std::slice::from_ref(&by_team), &Client::Pod(client.clone()), &ledger(), 8080, Protocol::Tcp);
    assert_eq!(short(&verdict), "unknown: labels of namespace team1: label team not known");
    // The name label is always known (the API server sets it): that selector is decided.
    let by_name = policy(
        "team3",
        "n",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team2"}}}]}]}),
    );
    let verdict =
        evaluate(std::slice::from_ref(&by_name), &Client::Pod(client.clone()), &ledger(), 8080, Protocol::Tcp);
    assert_eq!(short(&verdict), "denied by team3/n");
    // An unknown that another policy makes moot: admitted.
    let all = policy("team3", "all", json!({"podSelector": {}, "ingress": [{}]}));
    let verdict = evaluate(&[by_team, all], &Client::Pod(client), &ledger(), 8080, Protocol::Tcp);
    assert_eq!(short(&verdict), "allowed by team3/all");
    // Unknown server labels: whether the policy selects it is unknown.
    let mut server = ledger();
    server.labels.complete = false;
    server.labels.known.clear();
    server.labels.of = "pod labels of ledger.team3".to_owned();
    let select = policy("team3", "s", json!({"podSelector": {"matchLabels": {"app": "ledger"}}}));
    let verdict = evaluate(&[select], &client_in("team1", "ts"), &server, 8080, Protocol::Tcp);
    assert_eq!(short(&verdict), "unknown: pod labels of ledger.team3: label app not known");
    // Named ports without container ports known.
    server = ledger();
    server.named_ports = None;
    let named = policy("team3", "named", json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}));
    let verdict = evaluate(&[named], &client_in("team1", "ts"), &server, 8080, Protocol::Tcp);
    assert_eq!(short(&verdict), "unknown: named port http: the server's container ports are not known");
}

#[test]
fn policy_types_default_as_kubernetes_does() {
    let p = |spec| policy("team3", "p", spec);
    assert!(p(json!({"podSelector": {}})).restricts_ingress());
    assert!(!p(json!({"podSelector": {}})).restricts_egress());
    assert!(p(json!({"podSelector": {}, "egress": []})).restricts_egress());
    assert!(!p(json!({"podSelector": {}, "policyTypes": ["Egress"]})).restricts_ingress());
    let bad = Policy::from_value(&json!({"spec": {"ingress": [{"ports": [{"port": -1}]}]}}), "x");
    assert!(bad.is_err());
}

#[test]
fn policies_are_read_out_of_manifests() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: networking.k8s.io/v1\nkind: \
                NetworkPolicy\nmetadata: {name: a, namespace: team3}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: \
                [{port: http}, {port: 80, endPort: 90, protocol: UDP}]\n---\napiVersion: v1\nkind: List\nitems:\n- \
                {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: b}, spec: {podSelector: {}}}\n";
    let policies = read_policies(text, "p.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policies.len(), 2);
    assert_eq!((policies[0].name.as_str(), policies[0].source.as_str()), ("a", "p.yaml: document 2"));
    assert_eq!(policies[0].namespace.as_deref(), Some("team3"));
    let ports = policies[0].spec.ingress[0].ports.clone().unwrap_or_default();
    assert_eq!(ports[0].port, Some(PortRef::Name("http".into())));
    assert_eq!((ports[1].end_port, ports[1].protocol.as_deref()), (Some(90), Some("UDP")));
    assert_eq!((policies[1].name.as_str(), policies[1].namespace.as_deref()), ("b", None));
    let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c}\nspec: {ingress: 3}\n";
    let err = read_policies(bad, "p.yaml").expect_err("ingress is no list");
    assert!(err.to_string().starts_with("p.yaml: document 1: NetworkPolicy c: invalid type"), "{err}");
    assert!(read_policies(&"[".repeat(1000), "deep.yaml").is_err());
}
