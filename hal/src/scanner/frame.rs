//! The frame parser: bytes as a scanner sends them in, whole codes out.
//!
//! It does no IO and owns a fixed amount of memory ([`FRAME_CAPACITY`] bytes of frame buffer,
//! whatever arrives), so every backend (serial bytes, keys typed by a keyboard-wedge, stdin
//! lines) shares one tested path. Bytes may arrive in any chunks: the parser keeps the partial
//! frame between calls and gives the same frames however the input is split. Time is passed in
//! by the caller (the instant the chunk arrived) so the idle timeout is testable without sleeps.
//!
//! A frame, in the order a configurable scanner emits it: optional STX, prefix (preamble),
//! AIM symbology identifier (`]Q1`), the data, suffix (postamble), optional ETX, terminator.
//! Splitting the stream into frames is a streaming nom parser (`take_till` a terminator);
//! the body of a finished frame is picked apart with complete nom parsers.

use std::time::{Duration, Instant};

use nom::{
    IResult, Parser,
    bytes::complete::tag,
    combinator::{opt, verify},
    number::complete::be_u8,
};
use serde::Deserialize;

use super::{Code, Symbology};

/// Largest code a scan carries, in bytes of UTF-8 (the capacity of [`Code`]).
pub const CODE_CAPACITY: usize = 256;
/// Largest frame kept while it arrives: a code plus room for prefix, AIM id and suffix.
pub const FRAME_CAPACITY: usize = CODE_CAPACITY + 2 * AFFIX_CAPACITY + 3;
/// Largest configured prefix or suffix, in bytes.
pub const AFFIX_CAPACITY: usize = 32;

const STX: u8 = 0x02;

/// A byte that ends a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Terminator {
    /// Carriage return, 0x0D: the most common factory default.
    Cr,
    /// Line feed, 0x0A.
    Lf,
    /// CR followed by LF: both end a frame; the empty frame between them is ignored.
    Crlf,
    /// Horizontal tab, 0x09 (keyboard-wedge scanners set to "Tab" suffix).
    Tab,
    /// End of text, 0x03 (STX/ETX framing).
    Etx,
    /// End of transmission, 0x04.
    Eot,
    /// Space, 0x20.
    Space,
}

impl Terminator {
    fn bytes(self) -> &'static [u8] {
        match self {
            Terminator::Cr => b"\r",
            Terminator::Lf => b"\n",
            Terminator::Crlf => b"\r\n",
            Terminator::Tab => b"\t",
            Terminator::Etx => b"\x03",
            Terminator::Eot => b"\x04",
            Terminator::Space => b" ",
        }
    }
}

/// How a scanner frames its codes. Every field has a default; in TOML this is a scanner's
/// `[scanner.frame]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameConfig {
    /// Bytes that end a frame. Default `["cr", "lf", "tab", "etx"]`, which also covers CRLF.
    pub terminators: Vec<Terminator>,
    /// An STX byte (0x02) starts a new frame, discarding anything before it. Default `true`.
    pub stx: bool,
    /// Preamble the scanner is set to send before the code, stripped when present.
    /// Default empty. At most 32 bytes.
    pub prefix: String,
    /// Postamble the scanner is set to send after the code, stripped when present.
    /// Default empty. At most 32 bytes.
    pub suffix: String,
    /// Recognise and remove an AIM symbology identifier (`]` letter modifier) at the start of
    /// the code and report it. Default `true`.
    pub aim: bool,
    /// End a frame when no byte arrived for this many milliseconds, for scanners that send no
    /// terminator. Default `0` (off).
    pub idle_timeout_ms: u64,
}

impl Default for FrameConfig {
    fn default() -> Self {
        FrameConfig {
            terminators: vec![
                Terminator::Cr,
                Terminator::Lf,
                Terminator::Tab,
                Terminator::Etx,
            ],
            stx: true,
            prefix: String::new(),
            suffix: String::new(),
            aim: true,
            idle_timeout_ms: 0,
        }
    }
}

/// Why a frame was not turned into a scan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    /// Longer than [`CODE_CAPACITY`]; dropped up to its terminator.
    #[error("frame of {len} bytes is longer than the {CODE_CAPACITY}-byte capacity")]
    TooLong {
        /// Bytes received for the frame, including any prefix and suffix.
        len: usize,
    },
    /// A control character inside the code.
    #[error("control character 0x{byte:02x} at byte {offset} of the code")]
    ControlChar {
        /// The offending byte.
        byte: u8,
        /// Its offset in the code (after prefix and AIM id).
        offset: usize,
    },
    /// A character that is no control byte but would still garble a log line, a terminal or
    /// the screen: a C1 control (U+0080 to U+009F), a line or paragraph separator, a bidi
    /// override, a byte-order mark ([`crate::text::is_unsafe`]).
    #[error("unsafe character U+{code:04X} at byte {offset} of the code")]
    UnsafeChar {
        /// The character's code point.
        code: u32,
        /// Its byte offset in the code (after prefix and AIM id).
        offset: usize,
    },
    /// The code is not valid UTF-8.
    #[error("invalid UTF-8 at byte {offset} of the code")]
    InvalidUtf8 {
        /// Offset of the first invalid byte in the code.
        offset: usize,
    },
    /// Nothing left once prefix, AIM id and suffix were removed.
    #[error("no data in the frame once prefix, AIM id and suffix were removed")]
    Empty,
    /// A frame cut short: a new STX arrived, or the device went away mid-frame.
    #[error("frame of {len} bytes cut short before its terminator")]
    Unterminated {
        /// Bytes received before the cut.
        len: usize,
    },
    /// A key with no character in the US keymap (keyboard-wedge scanners).
    #[error("key code {code} has no character in the US keymap")]
    UnmappedKey {
        /// The Linux key code.
        code: u16,
    },
    /// A HID POS report that does not fit its report descriptor.
    #[error("bad HID POS report: {0}")]
    BadReport(#[from] super::hid_descriptor::ReportFault),
}

/// Invalid frame configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameConfigError {
    /// Prefix or suffix longer than [`AFFIX_CAPACITY`].
    #[error("{which} is {len} bytes, at most {AFFIX_CAPACITY} allowed")]
    AffixTooLong {
        /// `"prefix"` or `"suffix"`.
        which: &'static str,
        /// Its length.
        len: usize,
    },
    /// No terminator and no idle timeout: frames would never end.
    #[error("no terminators and no idle timeout: a frame could never end")]
    NeverEnds,
}

/// One frame turned into a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The code, prefix/AIM id/suffix removed.
    pub code: Code,
    /// The AIM symbology identifier, when the scanner sent one.
    pub symbology: Option<Symbology>,
    /// When the last byte of the frame arrived.
    pub at: Instant,
}

/// What the parser makes of a finished frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a scan is moved a few times, never stored in bulk; boxing would allocate per scan"
)]
pub enum Parsed {
    /// A good code.
    Frame(Frame),
    /// A frame thrown away, with the reason.
    Rejected(Reject),
}

/// The streaming frame parser. See the module docs.
#[derive(Debug, Clone)]
pub struct FrameParser {
    special: [bool; 256],
    stx: bool,
    prefix: heapless::Vec<u8, AFFIX_CAPACITY>,
    suffix: heapless::Vec<u8, AFFIX_CAPACITY>,
    aim: bool,
    idle: Option<Duration>,
    buf: heapless::Vec<u8, FRAME_CAPACITY>,
    /// Bytes of the current frame that did not fit (0: none).
    overflow: usize,
    poisoned: Option<Reject>,
    last_byte: Option<Instant>,
}

impl FrameParser {
    /// A parser for frames as `config` describes them.
    pub fn new(config: &FrameConfig) -> Result<Self, FrameConfigError> {
        let affix = |which, s: &str| {
            heapless::Vec::from_slice(s.as_bytes()).map_err(|_| FrameConfigError::AffixTooLong {
                which,
                len: s.len(),
            })
        };
        let mut special = [false; 256];
        for t in &config.terminators {
            for &b in t.bytes() {
                special[usize::from(b)] = true;
            }
        }
        if config.stx {
            special[usize::from(STX)] = true;
        }
        let idle =
            (config.idle_timeout_ms > 0).then(|| Duration::from_millis(config.idle_timeout_ms));
        if config.terminators.is_empty() && idle.is_none() {
            return Err(FrameConfigError::NeverEnds);
        }
        Ok(FrameParser {
            special,
            stx: config.stx,
            prefix: affix("prefix", &config.prefix)?,
            suffix: affix("suffix", &config.suffix)?,
            aim: config.aim,
            idle,
            buf: heapless::Vec::new(),
            overflow: 0,
            poisoned: None,
            last_byte: None,
        })
    }

    /// Feeds bytes that arrived at `now`; `emit` gets every frame they complete, in order.
    pub fn push(&mut self, chunk: &[u8], now: Instant, emit: &mut impl FnMut(Parsed)) {
        if chunk.is_empty() {
            return;
        }
        self.poll_idle(now, emit);
        let mut input = chunk;
        while !input.is_empty() {
            let special = &self.special;
            let split: IResult<&[u8], &[u8]> =
                nom::bytes::streaming::take_till(|b: u8| special[usize::from(b)]).parse(input);
            match split {
                Ok((rest, body)) => {
                    self.append(body);
                    let Some((&mark, after)) = rest.split_first() else {
                        break;
                    };
                    input = after;
                    if self.stx && mark == STX {
                        self.cut(emit);
                    } else {
                        self.finish(now, emit);
                    }
                }
                // No terminator in the rest of the chunk: the frame continues in a later one.
                Err(_) => {
                    self.append(input);
                    break;
                }
            }
        }
        self.last_byte = Some(now);
    }

    /// Marks the frame being received as bad; it is rejected with `reason` when it ends.
    /// Used by the keyboard-wedge backend for keys that have no character.
    pub fn poison(&mut self, reason: Reject, now: Instant) {
        if self.poisoned.is_none() {
            self.poisoned = Some(reason);
        }
        self.last_byte = Some(now);
    }

    /// When the frame in progress ends by idle timeout, if one is configured and a frame is
    /// in progress.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.idle, self.last_byte) {
            (Some(idle), Some(last)) if self.in_frame() => Some(last + idle),
            _ => None,
        }
    }

    /// Ends the frame in progress if the idle timeout has passed by `now`.
    pub fn poll_idle(&mut self, now: Instant, emit: &mut impl FnMut(Parsed)) {
        if let Some(deadline) = self.deadline() {
            if now >= deadline {
                let at = self.last_byte.unwrap_or(now);
                self.finish(at, emit);
            }
        }
    }

    /// Drops a frame in progress (the device went away), reporting it as cut short.
    pub fn abandon(&mut self, emit: &mut impl FnMut(Parsed)) {
        self.cut(emit);
        self.last_byte = None;
    }

    fn in_frame(&self) -> bool {
        !self.buf.is_empty() || self.overflow > 0 || self.poisoned.is_some()
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.overflow > 0 || self.buf.extend_from_slice(bytes).is_err() {
            self.overflow = self.overflow.saturating_add(bytes.len());
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.overflow = 0;
        self.poisoned = None;
    }

    fn cut(&mut self, emit: &mut impl FnMut(Parsed)) {
        if self.in_frame() {
            emit(Parsed::Rejected(Reject::Unterminated {
                len: self.buf.len() + self.overflow,
            }));
        }
        self.reset();
    }

    fn finish(&mut self, at: Instant, emit: &mut impl FnMut(Parsed)) {
        if self.overflow > 0 {
            emit(Parsed::Rejected(Reject::TooLong {
                len: self.buf.len() + self.overflow,
            }));
        } else if let Some(reason) = self.poisoned.take() {
            emit(Parsed::Rejected(reason));
        } else if !self.buf.is_empty() {
            emit(match self.body(&self.buf) {
                Ok((code, symbology)) => Parsed::Frame(Frame {
                    code,
                    symbology,
                    at,
                }),
                Err(reason) => Parsed::Rejected(reason),
            });
        }
        self.reset();
    }

    /// Picks apart a frame that arrived whole, with no terminator needed (a HID POS scan):
    /// a leading STX and trailing terminator bytes (a suffix left on in the scanner's settings)
    /// are dropped, then prefix, AIM id and suffix as for any frame.
    pub(crate) fn whole(&self, frame: &[u8]) -> Result<(Code, Option<Symbology>), Reject> {
        let mut frame = frame;
        if self.stx {
            frame = frame.strip_prefix(&[STX]).unwrap_or(frame);
        }
        while let Some((&last, rest)) = frame.split_last() {
            if last == STX || !self.special[usize::from(last)] {
                break;
            }
            frame = rest;
        }
        if frame.len() > FRAME_CAPACITY {
            return Err(Reject::TooLong { len: frame.len() });
        }
        self.body(frame)
    }

    /// Picks a finished frame apart: prefix, AIM id, data, suffix.
    fn body(&self, frame: &[u8]) -> Result<(Code, Option<Symbology>), Reject> {
        let rest = strip_prefix(frame, &self.prefix);
        let (rest, symbology) = if self.aim {
            match opt(aim_id).parse(rest) {
                Ok(found) => found,
                Err(_) => (rest, None),
            }
        } else {
            (rest, None)
        };
        let data = rest.strip_suffix(&self.suffix[..]).unwrap_or(rest);
        if data.is_empty() {
            return Err(Reject::Empty);
        }
        if let Some(offset) = data.iter().position(|&b| b < 0x20 || b == 0x7f) {
            return Err(Reject::ControlChar {
                byte: data[offset],
                offset,
            });
        }
        let text = std::str::from_utf8(data).map_err(|e| Reject::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        if let Some((offset, c)) = text
            .char_indices()
            .find(|&(_, c)| crate::text::is_unsafe(c))
        {
            return Err(Reject::UnsafeChar {
                code: u32::from(c),
                offset,
            });
        }
        let code = Code::try_from(text).map_err(|_| Reject::TooLong { len: frame.len() })?;
        Ok((code, symbology))
    }
}

fn strip_prefix<'a>(frame: &'a [u8], prefix: &[u8]) -> &'a [u8] {
    if prefix.is_empty() {
        return frame;
    }
    let found: IResult<&[u8], &[u8]> = tag(prefix).parse(frame);
    match found {
        Ok((rest, _)) => rest,
        Err(_) => frame,
    }
}

/// An AIM symbology identifier: `]`, a letter naming the symbology, a modifier character.
fn aim_id(input: &[u8]) -> IResult<&[u8], Symbology> {
    let (input, _) = tag(&b"]"[..]).parse(input)?;
    let (input, code) = verify(be_u8, |c: &u8| c.is_ascii_alphabetic()).parse(input)?;
    let (input, modifier) = verify(be_u8, |m: &u8| m.is_ascii_alphanumeric()).parse(input)?;
    Ok((input, Symbology { code, modifier }))
}
