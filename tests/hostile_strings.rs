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
/// a C1 control (NEL), a line separator and a right-to-left override, DEL, a C1 CSI, a bidi
/// mark and an isolate, then 5000 characters.
fn hostile() -> String {
    format!(
        "lost\n<0>FORGED LINE \u{1b}[2J\u{85}\u{2028}\u{202e}gpj.exe\u{7f}\u{9b}\u{200e}\u{2066}{}",
        "x".repeat(5000)
    )
}

/// True when `text` holds anything the sanitizer must have escaped: C0 (but the line ends),
/// DEL, C1, the line and paragraph separators, bidi marks, embeddings, overrides, isolates.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(
                    c,
                    '\u{2028}'
                        | '\u{2029}'
                        | '\u{200e}'
                        | '\u{200f}'
                        | '\u{202a}'..='\u{202e}'
                        | '\u{2066}'..='\u{2069}'
                )
        })
        .collect()
}

/// Every character of the class, for a card field: ESC, DEL, C1 (NEL, CSI, the last), the
/// separators, marks, embeddings, overrides and isolates.
const SPOOF: &str = "81\u{1b}[2J\u{7f}\u{80}\u{85}\u{9b}31m\u{9f}\u{2028}\u{2029}\u{200e}\u{200f}\
    \u{202a}\u{202b}\u{202c}\u{202d}\u{202e}\u{2066}\u{2067}\u{2068}\u{2069}gpj.exe 4599";

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

    // The same refusal as JSON: nothing of the class raw, and it parses back to the answer
    // the daemon gave.
    let json = wxcardctl(&socket, &["--json", "lookup", "812345678901234567"]);
    let raw = raw_controls(json.trim_end());
    assert!(raw.is_empty(), "wxcardctl --json: raw {raw:?} in {json:?}");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let direct = daemon
        .client()
        .request(&wxcardd::control::protocol::Command::Lookup(
            wxcardd::control::protocol::LookupParams {
                wx_code: "812345678901234567".into(),
                card_id: None,
            },
        ))
        .unwrap();
    assert_eq!(parsed["result"], direct["result"]);
    assert!(
        parsed["result"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\u{2028}\u{202e}gpj.exe")),
        "{parsed}"
    );

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

/// `wxcardctl --json` prints a card whose text holds the whole class with every one of them
/// as a JSON `\uXXXX` escape (a terminal or a log viewer reading the output sees no bidi
/// override, no C1 CSI), and the output parses back to the very string the backend sent;
/// the human output and the watch stream (both forms) show none of them raw either.
#[test]
fn wxcardctl_json_escapes_c1_and_bidi_in_card_fields() {
    let wx_code = "812345678901234599";
    let sim = support::SimProcess::with_cards(vec![wxcard_sim::Card::new(
        wx_code,
        "pX2bjt7hUDgWBCMlT5tTNMbA3Dk0",
        SPOOF,
    )]);
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = daemon_config(dir.path(), &sim.base_url(), "", "");
    let daemon = DaemonProcess::start(&config, &socket, &[]);

    let watch = |json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wxcardctl"));
        cmd.arg("--socket").arg(&socket);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .arg("watch")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        (child, rx)
    };
    let (mut watch_json, json_rx) = watch(true);
    let (mut watch_human, human_rx) = watch(false);

    // Look up until both watchers have shown a card event (they subscribe on their own time).
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut watched_json, mut watched_human) = (Vec::new(), Vec::new());
    let mut printed = Vec::new();
    while Instant::now() < deadline {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxcardctl"))
            .arg("--socket")
            .arg(&socket)
            .args(["--json", "lookup", wx_code])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        printed = out.stdout;
        watched_json.extend(json_rx.try_iter().flatten());
        watched_human.extend(human_rx.try_iter().flatten());
        let has_card = |b: &[u8]| String::from_utf8_lossy(b).contains("card ");
        if String::from_utf8_lossy(&watched_json).contains(r#""event":"card""#)
            && has_card(&watched_human)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = watch_json.kill();
    let _ = watch_human.kill();
    let _ = (watch_json.wait(), watch_human.wait());

    let text = String::from_utf8(printed).expect("UTF-8");
    let raw = raw_controls(text.trim_end());
    assert!(
        raw.is_empty(),
        "wxcardctl --json lookup: raw {raw:?} in {text:?}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["result"]["card"]["cardCode"], SPOOF, "{text}");
    assert!(text.contains(r"\u202e"), "escaped as JSON: {text}");

    let watched = String::from_utf8(watched_json).expect("UTF-8");
    let card_event = watched
        .lines()
        .find(|l| l.contains(r#""event":"card""#))
        .unwrap_or_else(|| panic!("no card event in {watched:?}"));
    let raw = raw_controls(&watched);
    assert!(
        raw.is_empty(),
        "wxcardctl --json watch: raw {raw:?} in {watched:?}"
    );
    let event: serde_json::Value = serde_json::from_str(card_event).unwrap();
    assert_eq!(event["card"]["cardCode"], SPOOF, "{card_event}");

    let human = String::from_utf8(watched_human).expect("UTF-8");
    assert!(human.contains("card "), "{human:?}");
    assert_clean("wxcardctl watch", &human);
    let shown = wxcardctl(&socket, &["lookup", wx_code]);
    assert!(shown.contains("4599"), "{shown}");
    assert_clean("wxcardctl lookup", &shown);
    drop(daemon);
}
