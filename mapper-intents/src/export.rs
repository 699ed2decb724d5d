//! Shaping observed edges into ClientIntents the way the Otterize CLI shapes an export:
//! one document per client workload named after it, target names qualified with
//! `.<namespace>` only across namespaces, documents sorted by (name, namespace) and targets by
//! (server name, server namespace), duplicates removed.

use std::collections::BTreeMap;

use crate::model::{
    API_SERVER_NAME, API_SERVER_NAMESPACE, ClientIntentsDoc, Edge, Internet, ServiceTarget, Target, Workload,
    WorkloadTarget,
};

/// What [`intents_from_edges`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Keep Service targets (a ClusterIP whose Service has no pods behind it). Default `true`.
    pub include_services: bool,
    /// Keep the Kubernetes API server as a target. Default `true`.
    pub include_api_server: bool,
    /// Keep internet targets. Default `true`.
    pub include_internet: bool,
    /// Keep edges on which every connection failed (`established == 0`). Default `false`, as
    /// Otterize exports established connections only: access that never worked should not
    /// become policy unasked (`mapper audit` still reports such calls, as already failing).
    pub include_failed_only: bool,
    /// Keep calls to the cluster DNS ([`Edge::is_cluster_dns`]). Default `false`, as Otterize.
    pub include_dns: bool,
    /// Only clients in these namespaces; empty = every namespace.
    pub client_namespaces: Vec<String>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            include_services: true,
            include_api_server: true,
            include_internet: true,
            include_failed_only: false,
            include_dns: false,
            client_namespaces: Vec::new(),
        }
    }
}

impl ExportOptions {
    /// Whether `edge` is kept in an export with these options.
    pub fn keeps(&self, edge: &Edge) -> bool {
        let kind_kept = match &edge.server {
            Target::Service(s) => {
                if is_api_server_service(s, &edge.client.namespace) {
                    self.include_api_server
                } else {
                    self.include_services
                }
            }
            Target::ApiServer => self.include_api_server,
            Target::Internet(_) => self.include_internet,
            Target::Workload(_) | Target::Other(_) => true,
        };
        kind_kept
            && (self.include_failed_only || edge.established > 0)
            && (self.include_dns || !edge.is_cluster_dns())
            && (self.client_namespaces.is_empty()
                || self.client_namespaces.iter().any(|ns| **ns == *edge.client.namespace))
    }
}

fn is_api_server_service(s: &ServiceTarget, client_namespace: &str) -> bool {
    s.name == API_SERVER_NAME
        && s.namespace.as_deref().unwrap_or(client_namespace) == API_SERVER_NAMESPACE
        && s.http.is_empty()
}

/// Builds one ClientIntents document per client workload from observed edges.
///
/// `metadata.name` is the client's name — unless two clients in one namespace share a name
/// with different kinds, where applying both would overwrite one with the other; those get
/// `<name>-<kind in lower case>`. Ports of internet edges to the same destinations are merged.
pub fn intents_from_edges(edges: &[Edge], opts: &ExportOptions) -> Vec<ClientIntentsDoc> {
    let mut by_client: BTreeMap<&Workload, Vec<Target>> = BTreeMap::new();
    for edge in edges.iter().filter(|e| opts.keeps(e)) {
        by_client.entry(&edge.client).or_default().push(shape_target(edge));
    }
    let mut name_uses: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for client in by_client.keys() {
        *name_uses.entry((&client.name, &client.namespace)).or_default() += 1;
    }
    let mut docs: Vec<ClientIntentsDoc> = by_client
        .iter()
        .map(|(client, targets)| {
            let shared = name_uses.get(&(&*client.name, &*client.namespace)).is_some_and(|uses| *uses > 1);
            let name = match (&client.kind, shared) {
                (Some(kind), true) => format!("{}-{}", client.name, kind.to_ascii_lowercase()),
                _ => client.name.to_string(),
            };
            ClientIntentsDoc {
                name,
                namespace: Some(client.namespace.to_string()),
                client_name: client.name.to_string(),
                client_kind: client.kind().map(str::to_owned),
                targets: sort_targets(merge_internet(targets.clone()), &client.namespace),
            }
        })
        .collect();
    docs.sort_by(|a, b| (&a.name, &a.namespace, &a.client_kind).cmp(&(&b.name, &b.namespace, &b.client_kind)));
    docs
}

/// The edge's server as a target of a document in the client's namespace.
fn shape_target(edge: &Edge) -> Target {
    let client_ns: &str = &edge.client.namespace;
    let qualify = |ns: &Option<String>| ns.clone().filter(|ns| ns != client_ns);
    match &edge.server {
        Target::Workload(w) => Target::Workload(WorkloadTarget { namespace: qualify(&w.namespace), ..w.clone() }),
        Target::Service(s) if is_api_server_service(s, client_ns) => Target::ApiServer,
        Target::Service(s) => Target::Service(ServiceTarget { namespace: qualify(&s.namespace), ..s.clone() }),
        Target::Internet(internet) => {
            let mut internet = internet.clone();
            internet.ports.extend(edge.ports.iter().map(|p| p.port));
            Target::Internet(tidy_internet(internet))
        }
        other => other.clone(),
    }
}

fn tidy_internet(mut internet: Internet) -> Internet {
    for list in [&mut internet.domains, &mut internet.ips] {
        list.sort();
        list.dedup();
    }
    internet.ports.sort_unstable();
    internet.ports.dedup();
    internet
}

/// Internet targets to the same domains and IPs become one, with the union of their ports.
fn merge_internet(targets: Vec<Target>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    for target in targets {
        if let Target::Internet(new) = &target {
            let existing = out.iter_mut().find_map(|t| match t {
                Target::Internet(old) if old.domains == new.domains && old.ips == new.ips => Some(old),
                _ => None,
            });
            if let Some(old) = existing {
                // No ports means any port, which already covers every port.
                if old.ports.is_empty() || new.ports.is_empty() {
                    old.ports.clear();
                } else {
                    old.ports.extend(&new.ports);
                    old.ports.sort_unstable();
                    old.ports.dedup();
                }
                continue;
            }
        }
        out.push(target);
    }
    out
}

/// Sort key: (server name, server namespace), then a fixed order of kinds and contents so the
/// output is deterministic.
fn sort_key(target: &Target, client_namespace: &str) -> (String, String, u8, String) {
    let (name, namespace) = target.server_name_and_namespace(client_namespace);
    let (rank, rest) = match target {
        Target::Workload(w) => (0, format!("{:?}{:?}", w.kind, w.http)),
        Target::Service(s) => (1, format!("{:?}", s.http)),
        Target::ApiServer => (2, String::new()),
        Target::Internet(i) => (3, format!("{:?}{:?}{:?}", i.domains, i.ips, i.ports)),
        Target::Other(o) => (4, format!("{:?}", o.body)),
    };
    (name, namespace, rank, rest)
}

/// Merges the documents of clients of one name that share a key (otterize-cli's
/// `--distinct-by-label`: the value of a pod label) into one per (name, key): the first
/// document of each (in the order given, which [`intents_from_edges`] sorts by namespace) keeps
/// its name and namespace and gets the targets of all, each written as its own client wrote it,
/// sorted and without duplicates. The result is sorted as [`intents_from_edges`] sorts.
pub fn merge_by_key(docs: Vec<(ClientIntentsDoc, String)>) -> Vec<ClientIntentsDoc> {
    let mut merged: Vec<ClientIntentsDoc> = Vec::new();
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (doc, key) in docs {
        match index.get(&(doc.client_name.clone(), key.clone())) {
            Some(&i) => merged[i].targets.extend(doc.targets),
            None => {
                index.insert((doc.client_name.clone(), key), merged.len());
                merged.push(doc);
            }
        }
    }
    for doc in &mut merged {
        let namespace = doc.namespace.clone().unwrap_or_default();
        doc.targets = sort_targets(merge_internet(std::mem::take(&mut doc.targets)), &namespace);
    }
    merged.sort_by(|a, b| (&a.name, &a.namespace, &a.client_kind).cmp(&(&b.name, &b.namespace, &b.client_kind)));
    merged
}

fn sort_targets(targets: Vec<Target>, client_namespace: &str) -> Vec<Target> {
    let mut keyed: Vec<_> = targets.into_iter().map(|t| (sort_key(&t, client_namespace), t)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.1 == b.1);
    keyed.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests;
