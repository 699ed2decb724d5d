//! The policies the operator builds for a Service target (`svc:reports`, `kind: Service`,
//! `service: {name: reports}`): the pods are the ones the Service's own selector selects, the
//! ports its targetPorts, and the policy is owned by the Service.
//!
//! - current layout (the operator's `PortNetworkPolicyReconciler` and its single policy per
//!   server): `<name>-service-access`, labelled `intents.otterize.com/network-policy: <identity
//!   with kind Service>`, one ingress rule per client namespace admitting pods labelled
//!   `intents.otterize.com/svc-access-<that identity>: "true"` on every targetPort (named ones
//!   included, with each port's protocol); a DNS server also gets the rule for UDP and TCP 53.
//! - legacy layout (operators before policies were merged per server):
//!   `svc-access-to-<name>-from-<client namespace>`, labelled
//!   `intents.otterize.com/svc-network-policy: <identity without kind>`, the client label
//!   `intents.otterize.com/svc-access-<that identity>`, numeric targetPorts only (sorted).
//!
//! A Service that is not found gets no policy (the operator waits for it); one without a
//! selector none either (the operator reports an error).

use std::collections::{BTreeMap, BTreeSet};

use super::{
    IngressFrom, IngressRule, K8S_NAMESPACE_LABEL, NETWORK_POLICY_LABEL, NetworkPolicy, OwnerReference, PodLabel,
    PolicyLayout, PolicyNote, PolicyPort, PolicySet, dns_rule, is_dns_server, labels,
};
use crate::identity::{formatted_identity, formatted_identity_with_kind, rfc1123_name_with_kind};
use crate::model::{SERVICE_KIND, Workload};

/// The legacy operator's label on a Service target's policies.
pub const SVC_NETWORK_POLICY_LABEL: &str = "intents.otterize.com/svc-network-policy";
/// The prefix of the client label a Service target's policy admits.
pub const SVC_ACCESS_PREFIX: &str = "intents.otterize.com/svc-access-";

/// A port as a number or a name (Kubernetes' IntOrString).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortValue {
    /// A port number.
    Number(i32),
    /// A named container port.
    Name(String),
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `port`: what clients dial on the ClusterIP.
    pub port: i32,
    /// `targetPort`; `None` means the same as `port` (the API server's default).
    pub target_port: Option<PortValue>,
    /// `protocol`; `None` when the source leaves it out (the API server defaults it to TCP).
    pub protocol: Option<String>,
}

impl ServicePort {
    /// The port on the pods: `targetPort`, or `port` when it has none.
    pub fn target(&self) -> PortValue {
        self.target_port.clone().unwrap_or(PortValue::Number(self.port))
    }
}

/// A Kubernetes Service, as much of it as the operator reads for a Service target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterService {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid` (the policies' ownerReference); `None` when the source has none.
    pub uid: Option<String>,
    /// `spec.selector`; `None` when the Service has none.
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.ports`, in order.
    pub ports: Vec<ServicePort>,
}

/// The ownerReference the operator sets on a Service's policies, when its uid is known.
fn owner(service: &ClusterService, set: &mut PolicySet) -> Option<OwnerReference> {
    let Some(uid) = &service.uid else {
        set.notes
            .push(PolicyNote::ServiceWithoutUid { namespace: service.namespace.clone(), name: service.name.clone() });
        return None;
    };
    Some(OwnerReference {
        api_version: "v1".to_owned(),
        kind: SERVICE_KIND.to_owned(),
        name: service.name.clone(),
        uid: uid.clone(),
    })
}

/// Adds the policies of the Service `name` in `namespace` reached by `clients`, or the note
/// saying why there are none.
pub(super) fn service_policies(
    name: &str,
    namespace: &str,
    clients: &BTreeSet<Workload>,
    layout: PolicyLayout,
    services: Option<&BTreeMap<(String, String), ClusterService>>,
    set: &mut PolicySet,
) {
    let (namespace_owned, name_owned) = (namespace.to_owned(), name.to_owned());
    let Some(services) = services else {
        set.notes.push(PolicyNote::ServiceUnknown { namespace: namespace_owned, name: name_owned });
        return;
    };
    let Some(service) = services.get(&(namespace_owned.clone(), name_owned.clone())) else {
        set.notes.push(PolicyNote::ServiceNotFound { namespace: namespace_owned, name: name_owned });
        return;
    };
    let Some(selector) = &service.selector else {
        set.notes.push(PolicyNote::ServiceWithoutSelector { namespace: namespace_owned, name: name_owned });
        return;
    };
    let namespaces: BTreeSet<&str> = clients.iter().map(|c| &*c.namespace).collect();
    match layout {
        PolicyLayout::Current => current(service, selector, clients, &namespaces, set),
        PolicyLayout::Legacy => legacy(service, selector, clients, &namespaces, set),
    }
}

fn current(
    service: &ClusterService,
    selector: &BTreeMap<String, String>,
    clients: &BTreeSet<Workload>,
    namespaces: &BTreeSet<&str>,
    set: &mut PolicySet,
) {
    let identity = Workload::new(service.name.as_str(), service.namespace.as_str(), SERVICE_KIND);
    let id = formatted_identity_with_kind(&service.name, &service.namespace, SERVICE_KIND);
    let access = format!("{SVC_ACCESS_PREFIX}{id}");
    let ports: Vec<PolicyPort> =
        service.ports.iter().map(|p| PolicyPort { port: p.target(), protocol: p.protocol.clone() }).collect();
    let mut ingress: Vec<IngressRule> = namespaces
        .iter()
        .map(|ns| IngressRule {
            from: vec![IngressFrom {
                namespace_labels: labels(&[(K8S_NAMESPACE_LABEL, ns)]),
                pod_labels: labels(&[(&access, "true")]),
            }],
            ports: ports.clone(),
        })
        .collect();
    if is_dns_server(&service.name, &service.namespace) {
        ingress.push(dns_rule());
    }
    let owner = owner(service, set);
    set.policies.push(NetworkPolicy {
        name: format!("{}-access", rfc1123_name_with_kind(&identity)),
        namespace: service.namespace.clone(),
        labels: labels(&[(NETWORK_POLICY_LABEL, &id)]),
        owner,
        pod_selector: selector.clone(),
        ingress,
    });
    for client in clients {
        set.pod_labels.push(PodLabel::client(client, &access));
    }
}

fn legacy(
    service: &ClusterService,
    selector: &BTreeMap<String, String>,
    clients: &BTreeSet<Workload>,
    namespaces: &BTreeSet<&str>,
    set: &mut PolicySet,
) {
    let id = formatted_identity(&service.name, &service.namespace);
    let access = format!("{SVC_ACCESS_PREFIX}{id}");
    // The legacy operator kept numeric targetPorts only, one per number.
    let mut numbers: BTreeMap<i32, Option<String>> = BTreeMap::new();
    for port in &service.ports {
        match port.target() {
            PortValue::Number(n) => {
                numbers.insert(n, port.protocol.clone());
            }
            PortValue::Name(port) => set.notes.push(PolicyNote::NamedTargetPortSkipped {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                port,
            }),
        }
    }
    let ports: Vec<PolicyPort> =
        numbers.into_iter().map(|(n, protocol)| PolicyPort { port: PortValue::Number(n), protocol }).collect();
    let owner = owner(service, set);
    for ns in namespaces {
        set.policies.push(NetworkPolicy {
            name: format!("svc-access-to-{}-from-{ns}", service.name),
            namespace: service.namespace.clone(),
            labels: labels(&[(SVC_NETWORK_POLICY_LABEL, &id)]),
            owner: owner.clone(),
            pod_selector: selector.clone(),
            ingress: vec![IngressRule {
                from: vec![IngressFrom {
                    namespace_labels: labels(&[(K8S_NAMESPACE_LABEL, ns)]),
                    pod_labels: labels(&[(&access, "true")]),
                }],
                ports: ports.clone(),
            }],
        });
    }
    if is_dns_server(&service.name, &service.namespace) {
        set.notes
            .push(PolicyNote::LegacyDnsBlocked { namespace: service.namespace.clone(), name: service.name.clone() });
    }
    for client in clients {
        set.pod_labels.push(PodLabel::client(client, &access));
    }
}
