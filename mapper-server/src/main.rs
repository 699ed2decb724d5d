//! `mapper-server`: flags, logging, signals; the work is in the library.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use mapper_server::server::{BoundServer, ServerConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

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
    /// File holding the bearer token every RPC must carry.
    #[arg(long, env = "MAPPER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Listen beyond loopback without a token (only on a network you trust).
    #[arg(long, env = "MAPPER_INSECURE")]
    insecure: bool,
    /// Serve /metrics, /healthz and /readyz on this address.
    #[arg(long, env = "MAPPER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Edges not seen for this long are removed (humantime: 30d, 12h).
    #[arg(long, env = "MAPPER_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Pod annotation that names a pod's workload (the older
    /// intents.otterize.com/service-name is honoured too).
    #[arg(long, env = "MAPPER_WORKLOAD_NAME_ANNOTATION", default_value = "intents.otterize.com/workload-name")]
    workload_name_annotation: String,
    /// Log format on stderr (RUST_LOG sets the level; default info).
    #[arg(long, env = "MAPPER_LOG_FORMAT", value_enum, default_value = "plain")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mapper_telemetry::init_logging(matches!(args.log_format, LogFormat::Json));
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
        ..Default::default()
    };
    // The source's task runs for the life of the process.
    let (cluster, _source_task) = if args.inventory.is_empty() {
        let client = kube_client().await?;
        mapper_cluster::KubeSource::new(client, opts).spawn()
    } else {
        mapper_cluster::watch_inventory(args.inventory.clone(), opts, mapper_cluster::DEFAULT_POLL_INTERVAL)
            .context("cannot load --inventory")?
    };
    let cfg = ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        token,
        insecure: args.insecure,
        metrics_listen: args.metrics_listen,
        retention: args.retention,
    };
    let server = BoundServer::bind(cfg, cluster).await?;
    server.serve(mapper_telemetry::shutdown_signal()).await?;
    Ok(())
}

async fn kube_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.context(
        "no --inventory given and no Kubernetes API reachable (in-cluster config or KUBECONFIG); \
         give --inventory FILE to run without a cluster",
    )
}
