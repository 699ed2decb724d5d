use std::time::{Duration, UNIX_EPOCH};

use mapper_intents::{Internet, Target};

use super::*;

fn workload(name: &str, namespace: &str, kind: &str) -> pb::Peer {
    pb::Peer {
        peer: Some(pb::peer::Peer::Workload(pb::Workload {
            name: name.into(),
            namespace: namespace.into(),
            kind: kind.into(),
            release: None,
            labels: Vec::new(),
        })),
    }
}

fn edge(client: pb::Peer, server: pb::Peer) -> pb::Edge {
    pb::Edge {
        client: Some(client),
        server: Some(server),
        ports: vec![
            pb::PortProtocol { port: 8443, protocol: pb::Protocol::Tcp as i32 },
            pb::PortProtocol { port: 53, protocol: pb::Protocol::Udp as i32 },
        ],
        established: 3,
        failed: 1,
        first_seen_ms: 10,
        last_seen_ms: 20,
        seen_by_client: true,
        seen_by_server: false,
        via_services: vec![pb::ServiceRef { name: "ledger".into(), namespace: "team3".into() }],
    }
}

#[test]
fn workload_edges_become_intents_edges_with_kinds() {
    let e =
        ObservedEdge::from_pb(0, &edge(workload("api", "team1", "Deployment"), workload("db", "team2", "StatefulSet")))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.ports[0].to_string(), "53/UDP");
    assert_eq!(ports_text(&e.ports), "53/UDP, 8443/TCP");
    let i = e.to_intents_edge().unwrap_or_else(|| panic!("a workload edge converts"));
    assert_eq!(i.client, Workload::new("api", "team1", "Deployment"));
    assert_eq!(i.server, Target::workload("db", Some("team2"), Some("StatefulSet")));
    assert_eq!((i.established, i.failed, i.ports.len()), (3, 1, 2));
    let via = [mapper_intents::ServiceName { name: "ledger".into(), namespace: "team3".into() }];
    assert_eq!((e.via_services.as_slice(), i.via_services.as_slice()), (&via[..], &via[..]));
}

#[test]
fn services_api_server_and_external_addresses_convert() {
    let client = workload("api", "team1", "");
    let service = pb::Peer {
        peer: Some(pb::peer::Peer::Service(pb::ServiceRef { name: "legacy".into(), namespace: "team1".into() })),
    };
    let api = pb::Peer { peer: Some(pb::peer::Peer::ApiServer(pb::ApiServer {})) };
    let external = pb::Peer {
        peer: Some(pb::peer::Peer::External(pb::External {
            ip: vec![203, 0, 113, 7],
            dns_names: vec!["b.example.com".into(), "a.example.com".into(), "b.example.com".into()],
        })),
    };
    let convert = |server: pb::Peer| {
        ObservedEdge::from_pb(0, &edge(client.clone(), server))
            .unwrap_or_else(|e| panic!("{e}"))
            .to_intents_edge()
            .unwrap_or_else(|| panic!("converts"))
    };
    let s = convert(service);
    assert_eq!(s.client.kind, None, "an empty kind is no kind");
    assert_eq!(s.server, Target::service("legacy", Some("team1")));
    assert_eq!(convert(api).server, Target::ApiServer);
    assert_eq!(
        convert(external).server,
        Target::Internet(Internet {
            domains: vec!["a.example.com".into(), "b.example.com".into()],
            ips: vec!["203.0.113.7".into()],
            ports: Vec::new(),
        })
    );
}

#[test]
fn unresolved_ends_do_not_become_intents_and_bad_edges_are_named() {
    let unresolved = pb::Peer {
        peer: Some(pb::peer::Peer::Unresolved(pb::Unresolved { ip: vec![10, 0, 0, 1], reason: "node_ip".into() })),
    };
    let e = ObservedEdge::from_pb(0, &edge(workload("a", "n", "Pod"), unresolved.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(e.to_intents_edge().is_none());
    assert_eq!(PeerView::of(&e.server).to_string(), "10.0.0.1, unresolved: node_ip");
    let e = ObservedEdge::from_pb(0, &edge(unresolved, workload("a", "n", "Pod"))).unwrap_or_else(|e| panic!("{e}"));
    assert!(e.to_intents_edge().is_none());

    let mut bad = edge(workload("a", "n", "Pod"), workload("b", "n", "Pod"));
    bad.server = None;
    let err = ObservedEdge::from_pb(4, &bad).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(err, "mapper-server sent an invalid edge: edges[4].server: missing");
}

#[test]
fn excluded_services_match_by_name_or_name_and_namespace() {
    let e =
        ObservedEdge::from_pb(0, &edge(workload("api", "team1", "Deployment"), workload("db", "team2", "StatefulSet")))
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(e.touches(&["db".into()]));
    assert!(e.touches(&["api.team1".into()]));
    assert!(!e.touches(&["db.team1".into(), "other".into()]));
}

#[test]
fn flags_become_the_request() {
    let args = QueryArgs {
        namespaces: vec!["team1".into()],
        server: None,
        since: Some(Duration::from_secs(60)),
        exclude_services: Vec::new(),
        exclude_labels: vec![
            LabelFilter::Pair(pb::LabelPair { key: "app".into(), value: "debug".into() }),
            LabelFilter::Key("sidecar".into()),
        ],
        distinct_by_label: Some("tier".into()),
        as_kubernetes_service: false,
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_000);
    let request = args.request(now, true, false);
    assert_eq!(request.since_ms, 940_000);
    assert_eq!(request.client_namespaces, ["team1"]);
    assert!(request.include_unresolved);
    assert_eq!(request.exclude_labels, [pb::LabelPair { key: "app".into(), value: "debug".into() }]);
    assert_eq!(request.exclude_label_keys, ["sidecar"]);
    assert_eq!(request.include_labels, ["tier"]);
    assert_eq!(QueryArgs::default().request(now, false, false).since_ms, 0);
    assert_eq!(parse_server("ledger.team3").ok().as_deref(), Some("ledger.team3"));
    assert!(parse_server("ledger").is_err() && parse_server("a.b.c").is_err() && parse_server(".x").is_err());
    let pair = LabelFilter::Pair(pb::LabelPair { key: "app".into(), value: "web".into() });
    assert_eq!(parse_label("app=web"), Ok(pair));
    assert_eq!(parse_label("app"), Ok(LabelFilter::Key("app".into())), "a bare key, as otterize-cli");
    assert_eq!(parse_label("app="), Ok(LabelFilter::Pair(pb::LabelPair { key: "app".into(), value: String::new() })));
    let err = parse_label("=x").err().unwrap_or_default();
    assert!(err.starts_with("\"\" is not a label key: it is empty"), "{err}");
    assert!(parse_label("Bad Key=x").is_err() && parse_label_key("a/b/c").is_err());
    assert_eq!(parse_label_key("app.kubernetes.io/name").ok().as_deref(), Some("app.kubernetes.io/name"));
}

fn observed(client: Peer, server: Peer, via: &[(&str, &str)], labels: &[(&str, &str)]) -> ObservedEdge {
    ObservedEdge {
        client,
        server,
        dns_names: Vec::new(),
        ports: vec![Port { port: 8080, protocol: Protocol::Tcp }],
        established: 2,
        failed: 1,
        first_seen_ms: 10,
        last_seen_ms: 20,
        seen_by_client: true,
        seen_by_server: false,
        via_services: via.iter().map(|(n, ns)| ServiceName { name: (*n).into(), namespace: (*ns).into() }).collect(),
        client_release: None,
        server_release: None,
        client_labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

fn peer(name: &str, namespace: &str) -> Peer {
    Peer::Workload(Workload::new(name, namespace, "Deployment"))
}

#[test]
fn as_kubernetes_service_names_servers_by_the_services_dialled() {
    let args = QueryArgs { as_kubernetes_service: true, ..QueryArgs::default() };
    let edges = vec![
        observed(peer("web", "shop"), peer("ledger", "team3"), &[("ledger-svc", "team3"), ("ledger-v2", "team3")], &[]),
        observed(peer("web", "shop"), peer("direct", "shop"), &[], &[]),
    ];
    let servers: Vec<Peer> = args.as_services(edges.clone()).into_iter().map(|e| e.server).collect();
    assert_eq!(
        servers,
        [
            Peer::Service { name: "ledger-svc".into(), namespace: "team3".into() },
            Peer::Service { name: "ledger-v2".into(), namespace: "team3".into() },
            peer("direct", "shop"),
        ]
    );
    assert_eq!(QueryArgs::default().as_services(edges.clone()), edges, "unchanged without the flag");
}

#[test]
fn distinct_by_label_merges_clients_of_a_name_and_value_into_the_first_namespace() {
    let args = QueryArgs { distinct_by_label: Some("tier".into()), ..QueryArgs::default() };
    let edges = vec![
        observed(peer("web", "b"), peer("db", "data"), &[], &[("tier", "front")]),
        observed(peer("web", "a"), peer("db", "data"), &[], &[("tier", "front")]),
        observed(peer("web", "c"), peer("db", "data"), &[], &[]),
    ];
    let viewed = args.view(edges);
    let clients: Vec<(String, u64)> = viewed
        .iter()
        .map(|e| match &e.client {
            Peer::Workload(w) => (format!("{}.{}", w.name, w.namespace), e.established),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(clients, [("web.a".to_owned(), 4), ("web.c".to_owned(), 2)], "b merged into a, counts added");
}
