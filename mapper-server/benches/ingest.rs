//! mapper-server's costs on this machine, measured in one run and printed as one
//! JSON object on stdout (progress goes to stderr):
//!
//! 1. `ingest`: flows per second over real gRPC on loopback — an in-process
//!    server (`BoundServer`, store in a temporary directory, a generated
//!    inventory loaded with `watch_inventory`) fed by N concurrent agent streams
//!    (one tokio task and one connection each, its own node/boot id, sending its
//!    batches in sequence as `mapper_report::send` does, each encoded before the
//!    clock starts, and waiting for each acknowledgement); with 1 stream and with
//!    200 sending batches of `BENCH_FLOWS_PER_BATCH` flows (default 250: a stress shape,
//!    many small batches, whose per-call cost dominates), then (`agent_shaped`) with 200
//!    sending what their agents send at a cluster-wide rate: an agent sends each drain of
//!    its flow map at once, every `--report-interval`, so at `BENCH_CLUSTER_FLOWS_PER_S`
//!    (default 1 000 000) over `BENCH_STREAMS` agents at `BENCH_REPORT_INTERVAL_S` (default
//!    5, the chart's) each batch holds rate × interval / agents flows (25 000);
//!    `BENCH_AGENT_BATCHES` (default 2) each. Client and server share this
//!    machine's cores, so the figures are a lower bound for the server alone; the
//!    agents run on a runtime of their own (threads `bench-agent`), and the CPU
//!    time each side spent in the timed run is reported apart, with the server's
//!    CPU per flow.
//! 2. `resolution`: `Snapshot::resolve_local` + `Snapshot::resolve_remote` per
//!    synthetic flow against the same snapshot (ns per flow).
//! 3. `memory`: RSS before and after applying distinct edges to an `EdgeStore`
//!    (batches of 1000), and the size of the redb file. Measured first, while
//!    the process is still small, so freed memory of the other parts does not
//!    hide the growth.
//!
//! 4. `cluster`: a generated cluster of `BENCH_SCALE_PODS` pods (default 150 000) behind
//!    `BENCH_SCALE_SERVICES` Services (default 20 000; Deployments with their ReplicaSets,
//!    StatefulSets, Nodes, EndpointSlices) written as an inventory directory: load time and
//!    RSS (the cluster state per pod), a reload's time and RSS, RSS once it is dropped.
//! 5. `edges`: RSS and redb bytes per edge at `BENCH_EDGE_CHECKPOINTS` edges (default
//!    100000,1000000), then a query's copy of every edge made and dropped: whether the memory
//!    of that peak is given back.
//!
//! `BENCH_PARTS` (default `cluster,edges,memory,retention,ingest,resolution`; `writer` runs only when
//! named; ingest and resolution run
//! together) picks the parts; those that
//! measure memory run first, while the process is small. "Settled" figures are taken
//! `BENCH_SETTLE_SECONDS` (default 12) after the step, when the allocator's background purge
//! has given freed pages back.
//! 4. `retention`: the longest batch while a retention sweep expires
//!    `BENCH_RETENTION_EDGES` edges (how long ingest stalls behind it), then
//!    the longest while the compaction that follows runs on the file the sweep
//!    left mostly free; the sweep's and the compaction's time, store bytes per
//!    edge, and the file before the sweep, after it and after the compaction.
//!
//! 6. `writer`: the store's one writer alone, in process (no gRPC, no resolution): the
//!    `ingest` run's shape (`BENCH_STREAMS` agents, `BENCH_BATCHES` batches each of
//!    `BENCH_FLOWS_PER_BATCH` flows between the generated workloads, coalesced as ingest does
//!    them), applied with `EdgeStore::apply_group` in groups of `BENCH_WRITER_GROUP` batches
//!    (default 64; the server's groups take up to 256, as many as its default bound on Report
//!    calls in progress, and are as large as the load makes them); the writer's CPU
//!    per flow. Deterministic, so it also runs under `valgrind --tool=callgrind`.
//!
//! Nothing here asserts on time. Sizes can be changed through environment
//! variables (see `Params::from_env`); `BENCH_DIR` picks where the temporary
//! stores live (the default temporary directory otherwise): each batch is an
//! fsync, so the file system matters and is reported.
//!
//! Run: `cargo bench -p mapper-server --bench ingest` (or `scripts/bench-server.sh`).

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The allocator of the `mapper-server` binary, so the memory figures are the binary's.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "ingest/scale.rs"]
mod scale;

use mapper_cluster::{ClusterHandle, Evidence, Peer, ResolveOptions, Snapshot, Workload, watch_inventory};
use mapper_proto::v1::{self as pb, query_client::QueryClient};
use mapper_report::SendOutcome;
use mapper_server::{
    server::{BoundServer, ServerConfig},
    store::{AgentBoot, Batch, EdgeKey, EdgeStore, Observation, Side},
};
use serde_json::{Value, json};

/// What the run measures, with its defaults; each can be overridden
/// by the environment variable named beside it.
#[derive(Debug, Clone)]
struct Params {
    /// Deployments in the generated inventory (`BENCH_DEPLOYMENTS`).
    deployments: usize,
    /// Pods per Deployment (`BENCH_PODS_PER_DEPLOYMENT`).
    pods_per_deployment: usize,
    /// Concurrent agent streams of the main ingest run (`BENCH_STREAMS`).
    streams: usize,
    /// Batches each stream sends in the main run (`BENCH_BATCHES`).
    batches: usize,
    /// Batches the single stream sends (`BENCH_SINGLE_BATCHES`).
    single_batches: usize,
    /// Flows per batch (`BENCH_FLOWS_PER_BATCH`).
    flows_per_batch: usize,
    /// The cluster-wide rate whose agents' batches the `agent_shaped` run sends
    /// (`BENCH_CLUSTER_FLOWS_PER_S`).
    cluster_flows_per_s: usize,
    /// The agents' report interval, in seconds (`BENCH_REPORT_INTERVAL_S`).
    report_interval_s: usize,
    /// Batches each stream sends in the `agent_shaped` run (`BENCH_AGENT_BATCHES`).
    agent_batches: usize,
    /// Synthetic flows resolved (`BENCH_RESOLVE_FLOWS`).
    resolve_flows: usize,
    /// Distinct edges applied to the store (`BENCH_EDGES`, a multiple of 1000).
    edges: usize,
    /// Which parts run (`BENCH_PARTS`, comma-separated).
    parts: Vec<String>,
    /// Pods of the generated large cluster (`BENCH_SCALE_PODS`).
    scale_pods: usize,
    /// Services of the generated large cluster (`BENCH_SCALE_SERVICES`).
    scale_services: usize,
    /// Edge counts at which the edges part notes RSS (`BENCH_EDGE_CHECKPOINTS`).
    edge_checkpoints: Vec<usize>,
    /// How long to wait before a settled RSS reading (`BENCH_SETTLE_SECONDS`).
    settle: Duration,
    /// Edges a retention sweep expires while batches arrive (`BENCH_RETENTION_EDGES`, a multiple of 1000).
    retention_edges: usize,
    /// Edges per batch sent during the sweep (`BENCH_RETENTION_BATCH`).
    retention_batch: usize,
    /// Batches per group of the writer part (`BENCH_WRITER_GROUP`).
    writer_group: usize,
}

impl Params {
    fn from_env() -> Self {
        let get = |name: &str, default: usize| -> usize {
            match std::env::var(name) {
                Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
                Err(_) => default,
            }
        };
        Self {
            deployments: get("BENCH_DEPLOYMENTS", 50),
            pods_per_deployment: get("BENCH_PODS_PER_DEPLOYMENT", 20),
            streams: get("BENCH_STREAMS", 200),
            batches: get("BENCH_BATCHES", 20),
            single_batches: get("BENCH_SINGLE_BATCHES", 500),
            flows_per_batch: get("BENCH_FLOWS_PER_BATCH", 250),
            cluster_flows_per_s: get("BENCH_CLUSTER_FLOWS_PER_S", 1_000_000),
            report_interval_s: get("BENCH_REPORT_INTERVAL_S", 5),
            agent_batches: get("BENCH_AGENT_BATCHES", 2),
            resolve_flows: get("BENCH_RESOLVE_FLOWS", 1_000_000),
            edges: get("BENCH_EDGES", 100_000).div_ceil(EDGES_PER_BATCH) * EDGES_PER_BATCH,
            parts: std::env::var("BENCH_PARTS")
                .unwrap_or_else(|_| "cluster,edges,memory,retention,ingest,resolution".into())
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect(),
            scale_pods: get("BENCH_SCALE_PODS", 150_000),
            scale_services: get("BENCH_SCALE_SERVICES", 20_000).max(1),
            edge_checkpoints: {
                let v = std::env::var("BENCH_EDGE_CHECKPOINTS").unwrap_or_else(|_| "100000,1000000".into());
                let mut points: Vec<usize> = v
                    .split(',')
                    .map(|n| n.trim().parse().unwrap_or_else(|_| panic!("BENCH_EDGE_CHECKPOINTS={v}: not numbers")))
                    .collect();
                points.sort_unstable();
                points
            },
            settle: Duration::from_secs(get("BENCH_SETTLE_SECONDS", 12) as u64),
            retention_edges: get("BENCH_RETENTION_EDGES", 200_000).div_ceil(EDGES_PER_BATCH) * EDGES_PER_BATCH,
            retention_batch: get("BENCH_RETENTION_BATCH", 100).max(1),
            writer_group: get("BENCH_WRITER_GROUP", 64).max(1),
        }
    }
}

const EDGES_PER_BATCH: usize = 1000;
const NAMESPACES: usize = 5;
/// Nodes the pods are spread over (one agent per node in the ingest runs).
const NODES: usize = 200;
const POD_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;
const SEND_TIMEOUT: Duration = Duration::from_secs(120);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn progress(msg: &str) {
    eprintln!("[bench ingest] {msg}");
}

/// A small deterministic generator (splitmix64): the same flows on every run.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

// ---------------------------------------------------------------------------
// The generated cluster.

#[derive(Debug, Clone)]
struct Pod {
    uid: String,
    ip: Ipv4Addr,
    node: usize,
}

/// The generated inventory: what the flows are made of.
#[derive(Debug)]
struct Cluster {
    deployments: usize,
    pods_per_deployment: usize,
    pods: Vec<Pod>,
}

fn uid(kind: u32, deployment: usize, index: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{deployment:04x}{index:08x}")
}

fn namespace(d: usize) -> String {
    format!("team{}", d % NAMESPACES)
}

fn deployment_name(d: usize) -> String {
    format!("svc-{d:03}")
}

fn pod_ip(d: usize, p: usize) -> Ipv4Addr {
    // 10.244.<d>.<p>, skipping .0 and .1 of each /24 (up to 254 pods per Deployment).
    let n = d * 256 + p + 2;
    Ipv4Addr::new(10, 244 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

fn cluster_ip(d: usize) -> Ipv4Addr {
    let n = d + 10;
    Ipv4Addr::new(10, 96, (n >> 8) as u8, n as u8)
}

fn node_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (n >> 8) as u8, n as u8)
}

impl Cluster {
    fn new(deployments: usize, pods_per_deployment: usize) -> Self {
        assert!(pods_per_deployment <= 254 && deployments <= 1000, "the address plan holds 1000 × 254 pods");
        let mut pods = Vec::with_capacity(deployments * pods_per_deployment);
        for d in 0..deployments {
            for p in 0..pods_per_deployment {
                let g = d * pods_per_deployment + p;
                pods.push(Pod { uid: uid(3, d, p), ip: pod_ip(d, p), node: g % NODES });
            }
        }
        Self { deployments, pods_per_deployment, pods }
    }

    fn pod(&self, d: usize, p: usize) -> &Pod {
        &self.pods[d * self.pods_per_deployment + p]
    }

    fn random_pod(&self, rng: &mut Rng) -> &Pod {
        &self.pods[rng.below(self.pods.len())]
    }

    /// The inventory as `kubectl get -o yaml` would print it (the format of
    /// tests/fixtures/seed.yaml): Namespaces, and per Deployment its
    /// ReplicaSet, Pods, Service and EndpointSlice.
    fn yaml(&self) -> String {
        let mut y = String::from("apiVersion: v1\nkind: List\nitems:\n");
        for ns in 0..NAMESPACES.min(self.deployments) {
            let _ = write!(y, "- apiVersion: v1\n  kind: Namespace\n  metadata: {{name: {}}}\n", namespace(ns));
        }
        for d in 0..self.deployments {
            let (name, ns) = (deployment_name(d), namespace(d));
            let (dep_uid, rs_uid, svc_uid) = (uid(1, d, 0), uid(2, d, 0), uid(4, d, 0));
            let hash = format!("7c9d{d:04}f");
            let rs = format!("{name}-{hash}");
            let _ = write!(
                y,
                "- apiVersion: apps/v1
  kind: Deployment
  metadata: {{name: {name}, namespace: {ns}, uid: {dep_uid}}}
  spec:
    selector: {{matchLabels: {{app: {name}}}}}
    template:
      metadata: {{labels: {{app: {name}}}}}
      spec: {{containers: [{{name: app, image: bench}}]}}
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: {rs}
    namespace: {ns}
    uid: {rs_uid}
    ownerReferences:
    - {{apiVersion: apps/v1, kind: Deployment, name: {name}, uid: {dep_uid}, controller: true}}
  spec:
    selector: {{matchLabels: {{app: {name}}}}}
"
            );
            for p in 0..self.pods_per_deployment {
                let pod = self.pod(d, p);
                let _ = write!(
                    y,
                    "- apiVersion: v1
  kind: Pod
  metadata:
    name: {rs}-p{p:04}
    namespace: {ns}
    uid: {uid}
    creationTimestamp: \"2020-01-01T00:00:00Z\"
    labels: {{app: {name}, pod-template-hash: {hash}}}
    ownerReferences:
    - {{apiVersion: apps/v1, kind: ReplicaSet, name: {rs}, uid: {rs_uid}, controller: true}}
  spec: {{containers: [{{name: app, image: bench}}], nodeName: node-{node}}}
  status:
    phase: Running
    podIP: {ip}
    podIPs: [{{ip: {ip}}}]
    hostIP: {host}
    startTime: \"2020-01-01T00:00:00Z\"
",
                    uid = pod.uid,
                    node = pod.node,
                    ip = pod.ip,
                    host = node_ip(pod.node),
                );
            }
            let cip = cluster_ip(d);
            let _ = write!(
                y,
                "- apiVersion: v1
  kind: Service
  metadata: {{name: {name}, namespace: {ns}, uid: {svc_uid}}}
  spec:
    clusterIP: {cip}
    clusterIPs: [{cip}]
    selector: {{app: {name}}}
    ports: [{{port: {SERVICE_PORT}, targetPort: {POD_PORT}, protocol: TCP}}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: {name}-ep
    namespace: {ns}
    labels: {{kubernetes.io/service-name: {name}}}
  addressType: IPv4
  endpoints:
"
            );
            for p in 0..self.pods_per_deployment {
                let pod = self.pod(d, p);
                let _ = write!(
                    y,
                    "  - addresses: [{ip}]
    conditions: {{ready: true}}
    targetRef: {{kind: Pod, name: {rs}-p{p:04}, namespace: {ns}, uid: {uid}}}
",
                    ip = pod.ip,
                    uid = pod.uid,
                );
            }
            let _ = writeln!(y, "  ports: [{{port: {POD_PORT}, protocol: TCP}}]");
        }
        y
    }

    /// One agent's flows: 80% connects from one of its pods to a Service
    /// (conntrack's real destination and the ClusterIP), 20% accepts by one of
    /// its pods from any pod.
    fn flows(&self, rng: &mut Rng, local: &[&Pod], n: usize, now: i64) -> Vec<pb::Flow> {
        (0..n)
            .map(|_| {
                let me = local[rng.below(local.len())];
                let count = 1 + rng.below(10) as u64;
                let (direction, from, to, service) = if rng.chance(80) {
                    let t = rng.below(self.deployments);
                    let to = self.pod(t, rng.below(self.pods_per_deployment));
                    (pb::Direction::Connect, me, to, Some(cluster_ip(t)))
                } else {
                    (pb::Direction::Accept, self.random_pod(rng), me, None)
                };
                pb::Flow {
                    direction: direction as i32,
                    protocol: pb::Protocol::Tcp as i32,
                    src_ip: from.ip.octets().to_vec(),
                    dst_ip: to.ip.octets().to_vec(),
                    dst_port: POD_PORT.into(),
                    original_dst_ip: service.map(|ip| ip.octets().to_vec()).unwrap_or_default(),
                    original_dst_port: service.map_or(0, |_| SERVICE_PORT.into()),
                    count,
                    pod_uid: me.uid.clone(),
                    first_seen_ms: now,
                    last_seen_ms: now,
                    ..Default::default()
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Small helpers: RSS, percentiles, the file system under a path.

/// Resident set size of this process, in bytes (VmRSS).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value");
    kib * 1024
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds for the report (3 significant decimals are plenty).
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// "ext4 (/dev/vda on /)": the mount holding `path`.
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return "unknown".into() };
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), format!("{} ({} on {})", f[2], f[0], f[1])))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, s)| s)
}

fn temp_dir(base: &Path, prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in(base).expect("create a temporary directory")
}

// ---------------------------------------------------------------------------
// 3. Memory per edge (run first).

fn workload(kind: &str, i: usize) -> Peer {
    Peer::Workload(Workload::new(format!("{kind}-{i:05}"), format!("team{}", i % 10), "Deployment"))
}

fn memory(params: &Params, base: &Path) -> Value {
    progress(&format!("memory: applying {} distinct edges to an EdgeStore", params.edges));
    let dir = temp_dir(base, "mapper-bench-store-");
    let store = EdgeStore::open(dir.path()).expect("open the edge store");
    let now = now_ms();
    // Distinct (client, server) pairs: clients × 100 servers.
    let servers = 100;
    let observation = |e: usize| {
        let key = EdgeKey { client: workload("client", e / servers), server: workload("server", e % servers) };
        Observation::tcp(key, Side::Client, POD_PORT, 1, now)
    };
    let before = rss_bytes();
    let start = Instant::now();
    for b in 0..params.edges / EDGES_PER_BATCH {
        let batch: Vec<Observation> = (b * EDGES_PER_BATCH..(b + 1) * EDGES_PER_BATCH).map(observation).collect();
        store.apply(&AgentBoot::new("bench", "memory"), b as u64 + 1, &batch).expect("apply a batch");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = rss_bytes();
    let edges = store.len();
    let file_bytes = std::fs::metadata(store.path()).map_or(0, |m| m.len());
    drop(store);
    let per_100k = |bytes: f64| mib(bytes) * 100_000.0 / edges.max(1) as f64;
    json!({
        "edges": edges,
        "batches": params.edges / EDGES_PER_BATCH,
        "edges_per_batch": EDGES_PER_BATCH,
        "rss_before_mib": r3(mib(before as f64)),
        "rss_after_mib": r3(mib(after as f64)),
        "rss_mib_per_100k_edges": r3(per_100k(after.saturating_sub(before) as f64)),
        "redb_file_mib": r3(mib(file_bytes as f64)),
        "redb_file_mib_per_100k_edges": r3(per_100k(file_bytes as f64)),
        "apply_seconds": r3(elapsed),
        "new_edges_per_s": (edges as f64 / elapsed).round(),
        "note": "RSS covers the in-memory map and redb's page cache; the file is after the last commit",
    })
}

/// The `retention` figures: an `EdgeStore` holding `retention_edges` old edges expires
/// them all (in chunks) on one thread while another applies batches of new
/// edges, one after another, timing each: the longest is how long ingest
/// stalled behind the sweep. Then the file's size before and after (the sweep
/// compacts a mostly free file), and store bytes per edge.
fn retention(params: &Params, base: &Path) -> Value {
    let n = params.retention_edges;
    progress(&format!("retention: expiring {n} edges while batches of {} arrive", params.retention_batch));
    let dir = temp_dir(base, "mapper-bench-retention-");
    let store = Arc::new(EdgeStore::open(dir.path()).expect("open the edge store"));
    let servers = 100;
    let observation = |prefix: &str, e: usize, at: i64| {
        let key = EdgeKey { client: workload(prefix, e / servers), server: workload("server", e % servers) };
        Observation::tcp(key, Side::Client, POD_PORT, 1, at)
    };
    let old = AgentBoot::new("bench", "old");
    for b in 0..n / EDGES_PER_BATCH {
        let batch: Vec<Observation> =
            (b * EDGES_PER_BATCH..(b + 1) * EDGES_PER_BATCH).map(|e| observation("old", e, 1_000)).collect();
        store.apply(&old, b as u64 + 1, &batch).expect("apply a batch");
    }
    let full_bytes = store.file_bytes();
    // Batches alone first, for comparison.
    let new = AgentBoot::new("bench", "new");
    let mut seq = 0u64;
    let mut next = 0usize;
    let mut send = |store: &EdgeStore| -> f64 {
        let batch: Vec<Observation> =
            (next..next + params.retention_batch).map(|e| observation("new", e, now_ms())).collect();
        next += params.retention_batch;
        seq += 1;
        let t = Instant::now();
        store.apply(&new, seq, &batch).expect("apply a batch during the sweep");
        t.elapsed().as_secs_f64()
    };
    let quiet: Vec<f64> = (0..50).map(|_| send(&store)).collect();
    // What `expire` does in turn, each step on its own thread while batches arrive here: the
    // sweep, then the compaction of the file it left mostly free.
    let mut while_running = |step: Box<dyn FnOnce(&EdgeStore) -> usize + Send>| {
        let runner = {
            let store = store.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let n = step(&store);
                (n, t.elapsed().as_secs_f64())
            })
        };
        let mut during = Vec::new();
        while !runner.is_finished() {
            during.push(send(&store));
        }
        let (n, seconds) = runner.join().expect("the sweep thread");
        (n, seconds, during)
    };
    let (removed, sweep_seconds, during) =
        while_running(Box::new(|s: &EdgeStore| s.remove_expired(2_000).expect("expire")));
    let swept_bytes = store.file_bytes();
    let held = Arc::new(std::sync::Mutex::new(None));
    let (compacted, compact_seconds, during_compaction) = {
        let held = held.clone();
        while_running(Box::new(move |s: &EdgeStore| {
            let done = s.compact_if_sparse().expect("compact");
            *held.lock().expect("held") = done.map(|c| (c.rows_copied, c.rows_at_switch, c.held_us));
            usize::from(done.is_some())
        }))
    };
    let held = *held.lock().expect("held");
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    json!({
        "edges_expired": removed,
        "sweep_seconds": r3(sweep_seconds),
        "batches_during_sweep": during.len(),
        "edges_per_batch": params.retention_batch,
        "max_batch_ms_during_sweep": r3(max(&during) * 1000.0),
        "max_batch_ms_without_sweep": r3(max(&quiet) * 1000.0),
        "compacted": compacted == 1,
        "compaction_seconds": r3(compact_seconds),
        "batches_during_compaction": during_compaction.len(),
        "max_batch_ms_during_compaction": r3(max(&during_compaction) * 1000.0),
        // The part of the compaction that held the writer (batches waited): its switch.
        "compaction_rows_copied_while_batches_landed": held.map(|h| h.0),
        "compaction_rows_copied_at_switch": held.map(|h| h.1),
        "compaction_writer_held_ms": held.map(|h| r3(h.2 as f64 / 1000.0)),
        "file_mib_full": r3(mib(full_bytes as f64)),
        "store_bytes_per_edge": (full_bytes as f64 / n.max(1) as f64).round(),
        "file_mib_after_sweep": r3(mib(swept_bytes as f64)),
        "file_mib_after_compaction": r3(mib(store.file_bytes() as f64)),
        "edges_after_sweep": store.len(),
    })
}

// ---------------------------------------------------------------------------
// 1. Ingest over gRPC.

/// One stream's outcome.
#[derive(Debug, Default)]
struct StreamResult {
    latencies_ms: Vec<f64>,
    flows: u64,
    batches: u64,
    duplicates: u64,
    errors: u64,
    first_error: Option<String>,
}

/// CPU time (user + system, seconds) of this process's threads so far, summed by thread name:
/// the server's (`tokio-rt-worker`, its runtime and blocking pool; `mapper-commit`, the
/// writer) apart from the agents' (`bench-agent`, their own runtime).
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    // Linux's clock ticks per second for these fields (USER_HZ) is 100 on every architecture.
    const TICKS: f64 = 100.0;
    let mut by = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return by };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_owned();
        // After the name: state (field 3), …, utime (14), stime (15).
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *by.entry(name).or_insert(0.0) += (ticks(14) + ticks(15)) / TICKS;
    }
    by
}

/// The agents' tasks and connections run here, on threads of their own (named `bench-agent`),
/// so their CPU time is told apart from the server's.
fn agents_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-agent")
        .enable_all()
        .build()
        .expect("the agents' tokio runtime")
}

/// A `ReportRequest` already encoded, sent as it is; the answer decoded with prost.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedReport;

impl tonic::codec::Codec for EncodedReport {
    type Encode = prost::bytes::Bytes;
    type Decode = pb::ReportResponse;
    type Encoder = EncodedReport;
    type Decoder = EncodedReport;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedReport
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedReport
    }
}

impl tonic::codec::Encoder for EncodedReport {
    type Item = prost::bytes::Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Self::Error> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for EncodedReport {
    type Item = pb::ReportResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        prost::Message::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// What `mapper_report::send` does (the agent's client), for a request encoded beforehand.
async fn send_encoded(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    bytes: prost::bytes::Bytes,
) -> SendOutcome {
    if let Err(e) = client.ready().await {
        return SendOutcome::Retry(tonic::Status::unavailable(e.to_string()));
    }
    let mut req = tonic::Request::new(bytes);
    req.set_timeout(SEND_TIMEOUT);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/mapper.v1.Ingest/Report");
    mapper_report::outcome(client.unary(req, path, EncodedReport).await.map(tonic::Response::into_inner))
}

/// `streams` agents, each with its own connection and (node, boot id), send
/// `batches` batches of `flows_per_batch` flows in sequence; the clock runs from
/// when all are connected to the last acknowledgement. The agents run on `agents`.
async fn run_streams(
    url: &str,
    cluster: &Arc<Cluster>,
    tag: &str,
    (streams, batches, flows_per_batch): (usize, usize, usize),
    agents: &tokio::runtime::Handle,
) -> Value {
    progress(&format!("ingest/{tag}: {streams} stream(s) × {batches} batches × {flows_per_batch} flows"));
    // Seen before the inventory was last looked at (it is polled once an hour here): a
    // flow newer than the cluster state would be deferred.
    let now = now_ms() - mapper_server::ingest::MAX_RESOLVE_WAIT_MS - 1_000;
    let barrier = Arc::new(tokio::sync::Barrier::new(streams + 1));
    let mut tasks = Vec::with_capacity(streams);
    for s in 0..streams {
        // The agent of node `s % NODES` reports its own pods' flows; batches are made
        // before the clock starts.
        let local: Vec<&Pod> = cluster.pods.iter().filter(|p| p.node == s % NODES).collect();
        let mut rng = Rng(0x5eed ^ ((s as u64) << 20) ^ (tag.len() as u64));
        let (node, boot) = (format!("{tag}-node-{s:03}"), format!("{tag}-boot-{s:03}"));
        // Encoded before the clock starts: the agents run on other nodes, so what the server
        // is measured against should cost this machine's two cores as little as it can.
        let plan: Vec<(prost::bytes::Bytes, u64)> = (1..=batches as u64)
            .map(|sequence| {
                let req = pb::ReportRequest {
                    node: node.clone(),
                    boot_id: boot.clone(),
                    sequence,
                    flows: cluster.flows(&mut rng, &local, flows_per_batch, now),
                    dns: Vec::new(),
                };
                (prost::Message::encode_to_vec(&req).into(), req.flows.len() as u64)
            })
            .collect();
        let (url, barrier) = (url.to_owned(), barrier.clone());
        tasks.push(agents.spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .expect("the server's URL")
                .connect()
                .await
                .expect("connect to the server");
            let mut client = tonic::client::Grpc::new(channel);
            barrier.wait().await;
            let mut r = StreamResult { latencies_ms: Vec::with_capacity(plan.len()), ..Default::default() };
            for (bytes, flows) in &plan {
                let t0 = Instant::now();
                let outcome = send_encoded(&mut client, bytes.clone()).await;
                r.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                match outcome {
                    SendOutcome::Acked { duplicate: false } => {
                        r.batches += 1;
                        r.flows += flows;
                    }
                    SendOutcome::Acked { duplicate: true } => r.duplicates += 1,
                    SendOutcome::Rejected(s) | SendOutcome::Retry(s) => {
                        r.errors += 1;
                        r.first_error.get_or_insert_with(|| format!("{:?}: {}", s.code(), s.message()));
                    }
                }
            }
            r
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let cpu_before = cpu_by_thread();
    let mut total = StreamResult::default();
    for t in tasks {
        let r = t.await.expect("stream task");
        total.latencies_ms.extend(r.latencies_ms);
        total.flows += r.flows;
        total.batches += r.batches;
        total.duplicates += r.duplicates;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = cpu_by_thread();
    let spent = |prefix: &str| {
        let sum = |m: &std::collections::BTreeMap<String, f64>| {
            m.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(_, s)| s).sum::<f64>()
        };
        sum(&cpu_after) - sum(&cpu_before)
    };
    let (server_rt, writer, agents_cpu) = (spent("tokio-rt-worker"), spent("mapper-commit"), spent("bench-agent"));
    let server_cpu = server_rt + writer;
    let lat = &mut total.latencies_ms;
    lat.sort_by(f64::total_cmp);
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    json!({
        "streams": streams,
        "batches_per_stream": batches,
        "flows_per_batch": flows_per_batch,
        "flows_acked": total.flows,
        "batches_acked": total.batches,
        "duplicates": total.duplicates,
        "errors": total.errors,
        "first_error": total.first_error,
        "wall_seconds": r3(wall),
        "flows_per_s": (total.flows as f64 / wall).round(),
        "batches_per_s": r3(total.batches as f64 / wall),
        // CPU time in the timed run, by whose threads spent it (10 ms resolution).
        "cpu_seconds": {
            "server": r3(server_cpu),
            "server_writer_thread": r3(writer),
            "agents": r3(agents_cpu),
            "agents_share": r3(agents_cpu / (server_cpu + agents_cpu).max(1e-9)),
        },
        "server_cpu_us_per_flow": r3(server_cpu * 1e6 / (total.flows.max(1)) as f64),
        "server_flows_per_cpu_second": (total.flows as f64 / server_cpu.max(1e-9)).round(),
        "batch_latency_ms": {
            "p50": r3(percentile(lat, 50.0)),
            "p99": r3(percentile(lat, 99.0)),
            "max": r3(lat.last().copied().unwrap_or(f64::NAN)),
            "mean": r3(mean),
        },
    })
}

/// Edges the server holds after the runs, as the query API lists them.
async fn edge_counts(url: &str) -> Value {
    let mut q = QueryClient::connect(url.to_owned()).await.expect("connect the query client");
    let req = pb::ListEdgesRequest { include_unresolved: true, ..Default::default() };
    let edges = q.list_edges(req).await.expect("list edges").into_inner().edges;
    let is_workload =
        |p: &Option<pb::Peer>| matches!(p.as_ref().and_then(|p| p.peer.as_ref()), Some(pb::peer::Peer::Workload(_)));
    let both = edges.iter().filter(|e| is_workload(&e.client) && is_workload(&e.server)).count();
    json!({ "total": edges.len(), "workload_to_workload": both })
}

async fn ingest(params: &Params, cluster: &Arc<Cluster>, handle: ClusterHandle, base: &Path) -> Value {
    let data = temp_dir(base, "mapper-bench-server-");
    let cfg = ServerConfig {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        data_dir: data.path().to_path_buf(),
        token: None,
        token_review: None,
        allow_loopback_query: false,
        insecure: false,
        metrics_listen: None,
        retention: Duration::from_secs(30 * 86_400),
        // BENCH_MAX_CONCURRENT_REPORTS: the server's --max-concurrent-reports (its default otherwise).
        limits: mapper_server::admission::Limits {
            max_concurrent_reports: std::env::var("BENCH_MAX_CONCURRENT_REPORTS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(mapper_server::admission::Limits::default().max_concurrent_reports),
            ..Default::default()
        },
        resolve_hold: mapper_server::reresolve::DEFAULT_HOLD,
        boot_retention: Duration::from_secs(7 * 86_400),
        max_boots: 100_000,
        move_corrupt_store: false,
    };
    handle.wait_ready().await;
    let server = BoundServer::bind(cfg, handle).await.expect("bind the server");
    let url = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    // Warm-up (connections, the store's first pages, the allocator); not reported.
    let agents = agents_runtime();
    let on = agents.handle().clone();
    let warmup = run_streams(&url, cluster, "warmup", (4, 5, params.flows_per_batch), &on).await;
    if warmup["errors"].as_u64() != Some(0) {
        progress(&format!("warm-up had errors: {}", warmup["first_error"]));
    }
    let single = run_streams(&url, cluster, "single", (1, params.single_batches, params.flows_per_batch), &on).await;
    let concurrent =
        run_streams(&url, cluster, "concurrent", (params.streams, params.batches, params.flows_per_batch), &on).await;
    // Each agent's drain at the cluster-wide rate (at most what one batch may hold).
    let drained = (params.cluster_flows_per_s * params.report_interval_s / params.streams.max(1))
        .clamp(1, mapper_server::ingest::MAX_FLOWS_PER_BATCH);
    let mut agent_shaped =
        run_streams(&url, cluster, "agent-shaped", (params.streams, params.agent_batches, drained), &on).await;
    agent_shaped["cluster_flows_per_s"] = json!(params.cluster_flows_per_s);
    agent_shaped["report_interval_s"] = json!(params.report_interval_s);
    let edges = edge_counts(&url).await;
    agents.shutdown_background();

    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(10), serving).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => progress(&format!("server stopped with an error: {e}")),
        Ok(Err(e)) => progress(&format!("server task failed: {e}")),
        Err(_) => progress("server did not stop within 10 s"),
    }
    let redb_bytes = std::fs::metadata(data.path().join("edges.redb")).map_or(0, |m| m.len());
    json!({
        "single_stream": single,
        "concurrent_streams": concurrent,
        "agent_shaped": agent_shaped,
        "server_edges_after": edges,
        "server_redb_file_mib": r3(mib(redb_bytes as f64)),
        "flow_mix": "80% connect to a Service (pod IP + ClusterIP), 20% accept; all between generated pods",
    })
}

// ---------------------------------------------------------------------------
// 2. Resolution cost.

/// One synthetic flow's inputs to resolution.
#[derive(Debug, Clone, Copy)]
struct Synthetic<'a> {
    local: Evidence<'a>,
    remote: IpAddr,
    port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RemoteKind {
    PodIp,
    ClusterIp,
    External,
}

fn synthetic<'a>(cluster: &'a Cluster, rng: &mut Rng, now: i64, kind: RemoteKind, by_uid: bool) -> Synthetic<'a> {
    let me = cluster.random_pod(rng);
    let local = Evidence {
        ip: Some(me.ip.into()),
        pod_uid: by_uid.then_some(me.uid.as_str()),
        host_network: false,
        at_ms: now,
    };
    let (remote, port) = match kind {
        RemoteKind::PodIp => (cluster.random_pod(rng).ip, POD_PORT),
        RemoteKind::ClusterIp => (cluster_ip(rng.below(cluster.deployments)), SERVICE_PORT),
        RemoteKind::External => (Ipv4Addr::new(203, 0, 113, rng.below(256) as u8), 443),
    };
    Synthetic { local, remote: remote.into(), port }
}

/// Resolves `n` flows cycling through `flows`; ns per flow.
fn time_resolution(snap: &Snapshot, flows: &[Synthetic<'_>], n: usize) -> f64 {
    let run = |n: usize| {
        for i in 0..n {
            let f = black_box(&flows[i % flows.len()]);
            let local = snap.resolve_local(&f.local);
            let remote = snap.resolve_remote(f.remote, f.port, f.local.at_ms);
            black_box((local, remote));
        }
    };
    run(n / 10); // warm-up
    let start = Instant::now();
    run(n);
    start.elapsed().as_nanos() as f64 / n.max(1) as f64
}

fn resolution(params: &Params, cluster: &Cluster, snap: &Snapshot) -> Value {
    progress(&format!("resolution: {} synthetic flows", params.resolve_flows));
    let now = now_ms();
    let mut rng = Rng(0xf10e);
    // 65 536 distinct flows, cycled: 90% of local ends carry a pod UID (10% only an
    // IP); remote ends are 60% pod IPs, 30% ClusterIPs, 10% external addresses.
    let mixed: Vec<Synthetic<'_>> = (0..65_536)
        .map(|_| {
            let kind = match rng.below(10) {
                0..=5 => RemoteKind::PodIp,
                6..=8 => RemoteKind::ClusterIp,
                _ => RemoteKind::External,
            };
            let by_uid = rng.chance(90);
            synthetic(cluster, &mut rng, now, kind, by_uid)
        })
        .collect();
    let resolved = mixed
        .iter()
        .filter(|f| {
            let local = snap.resolve_local(&f.local);
            let remote = snap.resolve_remote(f.remote, f.port, f.local.at_ms);
            local.workload().is_some() && (remote.workload().is_some() || matches!(remote, Peer::External { .. }))
        })
        .count();
    let ns_mixed = time_resolution(snap, &mixed, params.resolve_flows);

    // The same per kind of remote end (local end by pod UID), a fifth of the flows each.
    let each = (params.resolve_flows / 5).max(1);
    let mut by_kind = serde_json::Map::new();
    for (name, kind) in
        [("pod_ip", RemoteKind::PodIp), ("cluster_ip", RemoteKind::ClusterIp), ("external", RemoteKind::External)]
    {
        let flows: Vec<Synthetic<'_>> = (0..65_536).map(|_| synthetic(cluster, &mut rng, now, kind, true)).collect();
        by_kind.insert(name.into(), json!(r3(time_resolution(snap, &flows, each))));
    }
    let by_ip: Vec<Synthetic<'_>> =
        (0..65_536).map(|_| synthetic(cluster, &mut rng, now, RemoteKind::PodIp, false)).collect();
    by_kind.insert("pod_ip_local_by_ip_only".into(), json!(r3(time_resolution(snap, &by_ip, each))));

    json!({
        "flows": params.resolve_flows,
        "distinct_flows": mixed.len(),
        "ns_per_flow": r3(ns_mixed),
        "flows_per_s_one_core": (1e9 / ns_mixed).round(),
        "resolved_as_expected_fraction": r3(resolved as f64 / mixed.len() as f64),
        "mix": "local: 90% pod UID + IP, 10% IP only; remote: 60% pod IP, 30% ClusterIP, 10% external",
        "ns_per_flow_by_remote_kind": by_kind,
    })
}

// ---------------------------------------------------------------------------
// 6. The writer alone.

/// CPU time (user + system, seconds) of the calling thread so far.
fn thread_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return 0.0 };
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

fn writer(params: &Params, base: &Path) -> Value {
    let (streams, batches, flows) = (params.streams, params.batches, params.flows_per_batch);
    progress(&format!(
        "writer: {streams} agents × {batches} batches × {flows} flows, {} batches per group",
        params.writer_group
    ));
    let dir = temp_dir(base, "mapper-bench-writer-");
    let store = EdgeStore::open(dir.path()).expect("open the edge store");
    let now = now_ms();
    let mut rng = Rng(17);
    // The workloads and Services of the `ingest` run, their names shared by every flow (as the
    // cluster state's are).
    let peers: Vec<Peer> = (0..params.deployments)
        .map(|d| Peer::Workload(Workload::new(deployment_name(d), namespace(d), "Deployment")))
        .collect();
    let services: Vec<(Arc<str>, Arc<str>)> =
        (0..params.deployments).map(|d| (namespace(d).into(), deployment_name(d).into())).collect();
    let agents: Vec<AgentBoot> = (0..streams).map(|n| AgentBoot::new(&format!("node-{n}"), "writer")).collect();
    // Every batch, made and coalesced before the clock starts: (agent, sequence, observations).
    let mut all: Vec<(usize, u64, mapper_server::store::Observations)> = Vec::with_capacity(streams * batches);
    for b in 0..batches {
        for a in 0..streams {
            let observations: Vec<Observation> = (0..flows)
                .map(|_| {
                    // As in the `ingest` run, a node's pods are of a few Deployments (those
                    // `d` with `d % 10` the node's tenth in twenty), and they call any.
                    let client = (rng.below(peers.len().div_ceil(10)) * 10 + (a / 20) % 10) % peers.len();
                    let server = rng.below(peers.len());
                    let side = if rng.chance(80) { Side::Client } else { Side::Server };
                    let key = EdgeKey { client: peers[client].clone(), server: peers[server].clone() };
                    Observation {
                        via_service: (side == Side::Client).then(|| services[server].clone()),
                        ..Observation::tcp(key, side, POD_PORT, 1, now)
                    }
                })
                .collect();
            all.push((a, b as u64 + 1, mapper_server::store::Observations::new(observations).coalesce()));
        }
    }
    let observations: usize = all.iter().map(|(_, _, o)| o.len()).sum();
    let (cpu, start) = (thread_cpu_seconds(), Instant::now());
    let mut groups = 0;
    for group in all.chunks(params.writer_group) {
        let batch: Vec<Batch<'_>> = group
            .iter()
            .map(|(a, sequence, observations)| Batch { agent: &agents[*a], sequence: *sequence, observations })
            .collect();
        store.apply_group(&batch).expect("apply a group");
        groups += 1;
    }
    let (wall, cpu) = (start.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu);
    let total = streams * batches * flows;
    json!({
        "flows": total,
        "observations_after_coalescing": observations,
        "groups": groups,
        "batches_per_group": params.writer_group,
        "edges": store.len(),
        "wall_seconds": r3(wall),
        "cpu_seconds": r3(cpu),
        "cpu_us_per_flow": r3(cpu * 1e6 / total as f64),
        "flows_per_cpu_second": (total as f64 / cpu.max(1e-9)).round(),
    })
}

// ---------------------------------------------------------------------------

fn main() {
    let params = Params::from_env();
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let started = Instant::now();

    let runs = |part: &str| params.parts.iter().any(|p| p == part);
    // The memory parts first: while the process is small.
    let scale = scale::Scale { pods: params.scale_pods, services: params.scale_services };
    let cluster_scale = runs("cluster").then(|| scale::cluster(scale, &base, params.settle));
    let edges = runs("edges").then(|| scale::edges(&params.edge_checkpoints, EDGES_PER_BATCH, &base, params.settle));
    let memory = runs("memory").then(|| memory(&params, &base));
    let writer = runs("writer").then(|| writer(&params, &base));
    if !runs("ingest") && !runs("resolution") {
        let report = json!({ "cluster": cluster_scale, "edges": edges, "memory": memory, "writer": writer,
            "retention": runs("retention").then(|| retention(&params, &base)),
            "total_seconds": r3(started.elapsed().as_secs_f64()) });
        println!("{}", serde_json::to_string_pretty(&report).expect("serialise the report"));
        return;
    }
    let retention = runs("retention").then(|| retention(&params, &base));

    let cluster = Arc::new(Cluster::new(params.deployments, params.pods_per_deployment));
    let inv_dir = temp_dir(&base, "mapper-bench-inventory-");
    let inv_path = inv_dir.path().join("cluster.yaml");
    std::fs::write(&inv_path, cluster.yaml()).expect("write the inventory");

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let (ingest, snap, pods_known) = rt.block_on(async {
        // A long interval: no reload looks during the measurements.
        let (handle, watcher) =
            watch_inventory(vec![inv_path.clone()], ResolveOptions::default(), Duration::from_secs(3600))
                .expect("load the generated inventory");
        let snap = handle.snapshot();
        let pods_known = snap.pod_count();
        let ingest = ingest(&params, &cluster, handle, &base).await;
        watcher.abort();
        (ingest, snap, pods_known)
    });
    drop(rt);

    let resolution = resolution(&params, &cluster, &snap);

    let distinct: BTreeSet<usize> = cluster.pods.iter().map(|p| p.node).collect();
    let report = json!({
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "store_filesystem": filesystem_of(&base),
            "note": "agents (gRPC clients, on threads of their own) and the server run in one process on the same cores",
        },
        "inventory": {
            "deployments": params.deployments,
            "pods": cluster.pods.len(),
            "pods_in_snapshot": pods_known,
            "services": params.deployments,
            "namespaces": NAMESPACES.min(params.deployments),
            "nodes": distinct.len(),
            "yaml_bytes": std::fs::metadata(&inv_path).map_or(0, |m| m.len()),
        },
        "ingest": ingest,
        "resolution": resolution,
        "memory": memory,
        "cluster": cluster_scale,
        "edges": edges,
        "retention": retention,
        "writer": writer,
        "total_seconds": r3(started.elapsed().as_secs_f64()),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("serialise the report"));
}
