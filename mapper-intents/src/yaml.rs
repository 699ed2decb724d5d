//! YAML in the layout of the Otterize documentation and CLI, written by serde-saphyr: block
//! style, two-space indentation, and sequence items indented two spaces under their key
//! (`calls:\n    - name: ledger.team3` inside `spec:`; serde-saphyr's `compact_list_indent:
//! false`).
//!
//! Keys keep the order of the [`serde_yaml::Mapping`]. Strings are written plain when that is
//! unambiguous for YAML 1.1 readers too (Kubernetes' go-yaml reads `yes`, `on`, `0o17`, `1:20`
//! as non-strings) and quoted otherwise — serde-saphyr's own rules, checked by the tests below.
//! YAML tags (`!Thing`) are dropped: the API server stores JSON, which has none.

use serde_yaml::Value;

/// The options every document is written with.
fn options() -> serde_saphyr::SerializerOptions {
    serde_saphyr::ser_options! { indent_step: 2, compact_list_indent: false }
}

/// `value` with every tag dropped (the tagged value kept).
fn untagged(value: &Value) -> std::borrow::Cow<'_, Value> {
    fn has_tag(value: &Value) -> bool {
        match value {
            Value::Tagged(_) => true,
            Value::Sequence(items) => items.iter().any(has_tag),
            Value::Mapping(map) => map.iter().any(|(k, v)| has_tag(k) || has_tag(v)),
            _ => false,
        }
    }
    fn strip(value: &Value) -> Value {
        match value {
            Value::Tagged(tagged) => strip(&tagged.value),
            Value::Sequence(items) => Value::Sequence(items.iter().map(strip).collect()),
            Value::Mapping(map) => Value::Mapping(map.iter().map(|(k, v)| (strip(k), strip(v))).collect()),
            other => other.clone(),
        }
    }
    if has_tag(value) { std::borrow::Cow::Owned(strip(value)) } else { std::borrow::Cow::Borrowed(value) }
}

/// Why a value could not be written (serde-saphyr's error; not expected for a
/// [`serde_yaml::Value`], whose keys and numbers YAML can all hold).
pub type WriteError = serde_saphyr::SerializeError;

/// Renders values as a multi-document YAML stream, documents separated by `---`.
pub fn to_yaml_stream(values: &[Value]) -> Result<String, WriteError> {
    let docs = values.iter().map(to_yaml_string).collect::<Result<Vec<String>, _>>()?;
    Ok(docs.join("---\n"))
}

/// Renders one value as a YAML document ending in a newline.
pub fn to_yaml_string(value: &Value) -> Result<String, WriteError> {
    serde_saphyr::to_string_with_options(&*untagged(value), options())
}

/// One string as a YAML scalar (`ledger`, `"true"`), as [`to_yaml_string`] writes it.
pub fn scalar(s: &str) -> Result<String, WriteError> {
    Ok(to_yaml_string(&Value::from(s))?.trim_end_matches('\n').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(s: &str) {
        let value = Value::Mapping([(Value::from("k"), Value::from(s))].into_iter().collect());
        let text = to_yaml_string(&value).unwrap_or_else(|e| panic!("{e}"));
        let back: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        assert_eq!(back, value, "string {s:?} rendered as {text:?} did not read back");
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
            let text = to_yaml_string(&Value::Mapping([(Value::from("k"), Value::from(s))].into_iter().collect()))
                .unwrap_or_else(|e| panic!("{e}"));
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
            let text = to_yaml_string(&Value::Mapping([(Value::from("k"), Value::from(s))].into_iter().collect()))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(text, format!("k: {s}\n"), "{s:?} should stay plain");
            assert_eq!(scalar(s).ok().as_deref(), Some(s));
            roundtrip(s);
        }
        assert_eq!(scalar("true").ok().as_deref(), Some("\"true\""));
    }

    #[test]
    fn sequences_are_indented_under_their_key() {
        let value: Value =
            serde_yaml::from_str("a:\n  b:\n  - x: 1\n    y: [p, q]\n  - []\n  - {}\n  - - n\n    - m\nc: {}\n")
                .unwrap_or_else(|e| panic!("test input does not parse: {e}"));
        let text = to_yaml_string(&value).unwrap_or_else(|e| panic!("{e}"));
        // `y` and `n` are booleans to YAML 1.1 readers such as go-yaml, hence quoted.
        let expected = "a:\n  b:\n    - x: 1\n      \"y\":\n        - p\n        - q\n    - []\n    - {}\n    - - \"n\"\n      - m\nc: {}\n";
        assert_eq!(text, expected);
        let back: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        assert_eq!(back, value);
    }

    #[test]
    fn complex_keys_tags_and_streams() {
        let value: Value = serde_yaml::from_str("? [a, b]\n: 1\nt: !Thing\n  x: 1\nn: null\nf: 1.5\n")
            .unwrap_or_else(|e| panic!("test input does not parse: {e}"));
        let text = to_yaml_string(&value).unwrap_or_else(|e| panic!("{e}"));
        let back: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        // The tag is dropped, as the API server (which stores JSON) drops it.
        let untagged: Value = serde_yaml::from_str("? [a, b]\n: 1\nt:\n  x: 1\nn: null\nf: 1.5\n")
            .unwrap_or_else(|e| panic!("test input does not parse: {e}"));
        assert_eq!(back, untagged, "rendered {text:?}");
        let stream = to_yaml_stream(&[Value::from("a"), Value::from("b")]);
        assert_eq!(stream.ok().as_deref(), Some("a\n---\nb\n"));
    }
}
