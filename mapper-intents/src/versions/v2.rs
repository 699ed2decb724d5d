//! `k8s.otterize.com/v2alpha1` and `k8s.otterize.com/v2beta1` (the same shape):
//! `spec.workload{name, kind}`, `spec.targets[]` with exactly one of `kubernetes{name, kind}`,
//! `service{name}`, `kafka`, `sql`, `aws`, `gcp`, `azure`, `internet{domains, ips, ports}`.
//!
//! The API server is written `service: {name: kubernetes.default}` (`kubernetes` in a document
//! of `default`, as the Otterize CLI writes it): the operator builds its API-server egress rule
//! only for a Service target (`IsTargetServerKubernetesService`) named `kubernetes` in `default`
//! (`IsTargetTheKubernetesAPIServer`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::opaque::{self, type_name};
use super::{ConvertError, ObjectMeta, Problem, api_server_name, is_api_server, join_name, required, split_name};
use crate::model::{
    ClientIntentsDoc, HttpResource, Internet, OtherKind, OtherTarget, SERVICE_KIND, ServiceTarget as ModelService,
    Target as ModelTarget, WorkloadTarget,
};

/// `spec` of a v2alpha1/v2beta1 ClientIntents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The client.
    #[serde(default)]
    pub workload: Workload,
    /// What the client reaches.
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// `spec.workload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// The client's name.
    #[serde(default)]
    pub name: String,
    /// The client's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One entry of `spec.targets`; exactly one field must be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A workload (or, with `kind: Service`, a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesTarget>,
    /// A Kubernetes Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTarget>,
    /// Kafka (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Value>,
    /// SQL (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<Value>,
    /// AWS (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<Value>,
    /// GCP (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<Value>,
    /// Azure (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<Value>,
    /// Destinations outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet: Option<Internet>,
}

impl Target {
    fn opaque(&self, kind: OtherKind) -> &Option<Value> {
        match kind {
            OtherKind::Kafka => &self.kafka,
            OtherKind::Sql => &self.sql,
            OtherKind::Aws => &self.aws,
            OtherKind::Gcp => &self.gcp,
            OtherKind::Azure => &self.azure,
        }
    }

    fn opaque_mut(&mut self, kind: OtherKind) -> &mut Option<Value> {
        match kind {
            OtherKind::Kafka => &mut self.kafka,
            OtherKind::Sql => &mut self.sql,
            OtherKind::Aws => &mut self.aws,
            OtherKind::Gcp => &mut self.gcp,
            OtherKind::Azure => &mut self.azure,
        }
    }

    /// The keys of the kinds that are set, in declaration order.
    pub fn kinds_set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.kubernetes.is_some() {
            set.push("kubernetes");
        }
        if self.service.is_some() {
            set.push("service");
        }
        set.extend(OtherKind::ALL.into_iter().filter(|k| self.opaque(*k).is_some()).map(OtherKind::key));
        if self.internet.is_some() {
            set.push("internet");
        }
        set
    }
}

/// `targets[].kubernetes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesTarget {
    /// `server` or `server.namespace`.
    #[serde(default)]
    pub name: String,
    /// The server's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// HTTP resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpResource>,
}

/// `targets[].service`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTarget {
    /// `service` or `service.namespace`.
    #[serde(default)]
    pub name: String,
    /// HTTP resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpResource>,
}

/// Converts a v2alpha1/v2beta1 object to the neutral model.
pub(crate) fn doc_from(meta: &ObjectMeta, spec: &Spec) -> Result<ClientIntentsDoc, ConvertError> {
    let name = required(&meta.name, "metadata.name")?;
    let client_name = required(&spec.workload.name, "spec.workload.name")?;
    let mut targets = Vec::with_capacity(spec.targets.len());
    for (i, target) in spec.targets.iter().enumerate() {
        targets.push(model_target(target, &format!("spec.targets[{i}]"), meta.namespace.as_deref())?);
    }
    Ok(ClientIntentsDoc {
        name,
        namespace: meta.namespace.clone(),
        client_name,
        client_kind: spec.workload.kind.clone().filter(|k| !k.is_empty()),
        targets,
    })
}

fn service_or_api_server(
    name: String,
    namespace: Option<String>,
    http: Vec<HttpResource>,
    doc_ns: Option<&str>,
) -> ModelTarget {
    if http.is_empty() && is_api_server(&name, namespace.as_deref(), doc_ns) {
        ModelTarget::ApiServer
    } else {
        ModelTarget::Service(ModelService { name, namespace, http })
    }
}

fn model_target(target: &Target, path: &str, doc_ns: Option<&str>) -> Result<ModelTarget, ConvertError> {
    match target.kinds_set().as_slice() {
        [] => return Err(ConvertError::new(path, Problem::NoKind)),
        [_] => {}
        [first, second, ..] => {
            return Err(ConvertError::new(path, Problem::TwoKinds { first, second }));
        }
    }
    if let Some(k) = &target.kubernetes {
        let name_path = format!("{path}.kubernetes.name");
        let (name, namespace) = split_name(&required(&k.name, &name_path)?, &name_path)?;
        let kind = k.kind.clone().filter(|k| !k.is_empty());
        if kind.as_deref() == Some(SERVICE_KIND) {
            return Ok(service_or_api_server(name, namespace, k.http.clone(), doc_ns));
        }
        return Ok(ModelTarget::Workload(WorkloadTarget { name, namespace, kind, http: k.http.clone() }));
    }
    if let Some(s) = &target.service {
        let name_path = format!("{path}.service.name");
        let (name, namespace) = split_name(&required(&s.name, &name_path)?, &name_path)?;
        return Ok(service_or_api_server(name, namespace, s.http.clone(), doc_ns));
    }
    if let Some(internet) = &target.internet {
        return Ok(ModelTarget::Internet(internet.clone()));
    }
    for kind in OtherKind::ALL {
        if let Some(body) = target.opaque(kind) {
            let key_path = format!("{path}.{}", kind.key());
            let Value::Object(map) = body else {
                return Err(ConvertError::new(
                    key_path,
                    Problem::WrongType { expected: "a mapping", found: type_name(body) },
                ));
            };
            let name_key = opaque::for_kind(kind).name_key;
            if map.get(name_key).and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(ConvertError::new(format!("{key_path}.{name_key}"), Problem::Missing));
            }
            return Ok(ModelTarget::Other(OtherTarget { kind, body: body.clone() }));
        }
    }
    // kinds_set() found exactly one kind, and every kind is handled above.
    Err(ConvertError::new(path, Problem::NoKind))
}

/// Converts the neutral model to a v2alpha1/v2beta1 spec (every target is expressible).
pub(crate) fn spec_from_doc(doc: &ClientIntentsDoc) -> Spec {
    let targets = doc.targets.iter().map(|t| v2_target(t, doc.namespace.as_deref())).collect();
    let workload = Workload { name: doc.client_name.clone(), kind: doc.client_kind.clone() };
    Spec { workload, targets }
}

fn v2_target(target: &ModelTarget, doc_namespace: Option<&str>) -> Target {
    match target {
        ModelTarget::Workload(w) => Target {
            kubernetes: Some(KubernetesTarget {
                name: join_name(&w.name, w.namespace.as_deref()),
                kind: w.kind.clone(),
                http: w.http.clone(),
            }),
            ..Target::default()
        },
        ModelTarget::Service(s) => Target {
            service: Some(ServiceTarget { name: join_name(&s.name, s.namespace.as_deref()), http: s.http.clone() }),
            ..Target::default()
        },
        ModelTarget::ApiServer => Target {
            service: Some(ServiceTarget { name: api_server_name(doc_namespace), http: Vec::new() }),
            ..Target::default()
        },
        ModelTarget::Internet(internet) => Target { internet: Some(internet.clone()), ..Target::default() },
        ModelTarget::Other(other) => {
            let mut target = Target::default();
            *target.opaque_mut(other.kind) = Some(other.body.clone());
            target
        }
    }
}
