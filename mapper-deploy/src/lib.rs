//! mapper's deployment, checked without a cluster and without helm.
//!
//! The Helm chart in `deploy/helm/mapper` is the one source: [`engine::render`] renders its
//! templates the way `helm template` does — Go's text/template (the `gtmpl-ng` crate) with the
//! Helm functions the chart uses implemented here as helm implements them ([`funcs`]) — and
//! `deploy/manifests/mapper.yaml` is that rendering with the default values
//! ([`render_manifests`]). [`objects`] parses every rendered document into its k8s-openapi type,
//! refusing fields the Kubernetes schema does not know; the tests in `tests/` check what the
//! objects must say to each other (selectors, RBAC, capabilities, ports, images).
#![forbid(unsafe_code)]

pub mod chart;
pub mod engine;
pub mod funcs;
pub mod objects;
pub mod values;

use std::path::{Path, PathBuf};

pub use chart::{Chart, ChartError};
pub use engine::{Document, Release, RenderError, Rendered, render};

/// The chart, relative to the workspace root.
pub const CHART_DIR: &str = "deploy/helm/mapper";
/// The plain manifests, relative to the workspace root.
pub const MANIFESTS_FILE: &str = "deploy/manifests/mapper.yaml";
/// The namespace everything installs into by default (the CLI's `--mapper-namespace`).
pub const DEFAULT_NAMESPACE: &str = "mapper-system";

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// `deploy/manifests/mapper.yaml` as it must be: the chart under `root` rendered as release
/// `mapper` into [`DEFAULT_NAMESPACE`] with its defaults plus `createNamespace: true` (`kubectl
/// apply` has no `--create-namespace`), behind a header that says how to regenerate it.
pub fn render_manifests(root: &Path) -> Result<String, RenderError> {
    let chart = Chart::load(&root.join(CHART_DIR))?;
    let overlay = serde_json::json!({ "createNamespace": true });
    let release = Release { name: "mapper".into(), namespace: DEFAULT_NAMESPACE.into() };
    let rendered = render(&chart, &release, &[overlay])?;
    let header = format!(
        "# mapper {version}: the Helm chart {CHART_DIR} rendered with its default values and\n\
         # createNamespace: true, into namespace {DEFAULT_NAMESPACE}. Generated: do not edit; change the chart\n\
         # and run `cargo run -p mapper-deploy -- manifests` (a test fails while they differ).\n\
         # Install: kubectl apply -f {MANIFESTS_FILE}\n",
        version = chart.meta.app_version,
    );
    Ok(format!("{header}{}", rendered.to_yaml_stream()))
}
