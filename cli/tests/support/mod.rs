//! A real mapper-server on loopback, fed through its Ingest API, and the real `mapper` binary.
//!
//! The server binary is built on first use with the same cargo (`cargo build -p mapper-server`,
//! a no-op when up to date), or taken from `MAPPER_SERVER_BIN`.

#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mapper_proto::v1::{self as pb, ingest_client::IngestClient};
use tonic::Request;

pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cluster.yaml");

/// A golden file of mapper-intents (the Otterize reference examples live there; see docs/formats.md,
/// "Golden files").
pub fn intents_golden(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mapper-intents/tests/golden").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Compares with `cli/tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites it instead.
pub fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
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

fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("MAPPER_SERVER_BIN") {
            return PathBuf::from(bin);
        }
        // The profile the mapper binary was built with (target/<profile>/mapper).
        let mapper = Path::new(env!("CARGO_BIN_EXE_mapper"));
        let profile = mapper.parent().and_then(Path::file_name).and_then(|p| p.to_str()).unwrap_or("debug");
        let profile = if profile == "debug" { "dev" } else { profile };
        let out = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "mapper-server", "--bin", "mapper-server", "--message-format=json"])
            .args(["--profile", profile])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run cargo to build mapper-server: {e}"));
        assert!(out.status.success(), "building mapper-server failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "mapper-server")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| panic!("cargo did not report the mapper-server executable"))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
        .port()
}

pub fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}

/// A mapper-server process on loopback, killed on drop.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub url: String,
    pub token: Option<String>,
    _data: tempfile::TempDir,
    sequence: AtomicU64,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server on the test inventory; with `token`, every RPC needs it.
    pub fn start(token: Option<&str>) -> Server {
        Server::start_in(tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")), token)
    }

    /// [`Server::start`] on the store in `data/db` (written beforehand, or none).
    pub fn start_in(data: tempfile::TempDir, token: Option<&str>) -> Server {
        Server::start_on(data, token, Path::new(FIXTURE))
    }

    /// [`Server::start_in`] on another inventory.
    pub fn start_on(data: tempfile::TempDir, token: Option<&str>, inventory: &Path) -> Server {
        let port = free_port();
        let mut command = Command::new(server_bin());
        command
            .arg("--inventory")
            .arg(inventory)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data.path().join("db"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(token) = token {
            let file = data.path().join("token");
            std::fs::write(&file, format!("{token}\n")).unwrap_or_else(|e| panic!("token file: {e}"));
            command.arg("--token-file").arg(&file);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", server_bin().display()));
        let mut log = BufReader::new(child.stderr.take().unwrap_or_else(|| panic!("no stderr")));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = log.read_line(&mut line).unwrap_or_else(|e| panic!("reading the server's log: {e}"));
            assert!(n > 0, "mapper-server exited before listening:\n{seen}");
            seen.push_str(&line);
            if line.contains("mapper-server listening") {
                break;
            }
        }
        std::thread::spawn(move || for _ in log.lines() {});
        Server {
            pid: child.id(),
            child,
            url: format!("http://127.0.0.1:{port}"),
            token: token.map(str::to_owned),
            _data: data,
            sequence: AtomicU64::new(0),
        }
    }

    /// Sends one batch of flows and DNS answers, as a node agent would.
    pub fn ingest(&self, flows: Vec<pb::Flow>, dns: Vec<pb::DnsAnswer>) {
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let mut request = Request::new(pb::ReportRequest {
            node: "node-1".into(),
            boot_id: "test-boot".into(),
            sequence,
            flows,
            dns,
        });
        if let Some(token) = &self.token {
            let header = format!("Bearer {token}").parse().unwrap_or_else(|e| panic!("header: {e}"));
            request.metadata_mut().insert("authorization", header);
        }
        let url = self.url.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let response = runtime.block_on(async move {
            let mut client = IngestClient::connect(url).await.unwrap_or_else(|e| panic!("connect: {e}"));
            client.report(request).await.unwrap_or_else(|e| panic!("report refused: {e}")).into_inner()
        });
        assert_eq!(response.flows_unresolved, 0, "the fixture should resolve every flow: {response:?}");
    }

    /// Runs `mapper --mapper-url <this server> <args>`.
    pub fn mapper(&self, args: &[&str]) -> Output {
        mapper(&[&["--mapper-url", &self.url], args].concat(), None)
    }
}

/// A kubeconfig in `dir` pointing at a fake API server listening on `addr` (plain HTTP, a
/// token, namespace team1); its path.
pub fn fake_kubeconfig(dir: &Path, addr: std::net::SocketAddr) -> String {
    write(
        dir,
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster: {{server: \
             \"http://{addr}\"}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: team1}}\n\
             users:\n- name: fake\n  user: {{token: abc}}\n"
        ),
    )
}

/// Runs the mapper binary with a clean environment (no MAPPER_*, no kubeconfig) and `stdin`.
pub fn mapper(args: &[&str], stdin: Option<&str>) -> Output {
    run(args, stdin, &[])
}

/// [`mapper`] with environment variables set.
pub fn mapper_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    run(args, None, env)
}

fn run(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mapper"));
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAPPER_") {
            command.env_remove(key);
        }
    }
    command.env("KUBECONFIG", "/nonexistent/kubeconfig").env("HOME", "/nonexistent");
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run mapper: {e}"));
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("stdin: {e}"));
        }
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("mapper: {e}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap_or_else(|e| panic!("stdout is not UTF-8: {e}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "mapper failed ({:?}):\n{}", out.status, stderr(out));
    stdout(out)
}

/// One TCP connection summary seen from the client's pod.
pub fn connect(
    client_uid: &str,
    src: [u8; 4],
    dst: ([u8; 4], u16),
    via: Option<([u8; 4], u16)>,
    count: u64,
) -> pb::Flow {
    connect_at(client_uid, src, dst, via, count, now_ms() - 60_000)
}

/// [`connect`], last seen at `at_ms`.
pub fn connect_at(
    client_uid: &str,
    src: [u8; 4],
    dst: ([u8; 4], u16),
    via: Option<([u8; 4], u16)>,
    count: u64,
    at_ms: i64,
) -> pb::Flow {
    pb::Flow {
        direction: pb::Direction::Connect as i32,
        protocol: pb::Protocol::Tcp as i32,
        src_ip: src.to_vec(),
        dst_ip: dst.0.to_vec(),
        dst_port: u32::from(dst.1),
        original_dst_ip: via.map(|v| v.0.to_vec()).unwrap_or_default(),
        original_dst_port: via.map_or(0, |v| u32::from(v.1)),
        count,
        pod_uid: client_uid.into(),
        first_seen_ms: at_ms,
        last_seen_ms: at_ms,
        ..Default::default()
    }
}

pub const TRANSACTION: &str = "11111111-0000-0000-0000-000000000003";
pub const OTHER_TRANSACTION: &str = "22222222-0000-0000-0000-000000000003";
pub const API: &str = "11111111-0000-0000-0000-000000000023";
pub const REPORT: &str = "11111111-0000-0000-0000-000000000033";
pub const CACHE: &str = "22222222-0000-0000-0000-000000000012";
pub const DEBUG_SHELL: &str = "11111111-0000-0000-0000-000000000051";
const LEDGER_POD: ([u8; 4], u16) = ([10, 244, 1, 3], 8080);
const LEDGER_SVC: ([u8; 4], u16) = ([10, 96, 0, 10], 80);

/// The seed (docs/formats.md, "Golden files"): transaction-service.team1 and some-other-transaction-service.team2
/// call ledger.team3 through its ClusterIP.
pub fn seed(server: &Server) {
    server.ingest(
        vec![
            connect(TRANSACTION, [10, 244, 1, 2], LEDGER_POD, Some(LEDGER_SVC), 5),
            connect(OTHER_TRANSACTION, [10, 244, 2, 2], LEDGER_POD, Some(LEDGER_SVC), 3),
        ],
        Vec::new(),
    );
}

/// Clients and servers of several kinds: Deployment, StatefulSet, CronJob, a Service without
/// pods, the API server and an internet address with its DNS name.
pub fn kinds(server: &Server) {
    let at = now_ms() - 60_000;
    server.ingest(
        vec![
            connect(API, [10, 244, 1, 8], ([10, 244, 2, 5], 6379), None, 4),
            connect(API, [10, 244, 1, 8], ([10, 96, 0, 30], 5432), None, 2),
            connect(API, [10, 244, 1, 8], ([10, 0, 0, 100], 6443), Some(([10, 96, 0, 1], 443)), 1),
            connect(REPORT, [10, 244, 1, 7], ([10, 244, 1, 8], 8080), Some(([10, 96, 0, 20], 80)), 1),
            connect(REPORT, [10, 244, 1, 7], ([203, 0, 113, 7], 443), None, 1),
            connect(CACHE, [10, 244, 2, 5], LEDGER_POD, Some(LEDGER_SVC), 9),
        ],
        vec![pb::DnsAnswer {
            query: "reports.example.com".into(),
            answers: vec![pb::DnsAddress { name: "reports.example.com".into(), ip: vec![203, 0, 113, 7], ttl: 300 }],
            client_ip: vec![10, 244, 1, 7],
            pod_uid: REPORT.into(),
            ts_ms: at - 1_000,
        }],
    );
}

/// The debug pod (labelled `mapper-test/ignore=true`) calling ledger, and an edge last seen two
/// days ago.
pub fn extras(server: &Server) {
    server.ingest(
        vec![
            connect(DEBUG_SHELL, [10, 244, 1, 9], LEDGER_POD, Some(LEDGER_SVC), 1),
            connect_at(API, [10, 244, 1, 8], ([10, 244, 2, 2], 9000), None, 1, now_ms() - 2 * 86_400_000),
        ],
        Vec::new(),
    );
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path.display().to_string()
}
/// The test inventory with Helm's annotations and label on some top owners: release
/// `payments` (namespace team1) holds Deployments transaction-service and api, release `cache`
/// (team2) the StatefulSet cache; some-other-transaction-service and the CronJob nightly-report
/// are in no release.
pub fn inventory_with_releases(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(FIXTURE).unwrap_or_else(|e| panic!("{FIXTURE}: {e}"));
    let helm = |release: &str, namespace: &str| {
        format!(
            ", annotations: {{meta.helm.sh/release-name: {release}, meta.helm.sh/release-namespace: {namespace}}}, \
             labels: {{app.kubernetes.io/managed-by: Helm}}}}"
        )
    };
    let mut text = text;
    for (owner, release, namespace) in [
        ("name: transaction-service, namespace: team1, uid: 11111111-0000-0000-0000-000000000001", "payments", "team1"),
        ("name: api, namespace: team1, uid: 11111111-0000-0000-0000-000000000021", "payments", "team1"),
        ("name: cache, namespace: team2, uid: 22222222-0000-0000-0000-000000000011", "cache", "team2"),
    ] {
        let top = format!("metadata: {{{owner}}}");
        assert_eq!(text.matches(&top).count(), 1, "the fixture has one {top}");
        text = text.replace(&top, &format!("metadata: {{{owner}{}", helm(release, namespace)));
    }
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

pub mod dashboard;
pub mod generate;
