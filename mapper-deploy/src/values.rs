//! Values as helm combines them: user values over the chart's defaults (maps merge key by key,
//! anything else replaces, `null` deletes), `--set a.b=c` as an overlay, and their conversion to
//! the template engine's values with helm's number rules.
//!
//! Values are JSON values, as helm holds them too (sigs.k8s.io/yaml reads YAML through JSON): map
//! keys are strings, and YAML that JSON cannot hold (a sequence as a key, `.inf`) is refused when
//! it is read.

use std::collections::HashMap;

use gtmpl_ng::Value;
use serde_json::{Map, Value as Json};

/// Why values could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("--set {expr}: expected KEY.PATH=VALUE")]
    SetSyntax { expr: String },
    #[error("--set {expr}: the value is not valid YAML")]
    SetValue {
        expr: String,
        #[source]
        source: mapper_intents::stream::YamlError,
    },
    #[error("--set {expr}: only scalars (text, numbers, true/false) can be set; use a values file for lists and maps")]
    SetNotScalar { expr: String },
    #[error(
        "value {path} = {number}: helm reads numbers in values as floats and prints 1000000 and above as \
         1e+06; quote it"
    )]
    ExponentNumber { path: String, number: String },
}

/// `overlay` coalesced over `base`, as helm merges `-f` files and `--set` over `values.yaml`.
pub fn coalesce(base: &mut Json, overlay: Json) {
    match (base, overlay) {
        (Json::Object(base), Json::Object(overlay)) => {
            for (k, v) in overlay {
                if v.is_null() {
                    base.remove(&k);
                } else if let Some(existing) = base.get_mut(&k) {
                    coalesce(existing, v);
                } else {
                    base.insert(k, v);
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// An overlay from `a.b.c=value`; the value is read as a YAML scalar (`true`, `3`, `text`).
pub fn parse_set(expr: &str) -> Result<Json, ValuesError> {
    let (path, raw) = expr.split_once('=').ok_or_else(|| ValuesError::SetSyntax { expr: expr.into() })?;
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(ValuesError::SetSyntax { expr: expr.into() });
    }
    let mut value: Json = if raw.is_empty() {
        Json::String(String::new())
    } else {
        mapper_intents::stream::from_str(raw).map_err(|source| ValuesError::SetValue { expr: expr.into(), source })?
    };
    if value.is_object() || value.is_array() {
        return Err(ValuesError::SetNotScalar { expr: expr.into() });
    }
    for key in path.rsplit('.') {
        let mut map = Map::new();
        map.insert(key.into(), value);
        value = Json::Object(map);
    }
    Ok(value)
}

/// A YAML value as the template engine sees it. Helm decodes values through JSON into float64,
/// and Go prints a float64 of 1e6 or more in exponent form: such numbers are refused here so the
/// chart never prints one differently from helm.
pub fn to_template_value(yaml: &Json, path: &str) -> Result<Value, ValuesError> {
    Ok(match yaml {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.abs() >= 1e6 {
                return Err(ValuesError::ExponentNumber { path: path.into(), number: n.to_string() });
            }
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(f)
            }
        }
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_template_value(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => {
            let mut out = HashMap::with_capacity(map.len());
            for (key, v) in map {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                out.insert(key.clone(), to_template_value(v, &child)?);
            }
            Value::Map(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Json {
        mapper_intents::stream::from_str(s).expect("test YAML")
    }

    #[test]
    fn coalesce_merges_maps_replaces_lists_and_deletes_on_null() {
        let mut base = y("a: {b: 1, c: 2}\nl: [1, 2]\nd: x\n");
        coalesce(&mut base, y("a: {c: 3}\nl: [9]\nd: null\n"));
        assert_eq!(base, y("a: {b: 1, c: 3}\nl: [9]\n"));
    }

    #[test]
    fn set_builds_a_nested_overlay_with_typed_scalars() {
        assert_eq!(parse_set("a.b.c=true").expect("valid"), y("a: {b: {c: true}}"));
        assert_eq!(parse_set("n=3").expect("valid"), y("n: 3"));
        assert_eq!(parse_set("s=").expect("valid"), y("s: ''"));
        assert!(matches!(parse_set("novalue"), Err(ValuesError::SetSyntax { .. })));
        assert!(matches!(parse_set("a..b=1"), Err(ValuesError::SetSyntax { .. })));
        assert!(matches!(parse_set("a=[1]"), Err(ValuesError::SetNotScalar { .. })));
    }

    #[test]
    fn numbers_helm_would_print_as_exponents_are_refused() {
        let err = to_template_value(&y("agent: {big: 1000000}"), "").expect_err("1e6 refused");
        assert!(err.to_string().contains("agent.big"), "names the value: {err}");
        assert!(to_template_value(&y("agent: {big: '1000000', ok: 999999}"), "").is_ok());
    }
}
