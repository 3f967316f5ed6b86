//! Replays every capture under `tests/data/scanners/` through the real parser and compares
//! the result with its `.expected` file: in one piece, byte by byte and in odd chunks, and
//! then through the live backend (a pty for serial captures, a FIFO read by the evdev backend
//! for keyboard-wedge ones).

mod common;

use std::{
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

use common::{Capture, Pty, captures, event_line, point_link};
use wxcard_hal::scanner::{
    Assembler, ScanSource, ScannerEvent, ScannerName,
    evdev::{EvdevConfig, EvdevScanner, EventLayout, Wedge},
    serial::{SerialConfig, SerialScanner},
};

const WINDOW: Duration = Duration::from_millis(300);

fn replay(capture: &Capture, chunk: usize) -> Vec<String> {
    let name = ScannerName::try_from("replay").unwrap();
    let mut assembler =
        Assembler::new(name, &capture.settings.frame, WINDOW).expect("frame settings");
    // Capture payloads are 24-byte records (docs/scanners.md), whatever the test machine.
    let mut wedge = Wedge::with_layout(EventLayout::Long64);
    let now = Instant::now();
    let mut lines = Vec::new();
    for piece in capture.payload.chunks(chunk) {
        match capture.settings.interface.as_str() {
            "serial" => assembler.push(piece, now),
            "evdev" => wedge.feed(piece, now, &mut assembler),
            other => panic!("{}: unknown interface {other}", capture.name),
        }
        while let Some(event) = assembler.pop() {
            lines.extend(event_line(&event));
        }
    }
    lines
}

#[test]
fn captures_have_headers_and_replay_to_their_expected_scans() {
    let all = captures();
    assert!(
        all.len() >= 6,
        "expected at least six captures, found {}",
        all.len()
    );
    let mut interfaces = std::collections::BTreeSet::new();
    for capture in &all {
        for field in ["model family:", "interface:", "settings:"] {
            assert!(
                capture.header.iter().any(|line| line.starts_with(field)),
                "{}: header lacks {field:?}",
                capture.name
            );
        }
        assert!(
            !capture.expected.is_empty(),
            "{}: empty expected file",
            capture.name
        );
        interfaces.insert(capture.settings.interface.clone());
        for chunk in [capture.payload.len().max(1), 1, 7, 24, 25, 4096] {
            assert_eq!(
                replay(capture, chunk),
                capture.expected,
                "{} in chunks of {chunk}",
                capture.name
            );
        }
    }
    assert!(interfaces.contains("serial") && interfaces.contains("evdev"));
}

async fn collect(source: &mut impl ScanSource, want: usize) -> Vec<String> {
    let mut lines = Vec::new();
    while lines.len() < want {
        let event = tokio::time::timeout(Duration::from_secs(10), source.next_event())
            .await
            .expect("event within 10 s")
            .expect("source ended");
        lines.extend(event_line(&event));
    }
    lines
}

#[tokio::test]
async fn serial_captures_replay_through_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    for capture in captures()
        .iter()
        .filter(|c| c.settings.interface == "serial")
    {
        let link = dir.path().join(&capture.name);
        let mut pty = Pty::open();
        point_link(&link, &pty.slave);
        let config = SerialConfig::new(link.to_str().unwrap());
        let mut scanner =
            SerialScanner::new("pty", &config, &capture.settings.frame, WINDOW).unwrap();
        let first = scanner.next_event().await.unwrap();
        assert!(
            matches!(first, ScannerEvent::Connected),
            "{}: {first:?}",
            capture.name
        );
        pty.send(&capture.payload);
        assert_eq!(
            collect(&mut scanner, capture.expected.len()).await,
            capture.expected,
            "{}",
            capture.name
        );
    }
}

fn fifo(path: &Path) -> std::fs::File {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: plain libc calls on a path we own. O_RDWR keeps the FIFO open for writing
    // without waiting for a reader.
    unsafe {
        assert_eq!(libc::mkfifo(c_path.as_ptr(), 0o600), 0, "mkfifo");
        let fd = libc::open(c_path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        assert!(fd >= 0, "open fifo");
        std::fs::File::from(OwnedFd::from_raw_fd(fd))
    }
}

#[tokio::test]
async fn evdev_capture_replays_through_the_live_backend() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    for capture in captures()
        .iter()
        .filter(|c| c.settings.interface == "evdev")
    {
        // A FIFO stands in for /dev/input/eventN (no uinput here): the same open, AsyncFd
        // reads and reopen loop, without the grab, which only an input device accepts.
        let path = dir.path().join(&capture.name);
        let mut writer = fifo(&path);
        let mut config = EvdevConfig::new(path.to_str().unwrap());
        config.grab = false;
        let mut scanner =
            EvdevScanner::new("wedge", &config, &capture.settings.frame, WINDOW).unwrap();
        assert!(matches!(
            scanner.next_event().await.unwrap(),
            ScannerEvent::Connected
        ));
        // Odd pieces, so records are split across reads as a slow reader might see them.
        for piece in capture.payload.chunks(1000) {
            writer.write_all(piece).unwrap();
        }
        assert_eq!(
            collect(&mut scanner, capture.expected.len()).await,
            capture.expected,
            "{}",
            capture.name
        );
        drop(writer);
    }
}

#[tokio::test]
async fn evdev_grab_on_something_that_is_not_an_input_device_is_a_config_error() {
    let mut scanner = EvdevScanner::new(
        "wedge",
        &EvdevConfig::new("/dev/null"),
        &Default::default(),
        WINDOW,
    )
    .unwrap();
    let error = scanner
        .next_event()
        .await
        .expect_err("grab on /dev/null must fail for good");
    assert_eq!(
        error.kind(),
        wxcard_hal::scanner::ErrorKind::Config,
        "{error}"
    );
    assert!(error.to_string().contains("EVIOCGRAB"), "{error}");
}

#[tokio::test]
async fn evdev_device_gone_mid_scan_reports_the_cut_scan_then_the_disconnection() {
    use std::io::Write;
    use wxcard_hal::scanner::{ErrorKind, Reject, evdev::InputEvent};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event-kbd");
    let mut writer = fifo(&path);
    let mut config = EvdevConfig::new(path.to_str().unwrap());
    config.grab = false;
    let mut scanner = EvdevScanner::new("wedge", &config, &Default::default(), WINDOW).unwrap();
    assert!(matches!(
        scanner.next_event().await.unwrap(),
        ScannerEvent::Connected
    ));
    // "123" typed, no Enter, then the device disappears (the writer closes: end of file).
    for code in [2u16, 3, 4] {
        for value in [1, 0] {
            let event = InputEvent {
                sec: 0,
                usec: 0,
                kind: 1,
                code,
                value,
            };
            writer.write_all(&event.to_bytes()).unwrap();
        }
    }
    drop(writer);
    match scanner.next_event().await.unwrap() {
        ScannerEvent::Rejected { reason } => assert_eq!(reason, Reject::Unterminated { len: 3 }),
        other => panic!("{other:?}"),
    }
    match scanner.next_event().await.unwrap() {
        ScannerEvent::Disconnected { error } => {
            assert_eq!(error.kind(), ErrorKind::Gone, "{error}")
        }
        other => panic!("{other:?}"),
    }
}
