//! `wxcardd setup`: the technician's wizard that finds which device is the scanner and how it
//! sends, so nobody has to guess device nodes, baud rates and framing.
//!
//! Why a wizard: a newly plugged scanner is one of several `/dev/serial/by-id` ports and
//! keyboards, at one of several baud rates, with an STX, a prefix, AIM ids or a CR that the
//! scanner's settings sheet may not say. A known code scanned once makes all of it visible.
//!
//! The steps:
//! 1. list the candidates ([`candidates`]) with maker and model from udev;
//! 2. make a setup code (`WXSETUP-` and eight letters or digits, which the configured
//!    `[classify]` rules must not take for a member code), print it as a QR code in half
//!    blocks and show it on the customer display when one is configured;
//! 3. watch every candidate at once, one tokio task each ([`watch`]): serial ports go through
//!    the common baud rates until the code arrives clean, and the bytes around the code give
//!    STX, prefix, AIM id, suffix and terminators ([`infer`]);
//! 4. ask for a name, then prove the result: a second scan read through hal's real backend
//!    with the new settings must give the setup code;
//! 5. write the `[[scanner]]` table (by default to `/etc/wxcardd/conf.d/50-scanners.toml`,
//!    appended after the scanners already there) or print it (`--dry-run`), and say to
//!    `systemctl reload wxcardd`.
//!
//! Nothing here runs inside the daemon; stop the daemon first if it holds the scanner's port
//! (serial ports are opened exclusively).

pub mod candidates;
pub mod infer;
pub mod watch;

use std::{
    io::{BufRead, IsTerminal, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use tokio::{sync::mpsc, task::JoinSet};
use wxcard_hal::scanner::{
    AnyScanner, Classifier, CodeKind, DeviceConfig, FrameConfig, ScanSource, ScannerConfig,
    ScannerEvent, evdev, hidpos, serial,
};

use crate::config::Config;
use candidates::{Candidate, Kind};
use infer::terminator_name;
use watch::{Found, Report, Timing};

/// Where the table goes unless `--output` says otherwise.
pub const DEFAULT_OUTPUT: &str = "/etc/wxcardd/conf.d/50-scanners.toml";

/// `wxcardd setup` options (parsed by `src/bin/wxcardd.rs`, whose help text says the same).
#[derive(Debug, Clone, PartialEq)]
pub struct SetupArgs {
    /// `--name`: the scanner's name, reported with every scan (asked for when not given).
    pub name: Option<String>,
    /// `--yes`: ask nothing (scripted installs): the name is `--name`, or "front".
    pub yes: bool,
    /// `--dry-run`: print the table instead of writing it.
    pub dry_run: bool,
    /// `--output`: where to write the table; scanners already in the file are kept.
    pub output: PathBuf,
    /// `--candidate`: also watch this device (a tty, an input event device or a hidraw
    /// node); repeatable.
    pub candidates: Vec<PathBuf>,
    /// `--only`: watch only the `--candidate` devices, not the standard places.
    pub only: bool,
    /// `--no-display`: do not show the setup code on the customer display.
    pub no_display: bool,
    /// `--no-verify`: skip the second scan that proves the settings.
    pub no_verify: bool,
    /// `--timeout`: give up waiting for a scan after this many seconds.
    pub timeout: u64,
    /// `--rate-timeout-ms` (not in the help): longest time a serial port is held at one rate
    /// with nothing read, ms.
    pub rate_timeout_ms: u64,
    /// `--gap-ms` (not in the help): silence that ends a burst of bytes from a serial port, ms.
    pub gap_ms: u64,
}

impl Default for SetupArgs {
    fn default() -> Self {
        SetupArgs {
            name: None,
            yes: false,
            dry_run: false,
            output: PathBuf::from(DEFAULT_OUTPUT),
            candidates: Vec::new(),
            only: false,
            no_display: false,
            no_verify: false,
            timeout: 300,
            rate_timeout_ms: 5000,
            gap_ms: 150,
        }
    }
}

/// Runs the wizard. `config_path` is the daemon's config: its `[display]` and `[classify]`
/// are used when it loads; the wizard works without it.
pub async fn run(args: SetupArgs, config_path: &Path) -> anyhow::Result<()> {
    if !args.yes && !std::io::stdin().is_terminal() {
        bail!("no terminal to ask on: pass --yes (and --name NAME) for a scripted install");
    }
    if let Some(name) = &args.name {
        wxcard_hal::scanner::scanner_name(name).context("--name")?;
    }
    let config = Config::load(config_path).ok();

    let candidates = candidates::list(&args.candidates, !args.only);
    if candidates.is_empty() {
        bail!(
            "no candidate devices: plug the scanner in (see `ls /dev/serial/by-id \
             /dev/input/by-id`), or name it with --candidate PATH"
        );
    }
    say("Watching these devices:");
    for c in &candidates {
        say(&format!(
            "  {:<6}  {}{}",
            c.kind.name(),
            c.path.display(),
            c.label
                .as_ref()
                .map(|l| format!("  ({l})"))
                .unwrap_or_default()
        ));
    }

    let classifier = match &config {
        Some(c) => Classifier::new(&c.classify).context("[classify]")?,
        None => Classifier::default(),
    };
    let code = setup_code(&classifier)?;
    let timeout = Duration::from_secs(args.timeout);
    let _display = if args.no_display {
        None
    } else {
        config
            .as_ref()
            .and_then(|c| show_on_display(c, &code, timeout))
    };
    print_qr(&code);
    say(&format!("Setup code: {code}"));
    say("Scan the code above with the scanner to set up (again whenever asked).");

    let timing = Timing {
        rate_timeout: Duration::from_millis(args.rate_timeout_ms.max(1)),
        gap: Duration::from_millis(args.gap_ms.max(1)),
    };
    let found = find(&candidates, &code, timing, timeout).await?;
    say(&format!(
        "Found it: {} {}{}",
        found.candidate.kind.name(),
        found.candidate.path.display(),
        found
            .baud
            .map(|b| format!(" at {b} baud"))
            .unwrap_or_default()
    ));
    describe(&found);

    let name = match &args.name {
        Some(name) => name.clone(),
        None if args.yes => "front".to_owned(),
        None => ask_name().await?,
    };
    let scanner = scanner_config(&name, &found);
    if !args.no_verify {
        say("Scan the setup code once more to check these settings.");
        prove(&scanner, &code, timeout).await?;
        say("Checked: the scan came through the new settings.");
    }
    let table = render(&scanner, &found);
    if args.dry_run {
        print!("{table}");
        return Ok(());
    }
    write_table(&args.output, &table, &scanner)?;
    say(&format!(
        "Wrote the scanner \"{name}\" to {}.",
        args.output.display()
    ));
    say(
        "Then: `wxcardd check` (it validates the main file with its conf.d drop-ins) and \
         `systemctl reload wxcardd`.",
    );
    Ok(())
}

/// Human messages go to standard error: standard output carries only the table (`--dry-run`).
fn say(text: &str) {
    eprintln!("{text}");
}

/// `WXSETUP-` and eight characters that read unambiguously, which `classifier` does not take
/// for a member code or card number (scanning it never looks a card up).
fn setup_code(classifier: &Classifier) -> anyhow::Result<String> {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    for _ in 0..100 {
        let tail: String = (0..8)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        let code = format!("WXSETUP-{tail}");
        if classifier.classify(&code, None) == CodeKind::Other {
            return Ok(code);
        }
    }
    bail!("the [classify] rules take every setup code for a card: add a rule for WXSETUP-")
}

fn print_qr(code: &str) {
    let Ok(matrix) = wxcard_hal::display::QrMatrix::encode(code) else {
        return;
    };
    let tty = std::io::stderr().is_terminal();
    let mut out = String::new();
    for row in wxcard_hal::display::terminal::half_blocks(&matrix, 1) {
        if tty {
            // Dark on light whatever the terminal's colours, as the terminal display draws it.
            out.push_str(&format!("  \x1b[0;30;47m\x1b[107m{row}\x1b[0m\n"));
        } else {
            out.push_str(&format!("  {row}\n"));
        }
    }
    eprint!("{out}");
}

/// Shows the code on the configured customer display, for scanners that cannot reach the
/// technician's terminal. The displays are kept open while the wizard runs.
fn show_on_display(
    config: &Config,
    code: &str,
    timeout: Duration,
) -> Option<wxcard_hal::display::Displays> {
    use wxcard_hal::display::{CustomerDisplay, PayCode, Screen};
    if config.display.backends.is_empty() {
        return None;
    }
    let mut displays = match wxcard_hal::display::open(&config.display) {
        Ok(d) => d,
        Err(e) => {
            say(&format!("(the customer display is not available: {e})"));
            return None;
        }
    };
    let now = wxcard_hal::display::driver::now();
    let screen = Screen::PayCode(PayCode::new(code, now + timeout).ok()?);
    match displays.show(&screen, now) {
        Ok(()) => {
            say("The setup code is also on the customer display.");
            Some(displays)
        }
        Err(e) => {
            say(&format!("(the customer display is not available: {e})"));
            None
        }
    }
}

/// Watches every candidate at once; the first to deliver the code wins.
async fn find(
    candidates: &[Candidate],
    code: &str,
    timing: Timing,
    timeout: Duration,
) -> anyhow::Result<Found> {
    let (tx, mut rx) = mpsc::channel(64);
    let mut tasks = JoinSet::new();
    for c in candidates {
        tasks.spawn(watch::watch(c.clone(), code.to_owned(), timing, tx.clone()));
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + timeout;
    let found = loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Report::Note(text))) => say(&text),
            Ok(Some(Report::Found(found))) => break Ok(found),
            Ok(None) => break Err(anyhow!("no candidate device could be watched")),
            Err(_) => {
                break Err(anyhow!(
                    "no device delivered the setup code within {} s",
                    timeout.as_secs()
                ));
            }
        }
    };
    // Every port is closed before the proof opens the scanner's (serial ports are exclusive).
    tasks.shutdown().await;
    found
}

fn describe(found: &Found) {
    let f = &found.framing;
    let mut parts = Vec::new();
    parts.push(if f.stx { "STX first" } else { "no STX" }.to_owned());
    if !f.prefix.is_empty() {
        parts.push(format!("prefix {:?}", f.prefix));
    }
    parts.push(match &f.aim {
        Some(id) => format!("AIM ids on ({id})"),
        None => "AIM ids off".to_owned(),
    });
    if !f.suffix.is_empty() {
        parts.push(format!("suffix {:?}", f.suffix));
    }
    if found.candidate.kind == Kind::Serial {
        parts.push(if f.terminators.is_empty() {
            "no terminator (frames end after 100 ms of silence)".to_owned()
        } else {
            let names: Vec<&str> = f.terminators.iter().map(|t| terminator_name(*t)).collect();
            format!("ends with {}", names.join(" then "))
        });
    }
    say(&format!("It sends: {}.", parts.join(", ")));
}

async fn ask_name() -> anyhow::Result<String> {
    tokio::task::spawn_blocking(|| {
        // A keyboard-wedge scan may have typed into this terminal: drop it.
        // SAFETY: tcflush on standard input, a terminal (checked at the start).
        unsafe { libc::tcflush(0, libc::TCIFLUSH) };
        loop {
            eprint!("Name for this scanner, reported with every scan [front]: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line)? == 0 {
                bail!("standard input closed");
            }
            let name = match line.trim() {
                "" => "front",
                name => name,
            };
            match wxcard_hal::scanner::scanner_name(name) {
                Ok(_) => return Ok(name.to_owned()),
                Err(e) => say(&format!("{e}")),
            }
        }
    })
    .await?
}

/// The `[[scanner]]` entry for what was found.
fn scanner_config(name: &str, found: &Found) -> ScannerConfig {
    let path = found.candidate.path.to_string_lossy().into_owned();
    let device = match found.candidate.kind {
        Kind::Serial => DeviceConfig::Serial(serial::SerialConfig {
            baud: found.baud.unwrap_or(9600),
            ..serial::SerialConfig::new(path)
        }),
        Kind::Evdev => DeviceConfig::Evdev(evdev::EvdevConfig::new(path)),
        Kind::Hidpos => DeviceConfig::Hidpos(hidpos::HidPosConfig::new(path)),
    };
    let f = &found.framing;
    let frame = FrameConfig {
        terminators: f.terminators.clone(),
        stx: f.stx,
        prefix: f.prefix.clone(),
        suffix: f.suffix.clone(),
        aim: f.aim.is_some(),
        idle_timeout_ms: f.idle_timeout_ms(),
    };
    ScannerConfig {
        name: name.to_owned(),
        device,
        frame,
        duplicate_window_ms: 300,
    }
}

/// Reads one scan through hal's backend with the new settings; it must be the setup code.
async fn prove(scanner: &ScannerConfig, code: &str, timeout: Duration) -> anyhow::Result<()> {
    let mut source = AnyScanner::from_config(scanner).context("the new settings")?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rejected = 0;
    loop {
        let event = tokio::time::timeout_at(deadline, source.next_event())
            .await
            .map_err(|_| anyhow!("no second scan within {} s", timeout.as_secs()))?
            .context("reading the scanner with the new settings")?;
        match event {
            ScannerEvent::Scan(scan) if scan.code.as_str() == code => return Ok(()),
            ScannerEvent::Scan(_) => say("That was not the setup code: scan the setup code."),
            ScannerEvent::Rejected { reason } => {
                rejected += 1;
                say(&format!(
                    "The scan was rejected with these settings: {reason}"
                ));
                if rejected >= 3 {
                    bail!("the settings found do not read this scanner's codes: {reason}");
                }
            }
            ScannerEvent::Disconnected { error } => say(&format!("{error}; still trying")),
            ScannerEvent::Connected => {}
        }
    }
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The table as TOML text: valid alone (a conf.d drop-in) and pasted after other tables.
fn render(scanner: &ScannerConfig, found: &Found) -> String {
    let c = &found.candidate;
    let device = match &scanner.device {
        DeviceConfig::Serial(s) => format!(
            "{{ kind = \"serial\", path = {}, baud = {} }}",
            quoted(&s.path),
            s.baud
        ),
        DeviceConfig::Evdev(e) => format!("{{ kind = \"evdev\", path = {} }}", quoted(&e.path)),
        DeviceConfig::Hidpos(h) => format!("{{ kind = \"hidpos\", path = {} }}", quoted(&h.path)),
        _ => String::new(),
    };
    let f = &scanner.frame;
    let terminators: Vec<String> = f
        .terminators
        .iter()
        .map(|t| format!("\"{}\"", terminator_name(*t)))
        .collect();
    let mut out = format!(
        "# Written by `wxcardd setup`: {}{}.\n",
        c.kind.name(),
        c.label
            .as_ref()
            .map(|l| format!(" scanner, {l}"))
            .unwrap_or_else(|| " scanner".to_owned())
    );
    out.push_str(&format!(
        "[[scanner]]\nname = {}\ndevice = {device}\n\n[scanner.frame]\n",
        quoted(&scanner.name)
    ));
    out.push_str(&format!(
        "terminators = [{}]\nstx = {}\nprefix = {}\nsuffix = {}\naim = {}\nidle_timeout_ms = {}\n",
        terminators.join(", "),
        f.stx,
        quoted(&f.prefix),
        quoted(&f.suffix),
        f.aim,
        f.idle_timeout_ms
    ));
    out
}

#[derive(serde::Deserialize)]
struct Scanners {
    #[serde(default)]
    scanner: Vec<ScannerConfig>,
}

/// Appends `table` to `output` (created with its directory), refusing a name or device the
/// file already has; written to a temporary file and renamed, so a crash leaves the old file.
fn write_table(output: &Path, table: &str, scanner: &ScannerConfig) -> anyhow::Result<()> {
    let old = match std::fs::read_to_string(output) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", output.display())),
    };
    let existing: Scanners = toml::from_str(&old)
        .with_context(|| format!("{} is not a valid scanner file", output.display()))?;
    let path_of = |s: &ScannerConfig| match &s.device {
        DeviceConfig::Serial(d) => Some(d.path.clone()),
        DeviceConfig::Evdev(d) => Some(d.path.clone()),
        DeviceConfig::Hidpos(d) => Some(d.path.clone()),
        _ => None,
    };
    for s in &existing.scanner {
        if s.name == scanner.name {
            bail!(
                "{} already has a scanner named \"{}\": choose another name or remove it there",
                output.display(),
                s.name
            );
        }
        if path_of(s).is_some() && path_of(s) == path_of(scanner) {
            bail!(
                "{} already has this device as scanner \"{}\": remove that entry first",
                output.display(),
                s.name
            );
        }
    }
    let mut text = old;
    if !text.is_empty() {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(table);
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = output.with_extension("toml.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxcard_hal::scanner::frame::Terminator;

    fn found() -> Found {
        Found {
            candidate: Candidate {
                path: PathBuf::from("/dev/serial/by-id/usb-X \"odd\"-if00"),
                kind: Kind::Serial,
                label: Some("Newland NLS-FR40".into()),
            },
            baud: Some(115_200),
            framing: infer::Framing {
                stx: true,
                prefix: "P\"\\".into(),
                aim: Some("]Q1".into()),
                suffix: String::new(),
                terminators: vec![Terminator::Etx, Terminator::Crlf],
            },
        }
    }

    #[test]
    fn the_table_parses_back_to_the_same_scanner_alone_and_appended() {
        let found = found();
        let scanner = scanner_config("front", &found);
        let table = render(&scanner, &found);
        let alone: Scanners = toml::from_str(&table).unwrap();
        assert_eq!(alone.scanner, vec![scanner.clone()]);

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("conf.d/50-scanners.toml");
        write_table(&out, &table, &scanner).unwrap();
        let err = write_table(&out, &table, &scanner).unwrap_err();
        assert!(err.to_string().contains("named \"front\""), "{err}");
        let back = scanner_config("back", &found);
        assert!(write_table(&out, &render(&back, &found), &back).is_err());
        let mut other = found.clone();
        other.candidate.path = PathBuf::from("/dev/ttyUSB1");
        let back = scanner_config("back", &other);
        write_table(&out, &render(&back, &other), &back).unwrap();
        let both: Scanners = toml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(both.scanner, vec![scanner, back]);
    }

    #[test]
    fn setup_codes_are_never_member_codes() {
        let classifier = Classifier::default();
        for _ in 0..50 {
            let code = setup_code(&classifier).unwrap();
            assert!(code.starts_with("WXSETUP-") && code.len() == 16);
            assert_eq!(classifier.classify(&code, None), CodeKind::Other);
        }
    }
}
