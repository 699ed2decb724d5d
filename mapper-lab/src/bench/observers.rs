//! The observers the benchmark compares, each watching the same traffic: how
//! one is started and stopped, its CPU time, and how many of the probe's
//! connections it reports.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::{LabError, Proc};

/// The programs of one per-event tracer: the client end of every established
/// TCP connection, one event each, printed by user space.
const BPFTRACE_PROGRAM: &str = "BEGIN { printf(\"ready\\n\"); } \
     tracepoint:sock:inet_sock_set_state \
     /args->protocol == 6 && args->oldstate == 2 && args->newstate == 1/ \
     { printf(\"%d %d\\n\", args->sport, args->dport); }";

/// Who watches the traffic of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observer {
    /// Nothing: the baseline.
    None,
    /// mapper-agent: in-kernel aggregation, drained once a second.
    Agent,
    /// bpftrace on the same tracepoint, one event per connection to user space.
    Bpftrace,
    /// `conntrack -E` in the node namespace: netlink events.
    Conntrack,
    /// `/proc/net/tcp{,6}` of every pod namespace, read once a second.
    ProcPoll,
    /// Empty programs on the agent's hooks (`mapper-bpf-floor`): what the hooks
    /// alone cost the traffic, whatever a program on them does.
    Floor,
}

impl Observer {
    pub const ALL: [Observer; 6] =
        [Observer::None, Observer::Agent, Observer::Bpftrace, Observer::Conntrack, Observer::ProcPoll, Observer::Floor];

    pub fn name(self) -> &'static str {
        match self {
            Observer::None => "none",
            Observer::Agent => "mapper-agent",
            Observer::Bpftrace => "bpftrace",
            Observer::Conntrack => "conntrack -E",
            Observer::ProcPoll => "proc-net-tcp-poll",
            Observer::Floor => "empty-programs-on-the-agent-hooks",
        }
    }
}

/// Where the observers find what they watch.
pub struct Setup<'a> {
    pub agent: &'a Path,
    pub lab: &'a Path,
    /// The node namespace (conntrack runs there).
    pub node_netns: &'a crate::netns::Netns,
    /// Every pod namespace (the poller reads each).
    pub pod_netns: Vec<PathBuf>,
    /// Per-run bpffs directory of the agent.
    pub bpffs: String,
    /// The `mapper-bpf-floor` binary (the floor observer is left out without it).
    pub floor: Option<PathBuf>,
    /// A `mapper-server` binary the agent reports to, as deployed (without it the agent
    /// has no server: it keeps its batches spooled and retries).
    pub server: Option<PathBuf>,
    /// The agent's `--report-interval` (how often it drains).
    pub agent_interval: Duration,
}

/// A started observer.
pub struct Running {
    pub observer: Observer,
    proc: Option<Proc>,
    lines: Option<JoinHandle<Vec<String>>>,
    spool: Option<PathBuf>,
    pub bpffs: Option<String>,
    /// The mapper-server the agent reports to, and its data directory.
    server: Option<(Proc, PathBuf)>,
}

fn spawn_err(command: &str) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Spawn { command: command.into(), source }
}

/// Reads `out` line by line until a line containing `ready` (or the end), then
/// collects the rest on a thread.
fn collect_after_ready(out: impl std::io::Read + Send + 'static, marker: &'static str) -> JoinHandle<Vec<String>> {
    let mut reader = BufReader::new(out);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.contains(marker) {
        line.clear();
    }
    std::thread::spawn(move || reader.lines().map_while(Result::ok).collect())
}

/// Starts `observer` and returns once it is watching.
pub fn start(observer: Observer, setup: &Setup<'_>) -> Result<Running, LabError> {
    let mut r = Running { observer, proc: None, lines: None, spool: None, bpffs: None, server: None };
    match observer {
        Observer::None => {}
        Observer::Agent => {
            let spool = std::env::temp_dir().join(format!("mapper-bench-spool-{}", std::process::id()));
            let mut agent = Command::new(setup.agent);
            if let Some(bin) = &setup.server {
                let (proc, data, url) = start_server(bin)?;
                r.server = Some((proc, data));
                agent.args(["--mapper-url", &url]);
            }
            let interval = humantime::format_duration(setup.agent_interval).to_string();
            let mut child = agent
                .args([
                    "--output",
                    "jsonl",
                    "--report-interval",
                    &interval,
                    "--bpffs",
                    &setup.bpffs,
                    "--detach-on-exit",
                ])
                // The node's namespace, as the chart names it to the agent.
                .arg("--host-netns")
                .arg(setup.node_netns.path())
                .arg("--spool-dir")
                .arg(&spool)
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(spawn_err("mapper-agent"))?;
            // Attached once it logs "agent running".
            if let Some(err) = child.stderr.take() {
                drop(collect_after_ready(err, "agent running"));
            }
            let out = child.stdout.take();
            r.lines = Some(std::thread::spawn(move || {
                out.map_or_else(Vec::new, |o| BufReader::new(o).lines().map_while(Result::ok).collect())
            }));
            r.proc = Some(Proc(child));
            r.spool = Some(spool);
            r.bpffs = Some(setup.bpffs.clone());
        }
        Observer::Bpftrace => {
            let mut child = Command::new("bpftrace")
                .args(["-B", "line", "-e", BPFTRACE_PROGRAM])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(spawn_err("bpftrace (Debian package bpftrace)"))?;
            r.lines = child.stdout.take().map(|o| collect_after_ready(o, "ready"));
            r.proc = Some(Proc(child));
        }
        Observer::Conntrack => {
            let mut cmd = setup.node_netns.command("conntrack", None)?;
            cmd.args(["-E", "-e", "NEW", "-p", "tcp"]).stdout(Stdio::piped()).stderr(Stdio::null());
            let mut child = cmd.spawn().map_err(spawn_err("conntrack (Debian package conntrack)"))?;
            let out = child.stdout.take();
            r.lines = Some(std::thread::spawn(move || {
                out.map_or_else(Vec::new, |o| BufReader::new(o).lines().map_while(Result::ok).collect())
            }));
            r.proc = Some(Proc(child));
            // It prints nothing until an event: give it the time to subscribe.
            std::thread::sleep(Duration::from_millis(300));
        }
        Observer::ProcPoll => {
            let mut cmd = Command::new(setup.lab);
            cmd.args(["bench-peer", "proc-poll", "--interval", "1s"]);
            for p in &setup.pod_netns {
                cmd.arg("--netns").arg(p);
            }
            let mut child =
                cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(spawn_err("mapper-lab bench-peer"))?;
            r.lines = child.stdout.take().map(|o| collect_after_ready(o, "ready"));
            r.proc = Some(Proc(child));
        }
        Observer::Floor => {
            let Some(floor) = &setup.floor else { return Ok(r) };
            let root = crate::netns::cgroup2_root()?;
            let mut child = Command::new(floor)
                .arg(root)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(spawn_err("mapper-bpf-floor"))?;
            r.lines = child.stdout.take().map(|o| collect_after_ready(o, "ready"));
            r.proc = Some(Proc(child));
        }
    }
    Ok(r)
}

/// Starts `bin` on a free loopback port with a fresh data directory, and waits until it
/// accepts connections: (the process, its data directory, its URL).
fn start_server(bin: &Path) -> Result<(Proc, PathBuf, String), LabError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|source| LabError::Spawn { command: "mapper-server (a free port)".into(), source })?
        .port();
    let data = std::env::temp_dir().join(format!("mapper-bench-server-{}-{port}", std::process::id()));
    let io = |source| LabError::Spawn { command: format!("mapper-server's directory {}", data.display()), source };
    fs::create_dir_all(&data).map_err(io)?;
    // No cluster here: an inventory of nothing (the bench's pods resolve to no workload).
    let inventory = data.join("inventory.yaml");
    fs::write(&inventory, "apiVersion: v1\nkind: List\nitems: []\n").map_err(io)?;
    let log = fs::File::create(data.join("server.log")).map_err(io)?;
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data.join("store"))
        .arg("--inventory")
        .arg(&inventory)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(spawn_err("mapper-server"))?;
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(LabError::Spawn {
                command: format!("mapper-server on 127.0.0.1:{port}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("not listening after 30 s; its log: {}", data.join("server.log").display()),
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((proc, data, format!("http://127.0.0.1:{port}")))
}

/// CPU time of every thread of `pid`, in nanoseconds (schedstat is exact,
/// where /proc/<pid>/stat counts 10 ms ticks).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

impl Running {
    /// The observer's CPU time so far (0 for none).
    pub fn cpu_ns(&self) -> u64 {
        self.proc.as_ref().map_or(0, |p| cpu_ns(p.0.id()))
    }

    /// Stops it (SIGINT for bpftrace, SIGTERM otherwise) and returns what it printed.
    pub fn stop(mut self) -> Vec<String> {
        let Some(mut proc) = self.proc.take() else { return Vec::new() };
        let sig = if self.observer == Observer::Bpftrace { libc::SIGINT } else { libc::SIGTERM };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(proc.0.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = proc.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(proc);
        if let Some(b) = &self.bpffs {
            let _ = fs::remove_dir_all(b);
        }
        if let Some(s) = &self.spool {
            let _ = fs::remove_dir_all(s);
        }
        if let Some((server, data)) = self.server.take() {
            drop(server);
            let _ = fs::remove_dir_all(data);
        }
        self.lines.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

/// What the probe's server side looks like to each observer.
pub struct ProbeTarget {
    pub port: u16,
    /// Network namespace inodes of the client and server pods.
    pub client_netns: u64,
    pub server_netns: u64,
}

/// How many of the probe's connections `observer` reported, from its output.
pub fn seen(observer: Observer, lines: &[String], t: &ProbeTarget) -> u64 {
    let port = t.port;
    match observer {
        Observer::None | Observer::Floor => 0,
        Observer::Agent => {
            // Both ends must be counted: the smaller of the two.
            let (mut connects, mut accepts) = (0u64, 0u64);
            for l in lines {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else { continue };
                if v["record"] != "flow" || v["protocol"] != "tcp" || v["dst_port"] != port {
                    continue;
                }
                let count = v["count"].as_u64().unwrap_or(0);
                match v["direction"].as_str() {
                    Some("connect") if v["netns"] == t.client_netns => connects += count,
                    Some("accept") if v["netns"] == t.server_netns => accepts += count,
                    _ => {}
                }
            }
            connects.min(accepts)
        }
        Observer::Bpftrace => lines
            .iter()
            .filter(|l| l.split_whitespace().nth(1).and_then(|p| p.parse::<u16>().ok()) == Some(port))
            .count() as u64,
        Observer::Conntrack => {
            let needle = format!(" dport={port} ");
            // The first tuple is the original direction: its dport is the server's.
            lines.iter().filter(|l| l.split("src=").nth(1).is_some_and(|t| t.contains(&needle))).count() as u64
        }
        Observer::ProcPoll => {
            lines.iter().filter(|l| l.split_whitespace().nth(2).and_then(super::peer::proc_port) == Some(port)).count()
                as u64
        }
    }
}

/// The kernel's own accounting of one BPF program: (run_time_ns, run_cnt).
pub fn prog_stats(prog_id: u64) -> Option<(u64, u64)> {
    let out = Command::new("bpftool").args(["-j", "prog", "show", "id", &prog_id.to_string()]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["run_time_ns"].as_u64().unwrap_or(0), v["run_cnt"].as_u64().unwrap_or(0)))
}

/// The agent's programs (by the links it pinned under `bpffs`) and their
/// accounting now: name -> (run_time_ns, run_cnt).
pub fn agent_bpf_stats(bpffs: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    let Ok(versions) = fs::read_dir(bpffs) else { return out };
    for v in versions.flatten() {
        let Ok(links) = fs::read_dir(v.path().join("links")) else { continue };
        for l in links.flatten() {
            let name = l.file_name().to_string_lossy().into_owned();
            let Ok(o) = Command::new("bpftool").arg("-j").args(["link", "show", "pinned"]).arg(l.path()).output()
            else {
                continue;
            };
            let Ok(j) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else { continue };
            let Some(id) = j["prog_id"].as_u64() else { continue };
            if let Some((ns, cnt)) = prog_stats(id) {
                out.push((name, ns, cnt));
            }
        }
    }
    out
}
