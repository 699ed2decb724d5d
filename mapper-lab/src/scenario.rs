//! The lab's scenario file (format in DESIGN.md, "Interfaces"): workloads,
//! services and the calls between them.

use std::{collections::BTreeMap, path::Path};

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
}

/// One Service port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    pub port: u16,
    pub target_port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
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
}

/// Calls from one workload to a service or workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    /// `<workload>.<namespace>`.
    pub from: String,
    /// `<service>.<namespace>` (via service) or `<workload>.<namespace>` (via pod).
    pub to: String,
    pub port: u16,
    #[serde(default)]
    pub via: Via,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default = "one_u64")]
    pub count: u64,
    /// Traffic round this call belongs to (`mapper-lab traffic --round N`); default 1.
    #[serde(default = "one")]
    pub round: u32,
}

fn tcp() -> String {
    "tcp".into()
}

fn one_u64() -> u64 {
    1
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub workloads: Vec<WorkloadSpec>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub calls: Vec<CallSpec>,
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
        source: serde_yaml::Error,
    },
    #[error("scenario {path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// `name.namespace` → (name, namespace).
pub fn split_ref(s: &str) -> Option<(&str, &str)> {
    s.split_once('.').filter(|(n, ns)| !n.is_empty() && !ns.is_empty() && !ns.contains('.'))
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: p.clone(), source })?;
        let s: Scenario =
            serde_yaml::from_str(&text).map_err(|source| ScenarioError::Parse { path: p.clone(), source })?;
        s.check().map_err(|problem| ScenarioError::Invalid { path: p, problem })?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for w in &self.workloads {
            if !seen.insert((w.name.as_str(), w.namespace.as_str())) {
                return Err(format!("workload {}.{} defined twice", w.name, w.namespace));
            }
            if w.replicas == 0 {
                return Err(format!("workload {}.{}: replicas must be at least 1", w.name, w.namespace));
            }
            if let Some(r) = &w.reuse_ip_of {
                let (n, ns) = split_ref(r).ok_or(format!(
                    "workload {}.{}: reuseIpOf {r:?}: expected <workload>.<namespace>",
                    w.name, w.namespace
                ))?;
                if self.workload(n, ns).is_none_or(|v| v.round >= w.round) {
                    return Err(format!(
                        "workload {}.{}: reuseIpOf {r:?} must name a workload of an earlier round",
                        w.name, w.namespace
                    ));
                }
                if w.replicas != 1 || w.host_network {
                    return Err(format!(
                        "workload {}.{}: reuseIpOf needs one replica, not hostNetwork",
                        w.name, w.namespace
                    ));
                }
            }
        }
        for (i, c) in self.calls.iter().enumerate() {
            let (n, ns) =
                split_ref(&c.from).ok_or(format!("calls[{i}].from {:?}: expected <workload>.<namespace>", c.from))?;
            if self.workload(n, ns).is_none() {
                return Err(format!("calls[{i}].from {:?}: no such workload", c.from));
            }
            let (tn, tns) = split_ref(&c.to).ok_or(format!("calls[{i}].to {:?}: expected <name>.<namespace>", c.to))?;
            let known = match c.via {
                Via::Service => self.services.iter().any(|s| s.name == tn && s.namespace == tns),
                Via::Pod => self.workload(tn, tns).is_some(),
            };
            if !known {
                return Err(format!(
                    "calls[{i}].to {:?}: no such {}",
                    c.to,
                    if c.via == Via::Service { "service" } else { "workload" }
                ));
            }
            if !matches!(c.protocol.as_str(), "tcp" | "udp") {
                return Err(format!("calls[{i}].protocol {:?}: tcp or udp", c.protocol));
            }
        }
        Ok(())
    }

    /// A workload by name and namespace.
    pub fn workload(&self, name: &str, ns: &str) -> Option<&WorkloadSpec> {
        self.workloads.iter().find(|w| w.name == name && w.namespace == ns)
    }

    /// Every namespace the scenario uses, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .workloads
            .iter()
            .map(|w| w.namespace.clone())
            .chain(self.services.iter().map(|s| s.namespace.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
