//! Serial scanners: RS-232, USB-serial adapters and USB CDC-ACM "virtual COM" ports, read
//! with tokio-serial.
//!
//! The port is opened exclusively (TIOCEXCL plus an exclusive `flock`), so a second process,
//! or a second scanner entry naming the same port by another path, cannot steal scans: its
//! open fails with [`ErrorKind::InUse`]. Unplugging and replugging is handled by the shared
//! reopen loop (see the `device` module): name the port by its `/dev/serial/by-id/...`
//! symlink so the path survives replugging.

use std::{io, time::Duration, time::Instant};

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio_serial::SerialStream;

use super::{
    Assembler, ErrorKind, FrameConfig, ScanSource, ScannerError, ScannerEvent, ScannerName,
    device::{Device, DeviceSource, backoff, default_reopen_initial_ms, default_reopen_max_ms},
    scanner_name,
};

/// Parity bit setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit (default).
    #[default]
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// Flow control setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// None (default).
    #[default]
    None,
    /// RTS/CTS.
    Hardware,
    /// XON/XOFF.
    Software,
}

/// A serial scanner's device settings: `device = { kind = "serial", path = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// The port, best a stable `/dev/serial/by-id/...` symlink. Required.
    pub path: String,
    /// Baud rate, 300 to 115200 on shop scanners. Default 9600.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Data bits, 5 to 8. Default 8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// `"none"` (default), `"odd"` or `"even"`.
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits, 1 or 2. Default 1.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// `"none"` (default), `"hardware"` (RTS/CTS) or `"software"` (XON/XOFF).
    #[serde(default)]
    pub flow_control: FlowControl,
    /// First delay before reopening a port that went away, in ms. Default 100.
    #[serde(default = "default_reopen_initial_ms")]
    pub reopen_initial_ms: u64,
    /// Longest delay between reopen attempts, in ms. Default 2000.
    #[serde(default = "default_reopen_max_ms")]
    pub reopen_max_ms: u64,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
impl SerialConfig {
    /// Settings for `path` with every default: 9600 8N1, no flow control.
    pub fn new(path: impl Into<String>) -> Self {
        SerialConfig {
            path: path.into(),
            baud: default_baud(),
            data_bits: default_data_bits(),
            parity: Parity::None,
            stop_bits: default_stop_bits(),
            flow_control: FlowControl::None,
            reopen_initial_ms: default_reopen_initial_ms(),
            reopen_max_ms: default_reopen_max_ms(),
        }
    }

    fn builder(&self) -> Result<tokio_serial::SerialPortBuilder, ScannerError> {
        let bad = |what: String| Err(ScannerError::Config(format!("{}: {what}", self.path)));
        let data_bits = match self.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            8 => tokio_serial::DataBits::Eight,
            n => return bad(format!("data_bits {n}, expected 5 to 8")),
        };
        let stop_bits = match self.stop_bits {
            1 => tokio_serial::StopBits::One,
            2 => tokio_serial::StopBits::Two,
            n => return bad(format!("stop_bits {n}, expected 1 or 2")),
        };
        if self.baud == 0 {
            return bad("baud 0".into());
        }
        if self.path.is_empty() {
            return bad("empty path".into());
        }
        let parity = match self.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Odd => tokio_serial::Parity::Odd,
            Parity::Even => tokio_serial::Parity::Even,
        };
        let flow = match self.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
            FlowControl::Software => tokio_serial::FlowControl::Software,
        };
        Ok(tokio_serial::new(&self.path, self.baud)
            .data_bits(data_bits)
            .stop_bits(stop_bits)
            .parity(parity)
            .flow_control(flow)
            .exclusive(true))
    }
}

struct Port(SerialStream);

impl Device for Port {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }

    fn feed(&mut self, bytes: &[u8], now: Instant, assembler: &mut Assembler) {
        assembler.push(bytes, now);
    }
}

fn open_error(path: &str, e: &tokio_serial::Error) -> ScannerError {
    use tokio_serial::ErrorKind as K;
    let kind = match e.kind() {
        // serialport reports a port locked by someone else (EBUSY, flock) as NoDevice.
        K::NoDevice => ErrorKind::InUse,
        K::Io(io::ErrorKind::NotFound) => ErrorKind::Gone,
        K::Io(io::ErrorKind::PermissionDenied) => ErrorKind::Permission,
        K::InvalidInput => ErrorKind::Config,
        // ENXIO, ENODEV and EIO arrive as Unknown with the errno's description.
        _ if GONE_DESCRIPTIONS.contains(&e.description.as_str()) => ErrorKind::Gone,
        _ => ErrorKind::Other,
    };
    ScannerError::Open {
        path: path.to_owned(),
        message: format!(
            "{}{}",
            e.description,
            super::open_hint(kind, path, "dialout")
        ),
        kind,
    }
}

/// How nix describes ENXIO, ENODEV and EIO, which a vanished device produces and serialport
/// passes on only as text.
const GONE_DESCRIPTIONS: [&str; 3] = ["No such device or address", "No such device", "I/O error"];

/// A serial scanner. See the module docs.
pub struct SerialScanner {
    source: DeviceSource<Port>,
}

impl SerialScanner {
    /// A scanner named `name` on the port `config` names. Nothing is opened until the first
    /// [`next_event`](ScanSource::next_event); a port that is absent then is reported as
    /// disconnected and retried.
    pub fn new(
        name: &str,
        config: &SerialConfig,
        frame: &FrameConfig,
        duplicate_window: Duration,
    ) -> Result<Self, ScannerError> {
        let builder = config.builder()?;
        let assembler = Assembler::new(scanner_name(name)?, frame, duplicate_window)?;
        let opener = Box::new(move |path: &str| {
            SerialStream::open(&builder)
                .map(Port)
                .map_err(|e| open_error(path, &e))
        });
        Ok(SerialScanner {
            source: DeviceSource::new(
                config.path.clone(),
                opener,
                backoff(config.reopen_initial_ms, config.reopen_max_ms),
                assembler,
            ),
        })
    }
}

impl ScanSource for SerialScanner {
    fn name(&self) -> &ScannerName {
        self.source.assembler().name()
    }

    async fn next_event(&mut self) -> Result<ScannerEvent, ScannerError> {
        self.source.next_event().await
    }
}
