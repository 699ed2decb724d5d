//! The lab's Services and what follows their endpoints: kube-dns and kubernetes beside the
//! scenario's, and, every time the pods change, kube-proxy's rules, kube-dns's records, the
//! lab's state and the inventory rewritten from the current endpoints.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use crate::{
    dns::{self, Addresses, Records},
    inventory::{self, labels_of},
    lab::{API_IP, API_SERVER_PORT, DNS_IP, K, LabError, LabPod, LabService, LabState, RECORDS_FILE, internal, io_err},
    proxy::{self, Rule},
    scenario::{API_PORT, API_SERVICE, DNS_SERVICE, Scenario, ServicePort},
};

/// A Service as the lab builds it: the scenario's, or kube-dns and kubernetes.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// The API server's Service: its endpoint is the node, not a pod.
    pub api: bool,
}

impl ServiceDef {
    /// The alive pods it selects.
    pub fn endpoints<'a>(&self, scenario: &Scenario, state: &'a LabState) -> Vec<&'a LabPod> {
        if self.selector.is_empty() {
            return Vec::new();
        }
        state
            .pods
            .iter()
            .filter(|p| p.namespace == self.namespace)
            .filter(|p| {
                let labels = labels_of(scenario, p);
                self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect()
    }

    fn endpoint_ips(&self, scenario: &Scenario, state: &LabState) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
        if self.api {
            return (vec![state.node_ip], Vec::new());
        }
        let pods = self.endpoints(scenario, state);
        (pods.iter().map(|p| p.ip).collect(), pods.iter().filter_map(|p| p.ipv6).collect())
    }
}

fn v6_cluster_ip(n: u16) -> Option<Ipv6Addr> {
    format!("fd00:96:{K}::{n:x}").parse().ok()
}

/// Every Service of the lab: kube-dns, kubernetes, then the scenario's
/// (ClusterIPs 10.96.<K>.10 and up, fd00:96:<K>::10 and up when dual-stack).
pub fn service_defs(scenario: &Scenario) -> Vec<ServiceDef> {
    let dual = scenario.dual_stack();
    let port = |port: u16, target: u16, udp: bool, name: &str| ServicePort {
        port,
        target_port: Some(target),
        protocol: Some(if udp { "UDP" } else { "TCP" }.into()),
        name: Some(name.into()),
    };
    let mut defs = vec![
        ServiceDef {
            name: DNS_SERVICE.0.into(),
            namespace: DNS_SERVICE.1.into(),
            selector: BTreeMap::from([("k8s-app".to_string(), "kube-dns".to_string())]),
            ports: vec![port(53, 53, true, "dns"), port(53, 53, false, "dns-tcp")],
            v4: Some(DNS_IP),
            v6: if dual { v6_cluster_ip(0xa) } else { None },
            api: false,
        },
        ServiceDef {
            name: API_SERVICE.0.into(),
            namespace: API_SERVICE.1.into(),
            selector: BTreeMap::new(),
            ports: vec![port(API_PORT, API_SERVER_PORT, false, "https")],
            v4: Some(API_IP),
            v6: None,
            api: true,
        },
    ];
    for (i, s) in scenario.services.iter().enumerate() {
        let n = 10 + i as u16;
        defs.push(ServiceDef {
            name: s.name.clone(),
            namespace: s.namespace.clone(),
            selector: s.selector.clone(),
            ports: s.ports.clone(),
            v4: (!s.headless).then(|| Ipv4Addr::new(10, 96, K, n as u8)),
            // fd00:96:<K>::<n> with n's decimal digits, as topo's cluster_ip writes it.
            v6: if dual && !s.headless { format!("fd00:96:{K}::{n}").parse().ok() } else { None },
            api: false,
        });
    }
    defs
}

/// kube-proxy, kube-dns and the API objects follow the pods: rules, records, state and
/// inventory rewritten from the current endpoints.
pub(crate) fn sync_cluster(
    scenario: &Scenario,
    state: &mut LabState,
    defs: &[ServiceDef],
    state_dir: &Path,
) -> Result<(), LabError> {
    let mut rules = Vec::new();
    let mut records = Records::new();
    state.services.clear();
    for d in defs {
        let (e4, e6) = d.endpoint_ips(scenario, state);
        for p in &d.ports {
            if let Some(vip) = d.v4 {
                let backends = e4.iter().map(|ip| (IpAddr::V4(*ip), p.target())).collect();
                rules.push(Rule { vip: IpAddr::V4(vip), port: p.port, udp: p.udp(), backends });
            }
            if let Some(vip) = d.v6 {
                let backends = e6.iter().map(|ip| (IpAddr::V6(*ip), p.target())).collect();
                rules.push(Rule { vip: IpAddr::V6(vip), port: p.port, udp: p.udp(), backends });
            }
        }
        let name = format!("{}.{}.svc.{}", d.name, d.namespace, dns::CLUSTER_DOMAIN);
        let addrs = match d.v4 {
            Some(v4) => Addresses { a: vec![IpAddr::V4(v4)], aaaa: d.v6.map(IpAddr::V6).into_iter().collect() },
            None => Addresses {
                a: e4.iter().copied().map(IpAddr::V4).collect(),
                aaaa: e6.iter().copied().map(IpAddr::V6).collect(),
            },
        };
        records.insert(name, addrs);
        state.services.push(LabService {
            name: d.name.clone(),
            namespace: d.namespace.clone(),
            cluster_ip: d.v4,
            cluster_ipv6: d.v6,
            endpoints: e4,
            endpoints_v6: e6,
        });
    }
    for x in &scenario.external {
        let entry = records.entry(x.name.to_ascii_lowercase()).or_default();
        if x.ip.is_ipv6() { entry.aaaa.push(x.ip) } else { entry.a.push(x.ip) }
    }
    proxy::sync(&state.node_netns, &rules)?;
    let rec = state_dir.join(RECORDS_FILE);
    dns::write_records(&rec, &records).map_err(io_err(&rec))?;
    inventory::write(scenario, state, defs, state_dir)?;
    save_state(state, state_dir)
}

fn save_state(state: &LabState, state_dir: &Path) -> Result<(), LabError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| internal("write state.json", e.to_string()))?;
    let path = state_dir.join("state.json");
    crate::netns::write_whole(&path, &bytes).map_err(io_err(&path))
}
