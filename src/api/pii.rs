//! Personal data that must never reach a log.
//!
//! A member's name, phone, sex, birthday, national ID number and address travel in
//! `MemberInfo`. They are wrapped in [`Pii`], whose `Debug` and `Display` print a masked form
//! (`138****5678`, `1****************8`), so a `{:?}` of a request, an error or a queued write
//! cannot leak them. Serialization writes the real value: the wire and the outbox need it.
//!
//! A `Pii` zeroes its value when dropped (the `zeroize` crate), so a member's name or ID
//! number does not linger in freed memory for a core dump or a later allocation to show
//! (issue 10). Copies made on the way (JSON buffers, HTTP bodies) are not covered: the daemon
//! is also made non-dumpable at start and the unit sets `LimitCORE=0`.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

/// How one kind of personal field is masked.
pub trait Mask {
    /// The masked form of `value`, safe for logs.
    fn mask(value: &str) -> String;
}

/// A personal field. `Debug`/`Display` are masked; [`Pii::expose`] gives the real value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pii<M: Mask> {
    value: String,
    #[serde(skip)]
    kind: PhantomData<M>,
}

impl<M: Mask> Pii<M> {
    /// Wraps a personal value.
    pub fn new(value: impl Into<String>) -> Self {
        Pii {
            value: value.into(),
            kind: PhantomData,
        }
    }

    /// The real value, for the wire. Never pass it to a log macro.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The masked form.
    pub fn masked(&self) -> String {
        M::mask(&self.value)
    }
}

impl<M: Mask> Drop for Pii<M> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl<M: Mask> fmt::Debug for Pii<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl<M: Mask> fmt::Display for Pii<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Keeps the first `head` and last `tail` characters, stars in between; short values are all
/// stars so that masking never reveals most of a value.
fn keep_ends(value: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= head + tail + 2 {
        return "*".repeat(chars.len().max(1));
    }
    let stars = chars.len() - head - tail;
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', stars));
    out.extend(&chars[chars.len() - tail..]);
    out
}

macro_rules! mask_kind {
    ($(#[$doc:meta] $name:ident => |$v:ident| $body:expr;)*) => {$(
        #[$doc]
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub enum $name {}
        impl Mask for $name {
            fn mask($v: &str) -> String {
                $body
            }
        }
    )*};
}

mask_kind! {
    /// A phone number: first three and last four digits (`138****5678`).
    Phone => |v| keep_ends(v, 3, 4);
    /// A national ID number: first and last character only.
    IdCard => |v| keep_ends(v, 1, 1);
    /// A person's name: nothing but its length.
    Name => |v| "*".repeat(v.chars().count().clamp(1, 4));
    /// An address: fully hidden.
    Address => |_v| "***".to_owned();
    /// A birthday: fully hidden.
    Birthday => |_v| "****-**-**".to_owned();
    /// Sex: fully hidden.
    Sex => |_v| "*".to_owned();
}

/// The start of an answer's body, for a log line about a bad answer, without the personal
/// data it may hold: at most `max` characters, control characters as spaces, `…` when cut.
///
/// Why: the body of an error status, or of a 200 that is not quite JSON, is quoted so that an
/// operator sees what came back (a proxy's HTML page, a gateway's error). But such a body may
/// be a member's card with the member's name, phone and ID number beside it (a backend that
/// failed after building its answer, a cache that appended a comment). A JSON body is
/// therefore shown as its shape: keys kept, values masked (`"…"` for a string, `#` for a
/// number longer than 4 characters), except the envelope's own `status` and `message` at the
/// top (the message of a business status is logged anyway). In any body, a run of 7 or more
/// digits (a phone or ID number, even outside JSON) is masked.
pub fn body_snippet(bytes: &[u8], max: usize) -> String {
    // Enough of the body for `max` characters once masked (masking only shortens it).
    let head = &bytes[..bytes.len().min(max * 16)];
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start();
    let shown = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        json_shape(trimmed)
    } else {
        text.into_owned()
    };
    let shown = mask_digit_runs(&shown);
    let mut out: String = shown
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if shown.chars().count() > max || head.len() < bytes.len() {
        out.push('…');
    }
    out
}

/// An error message about a value an answer held, without the value: text in double quotes
/// (serde's `invalid type: string "…"`, a decimal's parse error) as `"…"`, and runs of 7 or
/// more digits (serde quotes a number in backticks) masked. Why: the value may be a member's
/// personal data sent where a card's field or `data` should be, and the message is logged.
pub fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut escaped = false;
    for c in message.chars() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                out.push_str("…\"");
                quoted = false;
            }
        } else {
            out.push(c);
            quoted = c == '"';
        }
    }
    if quoted {
        out.push('…');
    }
    mask_digit_runs(&out)
}

/// Keys and structure of (possibly broken) JSON text, values masked (see [`body_snippet`]).
fn json_shape(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    let mut chars = text.chars().peekable();
    let mut depth = 0usize;
    // The value after a top-level `status` or `message` key is shown.
    let mut show_value = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut literal = String::new();
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                    literal.push(c);
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&':') {
                    show_value = depth == 1 && (literal == "status" || literal == "message");
                    out.push('"');
                    out.push_str(&literal);
                    out.push('"');
                } else if show_value {
                    out.push('"');
                    out.push_str(&literal);
                    out.push('"');
                } else {
                    out.push_str("\"…\"");
                }
            }
            '{' | '[' => {
                depth += 1;
                show_value = false;
                out.push(c);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                out.push(c);
            }
            ',' => {
                show_value = false;
                out.push(c);
            }
            ':' => out.push(c),
            c if c.is_whitespace() => {}
            // A number, `true`, `false`, `null`, or whatever else is there.
            c => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || ",:[]{}\"".contains(next) {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                if show_value || word.chars().count() <= 4 {
                    out.push_str(&word);
                } else {
                    out.push('#');
                }
            }
        }
    }
    out
}

/// Runs of 7 or more ASCII digits (with an ID number's final `X`) as `#`.
fn mask_digit_runs(text: &str) -> String {
    const LONGEST_SHOWN: usize = 6;
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() > LONGEST_SHOWN {
            out.push('#');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || ((c == 'X' || c == 'x') && !run.is_empty()) {
            run.push(c);
            if !c.is_ascii_digit() {
                flush(&mut run, &mut out);
            }
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_body_is_shown_as_its_shape_without_the_members_data() {
        let body = r#"{"status":500,"message":"db down","data":{"name":"王秀英","phone":"13912345678","idCard":"11010119900307123X","balance":128.50,"n":13912345678,"ok":true}}"#;
        assert_eq!(
            body_snippet(body.as_bytes(), 200),
            r#"{"status":500,"message":"db down","data":{"name":"…","phone":"…","idCard":"…","balance":#,"n":#,"ok":true}}"#
        );
        // Broken JSON (cut, or junk after it) too.
        assert_eq!(
            body_snippet(br#"{"data":{"name":"\"Wang\"","phone":"1391"#, 200),
            r#"{"data":{"name":"…","phone":"…""#
        );
        assert_eq!(
            body_snippet(br#"{"status":200} <!-- at 13912345678 -->"#, 200),
            r#"{"status":200}<!--at#-->"#
        );
    }

    #[test]
    fn values_are_taken_out_of_error_messages() {
        assert_eq!(
            without_values(
                r#"invalid type: string "王秀英 \"A\" 1391", expected struct MemberCard"#
            ),
            r#"invalid type: string "…", expected struct MemberCard"#
        );
        assert_eq!(
            without_values("invalid type: integer `13912345678`, expected a string"),
            "invalid type: integer `#`, expected a string"
        );
        assert_eq!(
            without_values("missing field `balance` at line 1"),
            "missing field `balance` at line 1"
        );
        assert_eq!(without_values(r#"cut "off"#), r#"cut "…"#);
    }

    #[test]
    fn other_bodies_are_shown_with_long_digit_runs_masked() {
        assert_eq!(
            body_snippet(
                b"<html>Proxy login\n for 13912345678, ID 11010119900307123x</html>",
                200
            ),
            "<html>Proxy login  for #, ID #</html>"
        );
        assert_eq!(
            body_snippet(b"Error 502 at 12:30", 200),
            "Error 502 at 12:30"
        );
        assert_eq!(body_snippet("é".repeat(10).as_bytes(), 4), "éééé…");
        assert_eq!(body_snippet(b"", 4), "");
    }

    #[test]
    fn phone_and_id_are_masked_as_documented() {
        assert_eq!(Pii::<Phone>::new("13812345678").to_string(), "138****5678");
        assert_eq!(
            Pii::<IdCard>::new("110101199003071234").to_string(),
            "1****************4"
        );
        assert_eq!(Pii::<Phone>::new("12345").to_string(), "*****");
        assert_eq!(Pii::<Name>::new("张三").to_string(), "**");
        assert_eq!(
            format!("{:?}", Pii::<Address>::new("北京市朝阳区")),
            "\"***\""
        );
    }

    #[test]
    fn serialization_keeps_the_real_value() {
        let p = Pii::<Phone>::new("13812345678");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"13812345678\"");
        let back: Pii<Phone> = serde_json::from_str("\"13812345678\"").unwrap();
        assert_eq!(back.expose(), "13812345678");
    }
}
