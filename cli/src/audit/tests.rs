use mapper_intents::audit::{DeclaredDoc, audit};
use mapper_intents::{Port, Protocol, ServiceName};

use super::*;

const T0: i64 = 1_800_000_000_000;

fn call(server: Target, port: u16, established: u64, failed: u64) -> Edge {
    Edge {
        client: Workload::new("transaction-service", "team1", "Deployment"),
        server,
        ports: vec![Port { port, protocol: Protocol::Tcp }],
        established,
        failed,
        first_seen_ms: T0,
        last_seen_ms: T0 + 60_000,
        via_services: vec![ServiceName { name: "ledger".into(), namespace: "team3".into() }],
    }
}

fn story() -> (AuditReport, BTreeMap<Workload, Vec<String>>) {
    let text = "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata:\n  name: transaction-service\n  \
                namespace: team1\nspec:\n  service:\n    name: transaction-service\n  calls:\n    - name: telemetry.team4\n    \
                - name: svc:reports\n";
    let declared: Vec<DeclaredDoc> =
        declared::read_text(text, "charts/ts/intents.yaml", "audit --declared").unwrap_or_else(|e| panic!("{e}"));
    let observed = [
        call(Target::workload("ledger", Some("team3"), Some("Deployment")), 8080, 8, 0),
        call(Target::workload("telemetry", Some("team4"), Some("Deployment")), 8080, 0, 2),
    ];
    let report = audit(&declared, &observed, &AuditScope::default(), T0);
    let mut unattributed = BTreeMap::new();
    unattributed.insert(Workload::new("transaction-service", "team1", "Deployment"), vec!["192.168.1.4".to_owned()]);
    (report, unattributed)
}

#[test]
fn the_table_says_at_first_glance_what_would_be_blocked() {
    let (report, unattributed) = story();
    let view = View { report: &report, unattributed: &unattributed, since: None, now_ms: T0 + 120_000 };
    let table = view.table(false);
    let expected = "\
transaction-service.team1 (Deployment) — declared in charts/ts/intents.yaml: document 1
  MISSING  ledger.team3 (Deployment)  8080/TCP  8 connections          last seen 2027-01-15T08:01:00Z  (blocked once enforced)
  UNUSED   svc:reports.team1                                           never seen
  COVERED  telemetry.team4            8080/TCP  all 2 attempts failed  last seen 2027-01-15T08:01:00Z
  1 call to addresses mapper-server could not attribute (192.168.1.4): mapper list --include-unresolved

1 missing call (blocked once enforced) · 1 unused target · 1 covered target · 1 client · window: everything mapper-server keeps
";
    assert_eq!(table, expected);
    assert!(view.table(true).contains("\x1b[1;31mMISSING \x1b[0m"), "colour only when asked");
    assert!(!table.contains('\x1b'));
}

#[test]
fn markdown_and_json_carry_the_same_findings() {
    let (report, unattributed) = story();
    let view = View {
        report: &report,
        unattributed: &unattributed,
        since: Some(Duration::from_secs(3600)),
        now_ms: T0 + 120_000,
    };
    let md = view.markdown();
    assert!(md.starts_with("### mapper audit: 1 missing call, 1 unused target, 1 covered target\n"), "{md}");
    assert!(
        md.contains("| ❌ missing | `transaction-service.team1` | `ledger.team3 (Deployment)` | 8080/TCP | 8 connections (blocked once enforced) | 2027-01-15T08:01:00Z |"),
        "{md}"
    );
    let json = view.json();
    assert_eq!(view.json_text(), format!("{json:#}\n"), "written a client at a time, the same document");
    let empty = AuditReport { clients: Vec::new() };
    let none = View { report: &empty, ..view };
    assert_eq!(none.json_text(), format!("{:#}\n", none.json()), "no clients");
    assert_eq!(json["apiVersion"], "mapper.audit/v1");
    assert_eq!(json["summary"], json!({"clients": 1, "missing": 1, "unused": 1, "covered": 1}));
    let client = &json["clients"][0];
    assert_eq!(client["client"], json!({"name": "transaction-service", "namespace": "team1", "kind": "Deployment"}));
    assert_eq!(client["missing"][0]["target"], "ledger.team3");
    assert_eq!(client["missing"][0]["server"]["type"], "workload");
    assert_eq!(client["missing"][0]["via_services"], json!(["ledger.team3"]));
    assert_eq!(client["missing"][0]["established"], 8);
    assert_eq!(
        client["unused"][0],
        json!({"target": "svc:reports.team1", "declared": {"type": "service", "name": "reports", "namespace": "team1"}, "last_seen": null})
    );
    assert_eq!(client["covered"][0]["failed"], 2);
    assert_eq!(client["unattributed_addresses"], json!(["192.168.1.4"]));
    assert_eq!(json["window"]["since"], "2027-01-15T07:02:00Z");
}

#[test]
fn workload_flags_need_a_namespace() {
    assert_eq!(parse_workload("a.b"), Ok(("a".to_owned(), "b".to_owned())));
    assert!(parse_workload("a").is_err());
    assert!(parse_workload("a.b.c").is_err());
}

#[test]
fn any_count_and_timestamp_the_server_holds_is_reported_without_panicking() {
    let text = "apiVersion: k8s.otterize.com/v1alpha3\nkind: ClientIntents\nmetadata:\n  name: transaction-service\n  \
                namespace: team1\nspec:\n  service:\n    name: transaction-service\n  calls:\n    - name: ledger.team3\n";
    let declared: Vec<DeclaredDoc> =
        declared::read_text(text, "intents.yaml", "audit --declared").unwrap_or_else(|e| panic!("{e}"));
    for at in [i64::MAX, 253_402_300_800_000, -5, i64::MIN] {
        let mut observed = Vec::new();
        for port in [8080, 8443] {
            let mut e = call(Target::workload("ledger", Some("team3"), Some("Deployment")), port, u64::MAX, u64::MAX);
            (e.first_seen_ms, e.last_seen_ms) = (at, at);
            observed.push(e);
        }
        observed.push(call(Target::workload("telemetry", Some("team4"), None), 80, u64::MAX, 0));
        observed[2].last_seen_ms = at;
        let report = audit(&declared, &observed, &AuditScope::default(), i64::MIN);
        let view = View { report: &report, unattributed: &BTreeMap::new(), since: None, now_ms: at };
        let (table, json, markdown) = (view.table(false), view.json(), view.markdown());
        assert_eq!(view.json_text(), format!("{json:#}\n"));
        assert!(table.contains(&format!("{at} ms since the Unix epoch")), "{table}");
        assert_eq!(json["clients"][0]["covered"][0]["established"], u64::MAX, "{json}");
        assert!(!markdown.is_empty());
    }
}
