//! Rendered documents as k8s-openapi objects. A document must deserialize into the type of its
//! kind *and* serialize back to the same JSON: k8s-openapi ignores fields it does not know, so
//! the round trip is what catches a misspelt or misplaced field (the API server would drop it
//! just as silently).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::Document;

/// Prometheus operator kinds: not in k8s-openapi, kept as JSON.
pub const MONITORING_API_VERSION: &str = "monitoring.coreos.com/v1";

/// Why a document is not a valid object.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{source_file}: {kind} {name}: not a valid {kind}")]
    Invalid {
        source_file: String,
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{source_file}: {kind} {name}: field {path} is not part of {kind} (a typo, or misplaced?)")]
    UnknownField { source_file: String, kind: String, name: String, path: String },
    #[error("{source_file}: {kind} {name}: apiVersion {found}, expected {expected}")]
    ApiVersion { source_file: String, kind: String, name: String, found: String, expected: String },
    #[error("{source_file}: kind {kind} ({api_version}) is not one this chart is expected to produce")]
    UnsupportedKind { source_file: String, kind: String, api_version: String },
    #[error("{source_file}: {kind} {name}: not representable as JSON")]
    Json {
        source_file: String,
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A rendered object, typed.
#[derive(Debug, Clone)]
pub enum Object {
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    ClusterRole(Box<ClusterRole>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    Role(Box<Role>),
    RoleBinding(Box<RoleBinding>),
    Service(Box<Service>),
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
    Deployment(Box<Deployment>),
    DaemonSet(Box<DaemonSet>),
    NetworkPolicy(Box<NetworkPolicy>),
    /// ServiceMonitor or PodMonitor.
    Monitor {
        kind: String,
        value: serde_json::Value,
    },
}

fn typed<T>(doc: &Document, json: &serde_json::Value) -> Result<Box<T>, ObjectError>
where
    T: DeserializeOwned + Serialize + k8s_openapi::Resource,
{
    let api_version = json.get("apiVersion").and_then(serde_json::Value::as_str).unwrap_or_default();
    if api_version != T::API_VERSION {
        return Err(ObjectError::ApiVersion {
            source_file: doc.source.clone(),
            kind: doc.kind.clone(),
            name: doc.name.clone(),
            found: api_version.to_owned(),
            expected: T::API_VERSION.to_owned(),
        });
    }
    let object: T = serde_json::from_value(json.clone()).map_err(|source| ObjectError::Invalid {
        source_file: doc.source.clone(),
        kind: doc.kind.clone(),
        name: doc.name.clone(),
        source,
    })?;
    let back = serde_json::to_value(&object).map_err(|source| ObjectError::Json {
        source_file: doc.source.clone(),
        kind: doc.kind.clone(),
        name: doc.name.clone(),
        source,
    })?;
    if let Some(path) = first_missing(json, &back, String::new()) {
        return Err(ObjectError::UnknownField {
            source_file: doc.source.clone(),
            kind: doc.kind.clone(),
            name: doc.name.clone(),
            path,
        });
    }
    Ok(Box::new(object))
}

/// The first place where `original` has something `back` lost.
fn first_missing(original: &serde_json::Value, back: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value as J;
    match (original, back) {
        (J::Object(a), J::Object(b)) => a.iter().find_map(|(k, v)| match b.get(k) {
            Some(w) => first_missing(v, w, format!("{path}.{k}")),
            None => Some(format!("{path}.{k}")),
        }),
        (J::Array(a), J::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().find_map(|(i, (v, w))| first_missing(v, w, format!("{path}[{i}]")))
        }
        (a, b) if a == b => None,
        _ => Some(if path.is_empty() { ".".into() } else { path }),
    }
}

/// The document as its typed object.
pub fn parse(doc: &Document) -> Result<Object, ObjectError> {
    let json: serde_json::Value = serde_json::to_value(&doc.value).map_err(|source| ObjectError::Json {
        source_file: doc.source.clone(),
        kind: doc.kind.clone(),
        name: doc.name.clone(),
        source,
    })?;
    let api_version = json.get("apiVersion").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    Ok(match doc.kind.as_str() {
        "Namespace" => Object::Namespace(typed(doc, &json)?),
        "ServiceAccount" => Object::ServiceAccount(typed(doc, &json)?),
        "ClusterRole" => Object::ClusterRole(typed(doc, &json)?),
        "ClusterRoleBinding" => Object::ClusterRoleBinding(typed(doc, &json)?),
        "Role" => Object::Role(typed(doc, &json)?),
        "RoleBinding" => Object::RoleBinding(typed(doc, &json)?),
        "Service" => Object::Service(typed(doc, &json)?),
        "PersistentVolumeClaim" => Object::PersistentVolumeClaim(typed(doc, &json)?),
        "Deployment" => Object::Deployment(typed(doc, &json)?),
        "DaemonSet" => Object::DaemonSet(typed(doc, &json)?),
        "NetworkPolicy" => Object::NetworkPolicy(typed(doc, &json)?),
        "ServiceMonitor" | "PodMonitor" if api_version == MONITORING_API_VERSION => {
            Object::Monitor { kind: doc.kind.clone(), value: json }
        }
        _ => {
            return Err(ObjectError::UnsupportedKind {
                source_file: doc.source.clone(),
                kind: doc.kind.clone(),
                api_version,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        let value: serde_json::Value = mapper_intents::stream::from_str(text).expect("test YAML");
        let kind = value["kind"].as_str().expect("kind").to_owned();
        let name = value["metadata"]["name"].as_str().expect("name").to_owned();
        Document { source: "test".into(), kind, name, text: text.into(), value }
    }

    #[test]
    fn a_misspelt_field_is_refused() {
        let ok =
            doc("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountServiceAccountToken: false\n");
        assert!(matches!(parse(&ok), Ok(Object::ServiceAccount(_))));
        let typo =
            doc("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountServiceAcountToken: false\n");
        let err = parse(&typo).expect_err("typo refused");
        assert!(err.to_string().contains(".automountServiceAcountToken"), "{err}");
        let nested =
            doc("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80, targetport: 8080}]}\n");
        let err = parse(&nested).expect_err("nested typo refused");
        assert!(err.to_string().contains(".spec.ports[0].targetport"), "{err}");
    }

    #[test]
    fn a_wrong_api_version_or_kind_is_refused() {
        let wrong = doc("apiVersion: extensions/v1beta1\nkind: DaemonSet\nmetadata: {name: a}\n");
        assert!(matches!(parse(&wrong), Err(ObjectError::ApiVersion { .. })));
        let unknown = doc("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n");
        assert!(matches!(parse(&unknown), Err(ObjectError::UnsupportedKind { .. })));
    }
}
