//! Reading inventory files: finding them, splitting them into documents (multi-document YAML,
//! `kind: List`, JSON) and turning each object into what resolution needs.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;
use mapper_intents::stream;
use mapper_intents::walk::{Walk, has_manifest_extension};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{ClusterObjects, PodRecord, ServiceRecord, SliceRecord};

/// How deep directories are searched (a guard against symlink loops).
const MAX_DIR_DEPTH: usize = 16;

/// Where in the inventory an object is: file, document (1-based) and, inside a `List`, item
/// (0-based, as in `items[N]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub document: usize,
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.path.display(), self.document)?;
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        Ok(())
    }
}

/// Why an inventory could not be loaded. Nothing is changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory path {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: document {document}: invalid YAML", path.display())]
    Yaml {
        path: PathBuf,
        /// 1-based.
        document: usize,
        /// The reader's error, with its line and column.
        #[source]
        source: stream::YamlError,
    },
    #[error("{}: document {}: {at}", path.display(), at.document)]
    TooDeep { path: PathBuf, at: stream::TooDeep },
    #[error("{}: document {document}: invalid JSON", path.display())]
    Json {
        path: PathBuf,
        /// 1-based.
        document: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{at}: not an object (a mapping with apiVersion and kind)")]
    NotAnObject { at: Location },
    #[error("{at}: missing {field}")]
    MissingField { at: Location, field: &'static str },
    #[error("{at}: invalid {kind} {name:?}")]
    InvalidObject {
        at: Location,
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Something wrong in an inventory that does not stop it loading: the object at fault is
/// left out (a duplicate) or read as far as it makes sense (an unparsable IP is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryWarning {
    #[error("{at}: pod {pod}: uid {uid} is already pod {first_pod} at {first}; this pod is left out")]
    DuplicateUid { at: Location, pod: String, uid: String, first: Location, first_pod: String },
    #[error("{at}: pod {pod}: no metadata.uid; identified by namespace/name instead")]
    MissingUid { at: Location, pod: String },
    #[error("{at}: pod {pod}: {field} {value:?} is not an IP address; ignored")]
    InvalidIp { at: Location, pod: String, field: String, value: String },
}

/// How many warnings a load keeps (the rest are only counted), so a dump broken throughout
/// costs no more memory than a good one.
pub(crate) const MAX_WARNINGS: usize = 100;

/// What a load found besides the objects.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    /// Each pod UID seen, with where and which pod.
    uids: HashMap<String, (Location, String)>,
    /// The first [`MAX_WARNINGS`] warnings.
    pub(crate) warnings: Vec<InventoryWarning>,
    /// How many there were in all.
    pub(crate) warning_count: usize,
}

impl Checks {
    fn warn(&mut self, warning: InventoryWarning) {
        self.warning_count += 1;
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(warning);
        }
    }
}

/// Pod problems worth a warning; `false` when the pod is to be left out.
fn check_pod(pod: &Pod, at: &Location, checks: &mut Checks) -> bool {
    let meta = &pod.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    let name = format!("{namespace}/{}", meta.name.as_deref().unwrap_or_default());
    let status = pod.status.as_ref();
    let ips = status.and_then(|s| s.pod_ip.as_deref()).map(|ip| ("status.podIP".to_owned(), ip)).into_iter();
    let pod_ips = status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().enumerate();
    let host_ips = status.and_then(|s| s.host_ip.as_deref()).map(|ip| ("status.hostIP".to_owned(), ip)).into_iter();
    let all = ips.chain(pod_ips.map(|(i, p)| (format!("status.podIPs[{i}].ip"), p.ip.as_str()))).chain(host_ips).chain(
        status
            .and_then(|s| s.host_ips.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, h)| (format!("status.hostIPs[{i}].ip"), h.ip.as_str())),
    );
    for (field, value) in all {
        if value.parse::<IpAddr>().is_err() {
            checks.warn(InventoryWarning::InvalidIp {
                at: at.clone(),
                pod: name.clone(),
                field,
                value: value.chars().take(64).collect(),
            });
        }
    }
    // The same key PodRecord::from_pod falls back to.
    let uid = match meta.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => {
            checks.warn(InventoryWarning::MissingUid { at: at.clone(), pod: name.clone() });
            name.clone()
        }
    };
    if let Some((first, first_pod)) = checks.uids.get(&uid) {
        checks.warn(InventoryWarning::DuplicateUid {
            at: at.clone(),
            pod: name,
            uid,
            first: first.clone(),
            first_pod: first_pod.clone(),
        });
        return false;
    }
    checks.uids.insert(uid, (at.clone(), name));
    true
}

/// The inventory files under `paths`: a file is taken as given; a directory is searched
/// recursively for `*.yaml`, `*.yml` and `*.json`, skipping hidden entries (such as the `..data`
/// links of a mounted ConfigMap), in name order.
pub(crate) fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InventoryError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| InventoryError::Read { path: path.clone(), source })?;
        if meta.is_dir() {
            let walk = Walk { take: has_manifest_extension, max_depth: MAX_DIR_DEPTH, skip_hidden: true };
            files.extend(walk.files(path).map_err(|e| InventoryError::Read { path: e.path, source: e.error })?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// What identifies a version of the inventory: every file with its modification time and size.
pub(crate) type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// The fingerprint of the files under `paths` (an error when they cannot be listed).
pub(crate) fn fingerprint(paths: &[PathBuf]) -> Result<Fingerprint, InventoryError> {
    discover(paths)?
        .into_iter()
        .map(|path| {
            let meta =
                std::fs::metadata(&path).map_err(|source| InventoryError::Read { path: path.clone(), source })?;
            Ok((path, meta.modified().ok(), meta.len()))
        })
        .collect()
}

/// Parse every file under `paths` into one set of objects, with the warnings found on the way.
pub(crate) fn load(paths: &[PathBuf], name_annotations: &[&str]) -> Result<(ClusterObjects, Checks), InventoryError> {
    let mut objects = ClusterObjects::default();
    let mut checks = Checks::default();
    for path in discover(paths)? {
        let text =
            std::fs::read_to_string(&path).map_err(|source| InventoryError::Read { path: path.clone(), source })?;
        add_text(&mut objects, &mut checks, &path, &text, name_annotations)?;
    }
    Ok((objects, checks))
}

/// Adds the objects of one file's text (`path` names it, and says whether it is JSON).
pub(crate) fn add_text(
    objects: &mut ClusterObjects,
    checks: &mut Checks,
    path: &Path,
    text: &str,
    name_annotations: &[&str],
) -> Result<(), InventoryError> {
    let text = stream::strip_bom(text);
    let is_json = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let documents = if is_json { json_documents(path, text)? } else { yaml_documents(path, text)? };
    for (index, doc) in documents.into_iter().enumerate() {
        if doc.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let at = Location { path: path.to_owned(), document: index + 1, item: None };
        add_document(objects, checks, doc, &at, name_annotations)?;
    }
    Ok(())
}

fn yaml_documents(path: &Path, text: &str) -> Result<Vec<Value>, InventoryError> {
    stream::documents(text)
        .map(|read| {
            read.map(|(_, value)| value).map_err(|error| match error {
                stream::StreamError::TooDeep(at) => InventoryError::TooDeep { path: path.to_owned(), at },
                stream::StreamError::Yaml(source) => {
                    InventoryError::Yaml { path: path.to_owned(), document: source.document, source }
                }
            })
        })
        .collect()
}

fn json_documents(path: &Path, text: &str) -> Result<Vec<Value>, InventoryError> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
        .map(|(i, doc)| doc.map_err(|source| InventoryError::Json { path: path.to_owned(), document: i + 1, source }))
        .collect()
}

fn field<'a>(doc: &'a Value, name: &'static str, at: &Location) -> Result<&'a str, InventoryError> {
    doc.get(name).and_then(Value::as_str).ok_or_else(|| InventoryError::MissingField { at: at.clone(), field: name })
}

/// One document: an object, or a list whose items are objects.
fn add_document(
    objects: &mut ClusterObjects,
    checks: &mut Checks,
    mut doc: Value,
    at: &Location,
    annotations: &[&str],
) -> Result<(), InventoryError> {
    if !doc.is_object() {
        return Err(InventoryError::NotAnObject { at: at.clone() });
    }
    let api_version = field(&doc, "apiVersion", at)?.to_owned();
    let kind = field(&doc, "kind", at)?.to_owned();
    if let Some(item_kind) = kind.strip_suffix("List")
        && let Some(Value::Array(items)) = doc.get_mut("items").map(Value::take)
    {
        for (i, mut item) in items.into_iter().enumerate() {
            let at = Location { item: Some(at.item.unwrap_or(i)), ..at.clone() };
            // Items of a typed list (`PodList`) carry no apiVersion/kind of their own.
            if let Some(obj) = item.as_object_mut()
                && !item_kind.is_empty()
            {
                obj.entry("apiVersion").or_insert_with(|| Value::String(api_version.clone()));
                obj.entry("kind").or_insert_with(|| Value::String(item_kind.to_owned()));
            }
            add_document(objects, checks, item, &at, annotations)?;
        }
        return Ok(());
    }
    add_object(objects, checks, doc, &api_version, &kind, at, annotations)
}

fn typed<T: DeserializeOwned>(doc: Value, kind: &str, at: &Location) -> Result<T, InventoryError> {
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    if name.is_empty() {
        return Err(InventoryError::MissingField { at: at.clone(), field: "metadata.name" });
    }
    serde_json::from_value(doc).map_err(|source| InventoryError::InvalidObject {
        at: at.clone(),
        kind: kind.to_owned(),
        name,
        source,
    })
}

fn add_object(
    objects: &mut ClusterObjects,
    checks: &mut Checks,
    doc: Value,
    api_version: &str,
    kind: &str,
    at: &Location,
    annotations: &[&str],
) -> Result<(), InventoryError> {
    match (api_version, kind) {
        ("v1", "Pod") => {
            let pod = typed::<Pod>(doc, kind, at)?;
            if check_pod(&pod, at, checks) {
                let record = PodRecord::from_pod(&pod, annotations, &mut objects.strings);
                objects.pods.push(record);
            }
        }
        ("v1", "Service") => objects.services.push(ServiceRecord::from_service(&typed::<Service>(doc, kind, at)?)),
        ("v1", "Namespace") => {
            let _: Namespace = typed(doc, kind, at)?;
        }
        // Never an owner of a pod, and maybe large (Helm's release records): not kept.
        ("v1", "Secret" | "ConfigMap") => {}
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            objects.slices.extend(SliceRecord::from_slice(&typed::<EndpointSlice>(doc, kind, at)?));
        }
        ("apps/v1", "ReplicaSet") => {
            objects.add_owner_of(api_version, kind, &typed::<ReplicaSet>(doc, kind, at)?.metadata)
        }
        ("apps/v1", "Deployment") => {
            objects.add_owner_of(api_version, kind, &typed::<Deployment>(doc, kind, at)?.metadata)
        }
        ("apps/v1", "StatefulSet") => {
            objects.add_owner_of(api_version, kind, &typed::<StatefulSet>(doc, kind, at)?.metadata)
        }
        ("apps/v1", "DaemonSet") => {
            objects.add_owner_of(api_version, kind, &typed::<DaemonSet>(doc, kind, at)?.metadata)
        }
        ("batch/v1", "Job") => objects.add_owner_of(api_version, kind, &typed::<Job>(doc, kind, at)?.metadata),
        ("batch/v1", "CronJob") => objects.add_owner_of(api_version, kind, &typed::<CronJob>(doc, kind, at)?.metadata),
        _ => {
            // Any other kind (a CRD such as an Argo Rollout, a Node, an older API version) is
            // kept by its metadata: it can still be an owner.
            let obj: DynamicObject = typed(doc, kind, at)?;
            match (api_version, kind) {
                ("v1", "Node") => objects.add_node_addresses(&obj.data),
                ("networking.k8s.io/v1" | "networking.k8s.io/v1beta1", "ServiceCIDR") => {
                    objects.add_service_cidrs(&obj.data)
                }
                _ => {}
            }
            objects.add_owner_of(api_version, kind, &obj.metadata);
        }
    }
    Ok(())
}
