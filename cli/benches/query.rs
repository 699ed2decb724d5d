//! What reading a large map costs end to end: a real mapper-server (release build) on a store
//! of N generated edges (written straight into the store with `EdgeStore`, see
//! `tests/support/generate.rs`), and the real `mapper` binary running `export`, `list` and
//! `audit -n team2` against it over loopback. For each size and command: wall time, the
//! CLI's peak RSS (`/usr/bin/time`'s maximum resident set size) and the server's peak RSS during
//! the command (VmHWM, reset through /proc/PID/clear_refs before each command), printed as one
//! JSON object on stdout (progress on stderr). Nothing here asserts on time.
//!
//! `BENCH_QUERY_EDGES` (comma-separated, default `100000,1000000`) picks the sizes,
//! `BENCH_QUERY_SMALL=1` runs 100 000 only; `BENCH_DIR` where the stores live.
//!
//! Run: `cargo bench -p mapper-cli --bench query` (or `scripts/bench-server.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: fail loudly

#[allow(dead_code)]
#[path = "../tests/support/generate.rs"]
mod generate;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

fn progress(msg: &str) {
    eprintln!("[bench query] {msg}");
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}

/// The mapper-server binary of the profile this bench was built with.
fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MAPPER_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "-p", "mapper-server", "--bin", "mapper-server"])
        .args(["--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build -p mapper-server");
    assert!(out.status.success(), "building mapper-server failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "mapper-server")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo did not report the mapper-server executable")
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(bin: &Path, data: &Path) -> (Server, f64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cluster.yaml");
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["--inventory", fixture, "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data.join("db"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mapper-server");
    let mut log = BufReader::new(child.stderr.take().expect("stderr"));
    loop {
        let mut line = String::new();
        assert!(log.read_line(&mut line).expect("server log") > 0, "mapper-server exited before listening");
        if line.contains("mapper-server listening") {
            break;
        }
    }
    let start_s = started.elapsed().as_secs_f64();
    std::thread::spawn(move || for _ in log.lines() {});
    (Server { child, url: format!("http://127.0.0.1:{port}") }, start_s)
}

/// Runs `mapper <args>` with stdout to a file; returns (seconds, CLI peak RSS kB, server peak
/// RSS kB, stdout bytes).
fn measure(server: &Server, dir: &Path, args: &[&str], stdin: Option<&Path>) -> Value {
    let pid = server.child.id();
    // Resets the server's VmHWM to its current RSS.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let out = dir.join("out");
    let time = dir.join("time");
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&time)
        .arg(env!("CARGO_BIN_EXE_mapper"))
        .args(["--mapper-url", &server.url, "--timeout", "600s"])
        .args(args)
        .stdin(stdin.map_or_else(Stdio::null, |p| std::fs::File::open(p).expect("stdin file").into()))
        .stdout(std::fs::File::create(&out).expect("output file"))
        .stderr(Stdio::null())
        .status()
        .expect("run mapper under /usr/bin/time");
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success() || status.code() == Some(3), "mapper {args:?} failed: {status}");
    let cli_kb: u64 =
        std::fs::read_to_string(&time).unwrap_or_default().trim().lines().last().unwrap_or("0").parse().unwrap_or(0);
    json!({
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "cli_peak_rss_mb": cli_kb / 1024,
        "server_peak_rss_mb": status_kb(pid, "VmHWM:") / 1024,
        "output_bytes": std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0),
    })
}

fn main() {
    let sizes: Vec<usize> = if std::env::var_os("BENCH_QUERY_SMALL").is_some_and(|v| v == "1") {
        vec![100_000]
    } else {
        std::env::var("BENCH_QUERY_EDGES")
            .unwrap_or_else(|_| "100000,1000000".to_owned())
            .split(',')
            .map(|s| s.trim().parse().expect("BENCH_QUERY_EDGES: a list of numbers"))
            .collect()
    };
    let bin = server_bin();
    let base = std::env::var_os("BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    // `visualize --format svg` at its size limit (and below): the layout's cost.
    let mut svg = Vec::new();
    for edges in [100, 200] {
        let dir = tempfile::tempdir_in(&base).expect("temporary directory");
        generate::write_store(dir.path(), edges, now_ms() - 60_000);
        let (server, _) = start_server(&bin, dir.path());
        progress(&format!("{edges} edges: mapper visualize --format svg"));
        let mut run = measure(&server, dir.path(), &["visualize", "--format", "svg"], None);
        run["edges"] = json!(edges);
        progress(&format!("visualize svg: {run}"));
        svg.push(run);
    }
    let mut runs = Vec::new();
    for edges in sizes {
        let dir = tempfile::tempdir_in(&base).expect("temporary directory");
        progress(&format!("writing a store of {edges} edges"));
        let started = Instant::now();
        generate::write_store(dir.path(), edges, now_ms() - 60_000);
        let write_s = started.elapsed().as_secs_f64();
        let (server, start_s) = start_server(&bin, dir.path());
        let server_rss_mb = status_kb(server.child.id(), "VmRSS:") / 1024;
        progress(&format!(
            "{edges} edges: store written in {write_s:.1} s, server up in {start_s:.2} s, {server_rss_mb} MB"
        ));
        let declared = dir.path().join("declared.yaml");
        std::fs::write(
            &declared,
            "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: client-000001, namespace: team2}\n\
             spec: {workload: {name: client-000001}, targets: [{kubernetes: {name: server-00.team1}}]}\n",
        )
        .expect("declared file");
        let mut commands = serde_json::Map::new();
        for (name, args, stdin) in [
            ("export", vec!["export"], None),
            ("list", vec!["list"], None),
            ("list_json", vec!["list", "--format", "json"], None),
            (
                "audit_n_team2",
                vec!["audit", "--declared", "-", "-n", "team2", "--format", "json"],
                Some(declared.as_path()),
            ),
        ] {
            progress(&format!("{edges} edges: mapper {}", args.join(" ")));
            let figures = measure(&server, dir.path(), &args, stdin);
            progress(&format!("{edges} edges: {name}: {figures}"));
            commands.insert(name.to_owned(), figures);
        }
        runs.push(json!({
            "edges": edges,
            "store_write_seconds": (write_s * 10.0).round() / 10.0,
            "store_bytes": std::fs::metadata(dir.path().join("db/edges.redb")).map(|m| m.len()).unwrap_or(0),
            "server_start_seconds": (start_s * 100.0).round() / 100.0,
            "server_rss_after_start_mb": server_rss_mb,
            "commands": commands,
        }));
    }
    let report = json!({ "query": runs, "visualize_svg": svg });
    println!("{}", serde_json::to_string_pretty(&report).expect("serialise the report"));
}
