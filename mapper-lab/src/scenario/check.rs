//! What a scenario must satisfy beyond its shape; each problem names the field.

use std::{collections::BTreeSet, net::IpAddr};

use super::{
    API_SERVICE, CallSpec, DNS_SERVICE, DNS_WORKLOAD, Family, Kind, MAX_SERVICES, Probes, Scenario, Via, split_ref,
};

/// A name Helm takes for a release (and Kubernetes for a namespace, without the dots): lowercase
/// letters, digits, '-' and '.', at most 53, starting and ending with a letter or digit.
fn helm_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    name.len() <= 53
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

impl Scenario {
    pub(super) fn check(&self) -> Result<(), String> {
        match self.ip_families.as_slice() {
            [Family::IPv4] | [Family::IPv4, Family::IPv6] => {}
            other => return Err(format!("ipFamilies {other:?}: expected [IPv4] or [IPv4, IPv6]")),
        }
        if self.services.len() > MAX_SERVICES {
            return Err(format!("services: at most {MAX_SERVICES}, not {}", self.services.len()));
        }
        let mut seen = BTreeSet::new();
        for w in &self.workloads {
            let id = w.id();
            if (w.name.as_str(), w.namespace.as_str()) == DNS_WORKLOAD {
                return Err(format!("workload {id}: the lab's cluster DNS has that name; use another"));
            }
            if !seen.insert((w.name.as_str(), w.namespace.as_str())) {
                return Err(format!("workload {id} defined twice"));
            }
            if w.replicas == 0 {
                return Err(format!("workload {id}: replicas must be at least 1"));
            }
            if w.round == 0 {
                return Err(format!("workload {id}: round must be at least 1"));
            }
            if let Some(r) = &w.reuse_ip_of {
                let (n, ns) =
                    split_ref(r).ok_or(format!("workload {id}: reuseIpOf {r:?}: expected <workload>.<namespace>"))?;
                if self.workload(n, ns).is_none_or(|v| v.round >= w.round) {
                    return Err(format!("workload {id}: reuseIpOf {r:?} must name a workload of an earlier round"));
                }
                if w.replicas != 1 || w.host_network {
                    return Err(format!("workload {id}: reuseIpOf needs one replica, not hostNetwork"));
                }
            }
            let tcp: BTreeSet<u16> = w.ports.iter().filter(|p| !p.udp).map(|p| p.port).collect();
            if let Probes::Ports(ports) = &w.probes
                && let Some(p) = ports.iter().find(|p| !tcp.contains(p))
            {
                return Err(format!("workload {id}: probes: port {p} is not one of its TCP ports {tcp:?}"));
            }
            if let Some(r) = w.rollout {
                if r.round <= w.round {
                    return Err(format!(
                        "workload {id}: rollout.round {} must be after the round the workload is created ({})",
                        r.round, w.round
                    ));
                }
                if !matches!(w.kind, Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet) {
                    return Err(format!(
                        "workload {id}: rollout: only a Deployment, StatefulSet or DaemonSet rolls out"
                    ));
                }
            }
        }
        let mut svcs = BTreeSet::new();
        for s in &self.services {
            if [DNS_SERVICE, API_SERVICE].contains(&(s.name.as_str(), s.namespace.as_str())) {
                return Err(format!("service {}.{}: the lab makes that one itself", s.name, s.namespace));
            }
            if !svcs.insert((s.name.as_str(), s.namespace.as_str())) {
                return Err(format!("service {}.{} defined twice", s.name, s.namespace));
            }
        }
        let mut names = BTreeSet::new();
        for (i, e) in self.external.iter().enumerate() {
            if e.name.is_empty() || !e.name.contains('.') || e.name.ends_with(".cluster.local") {
                return Err(format!(
                    "external[{i}].name {:?}: expected a DNS name outside the cluster (api.example.com)",
                    e.name
                ));
            }
            if !names.insert(e.name.as_str()) {
                return Err(format!("external[{i}].name {:?} defined twice", e.name));
            }
            let private = match e.ip {
                IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.octets()[0] == 10,
                IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.segments()[0] == 0xfd00,
            };
            if private {
                return Err(format!("external[{i}].ip {}: in the lab's own ranges (or loopback)", e.ip));
            }
        }
        for (i, c) in self.calls.iter().enumerate() {
            self.check_call(i, c)?;
        }
        self.check_releases()
    }

    /// Each release has a name Helm would take and a namespace, and holds workloads of the
    /// scenario, each in one release at most.
    fn check_releases(&self) -> Result<(), String> {
        let mut held = BTreeSet::new();
        let mut releases = BTreeSet::new();
        for (i, r) in self.releases.iter().enumerate() {
            if !helm_name(&r.name) {
                return Err(format!(
                    "releases[{i}].name {:?}: a Helm release name is lowercase letters, digits, '-' and '.', \
                     at most 53, starting and ending with a letter or digit",
                    r.name
                ));
            }
            if !helm_name(&r.namespace) || r.namespace.contains('.') {
                return Err(format!("releases[{i}].namespace {:?}: expected a namespace name", r.namespace));
            }
            if !releases.insert((r.name.as_str(), r.namespace.as_str())) {
                return Err(format!("releases[{i}]: release {} in {} defined twice", r.name, r.namespace));
            }
            for (j, id) in r.workloads.iter().enumerate() {
                let (n, ns) = split_ref(id)
                    .ok_or(format!("releases[{i}].workloads[{j}] {id:?}: expected <workload>.<namespace>"))?;
                if self.workload(n, ns).is_none() || (n, ns) == DNS_WORKLOAD {
                    return Err(format!("releases[{i}].workloads[{j}] {id:?}: no such workload"));
                }
                if !held.insert(id.as_str()) {
                    return Err(format!("releases[{i}].workloads[{j}] {id:?}: already in a release"));
                }
            }
            check_revisions(i, r)?;
        }
        Ok(())
    }

    fn check_call(&self, i: usize, c: &CallSpec) -> Result<(), String> {
        let (n, ns) =
            split_ref(&c.from).ok_or(format!("calls[{i}].from {:?}: expected <workload>.<namespace>", c.from))?;
        let client = self.workload(n, ns).ok_or(format!("calls[{i}].from {:?}: no such workload", c.from))?;
        if let Some(p) = c.from_pod
            && p >= client.replicas
        {
            return Err(format!("calls[{i}].fromPod {p}: {} has {} pod(s), counted from 0", c.from, client.replicas));
        }
        if c.round == 0 {
            return Err(format!("calls[{i}].round: must be at least 1"));
        }
        if c.round < client.round {
            return Err(format!("calls[{i}].round {}: {} is only created at round {}", c.round, c.from, client.round));
        }
        if c.family == Family::IPv6 && !self.dual_stack() {
            return Err(format!("calls[{i}].family IPv6: the scenario needs ipFamilies: [IPv4, IPv6]"));
        }
        match c.via {
            Via::External => {
                let e = self
                    .external
                    .iter()
                    .find(|e| e.name == c.to)
                    .ok_or(format!("calls[{i}].to {:?}: no such external host (external[].name)", c.to))?;
                if (c.family == Family::IPv6) != e.ip.is_ipv6() {
                    return Err(format!(
                        "calls[{i}].family {:?}: external host {} has the address {}",
                        c.family, c.to, e.ip
                    ));
                }
            }
            Via::Loopback => {}
            Via::Service | Via::Pod => {
                let (tn, tns) =
                    split_ref(&c.to).ok_or(format!("calls[{i}].to {:?}: expected <name>.<namespace>", c.to))?;
                if c.via == Via::Pod
                    && let Some(t) = self.workload(tn, tns)
                    && t.round > c.round
                {
                    return Err(format!("calls[{i}].round {}: {} is only created at round {}", c.round, c.to, t.round));
                }
                let known = match c.via {
                    Via::Pod => self.workload(tn, tns).is_some(),
                    _ => {
                        self.services.iter().any(|s| s.name == tn && s.namespace == tns)
                            || [DNS_SERVICE, API_SERVICE].contains(&(tn, tns))
                    }
                };
                if !known {
                    let what = if c.via == Via::Pod { "workload" } else { "service" };
                    return Err(format!("calls[{i}].to {:?}: no such {what}", c.to));
                }
            }
        }
        if c.via == Via::Pod && c.dns == Some(true) {
            return Err(format!("calls[{i}].dns: a pod has no DNS name to resolve (via: pod)"));
        }
        if c.via == Via::Loopback {
            if c.to != c.from {
                return Err(format!(
                    "calls[{i}].to {:?}: via loopback a pod calls its own server, so `to` is `from` ({:?})",
                    c.to, c.from
                ));
            }
            if c.dns == Some(true) {
                return Err(format!("calls[{i}].dns: a loopback address has no DNS name to resolve (via: loopback)"));
            }
        }
        if !matches!(c.protocol.as_str(), "tcp" | "udp") {
            return Err(format!("calls[{i}].protocol {:?}: tcp or udp", c.protocol));
        }
        Ok(())
    }
}

/// Helm's release statuses.
const HELM_STATUSES: [&str; 8] = [
    "deployed",
    "superseded",
    "failed",
    "uninstalling",
    "uninstalled",
    "pending-install",
    "pending-upgrade",
    "pending-rollback",
];

/// Revisions numbered from 1, each once, with a status Helm writes and a chart NAME-VERSION;
/// at most one deployed, as Helm leaves it.
fn check_revisions(i: usize, r: &super::ReleaseSpec) -> Result<(), String> {
    let mut numbers = BTreeSet::new();
    for (j, rev) in r.revisions.iter().enumerate() {
        if rev.revision == 0 || !numbers.insert(rev.revision) {
            return Err(format!(
                "releases[{i}].revisions[{j}].revision {}: revisions count from 1, each once",
                rev.revision
            ));
        }
        if !HELM_STATUSES.contains(&rev.status.as_str()) {
            return Err(format!(
                "releases[{i}].revisions[{j}].status {:?}: expected one of {}",
                rev.status,
                HELM_STATUSES.join(", ")
            ));
        }
        if rev.chart_parts().is_none() {
            return Err(format!(
                "releases[{i}].revisions[{j}].chart {:?}: expected NAME-VERSION, as helm history writes it (ledger-0.2.0)",
                rev.chart
            ));
        }
    }
    if r.revisions.iter().filter(|rev| rev.status == "deployed").count() > 1 {
        return Err(format!("releases[{i}]: more than one revision is deployed"));
    }
    Ok(())
}
