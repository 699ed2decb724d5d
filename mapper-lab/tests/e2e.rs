//! The whole product on real kernel traffic: the lab, mapper-agent's eBPF
//! capture, mapper-server over gRPC, the `mapper` CLI. Its own test binary,
//! so no other kernel test runs beside it (every agent sees all traffic).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mapper_lab::netns::bpf_available;
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The lab's names (`mlab-…`) are global: one lab at a time in this binary.
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_mapper-lab")).with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A child process stopped on drop (SIGTERM first: the agent detaches its programs).
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lab, the server and the agent for one scenario; all removed on drop.
struct Stack {
    state: PathBuf,
    url: String,
    agent_metrics: String,
    agent: Option<Kid>,
    server: Option<Kid>,
    bpffs: String,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.agent.take();
        self.server.take();
        let _ = Command::new(bin("mapper-lab")).args(["down", "--state-dir"]).arg(&self.state).status();
        let _ = std::fs::remove_dir_all(&self.bpffs);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn spawn_logged(cmd: &mut Command, ready: &str) -> Kid {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).env("NO_COLOR", "1").spawn().expect("spawn");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).expect("read log") > 0, "{cmd:?} exited before logging {ready:?}");
        if line.contains(ready) {
            break;
        }
    }
    std::thread::spawn(move || for _ in err.lines() {});
    Kid(child)
}

fn metric(addr: &str, name: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return 0 };
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn scenario_path(name: &str) -> String {
    format!("{ROOT}/deploy/local/scenarios/{name}")
}

impl Stack {
    fn up(scenario: &str) -> Self {
        let state = std::env::temp_dir().join(format!("mapper-e2e-{}", std::process::id()));
        let st = Command::new(bin("mapper-lab"))
            .args(["up", "--scenario", &scenario_path(scenario), "--state-dir"])
            .arg(&state)
            .status()
            .expect("lab up");
        assert!(st.success(), "mapper-lab up {scenario} failed");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let server = spawn_logged(
            Command::new(bin("mapper-server"))
                .args(["--listen", &format!("127.0.0.1:{port}"), "--inventory"])
                .arg(state.join("inventory.yaml"))
                .arg("--data-dir")
                .arg(state.join("data")),
            "mapper-server listening",
        );
        let metrics_port = free_port();
        let bpffs = format!("/sys/fs/bpf/mapper-e2e-{}", std::process::id());
        let agent = spawn_logged(
            Command::new(bin("mapper-agent"))
                .args([
                    "--mapper-url",
                    &url,
                    "--report-interval",
                    "300ms",
                    "--bpffs",
                    &bpffs,
                    "--host-netns",
                    "/run/netns/mlab-node",
                    "--metrics-listen",
                    &format!("127.0.0.1:{metrics_port}"),
                    "--detach-on-exit",
                ])
                .arg("--spool-dir")
                .arg(state.join("spool")),
            "agent running",
        );
        Self {
            state,
            url,
            agent_metrics: format!("127.0.0.1:{metrics_port}"),
            agent: Some(agent),
            server: Some(server),
            bpffs,
        }
    }

    /// Runs the scenario's calls (of one round, or all) and waits until the agent's flows are
    /// acknowledged.
    fn traffic(&self, scenario: &str, round: Option<u32>) -> Vec<Value> {
        let mut command = Command::new(bin("mapper-lab"));
        command.args(["traffic", "--scenario", &scenario_path(scenario), "--state-dir"]).arg(&self.state);
        if let Some(round) = round {
            command.args(["--round", &round.to_string()]);
        }
        let out = command.output().expect("traffic");
        assert!(out.status.success(), "traffic failed: {}", String::from_utf8_lossy(&out.stderr));
        // Two drains after the traffic ended: everything it made has left the
        // kernel; an empty resend buffer: the server has acknowledged it all.
        let before = metric(&self.agent_metrics, "mapper_agent_drains_total");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let drains = metric(&self.agent_metrics, "mapper_agent_drains_total");
            let pending = metric(&self.agent_metrics, "mapper_agent_pending_flows");
            if drains >= before + 2 && pending == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "flows not acknowledged in time (drains {drains}, pending {pending})");
            std::thread::sleep(Duration::from_millis(200));
        }
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("traffic line")).collect()
    }

    fn mapper(&self, args: &[&str]) -> String {
        let out = self.mapper_status(args);
        assert!(out.status.success(), "mapper {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8")
    }

    fn mapper_status(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("mapper")).arg("--mapper-url").arg(&self.url).args(args).output().expect("mapper")
    }
}

/// `name.namespace Kind`, or `service name.namespace`, from the CLI's JSON.
fn describe(p: &Value) -> String {
    let id = format!("{}.{}", p["name"].as_str().unwrap_or("?"), p["namespace"].as_str().unwrap_or("?"));
    match p["type"].as_str() {
        Some("workload") => format!("{id} {}", p["kind"].as_str().unwrap_or("")),
        Some("service") => format!("service {id}"),
        _ => p.to_string(),
    }
}

#[test]
fn seed_and_every_kind_end_to_end() {
    if !bpf_available("e2e") {
        return;
    }
    let _lab = LAB.lock().unwrap_or_else(|p| p.into_inner());
    // The seed scenario: the export is the example of Otterize's docs, byte for byte.
    {
        let stack = Stack::up("seed.yaml");
        let calls = stack.traffic("seed.yaml", Some(1));
        assert!(calls.iter().all(|c| c["ok"] == c["count"]), "seed calls failed: {calls:?}");
        let export = stack.mapper(&["export", "-n", "team1", "-n", "team2", "--output-version", "v1alpha2"]);
        let golden = std::fs::read_to_string(format!("{ROOT}/deploy/local/golden/seed-v1alpha2.yaml")).expect("golden");
        assert_eq!(export, golden, "seed export differs from the golden file");
        let list = stack.mapper(&["list"]);
        assert_eq!(
            list,
            "some-other-transaction-service in namespace team2 calls:\n  - coredns in namespace kube-system (53/UDP)\n  \
             - ledger in namespace team3 (8080/TCP)\ntransaction-service in namespace team1 calls:\n  - coredns in \
             namespace kube-system (53/UDP)\n  - ledger in namespace team3 (8080/TCP)\n",
            "mapper list shows the calls to the cluster DNS that the export leaves out"
        );
        let path = stack.state.join("export.yaml");
        std::fs::write(&path, &export).expect("write export");
        let policy = stack.mapper(&["policy", "-f", path.to_str().expect("utf8")]);
        for name in ["access-to-ledger-from-team1", "access-to-ledger-from-team2"] {
            assert!(policy.contains(&format!("name: {name}\n")), "policy {name} missing:\n{policy}");
        }
        assert!(policy.contains("intents.otterize.com/server: ledger-team3-40d1db"), "{policy}");

        // Round 2, the audit story: the new release calls telemetry too, and its chart, edited
        // to declare telemetry, lost ledger.
        let calls = stack.traffic("seed.yaml", Some(2));
        assert!(calls.iter().all(|c| c["ok"] == c["count"]), "round 2 calls failed: {calls:?}");
        let chart = format!("{ROOT}/deploy/local/charts/transaction-service/");
        let out = stack.mapper_status(&["audit", "--declared", &chart]);
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(3), "the audit fails on the missing call:\n{table}");
        let missing: Vec<&str> = table.lines().filter(|l| l.trim_start().starts_with("MISSING")).collect();
        assert_eq!(missing.len(), 1, "{table}");
        for part in ["ledger.team3 (Deployment)", "8080/TCP", "8 connections", "last seen ", "blocked once enforced"] {
            assert!(missing[0].contains(part), "`{part}` not in `{}`:\n{table}", missing[0]);
        }
        let covered = table.lines().find(|l| l.trim_start().starts_with("COVERED")).expect(&table);
        assert!(covered.contains("telemetry.team4") && covered.contains("2 connections"), "{table}");
        let json: Value = serde_json::from_str(&String::from_utf8_lossy(
            &stack.mapper_status(&["audit", "--declared", &chart, "--format", "json"]).stdout,
        ))
        .expect("audit json");
        assert_eq!(json["clients"][0]["missing"][0]["via_services"][0], "ledger.team3", "{json:#}");
        // export --declared writes the fix, in the chart's version; the fixed file passes.
        let fixed = stack.mapper(&["export", "--declared", &chart]);
        assert!(fixed.starts_with("apiVersion: k8s.otterize.com/v1alpha2\n"), "{fixed}");
        assert!(fixed.ends_with("  calls:\n    - name: telemetry.team4\n    - name: ledger.team3\n"), "{fixed}");
        let path = stack.state.join("fixed.yaml");
        std::fs::write(&path, &fixed).expect("write the fix");
        let out = stack.mapper_status(&["audit", "--declared", path.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

        // The Helm side, from the release Secrets the lab wrote into the inventory as Helm
        // stores them: transaction-service's revision 2 dropped ledger, still called.
        let inventory = stack.state.join("inventory.yaml");
        let inventory = inventory.to_str().expect("utf8");
        let out = stack.mapper_status(&[
            "helm",
            "history",
            "transaction-service",
            "-n",
            "team1",
            "--release-records",
            inventory,
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(3), "{text}{}", String::from_utf8_lossy(&out.stderr));
        let removed = text.lines().find(|l| l.contains(" removed ")).unwrap_or_else(|| panic!("no removal:\n{text}"));
        assert!(
            removed.starts_with("  revision 2 (")
                && removed.contains(
                    ") removed ledger.team3 from transaction-service.team1; transaction-service still called it "
                )
                && removed.ends_with(": blocked once enforced"),
            "{text}"
        );
        // ledger's revision 1 admits team2 only: `helm rollback ledger 1` would block
        // transaction-service (namespace labels from the inventory); the deployed revision admits both.
        let rollback = |revision: &[&str]| {
            let args = [
                &["audit", "--helm-release", "ledger", "-n", "team3", "--release-records", inventory][..],
                &["--inventory", inventory, "--format", "json"],
                revision,
            ]
            .concat();
            let out = stack.mapper_status(&args);
            let json: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("audit json ({e}): {}", String::from_utf8_lossy(&out.stderr)));
            (out.status.code(), json["network_policies"].clone())
        };
        let (code, policies) = rollback(&["--revision", "1"]);
        assert_eq!(code, Some(3), "{policies:#}");
        assert_eq!(
            (&policies["denied"][0]["client"], &policies["denied"][0]["server"]),
            (&serde_json::json!("transaction-service.team1"), &serde_json::json!("ledger.team3")),
            "{policies:#}"
        );
        assert_eq!(policies["denied"].as_array().map(Vec::len), Some(1), "{policies:#}");
        assert_eq!(policies["admitted"], 1, "some-other-transaction-service (team2) is admitted: {policies:#}");
        let (code, policies) = rollback(&[]);
        assert_eq!(
            (code, &policies["admitted"], &policies["denied"]),
            (Some(0), &serde_json::json!(2), &serde_json::json!([])),
            "{policies:#}"
        );
    }
    // Every kind, the annotation, headless and empty Services, hostNetwork, UDP.
    let stack = Stack::up("kinds.yaml");
    let calls = stack.traffic("kinds.yaml", None);
    for c in &calls {
        let expect_ok = c["to"] != "legacy.shop";
        assert_eq!(c["ok"] == c["count"], expect_ok, "call {c}");
    }
    let json: Value = serde_json::from_str(&stack.mapper(&["list", "--format", "json"])).expect("list json");
    let mut edges: Vec<String> = Vec::new();
    for client in json.as_array().expect("array of clients") {
        for call in client["calls"].as_array().expect("calls") {
            edges.push(format!("{} -> {}", describe(&client["client"]), describe(&call["server"])));
        }
    }
    edges.sort();
    let mut want = vec![
        "web.shop Deployment -> db.shop StatefulSet",
        "report.shop CronJob -> web.shop Deployment",
        "migrate.shop Job -> db.shop StatefulSet",
        "debug.shop Pod -> checkout.shop Deployment",
        "web.shop Deployment -> service legacy.shop",
        "node-exporter.infra DaemonSet -> web.shop Deployment",
        "web.shop Deployment -> log-agent.infra DaemonSet",
        "web.shop Deployment -> cache.shop Deployment",
        "web.shop Deployment -> queue.shop Deployment",
        // Every pod that called through a Service resolved its name first.
        "debug.shop Pod -> coredns.kube-system Deployment",
        "node-exporter.infra DaemonSet -> coredns.kube-system Deployment",
        "report.shop CronJob -> coredns.kube-system Deployment",
        "web.shop Deployment -> coredns.kube-system Deployment",
    ];
    want.sort();
    assert_eq!(edges, want, "edges of kinds.yaml (full list: {json:#})");
    // The IP that cache's pod had, then queue's: two workloads, each with its own connections.
    let count = |server: &str| -> u64 {
        json.as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["calls"].as_array().cloned().unwrap_or_default())
            .filter(|call| call["server"]["name"] == server)
            .map(|call| call["established"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!((count("cache"), count("queue")), (2, 3), "a reused pod IP merged two workloads' connections: {json:#}");

    // The scenario's Helm releases, through the inventory the lab wrote and the server's
    // cluster state: one file per release, each holding its clients' ClientIntents.
    let checkout = json
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["calls"].as_array().cloned().unwrap_or_default())
        .find(|call| call["server"]["name"] == "checkout")
        .expect("a call to checkout");
    assert_eq!(checkout["server"]["release"], serde_json::json!({"name": "storefront", "namespace": "shop"}));
    let dir = stack.state.join("by-release");
    stack.mapper(&["export", "--by-release", "-o", dir.to_str().expect("utf8")]);
    let mut files: Vec<(String, Vec<String>)> = std::fs::read_dir(&dir)
        .expect("the export's directory")
        .map(|e| {
            let path = e.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("a file");
            let docs = mapper_intents::parse_documents(&text, &path.display().to_string())
                .unwrap_or_else(|e| panic!("{} is not ClientIntents: {e}\n{text}", path.display()));
            let clients = docs.iter().map(|d| format!("{}.{}", d.client_name, d.namespace.as_deref().unwrap_or("?")));
            (path.file_name().expect("a name").to_string_lossy().into_owned(), clients.collect())
        })
        .collect();
    files.sort();
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        files,
        [
            ("no-release.yaml".to_owned(), names(&["migrate.shop"])),
            ("storefront.shop.yaml".to_owned(), names(&["report.shop", "web.shop"])),
            ("tools.infra.yaml".to_owned(), names(&["debug.shop", "node-exporter.infra"])),
        ]
    );
}

/// `client -> server` with its established count, for every call of a `list --format json`.
fn calls_of(list: &Value) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for client in list.as_array().expect("array of clients") {
        for call in client["calls"].as_array().expect("calls") {
            let peer = |p: &Value| match p["type"].as_str() {
                Some("node") => format!("node {}", p["name"].as_str().unwrap_or("?")),
                Some("api_server") => "kubernetes.default".to_owned(),
                Some("external") => p["dns_names"][0].as_str().map_or_else(|| p["ip"].to_string(), str::to_owned),
                _ => describe(p),
            };
            out.push((peer(&client["client"]), peer(&call["server"]), call["established"].as_u64().unwrap_or(0)));
        }
    }
    out.sort();
    out
}

#[test]
fn realistic_cluster_end_to_end() {
    if !bpf_available("e2e realistic") {
        return;
    }
    let _lab = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let stack = Stack::up("realistic.yaml");
    for round in [1, 2] {
        let calls = stack.traffic("realistic.yaml", Some(round));
        assert!(calls.iter().all(|c| c["ok"] == c["count"]), "round {round} calls failed: {calls:?}");
    }
    // The export, exactly: no edge from coredns or the kubelet, none missing (IPv6 calls,
    // every replica, the UDP server that replies, the external name, the API server, the
    // rollout whose old IP was reused at once, two hostNetwork pods on the node's IP).
    let export = stack.mapper(&["export"]);
    let golden = std::fs::read_to_string(format!("{ROOT}/deploy/local/golden/realistic-v2beta1.yaml")).expect("golden");
    assert_eq!(export, golden, "realistic export differs from the golden file");

    let node = |c: &str| c.starts_with("node ");
    let probed_servers =
        ["catalog.shop", "payments.billing", "statsd.monitoring", "node-metrics.monitoring", "invoicer.billing"];
    let probed_all = |calls: &[(String, String, u64)]| {
        probed_servers.iter().all(|server| calls.iter().any(|(c, s, _)| node(c) && s.starts_with(server)))
    };
    // The kubelet probes once a second, so its first probe of invoicer (new in round 2) can
    // come after round 2's traffic has been acknowledged: wait for it to be reported.
    let deadline = Instant::now() + Duration::from_secs(20);
    let list: Value = loop {
        let list: Value =
            serde_json::from_str(&stack.mapper(&["list", "--format", "json", "--include-nodes"])).expect("list json");
        if probed_all(&calls_of(&list)) || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let calls = calls_of(&list);
    let dns = "coredns.kube-system Deployment";
    let pods: Vec<(String, String, u64)> = calls.iter().filter(|(c, s, _)| !node(c) && s != dns).cloned().collect();
    let want: Vec<(String, String, u64)> = [
        ("checkout.shop Deployment", "api.example.com", 2),
        ("checkout.shop Deployment", "invoicer.billing Deployment", 3),
        ("checkout.shop Deployment", "payments.billing Deployment", 9),
        ("checkout.shop Deployment", "statsd.monitoring Deployment", 3),
        ("frontend.shop Deployment", "catalog.shop Deployment", 12),
        ("node-agent.monitoring DaemonSet", "node-metrics.monitoring DaemonSet", 2),
        ("operator.platform Deployment", "kubernetes.default", 2),
    ]
    .iter()
    .map(|(c, s, n)| ((*c).to_owned(), (*s).to_owned(), *n))
    .collect();
    assert_eq!(pods, want, "the pods' calls and their connections (whole list: {list:#})");
    // coredns is called by every pod that resolved a name, and calls nobody.
    let resolvers: Vec<&str> = calls.iter().filter(|(_, s, _)| s == dns).map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(resolvers, ["checkout.shop Deployment", "frontend.shop Deployment", "operator.platform Deployment"]);
    assert!(calls.iter().all(|(c, _, _)| c != dns), "coredns as a client: {list:#}");
    // The kubelet's probes are the node's, to every probed server, never a pod's call.
    let probed: Vec<&str> = calls.iter().filter(|(c, _, _)| node(c)).map(|(_, s, _)| s.as_str()).collect();
    for server in probed_servers {
        assert!(probed.iter().any(|s| s.starts_with(server)), "no probe of {server} from the node: {list:#}");
    }
    // --include-dns puts the cluster DNS back.
    let with_dns = stack.mapper(&["export", "--include-dns"]);
    assert_eq!(with_dns.matches("name: coredns.kube-system").count(), 3, "{with_dns}");
    // The calls over 127.0.0.1 and ::1 inside catalog's and statsd's pods and on the node are
    // no edge, even with every kind of end shown: no workload calls itself, and no loopback
    // address is a client or a server (nor this test's own calls to the server's port).
    let everything = stack.mapper(&["list", "--format", "json", "--include-nodes", "--include-unresolved"]);
    let everything: Value = serde_json::from_str(&everything).expect("list json");
    let all = calls_of(&everything);
    for (client, server, _) in &all {
        assert_ne!(client, server, "a workload calling itself: {everything:#}");
        for end in [client, server] {
            assert!(!end.contains("127.0.0.") && !end.contains("\"::1\""), "a loopback end {end}: {everything:#}");
        }
    }
}
