//! Scanner configuration as the daemon's TOML embeds it, and the line (stdin) source over a
//! real pipe.

use std::{io::Write, time::Duration};

use tokio::io::AsyncWriteExt;
use wxcard_hal::scanner::{
    AnyScanner, DeviceConfig, ErrorKind, FrameConfig, ScanSource, ScannerConfig, ScannerEvent,
    frame::Terminator,
    serial::{FlowControl, Parity},
    stdin::LineScanner,
};

#[derive(serde::Deserialize)]
struct Daemon {
    scanner: Vec<ScannerConfig>,
}

#[test]
fn scanners_from_toml_with_defaults() {
    let daemon: Daemon = toml::from_str(
        r#"
        [[scanner]]
        name = "front"
        device = { kind = "serial", path = "/dev/serial/by-id/usb-Newland-if00", baud = 115200, parity = "even", flow_control = "hardware" }
        duplicate_window_ms = 500
        [scanner.frame]
        terminators = ["crlf"]
        prefix = "DL:"

        [[scanner]]
        name = "wedge"
        device = { kind = "evdev", path = "/dev/input/by-id/usb-Honeywell-event-kbd" }

        [[scanner]]
        name = "keyboard"
        device = { kind = "stdin" }
        "#,
    )
    .unwrap();
    let [front, wedge, keyboard] = &daemon.scanner[..] else {
        panic!("three scanners")
    };
    let DeviceConfig::Serial(serial) = &front.device else {
        panic!("serial")
    };
    assert_eq!(
        (serial.baud, serial.data_bits, serial.stop_bits),
        (115200, 8, 1)
    );
    assert_eq!(
        (serial.parity, serial.flow_control),
        (Parity::Even, FlowControl::Hardware)
    );
    assert_eq!(
        (serial.reopen_initial_ms, serial.reopen_max_ms),
        (100, 2000)
    );
    assert_eq!(front.duplicate_window_ms, 500);
    assert_eq!(front.frame.terminators, [Terminator::Crlf]);
    assert!(front.frame.stx && front.frame.aim);
    let DeviceConfig::Evdev(evdev) = &wedge.device else {
        panic!("evdev")
    };
    assert!(evdev.grab);
    assert_eq!(wedge.duplicate_window_ms, 300);
    assert_eq!(wedge.frame, FrameConfig::default());
    assert_eq!(keyboard.device, DeviceConfig::Stdin);
    for config in &daemon.scanner {
        let scanner = AnyScanner::from_config(config).unwrap();
        assert_eq!(scanner.name().as_str(), config.name);
        // The daemon spawns each scanner's loop on the multi-threaded runtime.
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        assert_send(&wxcard_hal::scanner::run(
            scanner,
            tx,
            std::future::pending(),
        ));
    }
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    for bad in [
        "name = \"a\"\ndevice = { kind = \"serial\", path = \"/dev/x\", baudrate = 9600 }",
        "name = \"a\"\ndevice = { kind = \"serial\" }",
        "name = \"a\"\ndevice = { kind = \"bluetooth\", path = \"/dev/x\" }",
        "name = \"a\"\ndevice = { kind = \"stdin\" }\nwindow = 3",
        "name = \"a\"\ndevice = { kind = \"stdin\" }\n[frame]\nterminators = [\"nul\"]",
    ] {
        assert!(
            toml::from_str::<ScannerConfig>(bad).is_err(),
            "accepted: {bad}"
        );
    }
    for (bad, why) in [
        (
            "name = \"a\"\ndevice = { kind = \"serial\", path = \"/dev/x\", data_bits = 9 }",
            "data_bits",
        ),
        ("name = \"\"\ndevice = { kind = \"stdin\" }", "empty"),
        (
            "name = \"a\"\ndevice = { kind = \"stdin\" }\n[frame]\nterminators = []",
            "never end",
        ),
        (
            &format!(
                "name = \"{}\"\ndevice = {{ kind = \"stdin\" }}",
                "n".repeat(33)
            ),
            "33 bytes",
        ),
    ] {
        let config: ScannerConfig = toml::from_str(bad).unwrap();
        let error = AnyScanner::from_config(&config).err().expect(bad);
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains(why), "{error}");
    }
}

#[tokio::test]
async fn lines_on_a_pipe_become_scans_and_end_of_input_ends_the_source() {
    let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
    let mut source = LineScanner::new(
        "keyboard",
        rx,
        &FrameConfig::default(),
        Duration::from_millis(300),
    )
    .unwrap();
    assert!(matches!(
        source.next_event().await.unwrap(),
        ScannerEvent::Connected
    ));
    tx.write_all(b"123456789012\nVIP0042\r\n\x07bell\n")
        .await
        .unwrap();
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.push(match source.next_event().await.unwrap() {
            ScannerEvent::Scan(scan) => format!("scan {}", scan.code),
            ScannerEvent::Rejected { reason } => format!("rejected {reason}"),
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(
        lines,
        [
            "scan 123456789012",
            "scan VIP0042",
            "rejected control character 0x07 at byte 0 of the code"
        ]
    );
    // A last line without a newline still counts once the input ends.
    tx.write_all(b"881234567890").await.unwrap();
    drop(tx);
    match source.next_event().await.unwrap() {
        ScannerEvent::Scan(scan) => assert_eq!(scan.code.as_str(), "881234567890"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        source.next_event().await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    let _ = std::io::stdout().flush();
}

#[tokio::test]
async fn run_forwards_events_and_returns_the_error_that_ends_a_source() {
    let (mut tx_pipe, rx_pipe) = tokio::net::unix::pipe::pipe().unwrap();
    let source = LineScanner::new(
        "keyboard",
        rx_pipe,
        &FrameConfig::default(),
        Duration::from_millis(300),
    )
    .unwrap();
    tx_pipe.write_all(b"123456789012\n").await.unwrap();
    drop(tx_pipe);
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let ended = wxcard_hal::scanner::run(source, tx, std::future::pending()).await;
    assert_eq!(ended.unwrap_err().kind(), ErrorKind::Closed);
    let first = rx.recv().await.unwrap();
    assert_eq!(first.scanner.as_str(), "keyboard");
    assert!(matches!(first.event, ScannerEvent::Connected));
    match rx.recv().await.unwrap().event {
        ScannerEvent::Scan(scan) => assert_eq!(scan.code.as_str(), "123456789012"),
        other => panic!("{other:?}"),
    }
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn run_stops_when_the_receiver_is_gone() {
    let (_tx_pipe, rx_pipe) = tokio::net::unix::pipe::pipe().unwrap();
    let source = LineScanner::new("k", rx_pipe, &FrameConfig::default(), Duration::ZERO).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    drop(rx);
    // The Connected event cannot be delivered: run returns instead of reading forever.
    wxcard_hal::scanner::run(source, tx, std::future::pending())
        .await
        .unwrap();
}
