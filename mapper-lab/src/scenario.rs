//! The lab's scenario file (format in the README, "The lab and its scenarios"; see also
//! docs/architecture.md, "The lab and the deployment"): workloads, services, external hosts and
//! the calls between them.
//!
//! Every scenario also gets the cluster's own objects (see [`Scenario::load`]): `coredns`
//! (Deployment, kube-system) behind Service `kube-dns` (10.96.0.10, 53/UDP and 53/TCP), and
//! Service `kubernetes` in `default` (10.96.0.1:443, the API server on the node).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Workload kinds the lab can build, with the owner chain each has in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Pod,
}

/// A port a pod serves: `8080` (TCP) or `"53/udp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodPort {
    pub port: u16,
    pub udp: bool,
}

impl<'de> Deserialize<'de> for PodPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u16),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(port) => Ok(Self { port, udp: false }),
            Raw::S(s) => {
                let (p, proto) = s.split_once('/').unwrap_or((s.as_str(), "tcp"));
                let port =
                    p.trim().parse().map_err(|_| serde::de::Error::custom(format!("port {s:?}: not a number")))?;
                match proto.to_ascii_lowercase().as_str() {
                    "tcp" => Ok(Self { port, udp: false }),
                    "udp" => Ok(Self { port, udp: true }),
                    other => Err(serde::de::Error::custom(format!("port {s:?}: protocol {other:?} is not tcp or udp"))),
                }
            }
        }
    }
}

/// Which ports the kubelet probes: `probes: [8080]` or `probes: all` (every TCP port).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Probes {
    #[default]
    None,
    All,
    Ports(Vec<u16>),
}

impl<'de> Deserialize<'de> for Probes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ports(Vec<u16>),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ports(p) if p.is_empty() => Ok(Self::None),
            Raw::Ports(p) => Ok(Self::Ports(p)),
            Raw::S(s) if s == "all" => Ok(Self::All),
            Raw::S(s) => Err(serde::de::Error::custom(format!("probes {s:?}: expected a list of ports or `all`"))),
        }
    }
}

/// A duration in humantime syntax (`1s`, `250ms`, `0s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl Span {
    /// A field's duration, the error naming the field.
    fn field<'de, D: serde::Deserializer<'de>>(d: D, field: &str) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(Span)
            .map_err(|e| serde::de::Error::custom(format!("{field} {s:?}: {e} (a duration: 1s, 250ms, 0s)")))
    }
}

fn round_gap<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
    Span::field(d, "roundGap")
}

fn probe_interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
    let span = Span::field(d, "probeInterval")?;
    if span.0.is_zero() {
        return Err(serde::de::Error::custom("probeInterval 0s: the kubelet needs a period (e.g. 1s)"));
    }
    Ok(span)
}

/// `rollout: {round: N}`: all of the workload's pods are replaced at round N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub round: u32,
}

fn one() -> u32 {
    1
}

/// A workload and its pods.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSpec {
    pub name: String,
    pub namespace: String,
    pub kind: Kind,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub ports: Vec<PodPort>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub host_network: bool,
    /// Traffic round before which this workload's pods are created (default 1: at `up`).
    #[serde(default = "one")]
    pub round: u32,
    /// `<workload>.<namespace>`: when this workload is created (round 2 or later), the first
    /// pod of that workload is deleted and this workload's pod takes its IP, as a CNI
    /// reuses a freed address.
    #[serde(default)]
    pub reuse_ip_of: Option<String>,
    /// TCP ports the kubelet probes on every pod of this workload.
    #[serde(default)]
    pub probes: Probes,
    /// The round at which all pods are replaced by new ones (new names, UIDs and IPs; a StatefulSet's keep their names).
    #[serde(default)]
    pub rollout: Option<Rollout>,
}

impl WorkloadSpec {
    /// Pod labels (default `app: <name>`).
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        if self.labels.is_empty() {
            BTreeMap::from([("app".to_string(), self.name.clone())])
        } else {
            self.labels.clone()
        }
    }

    /// The TCP ports the kubelet probes.
    pub fn probe_ports(&self) -> Vec<u16> {
        match &self.probes {
            Probes::None => Vec::new(),
            Probes::All => self.ports.iter().filter(|p| !p.udp).map(|p| p.port).collect(),
            Probes::Ports(p) => p.clone(),
        }
    }

    /// How many rollouts have happened by `round` (the ReplicaSet revision is this + 1).
    pub fn revision_at(&self, round: u32) -> u32 {
        u32::from(self.rollout.is_some_and(|r| r.round <= round))
    }

    fn id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// One Service port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    pub port: u16,
    pub target_port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
    /// The port's name (needed by Kubernetes when a Service has several); not in scenarios.
    #[serde(skip)]
    pub name: Option<String>,
}

impl ServicePort {
    pub fn target(&self) -> u16 {
        self.target_port.unwrap_or(self.port)
    }

    pub fn udp(&self) -> bool {
        self.protocol.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("udp"))
    }
}

/// A Service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub headless: bool,
}

/// How a call reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The Service's ClusterIP (DNAT'ed like kube-proxy does).
    #[default]
    Service,
    /// A pod IP of the target workload.
    Pod,
    /// One of the scenario's `external` hosts, beyond the node's uplink.
    External,
    /// The client's own server on `127.0.0.1` (`::1` with `family: IPv6`), from inside the
    /// client's pod (`to` is `from`): a sidecar calling its pod's other container, which is
    /// no call between workloads.
    Loopback,
}

/// An IP family, as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize, Default)]
pub enum Family {
    #[default]
    IPv4,
    IPv6,
}

/// Calls from one workload to a service, workload or external host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CallSpec {
    /// `<workload>.<namespace>`.
    pub from: String,
    /// `<service>.<namespace>` (via service), `<workload>.<namespace>` (via pod), an
    /// external host's name (via external), or `from` itself (via loopback).
    pub to: String,
    pub port: u16,
    #[serde(default)]
    pub via: Via,
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Connections (datagrams) in all, spread round-robin over the client's pods.
    #[serde(default = "one_u64")]
    pub count: u64,
    /// Traffic round this call belongs to (`mapper-lab traffic --round N`); default 1.
    #[serde(default = "one")]
    pub round: u32,
    /// Resolve the name through kube-dns first (default: true via service and external; never
    /// via pod or loopback).
    #[serde(default)]
    pub dns: Option<bool>,
    /// Make every connection from this pod of the client (0-based) instead of all of them.
    #[serde(default)]
    pub from_pod: Option<u32>,
    /// The family of the address called (default IPv4).
    #[serde(default)]
    pub family: Family,
}

impl CallSpec {
    /// Whether the client resolves the target's name through kube-dns before calling.
    pub fn resolves(&self) -> bool {
        self.dns.unwrap_or(matches!(self.via, Via::Service | Via::External))
    }
}

fn tcp() -> String {
    "tcp".into()
}

fn one_u64() -> u64 {
    1
}

/// A host outside the cluster, in a namespace beyond the node's uplink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    /// Its DNS name (`api.example.com`), answered by kube-dns.
    pub name: String,
    pub ip: IpAddr,
    /// TCP ports it serves.
    #[serde(default)]
    pub ports: Vec<u16>,
}

fn ipv4_only() -> Vec<Family> {
    vec![Family::IPv4]
}

/// The default gap between two traffic rounds (for a server polling the inventory every second).
pub const DEFAULT_ROUND_GAP: Duration = Duration::from_millis(2500);

fn default_round_gap() -> Span {
    Span(DEFAULT_ROUND_GAP)
}

fn default_probe_interval() -> Span {
    Span(Duration::from_secs(1))
}

/// A Helm release: the workloads whose owner objects `mapper-lab up` stamps with Helm's
/// annotations (`meta.helm.sh/release-name`, `meta.helm.sh/release-namespace`) and label
/// (`app.kubernetes.io/managed-by: Helm`), and the revisions whose records (Secrets, as Helm's
/// default driver keeps them) `mapper-lab up` writes into the inventory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// The release's name (`helm install NAME`).
    pub name: String,
    /// The namespace it was installed into.
    pub namespace: String,
    /// Its workloads, each `<workload>.<namespace>` of the scenario (in any namespace).
    pub workloads: Vec<String>,
    /// Its kept revisions, as `helm history` lists them.
    #[serde(default)]
    pub revisions: Vec<RevisionSpec>,
}

/// One revision of a release: its record says what Helm applied then.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevisionSpec {
    /// The revision number, from 1.
    pub revision: u32,
    /// `deployed`, `superseded`, `failed`, … (Helm's release statuses).
    pub status: String,
    /// The chart as `helm history`'s CHART column writes it: `ledger-0.2.0`.
    pub chart: String,
    /// What `helm template` printed for this revision (its objects, each after a
    /// `# Source: <chart>/templates/<file>` line), relative to the scenario file. Its
    /// ClientIntents and NetworkPolicies are what the revision declares.
    pub manifest: PathBuf,
    /// Helm's description (`Upgrade complete`); default: what Helm writes for an install
    /// (revision 1) or an upgrade.
    #[serde(default)]
    pub description: Option<String>,
    /// The manifest's text, read at load.
    #[serde(skip)]
    pub manifest_text: String,
}

impl RevisionSpec {
    /// The chart's name and version, split at the last `-` before a digit.
    pub fn chart_parts(&self) -> Option<(&str, &str)> {
        let at = self
            .chart
            .match_indices('-')
            .map(|(i, _)| i)
            .rfind(|&i| self.chart[i + 1..].starts_with(|c: char| c.is_ascii_digit()))?;
        Some((&self.chart[..at], &self.chart[at + 1..])).filter(|(name, _)| !name.is_empty())
    }
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    pub workloads: Vec<WorkloadSpec>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub calls: Vec<CallSpec>,
    /// `[IPv4]` (default) or `[IPv4, IPv6]` (dual stack).
    #[serde(default = "ipv4_only")]
    pub ip_families: Vec<Family>,
    /// Hosts outside the cluster.
    #[serde(default)]
    pub external: Vec<ExternalSpec>,
    /// Helm releases and the workloads they hold.
    #[serde(default)]
    pub releases: Vec<ReleaseSpec>,
    /// How often the kubelet probes (default 1s).
    #[serde(default = "default_probe_interval", deserialize_with = "probe_interval")]
    pub probe_interval: Span,
    /// Pause after the lab moves to a new round, before its calls (default 2.5s).
    #[serde(default = "default_round_gap", deserialize_with = "round_gap")]
    pub round_gap: Span,
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: mapper_intents::stream::YamlError,
    },
    #[error("scenario {path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// `name.namespace` → (name, namespace).
pub fn split_ref(s: &str) -> Option<(&str, &str)> {
    s.split_once('.').filter(|(n, ns)| !n.is_empty() && !ns.is_empty() && !ns.contains('.'))
}

/// The cluster DNS workload every lab has.
pub const DNS_WORKLOAD: (&str, &str) = ("coredns", "kube-system");
/// Its Service.
pub const DNS_SERVICE: (&str, &str) = ("kube-dns", "kube-system");
/// The API server's Service.
pub const API_SERVICE: (&str, &str) = ("kubernetes", "default");
/// The API server's Service port.
pub const API_PORT: u16 = 443;

/// The most Services a scenario may define (ClusterIPs 10.96.<K>.10 and up).
const MAX_SERVICES: usize = 200;

impl Scenario {
    /// Reads and checks a scenario file, and adds the cluster's own objects (coredns and
    /// kube-dns).
    /// A revision's manifest is read relative to the scenario file's directory.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: p.clone(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_at(&text, base).map_err(|e| match e {
            ParseError::Yaml(source) => ScenarioError::Parse { path: p, source },
            ParseError::Invalid(problem) => ScenarioError::Invalid { path: p, problem },
        })
    }

    /// [`Scenario::load`] on text, with manifests relative to the current directory.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Self::parse_at(text, Path::new("."))
    }

    fn parse_at(text: &str, base: &Path) -> Result<Self, ParseError> {
        let mut s: Scenario = mapper_intents::stream::from_str(text).map_err(ParseError::Yaml)?;
        s.check().map_err(ParseError::Invalid)?;
        s.read_manifests(base).map_err(ParseError::Invalid)?;
        s.add_cluster_objects();
        Ok(s)
    }

    fn read_manifests(&mut self, base: &Path) -> Result<(), String> {
        for (i, release) in self.releases.iter_mut().enumerate() {
            for (j, revision) in release.revisions.iter_mut().enumerate() {
                let path = base.join(&revision.manifest);
                revision.manifest_text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("releases[{i}].revisions[{j}].manifest: cannot read {}: {e}", path.display())
                })?;
            }
        }
        Ok(())
    }

    fn add_cluster_objects(&mut self) {
        let (name, namespace) = DNS_WORKLOAD;
        // Last, so the scenario's own pods keep the addresses they always had.
        self.workloads.push(WorkloadSpec {
            name: name.into(),
            namespace: namespace.into(),
            kind: Kind::Deployment,
            replicas: 1,
            ports: vec![PodPort { port: 53, udp: true }, PodPort { port: 53, udp: false }],
            labels: BTreeMap::from([("k8s-app".to_string(), "kube-dns".to_string())]),
            annotations: BTreeMap::new(),
            host_network: false,
            round: 1,
            reuse_ip_of: None,
            probes: Probes::None,
            rollout: None,
        });
    }

    /// Whether Services and pods get IPv6 addresses too.
    pub fn dual_stack(&self) -> bool {
        self.ip_families.contains(&Family::IPv6)
    }

    /// The highest round anything happens in.
    pub fn last_round(&self) -> u32 {
        self.calls
            .iter()
            .map(|c| c.round)
            .chain(self.workloads.iter().map(|w| w.round))
            .chain(self.workloads.iter().filter_map(|w| w.rollout.map(|r| r.round)))
            .max()
            .unwrap_or(1)
    }

    /// The Helm release a workload belongs to.
    pub fn release_of(&self, w: &WorkloadSpec) -> Option<&ReleaseSpec> {
        let id = w.id();
        self.releases.iter().find(|r| r.workloads.contains(&id))
    }

    /// A workload by name and namespace.
    pub fn workload(&self, name: &str, ns: &str) -> Option<&WorkloadSpec> {
        self.workloads.iter().find(|w| w.name == name && w.namespace == ns)
    }

    /// Every namespace the scenario uses (with `default` and `kube-system`), sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .workloads
            .iter()
            .map(|w| w.namespace.clone())
            .chain(self.services.iter().map(|s| s.namespace.clone()))
            .chain([API_SERVICE.1.to_string(), DNS_SERVICE.1.to_string()])
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Why scenario text cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Yaml(mapper_intents::stream::YamlError),
    #[error("{0}")]
    Invalid(String),
}

#[path = "scenario/check.rs"]
mod check;

#[cfg(test)]
#[path = "scenario/tests.rs"]
mod tests;
