use super::*;
use crate::model::{Protocol, ServiceName};
use crate::parse::parse_versioned;

const T0: i64 = 1_800_000_000_000;

fn tcp(port: u16) -> Port {
    Port { port, protocol: Protocol::Tcp }
}

fn call(client: (&str, &str), server: Target, port: u16, last_seen_ms: i64) -> Edge {
    Edge {
        client: Workload::new(client.0, client.1, "Deployment"),
        server,
        ports: vec![tcp(port)],
        established: 5,
        failed: 0,
        first_seen_ms: last_seen_ms - 1_000,
        last_seen_ms,
        via_services: Vec::new(),
    }
}

fn via(mut e: Edge, service: &str, namespace: &str) -> Edge {
    e.via_services.push(ServiceName { name: service.to_owned(), namespace: namespace.to_owned() });
    e
}

fn wl(name: &str, ns: &str) -> Target {
    Target::workload(name, Some(ns), Some("Deployment"))
}

/// Every ClientIntents object in `yaml`, as the CLI reads a declared file.
fn declared(yaml: &str) -> Vec<DeclaredDoc> {
    parse_versioned(yaml, "intents.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|found| DeclaredDoc {
            doc: found.object.to_doc().unwrap_or_else(|e| panic!("{e}")),
            version: found.object.version(),
            source: format!("intents.yaml: document {}", found.document),
        })
        .collect()
}

fn names(targets: impl IntoIterator<Item = Target>) -> Vec<String> {
    targets
        .into_iter()
        .map(|t| {
            let (name, ns) = t.server_name_and_namespace("?");
            format!("{name}.{ns}")
        })
        .collect()
}

fn report(declared: &[DeclaredDoc], observed: &[Edge]) -> AuditReport {
    audit(declared, observed, &AuditScope::default(), T0)
}

/// The story of the issue: transaction-service's chart now declares telemetry and, by accident,
/// no longer ledger.
#[test]
fn an_observed_call_missing_from_the_declaration_is_reported_with_its_figures() {
    let yaml = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: transaction-service\n  \
                namespace: team1\nspec:\n  workload:\n    name: transaction-service\n  targets:\n    - kubernetes:\n        \
                name: telemetry.team4\n";
    let observed = [
        via(call(("transaction-service", "team1"), wl("ledger", "team3"), 8080, T0 + 50), "ledger", "team3"),
        call(("transaction-service", "team1"), wl("telemetry", "team4"), 8080, T0 + 60),
    ];
    let r = report(&declared(yaml), &observed);
    assert_eq!(r.clients.len(), 1);
    let c = &r.clients[0];
    assert_eq!(c.client, Workload::new("transaction-service", "team1", "Deployment"));
    assert_eq!(c.sources, ["intents.yaml: document 1"]);
    assert_eq!(names(c.missing.iter().map(|e| e.server.clone())), ["ledger.team3"]);
    assert_eq!(
        (c.missing[0].ports.as_slice(), c.missing[0].established, c.missing[0].last_seen_ms),
        (&[tcp(8080)][..], 5, T0 + 50)
    );
    assert_eq!(names(c.covered.iter().map(|c| c.target.clone())), ["telemetry.team4"]);
    assert!(c.unused.is_empty());
    assert_eq!(r.totals(), AuditTotals { clients: 1, missing: 1, unused: 0, covered: 1 });
}

#[test]
fn a_target_without_namespace_is_in_the_clients_namespace() {
    // `ledger` declared by a team1 client is ledger.team1, not ledger.team3.
    let yaml = "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata:\n  name: api\n  namespace: team1\n\
                spec:\n  service:\n    name: api\n  calls:\n    - name: ledger\n    - name: cache\n";
    let observed = [
        call(("api", "team1"), wl("ledger", "team3"), 8080, T0 + 1),
        call(("api", "team1"), wl("cache", "team1"), 6379, T0 + 1),
    ];
    let r = report(&declared(yaml), &observed);
    let c = &r.clients[0];
    assert_eq!(names(c.missing.iter().map(|e| e.server.clone())), ["ledger.team3"]);
    assert_eq!(names(c.covered.iter().map(|c| c.target.clone())), ["cache.team1"]);
    assert_eq!(names(c.unused.iter().map(|u| u.target.clone())), ["ledger.team1"]);
    assert_eq!(c.unused[0].last_seen_ms, None);
}

#[test]
fn service_targets_are_covered_only_through_their_cluster_ip() {
    // v1alpha2 `svc:ledger.team3`; one client dialled the Service, the other a pod IP.
    let yaml = "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata:\n  name: a\n  namespace: team1\n\
                spec:\n  service:\n    name: a\n  calls:\n    - name: svc:ledger.team3\n---\n\
                apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata:\n  name: b\n  namespace: team1\n\
                spec:\n  service:\n    name: b\n  calls:\n    - name: svc:ledger.team3\n    - name: svc:legacy\n";
    let observed = [
        via(call(("a", "team1"), wl("ledger", "team3"), 8080, T0 + 1), "ledger", "team3"),
        call(("b", "team1"), wl("ledger", "team3"), 8080, T0 + 1),
        // A Service with no pods behind it is the server itself.
        call(("b", "team1"), Target::service("legacy", Some("team1")), 80, T0 + 1),
    ];
    let r = report(&declared(yaml), &observed);
    let (a, b) = (&r.clients[0], &r.clients[1]);
    assert_eq!((a.missing.len(), a.covered.len()), (0, 1));
    assert_eq!(names(b.missing.iter().map(|e| e.server.clone())), ["ledger.team3"]);
    assert_eq!(names(b.covered.iter().map(|c| c.target.clone())), ["legacy.team1"]);
    assert_eq!(names(b.unused.iter().map(|u| u.target.clone())), ["ledger.team3"]);
    // A workload target covers the call whichever address was dialled.
    let yaml = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: b\n  namespace: team1\n\
                spec:\n  workload:\n    name: b\n  targets:\n    - kubernetes:\n        name: ledger.team3\n        \
                kind: Deployment\n    - service:\n        name: legacy\n";
    let r = report(&declared(yaml), &observed[1..]);
    assert_eq!(r.totals(), AuditTotals { clients: 1, missing: 0, unused: 0, covered: 2 });
    // ... unless its kind differs from the server's.
    let yaml = yaml.replace("kind: Deployment", "kind: StatefulSet");
    let r = report(&declared(&yaml), &observed[1..]);
    assert_eq!(names(r.clients[0].missing.iter().map(|e| e.server.clone())), ["ledger.team3"]);
}

#[test]
fn every_crd_version_reads_to_the_same_audit() {
    let observed = [
        call(("api", "team1"), wl("ledger", "team3"), 8080, T0 + 1),
        via(call(("api", "team1"), wl("db", "team1"), 5432, T0 + 1), "db", "team1"),
        call(("api", "team1"), Target::ApiServer, 443, T0 + 1),
    ];
    let header = |v: &str| {
        format!("apiVersion: k8s.otterize.com/{v}\nkind: ClientIntents\nmetadata:\n  name: api\n  namespace: team1\n")
    };
    let v1 = "spec:\n  service:\n    name: api\n  calls:\n    - name: ledger.team3\n    - name: svc:db\n    - name: svc:kubernetes.default\n    - name: unused.team9\n";
    let v2 = "spec:\n  workload:\n    name: api\n  targets:\n    - kubernetes:\n        name: ledger.team3\n    - service:\n        \
              name: db\n    - service:\n        name: kubernetes.default\n    - kubernetes:\n        name: unused.team9\n";
    let mut seen = Vec::new();
    for (version, spec) in [("v1alpha2", v1), ("v1alpha3", v1), ("v1beta1", v1), ("v2alpha1", v2), ("v2beta1", v2)] {
        let docs = declared(&(header(version) + spec));
        assert_eq!(docs[0].version.as_str(), version);
        let r = report(&docs, &observed);
        let c = &r.clients[0];
        seen.push((
            version,
            names(c.covered.iter().map(|c| c.target.clone())),
            names(c.unused.iter().map(|u| u.target.clone())),
            c.missing.len(),
        ));
    }
    for (version, covered, unused, missing) in &seen {
        assert_eq!(covered, &["ledger.team3", "db.team1", "kubernetes.default"], "{version}");
        assert_eq!(unused, &["unused.team9"], "{version}");
        assert_eq!(*missing, 0, "{version}");
    }
}

#[test]
fn clients_on_one_side_only() {
    let yaml = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: batch\n  namespace: team1\n\
                spec:\n  workload:\n    name: batch\n    kind: CronJob\n  targets:\n    - kubernetes:\n        name: db\n";
    let observed = [call(("api", "team1"), wl("db", "team1"), 5432, T0 + 1)];
    let r = report(&declared(yaml), &observed);
    let who: Vec<(&str, bool, usize, usize)> =
        r.clients.iter().map(|c| (&*c.client.name, c.observed, c.missing.len(), c.unused.len())).collect();
    // api: observed, nothing declared: its call is missing. batch: declared, never seen.
    assert_eq!(who, [("api", true, 1, 0), ("batch", false, 0, 1)]);
    assert!(r.clients[0].sources.is_empty());
    assert_eq!(r.clients[1].client.kind.as_deref(), Some("CronJob"));
    // A declaration for another kind of the same name is another client.
    let other_kind = call(("batch", "team1"), wl("db", "team1"), 5432, T0 + 1);
    let r = report(&declared(yaml), &[other_kind]);
    assert_eq!(r.clients.len(), 2, "{r:#?}");
}

#[test]
fn an_empty_declared_set_makes_every_observed_call_missing() {
    let observed = [
        call(("api", "team1"), wl("db", "team1"), 5432, T0 + 1),
        call(("web", "team2"), wl("api", "team1"), 8080, T0 + 1),
    ];
    let r = report(&[], &observed);
    assert_eq!(r.totals(), AuditTotals { clients: 2, missing: 2, unused: 0, covered: 0 });
    // -n limits the clients.
    let scope = AuditScope { namespaces: vec!["team2".into()], workloads: Vec::new() };
    let r = audit(&[], &observed, &scope, T0);
    assert_eq!(r.clients.iter().map(|c| &*c.client.name).collect::<Vec<_>>(), ["web"]);
}

#[test]
fn declarations_for_workloads_never_observed_are_all_unused() {
    let yaml = "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata:\n  name: ghost\n  namespace: team5\n\
                spec:\n  service:\n    name: ghost\n  calls:\n    - name: a\n    - name: svc:b.team6\n";
    let r = report(&declared(yaml), &[call(("api", "team1"), wl("db", "team1"), 5432, T0 + 1)]);
    // By default only the declared namespaces are audited: api.team1 is out of scope.
    assert_eq!(r.clients.len(), 1);
    let c = &r.clients[0];
    assert!(!c.observed);
    assert_eq!(names(c.unused.iter().map(|u| u.target.clone())), ["a.team5", "b.team6"]);
    assert!(c.unused.iter().all(|u| u.last_seen_ms.is_none()));
}

#[test]
fn calls_before_the_window_date_unused_targets_and_are_not_missing() {
    let yaml = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: api\n  namespace: team1\n\
                spec:\n  workload:\n    name: api\n  targets:\n    - kubernetes:\n        name: old\n";
    let observed = [
        call(("api", "team1"), wl("old", "team1"), 80, T0 - 86_400_000),
        call(("api", "team1"), wl("gone", "team1"), 80, T0 - 1),
    ];
    let r = report(&declared(yaml), &observed);
    let c = &r.clients[0];
    assert!(c.missing.is_empty(), "a call seen only before the window is not missing: {c:#?}");
    assert_eq!(c.unused[0].last_seen_ms, Some(T0 - 86_400_000));
}

#[test]
fn failed_attempts_count_as_observed() {
    let mut refused = call(("api", "team1"), wl("db", "team1"), 5432, T0 + 1);
    refused.established = 0;
    refused.failed = 3;
    let r = report(&[], &[refused]);
    assert_eq!((r.clients[0].missing[0].established, r.clients[0].missing[0].failed), (0, 3));
}

#[test]
fn internet_targets_match_by_address_name_and_port() {
    let yaml = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: api\n  namespace: team1\n\
                spec:\n  workload:\n    name: api\n  targets:\n    - internet:\n        ips: [203.0.113.0/24]\n        \
                ports: [443]\n    - internet:\n        domains: ['*.example.com']\n    - internet:\n        \
                ips: [198.51.100.9]\n";
    let out = |ip: &str, domains: &[&str], ports: &[u16]| {
        let mut e = call(
            ("api", "team1"),
            Target::Internet(Internet {
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
                ips: vec![ip.to_owned()],
                ports: Vec::new(),
            }),
            0,
            T0 + 1,
        );
        e.ports = ports.iter().map(|p| tcp(*p)).collect();
        e
    };
    let observed = [
        out("203.0.113.7", &[], &[443, 80]), // 443 allowed by the CIDR, 80 not
        out("192.0.2.1", &["api.example.com"], &[8443]),
        out("192.0.2.2", &["example.com"], &[443]), // the wildcard needs a label below
    ];
    let r = report(&declared(yaml), &observed);
    let c = &r.clients[0];
    let missing: Vec<(Vec<String>, Vec<u16>)> = c
        .missing
        .iter()
        .map(|e| match &e.server {
            Target::Internet(i) => (i.ips.clone(), e.ports.iter().map(|p| p.port).collect()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(missing, [(vec!["192.0.2.2".to_owned()], vec![443]), (vec!["203.0.113.7".to_owned()], vec![80])]);
    assert_eq!(c.covered.len(), 2);
    assert_eq!(c.unused.len(), 1, "198.51.100.9 was never called");
    assert!(domain_matches("*.Example.com.", "a.b.example.com"));
    assert!(!domain_matches("*.example.com", "badexample.com"));
}

#[test]
fn kafka_names_a_workload_and_cloud_targets_are_not_observable() {
    let yaml = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: api\n  namespace: team1\n\
                spec:\n  workload:\n    name: api\n  targets:\n    - kafka:\n        name: kafka.infra\n        topics:\n          \
                - name: orders\n            operations: [produce]\n    - aws:\n        arn: arn:aws:s3:::bucket\n";
    let r = report(&declared(yaml), &[call(("api", "team1"), wl("kafka", "infra"), 9092, T0 + 1)]);
    let c = &r.clients[0];
    assert_eq!((c.missing.len(), c.covered.len(), c.unused.len(), c.not_observable.len()), (0, 1, 0, 1));
}

#[test]
fn amending_appends_the_missing_targets_in_the_declared_version() {
    let yaml = "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata:\n  name: transaction-service\n  \
                namespace: team1\nspec:\n  service:\n    name: transaction-service\n  calls:\n    - name: telemetry.team4\n";
    let docs = declared(yaml);
    let observed = [
        call(("transaction-service", "team1"), wl("ledger", "team3"), 8080, T0 + 1),
        call(("transaction-service", "team1"), wl("telemetry", "team4"), 8080, T0 + 1),
        call(("web", "team1"), wl("transaction-service", "team1"), 8080, T0 + 1),
    ];
    let r = report(&docs, &observed);
    let amended = amend(&r, &docs, IntentsVersion::V2Beta1);
    assert_eq!(amended.len(), 2);
    let (doc, version) = &amended[0];
    assert_eq!((doc.client_name.as_str(), *version), ("transaction-service", IntentsVersion::V1Alpha2));
    assert_eq!(names(doc.targets.clone()), ["telemetry.team4", "ledger.team3"]);
    let yaml = crate::render_yaml(std::slice::from_ref(doc), *version).unwrap_or_else(|e| panic!("{e}"));
    assert!(yaml.contains("    - name: telemetry.team4\n    - name: ledger.team3\n"), "{yaml}");
    // A client with no ClientIntents gets a new document, its own namespace left implicit.
    let (doc, version) = &amended[1];
    assert_eq!((doc.client_name.as_str(), *version), ("web", IntentsVersion::V2Beta1));
    assert_eq!(doc.targets, [Target::workload("transaction-service", None, Some("Deployment"))]);
}

#[test]
fn a_client_at_a_time_gives_the_whole_audit() {
    let yaml = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: batch\n  namespace: team1\n\
                spec:\n  workload:\n    name: batch\n    kind: CronJob\n  targets:\n    - kubernetes:\n        name: db\n\
                ---\napiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: api\n  namespace: team1\n\
                spec:\n  workload:\n    name: api\n  targets:\n    - kubernetes:\n        name: db\n    - kubernetes:\n        name: cache\n";
    let declared = declared(yaml);
    // Sorted as the server streams them: by client (name, namespace, kind).
    let mut observed = vec![
        call(("api", "team1"), wl("db", "team1"), 5432, T0 + 1),
        call(("api", "team1"), wl("queue", "team1"), 5672, T0 + 1),
        call(("batch", "team1"), wl("db", "team1"), 5432, T0 + 1),
        call(("web", "team1"), wl("api", "team1"), 8080, T0 - 10),
    ];
    observed[2].client.kind = Some("Job".into());
    let whole = report(&declared, &observed);
    let mut auditor = Auditor::new(&declared, &AuditScope::default(), T0);
    for run in observed.chunk_by(|a, b| a.client == b.client) {
        auditor.observe(run);
    }
    assert_eq!(auditor.finish(), whole);
    assert_eq!(whole.clients.len(), 4, "api, batch (Job, seen), batch (CronJob, declared), web: {whole:#?}");
}
