//! Errors said in one line: an error and its sources joined with `": "` ([`error_chain`]), for a
//! log field or the CLI's stderr, and the innermost cause alone ([`innermost_cause`]), for a
//! message that names it in passing. Here because every crate that reports errors depends on
//! this one (mapper-cluster and through it mapper-server, the CLI), and it needs nothing.

use std::error::Error;

/// An error and its sources, joined with `": "`.
///
/// A source whose text the line already carries is not repeated (`HyperError: client error`
/// does not get `: client error` again). When the message itself already names a cause deeper
/// in the chain (`cannot reach X (connection refused): check …`), the sources above that cause
/// are left out as well: the message summarised them, and only what lies below it is added.
/// Texts are compared ignoring ASCII case and the ` (os error N)` that I/O errors end with;
/// sources with no text are skipped.
pub fn error_chain(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut texts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        texts.push(s.to_string());
        source = s.source();
    }
    let first = texts.iter().rposition(|text| carries(&line, text)).map_or(0, |named| named + 1);
    for text in &texts[first..] {
        if !text.is_empty() && !carries(&line, text) {
            line.push_str(": ");
            line.push_str(text);
        }
    }
    line
}

/// The last error of the chain: `e` itself when it has no source. Not a chain: for a message
/// that says in a few words why (`connection refused`), where [`error_chain`] would say how.
pub fn innermost_cause<'a>(e: &'a (dyn Error + 'static)) -> &'a (dyn Error + 'static) {
    let mut deepest = e;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    deepest
}

/// Whether `line` already says `text` (an empty text is said by nothing).
fn carries(line: &str, text: &str) -> bool {
    let text = comparable(text);
    !text.is_empty() && comparable(line).contains(&text)
}

/// Lower case, without ` (os error N)`.
fn comparable(text: &str) -> String {
    without_os_error(&text.to_ascii_lowercase())
}

/// `text` without the ` (os error N)` that I/O errors end with (the number says nothing to a
/// reader the words do not).
pub fn without_os_error(text: &str) -> String {
    let mut text = text.to_owned();
    while let Some(at) = text.find(" (os error ") {
        let Some(len) = text[at..].find(')') else { break };
        text.replace_range(at..=at + len, "");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn chain(texts: &[&'static str]) -> Layer {
        let mut layer: Option<Box<Layer>> = None;
        for text in texts.iter().rev() {
            layer = Some(Box::new(Layer { text, source: layer }));
        }
        *layer.unwrap_or_else(|| panic!("an empty chain"))
    }

    #[test]
    fn sources_are_joined_without_repeating_what_is_said() {
        assert_eq!(error_chain(&chain(&["cannot write out.yaml", "gone"])), "cannot write out.yaml: gone");
        assert_eq!(
            error_chain(&chain(&[
                "cannot list",
                "HyperError: client error (Connect)",
                "client error (Connect)",
                "refused"
            ])),
            "cannot list: HyperError: client error (Connect): refused"
        );
        assert_eq!(error_chain(&chain(&["cannot open x", "", "disk full"])), "cannot open x: disk full");
        let io = std::io::Error::from_raw_os_error(2);
        assert_eq!(error_chain(&io), io.to_string());
    }

    #[test]
    fn a_message_naming_a_deep_cause_stands_for_the_errors_above_it() {
        let e = chain(&[
            "cannot reach mapper-server at x (connection refused): check it",
            "transport error",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]);
        assert_eq!(error_chain(&e), "cannot reach mapper-server at x (connection refused): check it");
        let e = chain(&["cannot load (bad header)", "parse error", "bad header", "at byte 7"]);
        assert_eq!(error_chain(&e), "cannot load (bad header): at byte 7");
    }

    #[test]
    fn the_innermost_cause_is_the_last_source() {
        let e = chain(&["a", "b", "c"]);
        assert_eq!(innermost_cause(&e).to_string(), "c");
        let alone = chain(&["alone"]);
        assert_eq!(innermost_cause(&alone).to_string(), "alone");
    }
}
