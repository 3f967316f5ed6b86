//! wxcard-hal: devices turned into values, values turned into pixels.
//!
//! - [`scanner`]: sources of scans (serial, USB HID keyboard-wedge, stdin) and the frame
//!   parser they share.
//! - [`display`]: customer displays (framebuffer, terminal, kiosk web page, PNG) and the
//!   screens they show.
//! - [`text`]: the one sanitizer for untrusted strings before a log, a terminal or a screen.
//! - [`web_guard`]: the Host and Origin checks every local HTTP listener applies.
//!
//! **Invariant:** this crate does no network IO to the backend and knows nothing of the
//! wxcard API, HTTP clients or sled.

pub mod display;
pub mod scanner;
pub mod text;
pub mod web_guard;
