//! `mapper-server`: flags, logging, signals; the work is in the library.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use mapper_server::{
    auth::{ServiceAccount, TokenReviewConfig},
    server::{BoundServer, ServerConfig},
};

/// jemalloc with background threads: memory freed after a peak (an inventory reload, a large
/// query) is returned to the system within seconds, where glibc's malloc keeps it.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// mapper's central mapper: receives the agents' flows, resolves both ends of
/// each to workloads (Deployments, StatefulSets, CronJobs…), keeps the edges
/// across restarts, and serves them to the `mapper` CLI.
///
/// Example (no cluster): mapper-server --inventory cluster-dump.yaml --data-dir /var/lib/mapper
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// gRPC address for agents and the CLI.
    #[arg(long, env = "MAPPER_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Files or directories of Kubernetes objects (YAML or JSON, as `kubectl get -o yaml` prints
    /// them) used instead of the Kubernetes API; reloaded when they change. Repeatable.
    #[arg(long, env = "MAPPER_INVENTORY", value_delimiter = ',')]
    inventory: Vec<PathBuf>,
    /// Where the edges are kept across restarts.
    #[arg(long, env = "MAPPER_DATA_DIR", default_value = "./mapper-data")]
    data_dir: PathBuf,
    /// File holding a bearer token accepted on every RPC (without other means of
    /// authentication, every RPC must carry it).
    #[arg(long, env = "MAPPER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Check other bearer tokens with the Kubernetes TokenReview API for this
    /// audience: agents' projected ServiceAccount tokens, accepted for reporting
    /// flows when they belong to an --agent-service-account.
    #[arg(long, env = "MAPPER_TOKEN_REVIEW_AUDIENCE", requires = "agent_service_account")]
    token_review_audience: Option<String>,
    /// ServiceAccount (NAMESPACE/NAME) whose reviewed tokens may report flows.
    /// Repeatable or comma-separated; required with --token-review-audience.
    #[arg(long, env = "MAPPER_AGENT_SERVICE_ACCOUNT", value_delimiter = ',', requires = "token_review_audience")]
    agent_service_account: Vec<ServiceAccount>,
    /// Accept query RPCs (list, reset, health) from a loopback peer without a
    /// token: in a cluster the CLI comes through a port-forward, so RBAC on
    /// pods/portforward decides who may read the map.
    #[arg(long, env = "MAPPER_ALLOW_LOOPBACK_QUERY")]
    allow_loopback_query: bool,
    /// Listen beyond loopback without a token (only on a network you trust).
    #[arg(long, env = "MAPPER_INSECURE")]
    insecure: bool,
    /// Serve /metrics, /healthz and /readyz on this address.
    #[arg(long, env = "MAPPER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Edges not seen for this long are removed (humantime: 30d, 12h).
    #[arg(long, env = "MAPPER_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Address ranges of the cluster's pods and Services (CIDRs; repeatable or comma-separated).
    /// An address in one that no known pod, node or Service holds is unresolved, never a
    /// destination outside the cluster. Nodes' podCIDRs, ServiceCIDR objects and the range
    /// the Services' ClusterIPs span are taken as well; give the ranges here when the network
    /// plugin assigns pod addresses outside the Nodes' podCIDRs.
    #[arg(long, env = "MAPPER_CLUSTER_CIDRS", value_delimiter = ',')]
    cluster_cidr: Vec<mapper_cluster::IpNet>,
    /// How long after it was last seen an edge whose in-cluster end nobody was known to hold
    /// (a pod not yet in the cluster state) is resolved again when the cluster state changes.
    #[arg(long, env = "MAPPER_RESOLVE_HOLD", default_value = "10m", value_parser = humantime::parse_duration)]
    resolve_hold: Duration,
    /// Agent boots (node, boot id) not heard from for this long are forgotten; a batch of
    /// theirs arriving later would be applied again, so keep this beyond how long an agent
    /// keeps batches spooled.
    #[arg(long, env = "MAPPER_AGENT_BOOT_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    agent_boot_retention: Duration,
    /// Most agent boots remembered; beyond it the longest quiet are forgotten.
    #[arg(long, env = "MAPPER_MAX_AGENT_BOOTS", default_value_t = 100_000)]
    max_agent_boots: usize,
    /// If the store file is damaged (or empty), rename it aside to
    /// `edges.redb.corrupt-<unix seconds>` and start with an empty map, instead of refusing to start.
    #[arg(long, env = "MAPPER_MOVE_CORRUPT_STORE")]
    move_corrupt_store: bool,
    /// Pod annotation that names a pod's workload (the older
    /// intents.otterize.com/service-name is honoured too).
    #[arg(long, env = "MAPPER_WORKLOAD_NAME_ANNOTATION", default_value = "intents.otterize.com/workload-name")]
    workload_name_annotation: String,
    /// Open gRPC connections at most; beyond, new ones are closed as soon as accepted.
    #[arg(long, env = "MAPPER_MAX_CONNECTIONS", default_value_t = 2048)]
    max_connections: usize,
    /// A gRPC connection over which nothing arrives for this long is closed (a peer that
    /// answers the server's HTTP/2 pings, every minute, is not idle).
    #[arg(long, env = "MAPPER_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Report calls read, decoded and stored at once; others wait up to
    /// --report-queue-wait for their turn, then get RESOURCE_EXHAUSTED (the agent retries).
    /// The default is as many batches as one group commit takes.
    #[arg(long, env = "MAPPER_MAX_CONCURRENT_REPORTS", default_value_t = mapper_server::commit::MAX_GROUP_BATCHES)]
    max_concurrent_reports: usize,
    /// Bytes (as sent) of the Report requests read, decoded and stored at once: a call waits
    /// for room for its own size (up to --report-queue-wait, then RESOURCE_EXHAUSTED). A
    /// request larger than this is worked on alone.
    #[arg(long, env = "MAPPER_REPORT_BYTES", default_value = "64MiB", value_parser = mapper_server::admission::parse_bytes)]
    report_bytes: usize,
    /// How long a Report call waits for its turn.
    #[arg(long, env = "MAPPER_REPORT_QUEUE_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    report_queue_wait: Duration,
    #[command(flatten)]
    log: mapper_telemetry::LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mapper_telemetry::init_logging(args.log.log_format);
    let token = match &args.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p).with_context(|| format!("cannot read --token-file {}", p.display()))?;
            anyhow::ensure!(!t.trim().is_empty(), "--token-file {} is empty", p.display());
            Some(t.trim().to_string())
        }
        None => None,
    };
    let opts = mapper_cluster::ResolveOptions {
        workload_name_annotation: args.workload_name_annotation.clone(),
        cluster_cidrs: args.cluster_cidr.clone(),
        ..Default::default()
    };
    // The client is needed for the cluster source, for token review, or both.
    let client = if args.inventory.is_empty() || args.token_review_audience.is_some() {
        Some(kube_client(!args.inventory.is_empty()).await?)
    } else {
        None
    };
    let token_review = match (args.token_review_audience, &client) {
        (Some(audience), Some(client)) => {
            Some(TokenReviewConfig { client: client.clone(), audience, agents: args.agent_service_account.clone() })
        }
        _ => None,
    };
    // The source's task runs for the life of the process.
    let (cluster, _source_task) = if let (true, Some(client)) = (args.inventory.is_empty(), client) {
        mapper_cluster::KubeSource::new(client, opts).spawn()
    } else {
        mapper_cluster::watch_inventory(args.inventory.clone(), opts, mapper_cluster::DEFAULT_POLL_INTERVAL)
            .context("cannot load --inventory")?
    };
    let cfg = ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        token,
        token_review,
        allow_loopback_query: args.allow_loopback_query,
        insecure: args.insecure,
        metrics_listen: args.metrics_listen,
        retention: args.retention,
        limits: mapper_server::admission::Limits {
            max_connections: args.max_connections,
            idle_timeout: args.idle_timeout,
            max_concurrent_reports: args.max_concurrent_reports,
            report_bytes: args.report_bytes,
            report_queue_wait: args.report_queue_wait,
        },
        resolve_hold: args.resolve_hold,
        boot_retention: args.agent_boot_retention,
        max_boots: args.max_agent_boots,
        move_corrupt_store: args.move_corrupt_store,
    };
    let server = BoundServer::bind(cfg, cluster).await?;
    server.serve(mapper_telemetry::shutdown_signal()).await?;
    Ok(())
}

async fn kube_client(for_token_review_only: bool) -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.context(if for_token_review_only {
        "--token-review-audience needs the Kubernetes API (in-cluster config or KUBECONFIG), and none is \
         reachable; drop --token-review-audience to run without a cluster"
    } else {
        "no --inventory given and no Kubernetes API reachable (in-cluster config or KUBECONFIG); \
         give --inventory FILE to run without a cluster"
    })
}
