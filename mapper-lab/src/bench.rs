//! Cost of watching the traffic, measured side by side in one run: the same
//! traffic between two pod namespaces watched by nothing, by mapper-agent, by
//! a per-event bpftrace program on the same tracepoint, by `conntrack -E`, and
//! by a poller of `/proc/net/tcp{,6}` of every pod namespace (rounds alternate,
//! in a rotating order, so machine noise hits all alike). For each: the rate
//! against none, the observer's CPU per million connections (or requests), and
//! the share of 1 ms connections it reported. Then, in rounds of their own
//! with `kernel.bpf_stats_enabled=1`, the kernel's accounting of each of the
//! agent's programs per connection (and per request): the figure machine noise
//! does not move.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::{
    netns::{LabError, Proc},
    topo::Node,
};

mod observers;
pub mod peer;

use observers::{Observer, ProbeTarget, Setup};

const CONNECT_PORT: u16 = 8080;
const PROBE_PORT: u16 = 8081;
const ECHO_PORT: u16 = 8082;
/// How long each probe connection stays open.
const PROBE_HOLD: Duration = Duration::from_millis(1);
/// How long after a round `observer` has surely reported it: the agent drains every
/// `--agent-interval` (the chart's 5 s by default), the poller reads once a second, the
/// per-event observers print at once. The same wait for each would charge the observers
/// that poll for the agent's interval.
fn drain_wait(setup: &Setup<'_>, observer: Observer) -> Duration {
    let every = if observer == Observer::Agent { setup.agent_interval } else { Duration::ZERO };
    every.max(Duration::from_secs(1)) + Duration::from_millis(300)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Connections per round of the connect-only workload.
    pub connections: u64,
    /// Requests per round of the request/response workload.
    pub requests: u64,
    /// Rounds per workload (each watched by every observer in turn).
    pub rounds: u32,
    /// Client processes per round (each with one keep-alive connection in request/response).
    pub clients: u32,
    /// Request and response size in request/response.
    pub payload: usize,
    /// 1 ms connections of the probe after each watched round.
    pub probe: u64,
    /// Rounds with the kernel's BPF accounting on (agent only).
    pub accounting_rounds: u32,
    /// The `mapper-bpf-floor` binary: when given, the accounting rounds are also run
    /// with empty programs on the same hooks.
    pub floor: Option<std::path::PathBuf>,
    /// Which parts to run (a narrower run while working on one of them).
    pub parts: Parts,
    /// How long each round of the agent's CPU at two rates lasts: long against the wait
    /// for its last drain, so that the figure is the agent's cost while traffic runs, not
    /// its idle cost after a burst.
    pub scaling_round: Duration,
    /// A `mapper-server` binary for the agent to report to (none: the agent retries a
    /// server that is not there, merging what it keeps spooled).
    pub server: Option<std::path::PathBuf>,
    /// The agent's drain interval (`--report-interval`).
    pub agent_interval: Duration,
}

/// The parts of the benchmark; a part not run reports empty figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The observers side by side, both workloads.
    pub observers: bool,
    /// The agent's CPU at a tenth of the rate and at full rate.
    pub scaling: bool,
    /// The kernel's accounting of the BPF programs (and of the floor's).
    pub accounting: bool,
}

/// One observer's figures in one workload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObserverFigures {
    pub name: &'static str,
    /// Median rate watched by this observer over median rate watched by none.
    pub cps_ratio: f64,
    /// Observer CPU seconds (user + system, all threads) per million
    /// connections (connect) or requests (request_response), from the round's
    /// start to the drain after it.
    pub cpu_s_per_million: f64,
    /// Share of the probe's 1 ms connections it reported (none: null).
    pub seen_share: Option<f64>,
    /// Median rate (connections or requests per second).
    pub rate_per_s: f64,
    /// The rate of each round, in order (how noisy the machine was).
    pub round_rates: Vec<f64>,
}

/// One workload's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadFigures {
    /// What the rate counts.
    pub unit: &'static str,
    pub per_round: u64,
    pub rounds: u32,
    pub observers: Vec<ObserverFigures>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Workloads {
    pub connect: WorkloadFigures,
    pub request_response: WorkloadFigures,
}

/// The agent's CPU at one connection rate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentAtRate {
    pub rate_per_s: f64,
    pub cpu_s_per_million: f64,
    /// CPU seconds per second of the round and its drain.
    pub cpu_s_per_s: f64,
}

/// The whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// How the agent ran: reporting to a real mapper-server or to none, and how often it
    /// drained.
    pub agent: AgentSetup,
    pub workloads: Workloads,
    /// The agent's user-space CPU with the connect-only workload paced to a tenth of its
    /// rate, and at full rate (rounds of about the same length).
    pub agent_rate_scaling: Vec<AgentAtRate>,
    /// run_time_ns of each agent program over the connections of the
    /// connect-only accounting rounds (both ends on this node), and the total.
    pub bpf_ns_per_connection: BTreeMap<String, f64>,
    /// run_cnt per connection of each program.
    pub bpf_runs_per_connection: BTreeMap<String, f64>,
    /// run_time_ns per request of request/response (keep-alive, `payload` bytes each way).
    pub bpf_ns_per_request: BTreeMap<String, f64>,
    /// The same accounting for empty programs on the same hooks and the same
    /// connections (`--floor`): what the kernel charges a program for running at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_floor_ns_per_connection: Option<BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_floor_ns_per_request: Option<BTreeMap<String, f64>>,
}

/// How the benchmark ran the agent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentSetup {
    /// Whether it reported to a real mapper-server on loopback.
    pub server: bool,
    /// Its `--report-interval`, in seconds.
    pub report_interval_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Connect,
    RequestResponse,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Lab<'a> {
    node: Node,
    lab: &'a Path,
    server_ip: String,
}

impl Lab<'_> {
    /// `clients` processes in pod `a` run `args` at once; returns the wall time.
    fn run_clients(&self, clients: u32, args: &[String]) -> Result<Duration, LabError> {
        let a = &self.node.pods[0];
        let start = Instant::now();
        let mut children: Vec<Child> = Vec::new();
        for _ in 0..clients {
            let mut cmd = a.netns.command(self.lab, Some(&a.cgroup))?;
            cmd.args(args).stdout(Stdio::null());
            children.push(cmd.spawn().map_err(|source| LabError::Spawn { command: "mapper-lab".into(), source })?);
        }
        for mut c in children {
            let _ = c.wait();
        }
        Ok(start.elapsed())
    }

    /// One round of `w`; returns connections (or requests) per second.
    fn round(&self, w: Workload, clients: u32, per_client: u64, payload: usize) -> Result<f64, LabError> {
        self.paced_round(w, clients, per_client, payload, Duration::ZERO)
    }

    /// A round whose clients pause `interval` between two connections (connect only).
    fn paced_round(
        &self,
        w: Workload,
        clients: u32,
        per_client: u64,
        payload: usize,
        interval: Duration,
    ) -> Result<f64, LabError> {
        let args: Vec<String> = match w {
            Workload::Connect => vec![
                "call".into(),
                "--to".into(),
                format!("{}:{CONNECT_PORT}", self.server_ip),
                "--count".into(),
                per_client.to_string(),
                "--interval".into(),
                format!("{}us", interval.as_micros()),
            ],
            Workload::RequestResponse => vec![
                "bench-peer".into(),
                "rr".into(),
                "--to".into(),
                format!("{}:{ECHO_PORT}", self.server_ip),
                "--count".into(),
                per_client.to_string(),
                "--payload".into(),
                payload.to_string(),
            ],
        };
        let took = self.run_clients(clients, &args)?;
        Ok((u64::from(clients) * per_client) as f64 / took.as_secs_f64())
    }

    fn probe(&self, count: u64) -> Result<(), LabError> {
        let args = vec![
            "bench-peer".into(),
            "hold".into(),
            "--to".into(),
            format!("{}:{PROBE_PORT}", self.server_ip),
            "--count".into(),
            count.to_string(),
            "--hold".into(),
            format!("{}ms", PROBE_HOLD.as_millis()),
        ];
        self.run_clients(1, &args).map(|_| ())
    }
}

#[derive(Default)]
struct Tally {
    rates: Vec<f64>,
    cpu_ns: u64,
    units: u64,
    seen: u64,
    probed: u64,
}

/// Sets kernel.bpf_stats_enabled, returning the previous value.
fn bpf_stats(on: bool) -> String {
    let path = "/proc/sys/kernel/bpf_stats_enabled";
    let old = fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_else(|_| "0".into());
    let _ = fs::write(path, if on { "1" } else { "0" });
    old
}

fn workload_figures(
    w: Workload,
    lab: &Lab<'_>,
    setup: &Setup<'_>,
    cfg: &BenchConfig,
    target: &ProbeTarget,
) -> Result<WorkloadFigures, LabError> {
    let clients = cfg.clients.max(1);
    let total = if w == Workload::Connect { cfg.connections } else { cfg.requests };
    let per_client = (total / u64::from(clients)).max(1);
    lab.round(w, 1, (per_client / 10).max(1), cfg.payload)?; // warm-up: ARP, conntrack, page cache
    let mut tallies: BTreeMap<usize, Tally> = BTreeMap::new();
    for r in 0..cfg.rounds {
        for k in 0..Observer::ALL.len() {
            let i = (k + r as usize) % Observer::ALL.len();
            let obs = Observer::ALL[i];
            if obs == Observer::Floor && setup.floor.is_none() {
                continue;
            }
            let running = observers::start(obs, setup)?;
            let t0 = running.cpu_ns();
            let rate = lab.round(w, clients, per_client, cfg.payload)?;
            let t = tallies.entry(i).or_default();
            t.rates.push(rate);
            t.units += per_client * u64::from(clients);
            if obs == Observer::None || obs == Observer::Floor {
                drop(running.stop());
                continue;
            }
            std::thread::sleep(drain_wait(setup, obs));
            t.cpu_ns += running.cpu_ns().saturating_sub(t0);
            lab.probe(cfg.probe)?;
            std::thread::sleep(drain_wait(setup, obs));
            let lines = running.stop();
            t.seen += observers::seen(obs, &lines, target);
            t.probed += cfg.probe;
        }
    }
    let base = tallies.get(&0).map(|t| median(t.rates.clone())).unwrap_or(0.0);
    let observers = Observer::ALL
        .iter()
        .enumerate()
        .filter(|(_, obs)| **obs != Observer::Floor || setup.floor.is_some())
        .map(|(i, obs)| {
            let t = tallies.remove(&i).unwrap_or_default();
            let rate = median(t.rates.clone());
            let watched = *obs != Observer::None && *obs != Observer::Floor;
            ObserverFigures {
                name: obs.name(),
                cps_ratio: if base > 0.0 { rate / base } else { 0.0 },
                cpu_s_per_million: if t.units > 0 { t.cpu_ns as f64 / 1e9 / (t.units as f64 / 1e6) } else { 0.0 },
                seen_share: (watched && t.probed > 0).then(|| t.seen as f64 / t.probed as f64),
                rate_per_s: rate,
                round_rates: t.rates,
            }
        })
        .collect();
    Ok(WorkloadFigures {
        unit: if w == Workload::Connect { "connections" } else { "requests" },
        per_round: per_client * u64::from(clients),
        rounds: cfg.rounds,
        observers,
    })
}

/// A figure per BPF program, and their total under "total".
type PerProgram = BTreeMap<String, f64>;

/// The agent's programs' run time (and runs) per unit of `w`, over `rounds`
/// rounds with the kernel's accounting on.
fn bpf_accounting(
    w: Workload,
    lab: &Lab<'_>,
    setup: &Setup<'_>,
    cfg: &BenchConfig,
) -> Result<(PerProgram, PerProgram), LabError> {
    let clients = cfg.clients.max(1);
    let total = if w == Workload::Connect { cfg.connections } else { cfg.requests };
    let per_client = (total / u64::from(clients)).max(1);
    let (mut ns, mut runs): (BTreeMap<String, u64>, BTreeMap<String, u64>) = Default::default();
    let mut units = 0u64;
    for _ in 0..cfg.accounting_rounds {
        let running = observers::start(Observer::Agent, setup)?;
        let before = observers::agent_bpf_stats(&setup.bpffs);
        lab.round(w, clients, per_client, cfg.payload)?;
        let after = observers::agent_bpf_stats(&setup.bpffs);
        units += per_client * u64::from(clients);
        for (name, t1, c1) in after {
            let (t0, c0) = before.iter().find(|(n, ..)| *n == name).map_or((0, 0), |(_, t, c)| (*t, *c));
            *ns.entry(name.clone()).or_default() += t1.saturating_sub(t0);
            *runs.entry(name).or_default() += c1.saturating_sub(c0);
        }
        drop(running.stop());
    }
    let per = |m: BTreeMap<String, u64>| -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> =
            m.into_iter().filter(|(_, v)| *v > 0).map(|(k, v)| (k, v as f64 / units.max(1) as f64)).collect();
        let total = out.values().sum();
        out.insert("total".into(), total);
        out
    };
    Ok((per(ns), per(runs)))
}

/// What empty programs on the agent's hooks are charged per unit of `w`
/// (keyed by the agent program whose hook each shares).
fn floor_accounting(w: Workload, lab: &Lab<'_>, cfg: &BenchConfig, floor: &Path) -> Result<PerProgram, LabError> {
    let clients = cfg.clients.max(1);
    let total = if w == Workload::Connect { cfg.connections } else { cfg.requests };
    let per_client = (total / u64::from(clients)).max(1);
    let root = crate::netns::cgroup2_root()?;
    let mut ns: BTreeMap<String, u64> = BTreeMap::new();
    let mut units = 0u64;
    for _ in 0..cfg.accounting_rounds {
        let mut child = std::process::Command::new(floor)
            .arg(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| LabError::Spawn { command: floor.display().to_string(), source })?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let progs: Vec<(String, u64)> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(name, id)| Some((name.to_string(), id.parse().ok()?)))
            .collect();
        if progs.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LabError::Command { command: floor.display().to_string(), stderr: "did not attach".into() });
        }
        let before: Vec<(u64, u64)> =
            progs.iter().map(|(_, id)| observers::prog_stats(*id).unwrap_or((0, 0))).collect();
        lab.round(w, clients, per_client, cfg.payload)?;
        for ((name, id), (t0, _)) in progs.iter().zip(before) {
            let (t1, _) = observers::prog_stats(*id).unwrap_or((0, 0));
            *ns.entry(name.clone()).or_default() += t1.saturating_sub(t0);
        }
        units += per_client * u64::from(clients);
        drop(child.stdin.take());
        let _ = child.wait();
    }
    let mut out: PerProgram = ns.into_iter().map(|(k, v)| (k, v as f64 / units.max(1) as f64)).collect();
    let total = out.values().sum();
    out.insert("total".into(), total);
    Ok(out)
}

/// The agent's CPU over a round of `per_client` connections per client paced by
/// `interval`, and the drain after it.
fn agent_at_rate(
    lab: &Lab<'_>,
    setup: &Setup<'_>,
    clients: u32,
    per_client: u64,
    interval: Duration,
) -> Result<AgentAtRate, LabError> {
    let running = observers::start(Observer::Agent, setup)?;
    let t0 = running.cpu_ns();
    let start = Instant::now();
    let rate = lab.paced_round(Workload::Connect, clients, per_client, 0, interval)?;
    std::thread::sleep(drain_wait(setup, Observer::Agent));
    let cpu = running.cpu_ns().saturating_sub(t0) as f64 / 1e9;
    let wall = start.elapsed().as_secs_f64();
    drop(running.stop());
    let units = (per_client * u64::from(clients)) as f64;
    Ok(AgentAtRate { rate_per_s: rate, cpu_s_per_million: cpu / (units / 1e6), cpu_s_per_s: cpu / wall })
}

/// The agent at a tenth of the rate `full` measured, then at full rate, each for about
/// `cfg.scaling_round`.
fn agent_rate_scaling(
    lab: &Lab<'_>,
    setup: &Setup<'_>,
    cfg: &BenchConfig,
    full: f64,
) -> Result<Vec<AgentAtRate>, LabError> {
    let clients = cfg.clients.max(1);
    let per_client = ((full * cfg.scaling_round.as_secs_f64()) as u64 / u64::from(clients)).max(10);
    let mut out = Vec::new();
    if full > 0.0 {
        // A tenth of the rate for as long: a tenth of the connections, each client
        // pausing nine connections' time after each (together about full / 10 per second).
        let interval = Duration::from_secs_f64(f64::from(clients) * 9.0 / full);
        out.push(agent_at_rate(lab, setup, clients, per_client / 10, interval)?);
    }
    out.push(agent_at_rate(lab, setup, clients, per_client, Duration::ZERO)?);
    Ok(out)
}

/// Runs the benchmark with the agent binary at `agent` and this lab binary at `lab`.
pub fn observer_bench(agent: &Path, lab: &Path, cfg: &BenchConfig) -> Result<BenchReport, LabError> {
    let mut node = Node::new("mb")?;
    node.add_pod("a")?;
    node.add_pod("b")?;
    // A Service, as every node has: conntrack runs in the node namespace.
    let vip = node.cluster_ip(10, false);
    let b_ip = node.pods[1].ipv4;
    node.add_cluster_ip(vip, 80, "tcp", &[(b_ip.into(), CONNECT_PORT)])?;
    let b = &node.pods[1];
    let mut server_cmd = b.netns.command(lab, Some(&b.cgroup))?;
    server_cmd.args(["bench-peer", "serve", "--payload", &cfg.payload.to_string()]);
    for p in [CONNECT_PORT, PROBE_PORT] {
        server_cmd.args(["--connect".to_string(), format!("0.0.0.0:{p}")]);
    }
    server_cmd.args(["--echo".to_string(), format!("0.0.0.0:{ECHO_PORT}")]).stdout(Stdio::piped());
    let mut server =
        Proc(server_cmd.spawn().map_err(|source| LabError::Spawn { command: "mapper-lab bench-peer".into(), source })?);
    if let Some(out) = server.0.stdout.take() {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let target = ProbeTarget {
        port: PROBE_PORT,
        client_netns: node.pods[0].netns.inode()?,
        server_netns: node.pods[1].netns.inode()?,
    };
    let pod_netns = node.pods.iter().map(|p| p.netns.path()).collect();
    let bpffs = format!("/sys/fs/bpf/mapper-bench-{}", std::process::id());
    let lab_env = Lab { server_ip: b_ip.to_string(), node, lab };
    let setup = Setup {
        agent,
        lab,
        node_netns: &lab_env.node.netns,
        pod_netns,
        bpffs,
        floor: cfg.floor.clone(),
        server: cfg.server.clone(),
        agent_interval: cfg.agent_interval,
    };

    let agent_setup = AgentSetup { server: cfg.server.is_some(), report_interval_s: cfg.agent_interval.as_secs_f64() };
    let old = bpf_stats(false);
    let result = (|| {
        let parts = cfg.parts;
        let empty = |w: Workload| WorkloadFigures {
            unit: if w == Workload::Connect { "connections" } else { "requests" },
            per_round: 0,
            rounds: 0,
            observers: Vec::new(),
        };
        let (connect, request_response) = if parts.observers {
            (
                workload_figures(Workload::Connect, &lab_env, &setup, cfg, &target)?,
                workload_figures(Workload::RequestResponse, &lab_env, &setup, cfg, &target)?,
            )
        } else {
            (empty(Workload::Connect), empty(Workload::RequestResponse))
        };
        let agent_rate_scaling = if parts.scaling {
            let full = match connect.observers.iter().find(|o| o.name == Observer::None.name()) {
                Some(o) => o.rate_per_s,
                // The observers were not run: one unwatched round tells the full rate.
                None => {
                    let clients = cfg.clients.max(1);
                    let per_client = (cfg.connections / u64::from(clients)).max(1);
                    lab_env.round(Workload::Connect, 1, (per_client / 10).max(1), 0)?;
                    lab_env.round(Workload::Connect, clients, per_client, 0)?
                }
            };
            agent_rate_scaling(&lab_env, &setup, cfg, full)?
        } else {
            Vec::new()
        };
        if !parts.accounting {
            return Ok(BenchReport {
                agent: agent_setup,
                workloads: Workloads { connect, request_response },
                agent_rate_scaling,
                bpf_ns_per_connection: BTreeMap::new(),
                bpf_runs_per_connection: BTreeMap::new(),
                bpf_ns_per_request: BTreeMap::new(),
                bpf_floor_ns_per_connection: None,
                bpf_floor_ns_per_request: None,
            });
        }
        bpf_stats(true);
        let (ns_conn, runs_conn) = bpf_accounting(Workload::Connect, &lab_env, &setup, cfg)?;
        let (ns_req, _) = bpf_accounting(Workload::RequestResponse, &lab_env, &setup, cfg)?;
        let (floor_conn, floor_req) = match &cfg.floor {
            Some(f) => (
                Some(floor_accounting(Workload::Connect, &lab_env, cfg, f)?),
                Some(floor_accounting(Workload::RequestResponse, &lab_env, cfg, f)?),
            ),
            None => (None, None),
        };
        Ok(BenchReport {
            agent: agent_setup.clone(),
            workloads: Workloads { connect, request_response },
            agent_rate_scaling,
            bpf_ns_per_connection: ns_conn,
            bpf_runs_per_connection: runs_conn,
            bpf_ns_per_request: ns_req,
            bpf_floor_ns_per_connection: floor_conn,
            bpf_floor_ns_per_request: floor_req,
        })
    })();
    let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", old);
    drop(server);
    result
}
