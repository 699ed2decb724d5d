//! A small deterministic YAML emitter in the layout of the Otterize documentation and CLI:
//! block style, two-space indentation, and sequence items indented two spaces under their key
//! (`calls:\n    - name: ledger.team3` inside `spec:`), which serde_yaml does not produce.
//!
//! Keys keep the order of the [`serde_yaml::Mapping`]. Strings are written plain when that is
//! unambiguous for YAML 1.1 readers too (Kubernetes' go-yaml reads `yes`, `on`, `0o17`, `1:20`
//! as non-strings) and double-quoted otherwise.

use serde_yaml::Value;

/// Renders values as a multi-document YAML stream, documents separated by `---`.
pub fn to_yaml_stream(values: &[Value]) -> String {
    let docs: Vec<String> = values.iter().map(to_yaml_string).collect();
    docs.join("---\n")
}

/// Renders one value as a YAML document ending in a newline.
pub fn to_yaml_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Mapping(m) if !m.is_empty() => emit_mapping(m, 0, false, &mut out),
        Value::Sequence(s) if !s.is_empty() => emit_sequence(s, 0, false, &mut out),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes the entries of a non-empty mapping at `indent`; when `first_inline`, the cursor is
/// already placed for the first entry (after `- `).
fn emit_mapping(map: &serde_yaml::Mapping, indent: usize, first_inline: bool, out: &mut String) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !first_inline {
            pad(out, indent);
        }
        if is_scalar(key) {
            out.push_str(&scalar(key, true));
        } else {
            // A complex key: explicit `? key` then `:` on the next line.
            out.push_str("? ");
            out.push_str(&flow(key));
            out.push('\n');
            pad(out, indent);
        }
        out.push(':');
        emit_after_key(value, indent, out);
    }
}

/// Writes the items of a non-empty sequence at `indent`.
fn emit_sequence(seq: &[Value], indent: usize, first_inline: bool, out: &mut String) {
    for (i, item) in seq.iter().enumerate() {
        if i > 0 || !first_inline {
            pad(out, indent);
        }
        out.push('-');
        match item {
            Value::Mapping(m) if !m.is_empty() => {
                out.push(' ');
                emit_mapping(m, indent + 2, true, out);
            }
            Value::Sequence(s) if !s.is_empty() => {
                out.push(' ');
                emit_sequence(s, indent + 2, true, out);
            }
            Value::Tagged(t) => {
                out.push(' ');
                out.push_str(&t.tag.to_string());
                emit_after_key(&t.value, indent, out);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

/// Writes what follows `key:` (or a tag): an inline value, or a nested block on the next lines.
/// Nested sequences and mappings are indented two spaces under the key.
fn emit_after_key(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            emit_mapping(m, indent + 2, false, out);
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            emit_sequence(s, indent + 2, false, out);
        }
        Value::Tagged(t) => {
            out.push(' ');
            out.push_str(&t.tag.to_string());
            emit_after_key(&t.value, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))
}

/// A value on one line: scalars, and empty or complex collections in flow style.
fn inline(value: &Value) -> String {
    if is_scalar(value) { scalar(value, false) } else { flow(value) }
}

/// Flow style (`{a: 1, b: [x, y]}`), used for empty collections and complex keys.
fn flow(value: &Value) -> String {
    match value {
        Value::Sequence(s) => {
            let items: Vec<String> = s.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{}: {}", flow(k), flow(v))).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Tagged(t) => format!("{} {}", t.tag, flow(&t.value)),
        scalar_value => scalar(scalar_value, true),
    }
}

fn scalar(value: &Value, is_key: bool) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, is_key),
        // Collections never reach here (see `inline`/`flow`).
        other => flow(other),
    }
}

/// Words YAML 1.1 or 1.2 resolve to booleans or null.
const RESERVED: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on",
    "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
];

/// Whether a string must be quoted to read back as the same string.
pub fn needs_quotes(s: &str, is_key: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    if RESERVED.contains(&s) || looks_numeric(s) {
        return true;
    }
    if !(first.is_ascii_alphanumeric() || matches!(first, '/' | '.' | '_')) {
        return true;
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | ':' | '@' | '+' | '=');
    !s.chars().all(safe) || s.ends_with(':') || (is_key && s.contains(':'))
}

/// Conservative: anything a YAML 1.1/1.2 reader might take for an int, float or sexagesimal.
fn looks_numeric(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | "+.inf" | "-.inf" | ".nan") {
        return true;
    }
    let body = lower.trim_start_matches(['+', '-']);
    let starts_numeric = body.starts_with(|c: char| c.is_ascii_digit())
        || (body.starts_with('.') && body[1..].starts_with(|c: char| c.is_ascii_digit()));
    starts_numeric
        && body.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | '_' | ':' | 'x' | 'o' | '+' | '-'))
}

fn string(s: &str, is_key: bool) -> String {
    if !needs_quotes(s, is_key) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{85}' | '\u{a0}' | '\u{2028}' | '\u{2029}' | '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(s: &str) {
        let value = Value::Mapping([(Value::from("k"), Value::from(s))].into_iter().collect());
        let text = to_yaml_string(&value);
        let back: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        assert_eq!(back, value, "string {s:?} rendered as {text:?} did not read back");
    }

    #[test]
    fn strings_that_need_quotes_are_quoted_and_read_back() {
        for s in [
            "true",
            "yes",
            "on",
            "No",
            "~",
            "null",
            "",
            "8080",
            "1.5",
            "1e3",
            "0x1F",
            "0o17",
            "1:20",
            ".inf",
            "-1",
            "10.0.0.1",
            "*.example.com",
            "- x",
            "a: b",
            "a #b",
            "x:",
            " lead",
            "trail ",
            "multi\nline",
            "quote\"back\\slash",
            "tab\there",
            "&anchor",
            "!tag",
            "@at",
            "%p",
            "`t`",
            "{a}",
            "[a]",
            "a,b",
            "é",
            "\u{2028}",
        ] {
            assert!(needs_quotes(s, false) || s == "é", "{s:?} should be quoted");
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
            assert!(!needs_quotes(s, false), "{s:?} should stay plain");
            roundtrip(s);
        }
        assert!(needs_quotes("a:b", true), "keys with ':' are quoted");
    }

    #[test]
    fn sequences_are_indented_under_their_key() {
        let value: Value =
            serde_yaml::from_str("a:\n  b:\n  - x: 1\n    y: [p, q]\n  - []\n  - {}\n  - - n\n    - m\nc: {}\n")
                .unwrap_or_else(|e| panic!("test input does not parse: {e}"));
        let text = to_yaml_string(&value);
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
        let text = to_yaml_string(&value);
        let back: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        assert_eq!(back, value, "rendered {text:?}");
        let stream = to_yaml_stream(&[Value::from("a"), Value::from("b")]);
        assert_eq!(stream, "a\n---\nb\n");
    }
}
