//! `mapper-lab`: the lab (`up`, `traffic`, `down`) and its workloads (`serve`, `call`, `coredns`, `kubelet`).

use std::{
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    thread,
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use mapper_lab::{lab, scenario::Scenario, traffic};
use std::path::PathBuf;

/// mapper's lab: workloads for a local cluster of network namespaces.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Proto {
    Tcp,
    Udp,
    Dns,
}

/// A part of `bench-agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchPart {
    Observers,
    Scaling,
    Accounting,
}

#[derive(Debug, Subcommand)]
enum BenchPeer {
    /// Accept and close on --connect ports; echo --payload bytes at a time on --echo ports.
    Serve {
        #[arg(long)]
        connect: Vec<SocketAddr>,
        #[arg(long)]
        echo: Vec<SocketAddr>,
        #[arg(long, default_value_t = 1024)]
        payload: usize,
    },
    /// Request/response over one keep-alive connection.
    Rr {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 1024)]
        payload: usize,
    },
    /// Connections one after another, each held open --hold.
    Hold {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        count: u64,
        #[arg(long, value_parser = humantime::parse_duration)]
        hold: Duration,
    },
    /// Print every ESTABLISHED socket of /proc/net/tcp{,6} of each namespace, read every --interval.
    ProcPoll {
        #[arg(long)]
        netns: Vec<PathBuf>,
        #[arg(long, value_parser = humantime::parse_duration)]
        interval: Duration,
    },
}

fn bench_peer(p: BenchPeer) -> anyhow::Result<()> {
    use mapper_lab::bench::peer;
    match p {
        BenchPeer::Serve { connect, echo, payload } => peer::serve(&connect, &echo, payload).context("bench server"),
        BenchPeer::Rr { to, count, payload } => {
            let done = peer::request_response(to, count, payload).with_context(|| format!("connect to {to}"))?;
            anyhow::ensure!(done == count, "{done} of {count} requests answered");
            Ok(())
        }
        BenchPeer::Hold { to, count, hold } => {
            println!("{}", peer::hold(to, count, hold));
            Ok(())
        }
        BenchPeer::ProcPoll { netns, interval } => peer::proc_poll(&netns, interval).context("proc poll"),
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build a scenario: node and pod namespaces, ClusterIPs, a server in every pod, and the
    /// inventory a cluster would have (<state-dir>/inventory.yaml). Replaces a previous lab.
    ///
    /// Example: mapper-lab up --scenario deploy/local/scenarios/seed.yaml
    Up {
        #[arg(long)]
        scenario: PathBuf,
        /// Where the lab keeps state.json and inventory.yaml.
        #[arg(long, env = "MAPPER_LAB_STATE", default_value = "/tmp/mapper-lab")]
        state_dir: PathBuf,
    },
    /// Make the scenario's calls from inside the calling pods; prints one JSON line per call.
    ///
    /// Example: mapper-lab traffic --scenario deploy/local/scenarios/seed.yaml
    Traffic {
        #[arg(long)]
        scenario: PathBuf,
        #[arg(long, env = "MAPPER_LAB_STATE", default_value = "/tmp/mapper-lab")]
        state_dir: PathBuf,
        /// Only the calls of this round (calls[].round).
        #[arg(long)]
        round: Option<u32>,
    },
    /// Remove everything the lab made (also after a crash).
    Down {
        #[arg(long, env = "MAPPER_LAB_STATE", default_value = "/tmp/mapper-lab")]
        state_dir: PathBuf,
    },
    /// Measure the cost of watching traffic between two pod namespaces: none, mapper-agent,
    /// a per-event bpftrace program, `conntrack -E` and a /proc/net/tcp poller, in
    /// alternating rounds; connect-only and request/response; then the kernel's accounting of
    /// the agent's BPF programs. Prints one JSON object.
    ///
    /// Example: mapper-lab bench-agent --agent target/release/mapper-agent
    BenchAgent {
        /// The mapper-agent binary.
        #[arg(long)]
        agent: std::path::PathBuf,
        /// Connections per round (connect-only).
        #[arg(long, default_value_t = 20_000)]
        connections: u64,
        /// Requests per round (request/response over keep-alive connections).
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        /// Rounds per workload, each watched by every observer in turn.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Client processes per round.
        #[arg(long, default_value_t = 2)]
        clients: u32,
        /// Request and response size (bytes).
        #[arg(long, default_value_t = 1024)]
        payload: usize,
        /// 1 ms connections made after each watched round, to count what each observer sees.
        #[arg(long, default_value_t = 200)]
        probe: u64,
        /// Rounds per workload with the kernel's BPF accounting on (agent only).
        #[arg(long, default_value_t = 2)]
        accounting_rounds: u32,
        /// The mapper-bpf-floor binary: also account empty programs on the same hooks.
        #[arg(long)]
        floor: Option<PathBuf>,
        /// Only these parts (comma-separated: observers, scaling, accounting); the others
        /// report empty figures.
        #[arg(long, value_delimiter = ',', default_value = "observers,scaling,accounting")]
        parts: Vec<BenchPart>,
        /// How long each round of the agent's CPU at a tenth of the rate and at full rate
        /// lasts (humantime): three drains at the default --agent-interval.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        scaling_round: std::time::Duration,
        /// A mapper-server binary: the agent reports to it on loopback, as deployed (without
        /// it the agent keeps its batches spooled and retries a server that is not there).
        #[arg(long)]
        server: Option<PathBuf>,
        /// The agent's --report-interval (how often it drains): the chart's default.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        agent_interval: std::time::Duration,
    },
    /// The benchmark's own processes inside the pods (used by bench-agent).
    #[command(hide = true, subcommand)]
    BenchPeer(BenchPeer),
    /// Serve until killed: accept TCP, receive UDP, answer DNS.
    ///
    /// Example: mapper-lab serve --tcp 0.0.0.0:8080 --udp 0.0.0.0:5353 --dns 0.0.0.0:53=10.0.0.7
    Serve {
        /// TCP address to accept connections on (repeatable).
        #[arg(long)]
        tcp: Vec<SocketAddr>,
        /// UDP address to receive datagrams on (repeatable).
        #[arg(long)]
        udp: Vec<SocketAddr>,
        /// ADDR=IP: answer every DNS query on ADDR with IP (repeatable).
        #[arg(long)]
        dns: Vec<String>,
    },
    /// The cluster DNS (the coredns pod's process): A and AAAA from a records file, re-read
    /// when it changes, over UDP and TCP.
    ///
    /// Example: mapper-lab coredns --records /tmp/mapper-lab/dns.json --listen 0.0.0.0:53
    Coredns {
        /// The records file (`mapper-lab up` writes <state-dir>/dns.json).
        #[arg(long)]
        records: PathBuf,
        /// Address to serve on, UDP and TCP (repeatable).
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
    /// The kubelet's prober: TCP probes of the pods in the lab's state, every interval, until
    /// killed; counters in <state-dir>/kubelet.json.
    Kubelet {
        #[arg(long, env = "MAPPER_LAB_STATE", default_value = "/tmp/mapper-lab")]
        state_dir: PathBuf,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Make a number of connections (datagrams, DNS queries) and print a JSON summary.
    ///
    /// Example: mapper-lab call --to 10.96.0.10:80 --count 5
    /// Example: mapper-lab call --to ledger.team3:80 --search team1.svc.cluster.local,svc.cluster.local
    Call {
        /// Where to: IP:PORT, [IPv6]:PORT, or NAME:PORT (resolved through --nameserver first).
        #[arg(long)]
        to: String,
        #[arg(long, value_enum, default_value = "tcp")]
        protocol: Proto,
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Name to resolve (with --protocol dns).
        #[arg(long, default_value = "ledger.team3.svc.cluster.local")]
        name: String,
        /// Ask for AAAA instead of A (with --protocol dns, and when resolving --to).
        #[arg(long)]
        aaaa: bool,
        /// The DNS server that resolves a name in --to (port 53).
        #[arg(long, default_value = "10.96.0.10")]
        nameserver: IpAddr,
        /// Search domains tried first for a name in --to with fewer than 5 dots (comma-separated).
        #[arg(long, value_delimiter = ',')]
        search: Vec<String>,
        /// UDP: count a datagram ok only when the reply arrives within this (default: when sent).
        #[arg(long, value_parser = humantime::parse_duration)]
        reply_timeout: Option<Duration>,
        /// Pause between two attempts (humantime: 1ms, 10ms).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Connect timeout.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Up { scenario, state_dir } => {
            let s = Scenario::load(&scenario)?;
            let lab = std::env::current_exe().context("cannot find mapper-lab itself")?;
            let state = match lab::up(&s, &state_dir, &lab) {
                Ok(st) => st,
                Err(e) => {
                    lab::down(&state_dir);
                    return Err(e).context("lab up failed; everything it made was removed");
                }
            };
            eprintln!(
                "lab up: {} pods, {} services; inventory at {}",
                state.pods.len(),
                state.services.len(),
                state_dir.join("inventory.yaml").display()
            );
            Ok(())
        }
        Cmd::Traffic { scenario, state_dir, round } => {
            let s = Scenario::load(&scenario)?;
            let mut state = lab::load_state(&state_dir).context("no lab is up (run `mapper-lab up` first)")?;
            let lab = std::env::current_exe().context("cannot find mapper-lab itself")?;
            // Without --round: every round in order.
            let rounds: Vec<u32> = match round {
                Some(r) => vec![r],
                None => (1..=s.last_round()).collect(),
            };
            for r in rounds {
                if lab::advance(&s, &mut state, r, &state_dir, &lab)? {
                    // Let a server polling the inventory (every second) see the new pods
                    // (roundGap: 0s makes a reused IP's two holders meet within one report).
                    eprintln!("lab moved to round {r}; inventory, kube-proxy rules and DNS rewritten");
                    std::thread::sleep(s.round_gap.0);
                }
                for res in lab::traffic(&s, &state, Some(r), &lab)? {
                    println!("{}", serde_json::to_string(&res)?);
                }
            }
            Ok(())
        }
        Cmd::Down { state_dir } => {
            lab::down(&state_dir);
            eprintln!("lab down");
            Ok(())
        }
        Cmd::BenchAgent {
            agent,
            connections,
            requests,
            rounds,
            clients,
            payload,
            probe,
            accounting_rounds,
            floor,
            parts,
            scaling_round,
            server,
            agent_interval,
        } => {
            let lab = std::env::current_exe().context("cannot find mapper-lab itself")?;
            let cfg = mapper_lab::bench::BenchConfig {
                connections,
                requests,
                rounds,
                clients,
                payload,
                probe,
                accounting_rounds,
                floor,
                parts: mapper_lab::bench::Parts {
                    observers: parts.contains(&BenchPart::Observers),
                    scaling: parts.contains(&BenchPart::Scaling),
                    accounting: parts.contains(&BenchPart::Accounting),
                },
                scaling_round,
                server,
                agent_interval,
            };
            let r = mapper_lab::bench::observer_bench(&agent, &lab, &cfg)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Cmd::BenchPeer(p) => bench_peer(p),
        Cmd::Serve { tcp, udp, dns } => {
            let mut handles = Vec::new();
            for addr in tcp {
                let l = TcpListener::bind(addr).with_context(|| format!("cannot listen on tcp {addr}"))?;
                handles.push(thread::spawn(move || traffic::serve_tcp(l)));
            }
            for addr in udp {
                let s = UdpSocket::bind(addr).with_context(|| format!("cannot bind udp {addr}"))?;
                handles.push(thread::spawn(move || traffic::serve_udp(s)));
            }
            for spec in dns {
                let (addr, answer) =
                    spec.split_once('=').with_context(|| format!("--dns {spec:?}: expected ADDR=IP"))?;
                let addr: SocketAddr = addr.parse().with_context(|| format!("--dns {spec:?}: bad address"))?;
                let answer: IpAddr = answer.parse().with_context(|| format!("--dns {spec:?}: bad answer IP"))?;
                let s = UdpSocket::bind(addr).with_context(|| format!("cannot bind dns {addr}"))?;
                handles.push(thread::spawn(move || traffic::serve_dns(s, answer)));
            }
            anyhow::ensure!(!handles.is_empty(), "nothing to serve: give --tcp, --udp or --dns");
            println!("ready");
            for h in handles {
                let _ = h.join();
            }
            Ok(())
        }
        Cmd::Coredns { records, listen } => {
            let handles =
                mapper_lab::dns::serve(&listen, &records).with_context(|| format!("cannot serve DNS on {listen:?}"))?;
            println!("ready");
            for h in handles {
                let _ = h.join();
            }
            Ok(())
        }
        Cmd::Kubelet { state_dir, interval } => mapper_lab::kubelet::run(&state_dir, interval, || println!("ready")),
        Cmd::Call { to, protocol, count, name, aaaa, nameserver, search, reply_timeout, interval, timeout } => {
            let (host, port) = traffic::split_host_port(&to).map_err(|e| anyhow::anyhow!("--to {e}"))?;
            let resolver = traffic::Resolver { nameserver: SocketAddr::new(nameserver, 53), search, v6: aaaa };
            let mut report = traffic::CallReport::default();
            let Some(to) = traffic::target(&host, port, &resolver, &mut report) else {
                // The name did not resolve: every attempt failed.
                report.summary.failed = count;
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            };
            report.address = to.to_string();
            report.summary = match protocol {
                Proto::Tcp => traffic::call_tcp(to, count, interval, timeout),
                Proto::Udp => traffic::call_udp(to, count, reply_timeout)?,
                Proto::Dns => traffic::call_dns(to, &name, aaaa, count)?,
            };
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
