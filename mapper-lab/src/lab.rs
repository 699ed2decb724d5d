//! `mapper-lab up | traffic | down`: a scenario made real on one machine.
//!
//! `up` builds the node namespace, a namespace (or, for hostNetwork, a cgroup
//! in the node namespace) per pod, the Services' ClusterIPs as kube-proxy
//! rules, starts a server in every pod on its ports, and writes the inventory
//! a cluster would have (`<state>/inventory.yaml`). `traffic` makes the
//! scenario's calls from inside the calling pods. `down` removes all of it,
//! also after a crash: everything the lab makes is named `mlab-…`.

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::Stdio,
};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    netns::{self, LabError},
    scenario::{Kind, Scenario, ServiceSpec, Via, WorkloadSpec, split_ref},
    topo::{Node, hash, pod_uid},
};

/// Prefix of every namespace and cgroup the lab makes.
pub const TAG: &str = "mlab";
/// Pod CIDR 10.244.<K>.0/24, ClusterIPs 10.96.<K>.0/24.
pub const K: u8 = 100;
/// The node's name in the inventory.
pub const NODE_NAME: &str = "lab-node";

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
    pub cgroup: PathBuf,
    pub host_network: bool,
    /// Its creationTimestamp and startTime (RFC 3339).
    pub created: String,
}

/// A Service the lab made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabService {
    pub name: String,
    pub namespace: String,
    pub cluster_ip: Option<Ipv4Addr>,
    /// Pod IPs behind it.
    pub endpoints: Vec<Ipv4Addr>,
}

/// What `up` made, for `traffic` and `down`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub node_netns: String,
    pub node_ip: Ipv4Addr,
    pub cgroup_base: PathBuf,
    pub pods: Vec<LabPod>,
    pub services: Vec<LabService>,
    /// The traffic round the lab is at (workloads of later rounds do not exist yet).
    pub round: u32,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io { path: path.to_path_buf(), source }
}

/// Characters Kubernetes uses in generated name suffixes.
fn suffix(seed: &str, len: usize) -> String {
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

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!([{ "apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true }])
}

/// The pods of a workload (names, owner chain objects) as the controllers would make them.
fn owner_chain(w: &WorkloadSpec, objects: &mut Vec<Value>) -> (Vec<String>, Option<Value>, BTreeLabels) {
    let ns = &w.namespace;
    let uid = |what: &str| pod_uid(&format!("{what}/{ns}/{}", w.name));
    let template = json!({ "metadata": { "labels": w.pod_labels() }, "spec": { "containers": [{ "name": "app", "image": "mapper-lab" }] } });
    let selector = json!({ "matchLabels": w.pod_labels() });
    let mut extra_labels = BTreeLabels::new();
    let (names, owner) = match w.kind {
        Kind::Deployment => {
            let hash = suffix(&format!("{ns}/{}/rs", w.name), 10);
            let rs = format!("{}-{hash}", w.name);
            objects.push(json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("deploy") },
                "spec": { "replicas": w.replicas, "selector": selector, "template": template } }));
            objects.push(json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": { "name": rs, "namespace": ns, "uid": uid("rs"), "labels": { "pod-template-hash": hash },
                    "ownerReferences": owner_ref("apps/v1", "Deployment", &w.name, &uid("deploy")) },
                "spec": { "replicas": w.replicas, "selector": selector, "template": template } }));
            extra_labels.insert("pod-template-hash".into(), hash);
            let names = (0..w.replicas).map(|i| format!("{rs}-{}", suffix(&format!("{rs}/{i}"), 5))).collect();
            (names, Some(owner_ref("apps/v1", "ReplicaSet", &rs, &uid("rs"))))
        }
        Kind::StatefulSet => {
            objects.push(json!({ "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("sts") },
                "spec": { "replicas": w.replicas, "selector": selector, "serviceName": w.name, "template": template } }));
            let names = (0..w.replicas).map(|i| format!("{}-{i}", w.name)).collect();
            (names, Some(owner_ref("apps/v1", "StatefulSet", &w.name, &uid("sts"))))
        }
        Kind::DaemonSet => {
            objects.push(json!({ "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("ds") },
                "spec": { "selector": selector, "template": template } }));
            let names =
                (0..w.replicas).map(|i| format!("{}-{}", w.name, suffix(&format!("{ns}/{}/{i}", w.name), 5))).collect();
            (names, Some(owner_ref("apps/v1", "DaemonSet", &w.name, &uid("ds"))))
        }
        Kind::Job => {
            objects.push(json!({ "apiVersion": "batch/v1", "kind": "Job",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("job") },
                "spec": { "template": template } }));
            let names =
                (0..w.replicas).map(|i| format!("{}-{}", w.name, suffix(&format!("{ns}/{}/{i}", w.name), 5))).collect();
            (names, Some(owner_ref("batch/v1", "Job", &w.name, &uid("job"))))
        }
        Kind::CronJob => {
            let job = format!("{}-{}", w.name, 29_000_000 + hash(&w.name) % 1_000_000);
            objects.push(json!({ "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("cronjob") },
                "spec": { "schedule": "*/5 * * * *", "jobTemplate": { "spec": { "template": template } } } }));
            objects.push(json!({ "apiVersion": "batch/v1", "kind": "Job",
                "metadata": { "name": job, "namespace": ns, "uid": uid("cronjob-job"),
                    "ownerReferences": owner_ref("batch/v1", "CronJob", &w.name, &uid("cronjob")) },
                "spec": { "template": template } }));
            let names = (0..w.replicas).map(|i| format!("{job}-{}", suffix(&format!("{job}/{i}"), 5))).collect();
            (names, Some(owner_ref("batch/v1", "Job", &job, &uid("cronjob-job"))))
        }
        Kind::Pod => {
            let names = if w.replicas == 1 {
                vec![w.name.clone()]
            } else {
                (0..w.replicas).map(|i| format!("{}-{i}", w.name)).collect()
            };
            (names, None)
        }
    };
    (names, owner, extra_labels)
}

type BTreeLabels = std::collections::BTreeMap<String, String>;

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn selects(svc: &ServiceSpec, labels: &BTreeLabels) -> bool {
    !svc.selector.is_empty() && svc.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Starts a pod's server and waits until it listens.
fn start_server(node: &Node, pod: &LabPod, w: &WorkloadSpec, lab_bin: &Path) -> Result<(), LabError> {
    if w.ports.is_empty() {
        return Ok(());
    }
    let ns = crate::netns::Netns::attach(&pod.netns);
    let mut cmd = ns.command(lab_bin, Some(&pod.cgroup))?;
    cmd.arg("serve");
    let bind = if pod.host_network { IpAddr::V4(node.ipv4()) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    for p in &w.ports {
        cmd.arg(if p.udp { "--udp" } else { "--tcp" }).arg(format!("{bind}:{}", p.port));
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| LabError::Spawn { command: format!("mapper-lab serve in {}", pod.name), source })?;
    let mut line = String::new();
    let _ = BufReader::new(
        child.stdout.take().ok_or_else(|| LabError::Command { command: "serve".into(), stderr: "no stdout".into() })?,
    )
    .read_line(&mut line);
    if line.trim() != "ready" {
        return Err(LabError::Command {
            command: format!("mapper-lab serve in pod {}", pod.name),
            stderr: "did not start".into(),
        });
    }
    Ok(())
}

/// Creates the pods of one workload (hostNetwork: cgroups in the node namespace);
/// `host` fixes the address of a single pod (IP reuse).
fn create_pods(node: &mut Node, w: &WorkloadSpec, host: Option<u8>) -> Result<Vec<LabPod>, LabError> {
    let (names, _, _) = owner_chain(w, &mut Vec::new());
    let created = now_rfc3339();
    let mut pods = Vec::new();
    for name in names {
        // A new UID per incarnation: a pod that takes a freed IP is another pod.
        let uid = pod_uid(&format!("pod/{}/{name}/{created}", w.namespace));
        let cgroup = node.pod_cgroup(&uid, &format!("{:064x}", hash(&uid)))?;
        let (netns, ip) = if w.host_network {
            (node.netns.name().to_string(), node.ipv4())
        } else {
            let ns_name = format!("{}-{name}", w.namespace);
            let i = match host {
                Some(h) => node.add_pod_at(&ns_name, h)?,
                None => node.add_pod(&ns_name)?,
            };
            (node.pods[i].netns.name().to_string(), node.pods[i].ipv4)
        };
        pods.push(LabPod {
            name,
            namespace: w.namespace.clone(),
            workload: w.name.clone(),
            uid,
            netns,
            ip,
            cgroup,
            host_network: w.host_network,
            created: created.clone(),
        });
    }
    Ok(pods)
}

fn labels_of(scenario: &Scenario, pod: &LabPod) -> BTreeLabels {
    let Some(w) = scenario.workload(&pod.workload, &pod.namespace) else { return BTreeLabels::new() };
    let (_, _, extra) = owner_chain(w, &mut Vec::new());
    let mut labels = w.pod_labels();
    labels.extend(extra);
    labels
}

/// The inventory a cluster would show now: owner objects of the workloads that
/// exist at this round, the pods that are alive, Services and their endpoints.
fn write_inventory(scenario: &Scenario, state: &LabState, state_dir: &Path) -> Result<(), LabError> {
    let mut objects: Vec<Value> = scenario
        .namespaces()
        .iter()
        .map(|n| json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": n, "labels": { "kubernetes.io/metadata.name": n } } }))
        .collect();
    objects.push(json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": NODE_NAME },
        "status": { "addresses": [{ "type": "InternalIP", "address": state.node_ip.to_string() }] } }));
    for w in scenario.workloads.iter().filter(|w| w.round <= state.round) {
        let (_, owner, _) = owner_chain(w, &mut objects);
        for pod in state.pods.iter().filter(|p| p.workload == w.name && p.namespace == w.namespace) {
            let mut meta = json!({ "name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
                "labels": labels_of(scenario, pod), "creationTimestamp": pod.created });
            if !w.annotations.is_empty() {
                meta["annotations"] = json!(w.annotations);
            }
            if let Some(o) = &owner {
                meta["ownerReferences"] = o.clone();
            }
            let ports: Vec<Value> = w
                .ports
                .iter()
                .map(|p| json!({ "containerPort": p.port, "protocol": if p.udp { "UDP" } else { "TCP" } }))
                .collect();
            let ip = pod.ip.to_string();
            objects.push(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "spec": { "nodeName": NODE_NAME, "hostNetwork": w.host_network, "containers": [{ "name": "app", "image": "mapper-lab", "ports": ports }] },
                "status": { "phase": "Running", "podIP": ip, "podIPs": [{ "ip": ip }], "hostIP": state.node_ip.to_string(), "startTime": pod.created } }));
        }
    }
    objects.push(json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "kubernetes", "namespace": "default", "uid": pod_uid("svc/default/kubernetes") },
        "spec": { "clusterIP": format!("10.96.{K}.1"), "clusterIPs": [format!("10.96.{K}.1")], "ports": [{ "name": "https", "port": 443, "targetPort": 6443, "protocol": "TCP" }] } }));
    for (s, ls) in scenario.services.iter().zip(&state.services) {
        let ip_str = ls.cluster_ip.map_or("None".to_string(), |ip| ip.to_string());
        let ports: Vec<Value> = s.ports.iter().map(|p| json!({ "port": p.port, "targetPort": p.target(), "protocol": if p.udp() { "UDP" } else { "TCP" } })).collect();
        let mut spec = json!({ "clusterIP": ip_str, "ports": ports, "selector": s.selector, "type": "ClusterIP" });
        if ls.cluster_ip.is_some() {
            spec["clusterIPs"] = json!([ip_str]);
        }
        objects.push(json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": s.name, "namespace": s.namespace, "uid": pod_uid(&format!("svc/{}/{}", s.namespace, s.name)) }, "spec": spec }));
        let endpoints: Vec<Value> = state
            .pods
            .iter()
            .filter(|p| p.namespace == s.namespace && selects(s, &labels_of(scenario, p)))
            .map(|p| json!({ "addresses": [p.ip.to_string()], "conditions": { "ready": true },
                "nodeName": NODE_NAME, "targetRef": { "kind": "Pod", "name": p.name, "namespace": p.namespace, "uid": p.uid } }))
            .collect();
        let eports: Vec<Value> = s
            .ports
            .iter()
            .map(|p| json!({ "port": p.target(), "protocol": if p.udp() { "UDP" } else { "TCP" } }))
            .collect();
        objects.push(json!({ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": format!("{}-{}", s.name, suffix(&s.name, 5)), "namespace": s.namespace, "labels": { "kubernetes.io/service-name": s.name } },
            "addressType": "IPv4", "endpoints": endpoints, "ports": eports }));
    }
    let inventory = serde_yaml::to_string(&json!({ "apiVersion": "v1", "kind": "List", "items": objects }))
        .map_err(|e| LabError::Command { command: "write inventory".into(), stderr: e.to_string() })?;
    // Written whole then renamed: a server polling it never reads half a file.
    let tmp = state_dir.join(".inventory.yaml.tmp");
    std::fs::write(&tmp, inventory).map_err(io(&tmp))?;
    let inv = state_dir.join("inventory.yaml");
    std::fs::rename(&tmp, &inv).map_err(io(&inv))?;
    let state_path = state_dir.join("state.json");
    std::fs::write(&state_path, serde_json::to_vec_pretty(state).unwrap_or_default()).map_err(io(&state_path))
}

/// Brings the scenario up; writes `<state>/state.json` and `<state>/inventory.yaml`.
pub fn up(scenario: &Scenario, state_dir: &Path, lab_bin: &Path) -> Result<LabState, LabError> {
    down(state_dir);
    std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
    let mut node = Node::named(TAG, K)?;
    let mut pods = Vec::new();
    for w in scenario.workloads.iter().filter(|w| w.round <= 1) {
        let made = create_pods(&mut node, w, None)?;
        for p in &made {
            start_server(&node, p, w, lab_bin)?;
        }
        pods.extend(made);
    }
    let mut state = LabState {
        node_netns: node.netns.name().to_string(),
        node_ip: node.ipv4(),
        cgroup_base: node.cgroups.base().to_path_buf(),
        pods,
        services: Vec::new(),
        round: 1,
    };
    for (i, s) in scenario.services.iter().enumerate() {
        let backends: Vec<&LabPod> =
            state.pods.iter().filter(|p| p.namespace == s.namespace && selects(s, &labels_of(scenario, p))).collect();
        let cluster_ip = (!s.headless).then(|| Ipv4Addr::new(10, 96, K, 10 + i as u8));
        if let Some(vip) = cluster_ip {
            for p in &s.ports {
                let proto = if p.udp() { "udp" } else { "tcp" };
                if backends.is_empty() {
                    node.reject_cluster_ip(IpAddr::V4(vip), p.port, proto)?;
                } else {
                    let b: Vec<(IpAddr, u16)> = backends.iter().map(|pod| (IpAddr::V4(pod.ip), p.target())).collect();
                    node.add_cluster_ip(IpAddr::V4(vip), p.port, proto, &b)?;
                }
            }
        }
        let endpoints = backends.iter().map(|p| p.ip).collect();
        state.services.push(LabService { name: s.name.clone(), namespace: s.namespace.clone(), cluster_ip, endpoints });
    }
    write_inventory(scenario, &state, state_dir)?;
    node.keep();
    Ok(state)
}

/// Moves the lab to `round`: workloads of the rounds in between are created,
/// each taking over the IP of the pod it replaces (`reuseIpOf`), which is
/// deleted first; the inventory is rewritten as the cluster would now show it.
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
    for w in scenario.workloads.iter().filter(|w| w.round > state.round && w.round <= round) {
        let mut host = None;
        if let Some((vn, vns)) = w.reuse_ip_of.as_deref().and_then(split_ref)
            && let Some(i) = state.pods.iter().position(|p| p.workload == vn && p.namespace == vns)
        {
            let victim = state.pods.remove(i);
            netns::remove_cgroup_tree(&victim.cgroup);
            let h = victim.ip.octets()[3];
            // Deleting the node's end of the veth frees the pair now; the
            // namespace itself goes once its last process has died.
            let _ = netns::ip(&["-n", &state.node_netns, "link", "del", &format!("vh{K}x{h}")]);
            let _ = netns::ip(&["netns", "del", &victim.netns]);
            host = Some(h);
            // Kubernetes stamps startTime to the second: the new pod must start in a
            // later second than anything its predecessor did, as it would in a cluster.
            let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            std::thread::sleep(std::time::Duration::from_millis(1050 - u64::from(since_epoch.subsec_millis())));
        }
        let made = create_pods(&mut node, w, host)?;
        for p in &made {
            start_server(&node, p, w, lab_bin)?;
        }
        if let Some(h) = host {
            // Neighbours still map the address to the old pod's MAC: forget it,
            // as a gratuitous ARP from the new pod would make them do.
            let addr = format!("10.244.{K}.{h}");
            for ns in state
                .pods
                .iter()
                .filter(|p| !p.host_network)
                .map(|p| p.netns.as_str())
                .chain([state.node_netns.as_str()])
            {
                let _ = netns::ip(&["-n", ns, "neigh", "flush", "to", &addr]);
            }
        }
        state.pods.extend(made);
    }
    node.keep();
    state.round = round;
    write_inventory(scenario, state, state_dir)?;
    Ok(true)
}

/// Reads what `up` wrote.
pub fn load_state(state_dir: &Path) -> Result<LabState, LabError> {
    let p = state_dir.join("state.json");
    let bytes = std::fs::read(&p).map_err(io(&p))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| LabError::Command { command: format!("read {}", p.display()), stderr: e.to_string() })
}

/// One call's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CallResult {
    pub from: String,
    pub to: String,
    pub address: String,
    pub protocol: String,
    pub count: u64,
    pub ok: u64,
    pub failed: u64,
}

/// Makes the calls of `round` (all rounds when `None`) from inside the calling pods.
pub fn traffic(
    scenario: &Scenario,
    state: &LabState,
    round: Option<u32>,
    lab_bin: &Path,
) -> Result<Vec<CallResult>, LabError> {
    let mut results = Vec::new();
    for c in scenario.calls.iter().filter(|c| round.is_none_or(|r| c.round == r)) {
        let (fname, fns) = split_ref(&c.from).unwrap_or_default();
        let caller = state.pods.iter().find(|p| p.workload == fname && p.namespace == fns).ok_or_else(|| {
            LabError::Command { command: format!("call from {}", c.from), stderr: "no pod of that workload".into() }
        })?;
        let (tname, tns) = split_ref(&c.to).unwrap_or_default();
        let target_ip = match c.via {
            Via::Service => state
                .services
                .iter()
                .find(|s| s.name == tname && s.namespace == tns)
                .and_then(|s| s.cluster_ip.or_else(|| s.endpoints.first().copied())),
            Via::Pod => state.pods.iter().find(|p| p.workload == tname && p.namespace == tns).map(|p| p.ip),
        }
        .ok_or_else(|| LabError::Command {
            command: format!("call to {}", c.to),
            stderr: "no address (headless Service without pods?)".into(),
        })?;
        let address = format!("{target_ip}:{}", c.port);
        let ns = crate::netns::Netns::attach(&caller.netns);
        let out = netns::run(ns.command(lab_bin, Some(&caller.cgroup))?.args([
            "call",
            "--to",
            &address,
            "--protocol",
            &c.protocol,
            "--count",
            &c.count.to_string(),
            "--timeout",
            "3s",
        ]))?;
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        results.push(CallResult {
            from: c.from.clone(),
            to: c.to.clone(),
            address,
            protocol: c.protocol.clone(),
            count: c.count,
            ok: summary["ok"].as_u64().unwrap_or(0),
            failed: summary["failed"].as_u64().unwrap_or(0),
        });
    }
    Ok(results)
}

/// Removes everything the lab made (also after a crash): processes in its
/// cgroups, its namespaces (and with them its ClusterIP rules), its state files.
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
    for f in ["state.json", "inventory.yaml"] {
        let _ = std::fs::remove_file(state_dir.join(f));
    }
}
