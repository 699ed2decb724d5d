//! What every rendering of the chart must satisfy, whatever the values: the rendered objects
//! typed, and checks that panic naming the object and the rule.
#![allow(dead_code, unreachable_pub)]

pub mod checks;

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    Container, Namespace, PersistentVolumeClaim, PodSpec, PodTemplateSpec, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::{Metadata, Resource};
use mapper_deploy::objects::{self, Object};
use mapper_deploy::{CHART_DIR, Chart, Release, Rendered, render, workspace_root};

// ---- Decisions kept in one place each, so they are easy to adjust ----

/// Capabilities the agent container adds (and it drops ALL). SYS_RESOURCE joins them only with
/// `agent.sysResource: true`.
pub const AGENT_CAPABILITIES: &[&str] = &["BPF", "PERFMON", "NET_ADMIN"];

/// How the agent pod reaches the node's network namespace (values `agent.hostNetns`): the
/// namespace file on the node, mounted as a hostPath file at MAPPER_HOST_NETNS.
pub struct HostNetns {
    /// The file on the node.
    pub host_path: &'static str,
    /// Where the agent sees it (MAPPER_HOST_NETNS).
    pub path: &'static str,
}
pub const HOST_NETNS: HostNetns = HostNetns { host_path: "/proc/1/ns/net", path: "/host/netns/net" };

/// What mapper-server lists and watches (mapper-cluster/src/kube_source.rs), as (kind in the
/// source, API group, resource).
pub const REFLECTED: &[(&str, &str, &str)] = &[
    ("Pod", "", "pods"),
    ("Service", "", "services"),
    ("EndpointSlice", "discovery.k8s.io", "endpointslices"),
    ("ReplicaSet", "apps", "replicasets"),
    ("Job", "batch", "jobs"),
    ("Node", "", "nodes"),
];

/// Built-in owner kinds the server GETs when an owner chain reaches them (kube_source/owners.rs).
pub const OWNER_GETS: &[(&str, &str)] =
    &[("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("batch", "cronjobs")];

// ---- Rendering ----

pub fn root() -> PathBuf {
    workspace_root()
}

pub fn chart() -> Chart {
    Chart::load(&root().join(CHART_DIR)).unwrap_or_else(|e| panic!("chart loads: {e:#}"))
}

/// The chart rendered into `namespace` with `values` (YAML) over its defaults — by real helm
/// when it is at hand ([`helm`]), after checking that mapper-deploy's engine renders the same
/// objects; by the engine alone otherwise.
pub fn render_with(values: &str, namespace: &str) -> Rendered {
    let overlay: serde_json::Value = mapper_intents::stream::from_str(values).expect("test values are YAML");
    let overlays = if overlay.is_null() { vec![] } else { vec![overlay] };
    let release = Release { name: "mapper".into(), namespace: namespace.into() };
    let engine = render(&chart(), &release, &overlays).unwrap_or_else(|e| panic!("chart renders with {values:?}: {e}"));
    let Some(helm) = helm() else { return engine };
    let documents = helm_template(&helm, values, namespace);
    assert_same_objects(&engine.documents, &documents, values);
    // helm template prints no NOTES.txt: the engine's stands.
    Rendered { documents, notes: engine.notes }
}

// ---- Real helm ----

/// The helm binary: `MAPPER_HELM` (scripts/lib.sh ensure_helm exports it), else `helm` on PATH;
/// `None` when neither runs — a failure instead with `MAPPER_REQUIRE_HELM=1` (scripts/test.sh
/// sets it), so CI never silently falls back to the engine alone.
pub fn helm() -> Option<String> {
    static HELM: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HELM.get_or_init(|| {
        let candidate = std::env::var("MAPPER_HELM").unwrap_or_else(|_| "helm".to_owned());
        let works = std::process::Command::new(&candidate).arg("version").output().is_ok_and(|o| o.status.success());
        if !works && std::env::var("MAPPER_REQUIRE_HELM").as_deref() == Ok("1") {
            panic!("no helm: MAPPER_HELM={candidate} does not run (MAPPER_REQUIRE_HELM=1; scripts/lib.sh ensure_helm)");
        }
        works.then_some(candidate)
    })
    .clone()
}

/// Runs `helm` with `args` in the workspace root, `stdin` on its standard input; its stdout.
pub fn run_helm(helm: &str, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(helm)
        .args(args)
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {helm}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).unwrap_or_else(|e| panic!("helm stdin: {e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("helm: {e}"));
    assert!(
        out.status.success(),
        "helm {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("helm output is not UTF-8: {e}"))
}

/// `helm template mapper deploy/helm/mapper -n NAMESPACE -f -` with `values`, as documents.
pub fn helm_template(helm: &str, values: &str, namespace: &str) -> Vec<mapper_deploy::Document> {
    let text = run_helm(helm, &["template", "mapper", CHART_DIR, "-n", namespace, "-f", "-"], values);
    // Documents start at a line that is `---` alone (a comment may end in dashes).
    let mut parts: Vec<String> = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    let mut documents = Vec::new();
    for part in &parts {
        let source = part.lines().find_map(|l| l.strip_prefix("# Source: ")).map(str::to_owned).unwrap_or_default();
        let value: serde_json::Value = mapper_intents::stream::from_str(part)
            .unwrap_or_else(|e| panic!("helm printed a document that is not YAML: {e}"));
        if value.is_null() {
            continue;
        }
        let field = |k: &str| value[k].as_str().map(str::to_owned);
        let kind = field("kind").unwrap_or_else(|| panic!("{source}: no kind"));
        let name = value["metadata"]["name"].as_str().map(str::to_owned).unwrap_or_default();
        let text = part.lines().filter(|l| !l.starts_with("# Source: ")).collect::<Vec<_>>().join("\n");
        documents.push(mapper_deploy::Document { source, kind, name, text, value });
    }
    documents
}

/// Panics naming the first object helm and the engine render differently (compared as parsed
/// YAML, so quoting and key order do not matter; documents keyed by kind and name).
pub fn assert_same_objects(engine: &[mapper_deploy::Document], helm: &[mapper_deploy::Document], values: &str) {
    let keyed = |docs: &[mapper_deploy::Document]| -> BTreeMap<(String, String), serde_json::Value> {
        docs.iter().map(|d| ((d.kind.clone(), d.name.clone()), d.value.clone())).collect()
    };
    let (engine, helm) = (keyed(engine), keyed(helm));
    let names = |m: &BTreeMap<(String, String), serde_json::Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&engine), names(&helm), "values {values:?}: the engine and helm render other objects");
    for (key, value) in &engine {
        if helm.get(key) != Some(value) {
            let text =
                |v: Option<&serde_json::Value>| v.map(|v| mapper_intents::yaml::to_yaml_string(v).unwrap_or_default());
            panic!(
                "values {values:?}: {} {} differs between the engine and helm:\n--- engine\n{}\n--- helm\n{}",
                key.0,
                key.1,
                text(Some(value)).unwrap_or_default(),
                text(helm.get(key)).unwrap_or_default()
            );
        }
    }
}

/// Every document typed; panics naming the first that is not a valid object.
pub fn typed(rendered: &Rendered) -> Vec<Object> {
    rendered.documents.iter().map(|d| objects::parse(d).unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// The rendered objects, by what the checks look up.
pub struct Objects {
    pub all: Vec<Object>,
    pub namespace: String,
}

impl Objects {
    pub fn new(rendered: &Rendered, namespace: &str) -> Objects {
        Objects { all: typed(rendered), namespace: namespace.into() }
    }

    /// Every object of type `T`, in install order.
    pub fn all_of<T: 'static>(&self) -> impl Iterator<Item = &T> {
        self.all.iter().filter_map(|o| parts(o).1.downcast_ref::<T>())
    }

    /// The `T` named `name`, if one was rendered.
    pub fn find<T: Resource + Metadata<Ty = ObjectMeta> + 'static>(&self, name: &str) -> Option<&T> {
        self.all_of::<T>().find(|x| x.metadata().name.as_deref() == Some(name))
    }

    /// The `T` named `name`; panics naming it when none was rendered.
    pub fn named<T: Resource + Metadata<Ty = ObjectMeta> + 'static>(&self, name: &str) -> &T {
        self.find(name).unwrap_or_else(|| panic!("no {} {name}", T::KIND))
    }

    pub fn monitor(&self, kind: &str) -> Option<&serde_json::Value> {
        self.all.iter().find_map(|o| match o {
            Object::Monitor { kind: k, value } if k == kind => Some(value),
            _ => None,
        })
    }

    pub fn kinds(&self) -> Vec<String> {
        self.all.iter().map(kind_of).collect()
    }
}

/// An object's kind, and the typed object inside.
fn parts(o: &Object) -> (&str, &dyn Any) {
    match o {
        Object::Namespace(x) => (Namespace::KIND, &**x),
        Object::ServiceAccount(x) => (ServiceAccount::KIND, &**x),
        Object::ClusterRole(x) => (ClusterRole::KIND, &**x),
        Object::ClusterRoleBinding(x) => (ClusterRoleBinding::KIND, &**x),
        Object::Role(x) => (Role::KIND, &**x),
        Object::RoleBinding(x) => (RoleBinding::KIND, &**x),
        Object::Service(x) => (Service::KIND, &**x),
        Object::PersistentVolumeClaim(x) => (PersistentVolumeClaim::KIND, &**x),
        Object::Deployment(x) => (Deployment::KIND, &**x),
        Object::DaemonSet(x) => (DaemonSet::KIND, &**x),
        Object::NetworkPolicy(x) => (NetworkPolicy::KIND, &**x),
        Object::Monitor { kind, value } => (kind, value),
    }
}

pub fn kind_of(o: &Object) -> String {
    parts(o).0.to_owned()
}

// ---- Accessors ----

pub fn pod_spec<'a>(template: &'a PodTemplateSpec, what: &str) -> &'a PodSpec {
    template.spec.as_ref().unwrap_or_else(|| panic!("{what}: pod template has a spec"))
}

pub fn pod_labels<'a>(template: &'a PodTemplateSpec, what: &str) -> &'a BTreeMap<String, String> {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .unwrap_or_else(|| panic!("{what}: pod template has labels"))
}

pub fn pod_annotations<'a>(template: &'a PodTemplateSpec, what: &str) -> &'a BTreeMap<String, String> {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .unwrap_or_else(|| panic!("{what}: pod template has annotations"))
}

pub fn server_template(o: &Objects) -> &PodTemplateSpec {
    &o.named::<Deployment>("mapper-server").spec.as_ref().expect("Deployment mapper-server has a spec").template
}

pub fn agent_template(o: &Objects) -> &PodTemplateSpec {
    &o.named::<DaemonSet>("mapper-agent").spec.as_ref().expect("DaemonSet mapper-agent has a spec").template
}

pub fn only_container<'a>(spec: &'a PodSpec, what: &str) -> &'a Container {
    assert_eq!(spec.containers.len(), 1, "{what}: one container");
    assert!(spec.init_containers.is_none(), "{what}: no init containers");
    &spec.containers[0]
}

pub fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env.as_ref()?.iter().find(|e| e.name == name)?.value.as_deref()
}

pub fn env_required<'a>(c: &'a Container, name: &str) -> &'a str {
    env(c, name).unwrap_or_else(|| panic!("container {}: env {name} is set", c.name))
}

pub fn env_field_ref<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    let var = c.env.as_ref()?.iter().find(|e| e.name == name)?;
    Some(var.value_from.as_ref()?.field_ref.as_ref()?.field_path.as_str())
}

/// The container port with this name.
pub fn named_port(c: &Container, name: &str) -> i32 {
    c.ports
        .as_ref()
        .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(name)))
        .unwrap_or_else(|| panic!("container {}: port named {name}", c.name))
        .container_port
}

/// A Service or probe port resolved against the container's ports.
pub fn resolve_port(c: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => named_port(c, name),
    }
}

/// The port of `HOST:PORT`.
pub fn listen_port(addr: &str) -> i32 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("{addr:?} is HOST:PORT"))
}

/// Does `selector` select pods labelled `labels`?
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(selector.match_expressions.is_none(), "selectors here use matchLabels only");
    let wanted = selector.match_labels.as_ref().expect("selector has matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn map_selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// (group, resource, verb) triples a set of rules grants.
pub fn grants(rules: &[PolicyRule]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    out.push((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The README's section `## {title}`, up to the next `## ` heading.
pub fn readme_section(title: &str) -> String {
    let readme = read(&root().join("README.md"));
    let rest =
        readme.split(&format!("\n## {title}\n")).nth(1).unwrap_or_else(|| panic!("README has a section {title:?}"));
    rest.split("\n## ").next().unwrap_or(rest).to_owned()
}

/// `cargo metadata --no-deps` of the workspace: its `packages`.
pub fn workspace_packages() -> Vec<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let mut meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    match meta["packages"].take() {
        serde_json::Value::Array(packages) => packages,
        other => panic!("cargo metadata: packages is {other}"),
    }
}

/// The environment variables a binary's clap arguments read (`env = "X"`): in its crate's
/// sources and in those of the workspace crates it depends on (flags shared with
/// `#[command(flatten)]`, such as mapper-telemetry's `--log-format`).
pub fn env_vars_read_by(package: &str) -> Vec<String> {
    let packages = workspace_packages();
    let this =
        packages.iter().find(|p| p["name"] == package).unwrap_or_else(|| panic!("{package} is a workspace package"));
    let manifest = Path::new(this["manifest_path"].as_str().expect("manifest_path"));
    let mut dirs = vec![manifest.parent().expect("crate directory").to_path_buf()];
    for dep in this["dependencies"].as_array().expect("dependencies") {
        if let (Some(path), true) = (dep["path"].as_str(), dep["kind"].is_null()) {
            dirs.push(PathBuf::from(path));
        }
    }
    let text: String = dirs.iter().map(|dir| rust_sources(&dir.join("src"))).collect();
    text.split("env = \"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect()
}

/// Every `.rs` file under `dir`, concatenated.
pub fn rust_sources(dir: &Path) -> String {
    let mut out = String::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("directory entry").path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            out.push_str(&rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&read(&path));
        }
    }
    out
}
