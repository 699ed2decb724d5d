//! Reading ClientIntents out of YAML or JSON text as `kubectl` or `helm template` prints it.
//!
//! Every document whose `kind` is `ClientIntents` is read, in any served version; `List` and
//! `ClientIntentsList` documents are read item by item, and so is a bare array of objects (what
//! `otterize mapper export --format json` writes); everything else (Deployments,
//! Services, comment-only documents) is skipped. JSON is read as the YAML it also is. A
//! leading byte-order mark is dropped, and nesting deeper than
//! [`MAX_DEPTH`](stream::MAX_DEPTH) is an error found in linear time (see [`crate::stream`]).
//!
//! A skipped document that looks meant as ClientIntents (a `kind` a letter or two off, in
//! another case, without its `s`; or an unknown kind under `k8s.otterize.com`) is reported as
//! [`Skipped`], for the caller to warn about.
//!
//! Errors name the source, the document (counted from 1, in the order the YAML stream yields
//! them) and the field path inside it, with array indexes counted from 0 as in `kubectl`:
//! `charts/x.yaml: document 2: spec.targets[1]: both kubernetes and service are set`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::model::ClientIntentsDoc;
use crate::stream;
use crate::versions::{
    ClientIntents, ConvertError, IntentsVersion, KIND, ObjectMeta, Problem, VersionedClientIntents, v1, v1alpha2, v2,
};

/// Why a text could not be read as ClientIntents.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not well-formed YAML (or JSON).
    #[error("{source_name}: document {document}: malformed YAML{}", location(*line, *column))]
    MalformedYaml {
        /// The file (or other source) name given to the parser.
        source_name: String,
        /// The document, counted from 1.
        document: usize,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// 1-based column of the error, when known.
        column: Option<usize>,
        /// The YAML reader's error.
        #[source]
        error: Box<stream::YamlError>,
    },
    /// Sequences or mappings nested deeper than [`MAX_DEPTH`](stream::MAX_DEPTH) (nothing is
    /// read then).
    #[error("{source_name}: document {}: {}", at.document, at)]
    TooDeep {
        /// The file (or other source) name given to the parser.
        source_name: String,
        /// Where, and the limit.
        at: stream::TooDeep,
    },
    /// A ClientIntents document that does not fit its schema.
    #[error("{source_name}: document {document}: {}{problem}", path_prefix(path))]
    Invalid {
        /// The file (or other source) name given to the parser.
        source_name: String,
        /// The document, counted from 1.
        document: usize,
        /// Field path inside the document, e.g. `spec.calls[0].name` (`items[2].` first for a
        /// List); empty when the whole document is at fault.
        path: String,
        /// What is wrong.
        problem: Problem,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        _ => String::new(),
    }
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() { String::new() } else { format!("{path}: ") }
}

/// Reads every ClientIntents object in `text` (multi-document YAML, or JSON) into the neutral
/// model, in order. `source_name` only labels errors.
pub fn parse_documents(text: &str, source_name: &str) -> Result<Vec<ClientIntentsDoc>, ParseError> {
    Ok(parse_documents_with_origin(text, source_name)?.into_iter().map(|parsed| parsed.doc).collect())
}

/// One ClientIntents object read into the neutral model, with where it was and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDoc {
    /// The document it is in, counted from 1.
    pub document: usize,
    /// Its path inside the document: `items[3].` in a List, empty otherwise.
    pub path_prefix: String,
    /// The version it is written in.
    pub version: IntentsVersion,
    /// The object.
    pub doc: ClientIntentsDoc,
}

/// A document (or List item) skipped although it looks meant as ClientIntents: its kind is
/// close to `ClientIntents`, or it is an unknown kind of the Otterize API group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The document it is in, counted from 1.
    pub document: usize,
    /// Its path inside the document: `items[3].` in a List, empty otherwise.
    pub path_prefix: String,
    /// Its `apiVersion` (empty when it has none).
    pub api_version: String,
    /// Its `kind` (empty when it has none).
    pub kind: String,
}

impl Skipped {
    /// A one-line warning naming `source_name`, the document and what was found.
    pub fn message(&self, source_name: &str) -> String {
        let place = self.path_prefix.trim_end_matches('.');
        let place = if place.is_empty() { String::new() } else { format!(": {place}") };
        format!(
            "{source_name}: document {}{place}: kind `{}` (apiVersion `{}`) is not ClientIntents; skipped (the kind \
             must be exactly `ClientIntents`)",
            self.document, self.kind, self.api_version
        )
    }
}

/// Everything read from one text: the ClientIntents objects, and the look-alikes skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Documents {
    /// The ClientIntents objects, in order.
    pub docs: Vec<ParsedDoc>,
    /// Documents skipped that look meant as ClientIntents, in order.
    pub skipped: Vec<Skipped>,
}

/// [`parse_documents`], keeping each object's document number and version.
pub fn parse_documents_with_origin(text: &str, source_name: &str) -> Result<Vec<ParsedDoc>, ParseError> {
    Ok(read_documents(text, source_name)?.docs)
}

/// [`parse_documents_with_origin`], also reporting the look-alike documents skipped.
pub fn read_documents(text: &str, source_name: &str) -> Result<Documents, ParseError> {
    let (found, skipped) = parse_versioned_reporting(text, source_name)?;
    let mut docs = Vec::new();
    for found in found {
        let doc = found.object.to_doc().map_err(|e| invalid(source_name, found.document, &found.path_prefix, e))?;
        docs.push(ParsedDoc {
            document: found.document,
            path_prefix: found.path_prefix,
            version: found.object.version(),
            doc,
        });
    }
    Ok(Documents { docs, skipped })
}

/// One ClientIntents object as found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundObject {
    /// The document it is in, counted from 1.
    pub document: usize,
    /// Its path inside the document: `items[3].` in a List, empty otherwise.
    pub path_prefix: String,
    /// The object, in its own version.
    pub object: VersionedClientIntents,
}

/// Reads every ClientIntents object in `text` in its own version, checking its structure but
/// not converting it (so `to_doc` may still fail on missing names or target kinds).
pub fn parse_versioned(text: &str, source_name: &str) -> Result<Vec<FoundObject>, ParseError> {
    Ok(parse_versioned_reporting(text, source_name)?.0)
}

/// [`parse_versioned`], also reporting the look-alike documents skipped.
pub fn parse_versioned_reporting(
    text: &str,
    source_name: &str,
) -> Result<(Vec<FoundObject>, Vec<Skipped>), ParseError> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for_each_document(text, source_name, |document, value| {
        let mut objects = Vec::new();
        let mut suspects = Vec::new();
        collect(&value, "", &mut objects, &mut suspects)
            .map_err(|(prefix, e)| invalid(source_name, document, &prefix, e))?;
        found.extend(objects.into_iter().map(|(path_prefix, object)| FoundObject { document, path_prefix, object }));
        skipped.extend(suspects.into_iter().map(|(path_prefix, api_version, kind)| Skipped {
            document,
            path_prefix,
            api_version,
            kind,
        }));
        Ok(())
    })?;
    Ok((found, skipped))
}

impl ParseError {
    /// The error of [`stream`]'s reader, for `source_name`.
    pub(crate) fn from_stream(source_name: &str, error: stream::StreamError) -> ParseError {
        let source_name = source_name.to_owned();
        match error {
            stream::StreamError::TooDeep(at) => ParseError::TooDeep { source_name, at },
            stream::StreamError::Yaml(error) => ParseError::MalformedYaml {
                source_name,
                document: error.document,
                line: error.line,
                column: error.column,
                error: Box::new(error),
            },
        }
    }
}

/// Hands each YAML (or JSON) document of `text` to `each`, numbered from 1, one at a time, as
/// [`stream::documents`] reads them: nesting deeper than [`MAX_DEPTH`](stream::MAX_DEPTH) is
/// refused before any is read, and the first document that is not YAML ends the walk with its
/// position.
pub(crate) fn for_each_document<E: From<ParseError>>(
    text: &str,
    source_name: &str,
    mut each: impl FnMut(usize, Value) -> Result<(), E>,
) -> Result<(), E> {
    for read in stream::documents::<Value>(text) {
        let (document, value) = read.map_err(|error| ParseError::from_stream(source_name, error))?;
        each(document, value)?;
    }
    Ok(())
}

fn invalid(source_name: &str, document: usize, prefix: &str, e: ConvertError) -> ParseError {
    let path = match (prefix.strip_suffix('.'), e.path.is_empty()) {
        (Some(p), true) => p.to_owned(),
        _ => format!("{prefix}{}", e.path),
    };
    ParseError::Invalid { source_name: source_name.to_owned(), document, path, problem: e.problem }
}

/// Objects found in a document, each with its path prefix (`items[3].` in a List).
type Found = Vec<(String, VersionedClientIntents)>;

/// Look-alikes skipped in a document: path prefix, apiVersion and kind.
type Suspects = Vec<(String, String, String)>;

/// Finds the ClientIntents in one document, recursing into Lists. An error comes with the
/// path prefix of the object it is in.
fn collect(
    value: &Value,
    prefix: &str,
    out: &mut Found,
    suspects: &mut Suspects,
) -> Result<(), (String, ConvertError)> {
    let at = |e: ConvertError| (prefix.to_owned(), e);
    let map = match value {
        Value::Null => return Ok(()),
        Value::Object(map) => map,
        // A bare array of objects, as `otterize mapper export --format json` writes it.
        Value::Array(items) if prefix.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                collect(item, &format!("[{i}]."), out, suspects)?;
            }
            return Ok(());
        }
        other => return Err(at(wrong_type("", "a mapping", other))),
    };
    match map.get("kind").and_then(Value::as_str) {
        Some("List" | "ClientIntentsList") => match map.get("items") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    collect(item, &format!("{prefix}items[{i}]."), out, suspects)?;
                }
                Ok(())
            }
            Some(other) => Err(at(wrong_type("items", "a sequence", other))),
        },
        Some(KIND) => {
            out.push((prefix.to_owned(), read_object(map).map_err(at)?));
            Ok(())
        }
        kind => {
            let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            if looks_like_client_intents(api_version, kind) {
                suspects.push((prefix.to_owned(), api_version.to_owned(), kind.unwrap_or_default().to_owned()));
            }
            Ok(())
        }
    }
}

/// The other kinds the Otterize operators serve under `k8s.otterize.com`.
const OTHER_OTTERIZE_KINDS: [&str; 5] =
    ["ProtectedService", "KafkaServerConfig", "PostgreSQLServerConfig", "MySQLServerConfig", "ApprovedClientIntents"];

/// Whether a document that is not read as ClientIntents probably meant to be: its kind is at
/// most two edits (ignoring case) from `ClientIntents` or `ClientIntentsList`, or it is in the
/// Otterize API group with a kind the operators do not serve.
fn looks_like_client_intents(api_version: &str, kind: Option<&str>) -> bool {
    let kind = kind.unwrap_or_default();
    let otterize = api_version.starts_with("k8s.otterize.com/");
    if otterize && !OTHER_OTTERIZE_KINDS.contains(&kind) {
        return true;
    }
    !kind.is_empty() && [KIND, "ClientIntentsList"].iter().any(|target| edit_distance_at_most(kind, target, 2))
}

/// Whether `a` and `b` are at most `max` insertions, deletions or substitutions apart,
/// ignoring ASCII case (Levenshtein, on bytes; a length gap above `max` answers at once).
fn edit_distance_at_most(a: &str, b: &str, max: usize) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > max {
        return false;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(!ca.eq_ignore_ascii_case(&cb));
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()] <= max
}

fn wrong_type(path: &str, expected: &'static str, found: &Value) -> ConvertError {
    ConvertError::new(path, Problem::WrongType { expected, found: crate::versions::value_type_name(found) })
}

/// Deserializes `value` at `path`, reporting serde's complaint as a schema problem there.
///
/// Deserializing from a tree loses the field paths, so on failure each field of a
/// mapping is tried alone (every field of these types has a default) to find the one at fault
/// and name it: `spec.targets[0].kubernetes: … unknown field `nme``.
fn de<T: DeserializeOwned + Default>(value: Option<&Value>, path: &str) -> Result<T, ConvertError> {
    let value = match value {
        None | Some(Value::Null) => return Ok(T::default()),
        Some(value) => value,
    };
    T::deserialize(value).map_err(|error| {
        let mut at = path.to_owned();
        let mut detail = error.to_string();
        if let Value::Object(map) = value {
            for (key, field) in map {
                let alone: Map<String, Value> = [(key.clone(), field.clone())].into_iter().collect();
                if let Err(e) = T::deserialize(&Value::Object(alone)) {
                    if !e.to_string().starts_with(&format!("unknown field `{key}`")) {
                        at = format!("{path}.{key}");
                    }
                    detail = e.to_string();
                    break;
                }
            }
        }
        ConvertError::new(at, Problem::Schema { detail })
    })
}

/// Deserializes a sequence element by element so an error names its index.
fn de_list<T: DeserializeOwned + Default>(value: Option<&Value>, path: &str) -> Result<Vec<T>, ConvertError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().enumerate().map(|(i, item)| de(Some(item), &format!("{path}[{i}]"))).collect()
        }
        Some(other) => Err(wrong_type(path, "a sequence", other)),
    }
}

fn check_keys(map: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), ConvertError> {
    match map.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(ConvertError::new(path, Problem::UnknownField { field: key.clone() })),
        None => Ok(()),
    }
}

fn read_object(map: &Map<String, Value>) -> Result<VersionedClientIntents, ConvertError> {
    check_keys(map, &["apiVersion", "kind", "metadata", "spec", "status"], "")?;
    let api_version = match map.get("apiVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type("apiVersion", "a string", other)),
        None => return Err(ConvertError::new("apiVersion", Problem::Missing)),
    };
    let version = IntentsVersion::from_api_version(&api_version)
        .ok_or_else(|| ConvertError::new("apiVersion", Problem::UnknownApiVersion { found: api_version.clone() }))?;
    let metadata: ObjectMeta = match map.get("metadata") {
        Some(value @ Value::Object(_)) => de(Some(value), "metadata")?,
        None | Some(Value::Null) => ObjectMeta::default(),
        Some(other) => return Err(wrong_type("metadata", "a mapping", other)),
    };
    let empty = Map::new();
    let spec = match map.get("spec") {
        Some(Value::Object(spec)) => spec,
        None | Some(Value::Null) => &empty,
        Some(other) => return Err(wrong_type("spec", "a mapping", other)),
    };
    Ok(match version {
        IntentsVersion::V1Alpha2 => {
            check_keys(spec, &["service", "calls"], "spec")?;
            let spec = v1alpha2::Spec {
                service: de(spec.get("service"), "spec.service")?,
                calls: de_list(spec.get("calls"), "spec.calls")?,
            };
            VersionedClientIntents::V1Alpha2(ClientIntents::new(api_version, metadata, spec))
        }
        IntentsVersion::V1Alpha3 | IntentsVersion::V1Beta1 => {
            check_keys(spec, &["service", "calls"], "spec")?;
            let spec = v1::Spec {
                service: de(spec.get("service"), "spec.service")?,
                calls: de_list(spec.get("calls"), "spec.calls")?,
            };
            if version == IntentsVersion::V1Alpha3 {
                VersionedClientIntents::V1Alpha3(ClientIntents::new(api_version, metadata, spec))
            } else {
                VersionedClientIntents::V1Beta1(ClientIntents::new(api_version, metadata, spec))
            }
        }
        IntentsVersion::V2Alpha1 | IntentsVersion::V2Beta1 => {
            check_keys(spec, &["workload", "targets"], "spec")?;
            let spec = v2::Spec {
                workload: de(spec.get("workload"), "spec.workload")?,
                targets: de_list(spec.get("targets"), "spec.targets")?,
            };
            if version == IntentsVersion::V2Alpha1 {
                VersionedClientIntents::V2Alpha1(ClientIntents::new(api_version, metadata, spec))
            } else {
                VersionedClientIntents::V2Beta1(ClientIntents::new(api_version, metadata, spec))
            }
        }
    })
}

#[cfg(test)]
mod tests;
