//! `k8s.otterize.com/v1alpha2`: `spec.service{name}`, `spec.calls[]{name, type?, …}`.
//!
//! This version has no kinds: a workload's kind is dropped when converting to it, and a
//! Kubernetes Service is named with the `svc:` prefix (`svc:ledger.team3`). It has no internet,
//! AWS, GCP or Azure targets; converting a document with one fails with
//! [`Problem::Unsupported`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::opaque::{self, CallType};
use super::{
    ConvertError, IntentsVersion, ObjectMeta, Problem, api_server_name, is_api_server, join_name, required, split_name,
};
use crate::model::{ClientIntentsDoc, HttpResource, ServiceTarget, Target, WorkloadTarget};

/// Prefix that makes a v1alpha2/v1alpha3 call name a Kubernetes Service.
pub const SERVICE_PREFIX: &str = "svc:";

/// `spec` of a v1alpha2 ClientIntents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The client.
    #[serde(default)]
    pub service: Service,
    /// What the client calls.
    #[serde(default)]
    pub calls: Vec<Call>,
}

/// `spec.service`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The client's name.
    #[serde(default)]
    pub name: String,
}

/// One entry of `spec.calls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// `server`, `server.namespace`, or `svc:<service>[.namespace]`.
    #[serde(default)]
    pub name: String,
    /// `http` (the default), `kafka` or `database`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub call_type: Option<CallType>,
    /// Kafka topics (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Value>,
    /// HTTP resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<HttpResource>,
    /// Database resources (opaque).
    #[serde(rename = "databaseResources", default, skip_serializing_if = "Option::is_none")]
    pub database_resources: Option<Value>,
}

impl Call {
    fn opaque_fields(&self) -> Vec<(&'static str, Value)> {
        [("topics", &self.topics), ("databaseResources", &self.database_resources)]
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .collect()
    }

    fn set_opaque(&mut self, key: &str, value: Value) {
        match key {
            "topics" => self.topics = Some(value),
            "databaseResources" => self.database_resources = Some(value),
            // The mapping table only names the two keys above for v1alpha2.
            _ => {}
        }
    }
}

/// Converts a v1alpha2 object to the neutral model.
pub(crate) fn doc_from(meta: &ObjectMeta, spec: &Spec) -> Result<ClientIntentsDoc, ConvertError> {
    let name = required(&meta.name, "metadata.name")?;
    let client_name = required(&spec.service.name, "spec.service.name")?;
    let mut targets = Vec::with_capacity(spec.calls.len());
    for (i, call) in spec.calls.iter().enumerate() {
        targets.push(target_from_call(call, &format!("spec.calls[{i}]"), meta.namespace.as_deref())?);
    }
    Ok(ClientIntentsDoc { name, namespace: meta.namespace.clone(), client_name, client_kind: None, targets })
}

fn target_from_call(call: &Call, path: &str, doc_ns: Option<&str>) -> Result<Target, ConvertError> {
    let written = required(&call.name, format!("{path}.name"))?;
    match call.call_type {
        None | Some(CallType::Http) => {
            if let Some((field, _)) = call.opaque_fields().first() {
                return Err(ConvertError::new(path, Problem::FieldNotAllowed { field, call_type: "http" }));
            }
            let http = call.resources.clone();
            if let Some(service) = written.strip_prefix(SERVICE_PREFIX) {
                let (name, namespace) = split_name(service, &format!("{path}.name"))?;
                if http.is_empty() && is_api_server(&name, namespace.as_deref(), doc_ns) {
                    return Ok(Target::ApiServer);
                }
                return Ok(Target::Service(ServiceTarget { name, namespace, http }));
            }
            let (name, namespace) = split_name(&written, &format!("{path}.name"))?;
            Ok(Target::Workload(WorkloadTarget { name, namespace, kind: None, http }))
        }
        Some(call_type @ (CallType::Kafka | CallType::Database)) => {
            if !call.resources.is_empty() {
                let call_type = call_type.as_str();
                return Err(ConvertError::new(path, Problem::FieldNotAllowed { field: "resources", call_type }));
            }
            let mapping = opaque::for_call_type(call_type).ok_or_else(|| unsupported_type(call_type, path))?;
            let other = mapping.body_from_call(IntentsVersion::V1Alpha2, &written, &call.opaque_fields(), path)?;
            Ok(Target::Other(other))
        }
        Some(other) => Err(unsupported_type(other, &format!("{path}.type"))),
    }
}

fn unsupported_type(call_type: CallType, path: &str) -> ConvertError {
    let what = format!("call type `{}`", call_type.as_str());
    ConvertError::new(path, Problem::Unsupported { what, version: IntentsVersion::V1Alpha2 })
}

/// Converts the neutral model to a v1alpha2 spec. Kinds are dropped (the version has none) and
/// calls that become identical by that are written once.
pub(crate) fn spec_from_doc(doc: &ClientIntentsDoc) -> Result<Spec, ConvertError> {
    let mut calls: Vec<Call> = Vec::with_capacity(doc.targets.len());
    for (i, target) in doc.targets.iter().enumerate() {
        let call = call_from_target(target, &format!("targets[{i}]"), doc.namespace.as_deref())?;
        if !calls.contains(&call) {
            calls.push(call);
        }
    }
    Ok(Spec { service: Service { name: doc.client_name.clone() }, calls })
}

fn http_call(name: String, http: &[HttpResource]) -> Call {
    Call { name, call_type: (!http.is_empty()).then_some(CallType::Http), resources: http.to_vec(), ..Call::default() }
}

fn call_from_target(target: &Target, path: &str, doc_namespace: Option<&str>) -> Result<Call, ConvertError> {
    match target {
        Target::Workload(w) => Ok(http_call(join_name(&w.name, w.namespace.as_deref()), &w.http)),
        Target::Service(s) => {
            Ok(http_call(format!("{SERVICE_PREFIX}{}", join_name(&s.name, s.namespace.as_deref())), &s.http))
        }
        // The operator only treats a call as the API server's Service when it carries the
        // `svc:` prefix (IsTargetServerKubernetesService); a bare `kubernetes.default` would name
        // a workload called `kubernetes` in `default`, which does not exist.
        Target::ApiServer => {
            Ok(Call { name: format!("{SERVICE_PREFIX}{}", api_server_name(doc_namespace)), ..Call::default() })
        }
        Target::Internet(_) => Err(ConvertError::new(
            path,
            Problem::Unsupported { what: "an internet target".to_owned(), version: IntentsVersion::V1Alpha2 },
        )),
        Target::Other(other) => {
            let mapping = opaque::for_kind(other.kind);
            let (name, fields) = mapping.call_from_body(IntentsVersion::V1Alpha2, other, path)?;
            let mut call = Call { name, call_type: Some(mapping.call_type), ..Call::default() };
            for (key, value) in fields {
                call.set_opaque(key, value);
            }
            Ok(call)
        }
    }
}
