//! `mapper list`, `mapper visualize` and `mapper reset` against a real mapper-server.

mod support;

use support::{Server, assert_golden, ok, stderr};

fn full() -> Server {
    let server = Server::start(None);
    support::seed(&server);
    support::kinds(&server);
    server
}

#[test]
fn list_as_text_and_json() {
    let server = full();
    assert_golden("list.txt", &ok(&server.mapper(&["list"])));
    assert_eq!(
        ok(&server.mapper(&["list", "-n", "team2"])),
        "cache in namespace team2 calls:\n  - ledger in namespace team3 (8080/TCP)\n\
         some-other-transaction-service in namespace team2 calls:\n  - ledger in namespace team3 (8080/TCP)\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&server.mapper(&["list", "--format", "json"])))
        .unwrap_or_else(|e| panic!("list --format json is not JSON: {e}"));
    let clients = json.as_array().unwrap_or_else(|| panic!("not an array: {json}"));
    assert_eq!(clients.len(), 5);
    let api = &clients[0];
    assert_eq!(
        api["client"],
        serde_json::json!({"type": "workload", "name": "api", "namespace": "team1", "kind": "Deployment"})
    );
    assert_eq!(api["calls"][0]["server"]["type"], "workload");
    assert_eq!(api["calls"][0]["server"]["kind"], "StatefulSet");
    assert_eq!(api["calls"][0]["ports"], serde_json::json!([{"port": 6379, "protocol": "TCP"}]));
    assert_eq!(api["calls"][0]["established"], 4);
    assert!(api["calls"].as_array().is_some_and(|c| c.iter().any(|c| c["server"]["type"] == "api_server")));
    let report = &clients[2];
    assert_eq!(report["client"]["kind"], "CronJob");
    assert!(report["calls"].as_array().is_some_and(|c| c.iter().any(|c| c["server"]
        == serde_json::json!({"type": "external", "ip": "203.0.113.7", "dns_names": ["reports.example.com"]}))));
}

#[test]
fn visualize_as_dot_mermaid_svg_and_png() {
    let server = full();
    assert_golden("map.dot", &ok(&server.mapper(&["visualize"])));
    assert_golden("map.mmd", &ok(&server.mapper(&["visualize", "--format", "mermaid"])));
    let svg = ok(&server.mapper(&["visualize", "--format", "svg"]));
    assert!(svg.starts_with("<?xml") && svg.ends_with("</svg>\n"), "{svg}");
    for label in [
        "transaction-service",
        "nightly-report",
        "CronJob · team1",
        "StatefulSet · team2",
        "reports.example.com",
        "8080/TCP",
        "6379/TCP",
    ] {
        assert!(svg.contains(label), "{label} missing from the SVG");
    }
    // The format follows the -o extension.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let png = dir.path().join("map.png");
    let out = server.mapper(&["visualize", "-o", png.to_str().unwrap_or_default()]);
    if stderr(&out).contains("no fonts found") {
        assert_eq!(out.status.code(), Some(1));
    } else {
        ok(&out);
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    }
}

#[test]
fn reset_needs_yes_without_a_terminal_and_empties_the_map() {
    let server = full();
    let refused = server.mapper(&["reset"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert_eq!(
        stderr(&refused),
        "error: refusing to reset the map without confirmation: stdin is not a terminal; pass --yes\n"
    );
    assert!(!ok(&server.mapper(&["list"])).is_empty(), "a refused reset must change nothing");
    let out = server.mapper(&["reset", "--yes"]);
    ok(&out);
    assert!(stderr(&out).contains("Removed 8 edge(s)"), "{}", stderr(&out));
    assert_eq!(ok(&server.mapper(&["list"])), "");
    assert_eq!(ok(&server.mapper(&["export"])), "");
}

#[test]
fn reset_on_a_terminal_asks_first() {
    // `script` (util-linux) gives mapper a terminal; without it there is nothing to test here.
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to provide a terminal");
        return;
    }
    let server = full();
    let run = |answer: &str| {
        let command = format!("{} --mapper-url {} reset", env!("CARGO_BIN_EXE_mapper"), server.url);
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("script: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(answer.as_bytes()).unwrap_or_else(|e| panic!("stdin: {e}"));
        }
        child.wait_with_output().unwrap_or_else(|e| panic!("script: {e}"))
    };
    let declined = run("n\n");
    let text = String::from_utf8_lossy(&declined.stdout).into_owned();
    assert!(text.contains("has recorded? [y/N]") && text.contains("error: reset cancelled"), "{text}");
    assert_eq!(declined.status.code(), Some(1));
    assert!(!ok(&server.mapper(&["list"])).is_empty(), "declining must change nothing");
    let confirmed = run("y\n");
    assert!(String::from_utf8_lossy(&confirmed.stdout).contains("Removed 8 edge(s)"));
    assert_eq!(ok(&server.mapper(&["list"])), "");
}
