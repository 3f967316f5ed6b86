//! What a scanner's raw bytes say about its settings, given the code it was asked to scan.
//!
//! The setup code is known, so everything around it in a burst of bytes is framing: an STX
//! before, the prefix, an AIM id (`]Q1`) right before the code, the suffix after it, then the
//! terminator bytes (CR, LF, CRLF, TAB, ETX, EOT). The order is the one `hal`'s frame parser
//! expects (hal/src/scanner/frame.rs), so the result maps one to one onto `[scanner.frame]`.
//! No IO here: the unit tests feed bytes.

use wxcard_hal::scanner::frame::{AFFIX_CAPACITY, Terminator};

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const EOT: u8 = 0x04;
const TAB: u8 = b'\t';
const LF: u8 = b'\n';
const CR: u8 = b'\r';

/// Idle timeout written for a scanner that sends no terminator at all, in ms.
pub const IDLE_WHEN_UNTERMINATED_MS: u64 = 100;

/// The framing a scanner uses, as seen around the setup code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    /// An STX byte starts each frame.
    pub stx: bool,
    /// Text before the code (and before the AIM id).
    pub prefix: String,
    /// The AIM id the scanner sent (`]Q1`), when AIM ids are on.
    pub aim: Option<String>,
    /// Text after the code.
    pub suffix: String,
    /// The bytes that ended the frame, in order; empty when none came.
    pub terminators: Vec<Terminator>,
}

impl Framing {
    /// The idle timeout the frame needs: only when nothing terminates it.
    pub fn idle_timeout_ms(&self) -> u64 {
        if self.terminators.is_empty() {
            IDLE_WHEN_UNTERMINATED_MS
        } else {
            0
        }
    }
}

/// What one burst of bytes was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Burst {
    /// The setup code, with the framing around it.
    Found(Framing),
    /// Readable text that is not the setup code (another barcode was scanned).
    OtherCode,
    /// Bytes that are not text: a wrong baud rate, or line noise.
    Garbage,
    /// The setup code, but with framing no `[scanner.frame]` can express.
    Unusable(String),
}

fn is_text(b: u8) -> bool {
    b >= 0x20 && b != 0x7f
}

fn is_terminator(b: u8) -> bool {
    matches!(b, ETX | EOT | TAB | LF | CR)
}

/// Examines one burst of bytes a candidate sent while the setup code was being scanned.
pub fn examine(burst: &[u8], code: &str) -> Burst {
    let code = code.as_bytes();
    let Some(at) = burst.windows(code.len()).position(|w| w == code) else {
        let clean = std::str::from_utf8(burst).is_ok()
            && burst
                .iter()
                .all(|&b| is_text(b) || b == STX || is_terminator(b));
        return if clean && !burst.is_empty() {
            Burst::OtherCode
        } else {
            Burst::Garbage
        };
    };
    let before = &burst[..at];
    let (before, aim) = match before {
        [rest @ .., b']', letter, modifier]
            if letter.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric() =>
        {
            let id = format!("]{}{}", char::from(*letter), char::from(*modifier));
            (rest, Some(id))
        }
        _ => (before, None),
    };
    let text_start = before
        .iter()
        .rposition(|&b| !is_text(b))
        .map_or(0, |i| i + 1);
    let prefix = &before[text_start..];
    let stx = text_start > 0 && before[text_start - 1] == STX;

    let after = &burst[at + code.len()..];
    let suffix_len = after
        .iter()
        .position(|&b| !is_text(b))
        .unwrap_or(after.len());
    let suffix = &after[..suffix_len];
    let mut tail = &after[suffix_len..];
    let mut terminators = Vec::new();
    while let Some((&b, rest)) = tail.split_first() {
        let (t, rest) = match (b, rest.first()) {
            (CR, Some(&LF)) => (Terminator::Crlf, &rest[1..]),
            (CR, _) => (Terminator::Cr, rest),
            (LF, _) => (Terminator::Lf, rest),
            (TAB, _) => (Terminator::Tab, rest),
            (ETX, _) => (Terminator::Etx, rest),
            (EOT, _) => (Terminator::Eot, rest),
            // The next frame (or noise) starts: the terminators are complete.
            _ => break,
        };
        if !terminators.contains(&t) {
            terminators.push(t);
        }
        tail = rest;
    }

    let text = |which: &str, bytes: &[u8]| -> Result<String, String> {
        if bytes.len() > AFFIX_CAPACITY {
            return Err(format!(
                "the scanner's {which} is {} bytes, at most {AFFIX_CAPACITY} can be stripped: \
                 shorten it in the scanner's settings",
                bytes.len()
            ));
        }
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("the scanner's {which} is not UTF-8 text"))
    };
    match (text("prefix", prefix), text("suffix", suffix)) {
        (Ok(prefix), Ok(suffix)) => Burst::Found(Framing {
            stx,
            prefix,
            aim,
            suffix,
            terminators,
        }),
        (Err(e), _) | (_, Err(e)) => Burst::Unusable(e),
    }
}

/// The TOML name of a terminator, as `[scanner.frame] terminators` spells it.
pub fn terminator_name(t: Terminator) -> &'static str {
    match t {
        Terminator::Cr => "cr",
        Terminator::Lf => "lf",
        Terminator::Crlf => "crlf",
        Terminator::Tab => "tab",
        Terminator::Etx => "etx",
        Terminator::Eot => "eot",
        Terminator::Space => "space",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "WXSETUP-7K2M9QXA";

    fn found(burst: &[u8]) -> Framing {
        match examine(burst, CODE) {
            Burst::Found(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stx_etx_prefix_and_aim() {
        let f = found(b"\x02SHOP]Q1WXSETUP-7K2M9QXA\x03");
        assert!(f.stx);
        assert_eq!(f.prefix, "SHOP");
        assert_eq!(f.aim.as_deref(), Some("]Q1"));
        assert_eq!(f.suffix, "");
        assert_eq!(f.terminators, vec![Terminator::Etx]);
        assert_eq!(f.idle_timeout_ms(), 0);
    }

    #[test]
    fn plain_crlf_with_suffix_and_next_frame_glued_on() {
        let f = found(b"WXSETUP-7K2M9QXA#END\r\n\x02next");
        assert!(!f.stx);
        assert_eq!(f.prefix, "");
        assert_eq!(f.aim, None);
        assert_eq!(f.suffix, "#END");
        assert_eq!(f.terminators, vec![Terminator::Crlf]);
    }

    #[test]
    fn etx_then_cr_and_tab_and_none() {
        assert_eq!(
            found(b"\x02]Q1WXSETUP-7K2M9QXA\x03\r").terminators,
            vec![Terminator::Etx, Terminator::Cr]
        );
        assert_eq!(
            found(b"WXSETUP-7K2M9QXA\t").terminators,
            vec![Terminator::Tab]
        );
        let none = found(b"WXSETUP-7K2M9QXA");
        assert!(none.terminators.is_empty());
        assert_eq!(none.idle_timeout_ms(), IDLE_WHEN_UNTERMINATED_MS);
    }

    #[test]
    fn garbage_other_codes_and_unusable_framing() {
        assert_eq!(examine(b"\xf0\x80\x1e\xfe\x00x", CODE), Burst::Garbage);
        assert_eq!(examine(b"", CODE), Burst::Garbage);
        assert_eq!(examine(b"]E06901234567892\r", CODE), Burst::OtherCode);
        let long = [b"P".repeat(40), CODE.as_bytes().to_vec(), b"\r".to_vec()].concat();
        assert!(matches!(examine(&long, CODE), Burst::Unusable(_)));
    }
}
