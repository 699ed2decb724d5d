//! The `ClientIntents` API versions the Otterize intents operator serves, as serde types, and
//! the conversions between each of them and the version-neutral [`ClientIntentsDoc`].
//!
//! | version | client | targets |
//! |---|---|---|
//! | `v1alpha2` | `spec.service{name}` | `spec.calls[]{name, type?}`, `svc:` prefix = Service |
//! | `v1alpha3`, `v1beta1` | `spec.service{name, kind}` | `spec.calls[]{name, kind, type, internet}` |
//! | `v2alpha1`, `v2beta1` | `spec.workload{name, kind}` | `spec.targets[]`, one kind each |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::ClientIntentsDoc;

mod opaque;
pub mod v1;
pub mod v1alpha2;
pub mod v2;

pub use opaque::CallType;
pub(crate) use opaque::type_name as value_type_name;

/// API group of every ClientIntents version.
pub const GROUP: &str = "k8s.otterize.com";
/// `kind` of a ClientIntents object.
pub const KIND: &str = "ClientIntents";

/// A ClientIntents API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IntentsVersion {
    /// `k8s.otterize.com/v1alpha2`: no kinds, `svc:` names a Service.
    V1Alpha2,
    /// `k8s.otterize.com/v1alpha3` (alias `v1`).
    V1Alpha3,
    /// `k8s.otterize.com/v1beta1`: same shape as v1alpha3.
    V1Beta1,
    /// `k8s.otterize.com/v2alpha1`.
    V2Alpha1,
    /// `k8s.otterize.com/v2beta1` (alias `v2`).
    V2Beta1,
}

impl IntentsVersion {
    /// Every version, oldest first.
    pub const ALL: [IntentsVersion; 5] = [
        IntentsVersion::V1Alpha2,
        IntentsVersion::V1Alpha3,
        IntentsVersion::V1Beta1,
        IntentsVersion::V2Alpha1,
        IntentsVersion::V2Beta1,
    ];

    /// The bare version, e.g. `v1alpha2`.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentsVersion::V1Alpha2 => "v1alpha2",
            IntentsVersion::V1Alpha3 => "v1alpha3",
            IntentsVersion::V1Beta1 => "v1beta1",
            IntentsVersion::V2Alpha1 => "v2alpha1",
            IntentsVersion::V2Beta1 => "v2beta1",
        }
    }

    /// The full `apiVersion`, e.g. `k8s.otterize.com/v1alpha2`.
    pub fn api_version(self) -> String {
        format!("{GROUP}/{}", self.as_str())
    }

    /// The version named by a document's `apiVersion` (`k8s.otterize.com/<version>`); aliases
    /// are not accepted here because the operator does not serve them.
    pub fn from_api_version(api_version: &str) -> Option<IntentsVersion> {
        let version = api_version.strip_prefix(GROUP)?.strip_prefix('/')?;
        IntentsVersion::ALL.into_iter().find(|v| v.as_str() == version)
    }
}

impl fmt::Display for IntentsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version name that is not one of the known ClientIntents versions or aliases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown ClientIntents version `{given}` (expected v1alpha2, v1alpha3 or v1, v1beta1, v2alpha1, v2beta1 or v2)"
)]
pub struct UnknownVersionError {
    /// What was given.
    pub given: String,
}

impl FromStr for IntentsVersion {
    type Err = UnknownVersionError;

    /// Accepts `v1alpha2`, `v1alpha3`, `v1` (= v1alpha3), `v1beta1`, `v2alpha1`, `v2beta1`,
    /// `v2` (= v2beta1), with or without the `k8s.otterize.com/` group, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let bare = lower.strip_prefix("k8s.otterize.com/").unwrap_or(&lower);
        match bare {
            "v1" => Ok(IntentsVersion::V1Alpha3),
            "v2" => Ok(IntentsVersion::V2Beta1),
            other => IntentsVersion::ALL
                .into_iter()
                .find(|v| v.as_str() == other)
                .ok_or_else(|| UnknownVersionError { given: s.to_owned() }),
        }
    }
}

/// `metadata` of a ClientIntents object (fields other than these are ignored when parsing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(default)]
    pub name: String,
    /// `metadata.namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A ClientIntents object of one version; `S` is the version's spec type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIntents<S> {
    /// `k8s.otterize.com/<version>`.
    pub api_version: String,
    /// Always `ClientIntents`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The version's spec.
    pub spec: S,
}

impl<S> ClientIntents<S> {
    /// An object with `kind: ClientIntents`.
    pub fn new(api_version: String, metadata: ObjectMeta, spec: S) -> Self {
        Self { api_version, kind: KIND.to_owned(), metadata, spec }
    }
}

/// `k8s.otterize.com/v1alpha2` ClientIntents.
pub type ClientIntentsV1Alpha2 = ClientIntents<v1alpha2::Spec>;
/// `k8s.otterize.com/v1alpha3` ClientIntents.
pub type ClientIntentsV1Alpha3 = ClientIntents<v1::Spec>;
/// `k8s.otterize.com/v1beta1` ClientIntents (same shape as v1alpha3).
pub type ClientIntentsV1Beta1 = ClientIntents<v1::Spec>;
/// `k8s.otterize.com/v2alpha1` ClientIntents.
pub type ClientIntentsV2Alpha1 = ClientIntents<v2::Spec>;
/// `k8s.otterize.com/v2beta1` ClientIntents (same shape as v2alpha1).
pub type ClientIntentsV2Beta1 = ClientIntents<v2::Spec>;

/// A ClientIntents object of any version.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum VersionedClientIntents {
    /// v1alpha2.
    V1Alpha2(ClientIntentsV1Alpha2),
    /// v1alpha3.
    V1Alpha3(ClientIntentsV1Alpha3),
    /// v1beta1.
    V1Beta1(ClientIntentsV1Beta1),
    /// v2alpha1.
    V2Alpha1(ClientIntentsV2Alpha1),
    /// v2beta1.
    V2Beta1(ClientIntentsV2Beta1),
}

impl VersionedClientIntents {
    /// The version of this object.
    pub fn version(&self) -> IntentsVersion {
        match self {
            VersionedClientIntents::V1Alpha2(_) => IntentsVersion::V1Alpha2,
            VersionedClientIntents::V1Alpha3(_) => IntentsVersion::V1Alpha3,
            VersionedClientIntents::V1Beta1(_) => IntentsVersion::V1Beta1,
            VersionedClientIntents::V2Alpha1(_) => IntentsVersion::V2Alpha1,
            VersionedClientIntents::V2Beta1(_) => IntentsVersion::V2Beta1,
        }
    }

    /// Converts a neutral document to `version`; fails when a target cannot be expressed in it
    /// (v1alpha2 has no internet or cloud targets).
    pub fn from_doc(doc: &ClientIntentsDoc, version: IntentsVersion) -> Result<Self, ConvertError> {
        let meta = ObjectMeta { name: doc.name.clone(), namespace: doc.namespace.clone() };
        let api_version = version.api_version();
        Ok(match version {
            IntentsVersion::V1Alpha2 => {
                VersionedClientIntents::V1Alpha2(ClientIntents::new(api_version, meta, v1alpha2::spec_from_doc(doc)?))
            }
            IntentsVersion::V1Alpha3 => VersionedClientIntents::V1Alpha3(ClientIntents::new(
                api_version,
                meta,
                v1::spec_from_doc(doc, version)?,
            )),
            IntentsVersion::V1Beta1 => {
                VersionedClientIntents::V1Beta1(ClientIntents::new(api_version, meta, v1::spec_from_doc(doc, version)?))
            }
            IntentsVersion::V2Alpha1 => {
                VersionedClientIntents::V2Alpha1(ClientIntents::new(api_version, meta, v2::spec_from_doc(doc)))
            }
            IntentsVersion::V2Beta1 => {
                VersionedClientIntents::V2Beta1(ClientIntents::new(api_version, meta, v2::spec_from_doc(doc)))
            }
        })
    }

    /// Converts to the neutral model, validating names and target kinds; error paths are
    /// relative to the object (`spec.targets[1]`, `metadata.name`).
    pub fn to_doc(&self) -> Result<ClientIntentsDoc, ConvertError> {
        match self {
            VersionedClientIntents::V1Alpha2(ci) => v1alpha2::doc_from(&ci.metadata, &ci.spec),
            VersionedClientIntents::V1Alpha3(ci) | VersionedClientIntents::V1Beta1(ci) => {
                v1::doc_from(&ci.metadata, &ci.spec)
            }
            VersionedClientIntents::V2Alpha1(ci) | VersionedClientIntents::V2Beta1(ci) => {
                v2::doc_from(&ci.metadata, &ci.spec)
            }
        }
    }
}

impl TryFrom<&VersionedClientIntents> for ClientIntentsDoc {
    type Error = ConvertError;

    fn try_from(value: &VersionedClientIntents) -> Result<Self, Self::Error> {
        value.to_doc()
    }
}

/// What is wrong at one place of a ClientIntents object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A required string is absent or empty.
    #[error("missing or empty")]
    Missing,
    /// A ClientIntents document with an `apiVersion` the operator does not serve.
    #[error(
        "unknown ClientIntents apiVersion `{found}` (expected k8s.otterize.com/ followed by v1alpha2, v1alpha3, v1beta1, v2alpha1 or v2beta1)"
    )]
    UnknownApiVersion {
        /// The apiVersion found.
        found: String,
    },
    /// A v2 target with more than one kind.
    #[error("both {first} and {second} are set")]
    TwoKinds {
        /// First kind set.
        first: &'static str,
        /// Second kind set.
        second: &'static str,
    },
    /// A v2 target with no kind.
    #[error("none of kubernetes, service, kafka, sql, aws, gcp, azure, internet is set")]
    NoKind,
    /// A value of the wrong YAML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the schema wants.
        expected: &'static str,
        /// What the document has.
        found: &'static str,
    },
    /// A field the schema does not have.
    #[error("unknown field `{field}`")]
    UnknownField {
        /// The field's name.
        field: String,
    },
    /// A target name with more than one `.`, which the operator would misread.
    #[error("`{name}` has more than one `.` (the operator reads `<name>.<namespace>` and would ignore the rest)")]
    DottedName {
        /// The name as written.
        name: String,
    },
    /// A call field that its `type` does not allow.
    #[error("`{field}` is not allowed in a call of type {call_type}")]
    FieldNotAllowed {
        /// The offending field.
        field: &'static str,
        /// The call's type (`http` for none).
        call_type: &'static str,
    },
    /// A value that does not deserialize into the schema's type.
    #[error("does not match the schema: {detail}")]
    Schema {
        /// The deserializer's explanation.
        detail: String,
    },
    /// A target that the requested version cannot express.
    #[error("{what} cannot be expressed in {version}")]
    Unsupported {
        /// What cannot be expressed.
        what: String,
        /// The version asked for.
        version: IntentsVersion,
    },
}

/// A [`Problem`] at a path inside one object (`spec.calls[0].name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ConvertError {
    /// Dotted path from the object's root.
    pub path: String,
    /// What is wrong there.
    pub problem: Problem,
}

impl ConvertError {
    pub(crate) fn new(path: impl Into<String>, problem: Problem) -> Self {
        Self { path: path.into(), problem }
    }
}

/// Splits `server` or `server.namespace` the way the operator does; more dots are an error.
pub(crate) fn split_name(written: &str, path: &str) -> Result<(String, Option<String>), ConvertError> {
    let mut parts = written.split('.');
    let name = parts.next().unwrap_or_default().to_owned();
    let namespace = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return Err(ConvertError::new(path, Problem::DottedName { name: written.to_owned() }));
    }
    if name.is_empty() || namespace.as_deref() == Some("") {
        return Err(ConvertError::new(path, Problem::Missing));
    }
    Ok((name, namespace))
}

/// `name` or `name.namespace`.
/// How the API server is named in a document of `doc_namespace`: `kubernetes` in `default` (the
/// Otterize CLI qualifies no target in the client's own namespace), `kubernetes.default`
/// elsewhere and in a document that leaves its namespace to `kubectl apply -n`.
pub(crate) fn api_server_name(doc_namespace: Option<&str>) -> String {
    let namespace = Some(crate::model::API_SERVER_NAMESPACE).filter(|ns| doc_namespace != Some(*ns));
    join_name(crate::model::API_SERVER_NAME, namespace)
}

pub(crate) fn join_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{name}.{ns}"),
        None => name.to_owned(),
    }
}

/// Whether `name`/`namespace` (namespace defaulting to the document's) is `kubernetes.default`.
pub(crate) fn is_api_server(name: &str, namespace: Option<&str>, doc_namespace: Option<&str>) -> bool {
    name == crate::model::API_SERVER_NAME && namespace.or(doc_namespace) == Some(crate::model::API_SERVER_NAMESPACE)
}

/// Checks that a required string is present.
pub(crate) fn required(value: &str, path: impl Into<String>) -> Result<String, ConvertError> {
    if value.is_empty() { Err(ConvertError::new(path, Problem::Missing)) } else { Ok(value.to_owned()) }
}

#[cfg(test)]
mod tests;
