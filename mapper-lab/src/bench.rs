//! Cost of the agent on the traffic it watches, measured side by side in one
//! run: connections per second between two pod namespaces without and with
//! the agent (alternating rounds, so machine noise hits both alike), and the
//! agent's own CPU time per million connections.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    netns::{LabError, Proc},
    topo::Node,
};

/// The figures of one benchmark run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentBench {
    pub connections_per_round: u64,
    pub rounds: u32,
    pub clients: u32,
    /// Connections per second, median over the rounds.
    pub without_agent_cps: f64,
    pub with_agent_cps: f64,
    /// with / without.
    pub ratio: f64,
    /// Agent CPU seconds (user + system, all threads) per million connections,
    /// from the first connection of a round to the drain that follows it.
    pub agent_cpu_s_per_million: f64,
    /// Flows the agent printed over the run (the in-kernel aggregation at work).
    pub agent_flow_lines: u64,
}

/// CPU time of every thread of `pid`, in nanoseconds (schedstat is exact,
/// where /proc/<pid>/stat counts 10 ms ticks).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One round: `clients` processes in pod `a`, each making `per_client` connections to `to`.
fn round(node: &Node, lab: &Path, to: &str, clients: u32, per_client: u64) -> Result<f64, LabError> {
    let a = &node.pods[0];
    let start = Instant::now();
    let mut children: Vec<Child> = Vec::new();
    for _ in 0..clients {
        let mut cmd = a.netns.command(lab, Some(&a.cgroup))?;
        cmd.args(["call", "--to", to, "--count", &per_client.to_string()]).stdout(Stdio::null());
        children.push(cmd.spawn().map_err(|source| LabError::Spawn { command: "mapper-lab call".into(), source })?);
    }
    for mut c in children {
        let _ = c.wait();
    }
    Ok((u64::from(clients) * per_client) as f64 / start.elapsed().as_secs_f64())
}

/// A running agent for one "with" round.
struct RunningAgent {
    proc: Proc,
    lines: std::thread::JoinHandle<u64>,
    bpffs: String,
    spool: std::path::PathBuf,
}

fn start_agent(agent: &Path, bpffs: &str) -> Result<RunningAgent, LabError> {
    // Its own spool (no server listens: batches pile up there), removed with it.
    let spool = std::env::temp_dir().join(format!("mapper-bench-spool-{}", std::process::id()));
    let mut child = Command::new(agent)
        .args(["--output", "jsonl", "--report-interval", "1s", "--bpffs", bpffs, "--detach-on-exit"])
        .arg("--spool-dir")
        .arg(&spool)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn { command: agent.display().to_string(), source })?;
    // Wait until the programs are attached.
    if let Some(err) = child.stderr.take() {
        let mut reader = BufReader::new(err);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("agent running") {
            line.clear();
        }
        std::thread::spawn(move || for _ in reader.lines() {});
    }
    let out = child.stdout.take();
    let lines = std::thread::spawn(move || out.map_or(0, |o| BufReader::new(o).lines().count() as u64));
    Ok(RunningAgent { proc: Proc(child), lines, bpffs: bpffs.to_string(), spool })
}

/// Waits for the agent to drain the round (one report interval and a bit),
/// reads its CPU time since `t0`, stops it, and returns (CPU ns, flow lines).
fn stop_agent(mut a: RunningAgent, t0: u64) -> (u64, u64) {
    let pid = a.proc.0.id();
    std::thread::sleep(Duration::from_millis(1300));
    let used = cpu_ns(pid).saturating_sub(t0);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = a.proc.0.wait();
    let _ = fs::remove_dir_all(&a.bpffs);
    let _ = fs::remove_dir_all(&a.spool);
    (used, a.lines.join().unwrap_or(0))
}

/// Runs the benchmark with the agent binary at `agent`: `rounds` pairs of
/// rounds, without then with the agent, each of `connections` connections.
pub fn agent_bench(
    agent: &Path,
    lab: &Path,
    connections: u64,
    rounds: u32,
    clients: u32,
) -> Result<AgentBench, LabError> {
    let mut node = Node::new("mb")?;
    node.add_pod("a")?;
    node.add_pod("b")?;
    let b = &node.pods[1];
    let mut server_cmd = b.netns.command(lab, Some(&b.cgroup))?;
    server_cmd.args(["serve", "--tcp", "0.0.0.0:8080"]).stdout(Stdio::piped());
    let mut server =
        Proc(server_cmd.spawn().map_err(|source| LabError::Spawn { command: "mapper-lab serve".into(), source })?);
    if let Some(out) = server.0.stdout.take() {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let to = format!("{}:8080", b.ipv4);
    let clients = clients.max(1);
    let per_client = (connections / u64::from(clients)).max(1);
    round(&node, lab, &to, 1, 500)?; // warm-up: ARP, conntrack, page cache

    let bpffs = format!("/sys/fs/bpf/mapper-bench-{}", std::process::id());
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut agent_ns, mut with_conns, mut flow_lines) = (0u64, 0u64, 0u64);
    for _ in 0..rounds {
        without.push(round(&node, lab, &to, clients, per_client)?);
        let running = start_agent(agent, &bpffs)?;
        let t0 = cpu_ns(running.proc.0.id());
        with.push(round(&node, lab, &to, clients, per_client)?);
        with_conns += per_client * u64::from(clients);
        let (ns, lines) = stop_agent(running, t0);
        agent_ns += ns;
        flow_lines += lines;
    }
    drop(server);
    let (without_cps, with_cps) = (median(without), median(with));
    Ok(AgentBench {
        connections_per_round: per_client * u64::from(clients),
        rounds,
        clients,
        without_agent_cps: without_cps,
        with_agent_cps: with_cps,
        ratio: with_cps / without_cps,
        agent_cpu_s_per_million: agent_ns as f64 / 1e9 / (with_conns as f64 / 1e6),
        agent_flow_lines: flow_lines,
    })
}
