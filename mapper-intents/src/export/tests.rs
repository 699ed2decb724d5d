use super::*;
use crate::model::{Port, Protocol};

fn edge(client: &Workload, server: Target) -> Edge {
    Edge {
        client: client.clone(),
        server,
        ports: vec![Port { port: 443, protocol: Protocol::Tcp }],
        established: 1,
        failed: 0,
        first_seen_ms: 0,
        last_seen_ms: 0,
        via_services: Vec::new(),
    }
}

fn internet(domain: &str, ports: &[u16]) -> Target {
    Target::Internet(Internet { domains: vec![domain.to_owned()], ips: Vec::new(), ports: ports.to_vec() })
}

#[test]
fn one_document_per_client_sorted_by_name_then_namespace() {
    let b1 = Workload::new("b", "ns1", "Deployment");
    let a2 = Workload::new("a", "ns2", "Deployment");
    let a1 = Workload::new("a", "ns1", "Deployment");
    let server = Target::workload("s", Some("ns1"), None);
    let docs = intents_from_edges(
        &[edge(&b1, server.clone()), edge(&a2, server.clone()), edge(&a1, server.clone()), edge(&a1, server)],
        &ExportOptions::default(),
    );
    let keys: Vec<(&str, Option<&str>)> = docs.iter().map(|d| (d.name.as_str(), d.namespace.as_deref())).collect();
    assert_eq!(keys, [("a", Some("ns1")), ("a", Some("ns2")), ("b", Some("ns1"))]);
    assert_eq!(docs[0].targets.len(), 1, "duplicate edges give one target");
    assert_eq!(docs[0].client_kind.as_deref(), Some("Deployment"));
}

#[test]
fn namespace_is_written_only_across_namespaces() {
    let client = Workload::new("c", "team1", "Deployment");
    let docs = intents_from_edges(
        &[
            edge(&client, Target::workload("same", Some("team1"), Some("Deployment"))),
            edge(&client, Target::workload("other", Some("team3"), Some("Deployment"))),
            edge(&client, Target::workload("implicit", None, None)),
            edge(&client, Target::service("svc", Some("team1"))),
        ],
        &ExportOptions::default(),
    );
    assert_eq!(
        docs[0].targets,
        [
            Target::workload("implicit", None, None),
            Target::workload("other", Some("team3"), Some("Deployment")),
            Target::workload("same", None, Some("Deployment")),
            Target::service("svc", None),
        ]
    );
}

#[test]
fn targets_sort_by_server_name_then_namespace() {
    let client = Workload::new("c", "team1", "Deployment");
    let docs = intents_from_edges(
        &[
            edge(&client, Target::workload("x", Some("b"), None)),
            edge(&client, Target::workload("x", Some("a"), None)),
            edge(&client, Target::workload("x", None, None)),
            edge(&client, Target::workload("w", Some("z"), None)),
        ],
        &ExportOptions::default(),
    );
    let names: Vec<(String, String)> = docs[0].targets.iter().map(|t| t.server_name_and_namespace("team1")).collect();
    let expected = [("w", "z"), ("x", "a"), ("x", "b"), ("x", "team1")].map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(names, expected);
}

#[test]
fn the_kubernetes_service_in_default_is_the_api_server() {
    let client = Workload::new("c", "team1", "Deployment");
    let docs = intents_from_edges(
        &[edge(&client, Target::service("kubernetes", Some("default"))), edge(&client, Target::ApiServer)],
        &ExportOptions::default(),
    );
    assert_eq!(docs[0].targets, [Target::ApiServer]);
    let in_default = Workload::new("d", "default", "Deployment");
    let docs = intents_from_edges(&[edge(&in_default, Target::service("kubernetes", None))], &ExportOptions::default());
    assert_eq!(docs[0].targets, [Target::ApiServer]);
}

#[test]
fn options_exclude_kinds_of_targets_failed_edges_and_namespaces() {
    let client = Workload::new("c", "team1", "Deployment");
    let other_ns = Workload::new("c", "team9", "Deployment");
    let mut failed = edge(&client, Target::workload("down", None, None));
    failed.established = 0;
    failed.failed = 3;
    let edges = [
        edge(&client, Target::service("svc", None)),
        edge(&client, Target::ApiServer),
        edge(&client, internet("example.com", &[])),
        edge(&client, Target::workload("w", None, None)),
        failed,
        edge(&other_ns, Target::workload("w", None, None)),
    ];
    let count =
        |opts: ExportOptions| -> usize { intents_from_edges(&edges, &opts).iter().map(|d| d.targets.len()).sum() };
    assert_eq!(count(ExportOptions::default()), 5, "calls that never succeeded are left out by default");
    let all = ExportOptions { include_failed_only: true, ..ExportOptions::default() };
    assert_eq!(count(all.clone()), 6);
    assert_eq!(count(ExportOptions { include_services: false, ..all.clone() }), 5);
    assert_eq!(count(ExportOptions { include_api_server: false, ..all.clone() }), 5);
    assert_eq!(count(ExportOptions { include_internet: false, ..all.clone() }), 5);
    assert_eq!(count(ExportOptions { client_namespaces: vec!["team9".to_owned()], ..all }), 1);
    let services_off = ExportOptions { include_services: false, ..ExportOptions::default() };
    let api_kept = intents_from_edges(&[edge(&client, Target::service("kubernetes", Some("default")))], &services_off);
    assert_eq!(api_kept[0].targets, [Target::ApiServer], "the API server is not a plain Service target");
}

#[test]
fn clients_whose_targets_are_all_excluded_get_no_document() {
    let client = Workload::new("c", "team1", "Deployment");
    let opts = ExportOptions { include_services: false, ..ExportOptions::default() };
    assert!(intents_from_edges(&[edge(&client, Target::service("svc", None))], &opts).is_empty());
}

#[test]
fn internet_edges_to_the_same_destination_merge_their_ports() {
    let client = Workload::new("c", "team1", "Deployment");
    let mut http = edge(&client, internet("example.com", &[]));
    http.ports = vec![Port { port: 80, protocol: Protocol::Tcp }];
    let docs = intents_from_edges(
        &[edge(&client, internet("example.com", &[])), http, edge(&client, internet("other.com", &[8443]))],
        &ExportOptions::default(),
    );
    assert_eq!(docs[0].targets, [internet("example.com", &[80, 443]), internet("other.com", &[443, 8443])]);
    let mut any_port = edge(&client, internet("example.com", &[]));
    any_port.ports.clear();
    let docs = intents_from_edges(&[edge(&client, internet("example.com", &[])), any_port], &ExportOptions::default());
    assert_eq!(docs[0].targets, [internet("example.com", &[])], "no ports means every port");
}

#[test]
fn clients_sharing_a_name_in_one_namespace_get_kind_suffixed_names() {
    let deployment = Workload::new("app", "team1", "Deployment");
    let cronjob = Workload::new("app", "team1", "CronJob");
    let lone = Workload::new("solo", "team1", "Deployment");
    let server = Target::workload("s", None, None);
    let docs = intents_from_edges(
        &[edge(&deployment, server.clone()), edge(&cronjob, server.clone()), edge(&lone, server)],
        &ExportOptions::default(),
    );
    let names: Vec<(&str, &str)> = docs.iter().map(|d| (d.name.as_str(), d.client_name.as_str())).collect();
    assert_eq!(names, [("app-cronjob", "app"), ("app-deployment", "app"), ("solo", "solo")]);
}

#[test]
fn cluster_dns_calls_are_left_out_unless_asked_for() {
    let client = Workload::new("web", "team1", "Deployment");
    let dns = |server: Target, port: u16, via: &[(&str, &str)]| Edge {
        ports: vec![Port { port, protocol: Protocol::Udp }],
        via_services: via
            .iter()
            .map(|(n, ns)| crate::model::ServiceName { name: (*n).to_owned(), namespace: (*ns).to_owned() })
            .collect(),
        ..edge(&client, server)
    };
    let coredns = Target::workload("coredns", Some("kube-system"), Some("Deployment"));
    let through_service = dns(coredns.clone(), 53, &[("kube-dns", "kube-system")]);
    let to_pod = dns(coredns.clone(), 53, &[]);
    let own_dns = dns(Target::workload("resolver", None, None), 53, &[]);
    let other_port = dns(coredns, 9153, &[]);
    for e in [&through_service, &to_pod] {
        assert!(e.is_cluster_dns(), "{e:?}");
    }
    assert!(!own_dns.is_cluster_dns(), "a DNS server of the client's own namespace is a call like any other");
    assert!(!other_port.is_cluster_dns(), "coredns's metrics port is not DNS");
    let edges = [through_service, to_pod, own_dns];
    let targets =
        |opts: &ExportOptions| -> usize { intents_from_edges(&edges, opts).iter().map(|d| d.targets.len()).sum() };
    assert_eq!(targets(&ExportOptions::default()), 1);
    assert_eq!(
        targets(&ExportOptions { include_dns: true, ..ExportOptions::default() }),
        2,
        "two coredns edges, one target"
    );
}

#[test]
fn documents_merge_by_key_into_the_first_namespace_as_otterize_distinct_by_label() {
    let web1 = Workload::new("web", "tenant-a", "Deployment");
    let web2 = Workload::new("web", "tenant-b", "Deployment");
    let web3 = Workload::new("web", "tenant-c", "Deployment");
    let docs = intents_from_edges(
        &[
            edge(&web1, Target::workload("db", Some("tenant-a"), Some("StatefulSet"))),
            edge(&web2, Target::workload("db", Some("tenant-b"), Some("StatefulSet"))),
            edge(&web2, Target::workload("auth", Some("shared"), Some("Deployment"))),
            edge(&web3, Target::workload("cache", Some("tenant-c"), None)),
        ],
        &ExportOptions::default(),
    );
    let keyed: Vec<(ClientIntentsDoc, String)> = docs
        .into_iter()
        .map(|d| {
            let key = if d.namespace.as_deref() == Some("tenant-c") { "canary" } else { "stable" };
            (d, key.to_owned())
        })
        .collect();
    let merged = merge_by_key(keyed);
    let keys: Vec<(&str, Option<&str>)> = merged.iter().map(|d| (d.name.as_str(), d.namespace.as_deref())).collect();
    assert_eq!(keys, [("web", Some("tenant-a")), ("web", Some("tenant-c"))]);
    // Each target as its own client wrote it: db in the client's namespace, once.
    assert_eq!(
        merged[0].targets,
        [
            Target::workload("auth", Some("shared"), Some("Deployment")),
            Target::workload("db", None, Some("StatefulSet")),
        ]
    );
    assert_eq!(merged[1].targets, [Target::workload("cache", None, None)]);
}
