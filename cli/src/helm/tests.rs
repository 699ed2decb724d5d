use mapper_intents::helm::Release;

use super::*;

const MINUTE: i64 = 60_000;
const NOW: i64 = 1_800_000_000_000;

fn release(revision: u32, status: &str, calls: &[&str]) -> Release {
    let calls: String = calls.iter().map(|c| format!("    - name: {c}\n")).collect();
    Release {
        name: "payments".into(),
        namespace: "team1".into(),
        revision,
        status: status.into(),
        last_deployed: Some(format!("2026-11-{:02}T10:00:00Z", revision % 28 + 1)),
        description: "Upgrade complete".into(),
        chart_name: "payments".into(),
        chart_version: "1.2.0".into(),
        manifest: format!(
            "---\n# Source: payments/templates/intents.yaml\napiVersion: k8s.otterize.com/v1alpha2\nkind: \
             ClientIntents\nmetadata:\n  name: transaction-service\nspec:\n  service:\n    name: \
             transaction-service\n  calls:\n{calls}"
        ),
    }
}

fn edge(server: &str, namespace: &str, last_seen_ms: i64) -> Edge {
    Edge {
        client: Workload::new("transaction-service", "team1", "Deployment"),
        server: Target::workload(server, Some(namespace), Some("Deployment")),
        ports: vec![mapper_intents::Port { port: 8080, protocol: mapper_intents::Protocol::Tcp }],
        established: 3,
        failed: 0,
        first_seen_ms: last_seen_ms - MINUTE,
        last_seen_ms,
        via_services: Vec::new(),
    }
}

fn history(releases: &[Release]) -> (History, Vec<DeclaredRevision<'_>>) {
    let history = History { name: "payments".into(), namespace: "team1".into(), revisions: releases.to_vec() };
    let revisions = releases
        .iter()
        .map(|release| DeclaredRevision { release, docs: release.declared().unwrap_or_else(|e| panic!("{e}")).0 })
        .collect();
    (history, revisions)
}

fn targets(calls: &[Call]) -> Vec<String> {
    calls.iter().map(|c| format!("{} -> {}", client_text(&c.client), target_text(&c.target))).collect()
}

#[test]
fn each_revision_adds_and_removes_relative_to_the_one_before() {
    let releases = [
        release(1, "superseded", &["ledger.team3", "telemetry.team4"]),
        // `telemetry` without namespace is the same call: the client's namespace is not team4,
        // so this one differs; `ledger.team3` is removed.
        release(2, "superseded", &["telemetry.team4", "audit"]),
        release(3, "deployed", &["telemetry.team4", "audit", "ledger.team3"]),
        release(4, "pending-upgrade", &["audit"]),
    ];
    let (_, revisions) = history(&releases);
    let observed = [edge("ledger", "team3", NOW - 2 * MINUTE), edge("telemetry", "team4", NOW - 30 * 86_400_000)];
    let changes = changes(&revisions, &observed, NOW - 86_400_000);
    assert_eq!(changes.len(), 4);
    assert_eq!(
        targets(&changes[0].added),
        ["transaction-service.team1 -> ledger.team3", "transaction-service.team1 -> telemetry.team4"]
    );
    assert!(changes[0].removed.is_empty());
    assert_eq!(targets(&changes[1].added), ["transaction-service.team1 -> audit.team1"]);
    let removed = &changes[1].removed;
    assert_eq!(removed.len(), 1);
    assert_eq!(target_text(&removed[0].call.target), "ledger.team3");
    // Still used two minutes ago, but declared again in 3: not blocked.
    assert_eq!((removed[0].last_used_ms, removed[0].declared_again_in), (Some(NOW - 2 * MINUTE), Some(3)));
    assert!(!removed[0].blocked());
    assert_eq!(targets(&changes[2].added), ["transaction-service.team1 -> ledger.team3"]);
    // Revision 4 removes both; ledger is still used (blocked), telemetry was last used before
    // the window (not in use).
    let removed = &changes[3].removed;
    assert_eq!(
        removed.iter().map(|r| target_text(&r.call.target)).collect::<Vec<_>>(),
        ["telemetry.team4", "ledger.team3"]
    );
    assert_eq!((removed[0].last_used_ms, removed[0].blocked()), (None, false));
    assert_eq!((removed[1].last_used_ms, removed[1].blocked()), (Some(NOW - 2 * MINUTE), true));
}

#[test]
fn the_views_say_what_a_removal_means() {
    let releases = [release(6, "superseded", &["ledger.team3"]), release(7, "deployed", &[])];
    let (history, revisions) = history(&releases);
    let changes = changes(&revisions, &[edge("ledger", "team3", NOW - 2 * MINUTE)], i64::MIN);
    assert_eq!(
        text(&history, &changes, NOW),
        "Helm release team1/payments: 2 revisions kept\nrevision 6 (2026-11-07, superseded, chart payments 1.2.0)\n  \
         added ledger.team3 to transaction-service.team1\nrevision 7 (2026-11-08, deployed, chart payments 1.2.0)\n  \
         revision 7 (2026-11-08) removed ledger.team3 from transaction-service.team1; transaction-service still \
         called it 2 minutes ago: blocked once enforced\n"
    );
    let md = markdown(&history, &changes, NOW);
    assert!(
        md.contains(
            "| 7 (deployed) | 2026-11-08 | removed | `transaction-service.team1` | `ledger.team3` | **blocked once \
             enforced**: transaction-service still called it 2 minutes ago: blocked once enforced |"
        ),
        "{md}"
    );
    let json = json_value(&history, &changes);
    assert_eq!(json["apiVersion"], "mapper.helm-history/v1");
    assert_eq!(json["summary"]["blocked"], 1);
    let removed = &json["revisions"][1]["removed"][0];
    assert_eq!(removed["target"], "ledger.team3");
    assert_eq!(removed["client"]["name"], "transaction-service");
    assert_eq!(removed["blocked_once_enforced"], true);
    assert_eq!(removed["declared_again_in"], Value::Null);
    assert!(removed["last_used"].is_string(), "{json:#}");
    // Not observed at all: said so, not blocked.
    let changes = super::changes(&revisions, &[], i64::MIN);
    assert!(
        text(&history, &changes, NOW).ends_with("transaction-service was not observed calling it in the window\n"),
        "{}",
        text(&history, &changes, NOW)
    );
}

#[test]
fn ages_are_rounded_down_to_one_unit() {
    assert_eq!(ago_text(NOW, NOW - 59_999), "just now");
    assert_eq!(ago_text(NOW, NOW + 5_000), "just now");
    assert_eq!(ago_text(NOW, NOW - MINUTE), "1 minute ago");
    assert_eq!(ago_text(NOW, NOW - 119 * MINUTE), "1 hour ago");
    assert_eq!(ago_text(NOW, NOW - 3 * 86_400_000), "3 days ago");
}
