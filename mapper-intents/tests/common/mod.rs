//! Fixtures shared by the integration tests.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::PathBuf;

use mapper_intents::{Edge, Internet, Port, Protocol, Target, Workload};

/// An edge with one TCP port and plausible counts.
pub fn edge(client: Workload, server: Target, port: u16) -> Edge {
    Edge {
        client,
        server,
        ports: vec![Port { port, protocol: Protocol::Tcp }],
        established: 5,
        failed: 0,
        first_seen_ms: 1_700_000_000_000,
        last_seen_ms: 1_700_000_060_000,
        via_services: Vec::new(),
    }
}

/// The seed scenario (docs/formats.md, "Golden files"): two clients in team1 and team2 calling ledger in team3.
pub fn seed_edges() -> Vec<Edge> {
    let ledger = Target::workload("ledger", Some("team3"), Some("Deployment"));
    vec![
        edge(Workload::new("transaction-service", "team1", "Deployment"), ledger.clone(), 8080),
        edge(Workload::new("some-other-transaction-service", "team2", "Deployment"), ledger, 8080),
    ]
}

/// Clients and servers of several kinds, a Service target, the API server and the internet.
pub fn kinds_edges() -> Vec<Edge> {
    let api = Workload::new("api", "team1", "Deployment");
    let report = Workload::new("nightly-report", "team1", "CronJob");
    let cache = Workload::new("cache", "team2", "StatefulSet");
    vec![
        edge(api.clone(), Target::workload("cache", Some("team2"), Some("StatefulSet")), 6379),
        edge(api.clone(), Target::workload("ledger", Some("team1"), Some("Deployment")), 8080),
        edge(api.clone(), Target::service("legacy-db", Some("team1")), 5432),
        edge(api.clone(), Target::service("kubernetes", Some("default")), 443),
        edge(report.clone(), Target::workload("api", Some("team1"), Some("Deployment")), 8080),
        edge(report.clone(), Target::workload("ledger", Some("team1"), Some("Deployment")), 8080),
        edge(
            report,
            Target::Internet(Internet {
                domains: vec!["reports.example.com".to_owned()],
                ips: vec!["203.0.113.7".to_owned()],
                ports: Vec::new(),
            }),
            443,
        ),
        edge(cache, Target::workload("ledger", Some("team1"), Some("Deployment")), 8080),
    ]
}

/// Path of a golden file.
pub fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden").join(name)
}

/// Compares `actual` with a golden file byte for byte. With `UPDATE_GOLDEN=1` the file is
/// (re)written instead — except the two reference files (docs/formats.md, "Golden files").
pub fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    let reference = matches!(name, "seed_v1alpha2.yaml" | "policy_ledger_from_team1.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() && !reference {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        actual == expected,
        "output differs from {}\n--- expected\n{expected}--- actual\n{actual}---",
        path.display()
    );
}
