//! USB HID keyboard-wedge scanners, read through evdev (`/dev/input/event*`).
//!
//! Two parts, so the decoding can be tested from recorded bytes:
//! - [`EventDecoder`] and [`Wedge`]: no IO. The kernel's `struct input_event` records
//!   (timestamp, type, code, value, little-endian) are parsed with nom from bytes in any
//!   chunks, and key presses are typed through the US [`Keyboard`] table into the shared frame
//!   parser; Enter and Tab end a scan. The record's size depends on the platform: its two
//!   timestamp fields are C `long`s, so it is 24 bytes on 64-bit tills (x86_64, arm64) and 16
//!   on 32-bit ones (armhf, i386, also with a 64-bit `time_t`). The layout is taken from the
//!   platform (`libc::input_event`) as [`EventLayout::NATIVE`], and the decoder takes it as a
//!   parameter, so both forms are tested on any machine.
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
    number::complete::{le_i32, le_i64, le_u16, le_u32},
};
use serde::Deserialize;
use tokio::io::unix::AsyncFd;

use super::{
    Assembler, ErrorKind, FrameConfig, Reject, ScanSource, ScannerError, ScannerEvent, ScannerName,
    device::{Device, DeviceSource, backoff, default_reopen_initial_ms, default_reopen_max_ms},
    keymap::{Keyboard, Typed},
    scanner_name,
};

/// The layout of the kernel's `struct input_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLayout {
    /// 32-bit `long` timestamp fields (armhf, i386): 16 bytes.
    Long32,
    /// 64-bit `long` timestamp fields (x86_64, arm64): 24 bytes.
    Long64,
}

impl EventLayout {
    /// This platform's layout, from `libc::input_event`.
    pub const NATIVE: EventLayout = match std::mem::size_of::<libc::input_event>() {
        16 => EventLayout::Long32,
        24 => EventLayout::Long64,
        _ => panic!("struct input_event is neither 16 nor 24 bytes on this platform"),
    };

    /// The record size in bytes.
    pub const fn size(self) -> usize {
        match self {
            EventLayout::Long32 => 16,
            EventLayout::Long64 => 24,
        }
    }
}

/// Size of `struct input_event` on this platform.
pub const EVENT_SIZE: usize = EventLayout::NATIVE.size();
/// The largest record of any layout.
const MAX_EVENT_SIZE: usize = 24;
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
    /// The bytes this platform's kernel would send for this event (for captures and tests).
    pub fn to_bytes(&self) -> [u8; EVENT_SIZE] {
        let mut out = [0; EVENT_SIZE];
        out.copy_from_slice(&self.to_bytes_in(EventLayout::NATIVE));
        out
    }

    /// The bytes a kernel with `layout` would send (timestamps truncated to 32 bits for
    /// [`EventLayout::Long32`], as such a kernel keeps them).
    pub fn to_bytes_in(&self, layout: EventLayout) -> heapless::Vec<u8, MAX_EVENT_SIZE> {
        let mut out = heapless::Vec::new();
        // Cannot overflow: at most 24 bytes go in.
        match layout {
            EventLayout::Long32 => {
                let _ = out.extend_from_slice(&(self.sec as u32).to_le_bytes());
                let _ = out.extend_from_slice(&(self.usec as u32).to_le_bytes());
            }
            EventLayout::Long64 => {
                let _ = out.extend_from_slice(&self.sec.to_le_bytes());
                let _ = out.extend_from_slice(&self.usec.to_le_bytes());
            }
        }
        let _ = out.extend_from_slice(&self.kind.to_le_bytes());
        let _ = out.extend_from_slice(&self.code.to_le_bytes());
        let _ = out.extend_from_slice(&self.value.to_le_bytes());
        out
    }
}

fn input_event(input: &[u8], layout: EventLayout) -> IResult<&[u8], InputEvent> {
    let (input, (sec, usec)) = match layout {
        // The kernel's fields are unsigned longs.
        EventLayout::Long32 => {
            let (input, (sec, usec)) = (le_u32, le_u32).parse(input)?;
            (input, (i64::from(sec), i64::from(usec)))
        }
        EventLayout::Long64 => (le_i64, le_i64).parse(input)?,
    };
    let (input, (kind, code, value)) = (le_u16, le_u16, le_i32).parse(input)?;
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

/// Splits a byte stream into `input_event` records of one layout, whatever the chunking.
#[derive(Debug, Clone)]
pub struct EventDecoder {
    layout: EventLayout,
    partial: heapless::Vec<u8, MAX_EVENT_SIZE>,
}

impl Default for EventDecoder {
    fn default() -> Self {
        EventDecoder::new(EventLayout::NATIVE)
    }
}

impl EventDecoder {
    /// A decoder of `layout` records at a record boundary.
    pub fn new(layout: EventLayout) -> Self {
        EventDecoder {
            layout,
            partial: heapless::Vec::new(),
        }
    }

    /// Feeds bytes; `emit` gets every record they complete.
    pub fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(InputEvent)) {
        let size = self.layout.size();
        if !self.partial.is_empty() {
            let take = (size - self.partial.len()).min(bytes.len());
            // Cannot overflow: `take` fills the record at most.
            let _ = self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() < size {
                return;
            }
            if let Ok((_, event)) = input_event(&self.partial, self.layout) {
                emit(event);
            }
            self.partial.clear();
        }
        while bytes.len() >= size {
            match input_event(bytes, self.layout) {
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
    /// A fresh wedge for this platform's records: no partial record, no modifier held,
    /// CapsLock off.
    pub fn new() -> Self {
        Wedge::default()
    }

    /// A fresh wedge for records of `layout` (tests of another platform's bytes).
    pub fn with_layout(layout: EventLayout) -> Self {
        Wedge {
            decoder: EventDecoder::new(layout),
            keyboard: Keyboard::default(),
        }
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

    fn events() -> Vec<InputEvent> {
        (0..5)
            .map(|i| InputEvent {
                sec: 1_700_000_000 + i,
                usec: 999_999,
                kind: EV_KEY,
                code: 30 + i as u16,
                value: (i % 3) as i32,
            })
            .collect()
    }

    #[test]
    fn records_survive_any_split_in_both_layouts() {
        for layout in [EventLayout::Long32, EventLayout::Long64] {
            let bytes: Vec<u8> = events()
                .iter()
                .flat_map(|e| e.to_bytes_in(layout))
                .collect();
            assert_eq!(bytes.len(), 5 * layout.size());
            for split in 1..=bytes.len() {
                let mut d = EventDecoder::new(layout);
                let mut out = Vec::new();
                for chunk in bytes.chunks(split) {
                    d.push(chunk, &mut |e| out.push(e));
                }
                assert_eq!(out, events(), "{layout:?}, chunks of {split}");
            }
        }
    }

    /// The kernel's bytes, written out by hand as `linux/input.h` lays them out: a 32-bit
    /// till sends 16-byte records, a 64-bit one 24-byte records.
    #[test]
    fn decodes_the_kernels_16_and_24_byte_records() {
        // KEY_1 (2) press, at 1700000000.000123 s.
        let long32: [u8; 16] = [
            0x00, 0xf1, 0x53, 0x65, // tv_sec  (u32 LE 1700000000)
            0x7b, 0x00, 0x00, 0x00, // tv_usec (123)
            0x01, 0x00, // type EV_KEY
            0x02, 0x00, // code KEY_1
            0x01, 0x00, 0x00, 0x00, // value 1 (press)
        ];
        let long64: [u8; 24] = [
            0x00, 0xf1, 0x53, 0x65, 0x00, 0x00, 0x00, 0x00, // tv_sec (i64 LE)
            0x7b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tv_usec
            0x01, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00,
        ];
        let want = InputEvent {
            sec: 1_700_000_000,
            usec: 123,
            kind: EV_KEY,
            code: 2,
            value: 1,
        };
        for (layout, bytes) in [
            (EventLayout::Long32, &long32[..]),
            (EventLayout::Long64, &long64[..]),
        ] {
            let mut out = Vec::new();
            EventDecoder::new(layout).push(bytes, &mut |e| out.push(e));
            assert_eq!(out, vec![want], "{layout:?}");
            assert_eq!(&want.to_bytes_in(layout)[..], bytes, "{layout:?}");
        }
        // Read with the other layout, the same bytes are not this key press: the layout
        // matters, and comes from the platform.
        let mut out = Vec::new();
        EventDecoder::new(EventLayout::Long64).push(&long32, &mut |e| out.push(e));
        assert_ne!(out, vec![want]);
    }

    #[test]
    fn the_native_layout_is_the_platforms() {
        assert_eq!(
            EventLayout::NATIVE.size(),
            std::mem::size_of::<libc::input_event>()
        );
        assert_eq!(EVENT_SIZE, EventLayout::NATIVE.size());
    }
}
