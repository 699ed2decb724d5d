//! Helm release records as Helm's storage drivers keep them, and the objects of their manifests.
//!
//! Helm stores each revision of a release as a Secret (the default driver) or a ConfigMap named
//! `sh.helm.release.v1.<name>.v<revision>`, labelled `owner=helm`, `name=<name>`,
//! `version=<revision>`, `status=<status>`; a Secret has type `helm.sh/release.v1`. Its data
//! key `release` holds the release JSON gzipped and then base64-encoded (a Secret's data is
//! base64 once more in the API's JSON; the Kubernetes client removes that layer). Releases
//! stored before Helm compressed them hold the JSON base64-encoded without gzip; both are read,
//! as Helm does (by the gzip magic bytes).
//!
//! [`decode_release`] reads that value into a [`Release`] (the revision's name, namespace,
//! status, dates, chart and rendered manifest), with the JSON decompressed to at most
//! [`MAX_RELEASE_JSON`] bytes. [`manifest_documents`] splits the manifest into its documents,
//! each with the template it came from, and [`Release::declared`] reads the ClientIntents among
//! them.

use std::io::Read;

use base64::Engine as _;
use serde::Deserialize;

use crate::audit::DeclaredDoc;
use crate::parse::{ParseError, read_documents};

/// The prefix of the Secret or ConfigMap name of every release record.
pub const RECORD_PREFIX: &str = "sh.helm.release.v1.";

/// The type of a release Secret.
pub const SECRET_TYPE: &str = "helm.sh/release.v1";

/// The data key holding the encoded release.
pub const DATA_KEY: &str = "release";

/// The most bytes of release JSON read from one record (a record holds at most 1 MiB of
/// compressed data, as Secrets and ConfigMaps do; the JSON of a real release compresses
/// about tenfold). A record that decompresses to more is refused, not read.
pub const MAX_RELEASE_JSON: u64 = 64 << 20;

/// The name of the record of `revision` of `release`: `sh.helm.release.v1.shop.v3`.
pub fn record_name(release: &str, revision: u32) -> String {
    format!("{RECORD_PREFIX}{release}.v{revision}")
}

/// Why a release record could not be read. `record` names it (`secret team1/sh.helm.release.v1.shop.v3`).
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// The record has no `release` data key.
    #[error("{record}: no data key `release`: not a Helm release record")]
    NoData {
        /// The record.
        record: String,
    },
    /// The `release` value is not base64.
    #[error("{record}: data.release is not base64 (Helm writes base64 of the gzipped release JSON)")]
    Base64 {
        /// The record.
        record: String,
        /// The decoder's error.
        #[source]
        error: base64::DecodeError,
    },
    /// The value starts as gzip does but does not decompress.
    #[error("{record}: data.release is not valid gzip")]
    Gzip {
        /// The record.
        record: String,
        /// The decompressor's error.
        #[source]
        error: std::io::Error,
    },
    /// The release decompresses to more than [`MAX_RELEASE_JSON`] bytes.
    #[error("{record}: the release JSON is larger than {} MiB once decompressed; not read", limit >> 20)]
    TooLarge {
        /// The record.
        record: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// The release is not the JSON of a Helm release.
    #[error("{record}: the release is not valid Helm release JSON")]
    Json {
        /// The record.
        record: String,
        /// The JSON error (with its line and column).
        #[source]
        error: serde_json::Error,
    },
}

/// Why the release records of a file of objects could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The file is not YAML or JSON objects.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A record of the release could not be decoded.
    #[error(transparent)]
    Record(#[from] HelmError),
}

/// The records of release `name` among the objects of `text` (what `kubectl get secrets -A -o
/// yaml` prints: objects or `List`s of them), decoded, in the order found. A record is a Secret
/// of type `helm.sh/release.v1` or a ConfigMap, labelled `owner=helm` and `name=<name>`, and
/// named `sh.helm.release.v1.<name>.v<N>`, as Helm's drivers keep them; every other object is
/// skipped. A release JSON that does not say its namespace gets the record's.
pub fn records_in(text: &str, source_name: &str, name: &str) -> Result<Vec<Release>, RecordsError> {
    let mut out = Vec::new();
    crate::parse::for_each_document(text, source_name, |_, value| {
        let items = match value.get("items").and_then(serde_json::Value::as_array) {
            Some(items)
                if value.get("kind").and_then(serde_json::Value::as_str).is_some_and(|k| k.ends_with("List")) =>
            {
                items.iter().collect()
            }
            _ => vec![&value],
        };
        for object in items {
            if let Some(release) = record_of(object, name)? {
                out.push(release);
            }
        }
        Ok::<(), RecordsError>(())
    })?;
    Ok(out)
}

/// Whether a Secret or ConfigMap named `object_name`, with labels `label`, is a record of
/// release `release` as Helm's drivers name and label them: `sh.helm.release.v1.<release>.v<N>`,
/// `owner=helm`, `name=<release>`. (A Secret must also have type [`SECRET_TYPE`].)
pub fn is_record<'a>(release: &str, object_name: &str, label: impl Fn(&str) -> Option<&'a str>) -> bool {
    label("owner") == Some("helm")
        && label("name") == Some(release)
        && object_name
            .strip_prefix(RECORD_PREFIX)
            .is_some_and(|n| n.strip_prefix(release).is_some_and(|n| n.starts_with(".v")))
}

/// The release a Secret or ConfigMap object holds, when it is a record of release `name`.
fn record_of(object: &serde_json::Value, name: &str) -> Result<Option<Release>, HelmError> {
    let text = |pointer: &str| object.pointer(pointer).and_then(serde_json::Value::as_str);
    let kind = text("/kind").unwrap_or_default();
    let labels = object.pointer("/metadata/labels");
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(serde_json::Value::as_str);
    let is_record = text("/apiVersion") == Some("v1")
        && is_record(name, text("/metadata/name").unwrap_or_default(), label)
        && match kind {
            "Secret" => text("/type") == Some(SECRET_TYPE),
            "ConfigMap" => true,
            _ => false,
        };
    if !is_record {
        return Ok(None);
    }
    let namespace = text("/metadata/namespace").unwrap_or_default();
    let record = format!("{} {namespace}/{}", kind.to_lowercase(), text("/metadata/name").unwrap_or_default());
    let data = text(&format!("/data/{DATA_KEY}")).ok_or_else(|| HelmError::NoData { record: record.clone() })?;
    let mut release = if kind == "Secret" {
        // A Secret's data is base64 once more in the object's text.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|error| HelmError::Base64 { record: record.clone(), error })?;
        decode_release(&bytes, &record)?
    } else {
        decode_release(data.as_bytes(), &record)?
    };
    if release.namespace.is_empty() {
        release.namespace = namespace.to_owned();
    }
    Ok(Some(release))
}

/// One revision of a Helm release, as its record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The release name.
    pub name: String,
    /// The namespace it is installed in.
    pub namespace: String,
    /// The revision (Helm's `version`), counted from 1.
    pub revision: u32,
    /// `deployed`, `superseded`, `failed`, `pending-upgrade`, … (empty when not recorded).
    pub status: String,
    /// When this revision was deployed (RFC 3339, as Helm writes it), when recorded.
    pub last_deployed: Option<String>,
    /// What Helm said about it (`Upgrade complete`, `Rollback to 3`).
    pub description: String,
    /// The chart's name.
    pub chart_name: String,
    /// The chart's version.
    pub chart_version: String,
    /// The rendered manifest: every object Helm applied, `---`-separated.
    pub manifest: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ReleaseJson {
    name: String,
    namespace: String,
    version: u32,
    info: InfoJson,
    chart: ChartJson,
    manifest: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InfoJson {
    status: String,
    last_deployed: Option<String>,
    description: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChartJson {
    metadata: ChartMetadataJson,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChartMetadataJson {
    name: String,
    version: String,
}

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Reads the `release` value of a record (`data`: the bytes after the API's own base64, i.e.
/// the text Helm wrote). `record` names the record in errors.
pub fn decode_release(data: &[u8], record: &str) -> Result<Release, HelmError> {
    decode_release_limited(data, record, MAX_RELEASE_JSON)
}

fn decode_release_limited(data: &[u8], record: &str, limit: u64) -> Result<Release, HelmError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|error| HelmError::Base64 { record: record.to_owned(), error })?;
    let json = if bytes.len() > 3 && bytes[..3] == GZIP_MAGIC {
        // Helm's reader reads every gzip member (Go's gzip.Reader is multistream).
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|error| HelmError::Gzip { record: record.to_owned(), error })?;
        if out.len() as u64 > limit {
            return Err(HelmError::TooLarge { record: record.to_owned(), limit });
        }
        out
    } else {
        bytes
    };
    let release: ReleaseJson =
        serde_json::from_slice(&json).map_err(|error| HelmError::Json { record: record.to_owned(), error })?;
    Ok(Release {
        name: release.name,
        namespace: release.namespace,
        revision: release.version,
        status: release.info.status,
        last_deployed: release.info.last_deployed.filter(|d| !d.is_empty()),
        description: release.info.description,
        chart_name: release.chart.metadata.name,
        chart_version: release.chart.metadata.version,
        manifest: release.manifest,
    })
}

/// What Helm writes in a record for the release JSON `json`: base64 of its gzip. For tests and
/// fixtures that build records.
pub fn encode_release(json: &[u8]) -> String {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(json);
    let bytes = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One document of a rendered manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestDoc<'a> {
    /// The template it was rendered from (`shop/templates/intents.yaml`), from the
    /// `# Source:` comment Helm puts first; `None` when there is none.
    pub template: Option<&'a str>,
    /// The document's text, its `# Source:` line included.
    pub text: &'a str,
}

/// The documents of a manifest, split at `---` lines (as Helm writes them, `---` alone on
/// its line, maybe followed by a comment); documents with nothing but blanks and comments are
/// left out.
pub fn manifest_documents(manifest: &str) -> Vec<ManifestDoc<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    let mut bounds = Vec::new();
    for line in manifest.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            bounds.push((start, offset));
            start = offset + line.len();
        }
        offset += line.len();
    }
    bounds.push((start, manifest.len()));
    for (from, to) in bounds {
        let text = &manifest[from..to];
        let content = text.lines().map(str::trim).any(|l| !l.is_empty() && !l.starts_with('#'));
        if !content {
            continue;
        }
        let template = text
            .lines()
            .map(str::trim)
            .take_while(|l| l.is_empty() || l.starts_with('#'))
            .find_map(|l| l.strip_prefix("# Source:"))
            .map(str::trim);
        docs.push(ManifestDoc { template, text });
    }
    docs
}

impl Release {
    /// `release team1/shop revision 3`.
    pub fn label(&self) -> String {
        format!("release {}/{} revision {}", self.namespace, self.name, self.revision)
    }

    /// The ClientIntents in the manifest, each named by the release and its template
    /// (`release team1/shop revision 3: shop/templates/intents.yaml: document 1`), with
    /// warnings about look-alike kinds skipped. Namespace-less documents get the release's
    /// namespace, where Helm applies them.
    pub fn declared(&self) -> Result<(Vec<DeclaredDoc>, Vec<String>), ParseError> {
        let label = self.label();
        let mut docs = Vec::new();
        let mut warnings = Vec::new();
        for (index, part) in manifest_documents(&self.manifest).into_iter().enumerate() {
            let source_name = match part.template {
                Some(template) => format!("{label}: {template}"),
                None => format!("{label}: manifest document {}", index + 1),
            };
            let read = read_documents(part.text, &source_name)?;
            warnings.extend(read.skipped.iter().map(|s| s.message(&source_name)));
            for parsed in read.docs {
                let place = parsed.path_prefix.trim_end_matches('.');
                let source = if place.is_empty() {
                    format!("{source_name}: document {}", parsed.document)
                } else {
                    format!("{source_name}: document {}: {place}", parsed.document)
                };
                let mut doc = parsed.doc;
                if doc.namespace.is_none() && !self.namespace.is_empty() {
                    doc.namespace = Some(self.namespace.clone());
                }
                docs.push(DeclaredDoc { doc, version: parsed.version, source });
            }
        }
        Ok((docs, warnings))
    }
}

impl Release {
    /// The NetworkPolicies in the manifest, named like [`Release::declared`]'s documents;
    /// namespace-less ones are in the release's namespace.
    pub fn policies(&self) -> Result<Vec<crate::netpol::Policy>, crate::netpol::PolicyReadError> {
        let label = self.label();
        let mut out = Vec::new();
        for (index, part) in manifest_documents(&self.manifest).into_iter().enumerate() {
            let source_name = match part.template {
                Some(template) => format!("{label}: {template}"),
                None => format!("{label}: manifest document {}", index + 1),
            };
            for mut policy in crate::netpol::read_policies(part.text, &source_name)? {
                if policy.namespace.is_none() && !self.namespace.is_empty() {
                    policy.namespace = Some(self.namespace.clone());
                }
                out.push(policy);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
