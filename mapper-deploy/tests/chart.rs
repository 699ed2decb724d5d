//! The chart with its default values, and the plain manifests generated from it: one test per
//! property, so a failure names what broke.

mod common;

use common::checks::{self, Expect};
use common::*;
use k8s_openapi::api::core::v1::Service;
use mapper_deploy::{DEFAULT_NAMESPACE, MANIFESTS_FILE, render_manifests};

fn defaults() -> Objects {
    Objects::new(&render_with("", DEFAULT_NAMESPACE), DEFAULT_NAMESPACE)
}

/// deploy/manifests/mapper.yaml is the chart rendered; `MAPPER_BLESS=1` rewrites it (as does
/// `cargo run -p mapper-deploy -- manifests`).
#[test]
fn manifests_are_the_chart_rendered_with_defaults() {
    let expected = render_manifests(&root()).unwrap_or_else(|e| panic!("manifests render: {e}"));
    let path = root().join(MANIFESTS_FILE);
    if std::env::var_os("MAPPER_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != expected {
        let shorter = current.lines().count().min(expected.lines().count());
        let line = current.lines().zip(expected.lines()).position(|(a, b)| a != b).unwrap_or(shorter) + 1;
        panic!(
            "{MANIFESTS_FILE} differs from the chart (first at line {line}): run `cargo run -p mapper-deploy -- \
             manifests` (or this test with MAPPER_BLESS=1) and commit the result"
        );
    }
}

#[test]
fn manifests_parse_into_kubernetes_types_and_create_the_namespace_first() {
    let text = read(&root().join(MANIFESTS_FILE));
    let mut kinds = Vec::new();
    for doc in mapper_intents::stream::documents::<serde_json::Value>(&text) {
        let (_, value) = doc.expect("manifest documents are YAML");
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().expect("kind").to_owned();
        let name = value["metadata"]["name"].as_str().expect("name").to_owned();
        let doc = mapper_deploy::Document {
            source: MANIFESTS_FILE.into(),
            kind: kind.clone(),
            name,
            text: String::new(),
            value,
        };
        mapper_deploy::objects::parse(&doc).unwrap_or_else(|e| panic!("{e}"));
        kinds.push(kind);
    }
    assert_eq!(kinds.first().map(String::as_str), Some("Namespace"), "kubectl apply creates the namespace first");
    for kind in
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "DaemonSet", "Deployment", "NetworkPolicy"]
    {
        assert!(kinds.iter().any(|k| k == kind), "the manifests hold a {kind}");
    }
}

#[test]
fn every_object_parses_with_no_field_unknown_to_kubernetes() {
    let o = defaults();
    let mut kinds = o.kinds();
    kinds.sort();
    let mut expected = vec![
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Deployment",
        "NetworkPolicy",
        "NetworkPolicy",
        "Role",
        "Service",
        "ServiceAccount",
        "ServiceAccount",
    ];
    expected.sort();
    assert_eq!(kinds, expected, "the objects a default install creates");
}

#[test]
fn objects_are_in_the_release_namespace() {
    checks::namespaced_objects_are_in_the_release_namespace(&defaults(), &Expect::defaults());
}

#[test]
fn selectors_match_pod_labels() {
    checks::selectors_match_pod_labels(&defaults());
}

#[test]
fn no_container_is_privileged() {
    checks::no_container_is_privileged(&defaults());
}

#[test]
fn agent_adds_only_the_listed_capabilities() {
    checks::agent_capabilities_are_exactly(&defaults(), false);
}

#[test]
fn server_runs_as_non_root() {
    checks::server_runs_as_non_root(&defaults());
}

#[test]
fn ports_agree_between_deployment_service_agent_and_probes() {
    checks::ports_agree(&defaults(), &Expect::defaults());
}

/// The names and port the CLI assumes by default are the ones the chart creates.
#[test]
fn cli_defaults_find_the_server() {
    let o = defaults();
    let service = o.named::<Service>("mapper-server");
    let grpc = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.iter().find(|p| p.name.as_deref() == Some("grpc")));
    let cli = rust_sources(&root().join("cli/src"));
    for (env, default) in [
        ("MAPPER_SERVICE_NAME", "default_value = \"mapper-server\"".to_owned()),
        ("MAPPER_NAMESPACE", format!("default_value = \"{DEFAULT_NAMESPACE}\"")),
        ("MAPPER_SERVICE_PORT", format!("default_value_t = {}", grpc.expect("grpc port").port)),
    ] {
        let line =
            cli.lines().find(|l| l.contains(&format!("env = \"{env}\""))).unwrap_or_else(|| panic!("cli reads {env}"));
        assert!(line.contains(&default), "the CLI's {env} default ({line}) matches the chart ({default})");
    }
}

/// Every kind mapper-cluster reflects has list+watch; the list here follows its source.
#[test]
fn cluster_role_lists_and_watches_every_reflected_kind() {
    let source = read(&root().join("mapper-cluster/src/kube_source.rs"));
    let reflected: Vec<&str> = source.split("reflect(client, \"").skip(1).filter_map(|s| s.split('"').next()).collect();
    let mut listed: Vec<&str> = REFLECTED.iter().map(|(kind, _, _)| *kind).collect();
    let mut found = reflected.clone();
    listed.sort_unstable();
    found.sort_unstable();
    assert_eq!(found, listed, "kube_source.rs reflects these kinds: update REFLECTED and the ClusterRole");
    checks::cluster_role_covers_the_server(&defaults());
}

#[test]
fn cluster_role_grants_nothing_the_server_does_not_use() {
    checks::cluster_role_grants_nothing_more(&defaults());
}

#[test]
fn server_account_is_bound_and_agent_account_has_no_permissions() {
    checks::server_binding_and_agent_without_permissions(&defaults(), &Expect::defaults());
}

#[test]
fn agent_token_is_projected_for_the_audience_the_server_reviews() {
    checks::agent_token_is_for_the_server(&defaults());
}

#[test]
fn agent_mounts_bpffs_cgroup2_and_the_node_netns_only() {
    checks::agent_host_mounts(&defaults());
}

#[test]
fn agent_runs_on_every_node() {
    let o = defaults();
    let spec = pod_spec(agent_template(&o), "agent");
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    assert!(
        tolerations.iter().any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()),
        "the agent tolerates every taint"
    );
}

#[test]
fn requests_and_limits_are_set() {
    checks::resources_are_bounded(&defaults());
}

#[test]
fn probes_hit_readyz_and_healthz_on_the_metrics_port() {
    checks::probes_use_the_metrics_port(&defaults());
}

#[test]
fn network_policy_admits_only_agents_to_the_grpc_port() {
    checks::network_policy_admits_only_agents(&defaults());
}

/// Every environment variable the chart sets is one the binary reads (flags read MAPPER_* too).
#[test]
fn env_vars_are_flags_the_binaries_read() {
    let o = defaults();
    for (what, package, template) in
        [("server", "mapper-server", server_template(&o)), ("agent", "mapper-agent", agent_template(&o))]
    {
        let known = env_vars_read_by(package);
        let c = only_container(pod_spec(template, what), what);
        for var in c.env.iter().flatten() {
            let read = known.contains(&var.name);
            let helper = var.name == "POD_NAMESPACE";
            assert!(read || helper, "{what} sets {}, which {package} does not read", var.name);
        }
    }
}

/// With real helm at hand: `helm lint --strict` passes with the defaults and with every values
/// set the tests render, and `helm template` with `createNamespace: true` gives the objects of
/// deploy/manifests/mapper.yaml (compared parsed: helm quotes `cpu: '1'` where the manifests
/// have `"1"`).
#[test]
fn helm_lints_the_chart_and_renders_the_manifests() {
    let Some(helm) = helm() else {
        eprintln!(
            "SKIPPED helm_lints_the_chart_and_renders_the_manifests: no helm (MAPPER_HELM; scripts/lib.sh ensure_helm)"
        );
        return;
    };
    for values in [
        "",
        "createNamespace: true",
        "server: {persistence: {enabled: true, storageClassName: fast, size: 5Gi}}",
        "serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}",
        "networkPolicy: {enabled: false}",
        "agent: {sysResource: true}",
    ] {
        let out = run_helm(&helm, &["lint", "--strict", mapper_deploy::CHART_DIR, "-f", "-"], values);
        assert!(out.contains("1 chart(s) linted, 0 chart(s) failed"), "helm lint with {values:?}: {out}");
    }
    let from_helm = helm_template(&helm, "createNamespace: true", DEFAULT_NAMESPACE);
    let text = read(&root().join(MANIFESTS_FILE));
    let mut manifests = Vec::new();
    for doc in mapper_intents::stream::documents::<serde_json::Value>(&text) {
        let (_, value) = doc.expect("manifest documents are YAML");
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let name = value["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        manifests.push(mapper_deploy::Document {
            source: MANIFESTS_FILE.into(),
            kind,
            name,
            text: String::new(),
            value,
        });
    }
    assert_same_objects(&manifests, &from_helm, "createNamespace: true (deploy/manifests/mapper.yaml)");
}
