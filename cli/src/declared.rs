//! Reading declared ClientIntents: files, directories (their .yaml, .yml and .json files), `-`
//! for stdin, or the ClientIntents objects in the cluster. Every object is read before anything
//! is reported, and a bad one fails the whole read with its file, document and field. A
//! document skipped although it looks meant as ClientIntents (`kind: ClientIntent`) gets a
//! warning on stderr, and a read of files ends by saying how many objects it found in how many.

use std::io::Read;
use std::path::{Path, PathBuf};

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::discovery::{self, ApiGroup};
use kube::error::DiscoveryError;
use mapper_intents::netpol::{Policy, PolicyReadError, read_policies};
use mapper_intents::walk::Walk;
use mapper_intents::{IntentsVersion, ParseError, audit::DeclaredDoc, versions};

use crate::connect::{short_reason, tidy};
use crate::portforward::KubeClientError;

/// Why declared ClientIntents could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// A file is not valid ClientIntents (the message names file, document and field).
    #[error(transparent)]
    Parse(Box<ParseError>),
    /// A file is a Helm template, which is YAML only once rendered.
    #[error(
        "{source_name} is an unrendered Helm template (it has `{{{{ … }}}}`); render the chart first: helm template \
         CHART | mapper {verb} -"
    )]
    Template {
        /// The file.
        source_name: String,
        /// The command to suggest (`audit --declared`, `policy -f`).
        verb: &'static str,
        /// The YAML error.
        #[source]
        error: Box<ParseError>,
    },
    /// A ClientIntents object names no namespace and no single -n says where it is applied.
    #[error(
        "{origin}: ClientIntents {name} has no metadata.namespace; give the namespace it is applied to with exactly one \
         -n NAMESPACE"
    )]
    NoNamespace {
        /// Where it was read.
        origin: String,
        /// `metadata.name`.
        name: String,
    },
    /// A NetworkPolicy does not fit its schema.
    #[error(transparent)]
    Policy(Box<PolicyReadError>),
    /// A NetworkPolicy names no namespace and no single -n says where it is applied.
    #[error(
        "{origin}: NetworkPolicy {name} has no metadata.namespace; give the namespace it is applied to with exactly one \
         -n NAMESPACE"
    )]
    PolicyNoNamespace {
        /// Where it was read.
        origin: String,
        /// `metadata.name`.
        name: String,
    },
    /// No Kubernetes client for `--from-cluster`.
    #[error("cannot read ClientIntents from the cluster: {reason}", reason = tidy(&error.to_string()))]
    ClusterConfig {
        /// Why the configuration could not be loaded or used.
        #[source]
        error: KubeClientError,
    },
    /// The API server refused a request (its Status; the message is the server's own words).
    #[error("cannot read ClientIntents from the cluster: {action}: {message}")]
    ClusterRefused {
        /// What was asked (`listing k8s.otterize.com/v2beta1 in namespace team1`).
        action: String,
        /// The API server's message.
        message: String,
    },
    /// A request to the API server failed without an answer from it.
    #[error("cannot read ClientIntents from the cluster: {action} ({reason})", reason = short_reason(error))]
    ClusterUnreachable {
        /// What was asked.
        action: String,
        /// The client's error (the message names its innermost cause).
        #[source]
        error: kube::Error,
    },
    /// The API serves no ClientIntents (no k8s.otterize.com group, or none of its versions
    /// has ClientIntents that mapper reads).
    #[error(
        "cannot read ClientIntents from the cluster: the API serves no k8s.otterize.com ClientIntents version mapper \
         reads (is the Otterize intents operator's ClientIntents CRD installed?)"
    )]
    NotInstalled,
    /// An object as the API sent it could not be turned back into JSON to be read.
    #[error("cannot read ClientIntents from the cluster: cannot re-encode {name}")]
    Encode {
        /// The object (`clientintents/NAME in namespace NS`).
        name: String,
        /// The JSON error.
        #[source]
        error: serde_json::Error,
    },
}

/// A failed request to the API server as a [`ReadError`]: the server's message, or the cause
/// when it did not answer.
fn cluster_error(action: String, error: kube::Error) -> ReadError {
    match error {
        kube::Error::Api(status) => ReadError::ClusterRefused { action, message: status.message },
        error => ReadError::ClusterUnreachable { action, error },
    }
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |error| ReadError::Read { path: path.to_owned(), error }
}

fn is_manifest(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// The files a path stands for, directories expanded in name order (hidden entries included,
/// `.yaml`/`.yml`/`.json` exactly).
fn expand(path: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    if path.as_os_str() == "-" || !path.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let walk = Walk { take: is_manifest, max_depth: if recursive { usize::MAX } else { 0 }, skip_hidden: false };
    out.extend(walk.files(path).map_err(|e| ReadError::Read { path: e.path, error: e.error })?);
    Ok(())
}

/// Reads every ClientIntents object in `paths`, in order; `verb` names the command in the hint
/// given for an unrendered Helm template.
pub fn read_paths(paths: &[PathBuf], recursive: bool, verb: &'static str) -> Result<Vec<DeclaredDoc>, ReadError> {
    Ok(read_paths_with(paths, recursive, verb, false)?.0)
}

/// [`read_paths`], also reading the `networking.k8s.io/v1` NetworkPolicies of the same texts.
pub fn read_paths_and_policies(
    paths: &[PathBuf],
    recursive: bool,
    verb: &'static str,
) -> Result<(Vec<DeclaredDoc>, Vec<Policy>), ReadError> {
    read_paths_with(paths, recursive, verb, true)
}

fn read_paths_with(
    paths: &[PathBuf],
    recursive: bool,
    verb: &'static str,
    with_policies: bool,
) -> Result<(Vec<DeclaredDoc>, Vec<Policy>), ReadError> {
    let mut files = Vec::new();
    for path in paths {
        expand(path, recursive, &mut files)?;
    }
    let mut docs = Vec::new();
    let mut policies = Vec::new();
    for file in &files {
        let (text, name) = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(read_error(file))?;
            (text, "<stdin>".to_owned())
        } else {
            (std::fs::read_to_string(file).map_err(read_error(file))?, file.display().to_string())
        };
        docs.extend(read_text(&text, &name, verb)?);
        if with_policies {
            policies.extend(read_policies(&text, &name).map_err(|e| ReadError::Policy(Box::new(e)))?);
        }
    }
    if policies.is_empty() {
        eprintln!("{}", summary(docs.len(), files.len()));
    } else {
        eprintln!("{} and {} NetworkPolicies", summary(docs.len(), files.len()), policies.len());
    }
    Ok((docs, policies))
}

/// Gives every NetworkPolicy without a namespace `default_namespace`, or fails naming the
/// first such policy when there is none.
pub fn fill_policy_namespaces(policies: &mut [Policy], default_namespace: Option<&str>) -> Result<(), ReadError> {
    for p in policies.iter_mut().filter(|p| p.namespace.is_none()) {
        match default_namespace {
            Some(ns) => p.namespace = Some(ns.to_owned()),
            None => {
                return Err(ReadError::PolicyNoNamespace { origin: p.source.clone(), name: p.name.clone() });
            }
        }
    }
    Ok(())
}

/// `Read 3 declared ClientIntents from 2 files`.
fn summary(docs: usize, files: usize) -> String {
    format!("Read {docs} declared ClientIntents from {files} file{}", if files == 1 { "" } else { "s" })
}

/// Reads every ClientIntents object in one text, warning on stderr about look-alikes skipped.
pub fn read_text(text: &str, source_name: &str, verb: &'static str) -> Result<Vec<DeclaredDoc>, ReadError> {
    let (docs, warnings) = read_text_reporting(text, source_name, verb)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(docs)
}

/// [`read_text`], returning the warnings instead of printing them.
pub fn read_text_reporting(
    text: &str,
    source_name: &str,
    verb: &'static str,
) -> Result<(Vec<DeclaredDoc>, Vec<String>), ReadError> {
    let read = mapper_intents::read_documents(text, source_name).map_err(|error| match error {
        error if text.contains("{{") => {
            ReadError::Template { source_name: source_name.to_owned(), verb, error: Box::new(error) }
        }
        error => ReadError::Parse(Box::new(error)),
    })?;
    let warnings = read.skipped.iter().map(|s| s.message(source_name)).collect();
    let docs = read
        .docs
        .into_iter()
        .map(|p| {
            let place = p.path_prefix.trim_end_matches('.');
            let source = if place.is_empty() {
                format!("{source_name}: document {}", p.document)
            } else {
                format!("{source_name}: document {}: {place}", p.document)
            };
            DeclaredDoc { doc: p.doc, version: p.version, source }
        })
        .collect();
    Ok((docs, warnings))
}

/// Gives every document without a namespace `default_namespace`, or fails naming the first
/// such document when there is none.
pub fn fill_namespaces(docs: &mut [DeclaredDoc], default_namespace: Option<&str>) -> Result<(), ReadError> {
    for d in docs.iter_mut().filter(|d| d.doc.namespace.is_none()) {
        match default_namespace {
            Some(ns) => d.doc.namespace = Some(ns.to_owned()),
            None => return Err(ReadError::NoNamespace { origin: d.source.clone(), name: d.doc.name.clone() }),
        }
    }
    Ok(())
}

/// The ClientIntents resource to list: the version the API server prefers for the group when
/// mapper reads it (the API server converts every stored object to the version asked for), else
/// the most stable served version mapper reads (kube's discovery order).
fn readable_resource(group: &ApiGroup) -> Result<ApiResource, ReadError> {
    let at = |version: &str| {
        let (resource, _) = group.versioned_resources(version).into_iter().find(|(r, _)| r.kind == versions::KIND)?;
        IntentsVersion::from_api_version(&resource.api_version).map(|_| resource)
    };
    let preferred = group.preferred_version_or_latest();
    std::iter::once(preferred)
        .chain(group.versions().filter(|v| *v != preferred))
        .find_map(at)
        .ok_or(ReadError::NotInstalled)
}

/// Reads the ClientIntents objects in the cluster (in `namespaces`, or every namespace), at
/// the version kube's discovery finds the API server prefers.
pub async fn read_cluster(client: kube::Client, namespaces: &[String]) -> Result<Vec<DeclaredDoc>, ReadError> {
    let group = match discovery::group(&client, versions::GROUP).await {
        Ok(group) => group,
        Err(kube::Error::Discovery(DiscoveryError::MissingApiGroup(_) | DiscoveryError::EmptyApiGroup(_))) => {
            return Err(ReadError::NotInstalled);
        }
        Err(error) => return Err(cluster_error(format!("discovering the {} API group", versions::GROUP), error)),
    };
    let resource = readable_resource(&group)?;
    let apis: Vec<(String, Api<DynamicObject>)> = if namespaces.is_empty() {
        vec![("every namespace".to_owned(), Api::all_with(client.clone(), &resource))]
    } else {
        namespaces
            .iter()
            .map(|ns| (format!("namespace {ns}"), Api::namespaced_with(client.clone(), ns, &resource)))
            .collect()
    };
    let mut items = Vec::new();
    for (scope, api) in &apis {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|error| cluster_error(format!("listing {} in {scope}", resource.api_version), error))?;
        items.extend(list.items);
    }
    // Each object as the API sent it, under its own name, so errors name it.
    let mut docs = Vec::new();
    for item in items {
        let name = format!(
            "clientintents/{} in namespace {}",
            item.metadata.name.clone().unwrap_or_default(),
            item.metadata.namespace.clone().unwrap_or_default()
        );
        let encode = |error| ReadError::Encode { name: name.clone(), error };
        let mut value = serde_json::to_value(&item).map_err(encode)?;
        if let Some(object) = value.as_object_mut() {
            // The list's items carry no apiVersion of their own: the one listed at says how to read them.
            object.insert("apiVersion".to_owned(), resource.api_version.clone().into());
            object.insert("kind".to_owned(), versions::KIND.into());
            if let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                meta.retain(|k, _| k == "name" || k == "namespace");
            }
        }
        let text = serde_json::to_string(&value).map_err(encode)?;
        docs.extend(read_text(&text, &name, "audit --declared")?);
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_expand_to_their_manifests_in_order() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        for name in ["b.yaml", "a.yml", "c.json", "notes.txt", "sub/d.yaml"] {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
            }
            std::fs::write(&path, "").unwrap_or_else(|e| panic!("write: {e}"));
        }
        let names = |recursive| {
            let mut out = Vec::new();
            expand(dir.path(), recursive, &mut out).unwrap_or_else(|e| panic!("expand: {e}"));
            out.iter().map(|p| p.strip_prefix(dir.path()).unwrap_or(p).display().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(false), ["a.yml", "b.yaml", "c.json"]);
        assert_eq!(names(true), ["a.yml", "b.yaml", "c.json", "sub/d.yaml"]);
    }

    #[test]
    fn documents_are_named_by_file_and_document_and_keep_their_version() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: k8s.otterize.com/v1alpha2\n\
                    kind: ClientIntents\nmetadata: {name: a}\nspec: {service: {name: a}, calls: [{name: b}]}\n";
        let mut docs = read_text(text, "chart.yaml", "audit --declared").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(docs.len(), 1);
        assert_eq!((docs[0].source.as_str(), docs[0].version), ("chart.yaml: document 2", IntentsVersion::V1Alpha2));
        let err = fill_namespaces(&mut docs, None).expect_err("no namespace");
        assert_eq!(
            err.to_string(),
            "chart.yaml: document 2: ClientIntents a has no metadata.namespace; give the namespace it is applied to \
             with exactly one -n NAMESPACE"
        );
        fill_namespaces(&mut docs, Some("team1")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(docs[0].doc.namespace.as_deref(), Some("team1"));
    }

    #[test]
    fn a_misspelt_kind_is_warned_about_and_a_bom_accepted() {
        let text = "\u{feff}apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata: {name: a}\n\
                    spec: {service: {name: a}}\n---\napiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntent\n\
                    metadata: {name: b}\nspec: {service: {name: b}}\n";
        let (docs, warnings) =
            read_text_reporting(text, "chart.yaml", "audit --declared").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].source, "chart.yaml: document 1");
        assert_eq!(
            warnings,
            ["chart.yaml: document 2: kind `ClientIntent` (apiVersion `k8s.otterize.com/v1alpha2`) is not \
              ClientIntents; skipped (the kind must be exactly `ClientIntents`)"]
        );
        assert_eq!(summary(1, 1), "Read 1 declared ClientIntents from 1 file");
        assert_eq!(summary(0, 2), "Read 0 declared ClientIntents from 2 files");
    }

    #[test]
    fn deep_nesting_fails_naming_the_file() {
        let err = read_text(&"[".repeat(400_000), "deep.yaml", "policy -f").expect_err("too deep");
        assert_eq!(err.to_string(), "deep.yaml: document 1: nested deeper than 128 levels at line 1, column 129");
    }

    #[test]
    fn an_unrendered_template_gets_a_hint() {
        let text = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata:\n  name: {{ .Release.Name }}\n\
                    spec: {}\n";
        let err = read_text(text, "templates/intents.yaml", "audit --declared").expect_err("a template");
        assert!(
            err.to_string().starts_with("templates/intents.yaml is an unrendered Helm template (it has `{{ … }}`)")
        );
        assert!(err.to_string().ends_with("helm template CHART | mapper audit --declared -"), "{err}");
    }
}
