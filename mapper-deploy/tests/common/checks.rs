//! The properties every rendering must have. Each panics naming the object and the rule.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Container;
use mapper_deploy::objects::Object;

use super::*;

/// What a rendering was asked for, where the checks depend on it.
pub struct Expect {
    pub namespace: String,
    pub sys_resource: bool,
}

impl Expect {
    pub fn defaults() -> Expect {
        Expect { namespace: mapper_deploy::DEFAULT_NAMESPACE.into(), sys_resource: false }
    }
}

/// Every check, for renderings with non-default values.
pub fn all(o: &Objects, expect: &Expect) {
    namespaced_objects_are_in_the_release_namespace(o, expect);
    selectors_match_pod_labels(o);
    no_container_is_privileged(o);
    agent_capabilities_are_exactly(o, expect.sys_resource);
    server_runs_as_non_root(o);
    ports_agree(o, expect);
    cluster_role_covers_the_server(o);
    cluster_role_grants_nothing_more(o);
    server_binding_and_agent_without_permissions(o, expect);
    agent_token_is_for_the_server(o);
    agent_host_mounts(o);
    resources_are_bounded(o);
    probes_use_the_metrics_port(o);
    network_policy_admits_only_agents(o);
}

pub fn namespaced_objects_are_in_the_release_namespace(o: &Objects, expect: &Expect) {
    for object in &o.all {
        let (meta_ns, name) = match object {
            Object::Namespace(n) => {
                assert_eq!(n.metadata.name.as_deref(), Some(expect.namespace.as_str()), "the namespace created");
                continue;
            }
            Object::ClusterRole(_) | Object::ClusterRoleBinding(_) => continue,
            Object::ServiceAccount(x) => (x.metadata.namespace.clone(), x.metadata.name.clone()),
            Object::Role(x) => (x.metadata.namespace.clone(), x.metadata.name.clone()),
            Object::RoleBinding(x) => (x.metadata.namespace.clone(), x.metadata.name.clone()),
            Object::Service(x) => (x.metadata.namespace.clone(), x.metadata.name.clone()),
            Object::PersistentVolumeClaim(x) => (x.metadata.namespace.clone(), x.metadata.name.clone()),
            Object::Deployment(x) => (x.metadata.namespace.clone(), x.metadata.name.clone()),
            Object::DaemonSet(x) => (x.metadata.namespace.clone(), x.metadata.name.clone()),
            Object::NetworkPolicy(x) => (x.metadata.namespace.clone(), x.metadata.name.clone()),
            Object::Monitor { value, .. } => (
                value["metadata"]["namespace"].as_str().map(str::to_owned),
                value["metadata"]["name"].as_str().map(str::to_owned),
            ),
        };
        assert_eq!(
            meta_ns.as_deref(),
            Some(expect.namespace.as_str()),
            "{} {name:?} carries the release namespace",
            kind_of(object)
        );
    }
}

pub fn selectors_match_pod_labels(o: &Objects) {
    let server = server_template(o);
    let agent = agent_template(o);
    let (server_labels, agent_labels) = (pod_labels(server, "server"), pod_labels(agent, "agent"));
    let deployment = o.named::<Deployment>("mapper-server").spec.as_ref().expect("spec");
    assert!(selects(&deployment.selector, server_labels), "Deployment selector selects its pods");
    assert!(!selects(&deployment.selector, agent_labels), "Deployment selector leaves agent pods alone");
    let daemonset = o.named::<DaemonSet>("mapper-agent").spec.as_ref().expect("spec");
    assert!(selects(&daemonset.selector, agent_labels), "DaemonSet selector selects its pods");
    assert!(!selects(&daemonset.selector, server_labels), "DaemonSet selector leaves server pods alone");
    let service = o.named::<Service>("mapper-server").spec.as_ref().expect("Service spec");
    let selector = service.selector.as_ref().expect("Service mapper-server has a selector (the CLI needs one)");
    assert!(map_selects(selector, server_labels), "Service selects the server pods");
    assert!(!map_selects(selector, agent_labels), "Service does not select agents");
    if let Some(monitor) = o.monitor("ServiceMonitor") {
        let wanted: BTreeMap<String, String> =
            serde_json::from_value(monitor["spec"]["selector"]["matchLabels"].clone())
                .expect("ServiceMonitor matchLabels");
        let service_labels = o.named::<Service>("mapper-server").metadata.labels.as_ref().expect("Service labels");
        assert!(map_selects(&wanted, service_labels), "ServiceMonitor selects Service mapper-server");
        assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"][0], serde_json::json!(o.namespace));
        let port = monitor["spec"]["endpoints"][0]["port"].as_str().expect("endpoint port");
        let ports = service.ports.as_ref().expect("ports");
        assert!(ports.iter().any(|p| p.name.as_deref() == Some(port)), "ServiceMonitor port {port} is a Service port");
    }
    if let Some(monitor) = o.monitor("PodMonitor") {
        let wanted: BTreeMap<String, String> =
            serde_json::from_value(monitor["spec"]["selector"]["matchLabels"].clone()).expect("PodMonitor matchLabels");
        assert!(map_selects(&wanted, agent_labels), "PodMonitor selects the agent pods");
        let port = monitor["spec"]["podMetricsEndpoints"][0]["port"].as_str().expect("endpoint port");
        named_port(only_container(pod_spec(agent, "agent"), "agent"), port);
    }
}

fn containers(o: &Objects) -> Vec<(&'static str, &Container, &PodSpec)> {
    let server = pod_spec(server_template(o), "server");
    let agent = pod_spec(agent_template(o), "agent");
    vec![("server", only_container(server, "server"), server), ("agent", only_container(agent, "agent"), agent)]
}

pub fn no_container_is_privileged(o: &Objects) {
    for (what, c, spec) in containers(o) {
        let sc = c.security_context.as_ref().unwrap_or_else(|| panic!("{what}: securityContext set"));
        assert_ne!(sc.privileged, Some(true), "{what}: not privileged");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}: allowPrivilegeEscalation false");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}: read-only root filesystem");
        let caps = sc.capabilities.as_ref().unwrap_or_else(|| panic!("{what}: capabilities set"));
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]), "{what}: drops ALL capabilities");
        assert!(!caps.add.iter().flatten().any(|c| c == "SYS_ADMIN" || c == "ALL"), "{what}: never SYS_ADMIN or ALL");
        assert_ne!(spec.host_network, Some(true), "{what}: no hostNetwork (no reason written down for it)");
        assert_ne!(spec.host_ipc, Some(true), "{what}: no hostIPC");
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .or(spec.security_context.as_ref().and_then(|p| p.seccomp_profile.as_ref()))
            .unwrap_or_else(|| panic!("{what}: a seccomp profile is chosen"));
        assert!(!seccomp.type_.is_empty(), "{what}: seccomp type");
    }
    let agent = pod_spec(agent_template(o), "agent");
    assert_ne!(agent.host_pid, Some(true), "agent: no hostPID (HOST_NETNS is a mounted file)");
}

pub fn agent_capabilities_are_exactly(o: &Objects, sys_resource: bool) {
    let agent = only_container(pod_spec(agent_template(o), "agent"), "agent");
    let sc = agent.security_context.as_ref().expect("agent securityContext");
    let added: Vec<&str> = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.as_ref())
        .expect("agent adds capabilities")
        .iter()
        .map(String::as_str)
        .collect();
    let mut expected: Vec<&str> = AGENT_CAPABILITIES.to_vec();
    if sys_resource {
        expected.push("SYS_RESOURCE");
    }
    assert_eq!(added, expected, "agent capabilities");
    assert_eq!(sc.run_as_user, Some(0), "agent: uid 0 (it owns its pins on bpffs), powers only from capabilities");
}

pub fn server_runs_as_non_root(o: &Objects) {
    let spec = pod_spec(server_template(o), "server");
    let pod_sc = spec.security_context.as_ref().expect("server pod securityContext");
    let c = only_container(spec, "server");
    let run_as_non_root = c.security_context.as_ref().and_then(|s| s.run_as_non_root).or(pod_sc.run_as_non_root);
    assert_eq!(run_as_non_root, Some(true), "server: runAsNonRoot");
    let uid = c.security_context.as_ref().and_then(|s| s.run_as_user).or(pod_sc.run_as_user);
    assert!(uid.is_some_and(|u| u != 0), "server: a non-zero runAsUser, got {uid:?}");
    assert!(pod_sc.fs_group.is_some(), "server: fsGroup, so the store's volume is writable");
    let sc = c.security_context.as_ref().expect("server securityContext");
    assert!(sc.capabilities.as_ref().and_then(|c| c.add.as_ref()).is_none(), "server adds no capability");
}

pub fn ports_agree(o: &Objects, expect: &Expect) {
    let server = only_container(pod_spec(server_template(o), "server"), "server");
    let agent = only_container(pod_spec(agent_template(o), "agent"), "agent");
    let service = o.named::<Service>("mapper-server").spec.as_ref().expect("Service spec");
    let grpc = service
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("grpc"))
        .expect("Service mapper-server has a port named grpc");
    let target = resolve_port(server, grpc.target_port.as_ref().expect("grpc targetPort"));
    assert_eq!(target, named_port(server, "grpc"), "Service grpc targets the container's grpc port");
    assert_eq!(listen_port(env_required(server, "MAPPER_LISTEN")), target, "server listens where the Service sends");
    assert!(env_required(server, "MAPPER_LISTEN").starts_with("0.0.0.0:"), "server listens beyond loopback");
    let url = env_required(agent, "MAPPER_URL");
    assert_eq!(
        url,
        format!("http://mapper-server.{}.svc:{}", expect.namespace, grpc.port),
        "agents report to the Service's DNS name and port"
    );
    for (what, c, metrics_env) in
        [("server", server, "MAPPER_METRICS_LISTEN"), ("agent", agent, "MAPPER_METRICS_LISTEN")]
    {
        let metrics = named_port(c, "metrics");
        assert_eq!(listen_port(env_required(c, metrics_env)), metrics, "{what}: metrics served on its metrics port");
        let template = if what == "server" { server_template(o) } else { agent_template(o) };
        let annotations = pod_annotations(template, what);
        assert_eq!(
            annotations.get("prometheus.io/scrape").map(String::as_str),
            Some("true"),
            "{what}: scrape annotation"
        );
        assert_eq!(annotations.get("prometheus.io/port"), Some(&metrics.to_string()), "{what}: scrape port annotation");
        assert_eq!(annotations.get("prometheus.io/path").map(String::as_str), Some("/metrics"), "{what}: scrape path");
    }
    let metrics = service.ports.iter().flatten().find(|p| p.name.as_deref() == Some("metrics")).expect("metrics port");
    assert_eq!(resolve_port(server, metrics.target_port.as_ref().expect("targetPort")), named_port(server, "metrics"));
}

pub fn cluster_role_covers_the_server(o: &Objects) {
    let role = o.named::<ClusterRole>("mapper-server");
    let granted = grants(role.rules.as_deref().unwrap_or_default());
    let has = |g: &str, r: &str, v: &str| granted.iter().any(|(gg, rr, vv)| gg == g && rr == r && vv == v);
    for (kind, group, resource) in REFLECTED {
        for verb in ["list", "watch"] {
            assert!(
                has(group, resource, verb),
                "ClusterRole mapper-server: {verb} {resource}.{group} (reflects {kind})"
            );
        }
    }
    for (group, resource) in OWNER_GETS {
        assert!(has(group, resource, "get"), "ClusterRole mapper-server: get {resource}.{group} (owner kind)");
    }
    for verb in ["get", "list", "watch"] {
        assert!(has("k8s.otterize.com", "clientintents", verb), "ClusterRole mapper-server: {verb} clientintents");
    }
    assert!(has("authentication.k8s.io", "tokenreviews", "create"), "ClusterRole mapper-server: create tokenreviews");
}

pub fn cluster_role_grants_nothing_more(o: &Objects) {
    let role = o.named::<ClusterRole>("mapper-server");
    for (group, resource, verb) in grants(role.rules.as_deref().unwrap_or_default()) {
        assert!(group != "*" && resource != "*" && verb != "*", "no wildcard in ClusterRole mapper-server");
        let reflected = REFLECTED.iter().any(|(_, g, r)| *g == group && *r == resource);
        let owner = OWNER_GETS.iter().any(|(g, r)| *g == group && *r == resource);
        let allowed = match (group.as_str(), resource.as_str()) {
            _ if reflected => ["list", "watch"].contains(&verb.as_str()),
            ("k8s.otterize.com", "clientintents") => ["get", "list", "watch"].contains(&verb.as_str()),
            ("authentication.k8s.io", "tokenreviews") => verb == "create",
            _ if owner => verb == "get",
            // rbac.extraOwnerResources: CRD owner kinds, read one at a time.
            (g, _) => verb == "get" && !["", "apps", "batch", "rbac.authorization.k8s.io"].contains(&g),
        };
        assert!(
            allowed,
            "ClusterRole mapper-server grants {verb} on {resource}.{group}, which the server does not use"
        );
    }
    for rule in role.rules.iter().flatten() {
        assert!(rule.non_resource_urls.is_none() && rule.resource_names.is_none(), "plain resource rules only");
    }
}

pub fn server_binding_and_agent_without_permissions(o: &Objects, expect: &Expect) {
    let bindings: Vec<&ClusterRoleBinding> = o.all_of().collect();
    let server = bindings
        .iter()
        .find(|b| b.role_ref.kind == "ClusterRole" && b.role_ref.name == "mapper-server")
        .expect("a ClusterRoleBinding for ClusterRole mapper-server");
    let subjects = server.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "mapper-server is bound to one subject");
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
        ("ServiceAccount", "mapper-server", Some(expect.namespace.as_str())),
        "bound to the server's ServiceAccount"
    );
    assert_eq!(
        pod_spec(server_template(o), "server").service_account_name.as_deref(),
        Some("mapper-server"),
        "server pods run as ServiceAccount mapper-server"
    );
    for object in &o.all {
        let subjects = match object {
            Object::ClusterRoleBinding(b) => b.subjects.clone(),
            Object::RoleBinding(b) => b.subjects.clone(),
            _ => continue,
        };
        assert!(
            !subjects.iter().flatten().any(|s| s.kind == "ServiceAccount" && s.name == "mapper-agent"),
            "no role is bound to ServiceAccount mapper-agent"
        );
    }
    assert_eq!(
        o.named::<ServiceAccount>("mapper-agent").automount_service_account_token,
        Some(false),
        "agent SA: no API token"
    );
    let agent = pod_spec(agent_template(o), "agent");
    assert_eq!(agent.service_account_name.as_deref(), Some("mapper-agent"), "agent pods run as mapper-agent");
    assert_eq!(agent.automount_service_account_token, Some(false), "agent pods mount no API token");
}

pub fn agent_token_is_for_the_server(o: &Objects) {
    let spec = pod_spec(agent_template(o), "agent");
    let agent = only_container(spec, "agent");
    let server = only_container(pod_spec(server_template(o), "server"), "server");
    let token_file = env_required(agent, "MAPPER_TOKEN_FILE");
    let (dir, file) = token_file.rsplit_once('/').expect("token file is a path");
    let mount = agent
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == dir)
        .unwrap_or_else(|| panic!("agent mounts a volume at {dir} (MAPPER_TOKEN_FILE)"));
    let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name).expect("token volume");
    let projection = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.iter().find_map(|s| s.service_account_token.as_ref()))
        .expect("the token volume projects a ServiceAccount token");
    assert_eq!(projection.path, file, "projected at MAPPER_TOKEN_FILE");
    assert_eq!(
        projection.audience.as_deref(),
        Some(env_required(server, "MAPPER_TOKEN_REVIEW_AUDIENCE")),
        "the agent's token is issued for the audience the server reviews"
    );
    let expiry = projection.expiration_seconds.expect("expirationSeconds");
    assert!((600..=3600).contains(&expiry), "short-lived token, got {expiry}s");
    assert_eq!(env_field_ref(server, "POD_NAMESPACE"), Some("metadata.namespace"), "server knows its namespace");
    assert_eq!(
        env_required(server, "MAPPER_AGENT_SERVICE_ACCOUNT"),
        format!("$(POD_NAMESPACE)/{}", spec.service_account_name.as_deref().expect("agent SA")),
        "the server accepts Ingest from the agents' ServiceAccount"
    );
    assert_eq!(env_field_ref(agent, "NODE_NAME"), Some("spec.nodeName"), "NODE_NAME from the downward API");
}

pub fn agent_host_mounts(o: &Objects) {
    let spec = pod_spec(agent_template(o), "agent");
    let agent = only_container(spec, "agent");
    let host_path_of = |mount_path: &str| -> Option<String> {
        let mount = agent.volume_mounts.iter().flatten().find(|m| m.mount_path == mount_path)?;
        let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name)?;
        Some(volume.host_path.as_ref()?.path.clone())
    };
    let bpffs = env_required(agent, "MAPPER_BPFFS");
    let mount_point = Path::new(bpffs)
        .ancestors()
        .find(|p| p.ends_with("sys/fs/bpf"))
        .unwrap_or_else(|| panic!("MAPPER_BPFFS {bpffs} is under a sys/fs/bpf mount point (the agent looks for it)"));
    assert!(
        host_path_of(mount_point.to_str().expect("UTF-8")).is_some(),
        "bpffs mounted from the host at {mount_point:?}"
    );
    let cgroup = env_required(agent, "MAPPER_CGROUP_ROOT");
    assert!(host_path_of(cgroup).is_some(), "MAPPER_CGROUP_ROOT {cgroup} is the host's cgroup2 mount");
    // The programs attach by BTF (tp_btf) and to cgroups: no tracefs.
    assert!(host_path_of("/sys/kernel/tracing").is_none(), "tracefs is mounted although nothing reads it");
    assert_eq!(env_required(agent, "MAPPER_HOST_NETNS"), HOST_NETNS.path, "MAPPER_HOST_NETNS as decided (HOST_NETNS)");
    assert_eq!(
        host_path_of(HOST_NETNS.path).as_deref(),
        Some(HOST_NETNS.host_path),
        "the node's namespace file mounted at MAPPER_HOST_NETNS"
    );
    assert!(agent.volume_mounts.iter().flatten().all(|m| !m.mount_path.ends_with("/proc")), "no /proc mount");
    // The spool outlives the pod: a directory of the node, created when missing.
    let spool = env_required(agent, "MAPPER_SPOOL_DIR");
    let spool_mount = agent.volume_mounts.iter().flatten().find(|m| m.mount_path == spool);
    let spool_volume = spool_mount.and_then(|m| spec.volumes.iter().flatten().find(|v| v.name == m.name));
    let host = spool_volume.and_then(|v| v.host_path.as_ref());
    assert!(host.is_some(), "MAPPER_SPOOL_DIR {spool} is a hostPath mount");
    assert_eq!(host.and_then(|h| h.type_.as_deref()), Some("DirectoryOrCreate"), "the spool's hostPath type");
    for m in agent.volume_mounts.iter().flatten() {
        let writable = m.read_only != Some(true);
        assert!(
            !writable || m.mount_path == mount_point.to_str().expect("UTF-8") || m.mount_path == spool,
            "only bpffs and the spool are writable, not {}",
            m.mount_path
        );
    }
}

pub fn resources_are_bounded(o: &Objects) {
    for (what, c, _) in containers(o) {
        let r = c.resources.as_ref().unwrap_or_else(|| panic!("{what}: resources set"));
        let requests = r.requests.as_ref().unwrap_or_else(|| panic!("{what}: requests"));
        let limits = r.limits.as_ref().unwrap_or_else(|| panic!("{what}: limits"));
        for key in ["cpu", "memory"] {
            assert!(requests.contains_key(key), "{what}: requests {key}");
        }
        assert!(limits.contains_key("memory"), "{what}: a memory limit");
    }
}

pub fn probes_use_the_metrics_port(o: &Objects) {
    for (what, c, _) in containers(o) {
        for (probe, path) in [(&c.readiness_probe, "/readyz"), (&c.liveness_probe, "/healthz")] {
            let get =
                probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{what}: {path} probe"));
            assert_eq!(get.path.as_deref(), Some(path), "{what}: probe path");
            assert_eq!(resolve_port(c, &get.port), named_port(c, "metrics"), "{what}: {path} on the metrics port");
        }
    }
}

pub fn network_policy_admits_only_agents(o: &Objects) {
    let Some(policy) = o.find::<NetworkPolicy>("mapper-server") else { return };
    let spec = policy.spec.as_ref().expect("NetworkPolicy spec");
    let server_labels = pod_labels(server_template(o), "server");
    let agent_labels = pod_labels(agent_template(o), "agent");
    assert!(selects(spec.pod_selector.as_ref().expect("podSelector"), server_labels), "policy applies to the server");
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_owned()][..]), "an Ingress policy");
    let server = only_container(pod_spec(server_template(o), "server"), "server");
    let grpc = named_port(server, "grpc");
    let rules = spec.ingress.as_deref().unwrap_or_default();
    let mut grpc_rules = 0;
    for rule in rules {
        let ports: BTreeSet<i32> = rule
            .ports
            .iter()
            .flatten()
            .map(|p| resolve_port(server, p.port.as_ref().expect("rules name their ports")))
            .collect();
        assert!(!ports.is_empty(), "every rule names its ports");
        if ports.contains(&grpc) {
            grpc_rules += 1;
            let from = rule.from.as_deref().expect("the gRPC rule names its sources");
            assert!(!from.is_empty(), "the gRPC rule names its sources");
            for peer in from {
                assert!(
                    peer.ip_block.is_none() && peer.namespace_selector.is_none(),
                    "gRPC: pods of this namespace only"
                );
                assert!(selects(peer.pod_selector.as_ref().expect("podSelector"), agent_labels), "gRPC: agent pods");
                assert!(!selects(peer.pod_selector.as_ref().expect("podSelector"), server_labels), "gRPC: agents only");
            }
        } else {
            assert_eq!(ports, BTreeSet::from([named_port(server, "metrics")]), "other rules: metrics only");
        }
    }
    assert_eq!(grpc_rules, 1, "one rule admits the gRPC port");
    let agent_policy = o.find::<NetworkPolicy>("mapper-agent").expect("a NetworkPolicy for the agents too");
    let agent_spec = agent_policy.spec.as_ref().expect("spec");
    assert!(selects(agent_spec.pod_selector.as_ref().expect("podSelector"), agent_labels));
    let agent = only_container(pod_spec(agent_template(o), "agent"), "agent");
    for rule in agent_spec.ingress.iter().flatten() {
        for p in rule.ports.iter().flatten() {
            assert_eq!(
                resolve_port(agent, p.port.as_ref().expect("port")),
                named_port(agent, "metrics"),
                "agents: metrics only"
            );
        }
    }
}
