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

/// JSON text (as `serde_json` writes it) with every character [`is_unsafe`] flags written
/// as a JSON `\uXXXX` escape, so the same value parses back and a terminal or a log viewer
/// showing the text sees none of them raw. `serde_json` escapes C0 itself but passes DEL, C1
/// and the bidi characters through. Only for JSON text: outside strings JSON has no
/// character of the set but the `\n` of pretty output's layout, left alone (inside a string
/// serde_json has escaped it already), so every one replaced was in a string.
pub fn escape_json_text(json: &str) -> Cow<'_, str> {
    let unsafe_in_json = |c: char| is_unsafe(c) && c != '\n';
    if !json.chars().any(unsafe_in_json) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unsafe_in_json(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
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
    fn json_text_escapes_the_set_and_keeps_the_value() {
        let value = "a\u{7f}\u{85}\u{9b}\u{2028}\u{200e}\u{202e}\u{2069}\u{feff}b \\ \" 卡";
        let json = serde_json::json!({ "m": value }).to_string();
        let out = escape_json_text(&json);
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["m"], value);
        assert!(!out.chars().any(is_unsafe), "{out}");
        assert_eq!(
            out,
            "{\"m\":\"a\\u007f\\u0085\\u009b\\u2028\\u200e\\u202e\\u2069\\ufeffb \\\\ \\\" 卡\"}"
        );
        assert!(matches!(
            escape_json_text("{\"m\":\"卡 ok\"}"),
            Cow::Borrowed(_)
        ));
        // Pretty output's layout stays.
        assert_eq!(escape_json_text("{\n  \"a\": 1\n}"), "{\n  \"a\": 1\n}");
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
