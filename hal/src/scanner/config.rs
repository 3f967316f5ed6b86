//! A scanner's configuration as the daemon's TOML embeds it, and [`AnyScanner`], which builds
//! the configured backend so the daemon can spawn every scanner the same way.

use serde::Deserialize;

#[cfg(feature = "evdev")]
use super::evdev;
#[cfg(feature = "hidpos")]
use super::hidpos;
#[cfg(feature = "serial")]
use super::serial;
#[cfg(feature = "stdin")]
use super::stdin;
use super::{FrameConfig, ScanSource, ScannerError, ScannerEvent, ScannerName};

/// One scanner as the daemon's TOML config names it, e.g.
///
/// ```toml
/// [[scanner]]
/// name = "front"
/// device = { kind = "serial", path = "/dev/serial/by-id/usb-Newland_...-if00" }
/// duplicate_window_ms = 300
/// [scanner.frame]
/// terminators = ["cr"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    /// Name reported with every scan and event, at most 32 bytes.
    pub name: String,
    /// The device and its backend.
    pub device: DeviceConfig,
    /// How frames are delimited. Defaults: see [`FrameConfig`].
    #[serde(default)]
    pub frame: FrameConfig,
    /// The same code from this scanner within this many milliseconds of the previous read
    /// is reported once. Default 300; 0 turns suppression off.
    #[serde(default = "default_duplicate_window_ms")]
    pub duplicate_window_ms: u64,
}

fn default_duplicate_window_ms() -> u64 {
    300
}

/// The backend of a scanner, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum DeviceConfig {
    /// A serial port: RS-232, USB-serial adapter or USB CDC-ACM.
    #[cfg(feature = "serial")]
    Serial(serial::SerialConfig),
    /// A USB HID keyboard-wedge scanner read through evdev.
    #[cfg(feature = "evdev")]
    Evdev(evdev::EvdevConfig),
    /// Codes typed or piped on standard input, one per line.
    #[cfg(feature = "stdin")]
    Stdin,
    /// A USB HID POS scanner read through hidraw.
    #[cfg(feature = "hidpos")]
    Hidpos(hidpos::HidPosConfig),
}

/// Any configured scanner, so the daemon can spawn every entry of its config the same way.
#[non_exhaustive]
pub enum AnyScanner {
    /// A serial scanner.
    #[cfg(feature = "serial")]
    Serial(serial::SerialScanner),
    /// A keyboard-wedge scanner.
    #[cfg(feature = "evdev")]
    Evdev(evdev::EvdevScanner),
    /// Standard input.
    #[cfg(feature = "stdin")]
    Stdin(stdin::StdinScanner),
    /// A HID POS scanner.
    #[cfg(feature = "hidpos")]
    Hidpos(hidpos::HidPosScanner),
}

impl AnyScanner {
    /// Builds the scanner `config` describes; nothing is opened yet.
    pub fn from_config(config: &ScannerConfig) -> Result<Self, ScannerError> {
        let window = std::time::Duration::from_millis(config.duplicate_window_ms);
        let name = &config.name;
        let frame = &config.frame;
        Ok(match &config.device {
            #[cfg(feature = "serial")]
            DeviceConfig::Serial(device) => {
                AnyScanner::Serial(serial::SerialScanner::new(name, device, frame, window)?)
            }
            #[cfg(feature = "evdev")]
            DeviceConfig::Evdev(device) => {
                AnyScanner::Evdev(evdev::EvdevScanner::new(name, device, frame, window)?)
            }
            #[cfg(feature = "stdin")]
            DeviceConfig::Stdin => {
                AnyScanner::Stdin(stdin::StdinScanner::stdin(name, frame, window)?)
            }
            #[cfg(feature = "hidpos")]
            DeviceConfig::Hidpos(device) => {
                AnyScanner::Hidpos(hidpos::HidPosScanner::new(name, device, frame, window)?)
            }
        })
    }
}

impl ScanSource for AnyScanner {
    fn name(&self) -> &ScannerName {
        match self {
            #[cfg(feature = "serial")]
            AnyScanner::Serial(s) => s.name(),
            #[cfg(feature = "evdev")]
            AnyScanner::Evdev(s) => s.name(),
            #[cfg(feature = "stdin")]
            AnyScanner::Stdin(s) => s.name(),
            #[cfg(feature = "hidpos")]
            AnyScanner::Hidpos(s) => s.name(),
        }
    }

    async fn next_event(&mut self) -> Result<ScannerEvent, ScannerError> {
        match self {
            #[cfg(feature = "serial")]
            AnyScanner::Serial(s) => s.next_event().await,
            #[cfg(feature = "evdev")]
            AnyScanner::Evdev(s) => s.next_event().await,
            #[cfg(feature = "stdin")]
            AnyScanner::Stdin(s) => s.next_event().await,
            #[cfg(feature = "hidpos")]
            AnyScanner::Hidpos(s) => s.next_event().await,
        }
    }
}
