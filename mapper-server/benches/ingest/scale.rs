//! The cluster-scale part of the bench: a generated cluster of many pods written as an
//! inventory directory (one `kind: List` file per namespace, as `kubectl get -n NS -o yaml`
//! prints it), loaded and reloaded with [`Inventory`]; and the edge store's memory per edge at
//! several sizes, with a query's copy of every edge made and dropped (the peak a query makes).

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use mapper_cluster::{Inventory, Peer, ResolveOptions, Workload};
use mapper_server::store::{EdgeKey, EdgeStore, Observation, Side};
use serde_json::{Value, json};

use crate::{cluster_ip, mib, node_ip, now_ms, progress, r3, rss_bytes};

/// Namespaces of the generated cluster.
const NAMESPACES: usize = 100;
/// Pods per node.
const PODS_PER_NODE: usize = 50;
/// One workload in this many is a StatefulSet, the others Deployments.
const STATEFULSET_EVERY: usize = 4;

/// The size of the generated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub pods: usize,
    /// Services, one per workload (each a Deployment or a StatefulSet).
    pub services: usize,
}

fn pod_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 128 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

fn uid(kind: u32, n: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

/// Writes the cluster under `dir` (nodes.yaml and one file per namespace); returns the bytes
/// written.
pub fn write_inventory(scale: Scale, dir: &Path) -> u64 {
    let nodes = scale.pods.div_ceil(PODS_PER_NODE).max(1);
    let mut total = 0u64;
    let mut write = |name: String, text: String| {
        total += text.len() as u64;
        std::fs::write(dir.join(name), text).expect("write an inventory file");
    };
    let mut y = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for n in 0..nodes {
        let _ = write!(
            y,
            "- apiVersion: v1
  kind: Node
  metadata:
    name: node-{n:05}
    uid: {uid}
    labels: {{kubernetes.io/hostname: node-{n:05}, kubernetes.io/os: linux, node.kubernetes.io/instance-type: m5.2xlarge, topology.kubernetes.io/zone: zone-{z}}}
  spec: {{podCIDR: 10.128.{n}.0/24}}
  status:
    addresses: [{{type: InternalIP, address: {ip}}}, {{type: Hostname, address: node-{n:05}}}]
",
            uid = uid(9, n),
            z = n % 3,
            ip = node_ip(n),
        );
    }
    write("nodes.yaml".into(), y);
    let (base, extra) = (scale.pods / scale.services.max(1), scale.pods % scale.services.max(1));
    let mut files: Vec<String> =
        (0..NAMESPACES).map(|_| String::from("apiVersion: v1\nkind: List\nitems:\n")).collect();
    let mut pod = 0usize;
    for w in 0..scale.services {
        let y = &mut files[w % NAMESPACES];
        let ns = format!("ns-{:03}", w % NAMESPACES);
        let name = format!("app-{w:05}");
        let replicas = base + usize::from(w < extra);
        let stateful = w % STATEFULSET_EVERY == 0;
        let labels = format!("app.kubernetes.io/name: {name}, app.kubernetes.io/part-of: shop, team: team-{}", w % 40);
        let (owner_kind, owner_name, owner_uid, hash_label) = if stateful {
            let _ = write!(
                y,
                "- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {{name: {name}, namespace: {ns}, uid: {uid}}}
  spec: {{replicas: {replicas}, serviceName: {name}, selector: {{matchLabels: {{app.kubernetes.io/name: {name}}}}}}}
",
                uid = uid(5, w),
            );
            ("StatefulSet", name.clone(), uid(5, w), format!("controller-revision-hash: {name}-6d4cf56db6"))
        } else {
            let rs = format!("{name}-7c9d{w:05}");
            let _ = write!(
                y,
                "- apiVersion: apps/v1
  kind: Deployment
  metadata: {{name: {name}, namespace: {ns}, uid: {dep}}}
  spec: {{replicas: {replicas}, selector: {{matchLabels: {{app.kubernetes.io/name: {name}}}}}}}
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: {rs}
    namespace: {ns}
    uid: {rsu}
    labels: {{{labels}, pod-template-hash: 7c9d{w:05}}}
    ownerReferences:
    - {{apiVersion: apps/v1, kind: Deployment, name: {name}, uid: {dep}, controller: true, blockOwnerDeletion: true}}
  spec: {{replicas: {replicas}, selector: {{matchLabels: {{app.kubernetes.io/name: {name}}}}}}}
",
                dep = uid(1, w),
                rsu = uid(2, w),
            );
            ("ReplicaSet", rs, uid(2, w), format!("pod-template-hash: 7c9d{w:05}"))
        };
        let mut endpoints = String::new();
        for r in 0..replicas {
            let pod_name = if stateful { format!("{name}-{r}") } else { format!("{owner_name}-{r:05x}") };
            let (ip, node) = (pod_ip(pod), pod % nodes);
            let _ = write!(
                y,
                "- apiVersion: v1
  kind: Pod
  metadata:
    name: {pod_name}
    namespace: {ns}
    uid: {uid}
    creationTimestamp: \"2020-01-01T00:00:00Z\"
    labels: {{{labels}, {hash_label}}}
    annotations: {{kubectl.kubernetes.io/restartedAt: \"2020-01-01T00:00:00Z\", prometheus.io/scrape: \"true\"}}
    ownerReferences:
    - {{apiVersion: apps/v1, kind: {owner_kind}, name: {owner_name}, uid: {owner_uid}, controller: true, blockOwnerDeletion: true}}
  spec:
    nodeName: node-{node:05}
    serviceAccountName: {name}
    containers:
    - name: app
      image: registry.example.com/shop/{name}:1.4.2
      ports: [{{containerPort: 8080, name: http, protocol: TCP}}]
      resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{memory: 256Mi}}}}
  status:
    phase: Running
    podIP: {ip}
    podIPs: [{{ip: {ip}}}]
    hostIP: {host}
    hostIPs: [{{ip: {host}}}]
    startTime: \"2020-01-01T00:00:00Z\"
    conditions: [{{type: Ready, status: \"True\"}}, {{type: ContainersReady, status: \"True\"}}]
    containerStatuses:
    - {{name: app, ready: true, restartCount: 0, image: registry.example.com/shop/{name}:1.4.2, state: {{running: {{startedAt: \"2020-01-01T00:00:00Z\"}}}}}}
",
                uid = uid(3, pod),
                host = node_ip(node),
            );
            let _ = write!(
                endpoints,
                "  - addresses: [{ip}]
    conditions: {{ready: true, serving: true, terminating: false}}
    nodeName: node-{node:05}
    targetRef: {{kind: Pod, name: {pod_name}, namespace: {ns}, uid: {uid}}}
",
                uid = uid(3, pod),
            );
            pod += 1;
        }
        let _ = write!(
            y,
            "- apiVersion: v1
  kind: Service
  metadata: {{name: {name}, namespace: {ns}, uid: {svc}, labels: {{{labels}}}}}
  spec:
    type: ClusterIP
    clusterIP: {cip}
    clusterIPs: [{cip}]
    selector: {{app.kubernetes.io/name: {name}}}
    ports: [{{name: http, port: 80, targetPort: http, protocol: TCP}}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: {name}-x7k2p
    namespace: {ns}
    labels: {{kubernetes.io/service-name: {name}, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}}
  addressType: IPv4
  endpoints:
{endpoints}  ports: [{{name: http, port: 8080, protocol: TCP}}]
",
            svc = uid(4, w),
            cip = cluster_ip(w),
        );
    }
    for (i, text) in files.into_iter().enumerate() {
        write(format!("ns-{i:03}.yaml"), text);
    }
    total
}

/// RSS after `settle` (the allocator's background purge returning freed memory).
fn settled_rss(settle: Duration) -> u64 {
    std::thread::sleep(settle);
    rss_bytes()
}

/// Loads the generated cluster, reloads it, and drops it; RSS and times at each step.
pub fn cluster(scale: Scale, base: &Path, settle: Duration) -> Value {
    let dir = crate::temp_dir(base, "mapper-bench-scale-");
    progress(&format!("cluster: writing {} pods, {} Services", scale.pods, scale.services));
    let yaml_bytes = write_inventory(scale, dir.path());
    let before = settled_rss(settle);
    progress("cluster: loading the inventory");
    let start = Instant::now();
    let mut inventory =
        Inventory::load(vec![dir.path().to_path_buf()], ResolveOptions::default()).expect("load the generated cluster");
    let load_s = start.elapsed().as_secs_f64();
    let after_load = rss_bytes();
    let after_load_settled = settled_rss(settle);
    let snap = inventory.snapshot();
    let pods = snap.pod_count();
    let probe = snap.resolve_remote(pod_ip(0).into(), 8080, now_ms());
    assert!(matches!(probe, Peer::Workload(_)), "a generated pod's IP resolves to its workload: {probe:?}");
    drop(snap);
    progress("cluster: reloading it (every file changed)");
    let start = Instant::now();
    inventory.reload().expect("reload the generated cluster");
    let reload_s = start.elapsed().as_secs_f64();
    let after_reload = rss_bytes();
    let after_reload_settled = settled_rss(settle);
    drop(inventory);
    let after_drop = settled_rss(settle);
    // What the loaded inventory holds: settled after the load less settled after dropping it.
    // (Not less `before`: how much of the generator's freed buffers the allocator has returned
    // by then varies from run to run, 5 to 59 MiB, and made the figure look smaller.)
    let held = after_load_settled.saturating_sub(after_drop) as f64;
    json!({
        "pods": scale.pods,
        "pods_in_snapshot": pods,
        "services": scale.services,
        "namespaces": NAMESPACES,
        "nodes": scale.pods.div_ceil(PODS_PER_NODE),
        "inventory_files": NAMESPACES + 1,
        "yaml_mib": r3(mib(yaml_bytes as f64)),
        "load_seconds": r3(load_s),
        "reload_seconds": r3(reload_s),
        "rss_before_mib": r3(mib(before as f64)),
        "rss_after_load_mib": r3(mib(after_load as f64)),
        "rss_after_load_settled_mib": r3(mib(after_load_settled as f64)),
        "rss_after_reload_mib": r3(mib(after_reload as f64)),
        "rss_after_reload_settled_mib": r3(mib(after_reload_settled as f64)),
        "rss_after_drop_settled_mib": r3(mib(after_drop as f64)),
        "cluster_state_mib": r3(mib(held)),
        "cluster_state_bytes_per_pod": (held / scale.pods.max(1) as f64).round(),
        "settle_seconds": settle.as_secs_f64(),
        "note": "settled: after settle_seconds, when the allocator has returned freed pages; \
                 the cluster state is what a loaded Inventory holds, settled (RSS settled after \
                 the load less RSS settled after dropping it)",
    })
}

fn workload(kind: &str, i: usize) -> Peer {
    Peer::Workload(Workload::new(format!("{kind}-{i:05}"), format!("ns-{:03}", i % NAMESPACES), "Deployment"))
}

/// Applies distinct edges in batches of `per_batch`, noting RSS at each of `checkpoints`
/// (edge counts, ascending); then a query's copy of every edge is made and dropped.
pub fn edges(checkpoints: &[usize], per_batch: usize, base: &Path, settle: Duration) -> Value {
    let last = checkpoints.last().copied().unwrap_or(0);
    progress(&format!("edges: applying up to {last} distinct edges, RSS at {checkpoints:?}"));
    let dir = crate::temp_dir(base, "mapper-bench-edges-");
    let store = EdgeStore::open(dir.path()).expect("open the edge store");
    let now = now_ms();
    // Distinct (client, server) pairs: clients × 1000 servers; every fourth edge dialled a
    // Service; ports 8080 and, for a tenth, also 9090.
    let servers = 1000;
    let observation = |e: usize, port: u16| {
        let key = EdgeKey { client: workload("client", e / servers), server: workload("server", e % servers) };
        Observation {
            via_service: e
                .is_multiple_of(4)
                .then(|| (format!("ns-{:03}", e % NAMESPACES).into(), format!("server-{:05}", e % servers).into())),
            ..Observation::tcp(key, Side::Client, port, 1, now)
        }
    };
    let before = settled_rss(settle);
    let start = Instant::now();
    let mut points = Vec::new();
    let mut applied = 0usize;
    let mut sequence = 0u64;
    for &target in checkpoints {
        while applied < target {
            let end = (applied + per_batch).min(target);
            let mut batch: Vec<Observation> = (applied..end).map(|e| observation(e, 8080)).collect();
            batch.extend((applied..end).filter(|e| e.is_multiple_of(10)).map(|e| observation(e, 9090)));
            sequence += 1;
            store
                .apply(&mapper_server::store::AgentBoot::new("bench", "edges"), sequence, &batch)
                .expect("apply a batch");
            applied = end;
        }
        let rss = rss_bytes();
        let file = std::fs::metadata(store.path()).map_or(0, |m| m.len());
        let grown = rss.saturating_sub(before) as f64;
        points.push(json!({
            "edges": store.len(),
            "rss_mib": r3(mib(rss as f64)),
            "rss_bytes_per_edge": (grown / applied.max(1) as f64).round(),
            "redb_file_mib": r3(mib(file as f64)),
            "redb_file_bytes_per_edge": (file as f64 / applied.max(1) as f64).round(),
            "seconds_so_far": r3(start.elapsed().as_secs_f64()),
        }));
    }
    let held = rss_bytes();
    progress("edges: a query's copy of every edge, made and dropped");
    let copy = store.edges();
    let copied = copy.len();
    let during_query = rss_bytes();
    drop(copy);
    let after_query = rss_bytes();
    let after_query_settled = settled_rss(settle);
    drop(store);
    json!({
        "at": points,
        "rss_before_mib": r3(mib(before as f64)),
        "query": {
            "edges_copied": copied,
            "rss_before_mib": r3(mib(held as f64)),
            "rss_with_copy_mib": r3(mib(during_query as f64)),
            "rss_after_drop_mib": r3(mib(after_query as f64)),
            "rss_after_drop_settled_mib": r3(mib(after_query_settled as f64)),
        },
        "mix": "distinct workload pairs; a quarter dialled a Service, a tenth two ports",
        "note": "RSS covers the in-memory map and redb's page cache",
    })
}
