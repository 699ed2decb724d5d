//! The Helm functions the chart uses, implemented as helm (and the sprig library it takes them
//! from) implements them. A template calling any other function fails to parse, so the chart
//! cannot drift outside what is emulated here.
//!
//! | function   | helm's definition                                                      |
//! |------------|------------------------------------------------------------------------|
//! | `include`  | execute a named template with the given dot, return its text           |
//! | `toYaml`   | sigs.k8s.io/yaml marshal (keys sorted), trailing newline removed       |
//! | `indent`   | sprig: pad every line, empty ones too                                  |
//! | `nindent`  | sprig: a newline, then `indent`                                        |
//! | `quote`    | sprig: each non-nil argument as Go's `%q` of its `%v`, space-joined    |
//! | `default`  | sprig: the default when the value is empty (nil, "", 0, false, [], {}) |
//! | `required` | helm: fail with the message when the value is nil or ""                |
//!
//! One difference on purpose: a missing value (a key absent from the values) handed to
//! `quote`, `toYaml`, `indent` or `nindent` is an error, where helm prints nothing.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use gtmpl_ng::{Context, Func, FuncError, NumberKind, Template, Value};

/// The functions templates may call beyond Go's builtins.
pub const FUNCS: &[(&str, Func)] = &[
    ("include", include as Func),
    ("toYaml", to_yaml as Func),
    ("indent", indent as Func),
    ("nindent", nindent as Func),
    ("quote", quote as Func),
    ("default", default as Func),
    ("required", required as Func),
];

/// The chart's template files, as (name, text).
pub type Sources = Rc<Vec<(String, String)>>;

/// How deep `include` may nest (helm stops at 1000; a chart that nests 64 deep has a loop).
const MAX_INCLUDE_DEPTH: usize = 64;

thread_local! {
    /// The chart's template files while a render runs on this thread, for `include`
    /// (template functions are plain `fn`s: this is the only way to reach them).
    static SOURCES: RefCell<Option<Sources>> = const { RefCell::new(None) };
    /// `include`'s templates by name, each parsed once per render rather than once per call.
    static INCLUDES: RefCell<HashMap<String, Rc<Template>>> = RefCell::new(HashMap::new());
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Makes `sources` what `include` sees until dropped (restoring what was there before).
pub struct SourcesGuard {
    previous: Option<Sources>,
    previous_includes: HashMap<String, Rc<Template>>,
}

impl std::fmt::Debug for SourcesGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourcesGuard").field("previous", &self.previous).finish_non_exhaustive()
    }
}

impl SourcesGuard {
    pub fn install(sources: Sources) -> SourcesGuard {
        let previous = SOURCES.with(|s| s.borrow_mut().replace(sources));
        let previous_includes = INCLUDES.with(|i| std::mem::take(&mut *i.borrow_mut()));
        SourcesGuard { previous, previous_includes }
    }
}

impl Drop for SourcesGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        SOURCES.with(|s| *s.borrow_mut() = previous);
        let previous_includes = std::mem::take(&mut self.previous_includes);
        INCLUDES.with(|i| *i.borrow_mut() = previous_includes);
    }
}

/// A template named `name` that knows every file of `sources` (and so every `define`) and the
/// functions of [`FUNCS`].
pub fn template(name: &str, sources: &[(String, String)]) -> Result<Template, gtmpl_ng::TemplateError> {
    let mut tmpl = Template::default();
    tmpl.name = name.to_owned();
    tmpl.add_funcs(FUNCS);
    for (file, text) in sources {
        tmpl.add_template(file.as_str(), text.as_str())?;
    }
    Ok(tmpl)
}

fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn arg_count(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n { Ok(()) } else { Err(FuncError::ExactlyXArgs(name.into(), n)) }
}

/// Helm would pass a missing value on as nil and print nothing; here it is an error, so a
/// misspelt value cannot vanish into an empty field.
fn missing(name: &str) -> FuncError {
    err(format!("{name}: a value the template reads is missing"))
}

fn string_arg<'a>(name: &str, v: &'a Value) -> Result<&'a str, FuncError> {
    match v {
        Value::NoValue => Err(missing(name)),
        Value::String(s) => Ok(s),
        other => Err(err(format!("{name}: wrong type for value; expected string; got {}", type_name(other)))),
    }
}

fn int_arg(name: &str, v: &Value) -> Result<usize, FuncError> {
    match v {
        Value::Number(n) => match n.kind() {
            NumberKind::Unsigned(u) => usize::try_from(u).map_err(|_| err(format!("{name}: {u} is too large"))),
            NumberKind::Signed(i) if i >= 0 => usize::try_from(i).map_err(|_| err(format!("{name}: {i} is too large"))),
            _ => Err(err(format!("{name}: expected a non-negative integer, got {n}"))),
        },
        other => Err(err(format!("{name}: wrong type for value; expected int; got {}", type_name(other)))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::NoValue | Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Object(_) | Value::Map(_) => "map",
        Value::Array(_) => "slice",
        Value::Function(_) => "func",
        Value::Number(_) => "number",
    }
}

/// `include NAME DOT`: the named template executed with DOT, as text.
fn include(args: &[Value]) -> Result<Value, FuncError> {
    arg_count("include", args, 2)?;
    let name = string_arg("include", &args[0])?;
    if name.contains(['"', '\\', '\n']) {
        return Err(err(format!("include: unsupported template name {name:?}")));
    }
    let sources = SOURCES.with(|s| s.borrow().clone()).ok_or_else(|| err("include: called outside a chart render"))?;
    let depth = DEPTH.with(Cell::get);
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(err(format!("include {name:?}: nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)")));
    }
    let tmpl = match INCLUDES.with(|i| i.borrow().get(name).cloned()) {
        Some(tmpl) => tmpl,
        None => {
            const WRAPPER: &str = "mapper-deploy/include";
            let mut tmpl = template(WRAPPER, &sources).map_err(|e| err(format!("include {name:?}: {e}")))?;
            tmpl.add_template(WRAPPER, format!("{{{{ template \"{name}\" . }}}}"))
                .map_err(|e| err(format!("include {name:?}: {e}")))?;
            let tmpl = Rc::new(tmpl);
            INCLUDES.with(|i| i.borrow_mut().insert(name.to_owned(), Rc::clone(&tmpl)));
            tmpl
        }
    };
    DEPTH.with(|d| d.set(depth + 1));
    let out = tmpl.render(&Context::from(args[1].clone()));
    DEPTH.with(|d| d.set(depth));
    out.map(Value::String).map_err(|e| err(format!("include {name:?}: {e}")))
}

/// The value as JSON, the way sigs.k8s.io/yaml marshals it: through JSON, whose maps (as
/// serde_json's) are sorted by key.
fn to_json_value(v: &Value) -> Result<serde_json::Value, FuncError> {
    Ok(match v {
        Value::NoValue => return Err(missing("toYaml")),
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => match n.kind() {
            NumberKind::Unsigned(u) => u.into(),
            NumberKind::Signed(i) => i.into(),
            // JSON (and so helm) holds no NaN or infinity.
            NumberKind::Float(f) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .ok_or_else(|| err(format!("toYaml: {f} is not a JSON number")))?,
        },
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json_value).collect::<Result<_, _>>()?),
        Value::Object(map) | Value::Map(map) => serde_json::Value::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), to_json_value(v)?))).collect::<Result<_, FuncError>>()?,
        ),
        Value::Function(_) => return Err(err("toYaml: cannot marshal a function")),
    })
}

/// YAML as sigs.k8s.io/yaml (go-yaml) writes it: two-space indentation, sequence items at their
/// key's indentation.
fn yaml_options() -> serde_saphyr::SerializerOptions {
    serde_saphyr::ser_options! { indent_step: 2, compact_list_indent: true }
}

fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    arg_count("toYaml", args, 1)?;
    let json = to_json_value(&args[0])?;
    let text = serde_saphyr::to_string_with_options(&json, yaml_options()).map_err(|e| err(format!("toYaml: {e}")))?;
    Ok(Value::String(text.strip_suffix('\n').unwrap_or(&text).to_owned()))
}

fn pad(n: usize, s: &str) -> String {
    let pad = " ".repeat(n);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn indent(args: &[Value]) -> Result<Value, FuncError> {
    arg_count("indent", args, 2)?;
    Ok(Value::String(pad(int_arg("indent", &args[0])?, string_arg("indent", &args[1])?)))
}

fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    arg_count("nindent", args, 2)?;
    Ok(Value::String(format!("\n{}", pad(int_arg("nindent", &args[0])?, string_arg("nindent", &args[1])?))))
}

/// Go's `strconv.Quote` for the characters a chart holds (non-ASCII is kept as is).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let mut parts = Vec::with_capacity(args.len());
    for v in args {
        match v {
            Value::NoValue => return Err(missing("quote")),
            Value::Nil => {}
            Value::String(s) => parts.push(go_quote(s)),
            Value::Bool(_) | Value::Number(_) => parts.push(go_quote(&v.to_string())),
            other => return Err(err(format!("quote: will not quote a {}", type_name(other)))),
        }
    }
    Ok(Value::String(parts.join(" ")))
}

/// sprig's `empty`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) | Value::Map(m) => m.is_empty(),
        Value::Number(n) => match n.kind() {
            NumberKind::Unsigned(u) => u == 0,
            NumberKind::Signed(i) => i == 0,
            NumberKind::Float(f) => f == 0.0,
        },
        Value::Function(_) => false,
    }
}

/// `default DEFAULT VALUE` (usually `VALUE | default DEFAULT`).
fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, given, ..] => Ok(if is_empty(given) { d.clone() } else { given.clone() }),
        [] => Err(FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

/// `required MESSAGE VALUE`.
fn required(args: &[Value]) -> Result<Value, FuncError> {
    arg_count("required", args, 2)?;
    let message = string_arg("required", &args[0])?;
    match &args[1] {
        Value::NoValue | Value::Nil => Err(err(message)),
        Value::String(s) if s.is_empty() => Err(err(message)),
        v => Ok(v.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn render(text: &str, dot: Value, defines: &str) -> Result<String, String> {
        let sources =
            Rc::new(vec![("t/_helpers.tpl".to_owned(), defines.to_owned()), ("t/x".to_owned(), text.to_owned())]);
        let _guard = SourcesGuard::install(sources.clone());
        let tmpl = template("t/x", &sources).map_err(|e| e.to_string())?;
        tmpl.render(&Context::from(dot)).map_err(|e| e.to_string())
    }

    fn map(pairs: &[(&str, Value)]) -> Value {
        Value::Map(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<HashMap<_, _>>())
    }

    #[test]
    fn include_pipes_a_define_into_nindent_like_helm() {
        let defines = "{{- define \"labels\" -}}\na: {{ .name }}\nb: c\n{{- end }}";
        let out = render("labels:\n  {{- include \"labels\" . | nindent 2 }}\n", map(&[("name", "x".into())]), defines);
        assert_eq!(out.expect("renders"), "labels:\n  a: x\n  b: c\n");
    }

    #[test]
    fn include_of_an_unknown_template_fails() {
        let out = render("{{ include \"nope\" . }}", Value::Nil, "");
        assert!(out.expect_err("fails").contains("nope"));
    }

    #[test]
    fn include_nested_in_include() {
        let defines =
            "{{- define \"inner\" -}}i{{ . }}{{- end }}{{- define \"outer\" -}}o{{ include \"inner\" . }}{{- end }}";
        assert_eq!(render("{{ include \"outer\" 1 }}", Value::Nil, defines).expect("renders"), "oi1");
    }

    #[test]
    fn to_yaml_sorts_keys_and_drops_the_final_newline() {
        let v = map(&[("z", 1i64.into()), ("a", Value::Array(vec!["x".into(), true.into()]))]);
        assert_eq!(render("{{ toYaml . }}", v, "").expect("renders"), "a:\n- x\n- true\nz: 1");
        assert_eq!(render("{{ toYaml . }}", map(&[]), "").expect("renders"), "{}");
    }

    #[test]
    fn indent_pads_every_line_and_nindent_starts_a_line() {
        assert_eq!(render("{{ indent 2 \"a\\n\\nb\" }}", Value::Nil, "").expect("renders"), "  a\n  \n  b");
        assert_eq!(render("x:{{ nindent 2 \"a\" }}", Value::Nil, "").expect("renders"), "x:\n  a");
    }

    #[test]
    fn quote_is_go_percent_q_of_percent_v() {
        let v = map(&[("n", 9090i64.into()), ("b", false.into()), ("s", "a\"b\\".into())]);
        assert_eq!(
            render("{{ quote .n }} {{ quote .b }} {{ quote .s }}", v, "").expect("renders"),
            r#""9090" "false" "a\"b\\""#
        );
        assert_eq!(render("[{{ quote .n }}]", map(&[("n", Value::Nil)]), "").expect("renders"), "[]", "nil: nothing");
        let missing = render("[{{ quote .missing }}]", map(&[]), "").expect_err("a missing value fails");
        assert!(missing.contains("missing"), "{missing}");
    }

    #[test]
    fn default_replaces_empty_values_only() {
        let v = map(&[("e", "".into()), ("z", 0i64.into()), ("f", false.into()), ("s", "set".into())]);
        let out = render(
            "{{ .e | default \"d\" }} {{ .z | default 5 }} {{ .f | default true }} {{ .s | default \"d\" }} {{ .m | default \"d\" }}",
            v,
            "",
        );
        assert_eq!(out.expect("renders"), "d 5 true set d");
    }

    #[test]
    fn required_fails_with_its_message() {
        let out = render("{{ required \"x is needed\" .x }}", map(&[]), "");
        assert!(out.expect_err("fails").contains("x is needed"));
    }

    #[test]
    fn unknown_functions_do_not_parse() {
        assert!(render("{{ b64enc \"a\" }}", Value::Nil, "").is_err(), "only the emulated functions exist");
    }
}
