//! `k8s.otterize.com/v1alpha3` and `k8s.otterize.com/v1beta1` (the same shape):
//! `spec.service{name, kind}`, `spec.calls[]{name, kind, type, internet{domains, ips, ports}, …}`.
//!
//! A Kubernetes Service is a call with `kind: Service` (the `svc:` prefix is read too). The API
//! server is written `svc:kubernetes.default` without a kind: that is the form the operator's own
//! conversion webhook produces for it ("a common use case in v1alpha3"), and the operator's
//! API-server egress rule keys on a Service target named `kubernetes` in `default`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::opaque::{self, CallType};
use super::v1alpha2::SERVICE_PREFIX;
use super::{
    ConvertError, IntentsVersion, ObjectMeta, Problem, api_server_name, is_api_server, join_name, required, split_name,
};
use crate::model::{ClientIntentsDoc, HttpResource, Internet, SERVICE_KIND, ServiceTarget, Target, WorkloadTarget};

/// `spec` of a v1alpha3/v1beta1 ClientIntents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The client.
    #[serde(default)]
    pub service: Client,
    /// What the client calls.
    #[serde(default)]
    pub calls: Vec<Call>,
}

/// `spec.service`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// The client's name.
    #[serde(default)]
    pub name: String,
    /// The client's kind (`Deployment`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One entry of `spec.calls` (field order as in the operator's Go type).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Call {
    /// `server` or `server.namespace` (empty for `type: internet`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The server's kind; `Service` names a Kubernetes Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The call's type; none means `http`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub call_type: Option<CallType>,
    /// Kafka topics (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_topics: Option<Value>,
    /// HTTP resources.
    #[serde(rename = "HTTPResources", default, skip_serializing_if = "Vec::is_empty")]
    pub http_resources: Vec<HttpResource>,
    /// Database resources (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_resources: Option<Value>,
    /// AWS actions (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_actions: Option<Value>,
    /// GCP permissions (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_permissions: Option<Value>,
    /// Azure roles (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_roles: Option<Value>,
    /// Azure Key Vault policy (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault_policy: Option<Value>,
    /// Destinations outside the cluster, for `type: internet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet: Option<Internet>,
}

impl Call {
    fn opaque_fields(&self) -> Vec<(&'static str, Value)> {
        [
            ("kafkaTopics", &self.kafka_topics),
            ("databaseResources", &self.database_resources),
            ("awsActions", &self.aws_actions),
            ("gcpPermissions", &self.gcp_permissions),
            ("azureRoles", &self.azure_roles),
            ("azureKeyVaultPolicy", &self.azure_key_vault_policy),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    fn set_opaque(&mut self, key: &str, value: Value) {
        let slot = match key {
            "kafkaTopics" => &mut self.kafka_topics,
            "databaseResources" => &mut self.database_resources,
            "awsActions" => &mut self.aws_actions,
            "gcpPermissions" => &mut self.gcp_permissions,
            "azureRoles" => &mut self.azure_roles,
            "azureKeyVaultPolicy" => &mut self.azure_key_vault_policy,
            // The mapping table names only the keys above.
            _ => return,
        };
        *slot = Some(value);
    }
}

fn non_empty(kind: &Option<String>) -> Option<String> {
    kind.clone().filter(|k| !k.is_empty())
}

/// Converts a v1alpha3/v1beta1 object to the neutral model.
pub(crate) fn doc_from(meta: &ObjectMeta, spec: &Spec) -> Result<ClientIntentsDoc, ConvertError> {
    let name = required(&meta.name, "metadata.name")?;
    let client_name = required(&spec.service.name, "spec.service.name")?;
    let mut targets = Vec::with_capacity(spec.calls.len());
    for (i, call) in spec.calls.iter().enumerate() {
        targets.push(target_from_call(call, &format!("spec.calls[{i}]"), meta.namespace.as_deref())?);
    }
    Ok(ClientIntentsDoc {
        name,
        namespace: meta.namespace.clone(),
        client_name,
        client_kind: non_empty(&spec.service.kind),
        targets,
    })
}

fn not_allowed(path: &str, field: &'static str, call_type: CallType) -> ConvertError {
    ConvertError::new(path, Problem::FieldNotAllowed { field, call_type: call_type.as_str() })
}

fn target_from_call(call: &Call, path: &str, doc_ns: Option<&str>) -> Result<Target, ConvertError> {
    let call_type = call.call_type.unwrap_or(CallType::Http);
    let opaque = call.opaque_fields();
    if call_type == CallType::Internet {
        if let Some((field, _)) = opaque.first() {
            return Err(not_allowed(path, field, call_type));
        }
        if !call.name.is_empty() {
            return Err(not_allowed(path, "name", call_type));
        }
        if !call.http_resources.is_empty() {
            return Err(not_allowed(path, "HTTPResources", call_type));
        }
        let internet =
            call.internet.clone().ok_or_else(|| ConvertError::new(format!("{path}.internet"), Problem::Missing))?;
        return Ok(Target::Internet(internet));
    }
    if call.internet.is_some() {
        return Err(not_allowed(path, "internet", call_type));
    }
    let written = required(&call.name, format!("{path}.name"))?;
    if let Some(mapping) = opaque::for_call_type(call_type) {
        if !call.http_resources.is_empty() {
            return Err(not_allowed(path, "HTTPResources", call_type));
        }
        if call.kind.is_some() {
            return Err(not_allowed(path, "kind", call_type));
        }
        let version = IntentsVersion::V1Alpha3;
        return Ok(Target::Other(mapping.body_from_call(version, &written, &opaque, path)?));
    }
    if let Some((field, _)) = opaque.first() {
        return Err(not_allowed(path, field, call_type));
    }
    let kind = non_empty(&call.kind);
    let http = call.http_resources.clone();
    let (service, bare) = match written.strip_prefix(SERVICE_PREFIX) {
        Some(rest) => (true, rest),
        None => (kind.as_deref() == Some(SERVICE_KIND), written.as_str()),
    };
    let (name, namespace) = split_name(bare, &format!("{path}.name"))?;
    if !service {
        return Ok(Target::Workload(WorkloadTarget { name, namespace, kind, http }));
    }
    if http.is_empty() && is_api_server(&name, namespace.as_deref(), doc_ns) {
        return Ok(Target::ApiServer);
    }
    Ok(Target::Service(ServiceTarget { name, namespace, http }))
}

/// Converts the neutral model to a v1alpha3/v1beta1 spec (`version` picks the opaque-field names).
pub(crate) fn spec_from_doc(doc: &ClientIntentsDoc, version: IntentsVersion) -> Result<Spec, ConvertError> {
    let mut calls = Vec::with_capacity(doc.targets.len());
    for (i, target) in doc.targets.iter().enumerate() {
        calls.push(call_from_target(target, &format!("targets[{i}]"), version, doc.namespace.as_deref())?);
    }
    let service = Client { name: doc.client_name.clone(), kind: doc.client_kind.clone() };
    Ok(Spec { service, calls })
}

fn http_call(name: String, kind: Option<String>, http: &[HttpResource]) -> Call {
    Call {
        name,
        kind,
        call_type: (!http.is_empty()).then_some(CallType::Http),
        http_resources: http.to_vec(),
        ..Call::default()
    }
}

fn call_from_target(
    target: &Target,
    path: &str,
    version: IntentsVersion,
    doc_namespace: Option<&str>,
) -> Result<Call, ConvertError> {
    Ok(match target {
        Target::Workload(w) => http_call(join_name(&w.name, w.namespace.as_deref()), w.kind.clone(), &w.http),
        Target::Service(s) => {
            let name = join_name(&s.name, s.namespace.as_deref());
            http_call(name, Some(SERVICE_KIND.to_owned()), &s.http)
        }
        Target::ApiServer => {
            Call { name: format!("{SERVICE_PREFIX}{}", api_server_name(doc_namespace)), ..Call::default() }
        }
        Target::Internet(internet) => {
            Call { call_type: Some(CallType::Internet), internet: Some(internet.clone()), ..Call::default() }
        }
        Target::Other(other) => {
            let mapping = opaque::for_kind(other.kind);
            let (name, fields) = mapping.call_from_body(version, other, path)?;
            let mut call = Call { name, call_type: Some(mapping.call_type), ..Call::default() };
            for (key, value) in fields {
                call.set_opaque(key, value);
            }
            call
        }
    })
}
