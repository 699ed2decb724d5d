//! NetworkPolicies in `mapper audit`: every observed call into a pod a declared NetworkPolicy
//! selects, evaluated by mapper-intents' [`netpol`] (ingress only; egress rules are not
//! evaluated, and the report says so when a policy has them).
//!
//! mapper-server's Query API carries no labels, so labels come from the cluster (mapper-cluster's
//! API source, listed once: [`LabelSource::from_cluster`]) or from `--inventory FILE`: the
//! Pods, their owners and the Namespaces as `kubectl get -o yaml` prints them (read by
//! mapper-cluster, which resolves pods to workloads as the server does). A workload's labels
//! are those of its pods; a Namespace's its own (`kubernetes.io/metadata.name`, which the API
//! server sets on every namespace, is always known); named ports are resolved through the
//! workload's container ports. Without either — or for a workload or namespace they do not
//! hold — labels are unknown, and a call whose verdict depends on them is reported as unknown.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use mapper_cluster::{Inventory, ResolveOptions, Snapshot};
use mapper_intents::netpol::{self, Client, Labels, PodSide, Policy, Verdict};
use mapper_intents::{Port, Protocol, Workload};
use serde_json::{Value, json};

use crate::edges::{ObservedEdge, Peer, timestamp_text};

/// Why the inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// mapper-cluster could not read it.
    #[error("cannot read --inventory")]
    Inventory(#[source] mapper_cluster::InventoryError),
    /// A file could not be read.
    #[error("cannot read --inventory {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
}

/// Why the labels could not be read from the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterLabelsError {
    /// The API server refused a list (its Status; the message is the server's own words).
    #[error("cannot list {what}: {message}")]
    Refused {
        /// What was listed.
        what: String,
        /// The API server's message.
        message: String,
    },
    /// A list failed without an answer from the API server.
    #[error("cannot list {what}")]
    Failed {
        /// What was listed.
        what: String,
        /// The client's error.
        #[source]
        error: kube::Error,
    },
    /// The API source did not finish its first lists in time.
    #[error("the cluster's pods and owners were not all listed within {}", humantime::format_duration(*waited))]
    NotSynced {
        /// How long it waited.
        waited: std::time::Duration,
    },
}

/// An object as the JSON value the inventory's reader takes (k8s-openapi writes its apiVersion
/// and kind); one that does not serialize is null, which [`LabelSource::take`] skips.
fn json_of<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// Pod and namespace labels, and named container ports, per workload.
#[derive(Debug, Default)]
pub struct LabelSource {
    snapshot: Option<Arc<Snapshot>>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    ports: HashMap<(String, String), BTreeMap<String, (u16, Protocol)>>,
}

const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn str_of<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for key in path {
        v = v.get(*key)?;
    }
    v.as_str()
}

impl LabelSource {
    /// Reads the inventory files (none: every label unknown).
    pub fn load(paths: &[PathBuf]) -> Result<LabelSource, LabelsError> {
        if paths.is_empty() {
            return Ok(LabelSource::default());
        }
        let inventory = Inventory::load(paths.to_vec(), ResolveOptions::default()).map_err(LabelsError::Inventory)?;
        let snapshot = inventory.snapshot();
        let mut source = LabelSource { snapshot: Some(snapshot.clone()), ..LabelSource::default() };
        // The files mapper-cluster read, found by the same walk.
        let files = inventory.files().map_err(LabelsError::Inventory)?;
        for file in files {
            // mapper-cluster has read these already: what is not YAML was refused there.
            let text =
                std::fs::read_to_string(&file).map_err(|error| LabelsError::Read { path: file.clone(), error })?;
            for read in mapper_intents::stream::documents::<Value>(&text) {
                let Ok((_, value)) = read else { break };
                let items: Vec<&Value> = match value.get("items").and_then(Value::as_array) {
                    Some(items) => items.iter().collect(),
                    None => vec![&value],
                };
                for item in items {
                    source.take(item, &snapshot);
                }
            }
        }
        Ok(source)
    }

    /// Reads the labels from the cluster with the user's kube credentials: mapper-cluster's API
    /// source (the same owner resolution as mapper-server's) once synced, the Namespaces, and
    /// the pods of `namespaces` (where the policies are: their selected pods' named ports).
    /// Gives up after `wait`, naming what it waited for.
    pub async fn from_cluster(
        client: kube::Client,
        namespaces: &[String],
        wait: std::time::Duration,
    ) -> Result<LabelSource, ClusterLabelsError> {
        use k8s_openapi::api::core::v1::{Namespace, Pod};
        use kube::api::{Api, ListParams};
        let failed = |what: &str| {
            let what = what.to_owned();
            move |error| match error {
                kube::Error::Api(status) => ClusterLabelsError::Refused { what, message: status.message },
                error => ClusterLabelsError::Failed { what, error },
            }
        };
        // Asked first: a client without permission fails here at once rather than at the wait.
        let all_namespaces =
            Api::<Namespace>::all(client.clone()).list(&ListParams::default()).await.map_err(failed("namespaces"))?;
        Api::<Pod>::all(client.clone())
            .list(&ListParams::default().limit(1))
            .await
            .map_err(failed("pods in every namespace"))?;
        let (handle, task) = mapper_cluster::KubeSource::new(client.clone(), ResolveOptions::default()).spawn();
        let ready = tokio::time::timeout(wait, handle.wait_ready()).await;
        task.abort();
        if ready.is_err() {
            return Err(ClusterLabelsError::NotSynced { waited: wait });
        }
        let snapshot = handle.snapshot();
        let mut source = LabelSource { snapshot: Some(snapshot.clone()), ..LabelSource::default() };
        for namespace in &all_namespaces.items {
            source.take(&json_of(namespace), &snapshot);
        }
        for namespace in namespaces {
            let pods = Api::<Pod>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .map_err(failed(&format!("pods in namespace {namespace}")))?;
            for pod in &pods.items {
                source.take(&json_of(pod), &snapshot);
            }
        }
        Ok(source)
    }

    fn take(&mut self, object: &Value, snapshot: &Snapshot) {
        match str_of(object, &["kind"]) {
            Some("Namespace") => {
                let Some(name) = str_of(object, &["metadata", "name"]) else { return };
                let labels = object
                    .get("metadata")
                    .and_then(|m| m.get("labels"))
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                            .collect::<BTreeMap<_, _>>()
                    })
                    .unwrap_or_default();
                self.namespaces.insert(name.to_owned(), labels);
            }
            Some("Pod") => {
                let Some(uid) = str_of(object, &["metadata", "uid"]) else { return };
                let Some(workload) = snapshot.workload_of_pod(uid) else { return };
                let ports = self.ports.entry((workload.name.to_string(), workload.namespace.to_string())).or_default();
                let containers = object.get("spec").and_then(|s| s.get("containers")).and_then(Value::as_array);
                for port in containers.into_iter().flatten().filter_map(|c| c.get("ports")?.as_array()).flatten() {
                    let (Some(name), Some(number)) = (
                        str_of(port, &["name"]),
                        port.get("containerPort").and_then(|p| p.as_u64()).and_then(|p| u16::try_from(p).ok()),
                    ) else {
                        continue;
                    };
                    let protocol = match str_of(port, &["protocol"]) {
                        Some("UDP") => Protocol::Udp,
                        _ => Protocol::Tcp,
                    };
                    ports.insert(name.to_owned(), (number, protocol));
                }
            }
            _ => {}
        }
    }

    /// What is known of a workload's pods.
    pub fn pod_side(&self, w: &Workload) -> PodSide {
        let name = format!("{}.{}", w.name, w.namespace);
        let pod_labels = self.snapshot.as_ref().and_then(|s| s.labels_of(w)).cloned();
        let labels = Labels {
            complete: pod_labels.is_some(),
            known: pod_labels.unwrap_or_default(),
            of: format!("pod labels of {name}"),
        };
        let namespace_labels = match self.namespaces.get(&*w.namespace) {
            Some(labels) => {
                let mut known = labels.clone();
                known.insert(NAME_LABEL.to_owned(), w.namespace.to_string());
                Labels { known, complete: true, of: format!("labels of namespace {}", w.namespace) }
            }
            None => Labels {
                known: [(NAME_LABEL.to_owned(), w.namespace.to_string())].into_iter().collect(),
                complete: false,
                of: format!("labels of namespace {}", w.namespace),
            },
        };
        let named_ports = self.ports.get(&(w.name.to_string(), w.namespace.to_string())).cloned();
        PodSide { namespace: w.namespace.to_string(), labels, namespace_labels, named_ports }
    }
}

/// One observed call (one port) and its verdict.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The client, as `list` names it.
    pub client: String,
    /// The server, `ledger.team3`.
    pub server: String,
    /// The port.
    pub port: Port,
    /// Last seen, Unix ms.
    pub last_seen_ms: i64,
    /// The verdict.
    pub verdict: Verdict,
}

/// The calls into pods the policies select, by verdict.
#[derive(Debug, Default)]
pub struct PolicyReport {
    /// The policies evaluated (`namespace/name`, and where they were read).
    pub policies: Vec<(String, String)>,
    /// Policies with egress rules or type (not evaluated).
    pub egress_not_evaluated: Vec<String>,
    /// Calls no policy admits.
    pub denied: Vec<Finding>,
    /// Calls whose verdict depends on what mapper does not know.
    pub unknown: Vec<Finding>,
    /// Calls admitted.
    pub allowed: usize,
}

fn client_of(peer: &Peer, labels: &LabelSource) -> Option<(String, Client)> {
    match peer {
        Peer::Workload(w) => Some((format!("{}.{}", w.name, w.namespace), Client::Pod(labels.pod_side(w)))),
        Peer::External { ip } => Some((ip.to_string(), Client::External(*ip))),
        // Node processes (probes) and unattributed addresses: nothing to select them by.
        _ => None,
    }
}

/// Evaluates every observed call in the window into a pod of a namespace the policies are in.
pub fn evaluate(
    policies: &[Policy],
    edges: &[ObservedEdge],
    labels: &LabelSource,
    window_start_ms: i64,
) -> PolicyReport {
    let mut report = PolicyReport {
        policies: policies
            .iter()
            .map(|p| (format!("{}/{}", p.namespace.as_deref().unwrap_or_default(), p.name), p.source.clone()))
            .collect(),
        egress_not_evaluated: policies
            .iter()
            .filter(|p| p.restricts_egress())
            .map(|p| format!("{}/{}", p.namespace.as_deref().unwrap_or_default(), p.name))
            .collect(),
        ..PolicyReport::default()
    };
    for e in edges.iter().filter(|e| e.last_seen_ms >= window_start_ms) {
        let Peer::Workload(server) = &e.server else { continue };
        if !policies.iter().any(|p| p.namespace.as_deref() == Some(&*server.namespace)) {
            continue;
        }
        let Some((client, client_side)) = client_of(&e.client, labels) else { continue };
        let server_side = labels.pod_side(server);
        for port in &e.ports {
            let verdict = netpol::evaluate(policies, &client_side, &server_side, port.port, port.protocol);
            let finding = Finding {
                client: client.clone(),
                server: format!("{}.{}", server.name, server.namespace),
                port: *port,
                last_seen_ms: e.last_seen_ms,
                verdict,
            };
            match finding.verdict {
                Verdict::Denied { .. } => report.denied.push(finding),
                Verdict::Unknown { .. } => report.unknown.push(finding),
                Verdict::Open | Verdict::Allowed { .. } => report.allowed += 1,
            }
        }
    }
    report
}

fn finding_text(f: &Finding) -> String {
    let why = match &f.verdict {
        Verdict::Denied { policies } => format!("selected by {}, none admits it", policies.join(", ")),
        Verdict::Unknown { reason } => reason.clone(),
        Verdict::Open | Verdict::Allowed { .. } => String::new(),
    };
    format!("{} -> {} {}  last seen {}  ({why})", f.client, f.server, f.port, timestamp_text(f.last_seen_ms, false))
}

impl PolicyReport {
    fn egress_line(&self) -> String {
        if self.egress_not_evaluated.is_empty() {
            "egress rules are not evaluated".to_owned()
        } else {
            format!("egress rules are not evaluated (policies with egress: {})", self.egress_not_evaluated.join(", "))
        }
    }

    /// The table's section.
    pub fn text(&self) -> String {
        let mut out = format!(
            "\nNetworkPolicies ({}): {} denied, {} unknown, {} admitted observed calls; {}\n",
            self.policies.len(),
            self.denied.len(),
            self.unknown.len(),
            self.allowed,
            self.egress_line()
        );
        for f in &self.denied {
            out.push_str(&format!("  DENIED   {}\n", finding_text(f)));
        }
        for f in &self.unknown {
            out.push_str(&format!("  UNKNOWN  {}\n", finding_text(f)));
        }
        out
    }

    /// The Markdown section.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "\n#### NetworkPolicies: {} denied, {} unknown, {} admitted observed calls\n\n_{}._\n\n",
            self.denied.len(),
            self.unknown.len(),
            self.allowed,
            self.egress_line()
        );
        if !self.denied.is_empty() || !self.unknown.is_empty() {
            out.push_str("| | Call | Why |\n|---|---|---|\n");
        }
        for (mark, f) in
            self.denied.iter().map(|f| ("❌ denied", f)).chain(self.unknown.iter().map(|f| ("❔ unknown", f)))
        {
            let why = finding_text(f);
            out.push_str(&format!(
                "| {mark} | `{} -> {} {}` | {} |\n",
                f.client,
                f.server,
                f.port,
                why.replace('|', "\\|")
            ));
        }
        out
    }

    /// The `network_policies` member of the audit's JSON document.
    pub fn json(&self) -> Value {
        let finding = |f: &Finding| {
            let mut v = json!({"client": f.client, "server": f.server, "port": f.port,
                               "last_seen": timestamp_text(f.last_seen_ms, false)});
            match &f.verdict {
                Verdict::Denied { policies } => v["selected_by"] = json!(policies),
                Verdict::Unknown { reason } => v["reason"] = json!(reason),
                Verdict::Open | Verdict::Allowed { .. } => {}
            }
            v
        };
        json!({
            "policies": self.policies.iter().map(|(name, source)| json!({"name": name, "source": source})).collect::<Vec<_>>(),
            "egress": {"evaluated": false, "policies_with_egress": self.egress_not_evaluated},
            "denied": self.denied.iter().map(finding).collect::<Vec<_>>(),
            "unknown": self.unknown.iter().map(finding).collect::<Vec<_>>(),
            "admitted": self.allowed,
        })
    }
}
