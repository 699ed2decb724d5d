//! A port-forward through the Kubernetes API to mapper-server's Service, as `kubectl
//! port-forward svc/mapper-server` does: the Service's selector picks a ready pod, its
//! `targetPort` the pod port, and a listener on `127.0.0.1:0` forwards every connection it
//! accepts to that pod port over `pods/portforward`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Client, Config};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::connect::{short_reason, tidy};

/// What to forward to.
#[derive(Debug, Clone)]
pub struct ForwardTarget {
    /// `--kubeconfig`; `None`: KUBECONFIG, ~/.kube/config, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`; `None`: the current one.
    pub context: Option<String>,
    /// The Service's name.
    pub service: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service port.
    pub port: u16,
}

impl ForwardTarget {
    fn service_ref(&self) -> String {
        format!("Service {} in namespace {}", self.service, self.namespace)
    }
}

/// Why the port-forward could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    /// No usable Kubernetes configuration.
    #[error(
        "no --mapper-url given and no Kubernetes configuration to port-forward with ({reason}): \
         pass --mapper-url http://HOST:PORT, or --kubeconfig FILE / --context NAME",
        reason = tidy(&error.to_string())
    )]
    Config {
        /// Why the configuration could not be loaded or used.
        #[source]
        error: KubeClientError,
    },
    /// The Kubernetes API server did not answer.
    #[error(
        "cannot reach the Kubernetes API at {url} ({reason}) to port-forward to mapper-server: \
         check --kubeconfig/--context, or pass --mapper-url",
        reason = short_reason(error)
    )]
    ApiUnreachable {
        /// The API server's URL.
        url: String,
        /// The client's error (the message names its innermost cause).
        #[source]
        error: kube::Error,
    },
    /// The API server answered with an error (its Status; the message is the server's own
    /// words, as kubectl prints them, not a cause of ours).
    #[error("cannot {action}: {message}")]
    Api {
        /// What was being done (`read Service mapper-server in namespace mapper-system`).
        action: String,
        /// The API server's message.
        message: String,
    },
    /// The Service does not exist.
    #[error(
        "{target} not found: is mapper-server installed there? (--mapper-namespace, \
         --mapper-service-name, or --mapper-url to reach it directly)",
        target = target.service_ref()
    )]
    ServiceNotFound {
        /// What was looked for.
        target: Box<ForwardTarget>,
    },
    /// The Service selects no pods.
    #[error("{target} has no selector, so there is no pod to port-forward to", target = target.service_ref())]
    NoSelector {
        /// The Service.
        target: Box<ForwardTarget>,
    },
    /// The Service has no such port.
    #[error("{target} has no port {port} (it has {available}): pass --mapper-service-port", target = target.service_ref(), port = target.port)]
    NoSuchPort {
        /// The Service.
        target: Box<ForwardTarget>,
        /// The ports it has.
        available: String,
    },
    /// No pod behind the Service is ready.
    #[error(
        "no ready mapper-server pod behind {target} (selector {selector}): check `kubectl -n {ns} get pods -l {selector}`",
        target = target.service_ref(), ns = target.namespace
    )]
    NoReadyPod {
        /// The Service.
        target: Box<ForwardTarget>,
        /// Its selector, `k=v,k=v`.
        selector: String,
    },
    /// The named target port is not declared by the pod.
    #[error("pod {pod} has no container port named {name} (the targetPort of {target})", target = target.service_ref())]
    NoNamedPort {
        /// The Service.
        target: Box<ForwardTarget>,
        /// The pod.
        pod: String,
        /// The port name.
        name: String,
    },
    /// The port-forward itself was refused by the API server.
    #[error("cannot port-forward to pod {pod} port {port} in namespace {namespace}: {message}")]
    Forward {
        /// The pod.
        pod: String,
        /// Its namespace.
        namespace: String,
        /// The pod port.
        port: u16,
        /// The API server's message (its Status).
        message: String,
    },
    /// The port-forward could not be opened (the connection or its upgrade failed).
    #[error("cannot port-forward to pod {pod} port {port} in namespace {namespace}: {reason}", reason = short_reason(error))]
    ForwardFailed {
        /// The pod.
        pod: String,
        /// Its namespace.
        namespace: String,
        /// The pod port.
        port: u16,
        /// The client's error (the message names its innermost cause).
        #[source]
        error: kube::Error,
    },
    /// The local listener could not be opened.
    #[error("cannot listen on 127.0.0.1 for the port-forward")]
    Listen {
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
}

/// A running port-forward; stops when dropped.
#[derive(Debug)]
pub struct PortForward {
    local: SocketAddr,
    pod: String,
    pod_port: u16,
    task: JoinHandle<()>,
}

impl PortForward {
    /// The local address that forwards to the pod.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The pod forwarded to.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// The pod port forwarded to.
    pub fn pod_port(&self) -> u16 {
        self.pod_port
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why no Kubernetes client could be made from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    /// The kubeconfig (`--kubeconfig`, or KUBECONFIG / ~/.kube/config with `--context`) could
    /// not be read or used.
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    /// Neither a kubeconfig nor the in-cluster configuration could be loaded.
    #[error(transparent)]
    Infer(#[from] InferConfigError),
    /// The client could not be built from the configuration (its TLS settings).
    #[error(transparent)]
    Client(#[from] kube::Error),
}

async fn client(target: &ForwardTarget) -> Result<(Client, String), PortForwardError> {
    kube_client(target.kubeconfig.as_deref(), target.context.as_deref())
        .await
        .map_err(|error| PortForwardError::Config { error })
}

/// A Kubernetes client from `--kubeconfig`/`--context` (default: KUBECONFIG, ~/.kube/config,
/// then the in-cluster configuration) and the API server's URL.
pub async fn kube_client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(Client, String), KubeClientError> {
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
    let config = match (kubeconfig, context) {
        (Some(path), _) => Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &options).await?,
        (None, Some(_)) => Config::from_kubeconfig(&options).await?,
        (None, None) => Config::infer().await?,
    };
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config)?;
    Ok((client, url))
}

/// An API error as a [`PortForwardError`]: the server's message, or, when it did not answer,
/// [`PortForwardError::ApiUnreachable`].
fn api_error(error: kube::Error, url: &str, action: String) -> PortForwardError {
    match error {
        kube::Error::Api(status) => PortForwardError::Api { action, message: status.message },
        error => PortForwardError::ApiUnreachable { url: url.to_owned(), error },
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The pod port a Service port's `targetPort` means for `pod`.
fn pod_port(target: &ForwardTarget, pod: &Pod, target_port: Option<&IntOrString>) -> Result<u16, PortForwardError> {
    match target_port {
        None => Ok(target.port),
        Some(IntOrString::Int(port)) => Ok(u16::try_from(*port).unwrap_or(target.port)),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| PortForwardError::NoNamedPort {
                target: Box::new(target.clone()),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                name: name.clone(),
            }),
    }
}

/// Finds a ready pod behind the Service and starts forwarding a local port to it. The first
/// forward is opened here, so that a refused port-forward (RBAC, a pod going away) is an error
/// now rather than a reset connection later.
pub async fn start(target: &ForwardTarget) -> Result<PortForward, PortForwardError> {
    let (client, url) = client(target).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), &target.namespace);
    let service = services
        .get_opt(&target.service)
        .await
        .map_err(|e| api_error(e, &url, format!("read {}", target.service_ref())))?
        .ok_or_else(|| PortForwardError::ServiceNotFound { target: Box::new(target.clone()) })?;
    let spec = service.spec.unwrap_or_default();
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        return Err(PortForwardError::NoSelector { target: Box::new(target.clone()) });
    }
    let ports = spec.ports.unwrap_or_default();
    let service_port = ports.iter().find(|p| i64::from(p.port) == i64::from(target.port)).ok_or_else(|| {
        let available: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
        PortForwardError::NoSuchPort { target: Box::new(target.clone()), available: available.join(", ") }
    })?;
    let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let selector = selector.join(",");
    let pods: Api<Pod> = Api::namespaced(client, &target.namespace);
    let mut candidates = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| api_error(e, &url, format!("list the pods of {}", target.service_ref())))?
        .items;
    candidates.retain(is_ready);
    candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let pod = candidates
        .first()
        .ok_or_else(|| PortForwardError::NoReadyPod { target: Box::new(target.clone()), selector: selector.clone() })?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let port = pod_port(target, pod, service_port.target_port.as_ref())?;
    let (pod, namespace) = (pod_name.clone(), target.namespace.clone());
    let first = pods.portforward(&pod_name, &[port]).await.map_err(|e| match e {
        kube::Error::Api(status) => PortForwardError::Forward { pod, namespace, port, message: status.message },
        error => PortForwardError::ForwardFailed { pod, namespace, port, error },
    })?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|error| PortForwardError::Listen { error })?;
    let local = listener.local_addr().map_err(|error| PortForwardError::Listen { error })?;
    let task = tokio::spawn(serve(listener, pods, pod_name.clone(), port, first));
    Ok(PortForward { local, pod: pod_name, pod_port: port, task })
}

/// Accepts local connections and forwards each over its own port-forward stream.
async fn serve(listener: TcpListener, pods: Api<Pod>, pod: String, port: u16, first: kube::api::Portforwarder) {
    let mut first = Some(first);
    while let Ok((socket, _)) = listener.accept().await {
        let forwarder = match first.take() {
            Some(forwarder) => Ok(forwarder),
            None => pods.portforward(&pod, &[port]).await,
        };
        match forwarder {
            Ok(forwarder) => {
                tokio::spawn(pipe(socket, forwarder, port));
            }
            // Dropping the socket resets the connection; the gRPC call reports it.
            Err(e) => eprintln!("warning: port-forward to pod {pod} port {port} failed: {}", short_reason(&e)),
        }
    }
}

async fn pipe(mut socket: TcpStream, mut forwarder: kube::api::Portforwarder, port: u16) {
    if let Some(mut stream) = forwarder.take_stream(port) {
        // Either side closing ends the connection; nothing to report beyond that.
        let _ = tokio::io::copy_bidirectional(&mut socket, &mut stream).await;
    }
    drop(socket);
    let _ = forwarder.join().await;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerPort, PodCondition, PodSpec, PodStatus};

    use super::*;

    fn target() -> ForwardTarget {
        ForwardTarget {
            kubeconfig: None,
            context: None,
            service: "mapper-server".to_owned(),
            namespace: "mapper-system".to_owned(),
            port: 9090,
        }
    }

    fn pod(ready: &str, container_port: Option<(&str, i32)>) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta { name: Some("mapper-server-0".to_owned()), ..Default::default() },
            spec: Some(PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "server".to_owned(),
                    ports: container_port.map(|(name, port)| {
                        vec![ContainerPort { name: Some(name.to_owned()), container_port: port, ..Default::default() }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".to_owned()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: ready.to_owned(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_running_ready_pods_are_used() {
        assert!(is_ready(&pod("True", None)));
        assert!(!is_ready(&pod("False", None)));
    }

    #[test]
    fn target_ports_resolve_by_number_and_by_name() {
        let t = target();
        let p = pod("True", Some(("grpc", 19090)));
        assert_eq!(pod_port(&t, &p, None).ok(), Some(9090));
        assert_eq!(pod_port(&t, &p, Some(&IntOrString::Int(8443))).ok(), Some(8443));
        assert_eq!(pod_port(&t, &p, Some(&IntOrString::String("grpc".to_owned()))).ok(), Some(19090));
        let err = pod_port(&t, &p, Some(&IntOrString::String("http".to_owned())))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "pod mapper-server-0 has no container port named http (the targetPort of Service mapper-server in \
             namespace mapper-system)"
        );
    }

    #[tokio::test]
    async fn an_unreadable_kubeconfig_is_said_once_with_its_cause() {
        let target = ForwardTarget { kubeconfig: Some("/nonexistent/kubeconfig".into()), ..target() };
        let err = client(&target).await.err().unwrap_or_else(|| panic!("no kubeconfig there"));
        let text = err.to_string();
        assert!(
            text.starts_with(
                "no --mapper-url given and no Kubernetes configuration to port-forward with (failed to read kubeconfig"
            ) && text.contains("/nonexistent/kubeconfig")
                && text.contains("No such file or directory): pass --mapper-url"),
            "{text}"
        );
        assert!(matches!(err, PortForwardError::Config { error: KubeClientError::Kubeconfig(_) }), "{err:?}");
        assert_eq!(mapper_intents::error_chain(&err), text, "the cause is in the message already");
    }

    #[test]
    fn a_missing_service_says_where_it_was_looked_for() {
        let err = PortForwardError::ServiceNotFound { target: Box::new(target()) }.to_string();
        assert!(err.starts_with("Service mapper-server in namespace mapper-system not found"), "{err}");
    }
}
