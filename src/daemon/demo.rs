//! `wxcardd --demo`: the whole daemon on a built-in setup, for a first look.
//!
//! The simulator runs in-process on loopback, the store and the control socket live in a
//! temporary folder, codes are typed on standard input (the stdin scanner) and the customer
//! display is this terminal. After a card is shown, the demo asks for its pay code, as the
//! POS app would at the till.

use std::path::PathBuf;

use anyhow::Context;
use wxcard_hal::display::{BackendKind, DisplayConfig};
use wxcard_hal::scanner::{DeviceConfig, FrameConfig, ScannerConfig};

use super::{RunOptions, run};
use crate::config::Config;
use crate::sim::{SimConfig, Simulator};

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
    let mut display = DisplayConfig {
        backends: vec![BackendKind::Terminal],
        shop_name: "type 812345678901234567 and Enter".into(),
        ..DisplayConfig::default()
    };
    display.labels.welcome = "wxcardd demo 演示".into();
    config.display = display;

    let socket = config.control.socket.display().to_string();
    eprintln!(
        "wxcardd demo: simulated backend at {base}, admin at http://{admin}/\n\
         Type a member card code and Enter (this terminal is the scanner and the customer display):\n\
         \x20 812345678901234567  balance 128.50      812345678901234568  balance 5000.00\n\
         \x20 812345678901234571  reported lost       812345678901234572  voided\n\
         \x20 anything else of 12-18 digits: card does not exist\n\
         From another terminal:\n\
         \x20 cargo run --bin wxcardctl -- --socket {socket} status\n\
         \x20 cargo run --bin wxcardctl -- --socket {socket} watch\n\
         \x20 curl -X PUT http://{admin}/admin/faults -d '{{\"mode\":\"refuse\"}}'   (backend down; DELETE to restore)\n\
         Ctrl-C stops the demo and removes {dir}.\n",
        base = sim.base_url(),
        admin = sim.admin_addr(),
        dir = dir.0.display(),
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let result = run(
        config,
        RunOptions {
            config_path: None,
            pay_code_after_scan: true,
        },
    )
    .await;
    sim.shutdown().await;
    result
}
