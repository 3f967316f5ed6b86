//! `wxcardd --demo`: the whole daemon on a built-in setup, for a first look.
//!
//! The simulator runs in-process on loopback, the store and the control socket live in a
//! temporary folder, codes are typed on standard input (the stdin scanner) and the customer
//! display is this terminal. After a card is shown, the demo asks for its pay code, as the
//! POS app would at the till.
//!
//! The terminal is both the scanner and the customer display, so the demo keeps them apart:
//! typed characters are not echoed (they would land in the middle of the customer's screen
//! and stay there); what was typed is shown on the display once Enter is pressed, a card or,
//! for anything that is not a member code, a notice saying so. The instructions stay at the
//! top of the terminal as the display's header, and the display hands the cursor back at the
//! start of a line when the demo ends.

use std::path::PathBuf;

use anyhow::Context;
use wxcard_hal::display::{BackendKind, DisplayConfig};
use wxcard_hal::scanner::{DeviceConfig, FrameConfig, ScannerConfig};

use super::{RunOptions, run};
use crate::config::Config;
use wxcard_sim::{SimConfig, Simulator};

/// A temporary folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo until SIGINT (Ctrl-C) or SIGTERM.
pub async fn demo() -> anyhow::Result<()> {
    let sim = Simulator::start(SimConfig::default())
        .await
        .context("cannot start the built-in simulator")?;
    let dir = TempDir(std::env::temp_dir().join(format!("wxcardd-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)
        .with_context(|| format!("cannot create {}", dir.0.display()))?;

    let mut config = Config::default();
    config.api.base_url = sim.base_url();
    config.api.connect_timeout_ms = 500;
    config.api.deadline_ms = 3_000;
    config.service.lookup_deadline_ms = 800;
    config.service.probe_interval_ms = 1_000;
    config.service.replay_backoff_base_ms = 200;
    config.service.replay_backoff_max_ms = 5_000;
    config.store.dir = dir.0.join("store");
    config.control.socket = dir.0.join("control.sock");
    config.control.group = None;
    config.scanners = vec![ScannerConfig {
        name: "keyboard".into(),
        device: DeviceConfig::Stdin,
        frame: FrameConfig::default(),
        duplicate_window_ms: 0,
    }];
    let socket = config.control.socket.display().to_string();
    let header = vec![
        format!(
            "wxcardd demo: simulated backend at {}, admin at http://{}/",
            sim.base_url(),
            sim.admin_addr()
        ),
        "Type a member card code and Enter (this terminal is the scanner and the display):".into(),
        "  812345678901234567 balance 128.50    812345678901234568 balance 5000.00".into(),
        "  812345678901234571 reported lost     812345678901234572 voided".into(),
        "  other codes of 12-18 digits: card does not exist; anything else: not a member code"
            .into(),
        "From another terminal:".into(),
        format!("  cargo run --bin wxcardctl -- --socket {socket} watch"),
        format!(
            "  curl -X PUT http://{}/admin/faults -d '{{\"mode\":\"refuse\"}}'  (DELETE restores)",
            sim.admin_addr()
        ),
        format!("Ctrl-C stops the demo and removes {}.", dir.0.display()),
        String::new(),
    ];
    let mut display = DisplayConfig {
        backends: vec![BackendKind::Terminal],
        shop_name: "type 812345678901234567 and Enter".into(),
        ..DisplayConfig::default()
    };
    display.labels.welcome = "wxcardd demo 演示".into();
    display.terminal.header = header.clone();
    config.display = display;

    // Without a terminal (output piped), the instructions go to the log stream instead.
    // SAFETY: isatty on the process's own standard descriptors.
    if unsafe { libc::isatty(1) } == 0 {
        eprintln!("{}", header.join("\n"));
    }
    let _echo = NoEcho::on_stdin();
    let result = run(
        config,
        RunOptions {
            config_path: None,
            pay_code_after_scan: true,
            show_other_codes: true,
        },
    )
    .await;
    sim.shutdown().await;
    result
}

/// Turns off the echo of typed characters on a terminal standard input (line editing stays
/// on), and restores the terminal's settings when dropped.
struct NoEcho(Option<libc::termios>);

impl NoEcho {
    fn on_stdin() -> NoEcho {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios the call fills; nothing is
        // changed when standard input is not a terminal.
        unsafe {
            if libc::isatty(0) == 0 {
                return NoEcho(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return NoEcho(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ECHOCTL);
            if libc::tcsetattr(0, libc::TCSANOW, &quiet) != 0 {
                return NoEcho(None);
            }
            NoEcho(Some(saved))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `on_stdin` on the same descriptor.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, saved);
            }
        }
    }
}
