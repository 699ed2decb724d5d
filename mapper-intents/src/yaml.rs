//! YAML in the layout of the Otterize documentation and CLI, written by serde-saphyr: block
//! style, two-space indentation, and sequence items indented two spaces under their key
//! (`calls:\n    - name: ledger.team3` inside `spec:`; serde-saphyr's `compact_list_indent:
//! false`).
//!
//! Keys come in the order the value serializes them: a struct's field order (the objects this
//! crate writes are typed), a `serde_json::Value`'s sorted keys. Strings are written plain when
//! that is unambiguous for YAML 1.1 readers too (Kubernetes' go-yaml reads `yes`, `on`, `0o17`,
//! `1:20` as non-strings) and quoted otherwise — serde-saphyr's own rules, checked by the tests
//! below.

use serde::Serialize;

/// The options every document is written with.
fn options() -> serde_saphyr::SerializerOptions {
    serde_saphyr::ser_options! { indent_step: 2, compact_list_indent: false }
}

/// Why a value could not be written (serde-saphyr's error; not expected for the objects of this
/// crate or a `serde_json::Value`, whose keys and numbers YAML can all hold).
pub type WriteError = serde_saphyr::SerializeError;

/// Renders values as a multi-document YAML stream, documents separated by `---`.
pub fn to_yaml_stream<T: Serialize>(values: &[T]) -> Result<String, WriteError> {
    let docs = values.iter().map(to_yaml_string).collect::<Result<Vec<String>, _>>()?;
    Ok(docs.join("---\n"))
}

/// Renders one value as a YAML document ending in a newline.
pub fn to_yaml_string<T: Serialize>(value: &T) -> Result<String, WriteError> {
    serde_saphyr::to_string_with_options(value, options())
}

/// One string as a YAML scalar (`ledger`, `"true"`), as [`to_yaml_string`] writes it.
pub fn scalar(s: &str) -> Result<String, WriteError> {
    Ok(to_yaml_string(&s)?.trim_end_matches('\n').to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// `text` read by mapper's reader (YAML 1.2 core), and by serde-saphyr with YAML 1.1's
    /// booleans and octals, as Kubernetes' go-yaml reads them.
    fn read_both(text: &str) -> (Value, Value) {
        let core: Value = crate::stream::from_str(text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        let options = serde_saphyr::options! { legacy_octal_numbers: true };
        let legacy: Value = serde_saphyr::from_str_with_options(text, options)
            .unwrap_or_else(|e| panic!("{text:?} does not parse as YAML 1.1: {e}"));
        (core, legacy)
    }

    fn roundtrip(s: &str) {
        let value = json!({ "k": s });
        let text = to_yaml_string(&value).unwrap_or_else(|e| panic!("{e}"));
        let (core, legacy) = read_both(&text);
        assert_eq!(core, value, "string {s:?} rendered as {text:?} did not read back");
        assert_eq!(legacy, value, "string {s:?} rendered as {text:?} did not read back as YAML 1.1");
    }

    #[test]
    fn strings_that_need_quotes_are_quoted_and_read_back() {
        // What a YAML 1.1 reader (Kubernetes' go-yaml) or a 1.2 one would read as something
        // else, or cannot read plain.
        for s in [
            "true",
            "yes",
            "on",
            "No",
            "y",
            "n",
            "Y",
            "N",
            "~",
            "null",
            "",
            "8080",
            "1.5",
            "1e3",
            "0x1F",
            "0o17",
            "017",
            "1_000",
            "+12",
            ".5",
            "0b101",
            "1:20",
            ".inf",
            "-1",
            "*.example.com",
            "- x",
            "a: b",
            "a #b",
            "x:",
            " lead",
            "trail ",
            "multi\nline",
            "tab\there",
            "&anchor",
            "!tag",
            "@at",
            "%p",
            "`t`",
            "{a}",
            "[a]",
            "\u{2028}",
        ] {
            let text = to_yaml_string(&json!({ "k": s })).unwrap_or_else(|e| panic!("{e}"));
            assert!(text != format!("k: {s}\n"), "{s:?} should be quoted: {text:?}");
            roundtrip(s);
        }
        // Plain is fine for these, as long as they read back.
        for s in ["10.0.0.1", "quote\"back\\slash", "a,b", "é"] {
            roundtrip(s);
        }
    }

    #[test]
    fn plain_strings_stay_plain() {
        for s in [
            "ledger.team3",
            "svc:kubernetes.default",
            "intents.otterize.com/server",
            "Deployment",
            "/api/v1",
            "a_b",
            "1password",
        ] {
            let text = to_yaml_string(&json!({ "k": s })).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(text, format!("k: {s}\n"), "{s:?} should stay plain");
            assert_eq!(scalar(s).ok().as_deref(), Some(s));
            roundtrip(s);
        }
        assert_eq!(scalar("true").ok().as_deref(), Some("\"true\""));
    }

    #[test]
    fn sequences_are_indented_under_their_key() {
        let value: Value =
            crate::stream::from_str("a:\n  b:\n  - x: 1\n    y: [p, q]\n  - []\n  - {}\n  - - n\n    - m\nc: {}\n")
                .unwrap_or_else(|e| panic!("test input does not parse: {e}"));
        let text = to_yaml_string(&value).unwrap_or_else(|e| panic!("{e}"));
        // `y` and `n` are booleans to YAML 1.1 readers such as go-yaml, hence quoted.
        let expected = "a:\n  b:\n    - x: 1\n      \"y\":\n        - p\n        - q\n    - []\n    - {}\n    - - \"n\"\n      - m\nc: {}\n";
        assert_eq!(text, expected);
        assert_eq!(read_both(&text), (value.clone(), value));
    }

    #[test]
    fn structs_keep_their_field_order_and_streams_are_separated() {
        #[derive(Serialize)]
        struct Object {
            name: &'static str,
            kind: &'static str,
            at: f64,
        }
        let text = to_yaml_string(&Object { name: "x", kind: "Deployment", at: 1.5 }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "name: x\nkind: Deployment\nat: 1.5\n");
        let stream = to_yaml_stream(&["a", "b"]);
        assert_eq!(stream.ok().as_deref(), Some("a\n---\nb\n"));
    }
}
