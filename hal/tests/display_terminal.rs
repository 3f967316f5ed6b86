//! The terminal backend on a real pty: its output is run through a small terminal emulator
//! (cursor moves, clears, half blocks), rasterised and decoded with rqrr.

mod display_support;

use std::collections::VecDeque;
use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use display_support::{CARD, CODE, card, decode_grey, pay_code};
use wxcard_hal::display::config::TerminalConfig;
use wxcard_hal::display::terminal::TerminalDisplay;
use wxcard_hal::display::{CustomerDisplay, Message, Screen, Texts};

const SENTINEL: &[u8] = b"\x00<<frame done>>\x00";

/// A pty of a given size; what the display writes to the slave is read from the master.
struct Pty {
    slave_path: PathBuf,
    slave: File,
    frames: mpsc::Receiver<Vec<u8>>,
}

impl Pty {
    fn new(cols: u16, rows: u16) -> Self {
        // SAFETY: plain libc pty calls on a descriptor we own; ptsname_r writes into `name`.
        let (master, slave_path) = unsafe {
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
            (OwnedFd::from_raw_fd(fd), PathBuf::from(path))
        };
        let slave = File::options()
            .read(true)
            .write(true)
            .open(&slave_path)
            .unwrap();
        // Raw mode: the tty must pass the display's bytes through unchanged.
        // SAFETY: termios calls on the slave descriptor we just opened.
        unsafe {
            use std::os::fd::AsRawFd;
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut t), 0);
            libc::cfmakeraw(&mut t);
            assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t), 0);
        }
        let (tx, frames) = mpsc::channel();
        let mut master = File::from(master);
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(at) = pending.windows(SENTINEL.len()).position(|w| w == SENTINEL) {
                    let frame: Vec<u8> = pending.drain(..at + SENTINEL.len()).take(at).collect();
                    if tx.send(frame).is_err() {
                        return;
                    }
                }
            }
        });
        Pty {
            slave_path,
            slave,
            frames,
        }
    }

    /// Everything the display wrote since the last call.
    fn take(&mut self) -> Vec<u8> {
        self.slave.write_all(SENTINEL).unwrap();
        self.frames
            .recv_timeout(Duration::from_secs(10))
            .expect("pty output")
    }
}

/// Just enough of a VT100 to replay the backend's output.
struct Screen2 {
    cols: usize,
    cells: Vec<Vec<char>>,
    row: usize,
    col: usize,
}

impl Screen2 {
    fn new(cols: usize, rows: usize) -> Self {
        Self {
            cols,
            cells: vec![vec![' '; cols]; rows],
            row: 0,
            col: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("terminal output is UTF-8");
        let mut chars: VecDeque<char> = text.chars().collect();
        while let Some(c) = chars.pop_front() {
            if c == '\x1b' {
                assert_eq!(chars.pop_front(), Some('['), "only CSI sequences are used");
                let mut params = String::new();
                let fin = loop {
                    let c = chars.pop_front().expect("complete escape");
                    if c.is_ascii_alphabetic() {
                        break c;
                    }
                    params.push(c);
                };
                let nums: Vec<usize> = params.split(';').map(|p| p.parse().unwrap_or(1)).collect();
                match fin {
                    'H' => {
                        self.row = nums.first().copied().unwrap_or(1).max(1) - 1;
                        self.col = nums.get(1).copied().unwrap_or(1).max(1) - 1;
                    }
                    'J' => self.cells.iter_mut().for_each(|l| l.fill(' ')),
                    'K' => self.cells[self.row].fill(' '),
                    'm' | 'h' | 'l' => {}
                    other => panic!("unexpected escape {params}{other}"),
                }
                continue;
            }
            assert!(!c.is_control(), "raw control character {c:?} in output");
            if self.row < self.cells.len() && self.col < self.cols {
                self.cells[self.row][self.col] = c;
            }
            self.col += 1;
            if (c as u32) >= 0x2E80 {
                // A wide character's second cell.
                if self.row < self.cells.len() && self.col < self.cols {
                    self.cells[self.row][self.col] = '\0';
                }
                self.col += 1;
            }
        }
    }

    fn text(&self) -> String {
        self.cells
            .iter()
            .map(|l| {
                l.iter()
                    .filter(|&&c| c != '\0')
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
                    + "\n"
            })
            .collect()
    }

    /// Each cell as 3x6 pixels, half blocks split top and bottom; decodes with rqrr.
    fn decode(&self) -> Vec<String> {
        let (w, h) = (self.cols * 3, self.cells.len() * 6);
        decode_grey(w, h, |x, y| {
            let c = self.cells[y / 6][x / 3];
            let top = y % 6 < 3;
            let dark = matches!((c, top), ('█', _) | ('▀', true) | ('▄', false));
            if dark { 0 } else { 255 }
        })
    }
}

fn terminal(path: PathBuf) -> TerminalDisplay {
    let cfg = TerminalConfig {
        path: Some(path),
        ..TerminalConfig::default()
    };
    TerminalDisplay::open(&cfg, Texts::default()).unwrap()
}

#[test]
fn pay_code_decodes_from_pty_output_at_two_sizes() {
    for (cols, rows) in [(100u16, 50u16), (60, 30)] {
        let mut pty = Pty::new(cols, rows);
        let mut term = terminal(pty.slave_path.clone());
        assert_eq!(
            term.size(),
            (cols as usize, rows as usize),
            "size read from the tty"
        );
        let now = Instant::now();
        term.show(&pay_code(CODE, now), now).unwrap();
        let mut screen = Screen2::new(cols as usize, rows as usize);
        screen.feed(&pty.take());
        assert_eq!(
            screen.decode(),
            vec![CODE.to_string()],
            "{cols}x{rows}:\n{}",
            screen.text()
        );
        assert!(
            screen.text().contains("1345 2387 9145 2238 01"),
            "{}",
            screen.text()
        );
        assert!(
            screen.text().contains("Expires in 2:00"),
            "{}",
            screen.text()
        );
    }
}

#[test]
fn countdown_tick_rewrites_one_line_and_leaves_the_code_readable() {
    let mut pty = Pty::new(80, 40);
    let mut term = terminal(pty.slave_path.clone());
    let mut screen = Screen2::new(80, 40);
    let now = Instant::now();
    let code = pay_code(CODE, now);
    term.show(&code, now).unwrap();
    let first = pty.take();
    screen.feed(&first);

    term.show(&code, now + Duration::from_secs(1)).unwrap();
    let tick = pty.take();
    let tick_text = String::from_utf8(tick.clone()).unwrap();
    assert!(
        !tick_text.contains('▀') && !tick_text.contains("\x1b[2J"),
        "QR not redrawn: {tick_text:?}"
    );
    assert!(tick.len() < first.len() / 10);
    screen.feed(&tick);
    assert!(
        screen.text().contains("Expires in 1:59"),
        "{}",
        screen.text()
    );
    assert_eq!(screen.decode(), vec![CODE.to_string()]);

    // Expired: the code goes away.
    term.show(&code, now + Duration::from_secs(121)).unwrap();
    screen.feed(&pty.take());
    assert!(screen.decode().is_empty());
    assert!(
        screen.text().contains("Pay code expired"),
        "{}",
        screen.text()
    );
}

#[test]
fn card_summary_shows_last_four_only_and_messages_have_no_code() {
    let mut pty = Pty::new(80, 24);
    let mut term = terminal(pty.slave_path.clone());
    let mut screen = Screen2::new(80, 24);
    let now = Instant::now();
    term.show(&card(), now).unwrap();
    let raw = pty.take();
    screen.feed(&raw);
    let text = screen.text();
    assert!(
        text.contains("**** 7890") && text.contains("¥128.50") && text.contains("9.5折"),
        "{text}"
    );
    let raw = String::from_utf8(raw).unwrap();
    assert!(
        !raw.contains(CARD) && !raw.contains(&CARD[..8]),
        "full card number on screen"
    );

    term.show(
        &Screen::Message(Message::Error("\u{1b}]0;x\u{7}网络错误".into())),
        now,
    )
    .unwrap();
    screen.feed(&pty.take());
    assert!(screen.text().contains("网络错误"), "{}", screen.text());
    assert!(screen.decode().is_empty());
}

#[test]
fn closing_leaves_the_cursor_at_the_start_of_the_line_below_the_screen() {
    let mut pty = Pty::new(80, 24);
    let mut term = terminal(pty.slave_path.clone());
    let mut screen = Screen2::new(80, 24);
    term.show(&card(), Instant::now()).unwrap();
    screen.feed(&pty.take());
    let text = screen.text();
    let lines: Vec<&str> = text.lines().collect();
    let used = lines.iter().rposition(|l| !l.is_empty()).unwrap() + 1;
    drop(term);
    screen.feed(&pty.take());
    assert_eq!(
        (screen.row, screen.col),
        (used, 0),
        "the shell's prompt starts a line of its own"
    );
}

#[test]
fn a_header_stays_above_every_screen() {
    let mut pty = Pty::new(80, 24);
    let cfg = TerminalConfig {
        path: Some(pty.slave_path.clone()),
        header: vec!["wxcardd demo".into(), "socket /tmp/x\u{1b}[2J.sock".into()],
        ..TerminalConfig::default()
    };
    let mut term = TerminalDisplay::open(&cfg, Texts::default()).unwrap();
    let mut screen = Screen2::new(80, 24);
    let now = Instant::now();
    for shown in [
        card(),
        Screen::Message(Message::Info("hello".into())),
        card(),
    ] {
        term.show(&shown, now).unwrap();
        screen.feed(&pty.take());
        let text = screen.text();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("wxcardd demo"), "{text}");
        assert_eq!(lines.next(), Some("socket /tmp/x[2J.sock"), "{text}");
    }
    assert!(screen.text().contains("**** 7890"));
}

#[test]
fn plain_file_output_uses_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ansi");
    std::fs::write(&path, b"").unwrap();
    let cfg = TerminalConfig {
        path: Some(path.clone()),
        columns: Some(70),
        rows: Some(40),
        ..TerminalConfig::default()
    };
    let mut term = TerminalDisplay::open(&cfg, Texts::default()).unwrap();
    assert_eq!(term.size(), (70, 40));
    let now = Instant::now();
    term.show(&pay_code(CODE, now), now).unwrap();
    let mut screen = Screen2::new(70, 40);
    screen.feed(&std::fs::read(&path).unwrap());
    assert_eq!(screen.decode(), vec![CODE.to_string()]);
}
