//! What the page asks the dashboard process for besides the map: a workload's ClientIntents,
//! rendered by `mapper export`'s code, and the audit overlay, decided by `mapper audit`'s
//! implementation (mapper-intents' audit) over the same edges the page shows.

use std::collections::BTreeMap;

use clap::Parser;
use mapper_intents::audit::{AuditScope, DeclaredDoc};
use mapper_intents::{IntentsVersion, Workload};
use serde::{Deserialize, Serialize};

use super::map::{edge_id, peer_id, target_id, workload_id};
use crate::declared::{self, ReadError};
use crate::edges::{ObservedEdge, Peer};
use crate::export::{self, ExportArgs, OutputVersion};

/// A request the page made that cannot be answered (400, with this as the message).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter is missing or wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The declared files could not be read.
    #[error(transparent)]
    Declared(#[from] ReadError),
    /// The documents could not be rendered.
    #[error(transparent)]
    Export(#[from] export::ExportError),
}

/// `mapper export`'s flags, parsed as `mapper export` parses them: the dashboard renders
/// with export's defaults (established calls only, no cluster DNS, internet targets kept).
#[derive(Debug, Parser)]
struct ExportFlags {
    #[command(flatten)]
    args: ExportArgs,
}

/// The ClientIntents of one client as `mapper export --output-version VERSION` writes them.
#[derive(Debug, Serialize)]
pub struct Intents {
    /// The YAML (empty when nothing would be exported).
    pub yaml: String,
    /// How many documents.
    pub documents: usize,
    /// Internet targets left out (v1alpha2 cannot express them).
    pub dropped_internet: usize,
    /// The file name `export --output-type dir` would give it.
    pub file_name: String,
}

/// The ClientIntents `mapper export` writes for the client whose node id is `client`, from the
/// edges of the current map.
pub fn intents(edges: &[ObservedEdge], client: &str, version: &str) -> Result<Intents, ApiError> {
    let flags = ExportFlags::try_parse_from(["export", "--output-version", version])
        .map_err(|_| ApiError::BadRequest(format!("unknown ClientIntents version {version:?}")))?;
    let mine: Vec<ObservedEdge> = edges.iter().filter(|e| peer_id(&e.client) == client).cloned().collect();
    if mine.is_empty() || !matches!(mine[0].client, Peer::Workload(_)) {
        return Err(ApiError::BadRequest(format!("{client} is not a client workload of the map")));
    }
    let version: IntentsVersion = flags.args.output_version.into();
    let mut docs: Vec<_> = export::documents(&mine, &flags.args).into_iter().map(|d| (d, version)).collect();
    let file_name = docs.first().map(|(d, _)| mapper_intents::file_name(d)).unwrap_or_default();
    let dropped_internet = export::drop_inexpressible(&mut docs);
    let yaml = if docs.is_empty() { String::new() } else { export::render(&docs, export::Format::Yaml)? };
    Ok(Intents { yaml, documents: docs.len(), dropped_internet, file_name })
}

/// The versions the page offers, newest first (the default of `mapper export` first).
pub fn versions() -> Vec<String> {
    use clap::ValueEnum;
    let mut names: Vec<String> = OutputVersion::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
        .collect();
    names.reverse();
    names
}

/// One declared file the page uploaded.
#[derive(Debug, Deserialize)]
pub struct UploadedFile {
    /// Its name, as the user's file picker gave it.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// The audit the page asks for.
#[derive(Debug, Deserialize)]
pub struct AuditRequest {
    /// Declared ClientIntents files.
    #[serde(default)]
    pub files: Vec<UploadedFile>,
    /// Read them from the cluster instead.
    #[serde(default)]
    pub from_cluster: bool,
    /// The namespace of documents without one (as `mapper audit -n NS`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The window: calls last seen before this (Unix ms) are not observed.
    #[serde(default)]
    pub since_ms: Option<i64>,
}

/// A declared target not observed in the window.
#[derive(Debug, Serialize)]
pub struct UnusedView {
    /// The client's node.
    pub client: String,
    /// The target as `mapper audit` writes it (`telemetry.team4`, `svc:ledger.team3`).
    pub target: String,
    /// The map's node it names, when the map has one.
    pub node: Option<String>,
    /// The namespace the target is in, for a node the map lacks.
    pub namespace: Option<String>,
    /// The last call it covered before the window, if any.
    pub last_seen_ms: Option<i64>,
}

/// One client of the audit.
#[derive(Debug, Serialize)]
pub struct ClientView {
    /// The client's node.
    pub client: String,
    /// `name.namespace`.
    pub name: String,
    /// Where its ClientIntents were read.
    pub declared_in: Vec<String>,
    /// Targets, as `mapper audit` writes them.
    pub missing: Vec<String>,
    /// Targets.
    pub covered: Vec<String>,
    /// Targets.
    pub unused: Vec<String>,
}

/// The audit overlay.
#[derive(Debug, Serialize)]
pub struct AuditView {
    /// ClientIntents read.
    pub declared: usize,
    /// Documents skipped that look like ClientIntents, and the like.
    pub warnings: Vec<String>,
    /// Per edge id: `MISSING` or `COVERED`.
    pub edges: BTreeMap<String, &'static str>,
    /// Declared targets not observed.
    pub unused: Vec<UnusedView>,
    /// Per client.
    pub clients: Vec<ClientView>,
    /// Totals: clients, missing, unused, covered.
    pub summary: BTreeMap<&'static str, usize>,
}

/// Reads the uploaded files as `mapper audit --declared` reads files.
pub fn read_uploaded(request: &AuditRequest) -> Result<(Vec<DeclaredDoc>, Vec<String>), ApiError> {
    let mut docs = Vec::new();
    let mut warnings = Vec::new();
    for file in &request.files {
        let (read, warned) = declared::read_text_reporting(&file.text, &file.name, "dashboard audit")?;
        docs.extend(read);
        warnings.extend(warned);
    }
    Ok((docs, warnings))
}

/// The audit of `declared` against the map's `edges`: `mapper audit`'s decision (mapper-intents'
/// audit, cluster DNS left out as by default), laid onto the map's edge ids.
pub fn audit(
    edges: &[ObservedEdge],
    mut declared: Vec<DeclaredDoc>,
    warnings: Vec<String>,
    namespace: Option<&str>,
    since_ms: Option<i64>,
) -> Result<AuditView, ApiError> {
    declared::fill_namespaces(&mut declared, namespace.filter(|n| !n.is_empty())).map_err(|e| match e {
        // The CLI's hint names -n; the page has a field for it.
        ReadError::NoNamespace { origin, name } => ApiError::BadRequest(format!(
            "{origin}: ClientIntents {name} has no metadata.namespace: give the namespace it is applied to in the \
             audit's namespace field"
        )),
        e => ApiError::from(e),
    })?;
    let observed: Vec<mapper_intents::Edge> = edges.iter().filter_map(ObservedEdge::to_intents_edge).collect();
    let report =
        mapper_intents::audit::audit(&declared, &observed, &AuditScope::default(), since_ms.unwrap_or(i64::MIN))
            .without_cluster_dns();
    let nodes: Vec<String> = edges.iter().flat_map(|e| [peer_id(&e.client), peer_id(&e.server)]).collect();
    let find_node = |client: &Workload, target: &mapper_intents::Target| -> Option<String> {
        let id = target_id(client, target)?;
        if nodes.contains(&id) {
            return Some(id);
        }
        // A declared workload target names no kind: any kind of that name and namespace.
        let prefix = id.strip_suffix("/-")?;
        nodes.iter().find(|n| n.rsplit_once('/').is_some_and(|(p, _)| p == prefix)).cloned()
    };
    let mut view = AuditView {
        declared: declared.len(),
        warnings,
        edges: BTreeMap::new(),
        unused: Vec::new(),
        clients: Vec::new(),
        summary: BTreeMap::new(),
    };
    for c in &report.clients {
        let client = workload_id(&c.client);
        for e in &c.missing {
            if let Some(server) = target_id(&c.client, &e.server) {
                view.edges.insert(edge_id(&client, &server), "MISSING");
            }
        }
        for covered in &c.covered {
            for e in &covered.observed {
                if let Some(server) = target_id(&c.client, &e.server) {
                    view.edges.insert(edge_id(&client, &server), "COVERED");
                }
            }
        }
        for u in &c.unused {
            let namespace = match &u.target {
                mapper_intents::Target::Workload(w) => {
                    Some(w.namespace.clone().unwrap_or(c.client.namespace.to_string()))
                }
                mapper_intents::Target::Service(s) => {
                    Some(s.namespace.clone().unwrap_or(c.client.namespace.to_string()))
                }
                _ => None,
            };
            view.unused.push(UnusedView {
                client: client.clone(),
                target: crate::audit::target_text(&u.target),
                node: find_node(&c.client, &u.target),
                namespace,
                last_seen_ms: u.last_seen_ms,
            });
        }
        view.clients.push(ClientView {
            client: client.clone(),
            name: format!("{}.{}", c.client.name, c.client.namespace),
            declared_in: c.sources.clone(),
            missing: c.missing.iter().map(|e| crate::audit::target_text(&e.server)).collect(),
            covered: c.covered.iter().map(|t| crate::audit::target_text(&t.target)).collect(),
            unused: c.unused.iter().map(|u| crate::audit::target_text(&u.target)).collect(),
        });
    }
    let totals = report.totals();
    view.summary = BTreeMap::from([
        ("clients", totals.clients),
        ("missing", totals.missing),
        ("unused", totals.unused),
        ("covered", totals.covered),
    ]);
    Ok(view)
}

#[cfg(test)]
mod tests {
    use mapper_intents::{Port, Protocol, ServiceName};

    use super::*;

    fn seed() -> Vec<ObservedEdge> {
        let call = |client: &str, ns: &str| ObservedEdge {
            client: Peer::Workload(Workload::new(client, ns, "Deployment")),
            server: Peer::Workload(Workload::new("ledger", "team3", "Deployment")),
            dns_names: Vec::new(),
            client_labels: Vec::new(),
            ports: vec![Port { port: 8080, protocol: Protocol::Tcp }],
            established: 5,
            failed: 0,
            first_seen_ms: 1_000,
            last_seen_ms: 2_000,
            seen_by_client: true,
            seen_by_server: true,
            via_services: vec![ServiceName { name: "ledger".into(), namespace: "team3".into() }],
            client_release: None,
            server_release: None,
        };
        vec![call("transaction-service", "team1"), call("some-other-transaction-service", "team2")]
    }

    const CHART: &str = "apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata:\n  name: \
                         transaction-service\n  namespace: team1\nspec:\n  service:\n    name: \
                         transaction-service\n  calls:\n    - name: telemetry.team4\n";

    #[test]
    fn the_audit_story_marks_ledger_missing_and_telemetry_unused() {
        let request = AuditRequest {
            files: vec![UploadedFile { name: "clientintents.yaml".into(), text: CHART.into() }],
            from_cluster: false,
            namespace: None,
            since_ms: None,
        };
        let (docs, warnings) = read_uploaded(&request).unwrap_or_else(|e| panic!("{e}"));
        let view = audit(&seed(), docs, warnings, None, None).unwrap_or_else(|e| panic!("{e}"));
        let ledger = "w/team1/transaction-service/Deployment|w/team3/ledger/Deployment";
        assert_eq!(view.edges.get(ledger), Some(&"MISSING"), "{view:?}");
        assert_eq!(view.edges.len(), 1, "team2 is not in the declared namespaces: {view:?}");
        assert_eq!(view.unused.len(), 1);
        assert_eq!(view.unused[0].target, "telemetry.team4");
        assert_eq!(view.unused[0].node, None);
        assert_eq!(view.unused[0].namespace.as_deref(), Some("team4"));
        assert_eq!(view.summary.get("missing"), Some(&1));
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it() {
        let request = AuditRequest {
            files: vec![UploadedFile { name: "broken.yaml".into(), text: "kind: ClientIntents\n  : [".into() }],
            from_cluster: false,
            namespace: None,
            since_ms: None,
        };
        let err = read_uploaded(&request).err().map(|e| mapper_intents::error_chain(&e)).unwrap_or_default();
        assert!(err.contains("broken.yaml"), "{err}");
    }

    #[test]
    fn a_document_without_a_namespace_takes_the_one_given_or_says_where_to_give_it() {
        let text = CHART.replace("  namespace: team1\n", "");
        let request = AuditRequest {
            files: vec![UploadedFile { name: "no-ns.yaml".into(), text }],
            from_cluster: false,
            namespace: None,
            since_ms: None,
        };
        let (docs, warnings) = read_uploaded(&request).unwrap_or_else(|e| panic!("{e}"));
        let err = audit(&seed(), docs.clone(), warnings.clone(), None, None).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("no-ns.yaml") && err.contains("namespace field"), "{err}");
        let view = audit(&seed(), docs, warnings, Some("team1"), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(view.summary.get("missing"), Some(&1), "{view:?}");
    }

    #[test]
    fn intents_are_rendered_by_export_in_the_version_asked_for() {
        let edges = seed();
        let client = "w/team1/transaction-service/Deployment";
        let out = intents(&edges, client, "v1alpha2").unwrap_or_else(|e| panic!("{e}"));
        assert!(out.yaml.starts_with("apiVersion: k8s.otterize.com/v1alpha2\n"), "{}", out.yaml);
        assert!(out.yaml.contains("ledger.team3"), "{}", out.yaml);
        let v2 = intents(&edges, client, "v2beta1").unwrap_or_else(|e| panic!("{e}"));
        assert!(v2.yaml.starts_with("apiVersion: k8s.otterize.com/v2beta1\n"), "{}", v2.yaml);
        assert!(intents(&edges, client, "v9").is_err());
        assert!(intents(&edges, "w/team3/ledger/Deployment", "v2beta1").is_err(), "ledger calls nobody");
        assert_eq!(versions().first().map(String::as_str), Some("v2beta1"));
    }
}
