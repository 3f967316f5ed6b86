//! Terminal backend: ANSI text on a tty (a second screen on a Linux console, `/dev/tty2`) or
//! on standard output (the demo).
//!
//! The QR is drawn with Unicode half blocks (two modules per character cell vertically), dark
//! on a light background set explicitly so it reads on dark terminals too; the module size is
//! the largest whole number of cells that fits the terminal. Each frame is built in memory
//! and written in one `write`; when only some lines changed (the countdown ticking) only
//! those lines are rewritten, so the QR does not flicker. Text from the backend has its
//! control characters removed before it reaches the terminal.
//!
//! A Linux text console has no CJK glyphs: use English labels there, or a terminal that
//! has them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Instant;

use super::config::TerminalConfig;
use super::qr::QrMatrix;
use super::view::{Texts, Tone, View};
use super::{CustomerDisplay, DisplayError, Screen};

/// Where the text goes.
enum Output {
    Stdout,
    Tty(File),
}

/// A terminal customer display.
pub struct TerminalDisplay {
    output: Output,
    path: PathBuf,
    fallback: (usize, usize),
    texts: Texts,
    /// Lines kept above the screen, control characters removed.
    header: Vec<String>,
    /// Lines on screen now, to rewrite only what changed.
    shown: Option<(usize, usize, Vec<String>)>,
}

const QR_COLOURS: &str = "\x1b[0;30;47m\x1b[107m";
const RESET: &str = "\x1b[0m";

impl TerminalDisplay {
    /// Opens `config.path`, or standard output when none is given.
    pub fn open(config: &TerminalConfig, texts: Texts) -> Result<Self, DisplayError> {
        let (output, path) = match &config.path {
            Some(path) => {
                let file = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOCTTY)
                    .open(path)
                    .map_err(|e| DisplayError::io(path, e))?;
                (Output::Tty(file), path.clone())
            }
            None => (Output::Stdout, PathBuf::from("<stdout>")),
        };
        let fallback = (
            config.columns.unwrap_or(80).max(1),
            config.rows.unwrap_or(24).max(1),
        );
        Ok(Self {
            output,
            path,
            fallback,
            texts,
            header: config
                .header
                .iter()
                .map(|l| l.chars().filter(|c| !c.is_control()).collect())
                .collect(),
            shown: None,
        })
    }

    fn fd(&self) -> RawFd {
        match &self.output {
            Output::Stdout => std::io::stdout().as_raw_fd(),
            Output::Tty(f) => f.as_raw_fd(),
        }
    }

    /// Columns and rows: the tty's own size when it reports one, else the configured size.
    pub fn size(&self) -> (usize, usize) {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills a `winsize`; on a non-tty it fails and we fall back.
        let rc = unsafe { libc::ioctl(self.fd(), libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
            (ws.ws_col as usize, ws.ws_row as usize)
        } else {
            self.fallback
        }
    }
}

impl CustomerDisplay for TerminalDisplay {
    fn show(&mut self, screen: &Screen, now: Instant) -> Result<(), DisplayError> {
        let (cols, rows) = self.size();
        // The header keeps its rows (all but one, if the terminal is that small).
        let top = self.header.len().min(rows.saturating_sub(1));
        let lines = lay_out(&View::of(screen, &self.texts, now), cols, rows - top);
        let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 12).sum::<usize>() + 16);
        match &self.shown {
            Some((c, r, old)) if *c == cols && *r == rows && old.len() == lines.len() => {
                for (i, (new, old)) in lines.iter().zip(old).enumerate() {
                    if new != old {
                        out.push_str(&format!("\x1b[{};1H\x1b[2K{new}{RESET}", top + i + 1));
                    }
                }
            }
            _ => {
                out.push_str("\x1b[?25l\x1b[0m\x1b[H\x1b[2J");
                for (i, line) in self.header[..top].iter().enumerate() {
                    let cut: String = line.chars().take(cols).collect();
                    out.push_str(&format!("\x1b[{};1H{cut}", i + 1));
                }
                for (i, line) in lines.iter().enumerate() {
                    out.push_str(&format!("\x1b[{};1H{line}{RESET}", top + i + 1));
                }
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        let written = match &mut self.output {
            Output::Stdout => {
                let mut lock = std::io::stdout().lock();
                lock.write_all(out.as_bytes()).and_then(|()| lock.flush())
            }
            Output::Tty(f) => f.write_all(out.as_bytes()),
        };
        match written {
            Ok(()) => {
                self.shown = Some((cols, rows, lines));
                Ok(())
            }
            Err(e) => {
                self.shown = None;
                Err(DisplayError::io(&self.path, e))
            }
        }
    }

    fn name(&self) -> &'static str {
        "terminal"
    }
}

impl Drop for TerminalDisplay {
    fn drop(&mut self) {
        // Give the terminal its cursor back, at the start of the line below what was drawn
        // (the demo ends on a usable shell, its prompt not in the middle of a line).
        if let Some((_, rows, lines)) = &self.shown {
            let used = self.header.len() + lines.len();
            let restore = if used < *rows {
                format!("\x1b[0m\x1b[?25h\x1b[{};1H", used + 1)
            } else {
                // The screen is full: start a fresh line below it (the terminal scrolls).
                format!("\x1b[0m\x1b[?25h\x1b[{rows};1H\r\n")
            };
            let _ = match &mut self.output {
                Output::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(restore.as_bytes()).and_then(|()| out.flush())
                }
                Output::Tty(f) => f.write_all(restore.as_bytes()),
            };
        }
    }
}

/// The screen as terminal lines (with colour escapes), at most `rows` of them.
fn lay_out(view: &View<'_>, cols: usize, rows: usize) -> Vec<String> {
    let mut lines = Vec::new();
    if view.kind == "blank" {
        return lines;
    }
    let heading_style = if view.tone == Tone::Alert {
        "\x1b[1;31m"
    } else {
        "\x1b[1m"
    };
    lines.push(format!("{heading_style}{}", centred(&view.heading, cols)));
    lines.push(String::new());
    if let Some(qr) = view.qr {
        let padded = qr.matrix.padded_size();
        let qr_rows = rows.saturating_sub(lines.len() + 3);
        // Module = k cells wide and k half-cells tall: the largest k that fits, at least 1.
        let k = (cols / padded).min(2 * qr_rows / padded).max(1);
        let indent = " ".repeat(cols.saturating_sub(padded * k) / 2);
        for row in half_blocks(qr.matrix, k) {
            lines.push(format!("{indent}{QR_COLOURS}{row}"));
        }
        lines.push(centred(&view.digits, cols));
        if let Some(c) = &view.countdown {
            lines.push(centred(c, cols));
        }
    } else {
        for text in view.row_lines() {
            lines.push(centred(&text, cols));
        }
    }
    lines.truncate(rows.max(1));
    lines
}

/// A QR code with its quiet zone in Unicode half blocks, each module `k` cells wide and `k`
/// half-cells tall (two module rows per line), dark modules drawn: print it dark on light.
/// No colour escapes; the caller sets the colours (`wxcardd setup` prints its code this way).
pub fn half_blocks(matrix: &QrMatrix, k: usize) -> Vec<String> {
    let k = k.max(1);
    let px = matrix.padded_size() * k;
    let dark = |x: usize, y: usize| y < px && matrix.is_dark_padded(x / k, y / k);
    (0..px.div_ceil(2))
        .map(|cy| {
            (0..px)
                .map(|x| match (dark(x, 2 * cy), dark(x, 2 * cy + 1)) {
                    (false, false) => ' ',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (true, true) => '█',
                })
                .collect()
        })
        .collect()
}

/// `text` without control characters, cut to `cols` cells (a wrapped line would shift every
/// line below it), padded on the left to centre it.
fn centred(text: &str, cols: usize) -> String {
    let mut width = 0;
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take_while(|&c| {
            width += cell_width(c);
            width <= cols
        })
        .collect();
    let width: usize = clean.chars().map(cell_width).sum();
    format!("{}{clean}", " ".repeat(cols.saturating_sub(width) / 2))
}

/// Cells a character takes: two for East Asian wide and full-width forms, else one.
fn cell_width(c: char) -> usize {
    match c as u32 {
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let line = centred("¥1\u{1b}]0;pwned\u{7}0", 10);
        assert!(!line.contains('\u{1b}') && !line.contains('\u{7}'));
        assert_eq!(cell_width('余'), 2);
        assert_eq!(centred("余额", 8), "  余额");
        assert_eq!(centred("余额余额", 5), "余额");
        assert_eq!(centred(&"9".repeat(500), 80).len(), 80);
    }
}
