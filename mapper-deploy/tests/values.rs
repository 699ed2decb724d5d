//! The chart with non-default values: the conditionals produce what they say, and every
//! rendering still passes every check.

mod common;

use common::checks::{self, Expect};
use common::*;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use mapper_deploy::{DEFAULT_NAMESPACE, Release, render};

fn render_checked(values: &str, expect: &Expect) -> Objects {
    let o = Objects::new(&render_with(values, &expect.namespace), &expect.namespace);
    checks::all(&o, expect);
    o
}

#[test]
fn defaults_create_no_optional_object() {
    let o = render_checked("", &Expect::defaults());
    let kinds = o.kinds();
    for kind in ["Namespace", "PersistentVolumeClaim", "ServiceMonitor", "PodMonitor"] {
        assert!(!kinds.iter().any(|k| k == kind), "no {kind} by default");
    }
    let volumes = pod_spec(server_template(&o), "server").volumes.clone().unwrap_or_default();
    let data = volumes.iter().find(|v| v.name == "data").expect("server data volume");
    assert!(data.empty_dir.is_some(), "the store is on an emptyDir without persistence");
}

#[test]
fn persistence_creates_a_claim_and_mounts_it() {
    let values = "server: {persistence: {enabled: true, storageClassName: fast, size: 5Gi}}";
    let o = render_checked(values, &Expect::defaults());
    let claim = o.all_of::<PersistentVolumeClaim>().next().expect("a PersistentVolumeClaim");
    let spec = claim.spec.as_ref().expect("claim spec");
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    let storage = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
    assert_eq!(storage.map(|q| q.0.as_str()), Some("5Gi"));
    assert_eq!(
        claim.metadata.annotations.as_ref().and_then(|a| a.get("helm.sh/resource-policy")).map(String::as_str),
        Some("keep"),
        "helm uninstall keeps the edges"
    );
    let server = pod_spec(server_template(&o), "server");
    let data = server.volumes.iter().flatten().find(|v| v.name == "data").expect("data volume");
    let pvc = data.persistent_volume_claim.as_ref().expect("the data volume is the claim");
    assert_eq!(Some(pvc.claim_name.as_str()), claim.metadata.name.as_deref());
    let c = only_container(server, "server");
    let mount = c.volume_mounts.iter().flatten().find(|m| m.name == "data").expect("data mounted");
    assert_eq!(env(c, "MAPPER_DATA_DIR"), Some(mount.mount_path.as_str()), "the store is on the claim");

    let existing = render_checked("server: {persistence: {enabled: true, existingClaim: mine}}", &Expect::defaults());
    assert!(!existing.kinds().iter().any(|k| k == "PersistentVolumeClaim"), "an existing claim is not created");
    let server = pod_spec(server_template(&existing), "server");
    let data = server.volumes.iter().flatten().find(|v| v.name == "data").expect("data volume");
    assert_eq!(data.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()), Some("mine"));
}

#[test]
fn service_monitor_selects_the_server_and_pod_monitor_the_agents() {
    let values = "serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}";
    let o = render_checked(values, &Expect::defaults());
    let monitor = o.monitor("ServiceMonitor").expect("a ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom", "labels Prometheus selects by");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let pods = o.monitor("PodMonitor").expect("a PodMonitor");
    assert_eq!(pods["spec"]["podMetricsEndpoints"][0]["path"], "/metrics");
}

#[test]
fn another_namespace_moves_every_object_and_the_agent_url() {
    let expect = Expect { namespace: "observability".into(), sys_resource: false };
    let o = render_checked("createNamespace: true", &expect);
    let agent = only_container(pod_spec(agent_template(&o), "agent"), "agent");
    assert_eq!(env(agent, "MAPPER_URL"), Some("http://mapper-server.observability.svc:9090"));
    let namespace = o.all_of::<Namespace>().next().expect("the namespace is created");
    let labels = namespace.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels.get("pod-security.kubernetes.io/enforce").map(String::as_str), Some("privileged"));
}

#[test]
fn sys_resource_adds_only_that_capability() {
    render_checked("agent: {sysResource: true}", &Expect { namespace: DEFAULT_NAMESPACE.into(), sys_resource: true });
}

#[test]
fn other_ports_stay_consistent() {
    let o =
        render_checked("server: {grpcPort: 7000, metricsPort: 7001}\nagent: {metricsPort: 7002}", &Expect::defaults());
    let server = only_container(pod_spec(server_template(&o), "server"), "server");
    assert_eq!(named_port(server, "grpc"), 7000);
    let agent = only_container(pod_spec(agent_template(&o), "agent"), "agent");
    assert_eq!(named_port(agent, "metrics"), 7002);
}

#[test]
fn network_policy_can_be_disabled_and_metrics_sources_restricted() {
    let o = render_checked("networkPolicy: {enabled: false}", &Expect::defaults());
    assert!(!o.kinds().iter().any(|k| k == "NetworkPolicy"), "no NetworkPolicy when disabled");
    let values =
        "networkPolicy: {metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]}";
    let o = render_checked(values, &Expect::defaults());
    let policy = o.find::<NetworkPolicy>("mapper-server").expect("policy");
    let rules = policy.spec.as_ref().and_then(|s| s.ingress.as_ref()).expect("rules");
    let metrics_rule = rules.iter().find(|r| r.from.as_ref().is_some_and(|f| f[0].namespace_selector.is_some()));
    assert!(metrics_rule.is_some(), "the metrics rule admits the monitoring namespace");
}

#[test]
fn scheduling_and_image_values_reach_the_pods() {
    let values = "image: {tag: v9, pullSecrets: [regcred]}\n\
                  agent: {priorityClassName: system-node-critical, extraEnv: [{name: RUST_LOG, value: debug}]}\n\
                  server: {tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]}";
    let o = render_checked(values, &Expect::defaults());
    let agent = pod_spec(agent_template(&o), "agent");
    assert_eq!(agent.priority_class_name.as_deref(), Some("system-node-critical"));
    assert_eq!(agent.image_pull_secrets.as_ref().map(|s| s[0].name.as_str()), Some("regcred"));
    let c = only_container(agent, "agent");
    assert_eq!(c.image.as_deref(), Some("mapper-agent:v9"));
    assert_eq!(env(c, "RUST_LOG"), Some("debug"));
    let server = pod_spec(server_template(&o), "server");
    assert_eq!(server.tolerations.as_ref().map(|t| t[0].key.as_deref()), Some(Some("dedicated")));
}

#[test]
fn the_host_netns_file_can_be_moved() {
    let values = "agent: {hostNetns: {hostPath: /var/run/netns/host, mountPath: /node-netns}}";
    let rendered = render_with(values, DEFAULT_NAMESPACE);
    let o = Objects::new(&rendered, DEFAULT_NAMESPACE);
    let agent = pod_spec(agent_template(&o), "agent");
    let volume = agent.volumes.iter().flatten().find(|v| v.name == "host-netns").expect("the host-netns volume");
    assert_eq!(volume.host_path.as_ref().map(|h| h.path.as_str()), Some("/var/run/netns/host"));
    assert_eq!(env(only_container(agent, "agent"), "MAPPER_HOST_NETNS"), Some("/node-netns"));
}

#[test]
fn the_spool_can_live_elsewhere_on_the_node() {
    let values = "agent: {spool: {hostPath: /data/mapper-spool}, shutdownFlush: 10s}";
    let o = render_checked(values, &Expect::defaults());
    let agent = pod_spec(agent_template(&o), "agent");
    let volume = agent.volumes.iter().flatten().find(|v| v.name == "spool").expect("the spool volume");
    let host = volume.host_path.as_ref().expect("a hostPath");
    assert_eq!((host.path.as_str(), host.type_.as_deref()), ("/data/mapper-spool", Some("DirectoryOrCreate")));
    assert_eq!(env(only_container(agent, "agent"), "MAPPER_SHUTDOWN_FLUSH"), Some("10s"));
}

#[test]
fn a_missing_value_is_an_error_not_a_blank() {
    let overlay: serde_json::Value = mapper_intents::stream::from_str("server: {retention: null}").expect("YAML");
    let release = Release { name: "mapper".into(), namespace: DEFAULT_NAMESPACE.into() };
    let Err(err) = render(&chart(), &release, &[overlay]) else { panic!("a deleted value fails the render") };
    assert!(err.to_string().contains("server-deployment.yaml"), "names the template: {err}");
    let overlay: serde_json::Value = mapper_intents::stream::from_str("server: {tokenAudience: ''}").expect("YAML");
    let Err(err) = render(&chart(), &release, &[overlay]) else { panic!("an empty required value fails") };
    assert!(err.to_string().contains("server.tokenAudience must be set"), "{err}");
}
