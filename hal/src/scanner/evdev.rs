//! USB HID keyboard-wedge scanners, read through evdev (`/dev/input/event*`).
//!
//! Two parts, so the decoding can be tested from recorded bytes:
//! - [`EventDecoder`] and [`Wedge`]: no IO. The kernel's 64-bit `struct input_event` records
//!   (24 bytes: timeval, type, code, value, little-endian) are parsed with nom from bytes in
//!   any chunks, and key presses are typed through the US [`Keyboard`] table into the shared
//!   frame parser; Enter and Tab end a scan.
//! - The live device: `open` the path (best a `/dev/input/by-id/...-event-kbd` symlink), grab
//!   it with `EVIOCGRAB` so scans never type into the POS screen, and read it through tokio's
//!   `AsyncFd`. A removed device fails reads with ENODEV, and the shared reopen loop takes over.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use nom::{
    IResult, Parser,
    number::complete::{le_i32, le_i64, le_u16},
};
use serde::Deserialize;
use tokio::io::unix::AsyncFd;

use super::{
    Assembler, ErrorKind, FrameConfig, Reject, ScanSource, ScannerError, ScannerEvent, ScannerName,
    device::{Device, DeviceSource, backoff, default_reopen_initial_ms, default_reopen_max_ms},
    keymap::{Keyboard, Typed},
    scanner_name,
};

/// Size of `struct input_event` on 64-bit Linux.
pub const EVENT_SIZE: usize = 24;
/// `EV_KEY`: a key press, release or autorepeat.
pub const EV_KEY: u16 = 1;

/// One `struct input_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    /// Kernel timestamp, seconds.
    pub sec: i64,
    /// Kernel timestamp, microseconds.
    pub usec: i64,
    /// Event type (`EV_KEY` = 1, `EV_SYN` = 0, `EV_MSC` = 4).
    pub kind: u16,
    /// Key code for `EV_KEY`.
    pub code: u16,
    /// 1 press, 0 release, 2 autorepeat for `EV_KEY`.
    pub value: i32,
}

impl InputEvent {
    /// The 24 bytes the kernel would send for this event (for captures and tests).
    pub fn to_bytes(&self) -> [u8; EVENT_SIZE] {
        let mut out = [0; EVENT_SIZE];
        out[..8].copy_from_slice(&self.sec.to_le_bytes());
        out[8..16].copy_from_slice(&self.usec.to_le_bytes());
        out[16..18].copy_from_slice(&self.kind.to_le_bytes());
        out[18..20].copy_from_slice(&self.code.to_le_bytes());
        out[20..].copy_from_slice(&self.value.to_le_bytes());
        out
    }
}

fn input_event(input: &[u8]) -> IResult<&[u8], InputEvent> {
    let (input, (sec, usec, kind, code, value)) =
        (le_i64, le_i64, le_u16, le_u16, le_i32).parse(input)?;
    Ok((
        input,
        InputEvent {
            sec,
            usec,
            kind,
            code,
            value,
        },
    ))
}

/// Splits a byte stream into `input_event` records, whatever the chunking.
#[derive(Debug, Clone, Default)]
pub struct EventDecoder {
    partial: heapless::Vec<u8, EVENT_SIZE>,
}

impl EventDecoder {
    /// A decoder at a record boundary.
    pub fn new() -> Self {
        EventDecoder::default()
    }

    /// Feeds bytes; `emit` gets every record they complete.
    pub fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(InputEvent)) {
        if !self.partial.is_empty() {
            let take = (EVENT_SIZE - self.partial.len()).min(bytes.len());
            // Cannot overflow: `take` fills the record at most.
            let _ = self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() < EVENT_SIZE {
                return;
            }
            if let Ok((_, event)) = input_event(&self.partial) {
                emit(event);
            }
            self.partial.clear();
        }
        while bytes.len() >= EVENT_SIZE {
            match input_event(bytes) {
                Ok((rest, event)) => {
                    emit(event);
                    bytes = rest;
                }
                Err(_) => break,
            }
        }
        let _ = self.partial.extend_from_slice(bytes);
    }
}

/// Decoder plus keyboard state: `input_event` bytes in, characters into the frame parser.
#[derive(Debug, Clone, Default)]
pub struct Wedge {
    decoder: EventDecoder,
    keyboard: Keyboard,
}

impl Wedge {
    /// A fresh wedge: no partial record, no modifier held, CapsLock off.
    pub fn new() -> Self {
        Wedge::default()
    }

    /// Feeds raw evdev bytes read at `now` into `assembler`.
    pub fn feed(&mut self, bytes: &[u8], now: Instant, assembler: &mut Assembler) {
        let keyboard = &mut self.keyboard;
        self.decoder.push(bytes, &mut |event| {
            if event.kind != EV_KEY {
                return;
            }
            match keyboard.key(event.code, event.value) {
                Typed::Byte(b) => assembler.push(&[b], now),
                Typed::Nothing => {}
                Typed::Unmapped(code) => assembler.poison(Reject::UnmappedKey { code }, now),
            }
        });
    }
}

/// A keyboard-wedge scanner's device settings: `device = { kind = "evdev", path = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvdevConfig {
    /// The event device, best a `/dev/input/by-id/...-event-kbd` symlink. Required.
    pub path: String,
    /// Grab the device (EVIOCGRAB) so its keys reach nothing else. Default `true`; turning it
    /// off lets scans type into whatever window has focus.
    #[serde(default = "default_grab")]
    pub grab: bool,
    /// First delay before reopening a device that went away, in ms. Default 100.
    #[serde(default = "default_reopen_initial_ms")]
    pub reopen_initial_ms: u64,
    /// Longest delay between reopen attempts, in ms. Default 2000.
    #[serde(default = "default_reopen_max_ms")]
    pub reopen_max_ms: u64,
}

fn default_grab() -> bool {
    true
}

impl EvdevConfig {
    /// Settings for `path` with every default (grabbed).
    pub fn new(path: impl Into<String>) -> Self {
        EvdevConfig {
            path: path.into(),
            grab: true,
            reopen_initial_ms: default_reopen_initial_ms(),
            reopen_max_ms: default_reopen_max_ms(),
        }
    }
}

/// The asm-generic ioctl request encoding: direction, size, type, number.
const fn ioc(dir: u64, ty: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}

/// `EVIOCGRAB`: `_IOW('E', 0x90, int)`.
pub const EVIOCGRAB: u64 = ioc(1, b'E', 0x90, std::mem::size_of::<libc::c_int>());

/// Buffer for the device name.
const NAME_LEN: usize = 128;

/// `EVIOCGNAME(len)`: `_IOC(_IOC_READ, 'E', 0x06, len)`.
pub const EVIOCGNAME: u64 = ioc(2, b'E', 0x06, NAME_LEN);

/// The device's name as the kernel reports it ("Honeywell Imaging & Mobility 1900"), for
/// the connect log line, so an installer sees which device a path reached.
fn device_name(fd: &OwnedFd) -> Option<String> {
    let mut name = [0u8; NAME_LEN];
    // SAFETY: EVIOCGNAME writes at most NAME_LEN bytes into `name`; `fd` is open.
    let n = unsafe { libc::ioctl(fd.as_raw_fd(), EVIOCGNAME as _, name.as_mut_ptr()) };
    let n = usize::try_from(n).ok()?.min(NAME_LEN);
    let text = name[..n].split(|&b| b == 0).next()?;
    Some(String::from_utf8_lossy(text).into_owned())
}

struct EventDevice {
    fd: AsyncFd<OwnedFd>,
    name: Option<String>,
    wedge: Wedge,
}

fn open_device(path: &str, grab: bool) -> Result<EventDevice, ScannerError> {
    let fail = |message: String, kind| ScannerError::Open {
        path: path.to_owned(),
        message: format!("{message}{}", super::open_hint(kind, path, "input")),
        kind,
    };
    let c_path = std::ffi::CString::new(path)
        .map_err(|_| fail("path contains a NUL byte".into(), ErrorKind::Config))?;
    // SAFETY: `c_path` is a valid NUL-terminated string; the flags are plain constants.
    let raw = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(fail(e.to_string(), super::io_kind(&e)));
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if grab {
        let on: libc::c_int = 1;
        // SAFETY: EVIOCGRAB takes an int argument by value; `fd` is open.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), EVIOCGRAB as _, on) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            let kind = match e.raw_os_error() {
                Some(libc::EBUSY) => ErrorKind::InUse,
                // Not an input device at all: a configuration mistake, retrying will not help.
                Some(libc::ENOTTY | libc::EINVAL) => ErrorKind::Config,
                _ => super::io_kind(&e),
            };
            return Err(fail(format!("EVIOCGRAB failed: {e}"), kind));
        }
    }
    let name = device_name(&fd);
    // SAFETY: an `OwnedFd` keeps its descriptor open, unchanged, until the `AsyncFd` drops it.
    let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| fail(e.into_parts().1.to_string(), ErrorKind::Other))?;
    Ok(EventDevice {
        fd,
        name,
        wedge: Wedge::new(),
    })
}

impl Device for EventDevice {
    fn describe(&self) -> Option<String> {
        self.name.clone()
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let read = guard.try_io(|fd| {
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
        self.wedge.feed(bytes, now, assembler);
    }
}

/// A keyboard-wedge scanner. See the module docs.
pub struct EvdevScanner {
    source: DeviceSource<EventDevice>,
}

impl EvdevScanner {
    /// A scanner named `name` on the event device `config` names. Nothing is opened until the
    /// first [`next_event`](ScanSource::next_event).
    pub fn new(
        name: &str,
        config: &EvdevConfig,
        frame: &FrameConfig,
        duplicate_window: Duration,
    ) -> Result<Self, ScannerError> {
        if config.path.is_empty() {
            return Err(ScannerError::Config(
                "evdev scanner with an empty path".into(),
            ));
        }
        let assembler = Assembler::new(scanner_name(name)?, frame, duplicate_window)?;
        let grab = config.grab;
        Ok(EvdevScanner {
            source: DeviceSource::new(
                config.path.clone(),
                Box::new(move |path: &str| open_device(path, grab)),
                backoff(config.reopen_initial_ms, config.reopen_max_ms),
                assembler,
            ),
        })
    }
}

impl ScanSource for EvdevScanner {
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
    fn eviocgrab_matches_the_kernel_header() {
        // linux/input.h: #define EVIOCGRAB _IOW('E', 0x90, int) == 0x40044590
        assert_eq!(EVIOCGRAB, 0x4004_4590);
        // EVIOCGNAME(128) as the C macro expands it.
        assert_eq!(EVIOCGNAME, 0x8080_4506);
    }

    #[test]
    fn records_survive_any_split() {
        let events: Vec<InputEvent> = (0..5)
            .map(|i| InputEvent {
                sec: 1_700_000_000 + i,
                usec: 999_999,
                kind: EV_KEY,
                code: 30 + i as u16,
                value: (i % 3) as i32,
            })
            .collect();
        let bytes: Vec<u8> = events.iter().flat_map(|e| e.to_bytes()).collect();
        for split in 1..=bytes.len() {
            let mut d = EventDecoder::new();
            let mut out = Vec::new();
            for chunk in bytes.chunks(split) {
                d.push(chunk, &mut |e| out.push(e));
            }
            assert_eq!(out, events, "chunks of {split}");
        }
    }
}
