//! `wxcardd setup` against ptys standing in for scanners, the real binary spawned.
//!
//! Each "scanner" is a thread on a pty's master side that plays a technician scanning the
//! setup code every 100 ms. A pty carries bytes at any rate, so the thread reads the rate the
//! wizard set on the other side (tcgetattr on the master sees the slave's termios) and, as a
//! real serial line would, sends the frame clean only at the scanner's own rate and garbage
//! at any other.

mod support;

use std::{
    io::{BufRead, BufReader},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::Duration,
};

use serde_json::Value;
use support::hal_common::{Pty, point_link};
use support::{DaemonProcess, SimProcess, daemon_config, wait_event};
use wxcard_hal::scanner::{
    DeviceConfig, FrameConfig, ScannerConfig, frame::Terminator, serial::SerialConfig,
};
use wxcardd::control::protocol::Command as ControlCommand;

/// Bytes a UART makes of a frame sent at another rate: not text.
const GARBAGE: &[u8] = b"\xf8\x80\x1e\xe6\x98\x00\xfe\x86\x9e\xe0\x78\x80\x06\xf8";

/// Plays a scanner on `pty` until `stop`: once the setup code is known (`code`), sends
/// `frame(code)` every 100 ms when the line is at `baud` (bits per second), garbage
/// otherwise.
fn scanner(
    mut pty: Pty,
    baud: libc::speed_t,
    frame: fn(&str) -> Vec<u8>,
    code: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Pty> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            let code = code.lock().unwrap();
            let Some(code) = code.as_deref() else {
                // Paused: nothing left queued towards the device side either.
                // SAFETY: tcflush on a descriptor we own.
                unsafe { libc::tcflush(pty.master.as_raw_fd(), libc::TCIOFLUSH) };
                paused.fetch_add(1, Ordering::SeqCst);
                continue;
            };
            // The rate as serialport sets it (termios2, BOTHER with the rate in c_ospeed).
            // SAFETY: TCGETS2 fills a termios2 for a descriptor we own.
            let speed = unsafe {
                let mut t = std::mem::zeroed::<libc::termios2>();
                if libc::ioctl(pty.master.as_raw_fd(), libc::TCGETS2, &mut t) != 0 {
                    continue;
                }
                t.c_ospeed
            };
            if speed == baud {
                pty.send(&frame(code));
            } else {
                pty.send(GARBAGE);
            }
        }
        pty
    })
}

fn stx_prefix_aim_etx(code: &str) -> Vec<u8> {
    [b"\x02SHOP]Q1", code.as_bytes(), b"\x03"].concat()
}

struct Rig {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    links: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
    code: Arc<std::sync::Mutex<Option<String>>>,
    /// Counts the 115200-baud scanner's idle rounds while `code` is `None`.
    paused: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Pty>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Two silent ptys, a noisy one whose rate the wizard never tries, and the scanner at
/// 115200 baud sending STX, prefix "SHOP", AIM ids and ETX.
fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let code = Arc::new(std::sync::Mutex::new(None));
    let paused = Arc::new(AtomicU64::new(0));
    let mut links = Vec::new();
    let mut threads = Vec::new();
    let mut silent = Vec::new();
    for (i, name) in [
        "usb-Silent_One-if00",
        "usb-Noisy_Scale-if00",
        "usb-Acme_Scanner-if00",
        "usb-Silent_Two-if00",
    ]
    .iter()
    .enumerate()
    {
        let pty = Pty::open();
        let link = path.join(name);
        point_link(&link, &pty.slave);
        links.push(link);
        match i {
            1 => threads.push(scanner(
                pty,
                1200,
                stx_prefix_aim_etx,
                code.clone(),
                stop.clone(),
                Arc::new(AtomicU64::new(0)),
            )),
            2 => threads.push(scanner(
                pty,
                115_200,
                stx_prefix_aim_etx,
                code.clone(),
                stop.clone(),
                paused.clone(),
            )),
            _ => silent.push(pty),
        }
    }
    // The silent ones stay open (plugged in) but send nothing.
    threads.push(std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            silent.pop().unwrap()
        }
    }));
    Rig {
        _dir: dir,
        dir: path,
        links,
        stop,
        code,
        paused,
        threads,
    }
}

/// Runs the wizard on `rig`'s candidates with `extra` arguments; the setup code it prints is
/// handed to the scanners. Returns the exit status, its standard output and standard error.
fn wizard(rig: &Rig, extra: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxcardd"));
    command
        .arg("--config")
        .arg(rig.dir.join("absent.toml"))
        .args([
            "setup",
            "--only",
            "--yes",
            "--no-display",
            "--timeout",
            "60",
        ])
        .args(["--rate-timeout-ms", "1000", "--gap-ms", "50"]);
    for link in &rig.links {
        command.arg("--candidate").arg(link);
    }
    let mut child = command
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wxcardd setup starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let code = rig.code.clone();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Some(c) = line.strip_prefix("Setup code: ") {
                *code.lock().unwrap() = Some(c.trim().to_owned());
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let output = child.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    assert!(rx.try_recv().is_ok(), "no setup code printed:\n{stderr}");
    (
        output.status,
        String::from_utf8(output.stdout).unwrap(),
        stderr,
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Snippet {
    scanner: Vec<ScannerConfig>,
}

fn expected(link: &Path) -> ScannerConfig {
    ScannerConfig {
        name: "front".into(),
        device: DeviceConfig::Serial(SerialConfig {
            baud: 115_200,
            ..SerialConfig::new(link.to_str().unwrap())
        }),
        frame: FrameConfig {
            terminators: vec![Terminator::Etx],
            stx: true,
            prefix: "SHOP".into(),
            suffix: String::new(),
            aim: true,
            idle_timeout_ms: 0,
        },
        duplicate_window_ms: 300,
    }
}

#[test]
fn finds_the_scanner_at_115200_writes_its_table_and_the_daemon_reads_with_it() {
    let rig = rig();
    let output = rig.dir.join("conf.d/50-scanners.toml");
    let (status, stdout, stderr) = wizard(
        &rig,
        &["--name", "front", "--output", output.to_str().unwrap()],
    );
    assert!(status.success(), "{status}:\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let scanner_link = &rig.links[2];
    assert!(
        stderr.contains(&format!(
            "Found it: serial {} at 115200 baud",
            scanner_link.display()
        )),
        "{stderr}"
    );
    // The first rate tried (9600) gave garbage, and the wizard moved on.
    assert!(stderr.contains("unreadable bytes at 9600 baud"), "{stderr}");
    assert!(
        stderr.contains("Checked: the scan came through"),
        "{stderr}"
    );
    assert!(stderr.contains("systemctl reload wxcardd"), "{stderr}");

    let text = std::fs::read_to_string(&output).unwrap();
    let snippet: Snippet = toml::from_str(&text).unwrap();
    assert_eq!(snippet.scanner, vec![expected(scanner_link)], "{text}");

    // The daemon, reading the table from its conf.d drop-in, reads the scanner with it. The
    // technician stops scanning (and what is queued is dropped) until the test listens, so
    // the duplicate window cannot hide the first scan the test sees.
    let code = rig.code.lock().unwrap().take().unwrap();
    let before = rig.paused.load(Ordering::SeqCst);
    while rig.paused.load(Ordering::SeqCst) < before + 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let sim = SimProcess::start(&[]);
    let (config, socket) = daemon_config(&rig.dir, &sim.base_url(), "", "");
    let daemon = DaemonProcess::start_logging_to(&config, &socket, &[], Some(&rig.dir.join("log")));
    let mut events = daemon.client();
    assert_eq!(
        events.request(&ControlCommand::Subscribe).unwrap()["class"],
        "RESULT"
    );
    let scanners =
        daemon.client().request(&ControlCommand::Status).unwrap()["result"]["scanners"].to_string();
    if !scanners.contains("connected") {
        wait_event(&mut events, "scanner connected", |v: &Value| {
            v["class"] == "EVENT" && v["event"] == "scanner" && v["state"] == "connected"
        });
    }
    *rig.code.lock().unwrap() = Some(code.clone());
    let scan = wait_event(&mut events, "a scan from the new scanner", |v: &Value| {
        v["class"] == "EVENT" && v["event"] == "scan"
    });
    assert_eq!(scan["scanner"], "front", "{scan}");
    assert_eq!(scan["code"], code.as_str(), "{scan}");
    assert_eq!(scan["symbology"], "]Q1", "{scan}");
}

#[test]
fn dry_run_prints_the_table_and_writes_nothing() {
    let rig = rig();
    let output = rig.dir.join("conf.d/50-scanners.toml");
    let (status, stdout, stderr) = wizard(
        &rig,
        &[
            "--name",
            "front",
            "--dry-run",
            "--no-verify",
            "--output",
            output.to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{status}:\n{stderr}");
    assert!(!output.exists());
    let snippet: Snippet = toml::from_str(&stdout).unwrap();
    assert_eq!(snippet.scanner, vec![expected(&rig.links[2])], "{stdout}");
}

#[test]
fn no_scanner_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::open();
    let link = dir.path().join("usb-Silent-if00");
    point_link(&link, &pty.slave);
    let output = dir.path().join("50-scanners.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .arg("--config")
        .arg(dir.path().join("absent.toml"))
        .args(["setup", "--only", "--yes", "--no-display", "--timeout", "1"])
        .args(["--rate-timeout-ms", "200", "--candidate"])
        .arg(&link)
        .arg("--output")
        .arg(&output)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no device delivered the setup code"),
        "{stderr}"
    );
    assert!(!output.exists());
    drop(pty);
}
