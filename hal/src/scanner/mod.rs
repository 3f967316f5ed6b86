//! Sources of scans: serial scanners, USB HID keyboard-wedge scanners, USB HID POS scanners,
//! stdin.
//!
//! # Layout
//! - [`frame`]: the frame parser every backend shares (nom, fixed memory, no IO).
//! - [`dedupe`]: the same code twice from one scanner within a window is reported once.
//! - [`classify`]: WeChat member card code, merchant card number or other, by config rules.
//! - `serial`, `evdev` (+ `keymap`), `hidpos` (+ [`hid_descriptor`]), `stdin`: one file per
//!   backend, each behind a Cargo feature of the same name. `device` holds the
//!   reopen-with-backoff loop serial, evdev and hidpos share.
//!
//! Every backend implements [`ScanSource`]: an async method that yields the next
//! [`ScannerEvent`] (connected, disconnected, a scan, a rejected frame). A source never ends
//! because its device was unplugged: it reports [`ScannerEvent::Disconnected`] once and reopens
//! the same path with backoff. [`run`] drives a source into a tokio channel until a shutdown
//! future completes, which is how the daemon runs several named scanners at once.

use std::{fmt, future::Future, io, time::Instant};

use tokio::sync::mpsc;

mod assemble;
pub mod classify;
#[cfg(any(
    feature = "serial",
    feature = "evdev",
    feature = "hidpos",
    feature = "stdin"
))]
mod config;
pub mod dedupe;
#[cfg(any(feature = "serial", feature = "evdev", feature = "hidpos"))]
mod device;
#[cfg(feature = "evdev")]
pub mod evdev;
pub mod frame;
pub mod hid_descriptor;
#[cfg(feature = "hidpos")]
pub mod hidpos;
#[cfg(feature = "evdev")]
pub mod keymap;
#[cfg(feature = "serial")]
pub mod serial;
#[cfg(feature = "stdin")]
pub mod stdin;

pub use assemble::Assembler;
pub use classify::{Classifier, ClassifyConfig, CodeKind};
#[cfg(any(
    feature = "serial",
    feature = "evdev",
    feature = "hidpos",
    feature = "stdin"
))]
pub use config::{AnyScanner, DeviceConfig, ScannerConfig};
pub use frame::{CODE_CAPACITY, FrameConfig, FrameParser, Parsed, Reject};

/// A scanned code: at most [`CODE_CAPACITY`] bytes of UTF-8, no control characters.
pub type Code = heapless::String<CODE_CAPACITY>;

/// Longest scanner name, in bytes.
pub const NAME_CAPACITY: usize = 32;

/// A scanner's configured name ("front", "counter-2"): at most [`NAME_CAPACITY`] bytes.
pub type ScannerName = heapless::String<NAME_CAPACITY>;

/// An AIM symbology identifier (ISO/IEC 15424), as `]` + `code` + `modifier`: `]Q1` is a QR
/// code, `]E0` EAN-13, `]C0` Code 128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Symbology {
    /// The symbology letter (`Q`, `E`, `C`, ...): always an ASCII letter.
    pub code: u8,
    /// The modifier character: always an ASCII letter or digit.
    pub modifier: u8,
}

impl Symbology {
    /// The symbology's common name, for the letters scanners at a till send.
    pub fn name(&self) -> &'static str {
        match self.code {
            b'Q' => "QR Code",
            b'E' => "EAN/UPC",
            b'C' => "Code 128",
            b'A' => "Code 39",
            b'I' => "Interleaved 2 of 5",
            b'd' => "Data Matrix",
            b'L' => "PDF417",
            b'e' => "GS1 DataBar",
            b'z' => "Aztec",
            _ => "other",
        }
    }
}

impl fmt::Display for Symbology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "]{}{}", char::from(self.code), char::from(self.modifier))
    }
}

/// One code read by one scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The code, with prefix, AIM identifier and suffix removed.
    pub code: Code,
    /// The symbology, when the scanner sends AIM identifiers.
    pub symbology: Option<Symbology>,
    /// The configured name of the scanner that read it.
    pub scanner: ScannerName,
    /// When the last byte of the code arrived.
    pub at: Instant,
}

/// What a scanner reports.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a scan is moved a few times, never stored in bulk; boxing would allocate per scan"
)]
pub enum ScannerEvent {
    /// The device was opened (at start, or after it came back).
    Connected,
    /// The device went away or could not be opened; the source keeps retrying.
    Disconnected {
        /// Why.
        error: ScannerError,
    },
    /// A code was read.
    Scan(Scan),
    /// A frame was thrown away.
    Rejected {
        /// Why.
        reason: Reject,
    },
}

/// A source of scans. Implementations are cancel-safe: dropping the future returned by
/// [`next_event`](ScanSource::next_event) loses no scan, so it can sit in `tokio::select!`.
pub trait ScanSource: Send {
    /// The scanner's configured name.
    fn name(&self) -> &ScannerName;

    /// The next event. `Err` means the source has ended for good (stdin closed, a
    /// configuration the device refuses); device loss is an event, not an error.
    fn next_event(&mut self) -> impl Future<Output = Result<ScannerEvent, ScannerError>> + Send;
}

/// An event with the name of the scanner it came from, as [`run`] sends it.
#[derive(Debug)]
pub struct ScannerMessage {
    /// The scanner's configured name.
    pub scanner: ScannerName,
    /// What happened.
    pub event: ScannerEvent,
}

/// Drives `source` into `tx` until `shutdown` completes, the receiver is dropped (both
/// `Ok`), or the source ends (its error).
pub async fn run<S: ScanSource>(
    mut source: S,
    tx: mpsc::Sender<ScannerMessage>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ScannerError> {
    let mut shutdown = std::pin::pin!(shutdown);
    while let Some(message) = next_message(&mut source, &mut shutdown).await? {
        if tx.send(message).await.is_err() {
            return Ok(());
        }
        handed_over().await;
    }
    Ok(())
}

/// Like [`run`], handing each event to `handle` in this task, as soon as it is read: no
/// channel and no other task between the read and what the daemon does with it (one task
/// wake-up less per scan: BENCHMARKS.md, "Issue 12", part 8). Ends when `handle` returns false
/// or `shutdown` completes (`Ok`), or the source ends (its error).
pub async fn run_with<S: ScanSource>(
    mut source: S,
    mut handle: impl FnMut(ScannerMessage) -> bool + Send,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ScannerError> {
    let mut shutdown = std::pin::pin!(shutdown);
    while let Some(message) = next_message(&mut source, &mut shutdown).await? {
        if !handle(message) {
            return Ok(());
        }
        handed_over().await;
    }
    Ok(())
}

/// The next event with its scanner's name; `None` once `shutdown` completes.
async fn next_message<S: ScanSource>(
    source: &mut S,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<ScannerMessage>, ScannerError> {
    let event = tokio::select! {
        biased;
        () = shutdown.as_mut() => return Ok(None),
        event = source.next_event() => event?,
    };
    Ok(Some(ScannerMessage {
        scanner: source.name().clone(),
        event,
    }))
}

/// After an event is handed over: lets whoever took it act on it before this task reads
/// again. The next read mostly finds nothing (a syscall, and for a tty a flush of its input
/// worker) and would otherwise come first, ahead of the scan's answer (BENCHMARKS.md, "Issue
/// 12", part 8).
async fn handed_over() {
    tokio::task::yield_now().await;
}

/// What kind of failure a [`ScannerError`] is, so callers can react without knowing the
/// backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The device is not there (unplugged, not yet plugged in, path missing).
    Gone,
    /// Another process holds the device exclusively.
    InUse,
    /// Permission denied opening the device.
    Permission,
    /// The device sent bytes that are not a valid frame.
    BadData,
    /// The input was closed for good (stdin at end of file).
    Closed,
    /// The configuration is invalid.
    Config,
    /// Anything else.
    Other,
}

/// A scanner failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScannerError {
    /// Opening the device failed.
    #[error("cannot open {path}: {message}")]
    Open {
        /// The configured path.
        path: String,
        /// What failed.
        message: String,
        /// The classified kind.
        kind: ErrorKind,
    },
    /// Reading the device failed.
    #[error("reading {path} failed: {source}")]
    Read {
        /// The configured path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The device reported end of file (a hung-up tty, a removed input device).
    #[error("{path} hung up (end of file)")]
    HungUp {
        /// The configured path.
        path: String,
    },
    /// A frame was rejected.
    #[error("bad frame: {0}")]
    Frame(#[from] Reject),
    /// The input ended (stdin closed).
    #[error("input closed")]
    Closed,
    /// The configuration is invalid.
    #[error("invalid scanner configuration: {0}")]
    Config(String),
}

impl ScannerError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ScannerError::Open { kind, .. } => *kind,
            ScannerError::Read { source, .. } => io_kind(source),
            ScannerError::HungUp { .. } => ErrorKind::Gone,
            ScannerError::Frame(_) => ErrorKind::BadData,
            ScannerError::Closed => ErrorKind::Closed,
            ScannerError::Config(_) => ErrorKind::Config,
        }
    }
}

/// Classifies an OS error from opening or reading a device.
pub(crate) fn io_kind(e: &io::Error) -> ErrorKind {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV | libc::EIO | libc::ENOTDIR) => {
            ErrorKind::Gone
        }
        Some(libc::EBUSY | libc::EWOULDBLOCK) => ErrorKind::InUse,
        Some(libc::EACCES | libc::EPERM) => ErrorKind::Permission,
        _ => match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::Gone,
            io::ErrorKind::PermissionDenied => ErrorKind::Permission,
            _ => ErrorKind::Other,
        },
    }
}

/// A hint for the installer, appended to an open error: what usually fixes it.
pub(crate) fn open_hint(kind: ErrorKind, path: &str, group: &str) -> String {
    match kind {
        ErrorKind::Permission => format!(
            " (the daemon's user needs read access: add it to the `{group}` group or grant it \
             with a udev rule)"
        ),
        ErrorKind::InUse => format!(" (another process holds it: see `fuser -v {path}`)"),
        _ => String::new(),
    }
}

/// Parses a scanner name from config, refusing one longer than [`NAME_CAPACITY`].
pub fn scanner_name(name: &str) -> Result<ScannerName, ScannerError> {
    if name.is_empty() {
        return Err(ScannerError::Config("scanner name is empty".into()));
    }
    ScannerName::try_from(name).map_err(|_| {
        ScannerError::Config(format!(
            "scanner name is {} bytes, at most {NAME_CAPACITY} allowed",
            name.len()
        ))
    })
}
