//! A chart directory as helm reads it: `Chart.yaml`, `values.yaml` and the files under
//! `templates/` (`_*` files only define templates; `NOTES.txt` is printed after an install,
//! never applied).

use std::fs;
use std::path::{Path, PathBuf};

use mapper_intents::walk::Walk;
use serde::Deserialize;

/// What a chart could not be read for.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML")]
    Yaml {
        path: PathBuf,
        #[source]
        source: mapper_intents::stream::YamlError,
    },
    #[error("{path}: apiVersion is {found:?}; helm 3 charts are apiVersion v2")]
    ApiVersion { path: PathBuf, found: String },
    #[error("{path} is not UTF-8")]
    NotUtf8 { path: PathBuf },
}

/// The fields of `Chart.yaml` templates read (as `.Chart.Name`, `.Chart.Version`, `.Chart.AppVersion`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartMeta {
    pub api_version: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub app_version: String,
}

/// One file under `templates/`, named as helm names it (`mapper/templates/x.yaml`).
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub name: String,
    pub text: String,
}

impl TemplateFile {
    /// Helm renders `_*` files only for their `define`s.
    pub fn is_partial(&self) -> bool {
        self.name.rsplit('/').next().is_some_and(|base| base.starts_with('_'))
    }

    pub fn is_notes(&self) -> bool {
        self.name.ends_with("/NOTES.txt")
    }
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub meta: ChartMeta,
    /// `values.yaml`: the defaults.
    pub values: serde_json::Value,
    /// Every file under `templates/`, sorted by name.
    pub templates: Vec<TemplateFile>,
}

fn read(path: &Path) -> Result<String, ChartError> {
    fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::InvalidData => ChartError::NotUtf8 { path: path.to_path_buf() },
        _ => ChartError::Read { path: path.to_path_buf(), source },
    })
}

fn yaml<T: serde::de::DeserializeOwned + Send>(path: &Path) -> Result<T, ChartError> {
    mapper_intents::stream::from_str(&read(path)?)
        .map_err(|source| ChartError::Yaml { path: path.to_path_buf(), source })
}

impl Chart {
    pub fn load(dir: &Path) -> Result<Chart, ChartError> {
        let chart_yaml = dir.join("Chart.yaml");
        let meta: ChartMeta = yaml(&chart_yaml)?;
        if meta.api_version != "v2" {
            return Err(ChartError::ApiVersion { path: chart_yaml, found: meta.api_version });
        }
        let values = yaml(&dir.join("values.yaml"))?;
        let mut templates = Vec::new();
        collect(&dir.join("templates"), &format!("{}/templates", meta.name), &mut templates)?;
        templates.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Chart { meta, values, templates })
    }
}

/// Every file below `dir` (any name, hidden ones too, at any depth), named
/// `prefix/relative/path`.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<TemplateFile>) -> Result<(), ChartError> {
    let walk = Walk { take: |_| true, max_depth: usize::MAX, skip_hidden: false };
    let files = walk.files(dir).map_err(|e| ChartError::Read { path: e.path, source: e.error })?;
    for path in files {
        let relative = path.strip_prefix(dir).unwrap_or(&path);
        let parts: Vec<_> = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect();
        out.push(TemplateFile { name: format!("{prefix}/{}", parts.join("/")), text: read(&path)? });
    }
    Ok(())
}
