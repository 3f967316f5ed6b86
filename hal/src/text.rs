//! Untrusted text made safe to print: the one sanitizer for strings that came from outside
//! (the backend's `message`, card codes, a redirect's target...) before they reach a log
//! line, a terminal or a customer screen.
//!
//! Why one function: a control character in a log line forges journald entries (a `\n<0>`
//! starts a new line at priority 0, broadcast to every terminal), an escape sequence in
//! `wxcardctl`'s output drives the operator's terminal, and a bidi override makes a screen
//! say something other than the bytes. Every sink escapes the same set, so a test per sink
//! proves the same rule. It lives in `wxcard-hal` because the displays need it too and the
//! daemon depends on hal, not the reverse.
//!
//! What is escaped, as `\u{..}` (visible, unambiguous, never interpreted): C0 controls
//! (tab and newline included), DEL, C1 controls, the line and paragraph separators U+2028
//! and U+2029, the bidi embeddings, overrides, isolates and marks (U+200E, U+200F,
//! U+202A..U+202E, U+2066..U+2069, U+061C) and the byte order mark U+FEFF. A backslash is
//! left alone: the escapes are for a person, not for a parser. Text longer than the cap is
//! cut (on a character boundary) and ends in `…`.

use std::borrow::Cow;

/// The default cap, in characters, for one untrusted string in a log line or on a terminal.
pub const MAX_UNTRUSTED_CHARS: usize = 200;

/// True for the characters [`sanitize`] escapes.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{061C}'
                | '\u{FEFF}'
        )
}

/// `text` with every unsafe character escaped and at most `max_chars` characters of it kept
/// (an escape counts as one). Borrows when nothing had to change.
pub fn sanitize(text: &str, max_chars: usize) -> Cow<'_, str> {
    let clean = !text.chars().any(is_unsafe);
    if clean && text.chars().nth(max_chars).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max_chars * 4) + 8);
    for (n, c) in text.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`sanitize`] with [`MAX_UNTRUSTED_CHARS`].
pub fn untrusted(text: &str) -> Cow<'_, str> {
    sanitize(text, MAX_UNTRUSTED_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_separators_and_bidi_are_escaped() {
        let hostile = "lost\n<0>FORGED LINE \x1b[2J\u{85}\u{2028}x\u{202E}gpj.exe\u{7f}\t\r";
        let out = untrusted(hostile);
        assert!(!out.chars().any(is_unsafe), "{out}");
        assert_eq!(
            out,
            "lost\\u{a}<0>FORGED LINE \\u{1b}[2J\\u{85}\\u{2028}x\\u{202e}gpj.exe\\u{7f}\\u{9}\\u{d}"
        );
        assert!(matches!(untrusted("卡已挂失 ok"), Cow::Borrowed(_)));
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "挂".repeat(500);
        let out = sanitize(&long, 10);
        assert_eq!(out.chars().count(), 11);
        assert!(out.ends_with('…'));
        assert_eq!(sanitize("abc", 3), "abc");
        assert_eq!(sanitize("abcd", 3), "abc…");
    }
}
