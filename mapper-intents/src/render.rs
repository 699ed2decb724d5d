//! Rendering ClientIntents documents as YAML (multi-document, Otterize CLI layout) or as JSON
//! (a `v1` `List`, which `kubectl apply -f` accepts).

use serde::Serialize;

use crate::model::ClientIntentsDoc;
use crate::versions::{ConvertError, IntentsVersion, VersionedClientIntents};
use crate::yaml;

/// Why documents could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A document has a target the version cannot express (see [`ConvertError`]).
    #[error("ClientIntents {namespace}/{name} cannot be written as {version}")]
    Convert {
        /// `metadata.name`.
        name: String,
        /// `metadata.namespace` (empty when unset).
        namespace: String,
        /// The version asked for.
        version: IntentsVersion,
        /// Which target and why.
        #[source]
        error: ConvertError,
    },
    /// The YAML writer refused a document (not expected: every object it is given is YAML).
    #[error("the ClientIntents cannot be written as YAML")]
    Write {
        /// serde-saphyr's error.
        #[source]
        error: crate::yaml::WriteError,
    },
    /// The JSON writer refused a document (not expected: opaque targets are read as JSON values).
    #[error("the ClientIntents cannot be written as JSON")]
    Json {
        /// The serializer's error.
        #[source]
        error: serde_json::Error,
    },
}

/// Converts every document to `version`, in order.
pub fn to_versioned(
    docs: &[ClientIntentsDoc],
    version: IntentsVersion,
) -> Result<Vec<VersionedClientIntents>, RenderError> {
    docs.iter()
        .map(|doc| {
            VersionedClientIntents::from_doc(doc, version).map_err(|error| RenderError::Convert {
                name: doc.name.clone(),
                namespace: doc.namespace.clone().unwrap_or_default(),
                version,
                error,
            })
        })
        .collect()
}

/// Renders documents as multi-document YAML in `version`, separated by `---`, in the layout of
/// the Otterize CLI (byte for byte for the seed example; see docs/formats.md, "Layouts on disk").
/// No documents render as an empty string.
pub fn render_yaml(docs: &[ClientIntentsDoc], version: IntentsVersion) -> Result<String, RenderError> {
    yaml::to_yaml_stream(&to_versioned(docs, version)?).map_err(|error| RenderError::Write { error })
}

/// Renders one document as YAML (for `--output-type dir`, one file per client).
pub fn render_doc_yaml(doc: &ClientIntentsDoc, version: IntentsVersion) -> Result<String, RenderError> {
    render_yaml(std::slice::from_ref(doc), version)
}

/// The file name the Otterize CLI gives a document in `--output-type dir`:
/// `<name>.<namespace>.yaml` (`<name>.yaml` without a namespace).
pub fn file_name(doc: &ClientIntentsDoc) -> String {
    match &doc.namespace {
        Some(ns) => format!("{}.{ns}.yaml", doc.name),
        None => format!("{}.yaml", doc.name),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [VersionedClientIntents],
}

/// Renders documents as a pretty-printed JSON `{"apiVersion": "v1", "kind": "List", "items":
/// [...]}` ending in a newline; `kubectl apply -f` applies every item.
pub fn render_json(docs: &[ClientIntentsDoc], version: IntentsVersion) -> Result<String, RenderError> {
    let items = to_versioned(docs, version)?;
    let list = List { api_version: "v1", kind: "List", items: &items };
    let mut text = serde_json::to_string_pretty(&list).map_err(|error| RenderError::Json { error })?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Target;

    fn doc(targets: Vec<Target>) -> ClientIntentsDoc {
        ClientIntentsDoc {
            name: "client".to_owned(),
            namespace: Some("team1".to_owned()),
            client_name: "client".to_owned(),
            client_kind: Some("Deployment".to_owned()),
            targets,
        }
    }

    #[test]
    fn json_is_a_v1_list_in_field_order() {
        let text = render_json(
            &[doc(vec![Target::workload("ledger", Some("team3"), Some("Deployment"))])],
            IntentsVersion::V2Beta1,
        )
        .unwrap_or_else(|e| panic!("render_json failed: {e}"));
        let expected = r#"{
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {
      "apiVersion": "k8s.otterize.com/v2beta1",
      "kind": "ClientIntents",
      "metadata": {
        "name": "client",
        "namespace": "team1"
      },
      "spec": {
        "workload": {
          "name": "client",
          "kind": "Deployment"
        },
        "targets": [
          {
            "kubernetes": {
              "name": "ledger.team3",
              "kind": "Deployment"
            }
          }
        ]
      }
    }
  ]
}
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn unsupported_target_names_document_and_target() {
        let internet =
            Target::Internet(crate::model::Internet { domains: vec!["example.com".to_owned()], ..Default::default() });
        let err = render_yaml(&[doc(vec![Target::ApiServer, internet])], IntentsVersion::V1Alpha2)
            .err()
            .unwrap_or_else(|| panic!("internet targets must not render as v1alpha2"));
        assert_eq!(err.to_string(), "ClientIntents team1/client cannot be written as v1alpha2");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("targets[1]: an internet target cannot be expressed in v1alpha2"));
    }

    #[test]
    fn empty_input_renders_nothing_and_file_names_follow_the_cli() {
        assert_eq!(render_yaml(&[], IntentsVersion::V1Alpha2).ok().as_deref(), Some(""));
        assert_eq!(file_name(&doc(Vec::new())), "client.team1.yaml");
        assert_eq!(file_name(&ClientIntentsDoc { namespace: None, ..doc(Vec::new()) }), "client.yaml");
    }
}
