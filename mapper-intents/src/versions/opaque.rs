//! How the targets this crate does not model (Kafka, SQL, AWS, GCP, Azure) move between the v2
//! `targets[]` form and the v1 `calls[]` form, following the operator's own conversion webhooks
//! (`kafka{name, topics}` ⇄ `{name, type: kafka, kafkaTopics}` and so on).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ConvertError, IntentsVersion, Problem};
use crate::model::{OtherKind, OtherTarget};

/// `type` of a v1alpha2/v1alpha3/v1beta1 call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallType {
    /// HTTP (also what no `type` means).
    Http,
    /// Kafka topics.
    Kafka,
    /// SQL database.
    Database,
    /// AWS IAM (v1alpha3+).
    Aws,
    /// GCP IAM (v1alpha3+).
    Gcp,
    /// Azure IAM (v1alpha3+).
    Azure,
    /// Traffic leaving the cluster (v1alpha3+).
    Internet,
}

impl CallType {
    /// The name as written in a call.
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::Http => "http",
            CallType::Kafka => "kafka",
            CallType::Database => "database",
            CallType::Aws => "aws",
            CallType::Gcp => "gcp",
            CallType::Azure => "azure",
            CallType::Internet => "internet",
        }
    }
}

/// A call's opaque fields as `(call key, value)`.
pub(crate) type CallFields = Vec<(&'static str, Value)>;

/// How one opaque kind maps between a v2 body and a call.
pub(crate) struct KindMapping {
    pub kind: OtherKind,
    pub call_type: CallType,
    /// The body key that becomes the call's `name`.
    pub name_key: &'static str,
    /// `(v2 body key, v1alpha3/v1beta1 call key)`.
    pub v1: &'static [(&'static str, &'static str)],
    /// `(v2 body key, v1alpha2 call key)`; `None` when v1alpha2 has no such type.
    pub v1alpha2: Option<&'static [(&'static str, &'static str)]>,
}

const MAPPINGS: [KindMapping; 5] = [
    KindMapping {
        kind: OtherKind::Kafka,
        call_type: CallType::Kafka,
        name_key: "name",
        v1: &[("topics", "kafkaTopics")],
        v1alpha2: Some(&[("topics", "topics")]),
    },
    KindMapping {
        kind: OtherKind::Sql,
        call_type: CallType::Database,
        name_key: "name",
        v1: &[("privileges", "databaseResources")],
        v1alpha2: Some(&[("privileges", "databaseResources")]),
    },
    KindMapping {
        kind: OtherKind::Aws,
        call_type: CallType::Aws,
        name_key: "arn",
        v1: &[("actions", "awsActions")],
        v1alpha2: None,
    },
    KindMapping {
        kind: OtherKind::Gcp,
        call_type: CallType::Gcp,
        name_key: "resource",
        v1: &[("permissions", "gcpPermissions")],
        v1alpha2: None,
    },
    KindMapping {
        kind: OtherKind::Azure,
        call_type: CallType::Azure,
        name_key: "scope",
        v1: &[("roles", "azureRoles"), ("keyVaultPolicy", "azureKeyVaultPolicy")],
        v1alpha2: None,
    },
];

/// The mapping of an opaque kind.
pub(crate) fn for_kind(kind: OtherKind) -> &'static KindMapping {
    // MAPPINGS lists every OtherKind in declaration order.
    &MAPPINGS[kind as usize]
}

/// The mapping of a call type, when it is an opaque kind.
pub(crate) fn for_call_type(call_type: CallType) -> Option<&'static KindMapping> {
    MAPPINGS.iter().find(|m| m.call_type == call_type)
}

impl KindMapping {
    fn fields(&self, version: IntentsVersion) -> Option<&'static [(&'static str, &'static str)]> {
        match version {
            IntentsVersion::V1Alpha2 => self.v1alpha2,
            _ => Some(self.v1),
        }
    }

    /// Builds the v2 body from a call's name and its set opaque fields (`(call key, value)`).
    pub fn body_from_call(
        &self,
        version: IntentsVersion,
        name: &str,
        set_fields: &[(&'static str, Value)],
        path: &str,
    ) -> Result<OtherTarget, ConvertError> {
        let fields = self.fields(version).unwrap_or_default();
        let mut body = Map::new();
        body.insert(self.name_key.to_owned(), Value::from(name));
        for (call_key, value) in set_fields {
            let Some((body_key, _)) = fields.iter().find(|(_, k)| k == call_key) else {
                return Err(ConvertError::new(
                    path,
                    Problem::FieldNotAllowed { field: call_key, call_type: self.call_type.as_str() },
                ));
            };
            body.insert((*body_key).to_owned(), value.clone());
        }
        Ok(OtherTarget { kind: self.kind, body: Value::Object(body) })
    }

    /// Splits a v2 body into the call's name and `(call key, value)` fields for `version`.
    pub fn call_from_body(
        &self,
        version: IntentsVersion,
        target: &OtherTarget,
        path: &str,
    ) -> Result<(String, CallFields), ConvertError> {
        let unsupported = |what: String| ConvertError::new(path, Problem::Unsupported { what, version });
        let Some(fields) = self.fields(version) else {
            return Err(unsupported(format!("a {} target", self.kind.key())));
        };
        let Value::Object(body) = &target.body else {
            return Err(ConvertError::new(
                format!("{path}.{}", self.kind.key()),
                Problem::WrongType { expected: "a mapping", found: type_name(&target.body) },
            ));
        };
        let mut name = None;
        let mut out = Vec::new();
        for (key, value) in body {
            let key_str = key.as_str();
            if key_str == self.name_key {
                name = value.as_str().map(str::to_owned);
            } else if let Some((_, call_key)) = fields.iter().find(|(k, _)| *k == key_str) {
                out.push((*call_key, value.clone()));
            } else {
                return Err(unsupported(format!("`{}.{key_str}`", self.kind.key())));
            }
        }
        let name = name.filter(|n| !n.is_empty()).ok_or_else(|| {
            ConvertError::new(format!("{path}.{}.{}", self.kind.key(), self.name_key), Problem::Missing)
        })?;
        Ok((name, out))
    }
}

/// A short name of a YAML value's type, for error messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}
