//! Guards run on YAML (or JSON) text before it is parsed into values: a leading byte-order
//! mark is dropped, and nesting deeper than [`MAX_DEPTH`] is refused in time linear in the
//! text.
//!
//! libyaml (under serde_yaml) keeps one possible simple key per open flow collection and looks
//! at all of them for every token, and serde_yaml loads a whole document's events before its
//! own recursion limit applies: 200 KB of `{"a":` takes seconds, 400 KB tens of seconds. Here
//! the events are read one by one and the reading stops at the first collection deeper than
//! the limit, so the work per token is bounded by the limit and nothing is kept.

use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_sys;

/// How deep sequences and mappings may nest (serde_yaml's own recursion limit, and
/// serde_json's).
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
    /// The document, counted from 1 as serde_yaml's stream yields them.
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

/// Checks that no sequence or mapping in `text` is nested more than `limit` deep, reading it
/// once with libyaml's event parser. Syntax errors are not reported here (the parse that
/// follows reports them, with its own message): the check stops at the first one.
pub fn check_depth(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut parser = Parser::new(text);
    let mut document = 0;
    let mut depth = 0usize;
    while let Some((kind, mark)) = parser.next() {
        match kind {
            unsafe_sys::YAML_DOCUMENT_START_EVENT => {
                document += 1;
                depth = 0;
            }
            unsafe_sys::YAML_SEQUENCE_START_EVENT | unsafe_sys::YAML_MAPPING_START_EVENT => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep {
                        document: document.max(1),
                        line: usize::try_from(mark.line).unwrap_or(usize::MAX).saturating_add(1),
                        column: usize::try_from(mark.column).unwrap_or(usize::MAX).saturating_add(1),
                        limit,
                    });
                }
            }
            unsafe_sys::YAML_SEQUENCE_END_EVENT | unsafe_sys::YAML_MAPPING_END_EVENT => depth = depth.saturating_sub(1),
            unsafe_sys::YAML_STREAM_END_EVENT => break,
            _ => {}
        }
    }
    Ok(())
}

/// A libyaml event parser over a borrowed text. The parser state is boxed so it never moves
/// while libyaml holds pointers into it.
struct Parser<'a> {
    sys: Box<MaybeUninit<unsafe_sys::yaml_parser_t>>,
    initialized: bool,
    _input: &'a [u8],
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let input = text.as_bytes();
        let mut sys = Box::new(MaybeUninit::<unsafe_sys::yaml_parser_t>::uninit());
        let parser = sys.as_mut_ptr();
        // SAFETY: `parser` points to boxed, writable memory that outlives every use below
        // (the box is dropped only after `yaml_parser_delete`); the input outlives the parser
        // (`'a`), and its length is its own.
        let initialized = unsafe {
            let ok = unsafe_sys::yaml_parser_initialize(parser).ok;
            if ok {
                unsafe_sys::yaml_parser_set_encoding(parser, unsafe_sys::YAML_UTF8_ENCODING);
                unsafe_sys::yaml_parser_set_input_string(parser, input.as_ptr(), input.len() as u64);
            }
            ok
        };
        Self { sys, initialized, _input: input }
    }

    /// The next event's type and start, or `None` at a syntax error (or when libyaml could not
    /// allocate its state).
    fn next(&mut self) -> Option<(unsafe_sys::yaml_event_type_t, unsafe_sys::yaml_mark_t)> {
        if !self.initialized {
            return None;
        }
        let parser = self.sys.as_mut_ptr();
        let mut event = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
        // SAFETY: the parser was initialized and is not moved; the event is written by
        // `yaml_parser_parse` before it is read and deleted exactly once.
        unsafe {
            let event = event.as_mut_ptr();
            if unsafe_sys::yaml_parser_parse(parser, event).fail {
                return None;
            }
            let found = ((*event).type_, (*event).start_mark);
            unsafe_sys::yaml_event_delete(event);
            // After an error libyaml answers with no event at all.
            (found.0 != unsafe_sys::YAML_NO_EVENT).then_some(found)
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        if self.initialized {
            // SAFETY: initialized above and deleted only here.
            unsafe { unsafe_sys::yaml_parser_delete(self.sys.as_mut_ptr()) }
        }
    }
}

impl std::fmt::Debug for Parser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser").field("initialized", &self.initialized).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_text_passes_and_deep_text_is_placed() {
        let ok = "a:\n  b: [1, {c: [2]}]\n---\n- x\n";
        assert_eq!(check_depth(ok, 5), Ok(()));
        assert_eq!(check_depth(ok, 4), Err(TooDeep { document: 1, line: 2, column: 14, limit: 4 }));
        let deep = format!("a: 1\n---\nk: {}\n", "[".repeat(10));
        assert_eq!(check_depth(&deep, 5), Err(TooDeep { document: 2, line: 3, column: 8, limit: 5 }));
        assert_eq!(check_depth(&"[".repeat(5), 5), Ok(()), "a syntax error is left to the parse");
    }

    #[test]
    fn brackets_in_strings_and_block_scalars_do_not_count() {
        let text = format!("a: \"{0}\"\nb: '{0}'\nc: |\n  {0}\nd: x{0}\n", "[{".repeat(200));
        assert_eq!(check_depth(&text, 2), Ok(()));
    }

    #[test]
    fn a_bom_is_dropped_once() {
        assert_eq!(strip_bom("\u{feff}a: 1"), "a: 1");
        assert_eq!(strip_bom("a: 1"), "a: 1");
    }

    /// Not a timing assertion: 2 MB of `{"a":` would take minutes if the check were quadratic
    /// (libyaml's own parse of it is); the check stops at the limit.
    #[test]
    fn very_deep_text_stops_at_the_limit() {
        let text = "{\"a\":".repeat(400_000);
        let err = check_depth(&text, MAX_DEPTH).expect_err("too deep");
        assert_eq!((err.document, err.line, err.column), (1, 1, 5 * MAX_DEPTH + 1));
    }
}
