//! Text for terminals: names, camera fields and keys come from users and from Redis, and a
//! terminal obeys control characters. An escape sequence in a name could clear the screen or
//! forge a line of `subscribe --format text`; a bidi override could reorder what is shown.
//! Every text output of the commands goes through [`printable`]; JSON output is escaped by
//! serde. A leaf: it imports nothing of the crate.

use std::borrow::Cow;

/// Whether `c` changes how a terminal shows text instead of being shown: the C0 and C1 controls
/// and DEL (newline and tab included), and the Unicode bidi embeddings, overrides and isolates.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [`is_unsafe`] character written as a Rust escape (`\u{1b}`), so it
/// shows as what it is and takes one line; borrowed when there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_escaped_the_rest_is_kept() {
        assert!(matches!(printable("Zoë O'Neil"), Cow::Borrowed("Zoë O'Neil")));
        assert_eq!(printable("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\u{a}c");
        assert_eq!(printable("x\u{9b}y\u{202e}z\u{7f}"), "x\\u{9b}y\\u{202e}z\\u{7f}");
    }
}
