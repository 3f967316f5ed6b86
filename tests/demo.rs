//! `wxcardd --demo` on a real pty, as a new user runs it: what is typed is not echoed into
//! the customer's screen, a code that is not a member code gets a notice, the instructions
//! (with the control socket) stay on the terminal, and Ctrl-C leaves the cursor at the start
//! of a line.

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A pty: the demo gets the slave as its terminal, the test reads and types on the master.
fn pty(cols: u16, rows: u16) -> (File, PathBuf) {
    // SAFETY: plain libc pty calls on a descriptor we own; ptsname_r writes into `name`.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(libc::ioctl(fd, libc::TIOCSWINSZ, &ws), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_owned();
        (File::from(OwnedFd::from_raw_fd(fd)), PathBuf::from(path))
    }
}

/// Everything the demo wrote so far, as text.
struct Output {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Reads until the output contains `what` (20 s at most).
    fn wait_for(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.text().contains(what) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(bytes) => self.seen.extend(bytes),
                Err(_) => panic!("no {what:?} in the demo's output:\n{}", self.text()),
            }
        }
    }

    fn drain_until_closed(&mut self) {
        while let Ok(bytes) = self.rx.recv_timeout(Duration::from_secs(10)) {
            self.seen.extend(bytes);
        }
    }
}

#[test]
fn the_demo_keeps_typing_off_the_screen_answers_every_code_and_exits_cleanly() {
    let (mut master, slave) = pty(100, 40);
    let tty = || File::options().read(true).write(true).open(&slave).unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_wxcardd"))
        .arg("--demo")
        .stdin(Stdio::from(tty()))
        .stdout(Stdio::from(tty()))
        .stderr(Stdio::from(tty()))
        .spawn()
        .unwrap();
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut out = Output {
        rx,
        seen: Vec::new(),
    };
    out.wait_for("wxcardd demo 演示");
    let socket = format!("/wxcardd-demo-{}/control.sock", demo.id());
    out.wait_for(&socket);
    // Whenever the terminal is cleared, the instructions with the socket are drawn again.
    let banner_kept = |text: &str| {
        text.rfind("\x1b[2J")
            .is_none_or(|i| text[i..].contains(&socket))
    };

    out.seen.clear();
    master.write_all(b"hello world\r").unwrap();
    out.wait_for("Not a member card code: hello world");
    let text = out.text();
    assert_eq!(
        text.matches("hello world").count(),
        text.matches("code: hello world").count(),
        "typed text echoed onto the display: {text:?}"
    );
    assert!(banner_kept(&text), "{text:?}");

    out.seen.clear();
    master.write_all(b"812345678901234569\r").unwrap();
    out.wait_for("**** 1003");
    assert!(banner_kept(&out.text()), "{:?}", out.text());
    assert!(
        !out.text().contains("812345678901234569"),
        "echoed: {:?}",
        out.text()
    );

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(demo.id() as i32, libc::SIGINT) };
    let status = demo.wait().unwrap();
    drop(master);
    out.drain_until_closed();
    assert!(status.success(), "{status:?}");
    let text = out.text();
    // The last thing written puts the cursor at column 1 of a line: `ESC [ row ; 1 H`,
    // optionally followed by a new line.
    let tail = text.trim_end_matches("\r\n");
    let last_escape = tail.rfind('\x1b').expect("an escape sequence");
    let last = &tail[last_escape..];
    assert!(
        last.starts_with("\x1b[") && last.ends_with(";1H"),
        "the demo ended with {last:?}"
    );
}
