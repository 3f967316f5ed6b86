//! The HID POS backend, fed real reports through a `SOCK_SEQPACKET` socketpair (which keeps
//! report boundaries as hidraw does) into the live `HidPosScanner`: its open, lock, read,
//! descriptor parsing, reassembly and rejection paths are the ones a scanner on
//! `/dev/hidraw*` takes; only the descriptor comes from the test, since a socket has none.
//!
//! The reports are synthetic: no scanner was attached. Each layout is built from the HID Usage
//! Tables' Bar Code Scanner page (0x8C) as a maker documents it:
//! - Honeywell: the report descriptor its scanner firmware declares for USB HID POS (report
//!   2: Byte Count, Symbology Identifier 1-3 carrying the AIM id, 56 bytes of Decoded Data,
//!   two vendor bytes, eight Decode Data Continued bits);
//! - Access-IS (LSR118 / ATR110 manuals, "HID reports"): report 2, length, `]` and two AIM
//!   characters, 56 data bytes, a further symbology id, a reserved byte, bit 0 of the last
//!   byte "data continued"; the descriptor describes that byte layout with the same usages;
//! - a minimal layout with the Usage Tables' Decoded Data and Decode Data Continued only: no
//!   report ID, no byte count (the data is NUL padded), no symbology, the flag first.

mod common;

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::event_line;
use wxcard_hal::scanner::{
    ErrorKind, FrameConfig, ScanSource, ScannerEvent,
    hidpos::{FdOpener, HidPosConfig, HidPosScanner},
};

/// Honeywell's HID POS report descriptor (scanned data report 2, trigger output report 4).
const HONEYWELL: &[u8] = &[
    0x05, 0x8c, // Usage Page (Bar Code Scanner)
    0x09, 0x02, // Usage (Bar Code Scanner)
    0xa1, 0x01, // Collection (Application)
    0x09, 0x12, //   Usage (Scanned Data Report)
    0xa1, 0x02, //   Collection (Logical)
    0x85, 0x02, //     Report ID (2)
    0x15, 0x00, //     Logical Minimum (0)
    0x26, 0xff, 0x00, // Logical Maximum (255)
    0x75, 0x08, //     Report Size (8)
    0x95, 0x01, //     Report Count (1)
    0x05, 0x01, //     Usage Page (Generic Desktop)
    0x09, 0x3b, //     Usage (Byte Count)
    0x81, 0x02, //     Input (Data, Var, Abs)
    0x95, 0x03, //     Report Count (3)
    0x05, 0x8c, //     Usage Page (Bar Code Scanner)
    0x09, 0xfb, //     Usage (Symbology Identifier 1)
    0x09, 0xfc, //     Usage (Symbology Identifier 2)
    0x09, 0xfd, //     Usage (Symbology Identifier 3)
    0x81, 0x02, //     Input (Data, Var, Abs)
    0x95, 0x38, //     Report Count (56)
    0x09, 0xfe, //     Usage (Decoded Data)
    0x82, 0x02, 0x01, // Input (Data, Var, Abs, Buffered Bytes)
    0x06, 0x66, 0xff, // Usage Page (vendor 0xFF66)
    0x95, 0x02, //     Report Count (2)
    0x09, 0x04, //     Usage (vendor: code id)
    0x09, 0x00, //     Usage (undefined)
    0x81, 0x02, //     Input (Data, Var, Abs)
    0x05, 0x8c, //     Usage Page (Bar Code Scanner)
    0x25, 0x01, //     Logical Maximum (1)
    0x75, 0x01, //     Report Size (1)
    0x95, 0x08, //     Report Count (8)
    0x09, 0xff, //     Usage (Decode Data Continued)
    0x81, 0x02, //     Input (Data, Var, Abs)
    0xc0, //   End Collection
    0x09, 0x14, //   Usage (Trigger Report)
    0xa1, 0x02, //   Collection (Logical)
    0x85, 0x04, //     Report ID (4)
    0x75, 0x01, //     Report Size (1)
    0x95, 0x08, //     Report Count (8)
    0x09, 0x5f, //     Usage (Prevent Read of Barcodes)
    0x09, 0x60, //     Usage (Initiate Barcode Read)
    0x91, 0x02, //     Output (Data, Var, Abs)
    0xc0, //   End Collection
    0xc0, // End Collection
];

/// Access-IS's documented 64-byte report, described with the Usage Tables' usages.
const ACCESS_IS: &[u8] = &[
    0x05, 0x8c, 0x09, 0x02, 0xa1, 0x01, // Bar Code Scanner application
    0x09, 0x12, 0xa1, 0x02, // Scanned Data Report
    0x85, 0x02, // Report ID (2)
    0x15, 0x00, 0x26, 0xff, 0x00, 0x75, 0x08, // 8-bit fields 0..255
    0x95, 0x01, 0x05, 0x01, 0x09, 0x3b, 0x81, 0x02, // Byte Count
    0x95, 0x03, 0x05, 0x8c, 0x09, 0xfb, 0x09, 0xfc, 0x09, 0xfd, 0x81, 0x02, // Symbology 1-3
    0x95, 0x38, 0x09, 0xfe, 0x82, 0x02, 0x01, // Decoded Data (56)
    0x06, 0x00, 0xff, 0x95, 0x01, 0x09, 0x01, 0x81, 0x02, // further symbology id (vendor)
    0x95, 0x01, 0x81, 0x03, // reserved (constant)
    0x05, 0x8c, 0x25, 0x01, 0x75, 0x01, 0x95, 0x01, 0x09, 0xff, 0x81, 0x02, // Continued
    0x75, 0x07, 0x81, 0x03, // padding
    0xc0, 0xc0,
];

/// Decoded Data and Decode Data Continued only, unnumbered.
const MINIMAL: &[u8] = &[
    0x05, 0x8c, 0x09, 0x02, 0xa1, 0x01, // Bar Code Scanner application
    0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x01, 0x09, 0xff, 0x81, 0x02, // Continued
    0x75, 0x07, 0x81, 0x03, // padding
    0x26, 0xff, 0x00, 0x75, 0x08, 0x95, 0x3f, 0x09, 0xfe, 0x81, 0x02, // Decoded Data (63)
    0xc0,
];

struct Layout {
    name: &'static str,
    descriptor: &'static [u8],
    capacity: usize,
    report: fn(aim: &[u8; 3], data: &[u8], continued: bool) -> Vec<u8>,
}

fn padded(data: &[u8], len: usize) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(len, 0);
    v
}

fn honeywell(aim: &[u8; 3], data: &[u8], continued: bool) -> Vec<u8> {
    let mut r = vec![0x02, data.len() as u8];
    r.extend_from_slice(aim);
    r.extend(padded(data, 56));
    // Honeywell's own code id ('j' Code 128 here) and the continued bits.
    r.extend([b'j', 0, u8::from(continued)]);
    r
}

fn access_is(aim: &[u8; 3], data: &[u8], continued: bool) -> Vec<u8> {
    let mut r = vec![0x02, data.len() as u8];
    r.extend_from_slice(aim);
    r.extend(padded(data, 56));
    r.extend([b's', 0, u8::from(continued)]);
    r
}

fn minimal(_aim: &[u8; 3], data: &[u8], continued: bool) -> Vec<u8> {
    let mut r = vec![u8::from(continued)];
    r.extend(padded(data, 63));
    r
}

const LAYOUTS: [Layout; 3] = [
    Layout {
        name: "honeywell",
        descriptor: HONEYWELL,
        capacity: 56,
        report: honeywell,
    },
    Layout {
        name: "access-is",
        descriptor: ACCESS_IS,
        capacity: 56,
        report: access_is,
    },
    Layout {
        name: "minimal",
        descriptor: MINIMAL,
        capacity: 63,
        report: minimal,
    },
];

/// A code as the scanner splits it: full reports with Continued set, then the rest.
fn reports(layout: &Layout, aim: &[u8; 3], code: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = code.chunks(layout.capacity).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| (layout.report)(aim, c, i + 1 < chunks.len()))
        .collect()
}

fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills `fds` with two new descriptors we then own.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// The scanner side of the socket, handed out once, as a device node that is then unplugged.
fn once(fd: OwnedFd) -> FdOpener {
    let slot = Mutex::new(Some(fd));
    Arc::new(move |_path: &str| {
        slot.lock()
            .unwrap()
            .take()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    })
}

fn send(fd: &OwnedFd, report: &[u8]) {
    // SAFETY: `report` is valid for its length; `fd` is an open socket.
    let n = unsafe { libc::send(fd.as_raw_fd(), report.as_ptr().cast(), report.len(), 0) };
    assert_eq!(
        n,
        report.len() as isize,
        "send: {}",
        io::Error::last_os_error()
    );
}

fn scanner(layout: &Layout, opener: FdOpener) -> HidPosScanner {
    HidPosScanner::with_opener(
        layout.name,
        &HidPosConfig::new("/dev/wxcard/hidpos-test"),
        &FrameConfig::default(),
        Duration::ZERO,
        opener,
        Some(layout.descriptor.to_vec()),
    )
    .expect("scanner")
}

async fn next(scanner: &mut HidPosScanner) -> ScannerEvent {
    tokio::time::timeout(Duration::from_secs(10), scanner.next_event())
        .await
        .expect("an event within 10 s")
        .expect("the source goes on")
}

async fn lines(scanner: &mut HidPosScanner, want: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < want {
        out.extend(event_line(&next(scanner).await));
    }
    out
}

/// 100 bytes: longer than one report of every layout.
const LONG: &str = "https://wx.example.com/card/member?code=881234567890123456&store=0042&sign=0123456789abcdef012345678";

#[tokio::test]
async fn three_layouts_replayed_through_a_seqpacket_socket() {
    assert_eq!(LONG.len(), 100);
    for layout in &LAYOUTS {
        let (ours, theirs) = seqpacket_pair();
        let mut scanner = scanner(layout, once(theirs));
        assert!(
            matches!(next(&mut scanner).await, ScannerEvent::Connected),
            "{}",
            layout.name
        );
        let has_aim = layout.name != "minimal";
        let mut expected = Vec::new();
        let aim_line = |id: &str| if has_aim { id.to_owned() } else { "-".into() };
        // A short code with its symbology.
        for r in reports(layout, b"]Q1", b"123456789012") {
            send(&ours, &r);
        }
        expected.push(format!("scan {} 123456789012", aim_line("]Q1")));
        // A code split across reports.
        for r in reports(layout, b"]Q1", LONG.as_bytes()) {
            send(&ours, &r);
        }
        expected.push(format!("scan {} {LONG}", aim_line("]Q1")));
        // Symbology not sent (AIM ids off): zeros in the identifier fields.
        for r in reports(layout, &[0, 0, 0], b"VIP0042") {
            send(&ours, &r);
        }
        expected.push("scan - VIP0042".into());
        // A suffix CR left on in the scanner's settings is not part of the code.
        for r in reports(layout, b"]C0", b"M-2024-0001\r") {
            send(&ours, &r);
        }
        expected.push(format!("scan {} M-2024-0001", aim_line("]C0")));
        // Garbage: too short for the descriptor's fields (and, where reports are
        // numbered, an ID the descriptor does not have).
        send(&ours, &[0x02, 0x05, b'x']);
        if has_aim {
            expected.push("rejected bad HID POS report: report of 2 bytes is shorter than the 63 its descriptor gives".into());
            send(&ours, &[0x09; 64]);
            expected.push(
                "rejected bad HID POS report: report ID 9 is not an input report of the descriptor"
                    .into(),
            );
        } else {
            expected.push(
                "rejected bad HID POS report: report of 3 bytes is shorter than the 64 its descriptor gives"
                    .into(),
            );
        }
        // A control character inside the data.
        send(&ours, &(layout.report)(b"]Q1", b"12\x1b34", false));
        expected.push("rejected control character 0x1b at byte 2 of the code".into());
        // A code cut by garbage: the part before is not passed off as a whole code.
        let long = reports(layout, b"]Q1", LONG.as_bytes());
        send(&ours, &long[0]);
        send(&ours, &[0x02]);
        expected.push(format!(
            "rejected frame of {} bytes cut short before its terminator",
            layout.capacity
        ));
        expected.push(if has_aim {
            "rejected bad HID POS report: empty report".into()
        } else {
            "rejected bad HID POS report: report of 1 bytes is shorter than the 64 its descriptor gives".into()
        });
        // And the scanner goes on.
        for r in reports(layout, b"]E0", b"6901234567892") {
            send(&ours, &r);
        }
        expected.push(format!("scan {} 6901234567892", aim_line("]E0")));
        assert_eq!(
            lines(&mut scanner, expected.len()).await,
            expected,
            "{}",
            layout.name
        );
        // Unplugged mid-code: the part is reported cut short, then the disconnection.
        send(&ours, &long[0]);
        drop(ours);
        assert_eq!(
            event_line(&next(&mut scanner).await).as_deref(),
            Some(
                format!(
                    "rejected frame of {} bytes cut short before its terminator",
                    layout.capacity
                )
                .as_str()
            ),
            "{}",
            layout.name
        );
        let gone = next(&mut scanner).await;
        assert!(
            matches!(&gone, ScannerEvent::Disconnected { error } if error.kind() == ErrorKind::Gone),
            "{}: {gone:?}",
            layout.name
        );
    }
}

#[tokio::test]
async fn byte_count_larger_than_the_data_field_is_rejected() {
    let (ours, theirs) = seqpacket_pair();
    let layout = &LAYOUTS[0];
    let mut scanner = scanner(layout, once(theirs));
    assert!(matches!(next(&mut scanner).await, ScannerEvent::Connected));
    let mut bad = honeywell(b"]Q1", b"123", false);
    bad[1] = 200;
    send(&ours, &bad);
    send(&ours, &honeywell(b"]Q1", b"123", false));
    assert_eq!(
        lines(&mut scanner, 2).await,
        [
            "rejected bad HID POS report: byte count 200 is larger than the 56-byte data field",
            "scan ]Q1 123"
        ]
    );
}

#[tokio::test]
async fn a_second_scanner_on_the_same_node_is_refused_as_in_use() {
    // A FIFO stands in for the node: each open is a new open file description, as two
    // processes opening /dev/hidraw0 get, and tokio can poll it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hidraw0").to_str().unwrap().to_owned();
    let c_path = std::ffi::CString::new(path.clone()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let open: FdOpener = Arc::new(|path: &str| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map(OwnedFd::from)
    });
    let config = HidPosConfig::new(&path);
    let make = || {
        HidPosScanner::with_opener(
            "t",
            &config,
            &FrameConfig::default(),
            Duration::ZERO,
            open.clone(),
            Some(HONEYWELL.to_vec()),
        )
        .unwrap()
    };
    let mut first = make();
    assert!(matches!(next(&mut first).await, ScannerEvent::Connected));
    let mut second = make();
    let refused = next(&mut second).await;
    assert!(
        matches!(&refused, ScannerEvent::Disconnected { error } if error.kind() == ErrorKind::InUse),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_node_that_is_not_hidraw_is_a_configuration_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut scanner = HidPosScanner::new(
        "t",
        &HidPosConfig::new(file.path().to_str().unwrap()),
        &FrameConfig::default(),
        Duration::ZERO,
    )
    .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), scanner.next_event())
        .await
        .expect("answer within 10 s")
        .expect_err("a regular file has no report descriptor");
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.to_string().contains("not a hidraw device"), "{error}");
}

#[test]
fn the_kind_is_read_from_the_scanner_config() {
    let config: wxcard_hal::scanner::ScannerConfig = toml::from_str(
        r#"
        name = "pos"
        device = { kind = "hidpos", path = "/dev/wxcard/hidpos-honeywell-19087B4A78" }
        "#,
    )
    .unwrap();
    assert_eq!(
        config.device,
        wxcard_hal::scanner::DeviceConfig::Hidpos(HidPosConfig::new(
            "/dev/wxcard/hidpos-honeywell-19087B4A78"
        ))
    );
    assert!(wxcard_hal::scanner::AnyScanner::from_config(&config).is_ok());
}

mod props {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use wxcard_hal::scanner::{
        Assembler, CODE_CAPACITY, FrameConfig, ScannerEvent, ScannerName, frame::FRAME_CAPACITY,
        hid_descriptor::ReportLayout, hidpos::HidPosDecoder,
    };

    use super::{LAYOUTS, reports};

    /// Reports as hidraw hands them out, one per read: random bytes, a well-formed piece of a
    /// code, or all the reports of a whole code (so that long codes, continuations and their
    /// interruptions are reached, not only garbage).
    fn reads(layout: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80).prop_map(|r| vec![r]),
            (prop::collection::vec(any::<u8>(), 0..70), any::<bool>()).prop_map(
                move |(data, continued)| {
                    let l = &LAYOUTS[layout];
                    vec![(l.report)(
                        b"]Q1",
                        &data[..data.len().min(l.capacity)],
                        continued,
                    )]
                }
            ),
            "[0-9A-Za-z]{1,400}".prop_map(move |code| reports(
                &LAYOUTS[layout],
                b"]C0",
                code.as_bytes()
            )),
        ]
    }

    /// A layout and, for it, batches of reads each after a gap in milliseconds.
    type Session = (usize, Vec<(Vec<Vec<u8>>, u64)>);

    fn sessions() -> impl Strategy<Value = Session> {
        (0..LAYOUTS.len()).prop_flat_map(|layout| {
            (
                Just(layout),
                prop::collection::vec((reads(layout), 0u64..1000), 0..40),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// No report sequence panics, holds more than a frame's worth of bytes, or queues more
        /// than two events per report (a cut code and the bad report that cut it); every code
        /// out is within capacity and free of control characters.
        #[test]
        fn no_report_sequence_panics_or_grows_memory((layout, session) in sessions()) {
            let mut decoder = HidPosDecoder::from_descriptor(LAYOUTS[layout].descriptor).unwrap();
            let name = ScannerName::try_from("prop").unwrap();
            let mut assembler =
                Assembler::new(name, &FrameConfig::default(), Duration::ZERO).unwrap();
            let mut now = Instant::now();
            for (batch, gap_ms) in session {
                now += Duration::from_millis(gap_ms);
                for report in batch {
                    decoder.feed(&report, now, &mut assembler);
                    prop_assert!(decoder.pending_len() <= FRAME_CAPACITY);
                    prop_assert!(assembler.pending() <= 2, "{} events", assembler.pending());
                    while let Some(event) = assembler.pop() {
                        if let ScannerEvent::Scan(scan) = event {
                            prop_assert!(scan.code.len() <= CODE_CAPACITY);
                            prop_assert!(!scan.code.bytes().any(|b| b < 0x20 || b == 0x7f));
                        }
                    }
                }
            }
            decoder.device_lost(&mut assembler);
            prop_assert!(assembler.pending() <= 1);
            prop_assert_eq!(decoder.pending_len(), 0);
        }

        /// Any bytes as a report descriptor: an error or a layout, never a panic.
        #[test]
        fn any_descriptor_parses_or_fails_cleanly(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            report in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            if let Ok(layout) = ReportLayout::parse(&bytes) {
                let _ = layout.decode(&report);
            }
        }

        /// Descriptors mutated from the three real ones (where a parser's edge cases live).
        #[test]
        fn mutated_descriptors_never_panic(
            layout in 0..LAYOUTS.len(),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            report in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut d = LAYOUTS[layout].descriptor.to_vec();
            for (at, byte) in flips {
                let at = at % d.len();
                d[at] = byte;
            }
            if let Ok(layout) = ReportLayout::parse(&d) {
                let _ = layout.decode(&report);
            }
        }
    }
}
