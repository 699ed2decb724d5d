//! The audit: what clients declare (ClientIntents) against what they were observed doing.
//!
//! Per client workload, three lists:
//! - **missing**: observed in the window, not declared — once the intents are enforced, these
//!   calls are blocked;
//! - **unused**: declared, not observed in the window — candidates to remove, with the last time
//!   they were seen before the window, if ever;
//! - **covered**: declared and observed.
//!
//! Names resolve as the operator resolves them: a target without `.<namespace>` is in the
//! client's namespace; a Service target (`svc:` in v1, `service` in v2) is covered by calls
//! through that Service's ClusterIP (and by calls to a Service with no pods behind it); the
//! Kubernetes API server is covered by calls to it whatever spelling declared it; internet
//! targets are matched by address (IP or CIDR) or DNS name (`*.` wildcards) and by port. Kafka
//! targets name the workload serving Kafka and are matched like workload targets; SQL and cloud
//! targets say nothing about network calls and are listed apart, never as unused.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::export::{ExportOptions, intents_from_edges};
use crate::model::{
    API_SERVER_NAME, API_SERVER_NAMESPACE, ClientIntentsDoc, Edge, Internet, OtherKind, Port, ServiceTarget, Target,
    Workload, WorkloadTarget,
};
use crate::versions::IntentsVersion;

/// One declared ClientIntents document and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredDoc {
    /// The document; its namespace must be set (the caller fills in the namespace a
    /// namespace-less document is applied to).
    pub doc: ClientIntentsDoc,
    /// The version it was written in.
    pub version: IntentsVersion,
    /// Where it was read: `charts/x/intents.yaml: document 2`.
    pub source: String,
}

/// Which clients the audit looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditScope {
    /// Client namespaces. Empty: the namespaces of the declared documents, or every namespace
    /// when nothing is declared.
    pub namespaces: Vec<String>,
    /// Client workloads as (name, namespace). Empty: every client in the namespaces.
    pub workloads: Vec<(String, String)>,
}

impl AuditScope {
    /// This scope with the default namespaces filled in: the declared documents' when neither
    /// namespaces nor workloads are given.
    fn resolved(&self, declared: &[DeclaredDoc]) -> AuditScope {
        if !self.namespaces.is_empty() || !self.workloads.is_empty() {
            return self.clone();
        }
        let mut namespaces: Vec<String> = declared.iter().map(|d| d.doc.client("").namespace.to_string()).collect();
        namespaces.sort();
        namespaces.dedup();
        AuditScope { namespaces, workloads: Vec::new() }
    }

    fn includes(&self, client: &Workload) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|ns| **ns == *client.namespace))
            && (self.workloads.is_empty()
                || self.workloads.iter().any(|(name, ns)| **name == *client.name && **ns == *client.namespace))
    }
}

/// A declared target and the observed calls it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Covered {
    /// The target as declared.
    pub target: Target,
    /// The calls in the window it covers (at least one).
    pub observed: Vec<Edge>,
}

/// A declared target not observed in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Unused {
    /// The target as declared.
    pub target: Target,
    /// The last call it covered, before the window (Unix ms); `None`: never seen.
    pub last_seen_ms: Option<i64>,
}

/// The audit of one client workload.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientAudit {
    /// The client (its kind as observed, else as declared).
    pub client: Workload,
    /// Where its ClientIntents were read; empty when it has none.
    pub sources: Vec<String>,
    /// Observed, not declared: blocked once the intents are enforced.
    pub missing: Vec<Edge>,
    /// Declared, not observed in the window.
    pub unused: Vec<Unused>,
    /// Declared and observed.
    pub covered: Vec<Covered>,
    /// SQL and cloud targets: nothing at L4 observes them.
    pub not_observable: Vec<Target>,
    /// Whether the client was observed at all (in or before the window).
    pub observed: bool,
}

/// Totals over every client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditTotals {
    /// Clients audited.
    pub clients: usize,
    /// Missing calls.
    pub missing: usize,
    /// Unused declared targets.
    pub unused: usize,
    /// Covered declared targets.
    pub covered: usize,
}

/// The whole audit, clients sorted by (namespace, name).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    /// One entry per client in scope that is declared or observed.
    pub clients: Vec<ClientAudit>,
}

impl AuditReport {
    /// Drops missing calls to the cluster DNS ([`Edge::is_cluster_dns`]): the operator's
    /// policies never block them, so declaring them is not needed. A client with no
    /// ClientIntents left with nothing missing is dropped too. Declared DNS targets stay
    /// covered (or unused).
    pub fn without_cluster_dns(mut self) -> Self {
        for c in &mut self.clients {
            c.missing.retain(|e| !e.is_cluster_dns());
        }
        self.clients.retain(|c| !(c.sources.is_empty() && c.missing.is_empty()));
        self
    }

    /// Totals over every client.
    pub fn totals(&self) -> AuditTotals {
        let mut t = AuditTotals { clients: self.clients.len(), ..AuditTotals::default() };
        for c in &self.clients {
            t.missing += c.missing.len();
            t.unused += c.unused.len();
            t.covered += c.covered.len();
        }
        t
    }
}

/// Compares `declared` with `observed` for the clients in `scope`. Observations whose last
/// sighting is before `window_start_ms` are outside the window: they cannot make a call missing
/// or a target covered, but they date an unused target's last use.
pub fn audit(declared: &[DeclaredDoc], observed: &[Edge], scope: &AuditScope, window_start_ms: i64) -> AuditReport {
    let mut auditor = Auditor::new(declared, scope, window_start_ms);
    auditor.observe(observed);
    auditor.finish()
}

/// The audit a client at a time: [`Auditor::observe`] the edges of one or more clients (all of
/// a client's edges in one call), then [`Auditor::finish`]. The same report as [`audit`] over
/// every edge at once, holding only the clients' results rather than the whole map.
#[derive(Debug)]
pub struct Auditor<'a> {
    scope: AuditScope,
    window_start_ms: i64,
    /// Declared documents by client (namespace, name), in input order.
    declared_by_client: BTreeMap<(Arc<str>, Arc<str>), Vec<&'a DeclaredDoc>>,
    /// Declarations an observed client has taken; the others are of clients never observed.
    claimed: BTreeSet<(Arc<str>, Arc<str>)>,
    clients: Vec<ClientAudit>,
}

impl<'a> Auditor<'a> {
    /// An audit of `declared` for the clients in `scope` (see [`audit`] for the window).
    pub fn new(declared: &'a [DeclaredDoc], scope: &AuditScope, window_start_ms: i64) -> Self {
        let scope = scope.resolved(declared);
        let mut declared_by_client: BTreeMap<(Arc<str>, Arc<str>), Vec<&DeclaredDoc>> = BTreeMap::new();
        for d in declared {
            let client = d.doc.client("");
            if scope.includes(&client) {
                declared_by_client.entry((client.namespace, client.name)).or_default().push(d);
            }
        }
        Self { scope, window_start_ms, declared_by_client, claimed: BTreeSet::new(), clients: Vec::new() }
    }

    /// Audits the clients of `observed`, each of which has all its edges here.
    pub fn observe(&mut self, observed: &[Edge]) {
        let mut observed_by_client: BTreeMap<&Workload, Vec<&Edge>> = BTreeMap::new();
        for e in observed.iter().filter(|e| self.scope.includes(&e.client)) {
            observed_by_client.entry(&e.client).or_default().push(e);
        }
        for (client, edges) in &observed_by_client {
            let key = (client.namespace.clone(), client.name.clone());
            let docs: Vec<&DeclaredDoc> = self
                .declared_by_client
                .get(&key)
                .map(|docs| docs.iter().copied().filter(|d| same_kind(d.doc.client_kind.as_deref(), client)).collect())
                .unwrap_or_default();
            if !docs.is_empty() {
                self.claimed.insert(key);
            }
            self.clients.push(audit_client((*client).clone(), &docs, edges, self.window_start_ms, true));
        }
    }

    /// The report: the observed clients, and the declared ones never observed.
    pub fn finish(mut self) -> AuditReport {
        for (key, docs) in &self.declared_by_client {
            if self.claimed.contains(key) {
                continue;
            }
            let (namespace, name) = key;
            let kind = docs.iter().find_map(|d| d.doc.client_kind.as_deref());
            let client = Workload::with_kind(name.clone(), namespace.clone(), kind);
            self.clients.push(audit_client(client, docs, &[], self.window_start_ms, false));
        }
        let mut clients = self.clients;
        clients.sort_by(|a, b| {
            (&a.client.namespace, &a.client.name, &a.client.kind).cmp(&(
                &b.client.namespace,
                &b.client.name,
                &b.client.kind,
            ))
        });
        AuditReport { clients }
    }
}

/// A declared client kind matches an observed client unless both are known and differ.
fn same_kind(declared: Option<&str>, observed: &Workload) -> bool {
    match (declared, observed.kind.as_deref()) {
        (Some(d), Some(o)) => d.eq_ignore_ascii_case(o),
        _ => true,
    }
}

fn audit_client(
    client: Workload,
    docs: &[&DeclaredDoc],
    edges: &[&Edge],
    window_start_ms: i64,
    observed: bool,
) -> ClientAudit {
    let mut targets: Vec<Target> = Vec::new();
    for d in docs {
        for t in &d.doc.targets {
            let t = canonical(t, &client.namespace);
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
    }
    let (in_window, before): (Vec<&Edge>, Vec<&Edge>) = edges.iter().partition(|e| e.last_seen_ms >= window_start_ms);
    let ns: &str = &client.namespace;
    // One pass over (call, target): the calls each target covers, and what no target covers.
    let mut hits: Vec<Vec<Edge>> = vec![Vec::new(); targets.len()];
    let mut missing = Vec::new();
    for e in &in_window {
        let mut uncovered: Vec<Port> = e.ports.clone();
        let mut allowed_at_all = false;
        for (target, hits) in targets.iter().zip(&mut hits) {
            if !covers_call(target, ns, e) {
                continue;
            }
            allowed_at_all = true;
            let allowed = allowed_ports(target, e);
            if !allowed.is_empty() {
                hits.push((*e).clone());
            }
            uncovered.retain(|p| !allowed.contains(p));
        }
        if !uncovered.is_empty() || (e.ports.is_empty() && !allowed_at_all) {
            let mut edge = (*e).clone();
            edge.ports = uncovered;
            missing.push(edge);
        }
    }
    let mut covered = Vec::new();
    let mut unused = Vec::new();
    let mut not_observable = Vec::new();
    for (target, observed) in targets.into_iter().zip(hits) {
        if !observable(&target) {
            not_observable.push(target);
        } else if observed.is_empty() {
            let last_seen_ms = before
                .iter()
                .filter(|e| covers_call(&target, ns, e) && !allowed_ports(&target, e).is_empty())
                .map(|e| e.last_seen_ms)
                .max();
            unused.push(Unused { target, last_seen_ms });
        } else {
            covered.push(Covered { target, observed });
        }
    }
    missing.sort_by_cached_key(|e| call_key(&e.server));
    ClientAudit {
        client,
        sources: docs.iter().map(|d| d.source.clone()).collect(),
        missing,
        unused,
        covered,
        not_observable,
        observed,
    }
}

fn call_key(t: &Target) -> (String, String, String) {
    let (name, ns) = t.server_name_and_namespace("");
    (ns, name, format!("{t:?}"))
}

/// The target as the operator reads it for a client in `client_ns`: the namespace written
/// out, and the API server under any of its spellings as [`Target::ApiServer`].
fn canonical(t: &Target, client_ns: &str) -> Target {
    let ns = |ns: &Option<String>| Some(ns.clone().unwrap_or_else(|| client_ns.to_owned()));
    match t {
        Target::Service(s)
            if s.name == API_SERVER_NAME
                && ns(&s.namespace).as_deref() == Some(API_SERVER_NAMESPACE)
                && s.http.is_empty() =>
        {
            Target::ApiServer
        }
        Target::Service(s) => Target::Service(ServiceTarget { namespace: ns(&s.namespace), ..s.clone() }),
        Target::Workload(w) => Target::Workload(WorkloadTarget { namespace: ns(&w.namespace), ..w.clone() }),
        other => other.clone(),
    }
}

fn observable(t: &Target) -> bool {
    match t {
        Target::Other(o) => o.kind == OtherKind::Kafka,
        _ => true,
    }
}

/// Whether `target`, declared by a client in `client_ns`, allows the call `e` (any port).
fn covers_call(target: &Target, client_ns: &str, e: &Edge) -> bool {
    let server_is = |name: &str, namespace: &str, kind: Option<&str>| match &e.server {
        Target::Workload(w) => {
            w.name == name
                && w.namespace.as_deref().unwrap_or(&e.client.namespace) == namespace
                && match (kind, w.kind.as_deref()) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => true,
                }
        }
        _ => false,
    };
    match target {
        Target::Workload(w) => server_is(&w.name, w.namespace.as_deref().unwrap_or(client_ns), w.kind.as_deref()),
        Target::Service(s) => {
            let ns = s.namespace.as_deref().unwrap_or(client_ns);
            e.via_services.iter().any(|v| v.name == s.name && v.namespace == ns)
                || matches!(&e.server, Target::Service(o)
                    if o.name == s.name && o.namespace.as_deref().unwrap_or(&e.client.namespace) == ns)
        }
        Target::ApiServer => match &e.server {
            Target::ApiServer => true,
            Target::Service(o) => {
                o.name == API_SERVER_NAME
                    && o.namespace.as_deref().unwrap_or(&e.client.namespace) == API_SERVER_NAMESPACE
            }
            _ => false,
        },
        Target::Internet(i) => match &e.server {
            Target::Internet(o) => internet_matches(i, o),
            _ => false,
        },
        Target::Other(o) if o.kind == OtherKind::Kafka => {
            match o.body.get("name").and_then(serde_json::Value::as_str).map(|n| n.split_once('.')) {
                Some(Some((name, ns))) => server_is(name, ns, None),
                Some(None) => {
                    let name = o.body.get("name").and_then(serde_json::Value::as_str).unwrap_or_default();
                    server_is(name, client_ns, None)
                }
                None => false,
            }
        }
        Target::Other(_) => false,
    }
}

/// The ports of the call `e` that `target`, which [covers it](covers_call), allows: all of them
/// for every target but an internet target with ports.
fn allowed_ports(target: &Target, e: &Edge) -> Vec<Port> {
    match target {
        Target::Internet(i) if !i.ports.is_empty() => {
            e.ports.iter().filter(|p| i.ports.contains(&p.port)).copied().collect()
        }
        _ => e.ports.clone(),
    }
}

/// An observed destination (one address, the names clients resolved to it) against a declared
/// internet target (addresses or CIDRs, names with optional `*.` wildcards).
fn internet_matches(declared: &Internet, seen: &Internet) -> bool {
    let ip_hit = seen.ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()).any(|ip| {
        declared.ips.iter().any(|d| match d.parse::<ipnet::IpNet>() {
            Ok(net) => net.contains(&ip),
            Err(_) => d.parse::<IpAddr>().is_ok_and(|d| d == ip),
        })
    });
    let name_hit = seen.domains.iter().any(|name| declared.domains.iter().any(|d| domain_matches(d, name)));
    ip_hit || name_hit
}

/// `*.example.com` matches any name below example.com (not example.com itself); other patterns
/// match exactly. Case and a trailing dot do not matter.
pub fn domain_matches(pattern: &str, name: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let (pattern, name) = (norm(pattern), norm(name));
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.len() > suffix.len() + 1 && name.ends_with(&format!(".{suffix}")),
        None => pattern == name,
    }
}

/// What to add to the declared ClientIntents so that every missing call is covered: for each
/// client with missing calls, its first declared document with the missing targets appended
/// (shaped as `mapper export` shapes them), in that document's version; for a client with no
/// ClientIntents, a new document in `new_version`.
pub fn amend(
    report: &AuditReport,
    declared: &[DeclaredDoc],
    new_version: IntentsVersion,
) -> Vec<(ClientIntentsDoc, IntentsVersion)> {
    let mut out = Vec::new();
    for client in report.clients.iter().filter(|c| !c.missing.is_empty()) {
        let shaped = intents_from_edges(&client.missing, &ExportOptions::default());
        let additions: Vec<Target> = shaped.into_iter().flat_map(|d| d.targets).collect();
        let first = declared.iter().find(|d| {
            let c = d.doc.client("");
            c.name == client.client.name
                && c.namespace == client.client.namespace
                && same_kind(d.doc.client_kind.as_deref(), &client.client)
        });
        match first {
            Some(d) => {
                let mut doc = d.doc.clone();
                for t in additions {
                    if !doc.targets.contains(&t) {
                        doc.targets.push(t);
                    }
                }
                out.push((doc, d.version));
            }
            None => {
                let doc = ClientIntentsDoc {
                    name: client.client.name.to_string(),
                    namespace: Some(client.client.namespace.to_string()),
                    client_name: client.client.name.to_string(),
                    client_kind: client.client.kind().map(str::to_owned),
                    targets: additions,
                };
                out.push((doc, new_version));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
