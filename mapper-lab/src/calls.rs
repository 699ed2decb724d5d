//! `mapper-lab traffic`'s calls: each call's connections spread round-robin over the client's
//! pods (or made from `fromPod`), each pod resolving the name through kube-dns first when the
//! call says so, from inside the pod (its network namespace and cgroup).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use serde::Serialize;
use serde_json::Value;

use crate::{
    dns,
    lab::{DNS_IP, LabError, LabPod, LabState, internal},
    netns::{self, Netns},
    scenario::{CallSpec, Family, Scenario, Via, split_ref},
};

/// What one pod of a call did.
#[derive(Debug, Clone, Serialize)]
pub struct PodCall {
    pub pod: String,
    pub count: u64,
    pub ok: u64,
    pub failed: u64,
    /// The address it called (after DNS, when it resolved).
    pub address: String,
    /// The names it asked kube-dns (search list first), when it resolved.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_queries: Vec<String>,
}

/// One call's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CallResult {
    pub from: String,
    pub to: String,
    /// The address the first pod called.
    pub address: String,
    pub protocol: String,
    pub family: Family,
    /// Whether the client resolved the name through kube-dns first.
    pub dns: bool,
    pub count: u64,
    pub ok: u64,
    pub failed: u64,
    pub pods: Vec<PodCall>,
}

/// The address a call goes to without DNS.
fn direct_target(scenario: &Scenario, state: &LabState, c: &CallSpec) -> Option<IpAddr> {
    let v6 = c.family == Family::IPv6;
    match c.via {
        Via::Service => {
            let (n, ns) = split_ref(&c.to)?;
            let s = state.services.iter().find(|s| s.name == n && s.namespace == ns)?;
            if v6 {
                s.cluster_ipv6.or_else(|| s.endpoints_v6.first().copied()).map(IpAddr::V6)
            } else {
                s.cluster_ip.or_else(|| s.endpoints.first().copied()).map(IpAddr::V4)
            }
        }
        Via::Pod => {
            let (n, ns) = split_ref(&c.to)?;
            let p = state.pods.iter().find(|p| p.workload == n && p.namespace == ns)?;
            if v6 { p.ipv6.map(IpAddr::V6) } else { Some(IpAddr::V4(p.ip)) }
        }
        Via::External => scenario.external.iter().find(|e| e.name == c.to).map(|e| e.ip),
        Via::Loopback => Some(if v6 { IpAddr::V6(Ipv6Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) }),
    }
}

/// Makes the calls of `round` (all rounds when `None`) from inside the calling pods: each
/// call's connections spread round-robin over the client's pods (or from `fromPod`), each pod
/// resolving the name through kube-dns first when the call says so.
pub fn traffic(
    scenario: &Scenario,
    state: &LabState,
    round: Option<u32>,
    lab_bin: &Path,
) -> Result<Vec<CallResult>, LabError> {
    let mut results = Vec::new();
    for c in scenario.calls.iter().filter(|c| round.is_none_or(|r| c.round == r)) {
        let (fname, fns) = split_ref(&c.from).unwrap_or_default();
        let clients: Vec<&LabPod> = state.pods.iter().filter(|p| p.workload == fname && p.namespace == fns).collect();
        let clients: Vec<&LabPod> = match c.from_pod {
            Some(i) => clients.get(i as usize).copied().into_iter().collect(),
            None => clients,
        };
        if clients.is_empty() {
            return Err(internal(&format!("call from {}", c.from), "no pod of that workload (yet)"));
        }
        // With DNS the pod is given the name (`ledger.team3`, `api.example.com`) as a program
        // would be; without, the address.
        let host = if c.resolves() {
            c.to.clone()
        } else {
            let ip = direct_target(scenario, state, c).ok_or_else(|| {
                internal(&format!("call to {}", c.to), "no address (headless Service without pods? no IPv6?)")
            })?;
            if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() }
        };
        let n = clients.len() as u64;
        let mut pods = Vec::new();
        for (i, pod) in clients.iter().enumerate() {
            let count = c.count / n + u64::from((i as u64) < c.count % n);
            if count == 0 {
                continue;
            }
            let mut args: Vec<String> = vec![
                "call".into(),
                "--to".into(),
                format!("{host}:{}", c.port),
                "--protocol".into(),
                c.protocol.clone(),
                "--count".into(),
                count.to_string(),
                "--timeout".into(),
                "3s".into(),
            ];
            if c.protocol == "udp" {
                args.extend(["--reply-timeout".into(), "1s".into()]);
            }
            if c.resolves() {
                args.extend(["--nameserver".into(), DNS_IP.to_string()]);
                args.extend(["--search".into(), dns::search_list(&pod.namespace).join(",")]);
                if c.family == Family::IPv6 {
                    args.push("--aaaa".into());
                }
            }
            let ns = Netns::attach(&pod.netns);
            let out = netns::run(ns.command(lab_bin, Some(&pod.cgroup))?.args(&args))?;
            let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let strings = |v: &Value| -> Vec<String> {
                v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
            };
            pods.push(PodCall {
                pod: pod.name.clone(),
                count,
                ok: summary["ok"].as_u64().unwrap_or(0),
                failed: summary["failed"].as_u64().unwrap_or(count),
                address: summary["address"].as_str().unwrap_or_default().to_string(),
                dns_queries: strings(&summary["dns_queries"]),
            });
        }
        results.push(CallResult {
            from: c.from.clone(),
            to: c.to.clone(),
            address: pods.first().map(|p| p.address.clone()).unwrap_or_default(),
            protocol: c.protocol.clone(),
            family: c.family,
            dns: c.resolves(),
            count: c.count,
            ok: pods.iter().map(|p| p.ok).sum(),
            failed: pods.iter().map(|p| p.failed).sum(),
            pods,
        });
    }
    Ok(results)
}
