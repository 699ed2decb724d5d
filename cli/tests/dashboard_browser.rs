//! The dashboard page in a real browser (Debian's headless Chromium, driven by playwright-core
//! from cli/dashboard-web/node_modules: `test/browser.mjs`), against a real mapper-server:
//!
//! - the seed map (with Helm releases, kinds of peers, a failed-only call): every workload
//!   and call `mapper list` shows is drawn, the namespace filter hides team2, clicking a call
//!   shows its counts, the audit overlay of the audit story (the chart in
//!   deploy/local/charts/transaction-service/) marks transaction-service → ledger MISSING,
//!   a workload's ClientIntents appear, and a call added on the server is drawn with the view
//!   kept;
//! - 2 000 workloads and 10 000 calls: time to first render, printed.
//!
//! Screenshots and figures go to `target/tmp/dashboard/`. Without Chromium, node or
//! `npm ci` in cli/dashboard-web the tests say so and pass, unless MAPPER_REQUIRE_BROWSER=1
//! (scripts/test.sh sets it): then they fail.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use mapper_cluster::{Peer, Workload};
use mapper_server::store::{AgentBoot, EdgeKey, EdgeStore, Observation, Proto, Side};
use support::dashboard::Dashboard;
use support::{Server, now_ms, ok};

/// One browser at a time: two would share the 2 cores and skew the figures.
static BROWSER: Mutex<()> = Mutex::new(());

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard-web")
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Whether the browser test can run; when it cannot, the reason (a failure with
/// MAPPER_REQUIRE_BROWSER=1).
fn browser_ready() -> bool {
    let chromium = std::env::var("MAPPER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let mut missing = Vec::new();
    if !Path::new(&chromium).exists() {
        missing.push(format!("{chromium} (apt-get install chromium chromium-driver; scripts/lib.sh ensure_browser)"));
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        missing.push("node (Debian: nodejs)".to_owned());
    }
    if !web_dir().join("node_modules/playwright-core").is_dir() {
        missing
            .push(format!("{}/node_modules/playwright-core (scripts/build-web.sh runs npm ci)", web_dir().display()));
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("the browser test needs {}", missing.join(", "));
    assert!(std::env::var_os("MAPPER_REQUIRE_BROWSER").is_none_or(|v| v != "1"), "{reason} (MAPPER_REQUIRE_BROWSER=1)");
    eprintln!("skipped: {reason}");
    false
}

/// Runs `node test/browser.mjs ARGS`; `on_wait` is called when it prints WAITING_FOR_CHANGE
/// (and it is then told to go on). Returns the RESULT JSON.
fn run_browser(args: &[&str], on_wait: impl Fn()) -> serde_json::Value {
    let mut child = Command::new("node")
        .arg(web_dir().join("test/browser.mjs"))
        .args(args)
        .current_dir(web_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")));
    let mut result = None;
    for line in stdout.lines() {
        let line = line.unwrap_or_else(|e| panic!("reading the browser test: {e}"));
        eprintln!("browser: {line}");
        if line == "WAITING_FOR_CHANGE" {
            on_wait();
            let stdin = child.stdin.as_mut().unwrap_or_else(|| panic!("no stdin"));
            stdin.write_all(b"go\n").unwrap_or_else(|e| panic!("stdin: {e}"));
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")));
        }
    }
    let status = child.wait().unwrap_or_else(|e| panic!("node: {e}"));
    assert!(status.success(), "the browser test failed ({status}); its reason is above");
    result.unwrap_or_else(|| panic!("the browser test printed no RESULT"))
}

fn record(line: &str) {
    eprintln!("{line}");
    let path = out_dir().join("figures.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    writeln!(file, "{line}").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn the_seed_map_filters_details_and_the_audit_story_in_a_browser() {
    if !browser_ready() {
        return;
    }
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let server = Server::start_on(data, None, &support::inventory_with_releases(dir.path()));
    support::seed(&server);
    support::kinds(&server);
    // A call that never worked: every attempt from api to ledger refused.
    let mut refused = support::connect(support::API, [10, 244, 1, 8], ([10, 244, 1, 3], 8080), None, 0);
    refused.failed = 3;
    server.ingest(vec![refused], Vec::new());
    let list = ok(&server.mapper(&["list", "--format", "json", "--include-unresolved"]));
    let expected = support::write(dir.path(), "expected.json", &list);
    let chart =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/charts/transaction-service/clientintents.yaml");
    let dashboard = Dashboard::start(&server.url, &["--refresh", "1s"]);
    let out = out_dir();
    let result = run_browser(
        &["seed", &dashboard.url, &expected, chart.to_str().unwrap_or_default(), out.to_str().unwrap_or_default()],
        // The debug pod's call to ledger arrives while the page is open.
        || support::extras(&server),
    );
    record(&format!(
        "dashboard seed map ({} calls): first render {} ms after navigation (map fetched in {} ms, laid out in {} ms)",
        result["calls"], result["firstRenderMs"], result["fetchMs"], result["layoutMs"]
    ));
}

/// 2 000 workloads in 20 namespaces, 10 000 calls (each client 5: 3 in its namespace, 2 to
/// others), written straight into a store.
fn large_store(data: &Path) -> (usize, usize) {
    const WORKLOADS: usize = 2_000;
    const PER_NS: usize = 100;
    let store = EdgeStore::open(&data.join("db")).unwrap_or_else(|e| panic!("open the store: {e}"));
    let workload = |i: usize| Workload::new(format!("w-{i:04}"), format!("ns-{:02}", i / PER_NS), "Deployment");
    let at = now_ms() - 60_000;
    let mut batch = Vec::new();
    for c in 0..WORKLOADS {
        let ns = c / PER_NS;
        for k in 0..5usize {
            let s = if k < 3 {
                ns * PER_NS + (c % PER_NS + 1 + k * 7) % PER_NS
            } else {
                ((ns + 1 + (c * 7 + k * 3) % 19) % 20) * PER_NS + (c * 13 + k) % PER_NS
            };
            batch.push(Observation {
                key: EdgeKey { client: Peer::Workload(workload(c)), server: Peer::Workload(workload(s)) },
                side: Side::Client,
                port: 8080 + (k % 3) as u16,
                proto: if k == 4 { Proto::Udp } else { Proto::Tcp },
                established: 1 + (c % 9) as u64,
                failed: 0,
                first_seen_ms: at - 3_600_000,
                last_seen_ms: at - (c % 3) as i64 * 7_200_000,
                dns_names: Vec::new(),
                via_service: None,
            });
        }
    }
    let edges = batch.len();
    store.apply(&AgentBoot::new("generator", "1"), 1, &batch).unwrap_or_else(|e| panic!("write the store: {e}"));
    (WORKLOADS, edges)
}

#[test]
fn two_thousand_workloads_and_ten_thousand_calls_render_and_stay_interactive() {
    if !browser_ready() {
        return;
    }
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (workloads, edges) = large_store(data.path());
    let server = Server::start_in(data, None);
    let dashboard = Dashboard::start(&server.url, &[]);
    let out = out_dir();
    let result = run_browser(
        &["large", &dashboard.url, &workloads.to_string(), &edges.to_string(), out.to_str().unwrap_or_default()],
        || {},
    );
    record(&format!(
        "dashboard {workloads} workloads / {edges} calls: first render {} ms after navigation (map fetched in {} ms, \
         elements built and added in {} ms, laid out ({}) in {} ms); a zoom redrawn in {} ms, a pan in {} ms; \
         search + time filter {} ms",
        result["firstRenderMs"],
        result["fetchMs"],
        result["syncMs"],
        result["layout"],
        result["layoutMs"],
        result["zoomMs"],
        result["panMs"],
        result["searchAndFilterMs"]
    ));
}
