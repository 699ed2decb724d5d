//! `--by-release` against a real mapper-server whose inventory puts some owners in Helm
//! releases: `mapper list --by-release` (text and JSON) and `mapper export --by-release -o DIR`
//! (one file per release, each read back with the reader `mapper audit --declared` uses), and
//! the errors of a DIR that cannot be used.

mod support;

use std::path::Path;

use mapper_cli::declared;
use mapper_intents::IntentsVersion;
use support::{Server, ok, stderr};

fn server(dir: &Path) -> Server {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let server = Server::start_on(data, None, &support::inventory_with_releases(dir));
    support::seed(&server);
    support::kinds(&server);
    server
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    names.sort();
    names
}

/// The clients (`name.namespace`) and versions of the ClientIntents in `path`, read as `mapper
/// audit --declared` reads a chart.
fn clients_in(path: &Path) -> Vec<(String, IntentsVersion)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs = declared::read_text(&text, &path.display().to_string(), "test")
        .unwrap_or_else(|e| panic!("{} does not read as ClientIntents: {e}\n{text}", path.display()));
    docs.iter()
        .map(|d| (format!("{}.{}", d.doc.client_name, d.doc.namespace.as_deref().unwrap_or("?")), d.version))
        .collect()
}

#[test]
fn export_by_release_writes_one_file_per_release_for_its_chart() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let server = server(work.path());
    let dir = work.path().join("intents");
    let out = server.mapper(&["export", "--by-release", "-o", dir.to_str().unwrap_or_default()]);
    ok(&out);
    assert_eq!(files_in(&dir), ["cache.team2.yaml", "no-release.yaml", "payments.team1.yaml"]);
    let v2 = IntentsVersion::V2Beta1;
    assert_eq!(
        clients_in(&dir.join("payments.team1.yaml")),
        [("api.team1".to_owned(), v2), ("transaction-service.team1".to_owned(), v2)]
    );
    assert_eq!(clients_in(&dir.join("cache.team2.yaml")), [("cache.team2".to_owned(), v2)]);
    assert_eq!(
        clients_in(&dir.join("no-release.yaml")),
        [("nightly-report.team1".to_owned(), v2), ("some-other-transaction-service.team2".to_owned(), v2)]
    );
    let log = stderr(&out);
    assert!(log.contains("payments.team1.yaml: 2 ClientIntents (release payments.team1)"), "{log}");
    assert!(log.contains("no-release.yaml: 2 ClientIntents (no release)"), "{log}");
    assert!(log.contains("Wrote 5 ClientIntents in 3 files to"), "{log}");
    let order: Vec<&str> = log.lines().filter_map(|l| l.split_once(": ").map(|(path, _)| path)).collect();
    let order: Vec<&str> = order.iter().filter_map(|p| p.rsplit('/').next()).collect();
    assert_eq!(order, ["cache.team2.yaml", "payments.team1.yaml", "no-release.yaml"], "no release last: {log}");

    // The files hold what a plain export holds, split: together, every document once.
    let whole = ok(&server.mapper(&["export"]));
    let mut together: Vec<(String, IntentsVersion)> =
        files_in(&dir).iter().flat_map(|f| clients_in(&dir.join(f))).collect();
    together.sort();
    let plain = declared::read_text(&whole, "export", "test").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(together.len(), plain.len());

    // Versions, formats and filters still apply.
    let old = work.path().join("old");
    ok(&server.mapper(&[
        "export",
        "--by-release",
        "-o",
        old.to_str().unwrap_or_default(),
        "--output-version",
        "v1alpha2",
        "-n",
        "team1",
    ]));
    assert_eq!(files_in(&old), ["no-release.yaml", "payments.team1.yaml"], "-n team1 has no cache client");
    let payments = std::fs::read_to_string(old.join("payments.team1.yaml")).unwrap_or_default();
    assert!(payments.starts_with("apiVersion: k8s.otterize.com/v1alpha2\n"), "{payments}");
    assert!(clients_in(&old.join("payments.team1.yaml")).iter().all(|(_, v)| *v == IntentsVersion::V1Alpha2));
    let json = work.path().join("json");
    ok(&server.mapper(&["export", "--by-release", "-o", json.to_str().unwrap_or_default(), "--format", "json"]));
    assert_eq!(files_in(&json), ["cache.team2.json", "no-release.json", "payments.team1.json"]);
    assert_eq!(clients_in(&json.join("payments.team1.json")).len(), 2, "a JSON List reads back too");
}

#[test]
fn export_by_release_refuses_what_it_cannot_use_and_names_it() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let server = server(work.path());

    let out = server.mapper(&["export", "--by-release"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", stderr(&out));
    assert!(stderr(&out).contains("--output <PATH>"), "{}", stderr(&out));
    let out = server.mapper(&["export", "--by-release", "-o", "x", "--output-type", "dir"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let file = work.path().join("a-file");
    std::fs::write(&file, "").unwrap_or_else(|e| panic!("{e}"));
    let out = server.mapper(&["export", "--by-release", "-o", file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("{} is not a directory", file.display())), "{}", stderr(&out));

    let under_file = file.join("intents");
    let out = server.mapper(&["export", "--by-release", "-o", under_file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = format!("cannot create directory {}: Not a directory", under_file.display());
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));

    // A release's file that cannot be written: its path and the cause.
    let dir = work.path().join("blocked");
    std::fs::create_dir_all(dir.join("payments.team1.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let out = server.mapper(&["export", "--by-release", "-o", dir.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = format!("cannot write {}: Is a directory", dir.join("payments.team1.yaml").display());
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
}

#[test]
fn list_by_release_groups_clients_under_their_release() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let server = server(work.path());
    let text = ok(&server.mapper(&["list", "--by-release", "-n", "team1,team2"]));
    let headings: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ') && !l.is_empty()).collect();
    assert_eq!(
        headings,
        ["release cache in namespace team2:", "release payments in namespace team1:", "no release:"],
        "{text}"
    );
    let payments = text.split("release payments in namespace team1:\n").nth(1).unwrap_or_default();
    let payments = payments.split("\n\n").next().unwrap_or_default();
    assert!(payments.contains("  api in namespace team1 calls:\n"), "{text}");
    assert!(
        payments.contains("  transaction-service in namespace team1 calls:\n    - ledger in namespace team3"),
        "{text}"
    );
    assert!(!payments.contains("nightly-report"), "{text}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.mapper(&["list", "--by-release", "--format", "json"])))
            .unwrap_or_else(|e| panic!("not JSON: {e}"));
    assert_eq!(json[1]["release"], serde_json::json!({"name": "payments", "namespace": "team1"}));
    let names: Vec<&str> =
        json[1]["clients"].as_array().into_iter().flatten().filter_map(|c| c["client"]["name"].as_str()).collect();
    assert_eq!(names, ["api", "transaction-service"]);
    assert_eq!(json[2]["release"], serde_json::Value::Null);

    // Without --by-release, a workload's release is in its JSON, and the text is as before.
    let plain: serde_json::Value =
        serde_json::from_str(&ok(&server.mapper(&["list", "--format", "json", "-n", "team1"])))
            .unwrap_or_else(|e| panic!("not JSON: {e}"));
    let api =
        plain.as_array().into_iter().flatten().find(|c| c["client"]["name"] == "api").cloned().unwrap_or_default();
    assert_eq!(api["client"]["release"]["name"], "payments", "{plain}");
    assert!(!ok(&server.mapper(&["list", "-n", "team1"])).contains("release"));
}
