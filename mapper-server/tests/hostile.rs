//! The real mapper-server against a hostile agent: an independent gRPC client
//! (tests/hostile.py, Python grpcio, stubs generated from mapper.proto at test
//! time) sends far-future and negative times, oversized strings, 64 MiB of
//! minimal flows, garbage bytes and a flood of DNS names; and raw TCP peers
//! open more connections than allowed, leave them idle, and exhaust the
//! server's file descriptors.

mod support;

use std::{
    io::Read,
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::Server;

/// Python with grpcio and grpcio-tools (scripts/test.sh installs them), or a loud failure.
fn python() -> &'static str {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tests/hostile.rs needs python3 with grpcio and grpcio-tools: scripts/test.sh installs them, \
         or run `python3 -m pip install grpcio grpcio-tools`"
    );
    "python3"
}

/// Python stubs generated from mapper.proto into a temporary directory.
fn stubs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mapper-proto/proto");
    let out = Command::new(python())
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", dir.path().display()))
        .arg(format!("--grpc_python_out={}", dir.path().display()))
        .arg("mapper/v1/mapper.proto")
        .output()
        .expect("run grpc_tools.protoc");
    assert!(out.status.success(), "protoc: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn start(data: &Path, extra: &[&str]) -> Server {
    let mut cmd = support::command("127.0.0.1:0");
    cmd.arg("--data-dir").arg(data).args(extra).env("RUST_LOG", "info");
    Server::spawn(cmd)
}

/// Runs one case of hostile.py against `server`: what the server answered.
fn hostile(stubs: &Path, server: &Server, case: &str) -> Value {
    let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile.py");
    let addr = server.url(None).trim_start_matches("http://").to_owned();
    let out = Command::new(python()).arg(script).arg(stubs).arg(&addr).arg(case).output().expect("run hostile.py");
    assert!(
        out.status.success(),
        "hostile.py {case}: {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("hostile.py {case} printed no JSON ({e})"))
}

#[track_caller]
fn refused(v: &Value, code: &str, message_has: &str) {
    assert_eq!(v["code"], code, "{v}");
    let m = v["message"].as_str().unwrap_or_default();
    assert!(m.contains(message_has), "{m:?} should name {message_has:?}");
}

/// A line of /proc/PID/status, in kB.
fn status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    s.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd").count()
}

#[test]
fn bad_fields_and_undecodable_bytes_are_invalid_argument_naming_the_field() {
    let stubs = stubs();
    let data = tempfile::tempdir().expect("tempdir");
    let server = start(data.path(), &[]);
    let t = hostile(stubs.path(), &server, "timestamps");
    refused(&t["year_10000"], "INVALID_ARGUMENT", "flows[1].last_seen_ms: 253402300800000 is ");
    refused(&t["negative"], "INVALID_ARGUMENT", "flows[0].first_seen_ms: -1 is negative");
    refused(&t["int64_max"], "INVALID_ARGUMENT", "flows[0].last_seen_ms");
    refused(&t["dns_ts"], "INVALID_ARGUMENT", "dns[0].ts_ms: -5 is negative");
    assert_eq!(t["valid"]["code"], "OK", "{t}");
    let s = hostile(stubs.path(), &server, "strings");
    refused(&s["pod_uid"], "INVALID_ARGUMENT", "flows[0].pod_uid: 10000 bytes, at most 128");
    refused(&s["comm"], "INVALID_ARGUMENT", "flows[0].comm: 65 bytes, at most 64");
    refused(&s["node"], "INVALID_ARGUMENT", "node: 254 bytes, at most 253");
    refused(&s["dns_name"], "INVALID_ARGUMENT", "dns[0].query: 254 bytes, at most 253");
    let g = hostile(stubs.path(), &server, "garbage");
    refused(&g["garbage"], "INVALID_ARGUMENT", "undecodable ReportRequest");
    refused(&g["truncated"], "INVALID_ARGUMENT", "undecodable ReportRequest");
    assert_eq!(g["then_valid"]["code"], "OK", "the server still serves after garbage: {g}");
}

#[test]
fn a_64_mib_request_of_minimal_flows_is_refused_before_it_is_decoded() {
    let stubs = stubs();
    let data = tempfile::tempdir().expect("tempdir");
    let server = start(data.path(), &[]);
    let before = status_kb(server.pid(), "VmHWM:");
    let b = hostile(stubs.path(), &server, "big");
    refused(&b["minimal_flows_64mib"], "INVALID_ARGUMENT", "more than 100000 flows in one batch");
    refused(&b["over_limit_80mib"], "OUT_OF_RANGE", "too large");
    let after = status_kb(server.pid(), "VmHWM:");
    eprintln!(
        "server peak RSS: {} MiB before, {} MiB after a 64 MiB and an 80 MiB request",
        before / 1024,
        after / 1024
    );
    assert!(after < 200 * 1024, "peak RSS {after} kB after the big requests: they were decoded or kept");
}

#[test]
fn a_flood_of_dns_names_for_one_address_stays_bounded() {
    let stubs = stubs();
    let data = tempfile::tempdir().expect("tempdir");
    let server = start(data.path(), &[]);
    let d = hostile(stubs.path(), &server, "dns_flood");
    assert!(d.get("flood_refused").is_none(), "valid DNS answers refused: {d}");
    refused(&d["too_long_name"], "INVALID_ARGUMENT", "dns[0].answers[0].name: 300 bytes, at most 253");
    assert_eq!(d["external_edges"], 1, "{d}");
    assert_eq!(d["dns_names"], 16, "10 000 names for one address: the newest 16 are kept: {d}");
    assert!(d["longest_name"].as_u64().is_some_and(|n| n <= 253), "{d}");
}

/// Reads until the server closes `s` (EOF or reset); false if it is still open at `deadline`.
fn closed_by_server(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // the server's HTTP/2 preface
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn connections_beyond_the_bound_and_idle_ones_are_closed() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = start(data.path(), &["--max-connections", "50", "--idle-timeout", "2s"]);
    let addr = server.url(None).trim_start_matches("http://").to_owned();
    let base = open_fds(server.pid());
    let mut conns: Vec<TcpStream> =
        (0..400).map(|_| TcpStream::connect(&addr).expect("connect (the kernel accepts into the backlog)")).collect();
    // Each connection is closed by the server: the ones beyond 50 at once, the rest once idle
    // for 2 s. The deadline only bounds a failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    let open_peak = open_fds(server.pid());
    let still_open = conns.iter_mut().map(|c| closed_by_server(c, deadline)).filter(|closed| !closed).count();
    eprintln!("server descriptors: {base} at rest, {open_peak} with 400 peers connecting; {still_open} left open");
    assert_eq!(still_open, 0, "idle connections stay open");
    assert!(open_peak <= base + 50 + 5, "{open_peak} descriptors open with a bound of 50 connections (base {base})");
    assert!(server.logs_soon("too many open connections"), "{}", server.log());
}

/// User and system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

#[test]
fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("sh");
    let bin = env!("CARGO_BIN_EXE_mapper-server");
    cmd.arg("-c")
        .arg(format!("ulimit -n 64 && exec {bin} \"$@\""))
        .arg("mapper-server")
        .args(["--inventory", support::FIXTURE, "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info");
    let server = Server::spawn(cmd);
    let addr = server.url(None).trim_start_matches("http://").to_owned();
    // More peers than the server has descriptors: it cannot accept them all.
    let conns: Vec<TcpStream> = (0..120).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
    assert!(server.logs_soon("cannot accept connections"), "{}", server.log());
    let (t0, c0) = (Instant::now(), cpu_ticks(server.pid()));
    std::thread::sleep(Duration::from_secs(3));
    let (secs, ticks) = (t0.elapsed().as_secs_f64(), cpu_ticks(server.pid()) - c0);
    // Clock ticks are 1/100 s (USER_HZ) on Linux.
    let share = ticks as f64 / 100.0 / secs;
    eprintln!("out of descriptors: {:.0} % of a core over {secs:.1} s", share * 100.0);
    assert!(share < 0.5, "the server spins while out of descriptors ({:.0} % of a core)", share * 100.0);
    assert_eq!(server.log().matches("cannot accept connections").count(), 1, "logged once: {}", server.log());
    drop(conns);
    // Descriptors come back: the server accepts and answers again.
    let mut s = TcpStream::connect(&addr).expect("connect after");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut preface = [0u8; 9];
    s.read_exact(&mut preface).expect("the server's HTTP/2 SETTINGS once descriptors are back");
    assert_eq!(preface[3], 4, "a SETTINGS frame");
}
