//! Watching one candidate until it delivers the setup code.
//!
//! Serial ports are read raw, not through the frame parser: the framing is what is being
//! found. A port is opened at one rate, its stale input flushed, and bytes are gathered into a
//! burst until the line goes quiet. A burst with the setup code in it ends the search; any
//! other burst (garbage from a wrong rate, another barcode) or a rate held for too long with
//! no burst moves the port on to the next rate. Keyboard wedges and HID POS scanners need no
//! rate: they are read through hal's own backends, with an empty prefix and suffix and AIM
//! recognition off, so the code arrives with whatever the scanner adds around it.

use std::{path::Path, time::Duration};

use tokio::{io::AsyncReadExt, sync::mpsc};
use tokio_serial::{ClearBuffer, SerialPort, SerialStream};
use wxcard_hal::scanner::{
    AnyScanner, DeviceConfig, FrameConfig, ScanSource, ScannerConfig, ScannerEvent, evdev, hidpos,
};

use super::candidates::{Candidate, Kind};
use super::infer::{Burst, Framing, examine};

/// Rates tried on a serial port, most common first.
pub const RATES: [u32; 7] = [9600, 115_200, 19_200, 38_400, 57_600, 4800, 2400];

/// Longest burst kept; a scanner's frame is far shorter.
const BURST_CAPACITY: usize = 1024;

/// How long the watchers wait.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Longest time a serial port stays at one rate with nothing read.
    pub rate_timeout: Duration,
    /// Silence that ends a burst.
    pub gap: Duration,
}

/// What a watcher tells the wizard.
#[derive(Debug)]
pub enum Report {
    /// Something to tell the technician.
    Note(String),
    /// This candidate delivered the setup code.
    Found(Found),
}

/// The scanner, and how it sends.
#[derive(Debug, Clone)]
pub struct Found {
    /// Which candidate.
    pub candidate: Candidate,
    /// The serial rate the code arrived clean at (serial only).
    pub baud: Option<u32>,
    /// What was around the code.
    pub framing: Framing,
}

/// Watches `candidate` until it delivers `code` (then reports it and returns) or the task
/// is dropped.
pub async fn watch(candidate: Candidate, code: String, timing: Timing, tx: mpsc::Sender<Report>) {
    match candidate.kind {
        Kind::Serial => watch_serial(candidate, &code, timing, tx).await,
        Kind::Evdev | Kind::Hidpos => watch_backend(candidate, &code, tx).await,
    }
}

async fn note(tx: &mpsc::Sender<Report>, text: String) {
    let _ = tx.send(Report::Note(text)).await;
}

async fn watch_serial(candidate: Candidate, code: &str, timing: Timing, tx: mpsc::Sender<Report>) {
    let path = candidate.path.display().to_string();
    let mut failures = 0u32;
    for &baud in RATES.iter().cycle() {
        let mut port = match open(&candidate.path, baud) {
            Ok(port) => {
                failures = 0;
                port
            }
            Err(e) => {
                if failures == 0 {
                    note(&tx, format!("{path}: cannot open ({e}); still trying")).await;
                }
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let burst = match read_burst(&mut port, timing).await {
            Ok(Some(burst)) => burst,
            Ok(None) => continue,
            Err(e) => {
                note(&tx, format!("{path}: read failed ({e}); reopening")).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        drop(port);
        match examine(&burst, code) {
            Burst::Found(framing) => {
                let found = Found {
                    candidate,
                    baud: Some(baud),
                    framing,
                };
                let _ = tx.send(Report::Found(found)).await;
                return;
            }
            Burst::Garbage => {
                note(
                    &tx,
                    format!(
                        "{path}: {} unreadable bytes at {baud} baud; trying the next rate: \
                         scan the setup code again",
                        burst.len()
                    ),
                )
                .await;
            }
            Burst::OtherCode => {
                note(
                    &tx,
                    format!("{path}: read a code that is not the setup code: scan the setup code"),
                )
                .await;
            }
            Burst::Unusable(why) => {
                note(&tx, format!("{path}: the setup code arrived, but {why}")).await;
            }
        }
    }
}

fn open(path: &Path, baud: u32) -> Result<SerialStream, tokio_serial::Error> {
    let builder = tokio_serial::new(path.to_string_lossy(), baud).exclusive(true);
    let port = SerialStream::open(&builder)?;
    // Bytes that waited in the queue arrived at whatever rate the port had before.
    port.clear(ClearBuffer::Input)?;
    Ok(port)
}

/// One burst: bytes until `gap` of silence, `None` when nothing came within the rate's time.
async fn read_burst(port: &mut SerialStream, timing: Timing) -> std::io::Result<Option<Vec<u8>>> {
    let deadline = tokio::time::Instant::now() + timing.rate_timeout;
    let mut burst = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let until = if burst.is_empty() {
            deadline
        } else {
            tokio::time::Instant::now() + timing.gap
        };
        match tokio::time::timeout_at(until, port.read(&mut buf)).await {
            Err(_) if burst.is_empty() => return Ok(None),
            Err(_) => return Ok(Some(burst)),
            Ok(Ok(0)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "hung up",
                ));
            }
            Ok(Ok(n)) => {
                let room = BURST_CAPACITY - burst.len();
                burst.extend_from_slice(&buf[..n.min(room)]);
                if burst.len() == BURST_CAPACITY {
                    return Ok(Some(burst));
                }
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// The config a keyboard wedge or HID POS candidate is watched with: codes come out with
/// prefix, AIM id and suffix still on them.
fn probe_config(candidate: &Candidate) -> Option<ScannerConfig> {
    let path = candidate.path.to_string_lossy().into_owned();
    let device = match candidate.kind {
        Kind::Evdev => DeviceConfig::Evdev(evdev::EvdevConfig {
            // Not grabbed: the technician's own keyboard is a candidate too.
            grab: false,
            ..evdev::EvdevConfig::new(path)
        }),
        Kind::Hidpos => DeviceConfig::Hidpos(hidpos::HidPosConfig::new(path)),
        Kind::Serial => return None,
    };
    Some(ScannerConfig {
        name: "setup".into(),
        device,
        frame: FrameConfig {
            aim: false,
            ..FrameConfig::default()
        },
        duplicate_window_ms: 0,
    })
}

async fn watch_backend(candidate: Candidate, code: &str, tx: mpsc::Sender<Report>) {
    let path = candidate.path.display().to_string();
    let Some(config) = probe_config(&candidate) else {
        return;
    };
    let mut source = match AnyScanner::from_config(&config) {
        Ok(s) => s,
        Err(e) => {
            note(&tx, format!("{path}: {e}")).await;
            return;
        }
    };
    let mut told = false;
    loop {
        let event = match source.next_event().await {
            Ok(event) => event,
            Err(e) => {
                note(&tx, format!("{path}: {e}; not watched")).await;
                return;
            }
        };
        match event {
            ScannerEvent::Scan(scan) => match examine(scan.code.as_bytes(), code) {
                Burst::Found(mut framing) => {
                    // The backend ended the frame; its terminators are the defaults.
                    framing.terminators = FrameConfig::default().terminators;
                    if framing.aim.is_none() {
                        framing.aim = scan.symbology.map(|s| s.to_string());
                    }
                    let found = Found {
                        candidate,
                        baud: None,
                        framing,
                    };
                    let _ = tx.send(Report::Found(found)).await;
                    return;
                }
                Burst::Unusable(why) => {
                    note(&tx, format!("{path}: the setup code arrived, but {why}")).await;
                }
                _ => {
                    note(
                        &tx,
                        format!("{path}: read a code that is not the setup code"),
                    )
                    .await;
                }
            },
            ScannerEvent::Disconnected { error } if !told => {
                told = true;
                note(&tx, format!("{path}: {error}; still trying")).await;
            }
            _ => {}
        }
    }
}
