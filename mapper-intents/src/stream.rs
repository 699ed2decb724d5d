//! The one reader of YAML (and JSON, which YAML reads too) in mapper: multi-document streams
//! such as `kubectl get -o yaml` or `helm template` print, and single documents (values files,
//! scenarios), read with serde-saphyr into any serde type — `serde_json::Value` for Kubernetes
//! objects, or typed structs.
//!
//! Before a document is deserialized the whole text is read once with the event parser under
//! serde-saphyr (granit-parser): a leading byte-order mark is dropped, the documents are
//! numbered and delimited (empty ones count, as in every YAML stream), and nesting deeper than
//! [`MAX_DEPTH`] is refused — at the collection that is one too deep, before anything is read.
//! The event parser looks ahead for simple keys over at most a bounded stretch of text, and the
//! pass stops at the first collection past the limit, so the work per token is bounded and the
//! check takes time linear in the text (2 MB of `[` or of `{"a":` is refused in about a
//! millisecond). Characters YAML does not allow (NUL and the other controls, which the event
//! parser would read as content) end the text, as libyaml refused them. Each document is then
//! deserialized from its own slice of the text, a deep one on a thread with a large stack, and
//! an error is placed in the whole text: document, line and column.
//!
//! Scalars are read as YAML 1.2's core schema (as serde_yaml read them): only `true`/`false`
//! (any case) are booleans, `yes`, `on`, `010` and `1_000` stay strings, `0x1F` and `1e3` are
//! numbers, `~`, `null` and nothing are null. Aliases are resolved (their replay is bounded)
//! and merge keys (`<<`) are expanded, as Kubernetes' own YAML reader does; duplicate keys and
//! non-finite floats (`.inf`, which JSON cannot hold) are errors; tags are ignored.

use serde::de::DeserializeOwned;
use serde_saphyr::MessageFormatter;
use serde_saphyr::granit_parser::{self, Event, Marker, Parser};

/// How deep sequences and mappings may nest (serde_json's recursion limit, and serde_yaml's).
pub const MAX_DEPTH: usize = 128;

/// The UTF-8 byte-order mark some editors write at the start of a file.
const BOM: char = '\u{feff}';

/// `text` without its leading byte-order mark, if it has one.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// Where a text nests deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// The document, counted from 1.
    pub document: usize,
    /// 1-based line of the collection that is one too deep.
    pub line: usize,
    /// 1-based column of it.
    pub column: usize,
    /// The limit that was passed.
    pub limit: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nested deeper than {} levels at line {}, column {}", self.limit, self.line, self.column)
    }
}

/// A document that is not YAML, or not the YAML its reader wants (a duplicate key, a field of
/// the wrong type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// The document, counted from 1.
    pub document: usize,
    /// 1-based line in the whole text, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, without the position.
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " at line {line}, column {column}")?;
        }
        Ok(())
    }
}

impl std::error::Error for YamlError {}

/// Why a YAML text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Sequences or mappings nested deeper than [`MAX_DEPTH`] (no document is read then).
    #[error("document {document}: {at}", document = .0.document, at = .0)]
    TooDeep(TooDeep),
    /// A document that is not YAML, or does not deserialize.
    #[error("document {document}: {error}", document = .0.document, error = .0)]
    Yaml(YamlError),
}

/// The options every document is deserialized with (see the module documentation). The sizes
/// are not capped: the inputs are the user's own files and cluster dumps, which can be large,
/// and the depth is checked before.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_events: usize::MAX,
            max_nodes: usize::MAX,
            max_total_scalar_bytes: usize::MAX,
            max_documents: usize::MAX,
            // Aliases stay bounded by the replay limits; many references to one anchor are fine.
            enforce_alias_anchor_ratio: false,
        },
        emit_comments: false,
        // A byte-order mark inside a scalar is part of it, as libyaml reads it.
        bom_inside_document_as_content: true,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    }
}

/// The event parser's options for the first pass: what serde-saphyr's parse of a document
/// uses, except that flow collections may nest past the simple-key look-ahead, so that the
/// depth check (and not the parser's own limit on flow nesting, which it reaches while still
/// looking ahead) is what stops `[[[[…`.
fn parser_options() -> granit_parser::Options {
    granit_parser::options! {
        emit_comments: false,
        bom_inside_document_as_content: true,
        flow_nesting_limit: 2 * 1024,
    }
}

/// Whether YAML allows `c` in a stream (`c-printable`): tab, line breaks, and every character
/// but the other C0 and C1 controls, DEL, and U+FFFE/U+FFFF.
fn printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        || c >= '\u{10000}'
}

/// The first character YAML does not allow in `text` (the event parser reads NUL and other
/// controls as content), as an error at its place in document `document`.
fn unprintable(text: &str, at: usize, document: usize) -> YamlError {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let c = text[at..].chars().next().map_or(0, u32::from);
    YamlError {
        document,
        line: Some(line),
        column: Some(column),
        message: format!("control character U+{c:04X} is not allowed in YAML"),
    }
}

/// Where each document of a text ends, and what stopped the pass early.
#[derive(Debug)]
struct Split {
    /// The end of each whole document, in order, with how deep it nests.
    ends: Vec<(Marker, usize)>,
    /// A syntax error in the document after the last of `ends`.
    error: Option<YamlError>,
}

/// Reads `text` once with the event parser: documents delimited, nesting checked (refused
/// outright), and the first syntax error (or character YAML does not allow) kept for its
/// document.
fn split(text: &str) -> Result<Split, StreamError> {
    // Only what comes before a character YAML does not allow is parsed.
    let bad = text.char_indices().find(|(_, c)| !printable(*c)).map(|(at, _)| at);
    let mut parser = Parser::new_from_str_with_options(&text[..bad.unwrap_or(text.len())], parser_options());
    let mut ends = Vec::new();
    // The last document ended, until the next starts: in a text cut before a character YAML
    // does not allow, the document at the cut is not whole.
    let mut ended = None;
    let (mut depth, mut deepest) = (0usize, 0usize);
    while let Some(event) = parser.next_event() {
        match event {
            Ok((Event::DocumentStart(..), _)) => {
                ends.extend(ended.take());
                (depth, deepest) = (0, 0);
            }
            Ok((Event::DocumentEnd, span)) => ended = Some((span.end, deepest)),
            Ok((Event::SequenceStart(..) | Event::MappingStart(..), span)) => {
                depth += 1;
                deepest = deepest.max(depth);
                if depth > MAX_DEPTH {
                    let at = span.start;
                    return Err(StreamError::TooDeep(TooDeep {
                        document: ends.len() + 1,
                        line: at.line(),
                        column: at.col() + 1,
                        limit: MAX_DEPTH,
                    }));
                }
            }
            Ok((Event::SequenceEnd | Event::MappingEnd, _)) => depth = depth.saturating_sub(1),
            Ok(_) => {}
            // Where the text was cut, the character is the error.
            Err(_) if bad.is_some() => break,
            Err(error) => {
                ends.extend(ended.take());
                let at = error.marker();
                let error = YamlError {
                    document: ends.len() + 1,
                    line: Some(at.line()),
                    column: Some(at.col() + 1),
                    message: error.info(),
                };
                return Ok(Split { ends, error: Some(error) });
            }
        }
    }
    if bad.is_none() {
        ends.extend(ended);
    }
    let error = bad.map(|at| unprintable(text, at, ends.len() + 1));
    Ok(Split { ends, error })
}

/// The byte offset of a marker of the event parser over `text`.
fn byte_offset(text: &str, at: &Marker) -> usize {
    at.byte_offset()
        .unwrap_or_else(|| text.char_indices().nth(at.index()).map_or(text.len(), |(offset, _)| offset))
        .min(text.len())
}

/// Documents nesting deeper than this are deserialized on a thread of their own with
/// [`DEEP_STACK`] bytes of stack: serde-saphyr's deserializer takes some 30 KB of stack per level
/// in a debug build (4 in a release build), and a thread's stack is often 2 MB (tokio's workers,
/// the test harness).
const SHALLOW: usize = 32;

/// The stack of the thread a deep document is deserialized on: enough for [`MAX_DEPTH`] levels in
/// a debug build (only what is used is ever allocated).
const DEEP_STACK: usize = 16 << 20;

/// Deserializes one document, `slice`, which starts at `start` in the whole text and nests
/// `depth` deep; an error is placed in the whole text.
fn deserialize<T: DeserializeOwned + Send>(
    slice: &str,
    start: Option<&Marker>,
    depth: usize,
    document: usize,
) -> Result<T, YamlError> {
    if depth <= SHALLOW {
        return deserialize_here(slice, start, document);
    }
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("mapper-yaml".to_owned())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, || deserialize_here(slice, start, document));
        match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had: read it here, as deep as this thread's stack allows.
            Err(_) => deserialize_here(slice, start, document),
        }
    })
}

fn deserialize_here<T: DeserializeOwned>(slice: &str, start: Option<&Marker>, document: usize) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(slice, options()).map_err(|error| {
        let message = serde_saphyr::UserMessageFormatter.format_message(&error).into_owned();
        let (mut line, mut column) = match error.location() {
            Some(at) => (usize::try_from(at.line()).ok(), usize::try_from(at.column()).ok()),
            None => (None, None),
        };
        if let (Some(start), Some(l)) = (start, line.as_mut()) {
            if *l == 1 {
                column = column.map(|c| c + start.col());
            }
            *l += start.line() - 1;
        }
        YamlError { document, line, column, message }
    })
}

/// The documents of a YAML (or JSON) stream, each deserialized as a `T` when it is reached,
/// with its number (from 1; an empty document is one too, read as null). See [`documents`].
#[derive(Debug)]
pub struct Documents<'a, T> {
    text: &'a str,
    split: Result<Split, Option<StreamError>>,
    next: usize,
    _type: std::marker::PhantomData<fn() -> T>,
}

/// The documents of `text` (a leading byte-order mark dropped), read one at a time as `T`s.
///
/// Nesting deeper than [`MAX_DEPTH`] anywhere in the text is the only item; otherwise every
/// document is read in turn, and the first that cannot be (not YAML, or not a `T`) is the last
/// item, an error with its document and position.
pub fn documents<T: DeserializeOwned + Send>(text: &str) -> Documents<'_, T> {
    let text = strip_bom(text);
    Documents { text, split: split(text).map_err(Some), next: 0, _type: std::marker::PhantomData }
}

impl<T: DeserializeOwned + Send> Iterator for Documents<'_, T> {
    type Item = Result<(usize, T), StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        let split = match &mut self.split {
            Ok(split) => split,
            Err(error) => return error.take().map(Err),
        };
        let index = self.next;
        let Some((end, depth)) = split.ends.get(index) else {
            // After the last whole document: its syntax error, once.
            self.next = split.ends.len() + 1;
            return split.error.take().map(|e| Err(StreamError::Yaml(e)));
        };
        let start = index.checked_sub(1).and_then(|i| split.ends.get(i)).map(|(start, _)| start);
        let from = start.map_or(0, |m| byte_offset(self.text, m));
        let to = byte_offset(self.text, end).max(from);
        self.next += 1;
        let document = index + 1;
        match deserialize(&self.text[from..to], start, *depth, document) {
            Ok(value) => Some(Ok((document, value))),
            Err(error) => {
                // Nothing after a document that could not be read.
                split.ends.truncate(index);
                split.error = None;
                Some(Err(StreamError::Yaml(error)))
            }
        }
    }
}

/// A text of one YAML (or JSON) document (a leading byte-order mark dropped) read as a `T`:
/// an empty text is null; a second document is an error, as is nesting deeper than
/// [`MAX_DEPTH`] (reported as any other error in the document, with its position).
pub fn from_str<T: DeserializeOwned + Send>(text: &str) -> Result<T, YamlError> {
    let text = strip_bom(text);
    let split = split(text).map_err(|error| match error {
        StreamError::TooDeep(at) => YamlError {
            document: at.document,
            line: Some(at.line),
            column: Some(at.column),
            message: format!("nested deeper than {} levels", at.limit),
        },
        StreamError::Yaml(error) => error,
    })?;
    if let [(first, _), _, ..] = split.ends.as_slice() {
        return Err(YamlError {
            document: 2,
            line: Some(first.line()),
            column: Some(first.col() + 1),
            message: "more than one document where one was expected".to_owned(),
        });
    }
    if let Some(error) = split.error {
        return Err(error);
    }
    deserialize(text, None, split.ends.first().map_or(0, |(_, depth)| *depth), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Value = serde_json::Value;

    fn read(text: &str) -> Result<Vec<(usize, Value)>, StreamError> {
        documents(text).collect()
    }

    fn depth(text: &str) -> Result<(), TooDeep> {
        match split(text) {
            Err(StreamError::TooDeep(at)) => Err(at),
            _ => Ok(()),
        }
    }

    #[test]
    fn shallow_text_passes_and_deep_text_is_placed() {
        let ok = format!("a:\n  b: [1, {{c: {}{}}}]\n---\n- x\n", "[".repeat(124), "]".repeat(124));
        assert_eq!(depth(&ok), Ok(()));
        // As deep as allowed, on a thread of the harness (2 MB of stack): read on its own thread.
        assert_eq!(read(&ok).map(|docs| docs.len()), Ok(2));
        let deep = format!("a: 1\n---\nk: {}{}\n", "[".repeat(200), "]".repeat(200));
        assert_eq!(depth(&deep), Err(TooDeep { document: 2, line: 3, column: 131, limit: MAX_DEPTH }));
        // Unclosed, and short enough for the parser to look for its end: a syntax error first.
        let unclosed = format!("k: {}\n", "[".repeat(200));
        assert!(matches!(read(&unclosed), Err(StreamError::Yaml(_))));
        assert!(matches!(read(&"[".repeat(5)), Err(StreamError::Yaml(_))), "a syntax error, not a depth error");
    }

    #[test]
    fn brackets_in_strings_and_block_scalars_do_not_count() {
        let text = format!("a: \"{0}\"\nb: '{0}'\nc: |\n  {0}\nd: x{0}\n", "[{".repeat(200));
        assert_eq!(depth(&text), Ok(()));
        assert_eq!(read(&text).map(|docs| docs.len()), Ok(1));
    }

    #[test]
    fn a_bom_is_dropped_once() {
        assert_eq!(strip_bom("\u{feff}a: 1"), "a: 1");
        assert_eq!(strip_bom("a: 1"), "a: 1");
        assert_eq!(read("\u{feff}a: 1\n").map(|d| d[0].1.clone()), Ok(serde_json::json!({"a": 1})));
    }

    /// Not a timing assertion: 2 MB of `{"a":` or `[` would take far longer if the check were
    /// quadratic (libyaml's parse of it is); the pass stops at the limit.
    #[test]
    fn very_deep_text_stops_at_the_limit() {
        let err = depth(&"{\"a\":".repeat(400_000)).expect_err("too deep");
        assert_eq!((err.document, err.line, err.column), (1, 1, 5 * MAX_DEPTH + 1));
        let err = depth(&"[".repeat(2_000_000)).expect_err("too deep");
        assert_eq!((err.document, err.line, err.column), (1, 1, MAX_DEPTH + 1));
        let err = depth(&"- ".repeat(1_000_000)).expect_err("too deep");
        assert_eq!((err.document, err.line, err.column), (1, 1, 2 * MAX_DEPTH + 1));
    }

    #[test]
    fn every_document_is_numbered_empty_ones_too() {
        let docs = read("# only a comment\n---\na: 1\n---\n---\n- x\n...\n%YAML 1.2\n---\nb: 2\n").expect("reads");
        let numbers: Vec<usize> = docs.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        assert_eq!(docs[1].1, Value::Null);
        assert_eq!(docs[3].1, serde_json::json!({"b": 2}));
        assert_eq!(read("").map(|d| d.len()), Ok(0));
        assert_eq!(read("# nothing\n").map(|d| d.len()), Ok(0));
    }

    #[test]
    fn errors_are_placed_in_the_whole_text() {
        // A syntax error, found by the first pass.
        let err = read("a: 1\n---\nb: [1,\n").expect_err("malformed");
        assert_eq!(
            err,
            StreamError::Yaml(YamlError {
                document: 2,
                line: Some(3),
                column: Some(4),
                message: "unclosed bracket '['".to_owned()
            })
        );
        assert_eq!(err.to_string(), "document 2: unclosed bracket '[' at line 3, column 4");
        // A duplicate key, found by the deserializer in the document's own slice.
        let err = read("a: 1\n---\nb: 1\nb: 2\n").expect_err("duplicate");
        let StreamError::Yaml(e) = &err else { panic!("{err:?}") };
        assert_eq!((e.document, e.line, e.column), (2, Some(4), Some(1)), "{err}");
        // On the line where the document starts, the column counts from the line's start.
        let err = read("--- a\n--- {b: 1, b: 2}\n").expect_err("duplicate");
        let StreamError::Yaml(e) = &err else { panic!("{err:?}") };
        assert_eq!((e.document, e.line, e.column), (2, Some(2), Some(12)), "{err}");
        // The documents before the error are read; none after it.
        let mut all = documents::<Value>("a: 1\n---\n[x\n---\nb: 2\n");
        assert!(matches!(all.next(), Some(Ok((1, _)))));
        assert!(matches!(all.next(), Some(Err(StreamError::Yaml(YamlError { document: 2, .. })))));
        assert!(all.next().is_none());
    }

    #[test]
    fn control_characters_are_refused_and_a_bom_in_a_scalar_is_kept() {
        let err = read("a: 1\n---\nb: x\u{0}y\n").expect_err("NUL");
        assert_eq!(err.to_string(), "document 2: control character U+0000 is not allowed in YAML at line 3, column 5");
        assert!(matches!(read("a: \u{7f}\n"), Err(StreamError::Yaml(YamlError { document: 1, .. }))));
        let expected = YamlError {
            document: 2,
            line: Some(3),
            column: Some(2),
            message: "control character U+0001 is not allowed in YAML".into(),
        };
        assert_eq!(read("a: 1\n---\n[\u{1}"), Err(StreamError::Yaml(expected)));
        // An empty document before the character is whole; the one it is in is not.
        let text = "a: 1\n---\n# c\n---\n# c\u{0}\n";
        let docs: Vec<_> = documents::<Value>(text).collect();
        assert_eq!(docs.len(), 3, "{docs:?}");
        assert!(matches!(
            &docs[2],
            Err(StreamError::Yaml(YamlError { document: 3, line: Some(5), column: Some(4), .. }))
        ));
        assert_eq!(
            read("a: 1\n---\nb: \u{feff}x\n").map(|d| d[1].1.clone()),
            Ok(serde_json::json!({"b": "\u{feff}x"}))
        );
        assert_eq!(read("a: \t\u{85}\u{a0}é😀\n").map(|d| d.len()), Ok(1));
    }

    #[test]
    fn scalars_are_read_as_yaml_1_2_core() {
        let text = "a: yes\nb: on\nc: 010\nd: 1_000\ne: 0x1F\nf: 1e3\ng: ~\nh:\ni: True\nj: 1.0\nk: 7\nl: '8'\n";
        let value: Value = from_str(text).expect("reads");
        let expected = serde_json::json!({
            "a": "yes", "b": "on", "c": "010", "d": "1_000", "e": 31, "f": 1000.0, "g": null, "h": null,
            "i": true, "j": 1.0, "k": 7, "l": "8",
        });
        assert_eq!(value, expected);
        assert!(value["k"].is_u64() && value["j"].is_f64(), "integers stay integers");
        assert!(from_str::<Value>("a: .inf\n").is_err(), "JSON holds no infinity");
        assert!(from_str::<Value>("? [a]\n: 1\n").is_err(), "JSON keys are strings");
        assert_eq!(from_str::<Value>("1: x\ntrue: y\n").ok(), Some(serde_json::json!({"1": "x", "true": "y"})));
    }

    #[test]
    fn anchors_merge_keys_and_tags() {
        let text = "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nref: *b\nt: !Thing {z: 1}\n";
        let value: Value = from_str(text).expect("reads");
        let expected = serde_json::json!({
            "base": {"x": 1, "y": 2}, "use": {"x": 1, "y": 3}, "ref": {"x": 1, "y": 2}, "t": {"z": 1},
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn one_document_is_one() {
        assert_eq!(from_str::<Value>("").ok(), Some(Value::Null));
        assert_eq!(from_str::<Value>("---\na: 1\n...\n").ok(), Some(serde_json::json!({"a": 1})));
        let err = from_str::<Value>("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert_eq!(err.to_string(), "more than one document where one was expected at line 2, column 1");
        let err = from_str::<Value>(&format!("a: {}{}\n", "[".repeat(200), "]".repeat(200))).expect_err("deep");
        assert_eq!(err.to_string(), "nested deeper than 128 levels at line 1, column 131");
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Port {
            port: u16,
        }
        let err = from_str::<Port>("# a port\nport: 70000\n").expect_err("out of range");
        assert_eq!((err.line, err.column), (Some(2), Some(7)), "{err}");
    }
}
