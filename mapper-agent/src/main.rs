//! `mapper-agent`: flags, logging, signals; the work is in the library.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use mapper_agent::{
    agent::{self, AgentConfig, Output, ReportConfig},
    capture::{self, CaptureConfig},
    preflight,
    token::TokenFile,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputArg {
    /// Metrics and logs only.
    None,
    /// Every drained flow and DNS answer as one JSON object per line on stdout.
    Jsonl,
}

/// mapper's node agent: sees every TCP connect and accept and every UDP flow on
/// this node, in every network namespace, counted in the kernel, and tells
/// which pod each local end belongs to.
///
/// Example: mapper-agent --output jsonl --report-interval 1s
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Name of this node, reported with every flow.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// How often the kernel's flow map is drained (humantime: 200ms, 5s, 1m).
    /// Each drain is sent at once, so this is about the most a flow waits to
    /// be acknowledged; while the server is away, retries are at most this far
    /// apart.
    #[arg(long, env = "MAPPER_REPORT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    report_interval: Duration,
    /// Also print every drained flow on stdout.
    #[arg(long, env = "MAPPER_OUTPUT", value_enum, default_value = "none")]
    output: OutputArg,
    /// Directory on bpffs where programs and maps are pinned, so capture goes
    /// on while the agent restarts.
    #[arg(long, env = "MAPPER_BPFFS", default_value = "/sys/fs/bpf/mapper")]
    bpffs: PathBuf,
    /// cgroup2 root to attach the cgroup programs to (default: found in /proc/mounts).
    #[arg(long, env = "MAPPER_CGROUP_ROOT")]
    cgroup_root: Option<PathBuf>,
    /// Distinct flows the kernel keeps between two drains (per buffer; two buffers).
    #[arg(long, env = "MAPPER_FLOW_ENTRIES", default_value_t = 8192)]
    flow_entries: u32,
    /// TCP connects in flight the kernel can follow at once.
    #[arg(long, env = "MAPPER_SOCKET_ENTRIES", default_value_t = 16384)]
    socket_entries: u32,
    /// DNAT translations (Service ClusterIP → pod) awaiting their connect's outcome.
    #[arg(long, env = "MAPPER_NAT_ENTRIES", default_value_t = 16384)]
    nat_entries: u32,
    /// Size of the DNS answers ring buffer in bytes (power of two).
    #[arg(long, env = "MAPPER_DNS_RING_BYTES", default_value_t = 262_144)]
    dns_ring_bytes: u32,
    /// Serve /metrics, /healthz and /readyz on this address.
    #[arg(long, env = "MAPPER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// On exit, detach the programs and free the maps instead of leaving them
    /// pinned for the next agent.
    #[arg(long, env = "MAPPER_DETACH_ON_EXIT")]
    detach_on_exit: bool,
    /// Detach every mapper program pinned under --bpffs, free its maps, and exit.
    #[arg(long)]
    uninstall: bool,
    /// mapper-server's gRPC address.
    #[arg(long, env = "MAPPER_URL", default_value = "http://127.0.0.1:9090")]
    mapper_url: String,
    /// File holding the bearer token mapper-server expects.
    #[arg(long, env = "MAPPER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Do not report to mapper-server (with --output jsonl: the agent alone).
    #[arg(long, env = "MAPPER_NO_REPORT")]
    no_report: bool,
    /// Flows kept (in memory and in the spool) until mapper-server
    /// acknowledges them; past it, batches not yet sent are merged, flows
    /// with the same key adding their counts, rather than dropped. A spooled
    /// flow takes about 190 bytes on disk (pod and container ids included).
    #[arg(long, env = "MAPPER_MAX_PENDING_FLOWS", default_value_t = 200_000)]
    max_pending_flows: usize,
    /// Directory on the node's disk where drained batches are kept until
    /// mapper-server acknowledges them: each is written and fsynced before
    /// its flows leave the kernel, so an agent killed, upgraded or restarted
    /// during a server outage loses nothing; the next agent resends what it
    /// finds here with the batches' original identity (counted once). One
    /// agent per directory; unreadable files are moved to corrupt/.
    #[arg(long, env = "MAPPER_SPOOL_DIR", default_value = "/var/lib/mapper-agent/spool")]
    spool_dir: PathBuf,
    /// On SIGTERM, how long the agent waits for the server to acknowledge its
    /// last batches (not at all while the server is unreachable) before it
    /// exits, leaving the rest spooled for the next agent.
    #[arg(long, env = "MAPPER_SHUTDOWN_FLUSH", default_value = "2s", value_parser = humantime::parse_duration)]
    shutdown_flush: Duration,
    /// The node's own network namespace, to mark host-network flows. In a pod,
    /// mount the node's /proc/1/ns/net as a hostPath file and give its mount
    /// path (no capability needed; the Helm chart does this), or run with
    /// hostNetwork and give /proc/self/ns/net. The default needs hostPID and
    /// CAP_SYS_PTRACE in a pod.
    #[arg(long, env = "MAPPER_HOST_NETNS", default_value = "/proc/1/ns/net")]
    host_netns: PathBuf,
    /// Do not check for CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN before loading:
    /// let the kernel refuse what it refuses.
    #[arg(long, env = "MAPPER_SKIP_CAPABILITY_CHECK", hide = true)]
    skip_capability_check: bool,
    /// For tests: abort right after spooling a drain, before deleting its
    /// flows from the kernel (what a kill -9 at the worst moment leaves).
    #[arg(long, env = "MAPPER_CRASH_AFTER_SPOOL", hide = true)]
    crash_after_spool: bool,
    #[command(flatten)]
    log: mapper_telemetry::LogArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mapper_telemetry::init_logging(args.log.log_format);
    if args.uninstall {
        capture::remove_pins(&args.bpffs)?;
        eprintln!("removed every mapper program and map pinned under {}", args.bpffs.display());
        return Ok(());
    }
    let cgroup_root = match args.cgroup_root {
        Some(p) => p,
        None => preflight::find_cgroup2_root()?,
    };
    let node_name = match args.node_name {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("cannot read the host name; pass --node-name")?
            .trim()
            .to_string(),
    };
    let mut capture = CaptureConfig::new(args.bpffs, cgroup_root);
    capture.flow_entries = args.flow_entries;
    capture.socket_entries = args.socket_entries;
    capture.nat_entries = args.nat_entries;
    capture.dns_ring_bytes = args.dns_ring_bytes;
    let report = if args.no_report {
        None
    } else {
        let token = args.token_file.as_ref().map(TokenFile::load).transpose()?;
        Some(ReportConfig {
            url: args.mapper_url.clone(),
            token,
            max_pending_flows: args.max_pending_flows,
            spool_dir: Some(args.spool_dir.clone()),
        })
    };
    let cfg = AgentConfig {
        report,
        host_netns: Some(args.host_netns.clone()),
        node_name,
        report_interval: args.report_interval,
        output: match args.output {
            OutputArg::None => Output::None,
            OutputArg::Jsonl => Output::Jsonl,
        },
        capture,
        metrics_listen: args.metrics_listen,
        detach_on_exit: args.detach_on_exit,
        skip_capability_check: args.skip_capability_check,
        shutdown_flush: args.shutdown_flush,
        crash_after_spool: args.crash_after_spool,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(agent::run(cfg, mapper_telemetry::shutdown_signal()))?;
    Ok(())
}
