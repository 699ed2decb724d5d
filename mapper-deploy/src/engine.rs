//! `helm template` without helm: values coalesced, every template file executed with `.Values`,
//! `.Release`, `.Chart` and `.Template`, the output split into YAML documents, ordered as helm
//! installs them.
//!
//! One difference on purpose: helm prints a missing value as an empty string, this renderer
//! fails (as `helm lint --strict` does), so a misspelt value is an error, not a blank field.

use std::collections::HashMap;
use std::rc::Rc;

use gtmpl_ng::{Context, Value};

use crate::chart::{Chart, ChartError};
use crate::funcs::{self, SourcesGuard};
use crate::values::{self, ValuesError};

/// The release a chart is rendered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
}

/// Why a chart could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error(transparent)]
    Values(#[from] ValuesError),
    #[error("{template}: {message}")]
    Template { template: String, message: String },
    #[error("{template}, line {line}: a value the template reads is missing ({found})")]
    MissingValue { template: String, line: usize, found: &'static str },
    #[error("{template}, document {index}: not valid YAML")]
    Document {
        template: String,
        index: usize,
        #[source]
        source: mapper_intents::stream::YamlError,
    },
    #[error("{template}, document {index}: not a Kubernetes object (no apiVersion, kind and metadata.name)")]
    NotAnObject { template: String, index: usize },
}

/// One rendered Kubernetes object: its text as the template produced it, and parsed.
#[derive(Debug, Clone)]
pub struct Document {
    /// The template it came from (`mapper/templates/agent-daemonset.yaml`).
    pub source: String,
    pub kind: String,
    pub name: String,
    pub text: String,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Rendered {
    /// In helm's install order.
    pub documents: Vec<Document>,
    /// NOTES.txt, rendered.
    pub notes: Option<String>,
}

impl Rendered {
    /// The documents as `helm template` prints them.
    pub fn to_yaml_stream(&self) -> String {
        let mut out = String::new();
        for doc in &self.documents {
            out.push_str("---\n# Source: ");
            out.push_str(&doc.source);
            out.push('\n');
            out.push_str(&doc.text);
            out.push('\n');
        }
        out
    }
}

/// Helm's install order (pkg/release/util/kind_sorter.go), for the kinds a chart like this has.
const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

fn install_rank(kind: &str) -> usize {
    INSTALL_ORDER.iter().position(|k| *k == kind).unwrap_or(INSTALL_ORDER.len())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<HashMap<_, _>>())
}

/// The chart rendered for `release` with `overlays` (like `-f` files, in order) over its defaults.
pub fn render(chart: &Chart, release: &Release, overlays: &[serde_json::Value]) -> Result<Rendered, RenderError> {
    let mut values = chart.values.clone();
    for overlay in overlays {
        values::coalesce(&mut values, overlay.clone());
    }
    let values = values::to_template_value(&values, "")?;
    let chart_value = map(vec![
        ("Name", chart.meta.name.clone().into()),
        ("Version", chart.meta.version.clone().into()),
        ("AppVersion", chart.meta.app_version.clone().into()),
    ]);
    let release_value = map(vec![
        ("Name", release.name.clone().into()),
        ("Namespace", release.namespace.clone().into()),
        ("Service", "Helm".into()),
        ("IsInstall", true.into()),
        ("IsUpgrade", false.into()),
        ("Revision", 1i64.into()),
    ]);

    let sources: funcs::Sources = Rc::new(chart.templates.iter().map(|t| (t.name.clone(), t.text.clone())).collect());
    let _guard = SourcesGuard::install(sources.clone());

    let mut documents = Vec::new();
    let mut notes = None;
    for file in chart.templates.iter().filter(|t| !t.is_partial()) {
        let fail = |message: String| RenderError::Template { template: file.name.clone(), message };
        let tmpl = funcs::template(&file.name, &sources).map_err(|e| fail(e.to_string()))?;
        let dot = map(vec![
            ("Values", values.clone()),
            ("Release", release_value.clone()),
            ("Chart", chart_value.clone()),
            (
                "Template",
                map(vec![
                    ("Name", file.name.clone().into()),
                    ("BasePath", format!("{}/templates", chart.meta.name).into()),
                ]),
            ),
        ]);
        let text = tmpl.render(&Context::from(dot)).map_err(|e| fail(e.to_string()))?;
        check_no_missing_value(&file.name, &text)?;
        if file.is_notes() {
            notes = Some(text);
        } else {
            documents.extend(split(&file.name, &text)?);
        }
    }
    // Helm's order: known kinds by rank, unknown kinds last and by name; stable, so documents of
    // one kind keep their template order.
    documents.sort_by_key(|d| match install_rank(&d.kind) {
        rank if rank == INSTALL_ORDER.len() => (rank, d.kind.clone()),
        rank => (rank, String::new()),
    });
    Ok(Rendered { documents, notes })
}

/// Go prints a missing map key as `<no value>` and a nil as `<nil>`; helm blanks the first.
fn check_no_missing_value(template: &str, text: &str) -> Result<(), RenderError> {
    for found in ["<no value>", "<nil>"] {
        if let Some(at) = text.find(found) {
            let line = text[..at].matches('\n').count() + 1;
            return Err(RenderError::MissingValue { template: template.to_owned(), line, found });
        }
    }
    Ok(())
}

/// A rendered file split at `---` lines; blank documents dropped, as helm drops them.
fn split(template: &str, text: &str) -> Result<Vec<Document>, RenderError> {
    let mut chunks = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            chunks.push(String::new());
        } else if let Some(chunk) = chunks.last_mut() {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    let mut out = Vec::new();
    for (index, chunk) in chunks.into_iter().enumerate() {
        if chunk.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = mapper_intents::stream::from_str(&chunk)
            .map_err(|source| RenderError::Document { template: template.to_owned(), index, source })?;
        let field = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
        let kind = field(&value, "kind");
        let name = value.get("metadata").and_then(|m| field(m, "name"));
        let (Some(kind), Some(name), Some(_)) = (kind, name, field(&value, "apiVersion")) else {
            return Err(RenderError::NotAnObject { template: template.to_owned(), index });
        };
        let text = chunk.trim_matches('\n').to_owned();
        out.push(Document { source: template.to_owned(), kind, name, text, value });
    }
    Ok(out)
}
