//! `mapper dashboard` against a real mapper-server holding the seed: what it refuses (no
//! token, a foreign Host, a foreign Origin or site, too large an upload, anything but reading)
//! and what it answers (the page from the binary, the map, the audit story, ClientIntents).
//! The page itself is tested in a real browser by dashboard_browser.rs.

mod support;

use serde_json::Value;
use support::dashboard::Dashboard;
use support::{Server, ok};

const CHART: &str = include_str!("../../deploy/local/charts/transaction-service/clientintents.yaml");

fn seeded() -> (Server, Dashboard) {
    let server = Server::start(None);
    support::seed(&server);
    support::kinds(&server);
    let dashboard = Dashboard::start(&server.url, &["--refresh", "1s"]);
    (server, dashboard)
}

#[test]
fn requests_without_the_token_from_a_foreign_host_or_origin_are_refused() {
    let (_server, d) = seeded();
    let map = d.path("api/map");
    let (status, _) = d.get(&map, &[]);
    assert_eq!(status, 200, "the token, the dashboard's Host: answered");

    // No token, a wrong one, one cut short.
    for path in [
        "/api/map".to_owned(),
        "/".to_owned(),
        format!("/{}x/api/map", d.token),
        format!("/{}/api/map", &d.token[..63]),
    ] {
        let (status, body) = d.get(&path, &[]);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("token"), "{body}");
    }
    let wrong = format!("/{}/api/map", "0".repeat(64));
    assert_eq!(d.get(&wrong, &[]).0, 403);

    // A page of another name (DNS rebinding: evil.example resolving to 127.0.0.1) sends its
    // own name as Host; another port is another origin.
    let port = d.authority.rsplit_once(':').map(|(_, p)| p.to_owned()).unwrap_or_default();
    for host in [format!("evil.example:{port}"), "127.0.0.1:1".to_owned(), format!("localhost.evil.example:{port}")] {
        let (status, body) = d.raw(&format!("GET {map} HTTP/1.1\r\nHost: {host}\r\n"), b"");
        assert_eq!(status, 403, "Host {host}: {body}");
        assert!(body.contains("Host"), "{body}");
    }
    let (status, _) = d.raw(&format!("GET {map} HTTP/1.1\r\nHost: localhost:{port}\r\n"), b"");
    assert_eq!(status, 200, "localhost with the port is this machine");

    // Another site's page (its Origin, or the browser's Sec-Fetch-Site) is refused, with the
    // token or not; so is a POST from elsewhere.
    for header in [
        "Origin: http://evil.example",
        "Origin: null",
        &format!("Origin: http://127.0.0.1:{}", port.parse::<u32>().unwrap_or(0) + 1),
    ] {
        let (status, body) = d.get(&map, &[header]);
        assert_eq!(status, 403, "{header}: {body}");
    }
    for header in ["Sec-Fetch-Site: cross-site", "Sec-Fetch-Site: same-site"] {
        assert_eq!(d.get(&map, &[header]).0, 403, "{header}");
    }
    let audit = d.path("api/audit");
    let body = br#"{"files":[]}"#;
    let (status, _) =
        d.raw(&format!("POST {audit} HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\n", d.authority), body);
    assert_eq!(status, 403);
    let (status, _) = d.raw(
        &format!(
            "POST {audit} HTTP/1.1\r\nHost: {}\r\nOrigin: http://{}\r\nSec-Fetch-Site: same-origin\r\n",
            d.authority, d.authority
        ),
        body,
    );
    assert_eq!(status, 200, "the page's own POST");
}

#[test]
fn the_page_comes_from_the_binary_and_only_reading_is_served() {
    let (_server, d) = seeded();
    let (status, html) = d.get(&d.path(""), &[]);
    assert_eq!(status, 200);
    assert!(html.contains("<script src=\"app.js\"></script>") && html.contains("app.css"), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "the page names no other site: {html}");
    let (status, js) = d.get(&d.path("app.js"), &[]);
    assert_eq!(status, 200);
    assert!(js.len() > 100_000 && js.contains("cytoscape"), "the bundle: {} bytes", js.len());
    let (status, _) = d.get(&d.path("app.css"), &[]);
    assert_eq!(status, 200);
    assert_eq!(d.get(&d.path("nothing-here"), &[]).0, 404);
    // Read-only: no other method, no reset.
    for method in ["DELETE", "PUT", "POST"] {
        let path = d.path("api/map");
        let (status, _) = d.raw(&format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", d.authority), b"");
        assert_eq!(status, 405, "{method}");
    }
    assert_eq!(d.get(&d.path("api/reset"), &[]).0, 404);
}

#[test]
fn the_map_the_audit_story_and_intents_through_the_api() {
    let (server, d) = seeded();
    let (status, body) = d.get(&d.path("api/map"), &[]);
    assert_eq!(status, 200, "{body}");
    let map: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("the map is not JSON: {e}: {body}"));
    // As many calls as `mapper list` has.
    let list: Value = serde_json::from_str(&ok(&server.mapper(&["list", "--format", "json", "--include-unresolved"])))
        .unwrap_or_else(|e| panic!("list: {e}"));
    let calls: usize = list.as_array().map_or(0, |c| c.iter().map(|c| c["calls"].as_array().map_or(0, Vec::len)).sum());
    assert_eq!(map["edges"].as_array().map(Vec::len), Some(calls), "{map}");
    let ledger = "w/team1/transaction-service/Deployment|w/team3/ledger/Deployment";
    let edge =
        map["edges"].as_array().and_then(|e| e.iter().find(|e| e["id"] == ledger)).unwrap_or_else(|| panic!("{map}"));
    assert_eq!(edge["established"], 5);
    assert_eq!(edge["ports"], serde_json::json!(["8080/TCP"]));
    assert_eq!(edge["via_services"], serde_json::json!(["ledger.team3"]));
    // Unchanged since the version the page knows: a short answer.
    let known = d.path(&format!("api/map?known={}", map["version"].as_str().unwrap_or_default()));
    let (_, body) = d.get(&known, &[]);
    assert!(body.contains("\"unchanged\":true"), "{body}");

    // The audit story: ledger MISSING, telemetry UNUSED, as `mapper audit` says.
    let request = serde_json::json!({"files": [{"name": "clientintents.yaml", "text": CHART}]}).to_string();
    let audit_path = d.path("api/audit");
    let (status, body) = d.raw(
        &format!("POST {audit_path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n", d.authority),
        request.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let audit: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(audit["edges"][ledger], "MISSING", "{audit}");
    assert_eq!(audit["unused"][0]["target"], "telemetry.team4", "{audit}");
    // The same totals as `mapper audit --format json` on the same file and server.
    let out =
        support::mapper(&["--mapper-url", &server.url, "audit", "--declared", "-", "--format", "json"], Some(CHART));
    let cli: Value = serde_json::from_str(&support::stdout(&out)).unwrap_or_else(|e| panic!("mapper audit: {e}"));
    for total in ["clients", "missing", "unused", "covered"] {
        assert_eq!(audit["summary"][total], cli["summary"][total], "{total}: {audit} against {cli}");
    }

    // A bad file names itself; too large an upload is refused before it is read.
    let bad = serde_json::json!({"files": [{"name": "broken.yaml", "text": "apiVersion: k8s.otterize.com/v9\nkind: ClientIntents\nmetadata: {name: x, namespace: y}\n"}]}).to_string();
    let (status, body) = d.raw(&format!("POST {audit_path} HTTP/1.1\r\nHost: {}\r\n", d.authority), bad.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("broken.yaml"), "{body}");
    let huge = vec![b' '; 17 << 20];
    let (status, _) = d.raw(&format!("POST {audit_path} HTTP/1.1\r\nHost: {}\r\n", d.authority), &huge);
    assert_eq!(status, 413);

    // ClientIntents as `mapper export` writes them, byte for byte.
    let client = "w/team1/transaction-service/Deployment".replace('/', "%2F");
    for version in ["v1alpha2", "v2beta1"] {
        let (status, body) = d.get(&d.path(&format!("api/intents?client={client}&version={version}")), &[]);
        assert_eq!(status, 200, "{body}");
        let intents: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let exported = ok(&server.mapper(&["export", "-n", "team1", "--output-version", version]));
        let ours = intents["yaml"].as_str().unwrap_or_default();
        assert!(
            !ours.is_empty() && exported.contains(ours),
            "{version}: the dashboard's\n{ours}\nis not in export's\n{exported}"
        );
    }
    let (status, body) = d.get(&d.path(&format!("api/intents?client={client}&version=v7")), &[]);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn an_unreachable_server_fails_at_start_naming_it() {
    let out = support::mapper(&["--mapper-url", "http://127.0.0.1:1", "dashboard", "--no-browser"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = support::stderr(&out);
    assert!(err.contains("cannot reach mapper-server at http://127.0.0.1:1"), "{err}");
    assert!(out.stdout.is_empty(), "no URL printed for a dashboard that does not serve");
}
