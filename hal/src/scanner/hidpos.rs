//! USB HID POS scanners, read through hidraw (`/dev/hidraw*`).
//!
//! A scanner in HID POS mode (the HID Point of Sale Usage Tables, Bar Code Scanner page 0x8C)
//! sends each code as input reports that carry the decoded bytes and the symbology: no
//! keyboard layout, nothing typed into the window that has focus, no Enter to wait for. Why
//! this backend reads hidraw rather than a vendor library: the kernel hands out the reports
//! as they came, one per read, and the report descriptor that says where each field is.
//!
//! Two parts, so the decoding can be tested from built reports:
//! - [`HidPosDecoder`]: no IO. One report in at a time; the fields are found by the layout
//!   read from the descriptor ([`ReportLayout`]); a code longer than one report (Decode Data
//!   Continued set) is reassembled in a fixed buffer; the finished code goes through the same
//!   checks as every other backend's (control characters, UTF-8, capacity, configured
//!   prefix/suffix) and the three Symbology Identifier bytes become the AIM id the other
//!   backends report. A report that does not fit the descriptor is rejected with the reason,
//!   and spoils a code it interrupts.
//! - The live device: `open` the path (best a `/dev/wxcard/hidpos-...` link), take an
//!   exclusive `flock` as the serial backend does, fetch the report descriptor with
//!   `HIDIOCGRDESCSIZE`/`HIDIOCGRDESC`, and read through tokio's `AsyncFd`. A removed device
//!   fails reads with ENODEV (or reads 0 bytes), and the shared reopen loop takes over.
//!
//! [`HidPosScanner::with_opener`] takes the descriptor from the caller when the opened
//! descriptor is not a hidraw node (a `SOCK_SEQPACKET` socket keeps report boundaries as
//! hidraw does): that is how the tests replay reports into this very backend.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::io::unix::AsyncFd;

use super::{
    Assembler, ErrorKind, FrameConfig, Reject, ScanSource, ScannerError, ScannerEvent, ScannerName,
    Symbology,
    device::{Device, DeviceSource, backoff, default_reopen_initial_ms, default_reopen_max_ms},
    frame::FRAME_CAPACITY,
    hid_descriptor::{self, Decoded, DescriptorError, MAX_DESCRIPTOR, ReportLayout},
    scanner_name,
};

/// A code whose next report (Decode Data Continued) has not come within this long is
/// rejected as cut short. The reports of one code arrive within a few USB polling intervals
/// (1 to 16 ms).
pub const CONTINUATION_TIMEOUT: Duration = Duration::from_millis(500);

/// A HID POS scanner's device settings: `device = { kind = "hidpos", path = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HidPosConfig {
    /// The hidraw node, best a `/dev/wxcard/hidpos-...` link from the udev rules. Required.
    pub path: String,
    /// First delay before reopening a device that went away, in ms. Default 100.
    #[serde(default = "default_reopen_initial_ms")]
    pub reopen_initial_ms: u64,
    /// Longest delay between reopen attempts, in ms. Default 2000.
    #[serde(default = "default_reopen_max_ms")]
    pub reopen_max_ms: u64,
}

impl HidPosConfig {
    /// Settings for `path` with every default.
    pub fn new(path: impl Into<String>) -> Self {
        HidPosConfig {
            path: path.into(),
            reopen_initial_ms: default_reopen_initial_ms(),
            reopen_max_ms: default_reopen_max_ms(),
        }
    }
}

/// Reports of a HID POS scanner in, scans into an [`Assembler`] out. See the module docs.
#[derive(Debug, Clone)]
pub struct HidPosDecoder {
    layout: ReportLayout,
    buf: heapless::Vec<u8, FRAME_CAPACITY>,
    /// Bytes of the current code that did not fit (0: none).
    overflow: usize,
    symbology: Option<Symbology>,
    /// When the last report of an unfinished code arrived (`None`: no code in progress).
    last: Option<Instant>,
}

impl HidPosDecoder {
    /// A decoder for reports as `layout` describes them.
    pub fn new(layout: ReportLayout) -> Self {
        HidPosDecoder {
            layout,
            buf: heapless::Vec::new(),
            overflow: 0,
            symbology: None,
            last: None,
        }
    }

    /// A decoder for the scanner whose report descriptor is `descriptor`.
    pub fn from_descriptor(descriptor: &[u8]) -> Result<Self, DescriptorError> {
        ReportLayout::parse(descriptor).map(Self::new)
    }

    /// Where the fields are, as read from the descriptor.
    pub fn layout(&self) -> &ReportLayout {
        &self.layout
    }

    /// Bytes held for a code in progress (at most [`FRAME_CAPACITY`]).
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Feeds one input report, as one hidraw read returns it, that arrived at `now`.
    pub fn feed(&mut self, report: &[u8], now: Instant, assembler: &mut Assembler) {
        self.poll_idle(now, assembler);
        let piece = match self.layout.decode(report) {
            Ok(Decoded::Scan(piece)) => piece,
            Ok(Decoded::Other) => return,
            Err(fault) => {
                // A code missing a piece must not pass as whole.
                self.cut(assembler);
                assembler.reject(Reject::BadReport(fault));
                return;
            }
        };
        if self.last.is_none() {
            if piece.data.is_empty() && !piece.continued {
                // An empty report between scans carries nothing; some scanners send one.
                return;
            }
            self.symbology = hid_descriptor::aim_symbology(piece.symbology);
        }
        if self.overflow > 0 || self.buf.extend_from_slice(piece.data).is_err() {
            self.overflow = self.overflow.saturating_add(piece.data.len());
        }
        self.last = Some(now);
        if !piece.continued {
            if self.overflow > 0 {
                assembler.reject(Reject::TooLong {
                    len: self.buf.len().saturating_add(self.overflow),
                });
            } else {
                assembler.push_whole(&self.buf, self.symbology, now);
            }
            self.reset();
        }
    }

    /// When a code in progress is given up, if one is.
    pub fn deadline(&self) -> Option<Instant> {
        self.last.map(|last| last + CONTINUATION_TIMEOUT)
    }

    /// Gives up a code in progress whose continuation did not come by `now`.
    pub fn poll_idle(&mut self, now: Instant, assembler: &mut Assembler) {
        if self.deadline().is_some_and(|deadline| now >= deadline) {
            self.cut(assembler);
        }
    }

    /// The device went away: a code in progress is reported cut short.
    pub fn device_lost(&mut self, assembler: &mut Assembler) {
        self.cut(assembler);
    }

    fn cut(&mut self, assembler: &mut Assembler) {
        if self.last.is_some() {
            assembler.reject(Reject::Unterminated {
                len: self.buf.len().saturating_add(self.overflow),
            });
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.overflow = 0;
        self.symbology = None;
        self.last = None;
    }
}

/// The asm-generic ioctl request encoding: direction, size, type, number.
const fn ioc(dir: u64, ty: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}

/// `HIDIOCGRDESCSIZE`: `_IOR('H', 0x01, int)`.
pub const HIDIOCGRDESCSIZE: u64 = ioc(2, b'H', 0x01, std::mem::size_of::<libc::c_int>());
/// `HIDIOCGRDESC`: `_IOR('H', 0x02, struct hidraw_report_descriptor)`.
pub const HIDIOCGRDESC: u64 = ioc(2, b'H', 0x02, std::mem::size_of::<RawDescriptor>());
/// `HIDIOCGRAWINFO`: `_IOR('H', 0x03, struct hidraw_devinfo)`.
pub const HIDIOCGRAWINFO: u64 = ioc(2, b'H', 0x03, std::mem::size_of::<RawInfo>());
/// Buffer for the device name.
const NAME_LEN: usize = 128;
/// `HIDIOCGRAWNAME(len)`: `_IOC(_IOC_READ, 'H', 0x04, len)`.
pub const HIDIOCGRAWNAME: u64 = ioc(2, b'H', 0x04, NAME_LEN);

/// `struct hidraw_report_descriptor`.
#[repr(C)]
struct RawDescriptor {
    size: u32,
    value: [u8; MAX_DESCRIPTOR],
}

/// `struct hidraw_devinfo`.
#[repr(C)]
#[derive(Default)]
struct RawInfo {
    bustype: u32,
    vendor: i16,
    product: i16,
}

/// Opens a device path; the live backend's is `open(2)`.
pub type FdOpener = Arc<dyn Fn(&str) -> io::Result<OwnedFd> + Send + Sync>;

fn open_path(path: &str) -> io::Result<OwnedFd> {
    let c_path = std::ffi::CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string; the flags are plain constants.
    let raw = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The report descriptor, from hidraw; `Ok(None)` when `fd` is not a hidraw node.
fn read_descriptor(fd: &OwnedFd) -> io::Result<Option<Vec<u8>>> {
    let mut size: libc::c_int = 0;
    // SAFETY: HIDIOCGRDESCSIZE writes one int to `size`; `fd` is open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), HIDIOCGRDESCSIZE as _, &mut size) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTTY | libc::EINVAL) => Ok(None),
            _ => Err(e),
        };
    }
    let mut raw = Box::new(RawDescriptor {
        size: u32::try_from(size).unwrap_or(0).min(MAX_DESCRIPTOR as u32),
        value: [0; MAX_DESCRIPTOR],
    });
    // SAFETY: HIDIOCGRDESC reads `size` and writes at most that many bytes into `value`,
    // which holds MAX_DESCRIPTOR (the kernel's limit); `fd` is open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), HIDIOCGRDESC as _, &mut *raw) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = (raw.size as usize).min(MAX_DESCRIPTOR);
    Ok(Some(raw.value[..len].to_vec()))
}

/// "usb 0c2e:0b61 Honeywell ...", for the connect log line, so an installer sees which
/// device a path reached.
fn device_info(fd: &OwnedFd) -> Option<String> {
    let mut info = RawInfo::default();
    // SAFETY: HIDIOCGRAWINFO writes one `struct hidraw_devinfo`; `fd` is open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), HIDIOCGRAWINFO as _, &mut info) };
    if rc < 0 {
        return None;
    }
    let mut name = [0u8; NAME_LEN];
    // SAFETY: HIDIOCGRAWNAME writes at most NAME_LEN bytes into `name`; `fd` is open.
    let n = unsafe { libc::ioctl(fd.as_raw_fd(), HIDIOCGRAWNAME as _, name.as_mut_ptr()) };
    let n = usize::try_from(n).unwrap_or(0).min(NAME_LEN);
    let text = name[..n].split(|&b| b == 0).next().unwrap_or_default();
    let bus = match info.bustype {
        3 => "usb",
        5 => "bluetooth",
        _ => "bus",
    };
    Some(format!(
        "{bus} {:04x}:{:04x} {}",
        info.vendor as u16,
        info.product as u16,
        String::from_utf8_lossy(text)
    ))
}

struct HidrawDevice {
    fd: AsyncFd<OwnedFd>,
    what: String,
    /// Boxed: its fixed buffers would make every configured scanner as large.
    decoder: Box<HidPosDecoder>,
}

fn open_device(
    path: &str,
    opener: &FdOpener,
    fallback: Option<&[u8]>,
) -> Result<HidrawDevice, ScannerError> {
    let fail = |message: String, kind| ScannerError::Open {
        path: path.to_owned(),
        message: format!("{message}{}", super::open_hint(kind, path, "input")),
        kind,
    };
    let io_fail = |what: &str, e: io::Error| {
        let kind = if e.kind() == io::ErrorKind::InvalidInput {
            ErrorKind::Config
        } else {
            super::io_kind(&e)
        };
        fail(format!("{what}{e}"), kind)
    };
    let fd = opener(path).map_err(|e| io_fail("", e))?;
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io_fail("fcntl: ", io::Error::last_os_error()));
        }
    }
    // Exclusive use, as the serial backend: a second process, or a second [[scanner]] naming
    // the same node by another link, fails here instead of stealing every other report.
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
        let e = io::Error::last_os_error();
        let kind = match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => ErrorKind::InUse,
            _ => super::io_kind(&e),
        };
        return Err(fail(format!("locking it failed: {e}"), kind));
    }
    let descriptor = match read_descriptor(&fd) {
        Ok(Some(descriptor)) => descriptor,
        Ok(None) => match fallback {
            Some(descriptor) => descriptor.to_vec(),
            // A tty or input device named by mistake: retrying will not help.
            None => {
                return Err(fail(
                    "not a hidraw device (no report descriptor)".into(),
                    ErrorKind::Config,
                ));
            }
        },
        Err(e) => return Err(io_fail("reading its report descriptor failed: ", e)),
    };
    // A scanner still in keyboard mode has no HID POS usages; it is retried, since scanning
    // the HID POS programming code re-enumerates it under the same udev link.
    let decoder = HidPosDecoder::from_descriptor(&descriptor)
        .map_err(|e| fail(e.to_string(), ErrorKind::Other))?;
    let what = match device_info(&fd) {
        Some(info) => format!("{info}; {}", decoder.layout()),
        None => decoder.layout().to_string(),
    };
    // SAFETY: an `OwnedFd` keeps its descriptor open, unchanged, until the `AsyncFd` drops it.
    let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| io_fail("registering with tokio failed: ", e.into_parts().1))?;
    Ok(HidrawDevice {
        fd,
        what,
        decoder: Box::new(decoder),
    })
}

impl Device for HidrawDevice {
    fn describe(&self) -> Option<String> {
        Some(self.what.clone())
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let read = guard.try_io(|fd| {
                // One read, one report: hidraw (and a SOCK_SEQPACKET socket) never merges two.
                // SAFETY: `buf` is valid for `buf.len()` bytes of writes; the fd is open.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    fn feed(&mut self, bytes: &[u8], now: Instant, assembler: &mut Assembler) {
        self.decoder.feed(bytes, now, assembler);
    }

    fn deadline(&self) -> Option<Instant> {
        self.decoder.deadline()
    }

    fn poll_idle(&mut self, now: Instant, assembler: &mut Assembler) {
        self.decoder.poll_idle(now, assembler);
    }

    fn lost(&mut self, assembler: &mut Assembler) {
        self.decoder.device_lost(assembler);
    }
}

/// A HID POS scanner. See the module docs.
pub struct HidPosScanner {
    source: DeviceSource<HidrawDevice>,
}

impl HidPosScanner {
    /// A scanner named `name` on the hidraw node `config` names. Nothing is opened until the
    /// first [`next_event`](ScanSource::next_event). `frame`'s prefix, suffix and terminators
    /// are stripped from the decoded data when the scanner is set to send them.
    pub fn new(
        name: &str,
        config: &HidPosConfig,
        frame: &FrameConfig,
        duplicate_window: Duration,
    ) -> Result<Self, ScannerError> {
        Self::with_opener(
            name,
            config,
            frame,
            duplicate_window,
            Arc::new(open_path),
            None,
        )
    }

    /// As [`new`](Self::new), but `opener` opens the path, and `descriptor` stands in for the
    /// report descriptor when what it opened is not a hidraw node (a socket replaying reports,
    /// in tests).
    pub fn with_opener(
        name: &str,
        config: &HidPosConfig,
        frame: &FrameConfig,
        duplicate_window: Duration,
        opener: FdOpener,
        descriptor: Option<Vec<u8>>,
    ) -> Result<Self, ScannerError> {
        if config.path.is_empty() {
            return Err(ScannerError::Config(
                "hidpos scanner with an empty path".into(),
            ));
        }
        if let Some(d) = &descriptor {
            ReportLayout::parse(d).map_err(|e| ScannerError::Config(e.to_string()))?;
        }
        let assembler = Assembler::new(scanner_name(name)?, frame, duplicate_window)?;
        Ok(HidPosScanner {
            source: DeviceSource::new(
                config.path.clone(),
                Box::new(move |path: &str| open_device(path, &opener, descriptor.as_deref())),
                backoff(config.reopen_initial_ms, config.reopen_max_ms),
                assembler,
            ),
        })
    }
}

impl ScanSource for HidPosScanner {
    fn name(&self) -> &ScannerName {
        self.source.assembler().name()
    }

    async fn next_event(&mut self) -> Result<ScannerEvent, ScannerError> {
        self.source.next_event().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctls_match_the_kernel_header() {
        // linux/hidraw.h as the C macros expand them on x86-64 and arm64.
        assert_eq!(HIDIOCGRDESCSIZE, 0x8004_4801);
        assert_eq!(HIDIOCGRDESC, 0x9004_4802);
        assert_eq!(HIDIOCGRAWINFO, 0x8008_4803);
        assert_eq!(HIDIOCGRAWNAME, 0x8080_4804);
    }
}
