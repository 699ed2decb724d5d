//! Nothing lost when the agent dies: a reporting agent killed (SIGKILL) or
//! stopped (SIGTERM) while it reports to a real mapper-server, during traffic
//! and during a server outage, and the server's counts at the end — read from
//! its store, each side apart — are exact.
//!
//! Each test has its own lab node, server (data dir, port), spool and pin
//! path; the server's inventory names the test's two pods, so the test's
//! connections are one edge whatever other traffic the agents see.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use mapper_lab::topo::{Node, Pod};
use mapper_server::store::EdgeStore;
use serde_json::json;
use support::{Log, bpf_available, call, http_get, lab_bin, serve};

fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_mapper-agent")).with_file_name(name);
    assert!(p.exists(), "{} is missing: run `cargo build --workspace --bins` first", p.display());
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A daemon whose stderr is collected.
struct Daemon {
    child: Option<Child>,
    log: Log,
    what: String,
}

impl Daemon {
    fn spawn(mut cmd: Command, ready: &str, what: &str) -> Self {
        let mut child = cmd
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let log = Log::collect(child.stderr.take().expect("stderr"));
        let d = Self { child: Some(child), log, what: what.into() };
        d.wait_log(ready, Duration::from_secs(30));
        d
    }

    fn log(&self) -> String {
        self.log.text()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        self.log.wait_for(needle, timeout, &self.what);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process has exited (someone else stopped it), successfully.
    fn exited_ok(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        match child.try_wait().expect("try_wait") {
            Some(status) => status.success(),
            None => {
                self.child = Some(child);
                false
            }
        }
    }

    /// Sends `signal` and waits for the exit; returns how long that took.
    fn finish(&mut self, signal: i32) -> Duration {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().expect("wait");
        if signal == libc::SIGTERM {
            assert!(status.success(), "{} exited with {status}:\n{}", self.what, self.log());
        }
        start.elapsed()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET `path` on `addr`; `None` when nothing listens.
fn metric(addr: &str, name: &str) -> u64 {
    support::metric_in(&http_get(addr, "/metrics").unwrap_or_default(), &format!("{name} "))
}

/// One test's node, pods, server and agent settings.
struct Rig {
    node: Node,
    _listener: mapper_lab::netns::Proc,
    dir: tempfile::TempDir,
    port: u16,
    metrics: String,
    bpffs: PathBuf,
    namespace: String,
    extra: Vec<String>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bpffs);
    }
}

fn pod_json(p: &Pod, ns: &str) -> serde_json::Value {
    let ip = p.ipv4.to_string();
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": p.name, "namespace": ns, "uid": p.uid, "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"nodeName": "spool-node", "containers": [{"name": "app", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": "2020-01-01T00:00:00Z"}})
}

impl Rig {
    fn new(prefix: &str, extra: &[&str]) -> Self {
        let mut node = Node::new(prefix).expect("lab node");
        let a = node.add_pod("client").expect("pod a");
        let b = node.add_pod("server").expect("pod b");
        let listener = serve(
            node.pods[b].netns.command(lab_bin(), Some(&node.pods[b].cgroup)).expect("cmd"),
            &["--tcp", "0.0.0.0:8080"],
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let namespace = format!("{prefix}-{}", std::process::id());
        let inventory = json!({"apiVersion": "v1", "kind": "List",
            "items": [pod_json(&node.pods[a], &namespace), pod_json(&node.pods[b], &namespace)]});
        std::fs::write(dir.path().join("inventory.json"), inventory.to_string()).expect("inventory");
        let rig = Self {
            _listener: listener,
            port: free_port(),
            metrics: format!("127.0.0.1:{}", free_port()),
            bpffs: PathBuf::from(format!("/sys/fs/bpf/mapper-test-{}-{prefix}", std::process::id())),
            namespace,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir,
            node,
        };
        // Warm the neighbour caches: refused at once, and nothing counts port 7.
        let r = rig.connect(1, 7);
        assert_eq!(r["failed"], 1, "warm-up connect was not refused: {r}");
        rig
    }

    fn server(&self) -> Daemon {
        let mut cmd = Command::new(bin("mapper-server"));
        cmd.args(["--listen", &format!("127.0.0.1:{}", self.port), "--inventory"])
            .arg(self.dir.path().join("inventory.json"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"));
        Daemon::spawn(cmd, "mapper-server listening", "mapper-server")
    }

    fn agent(&self) -> Daemon {
        let mut cmd = Command::new(bin("mapper-agent"));
        cmd.args(["--mapper-url", &format!("http://127.0.0.1:{}", self.port)])
            .args(["--node-name", "spool-node", "--metrics-listen", &self.metrics])
            .arg("--spool-dir")
            .arg(self.dir.path().join("spool"))
            .arg("--bpffs")
            .arg(&self.bpffs)
            .args(&self.extra);
        if !self.extra.iter().any(|a| a == "--report-interval") {
            cmd.args(["--report-interval", "100ms"]);
        }
        Daemon::spawn(cmd, "agent running", "mapper-agent")
    }

    /// `count` connections from the client pod to the server pod's `port`.
    /// `count` connections from the client pod to the server pod's port 8080,
    /// `pause` apart, in the background.
    fn client(&self, count: u64, pause: &str) -> Child {
        let (a, b) = (&self.node.pods[0], &self.node.pods[1]);
        let mut cmd = a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd");
        cmd.args(["call", "--timeout", "5s", "--to", &format!("{}:8080", b.ipv4), "--count", &count.to_string()])
            .args(["--interval", pause])
            .stdout(Stdio::piped());
        cmd.spawn().expect("client")
    }

    fn connect(&self, count: u64, port: u16) -> serde_json::Value {
        let (a, b) = (&self.node.pods[0], &self.node.pods[1]);
        let cmd = a.netns.command(lab_bin(), Some(&a.cgroup)).expect("cmd");
        call(cmd, &["--to", &format!("{}:{port}", b.ipv4), "--count", &count.to_string()])
    }

    /// Waits until the agent has drained twice more (everything the traffic
    /// made has left the kernel) and every batch spooled by then has been
    /// acknowledged. Not "until the spool is empty": other tests' traffic keeps
    /// adding batches, and the server defers each one until its cluster state
    /// is as new as the batch's flows.
    fn wait_acknowledged(&self, agent: &Daemon) {
        let before = metric(&self.metrics, "mapper_agent_drains_total");
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric(&self.metrics, "mapper_agent_drains_total") < before + 2 {
            assert!(Instant::now() < deadline, "the agent stopped draining:\n{}", agent.log());
            thread::sleep(Duration::from_millis(20));
        }
        let spooled = |dir: &Path| -> Vec<PathBuf> {
            let entries: Vec<PathBuf> =
                std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
            let batch = |p: &PathBuf| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".batch") && !n.starts_with('.'))
            };
            entries.into_iter().filter(batch).collect::<Vec<_>>()
        };
        let waiting = spooled(&self.dir.path().join("spool"));
        while let Some(left) = waiting.iter().find(|p| p.exists()) {
            assert!(Instant::now() < deadline, "{} not acknowledged:\n{}", left.display(), agent.log());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// (client side, server side) established counts of the test's edge, read
    /// from the stopped server's store.
    fn counts(&self) -> (u64, u64) {
        let store = EdgeStore::open(&self.dir.path().join("data")).expect("open the server's store");
        let mine: Vec<_> = store
            .edges()
            .into_iter()
            .filter(|(k, _)| {
                format!("{k:?}").contains(&self.namespace) && !format!("{:?}", k.server).contains("Unresolved")
            })
            .collect();
        let port8080: Vec<_> = mine.iter().filter(|(_, s)| s.ports.iter().any(|(p, _)| *p == 8080)).collect();
        assert_eq!(port8080.len(), 1, "one edge client -> server expected, got {mine:#?}");
        (port8080[0].1.client_established, port8080[0].1.server_established)
    }
}

fn wait_client(c: Child, n: u64) {
    let out = c.wait_with_output().expect("client");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("client summary");
    assert_eq!(summary["ok"], n, "client connections failed: {summary}");
}

#[test]
fn ten_kill_9s_during_100k_connections_lose_nothing() {
    if !bpf_available("ten_kill_9s_during_100k_connections_lose_nothing") {
        return;
    }
    const N: u64 = 100_000;
    // Drains every 20 ms: many kills land between a drain and its acknowledgement.
    let rig = Rig::new("msk", &["--report-interval", "20ms"]);
    let mut server = rig.server();
    let mut agent = rig.agent();
    let start = Instant::now();
    // Paced so that the ten kills fall inside the traffic.
    let mut client = rig.client(N, "40us");
    let mut kills = 0;
    let (mut loaded, mut with_spooled) = (0, 0);
    while kills < 10 {
        thread::sleep(Duration::from_millis(200 + 20 * kills));
        assert!(client.try_wait().expect("try_wait").is_none(), "the client ended before kill {}: too fast", kills + 1);
        with_spooled += u64::from(metric(&rig.metrics, "mapper_agent_spool_batches") > 0);
        agent.finish(libc::SIGKILL);
        kills += 1;
        agent = rig.agent();
        loaded += metric(&rig.metrics, "mapper_agent_spool_loaded_batches_total");
    }
    let killing = start.elapsed();
    wait_client(client, N);
    let traffic = start.elapsed();
    rig.wait_acknowledged(&agent);
    agent.finish(libc::SIGTERM);
    server.finish(libc::SIGTERM);
    let (connect, accept) = rig.counts();
    eprintln!(
        "10 kill -9s over {killing:?} ({with_spooled} with batches spooled a moment before), {N} connections in {traffic:?}, {loaded} batches found spooled by restarted agents; server: connect {connect}, accept {accept}"
    );
    assert_eq!((connect, accept), (N, N), "counts lost or doubled across 10 kill -9s");
    assert!(loaded > 0, "no restarted agent found a batch spooled: the resend path was not exercised");
}

/// The server away for a while (6 s, or `MAPPER_TEST_OUTAGE_SECS`); during it traffic, and the agent restarted
/// (by `signal`) while traffic still runs; then the server back.
fn outage_with_restart(prefix: &str, signal: i32) {
    // 6 s keeps CI quick; MAPPER_TEST_OUTAGE_SECS=30 runs the 30 s outage.
    let secs = std::env::var("MAPPER_TEST_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let outage = Duration::from_secs(secs);
    const N: u64 = 3_000;
    // A small bound: the outage fills it (10 drains a second, each with this
    // test's connect and accept flows), and unsent batches are merged. Not so
    // small that the other flows the agent sees on a busy machine (other tests,
    // other labs) make more distinct flows than it holds: those would be dropped.
    let rig = Rig::new(prefix, &["--max-pending-flows", "100"]);
    let mut server = rig.server();
    let mut agent = rig.agent();
    assert_eq!(rig.connect(N, 8080)["ok"], N);
    rig.wait_acknowledged(&agent);
    server.finish(libc::SIGTERM);
    let down = Instant::now();
    let client = rig.client(N, "1ms");
    thread::sleep(outage / 2);
    let merged_before = metric(&rig.metrics, "mapper_agent_spool_merged_batches_total");
    let stopped_in = agent.finish(signal);
    if signal == libc::SIGTERM {
        assert!(stopped_in < Duration::from_secs(2), "a graceful stop during an outage took {stopped_in:?}");
        assert!(agent.log().contains("stay spooled"), "no word of the spooled batches:\n{}", agent.log());
    }
    let agent = rig.agent();
    let loaded = metric(&rig.metrics, "mapper_agent_spool_loaded_batches_total");
    assert!(loaded >= 1, "the restarted agent found nothing spooled:\n{}", agent.log());
    wait_client(client, N);
    assert_eq!(rig.connect(N, 8080)["ok"], N, "traffic after the restart, still in the outage");
    thread::sleep(outage.saturating_sub(down.elapsed()));
    let merged_after = metric(&rig.metrics, "mapper_agent_spool_merged_batches_total");
    assert!(merged_before + merged_after > 0, "the outage never filled the spool: nothing merged");
    let mut server = rig.server();
    rig.wait_acknowledged(&agent);
    let resent = metric(&rig.metrics, "mapper_agent_spool_resent_batches_total");
    let dropped = metric(&rig.metrics, "mapper_agent_flows_dropped_total");
    assert!(resent >= 1, "nothing resent from the spool:\n{}", agent.log());
    drop(agent);
    server.finish(libc::SIGTERM);
    let (connect, accept) = rig.counts();
    eprintln!(
        "outage {:?}, restart by signal {signal} (took {stopped_in:?}): merged {merged_before}+{merged_after}, loaded {loaded}, resent {resent}, dropped {dropped}; server: connect {connect}, accept {accept}",
        down.elapsed()
    );
    // Flows beyond the bound's distinct flows are dropped (counted): on a busy
    // machine those are other tests' flows, this test's come first in every merge.
    assert_eq!(
        (connect, accept),
        (3 * N, 3 * N),
        "counts lost or doubled across the outage and the restart ({dropped} flows dropped by the bound)"
    );
}

#[test]
fn agent_killed_during_a_server_outage_loses_nothing() {
    if !bpf_available("agent_killed_during_a_server_outage_loses_nothing") {
        return;
    }
    outage_with_restart("msko", libc::SIGKILL);
}

#[test]
fn agent_stopped_during_a_server_outage_loses_nothing() {
    if !bpf_available("agent_stopped_during_a_server_outage_loses_nothing") {
        return;
    }
    outage_with_restart("msts", libc::SIGTERM);
}

#[test]
fn demo_down_waits_for_the_agent_so_the_next_one_starts_at_once() {
    if !bpf_available("demo_down_waits_for_the_agent_so_the_next_one_starts_at_once") {
        return;
    }
    // No server at all: the agent has batches it cannot deliver, as in a demo
    // torn down while its server is already gone.
    let rig = Rig::new("mstp", &["--shutdown-flush", "5s"]);
    let mut agent = rig.agent();
    assert!(http_get(&rig.metrics, "/readyz").is_some_and(|r| r.contains(" 200 ")), "not ready");
    assert_eq!(rig.connect(50, 8080)["ok"], 50);
    thread::sleep(Duration::from_millis(300));
    // What `scripts/demo.sh --down` does: stop_pid from scripts/lib.sh.
    let pid_file = rig.dir.path().join("agent.pid");
    std::fs::write(&pid_file, agent.pid().to_string()).expect("pid file");
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lib.sh");
    let start = Instant::now();
    let st = Command::new("bash")
        .arg("-c")
        .arg(format!("source {lib} && stop_pid {} 10", pid_file.display()))
        .status()
        .expect("bash");
    let took = start.elapsed();
    assert!(st.success(), "stop_pid failed");
    assert!(agent.exited_ok(), "stop_pid returned before the agent exited, or it failed:\n{}", agent.log());
    assert!(took < Duration::from_secs(2), "stopping with the server away took {took:?}:\n{}", agent.log());
    let log = agent.log();
    let closed = log.find("metrics endpoint closed").expect("logs the metrics endpoint closed");
    let spooled = log.find("stay spooled").expect("logs what stays spooled");
    assert!(closed < spooled, "readiness and metrics go first:\n{log}");
    // stop_pid leaves alone a pid that is not a mapper process.
    let mut other = Command::new("sleep").arg("30").spawn().expect("sleep");
    std::fs::write(&pid_file, other.id().to_string()).expect("pid file");
    let st = Command::new("bash").arg("-c").arg(format!("source {lib} && stop_pid {} 1", pid_file.display())).status();
    assert!(st.is_ok_and(|s| s.success()));
    assert!(other.try_wait().expect("try_wait").is_none(), "stop_pid killed a process that is not mapper's");
    let _ = other.kill();
    let _ = other.wait();
    // The next agent binds the same metrics port and spool at once, and
    // resends what the first one spooled.
    let agent = rig.agent();
    assert!(metric(&rig.metrics, "mapper_agent_spool_loaded_batches_total") >= 1, "{}", agent.log());
    let mut server = rig.server();
    rig.wait_acknowledged(&agent);
    drop(agent);
    server.finish(libc::SIGTERM);
    eprintln!("stop_pid stopped an agent with undeliverable batches in {took:?}; the next one resent them");
    assert_eq!(rig.counts(), (50, 50));
}

#[test]
fn a_kill_between_spooling_and_deleting_from_the_kernel_counts_nothing_twice() {
    if !bpf_available("a_kill_between_spooling_and_deleting_from_the_kernel_counts_nothing_twice") {
        return;
    }
    const N: u64 = 200;
    let rig = Rig::new("mskd", &[]);
    // The agent aborts after spooling its first drain with flows, before deleting
    // them from the kernel: the entries are both in the spool and in the idle buffer.
    let mut cmd = Command::new(bin("mapper-agent"));
    cmd.args(["--mapper-url", &format!("http://127.0.0.1:{}", rig.port), "--node-name", "spool-node"])
        .args(["--report-interval", "200ms", "--crash-after-spool", "--spool-dir"])
        .arg(rig.dir.path().join("spool"))
        .arg("--bpffs")
        .arg(&rig.bpffs);
    let mut first = Daemon::spawn(cmd, "agent running", "mapper-agent");
    assert_eq!(rig.connect(N, 8080)["ok"], N);
    first.wait_log("aborting between spooling", Duration::from_secs(10));
    let status = first.child.take().expect("running").wait().expect("wait");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGABRT), "{status}");
    let agent = rig.agent();
    let leftovers = metric(&rig.metrics, "mapper_agent_spool_kernel_leftovers_total");
    assert!(leftovers >= 2, "the spooled entries left in the kernel were not recognised:\n{}", agent.log());
    let mut server = rig.server();
    rig.wait_acknowledged(&agent);
    drop(agent);
    server.finish(libc::SIGTERM);
    eprintln!("abort after spooling: {leftovers} kernel entries recognised as spooled and deleted");
    assert_eq!(rig.counts(), (N, N), "the spooled entries were counted twice (or lost)");
}
