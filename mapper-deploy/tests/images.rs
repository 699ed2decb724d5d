//! The container build file, checked statically (no container engine runs here): the binaries
//! it builds exist in the workspace, its stages expose the ports and run as the users the chart
//! expects, and the README tells people to build the image names and tag the chart pulls.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use mapper_deploy::DEFAULT_NAMESPACE;

const DOCKERFILE: &str = "deploy/images/Dockerfile";

/// One stage of a Dockerfile: its instructions as (keyword, arguments), continuations joined.
#[derive(Debug, Default)]
struct Stage {
    base: String,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions.iter().filter(|(k, _)| k == keyword).map(|(_, a)| a.as_str()).collect()
    }

    fn last(&self, keyword: &str) -> &str {
        self.all(keyword).last().copied().unwrap_or_else(|| panic!("stage has a {keyword}"))
    }
}

fn stages() -> BTreeMap<String, Stage> {
    let text = read(&root().join(DOCKERFILE));
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
        } else {
            current.push_str(line);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut stages = BTreeMap::new();
    let mut name = String::new();
    for instruction in logical.iter().filter(|l| !l.is_empty()) {
        let (keyword, args) = instruction.split_once(' ').unwrap_or((instruction, ""));
        let keyword = keyword.to_uppercase();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let (base, stage) = match words.as_slice() {
                [base, as_, stage] if as_.eq_ignore_ascii_case("as") => (*base, *stage),
                other => panic!("every stage is named: FROM {other:?}"),
            };
            name = stage.to_owned();
            stages.insert(name.clone(), Stage { base: base.to_owned(), instructions: Vec::new() });
        } else if let Some(stage) = stages.get_mut(&name) {
            stage.instructions.push((keyword, args.trim().to_owned()));
        }
    }
    stages
}

/// (package, bin targets) of every workspace member, from `cargo metadata`.
fn workspace_bins() -> BTreeMap<String, BTreeSet<String>> {
    let mut bins = BTreeMap::new();
    for package in workspace_packages() {
        let names = package["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")))
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        bins.insert(package["name"].as_str().expect("package name").to_owned(), names);
    }
    bins
}

/// The binary a stage runs, from `ENTRYPOINT ["/usr/local/bin/NAME"]`.
fn entrypoint_binary(stage: &Stage) -> String {
    let entry: Vec<String> = serde_json::from_str(stage.last("ENTRYPOINT")).expect("ENTRYPOINT in exec (JSON) form");
    entry[0].rsplit('/').next().expect("a path").to_owned()
}

fn exposed(stage: &Stage) -> BTreeSet<i32> {
    stage
        .all("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().unwrap_or_else(|_| panic!("EXPOSE {p} is a TCP port")))
        .collect()
}

#[test]
fn dockerfile_builds_binaries_the_workspace_has() {
    let stages = stages();
    let build = stages.get("build").expect("a build stage");
    let run =
        build.all("RUN").into_iter().find(|r| r.contains("cargo build")).expect("the build stage runs cargo build");
    assert!(run.contains("--release") && run.contains("--locked"), "release build of the locked dependencies: {run}");
    let packages: Vec<&str> = run.split(" -p ").skip(1).filter_map(|s| s.split_whitespace().next()).collect();
    let bins = workspace_bins();
    for package in &packages {
        let targets =
            bins.get(*package).unwrap_or_else(|| panic!("{DOCKERFILE} builds -p {package}: no such workspace package"));
        assert!(targets.contains(*package), "package {package} has a binary of that name");
        assert!(run.contains(&format!("target/release/{package} ")), "the build stage keeps target/release/{package}");
    }
    for stage in ["server", "agent"] {
        let binary = entrypoint_binary(&stages[stage]);
        assert!(packages.contains(&binary.as_str()), "stage {stage} runs {binary}, which the build stage builds");
        let copy = stages[stage].last("COPY");
        assert!(
            copy.starts_with("--from=build ") && copy.contains(&format!("/{binary} ")),
            "stage {stage} copies {binary}"
        );
    }
    assert_eq!(entrypoint_binary(&stages["server"]), "mapper-server");
    assert_eq!(entrypoint_binary(&stages["agent"]), "mapper-agent");
}

#[test]
fn builder_has_the_toolchain_and_packages_mapper_ebpf_needs() {
    let stages = stages();
    let build = &stages["build"];
    let workspace = read(&root().join("Cargo.toml"));
    let rust_version = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace rust-version");
    assert!(
        read(&root().join(DOCKERFILE)).contains(&format!("ARG RUST_VERSION={rust_version}")),
        "builder on rust {rust_version}"
    );
    assert!(build.base.starts_with("rust:${RUST_VERSION}-"), "builder is the official rust image");
    let install =
        build.all("RUN").into_iter().find(|r| r.contains("apt-get install")).expect("the builder installs packages");
    for package in ["clang", "llvm", "libbpf-dev", "linux-libc-dev"] {
        assert!(
            install.split_whitespace().any(|w| w == package),
            "builder installs {package} (scripts/lib.sh ensure_packages)"
        );
    }
    let ignore = read(&root().join("deploy/images/Dockerfile.dockerignore"));
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "target/ stays out of the build context");
}

#[test]
fn images_expose_the_ports_the_chart_uses() {
    let stages = stages();
    let o = Objects::new(&render_with("", DEFAULT_NAMESPACE), DEFAULT_NAMESPACE);
    let server = only_container(pod_spec(server_template(&o), "server"), "server");
    let agent = only_container(pod_spec(agent_template(&o), "agent"), "agent");
    let container_ports = |c: &k8s_openapi::api::core::v1::Container| -> BTreeSet<i32> {
        c.ports.iter().flatten().map(|p| p.container_port).collect()
    };
    assert_eq!(exposed(&stages["server"]), container_ports(server), "server image EXPOSE = Deployment ports");
    assert_eq!(exposed(&stages["agent"]), container_ports(agent), "agent image EXPOSE = DaemonSet ports");
}

#[test]
fn server_image_runs_as_the_non_root_user_the_chart_sets() {
    let stages = stages();
    let o = Objects::new(&render_with("", DEFAULT_NAMESPACE), DEFAULT_NAMESPACE);
    let pod = pod_spec(server_template(&o), "server").security_context.as_ref().expect("pod securityContext");
    let user = stages["server"].last("USER");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let uid: i64 = uid.parse().unwrap_or_else(|_| panic!("server USER {user} is numeric (runAsNonRoot needs a uid)"));
    assert_ne!(uid, 0, "server image is not root");
    assert_eq!(Some(uid), pod.run_as_user, "image user = Deployment runAsUser");
    assert_eq!(gid.parse::<i64>().ok(), pod.fs_group, "image group = Deployment fsGroup");
    assert!(stages["server"].base.contains(":nonroot"), "server from the distroless nonroot variant");
    assert_eq!(stages["agent"].last("USER"), "0:0", "agent is uid 0, powers from capabilities only");
}

/// The README's build and install commands produce and pull the images the chart names.
#[test]
fn readme_builds_and_pushes_the_images_the_chart_pulls() {
    let chart = chart();
    let section = readme_section("Install in a cluster");
    let version = &chart.meta.app_version;
    let workspace = read(&root().join("Cargo.toml"));
    assert!(workspace.contains(&format!("\nversion = \"{version}\"")), "appVersion {version} is the workspace version");
    for (target, repository) in [("server", "mapper-server"), ("agent", "mapper-agent")] {
        let build = format!("docker build -f {DOCKERFILE} --target {target} -t $REGISTRY/{repository}:{version} .");
        assert!(section.contains(&build), "README builds the {target} image with: {build}");
        assert!(
            section.contains(&format!("docker push $REGISTRY/{repository}:{version}")),
            "README pushes {repository}"
        );
    }
    assert!(section.contains("--set image.registry=$REGISTRY"), "README installs with the registry it pushed to");
    let o =
        Objects::new(&render_with("image: {registry: registry.example/team}", DEFAULT_NAMESPACE), DEFAULT_NAMESPACE);
    let image = |t: &k8s_openapi::api::core::v1::PodTemplateSpec, what: &str| {
        only_container(pod_spec(t, what), what).image.clone().expect("image")
    };
    assert_eq!(image(server_template(&o), "server"), format!("registry.example/team/mapper-server:{version}"));
    assert_eq!(image(agent_template(&o), "agent"), format!("registry.example/team/mapper-agent:{version}"));
    assert!(section.contains("kubectl apply -f deploy/manifests/mapper.yaml"), "README gives the kubectl alternative");
}
