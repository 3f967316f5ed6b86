//! Strings from the backend are untrusted text: a `message` carrying a newline, a journald
//! priority prefix, an escape sequence, C1 controls or a bidi override must reach no log
//! line, no terminal and no screen raw. One sanitizer (`wxcard_hal::text`) escapes them and
//! caps their length; one test per sink: the daemon's journal lines, `wxcardctl`'s output
//! (`lookup`, `outbox`, `watch`), the probe's output. (Screens: `hal` view tests.)

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{DaemonProcess, daemon_config};

/// The message a hostile backend sends: its own journal line at priority 0, a screen clear,
/// a C1 control (NEL), a line separator and a right-to-left override, then 5000 characters.
fn hostile() -> String {
    format!(
        "lost\n<0>FORGED LINE \u{1b}[2J\u{85}\u{2028}\u{202e}gpj.exe{}",
        "x".repeat(5000)
    )
}

/// True when `text` holds anything the sanitizer must have escaped.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')
        })
        .collect()
}

/// A backend answering lookups with 605 and the hostile message; the first activemember
/// with HTTP 500 (so the write is queued), the next ones with 603 and the hostile message.
fn hostile_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let activations = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tcp.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = tcp.read_exact(&mut body);
            let message = serde_json::to_string(&hostile()).unwrap();
            let (code, body) = if text.contains("activemember") {
                if activations.fetch_add(1, Ordering::SeqCst) == 0 {
                    (500, "<html>down</html>".to_owned())
                } else {
                    (200, format!(r#"{{"status":603,"message":{message}}}"#))
                }
            } else {
                (200, format!(r#"{{"status":605,"message":{message}}}"#))
            };
            let _ = write!(
                tcp,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn wxcardctl(socket: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn assert_clean(sink: &str, text: &str) {
    let raw = raw_controls(text);
    assert!(raw.is_empty(), "{sink}: raw {raw:?} in:\n{text:?}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("<0>") || l.starts_with("FORGED")),
        "{sink}: a forged line:\n{text}"
    );
    assert!(!text.contains(&"x".repeat(1000)), "{sink}: not capped");
}

#[test]
fn backend_messages_reach_the_journal_and_wxcardctl_escaped() {
    let backend = hostile_backend();
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &format!("http://{backend}/"), "", "");
    let log = dir.path().join("daemon.log");
    let daemon = DaemonProcess::start_logging_to(
        &config,
        &socket,
        &[("JOURNAL_STREAM", "8:1234"), ("RUST_LOG", "debug")],
        Some(&log),
    );
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("watch")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // A lookup the backend refuses with the hostile message: the human output shows it.
    let shown = wxcardctl(&socket, &["lookup", "812345678901234567"]);
    assert!(
        shown.contains("FORGED LINE"),
        "the message is shown: {shown}"
    );
    assert_clean("wxcardctl lookup", &shown);
    assert!(
        shown.contains("\\u{1b}[2J"),
        "escaped, not dropped: {shown}"
    );

    // A write queued (HTTP 500), then refused on replay with the hostile message: a dead
    // letter whose message is listed, and logged.
    let queued = wxcardctl(&socket, &["activate", "--wx-code", "812345678901234570"]);
    assert!(queued.contains("queued"), "{queued}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let listed = wxcardctl(&socket, &["outbox"]);
        if listed.contains("DEAD") || Instant::now() > deadline {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(listed.contains("DEAD"), "{listed}");
    assert!(listed.contains("FORGED LINE"), "{listed}");
    assert_clean("wxcardctl outbox", &listed);
    // The card of the write, masked as the customer display masks card numbers.
    assert!(listed.contains("activate card **** 4570"), "{listed}");
    assert!(!listed.contains("812345678901234570"), "{listed}");

    drop(daemon);
    let _ = watch.kill();
    let mut watched = String::new();
    let _ = watch.stdout.take().unwrap().read_to_string(&mut watched);
    let _ = watch.wait();
    assert!(watched.contains("FORGED LINE"), "{watched}");
    assert_clean("wxcardctl watch", &watched);

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("FORGED LINE"), "the log has it: {logged}");
    assert_clean("journal", &logged);
    let about_the_write: Vec<_> = logged
        .lines()
        .filter(|l| l.contains("activate card"))
        .collect();
    assert!(!about_the_write.is_empty(), "{logged}");
    for line in about_the_write {
        assert!(line.contains("activate card **** 4570"), "{line}");
        assert!(!line.contains("812345678901234570"), "{line}");
    }
    for line in logged.lines() {
        assert!(
            line.starts_with('<'),
            "every journal line has its priority: {line:?}"
        );
    }
}

#[test]
fn the_probe_prints_a_backend_message_escaped() {
    let backend = hostile_backend();
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(dir.path(), &format!("http://{backend}/"), "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .args(["probe", "--config"])
        .arg(&config)
        .args(["--wx-code", "812345678901234567"])
        .env("RUST_LOG", "debug")
        .env("JOURNAL_STREAM", "8:1234")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FORGED LINE"), "{text}");
    assert_clean("probe", &text);
}
