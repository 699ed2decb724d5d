//! A node as Kubernetes builds one, in network namespaces: a node namespace
//! with a bridge (the CNI's), one namespace per pod with a veth into the
//! bridge, Service ClusterIPs as DNAT rules in the node namespace as kube-proxy
//! writes them, and a cgroup per pod container as kubelet makes them.
//!
//! Nothing has a route out: the node namespace has no link but the bridge, so
//! a misaddressed packet has nowhere to go.

use std::{
    hash::Hasher,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::netns::{CgroupTree, LabError, Netns, ip};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique small number per node in this process (and, with the pid, across
/// processes running at once), used in names and address plans.
fn next_index() -> (u32, u8) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    (n, ((pid.wrapping_mul(7).wrapping_add(n)) % 100 + 120) as u8)
}

/// A pod: its namespace, addresses, and the cgroup of its (one) container.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub netns: Netns,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub uid: String,
    /// `<cgroup2>/<tree>/kubepods/besteffort/pod<uid>/<container id>`.
    pub cgroup: PathBuf,
}

/// The node namespace, its bridge and its pods. Drop removes everything.
#[derive(Debug)]
pub struct Node {
    /// Prefix of every name this node made.
    pub tag: String,
    /// Third octet of the pod CIDR 10.244.<k>.0/24 (and fd00:244:<k>::/64).
    pub k: u8,
    pub netns: Netns,
    pub pods: Vec<Pod>,
    // Dropped last: pods' namespaces and processes go before their cgroups.
    pub cgroups: CgroupTree,
    next_host: u8,
}

/// FNV-1a of a string: the lab's stable source of names, UIDs and suffixes.
pub fn hash(seed: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(seed.as_bytes());
    h.finish()
}

/// A deterministic pod UID from a name (UUID-shaped, as kubelet's are).
pub fn pod_uid(seed: &str) -> String {
    let h = hash(seed);
    let h2 = h.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let hex = format!("{h:016x}{h2:016x}");
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

impl Node {
    /// Creates the node namespace with its bridge (`10.244.<k>.1/24`,
    /// `fd00:244:<k>::1/64`) and forwarding on.
    pub fn new(prefix: &str) -> Result<Self, LabError> {
        let (n, k) = next_index();
        Self::named(&format!("{prefix}{}-{n}", std::process::id()), k)
    }

    /// A node with a fixed name prefix and pod CIDR index (the lab's own).
    pub fn named(tag: &str, k: u8) -> Result<Self, LabError> {
        let tag = tag.to_string();
        let netns = Netns::create(&format!("{tag}-node"))?;
        let cgroups = CgroupTree::create(&format!("{tag}.slice"))?;
        let ns = netns.name().to_string();
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &ns, "addr", "add", &format!("10.244.{k}.1/24"), "dev", "br0"])?;
        ip(&["-n", &ns, "-6", "addr", "add", &format!("fd00:244:{k}::1/64"), "dev", "br0", "nodad"])?;
        ip(&["-n", &ns, "link", "set", "br0", "up"])?;
        // The Service range, on the bridge: host processes (hostNetwork pods)
        // reach ClusterIPs through the OUTPUT DNAT rules. Nothing leads out.
        ip(&["-n", &ns, "route", "add", &format!("10.96.{k}.0/24"), "dev", "br0"])?;
        ip(&["-n", &ns, "-6", "route", "add", &format!("fd00:96:{k}::/64"), "dev", "br0"])?;
        for s in [
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.bridge.bridge-nf-call-iptables=1",
            "net.bridge.bridge-nf-call-ip6tables=1",
        ] {
            netns.exec(&["sysctl", "-qw", s])?;
        }
        Ok(Self { tag, k, netns, pods: Vec::new(), cgroups, next_host: 2 })
    }

    /// The node's own address on the pod network (what hostNetwork pods use).
    pub fn ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.k, 1)
    }

    /// The node's IPv6 address on the pod network.
    pub fn ipv6(&self) -> Ipv6Addr {
        format!("fd00:244:{}::1", self.k).parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
    }

    /// A ClusterIP in this node's service range (`10.96.<k>.<n>`, `fd00:96:<k>::<n>`).
    pub fn cluster_ip(&self, n: u8, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(format!("fd00:96:{}::{n}", self.k).parse().unwrap_or(Ipv6Addr::UNSPECIFIED))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 96, self.k, n))
        }
    }

    /// A cgroup for a process of a pod (kubelet's cgroupfs layout).
    pub fn pod_cgroup(&self, uid: &str, container: &str) -> Result<PathBuf, LabError> {
        self.cgroups.dir(&format!("kubepods/besteffort/pod{uid}/{container}"))
    }

    /// Adds a pod namespace wired into the bridge; returns its index in `pods`.
    pub fn add_pod(&mut self, name: &str) -> Result<usize, LabError> {
        let host = self.next_host;
        self.next_host = self.next_host.checked_add(1).ok_or_else(|| LabError::Command {
            command: "add_pod".into(),
            stderr: "more than 250 pods on one lab node".into(),
        })?;
        self.add_pod_at(name, host)
    }

    /// The lab node `up` left in place, to change it (its namespaces are kept on drop).
    pub fn attach(tag: &str, k: u8, cgroup_base: PathBuf) -> Self {
        Self {
            tag: tag.to_string(),
            k,
            netns: Netns::attach(&format!("{tag}-node")),
            pods: Vec::new(),
            cgroups: CgroupTree::attach(cgroup_base),
            next_host: 250,
        }
    }

    /// Adds a pod with the address 10.244.<k>.<host> (reusing the address of a
    /// pod that is gone, as a CNI does).
    pub fn add_pod_at(&mut self, name: &str, host: u8) -> Result<usize, LabError> {
        let netns = Netns::create(&format!("{}-{name}", self.tag))?;
        let (k, node) = (self.k, self.netns.name().to_string());
        let host_if = format!("vh{k}x{host}");
        let pod_if = format!("vp{k}x{host}");
        ip(&["-n", &node, "link", "add", &host_if, "type", "veth", "peer", "name", &pod_if, "netns", netns.name()])?;
        ip(&["-n", &node, "link", "set", &host_if, "master", "br0", "up"])?;
        let ns = netns.name().to_string();
        ip(&["-n", &ns, "link", "set", &pod_if, "name", "eth0"])?;
        ip(&["-n", &ns, "addr", "add", &format!("10.244.{k}.{host}/24"), "dev", "eth0"])?;
        ip(&["-n", &ns, "-6", "addr", "add", &format!("fd00:244:{k}::{host}/64"), "dev", "eth0", "nodad"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", &format!("10.244.{k}.1")])?;
        ip(&["-n", &ns, "-6", "route", "add", "default", "via", &format!("fd00:244:{k}::1")])?;
        let uid = pod_uid(&format!("{}/{name}", self.tag));
        let cgroup = self.pod_cgroup(&uid, &format!("{:064x}", u128::from(host) << 64 | u128::from(k)))?;
        self.pods.push(Pod {
            name: name.to_string(),
            netns,
            ipv4: Ipv4Addr::new(10, 244, k, host),
            ipv6: format!("fd00:244:{k}::{host}").parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
            uid,
            cgroup,
        });
        Ok(self.pods.len() - 1)
    }

    /// Leaves everything in place when dropped (the lab's `up`; `down` removes it).
    pub fn keep(&mut self) {
        self.netns.keep();
        self.cgroups.keep();
        for p in &mut self.pods {
            p.netns.keep();
        }
    }

    /// A ClusterIP Service as kube-proxy's iptables mode writes it: DNAT in the
    /// node's PREROUTING (pods) and OUTPUT (host processes) chains. With several
    /// backends, connections are spread over them (statistic mode random).
    pub fn add_cluster_ip(
        &self,
        vip: IpAddr,
        port: u16,
        proto: &str,
        backends: &[(IpAddr, u16)],
    ) -> Result<(), LabError> {
        let tool = if vip.is_ipv6() { "ip6tables" } else { "iptables" };
        let n = backends.len();
        for chain in ["PREROUTING", "OUTPUT"] {
            for (i, (ip, bport)) in backends.iter().enumerate() {
                let to = if ip.is_ipv6() { format!("[{ip}]:{bport}") } else { format!("{ip}:{bport}") };
                let mut args: Vec<String> =
                    vec![tool.into(), "-w".into(), "-t".into(), "nat".into(), "-A".into(), chain.into()];
                args.extend([
                    "-d".into(),
                    vip.to_string(),
                    "-p".into(),
                    proto.into(),
                    "--dport".into(),
                    port.to_string(),
                ]);
                let remaining = n - i;
                if remaining > 1 {
                    let p = 1.0 / remaining as f64;
                    args.extend([
                        "-m".into(),
                        "statistic".into(),
                        "--mode".into(),
                        "random".into(),
                        "--probability".into(),
                        format!("{p:.5}"),
                    ]);
                }
                args.extend(["-j".into(), "DNAT".into(), "--to-destination".into(), to]);
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                self.netns.exec(&refs)?;
            }
        }
        Ok(())
    }
}
