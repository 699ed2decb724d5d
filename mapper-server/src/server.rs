//! Wiring: the store, the services, authentication, retention and metrics,
//! on the addresses the configuration names.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mapper_cluster::ClusterHandle;
use mapper_proto::v1::query_server::QueryServer;
use tracing::{error, info, warn};

use crate::{
    admission::{IngestEndpoint, Limits},
    auth::{Authenticator, Reviewer, Role, TokenReviewConfig, layer::Authenticated},
    dns::DnsCache,
    ingest::IngestService,
    metrics::{self, Metrics},
    query::QueryService,
    store::{EdgeStore, OpenOptions, StoreError},
};

/// How often the server pings a connection's peer over HTTP/2, and how long it waits for the
/// answer before closing the connection (a peer gone without a word).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Streams (calls) one connection may carry at once (an agent makes one at a time).
const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// Largest HTTP/2 frame a peer may send (the protocol's default is 16 KiB): a batch of a few
/// hundred flows arrives in one DATA frame instead of several. Within the connection's flow
/// control window, so it adds nothing to what one connection can make the server buffer.
const MAX_FRAME_BYTES: u32 = 64 << 10;

/// Longest a call may take, decoding and storing included (the agent gives up after 30 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Bearer token accepted on every RPC.
    pub token: Option<String>,
    /// Kubernetes TokenReview of other bearer tokens: the agents' ServiceAccount
    /// tokens, accepted for Ingest.
    pub token_review: Option<TokenReviewConfig>,
    /// Query RPCs from a loopback peer (a port-forward) need no token.
    pub allow_loopback_query: bool,
    /// Allow a non-loopback listener without a token or token review.
    pub insecure: bool,
    pub metrics_listen: Option<SocketAddr>,
    /// Edges not seen for this long are removed.
    pub retention: Duration,
    /// Bounds on connections and Report calls in progress.
    pub limits: Limits,
    /// How long after it was last seen an edge's in-cluster end that nobody was known to hold
    /// is resolved again with each new cluster state.
    pub resolve_hold: Duration,
    /// Agent boots not heard from for this long are forgotten.
    pub boot_retention: Duration,
    /// Most agent boots remembered (the longest quiet are forgotten first).
    pub max_boots: usize,
    /// A damaged store file is moved aside and an empty map started.
    pub move_corrupt_store: bool,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {addr} without authentication: anyone who reaches it could read the map and feed it \
         flows. Give --token-file or --token-review-audience, listen on a loopback address, or pass --insecure if \
         the network is trusted"
    )]
    Insecure { addr: SocketAddr },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the task opening the store failed")]
    StoreTask(#[source] tokio::task::JoinError),
    #[error("gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Every minute (or each retention period, if shorter): removes edges past
/// retention (in chunks, see [`EdgeStore::expire`]; the file is compacted when
/// mostly free) and forgets agent boots gone quiet.
async fn retention_loop(store: Arc<EdgeStore>, m: Arc<Metrics>, cfg: ServerConfig) {
    let period = Duration::from_secs(60).min(cfg.retention).min(cfg.boot_retention).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let cutoff = now_ms().saturating_sub(cfg.retention.as_millis() as i64);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.expire(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                info!(expired = n, "edges past retention removed");
                m.edges_expired.inc_by(n as u64);
                m.edges.set(store.len() as i64);
            }
            // The store logged the cause and marked itself unhealthy.
            Ok(Err(e)) => warn!(error = %crate::store::error_chain(&e), "retention sweep failed"),
            Err(e) => warn!(error = %e, "retention task failed"),
        }
        let boot_cutoff = now_ms().saturating_sub(cfg.boot_retention.as_millis() as i64);
        let (s, max) = (store.clone(), cfg.max_boots);
        match tokio::task::spawn_blocking(move || s.prune_boots(boot_cutoff, max)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(forgotten = n, "agent boots gone quiet forgotten"),
            Ok(Err(e)) => warn!(error = %crate::store::error_chain(&e), "agent boot pruning failed"),
            Err(e) => warn!(error = %e, "agent boot pruning task failed"),
        }
    }
}

/// A server bound to its addresses, ready to serve.
#[derive(Debug)]
pub struct BoundServer {
    cfg: ServerConfig,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    metrics_listener: Option<tokio::net::TcpListener>,
    store: Arc<EdgeStore>,
    cluster: ClusterHandle,
    metrics: Arc<Metrics>,
}

impl BoundServer {
    /// Checks the configuration, opens the store and binds the listeners.
    pub async fn bind(cfg: ServerConfig, cluster: ClusterHandle) -> Result<Self, ServerError> {
        let authenticated = cfg.token.is_some() || cfg.token_review.is_some();
        if !cfg.listen.ip().is_loopback() && !authenticated && !cfg.insecure {
            return Err(ServerError::Insecure { addr: cfg.listen });
        }
        let dir = cfg.data_dir.clone();
        let opts = OpenOptions { move_corrupt: cfg.move_corrupt_store };
        let store = tokio::task::spawn_blocking(move || EdgeStore::open_with(&dir, opts))
            .await
            .map_err(ServerError::StoreTask)??;
        info!(path = %store.path().display(), edges = store.len(), "store opened");
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: cfg.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: cfg.listen, source })?;
        let metrics_listener = match cfg.metrics_listen {
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?)
            }
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        metrics.edges.set(store.len() as i64);
        Ok(Self { cfg, listener, local_addr, metrics_listener, store: Arc::new(store), cluster, metrics })
    }

    /// The gRPC address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Self { cfg, listener, local_addr, metrics_listener, store, cluster, metrics } = self;
        if let Some(l) = metrics_listener {
            let health = Arc::new(metrics::ServerHealth {
                metrics: metrics.clone(),
                cluster: cluster.clone(),
                store: store.clone(),
            });
            tokio::spawn(async move {
                if let Err(e) = mapper_telemetry::serve(l, health).await {
                    error!(error = %e, "metrics endpoint failed");
                }
            });
        }
        tokio::spawn(crate::reresolve::run(store.clone(), cluster.clone(), metrics.clone(), cfg.resolve_hold));
        tokio::spawn(retention_loop(store.clone(), metrics.clone(), cfg.clone()));
        let auth = Arc::new(Authenticator::new(
            cfg.token.as_deref(),
            cfg.token_review.clone().map(Reviewer::new),
            cfg.allow_loopback_query,
        ));
        let ingest = IngestService {
            committer: crate::commit::Committer::start(store.clone()),
            store: store.clone(),
            cluster: cluster.clone(),
            metrics: metrics.clone(),
            dns: Arc::new(DnsCache::default()),
        };
        let query = QueryService { store, cluster, metrics };
        info!(
            addr = %local_addr,
            auth = auth.enabled(),
            static_token = cfg.token.is_some(),
            token_review_audience = cfg.token_review.as_ref().map(|r| r.audience.as_str()),
            agents = ?cfg.token_review.as_ref().map(|r| r.agents.iter().map(ToString::to_string).collect::<Vec<_>>()),
            loopback_query = cfg.allow_loopback_query,
            "mapper-server listening"
        );
        let limits = cfg.limits;
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .max_frame_size(MAX_FRAME_BYTES)
            .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
            .timeout(CALL_TIMEOUT)
            .add_service(Authenticated::new(IngestEndpoint::new(ingest, &limits), auth.clone(), Role::Ingest))
            .add_service(Authenticated::new(QueryServer::new(query), auth, Role::Query))
            .serve_with_incoming_shutdown(crate::admission::incoming(listener, limits), shutdown)
            .await?;
        info!("mapper-server stopped");
        Ok(())
    }
}
