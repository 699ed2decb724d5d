//! `mapper-lab up | traffic | down`: a scenario made real on one machine.
//!
//! `up` builds the node namespace, a namespace (or, for hostNetwork, a cgroup in the node
//! namespace) per pod, a server in every pod on its ports, the cluster's own processes (the
//! `coredns` pod's DNS server, the API server and the kubelet prober in the node namespace, in
//! cgroups of their own under `system.slice`), the external hosts' namespace beyond the node's
//! uplink, the Services' ClusterIPs as kube-proxy rules, and writes the inventory a cluster
//! would have (`<state>/inventory.yaml`). `traffic` moves the lab from round to round (new
//! workloads, rollouts, IP reuse; kube-proxy rules, DNS records and the inventory rewritten
//! from the current endpoints) and makes the scenario's calls from inside the calling pods.
//! `down` removes all of it, also after a crash: everything the lab makes is named `mlab-…`.

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

pub use crate::calls::{CallResult, PodCall, traffic};
use crate::cluster::sync_cluster;
pub use crate::cluster::{ServiceDef, service_defs};
pub use crate::netns::LabError;
use crate::{
    inventory::owner_chain,
    kubelet,
    netns::{self, Netns},
    proxy,
    scenario::{DNS_WORKLOAD, Scenario, WorkloadSpec, split_ref},
    topo::{Node, hash, pod_uid},
};

/// Prefix of every namespace and cgroup the lab makes.
pub const TAG: &str = "mlab";
/// Pod CIDR 10.244.<K>.0/24, ClusterIPs 10.96.<K>.0/24.
pub const K: u8 = 100;
/// The node's name in the inventory.
pub const NODE_NAME: &str = "lab-node";
/// kube-dns's ClusterIP.
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The `kubernetes` Service's ClusterIP.
pub const API_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// Where the API server listens on the node.
pub const API_SERVER_PORT: u16 = 6443;
/// The namespace of the external hosts, beyond the node's uplink.
pub const EXTERNAL_NETNS: &str = "mlab-external";
/// The node's end of the uplink, and the external namespace's.
const UPLINK: (&str, &str) = ("192.0.2.1", "192.0.2.2");
const UPLINK6: (&str, &str) = ("fd00:ff::1", "fd00:ff::2");
/// The DNS records file in the state directory.
pub const RECORDS_FILE: &str = "dns.json";
/// Pod addresses 10.244.<K>.2 to .254.
const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

fn first_host() -> u8 {
    FIRST_HOST
}

/// A pod the lab made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabPod {
    pub name: String,
    pub namespace: String,
    pub workload: String,
    pub uid: String,
    /// The network namespace its processes run in (the node's for hostNetwork).
    pub netns: String,
    pub ip: Ipv4Addr,
    /// Its IPv6 address (dual-stack scenarios).
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    pub cgroup: PathBuf,
    pub host_network: bool,
    /// Its creationTimestamp and startTime (RFC 3339).
    pub created: String,
    /// The workload's rollout it belongs to (0: the first pods).
    #[serde(default)]
    pub revision: u32,
    /// TCP ports the kubelet probes.
    #[serde(default)]
    pub probes: Vec<u16>,
    /// When it was deleted and its container ended (RFC 3339); only for `LabState::deleted`.
    #[serde(default)]
    pub finished: Option<String>,
}

/// A Service the lab made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabService {
    pub name: String,
    pub namespace: String,
    pub cluster_ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub cluster_ipv6: Option<Ipv6Addr>,
    /// Addresses behind it now.
    pub endpoints: Vec<Ipv4Addr>,
    #[serde(default)]
    pub endpoints_v6: Vec<Ipv6Addr>,
}

/// What `up` made, for `traffic`, the kubelet and `down`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub node_netns: String,
    pub node_ip: Ipv4Addr,
    #[serde(default)]
    pub node_ipv6: Option<Ipv6Addr>,
    pub cgroup_base: PathBuf,
    /// Pods alive now.
    pub pods: Vec<LabPod>,
    /// Every Service (kube-dns and kubernetes first) with its current endpoints.
    pub services: Vec<LabService>,
    /// The traffic round the lab is at (workloads of later rounds do not exist yet).
    pub round: u32,
    /// Pods deleted so far (a rollout's old pods, `reuseIpOf` victims).
    #[serde(default)]
    pub deleted: Vec<LabPod>,
    /// Pod addresses (last octet) freed by deleted pods, handed out before new ones.
    #[serde(default)]
    pub free_hosts: Vec<u8>,
    #[serde(default = "first_host")]
    pub next_host: u8,
    /// When `up` made the lab (Unix seconds): the release records' dates count back from it.
    #[serde(default)]
    pub up_at: u64,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io { path: path.to_path_buf(), source }
}

pub(crate) fn internal(command: &str, stderr: impl Into<String>) -> LabError {
    LabError::Command { command: command.into(), stderr: stderr.into() }
}

/// Characters Kubernetes uses in generated name suffixes.
pub(crate) fn suffix(seed: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = hash(seed);
    (0..len)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize];
            h /= ALPHABET.len() as u64;
            char::from(c)
        })
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Brings the scenario up; writes `<state>/state.json` and `<state>/inventory.yaml`.
pub fn up(scenario: &Scenario, state_dir: &Path, lab_bin: &Path) -> Result<LabState, LabError> {
    down(state_dir);
    std::fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
    let mut node = Node::named(TAG, K)?;
    let node_ns = node.netns.name().to_string();
    // kube-dns and kubernetes live in 10.96.0.0/24, beside the Services' range.
    netns::ip(&["-n", &node_ns, "route", "add", "10.96.0.0/24", "dev", "br0"])?;
    proxy::install(&node_ns)?;
    if !scenario.external.is_empty() {
        external_hosts(scenario, &node, lab_bin)?;
    }
    let mut state = LabState {
        node_netns: node_ns.clone(),
        node_ip: node.ipv4(),
        node_ipv6: scenario.dual_stack().then(|| node.ipv6()),
        cgroup_base: node.cgroups.base().to_path_buf(),
        pods: Vec::new(),
        services: Vec::new(),
        round: 1,
        deleted: Vec::new(),
        free_hosts: Vec::new(),
        next_host: FIRST_HOST,
        up_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let defs = service_defs(scenario);
    for w in scenario.workloads.iter().filter(|w| w.round <= 1) {
        let made = create_pods(&mut node, &mut state, scenario, w, 0, None)?;
        for p in &made {
            start_server(&state, p, w, scenario, lab_bin, state_dir)?;
        }
        state.pods.extend(made);
    }
    sync_cluster(scenario, &mut state, &defs, state_dir)?;
    // The API server and the kubelet: node processes, each in a cgroup of its own.
    let api = node.cgroups.dir("system.slice/kube-apiserver.service")?;
    let mut cmd = node.netns.command(lab_bin, Some(&api))?;
    cmd.args(["serve", "--tcp", &SocketAddr::new(IpAddr::V4(state.node_ip), API_SERVER_PORT).to_string()]);
    wait_ready(cmd, "the API server")?;
    let kubelet_cg = node.cgroups.dir(kubelet::CGROUP)?;
    let mut cmd = node.netns.command(lab_bin, Some(&kubelet_cg))?;
    cmd.arg("kubelet")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--interval")
        .arg(format!("{}ms", scenario.probe_interval.0.as_millis().max(1)));
    wait_ready(cmd, "the kubelet prober")?;
    node.keep();
    Ok(state)
}

/// The external hosts: a namespace with no route but back to the node's uplink, every
/// external IP on its loopback and a server on its ports; the node routes just those IPs
/// there and masquerades what it sends, as a node's uplink does.
fn external_hosts(scenario: &Scenario, node: &Node, lab_bin: &Path) -> Result<(), LabError> {
    let mut ext = Netns::create(EXTERNAL_NETNS)?;
    let (n, e) = (node.netns.name().to_string(), ext.name().to_string());
    netns::ip(&["-n", &n, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", &e])?;
    netns::ip(&["-n", &n, "addr", "add", &format!("{}/30", UPLINK.0), "dev", "uplink"])?;
    netns::ip(&["-n", &n, "-6", "addr", "add", &format!("{}/64", UPLINK6.0), "dev", "uplink", "nodad"])?;
    netns::ip(&["-n", &n, "link", "set", "uplink", "up"])?;
    netns::ip(&["-n", &e, "addr", "add", &format!("{}/30", UPLINK.1), "dev", "eth0"])?;
    netns::ip(&["-n", &e, "-6", "addr", "add", &format!("{}/64", UPLINK6.1), "dev", "eth0", "nodad"])?;
    netns::ip(&["-n", &e, "link", "set", "eth0", "up"])?;
    for t in ["iptables", "ip6tables"] {
        node.netns.exec(&[t, "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "uplink", "-j", "MASQUERADE"])?;
    }
    for x in &scenario.external {
        let ip = x.ip.to_string();
        let (fam, plen, via) = if x.ip.is_ipv6() { ("-6", "128", UPLINK6.1) } else { ("-4", "32", UPLINK.1) };
        netns::ip(&["-n", &e, fam, "addr", "add", &format!("{ip}/{plen}"), "dev", "lo"])?;
        netns::ip(&["-n", &n, fam, "route", "add", &format!("{ip}/{plen}"), "via", via, "dev", "uplink"])?;
        if x.ports.is_empty() {
            continue;
        }
        let cg = node.cgroups.dir(&format!("external.slice/{}", x.name))?;
        let mut cmd = ext.command(lab_bin, Some(&cg))?;
        cmd.arg("serve");
        for p in &x.ports {
            cmd.arg("--tcp").arg(SocketAddr::new(x.ip, *p).to_string());
        }
        wait_ready(cmd, &format!("external host {}", x.name))?;
    }
    ext.keep();
    Ok(())
}

/// Starts a command that prints `ready` once it serves, and waits for that line.
fn wait_ready(mut cmd: std::process::Command, what: &str) -> Result<(), LabError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| LabError::Spawn { command: format!("mapper-lab for {what}"), source })?;
    let mut line = String::new();
    let out = child.stdout.take().ok_or_else(|| internal(what, "no stdout"))?;
    let _ = BufReader::new(out).read_line(&mut line);
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(internal(&format!("mapper-lab for {what}"), "did not start"));
    }
    Ok(())
}

/// Starts a pod's server (the coredns pod's: the cluster DNS) and waits until it listens.
fn start_server(
    state: &LabState,
    pod: &LabPod,
    w: &WorkloadSpec,
    scenario: &Scenario,
    lab_bin: &Path,
    state_dir: &Path,
) -> Result<(), LabError> {
    if w.ports.is_empty() {
        return Ok(());
    }
    let ns = Netns::attach(&pod.netns);
    let mut cmd = ns.command(lab_bin, Some(&pod.cgroup))?;
    let (v4, v6) = if pod.host_network {
        (IpAddr::V4(state.node_ip), state.node_ipv6)
    } else {
        (IpAddr::V4(Ipv4Addr::UNSPECIFIED), pod.ipv6)
    };
    // A v6 socket on the pod's own v6 address: a wildcard one would take v4 too. The loopback
    // addresses as well, for calls `via: loopback` (a sidecar's): 0.0.0.0 covers 127.0.0.1,
    // a node address does not.
    let dual = scenario.dual_stack();
    let loopback_v4 = pod.host_network.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let loopback_v6 = dual.then_some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let binds: Vec<IpAddr> =
        std::iter::once(v4).chain(v6.filter(|_| dual).map(IpAddr::V6)).chain(loopback_v4).chain(loopback_v6).collect();
    if (w.name.as_str(), w.namespace.as_str()) == DNS_WORKLOAD {
        cmd.arg("coredns").arg("--records").arg(state_dir.join(RECORDS_FILE));
        for b in &binds {
            cmd.arg("--listen").arg(SocketAddr::new(*b, 53).to_string());
        }
    } else {
        cmd.arg("serve");
        for p in &w.ports {
            for b in &binds {
                cmd.arg(if p.udp { "--udp" } else { "--tcp" }).arg(SocketAddr::new(*b, p.port).to_string());
            }
        }
    }
    wait_ready(cmd, &format!("pod {}/{}", pod.namespace, pod.name))
}

/// The next free pod address: a freed one first (as the lab wants IPs reused), else a new one.
fn alloc_host(state: &mut LabState) -> Result<u8, LabError> {
    if !state.free_hosts.is_empty() {
        return Ok(state.free_hosts.remove(0));
    }
    let h = state.next_host;
    if h > LAST_HOST {
        return Err(internal("add pod", format!("no pod address left in 10.244.{K}.0/24")));
    }
    state.next_host = h + 1;
    Ok(h)
}

/// Creates the pods of one workload at `revision` (hostNetwork: cgroups in the node
/// namespace); `host` fixes the address of a single pod (`reuseIpOf`).
fn create_pods(
    node: &mut Node,
    state: &mut LabState,
    scenario: &Scenario,
    w: &WorkloadSpec,
    revision: u32,
    host: Option<u8>,
) -> Result<Vec<LabPod>, LabError> {
    let (names, _, _) = owner_chain(w, revision, &mut Vec::new());
    let created = rfc3339(SystemTime::now());
    let mut pods = Vec::new();
    for name in names {
        // A new UID per incarnation: a pod that takes a freed IP is another pod.
        let uid = pod_uid(&format!("pod/{}/{name}/{created}/{revision}", w.namespace));
        let cgroup = node.pod_cgroup(&uid, &format!("{:064x}", hash(&uid)))?;
        let (netns, ip, ipv6) = if w.host_network {
            (node.netns.name().to_string(), node.ipv4(), state.node_ipv6)
        } else {
            let ns_name = if revision == 0 {
                format!("{}-{name}", w.namespace)
            } else {
                format!("{}-{name}-r{revision}", w.namespace)
            };
            let h = match host {
                Some(h) => h,
                None => alloc_host(state)?,
            };
            let i = node.add_pod_at(&ns_name, h)?;
            let p = &node.pods[i];
            (p.netns.name().to_string(), p.ipv4, scenario.dual_stack().then_some(p.ipv6))
        };
        pods.push(LabPod {
            name,
            namespace: w.namespace.clone(),
            workload: w.name.clone(),
            uid,
            netns,
            ip,
            ipv6,
            cgroup,
            host_network: w.host_network,
            created: created.clone(),
            revision,
            probes: w.probe_ports(),
            finished: None,
        });
    }
    Ok(pods)
}

/// Deletes a pod: its processes, its veth and namespace; its address is free again, and it
/// stays in the inventory as terminated (finished at `finished`).
fn delete_pod(state: &mut LabState, mut pod: LabPod, finished: &str) {
    netns::remove_cgroup_tree(&pod.cgroup);
    if !pod.host_network {
        let h = pod.ip.octets()[3];
        // Deleting the node's end of the veth frees the pair now; the namespace itself goes
        // once its last process has died.
        let _ = netns::ip(&["-n", &state.node_netns, "link", "del", &format!("vh{K}x{h}")]);
        let _ = netns::ip(&["netns", "del", &pod.netns]);
        state.free_hosts.push(h);
    }
    pod.finished = Some(finished.to_string());
    state.deleted.push(pod);
}

/// Neighbours still map a reused address to the old pod's MAC: forget it, as a gratuitous
/// ARP (or NA) from the new pod would make them do.
fn flush_neighbours(state: &LabState, pod: &LabPod) {
    let addrs: Vec<String> = std::iter::once(pod.ip.to_string()).chain(pod.ipv6.map(|a| a.to_string())).collect();
    for ns in state.pods.iter().filter(|p| !p.host_network).map(|p| p.netns.as_str()).chain([state.node_netns.as_str()])
    {
        for a in &addrs {
            let _ = netns::ip(&["-n", ns, "neigh", "flush", "to", a]);
        }
    }
}

/// Sleeps into the next whole second: Kubernetes stamps times to the second, so a pod that
/// takes a freed IP starts in a later second than anything its predecessor did, as in a
/// cluster (where a new pod also takes about that long to start).
fn next_second() {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(1050 - u64::from(since.subsec_millis())));
}

/// Moves the lab to `round`, one round at a time: workloads rolled out at a round get new pods
/// (new names and IPs) and their old ones are deleted; workloads of that round are created,
/// on freed IPs first (`reuseIpOf` takes its victim's); then kube-proxy rules, DNS records and
/// the inventory follow.
pub fn advance(
    scenario: &Scenario,
    state: &mut LabState,
    round: u32,
    state_dir: &Path,
    lab_bin: &Path,
) -> Result<bool, LabError> {
    if round <= state.round {
        return Ok(false);
    }
    let mut node = Node::attach(TAG, K, state.cgroup_base.clone());
    let defs = service_defs(scenario);
    for r in state.round + 1..=round {
        let mut deleted_any = false;
        // Rollouts: the new pods first (on new addresses), then the old ones go.
        for w in scenario.workloads.iter().filter(|w| w.round < r && w.rollout.is_some_and(|x| x.round == r)) {
            let revision = w.revision_at(r);
            let made = create_pods(&mut node, state, scenario, w, revision, None)?;
            for p in &made {
                start_server(state, p, w, scenario, lab_bin, state_dir)?;
            }
            let finished = rfc3339(SystemTime::now() + Duration::from_secs(1));
            let (old, keep): (Vec<LabPod>, Vec<LabPod>) =
                state.pods.drain(..).partition(|p| p.workload == w.name && p.namespace == w.namespace);
            state.pods = keep;
            for p in old {
                delete_pod(state, p, &finished);
                deleted_any = true;
            }
            state.pods.extend(made);
        }
        let new: Vec<&WorkloadSpec> = scenario.workloads.iter().filter(|w| w.round == r).collect();
        let mut hosts = Vec::new();
        for w in &new {
            let mut host = None;
            if let Some((vn, vns)) = w.reuse_ip_of.as_deref().and_then(split_ref)
                && let Some(i) = state.pods.iter().position(|p| p.workload == vn && p.namespace == vns)
            {
                let victim = state.pods.remove(i);
                let h = victim.ip.octets()[3];
                delete_pod(state, victim, &rfc3339(SystemTime::now() + Duration::from_secs(1)));
                state.free_hosts.retain(|f| *f != h);
                deleted_any = true;
                host = Some(h);
            }
            hosts.push(host);
        }
        if deleted_any && !new.is_empty() {
            next_second();
        }
        for (w, host) in new.into_iter().zip(hosts) {
            let made = create_pods(&mut node, state, scenario, w, w.revision_at(r), host)?;
            for p in &made {
                start_server(state, p, w, scenario, lab_bin, state_dir)?;
                if state.deleted.iter().any(|d| d.ip == p.ip && !d.host_network) && !p.host_network {
                    flush_neighbours(state, p);
                }
            }
            state.pods.extend(made);
        }
        state.round = r;
        sync_cluster(scenario, state, &defs, state_dir)?;
    }
    node.keep();
    Ok(true)
}

/// Reads what `up` wrote.
pub fn load_state(state_dir: &Path) -> Result<LabState, LabError> {
    let p = state_dir.join("state.json");
    let bytes = std::fs::read(&p).map_err(io_err(&p))?;
    serde_json::from_slice(&bytes).map_err(|e| internal(&format!("read {}", p.display()), e.to_string()))
}

/// Removes everything the lab made (also after a crash): processes in its cgroups (pods'
/// servers, DNS, API server, kubelet, external hosts), its namespaces (and with them its
/// ClusterIP rules), its state files.
pub fn down(state_dir: &Path) {
    if let Ok(root) = netns::cgroup2_root()
        && let Ok(entries) = std::fs::read_dir(&root)
    {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&format!("{TAG}.slice")) {
                netns::remove_cgroup_tree(&e.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{TAG}-")) {
                let _ = netns::ip(&["netns", "del", &name]);
            }
        }
    }
    for f in ["state.json", "inventory.yaml", RECORDS_FILE, kubelet::COUNTERS_FILE] {
        let _ = std::fs::remove_file(state_dir.join(f));
    }
}
