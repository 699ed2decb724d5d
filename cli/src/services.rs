//! The Services `mapper policy` resolves Service targets through: read from inventory files
//! (`kubectl get services -A -o yaml`, or any manifests holding `kind: Service`) or listed from
//! the cluster of the kubeconfig, as the operator reads them (selector, ports, uid).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use mapper_intents::policy::{ClusterService, PortValue, ServicePort};
use mapper_intents::stream::{self, StreamError};
use mapper_intents::walk::{Walk, has_manifest_extension};
use serde_json::Value;

use crate::connect::{ConnectOpts, short_reason, tidy};
use crate::portforward::KubeClientError;

/// Why the Services could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// A file or directory could not be read.
    #[error("cannot read --inventory {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// A file is not YAML.
    #[error("--inventory {}: document {document} is not YAML", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The document, from 1.
        document: usize,
        /// The reader's error (with its line and column).
        #[source]
        error: stream::YamlError,
    },
    /// A file nests deeper than the reader allows.
    #[error("--inventory {}: document {}: {at}", path.display(), at.document)]
    TooDeep {
        /// The file.
        path: PathBuf,
        /// Where, and the limit.
        at: stream::TooDeep,
    },
    /// A Service object does not fit the Service schema.
    #[error("--inventory {}: document {document}: {at}kind Service does not fit the v1 Service schema", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The document, from 1.
        document: usize,
        /// `items[3].` in a List, empty otherwise.
        at: String,
        /// What is wrong.
        #[source]
        error: serde_json::Error,
    },
    /// No Kubernetes client for `--cluster`.
    #[error("cannot read the Services from the cluster: {reason}", reason = tidy(&error.to_string()))]
    ClusterConfig {
        /// Why the configuration could not be loaded or used.
        #[source]
        error: KubeClientError,
    },
    /// The API server refused to list Services.
    #[error("cannot read the Services from the cluster: listing Services in namespace {namespace}: {message}")]
    ClusterRefused {
        /// The namespace.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached.
    #[error(
        "cannot read the Services from the cluster: listing Services in namespace {namespace} ({reason})",
        reason = short_reason(error)
    )]
    ClusterUnreachable {
        /// The namespace.
        namespace: String,
        /// The client's error.
        #[source]
        error: kube::Error,
    },
}

/// Services by (namespace, name).
pub type Services = BTreeMap<(String, String), ClusterService>;

/// A Service as the operator reads it.
pub fn cluster_service(service: &Service) -> Option<ClusterService> {
    let name = service.metadata.name.clone()?;
    let spec = service.spec.as_ref();
    let ports = spec
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| ServicePort {
            port: p.port,
            target_port: p.target_port.as_ref().map(|t| match t {
                IntOrString::Int(n) => PortValue::Number(*n),
                IntOrString::String(name) => PortValue::Name(name.clone()),
            }),
            protocol: p.protocol.clone().filter(|p| !p.is_empty()),
        })
        .collect();
    Some(ClusterService {
        name,
        namespace: service.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned()),
        uid: service.metadata.uid.clone().filter(|u| !u.is_empty()),
        selector: spec.and_then(|s| s.selector.clone()).map(|m| m.into_iter().collect()),
        ports,
    })
}

fn collect(value: Value, at: &str, path: &Path, document: usize, out: &mut Services) -> Result<(), ServicesError> {
    match value.get("kind").and_then(Value::as_str) {
        Some("List" | "ServiceList") => {
            let items = value.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                collect(item, &format!("{at}items[{i}]."), path, document, out)?;
            }
        }
        Some("Service") if value.get("apiVersion").and_then(Value::as_str) == Some("v1") => {
            let service: Service = serde_json::from_value(value).map_err(|error| ServicesError::Invalid {
                path: path.to_path_buf(),
                document,
                at: at.to_owned(),
                error,
            })?;
            if let Some(s) = cluster_service(&service) {
                out.insert((s.namespace.clone(), s.name.clone()), s);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads the Services of the inventory files and directories (their .yaml, .yml and .json
/// files, read recursively); every other object is skipped.
pub fn read_inventory(paths: &[PathBuf]) -> Result<Services, ServicesError> {
    let walk = Walk { take: has_manifest_extension, max_depth: usize::MAX, skip_hidden: true };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(walk.files(path).map_err(|e| ServicesError::Read { path: e.path, error: e.error })?);
        } else {
            files.push(path.clone());
        }
    }
    let mut out = Services::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|error| ServicesError::Read { path: file.clone(), error })?;
        for read in stream::documents::<Value>(&text) {
            let (document, value) = read.map_err(|error| match error {
                StreamError::TooDeep(at) => ServicesError::TooDeep { path: file.clone(), at },
                StreamError::Yaml(error) => ServicesError::Yaml { path: file.clone(), document: error.document, error },
            })?;
            collect(value, "", &file, document, &mut out)?;
        }
    }
    Ok(out)
}

/// Lists the Services of `namespaces` from the cluster of the kubeconfig (`--kubeconfig`,
/// `--context`).
pub async fn read_cluster(connect: &ConnectOpts, namespaces: &BTreeSet<String>) -> Result<Services, ServicesError> {
    let (client, _url) = crate::portforward::kube_client(connect.kubeconfig.as_deref(), connect.context.as_deref())
        .await
        .map_err(|error| ServicesError::ClusterConfig { error })?;
    let mut out = Services::new();
    for namespace in namespaces {
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        let list = api.list(&ListParams::default()).await.map_err(|error| match error {
            kube::Error::Api(status) => {
                ServicesError::ClusterRefused { namespace: namespace.clone(), message: status.message }
            }
            error => ServicesError::ClusterUnreachable { namespace: namespace.clone(), error },
        })?;
        for service in &list.items {
            if let Some(s) = cluster_service(service) {
                out.insert((s.namespace.clone(), s.name.clone()), s);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_read_from_lists_and_documents_with_their_ports_and_uid() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: reports, \
                    namespace: team1, uid: u-1}\n  spec:\n    selector: {app: reports}\n    ports:\n    - {port: 80, \
                    targetPort: 8080, protocol: TCP}\n    - {port: 9090, targetPort: metrics}\n    - {port: 7000}\n\
                    ---\napiVersion: v1\nkind: Service\nmetadata: {name: manual}\nspec: {ports: [{port: 5432}]}\n\
                    ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: reports}\n";
        let file = dir.path().join("services.yaml");
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("write: {e}"));
        let services = read_inventory(&[dir.path().to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
        let reports = &services[&("team1".to_owned(), "reports".to_owned())];
        assert_eq!(reports.uid.as_deref(), Some("u-1"));
        assert_eq!(reports.selector, Some(BTreeMap::from([("app".to_owned(), "reports".to_owned())])));
        let targets: Vec<(PortValue, Option<&str>)> =
            reports.ports.iter().map(|p| (p.target(), p.protocol.as_deref())).collect();
        assert_eq!(
            targets,
            [
                (PortValue::Number(8080), Some("TCP")),
                (PortValue::Name("metrics".to_owned()), None),
                (PortValue::Number(7000), None)
            ]
        );
        let manual = &services[&("default".to_owned(), "manual".to_owned())];
        assert_eq!((manual.selector.as_ref(), manual.uid.as_ref()), (None, None));
        assert_eq!(services.len(), 2);

        std::fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: 80}\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let err = read_inventory(std::slice::from_ref(&file)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.ends_with("services.yaml: document 1: kind Service does not fit the v1 Service schema"), "{err}");
        std::fs::write(&file, "a: [\n").unwrap_or_else(|e| panic!("write: {e}"));
        let err = read_inventory(&[file]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.ends_with("services.yaml: document 1 is not YAML"), "{err}");
    }
}
