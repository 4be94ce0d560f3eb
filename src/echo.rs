//! Echoing client text safely. Whatever a client sent (a field name, a topic name, a path)
//! may come back in an error body and land in a log line. Raw, a newline there forges a log
//! line and an ESC byte drives the operator's terminal; unbounded, one request makes a
//! megabyte-long error and log line. Everything that echoes client input goes through here.

use std::fmt::Write;

/// Most characters of one client string shown in a message.
pub const MAX_ECHO_CHARS: usize = 64;
/// Most characters of a whole error message (it may hold several echoed strings).
pub const MAX_MESSAGE_CHARS: usize = 512;

/// `text` with control characters and non-ASCII whitespace escaped (`\n`, `\u{1b}`, …),
/// cut after `max_chars` characters with a note of how much was left out.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 16));
    for (shown, (index, c)) in text.char_indices().enumerate() {
        if shown == max_chars {
            let _ = write!(out, "…(+{} bytes)", text.len() - index);
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `c` must not appear raw in a message or log line.
fn needs_escape(c: char) -> bool {
    // Control characters (C0, DEL, C1 such as U+0085 NEL), other line and paragraph
    // separators, bidirectional overrides that reorder what an operator reads.
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A client string quoted for a message: `'orders'`, escaped and capped by [`sanitize`].
pub fn quoted(text: &str) -> String {
    format!("'{}'", sanitize(text, MAX_ECHO_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_odd_whitespace_are_escaped() {
        let forged = "a\n2026-01-01T00:00:00Z  INFO FORGED\u{1b}[31m\u{85}\u{2028}\u{a0}\u{202e}";
        let clean = sanitize(forged, 1000);
        assert!(
            clean
                .chars()
                .all(|c| !c.is_control() && (c == ' ' || !c.is_whitespace()))
        );
        assert!(clean.starts_with("a\\n2026"), "{clean}");
        assert!(clean.contains("\\u{1b}[31m"), "{clean}");
        assert!(clean.contains("\\u{a0}"), "{clean}");
        assert_eq!(sanitize("plain text, é ü", 100), "plain text, é ü");
    }

    #[test]
    fn long_text_is_capped_with_a_note() {
        let long = "x".repeat(1_000_000);
        let shown = quoted(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.contains("(+999936 bytes)"), "{shown}");
        assert_eq!(sanitize("ab", 2), "ab");
        assert_eq!(sanitize("abc", 2), "ab…(+1 bytes)");
    }
}
